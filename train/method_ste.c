/* STE evolution ("Prime Harmonic evolution"): fp32 shadow weights W; the forward uses
 * W_f = W + λ(W_q − W) with W_q = s·grid[nearest(W/s)] for the selected layers; the gradient passes
 * straight through to W (the weight source has no weight_grad, so dL/dW_f accumulates into W's grads);
 * AdamW updates W. Telemetry: λ, the share of quantized weights whose grid point changed since the last
 * log line, and the histogram of grid points per layer group. */
#include "train/quant_spec.h"
#include "train/run.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/json.h"
#include "optim/ste.h"
#include "quant/snap.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    tn_run *r;
    tn_quant_spec spec;
    int n_q;              /* quantized tensors */
    int *tensor;          /* [n_q] layout index */
    int *lookup;          /* [n_tensors] quantized slot or -1 */
    size_t *off;          /* [n_q] offset into wq / idx */
    size_t total;         /* quantized weights */
    float *wq;            /* [total] blended weights the forward uses */
    uint8_t *idx, *prev;  /* [total] grid indices now / at the last log line */
    float *scales;        /* [max rows] scratch */
    int have_prev;
    float lambda;
} ste_ctx;

static const float *ste_weight(void *vctx, int layer, tn_linear_kind kind, float *scratch) {
    ste_ctx *c = vctx;
    (void)scratch;
    int i = tn_llama_layout_index(&c->r->layout, layer, (int)kind);
    int q = c->lookup[i];
    return q >= 0 ? c->wq + c->off[q] : c->r->params + c->r->layout.tensors[i].offset;
}

static int ste_is_quantized(void *vctx, int layer, tn_linear_kind kind) {
    ste_ctx *c = vctx;
    return c->lookup[tn_llama_layout_index(&c->r->layout, layer, (int)kind)] >= 0;
}

/* Snap every quantized tensor and blend with its shadow weight using λ. */
static int materialize(ste_ctx *c, float lambda) {
    c->lambda = lambda;
    for (int q = 0; q < c->n_q; q++) {
        const tn_tensor_info *t = &c->r->layout.tensors[c->tensor[q]];
        const float *W = c->r->params + t->offset;
        float *wq = c->wq + c->off[q];
        if (tn_quantize_tensor(W, t->shape[0], t->shape[1], &c->spec.grid, c->spec.rule, c->spec.per_row, wq,
                               c->idx + c->off[q], c->scales) != 0)
            return tn_err_prefix("%s", t->name);
        tn_ste_blend(W, wq, (int64_t)t->numel, lambda, wq);
    }
    return 0;
}

static int ste_begin_step(tn_run *r, void *vctx) {
    ste_ctx *c = vctx;
    return materialize(c, (float)tn_lambda_ramp(r->step + 1, c->spec.lambda_warmup_steps));
}

/* Evaluation sees the fully snapped model (λ = 1); the next step re-materialises with its own λ. */
static int ste_prepare_eval(tn_run *r, void *vctx) {
    (void)r;
    return materialize(vctx, 1.0f);
}

static void ste_log(tn_run *r, void *vctx, cJSON *o) {
    ste_ctx *c = vctx;
    tn_json_add_num(o, "lambda", c->lambda);
    if (c->have_prev) {
        int64_t changed = 0;
        for (size_t i = 0; i < c->total; i++) changed += c->idx[i] != c->prev[i];
        tn_json_add_num(o, "grid_changed", (double)changed / (double)c->total);
    }
    memcpy(c->prev, c->idx, c->total);
    c->have_prev = 1;
    /* Histogram of grid points per layer group. */
    static const struct {
        tn_param_group g;
        const char *key;
    } groups[] = {{TN_GROUP_ATTN, "hist_attn"}, {TN_GROUP_MLP, "hist_mlp"}, {TN_GROUP_HEAD, "hist_head"}};
    for (size_t k = 0; k < 3; k++) {
        int64_t hist[TN_GRID_MAX] = {0};
        int any = 0;
        for (int q = 0; q < c->n_q; q++) {
            const tn_tensor_info *t = &r->layout.tensors[c->tensor[q]];
            if (t->group != groups[k].g) continue;
            any = 1;
            const uint8_t *ix = c->idx + c->off[q];
            for (size_t i = 0; i < t->numel; i++) hist[ix[i]]++;
        }
        if (!any) continue;
        cJSON *arr = cJSON_CreateArray();
        for (int j = 0; j < c->spec.grid.n; j++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)hist[j]));
        cJSON_AddItemToObject(o, groups[k].key, arr);
    }
}

