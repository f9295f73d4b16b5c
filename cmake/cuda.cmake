# CUDA backend (-DTN_CUDA=ON). Included from the top-level CMakeLists.txt after trinity_lib exists and
# before the `trinity` executable and the tests are defined. Builds the static library trinity_cuda from
# kernels/cuda/*.cu; anything that links it gets TN_HAVE_CUDA defined. docs/CUDA.md.

# GPU architectures to compile for (real SASS for each, so no JIT at start-up). Must be set before
# enable_language(CUDA). CUDA 13 targets compute capability 7.5 (Turing) and newer only; Maxwell, Pascal
# (sm_60/61: P100, GTX 10xx incl. the 1080 Ti) and Volta (sm_70) need a CUDA 12.x toolkit - 12.9 is the
# last - configured with e.g. -DCMAKE_CUDA_ARCHITECTURES=61. "native" builds for the GPUs of this machine.
set(CMAKE_CUDA_ARCHITECTURES "75;80;86;89" CACHE STRING
  "CUDA architectures for the CUDA backend (default 75;80;86;89 = Turing, A100, RTX 30xx, RTX 40xx; \
Pascal sm_61 needs a CUDA 12.x toolkit, 12.9 is the last)")

# Link the shared libcudart everywhere (CMake's default for targets that pull in CUDA code is the static
# one, which would sit next to the shared copy that cuBLAS needs anyway). Affects the targets created
# after this point: trinity_cuda, trinity and the tests.
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)

enable_language(CUDA)
enable_language(CXX)  # executables that link the backend are linked by the C++ driver
find_package(CUDAToolkit REQUIRED)

if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 13)
  foreach(arch ${CMAKE_CUDA_ARCHITECTURES})
    string(REGEX MATCH "^[0-9]+" arch_num "${arch}")
    if(arch_num AND arch_num LESS 75)
      message(FATAL_ERROR "CMAKE_CUDA_ARCHITECTURES contains ${arch}, but CUDA ${CMAKE_CUDA_COMPILER_VERSION} "
        "cannot target compute capability < 7.5 (Maxwell, Pascal, Volta). Use a CUDA 12.x toolkit "
        "(12.9 is the last with sm_50..sm_70), e.g. -DCMAKE_CUDA_COMPILER=/usr/local/cuda-12.9/bin/nvcc.")
    endif()
  endforeach()
endif()
message(STATUS "CUDA backend: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

file(GLOB TN_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
add_library(trinity_cuda STATIC ${TN_CUDA_SOURCES})
# The top-level add_compile_options (-Wall -Wextra, -fsanitize=...) are host-compiler flags that nvcc
# rejects ("Unknown option '-Wall'"); replace them for this target with their nvcc forms.
set_property(TARGET trinity_cuda PROPERTY COMPILE_OPTIONS "")
string(REPLACE ";" "," tn_cuda_archs_str "${CMAKE_CUDA_ARCHITECTURES}")
target_compile_options(trinity_cuda PRIVATE -Xcompiler=-Wall,-Wextra -D_GNU_SOURCE)  # Release: -O3 by default
target_compile_definitions(trinity_cuda PRIVATE TN_CUDA_ARCHS="${tn_cuda_archs_str}")
target_compile_definitions(trinity_cuda PUBLIC TN_HAVE_CUDA)
set_target_properties(trinity_cuda PROPERTIES
  CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON)
# trinity_lib for tn_err and the packed-layout helpers; consumers link trinity_lib again after us.
target_link_libraries(trinity_cuda PUBLIC trinity_lib CUDA::cudart CUDA::cublas)

# NCCL for data-parallel training on several GPUs (kernels/cuda/comm_nccl.cu, docs/SCALE.md): only its header
# at build time (the toolkit's; CUDA 13 ships it); libnccl.so.2 (~200 MiB) is opened when a run asks for
# comm = nccl, so the binary starts where NCCL is absent. Without the header `comm = nccl` is refused.
find_path(TN_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
if(TN_NCCL_INCLUDE_DIR)
  message(STATUS "NCCL: ${TN_NCCL_INCLUDE_DIR}/nccl.h (libnccl.so.2 is loaded at run time)")
  target_include_directories(trinity_cuda PRIVATE ${TN_NCCL_INCLUDE_DIR})
  target_compile_definitions(trinity_cuda PRIVATE TN_HAVE_NCCL)
  target_link_libraries(trinity_cuda PUBLIC ${CMAKE_DL_LIBS})
else()
  message(STATUS "NCCL: nccl.h not found; comm = nccl (multi-GPU training) will be refused")
endif()

# Kernels that only tests use (tests/cuda/*.cu).
file(GLOB TN_CUDA_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cuda/*.cu)
add_library(trinity_cuda_test_kernels STATIC ${TN_CUDA_TEST_SOURCES})
set_property(TARGET trinity_cuda_test_kernels PROPERTY COMPILE_OPTIONS "")
target_compile_options(trinity_cuda_test_kernels PRIVATE -Xcompiler=-Wall,-Wextra -D_GNU_SOURCE)
set_target_properties(trinity_cuda_test_kernels PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
target_link_libraries(trinity_cuda_test_kernels PUBLIC trinity_cuda)

set(TN_CUDA_LIB trinity_cuda)
