// lstm_cell_avx2.cc: the AVX2 row kernels of the fused LSTM step; each lane computes what
// lstm_gates.h / lstm_cell.cc compute for one element, step for step (same bits).
#include <immintrin.h>

#include "quant/cpu/lstm_cell.h"
#include "quant/cpu/lstm_gates.h"

namespace needle_qc {
namespace lstm {

namespace {

inline __m256 vset(float v) { return _mm256_set1_ps(v); }

inline __m256 vclamp(__m256 x, float lo, float hi) {  // a NaN x stays NaN, as in clampf
  return _mm256_min_ps(vset(hi), _mm256_max_ps(vset(lo), x));
}

inline __m256 madd(__m256 a, __m256 b, float c) {  // a * b + c, two roundings (no FMA)
  return _mm256_add_ps(_mm256_mul_ps(a, b), vset(c));
}

__m256 vexp(__m256 x) {
  x = vclamp(x, -kExpClamp, kExpClamp);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, vset(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, vset(kC1))),
                                 _mm256_mul_ps(n, vset(kC2)));
  __m256 p = madd(vset(kP0), r, kP1);
  p = madd(p, r, kP2);
  p = madd(p, r, kP3);
  p = madd(p, r, kP4);
  p = madd(p, r, kP5);
  p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), vset(1.0f));
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__m256 vsigmoid(__m256 x) {
  x = vclamp(x, -kSigmoidClamp, kSigmoidClamp);
  const __m256 neg = _mm256_xor_ps(x, vset(-0.0f));
  return _mm256_div_ps(vset(1.0f), _mm256_add_ps(vset(1.0f), vexp(neg)));
}

__m256 vtanh(__m256 x) {
  const __m256 sign = vset(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 q = madd(vset(kQ0), z, kQ1);
  q = madd(q, z, kQ2);
  q = madd(q, z, kQ3);
  q = madd(q, z, kQ4);
  const __m256 small = _mm256_add_ps(x, _mm256_mul_ps(_mm256_mul_ps(x, z), q));
  const __m256 twice = _mm256_add_ps(a, a);
  const __m256 e = vexp(_mm256_blendv_ps(vset(kSigmoidClamp), twice,
                                         _mm256_cmp_ps(twice, vset(kSigmoidClamp), _CMP_LT_OQ)));
  __m256 big = _mm256_sub_ps(vset(1.0f), _mm256_div_ps(vset(2.0f), _mm256_add_ps(e, vset(1.0f))));
  const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  big = _mm256_blendv_ps(big, _mm256_xor_ps(big, sign), negative);
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, vset(kTanhSmall), _CMP_LT_OQ));
}

}  // namespace

void gemm_f32_avx2(const float* a, size_t k, const float* w, size_t n, float* out) {
  size_t j = 0;
  for (; j + 32 <= n; j += 32) {  // four independent FMA chains per step
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (size_t t = 0; t < k; ++t) {
      const __m256 av = _mm256_set1_ps(a[t]);
      const float* row = w + t * n + j;
      acc0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(row), acc0);
      acc1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(row + 8), acc1);
      acc2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(row + 16), acc2);
      acc3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(row + 24), acc3);
    }
    _mm256_storeu_ps(out + j, acc0);
    _mm256_storeu_ps(out + j + 8, acc1);
    _mm256_storeu_ps(out + j + 16, acc2);
    _mm256_storeu_ps(out + j + 24, acc3);
  }
  for (; j + 8 <= n; j += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (size_t t = 0; t < k; ++t)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(a[t]), _mm256_loadu_ps(w + t * n + j), acc);
    _mm256_storeu_ps(out + j, acc);
  }
  for (; j < n; ++j) {
    float acc = 0.0f;
    for (size_t t = 0; t < k; ++t) acc = std::fma(a[t], w[t * n + j], acc);
    out[j] = acc;
  }
}

// 8 columns' k pair (16 int8 at w) sign-extended to int16 pairs.
inline __m256i widen(const int8_t* w) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
}

inline __m256i pair_of(const int16_t* a) {  // a[0], a[1] in every 32-bit lane
  int32_t pair;
  std::memcpy(&pair, a, sizeof pair);
  return _mm256_set1_epi32(pair);
}

void gemm_s16s8_avx2(const int16_t* a, size_t k_pairs, const int8_t* w, size_t n,
                     int32_t* out) {
  size_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (size_t p = 0; p < k_pairs; ++p) {
      const __m256i av = pair_of(a + 2 * p);
      const int8_t* row = w + (p * n + j) * 2;
      acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(av, widen(row)));
      acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(av, widen(row + 16)));
      acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(av, widen(row + 32)));
      acc3 = _mm256_add_epi32(acc3, _mm256_madd_epi16(av, widen(row + 48)));
    }
    __m256i* dst = reinterpret_cast<__m256i*>(out + j);
    _mm256_storeu_si256(dst, acc0);
    _mm256_storeu_si256(dst + 1, acc1);
    _mm256_storeu_si256(dst + 2, acc2);
    _mm256_storeu_si256(dst + 3, acc3);
  }
  for (; j + 8 <= n; j += 8) {
    __m256i acc = _mm256_setzero_si256();
    for (size_t p = 0; p < k_pairs; ++p)
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pair_of(a + 2 * p),
                                                    widen(w + (p * n + j) * 2)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), acc);
  }
  for (; j < n; ++j) {
    int32_t acc = 0;
    for (size_t p = 0; p < k_pairs; ++p)
      acc += int32_t(a[2 * p]) * w[(p * n + j) * 2] +
             int32_t(a[2 * p + 1]) * w[(p * n + j) * 2 + 1];
    out[j] = acc;
  }
}

void tail_avx2(const float* gates, const size_t off[4], const float* c, size_t hidden,
               float* h_out, float* c_out) {
  size_t j = 0;
  for (; j + 8 <= hidden; j += 8) {
    const __m256 i = vsigmoid(_mm256_loadu_ps(gates + off[0] + j));
    const __m256 f = vsigmoid(_mm256_loadu_ps(gates + off[1] + j));
    const __m256 g = vtanh(_mm256_loadu_ps(gates + off[2] + j));
    const __m256 o = vsigmoid(_mm256_loadu_ps(gates + off[3] + j));
    const __m256 cn = _mm256_add_ps(_mm256_mul_ps(f, _mm256_loadu_ps(c + j)), _mm256_mul_ps(i, g));
    _mm256_storeu_ps(c_out + j, cn);
    _mm256_storeu_ps(h_out + j, _mm256_mul_ps(o, vtanh(cn)));
  }
  tail_scalar(gates, off, c, j, hidden, h_out, c_out);
}

}  // namespace lstm
}  // namespace needle_qc
