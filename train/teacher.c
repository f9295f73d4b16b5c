#include "train/teacher.h"
#include "train/checkpoint.h"

#include "core/alloc.h"
#include "core/error.h"
#include "export/export_trin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tn_teacher {
    const tn_ops *ops;
    tn_llama_layout layout; /* every matrix external: only the norms are float parameters */
    float *norms;           /* [layout.numel] table memory */
    uint16_t *half;         /* the matrices in binary16, one allocation (table memory) */
    int64_t *half_off;      /* [n_tensors] element offset into half, -1 for a norm */
    tn_llama *model;
};

/* Mark every matrix external (the half-precision copy replaces it); the layout keeps the norms. */
static int externalize_matrices(tn_llama_layout *l) {
    uint8_t *ext = calloc((size_t)l->n_tensors, 1);
    if (!ext) return tn_err("out of memory");
    for (int i = 0; i < l->n_tensors; i++) ext[i] = l->tensors[i].rank == 2;
    int rc = tn_llama_layout_set_external(l, ext);
    free(ext);
    return rc;
}

static int64_t half_elems(const tn_llama_layout *l) {
    int64_t n = 0;
    for (int i = 0; i < l->n_tensors; i++)
        if (l->tensors[i].rank == 2) n += (int64_t)l->tensors[i].numel;
    return n;
}

int tn_teacher_plan_bytes(const char *path, int B, int T, const tn_ops *ops, int64_t *bytes) {
    tn_llama_config cfg;
    if (tn_ckpt_read_config(path, &cfg) != 0) return tn_err_prefix("[distill] teacher");
    if (T > cfg.max_seq_len) return tn_err("[distill] teacher: seq_len %d exceeds its max_seq_len %d", T, cfg.max_seq_len);
    tn_llama_layout l;
    TN_CHECK(tn_llama_layout_init(&l, &cfg));
    int rc = externalize_matrices(&l);
    const tn_llama_opts fwd = {0, 1};
    if (rc == 0)
        *bytes = tn_ops_span(half_elems(&l) * 2) + tn_ops_span((int64_t)l.numel * 4) +
                 tn_llama_plan_bytes(&l, B, T, ops, &fwd);
    tn_llama_layout_free(&l);
    return rc;
}

static const float *widen(tn_teacher *t, int i, float *scratch) {
    const tn_tensor_info *ti = &t->layout.tensors[i];
    if (t->ops->f16_to_f32(t->half + t->half_off[i], (int64_t)ti->numel, scratch) != 0) {
        tn_err_prefix("teacher %s", ti->name);
        return NULL;
    }
    return scratch;
}

static const float *teacher_weight(void *ctx, int layer, tn_linear_kind kind, float *scratch) {
    tn_teacher *t = ctx;
    return widen(t, tn_llama_layout_index(&t->layout, layer, (int)kind), scratch);
}

static const float *teacher_embedding(void *ctx, float *scratch) {
    tn_teacher *t = ctx;
    for (int i = 0; i < t->layout.n_tensors; i++)
        if (t->layout.tensors[i].group == TN_GROUP_EMBED) return widen(t, i, scratch);
    tn_err("teacher: no embedding");
    return NULL;
}

/* Same vocabulary; the same tokenizer bytes when both carry one; the same width when hidden states are
 * compared. */
static int check_compatible(const tn_ckpt_reader *ck, const char *path, const tn_llama_config *s,
                            const uint8_t *stok, size_t stok_len, int need_width) {
    const tn_llama_config *c = &ck->layout.cfg;
    if (c->vocab_size != s->vocab_size)
        return tn_err("[distill] teacher %s: vocabulary of %d tokens, the student's has %d", path, c->vocab_size,
                      s->vocab_size);
    if (stok && ck->tokenizer && (stok_len != ck->tokenizer_len || memcmp(stok, ck->tokenizer, stok_len) != 0))
        return tn_err("[distill] teacher %s: its tokenizer is not the student's", path);
    if (need_width && c->dim != s->dim)
        return tn_err("[distill] teacher %s: hidden_weight compares hidden states, but the teacher's width is %d and "
                      "the student's %d",
                      path, c->dim, s->dim);
    return 0;
}

/* The checkpoint's tensors, read one at a time into a host float buffer: the matrices into t->half
 * (binary16, round to nearest even), the norms into t->norms. The host never holds more than one tensor. */
