// parallel.h: fork-join loop over contiguous chunks, run on a persistent worker pool (parallel.cc).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>

namespace needle_qc {

int num_threads();

// Runs task(ctx, t) for every t in [0, tasks): t = 0 on the calling thread, the others on parked
// pool workers; returns when all are done. Falls back to running every task on the caller when
// called from inside a task, while another thread holds the pool, or during process exit.
// Tasks must not throw (parallel_for catches for them).
using PoolTask = void (*)(void* ctx, size_t t);
void run_on_pool(size_t tasks, PoolTask task, void* ctx);

// Runs body(begin, end) over [0, n) split into contiguous chunks of at least min_chunk, one per
// thread (num_threads() at most). The first exception a chunk throws is rethrown here.
template <class Body>
void parallel_for(size_t n, size_t min_chunk, Body body) {
  size_t workers = static_cast<size_t>(num_threads());
  workers = std::min(workers, std::max<size_t>(1, n / std::max<size_t>(1, min_chunk)));
  if (workers <= 1) {
    body(size_t{0}, n);
    return;
  }
  // Equal contiguous chunks keep each thread on its own panels (no false sharing of outputs).
  struct Job {
    Body* body;
    size_t n, chunk;
    std::exception_ptr error;
    std::atomic<bool> failed;
  } job{&body, n, (n + workers - 1) / workers, nullptr, {false}};
  auto task = [](void* ctx, size_t t) {
    Job& j = *static_cast<Job*>(ctx);
    const size_t begin = std::min(j.n, t * j.chunk), end = std::min(j.n, begin + j.chunk);
    if (begin >= end) return;
    try {
      (*j.body)(begin, end);
    } catch (...) {
      // The first failing chunk keeps its error; run_on_pool's join publishes it to the caller.
      if (!j.failed.exchange(true)) j.error = std::current_exception();
    }
  };
  run_on_pool(workers, task, &job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace needle_qc
