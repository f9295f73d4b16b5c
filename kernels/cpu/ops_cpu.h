/* The CPU implementations of the training model's numeric ops: the reference that defines what each op of
 * the ops table (kernels/ops.h) computes, and what the CUDA backend is tested against. Every op is a plain
 * function over flat row-major float arrays with its shapes in the comment. Matrix products use OpenBLAS
 * sgemm; elementwise and reduction ops are OpenMP loops. Backward ops accumulate (+=) into parameter
 * gradients and overwrite (=) activation gradients unless the comment says otherwise.
 *
 * Packed-weight kernels for inference (T2 / L4 / L8) are in kernels/packed.h. */
#ifndef TN_KERNELS_CPU_OPS_CPU_H
#define TN_KERNELS_CPU_OPS_CPU_H

#include <stdint.h>

/* ---- matrix products ---------------------------------------------------------------------------- */

/* y[N, out] = x[N, in] · W[out, in]ᵀ  (+ beta · y) */
void tn_op_linear(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta);
/* dx[N, in] = dy[N, out] · W[out, in]  (+ beta · dx) */
void tn_op_linear_dx(float *dx, const float *dy, const float *W, int64_t N, int64_t in, int64_t out, float beta);
/* dW[out, in] = dy[N, out]ᵀ · x[N, in]  (+ beta · dW) */
void tn_op_linear_dw(float *dW, const float *dy, const float *x, int64_t N, int64_t in, int64_t out, float beta);

/* ---- RMSNorm (Hugging Face: y = w · x / sqrt(mean(x²) + eps)) ------------------------------------ */

/* y[N, D], rstd[N] (saved for backward) from x[N, D], w[D] */
void tn_op_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps);
/* dx[N, D] += ..., dw[D] += ... from dy[N, D]. dx is accumulated (residual stream). */
void tn_op_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                            const float *rstd, int64_t N, int64_t D);

/* ---- RoPE, rotate-half convention (HF): for i < hd/2, (a, b) = (x[i], x[i + hd/2]),
 *      x[i] = a cos θ − b sin θ, x[i + hd/2] = b cos θ + a sin θ, θ = pos · theta^(−2i/hd) -------- */

/* cos/sin tables [T, hd/2] for positions pos0 .. pos0+T-1 (computed in double, stored float). */
void tn_op_rope_table(float *cos_t, float *sin_t, int64_t T, int64_t hd, double theta, int64_t pos0);
/* The same from explicit inverse frequencies inv_freq[hd/2] (model/rope.h computes them for every RoPE
 * scaling type; tn_op_rope_table is the default rule 1 / theta^(2i/hd)). */
void tn_op_rope_table_freq(float *cos_t, float *sin_t, int64_t T, int64_t hd, const float *inv_freq, int64_t pos0);
/* In place on x[B, T, n_heads, hd] (row stride n_heads*hd). inverse = 1 applies the transpose
 * rotation (the backward of the forward rotation). */
void tn_op_rope(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t T, int64_t n_heads,
                int64_t hd, int inverse);

/* ---- causal self-attention with grouped-query heads ------------------------------------------------
 * q[B, T, H, hd], k/v[B, T, KV, hd]; q head h reads kv head h / (H / KV).
 * probs[B, H, T, T] (saved softmax, zero above the diagonal); out[B, T, H, hd]. */
void tn_op_attention(float *out, float *probs, const float *q, const float *k, const float *v, int64_t B,
                     int64_t T, int64_t H, int64_t KV, int64_t hd);
/* dq[B,T,H,hd] =, dk/dv[B,T,KV,hd] = from dout[B,T,H,hd]. scratch: tn_op_attention_scratch_floats(T)
 * floats (T*T per OpenMP thread). */
int64_t tn_op_attention_scratch_floats(int64_t T);
void tn_op_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                              const float *q, const float *k, const float *v, int64_t B, int64_t T,
                              int64_t H, int64_t KV, int64_t hd, float *scratch);

/* ---- SwiGLU: a = silu(g) · u ------------------------------------------------------------------- */

void tn_op_swiglu(float *a, const float *g, const float *u, int64_t n);
/* dg, du (=) from da, g, u */
void tn_op_swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n);

/* ---- embedding ----------------------------------------------------------------------------------- */

/* x[N, D] = E[tokens[n], :] */
void tn_op_embed(float *x, const float *E, const int32_t *tokens, int64_t N, int64_t D);
/* dE[tokens[n], :] += dx[n, :] (serial over n: tokens repeat) */
void tn_op_embed_backward(float *dE, const float *dx, const int32_t *tokens, int64_t N, int64_t D);

/* ---- cross-entropy over masked positions ----------------------------------------------------------
 * nll[N] = logsumexp(logits[n]) − logits[n, target[n]] for every n (masked or not).
 * Returns the number of positions with mask[n] != 0 (mask NULL = all). */
int64_t tn_op_cross_entropy(float *nll, const float *logits, const int32_t *targets, const uint8_t *mask,
                            int64_t N, int64_t V);
/* In place: logits[N, V] ← dLoss/dlogits = g · (softmax − onehot(target)) where mask[n] != 0, else 0.
 * g = scale / n_counted. */
void tn_op_cross_entropy_backward(float *logits, const int32_t *targets, const uint8_t *mask, int64_t N,
                                  int64_t V, float g);

/* ---- reductions, vectors ------------------------------------------------------------------------- */

void tn_op_add(float *y, const float *x, int64_t n);       /* y += x */
/* y[N, C] += b[C] on every row; db[C] += Σ_n dy[n, C] (each column in row order, then added): kernels/ops.h */
void tn_op_bias_add(float *y, const float *b, int64_t N, int64_t C);
void tn_op_bias_grad(float *db, const float *dy, int64_t N, int64_t C);
double tn_op_sumsq(const float *x, int64_t n);             /* Σ x² in double */
void tn_op_scale(float *x, float s, int64_t n);            /* x *= s */
int tn_op_all_finite(const float *x, int64_t n);           /* 1 if no NaN/Inf */
/* Inverted dropout with a hashed mask (kernels/dropout_math.h; LoRA's adapter input): out[n] = x[i]·(1/(1−p))
 * where element i survives under key, else 0; p in [0, 1) (the caller checks). out may equal x. */
void tn_op_dropout(float *out, const float *x, int64_t n, uint64_t key, double p);

#endif
