/* Grokfast in the training loop ([optim] grokfast_lambda > 0; the filter: optim/grokfast.h, the op:
 * kernels/ops.h grokfast). Filtered once per optimizer step, after the micro-batches (and any cross-process
 * reduction) and before clipping, so every optimizer sees g + λ·EMA(g):
 *   - every float parameter's gradient in r->grads (dense weights, STE fp32 shadows, PRIMAL's embeddings,
 *     norms and head), unless the method freezes them (LoRA);
 *   - the float gradients the method keeps itself (tn_method.float_grads: PRIMAL's scales, LoRA's adapters).
 * Not filtered: PRIMAL's ghost gradients (they vote by sign, in the backward), and bf16 STE shadows (refused:
 * their gradients are bf16 arrays). Checkpoints: /grokfast/ema/<HF name> and /grokfast/method/<method name>
 * float (exact), and the attribute `started` (0 before the first step). */
#include "train/run.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/log.h"
#include "optim/grokfast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tn_run_grokfast {
    double alpha, lambda;
    float *ema;  /* [layout.numel] for r->grads, table memory; NULL when the method freezes the parameters */
    float *ema_method; /* [method.float_grad_count] for the method's own float gradients, or NULL */
    int started; /* the EMA holds a gradient (0: the next step starts it at g) */
    int loaded;  /* a checkpoint's /grokfast was read */
};

int tn_run_grokfast_config(tn_run *r) {
    tn_config *c = r->ini;
    double alpha, lambda;
    TN_CHECK(tn_config_float(c, "optim", "grokfast_alpha", 0.98, &alpha));
    TN_CHECK(tn_config_float(c, "optim", "grokfast_lambda", 0.0, &lambda));
    if (!(alpha >= 0 && alpha < 1)) return tn_err("[optim] grokfast_alpha = %g: must be in [0, 1)", alpha);
    if (!(lambda >= 0) || !isfinite(lambda)) return tn_err("[optim] grokfast_lambda = %g: must be a finite number >= 0", lambda);
    if (lambda == 0) {
        if (tn_config_has(c, "optim", "grokfast_alpha"))
            return tn_err("[optim] grokfast_alpha without grokfast_lambda: set grokfast_lambda > 0 to filter gradients");
        return 0;
    }
    if (tn_config_has(c, "quant", "grid") && !strcmp(tn_config_str(c, "quant", "shadow", "fp32"), "bf16"))
        return tn_err("[optim] grokfast_lambda needs fp32 shadow weights: [quant] shadow = bf16 is not supported");
    struct tn_run_grokfast *gf = calloc(1, sizeof *gf);
    if (!gf) return tn_err("out of memory");
    gf->alpha = alpha;
    gf->lambda = lambda;
    r->grokfast = gf;
    return 0;
}

/* Values filtered in r->grads (0 when the method freezes them). */
static int64_t param_count(const tn_run *r) { return r->method.frozen_params ? 0 : (int64_t)r->layout.numel; }

int64_t tn_run_grokfast_plan_bytes(const tn_run *r) {
    if (!r->grokfast) return 0;
    const int64_t np = param_count(r), nm = r->method.float_grad_count;
    return (np ? tn_ops_span(np * (int64_t)sizeof(float)) : 0) + (nm ? tn_ops_span(nm * (int64_t)sizeof(float)) : 0);
}

int tn_run_grokfast_alloc(tn_run *r) {
    struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return 0;
    /* bf16 STE is refused by the config already; a method whose gradients outside r->grads are not float
     * arrays the filter can reach would leave them unfiltered */
    if (r->method.grad_sumsq && !r->method.float_grad_count)
        return tn_err("[optim] grokfast_lambda: the %s method keeps gradients the filter does not reach", r->method.name);
    const int64_t np = param_count(r), nm = r->method.float_grad_count;
    if (np) {
        if (!(gf->ema = r->ops->alloc((size_t)np * sizeof(float)))) return -1;
        TN_CHECK(r->ops->zero(gf->ema, (size_t)np * sizeof(float)));
    }
    if (nm) {
        if (!(gf->ema_method = r->ops->alloc((size_t)nm * sizeof(float)))) return -1;
        TN_CHECK(r->ops->zero(gf->ema_method, (size_t)nm * sizeof(float)));
    }
    return 0;
}

