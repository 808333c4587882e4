// cpu_attention_gemm_f32.cc: Python bindings of the fused fp32 attention and the packed fp32
// GEMM (attention_f32.h, gemm_f32.h).
#include <string>
#include <vector>

#include "quant/bind/args.h"
#include "quant/cpu/attention_f32.h"
#include "quant/cpu/conv_f32.h"
#include "quant/cpu/gemm_f32.h"

namespace needle_qc {

namespace {

// A float32 (B, H, T, D) operand read in place when its last axis is contiguous (transposed
// views of the projections are), else through a C-contiguous copy kept alive by `keep`.
AttnOperand operand(const py::handle& obj, const char* name, py::array& keep) {
  if (!py::isinstance<py::array>(obj)) bad_arg(name, "expected a numpy array");
  keep = py::reinterpret_borrow<py::array>(obj);
  if (!keep.dtype().is(py::dtype::of<float>()))
    bad_arg(name, "expected dtype float32, got " + std::string(py::str(keep.dtype())));
  if (keep.ndim() != 4)
    bad_arg(name, "expected (B, H, T, D), got " + std::to_string(keep.ndim()) + "-D");
  bool in_place = keep.shape(3) <= 1 || keep.strides(3) == sizeof(float);
  for (int i = 0; i < 3; ++i)
    in_place = in_place && keep.strides(i) >= 0 && keep.strides(i) % sizeof(float) == 0;
  if (!in_place) keep = py::array_t<float, py::array::c_style>::ensure(keep);
  auto step = [&](int i) { return static_cast<size_t>(keep.strides(i)) / sizeof(float); };
  return {static_cast<const float*>(keep.data()), step(0), step(1), step(2)};
}

AttnShape attn_shape(const py::array& q, const py::array& k, const py::array& v) {
  for (int i : {0, 1, 3})
    if (k.shape(i) != q.shape(i) || v.shape(i) != q.shape(i))
      bad_arg("q/k/v", "expected q (B, H, Tq, D) and k, v (B, H, Tk, D) with the same B, H, D");
  if (v.shape(2) != k.shape(2)) bad_arg("k/v", "expected the same Tk");
  auto dim = [](const py::array& a, int i) { return static_cast<size_t>(a.shape(i)); };
  return {dim(q, 0), dim(q, 1), dim(q, 2), dim(k, 2), dim(q, 3)};
}

py::object attention(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj,
                    bool causal) {
  py::array qa, ka, va;
  const AttnOperand q = operand(q_obj, "q", qa), k = operand(k_obj, "k", ka),
                    v = operand(v_obj, "v", va);
  const AttnShape s = attn_shape(qa, ka, va);
  if (!attention_f32_matches_needle())
    throw std::runtime_error(
        "attention_f32: the NDArray backend's AVX2 kernels are not in use here "
        "(no AVX2+FMA, or NEEDLE_CPU_NO_SIMD is set): its bits cannot be reproduced");
  if (!attention_f32_shape_supported(s))
    bad_arg("q/k/v", "shape outside attention_f32_supported (a dimension is 0, or "
                     "2 Tq Tk D >= 2e6 flops: Needle's sgemm would split it across threads)");
  py::array_t<float> result({s.b, s.h, s.tq, s.d}), probs({s.b, s.h, s.tq, s.tk});
  bool finished = false;
  {
    py::gil_scoped_release nogil;
    finished = attention_f32(q, k, v, s, causal, result.mutable_data(), probs.mutable_data());
  }
  if (!finished) return py::none();
  return py::make_tuple(result, probs);
}

bool attention_supported(size_t b, size_t h, size_t tq, size_t tk, size_t d) {
  return attention_f32_matches_needle() && attention_f32_shape_supported({b, h, tq, tk, d});
}

py::array chain_gemm(const py::handle& a_obj, const py::handle& b_obj) {
  auto a = as_array<float>(a_obj, "a", 2);
  auto b = as_array<float>(b_obj, "b", 2);
  const size_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  if (static_cast<size_t>(b.shape(0)) != k) bad_arg("b", "expected b.shape[0] == a.shape[1]");
  py::array_t<float> c({m, n});
  chain_gemm_f32(m, n, k, a.data(), k, b.data(), n, c.mutable_data(), n);
  return c;
}

py::array pack_gemm(const py::handle& w_obj) {
  auto w = as_array<float>(w_obj, "weight", 2);
  py::array_t<float> out(w.size());
  pack_gemm_f32(w.data(), w.shape(0), w.shape(1), out.mutable_data());
  return out;
}

py::array gemm(const py::handle& a_obj, const py::handle& packed_obj, size_t n) {
  auto a = as_array<float>(a_obj, "a", 2);
  auto packed = as_array<float>(packed_obj, "packed", 1);
  const size_t m = a.shape(0), k = a.shape(1);
  if (static_cast<size_t>(packed.shape(0)) != k * n)
    bad_arg("packed", "has " + std::to_string(packed.shape(0)) + " floats, expected K * N = " +
                          std::to_string(k) + " * " + std::to_string(n) +
                          " (pack_gemm_f32 of the [K, N] weight)");
  py::array_t<float> y({m, n});
  {
    py::gil_scoped_release nogil;
    gemm_f32_packed(a.data(), m, k, packed.data(), n, y.mutable_data());
  }
  return y;
}

// A linear layer on the packed fp32 GEMM bound once (packed weight, bias, ReLU): a call parses
// a alone; the bias add and ReLU run in the GEMM on each finished tile (y + bias[j], then
// max(y, 0), the same float operations as numpy's add and maximum, so the same bits).
class GemmF32Layer {
 public:
  GemmF32Layer(const py::handle& packed, size_t k, size_t n, const py::object& bias, bool relu)
      : packed_(as_array<float>(packed, "packed", 1)), k_(k), n_(n), relu_(relu),
        has_bias_(!bias.is_none()) {
    if (static_cast<size_t>(packed_.shape(0)) != k * n)
      bad_arg("packed", "has " + std::to_string(packed_.shape(0)) + " floats, expected K * N = " +
                            std::to_string(k) + " * " + std::to_string(n));
    if (has_bias_) bias_ = as_array<float>(bias, "bias");
    if (has_bias_ && static_cast<size_t>(bias_.size()) != n)
      bad_arg("bias", "expected N = " + std::to_string(n) + " entries");
  }

