#include "optim/adamw.h"
#include "kernels/ops.h"

#include <math.h>

void tn_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_hparams *h,
                     int64_t t, int decay) {
    const float b1 = h->beta1, b2 = h->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)t)), c2 = 1.0f / (1.0f - powf(b2, (float)t));
    const float lr = h->lr, eps = h->eps, wd = decay ? h->weight_decay : 0.0f;
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

double tn_clip_grad_norm(float *g, int64_t n, double max_norm) {
    double norm = sqrt(tn_op_sumsq(g, n));
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) tn_op_scale(g, (float)(max_norm / norm), n);
    return norm;
}
