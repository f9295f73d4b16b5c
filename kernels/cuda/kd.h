/* Knowledge distillation on the GPU (kernels/cuda/kd.cu): the CUDA side of kernels/cpu/kd.h, same arguments
 * and meaning. A plain C header (callers need no CUDA headers). Arrays are DEVICE memory, except `sum` of
 * tn_cuda_hidden_mse, a host pointer. Work is queued on the default stream; tn_cuda_hidden_mse waits (it
 * returns a host value), tn_cuda_kd does not. Errors: 0, or -1 with the message in tn_errmsg(); launch
 * errors from the launching call, faults inside a kernel from the next call that waits.
 *
 * Agreement with the CPU (tests/unit/test_cuda_kd.c): the same float expressions (z = (x − max)·(1/τ),
 * tn_expf of kernels/vexp.h, the gradient's products and difference rounded per operation), the double sums
 * in another order (a fixed tree: a run repeats bit for bit on one GPU). kl and grad agree to a few float
 * ulps (1e-5 normwise is the stated tolerance; nvcc's contraction of tn_expf's polynomial into fma moves
 * each exponential by about an ulp on a card); equal rows give exactly 0 here too. Hidden MSE: dx bit for
 * bit, the sum to double rounding (1e-12 relative). */
#ifndef TN_KERNELS_CUDA_KD_H
#define TN_KERNELS_CUDA_KD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* tn_op_kd: kl[N] for every row; grad[N, V] = g·τ·(p_s − p_t) on rows with mask[n] != 0 (mask NULL: all),
 * 0 on the others; grad may be t_logits itself (never s_logits). N >= 0, V >= 1, tau finite and > 0.
 * One thread block per row (any V; rows past the grid cap loop). */
int tn_cuda_kd(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *mask, int64_t N,
               int64_t V, float tau, float g);

/* tn_op_hidden_mse: *sum (host) = Σ over counted rows of Σ_d (xs − xt)² in double; dx[n, :] += g·2·(xs − xt) on
 * counted rows. N, D >= 0. Waits for the sum. */
int tn_cuda_hidden_mse(double *sum, float *dx, const float *xs, const float *xt, const uint8_t *mask, int64_t N,
                       int64_t D, float g);

#ifdef __cplusplus
}
#endif

#endif
