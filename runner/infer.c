/* The inference engine (runner/infer.h). Layout of this file, top to bottom:
 *   1. weight matrices: where they come from (.trin in place, dequantized, or checkpoint floats)
 *   2. the one product every layer uses, matmul(), dispatching on the weight's dtype
 *   3. attention over the KV cache
 *   4. the forward pass over a chunk of tokens
 *   5. loading: .trin and .h5
 * The shape of a llama2.c `run.c` (https://github.com/karpathy/llama2.c): plain arrays, one forward
 * function, a KV cache indexed [layer][position][kv_dim]. */
#include "runner/infer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "export/gguf_dequant.h"
#include "kernels/cpu/ops_cpu.h"
#include "kernels/packed.h"
#include "model/params.h"
#include "quant/act.h"
#include "runner/f16.h"
#include "train/checkpoint.h"
#include "train/snapshot.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64 /* prompt tokens per batched step: bounds the scratch memory, keeps gemm efficient */

/* ---- 1. weight matrices ---------------------------------------------------------------------------
 * A matrix W [rows, cols] as the products see it. For quantized storage a weight is s · v with
 * s = tensor_scale · (row_scale ? row_scale[r] : 1). */
typedef struct {
    tn_trin_dtype dtype; /* F32, F16, T2, L4, L8 */
    int64_t rows, cols;
    const void *w;          /* float*, uint16_t* or packed bytes */
    size_t row_bytes;       /* bytes per row for T2/L4/L8 */
    const float *row_scale; /* [rows] or NULL */
    float tensor_scale;
    const float *grid;      /* L4/L8: zero-padded 16 / 256 floats */
    int64_t bytes;          /* weight + scale bytes one product reads */
    int act8;               /* the model quantizes this product's input to int8 (BitNet b1.58) */
} imat;

typedef struct {
    const float *attn_norm, *mlp_norm; /* [dim] */
    imat wq, wk, wv, wo, wg, wu, wd;
} ilayer;

struct tn_infer {
    tn_llama_config cfg;
    tn_infer_opts opts;
    int ctx, pos, n_threads;
    imat embed, head;
    const float *final_norm;
    ilayer *layers;
    /* KV cache: [n_layers, ctx, kv_dim] each */
    float *k_cache, *v_cache;
    /* shared scratch for a chunk of up to CHUNK tokens */
    float *x, *q, *att, *tmp, *g, *u, *cos_t, *sin_t, *logits1;
    int8_t *row_i8;
    uint8_t *row_u8;
    struct worker_s *workers; /* [n_threads] */
    /* what we own */
    tn_trin *trin;
    tn_checkpoint *ck;
    void **owned;
    int n_owned, cap_owned;
    tn_tokenizer *tok;
    char tok_err[256];
    char desc[160];
};

static int own(tn_infer *m, void *p) {
    if (!p) return -1;
    if (m->n_owned == m->cap_owned) {
        int nc = m->cap_owned ? 2 * m->cap_owned : 64;
        void **no = realloc(m->owned, (size_t)nc * sizeof *no);
        if (!no) {
            tn_free(p);
            return tn_err("out of memory");
        }
        m->owned = no;
        m->cap_owned = nc;
    }
    m->owned[m->n_owned++] = p;
    return 0;
}

static float row_scale_of(const imat *W, int64_t r) {
    return W->tensor_scale * (W->row_scale ? W->row_scale[r] : 1.0f);
}

