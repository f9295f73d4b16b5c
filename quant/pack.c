#include "quant/pack.h"
#include "core/error.h"

int tn_pack4(const uint8_t *idx, int64_t n, uint8_t *out) {
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
        if ((idx[i] | idx[i + 1]) > 15)
            return tn_err("pack4: index %u at %lld does not fit in 4 bits", idx[i] > 15 ? idx[i] : idx[i + 1],
                          (long long)(idx[i] > 15 ? i : i + 1));
        out[i >> 1] = (uint8_t)(idx[i] | idx[i + 1] << 4);
    }
    if (i < n) {
        if (idx[i] > 15) return tn_err("pack4: index %u at %lld does not fit in 4 bits", idx[i], (long long)i);
        out[i >> 1] = idx[i]; /* high nibble of the last byte stays zero */
    }
    return 0;
}

void tn_unpack4(const uint8_t *packed, int64_t n, uint8_t *idx) {
    for (int64_t i = 0; i < n; i++) idx[i] = tn_pack4_get(packed, i);
}

int tn_pack2(const uint8_t *codes, int64_t n, uint8_t *out) {
    for (int64_t k = 0; k < (n + 3) / 4; k++) {
        uint8_t b = 0;
        for (int j = 0; j < 4 && 4 * k + j < n; j++) {
            uint8_t c = codes[4 * k + j];
            if (c > 3) return tn_err("pack2: code %u at %lld does not fit in 2 bits", c, (long long)(4 * k + j));
            b |= (uint8_t)(c << (2 * j));
        }
        out[k] = b;
    }
    return 0;
}

void tn_unpack2(const uint8_t *packed, int64_t n, uint8_t *codes) {
    for (int64_t i = 0; i < n; i++) codes[i] = (uint8_t)((packed[i >> 2] >> (2 * (i & 3))) & 3);
}
