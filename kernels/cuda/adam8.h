/* 8-bit AdamW on the GPU (kernels/cuda/adam8.cu): tn_adamw8_apply (optim/adamw8.h) bit for bit. The
 * arithmetic it shares with the CPU is kernels/adam8_math.h. */
#ifndef TN_KERNELS_CUDA_ADAM8_H
#define TN_KERNELS_CUDA_ADAM8_H

#include <stdint.h>

#include "kernels/adam8_math.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tn_adamw8_apply (optim/adamw8.h) on the device, bit for bit: p, g [n] float; m, v [n] codes;
 * m_absmax, v_absmax [ceil(n / TN_ADAM8_BLOCK)] float; all device memory; h a host struct. Asynchronous.
 * Fails (tn_err) on n < 0, h NULL, too many blocks for one grid, or a launch error. */
int tn_cuda_adamw8(float *p, const float *g, uint8_t *m, float *m_absmax, uint8_t *v, float *v_absmax, int64_t n,
                   const tn_adamw_step *h);
/* tn_adamw_bf16_apply (optim/adamw_bf16.h) on the device, bit for bit: p, g [n] bf16, the moments s (fp32 or
 * 8-bit; a host struct of device pointers). Asynchronous. Fails on n < 0, s or h NULL, bits not 32 or 8. */
int tn_cuda_adamw_bf16(uint16_t *p, const uint16_t *g, float g_scale, const tn_adam_moments *s, int64_t n,
                       const tn_adamw_step *h, uint64_t seed, uint64_t counter);

#ifdef __cplusplus
}
#endif

#endif