/* Row r of W as floats (embedding lookup; dequantization). out[cols]. Needs m's row scratch. */
static void mat_row(tn_infer *m, const imat *W, int64_t r, float *out) {
    const int64_t n = W->cols;
    const uint8_t *p = (const uint8_t *)W->w + (size_t)r * W->row_bytes;
    switch (W->dtype) {
    case TN_TRIN_F32: memcpy(out, (const float *)W->w + r * n, (size_t)n * sizeof *out); return;
    case TN_TRIN_F16: tn_f16_to_f32_row((const uint16_t *)W->w + r * n, n, out); return;
    case TN_TRIN_T2: {
        float s = row_scale_of(W, r);
        tn_t2_unpack(p, 1, n, m->row_i8); /* codes were range-checked when the file was opened */
        for (int64_t c = 0; c < n; c++) out[c] = s * (float)m->row_i8[c];
        return;
    }
    case TN_TRIN_L4:
    case TN_TRIN_L8: {
        float s = row_scale_of(W, r);
        if (W->dtype == TN_TRIN_L4) tn_l4_unpack(p, 1, n, m->row_u8);
        else tn_l8_unpack(p, 1, n, m->row_u8);
        for (int64_t c = 0; c < n; c++) out[c] = s * W->grid[m->row_u8[c]]; /* as the training snap: s·grid[i] */
        return;
    }
    }
}

/* A view of tensor t of an open .trin. In exact mode quantized tensors are dequantized to floats once. */
static int mat_from_trin(tn_infer *m, const tn_trin_tensor *t, imat *W) {
    memset(W, 0, sizeof *W);
    W->dtype = t->dtype;
    W->rows = t->shape[0];
    W->cols = t->rank == 2 ? t->shape[1] : 1;
    W->w = t->data;
    W->tensor_scale = 1.0f;
    W->bytes = (int64_t)t->size + 4 * t->n_scales;
    if (t->scale_layout == TN_TRIN_SCALE_TENSOR) W->tensor_scale = t->scales[0];
    if (t->scale_layout == TN_TRIN_SCALE_ROW) W->row_scale = t->scales;
    W->grid = t->grid;
    W->act8 = t->act_bits == 8;
    if (t->dtype == TN_TRIN_T2) W->row_bytes = tn_t2_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_L4) W->row_bytes = tn_l4_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_L8) W->row_bytes = tn_l8_row_bytes(W->cols);
    if (t->dtype == TN_TRIN_F32 || t->dtype == TN_TRIN_F16) W->row_bytes = (size_t)W->cols * (t->dtype == TN_TRIN_F32 ? 4 : 2);
    if (m->opts.mode == TN_INFER_EXACT && t->dtype != TN_TRIN_F32 && t->dtype != TN_TRIN_F16) {
        float *d = tn_alloc((size_t)(W->rows * W->cols), sizeof *d);
        if (!d) return tn_err_prefix("dequantizing '%s'", t->name);
        for (int64_t r = 0; r < W->rows; r++) mat_row(m, W, r, d + r * W->cols);
        TN_CHECK(own(m, d));
        W->dtype = TN_TRIN_F32;
        W->w = d;
        W->row_scale = NULL;
        W->tensor_scale = 1.0f;
        W->row_bytes = (size_t)W->cols * 4;
        W->bytes = W->rows * W->cols * 4;
    }
    return 0;
}

static imat mat_dense(const float *w, int64_t rows, int64_t cols) {
    imat W;
    memset(&W, 0, sizeof W);
    W.dtype = TN_TRIN_F32;
    W.rows = rows;
    W.cols = cols;
    W.w = w;
    W.row_bytes = (size_t)cols * 4;
    W.tensor_scale = 1.0f;
    W.bytes = rows * cols * 4;
    return W;
}

/* ---- 2. the product ---------------------------------------------------------------------------------
 * The whole forward pass of a chunk runs inside ONE OpenMP parallel region (section 4): every thread
 * computes its share of the rows of each product, and threads meet at a barrier only where a result is
 * needed whole. That is 4 synchronisations per layer (5 if the kv heads do not divide evenly among the
 * threads) instead of an OpenMP fork/join per product (about 12 per layer): on two cores a decode step is
 * ~200 small products, and each fork/join costs microseconds on an idle machine and far more on a busy one.
 * The kernels are called on row slices; called from inside the region their own OpenMP regions are nested,
 * hence inactive, and run on the calling thread.
 *
 * An activation batch X [n, cols] with its int8 forms, computed on first use by each thread for itself
 * (cheap next to a product, and it saves a barrier), so q, k and v (or gate and up) share them:
 *   q, scale  int8 codes and per-token scales for the T2 integer kernels (kernels/packed.h)
 *   fq        the fake-quantized floats q · m / 127 (quant/act.h), the input a model trained with int8
 *             activations gives to its float products */
