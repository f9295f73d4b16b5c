/* The ops table: every numeric operation of training (the model's forward and backward, AdamW, the
 * gradient norm, STE quantization, PRIMAL's materialise / vote / flip) behind one table of function
 * pointers, with a CPU implementation (device/ops_cpu.c, over kernels/cpu, quant/ and optim/) and a
 * CUDA one (kernels/cuda/ops_table.cu). The layer sequence (model/llama.c) and the training loop call
 * only the table, so a device changes where buffers live and which table is called, never the sequence.
 *
 * Memory: every array argument lives in the table's memory (ops->alloc: host memory for the CPU, device
 * memory for CUDA) unless its comment says "host". Host code must never dereference table memory when
 * ops->device_memory is set; it moves data with upload / download.
 * Errors: every op returns 0, or -1 with the message in tn_errmsg() (a CUDA launch or runtime error; the
 * CPU ops fail only where their comment says). Asynchronous device faults surface at the next call that
 * waits (download, sync, or an op whose comment says it returns a host value).
 * Semantics: the CPU functions named in each comment define what an op computes (kernels/cpu/ops_cpu.h,
 * quant/, optim/). Float ops agree with them to rounding (sums in another order, contracted multiply-adds);
 * integer ops and the PRIMAL flip rule exactly. Shapes as in kernels/cpu/ops_cpu.h: N = B·T tokens. */
#ifndef TN_KERNELS_OPS_H
#define TN_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/grid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Positions of a batch of N token ids grouped by id, for a deterministic embedding backward (the CUDA
 * backend sums each group's rows in position order, as the CPU loop does). Group u is token id[u] at
 * positions pos[start[u] .. start[u+1]), increasing; arrays in table memory. Built on the host by the
 * model from its inputs (tn_token_groups_build in model/llama.c). */
typedef struct {
    int64_t n_groups;
    const int32_t *id, *pos, *start; /* [n_groups], [N], [n_groups + 1] */
} tn_token_groups;

/* One PRIMAL ghost tensor as the ops see it (optim/primal.h tn_primal_tensor; the rule is there). */
typedef struct {
    int64_t rows, cols;      /* row-major [rows, cols] = [out, in] */
    const tn_grid *grid;     /* host struct: values and snapping thresholds */
    int packed;              /* idx holds 4-bit indices (quant/pack.h tn_pack4 layout) */
    int scale_per_row;       /* scale has rows entries, else 1 */
    uint8_t *idx;            /* [rows·cols] or [(rows·cols + 1) / 2] packed */
    int8_t *vote;            /* [rows·cols], in [-127, 127] */
    float *scale;            /* [rows] or [1] */
} tn_ghost_view;

/* The flip rule's constants (optim/primal.h tn_primal_opts). */
typedef struct {
    double z, c, p_min, p_max, vote_decay;
    int consensus;
} tn_flip_rule;

/* AdamW for one array at step t (optim/adamw.h): c1 = 1/(1 − β1^t), c2 = 1/(1 − β2^t) computed by the
 * caller in float exactly as tn_adamw_update does; wd = 0 for arrays without decay. */
typedef struct {
    float lr, beta1, beta2, eps, wd, c1, c2;
} tn_adamw_step;

/* The AdamW moments of one array of n parameters, in table memory: fp32 (m, v [n]) when bits = 32, or 8-bit
 * blockwise codes when bits = 8 (optim/adamw8.h: m8, v8 [n] codes, m_absmax, v_absmax [ceil(n / 2048)]). */
typedef struct {
    int bits;
    float *m, *v;
    uint8_t *m8, *v8;
    float *m_absmax, *v_absmax;
} tn_adam_moments;

/* Allocations are aligned to (and planned in spans of) TN_OPS_ALIGN bytes. */
#define TN_OPS_ALIGN 256
static inline int64_t tn_ops_span(int64_t bytes) {
    return (bytes + TN_OPS_ALIGN - 1) / TN_OPS_ALIGN * TN_OPS_ALIGN;
}

typedef struct tn_ops tn_ops;
struct tn_ops {
    const char *name;  /* "cpu", "cuda" */
    int device_memory; /* 1: table memory is not host-addressable */

    /* ---- memory ------------------------------------------------------------------------------------ */
    void *(*alloc)(size_t bytes); /* NULL (and tn_err naming the bytes) on failure; contents undefined */
    /* Reserve `bytes` (a sum of tn_ops_span) for the allocations to come, as one block that alloc then
     * carves: the device's free memory drops by exactly the plan, and a run that does not fit fails here,
     * before any of it is allocated. Allocations past the reservation fall back to separate ones. CPU (and
     * the CUDA emulator, which keeps a red zone around every allocation): nothing. */
    int (*reserve)(size_t bytes);
    void (*free)(void *p);        /* NULL is fine */
    int (*upload)(void *dst, const void *host_src, size_t bytes);
    int (*download)(void *host_dst, const void *src, size_t bytes); /* waits for queued work */
    int (*copy)(void *dst, const void *src, size_t bytes);
    int (*zero)(void *p, size_t bytes);
    int (*sync)(void);
    /* Bytes allocated through alloc now and at most since start (the table's own accounting). */
    void (*mem_usage)(int64_t *in_use, int64_t *peak);
    /* Restart the peak at the bytes in use now (a benchmark's runs, one after another). */
    void (*mem_reset_peak)(void);

