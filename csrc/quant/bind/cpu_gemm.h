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
// a_zero_point in the packed (u8) domain, checked against the activations' type.
int32_t checked_a_zero_point(long long z, bool a_s8);
// Packs the rows of a (M x w.K, its dtype already checked) with zero points already shifted.
PreparedA pack_rows(const py::array& a, size_t M, bool a_s8, std::vector<int32_t> a_zp,
                    const PackedWeightS8& w, Isa isa, const FastPathClaim& fast);
void check_fast_claim(const FastPathClaim& fast, const PackedA& a, const PackedWeightS8& w);
void run_gemm_into(const PreparedA& pa, const PackedWeightS8& w, Isa isa,
                   const FastPathClaim& fast, OutputKind kind, OutputParams p, void* dst);
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

// A GEMM bound once to one layer's packed weight and output stage, then called with the
// activations alone: x[..., K] (uint8, or int8 with a_s8) -> y[..., N]. Every argument check of
// the free functions runs at bind time; the fast-path claim is still checked on each call's data.
struct BoundGemm {
  py::object w_keep;  // keeps the packed weight alive
  const PackedWeightS8* w = nullptr;
  bool a_s8 = false;
  int32_t a_zp = 0;  // in the packed (u8) domain
  FastPathClaim fast;
  OutputKind kind = OutputKind::requant;
  OutputParams params;
  // the arrays params points into
  py::array_t<int32_t, py::array::c_style> bias;
  py::array_t<float, py::array::c_style> multiplier_or_scale;
  py::dtype dtype;

  py::array operator()(const py::handle& x) const;
};

// The quantize span kernel of an ISA (quantize_span_{scalar,avx2,avx512}).
using QuantizeSpanFn = bool (*)(const float*, size_t, const float*, const int32_t*, size_t, int,
                                int, bool, void*);
QuantizeSpanFn quantize_span_fn(Isa isa);

// A dynamic linear bound once to its packed weight: per call, x[..., K] (float32) -> uint8 with
// this call's scale and zero point (ONNX DynamicQuantizeLinear: one per tensor, or one per row
// with per_row), then y[..., N] = float(Σ(a-za)(w-zw)) * (s_x * scale[n]) + bias[n]: the numbers
// of dynamic_quantize_{u8,rows} + gemm_u8s8_f32 + a separate bias add.
struct BoundDynamic {
  py::object w_keep;
  const PackedWeightS8* w = nullptr;
  py::array_t<float, py::array::c_style> scale, bias;  // bias: none when empty
  bool per_row = false;
  int32_t qmax = 255;  // 127: reduce_range activations [0, 127]
  FastPathClaim fast;  // proven at bind time for qmax 127 (127 * max_pair_abs <= 32767)

  py::array operator()(const py::handle& x) const;
};

}  // namespace needle_qc