  py::array operator()(const py::handle& a_obj) const {
    auto a = as_array<float>(a_obj, "a", 2);
    if (static_cast<size_t>(a.shape(1)) != k_)
      bad_arg("a", "has " + std::to_string(a.shape(1)) + " columns, expected K = " +
                       std::to_string(k_));
    const size_t m = a.shape(0);
    py::array_t<float> y({m, n_});
    float* out = y.mutable_data();
    const float* bias = has_bias_ ? bias_.data() : nullptr;
    {
      py::gil_scoped_release nogil;
      gemm_f32_packed(a.data(), m, k_, packed_.data(), n_, out, bias, relu_);
    }
    return y;
  }

 private:
  py::array_t<float, py::array::c_style> packed_, bias_;
  size_t k_, n_;
  bool relu_, has_bias_;
};

}  // namespace

void bind_attention_gemm_f32(py::module_& m) {
  m.def("attention_f32", &attention, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("causal") = false,
        "(result, probs) of softmax(q k^T / sqrt(D) [+ causal mask]) v for float32 q (B, H, Tq, "
        "D), k and v (B, H, Tk, D), bit for bit as Needle's MultiHeadAttention on the bundled "
        "NDArray backend; only where attention_f32_supported says so. None when the logits or v "
        "hold a NaN (its bits then depend on numpy's SIMD width: run the op-by-op path)");
  m.def("attention_f32_supported", &attention_supported, py::arg("b"), py::arg("h"),
        py::arg("tq"), py::arg("tk"), py::arg("d"),
        "True where attention_f32 reproduces the NDArray backend: its AVX2 kernels in use, no "
        "dimension 0 and each product under the 2e6 flops its sgemm runs on one thread");
  m.def("chain_gemm_f32", &chain_gemm, py::arg("a"), py::arg("b"),
        "a @ b (float32, 2-D) in Needle sgemm's order for more than 4 rows: one FMA chain per "
        "output and K block of 256, the blocks added in order");
  m.def("pack_gemm_f32", &pack_gemm, py::arg("weight"),
        "A [K, N] fp32 weight in gemm_f32's panels: exactly K * N floats (compact last panel)");
  m.def("gemm_f32", &gemm, py::arg("a"), py::arg("packed"), py::arg("n"),
        "a [M, K] @ the packed [K, N] weight: per output one FMA chain per K block of 256, "
        "blocks added in order (Needle sgemm's bits for M > 4); rows split across threads");
  py::class_<GemmF32Layer>(m, "GemmF32Layer",
                           "gemm_f32 bound to one layer's packed [K, N] weight, bias (N "
                           "entries, any shape) and ReLU: call it with a [M, K] alone")
      .def(py::init<const py::handle&, size_t, size_t, const py::object&, bool>(),
           py::arg("packed"), py::arg("k"), py::arg("n"), py::arg("bias") = py::none(),
           py::arg("relu") = false)
      .def("__call__", &GemmF32Layer::operator(), py::arg("a"));
}

}  // namespace needle_qc
