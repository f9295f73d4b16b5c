/* The inference engine (runner/infer.h). Layout of this file, top to bottom:
 *   1. the engine: weight matrices (kernels/infer_ops.h tn_imat), the KV cache, scratch
 *   2. the one product every layer uses, matmul(), dispatching on the weight's dtype through the ops table
 *   3. the forward pass over a chunk of tokens, the one layer sequence for every device
 *   4. running a chunk: on the CPU inside one OpenMP region, on CUDA on one host thread (a decode step
 *      captured once as a CUDA graph and replayed)
 *   5. loading: .trin and .h5, and the one-time upload to the device
 * The shape of a llama2.c `run.c` (https://github.com/karpathy/llama2.c): plain arrays, one forward
 * function, a KV cache indexed [layer][position][kv_dim]. */
#include "runner/infer.h"
#include "runner/rescore.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "device/device.h"
#include "export/gguf_dequant.h"
#include "kernels/cpu/ops_cpu.h"
#include "kernels/packed.h"
#include "model/params.h"
#include "model/rope.h"
#include "runner/f16.h"
#include "kernels/infer_ops.h"
#include "train/checkpoint.h"
#include "train/snapshot.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64 /* prompt tokens per batched step: bounds the scratch memory, keeps gemm efficient */

/* ---- 1. the engine ----------------------------------------------------------------------------------- */

typedef tn_imat imat;

typedef struct {
    const float *attn_norm, *mlp_norm; /* [dim] */
    const float *bq, *bk, *bv;         /* [q rows], [kv rows], [kv rows]: qkv_bias models only, else NULL */
    const float *q_norm, *k_norm;      /* [head_dim]: qk_norm models only, else NULL */
    imat wq, wk, wv, wo, wg, wu, wd;
} ilayer;

/* The seven matrices of a layer, indexed by tn_linear_kind (model/params.h: q, k, v, o, gate, up, down). */
static void layer_mats(ilayer *L, imat *out[TN_W_COUNT]) {
    out[TN_W_Q] = &L->wq, out[TN_W_K] = &L->wk, out[TN_W_V] = &L->wv, out[TN_W_O] = &L->wo;
    out[TN_W_GATE] = &L->wg, out[TN_W_UP] = &L->wu, out[TN_W_DOWN] = &L->wd;
}

/* The vectors of a layer, indexed by tn_layer_vector (model/params.h); NULL where the model has none. */
static void layer_vecs(ilayer *L, const float **out[TN_V_COUNT]) {
    out[TN_V_ATTN_NORM] = &L->attn_norm, out[TN_V_MLP_NORM] = &L->mlp_norm;
    out[TN_V_Q_BIAS] = &L->bq, out[TN_V_K_BIAS] = &L->bk, out[TN_V_V_BIAS] = &L->bv;
    out[TN_V_Q_NORM] = &L->q_norm, out[TN_V_K_NORM] = &L->k_norm;
}

/* The quantized tables (TRIN Q8 / Q4): int16 activations, and no CUDA kernels. */
static int is_qtable(tn_packed_dtype d) { return d == TN_PACKED_Q8 || d == TN_PACKED_Q4; }

/* Run `body` with W set to each matrix of layer L in turn. */
#define FOR_EACH_MAT(L, body)                                                                          \
    do {                                                                                               \
        imat *mats_[TN_W_COUNT];                                                                       \
        layer_mats((L), mats_);                                                                        \
        for (int k_ = 0; k_ < TN_W_COUNT; k_++) {                                                      \
            imat *W = mats_[k_];                                                                       \
            body;                                                                                      \
        }                                                                                              \
    } while (0)

/* An activation batch X [n, cols] with its integer forms, computed on first use by each thread for itself
 * (cheap next to a product, and it saves a barrier), so q, k and v (or gate and up) share them:
 *   q, scale  int8 codes and per-token scales for the T2 integer kernels (kernels/packed.h)
 *   q16, scale16  int16 codes and scales for the Q8 / Q4 tables (an LM head's rows are short, and int8
 *             activations cost a head measurable accuracy: kernels/packed.h)
 *   fq        the fake-quantized floats q · m / 127 (quant/act.h), the input a model trained with int8
 *             activations gives to its float products */
typedef struct {
    const float *x;
    int n;
    int64_t cols;
    int8_t *q;     /* scratch [n, cols] */
    float *scale;  /* scratch [n] */
    float *fq;     /* scratch [n, cols] */
    int16_t *q16;  /* scratch [n, cols]: int16 codes for the Q8 / Q4 tables (kernels/packed.h) */
    float *scale16;/* scratch [n] */
    int quantized, faked, quantized16;
} act;

/* One thread's scratch (CUDA: the one worker, in device memory). */
typedef struct worker_s {
    float *h;      /* [CHUNK, dim]: the normed input of a block (each thread its own copy) */
    int8_t *q;     /* [CHUNK, widest] */
    float *qs;     /* [CHUNK] */
    float *fq;     /* [CHUNK, widest] */
    int16_t *q16;  /* [CHUNK, widest] */
    float *qs16;   /* [CHUNK] */
    float *y;      /* [CHUNK, slice]: a product's rows before they are scattered into [n, rows] (CPU) */
    float *scores; /* attention scratch (tn_infer_attn.scratch) */
    float *rstd;   /* [CHUNK]: RMSNorm's 1/rms per token (written by the CUDA kernel, unused) */
} worker;

enum { GRAPH_OFF = -1, GRAPH_WAIT = 0, GRAPH_CAPTURE = 1, GRAPH_READY = 2 };

struct tn_infer {
    tn_llama_config cfg;
    tn_infer_opts opts;
    const tn_infer_ops *ops; /* where the forward pass computes */
    tn_device dev;
    int on_device;           /* ops->device_memory: weights, cache and activations live on the device */
    int ctx, pos, n_threads;
    /* the weights, in the ops' memory (on a device, device copies of the host views the loader built) */
    imat embed, head;
    imat exact;              /* the exact rows of a quantized head (TRIN 4), w == NULL when absent or unused */
    int rescore;             /* candidates re-scored from `exact` per token (0 = none) */
    const float *final_norm;
    ilayer *layers;
    /* KV cache: [n_layers, ctx, kv_dim] each; RoPE tables [ctx, head_dim / 2] */
    float *k_cache, *v_cache, *cos_t, *sin_t;
    /* shared scratch for a chunk of up to CHUNK tokens */
    float *x, *q, *att, *tmp, *g, *u;
    float *k_new, *v_new;    /* CUDA: [CHUNK, kv_dim] the chunk's k and v before they enter the cache */
    float *qpre, *kpre;      /* qk_norm: [CHUNK, q_dim], [CHUNK, kv_dim] q and k before their per-head norms */
    int32_t *step_dev;       /* CUDA: [1 + CHUNK] the chunk's first position, then its token ids (one upload) */
    int32_t *step_host;      /* host [1 + CHUNK]: what goes up */
    float *logits_dev;       /* CUDA: [CHUNK, vocab] */
    float *logits1;          /* host [vocab]: tn_infer_step's result */
    worker *workers;         /* host array of [n_threads] */
    void *graph;             /* CUDA: the captured decode step */
    int graph_state;
    int64_t device_bytes;    /* bytes allocated through ops (device memory on a device) */
    /* what we own */
    tn_trin *trin;
    tn_checkpoint *ck;
    void **owned; /* host memory (tn_free) */
    int n_owned, cap_owned;
    void **bufs;  /* memory of the ops table (ops->free) */
    int n_bufs, cap_bufs;
    tn_tokenizer *tok;
    char tok_err[256];
    char desc[200];
};

