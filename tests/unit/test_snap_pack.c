/* quant/pack: 4-bit and 2-bit packing round trips on every small length, the documented bit layout,
 * zero padding, single-element access, and rejection of indices that do not fit. */
#include "tn_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "quant/pack.h"

#include <string.h>

static void test_pack4(tn_rng *rng) {
    enum { N = 301 };
    uint8_t idx[N + 1], packed[N + 1], back[N + 1];
    int bad = 0;
    for (int n = 0; n <= N; n++) {
        for (int i = 0; i < n; i++) idx[i] = (uint8_t)tn_rng_below(rng, 16);
        memset(packed, 0xFF, sizeof packed);
        CHECK_OK(tn_pack4(idx, n, packed));
        memset(back, 0xEE, sizeof back);
        tn_unpack4(packed, n, back);
        bad += memcmp(idx, back, (size_t)n) != 0;
        if (n % 2) bad += (packed[n / 2] >> 4) != 0; /* unused high nibble is zero */
        bad += packed[tn_pack4_bytes(n)] != 0xFF || (n && back[n] != 0xEE); /* nothing written past the end */
        for (int i = 0; i < n; i++) bad += tn_pack4_get(packed, i) != idx[i];
    }
    CHECKF(bad == 0, "pack4 round trips: %d failures", bad);
    /* layout: element 0 in the low nibble */
    const uint8_t v[3] = {0x3, 0xA, 0x7};
    CHECK_OK(tn_pack4(v, 3, packed));
    CHECK(packed[0] == 0xA3 && packed[1] == 0x07);
    CHECK(tn_pack4_bytes(0) == 0 && tn_pack4_bytes(1) == 1 && tn_pack4_bytes(2) == 1 && tn_pack4_bytes(3) == 2);
    /* set leaves the neighbour alone */
    tn_pack4_set(packed, 1, 0x5);
    CHECK(packed[0] == 0x53 && tn_pack4_get(packed, 0) == 3 && tn_pack4_get(packed, 2) == 7);
    tn_pack4_set(packed, 2, 0xF);
    CHECK(packed[1] == 0x0F && packed[0] == 0x53);
    /* too large */
    const uint8_t big[4] = {1, 2, 16, 3};
    CHECK(tn_pack4(big, 4, packed) != 0);
    CHECK(strstr(tn_errmsg(), "at 2") != NULL);
    CHECK(tn_pack4(big + 2, 1, packed) != 0);
}

static void test_pack2(tn_rng *rng) {
    enum { N = 303 };
    uint8_t c[N], packed[N], back[N];
    int bad = 0;
    for (int n = 0; n <= N; n++) {
        for (int i = 0; i < n; i++) c[i] = (uint8_t)tn_rng_below(rng, 3); /* ternary codes 0, 1, 2 */
        memset(packed, 0xFF, sizeof packed);
        CHECK_OK(tn_pack2(c, n, packed));
        tn_unpack2(packed, n, back);
        bad += memcmp(c, back, (size_t)n) != 0;
        if (n % 4) bad += (packed[n / 4] >> (2 * (n % 4))) != 0; /* padding bits are zero */
        bad += packed[tn_pack2_bytes(n)] != 0xFF;
    }
    CHECKF(bad == 0, "pack2 round trips: %d failures", bad);
    const uint8_t v[5] = {2, 0, 1, 3, 2}; /* 3 fits the 2 bits (a reader of ternary must reject it) */
    CHECK_OK(tn_pack2(v, 5, packed));
    CHECK(packed[0] == (2 | 0 << 2 | 1 << 4 | 3 << 6) && packed[1] == 2);
    CHECK(tn_pack2_bytes(5) == 2 && tn_pack2_bytes(4) == 1 && tn_pack2_bytes(0) == 0);
    const uint8_t big[2] = {0, 4};
    CHECK(tn_pack2(big, 2, packed) != 0);
}

int main(void) {
    tn_rng rng;
    tn_rng_seed(&rng, 7);
    test_pack4(&rng);
    test_pack2(&rng);
    return tn_test_finish();
}
