/* Llama forward/backward for training. Shapes: N = B·T tokens, D = dim, Hq = n_heads·hd,
 * KVd = n_kv_heads·hd, F = ffn_dim, V = vocab. Activations saved for backward are kept per layer;
 * gradient scratch is one layer's worth, reused from the top layer down. Every buffer lives in the ops
 * table's memory (host or device) and every number is computed by a table op: this file is the layer
 * sequence for both devices. */
#include "model/llama.h"
#include "model/rope.h"

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/cpu/ops_cpu.h"

#include <stdlib.h>
#include <string.h>

/* Offsets (in floats) of one layer's tensors inside the flat parameter buffer. */
typedef struct {
    size_t w[TN_W_COUNT]; /* matrices, by tn_linear_kind */
    size_t v[TN_V_COUNT]; /* vectors, by tn_layer_vector (entries the config lacks stay 0) */
} layer_offsets;

struct tn_llama {
    const tn_ops *ops;
    tn_llama_opts opts;
    int64_t Ls;          /* layers whose activations are kept: L, or 1 (recompute / forward only) */
    const tn_llama_layout *layout;
    tn_llama_config cfg;
    int B, T;
    int64_t N, D, hd, Hq, KVd, F, V, L;
    size_t off_embed, off_final_norm, off_head;
    layer_offsets *lo;

    tn_weight_source src;
    int has_src, head_via_src;
    tn_llama_adapter adapter;
    int has_adapter;

    /* saved activations: per layer [Ls, ...]; with Ls = 1 every layer writes the same slot */
    float *x;            /* [L+1, N, D] residual stream entering each layer; x[L] enters the final norm */
    float *h1, *rstd1;   /* [Ls, N, D], [Ls, N] */
    float *q, *k, *v;    /* [Ls, N, Hq], [Ls, N, KVd], [Ls, N, KVd]; q and k after RoPE */
    float *qpre, *kpre;  /* qk_norm: [Ls, N, Hq], [Ls, N, KVd] q and k before their per-head norm */
    float *rstdq, *rstdk; /* qk_norm: [Ls, N·H], [Ls, N·KV] */
    float *attn_saved;   /* [Ls, attention_saved_floats(B, T, H)]: CPU probabilities, CUDA log-sum-exp */
    int64_t attn_saved_per_layer;
    float *att;          /* [Ls, N, Hq] attention output before o_proj */
    float *xmid;         /* [Ls, N, D] residual after attention */
    float *h2, *rstd2;   /* [Ls, N, D], [Ls, N] */
    float *gate, *up, *act; /* [Ls, N, F] */
    float *hf, *rstdf;   /* [N, D], [N] */
    float *logits;       /* [N, V]; overwritten by dlogits in backward */
    float *nll;          /* [N] */
    int32_t *inputs, *targets; /* [N] table memory */
    uint8_t *mask;             /* [N] table memory */
    /* token groups for the embedding backward (device tables only): host arrays and their uploads */
    int32_t *h_gid, *h_gpos, *h_gstart, *gid, *gpos, *gstart;
    tn_token_groups groups;
    int have_targets, logits_valid;
    int64_t n_counted;
    double nll_sum;

    /* one layer of gradient scratch */
    float *dx, *dh, *dq, *dk, *dv, *datt, *dg, *du, *da;
    float *dqpre, *dkpre; /* qk_norm: gradients before the per-head norms */
    float *attn_scratch; /* attention_scratch_floats(B, T, H, KV, hd) */
    float *wscratch, *gscratch; /* the largest weight matrix, for weight sources */
    float *aq;                  /* [N, max(D, Hq, F)] fake-quantized linear input (act_bits = 8) */
    float *rope_cos, *rope_sin; /* [T, hd/2] */
    int64_t bytes;
};

/* Every buffer of the model, in allocation order: the pointer to set and its size in bytes. Used to
 * allocate (tn_llama_create) and to plan without allocating (tn_llama_plan_bytes). */
typedef struct {
    void **p;
    int64_t bytes;
} buffer;

