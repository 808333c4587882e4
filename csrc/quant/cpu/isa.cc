// isa.cc: run-time ISA detection, the NEEDLE_QC_ISA override and the thread count.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "common/cpu_features.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512vnni: return "avx512vnni";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

bool cpu_has(Isa isa) {
#if defined(NEEDLE_QC_X86)
  const needle::common::CpuFeatures& f = needle::common::cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (isa == Isa::avx2) return avx2;
  if (isa == Isa::avx512vnni) return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
#endif
  return isa == Isa::scalar;
}

Isa best_isa() {
  static const Isa best = cpu_has(Isa::avx512vnni) ? Isa::avx512vnni
                          : cpu_has(Isa::avx2)     ? Isa::avx2
                                                   : Isa::scalar;
  return best;
}

Isa selected_isa() {
  // Read on every call so tests can switch paths through os.environ.
  const char* env = std::getenv("NEEDLE_QC_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  std::string want(env);
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512vnni}) {
    if (want != isa_name(isa)) continue;
    if (!cpu_has(isa))
      throw std::invalid_argument("NEEDLE_QC_ISA=" + want + " but this CPU lacks that ISA");
    return isa;
  }
  throw std::invalid_argument("NEEDLE_QC_ISA=" + want +
                              " is not one of scalar, avx2, avx512vnni");
}

int num_threads() {
  const char* env = std::getenv("NEEDLE_NUM_THREADS");
  if (env == nullptr || *env == '\0') return 2;
  char* end = nullptr;
  long n = std::strtol(env, &end, 10);
  if (*end != '\0' || n < 1 || n > 256)
    throw std::invalid_argument(std::string("NEEDLE_NUM_THREADS=") + env +
                                " must be an integer in [1, 256]");
  return static_cast<int>(n);
}

}  // namespace needle_qc
