/* Muon in the training loop ([optim] method = muon; the update: optim/muon.h, the ops: kernels/ops.h).
 * The hidden weight matrices (attention and MLP projections: rank 2, group attn or mlp) take the Muon step;
 * everything else (embeddings, the untied head, norms, biases) takes AdamW at [muon] adamw_lr with the run's
 * [optim] betas, eps and AdamW state. Both rates follow the [optim] schedule: at step t each is its base value
 * times lr(t) / [optim] lr. Muon's decoupled weight decay is [optim] weight_decay.
 * With STE evolution ([quant], fp32 shadows) the shadows are the run's float parameters and their gradients
 * the straight-through ones, so Muon steps the shadows like any matrix. The step sees the step's gradient:
 * the token mean over every micro-batch, clipped (train.c train_step), filtered first when Grokfast is on.
 * Checkpoints: /muon/momentum/<HF name> [rows, cols] float (exact, so a resumed run continues bit for bit).
 * Memory: the momentum of every Muon matrix, and one scratch of tn_muon_scratch_floats for the largest; the
 * update is formed in place in the matrix's gradient. */
#include "train/run.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/log.h"
#include "optim/muon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tn_run_muon {
    double lr, momentum, adamw_lr;
    int nesterov;
    int64_t ns_steps;
    int64_t *off;        /* [n_tensors]: the tensor's momentum offset, -1 when AdamW steps it */
    int64_t total;       /* momentum floats */
    int64_t scratch_n;   /* scratch floats (the largest matrix's) */
    float *buf, *scratch; /* table memory */
    int loaded;          /* a checkpoint's /muon was read */
};

static int muon_owns(const tn_tensor_info *t) {
    return !t->external && t->rank == 2 && (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP);
}