static int push(void ***list, int *n, int *cap, void *p) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        void **no = realloc(*list, (size_t)nc * sizeof *no);
        if (!no) return tn_err("out of memory");
        *list = no;
        *cap = nc;
    }
    (*list)[(*n)++] = p;
    return 0;
}

/* Take host memory p (tn_alloc) into the engine's keeping; a NULL p is an allocation failure. */
static int own(tn_infer *m, void *p) {
    if (!p) return tn_err("out of memory");
    if (push(&m->owned, &m->n_owned, &m->cap_owned, p) != 0) {
        tn_free(p);
        return -1;
    }
    return 0;
}

/* `bytes` (zeroed) of the ops' memory, kept by the engine. */
static void *buf_alloc(tn_infer *m, size_t bytes) {
    void *p = m->ops->alloc(bytes);
    if (!p) {
        tn_err_prefix("allocating %zu bytes on %s", bytes, m->ops->name);
        return NULL;
    }
    if (push(&m->bufs, &m->n_bufs, &m->cap_bufs, p) != 0) {
        m->ops->free(p);
        return NULL;
    }
    m->device_bytes += (int64_t)bytes;
    return p;
}

/* ---- 2. the product -----------------------------------------------------------------------------------
 * On the CPU the whole forward pass of a chunk runs inside ONE OpenMP parallel region (section 4): every
 * thread computes its share of the rows of each product, and threads meet at a barrier only where a result
 * is needed whole. That is 4 synchronisations per layer (5 if the kv heads do not divide evenly among the
 * threads) instead of an OpenMP fork/join per product (about 12 per layer): on two cores a decode step is
 * ~200 small products, and each fork/join costs microseconds on an idle machine and far more on a busy one.
 * The kernels are called on row slices; called from inside the region their own OpenMP regions are nested,
 * hence inactive, and run on the calling thread. On CUDA there is one "thread" and every product covers
 * all rows (one kernel launch each). */

static act act_of(worker *w, const float *x, int n, int64_t cols) {
    act a = {x, n, cols, w->q, w->qs, w->fq, w->q16, w->qs16, 0, 0, 0};
    return a;
}

#define ROW_ALIGN 16 /* slices start on multiples of 16 rows (the kernels work on groups of rows) */

