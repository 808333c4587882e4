// cpu_weight_only.cc: Python bindings of the fp16 / bf16 / int4 weight-only GEMMs.
#include "quant/bind/api_defs.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

const char* format_name(WeightFormat f) {
  return f == WeightFormat::f16 ? "float16" : f == WeightFormat::bf16 ? "bfloat16" : "int4";
}

PackedWeightLowBit pack_half(const py::handle& w_obj, WeightFormat format) {
  auto w = as_array<float>(w_obj, "w", 2);
  if (w.shape(0) == 0 || w.shape(1) == 0) bad_arg("w", "must have K > 0 and N > 0");
  py::gil_scoped_release nogil;
  return pack_weight_half(w.data(), w.shape(0), w.shape(1), format);
}

PackedWeightLowBit pack_int4(const py::handle& q_obj, const py::handle& s_obj, long group_size) {
  auto q = as_array<int8_t>(q_obj, "w_q", 2);
  const size_t K = q.shape(0), N = q.shape(1);
  if (K == 0 || N == 0) bad_arg("w_q", "must have K > 0 and N > 0");
  if (group_size < 1) bad_arg("group_size", "must be >= 1");
  const size_t groups = (K + group_size - 1) / group_size;
  auto s = as_array<float>(s_obj, "scales", 2);
  if (size_t(s.shape(0)) != groups || size_t(s.shape(1)) != N)
    bad_arg("scales", "expected shape (" + std::to_string(groups) + ", " + std::to_string(N) +
                          ") = (ceil(K / group_size), N)");
  require_finite(s.data(), s.size(), "scales");
  for (py::ssize_t i = 0; i < q.size(); ++i)
    if (q.data()[i] < -8 || q.data()[i] > 7)
      bad_arg("w_q", "entry " + std::to_string(i) + " = " + std::to_string(q.data()[i]) +
                         " is outside the int4 range [-8, 7]");
  py::gil_scoped_release nogil;
  return pack_weight_int4(q.data(), K, N, s.data(), size_t(group_size));
}

py::array gemm_lowbit(const py::handle& x_obj, const PackedWeightLowBit& w,
                      const py::handle& bias_obj, WeightFormat expect) {
  if (w.format != expect)
    bad_arg("packed", std::string("holds ") + format_name(w.format) +
                          " weights, this kernel takes " + format_name(expect));
  auto x = as_array<float>(x_obj, "x", 2);
  if (size_t(x.shape(1)) != w.K)
    bad_arg("x", "has K = " + std::to_string(x.shape(1)) + " but the weights have K = " +
                     std::to_string(w.K));
  py::array_t<float, py::array::c_style> bias;
  const float* b = nullptr;
  if (!bias_obj.is_none()) {
    bias = as_array<float>(bias_obj, "bias", 1);
    if (size_t(bias.shape(0)) != w.N) bad_arg("bias", "expected length N = " + std::to_string(w.N));
    b = bias.data();
  }
  const size_t M = x.shape(0);
  py::array_t<float> y({py::ssize_t(M), py::ssize_t(w.N)});
  float* yp = y.mutable_data();
  const Isa isa = selected_isa();
  py::gil_scoped_release nogil;
  gemm_f32_lowbit(x.data(), M, w, b, isa, yp);
  return y;
}

}  // namespace

void bind_weight_only(py::module_& m) {
  py::class_<PackedWeightLowBit> cls(
      m, "PackedWeightLowBit", "fp16 / bf16 / int4 weights [K, N] packed in 16-column panels.");
  def_lowbit_properties(cls, &format_name);
  m.def("pack_weight_f16", [](const py::handle& w) { return pack_half(w, WeightFormat::f16); },
        py::arg("w"), "Round w f32[K, N] to fp16 (nearest even) and pack it.");
  m.def("pack_weight_bf16", [](const py::handle& w) { return pack_half(w, WeightFormat::bf16); },
        py::arg("w"), "Round w f32[K, N] to bf16 (nearest even) and pack it.");
  m.def("pack_weight_int4", &pack_int4, py::arg("w_q"), py::arg("scales"), py::arg("group_size"),
        "Pack int4 values w_q int8[K, N] in [-8, 7] two per byte with scales f32[ceil(K/g), N].");
  m.def("gemm_f32_wf16",
        [](const py::handle& x, const PackedWeightLowBit& w, const py::handle& b) {
          return gemm_lowbit(x, w, b, WeightFormat::f16);
        },
        py::arg("x"), py::arg("packed"), py::arg("bias") = py::none(),
        "y = x @ float(W_f16) + bias, fp32 accumulation (F16C conversion in the microkernel).");
  m.def("gemm_f32_wbf16",
        [](const py::handle& x, const PackedWeightLowBit& w, const py::handle& b) {
          return gemm_lowbit(x, w, b, WeightFormat::bf16);
        },
        py::arg("x"), py::arg("packed"), py::arg("bias") = py::none(),
        "y = x @ float(W_bf16) + bias, fp32 accumulation.");
  m.def("gemm_f32_wint4",
        [](const py::handle& x, const PackedWeightLowBit& w, const py::handle& b) {
          return gemm_lowbit(x, w, b, WeightFormat::int4);
        },
        py::arg("x"), py::arg("packed"), py::arg("bias") = py::none(),
        "y = x @ (q * scale[k // g]) + bias, fp32 accumulation, nibbles decoded in registers.");
}

}  // namespace needle_qc
