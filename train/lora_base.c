/* The frozen quantized base (train/lora_base.h). */
#include "train/lora_base.h"

#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/h5.h"
#include "export/trin.h"
#include "kernels/packed.h"
#include "quant/snap.h"
#include "train/checkpoint.h"
#include "train/quant_spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* /primal/<name>: idx [rows, cols], scale [1 or rows], grid [n] into q, validated. */
static int read_ghost(hid_t f, const tn_tensor_info *t, tn_qtensor *q) {
    char path[200], gname[TN_GRID_NAME_MAX];
    int rank;
    int64_t gshape[TN_H5_MAX_RANK], sshape[TN_H5_MAX_RANK], shape[2] = {q->rows, q->cols};
    float *grid = NULL;
    snprintf(path, sizeof path, "primal/%s", t->name);
    if (tn_h5_attr_get_str(f, path, "grid_name", gname, sizeof gname) != 0) snprintf(gname, sizeof gname, "custom");
    snprintf(path, sizeof path, "primal/%s/grid", t->name);
    TN_CHECK(tn_h5_read_alloc(f, path, TN_H5_F32, &rank, gshape, (void **)&grid));
    int rc = rank == 1 && gshape[0] >= 1 && gshape[0] <= TN_GRID_MAX ? 0 : tn_err("%s: bad grid", path);
    if (rc == 0) rc = tn_grid_from_values(gname, grid, (int)gshape[0], &q->grid);
    tn_free(grid);
    TN_CHECK(rc);
    snprintf(path, sizeof path, "primal/%s/scale", t->name);
    TN_CHECK(tn_h5_read_alloc(f, path, TN_H5_F32, &rank, sshape, (void **)&q->scales));
    if (rank != 1 || (sshape[0] != 1 && sshape[0] != q->rows)) return tn_err("%s: bad shape", path);
    q->n_scales = sshape[0];
    for (int64_t k = 0; k < q->n_scales; k++)
        if (!isfinite(q->scales[k])) return tn_err("%s: non-finite scale", path);
    if (!(q->idx = tn_alloc((size_t)(q->rows * q->cols), 1))) return -1;
    snprintf(path, sizeof path, "primal/%s/idx", t->name);
    TN_CHECK(tn_h5_read(f, path, TN_H5_U8, 2, shape, q->idx));
    for (int64_t k = 0; k < q->rows * q->cols; k++)
        if (q->idx[k] >= q->grid.n) return tn_err("%s: index %u outside the grid of %d values", path, q->idx[k], q->grid.n);
    return 0;
}

/* An STE shadow matrix snapped as the run snaps it. */
static int snap_shadow(tn_ckpt_reader *rd, int i, const tn_quant_spec *spec, tn_qtensor *q) {
    float *W = tn_alloc((size_t)(q->rows * q->cols), sizeof(float));
    q->grid = spec->grid;
    q->n_scales = spec->per_row ? q->rows : 1;
    q->idx = tn_alloc((size_t)(q->rows * q->cols), 1);
    q->scales = tn_alloc((size_t)q->n_scales, sizeof(float));
    int rc = W && q->idx && q->scales ? tn_ckpt_reader_tensor(rd, i, W) : -1;
    if (rc == 0) rc = tn_quantize_tensor(W, q->rows, q->cols, &q->grid, spec->rule, spec->per_row, NULL, q->idx, q->scales);
    tn_free(W);
    return rc;
}

uint32_t tn_qbase_crc(const tn_qbase *b) {
    uint32_t crc = 0;
    for (int k = 0; k < b->n_q; k++) {
        crc = tn_crc32(crc, b->q[k].idx, (size_t)(b->q[k].rows * b->q[k].cols));
        crc = tn_crc32(crc, b->q[k].scales, (size_t)b->q[k].n_scales * sizeof(float));
    }
    return crc;
}

