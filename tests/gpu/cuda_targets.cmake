# CUDA targets, included by the top-level CMakeLists.txt (CUDA block) once nvcc is enabled.
#   roformer_cuda   kernels/cuda/*.cu: the CUDA ops, cuBLAS(Lt) GEMMs, device query (CUDA only)
#   gpu_bench       tests/gpu/gpu_bench.cu: GEMM and per-op throughput (needs roformer_cuda only)
#   op_parity       tests/gpu/op_parity.cc: every op vs the CPU kernels (ctest label gpu)
#   cuda_host_test  tests/gpu/cuda_host_test.cc: host-side checks that run without a GPU (unit)
# ROFORMER_ROOT is the repository root; ROFORMER_CPU_REF_LIB names the library holding kernels/cpu
# and model/optimizer (roformer_core in the full build; tests/gpu/CMakeLists.txt builds its own).
file(GLOB ROFORMER_CUDA_SRCS CONFIGURE_DEPENDS ${ROFORMER_ROOT}/kernels/cuda/*.cu)
add_library(roformer_cuda STATIC ${ROFORMER_CUDA_SRCS})
target_include_directories(roformer_cuda PUBLIC ${ROFORMER_ROOT})
target_link_libraries(roformer_cuda PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt)
target_compile_options(roformer_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
string(REPLACE ";" "," ROFORMER_CUDA_ARCHS_STR "${CMAKE_CUDA_ARCHITECTURES}")
target_compile_definitions(roformer_cuda PRIVATE ROFORMER_CUDA_ARCHS="${ROFORMER_CUDA_ARCHS_STR}")

enable_testing()

add_executable(gpu_bench ${ROFORMER_ROOT}/tests/gpu/gpu_bench.cu)
target_link_libraries(gpu_bench PRIVATE roformer_cuda)
target_compile_options(gpu_bench PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)

if(NOT ROFORMER_CPU_REF_LIB)
  set(ROFORMER_CPU_REF_LIB roformer_core)
endif()
if(TARGET ${ROFORMER_CPU_REF_LIB})
  add_executable(op_parity ${ROFORMER_ROOT}/tests/gpu/op_parity.cc)
  target_link_libraries(op_parity PRIVATE roformer_cuda ${ROFORMER_CPU_REF_LIB})
  target_compile_options(op_parity PRIVATE ${ROFORMER_WARNINGS} ${ROFORMER_ARCH})
  # Exit 77 = no CUDA device: ctest reports the test as skipped, never as passed.
  add_test(NAME gpu_op_parity COMMAND op_parity)
  set_tests_properties(gpu_op_parity PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
    ENVIRONMENT "OMP_NUM_THREADS=4")

  add_executable(cuda_host_test ${ROFORMER_ROOT}/tests/gpu/cuda_host_test.cc)
  target_link_libraries(cuda_host_test PRIVATE roformer_cuda ${ROFORMER_CPU_REF_LIB})
  target_compile_options(cuda_host_test PRIVATE ${ROFORMER_WARNINGS} ${ROFORMER_ARCH})
  add_test(NAME cuda_host_test COMMAND cuda_host_test)
  set_tests_properties(cuda_host_test PROPERTIES LABELS unit)
endif()
