// args.h: the shared numpy argument checks (common/py_args.h) under the bindings' own namespace.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "common/py_args.h"

namespace needle_qc {
namespace py = pybind11;
using needle::common::as_array;
using needle::common::as_vector;
using needle::common::AxisSplit;
using needle::common::bad_arg;
using needle::common::parse_int8_dtype;
using needle::common::require_finite;
using needle::common::require_finite_positive;
using needle::common::require_in_range;
using needle::common::shape_of;
using needle::common::split_axis;

// The output-stage argument checks of _quant_cpu and _quant_cuda (same messages on both).

// Checks out_dtype ("uint8" / "int8"), qmin <= qmax inside it and y_zero_point; returns out_s8.
inline bool check_requant_range(const std::string& out_dtype, int y_zp, int qmin, int qmax) {
  const bool out_s8 = parse_int8_dtype(out_dtype, "out_dtype");
  const int lo = out_s8 ? -128 : 0, hi = out_s8 ? 127 : 255;
  if (qmin < lo || qmax > hi || qmin > qmax)
    bad_arg("qmin/qmax", "[" + std::to_string(qmin) + ", " + std::to_string(qmax) +
                             "] is not a range inside [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
  if (y_zp < lo || y_zp > hi) bad_arg("y_zero_point", std::to_string(y_zp) + " out of range");
  return out_s8;
}

// quantize_f32's clamp [qmin, qmax] inside out_dtype (None: that end of the type); applied in
// the same pass, so a narrowed range (reduce_range, a fused ReLU) costs no extra clamp.
struct QuantizeRange {
  bool out_s8;
  int qmin, qmax;
};
inline QuantizeRange quantize_range(const std::string& out_dtype, const py::handle& qmin,
                                    const py::handle& qmax) {
  QuantizeRange r{parse_int8_dtype(out_dtype, "out_dtype"), 0, 255};
  if (r.out_s8) r.qmin = -128, r.qmax = 127;
  const int lo = r.qmin, hi = r.qmax;
  if (!qmin.is_none()) r.qmin = qmin.cast<int>();
  if (!qmax.is_none()) r.qmax = qmax.cast<int>();
  if (r.qmin < lo || r.qmax > hi || r.qmin > r.qmax)
    bad_arg("qmin/qmax", "[" + std::to_string(r.qmin) + ", " + std::to_string(r.qmax) +
                             "] is not a range inside [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "] (" + out_dtype + ")");
  return r;
}

// A finite float vector of length 1 (broadcast) or n: per-tensor or per-column scales.
inline py::array_t<float, py::array::c_style> as_finite_vector(const py::handle& obj,
                                                               const char* name, size_t n) {
  auto v = as_vector<float>(obj, name, n);
  require_finite(v.data(), v.shape(0), name);
  return v;
}

// A 1-D array of exactly n entries (bias [N], row_scale [M]); `dim` is n's name in the message.
template <class T>
py::array_t<T, py::array::c_style> as_exact_vector(const py::handle& obj, const char* name,
                                                   size_t n, const char* dim) {
  auto v = as_array<T>(obj, name, 1);
  if (static_cast<size_t>(v.shape(0)) != n)
    bad_arg(name, std::string("expected length ") + dim + " = " + std::to_string(n));
  return v;
}

// stride / padding: an int or a pair (h, w), each >= 0.
template <class T>
std::pair<T, T> pair_arg(const py::handle& v, const char* name) {
  if (py::isinstance<py::int_>(v)) {
    const long s = v.cast<long>();
    if (s < 0) bad_arg(name, "must be >= 0");
    return {T(s), T(s)};
  }
  auto t = v.cast<py::tuple>();
  if (t.size() != 2) bad_arg(name, "expected an int or a pair (h, w)");
  const long a = t[0].cast<long>(), b = t[1].cast<long>();
  if (a < 0 || b < 0) bad_arg(name, "must be >= 0");
  return {T(a), T(b)};
}

// ONNX DynamicQuantizeLinear parameters for one range; all-zero input -> (1, 0). Host code in
// both modules, so the CPU and CUDA bindings pick the same scale and zero point bit for bit.
// qmax 127: the same over [0, 127] (reduce_range, 7-bit activations).
inline void dynamic_params_u8(float mn, float mx, float& scale, int32_t& zp, int32_t qmax = 255) {
  const float top = static_cast<float>(qmax);
  mn = std::min(mn, 0.0f);
  mx = std::max(mx, 0.0f);
  scale = (mx - mn) / top;
  if (scale == 0.0f) {
    scale = 1.0f;
    zp = 0;
    return;
  }
  float izp = 0.0f - mn / scale;
  izp = std::min(std::max(izp, 0.0f), top);
  zp = static_cast<int32_t>(std::nearbyint(izp));
}

}  // namespace needle_qc
