// pybind11 module ndarray_backend_cuda: the backend contract of docs/backend-contract.md.
// Importing it touches no CUDA API, so it imports on machines without a GPU or driver.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>

#include "ndarray/cuda/ops.cuh"

namespace py = pybind11;

namespace needle {
namespace cuda {

namespace {

/// numpy view dtype of each backend dtype (bfloat16 travels as its raw uint16 bits).
py::dtype numpy_dtype(DType dt) {
  return py::dtype(dt == DType::kBFloat16 ? std::string("uint16") : std::string(dtype_name(dt)));
}

/// Copies the whole device buffer to the host and returns a strided view that owns that copy.
py::array to_numpy(const CudaArray& a, const IntVec& shape, const IntVec& strides,
                   int64_t offset) {
  require_gpu();
  check_view("to_numpy", a, shape, strides, offset);
  const size_t item = a.itemsize();
  auto* host = new uint8_t[a.nbytes() > 0 ? a.nbytes() : 1];
  py::capsule owner(host, [](void* p) { delete[] static_cast<uint8_t*>(p); });
  if (a.nbytes() > 0) {
    NEEDLE_CUDA_CHECK(cudaMemcpy(host, reinterpret_cast<const void*>(a.address()), a.nbytes(),
                                 cudaMemcpyDeviceToHost));
  }
  std::vector<py::ssize_t> np_shape(shape.begin(), shape.end()), np_strides;
  for (int64_t s : strides) np_strides.push_back(static_cast<py::ssize_t>(s * item));
  // An empty view may carry any offset; point it at the buffer start so it stays in bounds.
  size_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<size_t>(d);
  uint8_t* first = numel == 0 ? host : host + offset * static_cast<int64_t>(item);
  return py::array(numpy_dtype(a.dtype()), np_shape, np_strides, first, owner);
}

void from_numpy(const py::array& src, CudaArray& out) {
  require_gpu();
  py::dtype want = numpy_dtype(out.dtype());
  py::dtype got = src.dtype();
  if (got.kind() != want.kind() || got.itemsize() != want.itemsize()) {
    throw std::invalid_argument(std::string("ndarray_backend_cuda.from_numpy: ") +
                                dtype_name(out.dtype()) + " array needs numpy " +
                                std::string(py::str(want)) + ", got " +
                                std::string(py::str(got)));
  }
  if (got.byteorder() == '>') {  // same kind and width, but bytes the device would misread
    throw std::invalid_argument("ndarray_backend_cuda.from_numpy: array is big-endian");
  }
  if (!(src.flags() & py::array::c_style)) {
    throw std::invalid_argument("ndarray_backend_cuda.from_numpy: array is not C-contiguous");
  }
  if (static_cast<size_t>(src.size()) != out.size()) {
    throw std::invalid_argument("ndarray_backend_cuda.from_numpy: array has " +
                                std::to_string(src.size()) + " elements, out has " +
                                std::to_string(out.size()));
  }
  if (out.nbytes() == 0) return;
  NEEDLE_CUDA_CHECK(cudaMemcpy(reinterpret_cast<void*>(out.address()), src.data(), out.nbytes(),
                               cudaMemcpyHostToDevice));
}

py::dict memory_stats_dict() {
  MemoryStats s = memory_stats();
  py::dict d;
  d["current_bytes"] = s.current_bytes;
  d["peak_bytes"] = s.peak_bytes;
  d["num_allocs"] = s.num_allocs;
  return d;
}

void bind_array(py::module_& m) {
  py::class_<CudaArray>(m, "Array")
      .def(py::init<int64_t, const std::string&>(), py::arg("size"),
           py::arg("dtype") = "float32")
      .def("ptr", &CudaArray::address)
      .def_property_readonly("size", &CudaArray::size)
      .def_property_readonly("dtype", [](const CudaArray& a) { return dtype_name(a.dtype()); })
      .def_property_readonly("itemsize", &CudaArray::itemsize)
      .def_property_readonly("nbytes", &CudaArray::nbytes)
      .def("__repr__", [](const CudaArray& a) {
        return "<ndarray_backend_cuda.Array size=" + std::to_string(a.size()) +
               " dtype=" + dtype_name(a.dtype()) + ">";
      });
}

void bind_binary(py::module_& m, const char* ewise_name, const char* scalar_name, BinaryOp op) {
  m.def(ewise_name, [ewise_name, op](const CudaArray& a, const CudaArray& b, CudaArray& out) {
    require_gpu();
    ewise_binary(ewise_name, op, a, b, out);
  });
  if (scalar_name == nullptr) return;
  m.def(scalar_name, [scalar_name, op](const CudaArray& a, double val, CudaArray& out) {
    require_gpu();
    scalar_binary(scalar_name, op, a, val, out);
  });
}

void bind_unary(py::module_& m, const char* name, UnaryOp op) {
  m.def(name, [name, op](const CudaArray& a, CudaArray& out) {
    require_gpu();
    ewise_unary(name, op, a, out);
  });
}

void bind_strided(py::module_& m) {
  m.def("fill", [](CudaArray& out, double val) {
    require_gpu();
    fill(out, val);
  });
  m.def("compact", [](const CudaArray& a, CudaArray& out, const IntVec& shape,
                      const IntVec& strides, int64_t offset) {
    require_gpu();
    compact(a, out, shape, strides, offset);
  });
  m.def("ewise_setitem", [](const CudaArray& a, CudaArray& out, const IntVec& shape,
                            const IntVec& strides, int64_t offset) {
    require_gpu();
    ewise_setitem(a, out, shape, strides, offset);
  });
  m.def("scalar_setitem", [](int64_t size, double val, CudaArray& out, const IntVec& shape,
                             const IntVec& strides, int64_t offset) {
    require_gpu();
    scalar_setitem(size, val, out, shape, strides, offset);
  });
}

void bind_compute(py::module_& m) {
  bind_binary(m, "ewise_add", "scalar_add", BinaryOp::kAdd);
  bind_binary(m, "ewise_mul", "scalar_mul", BinaryOp::kMul);
  bind_binary(m, "ewise_div", "scalar_div", BinaryOp::kDiv);
  bind_binary(m, "ewise_maximum", "scalar_maximum", BinaryOp::kMax);
  bind_binary(m, "ewise_eq", "scalar_eq", BinaryOp::kEq);
  bind_binary(m, "ewise_ge", "scalar_ge", BinaryOp::kGe);
  m.def("scalar_power", [](const CudaArray& a, double val, CudaArray& out) {
    require_gpu();
    scalar_binary("scalar_power", BinaryOp::kPow, a, val, out);
  });
  bind_unary(m, "ewise_log", UnaryOp::kLog);
  bind_unary(m, "ewise_exp", UnaryOp::kExp);
  bind_unary(m, "ewise_tanh", UnaryOp::kTanh);
  m.def("astype", [](const CudaArray& a, CudaArray& out) {
    require_gpu();
    astype(a, out);
  });
  m.def("matmul", [](const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t m_,
                     int64_t n, int64_t p) {
    require_gpu();
    matmul(a, b, out, m_, n, p);
  });
  m.def("reduce_sum", [](const CudaArray& a, CudaArray& out, int64_t reduce_size) {
    require_gpu();
    reduce_sum(a, out, reduce_size);
  });
  m.def("reduce_max", [](const CudaArray& a, CudaArray& out, int64_t reduce_size) {
    require_gpu();
    reduce_max(a, out, reduce_size);
  });
}

}  // namespace

}  // namespace cuda
}  // namespace needle

PYBIND11_MODULE(ndarray_backend_cuda, m) {
  using namespace needle::cuda;
  m.doc() = "needle NDArray backend on CUDA (docs/backend-contract.md)";
  m.attr("__device_name__") = "cuda";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const DTypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  bind_array(m);
  m.def("device_count", &device_count, "Visible CUDA devices; 0 without a GPU or driver.");
  m.def("memory_stats", &memory_stats_dict);
  m.def("reset_peak_memory", &reset_peak_memory);
  m.def("to_numpy", &to_numpy);
  m.def("from_numpy", &from_numpy);
  bind_strided(m);
  bind_compute(m);
}
