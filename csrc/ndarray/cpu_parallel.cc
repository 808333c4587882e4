// Thread count from NEEDLE_NUM_THREADS and a spawn-per-call fork-join (no idle pool to manage).
#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cpu_parallel.h"

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

namespace {

bool env_flag_set(const char* name) {
  const char* env = std::getenv(name);
  return env != nullptr && env[0] != '\0' && !(env[0] == '0' && env[1] == '\0');
}

}  // namespace

bool simd_disabled() {
  static const bool off = env_flag_set("NEEDLE_CPU_NO_SIMD");
  return off;
}

bool avx512_disabled() {
  static const bool off = env_flag_set("NEEDLE_CPU_NO_AVX512");
  return off;
}

void parallel_run(int nt, const std::function<void(int, int)>& fn) {
  if (nt <= 1) {
    fn(0, 1);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(nt - 1);
  for (int t = 1; t < nt; ++t) workers.emplace_back(fn, t, nt);
  fn(0, nt);
  for (auto& w : workers) w.join();
}

void parallel_for(int64_t n, int64_t min_per_thread, int64_t align,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t by_work = std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread));
  const int nt = static_cast<int>(std::min<int64_t>(num_threads(), by_work));
  if (nt <= 1) {
    fn(0, n);
    return;
  }
  const int64_t a = std::max<int64_t>(1, align);
  const int64_t chunk = ((n + nt - 1) / nt + a - 1) / a * a;
  parallel_run(nt, [&](int t, int) {
    const int64_t lo = std::min(n, t * chunk);
    const int64_t hi = std::min(n, lo + chunk);
    if (lo < hi) fn(lo, hi);
  });
}

}  // namespace cpu
}  // namespace needle
