/* Reading and patching a TRIN file image in the reader's tests (test_trin, test_trin_tables, test_rescore):
 * a field's value, a tensor's directory entry, and the header CRC recomputed after a patch, so that the
 * parse itself must catch what was changed. */
#ifndef TN_TESTS_TRIN_IMAGE_H
#define TN_TESTS_TRIN_IMAGE_H

#include "core/crc32.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t tn_test_rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The byte offset of tensor `name`'s directory entry (its name_len field) in the header [0, hs); 0 if absent. */
static inline size_t tn_test_trin_entry(const uint8_t *img, size_t hs, const char *name) {
    const size_t nl = strlen(name);
    for (size_t i = 2; i + nl < hs; i++)
        if (img[i - 2] == (uint8_t)nl && img[i - 1] == 0 && memcmp(img + i, name, nl) == 0) return i - 2;
    return 0;
}

/* Recompute the header CRC (the last 4 bytes of the header_size at offset 8). */
static inline void tn_test_trin_fix_header_crc(uint8_t *img) {
    const uint64_t hs = tn_test_rd64(img + 8);
    const uint32_t c = tn_crc32(0, img, (size_t)hs - 4);
    memcpy(img + hs - 4, &c, 4);
}

#endif
