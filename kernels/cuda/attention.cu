/* Causal grouped-query attention on the GPU, forward and backward: the CUDA side of kernels/cpu/ops_cpu.c
 * tn_op_attention / tn_op_attention_backward, without the T x T probabilities (FlashAttention-2).
 *
 *   q, out, dout, dq [B, T, H, hd] (row stride H·hd);  k, v, dk, dv [B, T, KV, hd] (row stride KV·hd);
 *   q head h reads kv head h / (H / KV);  scale = 1 / sqrtf(hd);  key j is visible to query i when j <= i.
 *
 * Forward (attn_fwd_kernel): per query tile, key tiles at or below the diagonal one after the other with an
 * online softmax (running row max m, running row sum l, the output rescaled when m grows). It saves only
 * lse[b, h, i] = m + log(l) (natural log), B·H·T floats.
 * Backward: D_i = Σ_d dO_i ⊙ O_i (attn_rowdot_kernel, into the caller's scratch), then the probabilities are
 * recomputed tile by tile, P_ij = exp(scale · q_i·k_j − lse_i), and
 *   dV = Pᵀ dO;  dP = dO Vᵀ;  dS = P ⊙ (dP − D) · scale;  dQ = dS K;  dK = dSᵀ Q
 * by two kernels that each own their outputs, so there are no atomics and a run repeats bit for bit:
 * attn_bwd_dkdv_kernel (per key tile and kv head: dK, dV, over the q heads of the group and the query
 * tiles at or below the diagonal, in a fixed order) and attn_bwd_dq_kernel (per query tile and head: dQ).
 *
 * Tiles. Every kernel works on 64 x 64 score tiles with 128 threads = 8 half-warps. Half-warp g owns tile
 * rows 8g .. 8g+7 and lane c of it owns tile columns 4c .. 4c+3: 32 scores in registers per thread, and
 * the row reductions of the softmax are 4 xor-shuffles inside the half-warp. Products come in two shapes:
 *   score_tile:      S[r][c] = Σ_d A[r][d] B[c][d]  (A, B rows in global memory, 32 dims at a time staged
 *                    transposed in shared memory; per dim a thread reads 8 + 4 floats as 3 float4 and
 *                    does 32 FMAs)
 *   accumulate_tile: acc[r][d] += Σ_x M[x][r] G[x][d]  (M a 64 x 64 tile in shared memory, G rows in
 *                    global memory staged 64 or 32 at a time; the thread's HD/16 dims of its 8 rows)
 * The head dim is a template parameter HD (32, 64, 96, 128: hd rounded up to a multiple of 32); the dims
 * past hd are staged as zeros. Shared memory: 2·32·68 floats of staging (or the G rows) + a 64 x 68 tile
 * = 34,816 bytes per block for every HD. Registers per thread: 32 scores + 8·HD/16 accumulators (dkdv: two
 * sets). FP32 throughout; products are written a·b + c, which nvcc contracts into one FFMA (its default
 * -fmad=true) and the emulator's host compiler keeps as a multiply and an add that it can vectorise. */
#include "kernels/cuda/cuda_internal.h"

#include <math.h>

#define FULL_MASK 0xffffffffu

static constexpr int ATT_THREADS = 128; /* 4 warps = 8 half-warps */
static constexpr int ATT_TILE = 64;     /* query rows and key columns of a score tile */
static constexpr int ATT_TM = 8;        /* tile rows per thread (half-warp g: rows 8g .. 8g+7) */
static constexpr int ATT_TN = 4;        /* tile columns per thread (lane c of the half-warp: 4c .. 4c+3) */
static constexpr int ATT_LD = 68;       /* row stride of transposed tiles: float4-aligned, and the
                                           transposing stores of stage_transposed hit 32 distinct banks */
static constexpr int ATT_DC = 32;       /* head dims per staged chunk of a score product */
static constexpr int ATT_STAGE = 2 * ATT_DC * ATT_LD; /* floats of staging: two transposed chunks */
static constexpr int ATT_SMEM_BYTES = (ATT_STAGE + ATT_TILE * ATT_LD) * (int)sizeof(float);
static constexpr int ATT_MAX_HD = 128;

static constexpr float ATT_LOG2E = 1.4426950408889634f;
static constexpr float ATT_LN2 = 0.6931471805599453f;

/* Loops over register arrays are unrolled completely (the arrays stay in registers); the long loops of the
 * products and of the staging by a few steps only (fully unrolled, the compiler hoists so many loads that
 * it spills). The host compiler of the emulator decides for itself. */
#ifdef __CUDACC__
#define ATT_PRAGMA(x) _Pragma(#x)
#define ATT_UNROLL ATT_PRAGMA(unroll)
#define ATT_UNROLL_BY(n) ATT_PRAGMA(unroll n)
#else
#define ATT_UNROLL
#define ATT_UNROLL_BY(n)
#endif

