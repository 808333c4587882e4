// attention_f32_small_m.cc: Needle sgemm's m <= 4 streaming kernel for the fused attention. Built
// with the NDArray module's AVX2 flags and its default contraction (-ffp-contract=fast, see
// cpu.cmake): its inner sums are written as a * b + c, which that build fuses into FMAs, so the
// same source with the same flags gives the same bits.
#include <cstdint>

#include "ndarray/cpu/sgemm_small_m.h"
#include "quant/cpu/attention_f32.h"

namespace needle_qc {

void needle_small_m_gemm_f32(size_t m, size_t n, size_t k, const float* a, size_t lda,
                             const float* b, size_t ldb, float* c, size_t ldc) {
  needle::cpu::small_m_gemm(static_cast<int64_t>(m), static_cast<int64_t>(n),
                            static_cast<int64_t>(k), a, static_cast<int64_t>(lda), b,
                            static_cast<int64_t>(ldb), c, static_cast<int64_t>(ldc));
}

}  // namespace needle_qc
