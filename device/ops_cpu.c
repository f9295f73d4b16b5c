/* The CPU ops table (kernels/ops.h): the functions of kernels/cpu, quant/ and optim/ behind the table's
 * signatures. Host memory; nothing here fails but allocation, the quantizer on a non-finite weight,
 * PRIMAL's accumulate on a non-finite gradient and dropout on a p outside [0, 1). */
#include "kernels/ops.h"

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/cpu/bf16_ops.h"
#include "kernels/cpu/kd.h"
#include "kernels/cpu/ops_cpu.h"
#include "optim/adamw.h"
#include "optim/adamw8.h"
#include "optim/adamw_bf16.h"
#include "optim/grokfast.h"
#include "optim/muon.h"
#include "optim/primal.h"
#include "optim/ste.h"
#include "quant/act.h"
#include "quant/snap.h"
#include "runner/f16.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ---- memory ------------------------------------------------------------------------------------------ */

static _Atomic int64_t g_in_use, g_peak;

/* Host allocations carry their size in front, for the accounting. */
typedef struct {
    size_t bytes;
    size_t pad[7]; /* keep the user block 64-byte aligned */
} alloc_head;

static void *cpu_alloc(size_t bytes) {
    alloc_head *h = tn_alloc(sizeof(alloc_head) + bytes, 1);
    if (!h) return NULL;
    h->bytes = bytes;
    int64_t now = atomic_fetch_add(&g_in_use, (int64_t)bytes) + (int64_t)bytes, peak = atomic_load(&g_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_peak, &peak, now)) {
    }
    return h + 1;
}

static void cpu_free(void *p) {
    if (!p) return;
    alloc_head *h = (alloc_head *)p - 1;
    atomic_fetch_sub(&g_in_use, (int64_t)h->bytes);
    tn_free(h);
}

static int cpu_upload(void *dst, const void *src, size_t n) {
    if (n) memmove(dst, src, n);
    return 0;
}

static int cpu_zero(void *p, size_t n) {
    if (n) memset(p, 0, n);
    return 0;
}

static int cpu_sync(void) { return 0; }

static int cpu_reserve(size_t bytes) {
    (void)bytes;
    return 0;
}

static void cpu_mem_usage(int64_t *in_use, int64_t *peak) {
    if (in_use) *in_use = atomic_load(&g_in_use);
    if (peak) *peak = atomic_load(&g_peak);
}

static void cpu_mem_reset_peak(void) { atomic_store(&g_peak, atomic_load(&g_in_use)); }

/* ---- the model --------------------------------------------------------------------------------------- */

static int cpu_linear(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    tn_op_linear(y, x, W, N, in, out, beta);
    return 0;
}

static int cpu_linear_dx(float *dx, const float *dy, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    tn_op_linear_dx(dx, dy, W, N, in, out, beta);
    return 0;
}

static int cpu_linear_dw(float *dW, const float *dy, const float *x, int64_t N, int64_t in, int64_t out, float beta) {
    tn_op_linear_dw(dW, dy, x, N, in, out, beta);
    return 0;
}

static int cpu_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps) {
    tn_op_rmsnorm(y, rstd, x, w, N, D, eps);
    return 0;
}

static int cpu_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                                const float *rstd, int64_t N, int64_t D) {
    tn_op_rmsnorm_backward(dx, dw, dy, x, w, rstd, N, D);
    return 0;
}

static int cpu_rope(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t T, int64_t n_heads,
                    int64_t hd, int inverse) {
    tn_op_rope(x, cos_t, sin_t, B, T, n_heads, hd, inverse);
    return 0;
}

static int64_t cpu_attention_saved(int64_t B, int64_t T, int64_t H) { return B * H * T * T; }

static int64_t cpu_attention_scratch(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    (void)B, (void)H, (void)KV, (void)hd;
    return tn_op_attention_scratch_floats(T);
}

static int cpu_attention(float *out, float *saved, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                         int64_t H, int64_t KV, int64_t hd) {
    tn_op_attention(out, saved, q, k, v, B, T, H, KV, hd);
    return 0;
}

static int cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *saved, const float *q, const float *k, const float *v, int64_t B,
                                  int64_t T, int64_t H, int64_t KV, int64_t hd, float *scratch) {
    (void)out;
    tn_op_attention_backward(dq, dk, dv, dout, saved, q, k, v, B, T, H, KV, hd, scratch);
    return 0;
}

static int cpu_swiglu(float *a, const float *g, const float *u, int64_t n) {
    tn_op_swiglu(a, g, u, n);
    return 0;
}

static int cpu_swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n) {
    tn_op_swiglu_backward(dg, du, da, g, u, n);
    return 0;
}

static int cpu_embed(float *x, const float *E, const int32_t *tokens, int64_t N, int64_t D) {
    tn_op_embed(x, E, tokens, N, D);
    return 0;
}

