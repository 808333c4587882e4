// cpu_float_layers.cc: Python bindings of embedding_f32 and layer_norm_f32 (+ their checks).
#include <cmath>
#include <string>
#include <vector>

#include "quant/bind/args.h"
#include "quant/cpu/float_layers.h"

namespace needle_qc {

namespace {

// Whole-number ids (float32 or any integer dtype, any shape) in [0, rows), as int64; the message
// names the first bad entry, as Needle's one_hot refuses the same ids.
std::vector<int64_t> checked_ids(const py::handle& obj, size_t rows,
                                 std::vector<py::ssize_t>& shape) {
  if (!py::isinstance<py::array>(obj)) bad_arg("ids", "expected a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  shape = shape_of(a);
  std::vector<int64_t> ids(a.size());
  auto bad = [&](size_t i, const std::string& v) {
    bad_arg("ids", "entry " + std::to_string(i) + " is " + v + "; expected whole numbers in [0, " +
                       std::to_string(rows) + ")");
  };
  const auto kind = a.dtype().kind();
  if (!(a.dtype().is(py::dtype::of<float>()) || kind == 'i' || kind == 'u'))
    bad_arg("ids", "expected float32 or integer ids, got " + std::string(py::str(a.dtype())));
  // every accepted id that can be in range is exact as a double
  auto as_f64 = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  const double* p = as_f64.data();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!(p[i] >= 0.0) || p[i] >= static_cast<double>(rows) || p[i] != std::floor(p[i]))
      bad(i, std::to_string(p[i]));
    ids[i] = static_cast<int64_t>(p[i]);
  }
  return ids;
}

py::array embedding_f32(const py::handle& ids_obj, const py::handle& table_obj) {
  auto table = as_array<float>(table_obj, "table", 2);
  const size_t rows = table.shape(0), dim = table.shape(1);
  std::vector<py::ssize_t> shape;
  const auto ids = checked_ids(ids_obj, rows, shape);
  shape.push_back(static_cast<py::ssize_t>(dim));
  py::array_t<float> out(shape);
  {
    py::gil_scoped_release nogil;
    embedding_rows_f32(table.data(), dim, ids.data(), ids.size(), out.mutable_data());
  }
  return out;
}

py::array layer_norm_f32(const py::handle& x_obj, const py::handle& w_obj,
                         const py::handle& b_obj, double eps) {
  auto x = as_array<float>(x_obj, "x");
  if (x.ndim() < 1) bad_arg("x", "expected at least 1 dim");
  const size_t dim = x.shape(x.ndim() - 1);
  auto w = as_exact_vector<float>(w_obj, "weight", dim, "x.shape[-1]");
  auto b = as_exact_vector<float>(b_obj, "bias", dim, "x.shape[-1]");
  if (!(eps >= 0.0)) bad_arg("eps", "expected >= 0");
  const size_t rows = dim ? x.size() / dim : 0;
  py::array_t<float> out(shape_of(x));
  {
    py::gil_scoped_release nogil;
    layer_norm_rows_f32(x.data(), rows, dim, w.data(), b.data(), static_cast<float>(eps),
                        out.mutable_data());
  }
  return out;
}

}  // namespace

void bind_float_layers(py::module_& m) {
  m.def("embedding_f32", &embedding_f32, py::arg("ids"), py::arg("table"),
        "table[ids]: fp32 rows of a (rows, dim) table for whole-number ids of any shape "
        "(float32 or integers), checked to lie in [0, rows); out shape ids.shape + (dim,)");
  m.def("layer_norm_f32", &layer_norm_f32, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("eps"),
        "Layer norm over x's last dim in Needle LayerNorm1d's exact float32 order "
        "(pairwise sums, pow(var + eps, 0.5), no FMA)");
}

}  // namespace needle_qc
