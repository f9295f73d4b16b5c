/* AdamW with blockwise 8-bit state: the scheme is documented in optim/adamw8.h. */
#include "optim/adamw8.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static tn_adam8_table g_table_m, g_table_v;
static pthread_once_t g_tables_once = PTHREAD_ONCE_INIT;

static void build_table(tn_adam8_table *t, int is_signed) {
    for (int c = 0; c < TN_ADAM8_CODES; c++) t->value[c] = tn_adam8_code_value(is_signed, c);
    for (int c = 0; c + 1 < TN_ADAM8_CODES; c++) t->mid[c] = (t->value[c] + t->value[c + 1]) * 0.5f;
    t->zero = is_signed ? TN_ADAM8_M_ZERO : TN_ADAM8_V_ZERO;
    t->is_v = !is_signed;
}

static void build_tables(void) {
    build_table(&g_table_m, 1);
    build_table(&g_table_v, 0);
}

const tn_adam8_table *tn_adam8_table_m(void) {
    pthread_once(&g_tables_once, build_tables);
    return &g_table_m;
}

const tn_adam8_table *tn_adam8_table_v(void) {
    pthread_once(&g_tables_once, build_tables);
    return &g_table_v;
}

int64_t tn_adam8_blocks(int64_t n) { return n > 0 ? (n + TN_ADAM8_BLOCK - 1) / TN_ADAM8_BLOCK : 0; }

int tn_adam8_code(const tn_adam8_table *t, float u) { return tn_adam8_nearest(t->mid, u); }

void tn_adam8_quantize(const float *x, int64_t len, const tn_adam8_table *t, uint8_t *codes, float *absmax) {
    float a = 0.0f;
    for (int64_t i = 0; i < len; i++) {
        const float ai = fabsf(x[i]);
        a = ai > a ? ai : a; /* never picks a NaN */
    }
    *absmax = a;
    if (a == 0.0f) {
        memset(codes, t->zero, (size_t)(len > 0 ? len : 0));
        return;
    }
    for (int64_t i = 0; i < len; i++) codes[i] = (uint8_t)tn_adam8_quantize1(t->mid, t->is_v, x[i], a);
}

void tn_adam8_dequantize(const uint8_t *codes, float absmax, int64_t len, const tn_adam8_table *t, float *x) {
    for (int64_t i = 0; i < len; i++) x[i] = t->value[codes[i]] * absmax + 0.0f; /* + 0: −0 → +0 */
}

void tn_adamw8_apply(float *p, const float *g, uint8_t *m, float *m_absmax, uint8_t *v, float *v_absmax, int64_t n,
                     const tn_adamw_step *h) {
    const int64_t nb = tn_adam8_blocks(n);
    const tn_adam8_table *tm = tn_adam8_table_m(), *tv = tn_adam8_table_v();
    /* One task per block, each with its own float copy of the block's moments. tn_adamw_apply's own
     * `omp parallel` is nested here and runs on the calling thread (nesting is inactive by default); it is
     * elementwise, so the result is the same however many threads run it. */
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        float mf[TN_ADAM8_BLOCK], vf[TN_ADAM8_BLOCK];
        const int64_t off = b * TN_ADAM8_BLOCK, len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        tn_adam8_dequantize(m + off, m_absmax[b], len, tm, mf);
        tn_adam8_dequantize(v + off, v_absmax[b], len, tv, vf);
        tn_adamw_apply(p + off, g + off, mf, vf, len, h);
        tn_adam8_quantize(mf, len, tm, m + off, &m_absmax[b]);
        tn_adam8_quantize(vf, len, tv, v + off, &v_absmax[b]);
    }
}
