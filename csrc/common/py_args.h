// py_args.h: numpy argument checks shared by the CPU and CUDA bindings; failures name the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace needle {
namespace common {
namespace py = pybind11;

template <class T>
const char* numpy_dtype_name();
template <> inline const char* numpy_dtype_name<float>() { return "float32"; }
template <> inline const char* numpy_dtype_name<int8_t>() { return "int8"; }
template <> inline const char* numpy_dtype_name<uint8_t>() { return "uint8"; }
template <> inline const char* numpy_dtype_name<int32_t>() { return "int32"; }

[[noreturn]] inline void bad_arg(const std::string& name, const std::string& why) {
  throw py::value_error(name + ": " + why);
}

// A C-contiguous array of exactly dtype T (no silent casts) and, when ndim >= 0, that rank.
template <class T>
py::array_t<T, py::array::c_style> as_array(const py::handle& obj, const char* name,
                                            int ndim = -1) {
  if (!py::isinstance<py::array>(obj)) bad_arg(name, "expected a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>()))
    bad_arg(name, std::string("expected dtype ") + numpy_dtype_name<T>() + ", got " +
                      std::string(py::str(arr.dtype())));
  if (ndim >= 0 && arr.ndim() != ndim)
    bad_arg(name, "expected " + std::to_string(ndim) + "-D array, got " +
                      std::to_string(arr.ndim()) + "-D");
  return py::array_t<T, py::array::c_style>::ensure(arr);
}

// A 1-D vector of length 1 (broadcast) or exactly n.
template <class T>
py::array_t<T, py::array::c_style> as_vector(const py::handle& obj, const char* name, size_t n) {
  auto arr = as_array<T>(obj, name, 1);
  if (arr.shape(0) != 1 && static_cast<size_t>(arr.shape(0)) != n)
    bad_arg(name, "expected length 1 or " + std::to_string(n) + ", got " +
                      std::to_string(arr.shape(0)));
  return arr;
}

inline void require_finite_positive(const float* s, size_t n, const char* name) {
  for (size_t i = 0; i < n; ++i)
    if (!(s[i] > 0.0f) || s[i] == INFINITY)
      bad_arg(name, "entry " + std::to_string(i) + " is " + std::to_string(s[i]) +
                        ", expected finite and > 0");
}

inline void require_finite(const float* s, size_t n, const char* name) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(s[i]))
      bad_arg(name, "entry " + std::to_string(i) + " is not finite");
}

inline void require_in_range(const int32_t* z, size_t n, int lo, int hi, const char* name) {
  for (size_t i = 0; i < n; ++i)
    if (z[i] < lo || z[i] > hi)
      bad_arg(name, "entry " + std::to_string(i) + " = " + std::to_string(z[i]) +
                        " outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// "uint8" -> false, "int8" -> true.
inline bool parse_int8_dtype(const std::string& s, const char* name) {
  if (s == "uint8") return false;
  if (s == "int8") return true;
  bad_arg(name, "expected 'uint8' or 'int8', got '" + s + "'");
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// A tensor viewed as [outer, C, inner] around one axis, for per-tensor / per-channel scales.
struct AxisSplit {
  size_t outer = 1, channels = 1, inner = 1;
};

// Splits x around `axis` for n_scales scales; C == 1 (one scale) means the whole tensor is one
// span. `name` is x's argument name in the error messages.
inline AxisSplit split_axis(const py::array& x, size_t n_scales, int axis, const char* name) {
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
  for (int d = 0; d < axis; ++d) s.outer *= x.shape(d);
  for (int d = axis + 1; d < nd; ++d) s.inner *= x.shape(d);
  s.channels = n_scales;
  return s;
}

}  // namespace common
}  // namespace needle
