// binary16 <-> float32 with the F16C instructions (compiled with -mf16c, called after a CPU check).
#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/dtype.h"

#include "common/cpu_features.h"
#include "ndarray/cpu/parallel.h"

#if defined(NEEDLE_X86_SIMD)
#include <immintrin.h>
#endif

namespace needle {
namespace cpu {

#if defined(NEEDLE_X86_SIMD)
bool f16c_supported() {
  static const bool ok =
      !simd_disabled() && common::cpu_features().f16c && common::cpu_features().avx;
  return ok;
}

void f16c_half_to_float(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = half_to_float(src[i]);
}

void f16c_float_to_half(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}
#else
bool f16c_supported() { return false; }
void f16c_half_to_float(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}
void f16c_float_to_half(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}
#endif

}  // namespace cpu
}  // namespace needle
