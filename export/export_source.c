/* Checkpoint -> tensors decided for export (export/export_source.h), shared by the TRIN and GGUF exporters. */
#include "export/export_source.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "quant/snap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tn_export_grid_is_ternary(const float *grid, int n) {
    return n == 3 && grid[0] == -1.0f && grid[1] == 0.0f && grid[2] == 1.0f;
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
    if (rank != 1 || shape[0] < 1 || shape[0] > TN_GRID_MAX) {
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

static int detect(tn_export_src *s, const char *path) {
    TN_CHECK(tn_h5_open(path, &s->f));
    s->is_primal = tn_h5_exists(s->f, "primal");
    if (tn_h5_exists(s->f, "quant")) {
        hid_t g;
        TN_CHECK(tn_h5_group(s->f, "quant", &g));
        int rc = tn_quant_spec_load(&s->spec, g);
        H5Gclose(g);
        if (rc != 0) return tn_err_prefix("%s: quant", path);
        s->is_ste = 1;
    }
    return 0;
}

void tn_export_src_close(tn_export_src *s) {
    if (s->f != H5I_INVALID_HID) tn_h5_close(s->f);
    s->f = H5I_INVALID_HID;
    tn_ckpt_free(&s->ck);
}

int tn_export_src_open(tn_export_src *s, const char *ckpt_path, const char *quantize) {
    memset(s, 0, sizeof *s);
    s->f = H5I_INVALID_HID;
    if (quantize && strcmp(quantize, "ternary") != 0)
        return tn_err("--quantize '%s': only 'ternary' is supported", quantize);
    TN_CHECK(tn_ckpt_load(ckpt_path, &s->ck, NULL, 0));
    int rc = detect(s, ckpt_path);
    if (rc == 0 && quantize && (s->is_ste || s->is_primal))
        rc = tn_err("%s is already quantized (%s): --quantize applies to dense checkpoints", ckpt_path,
                    s->is_ste ? "STE" : "PRIMAL");
    if (rc != 0) {
        tn_export_src_close(s);
        return -1;
    }
    s->synthetic = quantize != NULL;
    snprintf(s->kind, sizeof s->kind, "%s", s->is_ste ? "ste" : s->is_primal ? "primal" : s->synthetic ? "synthetic" : "dense");
    if (s->is_ste) snprintf(s->grid, sizeof s->grid, "%s", s->spec.grid.name);
    if (s->synthetic) snprintf(s->grid, sizeof s->grid, "ternary");
    if (s->is_ste)
        snprintf(s->quant, sizeof s->quant, "ste %s %s%s%s", s->spec.grid.name, tn_scale_rule_name(s->spec.rule),
                 s->spec.per_row ? " per-row" : "", s->spec.act_bits == 8 ? " act8" : "");
    else snprintf(s->quant, sizeof s->quant, "%s", s->is_primal ? "primal" : s->synthetic ? "ternary-absmean" : "none");
    return 0;
}

void tn_export_tensor_free(tn_export_tensor *t) {
    tn_free(t->idx);
    tn_free(t->scales);
    t->idx = NULL;
    t->scales = NULL;
}

int tn_export_src_tensor(tn_export_src *s, int i, tn_export_tensor *out) {
    const tn_tensor_info *t = &s->ck.layout.tensors[i];
    memset(out, 0, sizeof *out);
    out->t = t;
    const int64_t rows = t->shape[0], cols = t->rank == 2 ? t->shape[1] : 1, n = rows * cols;
    const float *W = s->ck.params + t->offset;
    char path[200];
    snprintf(path, sizeof path, "primal/%s", t->name);

    if (s->is_primal && t->rank == 2 && tn_h5_exists(s->f, path)) {
        out->quantized = 1;
        if (read_ghost(s->f, t, &out->idx, &out->scales, &out->n_scales, out->grid, &out->n_grid) != 0) {
            tn_export_tensor_free(out);
            return -1;
        }
        return 0;
    }
    const tn_grid *grid = NULL;
    tn_scale_rule rule = TN_SCALE_ABSMEAN;
    int per_row = 0;
    tn_grid ternary;
    if (s->is_ste && tn_quant_selects(&s->spec, t)) {
        grid = &s->spec.grid;
        rule = s->spec.rule;
        per_row = s->spec.per_row;
        out->act_bits = s->spec.act_bits;
    } else if (s->synthetic && t->rank == 2 && (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP)) {
        TN_CHECK(tn_grid_by_name("ternary", &ternary));
        grid = &ternary;
    }
    if (!grid) {
        out->W = W;
        return 0;
    }
    out->quantized = 1;
    out->n_grid = grid->n;
    memcpy(out->grid, grid->v, (size_t)grid->n * sizeof *grid->v);
    out->n_scales = per_row ? rows : 1;
    out->idx = tn_alloc((size_t)n, 1);
    out->scales = tn_alloc((size_t)out->n_scales, sizeof *out->scales);
    int rc = out->idx && out->scales ? 0 : -1;
    if (rc == 0) rc = tn_quantize_tensor(W, rows, cols, grid, rule, per_row, NULL, out->idx, out->scales);
    if (rc != 0) tn_export_tensor_free(out);
    return rc;
}
