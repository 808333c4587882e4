// cpu_gemm_defs.cc: the Python-visible GEMM functions, PackedWeightS8, kernel_info and bounds.
#include <cmath>

#include "quant/bind/cpu_gemm.h"

namespace needle_qc {

RequantArgs parse_requant(const py::handle& bias, const py::handle& multiplier, int y_zp,
                          int qmin, int qmax, const std::string& out_dtype, size_t N) {
  RequantArgs r;
  OutputParams& p = r.params;
  p.out_s8 = check_requant_range(out_dtype, y_zp, qmin, qmax);
  r.dtype = p.out_s8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
  p.y_zp = y_zp;
  p.qmin = qmin;
  p.qmax = qmax;
  r.multiplier = as_finite_vector(multiplier, "multiplier", N);
  p.multiplier = r.multiplier.data();
  p.multiplier_per_col = r.multiplier.shape(0) > 1;
  if (!bias.is_none()) {
    r.bias = as_exact_vector<int32_t>(bias, "bias", N, "N");
    p.bias_i32 = r.bias.data();
  }
  return r;
}

FloatOutArgs parse_float_out(const py::handle& scale, const py::handle& bias, bool relu,
                             const py::handle& row_scale, size_t M, size_t N) {
  FloatOutArgs f;
  OutputParams& p = f.params;
  p.relu = relu;
  f.scale = as_finite_vector(scale, "scale", N);
  p.scale = f.scale.data();
  p.scale_per_col = f.scale.shape(0) > 1;
  if (!bias.is_none()) {
    f.bias = as_exact_vector<float>(bias, "bias", N, "N");
    p.bias_f32 = f.bias.data();
  }
  if (!row_scale.is_none()) {
    f.row_scale = as_exact_vector<float>(row_scale, "row_scale", M, "M");
    require_finite(f.row_scale.data(), M, "row_scale");
    p.row_scale = f.row_scale.data();
  }
  return f;
}

namespace {

FastPathClaim claim(bool allow_fast, const py::handle& a_max) {
  FastPathClaim c;
  c.allow = allow_fast;
  if (!a_max.is_none()) c.a_max = a_max.cast<int>();
  return c;
}

template <bool S8>
py::array gemm_requant(const py::handle& a, const py::handle& a_zp, const PackedWeightS8& w,
                       const py::handle& bias, const py::handle& multiplier, int y_zp, int qmin,
                       int qmax, const std::string& out_dtype, bool allow_fast,
                       const py::handle& a_max) {
  Isa isa = selected_isa();
  FastPathClaim fast = claim(allow_fast, a_max);
  RequantArgs r = parse_requant(bias, multiplier, y_zp, qmin, qmax, out_dtype, w.N);
  PreparedA pa = prepare_a(a, S8, a_zp, w, isa, fast);
  return run_gemm(pa, w, isa, fast, OutputKind::requant, r.params, r.dtype);
}

template <bool S8>
py::array gemm_f32(const py::handle& a, const py::handle& a_zp, const PackedWeightS8& w,
                   const py::handle& scale, const py::handle& bias, bool relu,
                   const py::handle& row_scale, bool allow_fast, const py::handle& a_max) {
  Isa isa = selected_isa();
  FastPathClaim fast = claim(allow_fast, a_max);
  PreparedA pa = prepare_a(a, S8, a_zp, w, isa, fast);
  FloatOutArgs f = parse_float_out(scale, bias, relu, row_scale, pa.packed.M, w.N);
  return run_gemm(pa, w, isa, fast, OutputKind::f32, f.params, py::dtype::of<float>());
}

template <bool S8>
py::array gemm_s32(const py::handle& a, const py::handle& a_zp, const PackedWeightS8& w,
                   bool allow_fast, const py::handle& a_max) {
  Isa isa = selected_isa();
  FastPathClaim fast = claim(allow_fast, a_max);
  PreparedA pa = prepare_a(a, S8, a_zp, w, isa, fast);
  return run_gemm(pa, w, isa, fast, OutputKind::s32, OutputParams{}, py::dtype::of<int32_t>());
}

// The bind-time half of the fast-path check (the bound and a_max); the data half runs per call.
FastPathClaim checked_claim(bool allow_fast, const py::handle& a_max, const PackedWeightS8& w) {
  FastPathClaim c = claim(allow_fast, a_max);
  if (c.allow) check_fast_claim(c, PackedA{}, w);
  return c;
}

BoundGemm bound(const py::object& w_obj, const std::string& a_dtype, long long a_zp,
                bool allow_fast, const py::handle& a_max) {
  BoundGemm g;
  g.w_keep = w_obj;
  g.w = &w_obj.cast<const PackedWeightS8&>();
  g.a_s8 = parse_int8_dtype(a_dtype, "a_dtype");
  g.a_zp = checked_a_zero_point(a_zp, g.a_s8);
  g.fast = checked_claim(allow_fast, a_max, *g.w);
  return g;
}

BoundGemm bind_requant(const py::object& w, const std::string& a_dtype, long long a_zp,
                       const py::handle& bias, const py::handle& multiplier, int y_zp, int qmin,
                       int qmax, const std::string& out_dtype, bool allow_fast,
                       const py::handle& a_max) {
  BoundGemm g = bound(w, a_dtype, a_zp, allow_fast, a_max);
  RequantArgs r = parse_requant(bias, multiplier, y_zp, qmin, qmax, out_dtype, g.w->N);
  g.kind = OutputKind::requant;
  g.params = r.params;
  g.bias = r.bias;
  g.multiplier_or_scale = r.multiplier;
  g.dtype = r.dtype;
  return g;
}

BoundGemm bind_f32(const py::object& w, const std::string& a_dtype, long long a_zp,
                   const py::handle& scale, const py::handle& bias, bool allow_fast,
                   const py::handle& a_max) {
  BoundGemm g = bound(w, a_dtype, a_zp, allow_fast, a_max);
  FloatOutArgs f = parse_float_out(scale, py::none(), false, py::none(), 0, g.w->N);
  g.kind = OutputKind::f32;
  g.params = f.params;
  g.multiplier_or_scale = f.scale;
  if (!bias.is_none()) {
    g.bias = as_exact_vector<int32_t>(bias, "bias", g.w->N, "N");
    g.params.bias_i32 = g.bias.data();
  }
  g.dtype = py::dtype::of<float>();
  return g;
}

BoundDynamic bind_dynamic(const py::object& w_obj, const py::handle& scale,
                          const py::handle& bias, bool per_row, bool reduce_range) {
  BoundDynamic g;
  g.w_keep = w_obj;
  g.w = &w_obj.cast<const PackedWeightS8&>();
  g.scale = as_finite_vector(scale, "scale", g.w->N);
  if (!bias.is_none()) g.bias = as_exact_vector<float>(bias, "bias", g.w->N, "N");
  g.per_row = per_row;
  if (reduce_range) {
    g.qmax = 127;
    // every activation is <= 127, so no vpmaddubsw pair sum can saturate where this holds
    g.fast.allow = 127L * g.w->max_pair_abs <= 32767;
    g.fast.a_max = 127;
  }
  return g;
}

// max |Σ_k (a - z_a)(w - z_w)| over every column for (a - z_a) in a_range = (lo, hi).
int64_t accumulator_bound(size_t K, const py::tuple& a_range, const PackedWeightS8& w) {
  if (K != w.K) bad_arg("K", std::to_string(K) + " != w.K = " + std::to_string(w.K));
  if (a_range.size() != 2) bad_arg("a_range", "expected (lo, hi)");
  const int64_t lo = a_range[0].cast<int64_t>(), hi = a_range[1].cast<int64_t>();
  if (lo > hi) bad_arg("a_range", "lo > hi");
  if (std::llabs(lo) > 65535 || std::llabs(hi) > 65535)
    bad_arg("a_range", "expects zero-point-shifted 8/16-bit values, |v| <= 65535");
  const int64_t amax = std::max(std::llabs(lo), std::llabs(hi));
  int64_t worst = 0;
  for (int64_t c : w.col_abs) worst = std::max(worst, c * amax);
  return worst;
}

py::dict kernel_info() {
  py::dict d;
  Isa isa = selected_isa();
  py::list avail;
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512vnni})
    if (cpu_has(i)) avail.append(isa_name(i));
  d["isa"] = isa_name(isa);
  d["available"] = avail;
  const char* exact = isa == Isa::avx512vnni ? "avx512vnni vpdpbusd (MR=8, NR=16)"
                      : isa == Isa::avx2     ? "avx2 vpmaddwd on i16 (MR=2, NR=16)"
                                             : "scalar (MR=4, NR=16)";
  d["gemm_exact"] = exact;
  d["gemm_fast"] = isa == Isa::avx2 ? "avx2 vpmaddubsw (MR=4, NR=16), needs allow_fast" : exact;
  d["quantize"] = isa == Isa::scalar ? "scalar" : isa == Isa::avx512vnni ? "avx512" : "avx2";
  d["weight_only"] = isa == Isa::scalar ? "scalar" : "avx2 fma (+f16c)";
  d["threads"] = num_threads();
  return d;
}

