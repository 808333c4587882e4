// The CPU backend's Array handle: one 64-byte aligned buffer owned by a counting allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/byte_counter.h"
#include "ndarray/cpu/dtype.h"

namespace needle {
namespace cpu {

using common::MemoryStats;

// Allocator shared by every Array: counts live bytes (the requested nbytes, not the padded
// allocation) so memory_stats() equals the sum of Array.nbytes exactly.
void* counted_alloc(size_t nbytes);
void counted_free(void* ptr, size_t nbytes);
MemoryStats memory_stats();
void reset_peak_memory();

class Array {
 public:
  Array(int64_t size, const std::string& dtype);
  ~Array();
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  size_t size;
  DType dtype;

  size_t itemsize() const { return dtype_itemsize(dtype); }
  size_t nbytes() const { return size * itemsize(); }
  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_;
};

}  // namespace cpu
}  // namespace needle
