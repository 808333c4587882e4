// cpu_weight_int8.cc: Python bindings of the int8 / uint8 weight-only GEMM and its naive twin.
#include <cmath>

#include "quant/bind/args.h"
#include "quant/cpu/weight_int8.h"

namespace needle_qc {

namespace {

// The weight payload as raw bytes plus its signedness; any other dtype is refused.
struct WeightBytes {
  py::array arr;
  const uint8_t* data = nullptr;
  bool is_unsigned = false;
  size_t K = 0, N = 0;
};

WeightBytes weight_bytes(const py::handle& obj) {
  if (!py::isinstance<py::array>(obj)) bad_arg("w_q", "expected a numpy array");
  WeightBytes w;
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.dtype().is(py::dtype::of<uint8_t>())) {
    w.is_unsigned = true;
    auto u = as_array<uint8_t>(a, "w_q", 2);
    w.data = u.data();
    w.arr = u;
  } else if (a.dtype().is(py::dtype::of<int8_t>())) {
    auto s = as_array<int8_t>(a, "w_q", 2);
    w.data = reinterpret_cast<const uint8_t*>(s.data());
    w.arr = s;
  } else {
    bad_arg("w_q", "expected dtype int8 or uint8, got " + std::string(py::str(a.dtype())));
  }
  w.K = w.arr.shape(0);
  w.N = w.arr.shape(1);
  if (w.K == 0 || w.N == 0) bad_arg("w_q", "must have K > 0 and N > 0");
  return w;
}

// Checked (scales, zero points) of shape [N] (group_size 0) or [ceil(K / g), N].
struct QParams {
  py::array_t<float, py::array::c_style> scales;
  py::array_t<int32_t, py::array::c_style> zp;
  const int32_t* zp_data = nullptr;
};

QParams qparams(const WeightBytes& w, const py::handle& s_obj, const py::handle& z_obj, long g) {
  if (g < 0) bad_arg("group_size", "must be >= 0 (0: one scale per column)");
  const size_t groups = g == 0 ? 1 : (w.K + g - 1) / g;
  const std::string want = g == 0 ? "(" + std::to_string(w.N) + ",) = (N,)"
                                  : "(" + std::to_string(groups) + ", " + std::to_string(w.N) +
                                        ") = (ceil(K / group_size), N)";
  auto shape_ok = [&](const py::array& a) {
    return g == 0 ? a.ndim() == 1 && size_t(a.shape(0)) == w.N
                  : a.ndim() == 2 && size_t(a.shape(0)) == groups && size_t(a.shape(1)) == w.N;
  };
  QParams p;
  p.scales = as_array<float>(s_obj, "scales");
  if (!shape_ok(p.scales)) bad_arg("scales", "expected shape " + want);
  require_finite_positive(p.scales.data(), p.scales.size(), "scales");
  if (!z_obj.is_none()) {
    p.zp = as_array<int32_t>(z_obj, "zero_points");
    if (!shape_ok(p.zp)) bad_arg("zero_points", "expected shape " + want + " like scales");
    require_in_range(p.zp.data(), p.zp.size(), w.is_unsigned ? 0 : -128,
                     w.is_unsigned ? 255 : 127, "zero_points");
    p.zp_data = p.zp.data();
  }
  return p;
}

PackedWeightInt8 pack(const py::handle& q_obj, const py::handle& s_obj, const py::handle& z_obj,
                      long g) {
  const WeightBytes w = weight_bytes(q_obj);
  const QParams p = qparams(w, s_obj, z_obj, g);
  py::gil_scoped_release nogil;
  return pack_weight_int8(w.data, w.is_unsigned, w.K, w.N, p.scales.data(), p.zp_data, size_t(g));
}

py::array_t<float, py::array::c_style> checked_x(const py::handle& x_obj, size_t K) {
  auto x = as_array<float>(x_obj, "x", 2);
  if (size_t(x.shape(1)) != K)
    bad_arg("x", "has K = " + std::to_string(x.shape(1)) + " but the weights have K = " +
                     std::to_string(K));
  return x;
}

const float* checked_bias(const py::handle& b_obj, size_t N,
                          py::array_t<float, py::array::c_style>& keep) {
  if (b_obj.is_none()) return nullptr;
  keep = as_array<float>(b_obj, "bias", 1);
  if (size_t(keep.shape(0)) != N) bad_arg("bias", "expected length N = " + std::to_string(N));
  return keep.data();
}

py::array gemm(const py::handle& x_obj, const PackedWeightInt8& w, const py::handle& b_obj) {
  auto x = checked_x(x_obj, w.K);
  py::array_t<float, py::array::c_style> bias;
  const float* b = checked_bias(b_obj, w.N, bias);
  const size_t M = x.shape(0);
  py::array_t<float> y({py::ssize_t(M), py::ssize_t(w.N)});
  float* yp = y.mutable_data();
  const Isa isa = selected_isa();
  py::gil_scoped_release nogil;
  gemm_f32_wint8(x.data(), M, w, b, isa, yp);
  return y;
}

// Plain loops over the unpacked inputs, in the documented order (weight_int8.h): bit-identical
// to gemm_f32_wint8 on every ISA path.
py::array gemm_naive(const py::handle& x_obj, const py::handle& q_obj, const py::handle& s_obj,
                     const py::handle& z_obj, long g, const py::handle& b_obj) {
  const WeightBytes w = weight_bytes(q_obj);
  const QParams p = qparams(w, s_obj, z_obj, g);
  auto x = checked_x(x_obj, w.K);
  py::array_t<float, py::array::c_style> bias;
  const float* b = checked_bias(b_obj, w.N, bias);
  const size_t M = x.shape(0), K = w.K, N = w.N;
  std::vector<float> dec(K * N);
  for (size_t k = 0; k < K; ++k)
    for (size_t n = 0; n < N; ++n) {
      const size_t at = (g == 0 ? 0 : k / g) * N + n;
      const uint8_t byte = w.data[k * N + n];
      const int32_t v = w.is_unsigned ? int32_t(byte) : int32_t(int8_t(byte));
      dec[k * N + n] = float(v - (p.zp_data ? p.zp_data[at] : 0)) * p.scales.data()[at];
    }
  py::array_t<float> y({py::ssize_t(M), py::ssize_t(N)});
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (size_t k = 0; k < K; ++k) acc = std::fma(x.data()[m * K + k], dec[k * N + n], acc);
      y.mutable_data()[m * N + n] = acc + (b ? b[n] : 0.0f);
    }
  return y;
}

}  // namespace

