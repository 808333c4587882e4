// parallel.cc: the CPU backend's thread count and path switches; fork-join on common's pool.
#include <algorithm>
#include <cstdlib>
#include <thread>

#include "common/cpu_features.h"
#include "common/thread_pool.h"
#include "ndarray/cpu/parallel.h"

namespace needle {
namespace cpu {

int num_threads() {
  // Read on every call so a process can change it between operations (benchmarks, tests).
  if (const char* env = std::getenv("NEEDLE_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return std::min(n, 256);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 256u));
}

bool simd_disabled() {
  static const bool off = common::env_flag_set("NEEDLE_CPU_NO_SIMD");
  return off;
}

bool avx512_disabled() {
  static const bool off = common::env_flag_set("NEEDLE_CPU_NO_AVX512");
  return off;
}

void parallel_run(int nt, const std::function<void(int, int)>& fn) {
  if (nt <= 1) {
    fn(0, 1);
    return;
  }
  auto one = [&](size_t t) { fn(static_cast<int>(t), nt); };
  common::run_tasks(static_cast<size_t>(nt), one);
}

void parallel_for(int64_t n, int64_t min_per_thread, int64_t align,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const size_t grain = static_cast<size_t>(std::max<int64_t>(1, min_per_thread));
  const size_t a = static_cast<size_t>(std::max<int64_t>(1, align));
  auto body = [&](size_t lo, size_t hi) { fn(static_cast<int64_t>(lo), static_cast<int64_t>(hi)); };
  common::parallel_chunks(static_cast<size_t>(n), grain, a, num_threads(), body);
}

}  // namespace cpu
}  // namespace needle
