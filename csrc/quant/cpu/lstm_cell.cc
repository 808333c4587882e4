// lstm_cell.cc: the fused LSTM step drivers (fp32 and int8) and their scalar row kernels.
#include "quant/cpu/lstm_cell.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/cpu/lstm_gates.h"

namespace needle_qc {

namespace {

bool use_avx2(Isa isa) { return isa != Isa::scalar; }

// out[j] = Σ_k a[k] w[k, j], one FMA chain per j in k order (starting from +0).
void gemm_f32_scalar(const float* a, size_t k, const float* w, size_t n, float* out) {
  for (size_t j = 0; j < n; ++j) out[j] = 0.0f;
  for (size_t t = 0; t < k; ++t)
    for (size_t j = 0; j < n; ++j) out[j] = std::fma(a[t], w[t * n + j], out[j]);
}

// out[j] = Σ_k a[k] w[k, j] in int32 over the int8 pair layout of pack_lstm_s8 (exact).
void gemm_s16s8_scalar(const int16_t* a, size_t k_pairs, const int8_t* w, size_t n,
                       int32_t* out) {
  for (size_t j = 0; j < n; ++j) out[j] = 0;
  for (size_t p = 0; p < k_pairs; ++p)
    for (size_t j = 0; j < n; ++j)
      out[j] += int32_t(a[2 * p]) * w[(p * n + j) * 2] +
                int32_t(a[2 * p + 1]) * w[(p * n + j) * 2 + 1];
}

void tail(const float* gates, const LstmDims& d, const float* c, Isa isa, float* h_out,
          float* c_out) {
  if (use_avx2(isa))
    lstm::tail_avx2(gates, d.off, c, d.hidden, h_out, c_out);
  else
    lstm::tail_scalar(gates, d.off, c, 0, d.hidden, h_out, c_out);
}

void add_biases(float* g, const float* b_ih, const float* b_hh, size_t n4) {
  if (b_ih == nullptr) return;
  for (size_t j = 0; j < n4; ++j) g[j] = g[j] + b_ih[j];
  for (size_t j = 0; j < n4; ++j) g[j] = g[j] + b_hh[j];
}

}  // namespace

void lstm_cell_f32(const float* x, const float* h, const float* c, const float* w_ih,
                   const float* w_hh, const float* b_ih, const float* b_hh, const LstmDims& d,
                   Isa isa, float* h_out, float* c_out) {
  const size_t n4 = 4 * d.hidden;
  std::vector<float> gx(n4), gh(n4);
  auto gemm = use_avx2(isa) ? lstm::gemm_f32_avx2 : gemm_f32_scalar;
  for (size_t m = 0; m < d.n; ++m) {
    gemm(x + m * d.in, d.in, w_ih, n4, gx.data());
    gemm(h + m * d.hidden, d.hidden, w_hh, n4, gh.data());
    for (size_t j = 0; j < n4; ++j) gx[j] = gx[j] + gh[j];
    add_biases(gx.data(), b_ih, b_hh, n4);
    tail(gx.data(), d, c + m * d.hidden, isa, h_out + m * d.hidden, c_out + m * d.hidden);
  }
}

size_t lstm_packed_s8_size(size_t k, size_t n) { return (k + 1) / 2 * n * 2; }

void pack_lstm_s8(const int8_t* w, size_t k, size_t n, int8_t* packed) {
  for (size_t p = 0; p < (k + 1) / 2; ++p)
    for (size_t j = 0; j < n; ++j)
      for (size_t r = 0; r < 2; ++r) {
        const size_t t = 2 * p + r;
        packed[(p * n + j) * 2 + r] = t < k ? w[t * n + j] : 0;
      }
}

namespace {

// DynamicQuantizeLinear's (s, z) of v[0, count); false on NaN/Inf.
bool dynamic_qparams(const float* v, size_t count, LstmQuant& q) {
  float lo = 0.0f, hi = 0.0f;
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(v[i])) return false;
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
  }
  q.qmin = 0;
  q.qmax = 255;
  q.s = (hi - lo) / 255.0f;
  if (!(q.s > 0.0f)) {
    q.s = 1.0f;
    q.z = 0;
    return true;
  }
  q.z = static_cast<int32_t>(std::nearbyint(lstm::clampf(0.0f - lo / q.s, 0.0f, 255.0f)));
  return true;
}

