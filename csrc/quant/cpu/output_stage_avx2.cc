// output_stage_avx2.cc: AVX2 twin of output_stage.cc for full 16-column tiles; same formulas,
// same single roundings (cvtdq2ps, mulps, addps, cvtps2dq ties-to-even), so bit-identical.
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

// Σ(a-za)(w-zw) + bias = c + bias - za·colsum + zw·(K·za - rowsum), modulo 2^32.
inline __m256i correct8(const int32_t* c, const PackedWeightS8& w, size_t n, __m256i za,
                        __m256i t, const int32_t* bias) {
  __m256i v = _mm256_loadu_si256((const __m256i*)c);
  __m256i colsum = _mm256_loadu_si256((const __m256i*)(w.colsum.data() + n));
  v = _mm256_sub_epi32(v, _mm256_mullo_epi32(za, colsum));
  if (!w.zero_point_is_zero) {
    __m256i zw = _mm256_loadu_si256((const __m256i*)(w.zero_point.data() + n));
    v = _mm256_add_epi32(v, _mm256_mullo_epi32(t, zw));
  }
  if (bias) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i*)(bias + n)));
  return v;
}

inline __m256i requant8(__m256i acc, const OutputParams& p, size_t n) {
  __m256 m = p.multiplier_per_col ? _mm256_loadu_ps(p.multiplier + n)
                                  : _mm256_set1_ps(p.multiplier[0]);
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), m);
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(float(p.qmin - p.y_zp))),
                    _mm256_set1_ps(float(p.qmax - p.y_zp)));
  return _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(p.y_zp));
}

inline void store_bytes16(__m256i lo, __m256i hi, bool s8, void* dst) {
  __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);  // 16 x i16, in order
  __m128i a = _mm256_castsi256_si128(w16), b = _mm256_extracti128_si256(w16, 1);
  __m128i bytes = s8 ? _mm_packs_epi16(a, b) : _mm_packus_epi16(a, b);
  _mm_storeu_si128((__m128i*)dst, bytes);
}

inline __m256 float8(__m256i acc, const OutputParams& p, size_t m, size_t n) {
  __m256 s = p.scale_per_col ? _mm256_loadu_ps(p.scale + n) : _mm256_set1_ps(p.scale[0]);
  if (p.row_scale) s = _mm256_mul_ps(_mm256_set1_ps(p.row_scale[m]), s);
  __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), s);
  if (p.bias_f32) y = _mm256_add_ps(y, _mm256_loadu_ps(p.bias_f32 + n));
  if (p.relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
  return y;
}

}  // namespace

void output_tile16_avx2(OutputKind kind, const int32_t* c, size_t mr, size_t m0, size_t n0,
                        const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                        void* out, size_t N) {
  const uint32_t K = static_cast<uint32_t>(w.K);
  for (size_t r = 0; r < mr; ++r) {
    const size_t m = m0 + r;
    const uint32_t za = static_cast<uint32_t>(p.a_zp[p.a_zp_per_row ? m : 0]);
    const uint32_t rs = a.rowsum.empty() ? 0u : static_cast<uint32_t>(a.rowsum[m]);
    const __m256i za_v = _mm256_set1_epi32(int32_t(za));
    const __m256i t_v = _mm256_set1_epi32(int32_t(K * za - rs));
    __m256i acc[2];
    for (size_t h = 0; h < 2; ++h)
      acc[h] = correct8(c + r * kPanelWidth + 8 * h, w, n0 + 8 * h, za_v, t_v, p.bias_i32);
    if (kind == OutputKind::s32) {
      int32_t* o = static_cast<int32_t*>(out) + m * N + n0;
      _mm256_storeu_si256((__m256i*)o, acc[0]);
      _mm256_storeu_si256((__m256i*)(o + 8), acc[1]);
    } else if (kind == OutputKind::requant) {
      store_bytes16(requant8(acc[0], p, n0), requant8(acc[1], p, n0 + 8), p.out_s8,
                    static_cast<uint8_t*>(out) + m * N + n0);
    } else {
      float* o = static_cast<float*>(out) + m * N + n0;
      _mm256_storeu_ps(o, float8(acc[0], p, m, n0));
      _mm256_storeu_ps(o + 8, float8(acc[1], p, m, n0 + 8));
    }
  }
}

}  // namespace needle_qc
