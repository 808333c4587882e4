// device.cu: device discovery, error reporting and device buffers (host code only).
#include <atomic>
#include <stdexcept>
#include <utility>

#include "common/cuda_device.h"
#include "quant/cuda/quant.cuh"

namespace needle_qc {
namespace cuda {

int device_count() { return needle::common::cuda_device_count(); }

void require_gpu() {
  static std::atomic<bool> seen{false};
  needle::common::require_cuda_device("_quant_cuda", seen);
}

void check_cuda(cudaError_t err, const char* what) {
  needle::common::throw_on_cuda_error(err, "_quant_cuda", what);
}

void check_launch(const char* kernel) {
  check_cuda(cudaGetLastError(), kernel);
  check_cuda(cudaDeviceSynchronize(), kernel);
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  // cudaMalloc(0) may or may not hand back a pointer: keep empty buffers null.
  if (bytes > 0) NQC_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  // No throw from a destructor; at interpreter exit the runtime may already be unloading.
  if (ptr_) cudaFree(ptr_);
}

void DeviceBuffer::upload(const void* host, size_t bytes) {
  if (bytes > bytes_) throw std::logic_error("_quant_cuda: upload larger than the buffer");
  if (bytes > 0) NQC_CUDA_CHECK(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, size_t bytes) const {
  if (bytes > bytes_) throw std::logic_error("_quant_cuda: download larger than the buffer");
  if (bytes > 0) NQC_CUDA_CHECK(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost));
}

void DeviceBuffer::zero() {
  if (bytes_ > 0) NQC_CUDA_CHECK(cudaMemset(ptr_, 0, bytes_));
}

DeviceBuffer to_device(const void* host, size_t bytes) {
  DeviceBuffer b(bytes);
  b.upload(host, bytes);
  return b;
}

DeviceInfo device_info() {
  require_gpu();
  int dev = 0;
  NQC_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  NQC_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  DeviceInfo d;
  d.name = prop.name;
  d.major = prop.major;
  d.minor = prop.minor;
  d.sm_count = prop.multiProcessorCount;
  d.total_memory = prop.totalGlobalMem;
  return d;
}

}  // namespace cuda
}  // namespace needle_qc
