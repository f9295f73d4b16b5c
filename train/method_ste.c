/* STE evolution ("Prime Harmonic evolution") in the training loop: the quantizer (train/ste_quantizer.h)
 * supplies W + λ(W_q − W) to the forward, gradients reach the shadow weights unchanged, AdamW updates them.
 *   [quant] shadow = fp32: the shadows are the run's float parameters (the dense AdamW step updates them).
 *   [quant] shadow = bf16: the shadows and their gradients are bf16 arrays of the quantizer, the quantized
 *   tensors are external in the run's layout (no fp32 copy), and this method steps them with AdamW on bf16
 *   (optim/adamw_bf16.h: the update in fp32, stochastic rounding back to bf16) and their own moments (fp32 or
 *   8-bit, [optim] state_bits). Checkpoints store the shadows under /params as float (exact), so eval, export
 *   and [model] init read them like any other.
 * Telemetry: λ, the share of quantized weights whose grid point changed since the last log line (in bf16
 * mode measured on every 16th weight of each tensor), and the histogram of grid points per layer group. */
#include "train/run.h"
#include "train/ste_quantizer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/json.h"
#include "kernels/bf16.h"
#include "optim/adamw.h"

#include <stdlib.h>
#include <string.h>

/* grid_changed's sample in bf16 mode: every 16th weight of each tensor (fp32 mode: every weight). */
#define STE_BF16_TELEMETRY_STRIDE 16

typedef struct {
    tn_ste_quantizer q;
    int bf16;
    tn_adam_state opt;   /* bf16 mode: the shadows' moments */
    int64_t stride;      /* telemetry sample stride */
    int64_t n_sample;    /* sampled weights */
    uint8_t *prev;       /* [n_sample] grid indices at the last log line (host) */
    uint8_t *host_idx;   /* [largest] one tensor's indices (host) */
    int have_prev;
    int loaded;          /* a checkpoint's /quant was read */
    int64_t seed;        /* the run's seed, for the stochastic rounding */
} ste_ctx;

static int ste_begin_step(tn_run *r, void *vctx) {
    ste_ctx *c = vctx;
    if (c->bf16) TN_CHECK(r->ops->zero(c->q.grad, c->q.total * sizeof(uint16_t)));
    return tn_ste_quantizer_update(&c->q, (float)tn_lambda_ramp(r->step + 1, c->q.spec.lambda_warmup_steps));
}

/* Evaluation sees the fully snapped model (λ = 1); the next step re-materialises with its own λ. */
static int ste_prepare_eval(tn_run *r, void *vctx) {
    (void)r;
    ste_ctx *c = vctx;
    return tn_ste_quantizer_update(&c->q, 1.0f);
}

/* Data parallel, bf16 mode: the shadows' bf16 gradients summed over the ranks (in float, rounded once). */
static int ste_reduce(tn_run *r, void *vctx) {
    ste_ctx *c = vctx;
    return tn_comm_sum(r->comm, c->q.grad, (int64_t)c->q.total, TN_COMM_BF16);
}

static int ste_grad_sumsq(tn_run *r, void *vctx, double *ss) {
    ste_ctx *c = vctx;
    return r->ops->bf16_sumsq(c->q.grad, (int64_t)c->q.total, ss);
}

/* bf16 mode's optimizer step: dense AdamW on the float parameters, then AdamW on each bf16 shadow with the
 * clip factor applied to its bf16 gradient, rounded stochastically with the bits of (the run's seed and
 * step, the weight's index in the shadow array). */
static int ste_bf16_step(tn_run *r, void *vctx, double lr) {
    ste_ctx *c = vctx;
    TN_CHECK(tn_run_adamw_params(r, lr, 0));
    tn_adamw_hparams h = r->adam;
    h.lr = (float)lr;
    const tn_adamw_step st = tn_adamw_step_of(&h, r->step, 1); /* quantized matrices are decayed */
    const uint64_t seed = tn_bf16_mix64((uint64_t)c->seed ^ 0x5b16aa7e0c0ffee5ull) ^ tn_bf16_mix64((uint64_t)r->step);
    for (int k = 0; k < c->q.n_q; k++) {
        const tn_adam_moments mo = tn_adam_state_moments(&c->opt, k);
        const int64_t n = (int64_t)r->layout.tensors[c->q.tensor[k]].numel;
        TN_CHECK(r->ops->adamw_bf16(c->q.shadow + c->q.off[k], c->q.grad + c->q.off[k], (float)r->grad_scale, &mo, n,
                                    &st, seed, (uint64_t)c->q.off[k]));
    }
    return 0;
}

