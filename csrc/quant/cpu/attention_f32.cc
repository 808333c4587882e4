// attention_f32.cc: the fused attention's driver (heads split across threads), its row softmax
// and the scalar K block of chain_gemm_f32.
#include "quant/cpu/attention_f32.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "quant/cpu/float_layers.h"
#include "quant/cpu/parallel.h"
#include "quant/cpu/quant.h"

#if defined(NEEDLE_QC_X86)
#include "ndarray/cpu/vmath.h"
#endif

namespace needle_qc {

namespace {

constexpr size_t kNeedleKC = 256;        // Needle sgemm's K block
constexpr size_t kNeedleSmallM = 4;      // at or below this many rows it streams (small_m)
constexpr double kNeedleOneThread = 2e6;  // below this many flops its sgemm runs on one thread

// The largest entry of a row of logits, or NaN if it holds one (8 lanes: the loop vectorizes).
float row_max(const float* x, size_t n) {
  float lane[8];
  int nan[8] = {};
  for (float& l : lane) l = -INFINITY;
  size_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int i = 0; i < 8; ++i) {
      nan[i] |= x[j + i] != x[j + i];
      lane[i] = x[j + i] > lane[i] ? x[j + i] : lane[i];
    }
  float m = -INFINITY;
  bool any_nan = false;
  for (int i = 0; i < 8; ++i) {
    m = lane[i] > m ? lane[i] : m;
    any_nan |= nan[i] != 0;
  }
  for (; j < n; ++j) {
    any_nan |= x[j] != x[j];
    m = x[j] > m ? x[j] : m;
  }
  return any_nan ? NAN : m;
}

bool has_nan(const float* x, size_t rows, size_t cols, size_t stride) {
  int nan = 0;
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) nan |= x[i * stride + j] != x[i * stride + j];
  return nan != 0;
}

#if defined(NEEDLE_QC_X86)
// Needle's exp clamps its argument at -104 before anything else (exp8_full in vmath_avx2.cc),
// so every x <= -104 gives exp(-104), which rounds to +0: masked logits need no exp call.
constexpr float kExpFloor = -104.0f;

float exp_at_floor() {
  static const float v = [] {
    float x = kExpFloor, y = 0.0f;
    needle::cpu::exp_avx2(&x, &y, 1);
    return y;
  }();
  return v;
}

// exp in place over x[0, n) where x[masked_from, n) are the masked columns.
void needle_exp_row(float* x, size_t n, size_t masked_from) {
  bool floor = true;
  for (size_t j = masked_from; j < n; ++j) floor = floor && x[j] <= kExpFloor;
  const size_t len = floor ? masked_from : n;
  needle::cpu::exp_avx2(x, x, static_cast<int64_t>(len));
  std::fill(x + len, x + n, exp_at_floor());
}
#endif

// In place over one row of logits (x = q·k), the eager ops one after another: x / scale,
// + mask, - max, exp, / (0 + pairwise sum). `masked_from`: first column that gets -FLT_MAX.
// False (row unfinished) when the row holds a NaN: see attention_f32.
bool softmax_row(float* x, size_t n, float scale, size_t masked_from) {
  for (size_t j = 0; j < n; ++j) x[j] = x[j] / scale;
  // the unmasked entries add -0.0, which leaves every float as it is
  for (size_t j = masked_from; j < n; ++j) x[j] = x[j] + -FLT_MAX;
  const float m = row_max(x, n);
  if (m != m) return false;
  for (size_t j = 0; j < n; ++j) x[j] = x[j] - m;
#if defined(NEEDLE_QC_X86)
  needle_exp_row(x, n, masked_from);
#endif
  const float sum = 0.0f + pairwise_sum_f32(x, n);  // Needle's reduce_sum adds it to 0
  for (size_t j = 0; j < n; ++j) x[j] = x[j] / sum;
  return true;
}

// c = a @ b as Needle's sgemm computes it on one thread for this m.
void needle_gemm(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
                 size_t ldb, float* c, size_t ldc) {
  if (m <= kNeedleSmallM) return needle_small_m_gemm_f32(m, n, k, a, lda, b, ldb, c, ldc);
  chain_gemm_f32(m, n, k, a, lda, b, ldb, c, ldc);
}

// One (batch, head): probs = softmax(q kᵀ / scale + mask), result = probs v. kt: D x Tk scratch.
// False when a NaN shows up in the logits or in v (see attention_f32).
bool attention_head(const float* q, size_t qst, const float* k, size_t kst, const float* v,
                    size_t vst, const AttnShape& s, bool causal, float scale, float* kt,
                    float* result, float* probs) {
  if (has_nan(v, s.tk, s.d, vst)) return false;
  for (size_t j = 0; j < s.tk; ++j)
    for (size_t d = 0; d < s.d; ++d) kt[d * s.tk + j] = k[j * kst + d];
  needle_gemm(s.tq, s.tk, s.d, q, qst, kt, s.tk, probs, s.tk);
  // Needle's mask: -FLT_MAX where j - i >= Tk - Tq + 1
  const long offset = static_cast<long>(s.tk) - static_cast<long>(s.tq) + 1;
  for (size_t i = 0; i < s.tq; ++i) {
    const long first = std::max(0L, static_cast<long>(i) + offset);
    const size_t masked_from = causal ? std::min(s.tk, static_cast<size_t>(first)) : s.tk;
    if (!softmax_row(probs + i * s.tk, s.tk, scale, masked_from)) return false;
  }
  needle_gemm(s.tq, s.d, s.tk, probs, s.tk, v, vst, result, s.d);
  return true;
}

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
  // a head costs ~4x its flops at these sizes (softmax, exp): split above ~1 Mflop-equivalent
  parallel_for(heads, std::max<size_t>(1, (size_t{1} << 18) / flops), [&](size_t lo, size_t hi) {
    std::vector<float> kt(s.d * s.tk);
    for (size_t x = lo; x < hi && finished.load(std::memory_order_relaxed); ++x) {
      const size_t bi = x / s.h, head = x % s.h;
      if (!attention_head(q.data + bi * q.sb + head * q.sh, q.st,
                          k.data + bi * k.sb + head * k.sh, k.st,
                          v.data + bi * v.sb + head * v.sh, v.st, s, causal, scale, kt.data(),
                          result + x * s.tq * s.d, probs + x * s.tq * s.tk))
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
#endif

}  // namespace needle_qc
