// quantize_avx2.cc: AVX2 quantize span, 32 floats per step; same formula as quantize.cc.
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

// 8 lanes: clamp(x / s, lo, hi) -> rint (vcvtps2dq, ties to even) -> + z.
static inline __m256i quantize8(__m256 x, __m256 s, __m256i z, __m256 lo, __m256 hi,
                                __m256& nan_mask) {
  __m256 t = _mm256_div_ps(x, s);  // exactly rounded, like the scalar division
  nan_mask = _mm256_or_ps(nan_mask, _mm256_cmp_ps(t, t, _CMP_UNORD_Q));
  t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
  return _mm256_add_epi32(_mm256_cvtps_epi32(t), z);
}

bool quantize_span_avx2(const float* x, size_t n, const float* s, const int32_t* z,
                        size_t s_step, int qmin, int qmax, bool out_s8, void* q) {
  __m256 nan_mask = _mm256_setzero_ps();
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i qmin_v = _mm256_set1_epi32(qmin), qmax_v = _mm256_set1_epi32(qmax);
  __m256 s_b = _mm256_set1_ps(s[0]);
  __m256i z_b = _mm256_set1_epi32(z[0]);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      const size_t at = i + 8 * j;
      __m256 sv = s_step ? _mm256_loadu_ps(s + at) : s_b;
      __m256i zv = s_step ? _mm256_loadu_si256((const __m256i*)(z + at)) : z_b;
      __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(qmin_v, zv));
      __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(qmax_v, zv));
      v[j] = quantize8(_mm256_loadu_ps(x + at), sv, zv, lo, hi, nan_mask);
    }
    // Values are already in range, so the saturating packs only narrow.
    __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]);
    __m256i b = out_s8 ? _mm256_packs_epi16(w01, w23) : _mm256_packus_epi16(w01, w23);
    b = _mm256_permutevar8x32_epi32(b, order);
    _mm256_storeu_si256((__m256i*)(static_cast<uint8_t*>(q) + i), b);
  }
  bool ok = _mm256_movemask_ps(nan_mask) == 0;
  const size_t c = i * s_step;
  uint8_t* rest = static_cast<uint8_t*>(q) + i;
  return quantize_span_scalar(x + i, n - i, s + c, z + c, s_step, qmin, qmax, out_s8, rest) && ok;
}

}  // namespace needle_qc
