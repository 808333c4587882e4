// attention_f32.h: fused fp32 multi-head attention, softmax(q kᵀ / sqrt(D) [+ causal mask]) v per
// (batch, head), in the exact float32 operations of Needle's MultiHeadAttention on the bundled
// NDArray backend: its sgemm's summation order, its vector exp (ndarray/cpu/vmath_avx2.cc, built
// into this module with that module's flags), numpy's max and pairwise row sums.
#pragma once

#include <cstddef>

namespace needle_qc {

// One (B, H, T, D) operand: element strides of its first three axes, the last axis contiguous.
struct AttnOperand {
  const float* data;
  size_t sb, sh, st;
};

struct AttnShape {
  size_t b, h, tq, tk, d;
};

// True where this module reproduces the NDArray backend's bits: built for x86 and the backend's
// AVX2+FMA kernels are the ones it runs (the CPU has them and NEEDLE_CPU_NO_SIMD is not set).
bool attention_f32_matches_needle();

// True for shapes whose two products Needle's sgemm runs on one thread (2 m n k < 2e6 flops, no
// dimension 0): there its order is the one reproduced here (threads re-split rows into parts).
bool attention_f32_shape_supported(const AttnShape& s);

// result [B, H, Tq, D] and probs [B, H, Tq, Tk] (contiguous) for q [B, H, Tq, D] and k, v
// [B, H, Tk, D]; the causal mask is Needle's: -FLT_MAX where j - i >= Tk - Tq + 1, else -0.0.
// Returns false, outputs unfinished, when the logits or v hold a NaN: which NaN numpy's row max
// returns depends on its SIMD width, and which of several NaNs an FMA passes on on its operand
// order, so the caller's op-by-op path must give those bits.
bool attention_f32(const AttnOperand& q, const AttnOperand& k, const AttnOperand& v,
                   const AttnShape& s, bool causal, float* result, float* probs);

// Floats of scratch attention_head_avx2 needs for one head of shape s.
size_t attention_head_scratch(const AttnShape& s);

// One (batch, head) of attention_f32 (AVX2 build; false when a NaN shows up in the logits or v).
// scratch: attention_head_scratch(s) floats, row_scratch: Tq; q, k, v with row strides qst,
// kst, vst.
bool attention_head_avx2(const float* q, size_t qst, const float* k, size_t kst, const float* v,
                         size_t vst, const AttnShape& s, bool causal, float scale,
                         float* scratch, size_t* row_scratch, float* result, float* probs);

// c[m, n] = a[m, k] @ b[k, n] (row strides lda, ldb, ldc) in Needle sgemm's order for m > 4 on
// one thread: each block of 256 k is one FMA chain from +0 in k order; blocks after the first
// are added to c as they finish. Same bits on every ISA.
void chain_gemm_f32(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
                    size_t ldb, float* c, size_t ldc);

// One K block of chain_gemm_f32 (kc <= 256); acc adds the block to c instead of storing it.
using ChainBlockFn = void (*)(size_t m, size_t n, size_t kc, const float* a, size_t lda,
                              const float* b, size_t ldb, float* c, size_t ldc, bool acc);
void chain_block_f32_scalar(size_t m, size_t n, size_t kc, const float* a, size_t lda,
                            const float* b, size_t ldb, float* c, size_t ldc, bool acc);
void chain_block_f32_avx2(size_t m, size_t n, size_t kc, const float* a, size_t lda,
                          const float* b, size_t ldb, float* c, size_t ldc, bool acc);

// Needle sgemm's own path for m <= 4 rows on one thread (ndarray/cpu/sgemm_small_m.h compiled
// with its AVX2 flags, so its contracted multiply-adds are the same instructions).
void needle_small_m_gemm_f32(size_t m, size_t n, size_t k, const float* a, size_t lda,
                             const float* b, size_t ldb, float* c, size_t ldc);

}  // namespace needle_qc