typedef struct {
    const float *x;
    int n;
    int64_t cols;
    int8_t *q;     /* scratch [n, cols] */
    float *scale;  /* scratch [n] */
    float *fq;     /* scratch [n, cols] */
    int quantized, faked;
} act;

/* One thread's scratch. */
typedef struct worker_s {
    float *h;      /* [CHUNK, dim]: the normed input of a block (each thread its own copy) */
    int8_t *q;     /* [CHUNK, widest] */
    float *qs;     /* [CHUNK] */
    float *fq;     /* [CHUNK, widest] */
    float *y;      /* [CHUNK, slice]: a product's rows before they are scattered into [n, rows] */
    float *scores; /* [group, ctx] attention scores of one kv head's query heads */
} worker;

static act act_of(worker *w, const float *x, int n, int64_t cols) {
    act a = {x, n, cols, w->q, w->qs, w->fq, 0, 0};
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
    if (W->dtype == TN_TRIN_F32) S.w = (const float *)W->w + r0 * W->cols;
    else if (W->dtype == TN_TRIN_F16) S.w = (const uint16_t *)W->w + r0 * W->cols;
    else S.w = (const uint8_t *)W->w + (size_t)r0 * W->row_bytes;
    if (W->row_scale) S.row_scale = W->row_scale + r0;
    return S;
}

/* Y [n, rows] = X [n, cols] · Wᵀ on the calling thread. */
static void product(const imat *W, act *a, float *Y) {
    const int64_t R = W->rows, C = W->cols;
    const int n = a->n;
    const float *X = a->x;
    if (W->act8 && W->dtype != TN_TRIN_T2) { /* T2 kernels quantize to int8 themselves */
        if (!a->faked) {
            tn_act_fake_quant(a->x, n, C, a->fq);
            a->faked = 1;
        }
        X = a->fq;
    }
    switch (W->dtype) {
    case TN_TRIN_F32:
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)R, (blasint)C, 1.0f, W->w, (blasint)C, X, 1, 0.0f, Y, 1);
        else
            tn_op_linear(Y, X, W->w, n, C, R, 0.0f);
        return;
    case TN_TRIN_F16: tn_f16_gemm(W->w, R, C, n, X, Y); return;
    case TN_TRIN_T2:
        if (!a->quantized) {
            tn_act_quant_i8_rows(a->x, n, C, a->q, a->scale);
            a->quantized = 1;
        }
        if (n == 1) tn_t2_gemv(W->w, W->row_scale, W->tensor_scale, R, C, a->q, a->scale[0], Y);
        else tn_t2_gemm(W->w, W->row_scale, W->tensor_scale, R, C, n, a->q, a->scale, Y);
        return;
    case TN_TRIN_L4:
        if (n == 1) tn_l4_gemv(W->w, W->grid, W->row_scale, W->tensor_scale, R, C, X, Y);
        else tn_l4_gemm(W->w, W->grid, W->row_scale, W->tensor_scale, R, C, n, X, Y);
        return;
    case TN_TRIN_L8:
        if (n == 1) tn_l8_gemv(W->w, W->grid, W->row_scale, W->tensor_scale, R, C, X, Y);
        else tn_l8_gemm(W->w, W->grid, W->row_scale, W->tensor_scale, R, C, n, X, Y);
        return;
    }
}

