// thread_pool.h: the one fork-join pool of the native modules (persistent workers, thread_pool.cc).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>

namespace needle {
namespace common {

// Runs task(ctx, t) for every t in [0, tasks): t = 0 on the calling thread, the others on parked
// pool workers; returns when all are done. Falls back to running every task on the caller when
// called from inside a task, while another thread holds the pool, or during process exit.
// Tasks must not throw (run_tasks catches for them).
using PoolTask = void (*)(void* ctx, size_t t);
void run_on_pool(size_t tasks, PoolTask task, void* ctx);

// Runs fn(t) for t in [0, tasks) on the pool; the first exception a task throws is rethrown here.
template <class Fn>
void run_tasks(size_t tasks, Fn& fn) {
  struct Job {
    Fn* fn;
    std::exception_ptr error;
    std::atomic<bool> failed;
  } job{&fn, nullptr, {false}};
  auto task = [](void* ctx, size_t t) {
    Job& j = *static_cast<Job*>(ctx);
    try {
      (*j.fn)(t);
    } catch (...) {
      // The first failing task keeps its error; run_on_pool's join publishes it to the caller.
      if (!j.failed.exchange(true)) j.error = std::current_exception();
    }
  };
  run_on_pool(tasks, task, &job);
  if (job.error) std::rethrow_exception(job.error);
}

// Runs body(begin, end) over [0, n) split into at most max_threads equal contiguous chunks of at
// least min_chunk elements, each chunk rounded up to a multiple of `align` (so vector loops and
// cache lines are not shared between threads). One chunk runs inline on the caller.
template <class Body>
void parallel_chunks(size_t n, size_t min_chunk, size_t align, int max_threads, Body&& body) {
  size_t workers = static_cast<size_t>(std::max(1, max_threads));
  workers = std::min(workers, std::max<size_t>(1, n / std::max<size_t>(1, min_chunk)));
  if (workers <= 1) {
    body(size_t{0}, n);
    return;
  }
  const size_t a = std::max<size_t>(1, align);
  const size_t chunk = ((n + workers - 1) / workers + a - 1) / a * a;
  auto one = [&](size_t t) {
    const size_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  };
  run_tasks(workers, one);
}

}  // namespace common
}  // namespace needle
