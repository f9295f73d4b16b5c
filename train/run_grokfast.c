/* Grokfast in the training loop ([optim] grokfast_lambda > 0; the filter: optim/grokfast.h, the op:
 * kernels/ops.h grokfast). Every float parameter's gradient (r->grads: dense weights, STE fp32 shadows,
 * PRIMAL's embeddings, norms and head) is filtered once per optimizer step, after the micro-batches (and any
 * cross-process reduction) and before clipping, so AdamW, Muon and PRIMAL's float AdamW all see
 * g + λ·EMA(g). Not filtered: PRIMAL's per-tensor scales and its ghost gradients (they vote by sign, in the
 * backward), and bf16 STE shadows (refused: their gradients are bf16 arrays outside r->grads).
 * Checkpoints: /grokfast/ema/<HF name> float (exact) and the attribute `started` (0 before the first step). */
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
    float *ema;  /* [layout.numel], table memory */
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

int64_t tn_run_grokfast_plan_bytes(const tn_run *r) {
    return r->grokfast ? tn_ops_span((int64_t)r->layout.numel * (int64_t)sizeof(float)) : 0;
}

int tn_run_grokfast_alloc(tn_run *r) {
    struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return 0;
    /* bf16 STE is refused by the config already; any other method with gradients outside r->grads (LoRA's
     * adapters) would leave them unfiltered */
    if (r->method.grad_sumsq)
        return tn_err("[optim] grokfast_lambda: the %s method keeps gradients the filter does not reach", r->method.name);
    if (!(gf->ema = r->ops->alloc(r->layout.numel * sizeof(float)))) return -1;
    return r->ops->zero(gf->ema, r->layout.numel * sizeof(float));
}

void tn_run_grokfast_log(const tn_run *r) {
    const struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return;
    tn_log_info("gradient filter: Grokfast EMA (alpha %g, lambda %g) on %lld float parameters", gf->alpha, gf->lambda,
                (long long)r->layout.numel);
}

int tn_run_grokfast_filter(tn_run *r) {
    struct tn_run_grokfast *gf = r->grokfast;
    if (!gf) return 0;
    TN_CHECK(r->ops->grokfast(r->grads, gf->ema, (int64_t)r->layout.numel, (float)gf->alpha, (float)gf->lambda,
                              !gf->started));
    gf->started = 1;
    return 0;
}

/* ---- checkpoints: /grokfast/ema/<name>, attribute started -------------------------------------------- */

static int ema_io(tn_run *r, hid_t g, int save) {
    struct tn_run_grokfast *gf = r->grokfast;
    size_t largest = 1;
    for (int i = 0; i < r->layout.n_tensors; i++)
        if (!r->layout.tensors[i].external && r->layout.tensors[i].numel > largest) largest = r->layout.tensors[i].numel;
    float *host = tn_alloc(largest, sizeof(float));
    if (!host) return -1;
    int rc = 0;
    char path[160];
    for (int i = 0; i < r->layout.n_tensors && rc == 0; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        if (t->external) continue;
        snprintf(path, sizeof path, "ema/%s", t->name);
        if (save) {
            rc = r->ops->download(host, gf->ema + t->offset, t->numel * sizeof(float));
            if (rc == 0) rc = tn_h5_write(g, path, TN_H5_F32, t->rank, t->shape, host, 0);
        } else {
            rc = tn_h5_read(g, path, TN_H5_F32, t->rank, t->shape, host);
            if (rc == 0) rc = r->ops->upload(gf->ema + t->offset, host, t->numel * sizeof(float));
        }
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
    if (r->ops) r->ops->free(gf->ema);
    free(gf);
    r->grokfast = NULL;
}
