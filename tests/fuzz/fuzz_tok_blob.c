/* libFuzzer target for the serialized tokenizer ("TNTK" blob, embedded in checkpoints and .trin files),
 * tn_tokenizer_deserialize in data/tokenizer.c. Random mutations almost never keep the trailing CRC, which
 * would leave everything behind it unexplored; so the target rewrites the CRC to match the input first
 * (the CRC rejection itself is covered by tests/unit/test_tok_core.c). */
#include "core/crc32.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size);
    if (!buf) return 0;
    if (size >= 44) {
        uint32_t crc = tn_crc32(0, buf, size - 4);
        for (int i = 0; i < 4; i++) buf[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    fuzz_tok_load(tn_tokenizer_deserialize, buf, size);
    free(buf);
    return 0;
}
