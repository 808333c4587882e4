// cpu_qadd.cc: qadd bound once to its quantization parameters, then called with the two operands:
// y = quantize_f32(dequantize(a) + dequantize(b)) in float32, the numbers of the separate
// kernels (the same span functions) in one call without the intermediate arrays.
#include <algorithm>
#include <string>

#include "quant/bind/cpu_gemm.h"

namespace needle_qc {

namespace {

struct QParams {
  float s = 1.0f;
  int32_t z = 0;
  bool s8 = false;
};

QParams qparams(const std::string& dtype, float s, int32_t z, const char* name) {
  QParams p{s, z, parse_int8_dtype(dtype, name)};
  require_finite_positive(&p.s, 1, name);
  require_in_range(&p.z, 1, p.s8 ? -128 : 0, p.s8 ? 127 : 255, name);
  return p;
}

py::array operand(const py::handle& h, bool s8, const char* name) {
  return s8 ? py::array(as_array<int8_t>(h, name)) : py::array(as_array<uint8_t>(h, name));
}

void dequantize_at(const py::array& q, size_t at, size_t n, const QParams& p, float* out) {
  if (p.s8)
    dequantize_span(static_cast<const int8_t*>(q.data()) + at, n, p.s, p.z, out);
  else
    dequantize_span(static_cast<const uint8_t*>(q.data()) + at, n, p.s, p.z, out);
}

// y = quantize(dequantize(a) + dequantize(b)) for a and b of one shape (no broadcasting).
struct BoundQAdd {
  QParams a, b, y;
  int qmin = 0, qmax = 255;

  py::array operator()(const py::handle& a_obj, const py::handle& b_obj) const {
    py::array qa = operand(a_obj, a.s8, "a"), qb = operand(b_obj, b.s8, "b");
    if (shape_of(qa) != shape_of(qb)) bad_arg("b", "must have the shape of a (no broadcasting)");
    py::array out(y.s8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>(), shape_of(qa));
    uint8_t* dst = static_cast<uint8_t*>(out.mutable_data());
    const QuantizeSpanFn span = quantize_span_fn(selected_isa());
    constexpr size_t kChunk = 1024;
    float fa[kChunk], fb[kChunk];
    for (size_t at = 0, n = qa.size(); at < n; at += kChunk) {
      const size_t len = std::min(kChunk, n - at);
      dequantize_at(qa, at, len, a, fa);
      dequantize_at(qb, at, len, b, fb);
      for (size_t i = 0; i < len; ++i) fa[i] = fa[i] + fb[i];
      span(fa, len, &y.s, &y.z, 0, qmin, qmax, y.s8, dst + at);  // finite sums: no NaN
    }
    return out;
  }
};

BoundQAdd bound_qadd(const std::string& a_dtype, float s_a, int32_t z_a, const std::string& b_dtype,
                     float s_b, int32_t z_b, const std::string& out_dtype, float s_y, int32_t z_y,
                     const py::handle& qmin, const py::handle& qmax) {
  BoundQAdd g;
  g.a = qparams(a_dtype, s_a, z_a, "a");
  g.b = qparams(b_dtype, s_b, z_b, "b");
  g.y = qparams(out_dtype, s_y, z_y, "out");
  const QuantizeRange r = quantize_range(out_dtype, qmin, qmax);
  g.qmin = r.qmin;
  g.qmax = r.qmax;
  return g;
}

}  // namespace

void bind_qadd(py::module_& m) {
  py::class_<BoundQAdd>(m, "BoundQAdd",
                        "qadd bound to its quantization parameters: call it with (a, b).")
      .def("__call__", &BoundQAdd::operator(), py::arg("a"), py::arg("b"));
  m.def("bind_qadd", &bound_qadd, py::arg("a_dtype"), py::arg("a_scale"), py::arg("a_zero_point"),
        py::arg("b_dtype"), py::arg("b_scale"), py::arg("b_zero_point"), py::arg("out_dtype"),
        py::arg("scale"), py::arg("zero_point"), py::arg("qmin") = py::none(),
        py::arg("qmax") = py::none(),
        "y = quantize_f32((a - za) * sa + (b - zb) * sb, scale, zero_point, qmin, qmax): the "
        "dequantize / float32 add / quantize_f32 kernels in one call, for a and b of one shape.");
}

}  // namespace needle_qc
