// cpu_module.cc: the needle_qc._quant_cpu module (int8 / weight-only CPU kernels).
#include "quant/bind/args.h"

namespace needle_qc {
void bind_quantize(py::module_& m);
void bind_gemm(py::module_& m);
void bind_conv(py::module_& m);
void bind_conv_direct(py::module_& m);
void bind_weight_only(py::module_& m);
void bind_weight_int8(py::module_& m);
void bind_naive(py::module_& m);
void bind_float_layers(py::module_& m);
void bind_layout(py::module_& m);
void bind_naive_float_layers(py::module_& m);
void bind_lstm(py::module_& m);
void bind_attention_gemm_f32(py::module_& m);
void bind_qadd(py::module_& m);
}  // namespace needle_qc

PYBIND11_MODULE(_quant_cpu, m) {
  m.doc() = "int8 and weight-only CPU kernels of needle_qc (pack -> microkernel -> output stage)";
  needle_qc::bind_quantize(m);
  needle_qc::bind_gemm(m);
  needle_qc::bind_conv(m);
  needle_qc::bind_conv_direct(m);
  needle_qc::bind_weight_only(m);
  needle_qc::bind_weight_int8(m);
  needle_qc::bind_naive(m);
  needle_qc::bind_float_layers(m);
  needle_qc::bind_layout(m);
  needle_qc::bind_naive_float_layers(m);
  needle_qc::bind_lstm(m);
  needle_qc::bind_attention_gemm_f32(m);
  needle_qc::bind_qadd(m);
}
