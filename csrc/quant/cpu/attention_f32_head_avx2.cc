// attention_f32_head_avx2.cc: one (batch, head) of the fused attention, compiled with AVX2 so
// its elementwise softmax loops, NaN scans and K transpose run 8 floats wide (entered only where
// attention_f32_matches_needle(): the CPU has AVX2+FMA). Elementwise float operations give the
// same bits at any width; nothing is reassociated (no -ffast-math, fp-contract off).
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "ndarray/cpu/vmath.h"
#include "quant/cpu/attention_f32.h"
#include "quant/cpu/float_layers.h"

namespace needle_qc {

namespace {

constexpr size_t kNeedleSmallM = 4;  // at or below this many rows Needle's sgemm streams

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
  needle_exp_row(x, n, masked_from);
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

}  // namespace

// One (batch, head): probs = softmax(q kᵀ / scale + mask), result = probs v. kt: D x Tk scratch.
// False when a NaN shows up in the logits or in v (see attention_f32).
bool attention_head_avx2(const float* q, size_t qst, const float* k, size_t kst, const float* v,
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

}  // namespace needle_qc
