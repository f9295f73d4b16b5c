/* bf16 arrays on the CPU (kernels/bf16.h has the rounding rules): the ops behind [quant] shadow = bf16.
 * The CUDA versions (kernels/cuda/convert.cu, and model.cu for the sum of squares) give the same bits, except
 * bf16_sumsq, which agrees to rounding (another summation order). OpenMP over elements; every result is
 * independent of the thread count (bf16_sumsq sums fixed chunks in order). */
#ifndef TN_KERNELS_CPU_BF16_OPS_H
#define TN_KERNELS_CPU_BF16_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = bf16 nearest to x[i] (ties to even). */
void tn_op_bf16_from_f32(uint16_t *out, const float *x, int64_t n);
/* out[i] = x[i] widened (exact). */
void tn_op_bf16_to_f32(float *out, const uint16_t *x, int64_t n);
/* out[i] = stochastic rounding of x[i] with the random bits of (seed, counter + i). */
void tn_op_bf16_round_stochastic(uint16_t *out, const float *x, int64_t n, uint64_t seed, uint64_t counter);
/* g[i] = bf16 nearest to (float(g[i]) + d[i]): a gradient accumulated in bf16. A NaN sum is stored as the
 * canonical quiet NaN 0x7fc0 (the payload of a NaN sum differs between CPUs and GPUs). */
void tn_op_bf16_accumulate(uint16_t *g, const float *d, int64_t n);
/* Σ float(x[i])² in double. */
double tn_op_bf16_sumsq(const uint16_t *x, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
