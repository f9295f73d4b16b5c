#include "optim/adamw.h"
#include "core/error.h"
#include "kernels/cpu/ops_cpu.h"

#include <math.h>

tn_adamw_step tn_adamw_step_of(const tn_adamw_hparams *h, int64_t t, int decay) {
    tn_adamw_step s;
    s.lr = h->lr;
    s.beta1 = h->beta1;
    s.beta2 = h->beta2;
    s.eps = h->eps;
    s.wd = decay ? h->weight_decay : 0.0f;
    s.c1 = 1.0f / (1.0f - powf(h->beta1, (float)t));
    s.c2 = 1.0f / (1.0f - powf(h->beta2, (float)t));
    return s;
}

void tn_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_hparams *h,
                     int64_t t, int decay) {
    const tn_adamw_step s = tn_adamw_step_of(h, t, decay);
    tn_adamw_apply(p, g, m, v, n, &s);
}

void tn_adamw_apply(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_step *s) {
    const float b1 = s->beta1, b2 = s->beta2, c1 = s->c1, c2 = s->c2, lr = s->lr, eps = s->eps, wd = s->wd;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * p[i]);
    }
}

int tn_clip_grad_norm_ops(const tn_ops *ops, float *g, int64_t n, double max_norm, double *norm) {
    double ss = 0;
    TN_CHECK(ops->sumsq(g, n, &ss));
    *norm = sqrt(ss);
    if (max_norm > 0 && *norm > max_norm && isfinite(*norm)) TN_CHECK(ops->scale(g, (float)(max_norm / *norm), n));
    return 0;
}

double tn_clip_grad_norm(float *g, int64_t n, double max_norm) {
    double norm = sqrt(tn_op_sumsq(g, n));
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) tn_op_scale(g, (float)(max_norm / norm), n);
    return norm;
}
