// naive_bind.cc: naive twins of every kernel: plain loops over unpacked inputs, int64 sums that
// must fit in int32 (else OverflowError). They are the in-module oracle for the tests.
#include <cmath>
#include <stdexcept>

#include "quant/bind/args.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

// Integer array of uint8 / int8 / int32 values as int64 (the naive twins accept any of them).
std::vector<int64_t> ints(const py::handle& obj, const char* name,
                          std::vector<py::ssize_t>& shape) {
  if (!py::isinstance<py::array>(obj)) bad_arg(name, "expected a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  shape = shape_of(a);
  std::vector<int64_t> v(a.size());
  auto fill = [&](auto arr) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = arr.data()[i];
  };
  if (a.dtype().is(py::dtype::of<uint8_t>())) fill(as_array<uint8_t>(a, name));
  else if (a.dtype().is(py::dtype::of<int8_t>())) fill(as_array<int8_t>(a, name));
  else if (a.dtype().is(py::dtype::of<int32_t>())) fill(as_array<int32_t>(a, name));
  else bad_arg(name, "expected uint8, int8 or int32");
  return v;
}

std::vector<int64_t> zps(const py::handle& obj, size_t n) {
  if (obj.is_none()) return std::vector<int64_t>(n, 0);
  if (py::isinstance<py::int_>(obj)) return std::vector<int64_t>(n, obj.cast<int64_t>());
  auto z = as_vector<int32_t>(obj, "zero_point", n);
  std::vector<int64_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = z.data()[z.shape(0) == 1 ? 0 : i];
  return v;
}

int32_t checked_i32(int64_t v, size_t m, size_t n) {
  if (v < INT32_MIN || v > INT32_MAX)
    throw std::overflow_error("accumulator " + std::to_string(v) + " at (" + std::to_string(m) +
                              ", " + std::to_string(n) + ") does not fit in int32");
  return static_cast<int32_t>(v);
}

// acc[m, n] = Σ_k (a[m,k] - za[m]) (w[k,n] - zw[n]) [+ bias[n]], checked to fit in int32.
std::vector<int32_t> acc_naive(const py::handle& a_obj, const py::handle& a_zp,
                               const py::handle& w_obj, const py::handle& w_zp,
                               const py::handle& bias, size_t& M, size_t& N) {
  std::vector<py::ssize_t> as, ws, bs;
  auto a = ints(a_obj, "a", as), w = ints(w_obj, "w", ws);
  if (as.size() != 2 || ws.size() != 2 || as[1] != ws[0]) bad_arg("a/w", "need a[M,K], w[K,N]");
  M = as[0];
  const size_t K = as[1];
  N = ws[1];
  auto za = zps(a_zp, M), zw = zps(w_zp, N);
  std::vector<int64_t> b(N, 0);
  if (!bias.is_none()) b = ints(bias, "bias", bs);
  std::vector<int32_t> out(M * N);
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      int64_t s = 0;
      for (size_t k = 0; k < K; ++k) s += (a[m * K + k] - za[m]) * (w[k * N + n] - zw[n]);
      out[m * N + n] = checked_i32(checked_i32(s, m, n) + b[n], m, n);
    }
  return out;
}

py::array requant_naive(const std::vector<int32_t>& acc, size_t M, size_t N,
                        const py::handle& multiplier, int y_zp, int qmin, int qmax,
                        const std::string& out_dtype) {
  auto mul = as_vector<float>(multiplier, "multiplier", N);
  const bool s8 = parse_int8_dtype(out_dtype, "out_dtype");
  py::array out = s8 ? py::array(py::dtype::of<int8_t>(), {M, N})
                     : py::array(py::dtype::of<uint8_t>(), {M, N});
  for (size_t i = 0; i < M * N; ++i) {
    const float v = float(acc[i]) * mul.data()[mul.shape(0) == 1 ? 0 : i % N];
    double q = double(std::nearbyint(v)) + y_zp;  // nearbyint: ties to even
    q = std::min(std::max(q, double(qmin)), double(qmax));
    if (s8) static_cast<int8_t*>(out.mutable_data())[i] = static_cast<int8_t>(q);
    else static_cast<uint8_t*>(out.mutable_data())[i] = static_cast<uint8_t>(q);
  }
  return out;
}

