/* Scalar ggml dequantization (see gguf_dequant.h). Written from the block layouts in ggml-common.h;
 * the formulas are restated above each function. */
#include "export/gguf_dequant.h"
#include "core/error.h"
#include "core/gguf.h"

#include <math.h>
#include <string.h>

float tn_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static float h16(const uint8_t *p) { return tn_f16_to_f32(rd16(p)); }

/* Q8_0, 34 bytes per 32 values: f16 d, int8 q[32].  x[i] = d * q[i]. */
static void deq_q8_0(const uint8_t *b, float *y) {
    float d = h16(b);
    for (int i = 0; i < 32; i++) y[i] = d * (float)(int8_t)b[2 + i];
}

/* Q4_0, 18 bytes per 32 values: f16 d, uint8 qs[16]. Low nibbles are values 0..15, high nibbles values
 * 16..31:  x[j] = d * ((qs[j] & 15) - 8),  x[j + 16] = d * ((qs[j] >> 4) - 8). */
static void deq_q4_0(const uint8_t *b, float *y) {
    float d = h16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 15) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1, 20 bytes per 32 values: f16 d, f16 m, uint8 qs[16]; same nibble order as Q4_0 without the -8:
 * x = d * q + m. */
static void deq_q4_1(const uint8_t *b, float *y) {
    float d = h16(b), m = h16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 15) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

/* Q4_K, 144 bytes per 256 values: f16 d, f16 dmin, uint8 scales[12], uint8 qs[128]. Eight sub-blocks of
 * 32 values, each with a 6-bit scale sc[s] and 6-bit min m[s] packed in scales[12]:
 *   s < 4:  sc = scales[s] & 63,                                m = scales[s + 4] & 63
 *   s >= 4: sc = (scales[s + 4] & 15) | (scales[s - 4] >> 6) << 4, m = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4
 * Values come in 4 chunks of 64 from 32 bytes of qs each: the low nibbles are sub-block 2c, the high
 * nibbles sub-block 2c + 1;  x = d * sc * q - dmin * m. */
static void q4k_scale_min(int s, const uint8_t *sc, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
        *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
}

static void deq_q4_k(const uint8_t *b, float *y) {
    float d = h16(b), dmin = h16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int c = 0; c < 4; c++) {
        int s0, m0, s1, m1;
        q4k_scale_min(2 * c, scales, &s0, &m0);
        q4k_scale_min(2 * c + 1, scales, &s1, &m1);
        float d0 = d * (float)s0, mm0 = dmin * (float)m0, d1 = d * (float)s1, mm1 = dmin * (float)m1;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d0 * (float)(q[l] & 15) - mm0;
            y[64 * c + 32 + l] = d1 * (float)(q[l] >> 4) - mm1;
        }
    }
}

/* Q6_K, 210 bytes per 256 values: uint8 ql[128] (low 4 bits), uint8 qh[64] (high 2 bits), int8
 * scales[16] (one per 16 values), f16 d.  Two halves of 128 values; in half h, for l < 32, with
 * ql' = ql + 64h, qh' = qh + 32h, sc' = scales + 8h:
 *   q0 = (ql'[l] & 15)      | ((qh'[l] >> 0) & 3) << 4   -> value 128h + l
 *   q1 = (ql'[l + 32] & 15) | ((qh'[l] >> 2) & 3) << 4   -> value 128h + l + 32
 *   q2 = (ql'[l] >> 4)      | ((qh'[l] >> 4) & 3) << 4   -> value 128h + l + 64
 *   q3 = (ql'[l + 32] >> 4) | ((qh'[l] >> 6) & 3) << 4   -> value 128h + l + 96
 *   x = d * sc'[l / 16 + 2k] * (qk - 32)   for qk, k = 0..3. */
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = h16(b + 208);
    for (int h = 0; h < 2; h++) {
        const uint8_t *l4 = ql + 64 * h, *h2 = qh + 32 * h;
        const int8_t *sc = scales + 8 * h;
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q0 = ((l4[l] & 15) | ((h2[l] >> 0) & 3) << 4) - 32;
            int q1 = ((l4[l + 32] & 15) | ((h2[l] >> 2) & 3) << 4) - 32;
            int q2 = ((l4[l] >> 4) | ((h2[l] >> 4) & 3) << 4) - 32;
            int q3 = ((l4[l + 32] >> 4) | ((h2[l] >> 6) & 3) << 4) - 32;
            o[l] = d * (float)sc[is + 0] * (float)q0;
            o[l + 32] = d * (float)sc[is + 2] * (float)q1;
            o[l + 64] = d * (float)sc[is + 4] * (float)q2;
            o[l + 96] = d * (float)sc[is + 6] * (float)q3;
        }
    }
}

/* TQ2_0 (ternary, 2.0625 bits per weight), 66 bytes per 256 values: uint8 qs[64], f16 d (ggml-common.h
 * block_tq2_0; ggml-quants.c quantize_row_tq2_0_ref / dequantize_row_tq2_0). Two halves of 128 values use
 * 32 bytes each; byte m of half h holds values 128h + m + 32n in bits 2n..2n+1 (n = 0..3) as q = t + 1 for
 * the trit t in {-1, 0, 1}:  x = d * (q - 1). (q = 3 does not occur in a well-formed block; it reads as
 * 2d, as ggml reads it.) */
