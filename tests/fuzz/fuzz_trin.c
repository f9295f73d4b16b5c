/* libFuzzer target for the TRIN reader (export/trin.c): any byte string must be refused with an error
 * or accepted as a valid model, never crash, hang or read out of bounds (built with ASan + UBSan).
 *
 * Random mutations almost never survive the header CRC, which would leave the parser behind it
 * unexplored; so before opening, the target rewrites the file-size field and the header CRC to match
 * the input (when the header size it states fits). The CRC rejection itself is covered by
 * tests/unit/test_trin.c. */
#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "export/trin.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* 64-byte aligned copy, as a mapped file would be (the reader requires aligned offsets relative to
     * the start, and scale arrays are read as floats in place). */
    uint8_t *img = tn_alloc(size ? size : 1, 1);
    if (!img) return 0;
    if (size) memcpy(img, data, size);
    if (size >= 148 && memcmp(img, "TRIN", 4) == 0) {
        uint64_t fsize = size, hs;
        memcpy(img + 24, &fsize, 8);
        memcpy(&hs, img + 8, 8);
        if (hs >= 148 && hs <= size) {
            uint32_t crc = tn_crc32(0, img, (size_t)hs - 4);
            memcpy(img + hs - 4, &crc, 4);
        }
    }
    tn_trin *t = NULL;
    if (tn_trin_open_memory(img, size, &t) == 0) {
        /* Accepted: every pointer it hands out must be readable for the sizes it states. */
        volatile uint8_t sink = 0;
        for (int i = 0; i < t->n_tensors; i++) {
            const tn_trin_tensor *e = &t->tensors[i];
            sink ^= e->data[0] ^ e->data[e->size - 1];
            if (e->n_scales) sink ^= (uint8_t)(e->scales[e->n_scales - 1] > 0);
            sink ^= (uint8_t)(e->grid[255] != 0);
        }
        if (t->tokenizer_len) sink ^= t->tokenizer[t->tokenizer_len - 1];
        (void)sink;
        tn_trin_close(t);
    } else if (t != NULL || tn_errmsg()[0] == '\0') {
        __builtin_trap(); /* a failure must leave no object and one message */
    }
    tn_free(img);
    return 0;
}
