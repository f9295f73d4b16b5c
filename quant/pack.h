/* Bit packing of grid indices for storage (checkpoints, PRIMAL's packed-index option). Simple and
 * byte-addressable; the TRIN inference formats define their own streaming layouts (docs/TRIN.md).
 *
 *   4-bit: two indices per byte, element 2k in the low nibble, 2k+1 in the high nibble:
 *          byte k = idx[2k] | idx[2k+1] << 4. Needs every index < 16 (grids of at most 16 values).
 *   2-bit: four codes per byte, element 4k+j in bits 2j..2j+1 (lowest first):
 *          byte k = c[4k] | c[4k+1] << 2 | c[4k+2] << 4 | c[4k+3] << 6. For ternary the code is the grid
 *          index: 0 = -1, 1 = 0, 2 = +1; code 3 is never written and a reader must reject it.
 * Unused bits of the last byte are zero, so packed buffers compare and checksum deterministically. */
#ifndef TN_QUANT_PACK_H
#define TN_QUANT_PACK_H

#include <stddef.h>
#include <stdint.h>

static inline size_t tn_pack4_bytes(int64_t n) { return (size_t)((n + 1) / 2); }
static inline size_t tn_pack2_bytes(int64_t n) { return (size_t)((n + 3) / 4); }

/* Fail (naming the element) when an index does not fit; out is then unspecified. */
int tn_pack4(const uint8_t *idx, int64_t n, uint8_t *out);
void tn_unpack4(const uint8_t *packed, int64_t n, uint8_t *idx);
int tn_pack2(const uint8_t *codes, int64_t n, uint8_t *out);
void tn_unpack2(const uint8_t *packed, int64_t n, uint8_t *codes);

/* Single-element access to a 4-bit packed buffer (v < 16). Not atomic: two threads must not write the
 * two halves of one byte at once, so parallel writers split work on even element boundaries. */
static inline uint8_t tn_pack4_get(const uint8_t *p, int64_t i) {
    return (uint8_t)((p[i >> 1] >> ((i & 1) * 4)) & 0x0F);
}
static inline void tn_pack4_set(uint8_t *p, int64_t i, uint8_t v) {
    const int sh = (int)(i & 1) * 4;
    p[i >> 1] = (uint8_t)((p[i >> 1] & ~(0x0F << sh)) | ((v & 0x0F) << sh));
}

#endif
