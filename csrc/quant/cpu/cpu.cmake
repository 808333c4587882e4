# needle_qc._quant_cpu: int8 / weight-only CPU kernels (cpu/), their bindings (bind/) and naive
# twins (ref/). SIMD files get their own -m flags and are only entered after run-time CPU
# detection (cpu/isa.cc), so the module runs on any x86-64 (or non-x86, scalar only).
set(QUANT_DIR ${CMAKE_CURRENT_LIST_DIR}/..)
set(QUANT_BIND_SOURCES bind/cpu_module.cc bind/cpu_quantize.cc bind/cpu_gemm.cc
  bind/cpu_gemm_defs.cc bind/cpu_conv.cc bind/cpu_conv_direct.cc bind/cpu_weight_only.cc
  bind/cpu_weight_int8.cc bind/cpu_float_layers.cc ref/naive_bind.cc ref/naive_float_layers.cc)
set(QUANT_PORTABLE_SOURCES
  cpu/isa.cc cpu/pack.cc cpu/ukernel_scalar.cc cpu/output_stage.cc cpu/gemm.cc cpu/quantize.cc
  cpu/conv.cc cpu/conv_direct_s8.cc cpu/weight_only.cc cpu/weight_int8.cc cpu/float_layers.cc
  cpu/conv_f32.cc)
set(QUANT_AVX2_SOURCES cpu/ukernel_avx2.cc cpu/quantize_avx2.cc cpu/weight_only_avx2.cc
  cpu/output_stage_avx2.cc cpu/weight_int8_avx2.cc cpu/weight_fma_avx2.cc
  cpu/conv_f32_avx2.cc cpu/conv_direct_s8_avx2.cc)
set(QUANT_AVX512_SOURCES cpu/ukernel_avx512vnni.cc cpu/quantize_avx512.cc
  cpu/output_stage_avx512.cc)
# NCHW <-> NHWC copies at layout boundaries
list(APPEND QUANT_BIND_SOURCES bind/cpu_layout.cc)
list(APPEND QUANT_PORTABLE_SOURCES cpu/layout.cc)
# the fused fp32 attention and the packed fp32 GEMM
list(APPEND QUANT_BIND_SOURCES bind/cpu_attention_gemm_f32.cc)
list(APPEND QUANT_PORTABLE_SOURCES cpu/attention_f32.cc cpu/gemm_f32.cc)
list(APPEND QUANT_AVX2_SOURCES cpu/attention_f32_avx2.cc cpu/attention_f32_head_avx2.cc)
# the fused LSTM step (fp32 and int8)
list(APPEND QUANT_BIND_SOURCES bind/cpu_lstm.cc ref/naive_lstm.cc)
list(APPEND QUANT_PORTABLE_SOURCES cpu/lstm_cell.cc)
list(APPEND QUANT_AVX2_SOURCES cpu/lstm_cell_avx2.cc)
# qadd in one call (dequantize + add + quantize); at -O3 with the kernels: its add loop is hot
list(APPEND QUANT_PORTABLE_SOURCES bind/cpu_qadd.cc)
list(TRANSFORM QUANT_BIND_SOURCES PREPEND ${QUANT_DIR}/)
list(TRANSFORM QUANT_PORTABLE_SOURCES PREPEND ${QUANT_DIR}/)
list(TRANSFORM QUANT_AVX2_SOURCES PREPEND ${QUANT_DIR}/)
list(TRANSFORM QUANT_AVX512_SOURCES PREPEND ${QUANT_DIR}/)
list(APPEND QUANT_PORTABLE_SOURCES ${QUANT_BIND_SOURCES})

set(QUANT_IS_X86 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(QUANT_IS_X86 ON)
endif()

if(QUANT_IS_X86)
  pybind11_add_module(_quant_cpu ${QUANT_PORTABLE_SOURCES} ${QUANT_AVX2_SOURCES}
                      ${QUANT_AVX512_SOURCES} ${NEEDLE_COMMON_CPU_SOURCES})
  target_compile_definitions(_quant_cpu PRIVATE NEEDLE_QC_X86=1)
  set_source_files_properties(${QUANT_AVX2_SOURCES} PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${QUANT_AVX512_SOURCES} PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni")
  # Needle's vector exp and m <= 4 sgemm path, built here with the NDArray module's own flags
  # (its default -ffp-contract=fast included) so the fused attention gets its bits.
  set(QUANT_NEEDLE_SOURCES ${NEEDLE_CSRC_DIR}/ndarray/cpu/vmath_avx2.cc
      ${QUANT_DIR}/cpu/attention_f32_small_m.cc)
  target_sources(_quant_cpu PRIVATE ${QUANT_NEEDLE_SOURCES}
                 ${NEEDLE_CSRC_DIR}/ndarray/cpu/parallel.cc)
  set_source_files_properties(${QUANT_NEEDLE_SOURCES} PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-ffp-contract=fast" COMPILE_DEFINITIONS NEEDLE_X86_SIMD=1)
else()
  pybind11_add_module(_quant_cpu ${QUANT_PORTABLE_SOURCES} ${NEEDLE_COMMON_CPU_SOURCES})
endif()

# Bit-exactness across paths: no implicit FMA contraction, no fast-math reassociation.
target_compile_options(_quant_cpu PRIVATE -O3 -ffp-contract=off -fno-math-errno
                       -Wall -Wextra -Wno-unused-parameter)
target_link_libraries(_quant_cpu PRIVATE Threads::Threads)
target_include_directories(_quant_cpu PRIVATE ${NEEDLE_CSRC_DIR})
# The bindings are template-heavy and not on a hot path: -O1 halves their compile time.
set_source_files_properties(${QUANT_BIND_SOURCES} PROPERTIES COMPILE_OPTIONS "-O1")
install(TARGETS _quant_cpu LIBRARY DESTINATION needle_qc)
