// Reductions over contiguous blocks of reduce_size elements.
#pragma once

#include <cstdint>

#include "ndarray/cpu/array.h"

namespace needle {
namespace cpu {

// Float sums use numpy's pairwise summation order so results match numpy bit for bit.
void reduce_sum(const Array& a, Array& out, int64_t reduce_size);
void reduce_max(const Array& a, Array& out, int64_t reduce_size);

}  // namespace cpu
}  // namespace needle
