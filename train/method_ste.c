/* STE evolution ("Prime Harmonic evolution") in the training loop: the quantizer (train/ste_quantizer.h)
 * supplies W + λ(W_q − W) to the forward, gradients reach the fp32 shadow weights unchanged, AdamW
 * updates them. Telemetry: λ, the share of quantized weights whose grid point changed since the last log
 * line, and the histogram of grid points per layer group. */
#include "train/run.h"
#include "train/ste_quantizer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    tn_ste_quantizer q;
    uint8_t *prev; /* grid indices at the last log line */
    int have_prev;
} ste_ctx;

static int ste_begin_step(tn_run *r, void *vctx) {
    ste_ctx *c = vctx;
    return tn_ste_quantizer_update(&c->q, (float)tn_lambda_ramp(r->step + 1, c->q.spec.lambda_warmup_steps));
}

/* Evaluation sees the fully snapped model (λ = 1); the next step re-materialises with its own λ. */
static int ste_prepare_eval(tn_run *r, void *vctx) {
    (void)r;
    ste_ctx *c = vctx;
    return tn_ste_quantizer_update(&c->q, 1.0f);
}

static void ste_log(tn_run *r, void *vctx, cJSON *o) {
    ste_ctx *c = vctx;
    tn_ste_quantizer *q = &c->q;
    tn_json_add_num(o, "lambda", q->lambda);
    const uint8_t *idx = tn_ste_quantizer_indices(q); /* host memory, downloaded on a device */
    if (!idx) return; /* a device error; the next step reports it */
    if (c->have_prev) {
        int64_t changed = 0;
        for (size_t i = 0; i < q->total; i++) changed += idx[i] != c->prev[i];
        tn_json_add_num(o, "grid_changed", (double)changed / (double)q->total);
    }
    memcpy(c->prev, idx, q->total);
    c->have_prev = 1;
    static const struct {
        tn_param_group g;
        const char *key;
    } groups[] = {{TN_GROUP_ATTN, "hist_attn"}, {TN_GROUP_MLP, "hist_mlp"}, {TN_GROUP_HEAD, "hist_head"}};
    for (size_t k = 0; k < 3; k++) {
        int64_t hist[TN_GRID_MAX] = {0};
        int any = 0;
        for (int j = 0; j < q->n_q; j++) {
            const tn_tensor_info *t = &r->layout.tensors[q->tensor[j]];
            if (t->group != groups[k].g) continue;
            any = 1;
            const uint8_t *ix = idx + q->off[j];
            for (size_t i = 0; i < t->numel; i++) hist[ix[i]]++;
        }
        if (!any) continue;
        cJSON *arr = cJSON_CreateArray();
        for (int j = 0; j < q->spec.grid.n; j++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)hist[j]));
        cJSON_AddItemToObject(o, groups[k].key, arr);
    }
}

static int ste_save(void *vctx, hid_t g) {
    ste_ctx *c = vctx;
    TN_CHECK(tn_quant_spec_save(&c->q.spec, g));
    /* The telemetry baseline, so a resumed run logs the same grid_changed values. */
    int64_t n = (int64_t)c->q.total;
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "have_prev", c->have_prev));
    return tn_h5_write(g, "prev_idx", TN_H5_U8, 1, &n, c->prev, 4);
}

static int ste_load(void *vctx, hid_t g) {
    ste_ctx *c = vctx;
    const tn_quant_spec *s = &c->q.spec;
    tn_quant_spec saved;
    TN_CHECK(tn_quant_spec_load(&saved, g));
    if (!tn_grid_equal(&saved.grid, &s->grid) || saved.rule != s->rule || saved.per_row != s->per_row ||
        saved.groups != s->groups)
        return tn_err("the checkpoint's [quant] grid, scale or layers differ from the config");
    int64_t n = (int64_t)c->q.total, hp;
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "have_prev", &hp));
    c->have_prev = hp != 0;
    return tn_h5_read(g, "prev_idx", TN_H5_U8, 1, &n, c->prev);
}

static void ste_destroy(void *vctx) {
    ste_ctx *c = vctx;
    if (!c) return;
    tn_ste_quantizer_free(&c->q);
    tn_free(c->prev);
    free(c);
}

int tn_method_ste_plan(tn_run *r, tn_method *m) {
    tn_quant_spec spec;
    TN_CHECK(tn_quant_spec_from_config(r->ini, &spec));
    memset(m, 0, sizeof *m);
    m->name = "ste";
    m->state_bytes = tn_ste_quantizer_plan_bytes(&spec, &r->layout);
    return 0;
}

int tn_method_ste_init(tn_run *r, tn_method *m) {
    ste_ctx *c = calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    const int64_t planned = m->state_bytes;
    memset(m, 0, sizeof *m);
    m->ctx = c;
    m->destroy = ste_destroy;
    m->state_bytes = planned;
    tn_quant_spec spec;
    TN_CHECK(tn_quant_spec_from_config(r->ini, &spec));
    TN_CHECK(tn_ste_quantizer_init(&c->q, &spec, &r->layout, r->params, r->ops));
    if (!(c->prev = tn_alloc(c->q.total, 1))) return -1;
    m->name = "ste";
    m->begin_step = ste_begin_step;
    m->prepare_eval = ste_prepare_eval;
    m->log_step = ste_log;
    m->hook = (tn_ckpt_hook){"quant", ste_save, ste_load, c};
    tn_ste_quantizer_attach(&c->q, r->model);
    return 0;
}
