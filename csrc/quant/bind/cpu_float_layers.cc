// cpu_float_layers.cc: Python bindings of embedding_f32, layer_norm_f32 and the direct fp32
// conv (+ their checks).
#include <cmath>
#include <string>
#include <vector>

#include "quant/bind/args.h"
#include "quant/cpu/conv_f32.h"
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

py::array pack_conv(const py::handle& w_obj) {
  auto w = as_array<float>(w_obj, "weight", 4);
  const size_t k = w.shape(0), cin = w.shape(2), cout = w.shape(3);
  if (w.shape(1) != w.shape(0)) bad_arg("weight", "expected a square kernel [K, K, Cin, Cout]");
  py::array_t<float> out(static_cast<py::ssize_t>(packed_conv_f32_size(k, cin, cout)));
  pack_conv_f32(w.data(), k, cin, cout, out.mutable_data());
  return out;
}

// The output geometry of an NHWC conv of x (checked against the kernel); s.cin from x.
ConvF32Shape conv_shape(const py::array_t<float, py::array::c_style>& x, size_t k, size_t cout,
                        size_t stride, size_t pad) {
  ConvF32Shape s{static_cast<size_t>(x.shape(0)), static_cast<size_t>(x.shape(1)),
                 static_cast<size_t>(x.shape(2)), static_cast<size_t>(x.shape(3)), cout, k,
                 stride, pad, 0, 0};
  if (k == 0 || stride == 0 || cout == 0) bad_arg("kernel/stride/cout", "must be >= 1");
  if (s.h + 2 * pad < k || s.w + 2 * pad < k) bad_arg("x", "smaller than the kernel");
  s.oh = (s.h + 2 * pad - k) / stride + 1;
  s.ow = (s.w + 2 * pad - k) / stride + 1;
  return s;
}

void check_packed_conv(const py::array_t<float, py::array::c_style>& packed, size_t k,
                       size_t cin, size_t cout) {
  if (static_cast<size_t>(packed.shape(0)) != packed_conv_f32_size(k, cin, cout))
    bad_arg("packed", "size does not match kernel " + std::to_string(k) + ", Cin " +
                          std::to_string(cin) + ", Cout " + std::to_string(cout) +
                          " (pack_conv_f32 of the [K, K, Cin, Cout] weight)");
}

py::array run_conv(const py::array_t<float, py::array::c_style>& x, const float* packed,
                   const float* bias, bool relu, const ConvF32Shape& s) {
  py::array_t<float> out({s.n, s.oh, s.ow, s.cout});
  {
    py::gil_scoped_release nogil;
    conv2d_nhwc_f32(x.data(), packed, bias, relu, s, out.mutable_data());
  }
  return out;
}

py::array conv_nhwc(const py::handle& x_obj, const py::handle& packed_obj, size_t k,
                    size_t cout, const py::object& bias_obj, size_t stride, size_t pad,
                    bool relu) {
  auto x = as_array<float>(x_obj, "x", 4);
  const ConvF32Shape s = conv_shape(x, k, cout, stride, pad);
  auto packed = as_array<float>(packed_obj, "packed", 1);
  check_packed_conv(packed, k, s.cin, cout);
  py::array_t<float, py::array::c_style> bias;
  if (!bias_obj.is_none()) bias = as_exact_vector<float>(bias_obj, "bias", cout, "cout");
  return run_conv(x, packed.data(), bias_obj.is_none() ? nullptr : bias.data(), relu, s);
}

// One conv layer bound once (packed weight, bias, geometry, ReLU, all checked): a call parses
// x alone, which at batch 1 saves most of conv2d_nhwc_f32's per-call argument handling.
class ConvF32Layer {
 public:
  ConvF32Layer(const py::handle& packed, size_t k, size_t cin, size_t cout,
               const py::object& bias, size_t stride, size_t pad, bool relu)
      : packed_(as_array<float>(packed, "packed", 1)), k_(k), cin_(cin), cout_(cout),
        stride_(stride), pad_(pad), relu_(relu), has_bias_(!bias.is_none()) {
    if (k == 0 || stride == 0 || cout == 0 || cin == 0)
      bad_arg("kernel/stride/cin/cout", "must be >= 1");
    check_packed_conv(packed_, k, cin, cout);
    if (has_bias_) bias_ = as_exact_vector<float>(bias, "bias", cout, "cout");
  }

  py::array operator()(const py::handle& x_obj) const {
    auto x = as_array<float>(x_obj, "x", 4);
    if (static_cast<size_t>(x.shape(3)) != cin_)
      bad_arg("x", "has " + std::to_string(x.shape(3)) + " channels, the layer expects " +
                       std::to_string(cin_));
    const ConvF32Shape s = conv_shape(x, k_, cout_, stride_, pad_);
    return run_conv(x, packed_.data(), has_bias_ ? bias_.data() : nullptr, relu_, s);
  }

 private:
  py::array_t<float, py::array::c_style> packed_, bias_;
  size_t k_, cin_, cout_, stride_, pad_;
  bool relu_, has_bias_;
};

}  // namespace

void bind_float_layers(py::module_& m) {
  m.def("embedding_f32", &embedding_f32, py::arg("ids"), py::arg("table"),
        "table[ids]: fp32 rows of a (rows, dim) table for whole-number ids of any shape "
        "(float32 or integers), checked to lie in [0, rows); out shape ids.shape + (dim,)");
  m.def("layer_norm_f32", &layer_norm_f32, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("eps"),
        "Layer norm over x's last dim in Needle LayerNorm1d's exact float32 order "
        "(pairwise sums, sqrt(var + eps), no FMA)");
  m.def("pack_conv_f32", &pack_conv, py::arg("weight"),
        "A [K, K, Cin, Cout] fp32 conv weight in conv2d_nhwc_f32's panel layout");
  m.def("conv2d_nhwc_f32", &conv_nhwc, py::arg("x"), py::arg("packed"), py::arg("kernel"),
        py::arg("cout"), py::arg("bias") = py::none(), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("relu") = false,
        "Direct NHWC fp32 conv (zero padding), each output one FMA chain in (kh, kw, c) "
        "order; optional bias and ReLU");
  py::class_<ConvF32Layer>(m, "ConvF32Layer",
                           "conv2d_nhwc_f32 bound to one layer's packed weight, bias, geometry "
                           "and ReLU: call it with x [N, H, W, Cin] alone")
      .def(py::init<const py::handle&, size_t, size_t, size_t, const py::object&, size_t,
                    size_t, bool>(),
           py::arg("packed"), py::arg("kernel"), py::arg("cin"), py::arg("cout"),
           py::arg("bias") = py::none(), py::arg("stride") = 1, py::arg("padding") = 0,
           py::arg("relu") = false)
      .def("__call__", &ConvF32Layer::operator(), py::arg("x"));
}

}  // namespace needle_qc
