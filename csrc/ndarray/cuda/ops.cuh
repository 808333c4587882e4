// Host entry points of the CUDA backend's kernels; each validates what it can check cheaply.
#pragma once

#include <cstdint>
#include <vector>

#include "ndarray/cuda/array.cuh"

namespace needle {
namespace cuda {

using IntVec = std::vector<int64_t>;

// Strided copies and fills (cuda_strided.cu); shape/strides/offset in elements, <= 8 dims.
void compact(const CudaArray& a, CudaArray& out, const IntVec& shape, const IntVec& strides,
             int64_t offset);
void ewise_setitem(const CudaArray& a, CudaArray& out, const IntVec& shape,
                   const IntVec& strides, int64_t offset);
void scalar_setitem(int64_t size, double val, CudaArray& out, const IntVec& shape,
                    const IntVec& strides, int64_t offset);
void fill(CudaArray& out, double val);

/// Throws std::invalid_argument unless `a` holds at least every element the view can reach.
void check_view(const char* fn, const CudaArray& a, const IntVec& shape, const IntVec& strides,
                int64_t offset);

// Elementwise (cuda_ewise.cu).
enum class BinaryOp : int { kAdd, kMul, kDiv, kPow, kMax, kEq, kGe };
enum class UnaryOp : int { kLog, kExp, kTanh };

void ewise_binary(const char* fn, BinaryOp op, const CudaArray& a, const CudaArray& b,
                  CudaArray& out);
void scalar_binary(const char* fn, BinaryOp op, const CudaArray& a, double val, CudaArray& out);
void ewise_unary(const char* fn, UnaryOp op, const CudaArray& a, CudaArray& out);
void astype(const CudaArray& a, CudaArray& out);

// Matmul and reductions (cuda_matmul.cu, cuda_reduce.cu).
void matmul(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t m, int64_t n,
            int64_t p);
void reduce_sum(const CudaArray& a, CudaArray& out, int64_t reduce_size);
void reduce_max(const CudaArray& a, CudaArray& out, int64_t reduce_size);

}  // namespace cuda
}  // namespace needle
