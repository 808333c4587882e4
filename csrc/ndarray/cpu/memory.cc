// Counting aligned allocator and the Array constructor/destructor.
#include <cstdlib>
#include <new>
#include <stdexcept>

#include "ndarray/cpu/array.h"

namespace needle {
namespace cpu {

namespace {
constexpr size_t kAlignment = 64;  // one cache line, and the widest SIMD load (AVX-512)
common::ByteCounter g_bytes;
}  // namespace

void* counted_alloc(size_t nbytes) {
  // Round up so aligned_alloc's size rule holds; size-0 arrays still get a valid pointer.
  const size_t padded = ((nbytes + kAlignment - 1) / kAlignment + (nbytes == 0)) * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, padded);
  if (ptr == nullptr) throw std::bad_alloc();
  g_bytes.add(static_cast<int64_t>(nbytes));
  return ptr;
}

void counted_free(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  std::free(ptr);
  g_bytes.remove(static_cast<int64_t>(nbytes));
}

MemoryStats memory_stats() { return g_bytes.stats(); }

void reset_peak_memory() { g_bytes.reset_peak(); }

Array::Array(int64_t n, const std::string& name) : size(0), dtype(DType::kFloat32), ptr_(nullptr) {
  if (n < 0) throw std::invalid_argument("Array: size must be >= 0, got " + std::to_string(n));
  size = static_cast<size_t>(n);
  dtype = dtype_from_name(name);
  ptr_ = counted_alloc(nbytes());
}

Array::~Array() { counted_free(ptr_, nbytes()); }

DType dtype_from_name(const std::string& name) {
  DType dt;
  if (common::dtype_lookup(name, &dt)) return dt;
  throw std::invalid_argument("unknown dtype '" + name +
                              "'; valid dtypes: float32, float16, bfloat16, int8, uint8, int32");
}

}  // namespace cpu
}  // namespace needle
