/* Llama forward/backward for training. Shapes: N = B·T tokens, D = dim, Hq = n_heads·hd,
 * KVd = n_kv_heads·hd, F = ffn_dim, V = vocab. Activations saved for backward are kept per layer in
 * one allocation; gradient scratch is one layer's worth, reused from the top layer down. */
#include "model/llama.h"

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/ops.h"
#include "quant/act.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Offsets (in floats) of one layer's tensors inside the flat parameter buffer. */
typedef struct {
    size_t attn_norm, mlp_norm, w[TN_W_COUNT];
} layer_offsets;

struct tn_llama {
    const tn_llama_layout *layout;
    tn_llama_config cfg;
    int B, T;
    int64_t N, D, hd, Hq, KVd, F, V, L;
    size_t off_embed, off_final_norm, off_head;
    layer_offsets *lo;

    tn_weight_source src;
    int has_src, head_via_src;

    /* saved activations */
    float *x;            /* [L+1, N, D] residual stream entering each layer; x[L] enters the final norm */
    float *h1, *rstd1;   /* [L, N, D], [L, N] */
    float *q, *k, *v;    /* [L, N, Hq], [L, N, KVd], [L, N, KVd]; q and k after RoPE */
    float *probs;        /* [L, B, H, T, T] */
    float *att;          /* [L, N, Hq] attention output before o_proj */
    float *xmid;         /* [L, N, D] residual after attention */
    float *h2, *rstd2;   /* [L, N, D], [L, N] */
    float *gate, *up, *act; /* [L, N, F] */
    float *hf, *rstdf;   /* [N, D], [N] */
    float *logits;       /* [N, V]; overwritten by dlogits in backward */
    float *nll;          /* [N] */
    int32_t *inputs, *targets;
    uint8_t *mask;
    int have_targets, logits_valid;
    int64_t n_counted;

    /* one layer of gradient scratch */
    float *dx, *dh, *dq, *dk, *dv, *datt, *dg, *du, *da;
    float *attn_scratch; /* [threads, T, T] */
    float *wscratch, *gscratch; /* the largest weight matrix, for weight sources */
    float *aq;                  /* [N, max(D, Hq, F)] fake-quantized linear input (act_bits = 8) */
    float *rope_cos, *rope_sin; /* [T, hd/2] */
    int64_t bytes;
};

static float *grab(tn_llama *m, int64_t n) {
    float *p = tn_alloc((size_t)n, sizeof(float));
    if (p) m->bytes += n * (int64_t)sizeof(float);
    return p;
}

