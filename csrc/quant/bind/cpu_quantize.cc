// cpu_quantize.cc: Python bindings of quantize / dequantize / dynamic quantization.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "quant/bind/api_defs.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

using SpanFn = bool (*)(const float*, size_t, const float*, const int32_t*, size_t, int, int,
                        bool, void*);

SpanFn quantize_span_for(Isa isa) {
#if defined(NEEDLE_QC_X86)
  if (isa == Isa::avx512vnni) return quantize_span_avx512;
  if (isa != Isa::scalar) return quantize_span_avx2;
#endif
  (void)isa;
  return quantize_span_scalar;
}

// Quantizes with the split above; returns false if any x / s was NaN.
bool quantize_split(const float* x, const AxisSplit& sp, const float* s, const int32_t* z,
                    int qmin, int qmax, bool out_s8, uint8_t* q) {
  SpanFn span = quantize_span_for(selected_isa());
  bool ok = true;
  if (sp.channels == 1) {
    std::atomic<bool> all_ok{true};
    parallel_for(sp.inner, size_t{1} << 16, [&](size_t b, size_t e) {
      if (!span(x + b, e - b, s, z, 0, qmin, qmax, out_s8, q + b)) all_ok = false;
    });
    return all_ok;
  }
  for (size_t o = 0; o < sp.outer; ++o) {
    const size_t base = o * sp.channels * sp.inner;
    if (sp.inner == 1) {
      ok &= span(x + base, sp.channels, s, z, 1, qmin, qmax, out_s8, q + base);
      continue;
    }
    for (size_t c = 0; c < sp.channels; ++c) {
      const size_t at = base + c * sp.inner;
      ok &= span(x + at, sp.inner, s + c, z + c, 0, qmin, qmax, out_s8, q + at);
    }
  }
  return ok;
}

py::array quantize_f32(const py::handle& x_obj, const py::handle& s_obj, const py::handle& z_obj,
                       int axis, const std::string& out_dtype, const py::handle& qmin_obj,
                       const py::handle& qmax_obj) {
  auto x = as_array<float>(x_obj, "x");
  auto s = as_array<float>(s_obj, "scale", 1);
  auto z = as_array<int32_t>(z_obj, "zero_point", 1);
  if (z.shape(0) != s.shape(0)) bad_arg("zero_point", "must have the same length as scale");
  const QuantizeRange r = quantize_range(out_dtype, qmin_obj, qmax_obj);
  const bool s8 = r.out_s8;
  const int qmin = r.qmin, qmax = r.qmax;
  require_finite_positive(s.data(), s.shape(0), "scale");
  require_in_range(z.data(), z.shape(0), s8 ? -128 : 0, s8 ? 127 : 255, "zero_point");
  AxisSplit sp = split_axis(x, s.shape(0), axis, "x");
  py::array q = s8 ? py::array(py::dtype::of<int8_t>(), shape_of(x))
                   : py::array(py::dtype::of<uint8_t>(), shape_of(x));
  bool ok;
  {
    py::gil_scoped_release nogil;
    ok = quantize_split(x.data(), sp, s.data(), z.data(), qmin, qmax, s8,
                        static_cast<uint8_t*>(q.mutable_data()));
  }
  if (!ok) bad_arg("x", "contains NaN (quantize maps +-inf to the range ends, NaN has no value)");
  return q;
}

template <class Q>
void dequantize_loop(const Q* q, const AxisSplit& sp, const float* s, const int32_t* z,
                     float* y) {
  for (size_t o = 0; o < sp.outer; ++o)
    for (size_t c = 0; c < sp.channels; ++c) {
      const size_t at = (o * sp.channels + c) * sp.inner;
      dequantize_span(q + at, sp.inner, s[c], z[c], y + at);
    }
}

