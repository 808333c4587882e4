// api_defs.h: the Python signatures (names, arguments, docs) _quant_cpu and _quant_cuda share.
#pragma once

#include "quant/bind/args.h"

namespace needle_qc {

// quantize_f32 / dequantize / dynamic_quantize_u8 / dynamic_quantize_rows.
template <class Quantize, class Dequantize, class DynamicU8, class DynamicRows>
void def_quantize_api(py::module_& m, Quantize quantize_f32, Dequantize dequantize,
                      DynamicU8 dynamic_u8, DynamicRows dynamic_rows) {
  m.def("quantize_f32", quantize_f32, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("axis") = 1, py::arg("out_dtype") = "uint8", py::arg("qmin") = py::none(),
        py::arg("qmax") = py::none(),
        "q = clamp(rint(x / scale) + zero_point, qmin, qmax) (ONNX QuantizeLinear; ties to "
        "even, true fp32 division; qmin/qmax default to out_dtype's ends, a narrower range is "
        "clamped in the same pass). scale/zero_point of length 1 = per tensor, else per `axis`.");
  m.def("dequantize", dequantize, py::arg("q"), py::arg("scale"), py::arg("zero_point"),
        py::arg("axis") = 1, "y = float(q - zero_point) * scale (fp32), q uint8/int8/int32.");
  m.def("dynamic_quantize_u8", dynamic_u8, py::arg("x"),
        "ONNX DynamicQuantizeLinear -> (q uint8, scale, zero_point); all-zero input: (1.0, 0).");
  m.def("dynamic_quantize_rows", dynamic_rows, py::arg("x"), py::arg("out_dtype") = "uint8",
        "Per-row (per-token) dynamic quantization of x f32[M, K] -> (q, scales f32[M], "
        "zero_points i32[M]); uint8 asymmetric (DynamicQuantizeLinear per row) or int8 "
        "symmetric [-127, 127] with zero point 0.");
}

// pack_conv_weight_s8 / conv2d_u8s8_{requant,f32,s32}; `how` says where the conv runs.
template <class Pack, class Requant, class F32, class S32>
void def_conv_api(py::module_& m, Pack pack, Requant requant, F32 f32, S32 s32, const char* how) {
  m.def("pack_conv_weight_s8", pack, py::arg("w"), py::arg("w_zero_point") = py::none(),
        "Pack int8 conv weights w[KH, KW, Cin, Cout] (Needle layout), zero points [Cout] or [1].");
  m.def("conv2d_u8s8_requant", requant, py::arg("x"), py::arg("x_zero_point"), py::arg("w"),
        py::arg("stride"), py::arg("padding"), py::arg("bias"), py::arg("multiplier"),
        py::arg("y_zero_point"), py::arg("qmin"), py::arg("qmax"),
        py::arg("out_dtype") = "uint8", how);
  m.def("conv2d_u8s8_f32", f32, py::arg("x"), py::arg("x_zero_point"), py::arg("w"),
        py::arg("stride"), py::arg("padding"), py::arg("scale"), py::arg("bias") = py::none(),
        py::arg("relu") = false,
        "NHWC uint8 conv -> float32 NHWC: float(acc) * scale[co] + bias[co].");
  m.def("conv2d_u8s8_s32", s32, py::arg("x"), py::arg("x_zero_point"), py::arg("w"),
        py::arg("stride") = 1, py::arg("padding") = 0, "ConvInteger: NHWC int32 accumulators.");
}

// The read-only properties of PackedWeightLowBit (both modules' structs have these fields);
// format_name turns the module's format enum into "float16" / "bfloat16" / "int4".
template <class Class, class FormatName>
void def_lowbit_properties(Class& cls, FormatName format_name) {
  using W = typename Class::type;
  cls.def_property_readonly("format", [format_name](const W& w) { return format_name(w.format); })
      .def_property_readonly("K", [](const W& w) { return w.K; })
      .def_property_readonly("N", [](const W& w) { return w.N; })
      .def_property_readonly("group_size", [](const W& w) { return w.group_size; })
      .def_property_readonly("nbytes", &W::nbytes)
      .def_property_readonly("n_overflow", [](const W& w) { return w.n_overflow; })
      .def_property_readonly("n_subnormal", [](const W& w) { return w.n_subnormal; });
}

}  // namespace needle_qc
