#include "train/ste_quantizer.h"

#include "core/alloc.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* W_f of quantized slot k in bf16 mode: the shadow widened into wf, snapped into out (idx1, scales as
 * scratch), blended with λ. */
static int materialize_bf16(tn_ste_quantizer *q, int k, float *out) {
    const tn_tensor_info *t = &q->layout->tensors[q->tensor[k]];
    const int64_t n = (int64_t)t->numel;
    TN_CHECK(q->ops->bf16_to_f32(q->wf, q->shadow + q->off[k], n));
    if (q->ops->quantize(q->wf, t->shape[0], t->shape[1], &q->spec.grid, (int)q->spec.rule, q->spec.per_row, out,
                         q->idx1, q->scales) != 0)
        return tn_err_prefix("%s", t->name);
    return q->ops->ste_blend(q->wf, out, n, q->lambda, out);
}

static const float *ste_weight(void *vctx, int layer, tn_linear_kind kind, float *scratch) {
    tn_ste_quantizer *q = vctx;
    int i = tn_llama_layout_index(q->layout, layer, (int)kind);
    int k = q->lookup[i];
    if (k < 0) return q->params + q->layout->tensors[i].offset;
    if (!q->bf16) return q->wq + q->off[k];
    return materialize_bf16(q, k, scratch) == 0 ? scratch : NULL;
}

/* bf16 mode: dW (already weighted by the micro-batch's share) is rounded into the bf16 gradient sum; a
 * matrix the spec leaves in float accumulates into the run's fp32 gradients, as dense training would. */
static int ste_weight_grad(void *vctx, int layer, tn_linear_kind kind, const float *G) {
    tn_ste_quantizer *q = vctx;
    const int i = tn_llama_layout_index(q->layout, layer, (int)kind), k = q->lookup[i];
    const tn_tensor_info *t = &q->layout->tensors[i];
    if (k >= 0) return q->ops->bf16_accumulate(q->grad + q->off[k], G, (int64_t)t->numel);
    if (!q->float_grads) return tn_err("STE: no gradient buffer for %s", t->name);
    return q->ops->add(q->float_grads + t->offset, G, (int64_t)t->numel);
}

static int ste_is_quantized(void *vctx, int layer, tn_linear_kind kind) {
    tn_ste_quantizer *q = vctx;
    return q->lookup[tn_llama_layout_index(q->layout, layer, (int)kind)] >= 0;
}

/* Quantized weights, the largest such tensor and the largest row count among them. */
static void count(const tn_quant_spec *spec, const tn_llama_layout *l, size_t *total, size_t *largest,
                  int64_t *max_rows) {
    *total = *largest = 0;
    *max_rows = 1;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        if (!tn_quant_selects(spec, t)) continue;
        *total += t->numel;
        if (t->numel > *largest) *largest = t->numel;
        if (t->shape[0] > *max_rows) *max_rows = t->shape[0];
    }
}

int64_t tn_ste_quantizer_plan_bytes(const tn_quant_spec *spec, const tn_llama_layout *l, int bf16, int64_t parts[3]) {
    size_t total, largest;
    int64_t max_rows, p[3];
    count(spec, l, &total, &largest, &max_rows);
    const int64_t T = (int64_t)total, f = (int64_t)sizeof(float), rows = tn_ops_span(max_rows * f);
    if (bf16) {
        p[0] = tn_ops_span(2 * T);
        p[1] = tn_ops_span(2 * T);
        p[2] = tn_ops_span((int64_t)largest * f) + tn_ops_span((int64_t)largest) + rows;
    } else {
        p[0] = tn_ops_span(T * f);
        p[1] = tn_ops_span(T);
        p[2] = rows;
    }
    if (parts) memcpy(parts, p, sizeof p);
    return p[0] + p[1] + p[2];
}

/* Slots of the selected tensors (both modes). */
static int index_tensors(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *l,
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
    int64_t max_rows = 1;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        q->lookup[i] = -1;
        if (!tn_quant_selects(spec, t)) continue;
        q->lookup[i] = q->n_q;
        q->tensor[q->n_q] = i;
        q->off[q->n_q] = q->total;
        q->n_q++;
        q->total += t->numel;
        if (t->numel > q->largest) q->largest = t->numel;
        if (t->shape[0] > max_rows) max_rows = t->shape[0];
    }
    if (q->n_q == 0) return tn_err("[quant] layers selects no tensor");
    q->scales = q->ops->alloc((size_t)max_rows * sizeof(float));
    return q->scales ? 0 : -1;
}

