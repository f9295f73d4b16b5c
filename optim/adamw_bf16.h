/* AdamW on bf16 parameters ([quant] shadow = bf16: the STE shadow weights of the quantized layers), CPU
 * reference of the ops table's adamw_bf16 (the CUDA kernel gives the same bits).
 *
 * For each element i of an array of n, in blocks of TN_ADAM8_BLOCK (2048) elements:
 *   p   = widen(p16[i])                         (kernels/bf16.h; exact)
 *   g   = widen(g16[i]) · g_scale               (g_scale: the global-norm clip factor, 1 when not clipping;
 *                                                the product rounds once, in float)
 *   m,v = the moments (fp32, or the 8-bit block dequantized: optim/adamw8.h)
 *   tn_adamw_apply(p, g, m, v) on the block     (optim/adamw.h: literally the fp32 AdamW step)
 *   store m, v (fp32, or the block requantized)
 *   p16[i] = stochastic rounding of p with the bits of (seed, counter + i)   (kernels/bf16.h)
 * The rounding is unbiased, so updates far smaller than a bf16 step (2^-8 relative) still move the weight
 * on average, where rounding to nearest would drop them every time. `counter` is the array's offset in the
 * run's shadow buffer and `seed` a function of the run's seed and step: a resumed run rounds the same way.
 * Blocks are independent (OpenMP over blocks); the result does not depend on the number of threads. */
#ifndef TN_OPTIM_ADAMW_BF16_H
#define TN_OPTIM_ADAMW_BF16_H

#include <stdint.h>

#include "kernels/ops.h"

void tn_adamw_bf16_apply(uint16_t *p, const uint16_t *g, float g_scale, const tn_adam_moments *s, int64_t n,
                         const tn_adamw_step *h, uint64_t seed, uint64_t counter);

#endif