void tn_run_grokfast_log(const tn_run *r) {
    const struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return;
    tn_log_info("gradient filter: Grokfast EMA (alpha %g, lambda %g) on %lld float parameters and %lld of the %s "
                "method's own",
                gf->alpha, gf->lambda, (long long)param_count(r), (long long)r->method.float_grad_count,
                r->method.name ? r->method.name : "dense");
}

int tn_run_grokfast_filter(tn_run *r) {
    struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return 0;
    const float alpha = (float)gf->alpha, lambda = (float)gf->lambda;
    if (gf->ema) TN_CHECK(r->ops->grokfast(r->grads, gf->ema, param_count(r), alpha, lambda, !gf->started));
    if (gf->ema_method) {
        float *g = r->method.float_grads ? r->method.float_grads(r->method.ctx) : NULL;
        if (!g) return tn_err("grokfast: the %s method has no float gradients to filter (internal)", r->method.name);
        TN_CHECK(r->ops->grokfast(g, gf->ema_method, r->method.float_grad_count, alpha, lambda, !gf->started));
    }
    gf->started = 1;
    return 0;
}

/* ---- checkpoints: /grokfast/ema/<name>, /grokfast/method/<method>, attribute started ----------------- */

/* One table-memory array of n floats to or from dataset `path` through a host copy. */
static int array_io(tn_run *r, hid_t g, const char *path, float *dev, int rank, const int64_t *shape, int64_t n,
                    float *host, int save) {
    if (save) {
        TN_CHECK(r->ops->download(host, dev, (size_t)n * sizeof(float)));
        return tn_h5_write(g, path, TN_H5_F32, rank, shape, host, 0);
    }
    TN_CHECK(tn_h5_read(g, path, TN_H5_F32, rank, shape, host));
    return r->ops->upload(dev, host, (size_t)n * sizeof(float));
}

static int ema_io(tn_run *r, hid_t g, int save) {
    struct tn_run_grokfast *gf = r->grokfast;
    const int64_t nm = r->method.float_grad_count;
    size_t largest = nm > 1 ? (size_t)nm : 1;
    for (int i = 0; i < r->layout.n_tensors; i++)
        if (!r->layout.tensors[i].external && r->layout.tensors[i].numel > largest) largest = r->layout.tensors[i].numel;
    float *host = tn_alloc(largest, sizeof(float));
    if (!host) return -1;
    int rc = 0;
    char path[160];
    for (int i = 0; gf->ema && i < r->layout.n_tensors && rc == 0; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        if (t->external) continue;
        snprintf(path, sizeof path, "ema/%s", t->name);
        rc = array_io(r, g, path, gf->ema + t->offset, t->rank, t->shape, (int64_t)t->numel, host, save);
    }
    if (rc == 0 && gf->ema_method) {
        snprintf(path, sizeof path, "method/%s", r->method.name);
        if (!save && !tn_h5_exists(g, path))
            rc = tn_err("no Grokfast state for the %s method's own gradients (/grokfast/%s)", r->method.name, path);
        else
            rc = array_io(r, g, path, gf->ema_method, 1, &nm, nm, host, save);
    }
    tn_free(host);
    return rc;
}

static int grokfast_save(void *vctx, hid_t g) {
    tn_run *r = vctx;
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "started", r->grokfast->started));
    return ema_io(r, g, 1);
}

static int grokfast_load(void *vctx, hid_t g) {
    tn_run *r = vctx;
    int64_t started;
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "started", &started));
    TN_CHECK(ema_io(r, g, 0));
    r->grokfast->started = started != 0;
    r->grokfast->loaded = 1;
    return 0;
}

int tn_run_grokfast_hooks(tn_run *r, tn_ckpt_hook *hooks) {
    if (!r->grokfast) return 0;
    hooks[0] = (tn_ckpt_hook){"grokfast", grokfast_save, grokfast_load, r};
    return 1;
}

int tn_run_grokfast_after_resume(tn_run *r, const char *path) {
    if (r->grokfast && !r->grokfast->loaded)
        return tn_err("%s has no Grokfast state (/grokfast): resume a run with [optim] grokfast_lambda from its own "
                      "checkpoints, or start from this one with [model] init",
                      path);
    return 0;
}

void tn_run_grokfast_free(tn_run *r) {
    struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return;
    if (r->ops) {
        r->ops->free(gf->ema);
        r->ops->free(gf->ema_method);
    }
    free(gf);
    r->grokfast = NULL;
}
