// epilogue.cuh: the fused output stage of the int8 GEMM, element by element, with the CPU's
// exact formulas (output_stage.cc): wrapping int32 zero-point correction, then one of
//   s32      acc
//   requant  clamp(rint(fp32(acc) * M[n]) + y_zp, qmin, qmax)
//   f32      fp32(acc) * (row_scale[m] * scale[n]) + bias[n], optional ReLU
// Every fp32 operation is an explicit _rn intrinsic so nvcc can never contract a multiply and an
// add into an FMA (the CPU rounds after each), which would change last bits.
#pragma once

#include "quant/cuda/quant.cuh"

namespace needle_qc {
namespace cuda {

// Σ(a'-za')(w-zw) + bias = raw - za'·colsum - zw·rowsum + K·za'·zw + bias, modulo 2^32.
__device__ inline int32_t corrected_acc(int32_t raw, const Epilogue& e, int64_t m, int64_t n) {
  const uint32_t za = static_cast<uint32_t>(e.a_zp[e.a_zp_per_row ? m : 0]);
  uint32_t v = static_cast<uint32_t>(raw) - za * static_cast<uint32_t>(e.colsum[n]);
  if (e.rowsum) {  // only when some weight zero point is nonzero
    const uint32_t zw = static_cast<uint32_t>(e.w_zp[n]);
    v -= zw * static_cast<uint32_t>(e.rowsum[m]);
    v += static_cast<uint32_t>(e.K) * za * zw;
  }
  if (e.bias_i32) v += static_cast<uint32_t>(e.bias_i32[n]);
  return static_cast<int32_t>(v);
}

__device__ inline int32_t requantize(int32_t acc, const Epilogue& e, int64_t n) {
  const float mult = e.multiplier[e.multiplier_per_col ? n : 0];
  float v = __fmul_rn(__int2float_rn(acc), mult);
  // Clamping before rounding gives the same integer (integer bounds, monotone rint) and keeps
  // the conversion in range.
  v = fminf(fmaxf(v, static_cast<float>(e.qmin - e.y_zp)), static_cast<float>(e.qmax - e.y_zp));
  return __float2int_rn(v) + e.y_zp;  // ties to even, zero point added after rounding
}

__device__ inline float to_float_out(int32_t acc, const Epilogue& e, int64_t m, int64_t n) {
  float s = e.scale[e.scale_per_col ? n : 0];
  if (e.row_scale) s = __fmul_rn(e.row_scale[m], s);
  float y = __fmul_rn(__int2float_rn(acc), s);
  if (e.bias_f32) y = __fadd_rn(y, e.bias_f32[n]);
  if (e.relu) y = y > 0.0f ? y : 0.0f;
  return y;
}

// Writes out[m, n] (row length N) for the raw dp4a sum of that element.
__device__ inline void store_output(int32_t raw, const Epilogue& e, int64_t m, int64_t n,
                                    int64_t N, void* out) {
  const int32_t acc = corrected_acc(raw, e, m, n);
  const int64_t at = m * N + n;
  if (e.kind == OutKind::s32) {
    static_cast<int32_t*>(out)[at] = acc;
  } else if (e.kind == OutKind::requant) {
    const int32_t q = requantize(acc, e, n);
    if (e.out_s8)
      static_cast<int8_t*>(out)[at] = static_cast<int8_t>(q);
    else
      static_cast<uint8_t*>(out)[at] = static_cast<uint8_t>(q);
  } else {
    static_cast<float*>(out)[at] = to_float_out(acc, e, m, n);
  }
}

}  // namespace cuda
}  // namespace needle_qc