py::array f32_naive(const std::vector<int32_t>& acc, size_t M, size_t N, const py::handle& scale,
                    const py::handle& bias, bool relu, const py::handle& row_scale) {
  auto s = as_vector<float>(scale, "scale", N);
  py::array_t<float> out({M, N});
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      float sc = s.data()[s.shape(0) == 1 ? 0 : n];
      if (!row_scale.is_none()) sc = as_array<float>(row_scale, "row_scale").data()[m] * sc;
      float y = float(acc[m * N + n]) * sc;
      if (!bias.is_none()) y = y + as_array<float>(bias, "bias").data()[n];
      out.mutable_data()[m * N + n] = relu && !(y > 0.0f) ? 0.0f : y;
    }
  return out;
}

py::array to_array(const std::vector<int32_t>& v, std::vector<py::ssize_t> shape) {
  py::array_t<int32_t> out(shape);
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// Direct NHWC conv accumulators, checked; padded taps contribute nothing (x_zp - x_zp = 0).
std::vector<int32_t> conv_acc_naive(const py::handle& x_obj, int x_zp, const py::handle& w_obj,
                                    const py::handle& w_zp, const py::handle& bias,
                                    py::tuple stride, py::tuple padding,
                                    std::vector<py::ssize_t>& out_shape) {
  std::vector<py::ssize_t> xs, ws, bs;
  auto x = ints(x_obj, "x", xs), w = ints(w_obj, "w", ws);
  const long Nb = xs[0], H = xs[1], W = xs[2], C = xs[3], KH = ws[0], KW = ws[1], CO = ws[3];
  const long sh = stride[0].cast<long>(), sw = stride[1].cast<long>();
  const long ph = padding[0].cast<long>(), pw = padding[1].cast<long>();
  const long OH = (H + 2 * ph - KH) / sh + 1, OW = (W + 2 * pw - KW) / sw + 1;
  auto zw = zps(w_zp, CO);
  std::vector<int64_t> b(CO, 0);
  if (!bias.is_none()) b = ints(bias, "bias", bs);
  out_shape = {Nb, OH, OW, CO};
  std::vector<int32_t> out(Nb * OH * OW * CO);
  size_t i = 0;
  for (long n = 0; n < Nb; ++n)
    for (long oh = 0; oh < OH; ++oh)
      for (long ow = 0; ow < OW; ++ow)
        for (long co = 0; co < CO; ++co, ++i) {
          int64_t s = 0;
          for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw) {
              const long ih = oh * sh + kh - ph, iw = ow * sw + kw - pw;
              if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
              for (long c = 0; c < C; ++c)
                s += (x[((n * H + ih) * W + iw) * C + c] - x_zp) *
                     (w[((kh * KW + kw) * C + c) * CO + co] - zw[co]);
            }
          out[i] = checked_i32(checked_i32(s, i / CO, co) + b[co], i / CO, co);
        }
  return out;
}

py::array quantize_naive(const py::handle& x_obj, const py::handle& s_obj,
                         const py::handle& z_obj, int axis, const std::string& out_dtype) {
  auto x = as_array<float>(x_obj, "x");
  auto s = as_array<float>(s_obj, "scale", 1);
  auto z = as_array<int32_t>(z_obj, "zero_point", 1);
  const bool s8 = parse_int8_dtype(out_dtype, "out_dtype");
  const size_t C = s.shape(0);
  size_t inner = 1;
  const int nd = x.ndim(), ax = axis < 0 ? axis + nd : axis;
  for (int d = ax + 1; C > 1 && d < nd; ++d) inner *= x.shape(d);
  py::array q = s8 ? py::array(py::dtype::of<int8_t>(), shape_of(x))
                   : py::array(py::dtype::of<uint8_t>(), shape_of(x));
  for (py::ssize_t i = 0; i < x.size(); ++i) {
    const size_t c = C == 1 ? 0 : (i / inner) % C;
    const float t = x.data()[i] / s.data()[c];
    if (std::isnan(t)) bad_arg("x", "contains NaN");
    double v = double(std::nearbyint(t)) + z.data()[c];
    v = std::min(std::max(v, s8 ? -128.0 : 0.0), s8 ? 127.0 : 255.0);
    if (s8) static_cast<int8_t*>(q.mutable_data())[i] = static_cast<int8_t>(v);
    else static_cast<uint8_t*>(q.mutable_data())[i] = static_cast<uint8_t>(v);
  }
  return q;
}