int tn_run_muon_config(tn_run *r, int on) {
    tn_config *c = r->ini;
    if (!on) {
        static const char *const keys[] = {"lr", "momentum", "nesterov", "ns_steps", "adamw_lr"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (tn_config_has(c, "muon", keys[i]))
                return tn_err("[muon] %s is set but [optim] method is not muon", keys[i]);
        return 0;
    }
    const char *shadow = tn_config_str(c, "quant", "shadow", "fp32");
    if (tn_config_has(c, "quant", "grid") && !strcmp(shadow, "bf16"))
        return tn_err("[optim] method = muon needs fp32 shadow weights: [quant] shadow = bf16 is not supported");
    struct tn_run_muon *m = calloc(1, sizeof *m);
    if (!m) return tn_err("out of memory");
    r->muon = m;
    TN_CHECK(tn_config_float(c, "muon", "lr", 0.02, &m->lr));
    TN_CHECK(tn_config_float(c, "muon", "momentum", 0.95, &m->momentum));
    TN_CHECK(tn_config_bool(c, "muon", "nesterov", 1, &m->nesterov));
    TN_CHECK(tn_config_int(c, "muon", "ns_steps", 5, &m->ns_steps));
    TN_CHECK(tn_config_float(c, "muon", "adamw_lr", r->sched.lr, &m->adamw_lr));
    if (!(m->lr > 0) || !isfinite(m->lr)) return tn_err("[muon] lr = %g: must be a finite number > 0", m->lr);
    if (!(m->momentum >= 0 && m->momentum < 1)) return tn_err("[muon] momentum = %g: must be in [0, 1)", m->momentum);
    if (m->ns_steps < 1 || m->ns_steps > 100) return tn_err("[muon] ns_steps = %lld: must be in [1, 100]", (long long)m->ns_steps);
    if (!(m->adamw_lr > 0) || !isfinite(m->adamw_lr))
        return tn_err("[muon] adamw_lr = %g: must be a finite number > 0", m->adamw_lr);
    return 0;
}

/* Momentum offsets and the scratch size from the layout (before anything is allocated). */
static int muon_layout(tn_run *r) {
    struct tn_run_muon *m = r->muon;
    if (m->off) return 0;
    if (!(m->off = malloc((size_t)r->layout.n_tensors * sizeof *m->off))) return tn_err("out of memory");
    m->total = m->scratch_n = 0;
    for (int i = 0; i < r->layout.n_tensors; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        m->off[i] = -1;
        if (!muon_owns(t)) continue;
        m->off[i] = m->total;
        m->total += (int64_t)t->numel;
        const int64_t s = tn_muon_scratch_floats(t->shape[0], t->shape[1]);
        if (s > m->scratch_n) m->scratch_n = s;
    }
    return 0;
}

int tn_run_muon_plan(tn_run *r, int64_t *bytes) {
    *bytes = 0;
    if (!r->muon) return 0;
    TN_CHECK(muon_layout(r));
    *bytes = tn_ops_span(r->muon->total * (int64_t)sizeof(float)) + tn_ops_span(r->muon->scratch_n * (int64_t)sizeof(float));
    return 0;
}

int tn_run_muon_alloc(tn_run *r) {
    struct tn_run_muon *m = r->muon;
    if (!m) return 0;
    /* PRIMAL and bf16 STE are refused by the config already; any other method with its own step (LoRA) too */
    if (r->method.optimizer_step)
        return tn_err("[optim] method = muon: the %s method has its own optimizer step", r->method.name);
    TN_CHECK(muon_layout(r));
    if (m->total > 0) {
        if (!(m->buf = r->ops->alloc((size_t)m->total * sizeof(float)))) return -1;
        if (!(m->scratch = r->ops->alloc((size_t)m->scratch_n * sizeof(float)))) return -1;
        TN_CHECK(r->ops->zero(m->buf, (size_t)m->total * sizeof(float)));
    }
    return 0;
}

void tn_run_muon_log(const tn_run *r) {
    const struct tn_run_muon *m = r->muon;
    if (!m) return;
    int64_t mats = 0;
    for (int i = 0; i < r->layout.n_tensors; i++) mats += m->off[i] >= 0;
    tn_log_info("optimizer: Muon (lr %g, momentum %g%s, %lld Newton-Schulz steps) on %lld matrices, %lld weights; "
                "AdamW (lr %g) on the rest",
                m->lr, m->momentum, m->nesterov ? " Nesterov" : "", (long long)m->ns_steps, (long long)mats,
                (long long)m->total, m->adamw_lr);
}

int tn_run_muon_step(tn_run *r, double lr) {
    struct tn_run_muon *m = r->muon;
    const double ratio = lr / r->sched.lr; /* the schedule's factor at this step */
    const double mlr = m->lr * ratio;
    const float decay = (float)(1.0 - mlr * r->adam.weight_decay);
    tn_adamw_hparams h = r->adam;
    h.lr = (float)(m->adamw_lr * ratio);
    for (int i = 0; i < r->layout.n_tensors; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        if (t->external) continue;
        float *p = r->params + t->offset, *g = r->grads + t->offset;
        if (m->off[i] < 0) { /* AdamW, decay on matrices only (tn_run_adamw_params' rule) */
            const tn_adamw_step st = tn_adamw_step_of(&h, r->step, t->rank == 2 && t->group != TN_GROUP_EMBED);
            TN_CHECK(tn_adam_state_step(&r->opt, i, p, g, &st));
            continue;
        }
        const int64_t rows = t->shape[0], cols = t->shape[1], n = (int64_t)t->numel;
        /* the update replaces the gradient in place: U = momentum(G), then its orthogonalisation */
        TN_CHECK(r->ops->muon_momentum(m->buf + m->off[i], g, g, n, (float)m->momentum, m->nesterov));
        TN_CHECK(r->ops->muon_orthogonalize(g, rows, cols, (int)m->ns_steps, m->scratch));
        TN_CHECK(r->ops->muon_apply(p, g, n, tn_muon_shape_scale(rows, cols), (float)mlr, decay));
    }
    return 0;
}

/* ---- checkpoints: /muon/momentum/<name> -------------------------------------------------------------- */

static int momentum_io(struct tn_run_muon *m, tn_run *r, hid_t g, int save) {
    int64_t largest = 0;
    for (int i = 0; i < r->layout.n_tensors; i++)
        if (m->off[i] >= 0 && (int64_t)r->layout.tensors[i].numel > largest) largest = (int64_t)r->layout.tensors[i].numel;
    float *host = tn_alloc((size_t)(largest > 0 ? largest : 1), sizeof(float));
    if (!host) return -1;
    int rc = 0;
    char path[160];
    for (int i = 0; i < r->layout.n_tensors && rc == 0; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        if (m->off[i] < 0) continue;
        snprintf(path, sizeof path, "momentum/%s", t->name);
        float *dev = m->buf + m->off[i];
        if (save) {
            rc = r->ops->download(host, dev, t->numel * sizeof(float));
            if (rc == 0) rc = tn_h5_write(g, path, TN_H5_F32, t->rank, t->shape, host, 0);
        } else {
            rc = tn_h5_read(g, path, TN_H5_F32, t->rank, t->shape, host);
            if (rc == 0) rc = r->ops->upload(dev, host, t->numel * sizeof(float));
        }
    }
    tn_free(host);
    return rc;
}

static int muon_save(void *vctx, hid_t g) {
    tn_run *r = vctx;
    return momentum_io(r->muon, r, g, 1);
}

static int muon_load(void *vctx, hid_t g) {
    tn_run *r = vctx;
    TN_CHECK(momentum_io(r->muon, r, g, 0));
    r->muon->loaded = 1;
    return 0;
}

int tn_run_muon_hooks(tn_run *r, tn_ckpt_hook *hooks) {
    if (!r->muon) return 0;
    hooks[0] = (tn_ckpt_hook){"muon", muon_save, muon_load, r};
    return 1;
}

int tn_run_muon_after_resume(tn_run *r, const char *path) {
    if (r->muon && !r->muon->loaded)
        return tn_err("%s has no Muon state (/muon): resume a [optim] method = muon run from its own checkpoints, "
                      "or start from this one with [model] init",
                      path);
    return 0;
}

void tn_run_muon_free(tn_run *r) {
    struct tn_run_muon *m = r->muon;
    if (!m) return;
    if (r->ops) {
        r->ops->free(m->buf);
        r->ops->free(m->scratch);
    }
    free(m->off);
    free(m);
    r->muon = NULL;
}