static void deq_tq2_0(const uint8_t *b, float *y) {
    float d = h16(b + 64);
    for (int h = 0; h < 2; h++)
        for (int n = 0; n < 4; n++)
            for (int m = 0; m < 32; m++) y[128 * h + 32 * n + m] = d * (float)(((b[32 * h + m] >> (2 * n)) & 3) - 1);
}

/* TQ1_0 (ternary, 1.6875 bits per weight), 54 bytes per 256 values: uint8 qs[48], uint8 qh[4], f16 d
 * (ggml-common.h block_tq1_0; ggml-quants.c quantize_row_tq1_0_ref / dequantize_row_tq1_0). Five trits
 * per byte, first value most significant: a byte holds v = sum_n (t_n + 1) 3^(4-n), stored as
 * q = ceil(v * 256 / 243), so that trit n is ((uint8)(q * 3^n) * 3) >> 8 (a fixed-point base-3 fraction).
 *   qs[0..32):  byte m holds values m + 32n          (n = 0..4)   -> values 0..159
 *   qs[32..48): byte m holds values 160 + m + 16n    (n = 0..4)   -> values 160..239
 *   qh[0..4):   byte j holds values 240 + j + 4n     (n = 0..3; a fifth trit 0) -> values 240..255
 * x = d * (t - 1) for the digit t in {0, 1, 2}. */
static int tq1_trit(uint8_t q, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return (int)(((unsigned)(uint8_t)(q * pow3[n]) * 3u) >> 8);
}

static void deq_tq1_0(const uint8_t *b, float *y) {
    const uint8_t *qs = b, *qh = b + 48;
    float d = h16(b + 52);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 32; m++) y[m + 32 * n] = d * (float)(tq1_trit(qs[m], n) - 1);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 16; m++) y[160 + m + 16 * n] = d * (float)(tq1_trit(qs[32 + m], n) - 1);
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) y[240 + j + 4 * n] = d * (float)(tq1_trit(qh[j], n) - 1);
}

int tn_ggml_can_dequantize(uint32_t type) {
    switch (type) {
    case TN_GGML_F32: case TN_GGML_F16: case TN_GGML_BF16: case TN_GGML_Q8_0: case TN_GGML_Q4_0:
    case TN_GGML_Q4_1: case TN_GGML_Q4_K: case TN_GGML_Q6_K: case TN_GGML_TQ1_0: case TN_GGML_TQ2_0: return 1;
    default: return 0;
    }
}

int tn_ggml_dequantize(uint32_t type, const uint8_t *src, size_t n_bytes, float *dst, size_t n) {
    uint32_t be, bb;
    if (!tn_ggml_can_dequantize(type) || tn_ggml_type_layout(type, &be, &bb) != 0)
        return tn_err("dequantize: ggml type %u (%s) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, TQ1_0, TQ2_0)",
                      type, tn_ggml_type_name(type));
    if (n % be) return tn_err("dequantize: %zu values is not a multiple of the %s block size %u", n, tn_ggml_type_name(type), be);
    size_t blocks = n / be;
    if (blocks > SIZE_MAX / bb || blocks * bb != n_bytes)
        return tn_err("dequantize: %zu bytes of %s do not hold %zu values", n_bytes, tn_ggml_type_name(type), n);
    const uint8_t *b = src;
    switch (type) {
    case TN_GGML_F32:
        memcpy(dst, src, n * 4); /* little-endian host (x86-64 / aarch64) */
        break;
    case TN_GGML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = tn_f16_to_f32(rd16(src + 2 * i));
        break;
    case TN_GGML_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = tn_bf16_to_f32(rd16(src + 2 * i));
        break;
    case TN_GGML_Q8_0: for (size_t k = 0; k < blocks; k++, b += bb) deq_q8_0(b, dst + k * 32); break;
    case TN_GGML_Q4_0: for (size_t k = 0; k < blocks; k++, b += bb) deq_q4_0(b, dst + k * 32); break;
    case TN_GGML_Q4_1: for (size_t k = 0; k < blocks; k++, b += bb) deq_q4_1(b, dst + k * 32); break;
    case TN_GGML_Q4_K: for (size_t k = 0; k < blocks; k++, b += bb) deq_q4_k(b, dst + k * 256); break;
    case TN_GGML_Q6_K: for (size_t k = 0; k < blocks; k++, b += bb) deq_q6_k(b, dst + k * 256); break;
    case TN_GGML_TQ1_0: for (size_t k = 0; k < blocks; k++, b += bb) deq_tq1_0(b, dst + k * 256); break;
    case TN_GGML_TQ2_0: for (size_t k = 0; k < blocks; k++, b += bb) deq_tq2_0(b, dst + k * 256); break;
    default: break;
    }
    return 0;
}
