// cuda_module.cu: the needle_qc._quant_cuda module (int8 / weight-only CUDA kernels).
// Importing it touches no CUDA API, so it imports on machines without a GPU or driver.
#include "quant/bind/cuda_bind.cuh"

namespace needle_qc {
namespace cuda {
namespace {

py::dict kernel_info() {
  const DeviceInfo d = device_info();  // raises without a GPU
  py::dict info;
  info["device"] = d.name;
  info["compute_capability"] = std::to_string(d.major) + "." + std::to_string(d.minor);
  info["sm_count"] = d.sm_count;
  info["total_memory"] = d.total_memory;
  info["gemm_exact"] = "dp4a s8 x s8 (uint8 shifted by -128), 64x64 block tile, 32-byte k step, "
                       "4x4 int32 accumulators per thread, fused output stage";
  info["conv"] = "im2col on the device (chunks of <= 256 MiB) + the dp4a GEMM";
  info["quantize"] = "elementwise __fdiv_rn / __float2int_rn";
  info["weight_only"] = "fp32 FMA tiles, f16 / bf16 / int4 decoded while staging W";
  return info;
}

}  // namespace
}  // namespace cuda
}  // namespace needle_qc

PYBIND11_MODULE(_quant_cuda, m) {
  namespace nc = needle_qc::cuda;
  m.doc() = "int8 and weight-only CUDA kernels of needle_qc (twins of _quant_cpu, numpy in/out)";
  m.def("device_count", &nc::device_count,
        "Number of visible CUDA devices; 0 (no exception) without a GPU or driver.");
  m.def("kernel_info", &nc::kernel_info, "The device and the kernel paths it runs.");
  nc::bind_quantize(m);
  nc::bind_gemm(m);
  nc::bind_conv(m);
  nc::bind_weight_only(m);
}