void tn_llama_free(tn_llama *m) {
    if (!m) return;
    float *bufs[] = {m->x, m->h1, m->rstd1, m->q, m->k, m->v, m->probs, m->att, m->xmid, m->h2, m->rstd2,
                     m->gate, m->up, m->act, m->hf, m->rstdf, m->logits, m->nll, m->dx, m->dh, m->dq, m->dk,
                     m->dv, m->datt, m->dg, m->du, m->da, m->attn_scratch, m->wscratch, m->gscratch, m->aq,
                     m->rope_cos, m->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tn_free(bufs[i]);
    tn_free(m->inputs);
    tn_free(m->targets);
    tn_free(m->mask);
    free(m->lo);
    free(m);
}

int tn_llama_create(tn_llama **out, const tn_llama_layout *layout, int B, int T) {
    const tn_llama_config *c = &layout->cfg;
    if (B <= 0 || T <= 0) return tn_err("model: batch %d and seq_len %d must be positive", B, T);
    if (T > c->max_seq_len) return tn_err("model: seq_len %d exceeds max_seq_len %d", T, c->max_seq_len);
    tn_llama *m = calloc(1, sizeof *m);
    if (!m) return tn_err("model: out of memory");
    m->layout = layout;
    m->cfg = *c;
    m->B = B;
    m->T = T;
    m->N = (int64_t)B * T;
    m->D = c->dim;
    m->hd = tn_llama_head_dim(c);
    m->Hq = (int64_t)c->n_heads * m->hd;
    m->KVd = (int64_t)c->n_kv_heads * m->hd;
    m->F = c->ffn_dim;
    m->V = c->vocab_size;
    m->L = c->n_layers;
    m->lo = calloc((size_t)m->L, sizeof *m->lo);
    if (!m->lo) {
        free(m);
        return tn_err("model: out of memory");
    }
    int64_t largest = 0;
    for (int i = 0; i < layout->n_tensors; i++) {
        const tn_tensor_info *t = &layout->tensors[i];
        if (t->rank == 2 && (int64_t)t->numel > largest) largest = (int64_t)t->numel;
        if (t->layer < 0) {
            if (t->group == TN_GROUP_EMBED) m->off_embed = t->offset;
            else if (t->group == TN_GROUP_HEAD) m->off_head = t->offset;
            else m->off_final_norm = t->offset;
        } else if (t->kind >= 0) {
            m->lo[t->layer].w[t->kind] = t->offset;
        } else if (strstr(t->name, "input_layernorm")) {
            m->lo[t->layer].attn_norm = t->offset;
        } else {
            m->lo[t->layer].mlp_norm = t->offset;
        }
    }
    if (c->tied_embeddings) m->off_head = m->off_embed;

    const int64_t N = m->N, D = m->D, L = m->L, H = c->n_heads;
    const int threads = omp_get_max_threads();
    int ok = 1;
#define A(field, n) ok = ok && (m->field = grab(m, (n))) != NULL
    A(x, (L + 1) * N * D);
    A(h1, L * N * D);
    A(rstd1, L * N);
    A(q, L * N * m->Hq);
    A(k, L * N * m->KVd);
    A(v, L * N * m->KVd);
    A(probs, L * B * H * (int64_t)T * T);
    A(att, L * N * m->Hq);
    A(xmid, L * N * D);
    A(h2, L * N * D);
    A(rstd2, L * N);
    A(gate, L * N * m->F);
    A(up, L * N * m->F);
    A(act, L * N * m->F);
    A(hf, N * D);
    A(rstdf, N);
    A(logits, N * m->V);
    A(nll, N);
    A(dx, N * D);
    A(dh, N * D);
    A(dq, N * m->Hq);
    A(dk, N * m->KVd);
    A(dv, N * m->KVd);
    A(datt, N * m->Hq);
    A(dg, N * m->F);
    A(du, N * m->F);
    A(da, N * m->F);
    A(attn_scratch, (int64_t)threads * T * T);
    A(wscratch, largest);
    A(gscratch, largest);
    int64_t widest = D > m->Hq ? D : m->Hq;
    if (m->F > widest) widest = m->F;
    A(aq, N * widest);
    A(rope_cos, (int64_t)T * m->hd / 2);
    A(rope_sin, (int64_t)T * m->hd / 2);
#undef A
    ok = ok && (m->inputs = tn_alloc((size_t)N, sizeof(int32_t))) != NULL;
    ok = ok && (m->targets = tn_alloc((size_t)N, sizeof(int32_t))) != NULL;
    ok = ok && (m->mask = tn_alloc((size_t)N, 1)) != NULL;
    if (!ok) {
        tn_llama_free(m);
        return tn_err_prefix("model: activations for batch %d x seq_len %d", B, T);
    }
    tn_op_rope_table(m->rope_cos, m->rope_sin, T, m->hd, c->rope_theta, 0);
    *out = m;
    return 0;
}

void tn_llama_set_weight_source(tn_llama *m, const tn_weight_source *src) {
    m->has_src = src != NULL && src->weight != NULL;
    if (m->has_src) m->src = *src;
}

void tn_llama_set_head_via_source(tn_llama *m, int on) { m->head_via_src = on; }

int tn_llama_get_weight_source(const tn_llama *m, tn_weight_source *src, int *head_via_source) {
    if (m->has_src) *src = m->src;
    *head_via_source = m->head_via_src;
    return m->has_src;
}

const float *tn_llama_logits(const tn_llama *m) { return m->logits; }
const float *tn_llama_nll(const tn_llama *m) { return m->nll; }
int tn_llama_batch(const tn_llama *m) { return m->B; }
const tn_llama_config *tn_llama_cfg(const tn_llama *m) { return &m->cfg; }
int tn_llama_seq_len(const tn_llama *m) { return m->T; }
int64_t tn_llama_activation_bytes(const tn_llama *m) { return m->bytes; }

/* The matrix a linear layer uses: the parameter itself, or what the weight source supplies. */
static const float *weight(tn_llama *m, const float *params, int layer, int kind) {
    int via = m->has_src && (layer >= 0 || m->head_via_src);
    if (via) return m->src.weight(m->src.ctx, layer, (tn_linear_kind)kind, m->wscratch);
    return params + (layer >= 0 ? m->lo[layer].w[kind] : m->off_head);
}

/* The input a linear layer sees: x itself, or its int8 fake-quantization (x[N, in] → m->aq). */
static const float *lin_input(tn_llama *m, int layer, int kind, const float *x, int64_t in) {
    int via = m->has_src && (layer >= 0 || m->head_via_src);
    if (!via || m->src.act_bits != 8 || !m->src.is_quantized || !m->src.is_quantized(m->src.ctx, layer, (tn_linear_kind)kind))
        return x;
    tn_act_fake_quant(x, m->N, in, m->aq);
    return m->aq;
}

/* dW for a linear layer: accumulated into grads, or handed to the weight source. */
static int weight_grad(tn_llama *m, float *grads, int layer, int kind, const float *dy, const float *x_raw,
                       int64_t in, int64_t out) {
    const float *x = lin_input(m, layer, kind, x_raw, in);
    int via = m->has_src && m->src.weight_grad && (layer >= 0 || m->head_via_src);
    if (via) {
        tn_op_linear_dw(m->gscratch, dy, x, m->N, in, out, 0.0f);
        return m->src.weight_grad(m->src.ctx, layer, (tn_linear_kind)kind, m->gscratch);
    }
    float *dW = grads + (layer >= 0 ? m->lo[layer].w[kind] : m->off_head);
    tn_op_linear_dw(dW, dy, x, m->N, in, out, 1.0f);
    return 0;
}

static int check_tokens(const int32_t *t, int64_t n, int64_t V, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= V)
            return tn_err("model: %s token id %d at position %lld outside vocab [0, %lld)", what, t[i], (long long)i,
                          (long long)V);
    return 0;
}