static int cpu_embed_backward(float *dE, const float *dx, const int32_t *tokens, const tn_token_groups *groups,
                              int64_t N, int64_t D) {
    (void)groups;
    tn_op_embed_backward(dE, dx, tokens, N, D);
    return 0;
}

static int cpu_cross_entropy(float *nll, const float *logits, const int32_t *targets, int64_t N, int64_t V) {
    tn_op_cross_entropy(nll, logits, targets, NULL, N, V);
    return 0;
}

static int cpu_cross_entropy_backward(float *logits, const int32_t *targets, const uint8_t *mask, int64_t N, int64_t V,
                                      float g) {
    tn_op_cross_entropy_backward(logits, targets, mask, N, V, g);
    return 0;
}

static int cpu_act_fake_quant(const float *x, int64_t rows, int64_t cols, float *out) {
    tn_act_fake_quant(x, rows, cols, out);
    return 0;
}

static int cpu_kd(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *mask, int64_t N,
                  int64_t V, float tau, float g) {
    tn_op_kd(kl, grad, s_logits, t_logits, mask, N, V, tau, g);
    return 0;
}

static int cpu_hidden_mse(double *sum, float *dx, const float *xs, const float *xt, const uint8_t *mask, int64_t N,
                          int64_t D, float g) {
    tn_op_hidden_mse(sum, dx, xs, xt, mask, N, D, g);
    return 0;
}

static int cpu_f16_to_f32(const uint16_t *h, int64_t n, float *out) {
    tn_f16_to_f32_row(h, n, out);
    return 0;
}

/* ---- vectors and reductions -------------------------------------------------------------------------- */

static int cpu_add(float *y, const float *x, int64_t n) {
    tn_op_add(y, x, n);
    return 0;
}

static int cpu_bias_add(float *y, const float *b, int64_t N, int64_t C) {
    tn_op_bias_add(y, b, N, C);
    return 0;
}

static int cpu_bias_grad(float *db, const float *dy, int64_t N, int64_t C) {
    tn_op_bias_grad(db, dy, N, C);
    return 0;
}

static int cpu_scale(float *x, float s, int64_t n) {
    tn_op_scale(x, s, n);
    return 0;
}

static int cpu_dropout(float *out, const float *x, int64_t n, uint64_t key, double p) {
    if (n < 0 || !(p >= 0 && p < 1)) return tn_err("dropout: n = %lld, p = %g (p must be in [0, 1))", (long long)n, p);
    tn_op_dropout(out, x, n, key, p);
    return 0;
}

static int cpu_sumsq(const float *x, int64_t n, double *out) {
    *out = tn_op_sumsq(x, n);
    return 0;
}

/* In position order, in double (the loss the training log has always shown). */
static int cpu_masked_sum(const float *x, const uint8_t *mask, int64_t n, double *out) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) s += x[i];
    *out = s;
    return 0;
}

static int cpu_count_nonzero_i8(const int8_t *v, int64_t n, int64_t *out) {
    int64_t c = 0;
#pragma omp parallel for simd reduction(+ : c) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) c += v[i] != 0;
    *out = c;
    return 0;
}

/* ---- bf16 arrays ------------------------------------------------------------------------------------- */

static int cpu_bf16_from_f32(uint16_t *out, const float *x, int64_t n) {
    tn_op_bf16_from_f32(out, x, n);
    return 0;
}

static int cpu_bf16_to_f32(float *out, const uint16_t *x, int64_t n) {
    tn_op_bf16_to_f32(out, x, n);
    return 0;
}

static int cpu_bf16_round_stochastic(uint16_t *out, const float *x, int64_t n, uint64_t seed, uint64_t counter) {
    tn_op_bf16_round_stochastic(out, x, n, seed, counter);
    return 0;
}

static int cpu_bf16_accumulate(uint16_t *g, const float *d, int64_t n) {
    tn_op_bf16_accumulate(g, d, n);
    return 0;
}

static int cpu_bf16_sumsq(const uint16_t *x, int64_t n, double *out) {
    *out = tn_op_bf16_sumsq(x, n);
    return 0;
}

/* ---- optimizers -------------------------------------------------------------------------------------- */

static int cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_step *h) {
    tn_adamw_apply(p, g, m, v, n, h);
    return 0;
}

static int cpu_adamw8(float *p, const float *g, uint8_t *m, float *m_absmax, uint8_t *v, float *v_absmax, int64_t n,
                      const tn_adamw_step *h) {
    tn_adamw8_apply(p, g, m, m_absmax, v, v_absmax, n, h);
    return 0;
}

static int cpu_adamw_bf16(uint16_t *p, const uint16_t *g, float g_scale, const tn_adam_moments *s, int64_t n,
                          const tn_adamw_step *h, uint64_t seed, uint64_t counter) {
    if (n < 0 || !s || !h) return tn_err("adamw_bf16: n = %lld, moments %p, step %p", (long long)n, (const void *)s,
                                         (const void *)h);
    if (s->bits != 8 && s->bits != 32) return tn_err("adamw_bf16: moments of %d bits (32 or 8)", s->bits);
    tn_adamw_bf16_apply(p, g, g_scale, s, n, h, seed, counter);
    return 0;
}

