// Device buffers of the CUDA backend, their byte accounting, and the "is there a GPU" guard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/byte_counter.h"
#include "ndarray/cuda/kernel_common.cuh"

namespace needle {
namespace cuda {

/// Number of visible CUDA devices; 0 (never an exception) without a GPU or driver.
int device_count();

/// Throws RuntimeError naming the reason when no CUDA device can be used.
void require_gpu();

using common::MemoryStats;

MemoryStats memory_stats();
void reset_peak_memory();

/// A cudaMalloc'ed buffer of `size` elements of one dtype; counted by the allocator while alive.
class CudaArray {
 public:
  CudaArray(int64_t size, const std::string& dtype);
  ~CudaArray();
  CudaArray(const CudaArray&) = delete;
  CudaArray& operator=(const CudaArray&) = delete;

  size_t size() const { return size_; }
  DType dtype() const { return dtype_; }
  size_t itemsize() const { return dtype_itemsize(dtype_); }
  size_t nbytes() const { return size_ * itemsize(); }
  uintptr_t address() const { return reinterpret_cast<uintptr_t>(ptr_); }

  template <typename T>
  T* data() const {
    return static_cast<T*>(ptr_);
  }

 private:
  size_t size_;
  DType dtype_;
  void* ptr_ = nullptr;
};

}  // namespace cuda
}  // namespace needle