/* Rows [*r0, *r1) of `rows` for thread tid of nth. */
static void split(int64_t rows, int tid, int nth, int64_t *r0, int64_t *r1) {
    int64_t per = (rows + nth - 1) / nth;
    per = (per + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    *r0 = (int64_t)tid * per < rows ? (int64_t)tid * per : rows;
    *r1 = *r0 + per < rows ? *r0 + per : rows;
}

/* Rows [r0, r1) of W as a matrix of their own. */
static imat slice(const imat *W, int64_t r0, int64_t r1) {
    imat S = *W;
    S.rows = r1 - r0;
    S.w = (const uint8_t *)W->w + (size_t)r0 * W->row_bytes;
    if (W->row_scale) S.row_scale = W->row_scale + r0;
    return S;
}

/* Y [n, rows] = X [n, cols] · Wᵀ through the ops table. */
static int product(const tn_infer_ops *ops, const imat *W, act *a, float *Y) {
    const int64_t R = W->rows, C = W->cols;
    const int n = a->n;
    const float *X = a->x;
    if (W->act8 && W->dtype != TN_PACKED_T2 && !is_qtable(W->dtype)) {
        /* the integer kernels (T2, Q8, Q4) quantize their input themselves */
        if (!a->faked) {
            TN_CHECK(ops->act_fake_quant(a->x, n, C, a->fq));
            a->faked = 1;
        }
        X = a->fq;
    }
    if (W->dtype == TN_PACKED_T2 && !a->quantized) {
        TN_CHECK(ops->act_quant_i8(a->x, n, C, a->q, a->scale));
        a->quantized = 1;
    }
    if (is_qtable(W->dtype) && !a->quantized16) {
        TN_CHECK(ops->act_quant_i16(a->x, n, C, a->q16, a->scale16));
        a->quantized16 = 1;
    }
    switch (W->dtype) {
    case TN_PACKED_F32: return ops->gemm_f32(W->w, R, C, n, X, Y);
    case TN_PACKED_F16: return ops->gemm_f16(W->w, R, C, n, X, Y);
    case TN_PACKED_T2: return ops->gemm_t2(W->w, W->row_scale, W->tensor_scale, R, C, n, a->q, a->scale, Y);
    case TN_PACKED_Q8: return ops->gemm_q8(W->w, W->row_scale, R, C, n, a->q16, a->scale16, Y);
    case TN_PACKED_Q4: return ops->gemm_q4(W->w, R, C, n, a->q16, a->scale16, Y);
    case TN_PACKED_L4: return ops->gemm_l4(W->w, W->grid, W->row_scale, W->tensor_scale, R, C, n, X, Y);
    case TN_PACKED_L8: return ops->gemm_l8(W->w, W->grid, W->row_scale, W->tensor_scale, R, C, n, X, Y);
    }
    return tn_err("weight of unknown dtype %d", (int)W->dtype);
}

/* Rows [r0, r1) of Y [n, ldy] = X · Wᵀ (Y's row stride ldy >= W->rows), on the calling thread. */
static int matmul_rows(const tn_infer_ops *ops, const imat *W, act *a, float *Y, int64_t ldy, worker *w, int64_t r0,
                       int64_t r1) {
    if (r0 >= r1) return 0;
    imat S = slice(W, r0, r1);
    if (a->n == 1 || (r0 == 0 && r1 == W->rows && ldy == W->rows)) return product(ops, &S, a, Y + r0);
    TN_CHECK(product(ops, &S, a, w->y)); /* only the CPU gets here: several threads share the rows */
    for (int t = 0; t < a->n; t++) memcpy(Y + t * ldy + r0, w->y + t * (r1 - r0), (size_t)(r1 - r0) * sizeof *Y);
    return 0;
}

/* This thread's rows of Y [n, ldy] = X · Wᵀ. */
static int matmul(const tn_infer_ops *ops, const imat *W, act *a, float *Y, int64_t ldy, worker *w, int tid, int nth) {
    int64_t r0, r1;
    split(W->rows, tid, nth, &r0, &r1);
    return matmul_rows(ops, W, a, Y, ldy, w, r0, r1);
}

/* ---- 3. the forward pass ------------------------------------------------------------------------------
 * The n <= CHUNK tokens at positions pos .. pos+n-1, their embeddings already in m->x. Thread tid of nth
 * (CUDA: 0 of 1). Logits of rows [first, n) go to out ([n-first, V], the ops' memory); first == n computes
 * none. Every thread reaches every barrier whatever happens: after a failure (CUDA only) the remaining
 * ops are skipped, not the barriers. Returns the first failure. */
#define OP(call)                                                                                       \
    do {                                                                                               \
        if (rc == 0) rc = (call);                                                                      \
    } while (0)

/* Qwen3's per-head RMSNorms of q and k (before RoPE, which the attention op applies) for the kv heads
 * [kh0, kh1) and their query heads: rows of hd values, from qp / kp into m->q / kc. The thread attends with
 * these heads next, so no barrier is needed. All heads at once (CUDA) are one call each over [n·heads, hd]. */
static int head_norms(tn_infer *m, const ilayer *L, const float *qp, const float *kp, float *kc, int n, int kh0,
                      int kh1, worker *w) {
    const tn_llama_config *c = &m->cfg;
    const int64_t hd = tn_llama_head_dim(c), G = c->n_heads / c->n_kv_heads, qd = c->n_heads * hd,
                  kvd = c->n_kv_heads * hd;
    if (kh0 == 0 && kh1 == c->n_kv_heads) {
        TN_CHECK(m->ops->rmsnorm(m->q, w->rstd, qp, L->q_norm, (int64_t)n * c->n_heads, hd, c->norm_eps));
        return m->ops->rmsnorm(kc, w->rstd, kp, L->k_norm, (int64_t)n * c->n_kv_heads, hd, c->norm_eps);
    }
    for (int64_t t = 0; t < n; t++) {
        const int64_t q0 = t * qd + kh0 * G * hd, k0 = t * kvd + kh0 * hd;
        TN_CHECK(m->ops->rmsnorm(m->q + q0, w->rstd, qp + q0, L->q_norm, (kh1 - kh0) * G, hd, c->norm_eps));
        TN_CHECK(m->ops->rmsnorm(kc + k0, w->rstd, kp + k0, L->k_norm, kh1 - kh0, hd, c->norm_eps));
    }
    return 0;
}

/* One token's logits [V] from the quantized head: its best m->rescore recomputed from the exact rows, each
 * the product an F16 head computes for that row (runner/rescore.h). h: the token's normed final state. */
static void rescore_row(tn_infer *m, worker *w, const float *h, float *logits) {
    int32_t cand[TN_RESCORE_MAX];
    const int k = tn_top_indices(logits, m->cfg.vocab_size, m->rescore, cand);
    act a = act_of(w, h, 1, m->cfg.dim);
    for (int j = 0; j < k; j++) {
        const imat row = slice(&m->exact, cand[j], cand[j] + 1);
        product(m->ops, &row, &a, logits + cand[j]); /* the CPU ops cannot fail */
    }
}

static int forward_layers(tn_infer *m, int n, int first, float *out, int tid, int nth) {
    const tn_infer_ops *ops = m->ops;
    const tn_llama_config *c = &m->cfg;
    const int64_t D = c->dim, hd = tn_llama_head_dim(c), H = c->n_heads, KV = c->n_kv_heads, F = c->ffn_dim;
    const int64_t qd = H * hd, kvd = KV * hd;
    float *x = m->x;
    worker *w = &m->workers[tid];
    int rc = 0;
    int64_t d0, d1, f0, f1; /* this thread's share of dim-sized and ffn-sized outputs */
    split(D, tid, nth, &d0, &d1);
    split(F, tid, nth, &f0, &f1);
    /* kv heads [kh0, kh1): as even a share as whole heads allow (a thread may get none) */
    const int kh0 = (int)(KV * tid / nth), kh1 = (int)(KV * (tid + 1) / nth);
    /* When they divide evenly, the thread computes the q, k and v rows of its own kv heads (as many rows as
     * split() would give it) and attends with them at once: no barrier between the products and attention. */
    const int by_heads = KV % nth == 0;
    const int64_t group_rows = H / KV * hd; /* q rows of one kv head */
    tn_infer_attn at = {.pos = m->pos, .pos_dev = m->step_dev, .cos_t = m->cos_t, .sin_t = m->sin_t, .n = n,
                        .H = (int)H, .KV = (int)KV, .hd = (int)hd, .ctx = m->ctx, .q = m->q, .out = m->att,
                        .scratch = w->scores};

    for (int l = 0; l < c->n_layers; l++) {
        const ilayer *L = &m->layers[l];
        at.k_cache = m->k_cache + (int64_t)l * m->ctx * kvd;
        at.v_cache = m->v_cache + (int64_t)l * m->ctx * kvd;
        /* where this chunk's k and v go: the cache rows themselves, or the device's staging rows */
        float *kc = m->on_device ? m->k_new : at.k_cache + (int64_t)m->pos * kvd;
        float *vc = m->on_device ? m->v_new : at.v_cache + (int64_t)m->pos * kvd;
        at.k_new = kc;
        at.v_new = vc;
        /* with per-head q/k norms (Qwen3) the products land in qpre / kpre and the norms write q / kc */
        float *qp = L->q_norm ? m->qpre : m->q, *kp = L->q_norm ? m->kpre : kc;

        /* attention block: x += Wo · attention(rope(Wq h), rope(Wk h), Wv h),  h = rmsnorm(x) · w */
        OP(ops->rmsnorm(w->h, w->rstd, x, L->attn_norm, n, D, c->norm_eps));
        act a = act_of(w, w->h, n, D);
        if (by_heads) {
            OP(matmul_rows(ops, &L->wq, &a, qp, qd, w, kh0 * group_rows, kh1 * group_rows));
            OP(matmul_rows(ops, &L->wk, &a, kp, kvd, w, kh0 * hd, kh1 * hd));
            OP(matmul_rows(ops, &L->wv, &a, vc, kvd, w, kh0 * hd, kh1 * hd));
            if (L->bq) { /* Qwen2: each projection's bias on the rows this thread computed */
                OP(ops->add_bias(qp, L->bq, n, qd, kh0 * group_rows, kh1 * group_rows));
                OP(ops->add_bias(kp, L->bk, n, kvd, kh0 * hd, kh1 * hd));
                OP(ops->add_bias(vc, L->bv, n, kvd, kh0 * hd, kh1 * hd));
            }
        } else {
            OP(matmul(ops, &L->wq, &a, qp, qd, w, tid, nth));
            OP(matmul(ops, &L->wk, &a, kp, kvd, w, tid, nth));
            OP(matmul(ops, &L->wv, &a, vc, kvd, w, tid, nth));
            if (L->bq) {
                int64_t r0, r1;
                split(qd, tid, nth, &r0, &r1);
                OP(ops->add_bias(qp, L->bq, n, qd, r0, r1));
                split(kvd, tid, nth, &r0, &r1);
                OP(ops->add_bias(kp, L->bk, n, kvd, r0, r1));
                OP(ops->add_bias(vc, L->bv, n, kvd, r0, r1));
            }
            ops->barrier();
        }
        if (L->q_norm && kh0 < kh1) OP(head_norms(m, L, qp, kp, kc, n, kh0, kh1, w));
        if (kh0 < kh1) OP(ops->attention(&at, kh0, kh1));
        ops->barrier();
        act ao = act_of(w, m->att, n, qd);
        OP(matmul(ops, &L->wo, &ao, m->tmp, D, w, tid, nth));
        OP(ops->add(x, m->tmp, n, D, d0, d1)); /* the rows this thread computed */
        ops->barrier();

        /* MLP block: x += Wd · (silu(Wg h) * (Wu h)),  h = rmsnorm(x) · w */
        OP(ops->rmsnorm(w->h, w->rstd, x, L->mlp_norm, n, D, c->norm_eps));
        act am = act_of(w, w->h, n, D);
        OP(matmul(ops, &L->wg, &am, m->g, F, w, tid, nth));
        OP(matmul(ops, &L->wu, &am, m->u, F, w, tid, nth));
        OP(ops->swiglu(m->g, m->u, n, F, f0, f1));
        ops->barrier();
        act ad = act_of(w, m->g, n, F);
        OP(matmul(ops, &L->wd, &ad, m->tmp, D, w, tid, nth));
        OP(ops->add(x, m->tmp, n, D, d0, d1));
        ops->barrier();
    }

    if (first < n) { /* logits = rmsnorm(x) · w_final · headᵀ */
        const int nr = n - first;
        OP(ops->rmsnorm(w->h, w->rstd, x + first * D, m->final_norm, nr, D, c->norm_eps));
        act af = act_of(w, w->h, nr, D);
        OP(matmul(ops, &m->head, &af, out, c->vocab_size, w, tid, nth));
        if (m->rescore > 0) { /* the host only: a device runs the exact rows as its head (place) */
            ops->barrier();   /* every logit of the scan */
            for (int t = tid; t < nr; t += nth) rescore_row(m, w, w->h + (int64_t)t * D, out + (int64_t)t * c->vocab_size);
        }
    }
    return rc;
}

/* ---- 4. running a chunk ------------------------------------------------------------------------------- */

/* CUDA: the whole chunk on the device, its tokens and first position already uploaded. */
static int device_chunk(tn_infer *m, int n, int first) {
    TN_CHECK(m->ops->embed(&m->embed, m->step_dev + 1, n, m->x));
    return forward_layers(m, n, first, m->logits_dev, 0, 1);
}

/* CUDA, one token with its logits: the decode step. The first such step runs op by op (it also sizes
 * every lazily grown scratch buffer); the second is captured as a CUDA graph, which every later step
 * replays with one launch instead of 19 launches per layer (T2). Positions and tokens are read from device
 * memory, so the one graph serves every position. Where capture is refused (the emulator, a failure) the
 * steps run op by op; the two paths compute the same thing (scripts/gpu-check.sh compares them). */
static int device_decode(tn_infer *m) {
    if (m->graph_state == GRAPH_CAPTURE) {
        m->graph_state = GRAPH_OFF;
        if (m->ops->graph_begin && m->ops->graph_begin() == 0) {
            const int rc = device_chunk(m, 1, 0);
            void *g = NULL;
            const int rc_end = m->ops->graph_end(&g);
            if (rc == 0 && rc_end == 0 && g) {
                m->graph = g;
                m->graph_state = GRAPH_READY;
            } else {
                if (g) m->ops->graph_free(g);
                tn_log_warn("CUDA graph capture of the decode step failed (%s); decoding without a graph",
                            tn_errmsg());
                tn_err_clear();
            }
        } else {
            if (m->ops->graph_begin) /* a table without graphs (the emulator) is not a failure */
                tn_log_warn("CUDA graph capture of the decode step could not start (%s); decoding without a graph",
                            tn_errmsg());
            tn_err_clear();
        }
    }
    if (m->graph_state == GRAPH_READY) return m->ops->graph_launch(m->graph);
    TN_CHECK(device_chunk(m, 1, 0));
    if (m->graph_state == GRAPH_WAIT) m->graph_state = GRAPH_CAPTURE;
    return 0;
}

/* n <= CHUNK tokens (host ids) at positions pos .. pos+n-1; logits of rows [first, n) to out (host). */
static int forward_chunk(tn_infer *m, const int32_t *tokens, int n, int first, float *out) {
    const int64_t V = m->cfg.vocab_size;
    if (m->on_device) {
        m->step_host[0] = m->pos;
        memcpy(m->step_host + 1, tokens, (size_t)n * sizeof *tokens);
        TN_CHECK(m->ops->upload(m->step_dev, m->step_host, (size_t)(1 + n) * sizeof *tokens));
        if (n == 1 && first == 0) TN_CHECK(device_decode(m));
        else TN_CHECK(device_chunk(m, n, first));
        if (first < n) TN_CHECK(m->ops->download(out, m->logits_dev, (size_t)((n - first) * V) * sizeof *out));
    } else {
        m->ops->embed(&m->embed, tokens, n, m->x);
#pragma omp parallel num_threads(m->n_threads)
        forward_layers(m, n, first, out, omp_get_thread_num(), omp_get_num_threads()); /* the CPU ops cannot fail */
    }
    m->pos += n;
    return 0;
}

int tn_infer_forward(tn_infer *m, const int32_t *tokens, int n, float *logits, int all_logits) {
    const int V = m->cfg.vocab_size;
    if (n <= 0) return tn_err("forward: no tokens");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return tn_err("token id %d at position %d is outside the vocabulary (%d)", tokens[i], i, V);
    if (n > m->ctx - m->pos)
        return tn_err("context full: %d tokens after %d would exceed the context of %d", n, m->pos, m->ctx);
    for (int c0 = 0; c0 < n; c0 += CHUNK) {
        const int k = n - c0 < CHUNK ? n - c0 : CHUNK;
        const int last = c0 + k == n;
        if (logits && all_logits) TN_CHECK(forward_chunk(m, tokens + c0, k, 0, logits + (int64_t)c0 * V));
        else if (logits && last) TN_CHECK(forward_chunk(m, tokens + c0, k, k - 1, logits));
        else TN_CHECK(forward_chunk(m, tokens + c0, k, k, NULL));
    }
    return 0;
}

const float *tn_infer_step(tn_infer *m, int32_t token) {
    if (tn_infer_forward(m, &token, 1, m->logits1, 0) != 0) return NULL;
    return m->logits1;
}

/* ---- 5. loading ------------------------------------------------------------------------------------- */

int tn_infer_load_parse(const char *s, tn_infer_load *out) {
    if (!strcmp(s, "auto")) *out = TN_LOAD_AUTO;
    else if (!strcmp(s, "map")) *out = TN_LOAD_MAP;
    else if (!strcmp(s, "copy")) *out = TN_LOAD_COPY;
    else return tn_err("unknown load '%s' (auto, map, copy)", s);
    return 0;
}

void tn_infer_opts_default(tn_infer_opts *o) {
    o->mode = TN_INFER_FAST;
    o->ctx = 0;
    o->threads = 0;
    o->device = "cpu";
    o->graph = 1;
    o->rescore = TN_RESCORE_DEFAULT;
    o->load = TN_LOAD_AUTO;
}

void tn_infer_free(tn_infer *m) {
    if (!m) return;
    if (m->graph) m->ops->graph_free(m->graph);
    for (int i = 0; i < m->n_bufs; i++) m->ops->free(m->bufs[i]);
    free(m->bufs);
    for (int i = 0; i < m->n_owned; i++) tn_free(m->owned[i]);
    free(m->owned);
    free(m->workers);
    free(m->layers);
    tn_trin_close(m->trin);
    if (m->ck) {
        tn_ckpt_free(m->ck);
        free(m->ck);
    }
    tn_tokenizer_free(m->tok);
    free(m);
}

/* Threads, context length and the ops table's memory the state needs (KV cache, RoPE tables, scratch). */
static void plan_state(tn_infer *m) {
    const tn_llama_config *c = &m->cfg;
    if (m->opts.threads > 0) {
        omp_set_num_threads(m->opts.threads);
        tn_packed_set_threads(m->opts.threads);
    }
    m->n_threads = m->on_device ? 1 : omp_get_max_threads();
    m->ctx = m->opts.ctx > 0 && m->opts.ctx < c->max_seq_len ? m->opts.ctx : c->max_seq_len;
}

/* The state's buffers: allocate them (alloc = 1) or count their bytes (alloc = 0, returned in *bytes). */
static int alloc_state(tn_infer *m, int alloc, int64_t *bytes) {
    const tn_llama_config *c = &m->cfg;
    const int64_t D = c->dim, hd = tn_llama_head_dim(c), qd = (int64_t)c->n_heads * hd,
                  kvd = (int64_t)c->n_kv_heads * hd, F = c->ffn_dim, V = c->vocab_size;
    const int64_t widest = D > F ? (D > qd ? D : qd) : (F > qd ? F : qd);
    int64_t total = 0;
#define ALLOC(ptr, count)                                                                              \
    do {                                                                                               \
        const size_t b_ = (size_t)(count) * sizeof *(ptr);                                             \
        total += (int64_t)b_;                                                                          \
        if (alloc && !((ptr) = buf_alloc(m, b_))) return -1;                                           \
    } while (0)
    ALLOC(m->k_cache, (int64_t)c->n_layers * m->ctx * kvd);
    ALLOC(m->v_cache, (int64_t)c->n_layers * m->ctx * kvd);
    ALLOC(m->cos_t, (int64_t)m->ctx * (hd / 2));
    ALLOC(m->sin_t, (int64_t)m->ctx * (hd / 2));
    ALLOC(m->x, CHUNK * D);
    ALLOC(m->q, CHUNK * qd);
    ALLOC(m->att, CHUNK * qd);
    ALLOC(m->tmp, CHUNK * D);
    ALLOC(m->g, CHUNK * F);
    ALLOC(m->u, CHUNK * F);
    if (c->qk_norm) {
        ALLOC(m->qpre, CHUNK * qd);
        ALLOC(m->kpre, CHUNK * kvd);
    }
    if (m->on_device) {
        ALLOC(m->k_new, CHUNK * kvd);
        ALLOC(m->v_new, CHUNK * kvd);
        ALLOC(m->step_dev, 1 + CHUNK);
        ALLOC(m->logits_dev, CHUNK * V);
    }
    if (alloc) {
        if (m->on_device) {
            m->step_host = tn_alloc(1 + CHUNK, sizeof *m->step_host);
            if (own(m, m->step_host) != 0) return -1;
        }
        m->logits1 = tn_alloc((size_t)V, sizeof *m->logits1);
        if (own(m, m->logits1) != 0) return -1;
        m->workers = calloc((size_t)m->n_threads, sizeof *m->workers);
        if (!m->workers) return tn_err("out of memory");
    }
    /* per thread: the widest product output any thread's slice can have (CPU) */
    int64_t rows_max = V > F ? V : F;
    rows_max = rows_max > qd ? rows_max : qd;
    const int64_t slice_max = ((rows_max + m->n_threads - 1) / m->n_threads + 2 * ROW_ALIGN);
    const int64_t scores = m->ops->attention_scratch_floats(CHUNK, c->n_heads, c->n_kv_heads, hd, m->ctx);
    for (int t = 0; t < m->n_threads; t++) {
        worker *w = alloc ? &m->workers[t] : &(worker){0};
        ALLOC(w->h, CHUNK * D);
        ALLOC(w->q, CHUNK * widest);
        ALLOC(w->qs, CHUNK);
        ALLOC(w->fq, CHUNK * widest);
        if (m->ops->act_quant_i16) { /* tables without Q8 / Q4 kernels refuse those models */
            ALLOC(w->q16, CHUNK * widest);
            ALLOC(w->qs16, CHUNK);
        }
        if (!m->on_device) ALLOC(w->y, CHUNK * slice_max);
        ALLOC(w->scores, scores);
        ALLOC(w->rstd, CHUNK * (c->qk_norm ? c->n_heads : 1)); /* CUDA's rmsnorm writes one per row */
    }
#undef ALLOC
    if (bytes) *bytes = total;
    if (!alloc) return 0;
    /* RoPE tables for every position, once (row p = position p: the values tn_rope_tables gives any
     * chunk that starts at p) */
    float *ct = tn_alloc((size_t)(m->ctx * (hd / 2)), sizeof *ct), *st = tn_alloc((size_t)(m->ctx * (hd / 2)), sizeof *st);
    int rc = ct && st ? 0 : tn_err("out of memory");
    if (rc == 0) {
        rc = tn_rope_tables(c, hd, m->ctx, 0, ct, st);
        if (rc == 0) rc = m->ops->upload(m->cos_t, ct, (size_t)(m->ctx * (hd / 2)) * sizeof *ct);
        if (rc == 0) rc = m->ops->upload(m->sin_t, st, (size_t)(m->ctx * (hd / 2)) * sizeof *st);
    }
    tn_free(ct);
    tn_free(st);
    return rc;
}

/* ---- the one-time upload (CUDA) ------------------------------------------------------------------------ */

/* A device copy of `bytes` of host memory, kept by the engine. */
static const void *upload_copy(tn_infer *m, const void *host, size_t bytes) {
    void *d = buf_alloc(m, bytes);
    if (d && m->ops->upload(d, host, bytes) != 0) return NULL;
    return d;
}

/* Bytes the device copy of W takes. */
static int64_t mat_device_bytes(const imat *W) {
    int64_t b = W->rows * (int64_t)W->row_bytes + (W->row_scale ? 4 * W->rows : 0);
    if (W->dtype == TN_PACKED_L4 || W->dtype == TN_PACKED_L8) b += 4 * (W->dtype == TN_PACKED_L4 ? 16 : 256);
    return b;
}

/* Free host memory p that the engine owns (a matrix dequantized for exact mode, once uploaded). */
static void release_owned(tn_infer *m, const void *p) {
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) {
            tn_free(m->owned[i]);
            m->owned[i] = m->owned[--m->n_owned];
            return;
        }
}