static void ste_log(tn_run *r, void *vctx, cJSON *o) {
    ste_ctx *c = vctx;
    tn_ste_quantizer *q = &c->q;
    tn_json_add_num(o, "lambda", q->lambda);
    static const struct {
        tn_param_group g;
        const char *key;
    } groups[] = {{TN_GROUP_ATTN, "hist_attn"}, {TN_GROUP_MLP, "hist_mlp"}, {TN_GROUP_HEAD, "hist_head"}};
    int64_t hist[3][TN_GRID_MAX] = {{0}}, changed = 0, s = 0;
    int any[3] = {0};
    for (int k = 0; k < q->n_q; k++) {
        const tn_tensor_info *t = &r->layout.tensors[q->tensor[k]];
        if (tn_ste_quantizer_tensor_indices(q, k, c->host_idx) != 0) return; /* a device error; the step reports it */
        for (size_t i = 0; i < t->numel; i += (size_t)c->stride, s++) {
            changed += c->have_prev && c->prev[s] != c->host_idx[i];
            c->prev[s] = c->host_idx[i];
        }
        for (int j = 0; j < 3; j++) {
            if (t->group != groups[j].g) continue;
            any[j] = 1;
            for (size_t i = 0; i < t->numel; i++) hist[j][c->host_idx[i]]++;
        }
    }
    if (c->have_prev) tn_json_add_num(o, "grid_changed", (double)changed / (double)c->n_sample);
    c->have_prev = 1;
    for (int j = 0; j < 3; j++) {
        if (!any[j]) continue;
        cJSON *arr = cJSON_CreateArray();
        for (int v = 0; v < q->spec.grid.n; v++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)hist[j][v]));
        cJSON_AddItemToObject(o, groups[j].key, arr);
    }
}

/* A bf16 run keeps its shadows and their moments under /quant: a checkpoint without it (a dense run's) would
 * leave them at their initial values. Start such a run with [model] init instead. */
static int ste_after_resume(tn_run *r, void *vctx, const char *path) {
    (void)r;
    ste_ctx *c = vctx;
    if (c->bf16 && !c->loaded)
        return tn_err("%s has no STE state (/quant): a [quant] shadow = bf16 run resumes only from its own "
                      "checkpoints; start from another with [model] init",
                      path);
    return 0;
}

static int ste_external_values(void *vctx, int tensor, float *host_out) {
    ste_ctx *c = vctx;
    return tn_ste_quantizer_shadow_values(&c->q, tensor, host_out);
}

/* ---- checkpoints: /quant (the spec, the telemetry baseline; bf16 mode: the shadows' moments) -------- */

static const char **shadow_names(const ste_ctx *c) {
    const char **names = malloc((size_t)c->q.n_q * sizeof *names);
    if (!names) return NULL;
    for (int k = 0; k < c->q.n_q; k++) names[k] = c->q.layout->tensors[c->q.tensor[k]].name;
    return names;
}

/* fp32 moments of the shadows: quant/adam_m/<name>, quant/adam_v/<name>, through a host buffer. */
static int moments32_io(ste_ctx *c, hid_t g, int save) {
    float *buf = tn_alloc(c->q.largest, sizeof(float));
    if (!buf) return -1;
    int rc = 0;
    char path[200];
    for (int k = 0; k < c->q.n_q && rc == 0; k++) {
        const tn_tensor_info *t = &c->q.layout->tensors[c->q.tensor[k]];
        const tn_adam_moments mo = tn_adam_state_moments(&c->opt, k);
        float *arr[2] = {mo.m, mo.v};
        for (int j = 0; j < 2 && rc == 0; j++) {
            snprintf(path, sizeof path, "%s/%s", j ? "adam_v" : "adam_m", t->name);
            if (save) {
                rc = c->q.ops->download(buf, arr[j], t->numel * sizeof(float));
                if (rc == 0) rc = tn_h5_write(g, path, TN_H5_F32, t->rank, t->shape, buf, 0);
            } else {
                rc = tn_h5_read(g, path, TN_H5_F32, t->rank, t->shape, buf);
                if (rc == 0) rc = c->q.ops->upload(arr[j], buf, t->numel * sizeof(float));
            }
        }
    }
    tn_free(buf);
    return rc;
}

/* 8-bit moments of the shadows: quant/adam8/<name>/... (train/adam_state.h). */
static int moments8_io(ste_ctx *c, hid_t g, int save) {
    hid_t sub;
    TN_CHECK(tn_h5_group(g, "adam8", &sub));
    const char **names = shadow_names(c);
    int rc = !names     ? tn_err("out of memory")
             : save     ? tn_adam_state_save8(&c->opt, sub, names)
                        : tn_adam_state_load8(&c->opt, sub, names);
    free(names);
    H5Gclose(sub);
    return rc;
}

