// thread_pool.cc: the persistent workers behind run_on_pool (created once, parked between calls).
//
// Workers spin briefly after each job (back-to-back GEMMs of one model then start in
// microseconds), then sleep on a condition variable. Every worker acknowledges every job, even
// one with fewer tasks than workers, so no worker can read a later job's fields as its own.
// fork(): the child has none of the parent's threads, so a pool whose owner pid differs is
// abandoned (leaked, never touched again) and a fresh one is made on first use.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "common/thread_pool.h"

namespace needle {
namespace common {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// About 15-20 us (a pause is ~30 ns on current x86): bridges the gap between back-to-back
// kernels of one model without burning much of a loaded machine's CPU on idle workers.
constexpr int kSpinIterations = 4000;

thread_local bool t_inside_task = false;

class WorkerPool {
 public:
  WorkerPool() : owner_pid_(getpid()) {}
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& th : threads_) th.join();
  }
  pid_t owner_pid() const { return owner_pid_; }
  std::mutex& dispatch() { return dispatch_; }

  // Caller holds dispatch().
  void run(size_t tasks, PoolTask task, void* ctx) {
    grow(tasks - 1);
    task_ = task;
    ctx_ = ctx;
    tasks_ = tasks;
    pending_.store(threads_.size(), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    t_inside_task = true;
    task(ctx, 0);
    t_inside_task = false;
    wait_all_done();
  }

 private:
  void grow(size_t workers) {
    while (threads_.size() < workers) {
      const size_t index = threads_.size() + 1;  // task 0 belongs to the caller
      const uint64_t now = generation_.load(std::memory_order_relaxed);
      threads_.emplace_back([this, index, now] { worker_loop(index, now); });
    }
  }

  void wait_all_done() {
    for (int s = 0; s < kSpinIterations; ++s) {
      if (pending_.load(std::memory_order_acquire) == 0) return;
      cpu_relax();
    }
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }

  // Returns the next generation, or 0 when stopping.
  uint64_t wait_for_job(uint64_t seen) {
    for (int s = 0; s < kSpinIterations; ++s) {
      const uint64_t g = generation_.load(std::memory_order_acquire);
      if (g != seen) return g;
      cpu_relax();
    }
    std::unique_lock<std::mutex> lk(mu_);
    wake_.wait(lk, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
    return stop_ ? 0 : generation_.load(std::memory_order_acquire);
  }

  void worker_loop(size_t index, uint64_t seen) {
    t_inside_task = true;  // a parallel_for inside a task runs serially
    for (;;) {
      const uint64_t g = wait_for_job(seen);
      if (g == 0) return;
      seen = g;
      if (index < tasks_) task_(ctx_, index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);  // orders the notify after the waiter's check
        done_.notify_all();
      }
    }
  }

  const pid_t owner_pid_;
  std::mutex dispatch_;  // one job at a time
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{1};
  std::atomic<size_t> pending_{0};
  PoolTask task_ = nullptr;
  void* ctx_ = nullptr;
  size_t tasks_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

std::atomic<WorkerPool*> g_pool{nullptr};
std::atomic<bool> g_exiting{false};

// Joins the workers at exit (static destruction), unless this process is a fork child.
struct PoolReaper {
  ~PoolReaper() {
    g_exiting.store(true);
    WorkerPool* p = g_pool.exchange(nullptr);
    if (p == nullptr || p->owner_pid() != getpid()) return;
    { std::lock_guard<std::mutex> let_running_job_finish(p->dispatch()); }
    delete p;
  }
} g_reaper;

WorkerPool* current_pool() {
  WorkerPool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr && p->owner_pid() == getpid()) return p;
  // First use, or first use in a fork child (the old pool is abandoned on purpose).
  auto fresh = std::make_unique<WorkerPool>();
  if (g_pool.compare_exchange_strong(p, fresh.get())) return fresh.release();
  return p != nullptr && p->owner_pid() == getpid() ? p : nullptr;
}

void run_serially(size_t tasks, PoolTask task, void* ctx) {
  for (size_t t = 0; t < tasks; ++t) task(ctx, t);
}

}  // namespace

void run_on_pool(size_t tasks, PoolTask task, void* ctx) {
  if (tasks <= 1 || t_inside_task || g_exiting.load()) return run_serially(tasks, task, ctx);
  WorkerPool* pool = current_pool();
  if (pool == nullptr) return run_serially(tasks, task, ctx);
  std::unique_lock<std::mutex> lk(pool->dispatch(), std::try_to_lock);
  if (!lk.owns_lock()) return run_serially(tasks, task, ctx);  // another thread's job is running
  pool->run(tasks, task, ctx);
}

}  // namespace common
}  // namespace needle
