// Streaming kernel for m <= 4 rows, compiled once per instruction set (internal linkage each).
#pragma once

#include <cstdint>

namespace needle {
namespace cpu {
namespace {

// Plain loops only: this header is compiled with AVX2 flags too, and an std:: template instantiated
// there could be the copy the linker keeps for baseline code.
// C rows stay in L1 (m x kCols floats) while B streams once, row segment by row segment.
inline void small_m_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                         const float* b, int64_t ldb, float* c, int64_t ldc) {
  constexpr int64_t kCols = 4096;
  for (int64_t j0 = 0; j0 < n; j0 += kCols) {
    const int64_t w = n - j0 < kCols ? n - j0 : kCols;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < w; ++j) c[i * ldc + j0 + j] = 0.0f;
    }
    int64_t p = 0;
    // Four B rows per pass: a quarter of the C loads/stores, four sequential memory streams.
    for (; p + 4 <= k; p += 4) {
      const float* __restrict b0 = b + p * ldb + j0;
      const float* __restrict b1 = b0 + ldb;
      const float* __restrict b2 = b1 + ldb;
      const float* __restrict b3 = b2 + ldb;
      for (int64_t i = 0; i < m; ++i) {
        const float* ar = a + i * lda + p;
        const float a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3];
        float* __restrict crow = c + i * ldc + j0;
        for (int64_t j = 0; j < w; ++j) {
          crow[j] += (a0 * b0[j] + a1 * b1[j]) + (a2 * b2[j] + a3 * b3[j]);
        }
      }
    }
    for (; p < k; ++p) {
      const float* __restrict brow = b + p * ldb + j0;
      for (int64_t i = 0; i < m; ++i) {
        const float av = a[i * lda + p];
        float* __restrict crow = c + i * ldc + j0;
        for (int64_t j = 0; j < w; ++j) crow[j] += av * brow[j];
      }
    }
  }
}

}  // namespace
}  // namespace cpu
}  // namespace needle
