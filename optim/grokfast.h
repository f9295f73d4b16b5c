/* Grokfast's EMA gradient filter (Lee et al., "Grokfast: Accelerated Grokking by Amplifying Slow
 * Gradients", 2024; reference implementation github.com/ironjr/grokfast, grokfast.py gradfilter_ema), the
 * CPU reference of the ops table's grokfast entry (kernels/ops.h):
 *
 *   e ← α·e + (1−α)·g;   g ← g + λ·e        (elementwise, before clipping and any optimizer)
 *
 * The reference starts e at the first gradient (its first update then gives g·α + g·(1−α) = g up to
 * rounding); here the first step sets e = g exactly. Its defaults are α = 0.98, λ = 2. docs/OPTIMIZERS.md. */
#ifndef TN_OPTIM_GROKFAST_H
#define TN_OPTIM_GROKFAST_H

#include <stdint.h>

/* g[n], ema[n]: first != 0: ema = g; else ema = ema·α + g·(1−α); then g = g + ema·λ (each product and sum
 * rounded to float in that order). */
void tn_grokfast_apply(float *g, float *ema, int64_t n, float alpha, float lambda, int first);

#endif
