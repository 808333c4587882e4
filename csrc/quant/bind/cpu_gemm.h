// cpu_gemm.h: shared argument handling of the GEMM and conv bindings.
#pragma once

#include "quant/bind/args.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

// allow_fast: the caller claims a_max * w.max_pair_abs <= 32767 (no vpmaddubsw saturation).
struct FastPathClaim {
  bool allow = false;
  int a_max = 255;
};

struct PreparedA {
  py::array source;  // keeps the (possibly contiguous-copied) input alive: packed may view it
  PackedA packed;
  std::vector<int32_t> a_zp;  // in the packed (u8) domain
  bool per_row = false;
};

PackedWeightS8 pack_weight_s8_py(const py::handle& w_obj, const py::handle& zp_obj);
PreparedA prepare_a(const py::handle& a_obj, bool a_s8, const py::handle& a_zp_obj,
                    const PackedWeightS8& w, Isa isa, const FastPathClaim& fast);
void check_fast_claim(const FastPathClaim& fast, const PackedA& a, const PackedWeightS8& w);
py::array run_gemm(const PreparedA& pa, const PackedWeightS8& w, Isa isa,
                   const FastPathClaim& fast, OutputKind kind, OutputParams p,
                   const py::dtype& out_dtype);

// Output-stage arguments parsed from Python (the arrays stay alive here).
struct RequantArgs {
  py::array_t<int32_t, py::array::c_style> bias;
  py::array_t<float, py::array::c_style> multiplier;
  OutputParams params;
  py::dtype dtype;
};
RequantArgs parse_requant(const py::handle& bias, const py::handle& multiplier, int y_zp,
                          int qmin, int qmax, const std::string& out_dtype, size_t N);

struct FloatOutArgs {
  py::array_t<float, py::array::c_style> scale, bias, row_scale;
  OutputParams params;
};
FloatOutArgs parse_float_out(const py::handle& scale, const py::handle& bias, bool relu,
                             const py::handle& row_scale, size_t M, size_t N);

}  // namespace needle_qc