py::array dequantize(const py::handle& q_obj, const py::handle& s_obj, const py::handle& z_obj,
                     int axis) {
  if (!py::isinstance<py::array>(q_obj)) bad_arg("q", "expected a numpy array");
  auto qa = py::reinterpret_borrow<py::array>(q_obj);
  auto s = as_array<float>(s_obj, "scale", 1);
  auto z = as_array<int32_t>(z_obj, "zero_point", 1);
  if (z.shape(0) != s.shape(0)) bad_arg("zero_point", "must have the same length as scale");
  require_finite(s.data(), s.shape(0), "scale");
  AxisSplit sp = split_axis(qa, s.shape(0), axis, "q");
  py::array_t<float> y(shape_of(qa));
  float* yp = y.mutable_data();
  if (qa.dtype().is(py::dtype::of<uint8_t>())) {
    auto q = as_array<uint8_t>(qa, "q");
    dequantize_loop(q.data(), sp, s.data(), z.data(), yp);
  } else if (qa.dtype().is(py::dtype::of<int8_t>())) {
    auto q = as_array<int8_t>(qa, "q");
    dequantize_loop(q.data(), sp, s.data(), z.data(), yp);
  } else if (qa.dtype().is(py::dtype::of<int32_t>())) {
    auto q = as_array<int32_t>(qa, "q");
    dequantize_loop(q.data(), sp, s.data(), z.data(), yp);
  } else {
    bad_arg("q", "expected dtype uint8, int8 or int32, got " + std::string(py::str(qa.dtype())));
  }
  return y;
}

void min_max(const float* x, size_t n, float& mn, float& mx, const char* name) {
  if (!min_max_f32(x, n, mn, mx))
    bad_arg(name, "contains NaN or Inf; dynamic quantization needs finite values");
}

py::tuple dynamic_quantize_u8(const py::handle& x_obj) {
  auto x = as_array<float>(x_obj, "x");
  float mn, mx, scale;
  int32_t zp;
  min_max(x.data(), x.size(), mn, mx, "x");
  dynamic_params_u8(mn, mx, scale, zp);
  AxisSplit sp;
  sp.inner = x.size();
  py::array_t<uint8_t> q(shape_of(x));
  {
    py::gil_scoped_release nogil;
    quantize_split(x.data(), sp, &scale, &zp, 0, 255, false, q.mutable_data());
  }
  return py::make_tuple(q, scale, zp);
}

py::tuple dynamic_quantize_rows(const py::handle& x_obj, const std::string& out_dtype) {
  auto x = as_array<float>(x_obj, "x", 2);
  const bool s8 = parse_int8_dtype(out_dtype, "out_dtype");
  const size_t M = x.shape(0), K = x.shape(1);
  py::array_t<float> scales(M);
  py::array_t<int32_t> zps(M);
  py::array q = s8 ? py::array(py::dtype::of<int8_t>(), shape_of(x))
                   : py::array(py::dtype::of<uint8_t>(), shape_of(x));
  SpanFn span = quantize_span_for(selected_isa());
  for (size_t m = 0; m < M; ++m) {
    const float* row = x.data() + m * K;
    float mn, mx, s;
    int32_t z = 0;
    min_max(row, K, mn, mx, "x");
    if (s8) {  // symmetric [-127, 127], zero point 0 (LLM.int8 absmax per token)
      s = std::max(-mn, mx) / 127.0f;
      if (s == 0.0f) s = 1.0f;
    } else {
      dynamic_params_u8(mn, mx, s, z);
    }
    scales.mutable_data()[m] = s;
    zps.mutable_data()[m] = z;
    uint8_t* qrow = static_cast<uint8_t*>(q.mutable_data()) + m * K;
    span(row, K, &s, &z, 0, s8 ? -127 : 0, s8 ? 127 : 255, s8, qrow);
  }
  return py::make_tuple(q, scales, zps);
}

}  // namespace

void bind_quantize(py::module_& m) {
  def_quantize_api(m, &quantize_f32, &dequantize, &dynamic_quantize_u8, &dynamic_quantize_rows);
}

}  // namespace needle_qc
