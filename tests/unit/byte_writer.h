/* Little-endian byte writer into a growable buffer, for tests and seed generators that build binary files
 * (GGUF, safetensors, llama2.c, TRIN) byte by byte as the formats' specs describe them.
 *   buf b = {0};  u32(&b, 7); gstr(&b, "name"); ...  free(b.p);
 * Header-only (static inline): each test is one translation unit and uses a subset. */
#ifndef TN_TEST_BYTE_WRITER_H
#define TN_TEST_BYTE_WRITER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static inline void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void u8(buf *b, uint8_t v) { put(b, &v, 1); }
static inline void u16(buf *b, uint16_t v) { u8(b, (uint8_t)v), u8(b, (uint8_t)(v >> 8)); }
static inline void u32(buf *b, uint32_t v) { u16(b, (uint16_t)v), u16(b, (uint16_t)(v >> 16)); }
static inline void u64(buf *b, uint64_t v) { u32(b, (uint32_t)v), u32(b, (uint32_t)(v >> 32)); }
static inline void f32(buf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u32(b, u);
}
/* the bytes of s, without its terminator */
static inline void text(buf *b, const char *s) { put(b, s, strlen(s)); }
/* a GGUF string: u64 length, then the bytes */
static inline void gstr(buf *b, const char *s) { u64(b, strlen(s)), text(b, s); }

#endif