/* Per head-dim class: each thread accumulates TD = HD/16 dims of its rows, read from shared memory W at a
 * time (float4 or float2): element e is dim (e / W)·16W + c·W + e % W, so the 16 lanes of a half-warp read
 * 16W consecutive floats. XC: rows of G staged per step of accumulate_tile (XC·HD <= ATT_STAGE). */
template <int HD> struct att_dims {
    static_assert(HD % 32 == 0 && HD <= ATT_MAX_HD, "head dim class");
    static constexpr int TD = HD / 16;
    static constexpr int W = TD % 4 == 0 ? 4 : 2;
    static constexpr int XC = HD <= 64 ? 64 : 32;
    static_assert(XC * HD <= ATT_STAGE, "staged G rows fit the staging buffer");
    /* Blocks per SM asked of the register allocator (__launch_bounds__; 65536 / (128 · blocks) registers
     * per thread): the most that holds 32 scores and one (fwd, dq) or two (dkdv) sets of 8 x TD
     * accumulators without spilling (ptxas -v for sm_75, 80, 89 and 90; 4 blocks at HD = 64 spill). */
    static constexpr int BLOCKS_FWD = HD <= 32 ? 4 : HD <= 64 ? 3 : 2;
    static constexpr int BLOCKS_DQ = HD <= 32 ? 4 : HD <= 96 ? 3 : 2;
    static constexpr int BLOCKS_DKDV = HD <= 32 ? 4 : HD <= 64 ? 3 : 2;
    static __device__ __forceinline__ int dim(int e, int c) { return (e / W) * 16 * W + c * W + e % W; }
};

/* ---- small helpers -------------------------------------------------------------------------------- */

static __device__ __forceinline__ int half_warp(void) { return (int)threadIdx.x >> 4; }
static __device__ __forceinline__ int half_lane(void) { return (int)threadIdx.x & 15; }

