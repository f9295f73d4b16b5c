/* KV-cache attention of the inference engine on the GPU: the CUDA side of runner/infer_ops_cpu.c cpu_attention() for n new
 * tokens at positions p0 .. p0+n-1 of one layer (kernels/cuda/cuda_ops.h tn_cuda_kv_attention).
 *
 *   q, out [n, H, hd];  k_new, v_new [n, KV, hd];  k_cache, v_cache [ctx, KV, hd] (the layer's);
 *   cos_t, sin_t [ctx, hd/2] (tn_op_rope_table, row p = position p);  query head h reads kv head
 *   h / (H / KV);  scale = 1 / sqrtf(hd);  token t sees cache rows 0 .. p0+t (len = p0 + t + 1).
 *
 *   RoPE:    q_t,h ← rot(q_t,h, p0+t);  k_t ← rot(k_t, p0+t);  k_cache[p0+t] = k_t;  v_cache[p0+t] = v_t
 *            rot: for i < hd/2, (a, b) = (x[i], x[i + hd/2]): x[i] = a·c − b·s, x[i + hd/2] = b·c + a·s
 *   scores:  s_j = (q_t,h · k_j) · scale                                         j = 0 .. p0+t
 *   out:     out_t,h = Σ_j softmax(s)_j v_j
 *
 * p0 = *pos is read on the device, never on the host: the runner captures a decode step in a CUDA graph
 * once and replays it at every position, and a graph freezes grid sizes. So every grid here depends on
 * n, H, KV, hd and ctx only, and a block whose positions lie past p0+t finds that out and returns.
 *
 * Three launches, in stream order:
 *   1. kva_rope_append_kernel: RoPE on q and k_new in place, rows p0+t of the cache written. Its own
 *      launch because token t of a prompt chunk reads the cache rows p0 .. p0+t-1 written for the other
 *      tokens, by other blocks: only the end of a launch orders one block's writes before another's reads.
 *   2. kva_chunk_kernel: positions split in chunks of KVA_CHUNK (flash-decoding's split over the keys, so
 *      that a decode step at a long context spreads over many blocks: at 8192 positions 32 chunks per
 *      head). Per (head, chunk, token) one block: the chunk's scores, their max m_c, p_j = exp(s_j − m_c),
 *      l_c = Σ p_j and o_c = Σ p_j v_j (hd floats) into scratch.
 *   3. kva_combine_kernel: per (head, token) M = max_c m_c, w_c = exp(m_c − M),
 *      out = Σ_c w_c o_c / Σ_c w_c l_c  (= Σ_j exp(s_j − M) v_j / Σ_j exp(s_j − M), the CPU's softmax · v).
 *
 * scratch (tn_cuda_kv_attention_scratch_floats): stats [n, H, n_chunks, 2] (m_c, l_c), then part
 * [n, H, n_chunks, hd] (o_c), n_chunks = ceil(ctx / KVA_CHUNK). Only the chunks a token sees are written and
 * read.
 *
 * Agreement with the CPU: RoPE and the cache rows bit for bit (the products and sums written with
 * __fmul_rn / __fadd_rn / sub_rn, which nvcc does not contract into FMAs; the emulator has no __fsub_rn,
 * hence block_reduce.cuh's sub_rn = __fadd_rn(a, −b), the same value). out to float rounding: the dot
 * products and sums go in another order, exp(s − m_c)·exp(m_c − M) stands for exp(s − M), and nvcc contracts
 * the multiply-adds. In the emulator out is within 9e-7 (per row, relative) of the formula in double, and
 * within 5.7e-6 of the CPU's float formula, whose position-ordered sums drift at 8192 positions
 * (tests/unit/test_cuda_kv_attention.c).
 *
 * If *pos breaks the caller's promise (p0 < 0 or p0 + n > ctx), nothing is written to q, k_new or the
 * cache and out is NaN: a wrong position shows instead of writing outside the cache. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/block_reduce.cuh"

#include <math.h>

static constexpr int KVA_THREADS = 128;              /* chunk and combine kernels: 4 warps */
static constexpr int KVA_WARPS = KVA_THREADS / 32;
static constexpr int KVA_CHUNK = 256;                /* positions per block of kva_chunk_kernel */
static constexpr int KVA_MAX_HD = 128;
static constexpr int KVA_DPL = KVA_MAX_HD / 32;      /* o: head dims per lane (lane l: l, l+32, l+64, l+96) */
static constexpr int KVA_GROUP = 8;                  /* scores: lanes per position */
static constexpr int KVA_GROUPS = 32 / KVA_GROUP;    /* positions per warp step */
static constexpr int KVA_GDIMS = KVA_MAX_HD / KVA_GROUP; /* scores: head dims per lane (g, g+8, .., g+120) */
static constexpr int KVA_ROPE_ROWS = 4;              /* head rows per block of the RoPE kernel */

