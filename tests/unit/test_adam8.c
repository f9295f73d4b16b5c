/* 8-bit AdamW (optim/adamw8.h) on the CPU:
 *   - the code tables: 256 entries, strictly ascending, TM from −1 to +1 with 0 at code 127 and the spare
 *     +1e-7 at 128, TV from 0 to 1, the decade structure (2^(7−k) values of TV in (10^-(k+1), 10^-k]),
 *     spacing that never grows toward 0, midpoints strictly between their neighbours;
 *   - the nearest-code rule against brute force (a linear count of the midpoints below u: equal; nearest
 *     entry by distance: up to the rounding of the float midpoints), ties on a midpoint to the lower code,
 *     every entry to its own code, ±1, 0, NaN;
 *   - quantize / dequantize: error within half a step of the table, codes → values → codes unchanged, a zero
 *     block, a zero absmax dequantizing to +0 whatever the codes, v's floor (a positive v takes at least code
 *     1, also where v / absmax underflows to 0; m has none);
 *   - the fixture of tests/reference/gen_adam8.py (an independent numpy implementation): the tables, and
 *     every step's p, codes and absmax BIT FOR BIT;
 *   - the update is tn_adamw_apply on the dequantized moments followed by quantization (bit for bit), and a
 *     zero state (all bytes 0, or codes of 0 with absmax 0) gives exactly fp32 AdamW's first step;
 *   - the same results with 1, 2 and 3 OpenMP threads;
 *   - convergence: 300 steps of a sparse least-squares problem end within 3% of fp32 AdamW's loss (trinity's
 *     default β2 = 0.95), and embedding-like sparse gradients (rows at rest next to live ones in a block) take
 *     no step over 3 lr and reduce the error as fp32 AdamW does, within 3% (the case of v's floor). */
#include "tn_test.h"

#include "core/h5.h"
#include "core/error.h"
#include "core/rng.h"
#include "optim/adamw.h"
#include "optim/adamw8.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------------- */

static int64_t float_bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

