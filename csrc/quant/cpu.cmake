# needle_qc._quant_cpu: int8 / weight-only CPU kernels. SIMD files get their own -m flags and are
# only entered after run-time CPU detection (isa.cc), so the module runs on any x86-64 (or non-x86,
# scalar only); never -march=native.
set(QUANT_DIR ${CMAKE_CURRENT_SOURCE_DIR})
set(QUANT_PORTABLE_SOURCES
  isa.cc pack.cc ukernel_scalar.cc output_stage.cc gemm.cc quantize.cc conv.cc weight_only.cc
  bind_module.cc bind_quantize.cc bind_gemm.cc bind_gemm_defs.cc bind_conv.cc
  bind_weight_only.cc bind_naive.cc weight_int8.cc bind_weight_int8.cc)
set(QUANT_AVX2_SOURCES ukernel_avx2.cc quantize_avx2.cc weight_only_avx2.cc output_stage_avx2.cc
  weight_int8_avx2.cc weight_fma_avx2.cc)
set(QUANT_AVX512_SOURCES ukernel_avx512vnni.cc quantize_avx512.cc output_stage_avx512.cc)
list(TRANSFORM QUANT_PORTABLE_SOURCES PREPEND ${QUANT_DIR}/)
list(TRANSFORM QUANT_AVX2_SOURCES PREPEND ${QUANT_DIR}/)
list(TRANSFORM QUANT_AVX512_SOURCES PREPEND ${QUANT_DIR}/)

set(QUANT_IS_X86 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(QUANT_IS_X86 ON)
endif()

if(QUANT_IS_X86)
  pybind11_add_module(_quant_cpu ${QUANT_PORTABLE_SOURCES} ${QUANT_AVX2_SOURCES}
                      ${QUANT_AVX512_SOURCES})
  target_compile_definitions(_quant_cpu PRIVATE NEEDLE_QC_X86=1)
  set_source_files_properties(${QUANT_AVX2_SOURCES} PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${QUANT_AVX512_SOURCES} PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni")
else()
  pybind11_add_module(_quant_cpu ${QUANT_PORTABLE_SOURCES})
endif()

# Bit-exactness across paths: no implicit FMA contraction, no fast-math reassociation.
target_compile_options(_quant_cpu PRIVATE -O3 -ffp-contract=off -fno-math-errno
                       -Wall -Wextra -Wno-unused-parameter)
target_link_libraries(_quant_cpu PRIVATE Threads::Threads)
# The bindings are template-heavy and not on a hot path: -O1 halves their compile time.
file(GLOB QUANT_BIND_SOURCES ${QUANT_DIR}/bind_*.cc)
set_source_files_properties(${QUANT_BIND_SOURCES} PROPERTIES COMPILE_OPTIONS "-O1")
install(TARGETS _quant_cpu LIBRARY DESTINATION needle_qc)

# H18: persistent worker pool behind parallel_for (parallel.h).
target_sources(_quant_cpu PRIVATE ${QUANT_DIR}/parallel.cc)
