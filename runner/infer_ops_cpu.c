/* The CPU table of the inference engine's packed ops (kernels/infer_ops.h): the packed kernels of
 * kernels/packed.h, F16 products (runner/f16.h), OpenBLAS for F32, and the engine's own elementwise steps
 * and attention. Every op runs on the calling thread: the engine calls them from inside its one OpenMP
 * parallel region, each thread on its own rows (runner/infer.c). */
#include "kernels/infer_ops.h"

#include "core/alloc.h"
#include "kernels/cpu/ops_cpu.h"
#include "kernels/packed.h"
#include "kernels/vexp.h"
#include "quant/act.h"
#include "runner/bandwidth.h"
#include "runner/f16.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---- weights ----------------------------------------------------------------------------------------- */

static float row_scale_of(const tn_imat *W, int64_t r) {
    return W->tensor_scale * (W->row_scale ? W->row_scale[r] : 1.0f);
}

void tn_imat_row(const tn_imat *W, int64_t r, float *out) {
    const int64_t n = W->cols;
    const uint8_t *p = (const uint8_t *)W->w + (size_t)r * W->row_bytes;
    const float s = row_scale_of(W, r);
    switch (W->dtype) {
    case TN_PACKED_F32: memcpy(out, (const float *)W->w + r * n, (size_t)n * sizeof *out); return;
    case TN_PACKED_F16: tn_f16_to_f32_row((const uint16_t *)W->w + r * n, n, out); return;
    case TN_PACKED_Q8:
        for (int64_t c = 0; c < n; c++) out[c] = s * (float)((const int8_t *)p)[c];
        return;
    case TN_PACKED_Q4: tn_q4_row_to_f32((const uint8_t *)W->w, r, n, out); return;
    default: break;
    }
    /* Packed rows are whole blocks (kernels/packed.h), each unpacked on its own into a stack buffer by the
     * layout's own unpacker, so no row-sized scratch is needed: s·w, or s·grid[idx] as the training snap. */
    const int t2 = W->dtype == TN_PACKED_T2, l4 = W->dtype == TN_PACKED_L4;
    const int64_t block = t2 ? TN_T2_BLOCK : l4 ? TN_L4_BLOCK : TN_L8_BLOCK;
    const size_t block_bytes = t2 ? TN_T2_BLOCK_BYTES : l4 ? TN_L4_BLOCK_BYTES : TN_L8_BLOCK;
    _Static_assert(TN_L4_BLOCK <= TN_T2_BLOCK && TN_L8_BLOCK <= TN_T2_BLOCK, "one block fits the buffers");
    int8_t w[TN_T2_BLOCK];
    uint8_t idx[TN_T2_BLOCK];
    for (int64_t c0 = 0; c0 < n; c0 += block) {
        const int64_t k = n - c0 < block ? n - c0 : block;
        const uint8_t *pb = p + (size_t)(c0 / block) * block_bytes;
        if (t2) {
            tn_t2_unpack(pb, 1, k, w); /* codes were range-checked when the file was opened */
            for (int64_t c = 0; c < k; c++) out[c0 + c] = s * (float)w[c];
        } else {
            if (l4) tn_l4_unpack(pb, 1, k, idx);
            else tn_l8_unpack(pb, 1, k, idx);
            for (int64_t c = 0; c < k; c++) out[c0 + c] = s * W->grid[idx[c]];
        }
    }
}

static int cpu_embed(const tn_imat *E, const int32_t *tokens, int64_t n, float *X) {
    for (int64_t t = 0; t < n; t++) tn_imat_row(E, tokens[t], X + t * E->cols);
    return 0;
}

/* ---- products ---------------------------------------------------------------------------------------- */

static int cpu_gemm_f32(const float *W, int64_t R, int64_t C, int64_t n, const float *X, float *Y) {
    if (n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)R, (blasint)C, 1.0f, W, (blasint)C, X, 1, 0.0f, Y, 1);
    else tn_op_linear(Y, X, W, n, C, R, 0.0f);
    return 0;
}

static int cpu_gemm_f16(const uint16_t *W, int64_t R, int64_t C, int64_t n, const float *X, float *Y) {
    tn_f16_gemm(W, R, C, n, X, Y);
    return 0;
}

static int cpu_gemm_t2(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t R, int64_t C, int64_t n,
                       const int8_t *Xq, const float *xscales, float *Y) {
    if (n == 1) tn_t2_gemv(W, row_scale, tensor_scale, R, C, Xq, xscales[0], Y);
    else tn_t2_gemm(W, row_scale, tensor_scale, R, C, n, Xq, xscales, Y);
    return 0;
}

static int cpu_gemm_l4(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t R,
                       int64_t C, int64_t n, const float *X, float *Y) {
    if (n == 1) tn_l4_gemv(W, grid, row_scale, tensor_scale, R, C, X, Y);
    else tn_l4_gemm(W, grid, row_scale, tensor_scale, R, C, n, X, Y);
    return 0;
}