/* max / sum over the 16 lanes of a half-warp (xor distances < 16 stay inside it), to every lane. */
static __device__ __forceinline__ float half_warp_max(float v) {
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}
static __device__ __forceinline__ float half_warp_sum(float v) {
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

/* N consecutive floats of shared memory (N·4-byte aligned) into / out of registers. */
template <int N> static __device__ __forceinline__ void ld_shared(float *r, const float *s) {
    if constexpr (N == 4) {
        const float4 v = *reinterpret_cast<const float4 *>(s);
        r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
    } else {
        static_assert(N == 2, "float2 or float4");
        const float2 v = *reinterpret_cast<const float2 *>(s);
        r[0] = v.x, r[1] = v.y;
    }
}
static __device__ __forceinline__ void st_shared4(float *s, float a, float b, float c, float d) {
    *reinterpret_cast<float4 *>(s) = make_float4(a, b, c, d);
}

/* ---- staging: global rows -> shared memory ------------------------------------------------------- */

/* dst[d][r] = src[r·stride + d0 + d] for r < 64, d < 32 (stride ATT_LD); 0 for r >= rows or d0 + d >= hd.
 * Thread t takes rows t/8 + 16m and dims t%8 + 8n: a warp reads 4 rows x 8 consecutive floats (four 32-byte
 * sectors) and writes banks (4d + r) % 32, all distinct. */
static __device__ __forceinline__ void stage_transposed(float *dst, const float *src, int64_t stride, int rows,
                                                        int d0, int hd) {
    const int t = (int)threadIdx.x, r0 = t >> 3, dl = t & 7;
    ATT_UNROLL_BY(2)
    for (int dd = 0; dd < ATT_DC; dd += 8) {
        ATT_UNROLL
        for (int rr = 0; rr < ATT_TILE; rr += 16) {
            const int r = r0 + rr, d = dl + dd;
            dst[d * ATT_LD + r] = r < rows && d0 + d < hd ? src[(int64_t)r * stride + d0 + d] : 0.0f;
        }
    }
}

/* dst[x][d] = src[x·stride + d] for x < XC, d < HD (row stride HD); 0 for x >= rows or d >= hd.
 * Consecutive threads take consecutive dims: coalesced reads, conflict-free writes. */
template <int HD> static __device__ __forceinline__ void stage_rows(float *dst, const float *src, int64_t stride,
                                                                    int rows, int hd) {
    constexpr int XC = att_dims<HD>::XC;
    static_assert((XC * HD) % ATT_THREADS == 0, "whole steps");
    ATT_UNROLL
    for (int e = (int)threadIdx.x; e < XC * HD; e += ATT_THREADS) {
        const int x = e / HD, d = e % HD;
        dst[e] = x < rows && d < hd ? src[(int64_t)x * stride + d] : 0.0f;
    }
}

/* ---- the two tile products ----------------------------------------------------------------------- */

/* score_tile. acc[r][e] += Σ_{d < hd} A[8g + r][d] · B[4c + e][d].
 * A, B: the tile's first rows in global memory (row strides as, bs); rows past a_rows / b_rows read as 0.
 * Dims go 32 at a time through stage (At[d][r], Bt[d][c], transposed so that a thread's 8 rows and 4
 * columns are 3 float4 loads: the 8 rows are the same for the 16 lanes of a half-warp, a broadcast).
 * Every thread must call it: it begins by writing stage and ends past a barrier (stage free again). */
template <int HD>
static __device__ __forceinline__ void score_tile(float (&acc)[ATT_TM][ATT_TN], const float *A, int64_t as,
                                                  int a_rows, const float *B, int64_t bs, int b_rows, int hd,
                                                  float *stage) {
    float *At = stage, *Bt = stage + ATT_DC * ATT_LD;
    const int g = half_warp(), c = half_lane();
    for (int d0 = 0; d0 < HD; d0 += ATT_DC) {
        stage_transposed(At, A, as, a_rows, d0, hd);
        stage_transposed(Bt, B, bs, b_rows, d0, hd);
        __syncthreads();
        ATT_UNROLL_BY(4)
        for (int d = 0; d < ATT_DC; d++) {
            float a[ATT_TM], b[ATT_TN];
            ld_shared<4>(a, At + d * ATT_LD + 8 * g);
            ld_shared<4>(a + 4, At + d * ATT_LD + 8 * g + 4);
            ld_shared<4>(b, Bt + d * ATT_LD + 4 * c);
            ATT_UNROLL
            for (int r = 0; r < ATT_TM; r++) {
                ATT_UNROLL
                for (int e = 0; e < ATT_TN; e++) acc[r][e] += a[r] * b[e];
            }
        }
        __syncthreads(); /* stage is overwritten next */
    }
}

/* accumulate_tile. acc[r][e] += Σ_{x < 64} M[x][8g + r] · G[x][dim(e)].
 * M: a 64 x 64 tile in shared memory, M[x][r] at x·ATT_LD + r (put_tile_t writes it; the caller's writes are
 * published by the first barrier here). G: rows in global memory (stride gs), rows past g_rows are 0 and
 * skipped; staged XC rows at a time. Every thread must call it; it ends past a barrier. */
template <int HD>
static __device__ __forceinline__ void accumulate_tile(float (&acc)[ATT_TM][HD / 16], const float *M,
                                                       const float *G, int64_t gs, int g_rows, int hd,
                                                       float *stage) {
    using dims = att_dims<HD>;
    const int g = half_warp(), c = half_lane();
    for (int x0 = 0; x0 < ATT_TILE && x0 < g_rows; x0 += dims::XC) { /* g_rows is the same for the block */
        stage_rows<HD>(stage, G + (int64_t)x0 * gs, gs, g_rows - x0, hd);
        __syncthreads();
        ATT_UNROLL_BY(4)
        for (int x = 0; x < dims::XC; x++) {
            float m[ATT_TM], gv[dims::TD];
            ld_shared<4>(m, M + (x0 + x) * ATT_LD + 8 * g);
            ld_shared<4>(m + 4, M + (x0 + x) * ATT_LD + 8 * g + 4);
            ATT_UNROLL
            for (int e = 0; e < dims::TD; e += dims::W) ld_shared<dims::W>(gv + e, stage + x * HD + dims::dim(e, c));
            ATT_UNROLL
            for (int r = 0; r < ATT_TM; r++) {
                ATT_UNROLL
                for (int e = 0; e < dims::TD; e++) acc[r][e] += m[r] * gv[e];
            }
        }
        __syncthreads(); /* stage is overwritten next */
    }
}

/* M[4c + e][8g + r] = s[r][e]: the thread's scores transposed into the tile that accumulate_tile reads
 * (two float4 per column). */
static __device__ __forceinline__ void put_tile_t(float *M, const float (&s)[ATT_TM][ATT_TN]) {
    const int g = half_warp(), c = half_lane();
    ATT_UNROLL
    for (int e = 0; e < ATT_TN; e++) {
        float *p = M + (4 * c + e) * ATT_LD + 8 * g;
        st_shared4(p, s[0][e], s[1][e], s[2][e], s[3][e]);
        st_shared4(p + 4, s[4][e], s[5][e], s[6][e], s[7][e]);
    }
}

/* The inverse of put_tile_t (a thread reads back what it wrote itself: no barrier needed). */
static __device__ __forceinline__ void get_tile_t(float (&s)[ATT_TM][ATT_TN], const float *M) {
    const int g = half_warp(), c = half_lane();
    ATT_UNROLL
    for (int e = 0; e < ATT_TN; e++) {
        float v[8];
        ld_shared<4>(v, M + (4 * c + e) * ATT_LD + 8 * g);
        ld_shared<4>(v + 4, M + (4 * c + e) * ATT_LD + 8 * g + 4);
        ATT_UNROLL
        for (int r = 0; r < ATT_TM; r++) s[r][e] = v[r];
    }
}

/* Causal mask inside a diagonal tile (the query and key tiles start at the same multiple of 64): key j of
 * the tile is visible to query i of the tile when j <= i. Tiles below the diagonal are all visible. */
static __device__ __forceinline__ bool visible(int query, int key) { return key <= query; }

/* Writes the thread's rows [TM][TD] of a 64-row tile to global memory (rows >= rows and dims >= hd skipped),
 * times mul[r]. */
template <int HD>
static __device__ __forceinline__ void store_rows(float *dst, int64_t stride, int rows, int hd,
                                                  const float (&acc)[ATT_TM][HD / 16], const float (&mul)[ATT_TM]) {
    using dims = att_dims<HD>;
    const int g = half_warp(), c = half_lane();
    ATT_UNROLL
    for (int r = 0; r < ATT_TM; r++) {
        const int i = 8 * g + r;
        if (i >= rows) continue;
        ATT_UNROLL
        for (int e = 0; e < dims::TD; e++) {
            const int d = dims::dim(e, c);
            if (d < hd) dst[(int64_t)i * stride + d] = acc[r][e] * mul[r];
        }
    }
}

/* ---- forward ------------------------------------------------------------------------------------- */

/* One key tile of the online softmax, for the thread's rows. In: s = raw scores q·k. Out: s = p =
 * 2^(s·scale_log2 − m) with m the new running row max (base-2 exponents: scale_log2 = scale·log2 e), 0 where
 * masked; the rows' o and the thread's partial row sums l rescaled by 2^(m_old − m) first. The row max is
 * shared by the 16 lanes (shuffles); the row sum stays per lane until the end. */
template <int TD>
static __device__ __forceinline__ void online_softmax(float (&s)[ATT_TM][ATT_TN], float (&m)[ATT_TM],
                                                      float (&l)[ATT_TM], float (&o)[ATT_TM][TD], bool diag,
                                                      float scale_log2) {
    const int g = half_warp(), c = half_lane();
    ATT_UNROLL
    for (int r = 0; r < ATT_TM; r++) {
        float mx = -INFINITY;
        ATT_UNROLL
        for (int e = 0; e < ATT_TN; e++) {
            const float x = diag && !visible(8 * g + r, 4 * c + e) ? -INFINITY : s[r][e] * scale_log2;
            s[r][e] = x;
            mx = fmaxf(mx, x);
        }
        const float m_new = fmaxf(m[r], half_warp_max(mx));
        /* No visible key yet (cannot happen for a row < T, whose key 0 is in the first tile): keep the
         * exponents at −inf rather than form −inf − (−inf). */
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2f(m[r] - base);
        float sum = 0.0f;
        ATT_UNROLL
        for (int e = 0; e < ATT_TN; e++) {
            s[r][e] = exp2f(s[r][e] - base);
            sum += s[r][e];
        }
        l[r] = l[r] * alpha + sum;
        ATT_UNROLL
        for (int e = 0; e < TD; e++) o[r][e] *= alpha;
        m[r] = m_new;
    }
}

/* attn_fwd_kernel. q [B, T, H, hd], k, v [B, T, KV, hd] -> out [B, T, H, hd], lse [B, H, T].
 * Per query tile (rows i0 .. i0+63 of head h), for key tiles j0 = 0, 64, .., i0:
 *   S = Q Kᵀ (score_tile);  online softmax (m, l per row, o rescaled);  O += P V (P through shared memory,
 *   accumulate_tile).   Then out = O / l, lse = m·ln 2 + ln l (m is kept in base 2).
 * grid = (B·H, ceil(T/64)), blockIdx.y counted from the last query tile (the longest rows start first);
 * block = 128 threads; thread (g, c) owns rows 8g .. 8g+7: their o (8 x HD/16), m and partial l. */
template <int HD>
static __global__ void __launch_bounds__(ATT_THREADS, att_dims<HD>::BLOCKS_FWD)
attn_fwd_kernel(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                const float *__restrict__ k, const float *__restrict__ v, int T, int H, int KV, int hd,
                float scale_log2) {
    TN_DYN_SHARED(float, smem);
    float *stage = smem, *P = smem + ATT_STAGE;
    constexpr int TD = att_dims<HD>::TD;
    const int b = (int)blockIdx.x / H, h = (int)blockIdx.x % H, kh = h / (H / KV);
    const int qt = (int)(gridDim.y - 1 - blockIdx.y), i0 = qt * ATT_TILE, q_rows = min(ATT_TILE, T - i0);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd;
    const float *qb = q + ((int64_t)b * T + i0) * qs + (int64_t)h * hd;
    const float *kb = k + (int64_t)b * T * ks + (int64_t)kh * hd;
    const float *vb = v + (int64_t)b * T * ks + (int64_t)kh * hd;

    float o[ATT_TM][TD] = {}, m[ATT_TM], l[ATT_TM] = {};
    ATT_UNROLL
    for (int r = 0; r < ATT_TM; r++) m[r] = -INFINITY;
    for (int kt = 0; kt <= qt; kt++) {
        const int j0 = kt * ATT_TILE, k_rows = min(ATT_TILE, T - j0);
        float s[ATT_TM][ATT_TN] = {};
        score_tile<HD>(s, qb, qs, q_rows, kb + (int64_t)j0 * ks, ks, k_rows, hd, stage);
        online_softmax<TD>(s, m, l, o, kt == qt, scale_log2);
        put_tile_t(P, s); /* M[j][i] = P[i][j]; the previous readers are past accumulate_tile's last barrier */
        accumulate_tile<HD>(o, P, vb + (int64_t)j0 * ks, ks, k_rows, hd, stage);
    }

    const int g = half_warp(), c = half_lane();
    float inv[ATT_TM];
    ATT_UNROLL
    for (int r = 0; r < ATT_TM; r++) {
        const float lr = half_warp_sum(l[r]);
        inv[r] = 1.0f / lr;
        const int i = i0 + 8 * g + r;
        if (c == 0 && i < T) lse[((int64_t)b * H + h) * T + i] = m[r] * ATT_LN2 + logf(lr);
    }
    store_rows<HD>(out + ((int64_t)b * T + i0) * qs + (int64_t)h * hd, qs, q_rows, hd, o, inv);
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* attn_rowdot_kernel. dout, out [B, T, H, hd] -> dsum [B, H, T]: D = Σ_d dO·O per row.
 * One warp per (b, t, h) row (row index (b·T + t)·H + h), lane l takes dims l, l+32, ..; the warp sums with
 * an xor-shuffle tree (fixed order). grid = ceil(B·T·H / 4), block = 128 threads. */
static __global__ void __launch_bounds__(ATT_THREADS)
attn_rowdot_kernel(float *__restrict__ dsum, const float *__restrict__ dout, const float *__restrict__ out,
                   int64_t rows, int T, int H, int hd) {
    const int64_t row = (int64_t)blockIdx.x * (ATT_THREADS / 32) + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    float acc = 0.0f;
    if (row < rows)
        for (int d = lane; d < hd; d += 32) acc += dout[row * hd + d] * out[row * hd + d];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(FULL_MASK, acc, o);
    if (row < rows && lane == 0) {
        const int64_t h = row % H, bt = row / H, t = bt % T, b = bt / T;
        dsum[(b * H + h) * T + t] = acc;
    }
}

/* A probability from its raw score s = q·k: 2^(s·scale_log2 − lse2) where visible, else 0 (lse2 = lse·log2 e,
 * +inf for a query row past T, which also gives 0). */
static __device__ __forceinline__ float recompute_p(float s, float scale_log2, float lse2, bool vis) {
    return vis ? exp2f(s * scale_log2 - lse2) : 0.0f;
}

/* attn_bwd_dkdv_kernel. -> dk, dv [B, T, KV, hd] (=), from dout, q [B, T, H, hd], k, v, lse and dsum [B, H, T].
 * Per key tile (keys j0 .. j0+63 of kv head kh), for each q head h of the group, for query tiles i0 = j0,
 * j0+64, .. (those with a visible key), with the tile transposed (rows = keys j, columns = queries i):
 *   Sᵀ = K Qᵀ;  Pᵀ = 2^(Sᵀ·scale_log2 − lse2_i) (0 where i < j or i >= T)        (score_tile)
 *   dV += Pᵀ dO                       (P through shared memory as M[i][j], accumulate_tile)
 *   dPᵀ = V dOᵀ;  dSᵀ = Pᵀ ⊙ (dPᵀ − D_i) · scale                                   (score_tile)
 *   dK += dSᵀ Q                       (dS through shared memory in P's place, accumulate_tile)
 * grid = (B·KV, ceil(T/64)), blockIdx.y = key tile (the first tiles see the most queries, they start first);
 * block = 128 threads; thread (g, c) owns keys 8g .. 8g+7: their dK and dV rows (2 x 8 x HD/16). */
template <int HD>
static __global__ void __launch_bounds__(ATT_THREADS, att_dims<HD>::BLOCKS_DKDV)
attn_bwd_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ dout,
                     const float *__restrict__ lse, const float *__restrict__ dsum, const float *__restrict__ q,
                     const float *__restrict__ k, const float *__restrict__ v, int T, int H, int KV, int hd,
                     float scale, float scale_log2) {
    TN_DYN_SHARED(float, smem);
    float *stage = smem, *P = smem + ATT_STAGE;
    constexpr int TD = att_dims<HD>::TD;
    const int b = (int)blockIdx.x / KV, kh = (int)blockIdx.x % KV, group = H / KV;
    const int kt = (int)blockIdx.y, j0 = kt * ATT_TILE, k_rows = min(ATT_TILE, T - j0);
    const int n_tiles = (T + ATT_TILE - 1) / ATT_TILE;
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd;
    const float *kb = k + ((int64_t)b * T + j0) * ks + (int64_t)kh * hd;
    const float *vb = v + ((int64_t)b * T + j0) * ks + (int64_t)kh * hd;
    const int g = half_warp(), c = half_lane();

    float dk_acc[ATT_TM][TD] = {}, dv_acc[ATT_TM][TD] = {};
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        const float *qh = q + (int64_t)b * T * qs + (int64_t)h * hd;
        const float *doh = dout + (int64_t)b * T * qs + (int64_t)h * hd;
        const float *lse_h = lse + ((int64_t)b * H + h) * T, *dsum_h = dsum + ((int64_t)b * H + h) * T;
        for (int qt = kt; qt < n_tiles; qt++) {
            const int i0 = qt * ATT_TILE, q_rows = min(ATT_TILE, T - i0);
            const float *qtile = qh + (int64_t)i0 * qs, *dotile = doh + (int64_t)i0 * qs;
            float s[ATT_TM][ATT_TN] = {};
            score_tile<HD>(s, kb, ks, k_rows, qtile, qs, q_rows, hd, stage);
            ATT_UNROLL
            for (int e = 0; e < ATT_TN; e++) {
                const int i = i0 + 4 * c + e; /* the thread's query columns; lse in base 2, +inf past T: P = 0 */
                const float lse2 = i < T ? lse_h[i] * ATT_LOG2E : INFINITY;
                ATT_UNROLL
                for (int r = 0; r < ATT_TM; r++)
                    s[r][e] = recompute_p(s[r][e], scale_log2, lse2, qt != kt || visible(4 * c + e, 8 * g + r));
            }
            put_tile_t(P, s); /* M[i][j] = P[i][j] */
            accumulate_tile<HD>(dv_acc, P, dotile, qs, q_rows, hd, stage);
            float dp[ATT_TM][ATT_TN] = {};
            score_tile<HD>(dp, vb, ks, k_rows, dotile, qs, q_rows, hd, stage);
            get_tile_t(s, P); /* this thread's own P entries (the dV readers are past a barrier) */
            ATT_UNROLL
            for (int e = 0; e < ATT_TN; e++) {
                const int i = i0 + 4 * c + e;
                const float d_i = i < T ? dsum_h[i] : 0.0f;
                ATT_UNROLL
                for (int r = 0; r < ATT_TM; r++) dp[r][e] = s[r][e] * (dp[r][e] - d_i) * scale;
            }
            put_tile_t(P, dp); /* M[i][j] = dS[i][j] */
            accumulate_tile<HD>(dk_acc, P, qtile, qs, q_rows, hd, stage);
        }
    }
    float one[ATT_TM];
    ATT_UNROLL
    for (int r = 0; r < ATT_TM; r++) one[r] = 1.0f;
    store_rows<HD>(dk + ((int64_t)b * T + j0) * ks + (int64_t)kh * hd, ks, k_rows, hd, dk_acc, one);
    store_rows<HD>(dv + ((int64_t)b * T + j0) * ks + (int64_t)kh * hd, ks, k_rows, hd, dv_acc, one);
}