static int load(tn_qbase *b, tn_ckpt_reader *rd) {
    hid_t f = rd->f;
    tn_quant_spec spec;
    const int ste = tn_h5_exists(f, "quant"), primal = tn_h5_exists(f, "primal");
    if (ste) {
        hid_t g;
        TN_CHECK(tn_h5_group(f, "quant", &g));
        int rc = tn_quant_spec_load(&spec, g);
        H5Gclose(g);
        if (rc) return tn_err_prefix("/quant");
        if (spec.act_bits == 8)
            return tn_err("the base was trained with 8-bit activations ([quant] act_bits = 8), which LoRA does not "
                          "model");
        b->is_ste = 1;
        b->spec = spec;
        snprintf(b->kind, sizeof b->kind, "ste");
    } else if (primal) {
        snprintf(b->kind, sizeof b->kind, "primal");
    } else {
        return tn_err("not a quantized checkpoint (no /quant or /primal group): LoRA and merge need a quantized base "
                      "(an STE or PRIMAL checkpoint, or a .trin)");
    }
    TN_CHECK(tn_llama_layout_copy(&b->layout, &rd->layout));
    const int n = b->layout.n_tensors;
    uint8_t *ext = calloc((size_t)n, 1);
    b->lookup = malloc((size_t)n * sizeof *b->lookup);
    b->q = calloc((size_t)n, sizeof *b->q);
    if (!ext || !b->lookup || !b->q) {
        free(ext);
        return tn_err("out of memory");
    }
    for (int i = 0; i < n; i++) {
        const tn_tensor_info *t = &b->layout.tensors[i];
        char path[160];
        snprintf(path, sizeof path, "primal/%s", t->name);
        int quantized = ste ? tn_quant_selects(&spec, t) : t->rank == 2 && tn_h5_exists(f, path);
        b->lookup[i] = quantized ? b->n_q : -1;
        if (!quantized) continue;
        if (t->group == TN_GROUP_EMBED || (t->layer < 0 && b->layout.cfg.tied_embeddings)) {
            free(ext);
            return tn_err("%s: a quantized tied head is not supported as a LoRA base", t->name);
        }
        if (t->group == TN_GROUP_HEAD) b->head_quantized = 1;
        ext[i] = 1;
        tn_qtensor *q = &b->q[b->n_q++];
        q->tensor = i;
        q->rows = t->shape[0];
        q->cols = t->shape[1];
    }
    if (ste && (spec.groups & (1u << TN_GROUP_HEAD)) && b->layout.cfg.tied_embeddings) {
        free(ext);
        return tn_err("a quantized tied head is not supported as a LoRA base");
    }
    int rc = b->n_q ? tn_llama_layout_set_external(&b->layout, ext) : tn_err("no quantized matrix in the checkpoint");
    free(ext);
    TN_CHECK(rc);
    /* the float tensors, then the quantized ones one at a time */
    if (!(b->floats = tn_alloc(b->layout.numel ? b->layout.numel : 1, sizeof(float)))) return -1;
    for (int i = 0; i < n; i++) {
        const tn_tensor_info *t = &b->layout.tensors[i];
        if (b->lookup[i] >= 0) {
            tn_qtensor *q = &b->q[b->lookup[i]];
            rc = ste ? snap_shadow(rd, i, &spec, q) : read_ghost(f, t, q);
        } else {
            rc = tn_ckpt_reader_tensor(rd, i, b->floats + t->offset);
        }
        if (rc) return tn_err_prefix("%s", t->name);
    }
    b->crc = tn_qbase_crc(b);
    return 0;
}

/* ---- .trin --------------------------------------------------------------------------------------------- */

/* A float tensor of a .trin (F32, F16, or the Q8 / Q4 of heads and embedding tables) into out. */
static int trin_floats(const tn_trin_tensor *x, int64_t numel, float *out) {
    const int64_t rows = x->shape[0], cols = x->rank == 2 ? x->shape[1] : numel;
    switch (x->dtype) {
    case TN_TRIN_F32: memcpy(out, x->data, (size_t)numel * sizeof(float)); break;
    case TN_TRIN_F16:
        for (int64_t i = 0; i < numel; i++) out[i] = tn_f16_to_f32((uint16_t)(x->data[2 * i] | x->data[2 * i + 1] << 8));
        break;
    case TN_TRIN_Q8:
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                out[r * cols + c] = x->scales[r] * (float)(int8_t)x->data[(size_t)r * tn_q8_row_bytes(cols) + (size_t)c];
        return 0; /* the row scale is applied here */
    case TN_TRIN_Q4:
        for (int64_t r = 0; r < rows; r++) tn_q4_row_to_f32(x->data, r, cols, out + r * cols);
        break;
    default: return tn_err("%s: dtype %s is not a float tensor", x->name, tn_trin_dtype_name(x->dtype));
    }
    if (x->scale_layout != TN_TRIN_SCALE_NONE)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) out[r * cols + c] *= x->scales[x->n_scales == 1 ? 0 : r];
    return 0;
}

