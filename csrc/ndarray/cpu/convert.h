// Bulk dtype conversions (F16C when the CPU has it, bit-identical portable code otherwise).
#pragma once

#include <cstdint>

#include "ndarray/cpu/array.h"

namespace needle {
namespace cpu {

// Converts n float-dtype elements of `src` starting at element `offset` to float32 in dst.
void load_as_float(const Array& src, int64_t offset, int64_t n, float* dst);
// Rounds n float32 values to `dst`'s float dtype (nearest even), starting at element `offset`.
void store_from_float(const float* src, Array& dst, int64_t offset, int64_t n);

// Whole-array conversion with the contract's astype rules; a and out have the same size.
void astype(const Array& a, Array& out);

// The bit pattern (in the low itemsize bytes) of `val` converted to `dt` with the astype rules.
uint32_t scalar_bits(double val, DType dt);

// F16C kernels (cpu_f16c.cc); only call when f16c_supported() is true.
bool f16c_supported();
void f16c_half_to_float(const uint16_t* src, float* dst, int64_t n);
void f16c_float_to_half(const float* src, uint16_t* dst, int64_t n);

}  // namespace cpu
}  // namespace needle