/* Replace W's host pointers with device copies. A host copy the engine made (exact mode's dequantized
 * floats) is freed: the device holds the matrix from now on. */
static int mat_upload(tn_infer *m, imat *W) {
    const void *host = W->w;
    if (!(W->w = upload_copy(m, W->w, (size_t)W->rows * W->row_bytes))) return -1;
    release_owned(m, host);
    if (W->row_scale && !(W->row_scale = upload_copy(m, W->row_scale, (size_t)W->rows * sizeof(float)))) return -1;
    if (W->dtype == TN_PACKED_L4 || W->dtype == TN_PACKED_L8) {
        const size_t n = W->dtype == TN_PACKED_L4 ? 16 : 256;
        if (!(W->grid = upload_copy(m, W->grid, n * sizeof(float)))) return -1;
    }
    return 0;
}

/* Every vector of the model (the final norm, each layer's norms, biases, q/k norms) into the device's memory,
 * sized by the layout's own entries. */
static int vecs_upload(tn_infer *m) {
    if (!(m->final_norm = upload_copy(m, m->final_norm, (size_t)m->cfg.dim * sizeof(float)))) return -1;
    tn_llama_layout lay;
    TN_CHECK(tn_llama_layout_init(&lay, &m->cfg));
    int rc = 0;
    for (int i = 0; i < lay.n_tensors && rc == 0; i++) {
        const tn_tensor_info *t = &lay.tensors[i];
        if (t->layer < 0 || t->vec < 0) continue;
        const float **slot[TN_V_COUNT];
        layer_vecs(&m->layers[t->layer], slot);
        if (!(*slot[t->vec] = upload_copy(m, *slot[t->vec], t->numel * sizeof(float)))) rc = -1;
    }
    tn_llama_layout_free(&lay);
    return rc;
}

