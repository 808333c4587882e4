# ndarray_backend_cuda: the NDArray backend on CUDA (included only when nvcc was found).
find_package(CUDAToolkit REQUIRED)

pybind11_add_module(ndarray_backend_cuda MODULE
  ${CMAKE_CURRENT_LIST_DIR}/module.cu
  ${CMAKE_CURRENT_LIST_DIR}/array.cu
  ${CMAKE_CURRENT_LIST_DIR}/strided.cu
  ${CMAKE_CURRENT_LIST_DIR}/ewise.cu
  ${CMAKE_CURRENT_LIST_DIR}/matmul.cu
  ${CMAKE_CURRENT_LIST_DIR}/reduce.cu)
target_include_directories(ndarray_backend_cuda PRIVATE ${NEEDLE_CSRC_DIR})

# The bindings hold no device code, and g++ compiles pybind11 about 1.5x faster than nvcc does.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/module.cu PROPERTIES
  LANGUAGE CXX COMPILE_OPTIONS "-xc++")

# Static cudart: the module then needs no libcudart.so at import, only the driver when a
# function runs, so `import` works on machines with neither a GPU nor a CUDA install.
target_link_libraries(ndarray_backend_cuda PRIVATE CUDA::cudart_static)
# No fast-math: IEEE division/sqrt and exact float->int rounding are part of the contract.
# --expt-relaxed-constexpr: std::numeric_limits<T>::min() inside __host__ __device__ helpers.
target_compile_options(ndarray_backend_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
set_target_properties(ndarray_backend_cuda PROPERTIES
  CUDA_SEPARABLE_COMPILATION OFF
  CUDA_VISIBILITY_PRESET hidden)

install(TARGETS ndarray_backend_cuda DESTINATION needle/backend_ndarray)
