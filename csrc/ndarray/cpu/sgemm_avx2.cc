// AVX2+FMA sgemm pieces: the 6x16 register-blocked microkernel and the small-m streaming kernel.
#include "ndarray/cpu/sgemm.h"
#include "ndarray/cpu/sgemm_small_m.h"

#include "common/cpu_features.h"
#include "ndarray/cpu/parallel.h"

#if defined(NEEDLE_X86_SIMD)
#include <immintrin.h>
#endif

namespace needle {
namespace cpu {

#if defined(NEEDLE_X86_SIMD)
bool sgemm_avx2_supported() {
  static const bool ok =
      !simd_disabled() && common::cpu_features().avx2 && common::cpu_features().fma;
  return ok;
}

// 12 accumulators (6 rows x 2 vectors) + 2 B vectors + 1 broadcast = 15 of 16 ymm registers.
void sgemm_kernel_avx2(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                       int64_t ldc, bool acc) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const float* bp = b + p * ldb;
    const __m256 b0 = _mm256_loadu_ps(bp);
    const __m256 b1 = _mm256_loadu_ps(bp + 8);
    const float* ap = a + p * kSgemmMR;
    __m256 av = _mm256_broadcast_ss(ap + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(ap + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(ap + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
  }
  const __m256 rows[6][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                             {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < 6; ++i) {
    float* cr = c + i * ldc;
    __m256 lo = rows[i][0], hi = rows[i][1];
    if (acc) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
    }
    _mm256_storeu_ps(cr, lo);
    _mm256_storeu_ps(cr + 8, hi);
  }
}

void sgemm_small_m_avx2(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                        const float* b, int64_t ldb, float* c, int64_t ldc) {
  small_m_gemm(m, n, k, a, lda, b, ldb, c, ldc);
}
#else
bool sgemm_avx2_supported() { return false; }
void sgemm_kernel_avx2(int64_t, const float*, const float*, int64_t, float*, int64_t, bool) {}
void sgemm_small_m_avx2(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                        float*, int64_t) {}
#endif

}  // namespace cpu
}  // namespace needle
