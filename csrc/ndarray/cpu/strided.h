// Strided gather/scatter between compact buffers and strided views (any dtype).
#pragma once

#include <cstdint>
#include <vector>

#include "ndarray/cpu/array.h"

namespace needle {
namespace cpu {

using Shape = std::vector<int64_t>;

// Throws std::out_of_range (naming `op`) when the view (shape, strides, offset) leaves `a`.
void check_view(const char* op, const Array& a, const Shape& shape, const Shape& strides,
                int64_t offset);
int64_t shape_numel(const Shape& shape);

void compact(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset);
void ewise_setitem(const Array& a, Array& out, const Shape& shape, const Shape& strides,
                   int64_t offset);
void scalar_setitem(int64_t size, double val, Array& out, const Shape& shape,
                    const Shape& strides, int64_t offset);

}  // namespace cpu
}  // namespace needle