static int ste_save(void *vctx, hid_t g) {
    ste_ctx *c = vctx;
    TN_CHECK(tn_quant_spec_save(&c->spec, g));
    /* The telemetry baseline, so a resumed run logs the same grid_changed values. */
    int64_t n = (int64_t)c->total;
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "have_prev", c->have_prev));
    return tn_h5_write(g, "prev_idx", TN_H5_U8, 1, &n, c->prev, 4);
}

static int ste_load(void *vctx, hid_t g) {
    ste_ctx *c = vctx;
    tn_quant_spec saved;
    TN_CHECK(tn_quant_spec_load(&saved, g));
    if (!tn_grid_equal(&saved.grid, &c->spec.grid) || saved.rule != c->spec.rule || saved.per_row != c->spec.per_row ||
        saved.groups != c->spec.groups)
        return tn_err("the checkpoint's [quant] grid, scale or layers differ from the config");
    int64_t n = (int64_t)c->total, hp;
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "have_prev", &hp));
    c->have_prev = hp != 0;
    return tn_h5_read(g, "prev_idx", TN_H5_U8, 1, &n, c->prev);
}

static void ste_destroy(void *vctx) {
    ste_ctx *c = vctx;
    if (!c) return;
    free(c->tensor);
    free(c->lookup);
    free(c->off);
    tn_free(c->wq);
    tn_free(c->idx);
    tn_free(c->prev);
    tn_free(c->scales);
    free(c);
}

int tn_method_ste_init(tn_run *r, tn_method *m) {
    ste_ctx *c = calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    c->r = r;
    memset(m, 0, sizeof *m);
    m->ctx = c;
    m->destroy = ste_destroy;
    TN_CHECK(tn_quant_spec_from_config(r->ini, &c->spec));
    const tn_llama_layout *l = &r->layout;
    if ((c->spec.groups & (1u << TN_GROUP_HEAD)) && l->cfg.tied_embeddings)
        return tn_err("[quant] layers: the head of a tied-embedding model shares the embedding, which stays fp32; "
                      "drop 'head' or untie the model");
    c->tensor = calloc((size_t)l->n_tensors, sizeof *c->tensor);
    c->lookup = calloc((size_t)l->n_tensors, sizeof *c->lookup);
    c->off = calloc((size_t)l->n_tensors, sizeof *c->off);
    if (!c->tensor || !c->lookup || !c->off) return tn_err("out of memory");
    int64_t max_rows = 1;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        c->lookup[i] = -1;
        if (!tn_quant_selects(&c->spec, t)) continue;
        c->lookup[i] = c->n_q;
        c->tensor[c->n_q] = i;
        c->off[c->n_q] = c->total;
        c->n_q++;
        c->total += t->numel;
        if (t->shape[0] > max_rows) max_rows = t->shape[0];
    }
    if (c->n_q == 0) return tn_err("[quant] layers selects no tensor");
    c->wq = tn_alloc(c->total, sizeof(float));
    c->idx = tn_alloc(c->total, 1);
    c->prev = tn_alloc(c->total, 1);
    c->scales = tn_alloc((size_t)max_rows, sizeof(float));
    if (!c->wq || !c->idx || !c->prev || !c->scales) return -1;

    m->name = "ste";
    m->begin_step = ste_begin_step;
    m->prepare_eval = ste_prepare_eval;
    m->log_step = ste_log;
    m->hook = (tn_ckpt_hook){"quant", ste_save, ste_load, c};
    tn_weight_source src = {ste_weight, NULL, c->spec.act_bits, ste_is_quantized, c};
    tn_llama_set_weight_source(r->model, &src);
    tn_llama_set_head_via_source(r->model, (c->spec.groups & (1u << TN_GROUP_HEAD)) != 0);
    return 0;
}