static int upload_weights(tn_teacher *t, tn_ckpt_reader *ck) {
    size_t largest = 1;
    for (int i = 0; i < t->layout.n_tensors; i++)
        if (t->layout.tensors[i].numel > largest) largest = t->layout.tensors[i].numel;
    float *f = tn_alloc(largest, sizeof *f);
    uint16_t *h = tn_alloc(largest, sizeof *h);
    int rc = f && h ? 0 : -1;
    for (int i = 0; i < t->layout.n_tensors && rc == 0; i++) {
        const tn_tensor_info *ti = &t->layout.tensors[i];
        rc = tn_ckpt_reader_tensor(ck, i, f);
        if (rc == 0 && ti->rank == 2) {
            for (size_t k = 0; k < ti->numel && rc == 0; k++) {
                if (!(fabsf(f[k]) <= 65504.0f)) /* binary16's largest finite value; NaN fails too */
                    rc = tn_err("%s[%zu] = %g does not fit a 16-bit float (the teacher is kept in binary16)",
                                ti->name, k, (double)f[k]);
                h[k] = tn_f32_to_f16(f[k]);
            }
            if (rc == 0) rc = t->ops->upload(t->half + t->half_off[i], h, ti->numel * sizeof *h);
        } else if (rc == 0) {
            rc = t->ops->upload(t->norms + ti->offset, f, ti->numel * sizeof(float));
        }
    }
    tn_free(f);
    tn_free(h);
    return rc;
}

int tn_teacher_open(tn_teacher **out, const char *path, const tn_llama_config *student, const uint8_t *student_tok,
                    size_t student_tok_len, int need_width, int B, int T, const tn_ops *ops) {
    tn_ckpt_reader ck;
    if (tn_ckpt_reader_open(&ck, path) != 0) return tn_err_prefix("[distill] teacher");
    tn_teacher *t = calloc(1, sizeof *t);
    int rc = t ? check_compatible(&ck, path, student, student_tok, student_tok_len, need_width) : tn_err("out of memory");
    if (rc == 0 && T > ck.layout.cfg.max_seq_len)
        rc = tn_err("[distill] teacher %s: seq_len %d exceeds its max_seq_len %d", path, T, ck.layout.cfg.max_seq_len);
    if (rc == 0) {
        t->ops = ops;
        rc = tn_llama_layout_init(&t->layout, &ck.layout.cfg);
    }
    if (rc == 0) rc = externalize_matrices(&t->layout);
    if (rc == 0 && !(t->half_off = calloc((size_t)t->layout.n_tensors, sizeof *t->half_off))) rc = tn_err("out of memory");
    if (rc == 0) {
        int64_t n = 0;
        for (int i = 0; i < t->layout.n_tensors; i++) {
            t->half_off[i] = t->layout.tensors[i].rank == 2 ? n : -1;
            if (t->layout.tensors[i].rank == 2) n += (int64_t)t->layout.tensors[i].numel;
        }
        t->half = ops->alloc((size_t)n * sizeof(uint16_t));
        t->norms = ops->alloc(t->layout.numel * sizeof(float));
        rc = t->half && t->norms ? upload_weights(t, &ck) : -1;
        if (rc != 0) tn_err_prefix("[distill] teacher");
    }
    const tn_llama_opts fwd = {0, 1};
    if (rc == 0) rc = tn_llama_create_opts(&t->model, &t->layout, B, T, ops, &fwd);
    if (rc == 0) {
        tn_weight_source src = {teacher_weight, NULL, 0, NULL, t, teacher_embedding};
        tn_llama_set_weight_source(t->model, &src);
        tn_llama_set_head_via_source(t->model, 1);
    }
    tn_ckpt_reader_close(&ck);
    if (rc != 0) {
        tn_teacher_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tn_teacher_free(tn_teacher *t) {
    if (!t) return;
    tn_llama_free(t->model);
    if (t->ops) {
        t->ops->free(t->half);
        t->ops->free(t->norms);
    }
    free(t->half_off);
    tn_llama_layout_free(&t->layout);
    free(t);
}

int tn_teacher_forward(tn_teacher *t, const int32_t *inputs) {
    if (tn_llama_forward(t->model, t->norms, inputs, NULL, NULL, NULL, NULL) != 0)
        return tn_err_prefix("[distill] teacher forward");
    return 0;
}

float *tn_teacher_logits(tn_teacher *t) { return (float *)tn_llama_logits(t->model); }
const float *tn_teacher_hidden(const tn_teacher *t, int l) { return tn_llama_hidden(t->model, l); }
const tn_llama_config *tn_teacher_cfg(const tn_teacher *t) { return &t->layout.cfg; }
