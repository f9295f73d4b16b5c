/* Dequantization against hand-computed blocks and an element-wise restatement of each layout, fp16/bf16
 * conversion, and the Q/K row un-permutation. */
#include "core/error.h"
#include "core/gguf.h"
#include "export/gguf_dequant.h"
#include "export/import.h"
#include "tn_test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void test_half(void) {
    CHECK(tn_f16_to_f32(0x3C00) == 1.0f);
    CHECK(tn_f16_to_f32(0xC000) == -2.0f);
    CHECK(tn_f16_to_f32(0x3555) == 0.333251953125f);
    CHECK(tn_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(tn_f16_to_f32(0x03FF) == 1023 * 0x1p-24f);
    CHECK(tn_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(tn_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(isinf(tn_f16_to_f32(0x7C00)) && tn_f16_to_f32(0xFC00) < 0);
    CHECK(isnan(tn_f16_to_f32(0x7E00)));
    float nz = tn_f16_to_f32(0x8000);
    CHECK(nz == 0.0f && signbit(nz));
    CHECK(tn_bf16_to_f32(0x3F80) == 1.0f && tn_bf16_to_f32(0xC0A0) == -5.0f);
    /* every finite half converts exactly: check against the definition */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) continue;
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (h & 0x8000) v = -v;
        if (tn_f16_to_f32((uint16_t)h) != (float)v) bad++;
    }
    CHECK(bad == 0);
}

static void test_q8_0(void) {
    uint8_t b[34 * 2] = {0};
    float y[64];
    put16(b, 0x3800); /* d = 0.5 */
    b[2] = 0x80, b[3] = 0xFF, b[4] = 0, b[5] = 1, b[6] = 127;
    put16(b + 34, 0xC000); /* d = -2 */
    b[34 + 2 + 31] = 3;
    CHECK_OK(tn_ggml_dequantize(TN_GGML_Q8_0, b, sizeof b, y, 64));
    CHECK(y[0] == -64.0f && y[1] == -0.5f && y[2] == 0.0f && y[3] == 0.5f && y[4] == 63.5f && y[31] == 0.0f);
    CHECK(y[63] == -6.0f && y[32] == 0.0f);
}

static void test_q4_0_q4_1(void) {
    uint8_t b[18] = {0};
    float y[32];
    put16(b, 0x4000); /* d = 2 */
    b[2] = 0x1F;      /* value 0: 15 -> (15-8)*2 = 14; value 16: 1 -> -14 */
    b[2 + 15] = 0x80; /* value 15: 0 -> -16; value 31: 8 -> 0 */
    CHECK_OK(tn_ggml_dequantize(TN_GGML_Q4_0, b, sizeof b, y, 32));
    CHECK(y[0] == 14.0f && y[16] == -14.0f && y[15] == -16.0f && y[31] == 0.0f && y[1] == -16.0f);

    uint8_t c[20] = {0};
    put16(c, 0x3C00), put16(c + 2, 0xBC00); /* d = 1, m = -1 */
    c[4 + 3] = 0xA5;
    CHECK_OK(tn_ggml_dequantize(TN_GGML_Q4_1, c, sizeof c, y, 32));
    CHECK(y[3] == 4.0f && y[19] == 9.0f && y[0] == -1.0f);
}

/* Element-wise restatements (index -> fields), independent of the block loops. */
static float q4k_ref(const uint8_t *b, int e) {
    float d = tn_f16_to_f32((uint16_t)(b[0] | b[1] << 8)), dmin = tn_f16_to_f32((uint16_t)(b[2] | b[3] << 8));
    const uint8_t *s = b + 4, *qs = b + 16;
    int c = e / 64, nib = (e % 64) / 32, l = e % 32, sub = 2 * c + nib;
    int q = nib ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
    int sc, m;
    if (sub < 4) sc = s[sub] & 63, m = s[sub + 4] & 63;
    else sc = (s[sub + 4] & 15) + 16 * (s[sub - 4] >> 6), m = (s[sub + 4] >> 4) + 16 * (s[sub] >> 6);
    return d * (float)sc * (float)q - dmin * (float)m;
}

static float q6k_ref(const uint8_t *b, int e) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = tn_f16_to_f32((uint16_t)(b[208] | b[209] << 8));
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    uint8_t byte = ql[64 * h + l + 32 * (k & 1)];
    int lo = (k >> 1) ? byte >> 4 : byte & 15;
    int hi = (qh[32 * h + l] >> (2 * k)) & 3;
    return d * (float)sc[8 * h + l / 16 + 2 * k] * (float)(lo + 16 * hi - 32);
}