static int list_buffers(tn_llama *m, buffer *b) {
    const int64_t N = m->N, D = m->D, L = m->L, Ls = m->Ls, H = m->cfg.n_heads, F = m->F, T = m->T;
    int64_t largest = 0, widest = D > m->Hq ? D : m->Hq;
    if (F > widest) widest = F;
    for (int i = 0; i < m->layout->n_tensors; i++) {
        const tn_tensor_info *t = &m->layout->tensors[i];
        if (t->rank == 2 && (int64_t)t->numel > largest) largest = (int64_t)t->numel;
    }
    const int64_t f = (int64_t)sizeof(float), dev = m->ops->device_memory, train = !m->opts.forward_only;
    int n = 0;
#define F32(field, count) b[n++] = (buffer){(void **)&m->field, (count) * f}
#define RAW(field, bytes_) b[n++] = (buffer){(void **)&m->field, (bytes_)}
    F32(x, (L + 1) * N * D);
    F32(h1, Ls * N * D);
    F32(rstd1, Ls * N);
    F32(q, Ls * N * m->Hq);
    F32(k, Ls * N * m->KVd);
    F32(v, Ls * N * m->KVd);
    const int64_t qkn = m->cfg.qk_norm != 0; /* the per-head norms' buffers, else a token float */
    F32(qpre, qkn ? Ls * N * m->Hq : 1);
    F32(kpre, qkn ? Ls * N * m->KVd : 1);
    F32(rstdq, qkn ? Ls * N * H : 1);
    F32(rstdk, qkn ? Ls * N * m->cfg.n_kv_heads : 1);
    F32(attn_saved, Ls * m->attn_saved_per_layer);
    F32(att, Ls * N * m->Hq);
    F32(xmid, Ls * N * D);
    F32(h2, Ls * N * D);
    F32(rstd2, Ls * N);
    F32(gate, Ls * N * F);
    F32(up, Ls * N * F);
    F32(act, Ls * N * F);
    F32(hf, N * D);
    F32(rstdf, N);
    F32(logits, N * m->V);
    F32(nll, N);
    if (train) { /* one layer of gradient scratch */
        F32(dx, N * D);
        F32(dh, N * D);
        F32(dq, N * m->Hq);
        F32(dk, N * m->KVd);
        F32(dv, N * m->KVd);
        F32(dqpre, qkn ? N * m->Hq : 1);
        F32(dkpre, qkn ? N * m->KVd : 1);
        F32(datt, N * m->Hq);
        F32(dg, N * F);
        F32(du, N * F);
        F32(da, N * F);
        F32(attn_scratch, m->ops->attention_scratch_floats(m->B, T, H, m->cfg.n_kv_heads, m->hd));
        F32(gscratch, largest);
    }
    F32(wscratch, largest);
    F32(aq, N * widest);
    F32(rope_cos, T * m->hd / 2);
    F32(rope_sin, T * m->hd / 2);
    RAW(inputs, N * 4);
    RAW(targets, N * 4);
    RAW(mask, N);
    if (dev && train) {
        RAW(gid, N * 4);
        RAW(gpos, N * 4);
        RAW(gstart, (N + 1) * 4);
    }
#undef F32
#undef RAW
    return n;
}
#define MAX_BUFFERS 64

static void set_dims(tn_llama *m, const tn_llama_layout *layout, int B, int T, const tn_ops *ops,
                     const tn_llama_opts *opts) {
    const tn_llama_config *c = &layout->cfg;
    m->ops = ops ? ops : tn_ops_cpu();
    if (opts) m->opts = *opts;
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
    m->attn_saved_per_layer = m->ops->attention_saved_floats(B, T, c->n_heads);
    m->Ls = m->opts.recompute || m->opts.forward_only ? 1 : m->L;
}

int64_t tn_llama_plan_bytes(const tn_llama_layout *layout, int B, int T, const tn_ops *ops,
                            const tn_llama_opts *opts) {
    tn_llama m;
    memset(&m, 0, sizeof m);
    set_dims(&m, layout, B, T, ops, opts);
    buffer b[MAX_BUFFERS];
    const int n = list_buffers(&m, b);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += tn_ops_span(b[i].bytes > 0 ? b[i].bytes : 1);
    return total;
}

void tn_llama_free(tn_llama *m) {
    if (!m) return;
    buffer b[MAX_BUFFERS];
    const int n = list_buffers(m, b);
    for (int i = 0; i < n; i++) m->ops->free(*b[i].p);
    free(m->h_gid);
    free(m->h_gpos);
    free(m->h_gstart);
    free(m->lo);
    free(m);
}

int tn_llama_create(tn_llama **out, const tn_llama_layout *layout, int B, int T, const tn_ops *ops) {
    return tn_llama_create_opts(out, layout, B, T, ops, NULL);
}