/* After the host views are built: size the state, refuse what does not fit the device (before any device
 * allocation), allocate the state and, on a device, upload every weight once. */
static int place(tn_infer *m) {
    plan_state(m);
    const int hd = tn_llama_head_dim(&m->cfg);
    if (m->ops->max_head_dim && hd > m->ops->max_head_dim)
        return tn_err("head dimension %d: the %s attention handles at most %d", hd, m->ops->name,
                      m->ops->max_head_dim);
    const int tables = m->ops->gemm_q8 && m->ops->gemm_q4;
    if (m->exact.w && (!tables || m->opts.rescore == 0)) {
        /* an engine without the tables' kernels (CUDA) runs the exact rows as the head; rescore 0 keeps
         * the quantized head alone (a tied model still embeds from the exact rows) */
        if (!tables && m->opts.rescore == 0)
            return tn_err("re-scoring 0 candidates keeps the quantized head alone, and the %s engine has no %s "
                          "kernels: leave --rescore at its default (the %s runs the exact rows as its head), or "
                          "run with --device cpu", m->ops->name, tn_trin_dtype_name((tn_trin_dtype)m->head.dtype),
                          m->ops->name);
        if (!tables) {
            const int act8 = m->head.act8;
            release_owned(m, m->head.w); /* exact mode's dequantized table, if any: never read now */
            m->head = m->exact;
            m->head.act8 = act8;
        } else if (m->embed.w != m->exact.w) {
            release_owned(m, m->exact.w);
        }
        memset(&m->exact, 0, sizeof m->exact);
    }
    m->rescore = m->exact.w ? m->opts.rescore : 0;
    if (!tables) { /* a table without them (CUDA) refuses such a model whole */
        const imat *bad = is_qtable(m->embed.dtype) ? &m->embed : is_qtable(m->head.dtype) ? &m->head : NULL;
        for (int l = 0; l < m->cfg.n_layers && !bad; l++)
            FOR_EACH_MAT(&m->layers[l], if (!bad && is_qtable(W->dtype)) bad = W);
        if (bad)
            return tn_err("the %s engine has no %s kernels (the model's %s is %s): run it with --device cpu, or "
                          "export it with --head f16 / --embed f16", m->ops->name,
                          tn_trin_dtype_name((tn_trin_dtype)bad->dtype),
                          bad == &m->embed ? "embedding table" : bad == &m->head ? "LM head" : "layer matrix",
                          tn_trin_dtype_name((tn_trin_dtype)bad->dtype));
    }
    if (m->on_device) {
        int64_t state = 0, weights = 0, free_b = 0, total_b = 0;
        TN_CHECK(alloc_state(m, 0, &state));
        weights = mat_device_bytes(&m->embed) + (int64_t)m->cfg.dim * 4 * (2 * m->cfg.n_layers + 1);
        if (!m->cfg.tied_embeddings) weights += mat_device_bytes(&m->head);
        for (int l = 0; l < m->cfg.n_layers; l++) FOR_EACH_MAT(&m->layers[l], weights += mat_device_bytes(W));
        TN_CHECK(tn_device_mem_info(&m->dev, &free_b, &total_b));
        /* room beside the plan: allocation rounding of ~250 buffers, the CUDA graph, the runtime's own */
        int64_t spare = total_b / 64;
        if (spare > ((int64_t)256 << 20)) spare = (int64_t)256 << 20;
        if (weights + state + spare > free_b)
            return tn_err("the model does not fit %s: it needs %.1f MiB (weights %.1f, KV cache of %d positions and "
                          "scratch %.1f, %.1f spare) and %.1f MiB of %.1f are free; a smaller --ctx shrinks the cache",
                          m->dev.spec, (double)(weights + state + spare) / 1048576.0, (double)weights / 1048576.0,
                          m->ctx, (double)state / 1048576.0, (double)spare / 1048576.0, (double)free_b / 1048576.0,
                          (double)total_b / 1048576.0);
    }
    TN_CHECK(alloc_state(m, 1, NULL));
    if (!m->on_device) return 0;
    TN_CHECK(mat_upload(m, &m->embed));
    if (m->cfg.tied_embeddings) {
        const int act8 = m->head.act8;
        m->head = m->embed;
        m->head.act8 = act8;
    } else {
        TN_CHECK(mat_upload(m, &m->head));
    }
    for (int l = 0; l < m->cfg.n_layers; l++) FOR_EACH_MAT(&m->layers[l], TN_CHECK(mat_upload(m, W)));
    return vecs_upload(m);
}

