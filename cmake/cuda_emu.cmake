# The emulated CUDA backend (-DTN_CUDA_EMU=ON; a test build): every kernels/cuda/*.cu file compiled by the
# host C++ compiler against kernels/cuda/emu/cuda_emu.h, so launches run on the CPU (one fiber per CUDA
# thread, Boost.Context). Builds trinity_cuda_emu, which the `trinity` binary and the test_cuda_* tests
# link in place of trinity_cuda; both get TN_HAVE_CUDA (the code paths of a CUDA build) and TN_CUDA_EMU.
# Needs the CUDA toolkit's headers (cuda_fp16.h, driver_types.h: types only, no nvcc, no libcudart) and
# libboost-context-dev. docs/CUDA.md, "The emulator".

enable_language(CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Boost 1.71 REQUIRED COMPONENTS context)
find_path(TN_CUDA_INCLUDE_DIR cuda_fp16.h
  HINTS ENV CUDA_HOME ENV CUDA_PATH PATHS /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include
  PATH_SUFFIXES include)
if(NOT TN_CUDA_INCLUDE_DIR)
  message(FATAL_ERROR "TN_CUDA_EMU needs the CUDA toolkit's headers (cuda_fp16.h); set CUDA_HOME")
endif()
message(STATUS "CUDA emulator: headers from ${TN_CUDA_INCLUDE_DIR}, Boost.Context ${Boost_VERSION}")

# One wrapper .cpp per .cu file (the source stays the one file nvcc compiles).
function(tn_cuda_emu_sources out_var)
  set(out "")
  foreach(cu ${ARGN})
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${cu})
    string(REPLACE "/" "_" flat ${rel})
    set(wrapper ${CMAKE_BINARY_DIR}/cuda_emu/${flat}.cpp)
    file(CONFIGURE OUTPUT ${wrapper} CONTENT "/* generated: ${rel} for the CUDA emulator */\n#include \"${cu}\"\n")
    list(APPEND out ${wrapper})
  endforeach()
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()

function(tn_cuda_emu_target target)
  target_include_directories(${target} PUBLIC ${CMAKE_SOURCE_DIR} SYSTEM PRIVATE ${TN_CUDA_INCLUDE_DIR})
  target_compile_definitions(${target} PUBLIC TN_HAVE_CUDA TN_CUDA_EMU)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
endfunction()

file(GLOB TN_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
tn_cuda_emu_sources(TN_CUDA_EMU_WRAPPERS ${TN_CUDA_SOURCES})
add_library(trinity_cuda_emu STATIC ${TN_CUDA_EMU_WRAPPERS} ${CMAKE_SOURCE_DIR}/kernels/cuda/emu/cuda_emu.cpp
            ${CMAKE_SOURCE_DIR}/kernels/cuda/emu/nccl_emu.cpp)
tn_cuda_emu_target(trinity_cuda_emu)
target_compile_definitions(trinity_cuda_emu PRIVATE TN_CUDA_ARCHS="emulated")
target_link_libraries(trinity_cuda_emu PUBLIC trinity_lib Boost::context OpenMP::OpenMP_CXX PkgConfig::OPENBLAS)

# Kernels that only tests use (tests/cuda/*.cu).
file(GLOB TN_CUDA_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cuda/*.cu)
tn_cuda_emu_sources(TN_CUDA_TEST_WRAPPERS ${TN_CUDA_TEST_SOURCES})
add_library(trinity_cuda_test_kernels STATIC ${TN_CUDA_TEST_WRAPPERS})
tn_cuda_emu_target(trinity_cuda_test_kernels)
target_link_libraries(trinity_cuda_test_kernels PUBLIC trinity_cuda_emu)

set(TN_CUDA_LIB trinity_cuda_emu)