int tn_llama_create_opts(tn_llama **out, const tn_llama_layout *layout, int B, int T, const tn_ops *ops,
                         const tn_llama_opts *opts) {
    const tn_llama_config *c = &layout->cfg;
    if (B <= 0 || T <= 0) return tn_err("model: batch %d and seq_len %d must be positive", B, T);
    if (T > c->max_seq_len) return tn_err("model: seq_len %d exceeds max_seq_len %d", T, c->max_seq_len);
    tn_llama *m = calloc(1, sizeof *m);
    if (!m) return tn_err("model: out of memory");
    set_dims(m, layout, B, T, ops, opts);
    m->lo = calloc((size_t)m->L, sizeof *m->lo);
    if (!m->lo) {
        free(m);
        return tn_err("model: out of memory");
    }
    for (int i = 0; i < layout->n_tensors; i++) {
        const tn_tensor_info *t = &layout->tensors[i];
        if (t->layer < 0) {
            if (t->group == TN_GROUP_EMBED) m->off_embed = t->offset;
            else if (t->group == TN_GROUP_HEAD) m->off_head = t->offset;
            else m->off_final_norm = t->offset;
        } else if (t->kind >= 0) {
            m->lo[t->layer].w[t->kind] = t->offset;
        } else {
            m->lo[t->layer].v[t->vec] = t->offset;
        }
    }
    if (c->tied_embeddings) m->off_head = m->off_embed;

    buffer b[MAX_BUFFERS];
    const int n = list_buffers(m, b);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        *b[i].p = m->ops->alloc((size_t)(b[i].bytes > 0 ? b[i].bytes : 1));
        ok = *b[i].p != NULL;
        m->bytes += b[i].bytes;
    }
    if (ok && m->ops->device_memory && !m->opts.forward_only) {
        m->h_gid = malloc((size_t)m->N * sizeof(int32_t));
        m->h_gpos = malloc((size_t)m->N * sizeof(int32_t));
        m->h_gstart = malloc((size_t)(m->N + 1) * sizeof(int32_t));
        ok = m->h_gid && m->h_gpos && m->h_gstart;
        if (!ok) tn_err("out of memory");
    }
    float *cs = ok ? malloc((size_t)T * (size_t)m->hd * sizeof(float)) : NULL;
    if (ok && cs) {
        /* RoPE tables on the host, then into table memory. */
        const int64_t half = (int64_t)T * m->hd / 2;
        ok = tn_rope_tables(c, m->hd, T, 0, cs, cs + half) == 0 &&
             m->ops->upload(m->rope_cos, cs, (size_t)half * sizeof(float)) == 0 &&
             m->ops->upload(m->rope_sin, cs + half, (size_t)half * sizeof(float)) == 0;
    } else if (ok) {
        ok = 0;
        tn_err("out of memory");
    }
    free(cs);
    if (!ok) {
        tn_llama_free(m);
        return tn_err_prefix("model: activations for batch %d x seq_len %d on %s", B, T, ops ? ops->name : "cpu");
    }
    *out = m;
    return 0;
}

void tn_llama_set_weight_source(tn_llama *m, const tn_weight_source *src) {
    m->has_src = src != NULL && src->weight != NULL;
    if (m->has_src) m->src = *src;
}

void tn_llama_set_head_via_source(tn_llama *m, int on) { m->head_via_src = on; }

void tn_llama_set_adapter(tn_llama *m, const tn_llama_adapter *a) {
    m->has_adapter = a != NULL && a->forward && a->grad && a->dx && a->begin_forward;
    if (m->has_adapter) m->adapter = *a;
}

int tn_llama_get_adapter(const tn_llama *m, tn_llama_adapter *a) {
    if (m->has_adapter) *a = m->adapter;
    return m->has_adapter;
}

int tn_llama_get_weight_source(const tn_llama *m, tn_weight_source *src, int *head_via_source) {
    if (m->has_src) *src = m->src;
    *head_via_source = m->head_via_src;
    return m->has_src;
}

const float *tn_llama_logits(const tn_llama *m) { return m->logits; }
const float *tn_llama_nll(const tn_llama *m) { return m->nll; }
double tn_llama_nll_sum(const tn_llama *m) { return m->nll_sum; }
int tn_llama_batch(const tn_llama *m) { return m->B; }
const tn_llama_config *tn_llama_cfg(const tn_llama *m) { return &m->cfg; }
int tn_llama_seq_len(const tn_llama *m) { return m->T; }
int64_t tn_llama_activation_bytes(const tn_llama *m) { return m->bytes; }
const tn_ops *tn_llama_ops(const tn_llama *m) { return m->ops; }
const float *tn_llama_hidden(const tn_llama *m, int l) { return m->x + (int64_t)(l + 1) * m->N * m->D; }
const uint8_t *tn_llama_mask(const tn_llama *m) { return m->mask; }