#ifdef __CUDACC__
#define KVA_PRAGMA(x) _Pragma(#x)
#define KVA_UNROLL_ALL KVA_PRAGMA(unroll)
#else
#define KVA_UNROLL_ALL
#endif

static int64_t kva_chunks(int64_t ctx) { return (ctx + KVA_CHUNK - 1) / KVA_CHUNK; }

/* p0 as the kernels see it, or -1 when it breaks p0 >= 0, p0 + n <= ctx (every thread reads the same value,
 * so a test of it is uniform over the block). */
static __device__ __forceinline__ int read_pos(const int32_t *pos, int n, int ctx) {
    const int p0 = *pos;
    return p0 >= 0 && p0 <= ctx - n ? p0 : -1;
}

/* x[i], x[i + half] ← rot(x[i], x[i + half]) for i = threadIdx.x, + 32, ..; also into copy when not NULL.
 * The CPU's a·c − b·s and b·c + a·s, each product rounded on its own (runner/infer_ops_cpu.c rope). */
static __device__ __forceinline__ void rope_row(float *x, float *copy, const float *c, const float *s, int half) {
    for (int i = (int)threadIdx.x; i < half; i += 32) {
        const float a = x[i], b = x[i + half], ci = c[i], si = s[i];
        const float lo = sub_rn(__fmul_rn(a, ci), __fmul_rn(b, si));
        const float hi = __fadd_rn(__fmul_rn(b, ci), __fmul_rn(a, si));
        x[i] = lo;
        x[i + half] = hi;
        if (copy) {
            copy[i] = lo;
            copy[i + half] = hi;
        }
    }
}

/* kva_rope_append_kernel. q [n, H, hd], k_new [n, KV, hd] roped in place; k_cache, v_cache [ctx, KV, hd]:
 * row p0+t = roped k_new row t, v_new row t.
 * The (H + 2·KV) head rows of token t are: q heads 0 .. H-1, then k heads, then v heads (copied).
 * grid (ceil((H + 2·KV) / KVA_ROPE_ROWS), n), block (32, KVA_ROPE_ROWS): threadIdx.y picks the head row,
 * threadIdx.x the pairs i = tx, tx + 32, .. (a warp reads 32 consecutive floats of each half). */
static __global__ void __launch_bounds__(32 * KVA_ROPE_ROWS)
kva_rope_append_kernel(float *__restrict__ q, float *__restrict__ k_new, const float *__restrict__ v_new,
                       float *__restrict__ k_cache, float *__restrict__ v_cache, const int32_t *__restrict__ pos,
                       const float *__restrict__ cos_t, const float *__restrict__ sin_t, int n, int H, int KV,
                       int hd, int ctx) {
    const int t = (int)blockIdx.y, r = (int)(blockIdx.x * blockDim.y + threadIdx.y);
    const int p0 = read_pos(pos, n, ctx);
    if (r >= H + 2 * KV || p0 < 0) return; /* no barriers in this kernel */
    const int64_t p = p0 + t, half = hd / 2, kvd = (int64_t)KV * hd;
    const float *c = cos_t + p * half, *s = sin_t + p * half;
    if (r < H) {
        rope_row(q + ((int64_t)t * H + r) * hd, nullptr, c, s, (int)half);
    } else if (r < H + KV) {
        const int64_t off = (int64_t)(r - H) * hd;
        rope_row(k_new + t * kvd + off, k_cache + p * kvd + off, c, s, (int)half);
    } else {
        const int64_t off = (int64_t)(r - H - KV) * hd;
        for (int d = (int)threadIdx.x; d < hd; d += 32) v_cache[p * kvd + off + d] = v_new[t * kvd + off + d];
    }
}

