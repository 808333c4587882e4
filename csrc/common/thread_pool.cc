// thread_pool.cc: the persistent workers behind run_on_pool (created once, parked between calls).
//
// Tasks are claimed, not assigned: the caller and every awake worker take the next unclaimed
// task index from one atomic word until none is left, and the caller returns once every task is
// done. A worker that wakes late (its core busy with another process) finds nothing left and
// costs nothing: the job then runs at one thread's speed instead of waiting for the late thread,
// which is what a static split did (measured: resnet9 batch 64 at 3.5 ms on 2 threads vs 2.0 ms
// on 1 while the other core was busy). Which thread runs a task never changes its result.
//
// The claim word packs (job generation, next task index): a worker that slept through a whole
// job cannot claim in a later one with its stale view, since its compare-exchange names the
// generation it woke for. Workers spin for a measured time (kSpin below, on the clock, not an
// iteration count: a pause costs 10-140 cycles depending on the CPU) after each job, then sleep
// on a condition variable.
// fork(): the child has none of the parent's threads, so a pool whose owner pid differs is
// abandoned (leaked, never touched again) and a fresh one is made on first use.
#include <unistd.h>

#include <atomic>
#include <chrono>
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

// Bridges the gap between back-to-back kernels of one model (a few us of Python between calls)
// without burning much of a loaded machine's CPU on idle workers.
constexpr auto kSpin = std::chrono::microseconds(30);

// Spins until ready() or kSpin has passed; true when ready.
template <class Ready>
bool spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

// The claim word: generation (32 bits) | task count (16) | next unclaimed task (16). Everything
// a claimer decides on is in the one word it compare-exchanges, so no stale or half-written
// field of another job can be read as its own.
constexpr uint64_t kMaxTasks = 0xFFFF;
inline uint64_t claim_word(uint64_t generation, uint64_t tasks) {
  return (generation << 32) | (tasks << 16);
}

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
    done_count_.store(0, std::memory_order_relaxed);
    uint64_t g;
    {
      std::lock_guard<std::mutex> lk(mu_);
      g = generation_.load(std::memory_order_relaxed) + 1;
      claim_.store(claim_word(g, tasks), std::memory_order_relaxed);
      generation_.store(g, std::memory_order_release);
    }
    wake_.notify_all();
    t_inside_task = true;
    work(g);
    t_inside_task = false;
    wait_all_done(tasks);
  }

 private:
  void grow(size_t workers) {
    while (threads_.size() < workers) {
      const uint64_t now = generation_.load(std::memory_order_relaxed);
      threads_.emplace_back([this, now] { worker_loop(now); });
    }
  }

  // Claims and runs tasks of job `g` until none is left (or job g is over).
  void work(uint64_t g) {
    for (;;) {
      uint64_t word = claim_.load(std::memory_order_acquire);
      size_t t;
      do {
        if ((word >> 32) != g) return;  // a later job: ours ended while we slept
        t = static_cast<size_t>(word & 0xFFFF);
        if (t >= ((word >> 16) & 0xFFFF)) return;  // every task of job g is claimed
      } while (!claim_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel,
                                             std::memory_order_acquire));
      // Job g cannot end before this task is counted done, so task_/ctx_ are still g's.
      task_(ctx_, t);
      if (done_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks_) {
        std::lock_guard<std::mutex> lk(mu_);  // orders the notify after the waiter's check
        done_.notify_all();
      }
    }
  }

  void wait_all_done(size_t tasks) {
    auto finished = [&] { return done_count_.load(std::memory_order_acquire) == tasks; };
    if (spin_until(finished)) return;
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, finished);
  }

  // Returns the next generation, or 0 when stopping.
  uint64_t wait_for_job(uint64_t seen) {
    auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (spin_until(fresh)) return generation_.load(std::memory_order_acquire);
    std::unique_lock<std::mutex> lk(mu_);
    wake_.wait(lk, [&] { return stop_ || fresh(); });
    return stop_ ? 0 : generation_.load(std::memory_order_acquire);
  }

  void worker_loop(uint64_t seen) {
    t_inside_task = true;  // a parallel_for inside a task runs serially
    for (;;) {
      const uint64_t g = wait_for_job(seen);
      if (g == 0) return;
      seen = g;
      work(g);
    }
  }

  const pid_t owner_pid_;
  std::mutex dispatch_;  // one job at a time
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{1};
  std::atomic<uint64_t> claim_{0};  // claim_word(): generation | tasks | next task
  std::atomic<size_t> done_count_{0};
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
  if (tasks <= 1 || tasks > kMaxTasks || t_inside_task || g_exiting.load())
    return run_serially(tasks, task, ctx);
  WorkerPool* pool = current_pool();
  if (pool == nullptr) return run_serially(tasks, task, ctx);
  std::unique_lock<std::mutex> lk(pool->dispatch(), std::try_to_lock);
  if (!lk.owns_lock()) return run_serially(tasks, task, ctx);  // another thread's job is running
  pool->run(tasks, task, ctx);
}

}  // namespace common
}  // namespace needle
