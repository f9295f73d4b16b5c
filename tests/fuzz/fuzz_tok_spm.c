/* libFuzzer target for the SentencePiece tokenizer.model (protobuf) loader, data/tok_spm.c: refused with
 * one error, or a tokenizer that encodes, decodes and round-trips through its serialized form. */
#include "data/tok_internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    tn_tokenizer *t = NULL;
    tn_err_clear();
    if (tn_tok_load_spm_model(buf, size, &t) == 0) {
        fuzz_use_tok(t);
        tn_tokenizer_free(t);
    } else {
        fuzz_failed(t);
    }
    free(buf);
    return 0;
}
