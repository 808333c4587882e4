// conv_args.h: the checked NHWC input and geometry of an int8 conv call (both conv bindings).
#pragma once

#include <string>

#include "quant/bind/args.h"
#include "quant/cpu/conv.h"

namespace needle_qc {

struct ConvCall {
  py::array_t<uint8_t, py::array::c_style> x;
  size_t batch = 0;
  ConvGeometry geom{1, 1, 1, 1, 1, 1, 1, 0, 0};
  uint8_t x_zp = 0;
};

// x [batch, H, W, Cin] uint8 against a KH x KW x Cin weight; names the bad argument.
inline ConvCall parse_conv_call(const py::handle& x_obj, int x_zp, size_t Cin, size_t KH,
                                size_t KW, const py::handle& stride,
                                const py::handle& padding) {
  ConvCall c;
  c.x = as_array<uint8_t>(x_obj, "x", 4);
  if (static_cast<size_t>(c.x.shape(3)) != Cin)
    bad_arg("x", "has C = " + std::to_string(c.x.shape(3)) + " channels (NHWC) but w expects " +
                     std::to_string(Cin));
  if (x_zp < 0 || x_zp > 255) bad_arg("x_zero_point", "outside [0, 255]");
  auto [sh, sw] = pair_arg<size_t>(stride, "stride");
  auto [ph, pw] = pair_arg<size_t>(padding, "padding");
  if (sh == 0 || sw == 0) bad_arg("stride", "must be >= 1");
  c.batch = c.x.shape(0);
  c.geom = ConvGeometry(c.x.shape(1), c.x.shape(2), Cin, KH, KW, sh, sw, ph, pw);
  if (c.geom.OH == 0 || c.geom.OW == 0) bad_arg("x", "is smaller than the kernel");
  c.x_zp = static_cast<uint8_t>(x_zp);
  return c;
}

}  // namespace needle_qc
