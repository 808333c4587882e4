// AVX-512F sgemm microkernel: 12x32 register block (24 zmm accumulators), chosen at run time.
#include "ndarray/cpu/sgemm.h"

#include "common/cpu_features.h"
#include "ndarray/cpu/parallel.h"

#if defined(NEEDLE_X86_SIMD)
#include <immintrin.h>
#endif

namespace needle {
namespace cpu {

#if defined(NEEDLE_X86_SIMD)
bool sgemm_avx512_supported() {
  static const bool ok = !simd_disabled() && !avx512_disabled() &&
                         common::cpu_features().avx512f;
  return ok;
}

// 24 accumulators + 2 B vectors + 1 broadcast = 27 of 32 zmm registers. Twice the columns of the
// AVX2 kernel halves the broadcasts per FMA, and the taller block halves the B loads per FMA.
void sgemm_kernel_avx512(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                         int64_t ldc, bool acc) {
  constexpr int R = kSgemm512MR;
  __m512 c0[R], c1[R];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    const float* bp = b + p * ldb;
    const __m512 b0 = _mm512_loadu_ps(bp);
    const __m512 b1 = _mm512_loadu_ps(bp + 16);
    const float* ap = a + p * R;
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    float* cr = c + i * ldc;
    __m512 lo = c0[i], hi = c1[i];
    if (acc) {
      lo = _mm512_add_ps(lo, _mm512_loadu_ps(cr));
      hi = _mm512_add_ps(hi, _mm512_loadu_ps(cr + 16));
    }
    _mm512_storeu_ps(cr, lo);
    _mm512_storeu_ps(cr + 16, hi);
  }
}
#else
bool sgemm_avx512_supported() { return false; }
void sgemm_kernel_avx512(int64_t, const float*, const float*, int64_t, float*, int64_t, bool) {}
#endif

}  // namespace cpu
}  // namespace needle
