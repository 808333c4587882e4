// byte_counter.h: the live/peak byte accounting behind both NDArray backends' memory_stats().
#pragma once

#include <atomic>
#include <cstdint>

namespace needle {
namespace common {

struct MemoryStats {
  int64_t current_bytes;
  int64_t peak_bytes;
  int64_t num_allocs;
};

// Counts the bytes arrays asked for (not padding), so current_bytes equals the sum of the live
// arrays' nbytes exactly. Lock-free; its members are trivially destructible, so arrays freed
// during interpreter shutdown can still report to it.
class ByteCounter {
 public:
  void add(int64_t nbytes) {
    const int64_t now = current_.fetch_add(nbytes) + nbytes;
    count_.fetch_add(1);
    int64_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void remove(int64_t nbytes) {
    current_.fetch_sub(nbytes);
    count_.fetch_sub(1);
  }
  MemoryStats stats() const { return {current_.load(), peak_.load(), count_.load()}; }
  void reset_peak() { peak_.store(current_.load()); }

 private:
  std::atomic<int64_t> current_{0}, peak_{0}, count_{0};
};

}  // namespace common
}  // namespace needle
