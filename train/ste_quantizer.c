#include "train/ste_quantizer.h"

#include "core/alloc.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

static const float *ste_weight(void *vctx, int layer, tn_linear_kind kind, float *scratch) {
    tn_ste_quantizer *q = vctx;
    (void)scratch;
    int i = tn_llama_layout_index(q->layout, layer, (int)kind);
    int k = q->lookup[i];
    return k >= 0 ? q->wq + q->off[k] : q->params + q->layout->tensors[i].offset;
}

static int ste_is_quantized(void *vctx, int layer, tn_linear_kind kind) {
    tn_ste_quantizer *q = vctx;
    return q->lookup[tn_llama_layout_index(q->layout, layer, (int)kind)] >= 0;
}

/* Quantized weights and the largest row count among them. */
static void count(const tn_quant_spec *spec, const tn_llama_layout *l, size_t *total, int64_t *max_rows) {
    *total = 0;
    *max_rows = 1;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        if (!tn_quant_selects(spec, t)) continue;
        *total += t->numel;
        if (t->shape[0] > *max_rows) *max_rows = t->shape[0];
    }
}

int64_t tn_ste_quantizer_plan_bytes(const tn_quant_spec *spec, const tn_llama_layout *l) {
    size_t total;
    int64_t max_rows;
    count(spec, l, &total, &max_rows);
    return tn_ops_span((int64_t)total * (int64_t)sizeof(float)) + tn_ops_span((int64_t)total) +
           tn_ops_span(max_rows * (int64_t)sizeof(float));
}

int tn_ste_quantizer_init(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *l,
                          const float *params, const tn_ops *ops) {
    memset(q, 0, sizeof *q);
    q->spec = *spec;
    q->ops = ops ? ops : tn_ops_cpu();
    q->layout = l;
    q->params = params;
    if ((spec->groups & (1u << TN_GROUP_HEAD)) && l->cfg.tied_embeddings)
        return tn_err("[quant] layers: the head of a tied-embedding model shares the embedding, which stays fp32; "
                      "drop 'head' or untie the model");
    q->tensor = calloc((size_t)l->n_tensors, sizeof *q->tensor);
    q->lookup = calloc((size_t)l->n_tensors, sizeof *q->lookup);
    q->off = calloc((size_t)l->n_tensors, sizeof *q->off);
    if (!q->tensor || !q->lookup || !q->off) return tn_err("out of memory");
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        q->lookup[i] = -1;
        if (!tn_quant_selects(spec, t)) continue;
        q->lookup[i] = q->n_q;
        q->tensor[q->n_q] = i;
        q->off[q->n_q] = q->total;
        q->n_q++;
        q->total += t->numel;
    }
    if (q->n_q == 0) return tn_err("[quant] layers selects no tensor");
    size_t total;
    int64_t max_rows;
    count(spec, l, &total, &max_rows);
    q->wq = q->ops->alloc(q->total * sizeof(float));
    q->idx = q->ops->alloc(q->total);
    q->scales = q->ops->alloc((size_t)max_rows * sizeof(float));
    if (q->ops->device_memory && q->wq && q->idx && q->scales) q->host_idx = tn_alloc(q->total, 1);
    return q->wq && q->idx && q->scales && (q->host_idx || !q->ops->device_memory) ? 0 : -1;
}

void tn_ste_quantizer_free(tn_ste_quantizer *q) {
    free(q->tensor);
    free(q->lookup);
    free(q->off);
    if (q->ops) {
        q->ops->free(q->wq);
        q->ops->free(q->idx);
        q->ops->free(q->scales);
    }
    tn_free(q->host_idx);
    memset(q, 0, sizeof *q);
}

int tn_ste_quantizer_update(tn_ste_quantizer *q, float lambda) {
    q->lambda = lambda;
    for (int k = 0; k < q->n_q; k++) {
        const tn_tensor_info *t = &q->layout->tensors[q->tensor[k]];
        const float *W = q->params + t->offset;
        float *wq = q->wq + q->off[k];
        if (q->ops->quantize(W, t->shape[0], t->shape[1], &q->spec.grid, (int)q->spec.rule, q->spec.per_row, wq,
                             q->idx + q->off[k], q->scales) != 0)
            return tn_err_prefix("%s", t->name);
        TN_CHECK(q->ops->ste_blend(W, wq, (int64_t)t->numel, lambda, wq));
    }
    return 0;
}

const uint8_t *tn_ste_quantizer_indices(tn_ste_quantizer *q) {
    if (!q->host_idx) return q->idx;
    if (q->ops->download(q->host_idx, q->idx, q->total) != 0) return NULL;
    return q->host_idx;
}

void tn_ste_quantizer_attach(tn_ste_quantizer *q, tn_llama *m) {
    tn_weight_source src = {ste_weight, NULL, q->spec.act_bits, ste_is_quantized, q, NULL};
    tn_llama_set_weight_source(m, &src);
    tn_llama_set_head_via_source(m, (q->spec.groups & (1u << TN_GROUP_HEAD)) != 0);
}
