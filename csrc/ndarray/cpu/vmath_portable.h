// Scalar tanh for the portable (no-AVX2 or NEEDLE_CPU_NO_SIMD) path, within the 2 ulp contract.
#pragma once

#include <cmath>

namespace needle {
namespace cpu {

// glibc's tanhf is up to ~2.1 ulp from the exact value (e.g. at x = 0.2286, measured); tanh in
// double rounded once to float is within 0.5 ulp + 2^-29, and |tanh| <= 1 so the cast is safe.
// Only for baseline-flag translation units: an inline compiled with -mavx2 elsewhere could be the
// copy the linker keeps.
inline float tanh_portable(float x) {
  return static_cast<float>(std::tanh(static_cast<double>(x)));
}

}  // namespace cpu
}  // namespace needle
