/* libFuzzer target for the llama2.c tokenizer.bin loader, data/tok_llama2c.c. */
#include "data/tok_internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    tn_tokenizer *t = NULL;
    tn_err_clear();
    if (tn_tok_load_llama2c(buf, size, &t) == 0) {
        fuzz_use_tok(t);
        tn_tokenizer_free(t);
    } else {
        fuzz_failed(t);
    }
    free(buf);
    return 0;
}
