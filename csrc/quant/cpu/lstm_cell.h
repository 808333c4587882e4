// lstm_cell.h: one LSTM step in one call, fp32 and int8 (ORT DynamicQuantizeLSTM numerics).
//   gates[m, :] = ((x[m] W_ih + h[m] W_hh) + b_ih) + b_hh      (each product its own sum)
//   c' = f c + i g,  h' = o tanh(c')                           (lstm_gates.h, no FMA)
// fp32: each product output is one FMA chain over k in order (the direct GEMM's sums, so the
// gates equal the unfused matmuls' bit for bit). int8: x and h quantized (static qparams or per
// call), exact int32 sums with int8 weights, gates = f32(acc_x) (s_x s_ih[j]) + f32(acc_h)
// (s_h s_hh[j]) (+ biases). Scalar and AVX2 paths give the same bits. The weights stay int8 in
// memory (1 byte each, pairs of k interleaved); the AVX2 kernel widens them to int16 in
// registers (vpmovsxbw) for _mm256_madd_epi16 with the int16 (q - z) activations.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/cpu/quant.h"

namespace needle_qc {

struct LstmDims {
  size_t n, in, hidden;  // rows, input width I, hidden width H (gates are 4H wide)
  size_t off[4];         // column of gate i, f, g, o inside the 4H (the gate order)
};

// w_ih [I, 4H], w_hh [H, 4H] row-major fp32; biases [4H] or null (both or neither).
void lstm_cell_f32(const float* x, const float* h, const float* c, const float* w_ih,
                   const float* w_hh, const float* b_ih, const float* b_hh, const LstmDims& d,
                   Isa isa, float* h_out, float* c_out);

// int8 weight [K, N] -> int8 pairs [ceil(K / 2)][N][2] (odd K padded with a zero row): 16
// bytes are the k pair of 8 columns, which sign-extended to int16 are what _mm256_madd_epi16
// sums two k at a time from, exactly. Size in bytes (= elements).
size_t lstm_packed_s8_size(size_t k, size_t n);
void pack_lstm_s8(const int8_t* w, size_t k, size_t n, int8_t* packed);

// How an activation is quantized: static (s, z, [qmin, qmax]) or per call (DynamicQuantizeLinear
// u8: s from min(0, min v) and max(0, max v), z = rint(clamp(-lo / s, 0, 255))).
struct LstmQuant {
  bool dynamic;
  float s;
  int32_t z, qmin, qmax;
};

struct QLstmWeights {
  const int8_t* w_ih;  // pack_lstm_s8 of [I, 4H]
  const int8_t* w_hh;  // pack_lstm_s8 of [H, 4H]
  const float* s_ih;    // [4H] per-column scales (a per-tensor scale expanded)
  const float* s_hh;
};

// false when x or h holds NaN/Inf (nothing written then).
bool qlstm_cell(const float* x, const float* h, const float* c, const QLstmWeights& w,
                const float* b_ih, const float* b_hh, const LstmDims& d, LstmQuant qx,
                LstmQuant qh, Isa isa, float* h_out, float* c_out);

// A whole layer of T steps: xs [T, N, I] (row t * N + m), h0 / c0 [N, H] -> hs [T, N, H] (each
// step's h'), h_out = hs[T - 1] (h0 for T = 0) and c_out the last c'. Every step computes what
// the cell functions above compute, bit for bit; the x products of all T steps are done first
// (the same per-row sums, no longer interleaved with the recurrence). int8: qx[t] / qh[t] quantize
// step t's x and h (per call when dynamic: x_t's own range, as the cell); false on NaN/Inf.
void lstm_layer_f32(const float* xs, const float* h0, const float* c0, const float* w_ih,
                    const float* w_hh, const float* b_ih, const float* b_hh, size_t steps,
                    const LstmDims& d, Isa isa, float* hs, float* h_out, float* c_out);
bool qlstm_layer(const float* xs, const float* h0, const float* c0, const QLstmWeights& w,
                 const float* b_ih, const float* b_hh, size_t steps, const LstmDims& d,
                 const LstmQuant* qx, const LstmQuant* qh, Isa isa, float* hs, float* h_out,
                 float* c_out);

namespace lstm {
// The AVX2 row kernels (lstm_cell_avx2.cc); the scalar ones live in lstm_cell.cc.
void gemm_f32_avx2(const float* a, size_t k, const float* w, size_t n, float* out);
void gemm_s16s8_avx2(const int16_t* a, size_t k_pairs, const int8_t* w, size_t n,
                     int32_t* out);
void tail_avx2(const float* gates, const size_t off[4], const float* c, size_t hidden,
               float* h_out, float* c_out);
}  // namespace lstm

}  // namespace needle_qc