static int cpu_gemm_l8(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t R,
                       int64_t C, int64_t n, const float *X, float *Y) {
    if (n == 1) tn_l8_gemv(W, grid, row_scale, tensor_scale, R, C, X, Y);
    else tn_l8_gemm(W, grid, row_scale, tensor_scale, R, C, n, X, Y);
    return 0;
}

static int cpu_gemm_q8(const uint8_t *W, const float *row_scale, int64_t R, int64_t C, int64_t n, const int16_t *Xq,
                       const float *xscales, float *Y) {
    tn_q8_gemm(W, row_scale, R, C, n, Xq, xscales, Y); /* one token: the gemv, bit for bit */
    return 0;
}

static int cpu_gemm_q4(const uint8_t *W, int64_t R, int64_t C, int64_t n, const int16_t *Xq, const float *xscales,
                       float *Y) {
    tn_q4_gemm(W, R, C, n, Xq, xscales, Y);
    return 0;
}

static int cpu_act_quant_i16(const float *X, int64_t n, int64_t C, int16_t *Q, float *scales) {
    tn_act_quant_i16_rows(X, n, C, Q, scales);
    return 0;
}

static int cpu_act_quant_i8(const float *X, int64_t n, int64_t C, int8_t *Q, float *scales) {
    tn_act_quant_i8_rows(X, n, C, Q, scales);
    return 0;
}

static int cpu_act_fake_quant(const float *X, int64_t n, int64_t C, float *out) {
    tn_act_fake_quant(X, n, C, out);
    return 0;
}

/* ---- attention ----------------------------------------------------------------------------------------
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

/* sc[len] = softmax(sc), in place. tn_expf vectorizes where libm's expf is one call per score, and the sum
 * runs in 16 partial sums instead of one dependent chain: together most of the softmax's time in a prompt.
 * Inlined into each target_clones copy of its callers. */
static inline __attribute__((always_inline)) void softmax_row(float *restrict sc, int len) {
    float mx = -INFINITY, sum = 0;
    for (int j = 0; j < len; j++) mx = sc[j] > mx ? sc[j] : mx;
#pragma omp simd
    for (int j = 0; j < len; j++) sc[j] = tn_expf(sc[j] - mx);
    float part[16] = {0};
    int j = 0;
    for (; j + 16 <= len; j += 16)
        for (int k = 0; k < 16; k++) part[k] += sc[j + k];
    for (int k = 0; k < 16; k++) sum += part[k];
    for (; j < len; j++) sum += sc[j];
    const float inv = 1.0f / sum;
    for (j = 0; j < len; j++) sc[j] *= inv;
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
        softmax_row(scores + (int64_t)g * len, len);
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

/* A prompt chunk (n > 1) for one kv head, tokens in tiles of up to ATT_TOKENS, each query head g of the
 * group on its own (q row t of head g at t·qd + g·hd, cache row j at j·kvd, so both are strided views):
 *   S = Q_g Kᵀ · scale     [m, L]   (L = pos + t1: the keys up to the tile's last token)
 *   P = softmax(S)         row t over its own positions 0 .. pos+t only (the causal mask)
 *   O_g = P V              [m, hd]
 * two cblas_sgemm calls per tile (called from the engine's parallel region, OpenBLAS runs on this thread).
 * Token at a time, each k and v row went through the vector units once per query token with a horizontal
 * sum per score; as products they are packed once per tile and the scores come out of register tiles.
 * The masked upper triangle (at most m²/2 of m·L scores) is computed and discarded.
 * scores: [ATT_TOKENS, ctx] scratch. */
#define ATT_TOKENS 32

/* Rows r < m of S [m, L]: row r = softmax over its own positions 0 .. len0+r-1, zero beyond (the causal mask). */
TN_CLONES static void softmax_rows(float *restrict S, int m, int64_t L, int len0) {
    for (int r = 0; r < m; r++) {
        float *sc = S + (int64_t)r * L;
        softmax_row(sc, len0 + r);
        for (int64_t j = len0 + r; j < L; j++) sc[j] = 0;
    }
}

static void attend_prompt(const float *q, const float *kc, const float *vc, int64_t qd, int64_t kvd, int pos, int n,
                          int G, int hd, float scale, float *scores, float *out) {
    for (int t0 = 0; t0 < n; t0 += ATT_TOKENS) {
        const int m = n - t0 < ATT_TOKENS ? n - t0 : ATT_TOKENS;
        const int64_t L = (int64_t)pos + t0 + m;
        for (int g = 0; g < G; g++) {
            const float *qg = q + t0 * qd + (int64_t)g * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (blasint)L, hd, scale, qg, (blasint)qd, kc,
                        (blasint)kvd, 0.0f, scores, (blasint)L);
            softmax_rows(scores, m, L, pos + t0 + 1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, (blasint)L, 1.0f, scores, (blasint)L, vc,
                        (blasint)kvd, 0.0f, out + t0 * qd + (int64_t)g * hd, (blasint)qd);
        }
    }
}

