# libFuzzer targets, built with -DTN_FUZZ=ON and clang (scripts/fuzz-trin.sh does both).
# The reader under test is compiled into the target with the fuzzer's coverage instrumentation and
# ASan + UBSan; the rest of the library comes from trinity_lib (instrumented too when TN_SANITIZE=ON).
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TN_FUZZ needs clang (libFuzzer): configure with -DCMAKE_C_COMPILER=clang")
endif()

set(TN_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)

# export/trin.c is compiled into the target; the linker then never pulls the archive's copy (the target
# defines every symbol of that object).
add_executable(fuzz_trin ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_trin.c ${CMAKE_SOURCE_DIR}/export/trin.c)
target_compile_options(fuzz_trin PRIVATE ${TN_FUZZ_FLAGS})
target_link_options(fuzz_trin PRIVATE ${TN_FUZZ_FLAGS})
target_link_libraries(fuzz_trin PRIVATE trinity_lib)

# Seed corpus writer: small valid files of every dtype.
add_executable(fuzz_trin_seed ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_trin_seed.c)
target_link_libraries(fuzz_trin_seed PRIVATE trinity_lib)
