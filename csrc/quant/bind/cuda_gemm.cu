// cuda_gemm.cu: Python bindings of the int8 GEMMs on CUDA (u8s8 / s8s8 x requant / f32 / s32).
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "quant/bind/cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

namespace {

using WeightPtr = std::shared_ptr<PackedWeightS8>;

// w int8 [K, N] -> k-quad words [K4/4][N] (byte j of word (kq, n) = w[4 kq + j, n], zero padded).
std::vector<int8_t> quad_words(const int8_t* w, size_t K, size_t N, size_t K4) {
  std::vector<int8_t> words(K4 * N, 0);
  for (size_t k = 0; k < K; ++k)
    for (size_t n = 0; n < N; ++n) words[((k / 4) * N + n) * 4 + k % 4] = w[k * N + n];
  return words;
}

}  // namespace

WeightPtr pack_weight_s8_py(const py::handle& w_obj, const py::handle& zp_obj) {
  require_gpu();
  auto w = as_array<int8_t>(w_obj, "w", 2);
  const size_t K = w.shape(0), N = w.shape(1);
  if (K == 0 || N == 0) bad_arg("w", "must have K > 0 and N > 0");
  std::shared_ptr<int32_t> zp(new int32_t[N], std::default_delete<int32_t[]>());
  std::fill(zp.get(), zp.get() + N, 0);
  if (!zp_obj.is_none()) {
    auto z = as_vector<int32_t>(zp_obj, "w_zero_point", N);
    require_in_range(z.data(), z.shape(0), -128, 127, "w_zero_point");
    for (size_t n = 0; n < N; ++n) zp.get()[n] = z.data()[z.shape(0) == 1 ? 0 : n];
  }
  auto p = std::make_shared<PackedWeightS8>();
  p->K = K;
  p->N = N;
  p->K4 = (K + 3) / 4 * 4;
  std::shared_ptr<int32_t> colsum(new int32_t[N](), std::default_delete<int32_t[]>());
  const int8_t* wd = w.data();
  for (size_t k = 0; k < K; ++k) {
    for (size_t n = 0; n < N; ++n) {
      colsum.get()[n] += wd[k * N + n];
      // The same statistic as the CPU's (vpmaddubsw pairs), reported for parity only.
      if (k % 2 == 0) {
        const int pair = std::abs(int(wd[k * N + n])) +
                         (k + 1 < K ? std::abs(int(wd[(k + 1) * N + n])) : 0);
        p->max_pair_abs = std::max(p->max_pair_abs, pair);
      }
    }
  }
  p->zero_point_is_zero = std::all_of(zp.get(), zp.get() + N, [](int32_t z) { return z == 0; });
  std::vector<int8_t> words = quad_words(wd, K, N, p->K4);
  p->words = to_device(words.data(), words.size());
  p->colsum = to_device(colsum.get(), N * sizeof(int32_t));
  p->zero_point = to_device(zp.get(), N * sizeof(int32_t));
  p->host_colsum = colsum;
  p->host_zero_point = zp;
  return p;
}

