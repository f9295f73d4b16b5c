# libFuzzer targets, built with -DTN_FUZZ=ON and clang (scripts/fuzz.sh does both; scripts/fuzz-trin.sh is
# the TRIN reader's shortcut). The reader under test is compiled into each target with the fuzzer's
# coverage instrumentation and ASan + UBSan; the rest of the library comes from trinity_lib (instrumented
# too when TN_SANITIZE=ON). A target compiles whole library files: every symbol of such an object is then
# defined by the target, so the linker never pulls the archive's copy.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TN_FUZZ needs clang (libFuzzer): configure with -DCMAKE_C_COMPILER=clang")
endif()

set(TN_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)

# tn_add_fuzzer(NAME library-file...): tests/fuzz/NAME.c plus the listed library sources (relative to the
# source root), which get coverage feedback.
function(tn_add_fuzzer name)
  set(srcs ${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.c)
  foreach(f ${ARGN})
    list(APPEND srcs ${CMAKE_SOURCE_DIR}/${f})
  endforeach()
  add_executable(${name} ${srcs})
  target_compile_options(${name} PRIVATE ${TN_FUZZ_FLAGS})
  target_link_options(${name} PRIVATE ${TN_FUZZ_FLAGS})
  target_link_libraries(${name} PRIVATE trinity_lib)
endfunction()

set(TN_FUZZ_TOK data/tokenizer.c data/tok_merge.c data/tok_spm.c data/tok_bpe.c)
tn_add_fuzzer(fuzz_trin export/trin.c)
tn_add_fuzzer(fuzz_gguf core/gguf.c data/tok_gguf.c data/tok_gguf_write.c ${TN_FUZZ_TOK})
tn_add_fuzzer(fuzz_tok_spm ${TN_FUZZ_TOK})
tn_add_fuzzer(fuzz_tok_json data/tok_hfjson.c ${TN_FUZZ_TOK})
tn_add_fuzzer(fuzz_tok_llama2c data/tok_llama2c.c ${TN_FUZZ_TOK})
tn_add_fuzzer(fuzz_tok_blob ${TN_FUZZ_TOK})
tn_add_fuzzer(fuzz_chat data/chat.c ${TN_FUZZ_TOK})
tn_add_fuzzer(fuzz_safetensors export/safetensors.c)
tn_add_fuzzer(fuzz_import_llama2c export/import_llama2c.c export/import.c)
tn_add_fuzzer(fuzz_import_gguf export/import_gguf.c export/gguf_dequant.c export/import.c core/gguf.c model/rope.c)
tn_add_fuzzer(fuzz_import_hf export/import_hf.c model/rope.c model/config.c)

# Seed corpus writers: small valid files. fuzz_trin_seed DIR (every TRIN dtype); fuzz_seed TARGET DIR.
add_executable(fuzz_trin_seed ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_trin_seed.c)
target_link_libraries(fuzz_trin_seed PRIVATE trinity_lib)
add_executable(fuzz_seed ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_seed.c)
target_link_libraries(fuzz_seed PRIVATE trinity_lib)