/* Rows [r0, r1) of Y [n, ldy] = X · Wᵀ (Y's row stride ldy >= W->rows), on the calling thread. */
static void matmul_rows(const imat *W, act *a, float *Y, int64_t ldy, worker *w, int64_t r0, int64_t r1) {
    if (r0 >= r1) return;
    imat S = slice(W, r0, r1);
    if (a->n == 1) {
        product(&S, a, Y + r0);
        return;
    }
    product(&S, a, w->y);
    for (int t = 0; t < a->n; t++) memcpy(Y + t * ldy + r0, w->y + t * (r1 - r0), (size_t)(r1 - r0) * sizeof *Y);
}

/* This thread's rows of Y [n, ldy] = X · Wᵀ. */
static void matmul(const imat *W, act *a, float *Y, int64_t ldy, worker *w, int tid, int nth) {
    int64_t r0, r1;
    split(W->rows, tid, nth, &r0, &r1);
    matmul_rows(W, a, Y, ldy, w, r0, r1);
}

/* ---- 3. attention ------------------------------------------------------------------------------------
 * For the chunk's n tokens (positions pos .. pos+n-1): RoPE on q and on the new k rows of the cache, then
 * softmax(q kᵀ / sqrt(hd)) v over positions 0 .. own position. Query head h reads kv head h / (H / KV)
 * (grouped-query attention). Work is split by kv head: a thread ropes its kv heads and their query
 * heads and attends with them, so no barrier is needed in between. q [n, H, hd], out [n, H, hd]. */
static void rope(float *x, const float *cos_t, const float *sin_t, int n, int64_t stride, int h0, int h1, int64_t hd);

/* One token, one kv head and its G query heads: q [G, hd] -> out [G, hd] over cache rows 0 .. len-1 (row j
 * of k / v at j·kvd). Each k and v row is loaded once for all G heads. The inner loops are written so the
 * compiler vectorizes them (16 partial sums, restrict), and target_clones builds AVX-512 and AVX2 copies
 * picked at load time: at a few hundred positions this is a fifth of a decode step when left scalar.
 * scores: [G, len] scratch. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang_analyzer__)
#define TN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TN_CLONES
#endif
/* The cache rows of a layer come from memory (a decode step streams hundreds of MB of weights between two
 * visits of a layer) in runs of hd floats every kvd floats: too short for the hardware prefetcher, and
 * attention waited for memory at every position (a third of its time at 128 positions; decoding took
 * 0.6 ms a token in attention, 0.4 with these prefetches). So each k row is prefetched KV_AHEAD positions
 * ahead, and each v row when its k row is used (the v loop then finds it in cache). */
#define KV_AHEAD 8
static inline void prefetch_floats(const float *p, int n) {
    const uintptr_t e = (uintptr_t)(p + n);
    for (uintptr_t l = (uintptr_t)p & ~(uintptr_t)63; l < e; l += 64) __builtin_prefetch((const void *)l, 0, 3);
}

TN_CLONES static void attend_group(const float *restrict q, const float *restrict kc, const float *restrict vc,
                                   int64_t kvd, int len, int G, int hd, float scale, float *restrict scores,
                                   float *restrict out) {
    for (int j = 0; j < len && j < KV_AHEAD; j++) prefetch_floats(kc + (int64_t)j * kvd, hd);
    for (int j = 0; j < len; j++) {
        const float *kj = kc + (int64_t)j * kvd;
        if (j + KV_AHEAD < len) prefetch_floats(kc + (int64_t)(j + KV_AHEAD) * kvd, hd);
        prefetch_floats(vc + (int64_t)j * kvd, hd);
        for (int g = 0; g < G; g++) {
            const float *qg = q + (int64_t)g * hd;
            float acc[16] = {0};
            int i = 0;
            for (; i + 16 <= hd; i += 16)
                for (int k = 0; k < 16; k++) acc[k] += qg[i + k] * kj[i + k];
            float d = 0;
            for (int k = 0; k < 16; k++) d += acc[k];
            for (; i < hd; i++) d += qg[i] * kj[i];
            scores[(int64_t)g * len + j] = d * scale;
        }
    }
    for (int g = 0; g < G; g++) {
        float *sc = scores + (int64_t)g * len;
        float mx = -INFINITY, sum = 0;
        for (int j = 0; j < len; j++) mx = sc[j] > mx ? sc[j] : mx;
        for (int j = 0; j < len; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j < len; j++) sc[j] *= inv;
        memset(out + (int64_t)g * hd, 0, (size_t)hd * sizeof *out);
    }
    for (int j = 0; j < len; j++) {
        const float *vj = vc + (int64_t)j * kvd;
        for (int g = 0; g < G; g++) {
            const float p = scores[(int64_t)g * len + j];
            float *o = out + (int64_t)g * hd;
            int i = 0;
            for (; i + 16 <= hd; i += 16)
                for (int k = 0; k < 16; k++) o[i + k] += p * vj[i + k];
            for (; i < hd; i++) o[i] += p * vj[i];
        }
    }
}