namespace {

std::vector<int32_t> parse_a_zp(const py::handle& a_zp_obj, bool a_s8, size_t M) {
  std::vector<int32_t> zp;
  if (py::isinstance<py::int_>(a_zp_obj)) {
    zp.assign(1, a_zp_obj.cast<int32_t>());
  } else {
    auto z = as_vector<int32_t>(a_zp_obj, "a_zero_point", M);
    zp.assign(z.data(), z.data() + z.shape(0));
  }
  require_in_range(zp.data(), zp.size(), a_s8 ? -128 : 0, a_s8 ? 127 : 255, "a_zero_point");
  if (!a_s8)
    for (auto& z : zp) z -= 128;  // uint8 rows are stored as a - 128 (cuda_quant.cuh)
  return zp;
}

// Uploads a [M, K] and packs it into signed rows [M][K4]; returns M through `M_out`.
DeviceBuffer prepare_rows(const py::handle& a_obj, bool a_s8, const PackedWeightS8& w,
                          size_t& M_out) {
  py::array a = a_s8 ? py::array(as_array<int8_t>(a_obj, "a", 2))
                     : py::array(as_array<uint8_t>(a_obj, "a", 2));
  const size_t M = a.shape(0), K = a.shape(1);
  if (K != w.K)
    bad_arg("a", "has K = " + std::to_string(K) + " columns but w was packed with K = " +
                     std::to_string(w.K));
  M_out = M;
  DeviceBuffer raw = upload(a);
  DeviceBuffer rows(M * w.K4);
  launch_pack_rows(raw.as<uint8_t>(), M, K, w.K4, !a_s8, rows.as<int8_t>());
  return rows;
}

py::array gemm(const py::handle& a_obj, bool a_s8, const py::handle& a_zp_obj,
               const PackedWeightS8& w, OutputArgs& o) {
  size_t M = 0;
  DeviceBuffer rows = prepare_rows(a_obj, a_s8, w, M);
  std::vector<int32_t> zp = parse_a_zp(a_zp_obj, a_s8, M);
  std::vector<py::ssize_t> shape = {py::ssize_t(M), py::ssize_t(w.N)};
  DeviceBuffer out(M * w.N * o.dtype.itemsize());
  {
    py::gil_scoped_release nogil;  // device work only: other Python threads may run meanwhile
    run_gemm_s8(rows, M, w, zp, o, out.as<void>());
  }
  return download(out, o.dtype, shape);
}

template <bool S8>
py::array gemm_requant(const py::handle& a, const py::handle& a_zp, const PackedWeightS8& w,
                       const py::handle& bias, const py::handle& multiplier, int y_zp, int qmin,
                       int qmax, const std::string& out_dtype, bool, const py::handle&) {
  require_gpu();
  OutputArgs o = parse_requant(bias, multiplier, y_zp, qmin, qmax, out_dtype, w.N);
  return gemm(a, S8, a_zp, w, o);
}

template <bool S8>
py::array gemm_f32(const py::handle& a, const py::handle& a_zp, const PackedWeightS8& w,
                   const py::handle& scale, const py::handle& bias, bool relu,
                   const py::handle& row_scale, bool, const py::handle&) {
  require_gpu();
  py::array checked = S8 ? py::array(as_array<int8_t>(a, "a", 2))
                         : py::array(as_array<uint8_t>(a, "a", 2));
  OutputArgs o = parse_float_out(scale, bias, relu, row_scale, checked.shape(0), w.N);
  return gemm(checked, S8, a_zp, w, o);
}

template <bool S8>
py::array gemm_s32(const py::handle& a, const py::handle& a_zp, const PackedWeightS8& w, bool,
                   const py::handle&) {
  require_gpu();
  OutputArgs o;
  return gemm(a, S8, a_zp, w, o);
}

template <bool S8>
void def_gemms(py::module_& m, const char* prefix) {
  const std::string p(prefix);
  const char* fast_note = " allow_fast / a_max are accepted for _quant_cpu compatibility and "
                          "ignored: dp4a never saturates, every path is exact.";
  m.def((p + "_requant").c_str(), &gemm_requant<S8>, py::arg("a"), py::arg("a_zero_point"),
        py::arg("w"), py::arg("bias"), py::arg("multiplier"), py::arg("y_zero_point"),
        py::arg("qmin"), py::arg("qmax"), py::arg("out_dtype") = "uint8",
        py::arg("allow_fast") = false, py::arg("a_max") = py::none(),
        ("y = clamp(rint(float(Σ(a-za)(w-zw) + bias) * multiplier) + y_zp, qmin, qmax)." +
         std::string(fast_note)).c_str());
  m.def((p + "_f32").c_str(), &gemm_f32<S8>, py::arg("a"), py::arg("a_zero_point"), py::arg("w"),
        py::arg("scale"), py::arg("bias") = py::none(), py::arg("relu") = false,
        py::arg("row_scale") = py::none(), py::arg("allow_fast") = false,
        py::arg("a_max") = py::none(),
        ("y = float(Σ(a-za)(w-zw)) * (row_scale[m] * scale[n]) + bias[n], optional ReLU." +
         std::string(fast_note)).c_str());
  m.def((p + "_s32").c_str(), &gemm_s32<S8>, py::arg("a"), py::arg("a_zero_point"), py::arg("w"),
        py::arg("allow_fast") = false, py::arg("a_max") = py::none(),
        ("MatMulInteger: int32 Σ_k (a - za)(w - zw)." + std::string(fast_note)).c_str());
}

py::array host_copy(const std::shared_ptr<int32_t>& v, size_t n) {
  return py::array_t<int32_t>(py::ssize_t(n), v.get());
}

}  // namespace

void bind_gemm(py::module_& m) {
  py::class_<PackedWeightS8, WeightPtr>(
      m, "PackedWeightS8", py::module_local(),
      "int8 weights [K, N] resident on the GPU as k-quad words + colsums.")
      .def_property_readonly("K", [](const PackedWeightS8& w) { return w.K; })
      .def_property_readonly("N", [](const PackedWeightS8& w) { return w.N; })
      .def_property_readonly("max_pair_abs",
                             [](const PackedWeightS8& w) { return w.max_pair_abs; })
      .def_property_readonly("nbytes", &PackedWeightS8::nbytes)
      .def_property_readonly(
          "zero_point", [](const PackedWeightS8& w) { return host_copy(w.host_zero_point, w.N); })
      .def_property_readonly(
          "colsum", [](const PackedWeightS8& w) { return host_copy(w.host_colsum, w.N); });
  m.def("pack_weight_s8", &pack_weight_s8_py, py::arg("w"), py::arg("w_zero_point") = py::none(),
        "Pack int8 weights w[K, N] (Needle layout) with zero points i32[N] or [1] onto the GPU.");
  def_gemms<false>(m, "gemm_u8s8");
  def_gemms<true>(m, "gemm_s8s8");
}

}  // namespace cuda
}  // namespace needle_qc
