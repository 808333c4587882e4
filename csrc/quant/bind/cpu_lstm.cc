// cpu_lstm.cc: Python bindings of the fused LSTM step (lstm_cell_f32, pack_lstm_s8, qlstm_cell)
// and their argument checks; the naive twins are bound by ref/naive_lstm.cc.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "quant/bind/args.h"
#include "quant/bind/lstm_args.h"
#include "quant/cpu/lstm_cell.h"

namespace needle_qc {

void bind_naive_lstm(py::module_& m);

namespace {

py::tuple lstm_f32(const py::handle& x_obj, const py::handle& h_obj, const py::handle& c_obj,
                   const py::handle& w_ih_obj, const py::handle& w_hh_obj,
                   const py::object& b_ih_obj, const py::object& b_hh_obj,
                   const std::string& order) {
  auto io = LstmIo::parse(x_obj, h_obj, c_obj, order);
  const size_t n4 = 4 * io.d.hidden;
  auto w_ih = as_matrix<float>(w_ih_obj, "w_ih", io.d.in, n4);
  auto w_hh = as_matrix<float>(w_hh_obj, "w_hh", io.d.hidden, n4);
  LstmBiases b(b_ih_obj, b_hh_obj, n4);
  const Isa isa = selected_isa();
  {
    py::gil_scoped_release nogil;
    lstm_cell_f32(io.x.data(), io.h.data(), io.c.data(), w_ih.data(), w_hh.data(), b.ih(),
                  b.hh(), io.d, isa, io.h_out.mutable_data(), io.c_out.mutable_data());
  }
  return py::make_tuple(io.h_out, io.c_out);
}

py::array pack_s8(const py::handle& w_obj) {
  auto w = as_array<int8_t>(w_obj, "weight", 2);
  const size_t k = w.shape(0), n = w.shape(1);
  py::array_t<int8_t> out(static_cast<py::ssize_t>(lstm_packed_s8_size(k, n)));
  pack_lstm_s8(w.data(), k, n, out.mutable_data());
  return out;
}

py::array_t<int8_t, py::array::c_style> as_packed(const py::handle& obj, const char* name,
                                                  size_t k, size_t n) {
  if (!py::isinstance<py::array>(obj)) bad_arg(name, "expected a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<int8_t>()) || a.ndim() != 1 ||
      static_cast<size_t>(a.size()) != lstm_packed_s8_size(k, n))
    bad_arg(name, "expected pack_lstm_s8 of a [" + std::to_string(k) + ", " +
                      std::to_string(n) + "] int8 weight");
  return py::array_t<int8_t, py::array::c_style>::ensure(a);
}

py::tuple qlstm(const py::handle& x_obj, const py::handle& h_obj, const py::handle& c_obj,
                const py::handle& w_ih_obj, const py::handle& s_ih_obj,
                const py::handle& w_hh_obj, const py::handle& s_hh_obj,
                const py::object& b_ih_obj, const py::object& b_hh_obj,
                const std::string& order, const py::object& x_qp, const py::object& h_qp) {
  auto io = LstmIo::parse(x_obj, h_obj, c_obj, order);
  const size_t n4 = 4 * io.d.hidden;
  auto w_ih = as_packed(w_ih_obj, "w_ih", io.d.in, n4);
  auto w_hh = as_packed(w_hh_obj, "w_hh", io.d.hidden, n4);
  auto s_ih = column_scales(s_ih_obj, "s_ih", n4), s_hh = column_scales(s_hh_obj, "s_hh", n4);
  LstmBiases b(b_ih_obj, b_hh_obj, n4);
  const LstmQuant qx = lstm_quant(x_qp, "x_qparams"), qh = lstm_quant(h_qp, "h_qparams");
  const Isa isa = selected_isa();
  bool ok;
  {
    py::gil_scoped_release nogil;
    QLstmWeights w{w_ih.data(), w_hh.data(), s_ih.data(), s_hh.data()};
    ok = qlstm_cell(io.x.data(), io.h.data(), io.c.data(), w, b.ih(), b.hh(), io.d, qx, qh,
                    isa, io.h_out.mutable_data(), io.c_out.mutable_data());
  }
  if (!ok) bad_arg("x/h", "holds NaN (or Inf, quantized per call)");
  return py::make_tuple(io.h_out, io.c_out);
}

py::tuple lstm_layer(const py::handle& xs_obj, const py::handle& h_obj, const py::handle& c_obj,
                     const py::handle& w_ih_obj, const py::handle& w_hh_obj,
                     const py::object& b_ih_obj, const py::object& b_hh_obj,
                     const std::string& order) {
  auto io = LstmSeqIo::parse(xs_obj, h_obj, c_obj, order);
  const size_t n4 = 4 * io.d.hidden;
  auto w_ih = as_matrix<float>(w_ih_obj, "w_ih", io.d.in, n4);
  auto w_hh = as_matrix<float>(w_hh_obj, "w_hh", io.d.hidden, n4);
  LstmBiases b(b_ih_obj, b_hh_obj, n4);
  const Isa isa = selected_isa();
  {
    py::gil_scoped_release nogil;
    lstm_layer_f32(io.xs.data(), io.h0.data(), io.c0.data(), w_ih.data(), w_hh.data(), b.ih(),
                   b.hh(), io.steps, io.d, isa, io.hs.mutable_data(), io.h_out.mutable_data(),
                   io.c_out.mutable_data());
  }
  return py::make_tuple(io.hs, io.h_out, io.c_out);
}

// None -> every step dynamic; else a sequence of `steps` (s, z, qmin, qmax).
std::vector<LstmQuant> step_quants(const py::object& qps, const char* name, size_t steps) {
  if (qps.is_none()) return std::vector<LstmQuant>(steps, lstm_quant(qps, name));
  auto seq = qps.cast<py::sequence>();
  if (static_cast<size_t>(seq.size()) != steps)
    bad_arg(name, "expected one (scale, zero_point, qmin, qmax) per step (" +
                      std::to_string(steps) + ")");
  std::vector<LstmQuant> out;
  for (const auto& qp : seq) out.push_back(lstm_quant(py::reinterpret_borrow<py::object>(qp),
                                                      name));
  return out;
}

py::tuple qlstm_layer_bind(const py::handle& xs_obj, const py::handle& h_obj,
                           const py::handle& c_obj, const py::handle& w_ih_obj,
                           const py::handle& s_ih_obj, const py::handle& w_hh_obj,
                           const py::handle& s_hh_obj, const py::object& b_ih_obj,
                           const py::object& b_hh_obj, const std::string& order,
                           const py::object& x_qps, const py::object& h_qps) {
  auto io = LstmSeqIo::parse(xs_obj, h_obj, c_obj, order);
  const size_t n4 = 4 * io.d.hidden;
  auto w_ih = as_packed(w_ih_obj, "w_ih", io.d.in, n4);
  auto w_hh = as_packed(w_hh_obj, "w_hh", io.d.hidden, n4);
  auto s_ih = column_scales(s_ih_obj, "s_ih", n4), s_hh = column_scales(s_hh_obj, "s_hh", n4);
  LstmBiases b(b_ih_obj, b_hh_obj, n4);
  const auto qx = step_quants(x_qps, "x_qparams", io.steps);
  const auto qh = step_quants(h_qps, "h_qparams", io.steps);
  const Isa isa = selected_isa();
  bool ok;
  {
    py::gil_scoped_release nogil;
    QLstmWeights w{w_ih.data(), w_hh.data(), s_ih.data(), s_hh.data()};
    ok = qlstm_layer(io.xs.data(), io.h0.data(), io.c0.data(), w, b.ih(), b.hh(), io.steps,
                     io.d, qx.data(), qh.data(), isa, io.hs.mutable_data(),
                     io.h_out.mutable_data(), io.c_out.mutable_data());
  }
  if (!ok) bad_arg("xs/h", "holds NaN (or Inf, quantized per call)");
  return py::make_tuple(io.hs, io.h_out, io.c_out);
}

}  // namespace

void bind_lstm(py::module_& m) {
  m.def("lstm_cell_f32", &lstm_f32, py::arg("x"), py::arg("h"), py::arg("c"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
        py::arg("gate_order") = "ifgo",
        "One fp32 LSTM step: x [N, I], h, c [N, H], w_ih [I, 4H], w_hh [H, 4H], biases [4H] "
        "(both or none) -> (h', c') (lstm_cell.h)");
  m.def("pack_lstm_s8", &pack_s8, py::arg("weight"),
        "int8 [K, N] -> the int8 k-pair layout qlstm_cell takes (K rounded up to even)");
  m.def("qlstm_cell", &qlstm, py::arg("x"), py::arg("h"), py::arg("c"), py::arg("w_ih"),
        py::arg("s_ih"), py::arg("w_hh"), py::arg("s_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("gate_order") = "ifgo",
        py::arg("x_qparams") = py::none(), py::arg("h_qparams") = py::none(),
        "One int8 LSTM step (packed int8 weights, per-column scales [4H] or [1]); x_qparams / "
        "h_qparams (s, z, qmin, qmax) or None (DynamicQuantizeLinear u8 per call)");
  m.def("lstm_layer_f32", &lstm_layer, py::arg("xs"), py::arg("h0"), py::arg("c0"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("gate_order") = "ifgo",
        "A whole fp32 LSTM layer: xs [T, N, I] -> (hs [T, N, H], h_T, c_T); each step equals "
        "lstm_cell_f32 bit for bit");
  m.def("qlstm_layer", &qlstm_layer_bind, py::arg("xs"), py::arg("h0"), py::arg("c0"),
        py::arg("w_ih"), py::arg("s_ih"), py::arg("w_hh"), py::arg("s_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
        py::arg("gate_order") = "ifgo", py::arg("x_qparams") = py::none(),
        py::arg("h_qparams") = py::none(),
        "A whole int8 LSTM layer: x_qparams / h_qparams one (s, z, qmin, qmax) per step, or "
        "None (per-call DynamicQuantizeLinear of each step's x_t / h); each step equals "
        "qlstm_cell bit for bit");
  bind_naive_lstm(m);
}

}  // namespace needle_qc
