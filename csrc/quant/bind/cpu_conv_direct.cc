// cpu_conv_direct.cc: Python bindings of the direct NHWC int8 conv (conv_direct_s8.h).
#include <string>

#include "quant/bind/conv_args.h"
#include "quant/bind/cpu_gemm.h"
#include "quant/cpu/conv_direct_s8.h"

namespace needle_qc {

namespace {

constexpr long kPairLimit = 32767;  // vpmaddubsw saturates each pair sum to int16

PackedConvDirect pack_direct(const py::handle& w_obj, const py::handle& zp_obj) {
  auto w = as_array<int8_t>(w_obj, "w", 4);
  const size_t KH = w.shape(0), KW = w.shape(1), Cin = w.shape(2), Cout = w.shape(3);
  if (KH == 0 || KW == 0 || Cin == 0 || Cout == 0) bad_arg("w", "has an empty dimension");
  std::vector<int32_t> zp(1, 0);
  if (!zp_obj.is_none()) {
    auto z = as_vector<int32_t>(zp_obj, "w_zero_point", Cout);
    require_in_range(z.data(), z.shape(0), -128, 127, "w_zero_point");
    zp.assign(z.data(), z.data() + z.shape(0));
  }
  py::gil_scoped_release nogil;
  return pack_conv_direct_s8(w.data(), KH, KW, Cin, Cout, zp.data(), zp.size());
}

struct DirectCall : ConvCall {
  int a_max = -1;  // >= 0: the fast path, claiming x and z_x <= a_max
};

// The fast-path claim: no weight zero point and a_max * max_pair_abs <= 32767; that x and its
// z_x border really are <= a_max is checked by the kernel while it copies x (run()).
void check_fast(const PackedConvDirect& w, int a_max) {
  if (w.has_zero_point) bad_arg("allow_fast", "w has a zero point: only the exact path is exact");
  if (a_max < 0 || a_max > 255) bad_arg("a_max", std::to_string(a_max) + " outside [0, 255]");
  const long bound = long(a_max) * w.gemm.max_pair_abs;
  if (bound > kPairLimit)
    bad_arg("allow_fast", "a_max * w.max_pair_abs = " + std::to_string(a_max) + " * " +
                              std::to_string(w.gemm.max_pair_abs) + " = " +
                              std::to_string(bound) + " > 32767: vpmaddubsw would saturate");
}

DirectCall parse_call(const py::handle& x_obj, int x_zp, const PackedConvDirect& w,
                      const py::handle& stride, const py::handle& padding, bool allow_fast,
                      const py::handle& a_max) {
  DirectCall c;
  static_cast<ConvCall&>(c) = parse_conv_call(x_obj, x_zp, w.Cin, w.KH, w.KW, stride, padding);
  if (allow_fast) {
    c.a_max = a_max.is_none() ? 255 : a_max.cast<int>();
    check_fast(w, c.a_max);
  }
  return c;
}

py::array run(const DirectCall& c, const PackedConvDirect& w, OutputKind kind,
              const OutputParams& p, const py::dtype& dtype) {
  const ConvGeometry& g = c.geom;
  py::array out(dtype, std::vector<py::ssize_t>{py::ssize_t(c.batch), py::ssize_t(g.OH),
                                                py::ssize_t(g.OW), py::ssize_t(w.Cout)});
  void* dst = out.mutable_data();
  const Isa isa = selected_isa();
  bool claim_held;
  {
    py::gil_scoped_release nogil;
    claim_held = conv2d_direct_u8s8(c.x.data(), c.batch, g, c.x_zp, w, isa, c.a_max, kind, p,
                                    dst);
  }
  if (!claim_held)
    bad_arg("a_max", "claims x <= " + std::to_string(c.a_max) + " but x (or its z_x padding) "
                     "holds a larger byte");
  return out;
}

py::array direct_requant(const py::handle& x, int x_zp, const PackedConvDirect& w,
                         const py::handle& stride, const py::handle& padding,
                         const py::handle& bias, const py::handle& multiplier, int y_zp,
                         int qmin, int qmax, const std::string& out_dtype, bool allow_fast,
                         const py::handle& a_max) {
  DirectCall c = parse_call(x, x_zp, w, stride, padding, allow_fast, a_max);
  RequantArgs r = parse_requant(bias, multiplier, y_zp, qmin, qmax, out_dtype, w.Cout);
  return run(c, w, OutputKind::requant, r.params, r.dtype);
}

py::array direct_s32(const py::handle& x, int x_zp, const PackedConvDirect& w,
                     const py::handle& stride, const py::handle& padding, bool allow_fast,
                     const py::handle& a_max) {
  DirectCall c = parse_call(x, x_zp, w, stride, padding, allow_fast, a_max);
  return run(c, w, OutputKind::s32, OutputParams{}, py::dtype::of<int32_t>());
}

}  // namespace

void bind_conv_direct(py::module_& m) {
  py::class_<PackedConvDirect>(m, "PackedConvDirect",
                               "int8 conv weights [KH, KW, Cin, Cout] packed for the direct "
                               "NHWC conv (kernel-row runs padded to 4 bytes).")
      .def_property_readonly("kernel_shape", [](const PackedConvDirect& w) {
        return py::make_tuple(w.KH, w.KW, w.Cin, w.Cout);
      })
      .def_property_readonly("depth", &PackedConvDirect::depth)
      .def_property_readonly("max_pair_abs",
                             [](const PackedConvDirect& w) { return w.gemm.max_pair_abs; })
      .def_property_readonly("has_zero_point",
                             [](const PackedConvDirect& w) { return w.has_zero_point; })
      .def_property_readonly("nbytes", &PackedConvDirect::nbytes);
  m.def("pack_conv_direct_s8", &pack_direct, py::arg("w"), py::arg("w_zero_point") = py::none(),
        "Pack int8 conv weights w[KH, KW, Cin, Cout] (Needle layout), zero points [Cout] or [1], "
        "for conv2d_direct_u8s8_*.");
  const char* fast_doc =
      " allow_fast: the vpmaddubsw tile (AVX2), claiming a_max * w.max_pair_abs <= 32767 with "
      "x and x_zero_point <= a_max (default 255) and no weight zero point; checked, an error "
      "if wrong. The numbers equal conv2d_u8s8_* on every path.";
  m.def("conv2d_direct_u8s8_requant", &direct_requant, py::arg("x"), py::arg("x_zero_point"),
        py::arg("w"), py::arg("stride"), py::arg("padding"), py::arg("bias"),
        py::arg("multiplier"), py::arg("y_zero_point"), py::arg("qmin"), py::arg("qmax"),
        py::arg("out_dtype") = "uint8", py::arg("allow_fast") = false,
        py::arg("a_max") = py::none(),
        (std::string("Direct NHWC uint8 conv (no im2col) -> requantized NHWC.") + fast_doc)
            .c_str());
  m.def("conv2d_direct_u8s8_s32", &direct_s32, py::arg("x"), py::arg("x_zero_point"),
        py::arg("w"), py::arg("stride") = 1, py::arg("padding") = 0,
        py::arg("allow_fast") = false, py::arg("a_max") = py::none(),
        (std::string("Direct NHWC uint8 conv -> int32 accumulators.") + fast_doc).c_str());
}

}  // namespace needle_qc
