// Vectorized float32 exp/log/tanh (AVX2+FMA, Cephes-style polynomials, ~2 ulp).
#pragma once

#include <cstdint>

namespace needle {
namespace cpu {

// True when the AVX2 versions can run (AVX2 and FMA present).
bool vmath_avx2_supported();
void exp_avx2(const float* x, float* y, int64_t n);
void log_avx2(const float* x, float* y, int64_t n);
void tanh_avx2(const float* x, float* y, int64_t n);
// NaN-propagating max of n >= 1 floats.
float max_avx2(const float* a, int64_t n);

}  // namespace cpu
}  // namespace needle