/* On the CPU the chunk's k and v rows are the cache rows pos .. pos+n-1 (the products wrote them there). */
static int cpu_attention(const tn_infer_attn *a, int kh0, int kh1) {
    const int H = a->H, KV = a->KV, hd = a->hd, group = H / KV;
    const int64_t kvd = (int64_t)KV * hd, qd = (int64_t)H * hd, half = hd / 2;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *cos_t = a->cos_t + (int64_t)a->pos * half, *sin_t = a->sin_t + (int64_t)a->pos * half;
    rope(a->k_new, cos_t, sin_t, a->n, kvd, kh0, kh1, hd);
    rope(a->q, cos_t, sin_t, a->n, qd, kh0 * group, kh1 * group, hd);
    for (int kh = kh0; kh < kh1; kh++) {
        const int64_t h0 = (int64_t)kh * group;
        const float *q = a->q + h0 * hd, *kc = a->k_cache + (int64_t)kh * hd, *vc = a->v_cache + (int64_t)kh * hd;
        float *out = a->out + h0 * hd;
        if (a->n > 1) attend_prompt(q, kc, vc, qd, kvd, a->pos, a->n, group, hd, scale, a->scratch, out);
        else attend_group(q, kc, vc, kvd, a->pos + 1, group, hd, scale, a->scratch, out); /* decode: one token */
    }
    return 0;
}

static int64_t cpu_attention_scratch_floats(int64_t n, int64_t H, int64_t KV, int64_t hd, int64_t ctx) {
    (void)n, (void)hd;
    const int64_t rows = H / KV > ATT_TOKENS ? H / KV : ATT_TOKENS;
    return rows * ctx;
}

/* ---- the elementwise steps: kernels/cpu/ops_cpu.c's arithmetic (the training model's), on whatever rows
 * the caller gives them ---------------------------------------------------------------------------------- */

/* y[n, D] = x · rsqrt(mean(x²) + eps) · w, the sum of squares in double as tn_op_rmsnorm (in 8 partial
 * sums, so it vectorizes: a different order of double additions, far below float rounding) */
static int cpu_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t n, int64_t D, float eps) {
    (void)rstd;
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
    return 0;
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
static int cpu_swiglu(float *g, const float *u, int64_t n, int64_t F, int64_t c0, int64_t c1) {
    for (int t = 0; t < n; t++)
        for (int64_t i = t * F + c0; i < t * F + c1; i++) {
            const float sg = 1.0f / (1.0f + expf(-g[i]));
            g[i] = g[i] * sg * u[i];
        }
    return 0;
}

/* Columns [c0, c1) of x[n, D] += y[n, D] */
static int cpu_add(float *x, const float *y, int64_t n, int64_t D, int64_t c0, int64_t c1) {
    for (int t = 0; t < n; t++)
        for (int64_t i = t * D + c0; i < t * D + c1; i++) x[i] += y[i];
    return 0;
}

static int cpu_add_bias(float *x, const float *b, int64_t n, int64_t D, int64_t c0, int64_t c1) {
    for (int t = 0; t < n; t++)
        for (int64_t i = c0; i < c1; i++) x[t * D + i] += b[i];
    return 0;
}

/* ---- the rest ------------------------------------------------------------------------------------------ */

static void *cpu_alloc(size_t bytes) { return tn_alloc(bytes ? bytes : 1, 1); }

static int cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}

static void cpu_barrier(void) {
#pragma omp barrier
}

static double cpu_read_bandwidth(size_t bytes, int threads, int reps) { return tn_bench_read_bandwidth(bytes, threads, reps); }

static const tn_infer_ops g_cpu = {
    .name = "cpu",
    .device_memory = 0,
    .alloc = cpu_alloc,
    .free = tn_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .gemm_f32 = cpu_gemm_f32,
    .gemm_f16 = cpu_gemm_f16,
    .gemm_t2 = cpu_gemm_t2,
    .gemm_l4 = cpu_gemm_l4,
    .gemm_l8 = cpu_gemm_l8,
    .gemm_q8 = cpu_gemm_q8,
    .gemm_q4 = cpu_gemm_q4,
    .act_quant_i16 = cpu_act_quant_i16,
    .act_quant_i8 = cpu_act_quant_i8,
    .act_fake_quant = cpu_act_fake_quant,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .add_bias = cpu_add_bias,
    .attention = cpu_attention,
    .attention_scratch_floats = cpu_attention_scratch_floats,
    .barrier = cpu_barrier,
    .read_bandwidth = cpu_read_bandwidth,
};

const tn_infer_ops *tn_infer_ops_cpu(void) { return &g_cpu; }