static void attend(const tn_infer *m, int layer, int n, int kh0, int kh1, float *scores) {
    const tn_llama_config *c = &m->cfg;
    const int H = c->n_heads, KV = c->n_kv_heads, hd = tn_llama_head_dim(c), group = H / KV;
    const int64_t kvd = (int64_t)KV * hd, qd = (int64_t)H * hd;
    float *kc = m->k_cache + (int64_t)layer * m->ctx * kvd, *vc = m->v_cache + (int64_t)layer * m->ctx * kvd;
    const float scale = 1.0f / sqrtf((float)hd);
    rope(kc + (int64_t)m->pos * kvd, m->cos_t, m->sin_t, n, kvd, kh0, kh1, hd);
    rope(m->q, m->cos_t, m->sin_t, n, qd, kh0 * group, kh1 * group, hd);
    for (int t = 0; t < n; t++)
        for (int kh = kh0; kh < kh1; kh++) {
            const int64_t h0 = (int64_t)kh * group;
            attend_group(m->q + t * qd + h0 * hd, kc + (int64_t)kh * hd, vc + (int64_t)kh * hd, kvd, m->pos + t + 1,
                         group, hd, scale, scores, m->att + t * qd + h0 * hd);
        }
}

/* ---- 4. the forward pass -----------------------------------------------------------------------------
 * The elementwise steps below do kernels/cpu/ops_cpu.c's arithmetic (the training model's), on whatever
 * rows the caller gives them. */

/* y[n, D] = x · rsqrt(mean(x²) + eps) · w, the sum of squares in double as tn_op_rmsnorm (in 8 partial
 * sums, so it vectorizes: a different order of double additions, far below float rounding) */
static void rmsnorm(float *y, const float *x, const float *w, int n, int64_t D, float eps) {
    for (int t = 0; t < n; t++) {
        const float *xr = x + t * D;
        float *yr = y + t * D;
        double part[8] = {0}, ss = 0;
        int64_t d = 0;
        for (; d + 8 <= D; d += 8)
            for (int k = 0; k < 8; k++) part[k] += (double)xr[d + k] * xr[d + k];
        for (; d < D; d++) ss += (double)xr[d] * xr[d];
        for (int k = 0; k < 8; k++) ss += part[k];
        const float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
        for (int64_t d = 0; d < D; d++) yr[d] = xr[d] * r * w[d];
    }
}

/* Rotate-half RoPE in place on heads [h0, h1) of x[n, stride] (head h at h·hd), with the tables of
 * tn_op_rope_table (as tn_op_rope). */
static void rope(float *x, const float *cos_t, const float *sin_t, int n, int64_t stride, int h0, int h1, int64_t hd) {
    const int64_t half = hd / 2;
    for (int t = 0; t < n; t++) {
        const float *c = cos_t + t * half, *sn = sin_t + t * half;
        for (int h = h0; h < h1; h++) {
            float *v = x + t * stride + (int64_t)h * hd;
            for (int64_t i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * sn[i];
                v[i + half] = b * c[i] + a * sn[i];
            }
        }
    }
}

