/* Straight-through-estimator helpers for shadow-weight training (math in docs/QUANT.md).
 *
 * Forward uses the blend  W_f = W + λ (W_q - W),  λ ramped 0 -> 1 over lambda_warmup_steps
 * (tn_lambda_ramp, optim/schedule.h), W_q the snapped
 * weight (quant/snap.h). Backward treats the whole quantizer as the identity: dL/dW = dL/dW_f, so the shadow
 * weights W receive the gradient of the weights the forward used, and AdamW updates W. */
#ifndef TN_OPTIM_STE_H
#define TN_OPTIM_STE_H

#include <stdint.h>

/* out[i] = W[i] + λ (Wq[i] - W[i]). λ >= 1 copies Wq exactly and λ <= 0 copies W exactly (the float formula
 * would be off by an ulp at λ = 1, and a fully quantized forward must see exactly s · grid[idx]).
 * out may alias W or Wq. */
void tn_ste_blend(const float *W, const float *Wq, int64_t n, float lambda, float *out);

#endif