void bind_weight_int8(py::module_& m) {
  py::class_<PackedWeightInt8>(m, "PackedWeightInt8",
                               "int8 / uint8 weights [K, N] with fp32 scales (and int32 zero "
                               "points) packed in 16-column panels.")
      .def_property_readonly("format",
                             [](const PackedWeightInt8& w) { return w.is_unsigned ? "uint8"
                                                                                  : "int8"; })
      .def_property_readonly("K", [](const PackedWeightInt8& w) { return w.K; })
      .def_property_readonly("N", [](const PackedWeightInt8& w) { return w.N; })
      .def_property_readonly("group_size", [](const PackedWeightInt8& w) { return w.group_size; })
      .def_property_readonly("has_zero_point", &PackedWeightInt8::has_zero_point)
      .def_property_readonly("nbytes", &PackedWeightInt8::nbytes);
  m.def("pack_weight_int8", &pack, py::arg("w_q"), py::arg("scales"),
        py::arg("zero_points") = py::none(), py::arg("group_size") = 0,
        "Pack w_q int8|uint8[K, N] with scales f32[N] (group_size 0) or f32[ceil(K/g), N] and "
        "optional zero_points int32 of the same shape (all-zero ones are dropped).");
  m.def("gemm_f32_wint8", &gemm, py::arg("x"), py::arg("packed"), py::arg("bias") = py::none(),
        "y = x @ (fp32(q - z) * s) + bias: fp32 FMA accumulation in k order, weights decoded "
        "in the microkernel.");
  m.def("gemm_f32_wint8_naive", &gemm_naive, py::arg("x"), py::arg("w_q"), py::arg("scales"),
        py::arg("zero_points") = py::none(), py::arg("group_size") = 0,
        py::arg("bias") = py::none(),
        "Naive twin of gemm_f32_wint8 (same summation order, bit-identical).");
}

}  // namespace needle_qc