/* A T2 / L4 / L8 matrix as indices on its grid (T2: the grid {-1, 0, 1}, index = value + 1). */
static int trin_indices(const tn_trin_tensor *x, tn_qtensor *q) {
    const int64_t n = q->rows * q->cols;
    if (!(q->idx = tn_alloc((size_t)n, 1))) return -1;
    if (x->dtype == TN_TRIN_T2) {
        static const float ternary[3] = {-1.0f, 0.0f, 1.0f};
        TN_CHECK(tn_grid_from_values("ternary", ternary, 3, &q->grid));
        int8_t *w = tn_alloc((size_t)n, 1);
        if (!w) return -1;
        int rc = tn_t2_unpack(x->data, q->rows, q->cols, w);
        for (int64_t i = 0; rc == 0 && i < n; i++) q->idx[i] = (uint8_t)(w[i] + 1);
        tn_free(w);
        TN_CHECK(rc);
    } else {
        TN_CHECK(tn_grid_from_values("trin", x->grid, x->grid_len, &q->grid));
        if (x->dtype == TN_TRIN_L4) tn_l4_unpack(x->data, q->rows, q->cols, q->idx);
        else tn_l8_unpack(x->data, q->rows, q->cols, q->idx);
    }
    q->n_scales = x->scale_layout == TN_TRIN_SCALE_ROW ? q->rows : 1;
    if (!(q->scales = tn_alloc((size_t)q->n_scales, sizeof(float)))) return -1;
    for (int64_t k = 0; k < q->n_scales; k++) q->scales[k] = x->scale_layout == TN_TRIN_SCALE_NONE ? 1.0f : x->scales[k];
    return 0;
}

static int load_trin(tn_qbase *b, const tn_trin *t) {
    snprintf(b->kind, sizeof b->kind, "trin");
    TN_CHECK(tn_llama_layout_init(&b->layout, &t->cfg));
    const int n = b->layout.n_tensors;
    const tn_trin_tensor **x = calloc((size_t)n, sizeof *x);
    uint8_t *ext = calloc((size_t)n, 1);
    b->lookup = malloc((size_t)n * sizeof *b->lookup);
    b->q = calloc((size_t)n, sizeof *b->q);
    int rc = x && ext && b->lookup && b->q ? 0 : tn_err("out of memory");
    /* A quantized head with its exact rows (TRIN 4): the base is the model the runner runs, whose argmax is
     * the exact head's and whose tied embeddings are the exact rows, so the frozen head is those rows. */
    const tn_trin_tensor *exact = tn_trin_find(t, TN_TRIN_EXACT_HEAD);
    for (int i = 0; rc == 0 && i < n; i++) {
        const tn_tensor_info *ti = &b->layout.tensors[i];
        x[i] = exact && tn_tensor_is_head(ti, &t->cfg) ? exact : tn_trin_find(t, ti->name);
        b->lookup[i] = -1;
        if (!x[i]) rc = tn_err("no tensor %s", ti->name);
        else if (x[i]->act_bits == 8)
            rc = tn_err("%s: the model quantizes this matrix's input to 8 bits, which LoRA does not model", ti->name);
        if (rc || (x[i]->dtype != TN_TRIN_T2 && x[i]->dtype != TN_TRIN_L4 && x[i]->dtype != TN_TRIN_L8)) continue;
        if (ti->rank != 2 || ti->group == TN_GROUP_EMBED) {
            rc = tn_err("%s: a quantized %s is not supported as a LoRA base", ti->name, ti->rank != 2 ? "vector" : "embedding");
            continue;
        }
        if (ti->group == TN_GROUP_HEAD) b->head_quantized = 1;
        ext[i] = 1;
        b->lookup[i] = b->n_q;
        tn_qtensor *q = &b->q[b->n_q++];
        q->tensor = i;
        q->rows = ti->shape[0];
        q->cols = ti->shape[1];
    }
    if (rc == 0) rc = b->n_q ? tn_llama_layout_set_external(&b->layout, ext) : tn_err("no quantized matrix in the file");
    if (rc == 0 && !(b->floats = tn_alloc(b->layout.numel ? b->layout.numel : 1, sizeof(float)))) rc = -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        const tn_tensor_info *ti = &b->layout.tensors[i];
        rc = b->lookup[i] >= 0 ? trin_indices(x[i], &b->q[b->lookup[i]]) : trin_floats(x[i], (int64_t)ti->numel, b->floats + ti->offset);
        if (rc) tn_err_prefix("%s", ti->name);
    }
    if (rc == 0 && t->tokenizer_len) {
        if (!(b->tokenizer = tn_alloc(t->tokenizer_len, 1))) rc = -1;
        else {
            memcpy(b->tokenizer, t->tokenizer, t->tokenizer_len);
            b->tokenizer_len = t->tokenizer_len;
            memcpy(b->tokenizer_format, t->tokenizer_format, sizeof b->tokenizer_format);
        }
    }
    free(x);
    free(ext);
    if (rc == 0) b->crc = tn_qbase_crc(b);
    return rc;
}

