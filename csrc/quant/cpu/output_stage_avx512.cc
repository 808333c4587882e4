// output_stage_avx512.cc: AVX-512 twin of output_stage_avx2.cc, one zmm per 16-column tile row;
// same formulas, same single roundings (cvtdq2ps, mulps, addps, cvtps2dq ties-to-even), so
// bit-identical to output_stage.cc.
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

// Σ(a-za)(w-zw) + bias = c + bias - za·colsum + zw·(K·za - rowsum), modulo 2^32.
inline __m512i correct16(const int32_t* c, const PackedWeightS8& w, size_t n, __m512i za,
                         __m512i t, const int32_t* bias) {
  __m512i v = _mm512_loadu_si512(c);
  v = _mm512_sub_epi32(v, _mm512_mullo_epi32(za, _mm512_loadu_si512(w.colsum.data() + n)));
  if (!w.zero_point_is_zero)
    v = _mm512_add_epi32(v, _mm512_mullo_epi32(t, _mm512_loadu_si512(w.zero_point.data() + n)));
  if (bias) v = _mm512_add_epi32(v, _mm512_loadu_si512(bias + n));
  return v;
}

inline __m512i requant16(__m512i acc, const OutputParams& p, size_t n) {
  const __m512 m = p.multiplier_per_col ? _mm512_loadu_ps(p.multiplier + n)
                                        : _mm512_set1_ps(p.multiplier[0]);
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), m);
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(float(p.qmin - p.y_zp))),
                    _mm512_set1_ps(float(p.qmax - p.y_zp)));
  return _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(p.y_zp));
}

inline __m512 float16(__m512i acc, const OutputParams& p, size_t m, size_t n) {
  __m512 s = p.scale_per_col ? _mm512_loadu_ps(p.scale + n) : _mm512_set1_ps(p.scale[0]);
  if (p.row_scale) s = _mm512_mul_ps(_mm512_set1_ps(p.row_scale[m]), s);
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
  if (p.bias_f32) y = _mm512_add_ps(y, _mm512_loadu_ps(p.bias_f32 + n));
  if (p.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
  return y;
}

}  // namespace

void output_tile16_avx512(OutputKind kind, const int32_t* c, size_t mr, size_t m0, size_t n0,
                          const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                          void* out, size_t N) {
  const uint32_t K = static_cast<uint32_t>(w.K);
  for (size_t r = 0; r < mr; ++r) {
    const size_t m = m0 + r;
    const uint32_t za = static_cast<uint32_t>(p.a_zp[p.a_zp_per_row ? m : 0]);
    const uint32_t rs = a.rowsum.empty() ? 0u : static_cast<uint32_t>(a.rowsum[m]);
    const __m512i acc = correct16(c + r * kPanelWidth, w, n0, _mm512_set1_epi32(int32_t(za)),
                                  _mm512_set1_epi32(int32_t(K * za - rs)), p.bias_i32);
    if (kind == OutputKind::s32) {
      _mm512_storeu_si512(static_cast<int32_t*>(out) + m * N + n0, acc);
    } else if (kind == OutputKind::requant) {
      // In [qmin, qmax] already: the saturating narrowing only narrows (in a register; the
      // memory form of vpmov*db is microcoded on AMD Zen 4).
      const __m512i q = requant16(acc, p, n0);
      const __m128i bytes = p.out_s8 ? _mm512_cvtsepi32_epi8(q) : _mm512_cvtusepi32_epi8(q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(out) + m * N + n0), bytes);
    } else {
      _mm512_storeu_ps(static_cast<float*>(out) + m * N + n0, float16(acc, p, m, n0));
    }
  }
}

}  // namespace needle_qc
