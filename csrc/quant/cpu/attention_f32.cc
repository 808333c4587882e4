// attention_f32.cc: the fused attention's driver (heads split across threads) and the scalar K
// block of chain_gemm_f32; one head's work is in attention_f32_head_avx2.cc.
#include "quant/cpu/attention_f32.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "quant/cpu/parallel.h"
#include "quant/cpu/quant.h"

#if defined(NEEDLE_QC_X86)
#include "ndarray/cpu/vmath.h"
#endif

namespace needle_qc {

namespace {

constexpr size_t kNeedleKC = 256;        // Needle sgemm's K block
constexpr double kNeedleOneThread = 2e6;  // below this many flops its sgemm runs on one thread

}  // namespace

bool attention_f32_matches_needle() {
#if defined(NEEDLE_QC_X86)
  return needle::cpu::vmath_avx2_supported();
#else
  return false;
#endif
}

bool attention_f32_shape_supported(const AttnShape& s) {
  if (s.b == 0 || s.h == 0 || s.tq == 0 || s.tk == 0 || s.d == 0) return false;
  return 2.0 * static_cast<double>(s.tq) * static_cast<double>(s.tk) *
             static_cast<double>(s.d) < kNeedleOneThread;
}

void chain_block_f32_scalar(size_t m, size_t n, size_t kc, const float* a, size_t lda,
                            const float* b, size_t ldb, float* c, size_t ldc, bool acc) {
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      float t = 0.0f;
      for (size_t p = 0; p < kc; ++p) t = std::fma(a[i * lda + p], b[p * ldb + j], t);
      c[i * ldc + j] = acc ? t + c[i * ldc + j] : t;
    }
}

void chain_gemm_f32(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
                    size_t ldb, float* c, size_t ldc) {
  if (k == 0) {
    for (size_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  const ChainBlockFn block =
      selected_isa() == Isa::scalar ? chain_block_f32_scalar : chain_block_f32_avx2;
  for (size_t k0 = 0; k0 < k; k0 += kNeedleKC)
    block(m, n, std::min(kNeedleKC, k - k0), a + k0, lda, b + k0 * ldb, ldb, c, ldc, k0 > 0);
}

bool attention_f32(const AttnOperand& q, const AttnOperand& k, const AttnOperand& v,
                   const AttnShape& s, bool causal, float* result, float* probs) {
  // numpy's logits / np.float32(math.sqrt(D)): sqrt in double, rounded once
  const float scale = static_cast<float>(std::sqrt(static_cast<double>(s.d)));
  const size_t heads = s.b * s.h;
  const size_t flops = 4 * s.tq * s.tk * s.d + 1;
  std::atomic<bool> finished{true};
  // a (20, 20, 32) head (5e4 flops) takes ~1.5 us: chunks of >= 3 such heads pay for waking a
  // worker (measured: 8 of them split in two run faster than on one thread)
  parallel_for(heads, std::max<size_t>(1, size_t{160000} / flops), [&](size_t lo, size_t hi) {
    std::vector<float> scratch(attention_head_scratch(s));
    std::vector<size_t> row_scratch(s.tq);
    for (size_t x = lo; x < hi && finished.load(std::memory_order_relaxed); ++x) {
      const size_t bi = x / s.h, head = x % s.h;
      if (!attention_head_avx2(q.data + bi * q.sb + head * q.sh, q.st,
                               k.data + bi * k.sb + head * k.sh, k.st,
                               v.data + bi * v.sb + head * v.sh, v.st, s, causal, scale,
                               scratch.data(), row_scratch.data(), result + x * s.tq * s.d,
                               probs + x * s.tq * s.tk))
        finished.store(false, std::memory_order_relaxed);
    }
  });
  return finished.load();
}

#if !defined(NEEDLE_QC_X86)
void chain_block_f32_avx2(size_t m, size_t n, size_t kc, const float* a, size_t lda,
                          const float* b, size_t ldb, float* c, size_t ldc, bool acc) {
  chain_block_f32_scalar(m, n, kc, a, lda, b, ldb, c, ldc, acc);
}
void needle_small_m_gemm_f32(size_t, size_t, size_t, const float*, size_t, const float*, size_t,
                             float*, size_t) {}
size_t attention_head_scratch(const AttnShape&) { return 0; }
bool attention_head_avx2(const float*, size_t, const float*, size_t, const float*, size_t,
                         const AttnShape&, bool, float, float*, size_t*, float*, float*) {
  return false;  // never reached: attention_f32_matches_needle() is false off x86
}
#endif

}  // namespace needle_qc