/* attn_bwd_dq_kernel. -> dq [B, T, H, hd] (=), from dout, q, k, v, lse and dsum.
 * Per query tile (rows i0 .. i0+63 of head h), for key tiles j0 = 0, 64, .., i0:
 *   S = Q Kᵀ;  P = 2^(S·scale_log2 − lse2_i) (0 where j > i)                       (score_tile)
 *   dP = dO Vᵀ;  dS = P ⊙ (dP − D_i) · scale                                       (score_tile)
 *   dQ += dS K                        (dS through shared memory as M[j][i], accumulate_tile)
 * grid = (B·H, ceil(T/64)), blockIdx.y counted from the last query tile; block = 128 threads; thread (g, c)
 * owns rows 8g .. 8g+7: their dQ (8 x HD/16), lse and D. */
template <int HD>
static __global__ void __launch_bounds__(ATT_THREADS, att_dims<HD>::BLOCKS_DQ)
attn_bwd_dq_kernel(float *__restrict__ dq, const float *__restrict__ dout, const float *__restrict__ lse,
                   const float *__restrict__ dsum, const float *__restrict__ q, const float *__restrict__ k,
                   const float *__restrict__ v, int T, int H, int KV, int hd, float scale, float scale_log2) {
    TN_DYN_SHARED(float, smem);
    float *stage = smem, *P = smem + ATT_STAGE;
    constexpr int TD = att_dims<HD>::TD;
    const int b = (int)blockIdx.x / H, h = (int)blockIdx.x % H, kh = h / (H / KV);
    const int qt = (int)(gridDim.y - 1 - blockIdx.y), i0 = qt * ATT_TILE, q_rows = min(ATT_TILE, T - i0);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd;
    const float *qb = q + ((int64_t)b * T + i0) * qs + (int64_t)h * hd;
    const float *dob = dout + ((int64_t)b * T + i0) * qs + (int64_t)h * hd;
    const float *kb = k + (int64_t)b * T * ks + (int64_t)kh * hd;
    const float *vb = v + (int64_t)b * T * ks + (int64_t)kh * hd;
    const int g = half_warp(), c = half_lane();

    const float *lse_h = lse + ((int64_t)b * H + h) * T, *dsum_h = dsum + ((int64_t)b * H + h) * T;
    float dq_acc[ATT_TM][TD] = {};
    for (int kt = 0; kt <= qt; kt++) {
        const int j0 = kt * ATT_TILE, k_rows = min(ATT_TILE, T - j0);
        float s[ATT_TM][ATT_TN] = {};
        score_tile<HD>(s, qb, qs, q_rows, kb + (int64_t)j0 * ks, ks, k_rows, hd, stage);
        ATT_UNROLL
        for (int r = 0; r < ATT_TM; r++) {
            const int i = i0 + 8 * g + r; /* lse and D read where used: fewer live registers */
            const float lse2 = i < T ? lse_h[i] * ATT_LOG2E : INFINITY; /* +inf past T: P = 0 */
            ATT_UNROLL
            for (int e = 0; e < ATT_TN; e++)
                s[r][e] = recompute_p(s[r][e], scale_log2, lse2, kt != qt || visible(8 * g + r, 4 * c + e));
        }
        /* P waits in this thread's own entries of the tile (not in registers beside dP): the previous
         * tile's readers are past accumulate_tile's last barrier, and nobody reads the tile before dS. */
        put_tile_t(P, s);
        float dp[ATT_TM][ATT_TN] = {};
        score_tile<HD>(dp, dob, qs, q_rows, vb + (int64_t)j0 * ks, ks, k_rows, hd, stage);
        get_tile_t(s, P);
        ATT_UNROLL
        for (int r = 0; r < ATT_TM; r++) {
            const int i = i0 + 8 * g + r;
            const float drow = i < T ? dsum_h[i] : 0.0f;
            ATT_UNROLL
            for (int e = 0; e < ATT_TN; e++) s[r][e] = s[r][e] * (dp[r][e] - drow) * scale;
        }
        put_tile_t(P, s); /* M[j][i] = dS[i][j] */
        accumulate_tile<HD>(dq_acc, P, kb + (int64_t)j0 * ks, ks, k_rows, hd, stage);
    }
    float one[ATT_TM];
    ATT_UNROLL
    for (int r = 0; r < ATT_TM; r++) one[r] = 1.0f;
    store_rows<HD>(dq + ((int64_t)b * T + i0) * qs + (int64_t)h * hd, qs, q_rows, hd, dq_acc, one);
}