/* Columns [c0, c1) of g[n, F] = silu(g) · u (as tn_op_swiglu) */
static void swiglu(float *g, const float *u, int n, int64_t F, int64_t c0, int64_t c1) {
    for (int t = 0; t < n; t++)
        for (int64_t i = t * F + c0; i < t * F + c1; i++) {
            const float sg = 1.0f / (1.0f + expf(-g[i]));
            g[i] = g[i] * sg * u[i];
        }
}

/* Columns [c0, c1) of x[n, D] += y[n, D] */
static void add(float *x, const float *y, int n, int64_t D, int64_t c0, int64_t c1) {
    for (int t = 0; t < n; t++)
        for (int64_t i = t * D + c0; i < t * D + c1; i++) x[i] += y[i];
}

/* The forward pass over n <= CHUNK tokens at positions pos .. pos+n-1. Logits of rows [first, n) go to out
 * ([n-first, V]); first == n computes none. */
static void forward_chunk(tn_infer *m, const int32_t *tokens, int n, int first, float *out) {
    const tn_llama_config *c = &m->cfg;
    const int64_t D = c->dim, hd = tn_llama_head_dim(c), H = c->n_heads, KV = c->n_kv_heads, F = c->ffn_dim;
    const int64_t qd = H * hd, kvd = KV * hd;
    float *x = m->x;

    for (int t = 0; t < n; t++) mat_row(m, &m->embed, tokens[t], x + t * D);
    tn_op_rope_table(m->cos_t, m->sin_t, n, hd, c->rope_theta, m->pos);

#pragma omp parallel num_threads(m->n_threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        worker *w = &m->workers[tid];
        int64_t d0, d1, f0, f1; /* this thread's share of dim-sized and ffn-sized outputs */
        split(D, tid, nth, &d0, &d1);
        split(F, tid, nth, &f0, &f1);
        /* kv heads [kh0, kh1): as even a share as whole heads allow (a thread may get none) */
        int kh0 = (int)(KV * tid / nth), kh1 = (int)(KV * (tid + 1) / nth);
        /* When they divide evenly, the thread computes the q, k and v rows of its own kv heads (as many rows as
         * split() would give it) and attends with them at once: no barrier between the products and attention. */
        const int by_heads = KV % nth == 0;
        const int64_t group_rows = H / KV * hd; /* q rows of one kv head */

        for (int l = 0; l < c->n_layers; l++) {
            const ilayer *L = &m->layers[l];
            float *kc = m->k_cache + ((int64_t)l * m->ctx + m->pos) * kvd; /* this chunk's cache rows */
            float *vc = m->v_cache + ((int64_t)l * m->ctx + m->pos) * kvd;

            /* attention block: x += Wo · attention(rope(Wq h), rope(Wk h), Wv h),  h = rmsnorm(x) · w */
            rmsnorm(w->h, x, L->attn_norm, n, D, c->norm_eps);
            act a = act_of(w, w->h, n, D);
            if (by_heads) {
                matmul_rows(&L->wq, &a, m->q, qd, w, kh0 * group_rows, kh1 * group_rows);
                matmul_rows(&L->wk, &a, kc, kvd, w, kh0 * hd, kh1 * hd);
                matmul_rows(&L->wv, &a, vc, kvd, w, kh0 * hd, kh1 * hd);
            } else {
                matmul(&L->wq, &a, m->q, qd, w, tid, nth);
                matmul(&L->wk, &a, kc, kvd, w, tid, nth);
                matmul(&L->wv, &a, vc, kvd, w, tid, nth);
#pragma omp barrier
            }
            attend(m, l, n, kh0, kh1, w->scores);
#pragma omp barrier
            act ao = act_of(w, m->att, n, qd);
            matmul(&L->wo, &ao, m->tmp, D, w, tid, nth);
            add(x, m->tmp, n, D, d0, d1); /* the rows this thread computed */
#pragma omp barrier

            /* MLP block: x += Wd · (silu(Wg h) * (Wu h)),  h = rmsnorm(x) · w */
            rmsnorm(w->h, x, L->mlp_norm, n, D, c->norm_eps);
            act am = act_of(w, w->h, n, D);
            matmul(&L->wg, &am, m->g, F, w, tid, nth);
            matmul(&L->wu, &am, m->u, F, w, tid, nth);
            swiglu(m->g, m->u, n, F, f0, f1);
#pragma omp barrier
            act ad = act_of(w, m->g, n, F);
            matmul(&L->wd, &ad, m->tmp, D, w, tid, nth);
            add(x, m->tmp, n, D, d0, d1);
#pragma omp barrier
        }

        if (first < n) { /* logits = rmsnorm(x) · w_final · headᵀ */
            const int nr = n - first;
            rmsnorm(w->h, x + first * D, m->final_norm, nr, D, c->norm_eps);
            act af = act_of(w, w->h, nr, D);
            matmul(&m->head, &af, out, c->vocab_size, w, tid, nth);
        }
    }
    m->pos += n;
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
        if (logits && all_logits) forward_chunk(m, tokens + c0, k, 0, logits + (int64_t)c0 * V);
        else if (logits && last) forward_chunk(m, tokens + c0, k, k - 1, logits);
        else forward_chunk(m, tokens + c0, k, k, NULL);
    }
    return 0;
}

