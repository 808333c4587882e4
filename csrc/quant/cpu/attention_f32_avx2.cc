// attention_f32_avx2.cc: the AVX2 K block of chain_gemm_f32: 4 rows x 16 columns of FMA chains
// (one broadcast of a, two loads of b per k), masked loads and stores for the last columns.
#include <immintrin.h>

#include <algorithm>

#include "quant/cpu/attention_f32.h"

namespace needle_qc {

namespace {

// Lanes [0, count) of a vector, count clamped to [0, 8].
__m256i lane_mask(size_t count) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int n = static_cast<int>(std::min<size_t>(count, 8));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

template <size_t R>
void rows_avx2(size_t n, size_t kc, const float* a, size_t lda, const float* b, size_t ldb,
               float* c, size_t ldc, bool acc) {
  for (size_t j = 0; j < n; j += 16) {
    const size_t cols = std::min<size_t>(16, n - j);
    const __m256i m0 = lane_mask(cols), m1 = lane_mask(cols > 8 ? cols - 8 : 0);
    __m256 c0[R], c1[R];
#pragma GCC unroll 4
    for (size_t r = 0; r < R; ++r) c0[r] = c1[r] = _mm256_setzero_ps();
    for (size_t p = 0; p < kc; ++p) {
      const float* bp = b + p * ldb + j;
      const __m256 b0 = cols == 16 ? _mm256_loadu_ps(bp) : _mm256_maskload_ps(bp, m0);
      const __m256 b1 = cols == 16 ? _mm256_loadu_ps(bp + 8) : _mm256_maskload_ps(bp + 8, m1);
#pragma GCC unroll 4
      for (size_t r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
        c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
        c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
      }
    }
    if (cols == 16) {
#pragma GCC unroll 4
      for (size_t r = 0; r < R; ++r) {
        float* cr = c + r * ldc + j;
        if (acc) {  // Needle's sgemm: the new block plus what c holds
          c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(cr));
          c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(cr + 8));
        }
        _mm256_storeu_ps(cr, c0[r]);
        _mm256_storeu_ps(cr + 8, c1[r]);
      }
      continue;
    }
    // the last columns through a buffer: masked stores are microcoded (slow) on some CPUs
    alignas(32) float buf[R * 16];
#pragma GCC unroll 4
    for (size_t r = 0; r < R; ++r) {
      _mm256_store_ps(buf + r * 16, c0[r]);
      _mm256_store_ps(buf + r * 16 + 8, c1[r]);
    }
    for (size_t r = 0; r < R; ++r)
      for (size_t x = 0; x < cols; ++x) {
        float& dst = c[r * ldc + j + x];
        dst = acc ? buf[r * 16 + x] + dst : buf[r * 16 + x];
      }
  }
}

}  // namespace

void chain_block_f32_avx2(size_t m, size_t n, size_t kc, const float* a, size_t lda,
                          const float* b, size_t ldb, float* c, size_t ldc, bool acc) {
  size_t i = 0;
  for (; i + 4 <= m; i += 4) rows_avx2<4>(n, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, acc);
  for (; i < m; ++i) rows_avx2<1>(n, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, acc);
}

}  // namespace needle_qc
