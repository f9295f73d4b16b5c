/* libFuzzer target for the serialized tokenizer ("TNTK" blob, embedded in checkpoints and .trin files),
 * tn_tokenizer_deserialize in data/tokenizer.c. Random mutations almost never keep the trailing CRC, which
 * would leave everything behind it unexplored; so the target rewrites the CRC to match the input first
 * (the CRC rejection itself is covered by tests/unit/test_tok_core.c). */
#include "core/crc32.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    if (size >= 44) {
        uint32_t crc = tn_crc32(0, buf, size - 4);
        for (int i = 0; i < 4; i++) buf[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    tn_tokenizer *t = NULL;
    tn_err_clear();
    if (tn_tokenizer_deserialize(buf, size, &t) == 0) {
        fuzz_use_tok(t);
        tn_tokenizer_free(t);
    } else {
        fuzz_failed(t);
    }
    free(buf);
    return 0;
}
