// Packed, cache-blocked float32 GEMM with a run-time chosen register-blocked microkernel.
#pragma once

#include <cstdint>

namespace needle {
namespace cpu {

constexpr int kSgemmMR = 6;   // microkernel rows (broadcast A values)
constexpr int kSgemmNR = 16;  // microkernel columns (two 8-float vectors)
constexpr int kSgemm512MR = 12;  // AVX-512 microkernel rows
constexpr int kSgemm512NR = 32;  // AVX-512 microkernel columns (two 16-float vectors)

// c[0:MR, 0:NR] (row stride ldc) = (acc ? c : 0) + a_pack (kc x MR, k-major) @ b (kc x NR, row
// stride ldb); MR x NR is 6x16 for the portable and AVX2 kernels, 12x32 for AVX-512.
using SgemmMicroKernel = void (*)(int64_t kc, const float* a_pack, const float* b, int64_t ldb,
                                  float* c, int64_t ldc, bool acc);
// c[0:m, 0:n] = a (m x k, row stride lda) @ b (k x n, row stride ldb) for m <= 4: a streaming
// kernel for matrix-vector-like shapes where packing B would cost more than the math.
using SgemmSmallMKernel = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                   const float* b, int64_t ldb, float* c, int64_t ldc);

bool sgemm_avx2_supported();
void sgemm_kernel_avx2(int64_t kc, const float* a_pack, const float* b, int64_t ldb, float* c,
                       int64_t ldc, bool acc);
bool sgemm_avx512_supported();
void sgemm_kernel_avx512(int64_t kc, const float* a_pack, const float* b, int64_t ldb, float* c,
                         int64_t ldc, bool acc);
void sgemm_small_m_avx2(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                        const float* b, int64_t ldb, float* c, int64_t ldc);

// C (m x n, row-major, contiguous) = A (m x k) @ B (k x n); multithreaded.
void sgemm(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c);

}  // namespace cpu
}  // namespace needle