// Shared tail of the GEMM docstrings.
constexpr const char* kGemmArgs =
    "\n\na_zero_point: int, or int32[M] (one per row, per-token dynamic). allow_fast: use the "
    "AVX2 vpmaddubsw path (only on ISA avx2) - the caller claims a_max * w.max_pair_abs <= 32767; "
    "a_max (default 255) bounds the unsigned activation bytes (s8 activations count as a + 128). "
    "Both the bound and the data are checked; a false claim raises ValueError. Other ISAs are "
    "exact anyway and ignore allow_fast after the check.";

template <bool S8>
void def_gemms(py::module_& m, const char* prefix) {
  const std::string p(prefix);
  const std::string rq =
      std::string("y = clamp(rint(float(Σ(a-za)(w-zw) + bias) * multiplier) + y_zp, qmin, qmax);"
                  " fused ReLU: qmin = y_zp.") + kGemmArgs;
  const std::string f32 =
      std::string("y = float(Σ(a-za)(w-zw)) * (row_scale[m] * scale[n]) + bias[n], optional "
                  "ReLU (fp32, no FMA).") + kGemmArgs;
  const std::string s32 = std::string("MatMulInteger: int32 Σ_k (a - za)(w - zw).") + kGemmArgs;
  m.def((p + "_requant").c_str(), &gemm_requant<S8>, py::arg("a"), py::arg("a_zero_point"),
        py::arg("w"), py::arg("bias"), py::arg("multiplier"), py::arg("y_zero_point"),
        py::arg("qmin"), py::arg("qmax"), py::arg("out_dtype") = "uint8",
        py::arg("allow_fast") = false, py::arg("a_max") = py::none(),
        rq.c_str());
  m.def((p + "_f32").c_str(), &gemm_f32<S8>, py::arg("a"), py::arg("a_zero_point"), py::arg("w"),
        py::arg("scale"), py::arg("bias") = py::none(), py::arg("relu") = false,
        py::arg("row_scale") = py::none(), py::arg("allow_fast") = false,
        py::arg("a_max") = py::none(),
        f32.c_str());
  m.def((p + "_s32").c_str(), &gemm_s32<S8>, py::arg("a"), py::arg("a_zero_point"), py::arg("w"),
        py::arg("allow_fast") = false, py::arg("a_max") = py::none(),
        s32.c_str());
}

}  // namespace

