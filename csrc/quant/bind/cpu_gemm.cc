// cpu_gemm.cc: Python bindings of the int8 GEMMs (u8s8 / s8s8 x requant / f32 / s32).
#include <algorithm>
#include <cmath>

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
  PreparedA out;
  py::array_t<uint8_t, py::array::c_style> au;
  py::array_t<int8_t, py::array::c_style> as;
  const void* data;
  if (a_s8) {
    as = as_array<int8_t>(a_obj, "a", 2);
    data = as.data();
  } else {
    au = as_array<uint8_t>(a_obj, "a", 2);
    data = au.data();
  }
  const py::array& a = a_s8 ? static_cast<py::array&>(as) : static_cast<py::array&>(au);
  out.source = a;
  const size_t M = a.shape(0), K = a.shape(1);
  if (K != w.K)
    bad_arg("a", "has K = " + std::to_string(K) + " columns but w was packed with K = " +
                     std::to_string(w.K));
  const int lo = a_s8 ? -128 : 0, hi = a_s8 ? 127 : 255;
  if (py::isinstance<py::int_>(a_zp_obj)) {
    const long long z = a_zp_obj.cast<long long>();
    if (z < lo || z > hi) bad_arg("a_zero_point", std::to_string(z) + " out of range");
    out.a_zp.assign(1, static_cast<int32_t>(z));
  } else {
    auto z = as_vector<int32_t>(a_zp_obj, "a_zero_point", M);
    out.a_zp.assign(z.data(), z.data() + z.shape(0));
  }
  require_in_range(out.a_zp.data(), out.a_zp.size(), lo, hi, "a_zero_point");
  // The s8 -> u8 shift moves the zero point with the data.
  if (a_s8)
    for (auto& z : out.a_zp) z += 128;
  out.per_row = out.a_zp.size() > 1;
  {
    py::gil_scoped_release nogil;
    PackANeeds needs;
    needs.widen_i16 = isa == Isa::avx2 && !fast.allow;
    needs.rowsums = !w.zero_point_is_zero;
    needs.max_value = fast.allow;
    out.packed = pack_a(data, a_s8, M, K, needs);
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
  p.a_zp = pa.a_zp.data();
  p.a_zp_per_row = pa.per_row;
  std::vector<py::ssize_t> shape = {static_cast<py::ssize_t>(pa.packed.M),
                                    static_cast<py::ssize_t>(w.N)};
  py::array out(out_dtype, shape);
  void* dst = out.mutable_data();
  GemmOptions opt;
  opt.allow_fast = fast.allow;
  py::gil_scoped_release nogil;
  gemm_u8s8(pa.packed, w, isa, opt, kind, p, dst);
  return out;
}

}  // namespace needle_qc