/* External tensors (no storage in params) must come from the weight source. */
static int check_sources(const tn_llama *m) {
    for (int i = 0; i < m->layout->n_tensors; i++) {
        const tn_tensor_info *t = &m->layout->tensors[i];
        if (!t->external) continue;
        int head = t->group == TN_GROUP_HEAD;
        if (!m->has_src || (head && !m->head_via_src))
            return tn_err("model: %s has no storage and no weight source supplies it", t->name);
    }
    return 0;
}

int tn_llama_forward(tn_llama *m, const float *params, const int32_t *inputs, const int32_t *targets,
                     const uint8_t *mask, float *loss, int64_t *n_counted) {
    const int64_t N = m->N, D = m->D, Hq = m->Hq, KVd = m->KVd, F = m->F, V = m->V;
    const tn_llama_config *c = &m->cfg;
    TN_CHECK(check_sources(m));
    TN_CHECK(check_tokens(inputs, N, V, "input"));
    if (targets) TN_CHECK(check_tokens(targets, N, V, "target"));
    memcpy(m->inputs, inputs, (size_t)N * sizeof *inputs);
    m->have_targets = targets != NULL;
    if (targets) memcpy(m->targets, targets, (size_t)N * sizeof *targets);
    if (mask) memcpy(m->mask, mask, (size_t)N);
    else memset(m->mask, 1, (size_t)N);

    tn_op_embed(m->x, params + m->off_embed, inputs, N, D);
    for (int64_t l = 0; l < m->L; l++) {
        const layer_offsets *lo = &m->lo[l];
        float *x = m->x + l * N * D, *xnext = m->x + (l + 1) * N * D;
        float *h1 = m->h1 + l * N * D, *q = m->q + l * N * Hq, *k = m->k + l * N * KVd, *v = m->v + l * N * KVd;
        float *att = m->att + l * N * Hq, *xmid = m->xmid + l * N * D, *h2 = m->h2 + l * N * D;
        float *gate = m->gate + l * N * F, *up = m->up + l * N * F, *act = m->act + l * N * F;
        float *probs = m->probs + l * (int64_t)m->B * c->n_heads * m->T * m->T;

        tn_op_rmsnorm(h1, m->rstd1 + l * N, x, params + lo->attn_norm, N, D, c->norm_eps);
        tn_op_linear(q, lin_input(m, (int)l, TN_W_Q, h1, D), weight(m, params, (int)l, TN_W_Q), N, D, Hq, 0.0f);
        tn_op_linear(k, lin_input(m, (int)l, TN_W_K, h1, D), weight(m, params, (int)l, TN_W_K), N, D, KVd, 0.0f);
        tn_op_linear(v, lin_input(m, (int)l, TN_W_V, h1, D), weight(m, params, (int)l, TN_W_V), N, D, KVd, 0.0f);
        tn_op_rope(q, m->rope_cos, m->rope_sin, m->B, m->T, c->n_heads, m->hd, 0);
        tn_op_rope(k, m->rope_cos, m->rope_sin, m->B, m->T, c->n_kv_heads, m->hd, 0);
        tn_op_attention(att, probs, q, k, v, m->B, m->T, c->n_heads, c->n_kv_heads, m->hd);
        memcpy(xmid, x, (size_t)(N * D) * sizeof *x);
        tn_op_linear(xmid, lin_input(m, (int)l, TN_W_O, att, Hq), weight(m, params, (int)l, TN_W_O), N, Hq, D, 1.0f);

        tn_op_rmsnorm(h2, m->rstd2 + l * N, xmid, params + lo->mlp_norm, N, D, c->norm_eps);
        tn_op_linear(gate, lin_input(m, (int)l, TN_W_GATE, h2, D), weight(m, params, (int)l, TN_W_GATE), N, D, F, 0.0f);
        tn_op_linear(up, lin_input(m, (int)l, TN_W_UP, h2, D), weight(m, params, (int)l, TN_W_UP), N, D, F, 0.0f);
        tn_op_swiglu(act, gate, up, N * F);
        memcpy(xnext, xmid, (size_t)(N * D) * sizeof *x);
        tn_op_linear(xnext, lin_input(m, (int)l, TN_W_DOWN, act, F), weight(m, params, (int)l, TN_W_DOWN), N, F, D, 1.0f);
    }
    tn_op_rmsnorm(m->hf, m->rstdf, m->x + m->L * N * D, params + m->off_final_norm, N, D, c->norm_eps);
    tn_op_linear(m->logits, lin_input(m, -1, TN_W_COUNT, m->hf, D), weight(m, params, -1, TN_W_COUNT), N, D, V, 0.0f);
    m->logits_valid = 1;

    if (!targets) {
        if (loss) *loss = 0;
        if (n_counted) *n_counted = 0;
        return 0;
    }
    int64_t counted = tn_op_cross_entropy(m->nll, m->logits, m->targets, m->mask, N, V);
    double sum = 0;
    for (int64_t n = 0; n < N; n++)
        if (m->mask[n]) sum += m->nll[n];
    m->n_counted = counted;
    if (loss) *loss = counted ? (float)(sum / (double)counted) : 0.0f;
    if (n_counted) *n_counted = counted;
    return 0;
}