/* A view of tensor t of an open .trin. In exact mode quantized tensors are dequantized to floats once. */
static int mat_from_trin(tn_infer *m, const tn_trin_tensor *t, imat *W) {
    memset(W, 0, sizeof *W);
    W->dtype = (tn_packed_dtype)t->dtype; /* the same codes (export/trin.c) */
    W->rows = t->shape[0];
    W->cols = t->rank == 2 ? t->shape[1] : 1;
    W->w = t->data;
    W->tensor_scale = 1.0f;
    W->bytes = (int64_t)t->size + 4 * t->n_scales;
    if (t->scale_layout == TN_TRIN_SCALE_TENSOR) W->tensor_scale = t->scales[0];
    if (t->scale_layout == TN_TRIN_SCALE_ROW) W->row_scale = t->scales;
    W->grid = t->dtype == TN_TRIN_L4 || t->dtype == TN_TRIN_L8 ? t->grid : NULL;
    W->act8 = t->act_bits == 8;
    if (t->dtype == TN_TRIN_T2) W->row_bytes = tn_t2_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_L4) W->row_bytes = tn_l4_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_L8) W->row_bytes = tn_l8_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_F32 || t->dtype == TN_TRIN_F16) W->row_bytes = (size_t)W->cols * (t->dtype == TN_TRIN_F32 ? 4 : 2);
    if (t->dtype == TN_TRIN_Q8) W->row_bytes = tn_q8_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_Q4) W->row_bytes = tn_q4_row_bytes(W->cols);
    if (m->opts.mode == TN_INFER_EXACT && t->dtype != TN_TRIN_F32 && t->dtype != TN_TRIN_F16) {
        float *d = tn_alloc((size_t)(W->rows * W->cols), sizeof *d);
        if (!d) return tn_err_prefix("dequantizing '%s'", t->name);
        for (int64_t r = 0; r < W->rows; r++) tn_imat_row(W, r, d + r * W->cols);
        TN_CHECK(own(m, d));
        W->dtype = TN_PACKED_F32;
        W->w = d;
        W->row_scale = NULL;
        W->grid = NULL;
        W->tensor_scale = 1.0f;
        W->row_bytes = (size_t)W->cols * 4;
        W->bytes = W->rows * W->cols * 4;
    }
    return 0;
}

