// Counting aligned allocator and the Array constructor/destructor.
#include <atomic>
#include <cstdlib>
#include <new>
#include <stdexcept>

#include "cpu_array.h"

namespace needle {
namespace cpu {

namespace {
constexpr size_t kAlignment = 64;  // one cache line, and the widest SIMD load (AVX-512)
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_count{0};

void raise_peak(int64_t now) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
}  // namespace

void* counted_alloc(size_t nbytes) {
  // Round up so aligned_alloc's size rule holds; size-0 arrays still get a valid pointer.
  const size_t padded = ((nbytes + kAlignment - 1) / kAlignment + (nbytes == 0)) * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, padded);
  if (ptr == nullptr) throw std::bad_alloc();
  const int64_t now = g_current.fetch_add(static_cast<int64_t>(nbytes)) +
                      static_cast<int64_t>(nbytes);
  g_count.fetch_add(1);
  raise_peak(now);
  return ptr;
}

void counted_free(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  std::free(ptr);
  g_current.fetch_sub(static_cast<int64_t>(nbytes));
  g_count.fetch_sub(1);
}

MemoryStats memory_stats() { return {g_current.load(), g_peak.load(), g_count.load()}; }

void reset_peak_memory() { g_peak.store(g_current.load()); }

Array::Array(int64_t n, const std::string& name) : size(0), dtype(DType::kFloat32), ptr_(nullptr) {
  if (n < 0) throw std::invalid_argument("Array: size must be >= 0, got " + std::to_string(n));
  size = static_cast<size_t>(n);
  dtype = dtype_from_name(name);
  ptr_ = counted_alloc(nbytes());
}

Array::~Array() { counted_free(ptr_, nbytes()); }

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::kFloat32;
  if (name == "float16") return DType::kFloat16;
  if (name == "bfloat16") return DType::kBFloat16;
  if (name == "int8") return DType::kInt8;
  if (name == "uint8") return DType::kUInt8;
  if (name == "int32") return DType::kInt32;
  throw std::invalid_argument("unknown dtype '" + name +
                              "'; valid dtypes: float32, float16, bfloat16, int8, uint8, int32");
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
  }
  return "?";
}

size_t dtype_itemsize(DType dt) {
  switch (dt) {
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    default: return 1;
  }
}

}  // namespace cpu
}  // namespace needle