static int cpu_muon_momentum(float *buf, float *u, const float *g, int64_t n, float beta, int nesterov) {
    tn_muon_momentum(buf, u, g, n, beta, nesterov);
    return 0;
}

static int cpu_muon_orthogonalize(float *X, int64_t rows, int64_t cols, int steps, float *scratch) {
    if (rows < 1 || cols < 1 || steps < 0)
        return tn_err("muon_orthogonalize: [%lld, %lld], %d steps", (long long)rows, (long long)cols, steps);
    tn_muon_orthogonalize(X, rows, cols, steps, scratch);
    return 0;
}

static int cpu_muon_apply(float *p, const float *o, int64_t n, float scale, float lr, float decay) {
    tn_muon_apply(p, o, n, scale, lr, decay);
    return 0;
}

static int cpu_grokfast(float *g, float *ema, int64_t n, float alpha, float lambda, int first) {
    tn_grokfast_apply(g, ema, n, alpha, lambda, first);
    return 0;
}

static int cpu_ste_blend(const float *W, const float *Wq, int64_t n, float lambda, float *out) {
    tn_ste_blend(W, Wq, n, lambda, out);
    return 0;
}

static int cpu_quantize(const float *W, int64_t rows, int64_t cols, const tn_grid *g, int rule, int per_row, float *Wq,
                        uint8_t *idx, float *scales) {
    return tn_quantize_tensor(W, rows, cols, g, (tn_scale_rule)rule, per_row, Wq, idx, scales);
}

static int cpu_primal_materialize(const tn_ghost_view *v, float *W) {
    tn_primal_tensor t = tn_primal_tensor_of(v);
    tn_primal_materialize(&t, W);
    return 0;
}

static int cpu_primal_accumulate(const tn_ghost_view *v, const float *G, double z, float *scale_grad, int64_t *voters) {
    tn_primal_tensor t = tn_primal_tensor_of(v);
    tn_primal_opts o = tn_primal_opts_of(NULL, z);
    return tn_primal_accumulate(&t, G, &o, scale_grad, voters);
}

static int cpu_primal_flip(const tn_ghost_view *v, uint64_t key, const tn_flip_rule *rule, int64_t *voted,
                           int64_t *flipped) {
    tn_primal_tensor t = tn_primal_tensor_of(v);
    tn_primal_opts o = tn_primal_opts_of(rule, rule->z);
    tn_primal_step_keyed(&t, key, &o, voted, flipped);
    return 0;
}

static const tn_ops cpu_ops = {
    .name = "cpu",
    .device_memory = 0,
    .alloc = cpu_alloc,
    .reserve = cpu_reserve,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_upload,
    .copy = cpu_upload,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .mem_usage = cpu_mem_usage,
    .mem_reset_peak = cpu_mem_reset_peak,
    .linear = cpu_linear,
    .linear_dx = cpu_linear_dx,
    .linear_dw = cpu_linear_dw,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope = cpu_rope,
    .attention_saved_floats = cpu_attention_saved,
    .attention_scratch_floats = cpu_attention_scratch,
    .attention = cpu_attention,
    .attention_backward = cpu_attention_backward,
    .swiglu = cpu_swiglu,
    .swiglu_backward = cpu_swiglu_backward,
    .embed = cpu_embed,
    .embed_backward = cpu_embed_backward,
    .cross_entropy = cpu_cross_entropy,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .act_fake_quant = cpu_act_fake_quant,
    .kd = cpu_kd,
    .hidden_mse = cpu_hidden_mse,
    .f16_to_f32 = cpu_f16_to_f32,
    .add = cpu_add,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .scale = cpu_scale,
    .dropout = cpu_dropout,
    .sumsq = cpu_sumsq,
    .masked_sum = cpu_masked_sum,
    .count_nonzero_i8 = cpu_count_nonzero_i8,
    .bf16_from_f32 = cpu_bf16_from_f32,
    .bf16_to_f32 = cpu_bf16_to_f32,
    .bf16_round_stochastic = cpu_bf16_round_stochastic,
    .bf16_accumulate = cpu_bf16_accumulate,
    .bf16_sumsq = cpu_bf16_sumsq,
    .adamw = cpu_adamw,
    .adamw8 = cpu_adamw8,
    .adamw_bf16 = cpu_adamw_bf16,
    .muon_momentum = cpu_muon_momentum,
    .muon_orthogonalize = cpu_muon_orthogonalize,
    .muon_apply = cpu_muon_apply,
    .grokfast = cpu_grokfast,
    .ste_blend = cpu_ste_blend,
    .quantize = cpu_quantize,
    .primal_materialize = cpu_primal_materialize,
    .primal_accumulate = cpu_primal_accumulate,
    .primal_flip = cpu_primal_flip,
};

const tn_ops *tn_ops_cpu(void) { return &cpu_ops; }
