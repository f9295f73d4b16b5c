/* Float products with F16 (IEEE binary16) weights, for the runner's embeddings and LM heads:
 * y = W·x with W [rows, cols] F16 row-major. Weights are widened to float (exactly) and multiplied in
 * float; F16C + FMA when the CPU has them (and TN_KERNELS does not cap below avx2), else scalar.
 * OpenMP over rows. */
#ifndef TN_RUNNER_F16_H
#define TN_RUNNER_F16_H

#include <stdint.h>

/* out[n] = float(h[n]). */
void tn_f16_to_f32_row(const uint16_t *h, int64_t n, float *out);
/* y[rows] = W x. */
void tn_f16_gemv(const uint16_t *W, int64_t rows, int64_t cols, const float *x, float *y);
/* Y[n_tok, rows] = X[n_tok, cols] Wᵀ (blocks of W widened to float, then sgemm). */
void tn_f16_gemm(const uint16_t *W, int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y);

#endif
