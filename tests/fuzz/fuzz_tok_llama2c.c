/* libFuzzer target for the llama2.c tokenizer.bin loader, data/tok_llama2c.c. */
#include "data/tok_internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size);
    if (!buf) return 0;
    fuzz_tok_load(tn_tok_load_llama2c, buf, size);
    free(buf);
    return 0;
}