static int64_t byte_diffs(const uint8_t *a, const uint8_t *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* Normal values whose magnitudes spread log-uniformly over 10^lo .. 10^hi. */
static void spread(tn_rng *r, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(r) * (float)pow(10.0, lo + (hi - lo) * tn_rng_uniform_d(r));
}

/* A random 8-bit state for n parameters: moments with magnitudes over six decades, quantized blockwise;
 * block `zero_block` (if in range) left as the all-zero-bytes state. */
typedef struct {
    int64_t n, nb;
    float *p, *g, *ma, *va;
    uint8_t *mc, *vc;
} state8;

static state8 state_new(int64_t n) {
    state8 s;
    s.n = n;
    s.nb = tn_adam8_blocks(n);
    s.p = malloc(sizeof(float) * (size_t)(n + 1));
    s.g = malloc(sizeof(float) * (size_t)(n + 1));
    s.mc = malloc((size_t)(n + 1));
    s.vc = malloc((size_t)(n + 1));
    s.ma = malloc(sizeof(float) * (size_t)(s.nb + 1));
    s.va = malloc(sizeof(float) * (size_t)(s.nb + 1));
    return s;
}

static void state_free(state8 *s) {
    free(s->p);
    free(s->g);
    free(s->mc);
    free(s->vc);
    free(s->ma);
    free(s->va);
}

static void state_copy(state8 *dst, const state8 *src) {
    memcpy(dst->p, src->p, sizeof(float) * (size_t)src->n);
    memcpy(dst->g, src->g, sizeof(float) * (size_t)src->n);
    memcpy(dst->mc, src->mc, (size_t)src->n);
    memcpy(dst->vc, src->vc, (size_t)src->n);
    memcpy(dst->ma, src->ma, sizeof(float) * (size_t)src->nb);
    memcpy(dst->va, src->va, sizeof(float) * (size_t)src->nb);
}

static void state_random(tn_rng *r, state8 *s, int64_t zero_block) {
    float *m = malloc(sizeof(float) * (size_t)TN_ADAM8_BLOCK), *v = malloc(sizeof(float) * (size_t)TN_ADAM8_BLOCK);
    for (int64_t i = 0; i < s->n; i++) s->p[i] = 0.5f * tn_rng_normal(r);
    spread(r, s->g, s->n, -6, -1);
    for (int64_t b = 0; b < s->nb; b++) {
        const int64_t off = b * TN_ADAM8_BLOCK, len = s->n - off < TN_ADAM8_BLOCK ? s->n - off : TN_ADAM8_BLOCK;
        spread(r, m, len, -6, -1);
        spread(r, v, len, -6, -1);
        for (int64_t i = 0; i < len; i++) v[i] *= v[i];
        tn_adam8_quantize(m, len, tn_adam8_table_m(), s->mc + off, &s->ma[b]);
        tn_adam8_quantize(v, len, tn_adam8_table_v(), s->vc + off, &s->va[b]);
        if (b == zero_block) {
            memset(s->mc + off, 0, (size_t)len);
            memset(s->vc + off, 0, (size_t)len);
            s->ma[b] = s->va[b] = 0.0f;
        }
    }
    free(m);
    free(v);
}

/* Equal p, codes and absmax, bit for bit. */
static void check_same_state(const state8 *a, const state8 *b, const char *what) {
    const int64_t dp = float_bit_diffs(a->p, b->p, a->n), dm = byte_diffs(a->mc, b->mc, a->n);
    const int64_t dv = byte_diffs(a->vc, b->vc, a->n), dma = float_bit_diffs(a->ma, b->ma, a->nb);
    const int64_t dva = float_bit_diffs(a->va, b->va, a->nb);
    CHECKF(dp == 0 && dm == 0 && dv == 0 && dma == 0 && dva == 0,
           "%s (n = %lld): differing p %lld, m codes %lld, v codes %lld, m absmax %lld, v absmax %lld", what,
           (long long)a->n, (long long)dp, (long long)dm, (long long)dv, (long long)dma, (long long)dva);
}

static tn_adamw_step step_at(float lr, float wd, int64_t t) {
    const tn_adamw_hparams hp = {lr, 0.9f, 0.999f, 1e-8f, wd};
    return tn_adamw_step_of(&hp, t, 1);
}

/* ---- the tables ----------------------------------------------------------------------------------- */

static void test_tables(void) {
    const tn_adam8_table *tm = tn_adam8_table_m(), *tv = tn_adam8_table_v();
    CHECK(tm == tn_adam8_table_m() && tv == tn_adam8_table_v());
    CHECK(TN_ADAM8_CODES == 256 && sizeof tm->value / sizeof tm->value[0] == 256);
    CHECK(sizeof tm->mid / sizeof tm->mid[0] == 255);
    CHECK(tm->value[0] == -1.0f && tm->value[255] == 1.0f && tv->value[0] == 0.0f && tv->value[255] == 1.0f);
    CHECK(tm->zero == 127 && tm->value[127] == 0.0f && !signbit(tm->value[127]));
    CHECK(tv->zero == 0 && !signbit(tv->value[0]));
    CHECK(tm->value[128] == 1e-7f && tm->value[129] == 1e-6f && tm->value[126] == -1e-6f && tv->value[1] == 1e-7f);
    for (int k = 0; k < 2; k++) {
        const tn_adam8_table *t = k ? tv : tm;
        int ascending = 1, mids_between = 1, in_range = 1;
        for (int c = 0; c < 255; c++) {
            ascending &= t->value[c] < t->value[c + 1];
            mids_between &= t->value[c] < t->mid[c] && t->mid[c] < t->value[c + 1];
            mids_between &= t->mid[c] == (t->value[c] + t->value[c + 1]) * 0.5f;
        }
        for (int c = 0; c < 256; c++) in_range &= t->value[c] >= (k ? 0.0f : -1.0f) && t->value[c] <= 1.0f;
        CHECKF(ascending, "table %s is strictly ascending", k ? "v" : "m");
        CHECKF(mids_between, "table %s: midpoints strictly between their neighbours", k ? "v" : "m");
        CHECKF(in_range, "table %s within [%d, 1]", k ? "v" : "m", k ? 0 : -1);
        for (int c = 0; c < 256; c++) CHECK(t->value[c] == tn_adam8_code_value(!k, c));
    }
    /* symmetric but for the spare code */
    int sym = 1;
    for (int c = 0; c < 127; c++) sym &= tm->value[c] == -tm->value[255 - c];
    CHECK(sym);
    /* decades: TV has 2^(7-k) values in (10^-(k+1), 10^-k], TM 2^(6-k) on each side for k < 7 (+ the spare) */
    for (int k = 0; k < 8; k++) {
        const float hi = (float)pow(10.0, -k), lo = (float)pow(10.0, -(k + 1)); /* the decade tops are these */
        int nv = 0, np = 0, nn = 0;
        for (int c = 0; c < 256; c++) {
            nv += tv->value[c] > lo && tv->value[c] <= hi;
            np += tm->value[c] > lo && tm->value[c] <= hi;
            nn += -tm->value[c] > lo && -tm->value[c] <= hi;
        }
        CHECKF(nv == 1 << (7 - k), "TV decade %d: %d values", k, nv);
        CHECKF(np == (k < 7 ? 1 << (6 - k) : 1) && nn == (k < 7 ? 1 << (6 - k) : 0), "TM decade %d: %d / %d", k, np,
               nn);
    }
    /* the top of a decade is 10^-k exactly rounded */
    CHECK(tv->value[255] == 1.0f && tv->value[127] == 0.1f && tv->value[63] == 0.01f && tv->value[1] == 1e-7f);
    /* spacing never grows toward 0 (resolution shrinks with the exponent), up to rounding of the entries */
    int mono = 1;
    for (int c = 2; c < 255; c++) {
        const double gap = (double)tv->value[c + 1] - tv->value[c], below = (double)tv->value[c] - tv->value[c - 1];
        mono &= below <= gap * (1 + 1e-5);
    }
    for (int c = 130; c < 255; c++) {
        const double gap = (double)tm->value[c + 1] - tm->value[c], below = (double)tm->value[c] - tm->value[c - 1];
        mono &= below <= gap * (1 + 1e-5);
    }
    CHECK(mono);
    /* relative resolution of the top decades as documented (step / value) */
    CHECK(fabs((tv->value[255] - tv->value[254]) / tv->value[255] - 0.9 / 128) < 1e-6);
    CHECK(fabs((tm->value[255] - tm->value[254]) / tm->value[255] - 0.9 / 64) < 1e-6);
}

/* ---- the nearest code ----------------------------------------------------------------------------- */

/* Brute force: the number of midpoints below u (the rule, by a linear scan). */
static int count_below(const tn_adam8_table *t, float u) {
    int c = 0;
    for (int i = 0; i < 255; i++) c += t->mid[i] < u;
    return c;
}

/* The chosen entry is the nearest by distance, or u sits between the exact and the float midpoint. */
static int is_nearest(const tn_adam8_table *t, float u, int c) {
    const long double du = u, dc = fabsl(du - (long double)t->value[c]);
    for (int k = 0; k < 256; k++) {
        const long double dk = fabsl(du - (long double)t->value[k]);
        if (dk < dc) {
            if (abs(k - c) != 1) return 0;
            const int lo = k < c ? k : c;
            const long double em = ((long double)t->value[lo] + t->value[lo + 1]) / 2, fm = t->mid[lo];
            if (!(du >= fminl(em, fm) && du <= fmaxl(em, fm))) return 0;
        }
    }
    return 1;
}

static void test_nearest(void) {
    tn_rng r;
    tn_rng_seed(&r, 11);
    for (int k = 0; k < 2; k++) {
        const tn_adam8_table *t = k ? tn_adam8_table_v() : tn_adam8_table_m();
        int rule = 1, near = 1, self = 1, ties = 1;
        for (int i = 0; i < 20000; i++) {
            float u = i % 2 ? tn_rng_uniform(&r) : (float)pow(10.0, -9.0 * tn_rng_uniform_d(&r));
            if (!k && tn_rng_uniform(&r) < 0.5f) u = -u;
            const int c = tn_adam8_code(t, u);
            rule &= c == count_below(t, u);
            near &= is_nearest(t, u, c);
        }
        for (int c = 0; c < 256; c++) {
            self &= tn_adam8_code(t, t->value[c]) == c;
            near &= is_nearest(t, nextafterf(t->value[c], 2.0f), tn_adam8_code(t, nextafterf(t->value[c], 2.0f)));
        }
        for (int i = 0; i < 255; i++) {
            ties &= tn_adam8_code(t, t->mid[i]) == i;
            ties &= tn_adam8_code(t, nextafterf(t->mid[i], -2.0f)) == i;
            ties &= tn_adam8_code(t, nextafterf(t->mid[i], 2.0f)) == i + 1;
            rule &= tn_adam8_code(t, t->mid[i]) == count_below(t, t->mid[i]);
        }
        CHECKF(rule, "table %s: the search equals the count of midpoints below u", k ? "v" : "m");
        CHECKF(near, "table %s: the code is the nearest entry", k ? "v" : "m");
        CHECKF(self, "table %s: every entry has its own code", k ? "v" : "m");
        CHECKF(ties, "table %s: a midpoint takes the lower code", k ? "v" : "m");
        CHECK(tn_adam8_code(t, 1.0f) == 255 && tn_adam8_code(t, 0.0f) == t->zero && tn_adam8_code(t, -0.0f) == t->zero);
        CHECK(tn_adam8_code(t, NAN) == 0);
    }
    CHECK(tn_adam8_code(tn_adam8_table_m(), -1.0f) == 0);
    CHECK(tn_adam8_code(tn_adam8_table_m(), 4e-8f) == 127 && tn_adam8_code(tn_adam8_table_m(), 6e-8f) == 128);
    CHECK(tn_adam8_code(tn_adam8_table_m(), -4e-7f) == 127 && tn_adam8_code(tn_adam8_table_m(), -6e-7f) == 126);
    CHECK(tn_adam8_code(tn_adam8_table_v(), 4e-8f) == 0 && tn_adam8_code(tn_adam8_table_v(), 6e-8f) == 1);
}

/* ---- quantize / dequantize ------------------------------------------------------------------------ */

static void test_roundtrip(void) {
    tn_rng r;
    tn_rng_seed(&r, 12);
    const int64_t lens[] = {1, 7, 2047, 2048};
    float *x = malloc(sizeof(float) * TN_ADAM8_BLOCK), *y = malloc(sizeof(float) * TN_ADAM8_BLOCK);
    float *z = malloc(sizeof(float) * TN_ADAM8_BLOCK);
    uint8_t *c = malloc(TN_ADAM8_BLOCK), *c2 = malloc(TN_ADAM8_BLOCK);
    int64_t n_floored = 0;
    for (int k = 0; k < 2; k++) {
        const tn_adam8_table *t = k ? tn_adam8_table_v() : tn_adam8_table_m();
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t len = lens[li];
            for (int scale = -30; scale <= 30; scale += 15) {
                spread(&r, x, len, scale - 8, scale);
                if (k)
                    for (int64_t i = 0; i < len; i++) x[i] = fabsf(x[i]);
                float a, a2;
                tn_adam8_quantize(x, len, t, c, &a);
                tn_adam8_dequantize(c, a, len, t, y);
                float amax = 0;
                for (int64_t i = 0; i < len; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
                int err_ok = 1, has_end = 0, rule = 1;
                for (int64_t i = 0; i < len; i++) {
                    /* within half the gap to the neighbour on x's side (plus rounding of u and of y) */
                    const int ci = c[i];
                    const float u = x[i] / a;
                    const int near = count_below(t, u), floored = k && near == 0 && x[i] > 0;
                    n_floored += floored;
                    rule &= ci == (floored ? 1 : near);
                    const int nb = (double)u >= t->value[ci] ? (ci < 255 ? ci + 1 : ci) : (ci > 0 ? ci - 1 : ci);
                    /* half the gap on x's side; a floored v: at most the smallest entry */
                    const double half = floored ? t->value[1] * (double)a
                                                : 0.5 * fabs((double)t->value[nb] - t->value[ci]) * a;
                    err_ok &= fabs((double)y[i] - x[i]) <= half * (1 + 1e-5) + 1e-6 * fabs((double)x[i]) + 1e-44;
                    has_end |= ci == 255 || ci == 0;
                }
                CHECKF(a == amax && rule && err_ok && has_end,
                       "round trip: table %d len %lld scale 1e%d: absmax %d, rule %d, error %d, an end code %d", k,
                       (long long)len, scale, a == amax, rule, err_ok, has_end);
                /* codes → values → codes */
                tn_adam8_quantize(y, len, t, c2, &a2);
                CHECKF(a2 == a && memcmp(c, c2, (size_t)len) == 0, "requantized: table %d len %lld", k, (long long)len);
            }
        }
        /* a zero block; a zero absmax dequantizes to +0 whatever the codes */
        memset(x, 0, sizeof(float) * TN_ADAM8_BLOCK);
        x[5] = -0.0f;
        float a = 1;
        tn_adam8_quantize(x, TN_ADAM8_BLOCK, t, c, &a);
        int all_zero = a == 0.0f;
        for (int i = 0; i < TN_ADAM8_BLOCK; i++) all_zero &= c[i] == t->zero;
        CHECKF(all_zero, "table %d: a zero block quantizes to the code of 0", k);
        for (int i = 0; i < TN_ADAM8_BLOCK; i++) c[i] = (uint8_t)i;
        tn_adam8_dequantize(c, 0.0f, TN_ADAM8_BLOCK, t, z);
        int pos_zero = 1;
        for (int i = 0; i < TN_ADAM8_BLOCK; i++) pos_zero &= z[i] == 0.0f && !signbit(z[i]);
        CHECKF(pos_zero, "table %d: absmax 0 dequantizes to +0", k);
    }
    CHECKF(n_floored > 100, "the round trips raised %lld small v to code 1", (long long)n_floored);
    /* v's floor: a positive value takes at least code 1 (even when x / a underflows), 0 keeps code 0; m has none */
    const float xv[4] = {1e10f, 1e-9f, 0.0f, 1e-45f}, xm[4] = {1.0f, 1e-9f, 0.0f, -1e-9f};
    float av, am;
    uint8_t cv[4], cm[4];
    tn_adam8_quantize(xv, 4, tn_adam8_table_v(), cv, &av);
    tn_adam8_quantize(xm, 4, tn_adam8_table_m(), cm, &am);
    CHECK(av == 1e10f && cv[0] == 255 && cv[1] == 1 && cv[2] == 0 && cv[3] == 1);
    CHECK(am == 1.0f && cm[0] == 255 && cm[1] == 127 && cm[2] == 127 && cm[3] == 127);
    CHECK(tn_adam8_table_v()->is_v == 1 && tn_adam8_table_m()->is_v == 0);
    /* a subnormal absmax still quantizes (u = x / a is normal) */
    x[0] = 1e-40f;
    x[1] = -5e-41f;
    float a;
    tn_adam8_quantize(x, 2, tn_adam8_table_m(), c, &a);
    CHECK(a == 1e-40f && c[0] == 255 && c[1] == tn_adam8_code(tn_adam8_table_m(), x[1] / a));
    CHECK(tn_adam8_blocks(0) == 0 && tn_adam8_blocks(1) == 1 && tn_adam8_blocks(2048) == 1);
    CHECK(tn_adam8_blocks(2049) == 2);
    CHECK(tn_adam8_blocks(-3) == 0);
    free(x);
    free(y);
    free(z);
    free(c);
    free(c2);
}

/* ---- the numpy fixture ---------------------------------------------------------------------------- */

static void run_case(hid_t f, const char *name) {
    char path[128];
    int rank;
    int64_t shape[TN_H5_MAX_RANK];
    snprintf(path, sizeof path, "%s/g", name);
    if (tn_h5_shape(f, path, &rank, shape) != 0 || rank != 2) {
        CHECKF(0, "fixture %s: %s", path, tn_errmsg());
        return;
    }
    const int64_t S = shape[0], n = shape[1], nb = tn_adam8_blocks(n);
    state8 s = state_new(n), e = state_new(n);
    float *g = malloc(sizeof(float) * (size_t)(S * n)), *hp = malloc(sizeof(float) * (size_t)(S * 7));
    float *p_out = malloc(sizeof(float) * (size_t)(S * n)), *ma_out = malloc(sizeof(float) * (size_t)(S * nb));
    float *va_out = malloc(sizeof(float) * (size_t)(S * nb));
    uint8_t *mc_out = malloc((size_t)(S * n)), *vc_out = malloc((size_t)(S * n));
    const int64_t s1[1] = {n}, sb[1] = {nb}, sg[2] = {S, n}, sh[2] = {S, 7}, sbo[2] = {S, nb};
    int ok = 1;
#define RD(key, type, rk, shp, buf)                                                                    \
    do {                                                                                               \
        snprintf(path, sizeof path, "%s/%s", name, key);                                               \
        if (tn_h5_read(f, path, type, rk, shp, buf) != 0) {                                            \
            CHECKF(0, "fixture %s: %s", path, tn_errmsg());                                            \
            ok = 0;                                                                                    \
        }                                                                                              \
    } while (0)
    RD("p", TN_H5_F32, 1, s1, s.p);
    RD("m_codes", TN_H5_U8, 1, s1, s.mc);
    RD("v_codes", TN_H5_U8, 1, s1, s.vc);
    RD("m_absmax", TN_H5_F32, 1, sb, s.ma);
    RD("v_absmax", TN_H5_F32, 1, sb, s.va);
    RD("g", TN_H5_F32, 2, sg, g);
    RD("step", TN_H5_F32, 2, sh, hp);
    RD("p_out", TN_H5_F32, 2, sg, p_out);
    RD("m_codes_out", TN_H5_U8, 2, sg, mc_out);
    RD("v_codes_out", TN_H5_U8, 2, sg, vc_out);
    RD("m_absmax_out", TN_H5_F32, 2, sbo, ma_out);
    RD("v_absmax_out", TN_H5_F32, 2, sbo, va_out);
#undef RD
    for (int64_t k = 0; ok && k < S; k++) {
        const float *h = hp + 7 * k;
        const tn_adamw_step st = {h[0], h[1], h[2], h[3], h[4], h[5], h[6]};
        tn_adamw8_apply(s.p, g + k * n, s.mc, s.ma, s.vc, s.va, n, &st);
        memcpy(e.p, p_out + k * n, sizeof(float) * (size_t)n);
        memcpy(e.mc, mc_out + k * n, (size_t)n);
        memcpy(e.vc, vc_out + k * n, (size_t)n);
        memcpy(e.ma, ma_out + k * nb, sizeof(float) * (size_t)nb);
        memcpy(e.va, va_out + k * nb, sizeof(float) * (size_t)nb);
        char what[64];
        snprintf(what, sizeof what, "fixture /%s step %lld", name, (long long)(k + 1));
        check_same_state(&s, &e, what);
        int64_t changed = 0;
        for (int64_t i = 0; i < n; i++) changed += p_out[k * n + i] != (k ? p_out[(k - 1) * n + i] : 0);
        CHECK(changed > n / 2); /* the fixture moves p */
    }
    printf("fixture /%s: %lld parameters, %lld step(s) compared bit for bit\n", name, (long long)n, (long long)S);
    state_free(&s);
    state_free(&e);
    free(g);
    free(hp);
    free(p_out);
    free(ma_out);
    free(va_out);
    free(mc_out);
    free(vc_out);
}

static void test_fixture(void) {
    const char *path = tn_test_fixture("adam8.h5");
    if (!path || access(path, R_OK) != 0) {
        printf("SKIPPED part: fixture adam8.h5 missing (run tests/reference/gen_adam8.py)\n");
        return;
    }
    hid_t f;
    if (tn_h5_open(path, &f) != 0) {
        CHECKF(0, "%s", tn_errmsg());
        return;
    }
    int64_t block = 0;
    CHECK_OK(tn_h5_attr_get_i64(f, ".", "block", &block));
    CHECK(block == TN_ADAM8_BLOCK);
    float tab[256], mid[255];
    const int64_t s256[1] = {256}, s255[1] = {255};
    const tn_adam8_table *tm = tn_adam8_table_m(), *tv = tn_adam8_table_v();
    CHECK_OK(tn_h5_read(f, "table_m", TN_H5_F32, 1, s256, tab));
    CHECK(float_bit_diffs(tab, tm->value, 256) == 0);
    CHECK_OK(tn_h5_read(f, "mid_m", TN_H5_F32, 1, s255, mid));
    CHECK(float_bit_diffs(mid, tm->mid, 255) == 0);
    CHECK_OK(tn_h5_read(f, "table_v", TN_H5_F32, 1, s256, tab));
    CHECK(float_bit_diffs(tab, tv->value, 256) == 0);
    CHECK_OK(tn_h5_read(f, "mid_v", TN_H5_F32, 1, s255, mid));
    CHECK(float_bit_diffs(mid, tv->mid, 255) == 0);
    run_case(f, "one");
    run_case(f, "fresh");
    tn_h5_close(f);
}

/* ---- the update against its definition; the zero state ------------------------------------------ */

/* tn_adamw_apply on the dequantized state, then quantization, block by block (the definition). */
static void reference_step(state8 *s, const tn_adamw_step *h) {
    float *m = malloc(sizeof(float) * (size_t)s->n), *v = malloc(sizeof(float) * (size_t)s->n);
    for (int64_t b = 0; b < s->nb; b++) {
        const int64_t off = b * TN_ADAM8_BLOCK, len = s->n - off < TN_ADAM8_BLOCK ? s->n - off : TN_ADAM8_BLOCK;
        tn_adam8_dequantize(s->mc + off, s->ma[b], len, tn_adam8_table_m(), m + off);
        tn_adam8_dequantize(s->vc + off, s->va[b], len, tn_adam8_table_v(), v + off);
    }
    tn_adamw_apply(s->p, s->g, m, v, s->n, h); /* the whole array at once: elementwise */
    for (int64_t b = 0; b < s->nb; b++) {
        const int64_t off = b * TN_ADAM8_BLOCK, len = s->n - off < TN_ADAM8_BLOCK ? s->n - off : TN_ADAM8_BLOCK;
        tn_adam8_quantize(m + off, len, tn_adam8_table_m(), s->mc + off, &s->ma[b]);
        tn_adam8_quantize(v + off, len, tn_adam8_table_v(), s->vc + off, &s->va[b]);
    }
    free(m);
    free(v);
}

static void test_definition_and_zero_state(void) {
    tn_rng r;
    tn_rng_seed(&r, 13);
    const int64_t n = 3 * TN_ADAM8_BLOCK + 101;
    state8 a = state_new(n), b = state_new(n), c = state_new(n);
    state_random(&r, &a, 1);
    state_copy(&b, &a);
    for (int t = 1; t <= 3; t++) {
        const tn_adamw_step h = step_at(1e-3f, 0.1f, 5 + t);
        tn_adamw8_apply(a.p, a.g, a.mc, a.ma, a.vc, a.va, n, &h);
        reference_step(&b, &h);
        check_same_state(&a, &b, "tn_adamw8_apply vs tn_adamw_apply on the dequantized state");
        spread(&r, a.g, n, -6, -1);
        memcpy(b.g, a.g, sizeof(float) * (size_t)n);
    }

    /* the zero state: all bytes 0, and codes of 0 with absmax 0, both equal fp32 AdamW's first step */
    float *p32 = malloc(sizeof(float) * (size_t)n), *m32 = calloc((size_t)n, sizeof(float));
    float *v32 = calloc((size_t)n, sizeof(float));
    for (int64_t i = 0; i < n; i++) a.p[i] = 0.3f * tn_rng_normal(&r);
    spread(&r, a.g, n, -7, 0);
    a.g[0] = 0.0f;
    a.g[1] = -0.0f;
    a.p[1] = -0.0f;
    a.p[2] = 0.0f;
    memset(a.mc, 0, (size_t)n);
    memset(a.vc, 0, (size_t)n);
    memset(a.ma, 0, sizeof(float) * (size_t)a.nb);
    memset(a.va, 0, sizeof(float) * (size_t)a.nb);
    state_copy(&b, &a);
    memset(b.mc, TN_ADAM8_M_ZERO, (size_t)n);
    memset(b.vc, TN_ADAM8_V_ZERO, (size_t)n);
    memcpy(p32, a.p, sizeof(float) * (size_t)n);
    const tn_adamw_step h = step_at(1e-2f, 0.1f, 1);
    tn_adamw8_apply(a.p, a.g, a.mc, a.ma, a.vc, a.va, n, &h);
    tn_adamw8_apply(b.p, b.g, b.mc, b.ma, b.vc, b.va, n, &h);
    tn_adamw_apply(p32, a.g, m32, v32, n, &h);
    check_same_state(&a, &b, "zero bytes vs codes of 0");
    CHECKF(float_bit_diffs(a.p, p32, n) == 0, "first step from the zero state: %lld of p differ from fp32 AdamW",
           (long long)float_bit_diffs(a.p, p32, n));
    /* and the state is fp32 AdamW's moments, quantized */
    state_copy(&c, &a);
    for (int64_t k = 0; k < a.nb; k++) {
        const int64_t off = k * TN_ADAM8_BLOCK, len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        tn_adam8_quantize(m32 + off, len, tn_adam8_table_m(), c.mc + off, &c.ma[k]);
        tn_adam8_quantize(v32 + off, len, tn_adam8_table_v(), c.vc + off, &c.va[k]);
    }
    check_same_state(&a, &c, "the state after a first step is fp32 AdamW's moments quantized");
    free(p32);
    free(m32);
    free(v32);
    state_free(&a);
    state_free(&b);
    state_free(&c);
}

/* ---- threads -------------------------------------------------------------------------------------- */

static void test_threads(void) {
    tn_rng r;
    tn_rng_seed(&r, 14);
    const int64_t n = 5 * TN_ADAM8_BLOCK + 333;
    const int saved = omp_get_max_threads();
    state8 base = state_new(n), s[3];
    state_random(&r, &base, 2);
    for (int k = 0; k < 3; k++) {
        s[k] = state_new(n);
        state_copy(&s[k], &base);
        omp_set_num_threads(k + 1);
        for (int t = 1; t <= 2; t++) {
            const tn_adamw_step h = step_at(1e-3f, 0.01f, t);
            tn_adamw8_apply(s[k].p, s[k].g, s[k].mc, s[k].ma, s[k].vc, s[k].va, n, &h);
        }
    }
    omp_set_num_threads(saved);
    check_same_state(&s[0], &s[1], "1 vs 2 threads");
    check_same_state(&s[0], &s[2], "1 vs 3 threads");
    for (int k = 0; k < 3; k++) state_free(&s[k]);
    state_free(&base);
}

/* ---- convergence ---------------------------------------------------------------------------------- */

/* Sparse least squares: L(x) = 1/(2R) Σ_r (a_r · x − b_r)², R rows of NNZ N(0, 1) entries in random columns,
 * b = A x* + 0.3 noise (the minimum is about 0.5 · 0.09 · (1 − N/R) ≈ 0.022). */
enum { LS_N = 3000, LS_R = 6000, LS_NNZ = 8, LS_STEPS = 300 };
typedef struct {
    int32_t col[LS_R * LS_NNZ];
    float val[LS_R * LS_NNZ], b[LS_R];
} lsq;

static double lsq_loss_grad(const lsq *q, const float *x, float *g) {
    double loss = 0;
    if (g) memset(g, 0, sizeof(float) * LS_N);
    for (int r = 0; r < LS_R; r++) {
        double res = -q->b[r];
        for (int k = 0; k < LS_NNZ; k++) res += (double)q->val[r * LS_NNZ + k] * x[q->col[r * LS_NNZ + k]];
        loss += res * res;
        if (g)
            for (int k = 0; k < LS_NNZ; k++) g[q->col[r * LS_NNZ + k]] += (float)(res * q->val[r * LS_NNZ + k] / LS_R);
    }
    return loss / (2.0 * LS_R);
}

/* fp32 and 8-bit AdamW side by side on the same problem: lr 0.02, trinity's defaults β = (0.9, 0.95), eps 1e-8. */
static void test_convergence(void) {
    tn_rng r;
    tn_rng_seed(&r, 15);
    lsq *q = malloc(sizeof *q);
    float *xs = malloc(sizeof(float) * LS_N);
    for (int i = 0; i < LS_N; i++) xs[i] = tn_rng_normal(&r);
    for (int rr = 0; rr < LS_R; rr++) {
        double dot = 0;
        for (int k = 0; k < LS_NNZ; k++) {
            const int c = (int)tn_rng_below(&r, LS_N);
            const float v = tn_rng_normal(&r);
            q->col[rr * LS_NNZ + k] = c;
            q->val[rr * LS_NNZ + k] = v;
            dot += (double)v * xs[c];
        }
        q->b[rr] = (float)dot + 0.3f * tn_rng_normal(&r);
    }
    float *x32 = calloc(LS_N, sizeof(float)), *x8 = calloc(LS_N, sizeof(float)), *g = malloc(sizeof(float) * LS_N);
    float *m32 = calloc(LS_N, sizeof(float)), *v32 = calloc(LS_N, sizeof(float));
    const int64_t nb = tn_adam8_blocks(LS_N);
    uint8_t *mc = calloc(LS_N, 1), *vc = calloc(LS_N, 1);
    float *ma = calloc((size_t)nb, sizeof(float)), *va = calloc((size_t)nb, sizeof(float));
    const double l0 = lsq_loss_grad(q, x32, NULL);
    double l32_mid = 0, l8_mid = 0;
    for (int t = 1; t <= LS_STEPS; t++) {
        const tn_adamw_hparams hp = {0.02f, 0.9f, 0.95f, 1e-8f, 0.0f};
        const tn_adamw_step h = tn_adamw_step_of(&hp, t, 0);
        const double l32 = lsq_loss_grad(q, x32, g);
        tn_adamw_apply(x32, g, m32, v32, LS_N, &h);
        const double l8 = lsq_loss_grad(q, x8, g);
        tn_adamw8_apply(x8, g, mc, ma, vc, va, LS_N, &h);
        if (t == 50) l32_mid = l32, l8_mid = l8;
    }
    const double l32 = lsq_loss_grad(q, x32, NULL), l8 = lsq_loss_grad(q, x8, NULL);
    printf("least squares, %d steps: initial loss %.5g; after 50 steps fp32 %.5g, 8-bit %.5g (%+.2f%%); after %d "
           "fp32 %.5g, 8-bit %.5g (%+.2f%%)\n", LS_STEPS, l0, l32_mid, l8_mid, 100.0 * (l8_mid - l32_mid) / l32_mid,
           LS_STEPS, l32, l8, 100.0 * (l8 - l32) / l32);
    CHECKF(l32 < 0.01 * l0, "fp32 AdamW converges: %g of %g", l32, l0);
    CHECKF(fabs(l8 - l32) <= 0.03 * l32, "8-bit AdamW ends within 3%% of fp32: %g vs %g", l8, l32);
    free(q);
    free(xs);
    free(x32);
    free(x8);
    free(g);
    free(m32);
    free(v32);
    free(mc);
    free(vc);
    free(ma);
    free(va);
}

/* Embedding-like sparse gradients, the case of v's floor (optim/adamw8.h): L = ½ Σ (x − x*)² over 64 rows of
 * 64 (two quantization blocks), row scales of x* over two decades (0.01 .. 1), and each step only ~10% of the
 * rows (drawn at random) get their gradient; the others get 0. Without the floor the rows at rest see v round
 * to 0 under a live m and jump by lr · m · c1 / eps. Checked: no step moves a weight by more than 3 lr (Adam's
 * steps are about lr), and the squared error falls as far as fp32 AdamW's, within 3% of fp32's reduction. */
static void test_sparse_rows(void) {
    enum { ROWS = 64, DIM = 64, N = ROWS * DIM, STEPS = 300 };
    tn_rng r;
    tn_rng_seed(&r, 16);
    float *target = malloc(sizeof(float) * N), *g = malloc(sizeof(float) * N), *before = malloc(sizeof(float) * N);
    float *x32 = calloc(N, sizeof(float)), *x8 = calloc(N, sizeof(float));
    float *m32 = calloc(N, sizeof(float)), *v32 = calloc(N, sizeof(float));
    uint8_t *mc = calloc(N, 1), *vc = calloc(N, 1);
    float *ma = calloc(2, sizeof(float)), *va = calloc(2, sizeof(float));
    for (int row = 0; row < ROWS; row++) {
        const float s = (float)pow(10.0, 2.0 * tn_rng_uniform_d(&r) - 2.0);
        for (int d = 0; d < DIM; d++) target[row * DIM + d] = s * tn_rng_normal(&r);
    }
    const float lr = 0.01f;
    double worst8 = 0, worst32 = 0;
    for (int t = 1; t <= STEPS; t++) {
        const tn_adamw_hparams hp = {lr, 0.9f, 0.95f, 1e-8f, 0.0f};
        const tn_adamw_step h = tn_adamw_step_of(&hp, t, 0);
        int active[ROWS];
        for (int row = 0; row < ROWS; row++) active[row] = tn_rng_uniform(&r) < 0.1f;
        for (int k = 0; k < 2; k++) {
            float *x = k ? x8 : x32;
            for (int i = 0; i < N; i++) g[i] = active[i / DIM] ? x[i] - target[i] : 0.0f;
            double worst = 0;
            memcpy(before, x, sizeof(float) * N);
            if (k) tn_adamw8_apply(x, g, mc, ma, vc, va, N, &h);
            else tn_adamw_apply(x, g, m32, v32, N, &h);
            for (int i = 0; i < N; i++) worst = fmax(worst, fabs((double)x[i] - before[i]));
            if (k) worst8 = fmax(worst8, worst);
            else worst32 = fmax(worst32, worst);
        }
    }
    double e0 = 0, e32 = 0, e8 = 0;
    for (int i = 0; i < N; i++) {
        e0 += (double)target[i] * target[i];
        e32 += ((double)x32[i] - target[i]) * ((double)x32[i] - target[i]);
        e8 += ((double)x8[i] - target[i]) * ((double)x8[i] - target[i]);
    }
    printf("sparse rows, %d steps: largest step fp32 %.4g, 8-bit %.4g (lr %g); squared error from %.5g to fp32 %.5g, "
           "8-bit %.5g (%+.2f%% of the reduction)\n", STEPS, worst32, worst8, lr, e0, e32, e8,
           100.0 * ((e0 - e8) - (e0 - e32)) / (e0 - e32));
    CHECKF(isfinite(e8) && worst8 <= 3.0 * lr, "8-bit AdamW: largest step %g (lr %g)", worst8, lr);
    CHECKF(e32 < 0.5 * e0 && fabs(e8 - e32) <= 0.03 * (e0 - e32), "8-bit AdamW's error reduction within 3%% of fp32's: "
           "%g vs %g from %g", e8, e32, e0);
    free(target);
    free(g);
    free(before);
    free(x32);
    free(x8);
    free(m32);
    free(v32);
    free(mc);
    free(vc);
    free(ma);
    free(va);
}

int main(void) {
    test_tables();
    test_nearest();
    test_roundtrip();
    test_fixture();
    test_definition_and_zero_state();
    test_threads();
    test_convergence();
    test_sparse_rows();
    return tn_test_finish();
}
