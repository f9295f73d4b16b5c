/* Quantizers of the LM head and the embedding table (export/table_quant.h). */
#include "export/table_quant.h"

#include "core/error.h"
#include "export/export_trin.h"
#include "kernels/packed.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static const char *const names[] = {"auto", "f32", "f16", "q8", "q4"};

int tn_table_type_parse(const char *s, tn_table_type *out) {
    for (int i = 1; i < 5; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (tn_table_type)i;
            return 0;
        }
    return tn_err("unknown table type '%s' (f32, f16, q8, q4)", s);
}

const char *tn_table_type_name(tn_table_type t) { return (unsigned)t < 5 ? names[t] : "?"; }

tn_table_type tn_table_for(const tn_tensor_info *t, const tn_llama_config *cfg, tn_table_type head, tn_table_type embed) {
    if (tn_tensor_is_head(t, cfg)) return head;
    return t->group == TN_GROUP_EMBED ? embed : TN_TABLE_AUTO;
}

/* Every weight finite (a NaN would reach a float-to-int conversion, which C leaves undefined). */
static int all_finite(const float *w, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i])) return tn_err("weight %lld is not finite", (long long)i);
    return 0;
}

int tn_q8_quantize(const float *w, int64_t rows, int64_t cols, uint8_t *out, float *scales) {
    TN_CHECK(all_finite(w, rows * cols));
    const size_t rb = tn_q8_row_bytes(cols);
    memset(out, 0, tn_q8_packed_size(rows, cols));
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        int8_t *q = (int8_t *)(out + (size_t)r * rb);
        float amax = 0;
        for (int64_t c = 0; c < cols; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
        scales[r] = amax / 127.0f;
        if (amax == 0) continue;
        const float inv = 127.0f / amax;
        for (int64_t c = 0; c < cols; c++) {
            float v = rintf(x[c] * inv);
            q[c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
    }
    return 0;
}

/* d (before rounding) of a block: fp16-representable or an error. */
static int put_d(float d, uint8_t *p) {
    if (!(fabsf(d) <= 65504.0f)) return tn_err("block scale %g does not fit fp16", (double)d);
    const uint16_t h = tn_f32_to_f16(d);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
    return 0;
}

int tn_q4_quantize(const float *w, int64_t rows, int64_t cols, uint8_t *out) {
    TN_CHECK(all_finite(w, rows * cols));
    const size_t rb = tn_q4_row_bytes(cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        for (int64_t c0 = 0; c0 < cols; c0 += TN_Q4_BLOCK) {
            uint8_t *blk = out + (size_t)r * rb + (size_t)(c0 / TN_Q4_BLOCK) * TN_Q4_BLOCK_BYTES;
            const int n = cols - c0 < TN_Q4_BLOCK ? (int)(cols - c0) : TN_Q4_BLOCK;
            float amax = 0, m = 0;
            for (int j = 0; j < n; j++)
                if (fabsf(x[c0 + j]) > amax) {
                    amax = fabsf(x[c0 + j]);
                    m = x[c0 + j];
                }
            const float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            if (put_d(d, blk) != 0) return tn_err_prefix("Q4 row %lld", (long long)r);
            uint8_t code[TN_Q4_BLOCK];
            for (int j = 0; j < TN_Q4_BLOCK; j++) {
                const int q = j < n ? (int)(x[c0 + j] * id + 8.5f) : 8;
                code[j] = (uint8_t)(q > 15 ? 15 : q);
            }
            for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(code[j] | code[j + 16] << 4);
        }
    }
    return 0;
}

int tn_q8_0_quantize_row(const float *w, int64_t cols, uint8_t *out) {
    TN_CHECK(all_finite(w, cols));
    for (int64_t c0 = 0; c0 < cols; c0 += 32, out += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fabsf(w[c0 + j]) > amax ? fabsf(w[c0 + j]) : amax;
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        TN_CHECK(put_d(d, out));
        for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(w[c0 + j] * id);
    }
    return 0;
}
