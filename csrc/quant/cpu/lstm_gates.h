// lstm_gates.h: the LSTM gate functions as explicit float32 steps (no FMA: the file is built
// with -ffp-contract=off), the scalar form of what lstm_cell_avx2.cc computes 8 lanes at a time
// and of needle_qc/opset/recurrent_eval.py's numpy reference: all three agree bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace needle_qc {
namespace lstm {

// Cephes expf's range reduction and polynomial (within 2 ulp of exp on [-87, 87]).
constexpr float kLog2e = 1.44269504088896341f, kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
// Cephes tanhf's odd polynomial for |x| < 0.625.
constexpr float kQ0 = -5.70498872745e-3f, kQ1 = 2.06390887954e-2f, kQ2 = -5.37397155531e-2f,
                kQ3 = 1.33314422036e-1f, kQ4 = -3.33332819422e-1f;
constexpr float kExpClamp = 87.0f, kSigmoidClamp = 80.0f, kTanhSmall = 0.625f;

inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

inline float gate_exp(float x) {
  x = clampf(x, -kExpClamp, kExpClamp);
  const float n = std::nearbyint(x * kLog2e);
  const float r = (x - n * kC1) - n * kC2;
  float p = kP0;
  p = p * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  p = (p * (r * r) + r) + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

inline float gate_sigmoid(float x) {
  x = clampf(x, -kSigmoidClamp, kSigmoidClamp);
  return 1.0f / (1.0f + gate_exp(-x));
}

inline float gate_tanh(float x) {
  const float a = std::fabs(x);
  if (a < kTanhSmall) {
    const float z = x * x;
    float q = kQ0;
    q = q * z + kQ1;
    q = q * z + kQ2;
    q = q * z + kQ3;
    q = q * z + kQ4;
    return x + (x * z) * q;
  }
  const float e = gate_exp(a + a < kSigmoidClamp ? a + a : kSigmoidClamp);
  const float big = 1.0f - 2.0f / (e + 1.0f);
  return x < 0.0f ? -big : big;
}

// One row of the tail: c' = f c + i g, h' = o tanh(c') for hidden units [j0, j1); gates holds
// the row's 4H pre-activations, the gate of role r at column off[r] + j (roles i, f, g, o).
inline void tail_scalar(const float* gates, const size_t off[4], const float* c, size_t j0,
                        size_t j1, float* h_out, float* c_out) {
  for (size_t j = j0; j < j1; ++j) {
    const float i = gate_sigmoid(gates[off[0] + j]), f = gate_sigmoid(gates[off[1] + j]);
    const float g = gate_tanh(gates[off[2] + j]), o = gate_sigmoid(gates[off[3] + j]);
    const float cn = f * c[j] + i * g;
    c_out[j] = cn;
    h_out[j] = o * gate_tanh(cn);
  }
}

}  // namespace lstm
}  // namespace needle_qc
