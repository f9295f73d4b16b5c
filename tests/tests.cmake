# The test suite. Conventions (so that nobody edits this file to add a test):
#   tests/unit/test_*.c        one executable each, linked to trinity_lib, run with no arguments
#                              (environment: TN_SOURCE_DIR, TN_SHARED_DATA, TN_FIXTURES, TN_TRINITY)
#   tests/cli/test_*.sh        bash scripts driving the `trinity` binary
#   tests/reference/gen_*.py   PyTorch scripts that write HDF5 fixtures into ${TN_FIXTURES}; tests that
#                              use them carry the FIXTURES_REQUIRED label "reference"
# A test that must skip (no ../shared/data, no GPU) exits 77, which ctest reports as skipped.

set(TN_FIXTURES ${CMAKE_BINARY_DIR}/fixtures)
get_filename_component(TN_SHARED_DATA ${CMAKE_SOURCE_DIR}/../shared/data ABSOLUTE)
# Python for the reference scripts and the Python-side checks: the project's .venv (scripts/setup.sh makes
# it with --system-site-packages over /usr/bin/python3 and installs the PyPI packages Debian lacks, e.g.
# gguf), else Debian's /usr/bin/python3 (torch, h5py), else any python3. Tests that miss a package skip.
if(EXISTS ${CMAKE_SOURCE_DIR}/.venv/bin/python3)
  set(TN_PYTHON3 ${CMAKE_SOURCE_DIR}/.venv/bin/python3 CACHE FILEPATH "python for tests" FORCE)
else()
  unset(TN_PYTHON3 CACHE)
  find_program(TN_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT TN_PYTHON3)
    find_program(TN_PYTHON3 python3)
  endif()
endif()
set(TN_TEST_ENV
  TN_SOURCE_DIR=${CMAKE_SOURCE_DIR}
  TN_SHARED_DATA=${TN_SHARED_DATA}
  TN_FIXTURES=${TN_FIXTURES}
  TN_PYTHON=${TN_PYTHON3}
  TN_TRINITY=$<TARGET_FILE:trinity>
  OMP_NUM_THREADS=2
  OMP_WAIT_POLICY=passive)  # ctest -j runs tests side by side; spinning OpenMP threads would thrash

# Reference fixtures: every generator runs once, before the tests that need it.
file(GLOB TN_REF_GENERATORS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/reference/gen_*.py)
foreach(gen ${TN_REF_GENERATORS})
  get_filename_component(name ${gen} NAME_WE)
  add_test(NAME ref_${name} COMMAND ${TN_PYTHON3} ${gen} ${TN_FIXTURES})
  set_tests_properties(ref_${name} PROPERTIES FIXTURES_SETUP reference
    ENVIRONMENT "${TN_TEST_ENV}" SKIP_RETURN_CODE 77 TIMEOUT 600)
endforeach()

file(GLOB TN_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${TN_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/tests/unit/tn_test.c ${CMAKE_SOURCE_DIR}/tests/unit/fixture_llama.c
    ${CMAKE_SOURCE_DIR}/tests/unit/tiny_ckpt.c)
  target_link_libraries(${name} PRIVATE trinity_lib)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${TN_TEST_ENV}" SKIP_RETURN_CODE 77
    FIXTURES_REQUIRED reference TIMEOUT 900)
endforeach()

file(GLOB TN_CLI_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cli/test_*.sh)
foreach(script ${TN_CLI_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME cli_${name} COMMAND bash ${script})
  set_tests_properties(cli_${name} PROPERTIES ENVIRONMENT "${TN_TEST_ENV}" SKIP_RETURN_CODE 77
    FIXTURES_REQUIRED reference TIMEOUT 900)
  # "# ctest-label: slow" in a script: a convergence run whose code paths other tests cover; the sanitizer
  # pass of scripts/test.sh leaves it out (ctest -LE slow)
  file(STRINGS ${script} label REGEX "^# ctest-label: [a-z]+$" LIMIT_COUNT 1)
  if(label)
    string(REPLACE "# ctest-label: " "" label "${label}")
    set_tests_properties(cli_${name} PROPERTIES LABELS ${label})
  endif()
endforeach()

# CUDA tests (tests/unit/test_cuda*.c): built in every configuration, the GPU part compiled in where a CUDA
# backend is (TN_HAVE_CUDA). With the emulator each runs twice, the threads of every block scheduled in
# forward and in reverse order (a missing barrier shows in one of them); TN_CUDA_EMU_MEM keeps their
# emulated device small.
if(TN_CUDA_LIB)
  file(GLOB TN_CUDA_TESTS ${CMAKE_SOURCE_DIR}/tests/unit/test_cuda*.c)
  foreach(src ${TN_CUDA_TESTS})
    get_filename_component(name ${src} NAME_WE)
    target_link_libraries(${name} PRIVATE trinity_cuda_test_kernels ${TN_CUDA_LIB})
    set_target_properties(${name} PROPERTIES LINKER_LANGUAGE CXX)
    set_property(TEST ${name} APPEND PROPERTY LABELS cuda)
    if(TN_CUDA_EMU)
      set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT TN_CUDA_EMU_ORDER=forward TN_CUDA_EMU_MEM=64M)
      add_test(NAME ${name}_reverse COMMAND ${name})
      set_tests_properties(${name}_reverse PROPERTIES ENVIRONMENT "${TN_TEST_ENV};TN_CUDA_EMU_ORDER=reverse;TN_CUDA_EMU_MEM=64M"
        SKIP_RETURN_CODE 77 FIXTURES_REQUIRED reference TIMEOUT 900 LABELS cuda)
    endif()
    if(TN_CUDA_EMU AND name STREQUAL "test_cuda_emu")  # the emulator's second fiber implementation
      add_test(NAME ${name}_ucontext COMMAND ${name})
      set_tests_properties(${name}_ucontext PROPERTIES ENVIRONMENT "${TN_TEST_ENV};TN_CUDA_EMU_FIBERS=ucontext;TN_CUDA_EMU_MEM=64M"
        SKIP_RETURN_CODE 77 FIXTURES_REQUIRED reference TIMEOUT 900 LABELS cuda)
    endif()
  endforeach()
endif()

if(TN_FUZZ)
  include(${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz.cmake)
endif()