/* ---- host side ------------------------------------------------------------------------------------ */

/* Checks the sizes; 1 = launch, 0 = nothing to do (B or T is 0), -1 = error (message set). */
static int check_sizes(const char *fn, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    if (B < 0 || T < 0) return tn_err("%s: B = %lld, T = %lld", fn, (long long)B, (long long)T);
    if (H < 1 || KV < 1 || H % KV != 0)
        return tn_err("%s: %lld query heads are not a multiple of %lld kv heads", fn, (long long)H, (long long)KV);
    if (hd < 2 || hd > ATT_MAX_HD || hd % 2 != 0)
        return tn_err("%s: head dim %lld (supported: even, 2 .. %d)", fn, (long long)hd, ATT_MAX_HD);
    if (B == 0 || T == 0) return 0;
    if ((T + ATT_TILE - 1) / ATT_TILE > 65535)
        return tn_err("%s: T = %lld is too long (at most %d tiles of %d)", fn, (long long)T, 65535, ATT_TILE);
    if (B > INT32_MAX / H || (B * H * T + 3) / 4 > INT32_MAX) /* B·H < 2^31 and T < 2^22: no overflow */
        return tn_err("%s: B = %lld x T = %lld x H = %lld is too many rows for the grid", fn, (long long)B,
                      (long long)T, (long long)H);
    return 1;
}

