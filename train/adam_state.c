#include "train/adam_state.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "optim/adamw8.h"

#include <stdlib.h>
#include <string.h>

int tn_adam_state_bits_from_config(tn_config *ini, int *bits) {
    int64_t b;
    TN_CHECK(tn_config_int(ini, "optim", "state_bits", 32, &b));
    if (b != 32 && b != 8) return tn_err("[optim] state_bits = %lld: must be 32 (fp32 moments) or 8 (8-bit)", (long long)b);
    *bits = (int)b;
    return 0;
}

/* Extent of the arrays (max of off + len) and their blocks. */
static void extent(const int64_t *len, const int64_t *off, int n, int64_t *total, int64_t *blocks) {
    *total = *blocks = 0;
    int64_t packed = 0;
    for (int k = 0; k < n; k++) {
        const int64_t o = off ? off[k] : packed;
        packed += len[k];
        if (o + len[k] > *total) *total = o + len[k];
        *blocks += tn_adam8_blocks(len[k]);
    }
}

int64_t tn_adam_state_plan_bytes(int bits, const int64_t *len, const int64_t *off, int n) {
    int64_t total, blocks;
    extent(len, off, n, &total, &blocks);
    if (bits == 32) return 2 * tn_ops_span(total * (int64_t)sizeof(float));
    return 2 * tn_ops_span(total) + 2 * tn_ops_span(blocks * (int64_t)sizeof(float));
}

int tn_adam_state_init(tn_adam_state *s, int bits, const int64_t *len, const int64_t *off, int n, const tn_ops *ops) {
    memset(s, 0, sizeof *s);
    if (bits != 32 && bits != 8) return tn_err("AdamW state: %d bits (32 or 8)", bits);
    s->bits = bits;
    s->ops = ops;
    s->n = n;
    s->len = calloc((size_t)(n ? n : 1), sizeof *s->len);
    s->off = calloc((size_t)(n ? n : 1), sizeof *s->off);
    s->boff = calloc((size_t)(n ? n : 1), sizeof *s->boff);
    if (!s->len || !s->off || !s->boff) return tn_err("out of memory");
    int64_t packed = 0, b = 0;
    for (int k = 0; k < n; k++) {
        s->len[k] = len[k];
        s->off[k] = off ? off[k] : packed;
        s->boff[k] = b;
        packed += len[k];
        b += tn_adam8_blocks(len[k]);
    }
    extent(len, off, n, &s->total, &s->blocks);
    const size_t nt = (size_t)s->total, nb = (size_t)s->blocks;
    if (bits == 32) {
        s->m = ops->alloc(nt * sizeof(float));
        s->v = ops->alloc(nt * sizeof(float));
        if (!s->m || !s->v) return -1;
        TN_CHECK(ops->zero(s->m, nt * sizeof(float)));
        return ops->zero(s->v, nt * sizeof(float));
    }
    /* All zero bytes is the fresh state: with absmax 0 every code dequantizes to +0 (optim/adamw8.h). */
    s->m8 = ops->alloc(nt);
    s->v8 = ops->alloc(nt);
    s->m_absmax = ops->alloc(nb * sizeof(float));
    s->v_absmax = ops->alloc(nb * sizeof(float));
    if (!s->m8 || !s->v8 || !s->m_absmax || !s->v_absmax) return -1;
    TN_CHECK(ops->zero(s->m8, nt));
    TN_CHECK(ops->zero(s->v8, nt));
    TN_CHECK(ops->zero(s->m_absmax, nb * sizeof(float)));
    return ops->zero(s->v_absmax, nb * sizeof(float));
}

void tn_adam_state_free(tn_adam_state *s) {
    if (s->ops) {
        s->ops->free(s->m);
        s->ops->free(s->v);
        s->ops->free(s->m8);
        s->ops->free(s->v8);
        s->ops->free(s->m_absmax);
        s->ops->free(s->v_absmax);
    }
    free(s->len);
    free(s->off);
    free(s->boff);
    memset(s, 0, sizeof *s);
}

tn_adam_moments tn_adam_state_moments(const tn_adam_state *s, int k) {
    tn_adam_moments m = {s->bits, NULL, NULL, NULL, NULL, NULL, NULL};
    if (s->bits == 32) {
        m.m = s->m + s->off[k];
        m.v = s->v + s->off[k];
    } else {
        m.m8 = s->m8 + s->off[k];
        m.v8 = s->v8 + s->off[k];
        m.m_absmax = s->m_absmax + s->boff[k];
        m.v_absmax = s->v_absmax + s->boff[k];
    }
    return m;
}

