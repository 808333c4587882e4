// The CPU backend's fork-join entry points and path switches (run on common/thread_pool.h).
#pragma once

#include <cstdint>
#include <functional>

namespace needle {
namespace cpu {

// Threads to use: NEEDLE_NUM_THREADS if set to a positive integer, else hardware_concurrency.
int num_threads();

// True when NEEDLE_CPU_NO_SIMD is set to a non-empty value other than "0": every kernel then
// takes its portable path (read once; used by tests to cover the fallback on SIMD machines).
bool simd_disabled();

// True when NEEDLE_CPU_NO_AVX512 is set like NEEDLE_CPU_NO_SIMD: AVX-512 kernels then step aside
// for the AVX2 ones (read once; lets tests cover the AVX2 path on AVX-512 machines).
bool avx512_disabled();

// Calls fn(begin, end) on disjoint chunks covering [0, n). Runs inline when n < min_per_thread*2
// or only one thread is configured; otherwise splits into at most num_threads() chunks, aligned
// to `align` elements so vector loops and cache lines are not shared between threads.
void parallel_for(int64_t n, int64_t min_per_thread, int64_t align,
                  const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(t, nt) for t in [0, nt) on nt threads (t == 0 on the calling thread).
void parallel_run(int nt, const std::function<void(int, int)>& fn);

}  // namespace cpu
}  // namespace needle
