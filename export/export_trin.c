/* Checkpoint -> TRIN (export/export_trin.h). One pass over the layout: each tensor is decided
 * (ghost indices, snapped shadow weights, synthetic ternary, or dense), converted, and handed to the
 * TRIN writer, which checks it and owns the buffer. */
#include "export/export_trin.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/log.h"
#include "export/trin.h"
#include "kernels/packed.h"
#include "model/params.h"
#include "quant/grid.h"
#include "quant/snap.h"
#include "train/checkpoint.h"
#include "train/quant_spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void tn_export_opts_default(tn_export_opts *o) {
    o->dense = TN_EXPORT_DENSE_AUTO;
    o->quantize = NULL;
}

uint16_t tn_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0); /* inf, NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00;                                   /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                                         /* below 2^-14: subnormal */
        float a;
        memcpy(&a, &ax, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* units of 2^-24, exact scaling, rint = RNE */
    }
    uint32_t h = ((ax >> 23) - 112) << 10 | (ax & 0x7fffffu) >> 13; /* rebias 127 -> 15 */
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* a carry into the exponent is still right */
    return sign | (uint16_t)h;
}

/* Indices on a grid -> packed bytes: T2 for {-1, 0, 1}, L4 for <= 16 values, L8 otherwise.
 * d gets dtype and grid; *out is malloc'd. */