int tn_adam_state_step(tn_adam_state *s, int k, float *p, const float *g, const tn_adamw_step *h) {
    const tn_adam_moments m = tn_adam_state_moments(s, k);
    if (s->bits == 32) return s->ops->adamw(p, g, m.m, m.v, s->len[k], h);
    return s->ops->adamw8(p, g, m.m8, m.m_absmax, m.v8, m.v_absmax, s->len[k], h);
}

/* ---- checkpoints (8-bit state) --------------------------------------------------------------------------- */

/* The largest array and block count, for one host staging buffer. */
static void largest(const tn_adam_state *s, int64_t *len, int64_t *blocks) {
    *len = *blocks = 1;
    for (int k = 0; k < s->n; k++) {
        if (s->len[k] > *len) *len = s->len[k];
        if (tn_adam8_blocks(s->len[k]) > *blocks) *blocks = tn_adam8_blocks(s->len[k]);
    }
}

int tn_adam_state_save8(const tn_adam_state *s, hid_t g, const char *const *names) {
    if (s->bits != 8) return tn_err("AdamW state: not 8-bit");
    int64_t L, NB;
    largest(s, &L, &NB);
    uint8_t *codes = tn_alloc((size_t)L, 1);
    float *absmax = tn_alloc((size_t)NB, sizeof(float));
    int rc = codes && absmax ? tn_h5_attr_set_i64(g, ".", "block", TN_ADAM8_BLOCK) : -1;
    char path[200];
    for (int k = 0; k < s->n && rc == 0; k++) {
        int64_t n = s->len[k], nb = tn_adam8_blocks(n);
        if (n == 0) continue;
        const tn_adam_moments m = tn_adam_state_moments(s, k);
        const uint8_t *c[2] = {m.m8, m.v8};
        const float *a[2] = {m.m_absmax, m.v_absmax};
        const char *cn[2] = {"m", "v"}, *an[2] = {"m_absmax", "v_absmax"};
        for (int j = 0; j < 2 && rc == 0; j++) {
            rc = s->ops->download(codes, c[j], (size_t)n);
            snprintf(path, sizeof path, "%s/%s", names[k], cn[j]);
            if (rc == 0) rc = tn_h5_write(g, path, TN_H5_U8, 1, &n, codes, 0);
            if (rc == 0) rc = s->ops->download(absmax, a[j], (size_t)nb * sizeof(float));
            snprintf(path, sizeof path, "%s/%s", names[k], an[j]);
            if (rc == 0) rc = tn_h5_write(g, path, TN_H5_F32, 1, &nb, absmax, 0);
        }
    }
    tn_free(codes);
    tn_free(absmax);
    return rc;
}

int tn_adam_state_load8(tn_adam_state *s, hid_t g, const char *const *names) {
    if (s->bits != 8) return tn_err("AdamW state: not 8-bit");
    int64_t block;
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "block", &block));
    if (block != TN_ADAM8_BLOCK)
        return tn_err("8-bit AdamW state in blocks of %lld, this build uses %d", (long long)block, TN_ADAM8_BLOCK);
    int64_t L, NB;
    largest(s, &L, &NB);
    uint8_t *codes = tn_alloc((size_t)L, 1);
    float *absmax = tn_alloc((size_t)NB, sizeof(float));
    int rc = codes && absmax ? 0 : -1;
    char path[200];
    for (int k = 0; k < s->n && rc == 0; k++) {
        int64_t n = s->len[k], nb = tn_adam8_blocks(n);
        if (n == 0) continue;
        const tn_adam_moments m = tn_adam_state_moments(s, k);
        uint8_t *c[2] = {m.m8, m.v8};
        float *a[2] = {m.m_absmax, m.v_absmax};
        const char *cn[2] = {"m", "v"}, *an[2] = {"m_absmax", "v_absmax"};
        for (int j = 0; j < 2 && rc == 0; j++) {
            snprintf(path, sizeof path, "%s/%s", names[k], cn[j]);
            rc = tn_h5_read(g, path, TN_H5_U8, 1, &n, codes);
            if (rc == 0) rc = s->ops->upload(c[j], codes, (size_t)n);
            snprintf(path, sizeof path, "%s/%s", names[k], an[j]);
            if (rc == 0) rc = tn_h5_read(g, path, TN_H5_F32, 1, &nb, absmax);
            for (int64_t b = 0; rc == 0 && b < nb; b++) /* a moment's scale: finite and >= 0 */
                if (!(absmax[b] >= 0 && absmax[b] <= 3.4e38f)) rc = tn_err("%s: block %lld is %g", path, (long long)b, absmax[b]);
            if (rc == 0) rc = s->ops->upload(a[j], absmax, (size_t)nb * sizeof(float));
        }
    }
    tn_free(codes);
    tn_free(absmax);
    return rc;
}