int tn_ste_quantizer_init(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *l,
                          const float *params, const tn_ops *ops) {
    TN_CHECK(index_tensors(q, spec, l, params, ops));
    for (int k = 0; k < q->n_q; k++)
        if (l->tensors[q->tensor[k]].external) return tn_err("STE: %s has no fp32 shadow", l->tensors[q->tensor[k]].name);
    q->wq = q->ops->alloc(q->total * sizeof(float));
    q->idx = q->ops->alloc(q->total);
    return q->wq && q->idx ? 0 : -1;
}

int tn_ste_quantizer_externalize(const tn_quant_spec *spec, tn_llama_layout *l) {
    uint8_t *ext = calloc((size_t)l->n_tensors, 1);
    if (!ext) return tn_err("out of memory");
    for (int i = 0; i < l->n_tensors; i++) ext[i] = l->tensors[i].external || tn_quant_selects(spec, &l->tensors[i]);
    int rc = tn_llama_layout_set_external(l, ext);
    free(ext);
    return rc;
}

int tn_ste_quantizer_init_bf16(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *l,
                               const float *params, const tn_ops *ops, const float *host_init,
                               const tn_llama_layout *dense) {
    TN_CHECK(index_tensors(q, spec, l, params, ops));
    q->bf16 = 1;
    if (!dense || dense->n_tensors != l->n_tensors) return tn_err("STE bf16: no dense layout for the initial values");
    q->shadow = q->ops->alloc(q->total * sizeof(uint16_t));
    q->wf = q->ops->alloc(q->largest * sizeof(float));
    if (!q->shadow || !q->wf) return -1;
    for (int k = 0; k < q->n_q; k++) {
        const tn_tensor_info *t = &dense->tensors[q->tensor[k]];
        TN_CHECK(q->ops->upload(q->wf, host_init + t->offset, t->numel * sizeof(float)));
        TN_CHECK(q->ops->bf16_from_f32(q->shadow + q->off[k], q->wf, (int64_t)t->numel));
    }
    return 0;
}

int tn_ste_quantizer_finish_bf16(tn_ste_quantizer *q, float *float_grads) {
    q->float_grads = float_grads;
    q->grad = q->ops->alloc(q->total * sizeof(uint16_t));
    q->idx1 = q->ops->alloc(q->largest);
    if (!q->grad || !q->idx1) return -1;
    return q->ops->zero(q->grad, q->total * sizeof(uint16_t));
}

void tn_ste_quantizer_free(tn_ste_quantizer *q) {
    free(q->tensor);
    free(q->lookup);
    free(q->off);
    if (q->ops) {
        q->ops->free(q->wq);
        q->ops->free(q->idx);
        q->ops->free(q->scales);
        q->ops->free(q->shadow);
        q->ops->free(q->grad);
        q->ops->free(q->wf);
        q->ops->free(q->idx1);
    }
    memset(q, 0, sizeof *q);
}

int tn_ste_quantizer_update(tn_ste_quantizer *q, float lambda) {
    q->lambda = lambda;
    if (q->bf16) return 0;
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

int tn_ste_quantizer_tensor_indices(tn_ste_quantizer *q, int k, uint8_t *host_out) {
    const tn_tensor_info *t = &q->layout->tensors[q->tensor[k]];
    const uint8_t *src = q->idx + (q->idx ? q->off[k] : 0);
    if (q->bf16) {
        TN_CHECK(q->ops->bf16_to_f32(q->wf, q->shadow + q->off[k], (int64_t)t->numel));
        if (q->ops->quantize(q->wf, t->shape[0], t->shape[1], &q->spec.grid, (int)q->spec.rule, q->spec.per_row, NULL,
                             q->idx1, q->scales) != 0)
            return tn_err_prefix("%s", t->name);
        src = q->idx1;
    }
    return q->ops->download(host_out, src, t->numel);
}

int tn_ste_quantizer_shadow_values(tn_ste_quantizer *q, int i, float *host_out) {
    const int k = i >= 0 && i < q->layout->n_tensors ? q->lookup[i] : -1;
    if (!q->bf16 || k < 0) return 0;
    const size_t n = q->layout->tensors[i].numel;
    TN_CHECK(q->ops->bf16_to_f32(q->wf, q->shadow + q->off[k], (int64_t)n));
    TN_CHECK(q->ops->download(host_out, q->wf, n * sizeof(float)));
    return 1;
}

void tn_ste_quantizer_attach(tn_ste_quantizer *q, tn_llama *m) {
    tn_weight_source src = {ste_weight, q->bf16 ? ste_weight_grad : NULL, q->spec.act_bits, ste_is_quantized, q, NULL};
    tn_llama_set_weight_source(m, &src);
    tn_llama_set_head_via_source(m, (q->spec.groups & (1u << TN_GROUP_HEAD)) != 0);
}