// rows x width of v quantized with q, centred (q - z) into int16 rows of `stride` at out (the
// pad columns zero).
bool centred_rows(const float* v, size_t rows, size_t width, LstmQuant& q, Isa isa,
                  size_t stride, int16_t* out) {
  if (q.dynamic && !dynamic_qparams(v, rows * width, q)) return false;
  const bool s8 = q.qmin < 0;
  std::vector<uint8_t> raw(rows * width);
  auto span = use_avx2(isa) ? quantize_span_avx2 : quantize_span_scalar;
  if (!span(v, rows * width, &q.s, &q.z, 0, q.qmin, q.qmax, s8, raw.data())) return false;
  std::fill(out, out + rows * stride, int16_t(0));
  for (size_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < width; ++i) {
      const uint8_t b = raw[r * width + i];
      const int32_t value = s8 ? int32_t(static_cast<int8_t>(b)) : int32_t(b);
      out[r * stride + i] = static_cast<int16_t>(value - q.z);
    }
  return true;
}

// gates[j] = f32(acc_x[j]) mx[j] + f32(acc_h[j]) mh[j] (+ biases): the int8 cell's gate sum.
void int8_gates(const int32_t* acc_x, const float* mx, const int32_t* acc_h, const float* mh,
                const float* b_ih, const float* b_hh, size_t n4, float* g) {
  for (size_t j = 0; j < n4; ++j)
    g[j] = static_cast<float>(acc_x[j]) * mx[j] + static_cast<float>(acc_h[j]) * mh[j];
  add_biases(g, b_ih, b_hh, n4);
}

}  // namespace

bool qlstm_cell(const float* x, const float* h, const float* c, const QLstmWeights& w,
                const float* b_ih, const float* b_hh, const LstmDims& d, LstmQuant qx,
                LstmQuant qh, Isa isa, float* h_out, float* c_out) {
  const size_t n4 = 4 * d.hidden, in_pairs = (d.in + 1) / 2, h_pairs = (d.hidden + 1) / 2;
  std::vector<int16_t> ax(d.n * 2 * in_pairs), ah(d.n * 2 * h_pairs);
  if (!centred_rows(x, d.n, d.in, qx, isa, 2 * in_pairs, ax.data()) ||
      !centred_rows(h, d.n, d.hidden, qh, isa, 2 * h_pairs, ah.data()))
    return false;
  std::vector<float> mx(n4), mh(n4), g(n4);
  for (size_t j = 0; j < n4; ++j) {
    mx[j] = qx.s * w.s_ih[j];
    mh[j] = qh.s * w.s_hh[j];
  }
  std::vector<int32_t> acc_x(n4), acc_h(n4);
  auto gemm = use_avx2(isa) ? lstm::gemm_s16s8_avx2 : gemm_s16s8_scalar;
  for (size_t m = 0; m < d.n; ++m) {
    gemm(ax.data() + m * 2 * in_pairs, in_pairs, w.w_ih, n4, acc_x.data());
    gemm(ah.data() + m * 2 * h_pairs, h_pairs, w.w_hh, n4, acc_h.data());
    int8_gates(acc_x.data(), mx.data(), acc_h.data(), mh.data(), b_ih, b_hh, n4, g.data());
    tail(g.data(), d, c + m * d.hidden, isa, h_out + m * d.hidden, c_out + m * d.hidden);
  }
  return true;
}

// ----------------------------------------------------------------------------- whole layers
// c_out holds the running c (the tail reads c[j] before writing c_out[j], so in place is
// exact); step t's h' goes to hs[t] and is step t + 1's h.