    /* ---- the model: tn_op_* of kernels/cpu/ops_cpu.h, same arguments ------------------------------- */
    int (*linear)(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta);
    int (*linear_dx)(float *dx, const float *dy, const float *W, int64_t N, int64_t in, int64_t out, float beta);
    int (*linear_dw)(float *dW, const float *dy, const float *x, int64_t N, int64_t in, int64_t out, float beta);
    int (*rmsnorm)(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps);
    int (*rmsnorm_backward)(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                            int64_t N, int64_t D);
    /* cos_t/sin_t [T, hd/2] in table memory (tn_op_rope_table computes them on the host). */
    int (*rope)(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t T, int64_t n_heads, int64_t hd,
                int inverse);
    /* Attention keeps attention_saved_floats(B, T, H) floats per layer for the backward (CPU: the
     * probabilities [B, H, T, T]; CUDA: the row log-sum-exp [B, H, T], recomputing probabilities in the
     * backward) and needs attention_scratch_floats(B, T, H, KV, hd) of scratch in the backward. */
    int64_t (*attention_saved_floats)(int64_t B, int64_t T, int64_t H);
    int64_t (*attention_scratch_floats)(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
    int (*attention)(float *out, float *saved, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                     int64_t H, int64_t KV, int64_t hd);
    /* out: the forward's output (the CUDA backward needs rowsum(dO ⊙ O)). */
    int (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *saved,
                              const float *q, const float *k, const float *v, int64_t B, int64_t T, int64_t H,
                              int64_t KV, int64_t hd, float *scratch);
    int (*swiglu)(float *a, const float *g, const float *u, int64_t n);
    int (*swiglu_backward)(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n);
    int (*embed)(float *x, const float *E, const int32_t *tokens, int64_t N, int64_t D);
    int (*embed_backward)(float *dE, const float *dx, const int32_t *tokens, const tn_token_groups *groups, int64_t N,
                          int64_t D);
    /* nll[N] for every position (tn_op_cross_entropy without the mask count: the caller counts on the host). */
    int (*cross_entropy)(float *nll, const float *logits, const int32_t *targets, int64_t N, int64_t V);
    int (*cross_entropy_backward)(float *logits, const int32_t *targets, const uint8_t *mask, int64_t N, int64_t V,
                                  float g);
    /* out = x̂, the int8 per-row absmax fake quantization (quant/act.h tn_act_fake_quant); out may equal x. */
    int (*act_fake_quant)(const float *x, int64_t rows, int64_t cols, float *out);
    /* Knowledge distillation at temperature τ (kernels/cpu/kd.h tn_op_kd): kl[n] = KL(p_t ‖ p_s) of every row
     * of the teacher's and the student's logits [N, V]; grad[n, :] = g·τ·(p_s − p_t) on rows with mask[n]
     * (0 elsewhere): the gradient of g·τ²·KL. grad may alias t_logits. */
    int (*kd)(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *mask, int64_t N,
              int64_t V, float tau, float g);
    /* Hidden-state distillation (tn_op_hidden_mse): *host_sum = Σ over rows with mask[n] != 0 of |xs − xt|²
     * (double, waits); dx[n, :] += g·2·(xs − xt) on those rows. */
    int (*hidden_mse)(double *host_sum, float *dx, const float *xs, const float *xt, const uint8_t *mask, int64_t N,
                      int64_t D, float g);
    /* out[i] = the IEEE binary16 value h[i] widened to float (exact). */
    int (*f16_to_f32)(const uint16_t *h, int64_t n, float *out);

    /* ---- vectors and reductions ------------------------------------------------------------------------ */
    int (*add)(float *y, const float *x, int64_t n);  /* y += x */
    /* A linear layer's bias: y[N, C] += b[C] on every row; and its gradient db[C] += Σ_n dy[n, C], each
     * column summed in float in row order from 0, then added to db (the same bits on every backend and for
     * any thread count). */
    int (*bias_add)(float *y, const float *b, int64_t N, int64_t C);
    int (*bias_grad)(float *db, const float *dy, int64_t N, int64_t C);
    int (*scale)(float *x, float s, int64_t n);       /* x *= s */
    /* Inverted dropout with a hashed mask (kernels/dropout_math.h; LoRA's adapter input, model/lora.h):
     * out[i] = x[i]·(float)(1/(1−p)) where mix64(key + i·φ) ≥ ⌊p·2⁶⁴⌋, else 0. A pure function of (key, i):
     * calling it again with the same key redraws the same mask. out may equal x. Fails unless 0 <= p < 1.
     * Bit for bit on every device (integer hashing and one float product; tn_op_dropout). */
    int (*dropout)(float *out, const float *x, int64_t n, uint64_t key, double p);
    /* *host_out = Σ x² in double (tn_op_sumsq); waits. */
    int (*sumsq)(const float *x, int64_t n, double *host_out);
    /* *host_out = Σ x[i] over mask[i] != 0 (mask NULL: all), in double; waits. */
    int (*masked_sum)(const float *x, const uint8_t *mask, int64_t n, double *host_out);
    /* *host_out = number of v[i] != 0; waits. */
    int (*count_nonzero_i8)(const int8_t *v, int64_t n, int64_t *host_out);

    /* ---- bf16 arrays ([quant] shadow = bf16; the rounding rules: kernels/bf16.h) --------------------- */
    int (*bf16_from_f32)(uint16_t *out, const float *x, int64_t n);  /* round to nearest even */
    int (*bf16_to_f32)(float *out, const uint16_t *x, int64_t n);    /* exact */
    /* out[i] = stochastic rounding of x[i] with the bits of (seed, counter + i). */
    int (*bf16_round_stochastic)(uint16_t *out, const float *x, int64_t n, uint64_t seed, uint64_t counter);
    int (*bf16_accumulate)(uint16_t *g, const float *d, int64_t n);  /* g = nearest(g + d) */
    /* *host_out = Σ x² in double; waits. */
    int (*bf16_sumsq)(const uint16_t *x, int64_t n, double *host_out);

    /* ---- optimizers ------------------------------------------------------------------------------------ */
    int (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_step *h);
    /* AdamW with 8-bit blockwise moments (optim/adamw8.h tn_adamw8_apply; bit-identical on every device). */
    int (*adamw8)(float *p, const float *g, uint8_t *m, float *m_absmax, uint8_t *v, float *v_absmax, int64_t n,
                  const tn_adamw_step *h);
    /* AdamW on bf16 parameters with bf16 gradients times g_scale, fp32 or 8-bit moments, stochastic rounding
     * of the new parameters (optim/adamw_bf16.h tn_adamw_bf16_apply; bit-identical on every device). */
    int (*adamw_bf16)(uint16_t *p, const uint16_t *g, float g_scale, const tn_adam_moments *s, int64_t n,
                      const tn_adamw_step *h, uint64_t seed, uint64_t counter);
    /* Muon (optim/muon.h): the momentum and Nesterov update (tn_muon_momentum; u may alias g), the
     * Newton–Schulz orthogonalisation of X[rows, cols] in place with tn_muon_scratch_floats(rows, cols) floats
     * of scratch (tn_muon_orthogonalize; waits: the Frobenius norm goes through the host), and the parameter
     * update p = p·decay − lr·(scale·o) (tn_muon_apply). Elementwise parts bit for bit on every device. */
    int (*muon_momentum)(float *buf, float *u, const float *g, int64_t n, float beta, int nesterov);
    int (*muon_orthogonalize)(float *X, int64_t rows, int64_t cols, int steps, float *scratch);
    int (*muon_apply)(float *p, const float *o, int64_t n, float scale, float lr, float decay);
    /* Grokfast's EMA filter (optim/grokfast.h tn_grokfast_apply; bit for bit on every device). */
    int (*grokfast)(float *g, float *ema, int64_t n, float alpha, float lambda, int first);
    /* out[i] = W[i] + λ (Wq[i] − W[i]), exactly W at λ <= 0 (or NaN) and exactly Wq at λ >= 1 (tn_ste_blend). */
    int (*ste_blend)(const float *W, const float *Wq, int64_t n, float lambda, float *out);
    /* STE quantization of W[rows, cols] (quant/snap.h tn_quantize_tensor): scales (per row or one, by rule
     * = tn_scale_rule) into `scales`, idx = nearest(W / s), Wq = s · grid[idx]; Wq or idx may be NULL.
     * Fails, naming the element, on a non-finite weight; waits. */
    int (*quantize)(const float *W, int64_t rows, int64_t cols, const tn_grid *g, int rule, int per_row, float *Wq,
                    uint8_t *idx, float *scales);

    /* ---- PRIMAL (optim/primal.h: the rule) -------------------------------------------------------------- */
    /* W[rows, cols] = scale · grid[idx] (tn_primal_materialize). */
    int (*primal_materialize)(const tn_ghost_view *t, float *W);
    /* One micro-batch's votes and scale gradient from G = dL/dW (tn_primal_accumulate): scale_grad +=
     * Σ G·grid[idx] (per row or per tensor), votes where |G| > mean|G| + z·std|G|. Fails, changing nothing,
     * when G is not finite. *host_voters (may be NULL) = weights that voted; waits. */
    int (*primal_accumulate)(const tn_ghost_view *t, const float *G, double z, float *scale_grad,
                             int64_t *host_voters);
    /* The flip step with the key the caller drew (tn_primal_step_keyed); the caller has checked that the
     * scales are finite. *host_voted (weights with a vote before the step) and *host_flipped may be NULL;
     * waits when either is asked for. */
    int (*primal_flip)(const tn_ghost_view *t, uint64_t key, const tn_flip_rule *rule, int64_t *host_voted,
                       int64_t *host_flipped);
};

/* The CPU table (always available). */
const tn_ops *tn_ops_cpu(void);

#ifdef __cplusplus
}
#endif

#endif
