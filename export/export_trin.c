/* Checkpoint -> TRIN (export/export_trin.h). One pass over the layout: each tensor is decided by
 * export/export_source.h (ghost indices, snapped shadow weights, synthetic ternary, or dense), packed, and
 * handed to the TRIN writer, which checks it and owns the buffer. */
#include "export/export_trin.h"

#include "core/error.h"
#include "core/log.h"
#include "export/export_source.h"
#include "export/trin.h"
#include "kernels/packed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void tn_export_opts_default(tn_export_opts *o) {
    o->dense = TN_EXPORT_DENSE_AUTO;
    o->quantize = NULL;
    o->head = TN_TABLE_AUTO;
    o->embed = TN_TABLE_AUTO;
    o->exact_head = 0;
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
    int ternary = tn_export_grid_is_ternary(grid, n_grid);
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

typedef struct {
    tn_export_src src;
    tn_trin_writer *w;
    const tn_export_opts *o;
    tn_trin_dtype last_dtype; /* dtype of the tensor added last (for the report) */
} exporter;

/* A dense table (head, embeddings) quantized to Q8 (per-row scales) or Q4 (scales inside its blocks). */
static int add_table(exporter *e, tn_trin_tensor *d, const float *W, tn_table_type table) {
    const int64_t rows = d->shape[0], cols = d->shape[1];
    const int q8 = table == TN_TABLE_Q8;
    d->dtype = q8 ? TN_TRIN_Q8 : TN_TRIN_Q4;
    d->scale_layout = q8 ? TN_TRIN_SCALE_ROW : TN_TRIN_SCALE_NONE;
    e->last_dtype = d->dtype;
    uint64_t size;
    TN_CHECK(tn_trin_data_size(d->dtype, 2, d->shape, &size));
    uint8_t *buf = malloc(size);
    float *scales = q8 ? malloc((size_t)rows * sizeof *scales) : NULL;
    if (!buf || (q8 && !scales)) {
        free(buf);
        free(scales);
        return tn_err("out of memory (%llu bytes)", (unsigned long long)size);
    }
    if ((q8 ? tn_q8_quantize(W, rows, cols, buf, scales) : tn_q4_quantize(W, rows, cols, buf)) != 0) {
        free(buf);
        free(scales);
        return -1;
    }
    return tn_trin_writer_add(e->w, d, buf, scales, 1);
}

/* n floats rounded to F16 (malloc'd; NULL on failure, error set). */
static uint16_t *to_f16(const float *W, int64_t n) {
    uint16_t *h = malloc((size_t)n * sizeof *h);
    if (!h) {
        tn_err("out of memory");
        return NULL;
    }
    for (int64_t k = 0; k < n; k++) h[k] = tn_f32_to_f16(W[k]);
    return h;
}

/* The head's F16 rows beside its quantized table (TN_TRIN_EXACT_HEAD), with the head's act_bits. */
static int add_exact_head(exporter *e, const tn_trin_tensor *head, const float *W) {
    tn_trin_tensor d = *head;
    snprintf(d.name, sizeof d.name, "%s", TN_TRIN_EXACT_HEAD);
    d.dtype = TN_TRIN_F16;
    d.scale_layout = TN_TRIN_SCALE_NONE;
    uint16_t *h = to_f16(W, d.shape[0] * d.shape[1]);
    if (!h) return -1;
    if (tn_trin_writer_add(e->w, &d, h, NULL, 1) != 0)
        return tn_err_prefix("exact head rows in F16 (a weight beyond ±65504 does not fit)");
    return 0;
}

