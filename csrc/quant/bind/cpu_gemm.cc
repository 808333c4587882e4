// cpu_gemm.cc: Python bindings of the int8 GEMMs (u8s8 / s8s8 x requant / f32 / s32).
#include <algorithm>
#include <cmath>
#include <utility>

#include "quant/bind/cpu_gemm.h"

namespace needle_qc {

PackedWeightS8 pack_weight_s8_py(const py::handle& w_obj, const py::handle& zp_obj) {
  auto w = as_array<int8_t>(w_obj, "w", 2);
  const size_t K = w.shape(0), N = w.shape(1);
  if (K == 0 || N == 0) bad_arg("w", "must have K > 0 and N > 0");
  std::vector<int32_t> zero(1, 0);
  const int32_t* zp = zero.data();
  size_t n_zp = 1;
  py::array_t<int32_t, py::array::c_style> zarr;
  if (!zp_obj.is_none()) {
    zarr = as_vector<int32_t>(zp_obj, "w_zero_point", N);
    require_in_range(zarr.data(), zarr.shape(0), -128, 127, "w_zero_point");
    zp = zarr.data();
    n_zp = zarr.shape(0);
  }
  py::gil_scoped_release nogil;
  return pack_weight_s8(w.data(), K, N, zp, n_zp);
}

// Checks the activations and packs them; a_zp is an int or an int32 array of length M.
PreparedA prepare_a(const py::handle& a_obj, bool a_s8, const py::handle& a_zp_obj,
                    const PackedWeightS8& w, Isa isa, const FastPathClaim& fast) {
  py::array a = a_s8 ? py::array(as_array<int8_t>(a_obj, "a", 2))
                     : py::array(as_array<uint8_t>(a_obj, "a", 2));
  const size_t M = a.shape(0), K = a.shape(1);
  if (K != w.K)
    bad_arg("a", "has K = " + std::to_string(K) + " columns but w was packed with K = " +
                     std::to_string(w.K));
  std::vector<int32_t> a_zp;
  if (py::isinstance<py::int_>(a_zp_obj)) {
    a_zp.assign(1, checked_a_zero_point(a_zp_obj.cast<long long>(), a_s8));
  } else {
    auto z = as_vector<int32_t>(a_zp_obj, "a_zero_point", M);
    a_zp.assign(z.data(), z.data() + z.shape(0));
    require_in_range(a_zp.data(), a_zp.size(), a_s8 ? -128 : 0, a_s8 ? 127 : 255,
                     "a_zero_point");
    if (a_s8)  // the s8 -> u8 shift moves the zero point with the data
      for (auto& z : a_zp) z += 128;
  }
  return pack_rows(a, M, a_s8, std::move(a_zp), w, isa, fast);
}

int32_t checked_a_zero_point(long long z, bool a_s8) {
  const int lo = a_s8 ? -128 : 0, hi = a_s8 ? 127 : 255;
  if (z < lo || z > hi) bad_arg("a_zero_point", std::to_string(z) + " out of range");
  return static_cast<int32_t>(a_s8 ? z + 128 : z);  // the s8 -> u8 shift moves it with the data
}

PreparedA pack_rows(const py::array& a, size_t M, bool a_s8, std::vector<int32_t> a_zp,
                    const PackedWeightS8& w, Isa isa, const FastPathClaim& fast) {
  PreparedA out;
  out.source = a;
  out.a_zp = std::move(a_zp);
  out.per_row = out.a_zp.size() > 1;
  {
    py::gil_scoped_release nogil;
    PackANeeds needs;
    needs.widen_i16 = isa == Isa::avx2 && !fast.allow;
    needs.rowsums = !w.zero_point_is_zero;
    needs.max_value = fast.allow;
    out.packed = pack_a(a.data(), a_s8, M, w.K, needs);
  }
  if (fast.allow) check_fast_claim(fast, out.packed, w);
  return out;
}

void check_fast_claim(const FastPathClaim& fast, const PackedA& a, const PackedWeightS8& w) {
  const long bound = long(fast.a_max) * w.max_pair_abs;
  if (fast.a_max < 0 || fast.a_max > 255)
    bad_arg("a_max", std::to_string(fast.a_max) + " outside [0, 255]");
  if (bound > 32767)
    bad_arg("allow_fast", "a_max * w.max_pair_abs = " + std::to_string(fast.a_max) + " * " +
                              std::to_string(w.max_pair_abs) + " = " + std::to_string(bound) +
                              " > 32767: vpmaddubsw would saturate; use the exact path");
  if (a.max_value > fast.a_max)
    bad_arg("a_max", "claims activations <= " + std::to_string(fast.a_max) +
                         " but a holds the (unsigned, s8 + 128) value " +
                         std::to_string(a.max_value));
}

py::array run_gemm(const PreparedA& pa, const PackedWeightS8& w, Isa isa,
                   const FastPathClaim& fast, OutputKind kind, OutputParams p,
                   const py::dtype& out_dtype) {
  std::vector<py::ssize_t> shape = {static_cast<py::ssize_t>(pa.packed.M),
                                    static_cast<py::ssize_t>(w.N)};
  py::array out(out_dtype, shape);
  run_gemm_into(pa, w, isa, fast, kind, p, out.mutable_data());
  return out;
}

void run_gemm_into(const PreparedA& pa, const PackedWeightS8& w, Isa isa,
                   const FastPathClaim& fast, OutputKind kind, OutputParams p, void* dst) {
  p.a_zp = pa.a_zp.data();
  p.a_zp_per_row = pa.per_row;
  GemmOptions opt;
  opt.allow_fast = fast.allow;
  py::gil_scoped_release nogil;
  gemm_u8s8(pa.packed, w, isa, opt, kind, p, dst);
}

py::array BoundGemm::operator()(const py::handle& x) const {
  py::array a = a_s8 ? py::array(as_array<int8_t>(x, "x")) : py::array(as_array<uint8_t>(x, "x"));
  if (a.ndim() < 1 || static_cast<size_t>(a.shape(a.ndim() - 1)) != w->K)
    bad_arg("x", "expected a last axis of K = " + std::to_string(w->K) + " (the packed weight's)");
  const size_t M = a.size() / w->K;
  const Isa isa = selected_isa();
  PreparedA pa = pack_rows(a, M, a_s8, std::vector<int32_t>(1, a_zp), *w, isa, fast);
  std::vector<py::ssize_t> shape = shape_of(a);
  shape.back() = static_cast<py::ssize_t>(w->N);
  py::array out(dtype, shape);
  run_gemm_into(pa, *w, isa, fast, kind, params, out.mutable_data());
  return out;
}

namespace {

// x[n] -> u8 in [0, qmax] with the DynamicQuantizeLinear (scale, zero point) of its range.
void quantize_dynamic(QuantizeSpanFn span, const float* x, size_t n, uint8_t* q, float& s,
                      int32_t& z, int32_t qmax) {
  float mn, mx;
  if (!min_max_f32(x, n, mn, mx))
    bad_arg("x", "contains NaN or Inf; dynamic quantization needs finite values");
  dynamic_params_u8(mn, mx, s, z, qmax);
  span(x, n, &s, &z, 0, 0, qmax, false, q);
}

}  // namespace

QuantizeSpanFn quantize_span_fn(Isa isa) {
#if defined(NEEDLE_QC_X86)
  if (isa == Isa::avx512vnni) return quantize_span_avx512;
  if (isa != Isa::scalar) return quantize_span_avx2;
#endif
  (void)isa;
  return quantize_span_scalar;
}

py::array BoundDynamic::operator()(const py::handle& x) const {
  auto xa = as_array<float>(x, "x");
  const size_t K = w->K;
  if (xa.ndim() < 1 || static_cast<size_t>(xa.shape(xa.ndim() - 1)) != K)
    bad_arg("x", "expected a last axis of K = " + std::to_string(K) + " (the packed weight's)");
  const size_t M = xa.size() / K;
  const Isa isa = selected_isa();
  py::array_t<uint8_t> q({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(K)});
  std::vector<float> s_x(std::max<size_t>(M, 1));
  std::vector<int32_t> z_x(per_row ? M : 1);
  const QuantizeSpanFn span = quantize_span_fn(isa);
  if (per_row) {
    for (size_t m = 0; m < M; ++m)
      quantize_dynamic(span, xa.data() + m * K, K, q.mutable_data() + m * K, s_x[m], z_x[m],
                       qmax);
  } else {
    quantize_dynamic(span, xa.data(), M * K, q.mutable_data(), s_x[0], z_x[0], qmax);
    std::fill(s_x.begin(), s_x.end(), s_x[0]);  // s_x * scale[n]: the per-row scale's product
  }
  PreparedA pa = pack_rows(q, M, false, std::move(z_x), *w, isa, fast);
  OutputParams p;
  p.scale = scale.data();
  p.scale_per_col = scale.shape(0) > 1;
  p.row_scale = s_x.data();
  if (bias.size() > 0) p.bias_f32 = bias.data();
  std::vector<py::ssize_t> shape = shape_of(xa);
  shape.back() = static_cast<py::ssize_t>(w->N);
  py::array out(py::dtype::of<float>(), shape);
  run_gemm_into(pa, *w, isa, fast, OutputKind::f32, p, out.mutable_data());
  return out;
}

}  // namespace needle_qc