static imat mat_dense(const float *w, int64_t rows, int64_t cols) {
    imat W;
    memset(&W, 0, sizeof W);
    W.dtype = TN_PACKED_F32;
    W.rows = rows;
    W.cols = cols;
    W.w = w;
    W.row_bytes = (size_t)cols * 4;
    W.tensor_scale = 1.0f;
    W.bytes = rows * cols * 4;
    return W;
}

static void describe(tn_infer *m) {
    int count[TN_TRIN_N_DTYPES] = {0};
    for (int l = 0; l < m->cfg.n_layers; l++) FOR_EACH_MAT(&m->layers[l], count[W->dtype]++);
    char *p = m->desc;
    size_t cap = sizeof m->desc;
    int w = 0;
    for (int d = 0; d < TN_TRIN_N_DTYPES; d++)
        if (count[d]) w += snprintf(p + w, cap - (size_t)w, "%s%s x%d", w ? " + " : "layers ", tn_trin_dtype_name((tn_trin_dtype)d), count[d]);
    w += snprintf(p + w, cap - (size_t)w, ", embed %s, head %s%s", tn_trin_dtype_name((tn_trin_dtype)m->embed.dtype),
                  tn_trin_dtype_name((tn_trin_dtype)m->head.dtype), m->cfg.tied_embeddings ? " (tied)" : "");
    if (m->rescore > 0)
        w += snprintf(p + w, cap - (size_t)w, " (best %d re-scored from %s rows)", m->rescore,
                      tn_trin_dtype_name((tn_trin_dtype)m->exact.dtype));
    const int table = is_qtable(m->embed.dtype) || is_qtable(m->head.dtype) || count[TN_PACKED_Q8] || count[TN_PACKED_Q4];
    if (m->opts.mode == TN_INFER_EXACT) w += snprintf(p + w, cap - (size_t)w, ", exact");
    const int t2 = count[TN_PACKED_T2] || m->head.dtype == TN_PACKED_T2;
    if (t2 || table)
        w += snprintf(p + w, cap - (size_t)w, ", %s", t2 && table ? "int8 activations (int16 into Q8/Q4)"
                                                      : t2      ? "int8 activations"
                                                                : "int16 activations into Q8/Q4");
    if (m->on_device) snprintf(p + w, cap - (size_t)w, ", on %s", m->dev.spec);
}

static void load_tokenizer(tn_infer *m, const char *format, const uint8_t *blob, size_t len) {
    if (!len) {
        snprintf(m->tok_err, sizeof m->tok_err, "the model file has no tokenizer");
        return;
    }
    if (strcmp(format, "trinity-tokenizer") != 0) {
        snprintf(m->tok_err, sizeof m->tok_err, "the model's tokenizer is stored as '%s', which this build cannot read",
                 format);
        return;
    }
    if (tn_tokenizer_deserialize(blob, len, &m->tok) != 0) {
        snprintf(m->tok_err, sizeof m->tok_err, "the model's tokenizer: %s", tn_errmsg());
        m->tok = NULL;
    } else if (tn_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
        snprintf(m->tok_err, sizeof m->tok_err, "the tokenizer has %lld tokens, more than the model's %d",
                 (long long)tn_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
        tn_tokenizer_free(m->tok);
        m->tok = NULL;
    }
}

/* A rank-1 tensor (norm weights, a bias) as floats. */
static const float *vec_from_trin(tn_infer *m, const tn_trin_tensor *t) {
    if (t->dtype == TN_TRIN_F32) return (const float *)(const void *)t->data;
    /* F16 (the reader guarantees rank 1 and no other dtype fits a rank-1 tensor) */
    float *d = tn_alloc((size_t)t->shape[0], sizeof *d);
    if (own(m, d) != 0) return NULL;
    tn_f16_to_f32_row((const uint16_t *)(const void *)t->data, t->shape[0], d);
    return d;
}

static int build_from_trin(tn_infer *m) {
    const tn_trin *t = m->trin;
    char name[128];
#define FIND(var, nm)                                                                                  \
    const tn_trin_tensor *var = tn_trin_find(t, nm);                                                   \
    if (!var) return tn_err("tensor '%s' missing", nm) /* cannot happen: the reader checked the set */
    FIND(te, "model.embed_tokens.weight");
    FIND(tnorm, "model.norm.weight");
    TN_CHECK(mat_from_trin(m, te, &m->embed));
    if (m->cfg.tied_embeddings) {
        m->head = m->embed;
    } else {
        FIND(th, "lm_head.weight");
        TN_CHECK(mat_from_trin(m, th, &m->head));
    }
    const tn_trin_tensor *tx = tn_trin_find(t, TN_TRIN_EXACT_HEAD);
    if (tx) { /* the reader checked it: F16 [vocab, dim] beside a Q8 / Q4 head, with the head's act_bits */
        TN_CHECK(mat_from_trin(m, tx, &m->exact));
        if (m->cfg.tied_embeddings) m->embed = m->exact; /* one row per token: embed exactly */
    }
    if (!(m->final_norm = vec_from_trin(m, tnorm))) return -1;
    static const char *mats[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        ilayer *L = &m->layers[l];
        imat *dst[TN_W_COUNT];
        layer_mats(L, dst);
        for (int k = 0; k < TN_W_COUNT; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[k]);
            FIND(tm, name);
            TN_CHECK(mat_from_trin(m, tm, dst[k]));
        }
    }
    /* the layers' vectors: the layout (of the file's own config) names each and says which it is */
    tn_llama_layout lay;
    TN_CHECK(tn_llama_layout_init(&lay, &m->cfg));
    int rc = 0;
    for (int i = 0; i < lay.n_tensors && rc == 0; i++) {
        const tn_tensor_info *lt = &lay.tensors[i];
        if (lt->layer < 0 || lt->vec < 0) continue;
        const tn_trin_tensor *tv = tn_trin_find(t, lt->name);
        const float **slot[TN_V_COUNT];
        layer_vecs(&m->layers[lt->layer], slot);
        if (!tv) rc = tn_err("tensor '%s' missing", lt->name); /* cannot happen: the reader checked the set */
        else if (!(*slot[lt->vec] = vec_from_trin(m, tv))) rc = -1;
    }
    tn_llama_layout_free(&lay);
    TN_CHECK(rc);
#undef FIND
    return 0;
}

static tn_infer *new_engine(const tn_infer_opts *o) {
    tn_infer *m = calloc(1, sizeof *m);
    if (!m) {
        tn_err("out of memory");
        return NULL;
    }
    if (o) m->opts = *o;
    else tn_infer_opts_default(&m->opts);
    if (!m->opts.device) m->opts.device = "cpu";
    if (m->opts.rescore < 0 || m->opts.rescore > TN_RESCORE_MAX) {
        tn_err("re-scoring %d candidates: the count must be 0..%d", m->opts.rescore, TN_RESCORE_MAX);
        free(m);
        return NULL;
    }
    m->ops = tn_infer_ops_cpu();
    if (tn_device_open(m->opts.device, &m->dev) != 0) {
        free(m);
        return NULL;
    }
    if (m->dev.is_cuda) {
        if (!m->dev.infer_ops) {
            tn_err("device %s: this build's CUDA backend has no inference ops", m->dev.spec);
            free(m);
            return NULL;
        }
        m->ops = m->dev.infer_ops;
        m->on_device = 1;
        m->graph_state = m->opts.graph ? GRAPH_WAIT : GRAPH_OFF;
    }
    return m;
}

