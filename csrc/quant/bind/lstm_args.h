// lstm_args.h: the argument checks shared by the LSTM bindings and their naive twins.
#pragma once

#include <cmath>
#include <string>

#include "quant/bind/args.h"
#include "quant/cpu/lstm_cell.h"

namespace needle_qc {

// d.off from the gate order (a permutation of "ifgo").
inline void gate_offsets(const std::string& order, LstmDims& d) {
  const std::string roles = "ifgo";
  for (size_t r = 0; r < 4; ++r) {
    const size_t at = order.size() == 4 ? order.find(roles[r]) : std::string::npos;
    if (at == std::string::npos)
      bad_arg("gate_order", "'" + order + "' is not a permutation of 'ifgo'");
    d.off[r] = at * d.hidden;
  }
}

// x [N, I], h and c [N, H] fp32, the gate order (a permutation of "ifgo") and the outputs.
struct LstmIo {
  py::array_t<float, py::array::c_style> x, h, c;
  py::array_t<float> h_out, c_out;
  LstmDims d;

  static LstmIo parse(const py::handle& x_obj, const py::handle& h_obj, const py::handle& c_obj,
                      const std::string& order) {
    LstmIo io{as_array<float>(x_obj, "x", 2), as_array<float>(h_obj, "h", 2),
              as_array<float>(c_obj, "c", 2), {}, {}, {}};
    if (io.h.shape(0) != io.x.shape(0) || io.c.shape(0) != io.x.shape(0) ||
        io.c.shape(1) != io.h.shape(1))
      bad_arg("x/h/c", "expected x [N, I] and h, c [N, H]");
    io.d.n = io.x.shape(0);
    io.d.in = io.x.shape(1);
    io.d.hidden = io.h.shape(1);
    gate_offsets(order, io.d);
    io.h_out = py::array_t<float>({io.x.shape(0), io.h.shape(1)});
    io.c_out = py::array_t<float>({io.x.shape(0), io.h.shape(1)});
    return io;
  }
};

// A layer: xs [T, N, I], h0 and c0 [N, H] fp32, the gate order; outputs hs [T, N, H], h, c.
struct LstmSeqIo {
  py::array_t<float, py::array::c_style> xs, h0, c0;
  py::array_t<float> hs, h_out, c_out;
  LstmDims d;
  size_t steps;

  static LstmSeqIo parse(const py::handle& xs_obj, const py::handle& h_obj,
                         const py::handle& c_obj, const std::string& order) {
    LstmSeqIo io{as_array<float>(xs_obj, "xs", 3), as_array<float>(h_obj, "h0", 2),
                 as_array<float>(c_obj, "c0", 2), {}, {}, {}, {}, 0};
    if (io.h0.shape(0) != io.xs.shape(1) || io.c0.shape(0) != io.xs.shape(1) ||
        io.c0.shape(1) != io.h0.shape(1))
      bad_arg("xs/h0/c0", "expected xs [T, N, I] and h0, c0 [N, H]");
    io.steps = io.xs.shape(0);
    io.d.n = io.xs.shape(1);
    io.d.in = io.xs.shape(2);
    io.d.hidden = io.h0.shape(1);
    gate_offsets(order, io.d);
    io.hs = py::array_t<float>({io.xs.shape(0), io.xs.shape(1), io.h0.shape(1)});
    io.h_out = py::array_t<float>({io.xs.shape(1), io.h0.shape(1)});
    io.c_out = py::array_t<float>({io.xs.shape(1), io.h0.shape(1)});
    return io;
  }
};

template <class T>
py::array_t<T, py::array::c_style> as_matrix(const py::handle& obj, const char* name, size_t rows,
                                             size_t cols) {
  auto a = as_array<T>(obj, name, 2);
  if (static_cast<size_t>(a.shape(0)) != rows || static_cast<size_t>(a.shape(1)) != cols)
    bad_arg(name, "expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  return a;
}

// b_ih and b_hh: both None or both [4H] fp32.
struct LstmBiases {
  py::array_t<float, py::array::c_style> b_ih, b_hh;
  bool present;
  LstmBiases(const py::object& ih, const py::object& hh, size_t n4)
      : present(!ih.is_none()) {
    if (ih.is_none() != hh.is_none()) bad_arg("b_ih/b_hh", "give both biases or neither");
    if (present) {
      b_ih = as_exact_vector<float>(ih, "b_ih", n4, "4H");
      b_hh = as_exact_vector<float>(hh, "b_hh", n4, "4H");
    }
  }
  const float* ih() const { return present ? b_ih.data() : nullptr; }
  const float* hh() const { return present ? b_hh.data() : nullptr; }
};

// Per-column weight scales: [4H], or one broadcast to 4H; finite and > 0.
inline py::array_t<float> column_scales(const py::handle& obj, const char* name, size_t n4) {
  auto s = as_vector<float>(obj, name, n4);
  require_finite_positive(s.data(), s.shape(0), name);
  py::array_t<float> out(static_cast<py::ssize_t>(n4));
  for (size_t j = 0; j < n4; ++j) out.mutable_data()[j] = s.data()[s.shape(0) == 1 ? 0 : j];
  return out;
}

// None -> dynamic; (s, z, qmin, qmax) -> static, checked.
inline LstmQuant lstm_quant(const py::object& qp, const char* name) {
  if (qp.is_none()) return LstmQuant{true, 1.0f, 0, 0, 255};
  auto t = qp.cast<py::tuple>();
  if (t.size() != 4) bad_arg(name, "expected (scale, zero_point, qmin, qmax) or None");
  LstmQuant q{false, t[0].cast<float>(), t[1].cast<int32_t>(), t[2].cast<int32_t>(),
              t[3].cast<int32_t>()};
  if (!(std::isfinite(q.s) && q.s > 0.0f)) bad_arg(name, "scale must be finite and > 0");
  const bool s8 = q.qmin < 0;
  if (q.qmin > q.qmax || q.qmin < (s8 ? -128 : 0) || q.qmax > (s8 ? 127 : 255) ||
      q.z < q.qmin || q.z > q.qmax)
    bad_arg(name, "zero point / range outside uint8 or int8");
  return q;
}

}  // namespace needle_qc