static int head_class(int64_t hd) { return (int)((hd + 31) / 32 * 32); }

typedef void (*fwd_fn)(float *, float *, const float *, const float *, const float *, int, int, int, int, float);
typedef void (*dkdv_fn)(float *, float *, const float *, const float *, const float *, const float *,
                        const float *, const float *, int, int, int, int, float, float);
typedef void (*dq_fn)(float *, const float *, const float *, const float *, const float *, const float *,
                      const float *, int, int, int, int, float, float);

static fwd_fn pick_fwd(int hc) {
    return hc == 32 ? attn_fwd_kernel<32> : hc == 64 ? attn_fwd_kernel<64> : hc == 96 ? attn_fwd_kernel<96>
                                                                                       : attn_fwd_kernel<128>;
}
static dkdv_fn pick_dkdv(int hc) {
    return hc == 32   ? attn_bwd_dkdv_kernel<32>
           : hc == 64 ? attn_bwd_dkdv_kernel<64>
           : hc == 96 ? attn_bwd_dkdv_kernel<96>
                      : attn_bwd_dkdv_kernel<128>;
}
static dq_fn pick_dq(int hc) {
    return hc == 32   ? attn_bwd_dq_kernel<32>
           : hc == 64 ? attn_bwd_dq_kernel<64>
           : hc == 96 ? attn_bwd_dq_kernel<96>
                      : attn_bwd_dq_kernel<128>;
}