static int pack_indices(const uint8_t *idx, int64_t rows, int64_t cols, const float *grid, int n_grid,
                        tn_trin_tensor *d, uint8_t **out) {
    int ternary = n_grid == 3 && grid[0] == -1.0f && grid[1] == 0.0f && grid[2] == 1.0f;
    d->dtype = ternary ? TN_TRIN_T2 : n_grid <= 16 ? TN_TRIN_L4 : TN_TRIN_L8;
    d->grid_len = ternary ? 0 : n_grid;
    if (!ternary) memcpy(d->grid, grid, (size_t)n_grid * sizeof *grid);
    uint64_t size;
    TN_CHECK(tn_trin_data_size(d->dtype, 2, d->shape, &size));
    uint8_t *buf = malloc(size);
    if (!buf) return tn_err("out of memory (%llu bytes)", (unsigned long long)size);
    int rc;
    if (ternary) {
        int8_t *w = malloc((size_t)(rows * cols));
        if (!w) {
            free(buf);
            return tn_err("out of memory");
        }
        for (int64_t i = 0; i < rows * cols; i++) w[i] = (int8_t)(idx[i] > 2 ? 3 : (int)idx[i] - 1);
        rc = tn_t2_pack(w, rows, cols, buf);
        free(w);
    } else if (d->dtype == TN_TRIN_L4) {
        rc = tn_l4_pack(idx, rows, cols, n_grid, buf);
    } else {
        rc = tn_l8_pack(idx, rows, cols, n_grid, buf);
    }
    if (rc != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* A PRIMAL ghost tensor's stored state: idx [rows, cols], scale [1 or rows], grid [n]. */
static int read_ghost(hid_t f, const tn_tensor_info *t, uint8_t **idx, float **scale, int64_t *n_scales,
                      float *grid, int *n_grid) {
    char path[200];
    int rank;
    int64_t shape[TN_H5_MAX_RANK], ishape[2] = {t->shape[0], t->shape[1]};
    float *g = NULL;
    *idx = NULL;
    *scale = NULL;
    snprintf(path, sizeof path, "primal/%s/grid", t->name);
    TN_CHECK(tn_h5_read_alloc(f, path, TN_H5_F32, &rank, shape, (void **)&g));
    if (rank != 1 || shape[0] < 1 || shape[0] > TN_TRIN_MAX_GRID) {
        tn_free(g);
        return tn_err("%s: grid of bad shape", path);
    }
    *n_grid = (int)shape[0];
    memcpy(grid, g, (size_t)*n_grid * sizeof *grid);
    tn_free(g);
    snprintf(path, sizeof path, "primal/%s/scale", t->name);
    TN_CHECK(tn_h5_read_alloc(f, path, TN_H5_F32, &rank, shape, (void **)scale));
    if (rank != 1 || (shape[0] != 1 && shape[0] != t->shape[0])) return tn_err("%s: bad shape", path);
    *n_scales = shape[0];
    *idx = tn_alloc((size_t)(t->shape[0] * t->shape[1]), 1);
    if (!*idx) return -1;
    snprintf(path, sizeof path, "primal/%s/idx", t->name);
    return tn_h5_read(f, path, TN_H5_U8, 2, ishape, *idx);
}

typedef struct {
    tn_checkpoint ck;
    tn_quant_spec spec;
    int is_ste, is_primal, synthetic;
    hid_t f;
    tn_trin_writer *w;
    tn_export_report *rep;
    const tn_export_opts *o;
    tn_trin_dtype last_dtype; /* dtype of the tensor added last (for the report) */
} exporter;

/* Quantized tensor from indices + scales. Takes ownership of scales (malloc/tn_alloc). */
static int add_indexed(exporter *e, tn_trin_tensor *d, const uint8_t *idx, const float *grid, int n_grid,
                       float *scales, int64_t n_scales) {
    d->scale_layout = n_scales == 1 ? TN_TRIN_SCALE_TENSOR : TN_TRIN_SCALE_ROW;
    uint8_t *packed = NULL;
    if (pack_indices(idx, d->shape[0], d->shape[1], grid, n_grid, d, &packed) != 0) {
        tn_free(scales);
        return -1;
    }
    e->last_dtype = d->dtype;
    return tn_trin_writer_add(e->w, d, packed, scales, 1);
}

static int add_tensor(exporter *e, const tn_tensor_info *t) {
    tn_trin_tensor d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", t->name);
    d.rank = t->rank;
    d.shape[0] = t->shape[0];
    if (t->rank == 2) d.shape[1] = t->shape[1];
    const int64_t rows = t->shape[0], cols = t->rank == 2 ? t->shape[1] : 1, n = rows * cols;
    const float *W = e->ck.params + t->offset;
    char path[200];
    snprintf(path, sizeof path, "primal/%s", t->name);

    if (e->is_primal && t->rank == 2 && tn_h5_exists(e->f, path)) {
        uint8_t *idx;
        float *scales, grid[TN_TRIN_MAX_GRID];
        int64_t ns = 0;
        int ng = 0;
        if (read_ghost(e->f, t, &idx, &scales, &ns, grid, &ng) != 0) {
            tn_free(idx);
            tn_free(scales);
            return -1;
        }
        int rc = add_indexed(e, &d, idx, grid, ng, scales, ns);
        tn_free(idx);
        return rc;
    }
    const tn_grid *grid = NULL;
    tn_scale_rule rule = TN_SCALE_ABSMEAN;
    int per_row = 0;
    tn_grid ternary;
    if (e->is_ste && tn_quant_selects(&e->spec, t)) {
        grid = &e->spec.grid;
        rule = e->spec.rule;
        per_row = e->spec.per_row;
        d.act_bits = e->spec.act_bits;
    } else if (e->synthetic && t->rank == 2 && (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP)) {
        TN_CHECK(tn_grid_by_name("ternary", &ternary));
        grid = &ternary;
    }
    if (grid) {
        uint8_t *idx = tn_alloc((size_t)n, 1);
        float *scales = tn_alloc((size_t)(per_row ? rows : 1), sizeof *scales);
        int rc = idx && scales ? 0 : -1;
        if (rc == 0) rc = tn_quantize_tensor(W, rows, cols, grid, rule, per_row, NULL, idx, scales);
        if (rc == 0) rc = add_indexed(e, &d, idx, grid->v, grid->n, scales, per_row ? rows : 1);
        else tn_free(scales);
        tn_free(idx);
        return rc;
    }
    /* Dense. Norms (rank 1) stay F32: they are tiny and the forward is sensitive to them. */
    if (e->o->dense == TN_EXPORT_DENSE_F16 && t->rank == 2) {
        uint16_t *h = malloc((size_t)n * sizeof *h);
        if (!h) return tn_err("out of memory");
        for (int64_t i = 0; i < n; i++) h[i] = tn_f32_to_f16(W[i]);
        d.dtype = TN_TRIN_F16;
        e->last_dtype = d.dtype;
        if (tn_trin_writer_add(e->w, &d, h, NULL, 1) != 0)
            return tn_err_prefix("F16 (a weight beyond ±65504 does not fit; export with --dtype f32)");
        return 0;
    }
    d.dtype = TN_TRIN_F32;
    e->last_dtype = d.dtype;
    return tn_trin_writer_add(e->w, &d, W, NULL, 0); /* the checkpoint's buffer outlives the writer */
}

static int detect(exporter *e, const char *path) {
    TN_CHECK(tn_h5_open(path, &e->f));
    e->is_primal = tn_h5_exists(e->f, "primal");
    if (tn_h5_exists(e->f, "quant")) {
        hid_t g;
        TN_CHECK(tn_h5_group(e->f, "quant", &g));
        int rc = tn_quant_spec_load(&e->spec, g);
        H5Gclose(g);
        if (rc != 0) return tn_err_prefix("%s: quant", path);
        e->is_ste = 1;
    }
    return 0;
}

int tn_export_trin(const char *ckpt_path, const char *out_path, const tn_export_opts *o, tn_export_report *rep) {
    exporter e;
    memset(&e, 0, sizeof e);
    e.f = H5I_INVALID_HID;
    e.o = o;
    e.rep = rep;
    memset(rep, 0, sizeof *rep);
    if (o->quantize && strcmp(o->quantize, "ternary") != 0)
        return tn_err("--quantize '%s': only 'ternary' is supported", o->quantize);
    TN_CHECK(tn_ckpt_load(ckpt_path, &e.ck, NULL, 0));
    int rc = detect(&e, ckpt_path);
    if (rc == 0 && o->quantize && (e.is_ste || e.is_primal))
        rc = tn_err("%s is already quantized (%s): --quantize applies to dense checkpoints", ckpt_path,
                    e.is_ste ? "STE" : "PRIMAL");
    e.synthetic = o->quantize != NULL;
    const tn_llama_layout *l = &e.ck.layout;
    if (rc == 0 && !(e.w = tn_trin_writer_new(&l->cfg))) rc = -1;
    snprintf(rep->kind, sizeof rep->kind, "%s", e.is_ste ? "ste" : e.is_primal ? "primal" : e.synthetic ? "synthetic" : "dense");
    if (e.is_ste) snprintf(rep->grid, sizeof rep->grid, "%s", e.spec.grid.name);
    if (e.synthetic) snprintf(rep->grid, sizeof rep->grid, "ternary");

    if (rc == 0 && e.ck.tokenizer_len) {
        rc = tn_trin_writer_set_tokenizer(e.w, e.ck.tokenizer_format[0] ? e.ck.tokenizer_format : "unknown", e.ck.tokenizer,
                                          e.ck.tokenizer_len);
        if (rc == 0 && strcmp(e.ck.tokenizer_format, "trinity-tokenizer") != 0)
            tn_log_warn("tokenizer stored as '%s' is copied as is; `trinity run` needs 'trinity-tokenizer'",
                        e.ck.tokenizer_format);
    } else if (rc == 0) {
        tn_log_warn("%s has no tokenizer: the .trin file will run from token ids only", ckpt_path);
    }
    if (rc == 0) {
        char quant[96];
        if (e.is_ste)
            snprintf(quant, sizeof quant, "ste %s %s%s%s", e.spec.grid.name, tn_scale_rule_name(e.spec.rule),
                     e.spec.per_row ? " per-row" : "", e.spec.act_bits == 8 ? " act8" : "");
        else snprintf(quant, sizeof quant, "%s", e.is_primal ? "primal" : e.synthetic ? "ternary-absmean" : "none");
        rc = tn_trin_writer_meta(e.w, "source", ckpt_path);
        if (rc == 0) rc = tn_trin_writer_meta(e.w, "created_by", "trinity export 0.1.0");
        if (rc == 0) rc = tn_trin_writer_meta(e.w, "quant", quant);
        char step[32];
        snprintf(step, sizeof step, "%lld", (long long)e.ck.step);
        if (rc == 0) rc = tn_trin_writer_meta(e.w, "step", step);
    }
    for (int i = 0; rc == 0 && i < l->n_tensors; i++) {
        rc = add_tensor(&e, &l->tensors[i]);
        if (rc != 0) tn_err_prefix("tensor '%s'", l->tensors[i].name);
        else rep->n_by_dtype[e.last_dtype]++;
    }
    if (rc == 0) rc = tn_trin_writer_write(e.w, out_path);
    if (rc == 0) {
        struct stat st;
        rep->n_tensors = l->n_tensors;
        rep->n_params = tn_llama_config_n_params(&l->cfg);
        if (stat(out_path, &st) == 0) rep->file_bytes = st.st_size;
    }
    tn_trin_writer_free(e.w);
    if (e.f != H5I_INVALID_HID) tn_h5_close(e.f);
    tn_ckpt_free(&e.ck);
    return rc;
}
