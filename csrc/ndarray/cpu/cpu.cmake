# C++ CPU NDArray backend: pybind11 module needle/backend_ndarray/ndarray_backend_cpu.
# SIMD kernels live in their own translation units compiled with -mavx2 -mfma -mf16c; the rest of
# the module is baseline x86-64, and the SIMD paths are chosen at run time (never -march=native).
# AVX-512 kernels get their own sources and -mavx512f, and are used only where the CPU reports it.
set(NDARRAY_CPU_DIR ${CMAKE_CURRENT_LIST_DIR})
set(NEEDLE_CPU_SOURCES module.cc memory.cc parallel.cc convert.cc strided.cc ewise.cc reduce.cc
    matmul.cc sgemm.cc)
set(NEEDLE_CPU_SIMD_SOURCES sgemm_avx2.cc f16c.cc vmath_avx2.cc)
set(NEEDLE_CPU_AVX512_SOURCES sgemm_avx512.cc)
list(TRANSFORM NEEDLE_CPU_SOURCES PREPEND ${NDARRAY_CPU_DIR}/)
list(TRANSFORM NEEDLE_CPU_SIMD_SOURCES PREPEND ${NDARRAY_CPU_DIR}/)
list(TRANSFORM NEEDLE_CPU_AVX512_SOURCES PREPEND ${NDARRAY_CPU_DIR}/)
pybind11_add_module(ndarray_backend_cpu MODULE
  ${NEEDLE_CPU_SOURCES} ${NEEDLE_CPU_SIMD_SOURCES} ${NEEDLE_CPU_AVX512_SOURCES}
  ${NEEDLE_COMMON_CPU_SOURCES})
target_include_directories(ndarray_backend_cpu PRIVATE ${NEEDLE_CSRC_DIR})
target_link_libraries(ndarray_backend_cpu PRIVATE Threads::Threads)
target_compile_options(ndarray_backend_cpu PRIVATE -O3 -Wall -Wextra -fno-math-errno)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set_source_files_properties(${NEEDLE_CPU_SIMD_SOURCES}
    PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${NEEDLE_CPU_AVX512_SOURCES}
    PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx2;-mfma")
  target_compile_definitions(ndarray_backend_cpu PRIVATE NEEDLE_X86_SIMD=1)
endif()
# The bindings are template-heavy and not on a hot path: -O1 halves their compile time.
set_source_files_properties(${NDARRAY_CPU_DIR}/module.cc PROPERTIES COMPILE_OPTIONS "-O1")
install(TARGETS ndarray_backend_cpu LIBRARY DESTINATION needle/backend_ndarray)