extern "C" int64_t tn_cuda_attention_saved_floats(int64_t B, int64_t T, int64_t H) { return B * H * T; }

extern "C" int64_t tn_cuda_attention_scratch_floats(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    (void)KV;
    (void)hd;
    return B * H * T; /* D = rowsum(dO ⊙ O) */
}

extern "C" int tn_cuda_attention(float *out, float *lse, const float *q, const float *k, const float *v, int64_t B,
                                 int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int ok = check_sizes("tn_cuda_attention", B, T, H, KV, hd);
    if (ok <= 0) return ok;
    if (!out || !lse || !q || !k || !v) return tn_err("tn_cuda_attention: NULL array");
    const float scale_log2 = 1.0f / sqrtf((float)hd) * ATT_LOG2E;
    const dim3 grid((unsigned)(B * H), (unsigned)((T + ATT_TILE - 1) / ATT_TILE));
    fwd_fn kern = pick_fwd(head_class(hd));
    TN_LAUNCH(kern, grid, ATT_THREADS, ATT_SMEM_BYTES, out, lse, q, k, v, (int)T, (int)H, (int)KV, (int)hd,
              scale_log2);
    TN_CU_LAUNCHED("tn_cuda_attention: launch");
    return 0;
}

extern "C" int tn_cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                          const float *lse, const float *q, const float *k, const float *v, int64_t B,
                                          int64_t T, int64_t H, int64_t KV, int64_t hd, float *scratch) {
    const int ok = check_sizes("tn_cuda_attention_backward", B, T, H, KV, hd);
    if (ok <= 0) return ok;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v || !scratch)
        return tn_err("tn_cuda_attention_backward: NULL array");
    const float scale = 1.0f / sqrtf((float)hd), scale_log2 = scale * ATT_LOG2E;
    const int hc = head_class(hd), n_tiles = (int)((T + ATT_TILE - 1) / ATT_TILE);
    float *dsum = scratch;

    const int64_t rows = B * T * H;
    TN_LAUNCH(attn_rowdot_kernel, (unsigned)((rows + 3) / 4), ATT_THREADS, 0, dsum, dout, out, rows, (int)T, (int)H,
              (int)hd);
    TN_CU_LAUNCHED("tn_cuda_attention_backward: launch (D = rowsum(dO * O))");

    dkdv_fn kdkv = pick_dkdv(hc);
    TN_LAUNCH(kdkv, dim3((unsigned)(B * KV), (unsigned)n_tiles), ATT_THREADS, ATT_SMEM_BYTES, dk, dv, dout, lse,
              (const float *)dsum, q, k, v, (int)T, (int)H, (int)KV, (int)hd, scale, scale_log2);
    TN_CU_LAUNCHED("tn_cuda_attention_backward: launch (dK, dV)");

    dq_fn kdq = pick_dq(hc);
    TN_LAUNCH(kdq, dim3((unsigned)(B * H), (unsigned)n_tiles), ATT_THREADS, ATT_SMEM_BYTES, dq, dout, lse,
              (const float *)dsum, q, k, v, (int)T, (int)H, (int)KV, (int)hd, scale, scale_log2);
    TN_CU_LAUNCHED("tn_cuda_attention_backward: launch (dQ)");
    return 0;
}
