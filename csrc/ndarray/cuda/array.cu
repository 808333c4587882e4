// Device buffers, exact byte accounting, dtype names, and the GPU presence guard.
#include <atomic>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/cuda_device.h"
#include "ndarray/cuda/array.cuh"

namespace needle {
namespace cuda {

DType dtype_from_name(const std::string& name) {
  DType dt;
  if (common::dtype_lookup(name, &dt)) return dt;
  throw std::invalid_argument("ndarray_backend_cuda: unknown dtype '" + name +
                              "' (expected float32, float16, bfloat16, int8, uint8 or int32)");
}

int device_count() { return common::cuda_device_count(); }

void require_gpu() {
  static std::atomic<bool> seen{false};
  common::require_cuda_device("ndarray_backend_cuda", seen);
}

namespace {
// Static, trivially destructible: arrays freed during interpreter shutdown still find it.
common::ByteCounter g_bytes;
}  // namespace

MemoryStats memory_stats() {
  require_gpu();
  return g_bytes.stats();
}

void reset_peak_memory() {
  require_gpu();
  g_bytes.reset_peak();
}

CudaArray::CudaArray(int64_t size, const std::string& dtype) : size_(0), dtype_(DType::kFloat32) {
  dtype_ = dtype_from_name(dtype);
  if (size < 0) {
    throw std::invalid_argument("ndarray_backend_cuda.Array: size must be >= 0, got " +
                                std::to_string(size));
  }
  const size_t item = dtype_itemsize(dtype_);
  if (static_cast<uint64_t>(size) > std::numeric_limits<size_t>::max() / item) {
    throw std::invalid_argument("ndarray_backend_cuda.Array: size " + std::to_string(size) +
                                " overflows the byte count");
  }
  require_gpu();
  size_ = static_cast<size_t>(size);
  // cudaMalloc(0) may hand back a pointer or not depending on the driver: keep empty arrays null.
  if (nbytes() > 0) NEEDLE_CUDA_CHECK(cudaMalloc(&ptr_, nbytes()));
  g_bytes.add(static_cast<int64_t>(nbytes()));
}

CudaArray::~CudaArray() {
  // A destructor must not throw; at interpreter exit cudart may already be unloading.
  if (ptr_ != nullptr) cudaFree(ptr_);
  g_bytes.remove(static_cast<int64_t>(nbytes()));
}

}  // namespace cuda
}  // namespace needle