// y = x @ dec(W) + bias with a double accumulator (the most accurate sum, for tolerance checks).
py::array lowbit_naive(const py::handle& x_obj, const std::vector<float>& wdec, size_t N,
                       const py::handle& bias) {
  auto x = as_array<float>(x_obj, "x", 2);
  const size_t M = x.shape(0), K = x.shape(1);
  if (wdec.size() != K * N) bad_arg("w", "K does not match x");
  py::array_t<float> y({M, N});
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      double s = 0;
      for (size_t k = 0; k < K; ++k) s += double(x.data()[m * K + k]) * wdec[k * N + n];
      if (!bias.is_none()) s += as_array<float>(bias, "bias").data()[n];
      y.mutable_data()[m * N + n] = float(s);
    }
  return y;
}

std::vector<float> decode_half(const py::handle& w_obj, bool f16, size_t& N) {
  auto w = as_array<float>(w_obj, "w", 2);
  N = w.shape(1);
  std::vector<float> out(w.size());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = f16 ? f16_to_f32(f32_to_f16_rne(w.data()[i]))
                 : bf16_to_f32(f32_to_bf16_rne(w.data()[i]));
  return out;
}

std::vector<float> decode_int4(const py::handle& q_obj, const py::handle& s_obj, size_t g,
                               size_t& N) {
  auto q = as_array<int8_t>(q_obj, "w_q", 2);
  auto s = as_array<float>(s_obj, "scales", 2);
  const size_t K = q.shape(0);
  N = q.shape(1);
  std::vector<float> out(K * N);
  for (size_t k = 0; k < K; ++k)
    for (size_t n = 0; n < N; ++n)
      out[k * N + n] = float(q.data()[k * N + n]) * s.data()[(k / g) * N + n];
  return out;
}

py::tuple pair(const py::handle& v) {
  if (py::isinstance<py::int_>(v)) return py::make_tuple(v, v);
  return v.cast<py::tuple>();
}

}  // namespace

