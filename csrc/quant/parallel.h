// parallel.h: a tiny fork-join loop over contiguous chunks (std::thread, no pool).
#pragma once

#include <algorithm>
#include <thread>
#include <vector>

namespace needle_qc {

template <class Body>
void parallel_for(size_t n, size_t min_chunk, Body body) {
  size_t workers = static_cast<size_t>(num_threads());
  workers = std::min(workers, std::max<size_t>(1, n / std::max<size_t>(1, min_chunk)));
  if (workers <= 1) {
    body(size_t{0}, n);
    return;
  }
  // Equal contiguous chunks keep each thread on its own panels (no false sharing of outputs).
  std::vector<std::thread> pool;
  size_t chunk = (n + workers - 1) / workers;
  for (size_t t = 1; t < workers; ++t) {
    size_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    if (begin < end) pool.emplace_back([=] { body(begin, end); });
  }
  body(size_t{0}, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace needle_qc
