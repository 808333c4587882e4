// cpu_layout.cc: Python bindings of the NCHW <-> NHWC copies.
#include <string>
#include <vector>

#include "quant/bind/args.h"
#include "quant/cpu/layout.h"

namespace needle_qc {

namespace {

// A C-contiguous 4-D array of 1/2/4/8-byte elements (any dtype: the copy moves bytes).
py::array checked_4d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) bad_arg(name, "expected a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != 4) bad_arg(name, "expected 4 dims, got " + std::to_string(a.ndim()));
  if (!(a.flags() & py::array::c_style)) bad_arg(name, "expected a C-contiguous array");
  const auto size = a.itemsize();
  if (size != 1 && size != 2 && size != 4 && size != 8)
    bad_arg(name, "expected 1, 2, 4 or 8-byte elements, got " + std::to_string(size));
  return a;
}

// to_nhwc: x [N, C, H, W] -> [N, H, W, C]; else x [N, H, W, C] -> [N, C, H, W].
py::array transpose(const py::handle& obj, bool to_nhwc) {
  auto x = checked_4d(obj, "x");
  const auto n = x.shape(0);
  const auto c = to_nhwc ? x.shape(1) : x.shape(3);
  const auto h = to_nhwc ? x.shape(2) : x.shape(1);
  const auto w = to_nhwc ? x.shape(3) : x.shape(2);
  std::vector<py::ssize_t> shape = to_nhwc ? std::vector<py::ssize_t>{n, h, w, c}
                                           : std::vector<py::ssize_t>{n, c, h, w};
  py::array out(x.dtype(), shape);
  {
    py::gil_scoped_release nogil;
    (to_nhwc ? nchw_to_nhwc : nhwc_to_nchw)(x.data(), out.mutable_data(), n, c, h * w,
                                            x.itemsize());
  }
  return out;
}

}  // namespace

void bind_layout(py::module_& m) {
  m.def("nchw_to_nhwc", [](const py::handle& x) { return transpose(x, true); }, py::arg("x"),
        "x [N, C, H, W] (C-contiguous, any 1/2/4/8-byte dtype) -> a new [N, H, W, C] copy");
  m.def("nhwc_to_nchw", [](const py::handle& x) { return transpose(x, false); }, py::arg("x"),
        "x [N, H, W, C] (C-contiguous, any 1/2/4/8-byte dtype) -> a new [N, C, H, W] copy");
}

}  // namespace needle_qc