int tn_qbase_load(tn_qbase *b, const char *path) {
    memset(b, 0, sizeof *b);
    const size_t pl = strlen(path);
    if (pl > 5 && !strcmp(path + pl - 5, ".trin")) {
        tn_trin *t;
        if (tn_trin_open(path, &t) != 0) return tn_err_prefix("base");
        int rc = load_trin(b, t);
        tn_trin_close(t);
        if (rc) {
            tn_qbase_free(b);
            return tn_err_prefix("base %s", path);
        }
        return 0;
    }
    tn_ckpt_reader rd;
    if (tn_ckpt_reader_open(&rd, path) != 0) return -1;
    int rc = load(b, &rd);
    if (rc == 0 && rd.tokenizer) {
        b->tokenizer = rd.tokenizer;
        b->tokenizer_len = rd.tokenizer_len;
        memcpy(b->tokenizer_format, rd.tokenizer_format, sizeof b->tokenizer_format);
        rd.tokenizer = NULL;
    }
    tn_ckpt_reader_close(&rd);
    if (rc) {
        tn_qbase_free(b);
        return tn_err_prefix("base %s", path);
    }
    return 0;
}

void tn_qbase_free(tn_qbase *b) {
    for (int k = 0; b->q && k < b->n_q; k++) {
        tn_free(b->q[k].idx);
        tn_free(b->q[k].scales);
    }
    free(b->q);
    free(b->lookup);
    tn_free(b->floats);
    tn_free(b->tokenizer);
    tn_llama_layout_free(&b->layout);
    memset(b, 0, sizeof *b);
}

void tn_qbase_drop_host_indices(tn_qbase *b) {
    for (int k = 0; b->q && k < b->n_q; k++) {
        tn_free(b->q[k].idx);
        b->q[k].idx = NULL;
    }
}

void tn_qbase_dequant(const tn_qbase *b, int k, float *W) {
    const tn_qtensor *q = &b->q[k];
#pragma omp parallel for schedule(static) if (q->rows * q->cols >= (1 << 16))
    for (int64_t r = 0; r < q->rows; r++)
        tn_grid_dequant(&q->grid, q->idx + r * q->cols, q->cols, q->scales[q->n_scales == 1 ? 0 : r], W + r * q->cols);
}

int64_t tn_qbase_quant_bytes(const tn_qbase *b) {
    int64_t n = 0;
    for (int k = 0; k < b->n_q; k++) n += b->q[k].rows * b->q[k].cols + b->q[k].n_scales * (int64_t)sizeof(float);
    return n;
}