void bind_naive(py::module_& m) {
  m.def("quantize_f32_naive", &quantize_naive, py::arg("x"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis") = 1, py::arg("out_dtype") = "uint8");
  auto s32 = [](const py::handle& a, const py::handle& za, const py::handle& w,
                const py::handle& zw) {
    size_t M, N;
    auto acc = acc_naive(a, za, w, zw, py::none(), M, N);
    return to_array(acc, {py::ssize_t(M), py::ssize_t(N)});
  };
  auto rq = [](const py::handle& a, const py::handle& za, const py::handle& w,
               const py::handle& zw, const py::handle& bias, const py::handle& mul, int y_zp,
               int qmin, int qmax, const std::string& dt) {
    size_t M, N;
    auto acc = acc_naive(a, za, w, zw, bias, M, N);
    return requant_naive(acc, M, N, mul, y_zp, qmin, qmax, dt);
  };
  auto f32 = [](const py::handle& a, const py::handle& za, const py::handle& w,
                const py::handle& zw, const py::handle& scale, const py::handle& bias, bool relu,
                const py::handle& row_scale) {
    size_t M, N;
    auto acc = acc_naive(a, za, w, zw, py::none(), M, N);
    return f32_naive(acc, M, N, scale, bias, relu, row_scale);
  };
  for (const char* p : {"gemm_u8s8", "gemm_s8s8"}) {
    const std::string s(p);
    m.def((s + "_s32_naive").c_str(), s32, py::arg("a"), py::arg("a_zero_point"), py::arg("w"),
          py::arg("w_zero_point") = py::none());
    m.def((s + "_requant_naive").c_str(), rq, py::arg("a"), py::arg("a_zero_point"),
          py::arg("w"), py::arg("w_zero_point"), py::arg("bias"), py::arg("multiplier"),
          py::arg("y_zero_point"), py::arg("qmin"), py::arg("qmax"),
          py::arg("out_dtype") = "uint8");
    m.def((s + "_f32_naive").c_str(), f32, py::arg("a"), py::arg("a_zero_point"), py::arg("w"),
          py::arg("w_zero_point"), py::arg("scale"), py::arg("bias") = py::none(),
          py::arg("relu") = false, py::arg("row_scale") = py::none());
  }
  m.def(
      "conv2d_u8s8_s32_naive",
      [](const py::handle& x, int zx, const py::handle& w, const py::handle& zw,
         const py::handle& stride, const py::handle& pad) {
        std::vector<py::ssize_t> shape;
        auto acc = conv_acc_naive(x, zx, w, zw, py::none(), pair(stride), pair(pad), shape);
        return to_array(acc, shape);
      },
      py::arg("x"), py::arg("x_zero_point"), py::arg("w"), py::arg("w_zero_point"),
      py::arg("stride"), py::arg("padding"));
  m.def(
      "conv2d_u8s8_requant_naive",
      [](const py::handle& x, int zx, const py::handle& w, const py::handle& zw,
         const py::handle& stride, const py::handle& pad, const py::handle& bias,
         const py::handle& mul, int y_zp, int qmin, int qmax, const std::string& dt) {
        std::vector<py::ssize_t> shape;
        auto acc = conv_acc_naive(x, zx, w, zw, bias, pair(stride), pair(pad), shape);
        size_t rows = acc.size() / shape[3];
        py::array flat = requant_naive(acc, rows, shape[3], mul, y_zp, qmin, qmax, dt);
        return flat.reshape(shape);
      },
      py::arg("x"), py::arg("x_zero_point"), py::arg("w"), py::arg("w_zero_point"),
      py::arg("stride"), py::arg("padding"), py::arg("bias"), py::arg("multiplier"),
      py::arg("y_zero_point"), py::arg("qmin"), py::arg("qmax"), py::arg("out_dtype") = "uint8");
  m.def(
      "conv2d_u8s8_f32_naive",
      [](const py::handle& x, int zx, const py::handle& w, const py::handle& zw,
         const py::handle& stride, const py::handle& pad, const py::handle& scale,
         const py::handle& bias, bool relu) {
        std::vector<py::ssize_t> shape;
        auto acc = conv_acc_naive(x, zx, w, zw, py::none(), pair(stride), pair(pad), shape);
        size_t rows = acc.size() / shape[3];
        py::array flat = f32_naive(acc, rows, shape[3], scale, bias, relu, py::none());
        return flat.reshape(shape);
      },
      py::arg("x"), py::arg("x_zero_point"), py::arg("w"), py::arg("w_zero_point"),
      py::arg("stride"), py::arg("padding"), py::arg("scale"), py::arg("bias") = py::none(),
      py::arg("relu") = false);
  m.def(
      "gemm_f32_wf16_naive",
      [](const py::handle& x, const py::handle& w, const py::handle& b) {
        size_t N;
        auto d = decode_half(w, true, N);
        return lowbit_naive(x, d, N, b);
      },
      py::arg("x"), py::arg("w"), py::arg("bias") = py::none());
  m.def(
      "gemm_f32_wbf16_naive",
      [](const py::handle& x, const py::handle& w, const py::handle& b) {
        size_t N;
        auto d = decode_half(w, false, N);
        return lowbit_naive(x, d, N, b);
      },
      py::arg("x"), py::arg("w"), py::arg("bias") = py::none());
  m.def(
      "gemm_f32_wint4_naive",
      [](const py::handle& x, const py::handle& q, const py::handle& s, size_t g,
         const py::handle& b) {
        size_t N;
        auto d = decode_int4(q, s, g, N);
        return lowbit_naive(x, d, N, b);
      },
      py::arg("x"), py::arg("w_q"), py::arg("scales"), py::arg("group_size"),
      py::arg("bias") = py::none());
  m.def(
      "f32_to_f16_bits",
      [](const py::handle& w) {
        auto a = as_array<float>(w, "w");
        py::array_t<uint16_t> out(shape_of(a));
        for (py::ssize_t i = 0; i < a.size(); ++i)
          out.mutable_data()[i] = f32_to_f16_rne(a.data()[i]);
        return out;
      },
      py::arg("w"), "The packer's fp32 -> fp16 rounding, as raw bits (for tests).");
}

}  // namespace needle_qc