int tn_llama_logits_row(const tn_llama *m, int64_t n, float *host_out) {
    if (!m->logits_valid) return tn_err("model: no logits (run a forward first)");
    if (n < 0 || n >= m->N) return tn_err("model: logits row %lld outside [0, %lld)", (long long)n, (long long)m->N);
    return m->ops->download(host_out, m->logits + n * m->V, (size_t)m->V * sizeof(float));
}

/* The matrix a linear layer uses: the parameter itself, or what the weight source supplies (NULL when
 * the source failed; its message is set). */
static const float *weight(tn_llama *m, const float *params, int layer, int kind) {
    int via = m->has_src && (layer >= 0 || m->head_via_src);
    if (via) return m->src.weight(m->src.ctx, layer, (tn_linear_kind)kind, m->wscratch);
    return params + (layer >= 0 ? m->lo[layer].w[kind] : m->off_head);
}

/* The input a linear layer sees: x itself, or its int8 fake-quantization (x[N, in] → m->aq); NULL on error. */
static const float *lin_input(tn_llama *m, int layer, int kind, const float *x, int64_t in) {
    int via = m->has_src && (layer >= 0 || m->head_via_src);
    if (!via || m->src.act_bits != 8 || !m->src.is_quantized || !m->src.is_quantized(m->src.ctx, layer, (tn_linear_kind)kind))
        return x;
    if (m->ops->act_fake_quant(x, m->N, in, m->aq) != 0) return NULL;
    return m->aq;
}

/* y[N, out] = input(x)[N, in] · W(layer, kind)ᵀ (+ beta · y). */
static int linear(tn_llama *m, const float *params, int layer, int kind, float *y, const float *x, int64_t in,
                  int64_t out, float beta) {
    const float *xin = lin_input(m, layer, kind, x, in);
    if (!xin) return -1;
    const float *W = weight(m, params, layer, kind);
    if (!W) return -1;
    TN_CHECK(m->ops->linear(y, xin, W, m->N, in, out, beta));
    if (layer >= 0 && m->has_adapter) /* LoRA: y += s · (drop(x) Aᵀ) Bᵀ */
        return m->adapter.forward(m->adapter.ctx, layer, (tn_linear_kind)kind, y, x, m->N);
    return 0;
}

/* dx[N, in] = dy[N, out] · W(layer, kind) (+ beta · dx). */
static int linear_dx(tn_llama *m, const float *params, int layer, int kind, float *dx, const float *dy, int64_t in,
                     int64_t out, float beta) {
    const float *W = weight(m, params, layer, kind);
    if (!W) return -1;
    TN_CHECK(m->ops->linear_dx(dx, dy, W, m->N, in, out, beta));
    if (layer >= 0 && m->has_adapter) /* LoRA: dx += m ⊙ (s · dy B) A */
        return m->adapter.dx(m->adapter.ctx, layer, (tn_linear_kind)kind, dx, dy, m->N);
    return 0;
}

