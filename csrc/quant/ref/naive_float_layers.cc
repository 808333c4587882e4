// naive_float_layers.cc: naive twins of embedding_f32 / layer_norm_f32: whole-array passes with
// temporaries, one per Needle op (sum, divide, subtract, square, sqrt, divide, multiply, add).
#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/bind/args.h"

namespace needle_qc {

namespace {

// numpy's pairwise summation, written from its definition (block 128, 8 partial sums).
float naive_pairwise(const std::vector<float>& a, size_t lo, size_t n) {
  if (n < 8) {
    float s = 0.0f;
    for (size_t i = 0; i < n; ++i) s = s + a[lo + i];
    return s;
  }
  if (n > 128) {
    const size_t half = n / 2 - (n / 2) % 8;
    return naive_pairwise(a, lo, half) + naive_pairwise(a, lo + half, n - half);
  }
  std::vector<float> part(a.begin() + lo, a.begin() + lo + 8);
  const size_t whole = n - n % 8;
  for (size_t i = 8; i < whole; ++i) part[i % 8] = part[i % 8] + a[lo + i];
  float s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (size_t i = whole; i < n; ++i) s = s + a[lo + i];
  return s;
}

py::array embedding_naive(const py::array_t<double, py::array::c_style | py::array::forcecast>& ids,
                          const py::handle& table_obj) {
  auto table = as_array<float>(table_obj, "table", 2);
  const size_t rows = table.shape(0), dim = table.shape(1);
  auto shape = shape_of(ids);
  shape.push_back(static_cast<py::ssize_t>(dim));
  py::array_t<float> out(shape);
  float* o = out.mutable_data();
  for (py::ssize_t i = 0; i < ids.size(); ++i) {
    const double v = ids.data()[i];
    if (v < 0 || v >= static_cast<double>(rows) || v != std::floor(v))
      bad_arg("ids", "entry " + std::to_string(i) + " out of range");
    for (size_t j = 0; j < dim; ++j) o[i * dim + j] = table.at(static_cast<size_t>(v), j);
  }
  return out;
}

py::array layer_norm_naive(const py::handle& x_obj, const py::handle& w_obj,
                           const py::handle& b_obj, double eps) {
  auto x = as_array<float>(x_obj, "x");
  const size_t dim = x.shape(x.ndim() - 1), rows = x.size() / dim;
  auto w = as_array<float>(w_obj, "weight", 1);
  auto b = as_array<float>(b_obj, "bias", 1);
  std::vector<float> xs(x.data(), x.data() + x.size()), c(xs.size()), sq(xs.size());
  std::vector<float> mean(rows), var(rows);
  for (size_t r = 0; r < rows; ++r)
    mean[r] = (0.0f + naive_pairwise(xs, r * dim, dim)) / static_cast<float>(dim);
  for (size_t i = 0; i < xs.size(); ++i) c[i] = xs[i] - mean[i / dim];
  for (size_t i = 0; i < xs.size(); ++i) sq[i] = c[i] * c[i];
  for (size_t r = 0; r < rows; ++r)
    var[r] = (0.0f + naive_pairwise(sq, r * dim, dim)) / static_cast<float>(dim);
  py::array_t<float> out(shape_of(x));
  float* y = out.mutable_data();
  const float e = static_cast<float>(eps);
  for (size_t i = 0; i < xs.size(); ++i) {
    const float den = std::sqrt(var[i / dim] + e);
    const float normed = c[i] / den;
    const float scaled = normed * w.data()[i % dim];
    y[i] = scaled + b.data()[i % dim];
  }
  return out;
}

// Six nested loops over [n, oh, ow, co] and (kh, kw, c), one std::fma chain per output over
// the taps inside the image (padding taps are skipped, not multiplied by 0).
py::array conv_naive(const py::handle& x_obj, const py::handle& w_obj, const py::object& bias,
                     size_t stride, size_t pad, bool relu) {
  auto x = as_array<float>(x_obj, "x", 4);
  auto w = as_array<float>(w_obj, "weight", 4);
  const long n = x.shape(0), h = x.shape(1), wd = x.shape(2), ci = x.shape(3);
  const long k = w.shape(0), co = w.shape(3), s = stride, p = pad;
  const long oh = (h + 2 * p - k) / s + 1, ow = (wd + 2 * p - k) / s + 1;
  std::vector<float> b(co, 0.0f);
  if (!bias.is_none()) {
    auto bv = as_array<float>(bias, "bias", 1);
    for (long j = 0; j < co; ++j) b[j] = bv.data()[j];
  }
  py::array_t<float> out({n, oh, ow, co});
  auto y = out.mutable_unchecked<4>();
  auto xv = x.unchecked<4>();
  auto wv = w.unchecked<4>();
  for (long i = 0; i < n; ++i)
    for (long r = 0; r < oh; ++r)
      for (long q = 0; q < ow; ++q)
        for (long o = 0; o < co; ++o) {
          float acc = 0.0f;
          for (long kh = 0; kh < k; ++kh)
            for (long kw = 0; kw < k; ++kw)
              for (long c = 0; c < ci; ++c) {
                const long ih = r * s + kh - p, iw = q * s + kw - p;
                const bool in = ih >= 0 && iw >= 0 && ih < h && iw < wd;
                if (in) acc = std::fma(xv(i, ih, iw, c), wv(kh, kw, c, o), acc);
              }
          float v = bias.is_none() ? acc : acc + b[o];
          y(i, r, q, o) = relu ? std::max(v, 0.0f) : v;
        }
  return out;
}

}  // namespace

void bind_naive_float_layers(py::module_& m) {
  m.def("embedding_f32_naive", &embedding_naive, py::arg("ids"), py::arg("table"));
  m.def("layer_norm_f32_naive", &layer_norm_naive, py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("eps"));
  m.def("conv2d_nhwc_f32_naive", &conv_naive, py::arg("x"), py::arg("weight"),
        py::arg("bias") = py::none(), py::arg("stride") = 1, py::arg("padding") = 0,
        py::arg("relu") = false);
}

}  // namespace needle_qc
