// cuda_quantize.cu: Python bindings of quantize / dequantize / dynamic quantization on CUDA.
#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/bind/api_defs.h"
#include "quant/bind/cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

namespace {

int read_flag(const DeviceBuffer& flag) {
  int v = 0;
  flag.download(&v, sizeof v);
  return v;
}

DeviceBuffer zeroed_flag() {
  DeviceBuffer f(sizeof(int));
  f.zero();
  return f;
}

py::array quantize_f32(const py::handle& x_obj, const py::handle& s_obj, const py::handle& z_obj,
                       int axis, const std::string& out_dtype, const py::handle& qmin_obj,
                       const py::handle& qmax_obj) {
  require_gpu();
  auto x = as_array<float>(x_obj, "x");
  auto s = as_array<float>(s_obj, "scale", 1);
  auto z = as_array<int32_t>(z_obj, "zero_point", 1);
  if (z.shape(0) != s.shape(0)) bad_arg("zero_point", "must have the same length as scale");
  const QuantizeRange r = quantize_range(out_dtype, qmin_obj, qmax_obj);
  const bool s8 = r.out_s8;
  const int qmin = r.qmin, qmax = r.qmax;
  require_finite_positive(s.data(), s.shape(0), "scale");
  require_in_range(z.data(), z.shape(0), s8 ? -128 : 0, s8 ? 127 : 255, "zero_point");
  const AxisSplit sp = split_axis(x, s.shape(0), axis, "x");
  DeviceBuffer dx = upload(x), ds = upload(s), dz = upload(z), flag = zeroed_flag();
  DeviceBuffer dq(x.size());
  launch_quantize(dx.as<float>(), x.size(), sp.channels, sp.inner, ds.as<float>(),
                  dz.as<int32_t>(), qmin, qmax, s8, dq.as<void>(), flag.as<int>());
  if (read_flag(flag))
    bad_arg("x", "contains NaN (quantize maps +-inf to the range ends, NaN has no value)");
  return download(dq, s8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>(), shape_of(x));
}

py::array dequantize(const py::handle& q_obj, const py::handle& s_obj, const py::handle& z_obj,
                     int axis) {
  require_gpu();
  if (!py::isinstance<py::array>(q_obj)) bad_arg("q", "expected a numpy array");
  auto qa = py::reinterpret_borrow<py::array>(q_obj);
  auto s = as_array<float>(s_obj, "scale", 1);
  auto z = as_array<int32_t>(z_obj, "zero_point", 1);
  if (z.shape(0) != s.shape(0)) bad_arg("zero_point", "must have the same length as scale");
  require_finite(s.data(), s.shape(0), "scale");
  const AxisSplit sp = split_axis(qa, s.shape(0), axis, "q");
  py::array q;
  int kind;
  if (qa.dtype().is(py::dtype::of<uint8_t>())) {
    q = as_array<uint8_t>(qa, "q");
    kind = 0;
  } else if (qa.dtype().is(py::dtype::of<int8_t>())) {
    q = as_array<int8_t>(qa, "q");
    kind = 1;
  } else if (qa.dtype().is(py::dtype::of<int32_t>())) {
    q = as_array<int32_t>(qa, "q");
    kind = 2;
  } else {
    bad_arg("q", "expected dtype uint8, int8 or int32, got " + std::string(py::str(qa.dtype())));
  }
  DeviceBuffer dq = upload(q), ds = upload(s), dz = upload(z);
  DeviceBuffer dy(q.size() * sizeof(float));
  launch_dequantize(dq.as<void>(), kind, q.size(), sp.channels, sp.inner, ds.as<float>(),
                    dz.as<int32_t>(), dy.as<float>());
  return download(dy, py::dtype::of<float>(), shape_of(q));
}

constexpr size_t kMaxMinMaxBlocks = 1024;
constexpr const char* kNotFinite = "contains NaN or Inf; dynamic quantization needs finite values";

py::tuple dynamic_quantize_u8(const py::handle& x_obj) {
  require_gpu();
  auto x = as_array<float>(x_obj, "x");
  const size_t n = x.size();
  DeviceBuffer dx = upload(x), flag = zeroed_flag();
  DeviceBuffer bmin(kMaxMinMaxBlocks * sizeof(float)), bmax(kMaxMinMaxBlocks * sizeof(float));
  const size_t blocks =
      launch_minmax_blocks(dx.as<float>(), n, bmin.as<float>(), bmax.as<float>(), flag.as<int>());
  if (read_flag(flag)) bad_arg("x", kNotFinite);
  std::vector<float> lo(blocks), hi(blocks);
  bmin.download(lo.data(), blocks * sizeof(float));
  bmax.download(hi.data(), blocks * sizeof(float));
  float mn = 0.0f, mx = 0.0f, scale;  // empty input: (0, 0) as on the CPU
  if (blocks > 0) {
    mn = *std::min_element(lo.begin(), lo.end());
    mx = *std::max_element(hi.begin(), hi.end());
  }
  int32_t zp;
  dynamic_params_u8(mn, mx, scale, zp);
  DeviceBuffer ds = to_device(&scale, sizeof scale), dz = to_device(&zp, sizeof zp);
  DeviceBuffer dq(n);
  launch_quantize(dx.as<float>(), n, 1, n, ds.as<float>(), dz.as<int32_t>(), 0, 255, false,
                  dq.as<void>(), flag.as<int>());
  return py::make_tuple(download(dq, py::dtype::of<uint8_t>(), shape_of(x)), scale, zp);
}

py::tuple dynamic_quantize_rows(const py::handle& x_obj, const std::string& out_dtype) {
  require_gpu();
  auto x = as_array<float>(x_obj, "x", 2);
  const bool s8 = parse_int8_dtype(out_dtype, "out_dtype");
  const size_t M = x.shape(0), K = x.shape(1);
  DeviceBuffer dx = upload(x), flag = zeroed_flag();
  DeviceBuffer dq(M * K), ds(M * sizeof(float)), dz(M * sizeof(int32_t));
  launch_dynamic_rows(dx.as<float>(), M, K, s8, dq.as<void>(), ds.as<float>(), dz.as<int32_t>(),
                      flag.as<int>());
  if (read_flag(flag)) bad_arg("x", kNotFinite);
  const py::dtype q_dtype = s8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
  py::array q = download(dq, q_dtype, shape_of(x));
  return py::make_tuple(q, download(ds, py::dtype::of<float>(), {py::ssize_t(M)}),
                        download(dz, py::dtype::of<int32_t>(), {py::ssize_t(M)}));
}

}  // namespace

void bind_quantize(py::module_& m) {
  def_quantize_api(m, &quantize_f32, &dequantize, &dynamic_quantize_u8, &dynamic_quantize_rows);
}

}  // namespace cuda
}  // namespace needle_qc
