// naive_lstm.cc: naive twins of lstm_cell_f32 / qlstm_cell: one output at a time, whole-array
// temporaries, unpacked int8 weights, quantization written out (the gate functions are
// lstm_gates.h's, the definition the numpy reference also follows).
#include <cmath>
#include <vector>

#include "quant/bind/args.h"
#include "quant/bind/lstm_args.h"
#include "quant/cpu/lstm_gates.h"

namespace needle_qc {

namespace {

// h', c' from the [N, 4H] pre-activations.
void naive_tail(const std::vector<float>& gates, const LstmDims& d, const float* c, float* h_out,
                float* c_out) {
  const size_t n4 = 4 * d.hidden;
  for (size_t m = 0; m < d.n; ++m)
    for (size_t j = 0; j < d.hidden; ++j) {
      const float* g = gates.data() + m * n4;
      const float i = lstm::gate_sigmoid(g[d.off[0] + j]);
      const float f = lstm::gate_sigmoid(g[d.off[1] + j]);
      const float gg = lstm::gate_tanh(g[d.off[2] + j]);
      const float o = lstm::gate_sigmoid(g[d.off[3] + j]);
      const float fc = f * c[m * d.hidden + j], ig = i * gg;
      c_out[m * d.hidden + j] = fc + ig;
      h_out[m * d.hidden + j] = o * lstm::gate_tanh(fc + ig);
    }
}

void naive_biases(std::vector<float>& gates, const LstmBiases& b, size_t n4) {
  if (!b.present) return;
  for (size_t e = 0; e < gates.size(); ++e) gates[e] = gates[e] + b.ih()[e % n4];
  for (size_t e = 0; e < gates.size(); ++e) gates[e] = gates[e] + b.hh()[e % n4];
}

py::tuple lstm_f32_naive(const py::handle& x_obj, const py::handle& h_obj,
                         const py::handle& c_obj, const py::handle& w_ih_obj,
                         const py::handle& w_hh_obj, const py::object& b_ih_obj,
                         const py::object& b_hh_obj, const std::string& order) {
  auto io = LstmIo::parse(x_obj, h_obj, c_obj, order);
  const LstmDims& d = io.d;
  const size_t n4 = 4 * d.hidden;
  auto w_ih = as_matrix<float>(w_ih_obj, "w_ih", d.in, n4);
  auto w_hh = as_matrix<float>(w_hh_obj, "w_hh", d.hidden, n4);
  LstmBiases b(b_ih_obj, b_hh_obj, n4);
  std::vector<float> gx(d.n * n4), gh(d.n * n4), gates(d.n * n4);
  for (size_t m = 0; m < d.n; ++m)
    for (size_t j = 0; j < n4; ++j) {
      float sx = 0.0f, sh = 0.0f;
      for (size_t k = 0; k < d.in; ++k)
        sx = std::fma(io.x.data()[m * d.in + k], w_ih.data()[k * n4 + j], sx);
      for (size_t k = 0; k < d.hidden; ++k)
        sh = std::fma(io.h.data()[m * d.hidden + k], w_hh.data()[k * n4 + j], sh);
      gx[m * n4 + j] = sx;
      gh[m * n4 + j] = sh;
    }
  for (size_t e = 0; e < gates.size(); ++e) gates[e] = gx[e] + gh[e];
  naive_biases(gates, b, n4);
  naive_tail(gates, d, io.c.data(), io.h_out.mutable_data(), io.c_out.mutable_data());
  return py::make_tuple(io.h_out, io.c_out);
}

// (q - z) of every value of v, and the scale used.
std::vector<int64_t> naive_centred(const float* v, size_t count, LstmQuant q, float& scale) {
  if (q.dynamic) {
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < count; ++i) {
      if (!std::isfinite(v[i])) bad_arg("x/h", "holds NaN (or Inf, quantized per call)");
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
    q.s = (hi - lo) / 255.0f;
    q.z = 0;
    if (q.s > 0.0f)
      q.z = static_cast<int32_t>(
          std::nearbyint(std::min(std::max(0.0f - lo / q.s, 0.0f), 255.0f)));
    else
      q.s = 1.0f;
  }
  std::vector<int64_t> out(count);
  for (size_t i = 0; i < count; ++i) {
    if (std::isnan(v[i])) bad_arg("x/h", "holds NaN (or Inf, quantized per call)");
    const float r = std::nearbyint(v[i] / q.s);
    const double t = std::min(std::max(double(r) + q.z, double(q.qmin)), double(q.qmax));
    out[i] = static_cast<int64_t>(t) - q.z;
  }
  scale = q.s;
  return out;
}

py::tuple qlstm_naive(const py::handle& x_obj, const py::handle& h_obj, const py::handle& c_obj,
                      const py::handle& w_ih_obj, const py::handle& s_ih_obj,
                      const py::handle& w_hh_obj, const py::handle& s_hh_obj,
                      const py::object& b_ih_obj, const py::object& b_hh_obj,
                      const std::string& order, const py::object& x_qp,
                      const py::object& h_qp) {
  auto io = LstmIo::parse(x_obj, h_obj, c_obj, order);
  const LstmDims& d = io.d;
  const size_t n4 = 4 * d.hidden;
  auto w_ih = as_matrix<int8_t>(w_ih_obj, "w_ih", d.in, n4);
  auto w_hh = as_matrix<int8_t>(w_hh_obj, "w_hh", d.hidden, n4);
  auto s_ih = column_scales(s_ih_obj, "s_ih", n4), s_hh = column_scales(s_hh_obj, "s_hh", n4);
  LstmBiases b(b_ih_obj, b_hh_obj, n4);
  float sx, sh;
  const auto ax = naive_centred(io.x.data(), d.n * d.in, lstm_quant(x_qp, "x_qparams"), sx);
  const auto ah = naive_centred(io.h.data(), d.n * d.hidden, lstm_quant(h_qp, "h_qparams"), sh);
  std::vector<float> gates(d.n * n4);
  for (size_t m = 0; m < d.n; ++m)
    for (size_t j = 0; j < n4; ++j) {
      int64_t accx = 0, acch = 0;
      for (size_t k = 0; k < d.in; ++k) accx += ax[m * d.in + k] * w_ih.data()[k * n4 + j];
      for (size_t k = 0; k < d.hidden; ++k) acch += ah[m * d.hidden + k] * w_hh.data()[k * n4 + j];
      const float mx = sx * s_ih.data()[j], mh = sh * s_hh.data()[j];
      gates[m * n4 + j] = float(int32_t(accx)) * mx + float(int32_t(acch)) * mh;
    }
  naive_biases(gates, b, n4);
  naive_tail(gates, d, io.c.data(), io.h_out.mutable_data(), io.c_out.mutable_data());
  return py::make_tuple(io.h_out, io.c_out);
}

}  // namespace

void bind_naive_lstm(py::module_& m) {
  m.def("lstm_cell_f32_naive", &lstm_f32_naive, py::arg("x"), py::arg("h"), py::arg("c"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("gate_order") = "ifgo");
  m.def("qlstm_cell_naive", &qlstm_naive, py::arg("x"), py::arg("h"), py::arg("c"),
        py::arg("w_ih"), py::arg("s_ih"), py::arg("w_hh"), py::arg("s_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
        py::arg("gate_order") = "ifgo", py::arg("x_qparams") = py::none(),
        py::arg("h_qparams") = py::none());
}

}  // namespace needle_qc