/* kva_chunk_kernel. One chunk of positions j0 .. j0 + cl − 1 (j0 = c·KVA_CHUNK, cl = min(KVA_CHUNK, len − j0))
 * of token t, query head h, from q [n, H, hd] (roped) and the cache rows of kv head kh:
 *   s_j = (q · k_j)·scale;  m_c = max_j s_j;  p_j = exp(s_j − m_c);  l_c = Σ_j p_j;  o_c = Σ_j p_j v_j
 * stats [n, H, n_chunks, 2] ← (m_c, l_c);  part [n, H, n_chunks, hd] ← o_c. Chunks past len write nothing.
 * grid (H, n_chunks, n), the G heads of a kv group side by side (they read the same k and v rows, which
 * the second to come finds in L2); block KVA_THREADS = 4 warps.
 * Scores: an 8-lane group per position, four per warp step (below), s in shared memory. Max and sum by the
 * fixed tree of block_reduce. o: warp w takes positions j ≡ w (mod 4), lane l its dims l + 32i (a warp reads
 * a v row coalesced; no shuffles); the four warps' sums meet in shared memory. */
static __global__ void __launch_bounds__(KVA_THREADS)
kva_chunk_kernel(const float *__restrict__ q, const float *__restrict__ k_cache, const float *__restrict__ v_cache,
                 const int32_t *__restrict__ pos, int n, int H, int KV, int hd, int ctx, int n_chunks, float scale,
                 float *__restrict__ stats, float *__restrict__ part) {
    __shared__ float s[KVA_CHUNK];
    __shared__ float red[32];
    __shared__ float o_red[KVA_WARPS][KVA_MAX_HD];
    const int h = (int)blockIdx.x, c = (int)blockIdx.y, t = (int)blockIdx.z;
    const int p0 = read_pos(pos, n, ctx);
    const int len = p0 + t + 1, j0 = c * KVA_CHUNK;
    if (p0 < 0 || j0 >= len) return; /* uniform over the block: no thread reaches a barrier */
    const int cl = min(KVA_CHUNK, len - j0);
    const int lane = (int)(threadIdx.x % 32), warp = (int)(threadIdx.x / 32);
    const int64_t kvd = (int64_t)KV * hd, kv_off = (int64_t)j0 * kvd + (int64_t)(h / (H / KV)) * hd;
    const float *kb = k_cache + kv_off, *vb = v_cache + kv_off;
    const int64_t row = ((int64_t)t * H + h) * n_chunks + c; /* (t, h, c) in stats and part */

    /* s_j = (q · k_j)·scale. Each 8-lane group of a warp takes one position: lane g of the group holds q's
     * dims g + 8i in registers and reads the same dims of k_j (the group reads 8 consecutive floats, a
     * 32-byte sector, per load; hd/8 loads in flight), then three xor-shuffles sum the group. Warp w takes
     * positions 4w .. 4w+3, then 16 further on. The loop bounds are the same for the 32 lanes of a warp
     * (full-mask shuffles). */
    const int g = lane % KVA_GROUP, sub = lane / KVA_GROUP;
    const float *qh = q + ((int64_t)t * H + h) * hd;
    float qr[KVA_GDIMS];
    KVA_UNROLL_ALL
    for (int i = 0; i < KVA_GDIMS; i++) qr[i] = g + KVA_GROUP * i < hd ? qh[g + KVA_GROUP * i] : 0.0f;
    for (int jb = KVA_GROUPS * warp; jb < cl; jb += KVA_GROUPS * KVA_WARPS) {
        const int j = jb + sub;
        float dot = 0.0f;
        if (j < cl) {
            const float *kj = kb + (int64_t)j * kvd;
            KVA_UNROLL_ALL
            for (int i = 0; i < KVA_GDIMS; i++)
                if (g + KVA_GROUP * i < hd) dot += qr[i] * kj[g + KVA_GROUP * i];
        }
        for (int o = KVA_GROUP / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(FULL_MASK, dot, o);
        if (g == 0 && j < cl) s[j] = dot * scale;
    }
    __syncthreads();

    /* m_c, then p_j = exp(s_j − m_c) in place of s_j and l_c (each thread its own j: no barrier between) */
    float m = -INFINITY;
    for (int j = (int)threadIdx.x; j < cl; j += KVA_THREADS) m = s[j] > m ? s[j] : m;
    m = block_reduce(m, -INFINITY, op_max{}, red);
    float l = 0.0f;
    for (int j = (int)threadIdx.x; j < cl; j += KVA_THREADS) {
        const float e = expf(s[j] - m);
        s[j] = e;
        l += e;
    }
    l = block_reduce(l, 0.0f, op_add{}, red); /* ends with a barrier: every p_j is published */

    /* o_c = Σ_j p_j v_j */
    float acc[KVA_DPL] = {};
    for (int j = warp; j < cl; j += KVA_WARPS) {
        const float pj = s[j], *vj = vb + (int64_t)j * kvd;
        KVA_UNROLL_ALL
        for (int i = 0; i < KVA_DPL; i++)
            if (lane + 32 * i < hd) acc[i] += pj * vj[lane + 32 * i];
    }
    KVA_UNROLL_ALL
    for (int i = 0; i < KVA_DPL; i++)
        if (lane + 32 * i < hd) o_red[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    float *po = part + row * hd;
    for (int d = (int)threadIdx.x; d < hd; d += KVA_THREADS) {
        float o = o_red[0][d];
        for (int w = 1; w < KVA_WARPS; w++) o += o_red[w][d];
        po[d] = o;
    }
    if (threadIdx.x == 0) {
        stats[2 * row] = m;
        stats[2 * row + 1] = l;
    }
}

/* kva_combine_kernel. out [n, H, hd] from the chunks 0 .. ceil(len / KVA_CHUNK) − 1 of (t, h) in stats, part:
 *   M = max_c m_c;  w_c = exp(m_c − M);  out = Σ_c w_c o_c / Σ_c w_c l_c
 * (one chunk: w = 1, out = o / l). grid (H, n), block KVA_THREADS: thread d < hd owns dim d and walks the
 * chunks in order (a few dozen at long contexts; every thread reads the same stats, a broadcast). */
static __global__ void __launch_bounds__(KVA_THREADS)
kva_combine_kernel(const int32_t *__restrict__ pos, const float *__restrict__ stats, const float *__restrict__ part,
                   int n, int H, int hd, int ctx, int n_chunks, float *__restrict__ out) {
    const int h = (int)blockIdx.x, t = (int)blockIdx.y, d = (int)threadIdx.x;
    if (d >= hd) return; /* no barriers in this kernel */
    const int p0 = read_pos(pos, n, ctx);
    float *o = out + ((int64_t)t * H + h) * hd;
    if (p0 < 0) {
        o[d] = NAN;
        return;
    }
    const int nc = (p0 + t + 1 + KVA_CHUNK - 1) / KVA_CHUNK;
    const int64_t row0 = ((int64_t)t * H + h) * n_chunks;
    const float *st = stats + 2 * row0, *pc = part + row0 * hd + d;
    float M = -INFINITY;
    for (int c = 0; c < nc; c++) M = st[2 * c] > M ? st[2 * c] : M;
    float L = 0.0f, acc = 0.0f;
    for (int c = 0; c < nc; c++) {
        const float w = expf(st[2 * c] - M);
        L += w * st[2 * c + 1];
        acc += w * pc[(int64_t)c * hd];
    }
    o[d] = acc / L;
}

/* ---- host side ------------------------------------------------------------------------------------ */

extern "C" int64_t tn_cuda_kv_attention_scratch_floats(int64_t n, int64_t H, int64_t hd, int64_t ctx) {
    if (n <= 0 || H <= 0 || hd <= 0 || ctx <= 0) return 0;
    return n * H * kva_chunks(ctx) * (2 + hd); /* stats (m, l) and o per (token, head, chunk) */
}

extern "C" int tn_cuda_kv_attention(float *q, float *k_new, const float *v_new, float *k_cache, float *v_cache,
                                    const int32_t *pos, const float *cos_t, const float *sin_t, int64_t n, int64_t H,
                                    int64_t KV, int64_t hd, int64_t ctx, float *out, float *scratch) {
    static const char fn[] = "tn_cuda_kv_attention";
    if (H < 1 || KV < 1 || H % KV != 0)
        return tn_err("%s: %lld query heads are not a multiple of %lld kv heads", fn, (long long)H, (long long)KV);
    if (hd < 2 || hd > KVA_MAX_HD || hd % 2 != 0)
        return tn_err("%s: head dim %lld (supported: even, 2 .. %d)", fn, (long long)hd, KVA_MAX_HD);
    if (ctx < 1 || n < 0 || n > ctx)
        return tn_err("%s: %lld tokens for a context of %lld", fn, (long long)n, (long long)ctx);
    /* grid limits (y, z <= 65535) and int indices in the kernels (int64 offsets where they multiply) */
    if (n > 65535 || kva_chunks(ctx) > 65535 || H + 2 * KV > INT32_MAX / 2 || ctx > INT32_MAX / 2)
        return tn_err("%s: n = %lld, H = %lld, KV = %lld, ctx = %lld exceed the grid", fn, (long long)n, (long long)H,
                      (long long)KV, (long long)ctx);
    if (n == 0) return 0;
    if (!q || !k_new || !v_new || !k_cache || !v_cache || !pos || !cos_t || !sin_t || !out || !scratch)
        return tn_err("%s: NULL array", fn);

    const int n_chunks = (int)kva_chunks(ctx);
    const float scale = 1.0f / sqrtf((float)hd); /* as runner/infer_ops_cpu.c */
    float *stats = scratch, *part = scratch + 2 * n * H * n_chunks;

    const dim3 rope_grid((unsigned)((H + 2 * KV + KVA_ROPE_ROWS - 1) / KVA_ROPE_ROWS), (unsigned)n);
    TN_LAUNCH(kva_rope_append_kernel, rope_grid, dim3(32, KVA_ROPE_ROWS), 0, q, k_new, v_new, k_cache, v_cache, pos,
              cos_t, sin_t, (int)n, (int)H, (int)KV, (int)hd, (int)ctx);
    TN_CU_LAUNCHED("tn_cuda_kv_attention: launch (RoPE, cache rows)");

    TN_LAUNCH(kva_chunk_kernel, dim3((unsigned)H, (unsigned)n_chunks, (unsigned)n), KVA_THREADS, 0,
              (const float *)q, (const float *)k_cache, (const float *)v_cache, pos, (int)n, (int)H, (int)KV, (int)hd,
              (int)ctx, n_chunks, scale, stats, part);
    TN_CU_LAUNCHED("tn_cuda_kv_attention: launch (chunks)");

    TN_LAUNCH(kva_combine_kernel, dim3((unsigned)H, (unsigned)n), KVA_THREADS, 0, pos, (const float *)stats,
              (const float *)part, (int)n, (int)H, (int)hd, (int)ctx, n_chunks, out);
    TN_CU_LAUNCHED("tn_cuda_kv_attention: launch (combine)");
    return 0;
}