const float *tn_infer_step(tn_infer *m, int32_t token) {
    if (tn_infer_forward(m, &token, 1, m->logits1, 0) != 0) return NULL;
    return m->logits1;
}

/* ---- 5. loading ------------------------------------------------------------------------------------- */

void tn_infer_opts_default(tn_infer_opts *o) {
    o->mode = TN_INFER_FAST;
    o->ctx = 0;
    o->threads = 0;
}

void tn_infer_free(tn_infer *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) tn_free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    tn_trin_close(m->trin);
    if (m->ck) {
        tn_ckpt_free(m->ck);
        free(m->ck);
    }
    tn_tokenizer_free(m->tok);
    free(m);
}

/* KV cache and scratch, once the config is known. */
static int alloc_state(tn_infer *m) {
    const tn_llama_config *c = &m->cfg;
    if (m->opts.threads > 0) {
        omp_set_num_threads(m->opts.threads);
        tn_packed_set_threads(m->opts.threads);
    }
    m->n_threads = omp_get_max_threads();
    m->ctx = m->opts.ctx > 0 && m->opts.ctx < c->max_seq_len ? m->opts.ctx : c->max_seq_len;
    const int64_t D = c->dim, hd = tn_llama_head_dim(c), qd = (int64_t)c->n_heads * hd,
                  kvd = (int64_t)c->n_kv_heads * hd, F = c->ffn_dim, V = c->vocab_size;
    const int64_t widest = D > F ? (D > qd ? D : qd) : (F > qd ? F : qd);
    const int64_t cols_max = widest > V ? widest : V;
#define ALLOC(ptr, count)                                                                              \
    do {                                                                                               \
        (ptr) = tn_alloc((size_t)(count), sizeof *(ptr));                                              \
        if (own(m, (ptr)) != 0) return -1;                                                             \
    } while (0)
    ALLOC(m->k_cache, (int64_t)c->n_layers * m->ctx * kvd);
    ALLOC(m->v_cache, (int64_t)c->n_layers * m->ctx * kvd);
    ALLOC(m->x, CHUNK * D);
    ALLOC(m->q, CHUNK * qd);
    ALLOC(m->att, CHUNK * qd);
    ALLOC(m->tmp, CHUNK * D);
    ALLOC(m->g, CHUNK * F);
    ALLOC(m->u, CHUNK * F);
    ALLOC(m->cos_t, CHUNK * hd / 2);
    ALLOC(m->sin_t, CHUNK * hd / 2);
    ALLOC(m->row_i8, cols_max);
    ALLOC(m->row_u8, cols_max);
    ALLOC(m->logits1, V);
    /* per thread: the widest product output any thread's slice can have */
    int64_t rows_max = V > F ? V : F;
    rows_max = rows_max > qd ? rows_max : qd;
    const int64_t slice_max = ((rows_max + m->n_threads - 1) / m->n_threads + 2 * ROW_ALIGN);
    ALLOC(m->workers, m->n_threads);
    for (int t = 0; t < m->n_threads; t++) {
        worker *w = &m->workers[t];
        ALLOC(w->h, CHUNK * D);
        ALLOC(w->q, CHUNK * widest);
        ALLOC(w->qs, CHUNK);
        ALLOC(w->fq, CHUNK * widest);
        ALLOC(w->y, CHUNK * slice_max);
        ALLOC(w->scores, (int64_t)(c->n_heads / c->n_kv_heads) * m->ctx);
    }
#undef ALLOC
    return 0;
}

