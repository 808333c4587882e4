// cuda_bind_quantize.cu: Python bindings of quantize / dequantize / dynamic quantization on CUDA.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

namespace {

struct AxisSplit {
  size_t channels = 1, inner = 1;
};

// Views x as [outer, C, inner] around `axis`; one scale means the whole tensor (C = 1).
AxisSplit split_axis(const py::array& x, size_t n_scales, int axis, const char* name) {
  AxisSplit s;
  const int nd = static_cast<int>(x.ndim());
  if (n_scales == 1) {
    s.inner = static_cast<size_t>(x.size());
    return s;
  }
  if (axis < -nd || axis >= nd)
    bad_arg("axis", std::to_string(axis) + " out of range for a " + std::to_string(nd) +
                        "-D " + name);
  if (axis < 0) axis += nd;
  if (static_cast<size_t>(x.shape(axis)) != n_scales)
    bad_arg("scale", "has " + std::to_string(n_scales) + " entries but " + name + ".shape[" +
                         std::to_string(axis) + "] = " + std::to_string(x.shape(axis)));
  for (int d = axis + 1; d < nd; ++d) s.inner *= x.shape(d);
  s.channels = n_scales;
  return s;
}

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
                       int axis, const std::string& out_dtype) {
  require_gpu();
  auto x = as_array<float>(x_obj, "x");
  auto s = as_array<float>(s_obj, "scale", 1);
  auto z = as_array<int32_t>(z_obj, "zero_point", 1);
  if (z.shape(0) != s.shape(0)) bad_arg("zero_point", "must have the same length as scale");
  const bool s8 = parse_int8_dtype(out_dtype, "out_dtype");
  const int qmin = s8 ? -128 : 0, qmax = s8 ? 127 : 255;
  require_finite_positive(s.data(), s.shape(0), "scale");
  require_in_range(z.data(), z.shape(0), qmin, qmax, "zero_point");
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

// ONNX DynamicQuantizeLinear parameters for one range (the CPU's formula); all zero -> (1, 0).
void dynamic_params_u8(float mn, float mx, float& scale, int32_t& zp) {
  mn = std::min(mn, 0.0f);
  mx = std::max(mx, 0.0f);
  scale = (mx - mn) / 255.0f;
  if (scale == 0.0f) {
    scale = 1.0f;
    zp = 0;
    return;
  }
  float izp = 0.0f - mn / scale;
  izp = std::min(std::max(izp, 0.0f), 255.0f);
  zp = static_cast<int32_t>(std::nearbyint(izp));
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
  m.def("quantize_f32", &quantize_f32, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("axis") = 1, py::arg("out_dtype") = "uint8",
        "q = clamp(rint(x / scale) + zero_point) (ONNX QuantizeLinear; ties to even, true fp32 "
        "division). scale/zero_point of length 1 = per tensor, else per `axis`.");
  m.def("dequantize", &dequantize, py::arg("q"), py::arg("scale"), py::arg("zero_point"),
        py::arg("axis") = 1, "y = float(q - zero_point) * scale (fp32), q uint8/int8/int32.");
  m.def("dynamic_quantize_u8", &dynamic_quantize_u8, py::arg("x"),
        "ONNX DynamicQuantizeLinear -> (q uint8, scale, zero_point); all-zero input: (1.0, 0).");
  m.def("dynamic_quantize_rows", &dynamic_quantize_rows, py::arg("x"),
        py::arg("out_dtype") = "uint8",
        "Per-row (per-token) dynamic quantization of x f32[M, K] -> (q, scales f32[M], "
        "zero_points i32[M]); uint8 asymmetric or int8 symmetric [-127, 127], zero point 0.");
}

}  // namespace cuda
}  // namespace needle_qc
