/* libFuzzer target for the SentencePiece tokenizer.model (protobuf) loader, data/tok_spm.c: refused with
 * one error, or a tokenizer that encodes, decodes and round-trips through its serialized form. */
#include "data/tok_internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size);
    if (!buf) return 0;
    fuzz_tok_load(tn_tok_load_spm_model, buf, size);
    free(buf);
    return 0;
}
