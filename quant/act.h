/* Activation quantization, BitNet b1.58: 8-bit, per token (per row of a [rows, cols] activation), absmax.
 *
 *   m  = max(max_j |x_j|, 1e-5)            (the clamp keeps an all-zero token finite: it quantizes to 0)
 *   k  = 127 / m
 *   q_j = clamp(round(x_j · k), -127, 127)  round = half to even (torch.round), so q is symmetric int8
 *   x̂_j = q_j / k                          dequantized, what the next matmul sees in fake-quant training
 *
 * This is the BitNet reference computation ((x * scale).round().clamp() / scale with scale = 127 / m) except
 * that we clamp to -127 rather than -128: |x_j · k| <= 127 up to rounding, so -128 never occurs anyway.
 * Backward is the straight-through estimator: dL/dx = dL/dx̂ (identity), so there is no backward function;
 * the caller passes the upstream gradient through unchanged.
 *
 * Inputs must be finite (a NaN activation means the loss is already NaN; such an element becomes +127).
 * Scalar references and AVX2 variants give bit-identical results. OpenMP over rows. */
#ifndef TN_QUANT_ACT_H
#define TN_QUANT_ACT_H

#include <stdint.h>

#define TN_ACT_EPS 1e-5f

/* q[rows, cols] and row_max[rows] = m above (the dequantization is x̂ = q · m / 127, or q / (127 / m)). */
void tn_act_quant_int8(const float *x, int64_t rows, int64_t cols, int8_t *q, float *row_max);
/* out = x̂ (fake quantization for training); out may equal x. */
void tn_act_fake_quant(const float *x, int64_t rows, int64_t cols, float *out);

/* Scalar references (tests compare the dispatched versions against these). */
void tn_act_quant_int8_ref(const float *x, int64_t rows, int64_t cols, int8_t *q, float *row_max);
void tn_act_fake_quant_ref(const float *x, int64_t rows, int64_t cols, float *out);

#endif
