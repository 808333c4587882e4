// parallel.h: _quant_cpu's parallel_for: the shared pool at this module's thread count.
#pragma once

#include <cstddef>

#include "common/thread_pool.h"

namespace needle_qc {

// Worker threads: NEEDLE_NUM_THREADS if set (>= 1), else 2 (isa.cc).
int num_threads();

// Runs body(begin, end) over [0, n) split into contiguous chunks of at least min_chunk, one per
// thread (num_threads() at most). The first exception a chunk throws is rethrown here.
template <class Body>
void parallel_for(size_t n, size_t min_chunk, Body body) {
  needle::common::parallel_chunks(n, min_chunk, 1, num_threads(), body);
}

}  // namespace needle_qc
