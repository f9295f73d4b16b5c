/* Knowledge distillation: the KL term of the distillation loss and its gradient, and the hidden-state MSE
 * (CPU reference; the CUDA side is kernels/cuda/kd.h, same arguments). Over the n_counted positions the
 * loss mask counts, the training loss is
 *     (1 − α)·CE + α·τ²·KL(p_t ‖ p_s) + w_h·MSE(hidden),   p_· = softmax(logits / τ),
 * the KL averaged over the counted positions (g = α / n_counted below) and the MSE over their elements
 * and the compared layers (g = w_h / (n_counted·D·n_layers)). Shapes as in kernels/cpu/ops_cpu.h: N = B·T positions, V the vocabulary, D the
 * model width; row-major float arrays. */
#ifndef TN_KERNELS_CPU_KD_H
#define TN_KERNELS_CPU_KD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the KL term ----------------------------------------------------------------------------------
 * s_logits, t_logits [N, V] (student, teacher), mask [N] or NULL (all), tau > 0; V >= 1.
 *   kl[n] = Σ_v p_t,v (log p_t,v − log p_s,v) at temperature τ, for EVERY row n (masked or not);
 *   grad[n, v] = g·τ·(p_s,v − p_t,v) where mask[n] != 0, 0 elsewhere (overwritten): the gradient of
 *   g·τ²·Σ_n kl[n] with respect to the student logits, g = α / n_counted from the caller.
 * grad may be t_logits itself (each row is read before it is written), but may overlap nothing else.
 * Numerics: z = (x − max_row x)·(1/τ) in float, e = tn_expf(z) (kernels/vexp.h), S = Σ e in double,
 *   kl = Σ e_t (z_t − z_s) / S_t + log(S_s / S_t)   (sums in double),
 *   grad = e_s·(float)(gτ / S_s) − e_t·(float)(gτ / S_t).
 * Accuracy: kl is the exact KL of the float-rounded z (z within 1 ulp of (x − max)/τ; exact at τ = 1 for
 * logits within a factor 2 of the row maximum) up to tn_expf's error (1.03e-7 relative per term), which
 * moves kl by at most 2.1e-7 absolute and in practice far less (the terms' errors average out over a row),
 * plus the final rounding to float. Measured against long double on rows of V = 4000 (logit scales 0.5 to
 * 50, τ = 0.5, 1, 2.5, teacher = student + noise of relative size 1e-3 to 3): absolute error <= 3.3e-8
 * where KL < 0.01, relative <= 1.9e-6 where KL >= 0.01, about 1e-7 (float rounding) where KL >~ 1. Equal
 * rows give kl = 0 and grad = 0 exactly; nearly equal rows may give a hair below 0 (not clamped).
 * grad: max|Δ| <= 1.9e-7·g·τ·max_v max(p_s,v, p_t,v) measured (each p is tn_expf times a rounded 1/S, about
 * 3e-7 at worst), so nearly equal rows, whose gradient is tiny, have a large relative error.
 * Deterministic: independent of the thread count (rows are parallel, each summed by one thread); the
 * vector width of the CPU may change the last bits (omp simd sums). */
void tn_op_kd(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *mask, int64_t N,
              int64_t V, float tau, float g);

/* ---- the hidden-state MSE -------------------------------------------------------------------------
 * xs, xt [N, D] (student and teacher hidden states), mask [N] or NULL (all), dx [N, D]:
 *   *sum = Σ_{n: mask[n] != 0} Σ_d (xs − xt)²  in double (each difference exact in double), in a fixed order
 *          (8 lanes per row, 64 chunks of rows summed in order): the same bits for any thread count and CPU;
 *   dx[n, :] += g·2·(xs − xt) on counted rows, in float ((2g)·(xs − xt), rounded per operation); other rows
 *          untouched. dx is accumulated: it is the residual stream's gradient. */
void tn_op_hidden_mse(double *sum, float *dx, const float *xs, const float *xt, const uint8_t *mask, int64_t N,
                      int64_t D, float g);

#ifdef __cplusplus
}
#endif

#endif
