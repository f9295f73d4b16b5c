/* SHA-256 (FIPS 180-4), used to fingerprint tokenizers so that shards, checkpoints and models made with
 * different vocabularies are never mixed silently. Small and self-contained: no linked library in the
 * build (zlib, HDF5, OpenBLAS, cJSON, inih) provides one. */
#ifndef TN_DATA_SHA256_H
#define TN_DATA_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t buf[64];
    size_t buf_len;
} tn_sha256_ctx;

void tn_sha256_init(tn_sha256_ctx *c);
void tn_sha256_update(tn_sha256_ctx *c, const void *data, size_t len);
void tn_sha256_final(tn_sha256_ctx *c, uint8_t out[32]);
/* One shot, as 64 lowercase hex digits plus NUL. */
void tn_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