/* dW for a linear layer: accumulated into grads, or handed to the weight source. */
static int weight_grad(tn_llama *m, float *grads, int layer, int kind, const float *dy, const float *x_raw,
                       int64_t in, int64_t out) {
    if (m->has_adapter) { /* LoRA: the base is frozen (no dW); the adapter sees the unquantized input */
        if (layer < 0) return 0;
        return m->adapter.grad(m->adapter.ctx, layer, (tn_linear_kind)kind, dy, x_raw, m->N);
    }
    const float *x = lin_input(m, layer, kind, x_raw, in);
    if (!x) return -1;
    int via = m->has_src && m->src.weight_grad && (layer >= 0 || m->head_via_src);
    if (via) {
        TN_CHECK(m->ops->linear_dw(m->gscratch, dy, x, m->N, in, out, 0.0f));
        return m->src.weight_grad(m->src.ctx, layer, (tn_linear_kind)kind, m->gscratch);
    }
    float *dW = grads + (layer >= 0 ? m->lo[layer].w[kind] : m->off_head);
    return m->ops->linear_dw(dW, dy, x, m->N, in, out, 1.0f);
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
        int head = t->group == TN_GROUP_HEAD, embed = t->group == TN_GROUP_EMBED;
        if (!m->has_src || (head && !m->head_via_src) || (embed && !m->src.embedding))
            return tn_err("model: %s has no storage and no weight source supplies it", t->name);
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Group the N input positions by token id (sorting (id, position) pairs, so each group's positions stay in
 * increasing order) and upload the groups: the device embedding backward adds each group's rows in the
 * order the CPU loop does, without atomics. */
static int build_token_groups(tn_llama *m, const int32_t *inputs) {
    const int64_t N = m->N;
    int64_t *key = malloc((size_t)N * sizeof *key);
    if (!key) return tn_err("out of memory");
    for (int64_t n = 0; n < N; n++) key[n] = ((int64_t)inputs[n] << 32) | n;
    qsort(key, (size_t)N, sizeof *key, cmp_i64);
    int64_t g = 0;
    for (int64_t i = 0; i < N; i++) {
        const int32_t id = (int32_t)(key[i] >> 32);
        m->h_gpos[i] = (int32_t)(key[i] & 0xffffffff);
        if (i == 0 || id != m->h_gid[g - 1]) {
            m->h_gid[g] = id;
            m->h_gstart[g++] = (int32_t)i;
        }
    }
    m->h_gstart[g] = (int32_t)N;
    free(key);
    m->groups = (tn_token_groups){g, m->gid, m->gpos, m->gstart};
    TN_CHECK(m->ops->upload(m->gid, m->h_gid, (size_t)g * sizeof(int32_t)));
    TN_CHECK(m->ops->upload(m->gpos, m->h_gpos, (size_t)N * sizeof(int32_t)));
    return m->ops->upload(m->gstart, m->h_gstart, (size_t)(g + 1) * sizeof(int32_t));
}

/* The activations layer l writes and its backward reads: its own slot, or the one shared slot when
 * activations are not kept per layer (recompute, forward only). */
typedef struct {
    float *x, *xnext, *h1, *rstd1, *q, *k, *v, *saved, *att, *xmid, *h2, *rstd2, *gate, *up, *act;
    float *qpre, *kpre, *rstdq, *rstdk; /* qk_norm only */
} layer_acts;

static layer_acts acts_of(const tn_llama *m, int64_t l) {
    const int64_t N = m->N, D = m->D, s = m->Ls == m->L ? l : 0;
    layer_acts a;
    a.x = m->x + l * N * D;
    a.xnext = m->x + (l + 1) * N * D;
    a.h1 = m->h1 + s * N * D;
    a.rstd1 = m->rstd1 + s * N;
    a.q = m->q + s * N * m->Hq;
    a.k = m->k + s * N * m->KVd;
    a.v = m->v + s * N * m->KVd;
    a.saved = m->attn_saved + s * m->attn_saved_per_layer;
    a.att = m->att + s * N * m->Hq;
    a.xmid = m->xmid + s * N * D;
    a.h2 = m->h2 + s * N * D;
    a.rstd2 = m->rstd2 + s * N;
    a.gate = m->gate + s * N * m->F;
    a.up = m->up + s * N * m->F;
    a.act = m->act + s * N * m->F;
    const int qkn = m->cfg.qk_norm != 0;
    a.qpre = qkn ? m->qpre + s * N * m->Hq : NULL;
    a.kpre = qkn ? m->kpre + s * N * m->KVd : NULL;
    a.rstdq = qkn ? m->rstdq + s * N * m->cfg.n_heads : NULL;
    a.rstdk = qkn ? m->rstdk + s * N * m->cfg.n_kv_heads : NULL;
    return a;
}

/* Layer l's forward from x[l]: its saved activations, and (write_next) x[l+1]. The backward of a model
 * that recomputes calls it again with write_next = 0: the same ops on the same inputs, so the same bits. */
static int layer_forward(tn_llama *m, const float *params, int l, int write_next) {
    const int64_t N = m->N, D = m->D, Hq = m->Hq, KVd = m->KVd, F = m->F;
    const tn_llama_config *c = &m->cfg;
    const tn_ops *ops = m->ops;
    const layer_offsets *lo = &m->lo[l];
    const layer_acts a = acts_of(m, l);
    TN_CHECK(ops->rmsnorm(a.h1, a.rstd1, a.x, params + lo->v[TN_V_ATTN_NORM], N, D, c->norm_eps));
    /* with qk_norm the projections land in qpre / kpre and the per-head norms write q / k */
    float *q = c->qk_norm ? a.qpre : a.q, *k = c->qk_norm ? a.kpre : a.k;
    TN_CHECK(linear(m, params, l, TN_W_Q, q, a.h1, D, Hq, 0.0f));
    TN_CHECK(linear(m, params, l, TN_W_K, k, a.h1, D, KVd, 0.0f));
    TN_CHECK(linear(m, params, l, TN_W_V, a.v, a.h1, D, KVd, 0.0f));
    if (c->qkv_bias) { /* Qwen2: before RoPE, as in HF (the projection's own bias) */
        TN_CHECK(ops->bias_add(q, params + lo->v[TN_V_Q_BIAS], N, Hq));
        TN_CHECK(ops->bias_add(k, params + lo->v[TN_V_K_BIAS], N, KVd));
        TN_CHECK(ops->bias_add(a.v, params + lo->v[TN_V_V_BIAS], N, KVd));
    }
    if (c->qk_norm) { /* Qwen3: RMSNorm over each head's hd values (rows of [N·heads, hd]), before RoPE */
        TN_CHECK(ops->rmsnorm(a.q, a.rstdq, q, params + lo->v[TN_V_Q_NORM], N * c->n_heads, m->hd, c->norm_eps));
        TN_CHECK(ops->rmsnorm(a.k, a.rstdk, k, params + lo->v[TN_V_K_NORM], N * c->n_kv_heads, m->hd, c->norm_eps));
    }
    TN_CHECK(ops->rope(a.q, m->rope_cos, m->rope_sin, m->B, m->T, c->n_heads, m->hd, 0));
    TN_CHECK(ops->rope(a.k, m->rope_cos, m->rope_sin, m->B, m->T, c->n_kv_heads, m->hd, 0));
    TN_CHECK(ops->attention(a.att, a.saved, a.q, a.k, a.v, m->B, m->T, c->n_heads, c->n_kv_heads, m->hd));
    TN_CHECK(ops->copy(a.xmid, a.x, (size_t)(N * D) * sizeof(float)));
    TN_CHECK(linear(m, params, l, TN_W_O, a.xmid, a.att, Hq, D, 1.0f));

    TN_CHECK(ops->rmsnorm(a.h2, a.rstd2, a.xmid, params + lo->v[TN_V_MLP_NORM], N, D, c->norm_eps));
    TN_CHECK(linear(m, params, l, TN_W_GATE, a.gate, a.h2, D, F, 0.0f));
    TN_CHECK(linear(m, params, l, TN_W_UP, a.up, a.h2, D, F, 0.0f));
    TN_CHECK(ops->swiglu(a.act, a.gate, a.up, N * F));
    if (!write_next) return 0;
    TN_CHECK(ops->copy(a.xnext, a.xmid, (size_t)(N * D) * sizeof(float)));
    return linear(m, params, l, TN_W_DOWN, a.xnext, a.act, F, D, 1.0f);
}

/* Layer l's backward: m->dx holds dL/dx[l+1] on entry and dL/dx[l] on return. */
static int layer_backward(tn_llama *m, const float *params, float *grads, int l) {
    const int64_t N = m->N, D = m->D, Hq = m->Hq, KVd = m->KVd, F = m->F;
    const tn_llama_config *c = &m->cfg;
    const tn_ops *ops = m->ops;
    const layer_offsets *lo = &m->lo[l];
    if (m->opts.recompute) TN_CHECK(layer_forward(m, params, l, 0));
    const layer_acts a = acts_of(m, l);

    /* MLP: m->dx holds dL/dx[l+1], which is also dL/dxmid through the residual. */
    TN_CHECK(weight_grad(m, grads, l, TN_W_DOWN, m->dx, a.act, F, D));
    TN_CHECK(linear_dx(m, params, l, TN_W_DOWN, m->da, m->dx, F, D, 0.0f));
    TN_CHECK(ops->swiglu_backward(m->dg, m->du, m->da, a.gate, a.up, N * F));
    TN_CHECK(weight_grad(m, grads, l, TN_W_GATE, m->dg, a.h2, D, F));
    TN_CHECK(weight_grad(m, grads, l, TN_W_UP, m->du, a.h2, D, F));
    TN_CHECK(linear_dx(m, params, l, TN_W_GATE, m->dh, m->dg, D, F, 0.0f));
    TN_CHECK(linear_dx(m, params, l, TN_W_UP, m->dh, m->du, D, F, 1.0f));
    TN_CHECK(ops->rmsnorm_backward(m->dx, grads + lo->v[TN_V_MLP_NORM], m->dh, a.xmid, params + lo->v[TN_V_MLP_NORM], a.rstd2, N, D));

    /* Attention: m->dx now holds dL/dxmid, which is also dL/dx[l] through the residual. */
    TN_CHECK(weight_grad(m, grads, l, TN_W_O, m->dx, a.att, Hq, D));
    TN_CHECK(linear_dx(m, params, l, TN_W_O, m->datt, m->dx, Hq, D, 0.0f));
    TN_CHECK(ops->attention_backward(m->dq, m->dk, m->dv, m->datt, a.att, a.saved, a.q, a.k, a.v, m->B, m->T,
                                     c->n_heads, c->n_kv_heads, m->hd, m->attn_scratch));
    TN_CHECK(ops->rope(m->dq, m->rope_cos, m->rope_sin, m->B, m->T, c->n_heads, m->hd, 1));
    TN_CHECK(ops->rope(m->dk, m->rope_cos, m->rope_sin, m->B, m->T, c->n_kv_heads, m->hd, 1));
    float *dq = m->dq, *dk = m->dk; /* the gradients at the projections' outputs */
    if (c->qk_norm) {
        TN_CHECK(ops->zero(m->dqpre, (size_t)(N * Hq) * sizeof(float)));
        TN_CHECK(ops->zero(m->dkpre, (size_t)(N * KVd) * sizeof(float)));
        TN_CHECK(ops->rmsnorm_backward(m->dqpre, grads + lo->v[TN_V_Q_NORM], m->dq, a.qpre, params + lo->v[TN_V_Q_NORM], a.rstdq,
                                       N * c->n_heads, m->hd));
        TN_CHECK(ops->rmsnorm_backward(m->dkpre, grads + lo->v[TN_V_K_NORM], m->dk, a.kpre, params + lo->v[TN_V_K_NORM], a.rstdk,
                                       N * c->n_kv_heads, m->hd));
        dq = m->dqpre, dk = m->dkpre;
    }
    if (c->qkv_bias) {
        TN_CHECK(ops->bias_grad(grads + lo->v[TN_V_Q_BIAS], dq, N, Hq));
        TN_CHECK(ops->bias_grad(grads + lo->v[TN_V_K_BIAS], dk, N, KVd));
        TN_CHECK(ops->bias_grad(grads + lo->v[TN_V_V_BIAS], m->dv, N, KVd));
    }
    TN_CHECK(weight_grad(m, grads, l, TN_W_Q, dq, a.h1, D, Hq));
    TN_CHECK(weight_grad(m, grads, l, TN_W_K, dk, a.h1, D, KVd));
    TN_CHECK(weight_grad(m, grads, l, TN_W_V, m->dv, a.h1, D, KVd));
    TN_CHECK(linear_dx(m, params, l, TN_W_Q, m->dh, dq, D, Hq, 0.0f));
    TN_CHECK(linear_dx(m, params, l, TN_W_K, m->dh, dk, D, KVd, 1.0f));
    TN_CHECK(linear_dx(m, params, l, TN_W_V, m->dh, m->dv, D, KVd, 1.0f));
    return ops->rmsnorm_backward(m->dx, grads + lo->v[TN_V_ATTN_NORM], m->dh, a.x, params + lo->v[TN_V_ATTN_NORM], a.rstd1, N, D);
}

int tn_llama_forward(tn_llama *m, const float *params, const int32_t *inputs, const int32_t *targets,
                     const uint8_t *mask, float *loss, int64_t *n_counted) {
    const int64_t N = m->N, D = m->D, V = m->V;
    const tn_llama_config *c = &m->cfg;
    const tn_ops *ops = m->ops;
    TN_CHECK(check_sources(m));
    TN_CHECK(check_tokens(inputs, N, V, "input"));
    if (m->has_adapter) TN_CHECK(m->adapter.begin_forward(m->adapter.ctx));
    if (targets) TN_CHECK(check_tokens(targets, N, V, "target"));
    m->logits_valid = 0;
    TN_CHECK(ops->upload(m->inputs, inputs, (size_t)N * sizeof *inputs));
    m->have_targets = targets != NULL;
    int64_t counted = 0;
    if (targets) {
        TN_CHECK(ops->upload(m->targets, targets, (size_t)N * sizeof *targets));
        if (mask) {
            TN_CHECK(ops->upload(m->mask, mask, (size_t)N));
            for (int64_t n = 0; n < N; n++) counted += mask[n] != 0;
        } else {
            uint8_t *ones = malloc((size_t)N);
            if (!ones) return tn_err("out of memory");
            memset(ones, 1, (size_t)N);
            int rc = ops->upload(m->mask, ones, (size_t)N);
            free(ones);
            TN_CHECK(rc);
            counted = N;
        }
        if (ops->device_memory && !m->opts.forward_only) TN_CHECK(build_token_groups(m, inputs));
    }

    const float *E = params + m->off_embed;
    if (m->has_src && m->src.embedding && !(E = m->src.embedding(m->src.ctx, m->wscratch))) return -1;
    TN_CHECK(ops->embed(m->x, E, m->inputs, N, D));
    for (int64_t l = 0; l < m->L; l++) TN_CHECK(layer_forward(m, params, (int)l, 1));
    TN_CHECK(ops->rmsnorm(m->hf, m->rstdf, m->x + m->L * N * D, params + m->off_final_norm, N, D, c->norm_eps));
    TN_CHECK(linear(m, params, -1, TN_W_COUNT, m->logits, m->hf, D, V, 0.0f));
    m->logits_valid = 1;

    m->nll_sum = 0;
    m->n_counted = counted;
    if (!targets) {
        if (loss) *loss = 0;
        if (n_counted) *n_counted = 0;
        return 0;
    }
    TN_CHECK(ops->cross_entropy(m->nll, m->logits, m->targets, N, V));
    double sum = 0;
    TN_CHECK(ops->masked_sum(m->nll, m->mask, N, &sum));
    m->nll_sum = sum;
    if (loss) *loss = counted ? (float)(sum / (double)counted) : 0.0f;
    if (n_counted) *n_counted = counted;
    return 0;
}

int tn_llama_backward(tn_llama *m, const float *params, float *grads, float scale) {
    return tn_llama_backward_extra(m, params, grads, scale, NULL, NULL);
}

int tn_llama_backward_extra(tn_llama *m, const float *params, float *grads, float scale, const tn_llama_extra_grad *e,
                            double *hidden_loss) {
    if (hidden_loss) *hidden_loss = 0;
    if (m->opts.forward_only) return tn_err("model: this model was created for forward passes only");
    if (!m->have_targets || !m->logits_valid) return tn_err("model: backward needs a forward with targets");
    m->logits_valid = 0;
    if (m->n_counted == 0) return 0; /* nothing in the loss: every gradient is zero */
    const int64_t N = m->N, D = m->D, V = m->V;
    const tn_ops *ops = m->ops;

    float *dlogits = m->logits;
    TN_CHECK(ops->cross_entropy_backward(dlogits, m->targets, m->mask, N, V, scale / (float)m->n_counted));
    if (e && e->dlogits) TN_CHECK(ops->add(dlogits, e->dlogits, N * V)); /* the distillation term */
    TN_CHECK(weight_grad(m, grads, -1, TN_W_COUNT, dlogits, m->hf, D, V));
    TN_CHECK(linear_dx(m, params, -1, TN_W_COUNT, m->dh, dlogits, D, V, 0.0f));
    TN_CHECK(ops->zero(m->dx, (size_t)(N * D) * sizeof *m->dx));
    TN_CHECK(ops->rmsnorm_backward(m->dx, grads + m->off_final_norm, m->dh, m->x + m->L * N * D,
                                   params + m->off_final_norm, m->rstdf, N, D));

    /* Hidden-state distillation: mean over counted positions, dims and chosen layers of |x_l − teacher|². */
    const int nh = e ? e->n_hidden : 0;
    const double hnorm = nh ? (double)e->hidden_weight / ((double)m->n_counted * (double)D * nh) : 0;
    for (int64_t l = m->L - 1; l >= 0; l--) {
        for (int i = 0; i < nh; i++) {
            if (e->layers[i] != l) continue;
            double sum = 0; /* m->dx is dL/dx[l+1]: add the term's gradient with respect to layer l's output */
            TN_CHECK(ops->hidden_mse(&sum, m->dx, tn_llama_hidden(m, (int)l), e->teacher_x[i], m->mask, N, D,
                                     (float)(e->hidden_scale * hnorm)));
            if (hidden_loss) *hidden_loss += sum * hnorm;
        }
        TN_CHECK(layer_backward(m, params, grads, (int)l));
    }
    return ops->embed_backward(grads + m->off_embed, m->dx, m->inputs, &m->groups, N, D);
}
