/* AdamW (Loshchilov & Hutter) over flat float arrays, with decoupled weight decay:
 *   m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
 *   p ← p − lr · ( m/(1−β1^t) / (sqrt(v/(1−β2^t)) + ε)  +  wd · p )
 * t is the 1-based step count. Used for dense training, STE shadow weights, and PRIMAL's float
 * parameters (scales, embeddings, norms). */
#ifndef TN_OPTIM_ADAMW_H
#define TN_OPTIM_ADAMW_H

#include <stdint.h>

#include "kernels/ops.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} tn_adamw_hparams;

/* Update n parameters in place. decay: 1 applies weight decay to this array, 0 does not. */
void tn_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_hparams *h,
                     int64_t t, int decay);
/* The constants of step t for the ops table's adamw (c1, c2 in float, as tn_adamw_update computes them),
 * and the CPU loop that applies them (the ops table's CPU adamw). */
tn_adamw_step tn_adamw_step_of(const tn_adamw_hparams *h, int64_t t, int decay);
void tn_adamw_apply(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_step *s);

/* Global L2 norm of g[n]; if max_norm > 0 and the norm exceeds it, g is scaled to max_norm.
 * Returns the norm before clipping. */
double tn_clip_grad_norm(float *g, int64_t n, double max_norm);
/* The same through an ops table (g in its memory): *norm = the norm before clipping. */
int tn_clip_grad_norm_ops(const tn_ops *ops, float *g, int64_t n, double max_norm, double *norm);

#endif
