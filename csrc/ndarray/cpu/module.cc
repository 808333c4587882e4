// pybind11 bindings: the backend contract (docs/backend-contract.md) for ndarray_backend_cpu.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "ndarray/cpu/array.h"
#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/ewise.h"
#include "ndarray/cpu/matmul.h"
#include "ndarray/cpu/parallel.h"
#include "ndarray/cpu/reduce.h"
#include "ndarray/cpu/sgemm.h"
#include "ndarray/cpu/strided.h"

namespace py = pybind11;
using namespace needle::cpu;

namespace {

py::dtype numpy_view_dtype(DType dt) {
  switch (dt) {
    case DType::kFloat32: return py::dtype("float32");
    case DType::kFloat16: return py::dtype("float16");
    case DType::kBFloat16: return py::dtype("uint16");  // raw bits: numpy has no bfloat16
    case DType::kInt8: return py::dtype("int8");
    case DType::kUInt8: return py::dtype("uint8");
    case DType::kInt32: return py::dtype("int32");
  }
  throw std::logic_error("unreachable dtype");
}

std::string describe(const Array& a) {
  return std::string(dtype_name(a.dtype)) + "[" + std::to_string(a.size) + "]";
}

void require(bool ok, const std::string& op, const std::string& what) {
  if (!ok) throw py::value_error(op + ": " + what);
}

void same_dtype(const std::string& op, const Array& a, const Array& b) {
  require(a.dtype == b.dtype, op,
          std::string("dtype mismatch ") + dtype_name(a.dtype) + " vs " + dtype_name(b.dtype));
}

void min_size(const std::string& op, const char* name, const Array& a, int64_t n) {
  require(static_cast<int64_t>(a.size) >= n, op,
          std::string(name) + " is " + describe(a) + ", needs " + std::to_string(n) + " elements");
}

py::array to_numpy(py::object handle, const Shape& shape, const Shape& strides, int64_t offset) {
  const Array& a = handle.cast<const Array&>();
  check_view("to_numpy", a, shape, strides, offset);
  std::vector<py::ssize_t> byte_strides;
  const auto item = static_cast<int64_t>(a.itemsize());
  for (int64_t s : strides) byte_strides.push_back(s * item);
  const char* base = static_cast<const char*>(a.data()) + offset * item;
  // `handle` becomes the view's base object, keeping the buffer alive (zero-copy).
  return py::array(numpy_view_dtype(a.dtype), std::vector<py::ssize_t>(shape.begin(), shape.end()),
                   byte_strides, base, handle);
}

void from_numpy(py::array src, Array& out) {
  require(src.flags() & py::array::c_style, "from_numpy", "source array must be C-contiguous");
  require(static_cast<size_t>(src.nbytes()) == out.nbytes() &&
              static_cast<size_t>(src.itemsize()) == out.itemsize(),
          "from_numpy",
          "source has " + std::to_string(src.size()) + " elements of " +
              std::to_string(src.itemsize()) + " bytes, target is " + describe(out));
  std::memcpy(out.data(), src.data(), out.nbytes());
}

void bind_array(py::module_& m) {
  py::class_<Array>(m, "Array")
      .def(py::init<int64_t, const std::string&>(), py::arg("size"), py::arg("dtype") = "float32")
      .def_readonly("size", &Array::size)
      .def_property_readonly("dtype", [](const Array& a) { return dtype_name(a.dtype); })
      .def_property_readonly("itemsize", &Array::itemsize)
      .def_property_readonly("nbytes", &Array::nbytes)
      .def("ptr", [](const Array& a) { return reinterpret_cast<size_t>(a.data()); })
      .def("__repr__", [](const Array& a) { return "<ndarray_backend_cpu.Array " + describe(a) + ">"; });
}

void bind_memory(py::module_& m) {
  m.def("memory_stats", [] {
    const MemoryStats s = memory_stats();
    py::dict d;
    d["current_bytes"] = s.current_bytes;
    d["peak_bytes"] = s.peak_bytes;
    d["num_allocs"] = s.num_allocs;
    return d;
  });
  m.def("reset_peak_memory", &reset_peak_memory);
  // Not part of the contract: which kernels the run-time dispatch picked (tests, benchmarks).
  m.def("cpu_features", [] {
    py::dict d;
    d["avx2_fma"] = sgemm_avx2_supported();
    d["f16c"] = f16c_supported();
    d["num_threads"] = num_threads();
    return d;
  });
}

void bind_strided(py::module_& m) {
  m.def("to_numpy", &to_numpy);
  m.def("from_numpy", &from_numpy);
  m.def("fill", [](Array& out, double val) { fill(out, val); });
  m.def("compact", [](const Array& a, Array& out, const Shape& shape, const Shape& strides,
                      int64_t offset) {
    same_dtype("compact", a, out);
    min_size("compact", "out", out, shape_numel(shape));
    compact(a, out, shape, strides, offset);
  });
  m.def("ewise_setitem", [](const Array& a, Array& out, const Shape& shape, const Shape& strides,
                            int64_t offset) {
    same_dtype("ewise_setitem", a, out);
    min_size("ewise_setitem", "a", a, shape_numel(shape));
    ewise_setitem(a, out, shape, strides, offset);
  });
  m.def("scalar_setitem", &scalar_setitem);
  m.def("astype", [](const Array& a, Array& out) {
    require(a.size == out.size, "astype", "size mismatch " + describe(a) + " vs " + describe(out));
    astype(a, out);
  });
}

void bind_ewise(py::module_& m) {
  const std::pair<const char*, BinOp> binary[] = {
      {"add", BinOp::kAdd}, {"mul", BinOp::kMul}, {"div", BinOp::kDiv},
      {"maximum", BinOp::kMax}, {"eq", BinOp::kEq}, {"ge", BinOp::kGe}};
  for (const auto& [suffix, op] : binary) {
    const std::string ename = std::string("ewise_") + suffix;
    m.def(ename.c_str(), [ename, op = op](const Array& a, const Array& b, Array& out) {
      same_dtype(ename, a, b);
      same_dtype(ename, a, out);
      min_size(ename, "a", a, out.size);
      min_size(ename, "b", b, out.size);
      py::gil_scoped_release nogil;
      ewise_binary(op, ename.c_str(), a, b, out);
    });
    const std::string sname = std::string("scalar_") + suffix;
    m.def(sname.c_str(), [sname, op = op](const Array& a, double val, Array& out) {
      same_dtype(sname, a, out);
      min_size(sname, "a", a, out.size);
      py::gil_scoped_release nogil;
      scalar_binary(op, sname.c_str(), a, val, out);
    });
  }
  m.def("scalar_power", [](const Array& a, double val, Array& out) {
    same_dtype("scalar_power", a, out);
    min_size("scalar_power", "a", a, out.size);
    py::gil_scoped_release nogil;
    scalar_binary(BinOp::kPow, "scalar_power", a, val, out);
  });
  const std::pair<const char*, UnOp> unary[] = {
      {"ewise_log", UnOp::kLog}, {"ewise_exp", UnOp::kExp}, {"ewise_tanh", UnOp::kTanh}};
  for (const auto& [name, op] : unary) {
    const std::string uname = name;
    m.def(name, [uname, op = op](const Array& a, Array& out) {
      same_dtype(uname, a, out);
      min_size(uname, "a", a, out.size);
      py::gil_scoped_release nogil;
      ewise_unary(op, uname.c_str(), a, out);
    });
  }
}

void check_matmul(const char* op, const Array& a, const Array& b, const Array& out, int64_t m,
                  int64_t n, int64_t p, int64_t count = 1) {
  require(m >= 0 && n >= 0 && p >= 0 && count >= 0, op, "negative dimension");
  same_dtype(op, a, b);
  const bool is_int = !dtype_is_float(a.dtype);
  require(out.dtype == (is_int ? DType::kInt32 : a.dtype), op,
          std::string("out dtype must be ") + (is_int ? "int32" : dtype_name(a.dtype)) +
              ", got " + dtype_name(out.dtype));
  min_size(op, "a", a, count * m * n);
  min_size(op, "b", b, count * n * p);
  min_size(op, "out", out, count * m * p);
}

void bind_matmul_reduce(py::module_& m) {
  m.def("matmul", [](const Array& a, const Array& b, Array& out, int64_t mm, int64_t n,
                     int64_t p) {
    check_matmul("matmul", a, b, out, mm, n, p);
    py::gil_scoped_release nogil;
    matmul(a, b, out, mm, n, p);
  });
  m.def("matmul_batched", [](const Array& a, const Array& b, Array& out, int64_t count,
                             int64_t mm, int64_t n, int64_t p) {
    check_matmul("matmul_batched", a, b, out, mm, n, p, count);
    py::gil_scoped_release nogil;
    matmul_batched(a, b, out, count, mm, n, p);
  });
  m.def("matmul_tiled", [](const Array& a, const Array& b, Array& out, int64_t mm, int64_t n,
                           int64_t p) {
    check_matmul("matmul_tiled", a, b, out, mm, n, p);
    require(a.dtype == DType::kFloat32, "matmul_tiled", "only float32 is supported");
    require(mm % kTile == 0 && n % kTile == 0 && p % kTile == 0, "matmul_tiled",
            "m, n, p must be multiples of __tile_size__ (8)");
    py::gil_scoped_release nogil;
    matmul_tiled(a, b, out, mm, n, p);
  });
  m.def("reduce_sum", [](const Array& a, Array& out, int64_t rs) {
    require(rs >= 0, "reduce_sum", "reduce_size must be >= 0");
    const DType want = dtype_is_float(a.dtype) ? a.dtype : DType::kInt32;
    require(out.dtype == want, "reduce_sum",
            std::string("out dtype must be ") + dtype_name(want) + ", got " +
                dtype_name(out.dtype));
    min_size("reduce_sum", "a", a, static_cast<int64_t>(out.size) * rs);
    py::gil_scoped_release nogil;
    reduce_sum(a, out, rs);
  });
  m.def("reduce_max", [](const Array& a, Array& out, int64_t rs) {
    same_dtype("reduce_max", a, out);
    min_size("reduce_max", "a", a, static_cast<int64_t>(out.size) * rs);
    py::gil_scoped_release nogil;
    reduce_max(a, out, rs);
  });
}

}  // namespace

PYBIND11_MODULE(ndarray_backend_cpu, m) {
  m.doc() = "needle C++ CPU NDArray backend (all dtypes, counted 64-byte aligned memory)";
  m.attr("__device_name__") = "cpu";
  m.attr("__tile_size__") = kTile;
  bind_array(m);
  bind_memory(m);
  bind_strided(m);
  bind_ewise(m);
  bind_matmul_reduce(m);
}