static int add_tensor(exporter *e, int i) {
    tn_export_tensor x;
    TN_CHECK(tn_export_src_tensor(&e->src, i, &x));
    const tn_tensor_info *t = x.t;
    tn_trin_tensor d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", t->name);
    d.rank = t->rank;
    d.shape[0] = t->shape[0];
    if (t->rank == 2) d.shape[1] = t->shape[1];
    if (x.quantized && tn_table_for(t, &e->src.ck.layout.cfg, e->o->head, e->o->embed) != TN_TABLE_AUTO) {
        tn_export_tensor_free(&x);
        return tn_err("the run quantized this table itself: --head / --embed apply to dense tables");
    }
    if (x.quantized) {
        /* indices + scales: the writer takes the scales */
        d.act_bits = x.act_bits;
        d.scale_layout = x.n_scales == 1 ? TN_TRIN_SCALE_TENSOR : TN_TRIN_SCALE_ROW;
        uint8_t *packed = NULL;
        if (pack_indices(x.idx, d.shape[0], d.shape[1], x.grid, x.n_grid, &d, &packed) != 0) {
            tn_export_tensor_free(&x);
            return -1;
        }
        e->last_dtype = d.dtype;
        float *scales = x.scales;
        x.scales = NULL;
        tn_export_tensor_free(&x);
        return tn_trin_writer_add(e->w, &d, packed, scales, 1);
    }
    const int64_t n = (int64_t)t->numel;
    const tn_table_type table = tn_table_for(t, &e->src.ck.layout.cfg, e->o->head, e->o->embed);
    if (table == TN_TABLE_Q8 || table == TN_TABLE_Q4) {
        TN_CHECK(add_table(e, &d, x.W, table));
        return tn_tensor_is_head(t, &e->src.ck.layout.cfg) && e->o->exact_head ? add_exact_head(e, &d, x.W) : 0;
    }
    /* Dense. Norms (rank 1) stay F32: they are tiny and the forward is sensitive to them. */
    if ((table == TN_TABLE_F16 || (table == TN_TABLE_AUTO && e->o->dense == TN_EXPORT_DENSE_F16)) && t->rank == 2) {
        uint16_t *h = to_f16(x.W, n);
        if (!h) return -1;
        d.dtype = TN_TRIN_F16;
        e->last_dtype = d.dtype;
        if (tn_trin_writer_add(e->w, &d, h, NULL, 1) != 0)
            return tn_err_prefix("F16 (a weight beyond ±65504 does not fit; export with --dtype f32)");
        return 0;
    }
    d.dtype = TN_TRIN_F32;
    e->last_dtype = d.dtype;
    return tn_trin_writer_add(e->w, &d, x.W, NULL, 0); /* the checkpoint's buffer outlives the writer */
}

int tn_export_trin(const char *ckpt_path, const char *out_path, const tn_export_opts *o, tn_export_report *rep) {
    exporter e;
    memset(&e, 0, sizeof e);
    e.o = o;
    memset(rep, 0, sizeof *rep);
    TN_CHECK(tn_export_src_open(&e.src, ckpt_path, o->quantize));
    const tn_checkpoint *ck = &e.src.ck;
    const tn_llama_layout *l = &ck->layout;
    int rc = 0;
    if (l->cfg.tied_embeddings && o->embed != TN_TABLE_AUTO)
        rc = tn_err("--embed %s: %s ties its embeddings to the LM head; --head sets the one table",
                    tn_table_type_name(o->embed), ckpt_path);
    if (rc == 0 && o->exact_head && o->head != TN_TABLE_Q8 && o->head != TN_TABLE_Q4)
        rc = tn_err("exact head rows need a Q8 or Q4 head (--head q8 or q4)");
    if (rc == 0 && !(e.w = tn_trin_writer_new(&l->cfg))) rc = -1;
    snprintf(rep->kind, sizeof rep->kind, "%s", e.src.kind);
    snprintf(rep->grid, sizeof rep->grid, "%s", e.src.grid);

    if (rc == 0 && ck->tokenizer_len) {
        rc = tn_trin_writer_set_tokenizer(e.w, ck->tokenizer_format[0] ? ck->tokenizer_format : "unknown", ck->tokenizer,
                                          ck->tokenizer_len);
        if (rc == 0 && strcmp(ck->tokenizer_format, "trinity-tokenizer") != 0)
            tn_log_warn("tokenizer stored as '%s' is copied as is; `trinity run` needs 'trinity-tokenizer'",
                        ck->tokenizer_format);
    } else if (rc == 0) {
        tn_log_warn("%s has no tokenizer: the .trin file will run from token ids only", ckpt_path);
    }
    if (rc == 0) {
        rc = tn_trin_writer_meta(e.w, "source", ckpt_path);
        if (rc == 0) rc = tn_trin_writer_meta(e.w, "created_by", "trinity export 0.1.0");
        if (rc == 0) rc = tn_trin_writer_meta(e.w, "quant", e.src.quant);
        char step[32];
        snprintf(step, sizeof step, "%lld", (long long)ck->step);
        if (rc == 0) rc = tn_trin_writer_meta(e.w, "step", step);
    }
    for (int i = 0; rc == 0 && i < l->n_tensors; i++) {
        rc = add_tensor(&e, i);
        if (rc != 0) tn_err_prefix("tensor '%s'", l->tensors[i].name);
        else rep->n_by_dtype[e.last_dtype]++;
    }
    if (rc == 0) rc = tn_trin_writer_write(e.w, out_path);
    if (rc == 0) {
        struct stat st;
        rep->n_tensors = l->n_tensors + (o->exact_head != 0);
        if (o->exact_head) rep->n_by_dtype[TN_TRIN_F16]++;
        rep->n_params = tn_llama_config_n_params(&l->cfg);
        if (stat(out_path, &st) == 0) rep->file_bytes = st.st_size;
    }
    tn_trin_writer_free(e.w);
    tn_export_src_close(&e.src);
    return rc;
}
