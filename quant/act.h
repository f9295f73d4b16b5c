/* Activation quantization, BitNet b1.58: 8-bit, per token (per row of a [rows, cols] activation), absmax.
 *
 *   m   = max_j |x_j|
 *   k   = 127 / m                           (float)
 *   q_j = clamp(rint(x_j · k), -127, 127)   rint = half to even (torch.round), so q is symmetric int8
 *   x̂_j = q_j / k                          dequantized: what the next matmul sees in fake-quant training
 *   m = 0 (an all-zero token): q = 0, x̂ = 0
 *
 * This is the BitNet reference computation ((x * s).round().clamp(-128, 127) / s with s = 127 / m) with two
 * deliberate differences: the clamp is symmetric (-127; |x_j · k| <= 127 up to rounding, so -128 would only
 * ever come from rounding noise), and there is no m >= 1e-5 clamp (BitNet's guard), which changes only
 * tokens with 0 < m < 1e-5. q and m are exactly what the runner's kernels compute (tn_act_quant_i8,
 * docs/PACKING.md), so a model trained with act_bits = 8 runs with the same quantized activations.
 * Backward is the straight-through estimator: dL/dx = dL/dx̂ (identity), so there is no backward function;
 * the caller passes the upstream gradient through unchanged.
 *
 * Inputs must be finite (a NaN activation means the loss is already NaN; such an element becomes +127).
 * Scalar references and AVX2 variants give bit-identical results. OpenMP over rows. */
#ifndef TN_QUANT_ACT_H
#define TN_QUANT_ACT_H

#include <stdint.h>

/* q[rows, cols] and row_max[rows] = m above (an integer product is dequantized by m / 127). */
void tn_act_quant_int8(const float *x, int64_t rows, int64_t cols, int8_t *q, float *row_max);
/* out = x̂ (fake quantization for training); out may equal x. */
void tn_act_fake_quant(const float *x, int64_t rows, int64_t cols, float *out);

/* Scalar references (tests compare the dispatched versions against these). */
void tn_act_quant_int8_ref(const float *x, int64_t rows, int64_t cols, int8_t *q, float *row_max);
void tn_act_fake_quant_ref(const float *x, int64_t rows, int64_t cols, float *out);

#endif
