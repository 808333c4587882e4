// cpu_features.h: run-time x86 ISA detection and env-flag switches shared by the CPU modules.
#pragma once

namespace needle {
namespace common {

// What this CPU executes; all false off x86-64. Detected once: SIMD kernels are only entered
// after asking here, so the modules themselves stay baseline x86-64 (never -march=native).
struct CpuFeatures {
  bool avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false;
};
const CpuFeatures& cpu_features();

// True when the variable is set to a non-empty value other than "0" (tests' path switches).
bool env_flag_set(const char* name);

}  // namespace common
}  // namespace needle