int tn_llama_backward(tn_llama *m, const float *params, float *grads, float scale) {
    if (!m->have_targets || !m->logits_valid) return tn_err("model: backward needs a forward with targets");
    m->logits_valid = 0;
    if (m->n_counted == 0) return 0; /* nothing in the loss: every gradient is zero */
    const int64_t N = m->N, D = m->D, Hq = m->Hq, KVd = m->KVd, F = m->F, V = m->V;
    const tn_llama_config *c = &m->cfg;

    float *dlogits = m->logits;
    tn_op_cross_entropy_backward(dlogits, m->targets, m->mask, N, V, scale / (float)m->n_counted);
    TN_CHECK(weight_grad(m, grads, -1, TN_W_COUNT, dlogits, m->hf, D, V));
    tn_op_linear_dx(m->dh, dlogits, weight(m, params, -1, TN_W_COUNT), N, D, V, 0.0f);
    memset(m->dx, 0, (size_t)(N * D) * sizeof *m->dx);
    tn_op_rmsnorm_backward(m->dx, grads + m->off_final_norm, m->dh, m->x + m->L * N * D,
                           params + m->off_final_norm, m->rstdf, N, D);

    for (int64_t l = m->L - 1; l >= 0; l--) {
        const layer_offsets *lo = &m->lo[l];
        const int il = (int)l;
        float *x = m->x + l * N * D;
        float *h1 = m->h1 + l * N * D, *q = m->q + l * N * Hq, *k = m->k + l * N * KVd, *v = m->v + l * N * KVd;
        float *att = m->att + l * N * Hq, *xmid = m->xmid + l * N * D, *h2 = m->h2 + l * N * D;
        float *gate = m->gate + l * N * F, *up = m->up + l * N * F, *act = m->act + l * N * F;
        float *probs = m->probs + l * (int64_t)m->B * c->n_heads * m->T * m->T;

        /* MLP: m->dx holds dL/dx[l+1], which is also dL/dxmid through the residual. */
        TN_CHECK(weight_grad(m, grads, il, TN_W_DOWN, m->dx, act, F, D));
        tn_op_linear_dx(m->da, m->dx, weight(m, params, il, TN_W_DOWN), N, F, D, 0.0f);
        tn_op_swiglu_backward(m->dg, m->du, m->da, gate, up, N * F);
        TN_CHECK(weight_grad(m, grads, il, TN_W_GATE, m->dg, h2, D, F));
        TN_CHECK(weight_grad(m, grads, il, TN_W_UP, m->du, h2, D, F));
        tn_op_linear_dx(m->dh, m->dg, weight(m, params, il, TN_W_GATE), N, D, F, 0.0f);
        tn_op_linear_dx(m->dh, m->du, weight(m, params, il, TN_W_UP), N, D, F, 1.0f);
        tn_op_rmsnorm_backward(m->dx, grads + lo->mlp_norm, m->dh, xmid, params + lo->mlp_norm,
                               m->rstd2 + l * N, N, D);

        /* Attention: m->dx now holds dL/dxmid, which is also dL/dx[l] through the residual. */
        TN_CHECK(weight_grad(m, grads, il, TN_W_O, m->dx, att, Hq, D));
        tn_op_linear_dx(m->datt, m->dx, weight(m, params, il, TN_W_O), N, Hq, D, 0.0f);
        tn_op_attention_backward(m->dq, m->dk, m->dv, m->datt, probs, q, k, v, m->B, m->T, c->n_heads,
                                 c->n_kv_heads, m->hd, m->attn_scratch);
        tn_op_rope(m->dq, m->rope_cos, m->rope_sin, m->B, m->T, c->n_heads, m->hd, 1);
        tn_op_rope(m->dk, m->rope_cos, m->rope_sin, m->B, m->T, c->n_kv_heads, m->hd, 1);
        TN_CHECK(weight_grad(m, grads, il, TN_W_Q, m->dq, h1, D, Hq));
        TN_CHECK(weight_grad(m, grads, il, TN_W_K, m->dk, h1, D, KVd));
        TN_CHECK(weight_grad(m, grads, il, TN_W_V, m->dv, h1, D, KVd));
        tn_op_linear_dx(m->dh, m->dq, weight(m, params, il, TN_W_Q), N, D, Hq, 0.0f);
        tn_op_linear_dx(m->dh, m->dk, weight(m, params, il, TN_W_K), N, D, KVd, 1.0f);
        tn_op_linear_dx(m->dh, m->dv, weight(m, params, il, TN_W_V), N, D, KVd, 1.0f);
        tn_op_rmsnorm_backward(m->dx, grads + lo->attn_norm, m->dh, x, params + lo->attn_norm,
                               m->rstd1 + l * N, N, D);
    }
    tn_op_embed_backward(grads + m->off_embed, m->dx, m->inputs, N, D);
    return 0;
}
