// cuda_bind.cuh: shared pieces of the _quant_cuda bindings (compiled by g++, host code only).
// Argument conventions are _quant_cpu's: numpy in, numpy out, same names, same ValueErrors; every
// function first checks for a GPU (RuntimeError without one).
#pragma once

#include <memory>
#include <vector>

#include "quant/cuda/quant.cuh"
#include "quant/bind/args.h"

namespace needle_qc {
namespace cuda {

namespace py = pybind11;

void bind_quantize(py::module_& m);
void bind_gemm(py::module_& m);
void bind_conv(py::module_& m);
void bind_weight_only(py::module_& m);

// pack_weight_s8 of the module: int8 w[K, N] and zero points (None, [1] or [N]) onto the GPU.
std::shared_ptr<PackedWeightS8> pack_weight_s8_py(const py::handle& w, const py::handle& zp);

// Device copy of a C-contiguous numpy array's bytes.
inline DeviceBuffer upload(const py::array& a) { return to_device(a.data(), a.nbytes()); }

// A fresh numpy array of `dtype` and `shape` filled from the device buffer.
inline py::array download(const DeviceBuffer& b, const py::dtype& dtype,
                          const std::vector<py::ssize_t>& shape) {
  py::array out(dtype, shape);
  b.download(out.mutable_data(), out.nbytes());
  return out;
}

// Output-stage arguments parsed from Python, with their device copies (kept alive here).
struct OutputArgs {
  Epilogue e;
  py::dtype dtype = py::dtype::of<int32_t>();
  DeviceBuffer bias, multiplier, scale, row_scale, a_zp, rowsum;
};

OutputArgs parse_requant(const py::handle& bias, const py::handle& multiplier, int y_zp,
                         int qmin, int qmax, const std::string& out_dtype, size_t N);
OutputArgs parse_float_out(const py::handle& scale, const py::handle& bias, bool relu,
                           const py::handle& row_scale, size_t M, size_t N);

// Sets the activation zero points (already in the signed domain) and, when the weights have
// nonzero zero points, the row sums of the packed rows; then runs the GEMM into `out`.
void run_gemm_s8(const DeviceBuffer& a_rows, size_t M, const PackedWeightS8& w,
                 const std::vector<int32_t>& a_zp_signed, OutputArgs& o, void* out);

}  // namespace cuda
}  // namespace needle_qc
