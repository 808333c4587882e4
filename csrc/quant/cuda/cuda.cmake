# needle_qc._quant_cuda: int8 / weight-only CUDA kernels (included only when nvcc was found).
# Same pattern as csrc/ndarray/cuda/cuda.cmake: kernels by nvcc for one architecture, bindings
# by g++, static cudart so `import` works without a GPU or a CUDA install.
find_package(CUDAToolkit REQUIRED)

set(QUANT_DIR ${CMAKE_CURRENT_LIST_DIR}/..)
set(QUANT_CUDA_KERNELS cuda/gemm.cu cuda/quantize.cu cuda/weight_only.cu)
set(QUANT_CUDA_HOST cuda/device.cu bind/cuda_module.cu bind/cuda_quantize.cu bind/cuda_gemm.cu
    bind/cuda_output.cu bind/cuda_conv.cu bind/cuda_weight_only.cu)
list(TRANSFORM QUANT_CUDA_KERNELS PREPEND ${QUANT_DIR}/)
list(TRANSFORM QUANT_CUDA_HOST PREPEND ${QUANT_DIR}/)

pybind11_add_module(_quant_cuda MODULE ${QUANT_CUDA_KERNELS} ${QUANT_CUDA_HOST})
target_include_directories(_quant_cuda PRIVATE ${NEEDLE_CSRC_DIR})

# Host-only files hold no device code, and g++ compiles pybind11 faster than nvcc does.
set_source_files_properties(${QUANT_CUDA_HOST} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-xc++")

target_link_libraries(_quant_cuda PRIVATE CUDA::cudart_static)
# No fast-math anywhere; the bit-exact paths also use explicit _rn intrinsics, so the device's
# default FMA contraction only touches the weight-only fp32 sums (tolerance-compared).
target_compile_options(_quant_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CXX>:-O3 -ffp-contract=off -Wall -Wextra -Wno-unused-parameter>)
set_target_properties(_quant_cuda PROPERTIES
  CUDA_SEPARABLE_COMPILATION OFF
  CUDA_VISIBILITY_PRESET hidden)

install(TARGETS _quant_cuda LIBRARY DESTINATION needle_qc)