static int ste_save(void *vctx, hid_t g) {
    ste_ctx *c = vctx;
    TN_CHECK(tn_quant_spec_save(&c->q.spec, g));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "shadow", c->bf16 ? "bf16" : "fp32"));
    /* The telemetry baseline, so a resumed run logs the same grid_changed values. */
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "have_prev", c->have_prev));
    TN_CHECK(tn_h5_write(g, "prev_idx", TN_H5_U8, 1, &c->n_sample, c->prev, 4));
    if (!c->bf16) return 0;
    return c->opt.bits == 32 ? moments32_io(c, g, 1) : moments8_io(c, g, 1);
}

/* bf16 mode: the shadows from /params (float values that must be bf16 exactly: a checkpoint of this mode). */
static int load_shadows(ste_ctx *c, hid_t g) {
    tn_ste_quantizer *q = &c->q;
    float *buf = tn_alloc(q->largest, sizeof(float));
    if (!buf) return -1;
    int rc = 0;
    char path[200];
    for (int k = 0; k < q->n_q && rc == 0; k++) {
        const tn_tensor_info *t = &q->layout->tensors[q->tensor[k]];
        snprintf(path, sizeof path, "/params/%s", t->name);
        rc = tn_h5_read(g, path, TN_H5_F32, t->rank, t->shape, buf);
        for (size_t i = 0; rc == 0 && i < t->numel; i++)
            if (!(tn_bf16_widen(tn_bf16_round_nearest(buf[i])) == buf[i]))
                rc = tn_err("%s: element %zu = %g is not a bf16 value", path, i, buf[i]);
        if (rc == 0) rc = q->ops->upload(q->wf, buf, t->numel * sizeof(float));
        if (rc == 0) rc = q->ops->bf16_from_f32(q->shadow + q->off[k], q->wf, (int64_t)t->numel);
    }
    tn_free(buf);
    return rc;
}

static int ste_load(void *vctx, hid_t g) {
    ste_ctx *c = vctx;
    const tn_quant_spec *s = &c->q.spec;
    tn_quant_spec saved;
    TN_CHECK(tn_quant_spec_load(&saved, g));
    if (!tn_grid_equal(&saved.grid, &s->grid) || saved.rule != s->rule || saved.per_row != s->per_row ||
        saved.groups != s->groups)
        return tn_err("the checkpoint's [quant] grid, scale or layers differ from the config");
    char shadow[16] = "fp32"; /* checkpoints from before [quant] shadow have fp32 shadows */
    if (tn_h5_attr_has(g, ".", "shadow")) TN_CHECK(tn_h5_attr_get_str(g, ".", "shadow", shadow, sizeof shadow));
    if (strcmp(shadow, c->bf16 ? "bf16" : "fp32") != 0)
        return tn_err("the checkpoint's shadow weights are %s, the run's [quant] shadow = %s", shadow,
                      c->bf16 ? "bf16" : "fp32");
    int64_t hp;
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "have_prev", &hp));
    c->have_prev = hp != 0;
    TN_CHECK(tn_h5_read(g, "prev_idx", TN_H5_U8, 1, &c->n_sample, c->prev));
    c->loaded = 1;
    if (!c->bf16) return 0;
    TN_CHECK(load_shadows(c, g));
    if (c->opt.bits == 32) {
        if (!tn_h5_exists(g, "adam_m")) return tn_err("the checkpoint's shadow moments are 8-bit, the run's [optim] state_bits = 32");
        return moments32_io(c, g, 0);
    }
    if (!tn_h5_exists(g, "adam8")) return tn_err("the checkpoint's shadow moments are 32-bit, the run's [optim] state_bits = 8");
    return moments8_io(c, g, 0);
}

static void ste_destroy(void *vctx) {
    ste_ctx *c = vctx;
    if (!c) return;
    tn_ste_quantizer_free(&c->q);
    tn_adam_state_free(&c->opt);
    tn_free(c->prev);
    tn_free(c->host_idx);
    free(c);
}

/* [quant] shadow: 1 for bf16, 0 for fp32. */
static int read_shadow(tn_run *r, int *bf16) {
    const char *s = tn_config_str(r->ini, "quant", "shadow", "fp32");
    if (!strcmp(s, "fp32")) *bf16 = 0;
    else if (!strcmp(s, "bf16")) *bf16 = 1;
    else return tn_err("[quant] shadow: '%s' is not fp32 or bf16", s);
    return 0;
}