void bind_gemm(py::module_& m) {
  py::class_<PackedWeightS8>(m, "PackedWeightS8",
                             "int8 weights [K, N] packed into 16-column k-quad panels.")
      .def_property_readonly("K", [](const PackedWeightS8& w) { return w.K; })
      .def_property_readonly("N", [](const PackedWeightS8& w) { return w.N; })
      .def_property_readonly("max_pair_abs", [](const PackedWeightS8& w) { return w.max_pair_abs; })
      .def_property_readonly("nbytes", &PackedWeightS8::nbytes)
      .def_property_readonly("zero_point", [](const PackedWeightS8& w) {
        return py::array_t<int32_t>(w.zero_point.size(), w.zero_point.data());
      })
      .def_property_readonly("colsum", [](const PackedWeightS8& w) {
        return py::array_t<int32_t>(w.colsum.size(), w.colsum.data());
      });
  m.def("pack_weight_s8", &pack_weight_s8_py, py::arg("w"), py::arg("w_zero_point") = py::none(),
        "Pack int8 weights w[K, N] (Needle layout) with zero points i32[N] or [1].");
  py::class_<BoundGemm>(m, "BoundGemm",
                        "A GEMM bound to one layer's packed weight and output stage: call it "
                        "with x[..., K] alone.")
      .def("__call__", &BoundGemm::operator(), py::arg("x"));
  m.def("bind_gemm_requant", &bind_requant, py::arg("w"), py::arg("a_dtype"),
        py::arg("a_zero_point"), py::arg("bias"), py::arg("multiplier"),
        py::arg("y_zero_point"), py::arg("qmin"), py::arg("qmax"),
        py::arg("out_dtype") = "uint8", py::arg("allow_fast") = false,
        py::arg("a_max") = py::none(),
        "gemm_{u8,s8}s8_requant bound to w and its output stage (checked once): returns a "
        "BoundGemm, y[..., N] = bound(x[..., K]). a_dtype: 'uint8' or 'int8'.");
  m.def("bind_gemm_f32", &bind_f32, py::arg("w"), py::arg("a_dtype"), py::arg("a_zero_point"),
        py::arg("scale"), py::arg("bias") = py::none(), py::arg("allow_fast") = false,
        py::arg("a_max") = py::none(),
        "y = float(Σ(a-za)(w-zw) + bias[n]) * scale[n] (int32 bias added before the one "
        "conversion), bound to w: returns a BoundGemm, y[..., N] = bound(x[..., K]).");
  py::class_<BoundDynamic>(m, "BoundDynamic",
                           "A dynamic linear bound to one packed weight: call it with "
                           "x[..., K] (float32) alone.")
      .def("__call__", &BoundDynamic::operator(), py::arg("x"))
      .def_property_readonly("fast_path", [](const BoundDynamic& g) { return g.fast.allow; },
                             "True where the u8s8 fast path (vpmaddubsw) is taken: reduce_range "
                             "activations and 127 * w.max_pair_abs <= 32767");
  m.def("bind_linear_dynamic", &bind_dynamic, py::arg("w"), py::arg("scale"),
        py::arg("bias") = py::none(), py::arg("per_row") = false,
        py::arg("reduce_range") = false,
        "dynamic_quantize_u8 (per_row: _rows) + gemm_u8s8_f32 + bias bound to w: returns a "
        "BoundDynamic, y[..., N] = float(Σ(a-za)(w-zw)) * (s_x * scale[n]) + bias[n]. "
        "reduce_range: activations quantized over [0, 127], and the u8s8 fast path taken where "
        "127 * w.max_pair_abs <= 32767 (fast_path tells)");
  def_gemms<false>(m, "gemm_u8s8");
  def_gemms<true>(m, "gemm_s8s8");
  m.def("accumulator_bound", &accumulator_bound, py::arg("K"), py::arg("a_range"), py::arg("w"),
        "max over columns of |Σ_k (a - za)(w - zw)| for (a - za) in a_range = (lo, hi).");
  m.def("kernel_info", &kernel_info, "Which kernel paths this CPU (and NEEDLE_QC_ISA) uses.");
}

}  // namespace needle_qc
