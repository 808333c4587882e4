// cuda_conv.cu: NHWC uint8 convolutions on CUDA: im2col on the device, then the dp4a GEMM.
#include <algorithm>
#include <memory>
#include <utility>

#include "quant/bind/api_defs.h"
#include "quant/bind/cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

namespace {

struct PackedConvWeight {
  std::shared_ptr<PackedWeightS8> gemm;  // the weight viewed as [KH*KW*Cin, Cout]
  size_t KH = 0, KW = 0, Cin = 0, Cout = 0;
};

// im2col rows are staged per chunk of images so a large batch needs bounded device memory.
constexpr size_t kIm2colBudget = size_t(256) << 20;

PackedConvWeight pack_conv_weight_s8(const py::handle& w_obj, const py::handle& zp_obj) {
  require_gpu();
  auto w = as_array<int8_t>(w_obj, "w", 4);
  PackedConvWeight p;
  p.KH = w.shape(0);
  p.KW = w.shape(1);
  p.Cin = w.shape(2);
  p.Cout = w.shape(3);
  auto flat = w.reshape({py::ssize_t(p.KH * p.KW * p.Cin), py::ssize_t(p.Cout)});
  p.gemm = pack_weight_s8_py(flat, zp_obj);
  return p;
}

struct ConvCall {
  py::array_t<uint8_t, py::array::c_style> x;
  ConvShape s{};
  uint8_t x_zp = 0;
};

ConvCall parse_conv(const py::handle& x_obj, int x_zp, const PackedConvWeight& w,
                    const py::handle& stride, const py::handle& padding) {
  ConvCall c;
  c.x = as_array<uint8_t>(x_obj, "x", 4);
  if (static_cast<size_t>(c.x.shape(3)) != w.Cin)
    bad_arg("x", "has C = " + std::to_string(c.x.shape(3)) + " channels (NHWC) but w expects " +
                     std::to_string(w.Cin));
  if (x_zp < 0 || x_zp > 255) bad_arg("x_zero_point", "outside [0, 255]");
  auto [sh, sw] = pair_arg<int64_t>(stride, "stride");
  auto [ph, pw] = pair_arg<int64_t>(padding, "padding");
  if (sh == 0 || sw == 0) bad_arg("stride", "must be >= 1");
  ConvShape& s = c.s;
  s = ConvShape{c.x.shape(0), c.x.shape(1), c.x.shape(2), c.x.shape(3), int64_t(w.KH),
                int64_t(w.KW), sh, sw, ph, pw, 0, 0};
  s.OH = (s.H + 2 * ph >= s.KH) ? (s.H + 2 * ph - s.KH) / sh + 1 : 0;
  s.OW = (s.W + 2 * pw >= s.KW) ? (s.W + 2 * pw - s.KW) / sw + 1 : 0;
  if (s.OH == 0 || s.OW == 0) bad_arg("x", "is smaller than the kernel");
  c.x_zp = static_cast<uint8_t>(x_zp);
  return c;
}

py::array run_conv(const ConvCall& c, const PackedConvWeight& w, OutputArgs& o) {
  const ConvShape& s = c.s;
  const PackedWeightS8& g = *w.gemm;
  const size_t pixels = size_t(s.OH * s.OW), item = o.dtype.itemsize();
  const size_t chunk = std::max<size_t>(1, kIm2colBudget / std::max<size_t>(1, pixels * g.K4));
  DeviceBuffer x = upload(c.x);
  DeviceBuffer out(size_t(s.batch) * pixels * g.N * item);
  // Padded taps read x_zp and im2col stores x ^ 0x80, so the zero point moves the same way.
  const std::vector<int32_t> zp = {int32_t(c.x_zp) - 128};
  const size_t image_in = size_t(s.H * s.W * s.C);
  {
    py::gil_scoped_release nogil;  // device work only: other Python threads may run meanwhile
    for (size_t b0 = 0; b0 < size_t(s.batch); b0 += chunk) {
      ConvShape part = s;
      part.batch = int64_t(std::min(chunk, size_t(s.batch) - b0));
      const size_t rows = size_t(part.batch) * pixels;
      DeviceBuffer cols(rows * g.K4);
      launch_im2col(x.as<uint8_t>() + b0 * image_in, part, c.x_zp, g.K4, cols.as<int8_t>());
      run_gemm_s8(cols, rows, g, zp, o, out.as<uint8_t>() + b0 * pixels * g.N * item);
    }
  }
  return download(out, o.dtype, {py::ssize_t(s.batch), py::ssize_t(s.OH), py::ssize_t(s.OW),
                                 py::ssize_t(g.N)});
}

py::array conv_requant(const py::handle& x, int x_zp, const PackedConvWeight& w,
                       const py::handle& stride, const py::handle& padding,
                       const py::handle& bias, const py::handle& multiplier, int y_zp, int qmin,
                       int qmax, const std::string& out_dtype) {
  require_gpu();
  ConvCall c = parse_conv(x, x_zp, w, stride, padding);
  OutputArgs o = parse_requant(bias, multiplier, y_zp, qmin, qmax, out_dtype, w.Cout);
  return run_conv(c, w, o);
}

py::array conv_f32(const py::handle& x, int x_zp, const PackedConvWeight& w,
                   const py::handle& stride, const py::handle& padding, const py::handle& scale,
                   const py::handle& bias, bool relu) {
  require_gpu();
  ConvCall c = parse_conv(x, x_zp, w, stride, padding);
  OutputArgs o = parse_float_out(scale, bias, relu, py::none(), 0, w.Cout);
  return run_conv(c, w, o);
}

py::array conv_s32(const py::handle& x, int x_zp, const PackedConvWeight& w,
                   const py::handle& stride, const py::handle& padding) {
  require_gpu();
  ConvCall c = parse_conv(x, x_zp, w, stride, padding);
  OutputArgs o;
  return run_conv(c, w, o);
}

}  // namespace

void bind_conv(py::module_& m) {
  py::class_<PackedConvWeight>(m, "PackedConvWeight", py::module_local(),
                               "int8 conv weights [KH, KW, Cin, Cout] packed on the GPU.")
      .def_property_readonly("kernel_shape", [](const PackedConvWeight& w) {
        return py::make_tuple(w.KH, w.KW, w.Cin, w.Cout);
      })
      .def_property_readonly("gemm_weight", [](const PackedConvWeight& w) { return w.gemm; })
      .def_property_readonly("nbytes", [](const PackedConvWeight& w) { return w.gemm->nbytes(); });
  def_conv_api(m, &pack_conv_weight_s8, &conv_requant, &conv_f32, &conv_s32,
               "NHWC uint8 conv -> requantized NHWC (im2col on the device + the dp4a GEMM).");
}

}  // namespace cuda
}  // namespace needle_qc
