// cpu_conv.cc: Python bindings of the int8 NHWC convolutions (im2col + GEMM, direct 1x1).
#include <utility>

#include "quant/bind/api_defs.h"
#include "quant/bind/conv_args.h"
#include "quant/bind/cpu_gemm.h"
#include "quant/cpu/conv.h"

namespace needle_qc {

namespace {

PackedConvWeight pack_conv_weight_s8(const py::handle& w_obj, const py::handle& zp_obj) {
  auto w = as_array<int8_t>(w_obj, "w", 4);
  PackedConvWeight p;
  p.KH = w.shape(0);
  p.KW = w.shape(1);
  p.Cin = w.shape(2);
  p.Cout = w.shape(3);
  auto flat = w.reshape({static_cast<py::ssize_t>(p.KH * p.KW * p.Cin),
                         static_cast<py::ssize_t>(p.Cout)});
  p.gemm = pack_weight_s8_py(flat, zp_obj);
  return p;
}

ConvCall parse_conv(const py::handle& x_obj, int x_zp, const PackedConvWeight& w,
                    const py::handle& stride, const py::handle& padding) {
  return parse_conv_call(x_obj, x_zp, w.Cin, w.KH, w.KW, stride, padding);
}

py::array run_conv(const ConvCall& c, const PackedConvWeight& w, OutputKind kind,
                   OutputParams p, const py::dtype& dtype, size_t out_itemsize) {
  const ConvGeometry& g = c.geom;
  std::vector<py::ssize_t> shape = {py::ssize_t(c.batch), py::ssize_t(g.OH), py::ssize_t(g.OW),
                                    py::ssize_t(w.Cout)};
  py::array out(dtype, shape);
  uint8_t* dst = static_cast<uint8_t*>(out.mutable_data());
  const int32_t zp = c.x_zp;
  p.a_zp = &zp;
  p.a_zp_per_row = false;
  const Isa isa = selected_isa();
  py::gil_scoped_release nogil;
  // Spreads images over the threads when one image's GEMM is too small to split (conv.h).
  conv2d_u8s8_batch(c.x.data(), c.batch, g, c.x_zp, w, isa, kind, p, dst, out_itemsize);
  return out;
}

py::array conv_requant(const py::handle& x, int x_zp, const PackedConvWeight& w,
                       const py::handle& stride, const py::handle& padding,
                       const py::handle& bias, const py::handle& multiplier, int y_zp, int qmin,
                       int qmax, const std::string& out_dtype) {
  ConvCall c = parse_conv(x, x_zp, w, stride, padding);
  RequantArgs r = parse_requant(bias, multiplier, y_zp, qmin, qmax, out_dtype, w.Cout);
  return run_conv(c, w, OutputKind::requant, r.params, r.dtype, 1);
}

py::array conv_f32(const py::handle& x, int x_zp, const PackedConvWeight& w,
                   const py::handle& stride, const py::handle& padding, const py::handle& scale,
                   const py::handle& bias, bool relu) {
  ConvCall c = parse_conv(x, x_zp, w, stride, padding);
  FloatOutArgs f = parse_float_out(scale, bias, relu, py::none(), 0, w.Cout);
  return run_conv(c, w, OutputKind::f32, f.params, py::dtype::of<float>(), 4);
}

py::array conv_s32(const py::handle& x, int x_zp, const PackedConvWeight& w,
                   const py::handle& stride, const py::handle& padding) {
  ConvCall c = parse_conv(x, x_zp, w, stride, padding);
  return run_conv(c, w, OutputKind::s32, OutputParams{}, py::dtype::of<int32_t>(), 4);
}

}  // namespace

void bind_conv(py::module_& m) {
  py::class_<PackedConvWeight>(m, "PackedConvWeight",
                               "int8 conv weights [KH, KW, Cin, Cout] packed for the GEMM.")
      .def_property_readonly("kernel_shape", [](const PackedConvWeight& w) {
        return py::make_tuple(w.KH, w.KW, w.Cin, w.Cout);
      })
      .def_property_readonly("gemm_weight", [](const PackedConvWeight& w) { return w.gemm; })
      .def_property_readonly("nbytes", [](const PackedConvWeight& w) { return w.gemm.nbytes(); });
  def_conv_api(m, &pack_conv_weight_s8, &conv_requant, &conv_f32, &conv_s32,
               "NHWC uint8 conv -> requantized NHWC (same output stage as gemm_u8s8_requant).");
}

}  // namespace needle_qc
