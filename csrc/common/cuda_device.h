// cuda_device.h: GPU presence probe and CUDA error text shared by both CUDA modules (host code).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace needle {
namespace common {

// Number of visible CUDA devices; 0 (never an exception) without a GPU or driver.
inline int cuda_device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it so a later, unrelated check does not report it
    return 0;
  }
  return n;
}

// "<module>: <what> failed: <name>: <message>" as std::runtime_error (Python RuntimeError).
inline void throw_on_cuda_error(cudaError_t err, const char* module, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(module) + ": " + what + " failed: " +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

// Throws std::runtime_error, prefixed by `module`, naming why no CUDA device can be used.
// A device once seen stays (no hot-unplug), so the common path is one atomic load; `seen` is the
// caller's flag, one per module.
inline void require_cuda_device(const char* module, std::atomic<bool>& seen) {
  if (seen.load(std::memory_order_relaxed)) return;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string(module) + ": no usable CUDA device (no GPU, or no " +
                             "NVIDIA driver as new as this CUDA runtime): " +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
  if (n == 0) throw std::runtime_error(std::string(module) + ": no CUDA device is visible");
  seen.store(true, std::memory_order_relaxed);
}

}  // namespace common
}  // namespace needle