/* The shadows' element counts (bf16 mode's AdamW arrays), in slot order. */
static int64_t *shadow_lengths(const tn_quant_spec *spec, const tn_llama_layout *l, int *n) {
    int64_t *len = malloc((size_t)l->n_tensors * sizeof *len);
    *n = 0;
    if (!len) return NULL;
    for (int i = 0; i < l->n_tensors; i++)
        if (tn_quant_selects(spec, &l->tensors[i])) len[(*n)++] = (int64_t)l->tensors[i].numel;
    return len;
}

/* The plan's STE components, added to the memory report (completed by the run's plan). */
static void report_memory(tn_run *r, int bf16, const int64_t parts[3], int64_t moments) {
    cJSON *mem = r->pending_log_line ? cJSON_GetObjectItemCaseSensitive(r->pending_log_line, "memory") : NULL;
    if (!mem) {
        cJSON_Delete(r->pending_log_line);
        r->pending_log_line = cJSON_CreateObject();
        mem = cJSON_AddObjectToObject(r->pending_log_line, "memory");
    }
    cJSON_AddStringToObject(mem, "ste_shadow", bf16 ? "bf16" : "fp32");
    cJSON_AddNumberToObject(mem, bf16 ? "ste_shadow_bytes" : "ste_wq_bytes", (double)parts[0]);
    cJSON_AddNumberToObject(mem, bf16 ? "ste_grad_bytes" : "ste_idx_bytes", (double)parts[1]);
    cJSON_AddNumberToObject(mem, "ste_scratch_bytes", (double)parts[2]);
    if (bf16) cJSON_AddNumberToObject(mem, "ste_moment_bytes", (double)moments);
}

int tn_method_ste_plan(tn_run *r, tn_method *m) {
    tn_quant_spec spec;
    int bf16 = 0;
    TN_CHECK(tn_quant_spec_from_config(r->ini, &spec));
    TN_CHECK(read_shadow(r, &bf16));
    memset(m, 0, sizeof *m);
    m->name = "ste";
    int64_t parts[3], moments = 0;
    m->state_bytes = tn_ste_quantizer_plan_bytes(&spec, &r->layout, bf16, parts);
    if (bf16) {
        int n;
        int64_t *len = shadow_lengths(&spec, &r->layout, &n);
        if (!len) return tn_err("out of memory");
        moments = tn_adam_state_plan_bytes(r->state_bits, len, NULL, n);
        free(len);
        m->state_bytes += moments;
        /* The quantized tensors leave the float buffers; host_init keeps the dense layout. */
        TN_CHECK(tn_llama_layout_copy(&r->dense_layout, &r->layout));
        TN_CHECK(tn_ste_quantizer_externalize(&spec, &r->layout));
    }
    report_memory(r, bf16, parts, moments);
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
    m->name = "ste";
    tn_quant_spec spec;
    TN_CHECK(tn_quant_spec_from_config(r->ini, &spec));
    TN_CHECK(read_shadow(r, &c->bf16));
    c->seed = r->seed;
    if (c->bf16) { /* the shadows now, from the host copy; their gradients and moments in tn_method_ste_attach */
        TN_CHECK(tn_ste_quantizer_init_bf16(&c->q, &spec, &r->layout, r->params, r->ops, r->host_init, &r->dense_layout));
        m->grad_sumsq = ste_grad_sumsq;
        m->reduce = ste_reduce;
        m->optimizer_step = ste_bf16_step;
        m->external_values = ste_external_values;
        m->after_resume = ste_after_resume;
    } else {
        TN_CHECK(tn_ste_quantizer_init(&c->q, &spec, &r->layout, r->params, r->ops));
    }
    m->begin_step = ste_begin_step;
    m->prepare_eval = ste_prepare_eval;
    m->log_step = ste_log;
    m->hook = (tn_ckpt_hook){"quant", ste_save, ste_load, c};
    return 0;
}

int tn_method_ste_attach(tn_run *r, tn_method *m) {
    ste_ctx *c = m->ctx;
    if (c->bf16) {
        TN_CHECK(tn_ste_quantizer_finish_bf16(&c->q, r->grads));
        int n;
        int64_t *len = shadow_lengths(&c->q.spec, &r->dense_layout, &n);
        int rc = len ? tn_adam_state_init(&c->opt, r->state_bits, len, NULL, n, r->ops) : tn_err("out of memory");
        free(len);
        TN_CHECK(rc);
    }
    c->stride = c->bf16 ? STE_BF16_TELEMETRY_STRIDE : 1;
    for (int k = 0; k < c->q.n_q; k++)
        c->n_sample += ((int64_t)r->layout.tensors[c->q.tensor[k]].numel + c->stride - 1) / c->stride;
    if (!(c->prev = tn_alloc((size_t)c->n_sample, 1)) || !(c->host_idx = tn_alloc(c->q.largest, 1))) return -1;
    tn_ste_quantizer_attach(&c->q, r->model);
    return 0;
}