static void describe(tn_infer *m) {
    int count[5] = {0};
    const imat *all[7];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ilayer *L = &m->layers[l];
        all[0] = &L->wq, all[1] = &L->wk, all[2] = &L->wv, all[3] = &L->wo, all[4] = &L->wg, all[5] = &L->wu,
        all[6] = &L->wd;
        for (int k = 0; k < 7; k++) count[all[k]->dtype]++;
    }
    char *p = m->desc;
    size_t cap = sizeof m->desc;
    int w = 0;
    for (int d = 0; d < 5; d++)
        if (count[d]) w += snprintf(p + w, cap - (size_t)w, "%s%s x%d", w ? " + " : "layers ", tn_trin_dtype_name((tn_trin_dtype)d), count[d]);
    w += snprintf(p + w, cap - (size_t)w, ", embed %s, head %s%s", tn_trin_dtype_name(m->embed.dtype),
                  tn_trin_dtype_name(m->head.dtype), m->cfg.tied_embeddings ? " (tied)" : "");
    if (count[TN_TRIN_T2] || m->head.dtype == TN_TRIN_T2)
        snprintf(p + w, cap - (size_t)w, ", %s", m->opts.mode == TN_INFER_EXACT ? "exact" : "int8 activations");
    else if (m->opts.mode == TN_INFER_EXACT)
        snprintf(p + w, cap - (size_t)w, ", exact");
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

static const float *norm_from_trin(tn_infer *m, const tn_trin_tensor *t) {
    if (t->dtype == TN_TRIN_F32) return (const float *)(const void *)t->data;
    /* F16 norm (the reader guarantees rank 1 and no other dtype fits a rank-1 tensor) */
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
    if (!(m->final_norm = norm_from_trin(m, tnorm))) return -1;
    static const char *mats[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        ilayer *L = &m->layers[l];
        imat *dst[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
        for (int k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[k]);
            FIND(tm, name);
            TN_CHECK(mat_from_trin(m, tm, dst[k]));
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        FIND(na, name);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        FIND(nm, name);
        if (!(L->attn_norm = norm_from_trin(m, na)) || !(L->mlp_norm = norm_from_trin(m, nm))) return -1;
    }
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
    if (rc == 0) rc = alloc_state(m); /* row scratch first: exact mode dequantizes through it */
    if (rc == 0) rc = build_from_trin(m);
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
    TN_CHECK(alloc_state(m));
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
                imat *k[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
                k[ti->kind]->act8 = 1;
            }
        }
    tn_llama_view_free(&v);
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
        TN_CHECK(tn_trin_open(path, &t));
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

int64_t tn_infer_weight_bytes(const tn_infer *m) {
    int64_t b = m->head.bytes + (int64_t)m->cfg.dim * 4 * (2 * m->cfg.n_layers + 1);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ilayer *L = &m->layers[l];
        b += L->wq.bytes + L->wk.bytes + L->wv.bytes + L->wo.bytes + L->wg.bytes + L->wu.bytes + L->wd.bytes;
    }
    return b;
}