static void test_q4_k(void) {
    uint8_t b[144] = {0};
    float y[256];
    put16(b, 0x3C00), put16(b + 2, 0x3800); /* d = 1, dmin = 0.5 */
    uint8_t *s = b + 4, *qs = b + 16;
    s[0] = 3, s[4] = 2;     /* sub-block 0: scale 3, min 2 */
    s[1] = 0x40 | 1;        /* sub-block 1: scale 1; top bits feed sub-block 5's scale */
    s[5] = 0xC0 | 4;        /* sub-block 1: min 4; top bits feed sub-block 5's min */
    s[9] = 0x75;            /* sub-block 5: scale low 5, min low 7 -> scale 21, min 55 */
    qs[0] = 0x0F;           /* value 0 (sub 0): 15; value 32 (sub 1): 0 */
    qs[64 + 3] = 0x90;      /* value 163 (sub 5, high nibble): 9 */
    CHECK_OK(tn_ggml_dequantize(TN_GGML_Q4_K, b, sizeof b, y, 256));
    CHECK(y[0] == 44.0f);   /* 1*3*15 - 0.5*2 */
    CHECK(y[1] == -1.0f);   /* 1*3*0 - 1 */
    CHECK(y[32] == -2.0f);  /* 1*1*0 - 0.5*4 */
    CHECK(y[163] == 161.5f);/* 1*21*9 - 0.5*55 */
    CHECK(y[131] == 0.0f);  /* sub-block 4: scale 0, min 0 */
    for (int it = 0; it < 50; it++) {
        uint8_t r[144 * 2];
        for (size_t i = 0; i < sizeof r; i++) r[i] = (uint8_t)rnd();
        put16(r, 0x2E66), put16(r + 2, 0x2A00), put16(r + 144, 0xAE66), put16(r + 146, 0x1C00);
        float z[512];
        CHECK_OK(tn_ggml_dequantize(TN_GGML_Q4_K, r, sizeof r, z, 512));
        int bad = 0;
        for (int e = 0; e < 512; e++) bad += z[e] != q4k_ref(r + 144 * (e / 256), e % 256);
        CHECK(bad == 0);
    }
}

static void test_q6_k(void) {
    uint8_t b[210] = {0};
    float y[256];
    put16(b + 208, 0x3C00);
    int8_t *sc = (int8_t *)(b + 192);
    b[36] = 0xB0, b[128 + 4] = 0x80, sc[6] = -3;  /* value 100: (11 | 2<<4) - 32 = 11, * -3 */
    b[81] = 0x07, b[128 + 49] = 0x01, sc[9] = 2;  /* value 145: (7 | 1<<4) - 32 = -9, * 2 */
    CHECK_OK(tn_ggml_dequantize(TN_GGML_Q6_K, b, sizeof b, y, 256));
    CHECK(y[100] == -33.0f);
    CHECK(y[145] == -18.0f);
    CHECK(y[96] == 96.0f); /* q = -32 with scale -3 */
    CHECK(y[0] == 0.0f);
    for (int it = 0; it < 50; it++) {
        uint8_t r[210 * 2];
        for (size_t i = 0; i < sizeof r; i++) r[i] = (uint8_t)rnd();
        put16(r + 208, 0x2E66), put16(r + 210 + 208, 0xB400);
        float z[512];
        CHECK_OK(tn_ggml_dequantize(TN_GGML_Q6_K, r, sizeof r, z, 512));
        int bad = 0;
        for (int e = 0; e < 512; e++) bad += z[e] != q6k_ref(r + 210 * (e / 256), e % 256);
        CHECK(bad == 0);
    }
}

static void test_errors(void) {
    uint8_t b[64] = {0};
    float y[64];
    CHECK(tn_ggml_dequantize(TN_GGML_Q5_K, b, 0, y, 0) != 0 && strstr(tn_errmsg(), "Q5_K"));
    CHECK(tn_ggml_dequantize(TN_GGML_Q8_0, b, 34, y, 16) != 0 && strstr(tn_errmsg(), "multiple"));
    CHECK(tn_ggml_dequantize(TN_GGML_Q8_0, b, 33, y, 32) != 0);
    CHECK(tn_ggml_dequantize(999, b, 4, y, 1) != 0);
    CHECK_OK(tn_ggml_dequantize(TN_GGML_F32, b, 16, y, 4));
    put16(b, 0x3F80);
    CHECK_OK(tn_ggml_dequantize(TN_GGML_BF16, b, 2, y, 1));
    CHECK(y[0] == 1.0f);
}

/* llama.cpp's permute: reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): file row (h, j, i) = hf row (h, i, j). */
static void test_unpermute(void) {
    enum { H = 3, HD = 8, C = 5, R = H * HD };
    float hf[R * C], file[R * C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) hf[r * C + c] = (float)(r * 100 + c);
    for (int h = 0; h < H; h++)
        for (int j = 0; j < HD / 2; j++)
            for (int i = 0; i < 2; i++)
                memcpy(file + ((h * HD / 2 + j) * 2 + i) * C, hf + (h * HD + i * HD / 2 + j) * C, C * sizeof(float));
    /* literal check of the first head, hd = 8: file rows = hf rows 0,4,1,5,2,6,3,7 */
    CHECK(file[1 * C] == 400.0f && file[2 * C] == 100.0f && file[7 * C + 4] == 704.0f);
    CHECK_OK(tn_import_unpermute_qk(file, H, HD, C));
    CHECK(memcmp(file, hf, sizeof hf) == 0);
    CHECK(tn_import_unpermute_qk(file, H, 3, C) != 0);
}

int main(void) {
    test_half();
    test_q8_0();
    test_q4_0_q4_1();
    test_q4_k();
    test_q6_k();
    test_errors();
    test_unpermute();
    return tn_test_finish();
}
