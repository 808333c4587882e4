// Device buffers, exact byte accounting, dtype names, and the GPU presence guard.
#include <atomic>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda_array.cuh"

namespace needle {
namespace cuda {

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::kFloat32;
  if (name == "float16") return DType::kFloat16;
  if (name == "bfloat16") return DType::kBFloat16;
  if (name == "int8") return DType::kInt8;
  if (name == "uint8") return DType::kUInt8;
  if (name == "int32") return DType::kInt32;
  throw std::invalid_argument("ndarray_backend_cuda: unknown dtype '" + name +
                              "' (expected float32, float16, bfloat16, int8, uint8 or int32)");
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
  }
  return "?";
}

size_t dtype_itemsize(DType dt) {
  switch (dt) {
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kInt8:
    case DType::kUInt8: return 1;
  }
  return 0;
}

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it so a later, unrelated check does not report it
    return 0;
  }
  return n;
}

void require_gpu() {
  // Once a device was seen it stays (no hot-unplug), so the common path is one atomic load.
  static std::atomic<bool> seen{false};
  if (seen.load(std::memory_order_relaxed)) return;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("ndarray_backend_cuda: no usable CUDA device; no GPU, ") +
                             "or no NVIDIA driver as new as this CUDA runtime (" +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + ")");
  }
  if (n == 0) throw std::runtime_error("ndarray_backend_cuda: no CUDA device is visible");
  seen.store(true, std::memory_order_relaxed);
}

namespace {

struct Accounting {
  std::mutex mu;
  MemoryStats stats{0, 0, 0};
};

Accounting& accounting() {
  // Leaked on purpose: arrays freed during interpreter shutdown must still find it.
  static Accounting* acc = new Accounting();
  return *acc;
}

void account_alloc(int64_t nbytes) {
  Accounting& acc = accounting();
  std::lock_guard<std::mutex> lock(acc.mu);
  acc.stats.current_bytes += nbytes;
  acc.stats.num_allocs += 1;
  if (acc.stats.current_bytes > acc.stats.peak_bytes) {
    acc.stats.peak_bytes = acc.stats.current_bytes;
  }
}

void account_free(int64_t nbytes) {
  Accounting& acc = accounting();
  std::lock_guard<std::mutex> lock(acc.mu);
  acc.stats.current_bytes -= nbytes;
  acc.stats.num_allocs -= 1;
}

}  // namespace

MemoryStats memory_stats() {
  require_gpu();
  Accounting& acc = accounting();
  std::lock_guard<std::mutex> lock(acc.mu);
  return acc.stats;
}

void reset_peak_memory() {
  require_gpu();
  Accounting& acc = accounting();
  std::lock_guard<std::mutex> lock(acc.mu);
  acc.stats.peak_bytes = acc.stats.current_bytes;
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
  account_alloc(static_cast<int64_t>(nbytes()));
}

CudaArray::~CudaArray() {
  // A destructor must not throw; at interpreter exit cudart may already be unloading.
  if (ptr_ != nullptr) cudaFree(ptr_);
  account_free(static_cast<int64_t>(nbytes()));
}

}  // namespace cuda
}  // namespace needle
