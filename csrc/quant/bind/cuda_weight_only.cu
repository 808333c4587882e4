// cuda_weight_only.cu: Python bindings of the fp16 / bf16 / int4 weight-only GEMMs on CUDA.
#include <memory>
#include <vector>

#include "quant/bind/api_defs.h"
#include "quant/bind/cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

namespace {

using LowBitPtr = std::shared_ptr<PackedWeightLowBit>;

const char* format_name(LowBit f) {
  return f == LowBit::f16 ? "float16" : f == LowBit::bf16 ? "bfloat16" : "int4";
}

LowBitPtr pack_half(const py::handle& w_obj, LowBit format) {
  require_gpu();
  auto w = as_array<float>(w_obj, "w", 2);
  if (w.shape(0) == 0 || w.shape(1) == 0) bad_arg("w", "must have K > 0 and N > 0");
  auto p = std::make_shared<PackedWeightLowBit>();
  p->format = format;
  p->K = w.shape(0);
  p->N = w.shape(1);
  DeviceBuffer dw = upload(w), counts(2 * sizeof(unsigned long long));
  counts.zero();
  p->data = DeviceBuffer(p->K * p->N * sizeof(uint16_t));
  launch_to_half(dw.as<float>(), p->K * p->N, format, p->data.as<uint16_t>(),
                 counts.as<unsigned long long>());
  unsigned long long host[2];
  counts.download(host, sizeof host);
  p->n_overflow = host[0];
  p->n_subnormal = host[1];
  return p;
}

LowBitPtr pack_int4(const py::handle& q_obj, const py::handle& s_obj, long group_size) {
  require_gpu();
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
  const int8_t* qd = q.data();
  for (py::ssize_t i = 0; i < q.size(); ++i)
    if (qd[i] < -8 || qd[i] > 7)
      bad_arg("w_q", "entry " + std::to_string(i) + " = " + std::to_string(qd[i]) +
                         " is outside the int4 range [-8, 7]");
  // Two columns per byte: column 2j in the low nibble, 2j + 1 in the high one.
  const size_t row_bytes = (N + 1) / 2;
  std::vector<uint8_t> bytes(K * row_bytes, 0);
  for (size_t k = 0; k < K; ++k)
    for (size_t n = 0; n < N; ++n) {
      const uint8_t nib = static_cast<uint8_t>(qd[k * N + n]) & 0x0Fu;
      bytes[k * row_bytes + n / 2] |= (n % 2 == 0) ? nib : static_cast<uint8_t>(nib << 4);
    }
  auto p = std::make_shared<PackedWeightLowBit>();
  p->format = LowBit::int4;
  p->K = K;
  p->N = N;
  p->group_size = size_t(group_size);
  p->groups = groups;
  p->data = to_device(bytes.data(), bytes.size());
  p->scales = upload(s);
  return p;
}

py::array gemm_lowbit(const py::handle& x_obj, const PackedWeightLowBit& w,
                      const py::handle& bias_obj, LowBit expect) {
  require_gpu();
  if (w.format != expect)
    bad_arg("packed", std::string("holds ") + format_name(w.format) +
                          " weights, this kernel takes " + format_name(expect));
  auto x = as_array<float>(x_obj, "x", 2);
  if (size_t(x.shape(1)) != w.K)
    bad_arg("x", "has K = " + std::to_string(x.shape(1)) + " but the weights have K = " +
                     std::to_string(w.K));
  DeviceBuffer db;
  if (!bias_obj.is_none()) {
    auto bias = as_array<float>(bias_obj, "bias", 1);
    if (size_t(bias.shape(0)) != w.N) bad_arg("bias", "expected length N = " + std::to_string(w.N));
    db = upload(bias);
  }
  const size_t M = x.shape(0);
  DeviceBuffer dx = upload(x), dy(M * w.N * sizeof(float));
  {
    py::gil_scoped_release nogil;  // device work only: other Python threads may run meanwhile
    launch_gemm_lowbit(dx.as<float>(), M, w, db.bytes() ? db.as<float>() : nullptr,
                       dy.as<float>());
  }
  return download(dy, py::dtype::of<float>(), {py::ssize_t(M), py::ssize_t(w.N)});
}

void def_gemm(py::module_& m, const char* name, LowBit format, const char* doc) {
  m.def(
      name,
      [format](const py::handle& x, const PackedWeightLowBit& w, const py::handle& b) {
        return gemm_lowbit(x, w, b, format);
      },
      py::arg("x"), py::arg("packed"), py::arg("bias") = py::none(), doc);
}

}  // namespace

void bind_weight_only(py::module_& m) {
  py::class_<PackedWeightLowBit, LowBitPtr> cls(
      m, "PackedWeightLowBit", py::module_local(),
      "fp16 / bf16 / int4 weights [K, N] resident on the GPU.");
  def_lowbit_properties(cls, &format_name);
  m.def("pack_weight_f16", [](const py::handle& w) { return pack_half(w, LowBit::f16); },
        py::arg("w"), "Round w f32[K, N] to fp16 (nearest even) on the GPU and keep it there.");
  m.def("pack_weight_bf16", [](const py::handle& w) { return pack_half(w, LowBit::bf16); },
        py::arg("w"), "Round w f32[K, N] to bf16 (nearest even) on the GPU and keep it there.");
  m.def("pack_weight_int4", &pack_int4, py::arg("w_q"), py::arg("scales"), py::arg("group_size"),
        "Pack int4 values w_q int8[K, N] in [-8, 7] two per byte with scales f32[ceil(K/g), N].");
  def_gemm(m, "gemm_f32_wf16", LowBit::f16, "y = x @ float(W_f16) + bias, fp32 accumulation.");
  def_gemm(m, "gemm_f32_wbf16", LowBit::bf16, "y = x @ float(W_bf16) + bias, fp32 accumulation.");
  def_gemm(m, "gemm_f32_wint4", LowBit::int4,
           "y = x @ (q * scale[k // g]) + bias, fp32 accumulation, nibbles decoded on load.");
}

}  // namespace cuda
}  // namespace needle_qc