static const float *qb_weight(void *ctx, int layer, tn_linear_kind kind, float *scratch) {
    const tn_qbase_source *s = ctx;
    const int i = tn_llama_layout_index(&s->b->layout, layer, (int)kind);
    if (i < 0) {
        tn_err("base: no matrix for layer %d kind %d", layer, (int)kind);
        return NULL;
    }
    const int k = s->b->lookup[i];
    if (k < 0) return s->params + s->b->layout.tensors[i].offset;
    if (s->ops->primal_materialize(&s->views[k], scratch) != 0) return NULL;
    return scratch;
}

void tn_qbase_source_close(tn_qbase_source *s) {
    for (int k = 0; s->owns && s->views && k < s->b->n_q; k++) {
        s->ops->free(s->views[k].idx);
        s->ops->free(s->views[k].scale);
    }
    free(s->views);
    memset(s, 0, sizeof *s);
}

int tn_qbase_source_open(tn_qbase_source *s, const tn_qbase *b, const float *params, const tn_ops *ops) {
    memset(s, 0, sizeof *s);
    s->b = b;
    s->params = params;
    s->ops = ops ? ops : tn_ops_cpu();
    s->owns = s->ops->device_memory;
    if (!(s->views = calloc((size_t)(b->n_q ? b->n_q : 1), sizeof *s->views))) return tn_err("out of memory");
    for (int k = 0; k < b->n_q; k++) {
        const tn_qtensor *q = &b->q[k];
        tn_ghost_view *v = &s->views[k];
        v->rows = q->rows;
        v->cols = q->cols;
        v->grid = &q->grid;
        v->scale_per_row = q->n_scales != 1;
        if (!s->owns) { /* the CPU table reads the base's own arrays (it only reads them) */
            v->idx = q->idx;
            v->scale = q->scales;
            continue;
        }
        const size_t ni = (size_t)(q->rows * q->cols), ns = (size_t)q->n_scales * sizeof(float);
        int rc = (v->idx = s->ops->alloc(ni)) && (v->scale = s->ops->alloc(ns)) ? 0 : -1;
        if (rc == 0) rc = s->ops->upload(v->idx, q->idx, ni);
        if (rc == 0) rc = s->ops->upload(v->scale, q->scales, ns);
        if (rc) {
            const char *table = s->ops->name;
            tn_qbase_source_close(s);
            return tn_err_prefix("base %s to %s", b->layout.tensors[q->tensor].name, table);
        }
    }
    return 0;
}

int tn_qbase_source_crc(const tn_qbase_source *s, uint32_t *crc) {
    if (!s->owns) {
        *crc = tn_qbase_crc(s->b);
        return 0;
    }
    size_t cap = 0;
    for (int k = 0; k < s->b->n_q; k++) {
        const size_t ni = (size_t)(s->b->q[k].rows * s->b->q[k].cols), ns = (size_t)s->b->q[k].n_scales * sizeof(float);
        if (ni > cap) cap = ni;
        if (ns > cap) cap = ns;
    }
    uint8_t *buf = tn_alloc(cap ? cap : 1, 1);
    if (!buf) return -1;
    uint32_t c = 0;
    int rc = 0;
    for (int k = 0; rc == 0 && k < s->b->n_q; k++) {
        const tn_qtensor *q = &s->b->q[k];
        const size_t ni = (size_t)(q->rows * q->cols), ns = (size_t)q->n_scales * sizeof(float);
        rc = s->ops->download(buf, s->views[k].idx, ni);
        if (rc == 0) c = tn_crc32(c, buf, ni);
        if (rc == 0) rc = s->ops->download(buf, s->views[k].scale, ns);
        if (rc == 0) c = tn_crc32(c, buf, ns);
    }
    tn_free(buf);
    *crc = c;
    return rc;
}

int64_t tn_qbase_source_bytes(const tn_qbase *b, const tn_ops *ops) {
    if (!ops || !ops->device_memory) return tn_qbase_quant_bytes(b);
    int64_t n = 0;
    for (int k = 0; k < b->n_q; k++)
        n += tn_ops_span(b->q[k].rows * b->q[k].cols) + tn_ops_span(b->q[k].n_scales * (int64_t)sizeof(float));
    return n;
}

void tn_qbase_weight_source(tn_qbase_source *s, tn_weight_source *src) {
    memset(src, 0, sizeof *src);
    src->weight = qb_weight;
    src->ctx = s;
}