int tn_infer_from_trin(tn_trin *t, const tn_infer_opts *o, tn_infer **out) {
    *out = NULL;
    tn_infer *m = new_engine(o);
    if (!m) {
        tn_trin_close(t);
        return -1;
    }
    m->trin = t;
    m->cfg = t->cfg;
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    int rc = m->layers ? 0 : tn_err("out of memory");
    if (rc == 0) rc = build_from_trin(m);
    if (rc == 0) rc = place(m);
    if (rc != 0) {
        tn_infer_free(m);
        return -1;
    }
    load_tokenizer(m, t->tokenizer_format, t->tokenizer, t->tokenizer_len);
    describe(m);
    *out = m;
    return 0;
}

static int open_checkpoint(const char *path, tn_infer *m) {
    m->ck = calloc(1, sizeof *m->ck);
    if (!m->ck) return tn_err("out of memory");
    TN_CHECK(tn_ckpt_load(path, m->ck, NULL, 0));
    tn_quant_spec spec;
    int is_ste = 0;
    /* STE: shadow weights snapped as the run snapped them; PRIMAL ghosts come materialised by the load */
    TN_CHECK(tn_snapshot_apply(path, m->ck, &spec, &is_ste));
    const tn_llama_layout *lay = &m->ck->layout;
    m->cfg = lay->cfg;
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) return tn_err("out of memory");
    tn_llama_view v;
    TN_CHECK(tn_llama_view_init(&v, lay, m->ck->params));
    const int64_t D = m->cfg.dim, V = m->cfg.vocab_size, F = m->cfg.ffn_dim, hd = tn_llama_head_dim(&m->cfg);
    const int64_t qd = (int64_t)m->cfg.n_heads * hd, kvd = (int64_t)m->cfg.n_kv_heads * hd;
    m->embed = mat_dense(v.embed, V, D);
    m->head = mat_dense(v.lm_head, V, D);
    m->final_norm = v.final_norm;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const tn_layer_view *lv = &v.layers[l];
        ilayer *L = &m->layers[l];
        L->attn_norm = lv->attn_norm;
        L->mlp_norm = lv->mlp_norm;
        L->bq = lv->bq, L->bk = lv->bk, L->bv = lv->bv;
        L->q_norm = lv->q_norm, L->k_norm = lv->k_norm;
        L->wq = mat_dense(lv->wq, qd, D);
        L->wk = mat_dense(lv->wk, kvd, D);
        L->wv = mat_dense(lv->wv, kvd, D);
        L->wo = mat_dense(lv->wo, D, qd);
        L->wg = mat_dense(lv->w_gate, F, D);
        L->wu = mat_dense(lv->w_up, F, D);
        L->wd = mat_dense(lv->w_down, D, F);
    }
    if (is_ste && spec.act_bits == 8) /* the run fed int8-quantized inputs to its quantized products */
        for (int i = 0; i < lay->n_tensors; i++) {
            const tn_tensor_info *ti = &lay->tensors[i];
            if (!tn_quant_selects(&spec, ti)) continue;
            if (ti->layer < 0) m->head.act8 = 1;
            else {
                ilayer *L = &m->layers[ti->layer];
                imat *k[TN_W_COUNT];
                layer_mats(L, k);
                k[ti->kind]->act8 = 1;
            }
        }
    tn_llama_view_free(&v);
    TN_CHECK(place(m));
    load_tokenizer(m, m->ck->tokenizer_format, m->ck->tokenizer, m->ck->tokenizer_len);
    describe(m);
    return 0;
}

int tn_infer_open(const char *path, const tn_infer_opts *o, tn_infer **out) {
    *out = NULL;
    uint8_t magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return tn_err("%s: cannot open", path);
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got >= 4 && memcmp(magic, TN_TRIN_MAGIC, 4) == 0) {
        tn_trin *t;
        tn_infer_load load = o ? o->load : TN_LOAD_AUTO;
        if (load == TN_LOAD_AUTO) load = tn_device_spec_is_cpu(o ? o->device : NULL) ? TN_LOAD_COPY : TN_LOAD_MAP;
        TN_CHECK(load == TN_LOAD_COPY ? tn_trin_open_huge(path, &t) : tn_trin_open(path, &t));
        return tn_infer_from_trin(t, o, out);
    }
    if (got == 8 && memcmp(magic, "\x89HDF\r\n\x1a\n", 8) == 0) {
        tn_infer *m = new_engine(o);
        if (!m) return -1;
        if (open_checkpoint(path, m) != 0) {
            tn_infer_free(m);
            return -1;
        }
        *out = m;
        return 0;
    }
    return tn_err("%s: not a model (expected a .trin file or an HDF5 checkpoint)", path);
}

const tn_llama_config *tn_infer_config(const tn_infer *m) { return &m->cfg; }
const tn_tokenizer *tn_infer_tokenizer(const tn_infer *m) { return m->tok; }
const char *tn_infer_tokenizer_error(const tn_infer *m) { return m->tok_err; }
int tn_infer_ctx(const tn_infer *m) { return m->ctx; }
int tn_infer_pos(const tn_infer *m) { return m->pos; }
void tn_infer_reset(tn_infer *m) { m->pos = 0; }
const char *tn_infer_describe(const tn_infer *m) { return m->desc; }
const char *tn_infer_device(const tn_infer *m) { return m->dev.spec; }
const char *tn_infer_device_name(const tn_infer *m) { return m->dev.name; }
int64_t tn_infer_device_bytes(const tn_infer *m) { return m->device_bytes; }
int tn_infer_graph_active(const tn_infer *m) { return m->graph_state == GRAPH_READY; }

double tn_infer_read_bandwidth(const tn_infer *m, size_t bytes, int threads, int reps) {
    return m->ops->read_bandwidth(bytes, threads, reps);
}

int64_t tn_infer_int8_weights(const tn_infer *m) {
    int64_t n = m->head.dtype == TN_PACKED_T2 ? m->head.rows * m->head.cols : 0;
    for (int l = 0; l < m->cfg.n_layers; l++) FOR_EACH_MAT(&m->layers[l], n += W->dtype == TN_PACKED_T2 ? W->rows * W->cols : 0);
    return n;
}

int tn_infer_chunk_tokens(void) { return CHUNK; }

int64_t tn_infer_weight_bytes(const tn_infer *m) {
    int64_t b = m->head.bytes + (int64_t)m->cfg.dim * 4 * (2 * m->cfg.n_layers + 1);
    if (m->rescore > 0) b += (int64_t)m->rescore * m->exact.row_bytes;
    for (int l = 0; l < m->cfg.n_layers; l++) FOR_EACH_MAT(&m->layers[l], b += W->bytes);
    return b;
}