void lstm_layer_f32(const float* xs, const float* h0, const float* c0, const float* w_ih,
                    const float* w_hh, const float* b_ih, const float* b_hh, size_t steps,
                    const LstmDims& d, Isa isa, float* hs, float* h_out, float* c_out) {
  const size_t n4 = 4 * d.hidden, rows = steps * d.n, nh = d.n * d.hidden;
  auto gemm = use_avx2(isa) ? lstm::gemm_f32_avx2 : gemm_f32_scalar;
  std::vector<float> gx(rows * n4), gh(n4);
  for (size_t r = 0; r < rows; ++r)  // x_t W_ih of every step, before the recurrence
    gemm(xs + r * d.in, d.in, w_ih, n4, gx.data() + r * n4);
  std::copy(c0, c0 + nh, c_out);
  const float* h = h0;
  for (size_t t = 0; t < steps; ++t) {
    for (size_t m = 0; m < d.n; ++m) {
      float* g = gx.data() + (t * d.n + m) * n4;
      gemm(h + m * d.hidden, d.hidden, w_hh, n4, gh.data());
      for (size_t j = 0; j < n4; ++j) g[j] = g[j] + gh[j];
      add_biases(g, b_ih, b_hh, n4);
      tail(g, d, c_out + m * d.hidden, isa, hs + t * nh + m * d.hidden, c_out + m * d.hidden);
    }
    h = hs + t * nh;
  }
  std::copy(h, h + nh, h_out);
}

bool qlstm_layer(const float* xs, const float* h0, const float* c0, const QLstmWeights& w,
                 const float* b_ih, const float* b_hh, size_t steps, const LstmDims& d,
                 const LstmQuant* qx, const LstmQuant* qh, Isa isa, float* hs, float* h_out,
                 float* c_out) {
  const size_t n4 = 4 * d.hidden, in_pairs = (d.in + 1) / 2, h_pairs = (d.hidden + 1) / 2;
  const size_t rows = steps * d.n, nh = d.n * d.hidden, x_row = 2 * in_pairs;
  std::vector<int16_t> ax(rows * x_row), ah(d.n * 2 * h_pairs);
  std::vector<float> sx(steps);
  for (size_t t = 0; t < steps; ++t) {  // x_t quantized with its own step's qparams
    LstmQuant q = qx[t];
    int16_t* rows_t = ax.data() + t * d.n * x_row;
    if (!centred_rows(xs + t * d.n * d.in, d.n, d.in, q, isa, x_row, rows_t)) return false;
    sx[t] = q.s;
  }
  auto gemm = use_avx2(isa) ? lstm::gemm_s16s8_avx2 : gemm_s16s8_scalar;
  std::vector<int32_t> acc_x(rows * n4), acc_h(n4);
  for (size_t r = 0; r < rows; ++r)  // the integer x products of every step at once
    gemm(ax.data() + r * x_row, in_pairs, w.w_ih, n4, acc_x.data() + r * n4);
  std::vector<float> mx(n4), mh(n4), g(n4);
  std::copy(c0, c0 + nh, c_out);
  const float* h = h0;
  for (size_t t = 0; t < steps; ++t) {
    LstmQuant q = qh[t];
    if (!centred_rows(h, d.n, d.hidden, q, isa, 2 * h_pairs, ah.data())) return false;
    for (size_t j = 0; j < n4; ++j) {
      mx[j] = sx[t] * w.s_ih[j];
      mh[j] = q.s * w.s_hh[j];
    }
    for (size_t m = 0; m < d.n; ++m) {
      gemm(ah.data() + m * 2 * h_pairs, h_pairs, w.w_hh, n4, acc_h.data());
      int8_gates(acc_x.data() + (t * d.n + m) * n4, mx.data(), acc_h.data(), mh.data(), b_ih,
                 b_hh, n4, g.data());
      tail(g.data(), d, c_out + m * d.hidden, isa, hs + t * nh + m * d.hidden,
           c_out + m * d.hidden);
    }
    h = hs + t * nh;
  }
  std::copy(h, h + nh, h_out);
  return true;
}

}  // namespace needle_qc
