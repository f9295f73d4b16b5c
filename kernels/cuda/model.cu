/* The training model's ops on the GPU, except the matrix products (blas.cu) and attention (attention.cu):
 * RMSNorm, RoPE, SwiGLU, the embedding, cross-entropy, activation fake-quant, vectors (and LoRA's dropout)
 * and reductions, AdamW.
 * Each is the CUDA side of one kernels/ops.h entry and computes what its CPU reference computes
 * (kernels/cpu/ops_cpu.c tn_op_*, quant/act.c tn_act_fake_quant, optim/adamw.c tn_adamw_apply,
 * device/ops_cpu.c masked_sum / count_nonzero_i8), in the same float expressions and order.
 *
 * Rounding. nvcc contracts a·b + c into one fma by default, which the CPU (ISO C, -ffp-contract=off) never
 * does. Where the CPU expression is plain multiplies and adds (RMSNorm's y and dx, RoPE, AdamW) it is written
 * here with __fmul_rn / __fadd_rn, which nvcc never contracts, so those match the CPU bit for bit whenever
 * the inputs of the expression do (RoPE, AdamW: always; RMSNorm: when rstd and the row dot agree, i.e.
 * unless a double sum taken in another order rounds to another float). Activation fake-quant and the
 * embedding are exact by construction; SwiGLU and cross-entropy take the CPU's own exponential (tn_expf,
 * kernels/vexp.h, shared by both devices), so SwiGLU agrees bit for bit where nvcc does not contract its
 * polynomial (always in the emulator) and cross-entropy to the order of its sums.
 *
 * Determinism: no float atomics. Every reduction is a fixed tree whose shape depends only on the sizes
 * (grid-stride partial sums per thread, warp shuffles, the per-warp sums by warp 0; the RMSNorm dw and the
 * host-valued sums in two stages through tn_cuda_scratch), so a run repeats bit for bit on one GPU.
 *
 * Mappings: elementwise ops grid-stride over float4 when every array is 16-byte aligned (then the < 4
 * element tail scalar); per-row ops one block per row (rows past the grid loop), threads striding the row
 * so that a warp reads 32 consecutive floats. No op waits for the device except those that return a host
 * value (sumsq, masked_sum, count_nonzero_i8). */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/bf16.h"
#include "kernels/dropout_math.h"
#include "kernels/vexp.h"

#include <cfloat>


#define EW_THREADS 256         /* elementwise kernels */
#define EW_MAX_BLOCKS 4096     /* more elements: grid-stride */
#define ROW_MAX_THREADS 256    /* per-row kernels: at most this many threads per row */
#define CE_MAX_THREADS 512     /* cross-entropy rows (up to 150k logits) */
#define MAX_ROW_BLOCKS (1 << 20) /* per-row kernels: rows past this loop */
#define RED_THREADS 256        /* two-stage reductions to the host */
#define RED_MAX_BLOCKS 1024
#define RED_ITEMS_PER_BLOCK 2048 /* a block of the first stage takes at least this many elements */
#define DW_MIN_ROWS 32         /* RMSNorm dw: rows per chunk of the first stage, at least */
#define DW_MAX_CHUNKS 1024
#define DW_MAX_PARTIALS (1 << 21) /* chunks x D doubles of scratch, at most (16 MiB) unless D is larger */

/* ---- small helpers -------------------------------------------------------------------------------- */

static __device__ __forceinline__ int64_t global_thread(void) {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ int64_t grid_threads(void) { return (int64_t)gridDim.x * blockDim.x; }

static __device__ __forceinline__ float4 load4(const float *p, int64_t i) {
    return reinterpret_cast<const float4 *>(p)[i];
}
static __device__ __forceinline__ void store4(float *p, int64_t i, float4 v) { reinterpret_cast<float4 *>(p)[i] = v; }

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Blocks for a grid-stride loop over `items` with `threads` per block. */
static unsigned stride_blocks(int64_t items, int threads, int64_t max_blocks) {
    int64_t b = (items + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > max_blocks ? max_blocks : b);
}

/* Threads for one block per row of `cols`: cols rounded up to a warp, within [32, max_threads]. */
static int row_threads(int64_t cols, int max_threads) {
    int64_t t = (cols + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > max_threads ? max_threads : t);
}

/* Blocks of an elementwise kernel over n elements (n / 4 float4 and the tail when vec). */
static unsigned ew_blocks(int64_t n, int vec) {
    return stride_blocks(vec ? (n + 3) / 4 : n, EW_THREADS, EW_MAX_BLOCKS);
}

static unsigned row_blocks(int64_t rows) { return (unsigned)(rows < MAX_ROW_BLOCKS ? rows : MAX_ROW_BLOCKS); }

/* ---- RMSNorm ---------------------------------------------------------------------------------------- */

/* rmsnorm_kernel. x, y [N, D], w [D], rstd [N].
 * Per row: ss = Σ x² in double, r = (float)(1 / sqrt(ss / D + eps)), y = (x·r)·w (tn_op_rmsnorm).
 * One block (row_threads(D) threads) per row, rows past gridDim.x loop; thread t takes d = t, t + blockDim,
 * ...; ss by block_reduce, so every thread has r. */
static __global__ void __launch_bounds__(ROW_MAX_THREADS)
rmsnorm_kernel(float *__restrict__ y, float *__restrict__ rstd, const float *__restrict__ x,
               const float *__restrict__ w, int64_t N, int64_t D, float eps) {
    __shared__ double red[32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float *xr = x + n * D;
        float *yr = y + n * D;
        double ss = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) ss += (double)xr[d] * xr[d];
        ss = block_reduce(ss, 0.0, op_add(), red);
        const float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
        if (threadIdx.x == 0) rstd[n] = r;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) yr[d] = __fmul_rn(__fmul_rn(xr[d], r), w[d]);
    }
}

/* rmsnorm_dx_kernel. dy, x, dx [N, D], w [D], rstd [N].
 * Per row (tn_op_rmsnorm_backward): dot = Σ dy·w·x in double, m = (float)(dot / D)·r·r,
 * dx += r·(dy·w − x·m) (accumulated). Mapping as rmsnorm_kernel. */
static __global__ void __launch_bounds__(ROW_MAX_THREADS)
rmsnorm_dx_kernel(float *__restrict__ dx, const float *__restrict__ dy, const float *__restrict__ x,
                  const float *__restrict__ w, const float *__restrict__ rstd, int64_t N, int64_t D) {
    __shared__ double red[32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float *xr = x + n * D, *dyr = dy + n * D;
        float *dxr = dx + n * D;
        const float r = rstd[n];
        double dot = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) dot += (double)dyr[d] * w[d] * xr[d];
        dot = block_reduce(dot, 0.0, op_add(), red);
        const float m = __fmul_rn(__fmul_rn((float)(dot / (double)D), r), r);
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            const float t = sub_rn(__fmul_rn(dyr[d], w[d]), __fmul_rn(xr[d], m));
            dxr[d] = __fadd_rn(dxr[d], __fmul_rn(r, t));
        }
    }
}

/* rmsnorm_dw_partial_kernel, first stage of dw. dy, x [N, D], rstd [N], partial [P, D] (double).
 * partial[p, d] = Σ dy[n, d]·x[n, d]·rstd[n] in double over the rows n of chunk p, in increasing n; chunk
 * p = rows [p·rows_per, min(N, (p + 1)·rows_per)).
 * grid (ceil(D / blockDim), P): thread per column d, so a warp reads 32 consecutive floats of each row. */
static __global__ void __launch_bounds__(ROW_MAX_THREADS)
rmsnorm_dw_partial_kernel(double *__restrict__ partial, const float *__restrict__ dy, const float *__restrict__ x,
                          const float *__restrict__ rstd, int64_t N, int64_t D, int64_t rows_per) {
    const int64_t d = global_thread(), p = blockIdx.y;
    if (d >= D) return; /* no barrier below */
    const int64_t n0 = p * rows_per, n1 = n0 + rows_per < N ? n0 + rows_per : N;
    double s = 0;
    for (int64_t n = n0; n < n1; n++) s += (double)dy[n * D + d] * x[n * D + d] * rstd[n];
    partial[p * D + d] = s;
}

/* rmsnorm_dw_final_kernel. dw [D] += (float)Σ_p partial[p, d], p = 0 .. P-1 in order. Grid-stride over d. */
static __global__ void __launch_bounds__(EW_THREADS)
rmsnorm_dw_final_kernel(float *__restrict__ dw, const double *__restrict__ partial, int64_t P, int64_t D) {
    for (int64_t d = global_thread(); d < D; d += grid_threads()) {
        double s = 0;
        for (int64_t p = 0; p < P; p++) s += partial[p * D + d];
        dw[d] += (float)s;
    }
}

extern "C" int tn_cuda_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D,
                               float eps) {
    if (N < 0 || D < 0) return tn_err("tn_cuda_rmsnorm: N = %lld, D = %lld (must be >= 0)", (long long)N, (long long)D);
    if (N == 0) return 0;
    TN_LAUNCH(rmsnorm_kernel, row_blocks(N), row_threads(D, ROW_MAX_THREADS), 0, y, rstd, x, w, N, D, eps);
    TN_CU_LAUNCHED("tn_cuda_rmsnorm: launch");
    return 0;
}

/* Rows per chunk of the dw first stage: a function of N and D only (so the sum's tree is fixed), at least
 * DW_MIN_ROWS, at most DW_MAX_CHUNKS chunks and about DW_MAX_PARTIALS doubles of scratch. */
static int64_t dw_rows_per_chunk(int64_t N, int64_t D) {
    int64_t max_chunks = DW_MAX_PARTIALS / (D > 0 ? D : 1);
    if (max_chunks > DW_MAX_CHUNKS) max_chunks = DW_MAX_CHUNKS;
    if (max_chunks < 1) max_chunks = 1;
    int64_t rows = (N + max_chunks - 1) / max_chunks;
    return rows < DW_MIN_ROWS ? DW_MIN_ROWS : rows;
}

extern "C" int tn_cuda_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                                        const float *rstd, int64_t N, int64_t D) {
    if (N < 0 || D < 0)
        return tn_err("tn_cuda_rmsnorm_backward: N = %lld, D = %lld (must be >= 0)", (long long)N, (long long)D);
    if (N == 0 || D == 0) return 0;
    TN_LAUNCH(rmsnorm_dx_kernel, row_blocks(N), row_threads(D, ROW_MAX_THREADS), 0, dx, dy, x, w, rstd, N, D);
    TN_CU_LAUNCHED("tn_cuda_rmsnorm_backward: dx launch");

    const int64_t rows_per = dw_rows_per_chunk(N, D), P = (N + rows_per - 1) / rows_per;
    const int threads = row_threads(D, ROW_MAX_THREADS);
    const int64_t gx = (D + threads - 1) / threads;
    if (gx > INT32_MAX) return tn_err("tn_cuda_rmsnorm_backward: D = %lld is too large", (long long)D);
    double *partial = (double *)tn_cuda_scratch((size_t)(P * D) * sizeof(double));
    if (!partial) return -1;
    TN_LAUNCH(rmsnorm_dw_partial_kernel, dim3((unsigned)gx, (unsigned)P), threads, 0, partial, dy, x, rstd, N, D,
              rows_per);
    TN_CU_LAUNCHED("tn_cuda_rmsnorm_backward: dw launch");
    TN_LAUNCH(rmsnorm_dw_final_kernel, stride_blocks(D, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, dw,
              (const double *)partial, P, D);
    TN_CU_LAUNCHED("tn_cuda_rmsnorm_backward: dw sum launch");
    return 0;
}

/* ---- RoPE ------------------------------------------------------------------------------------------- */

#define ROPE_ROWS 8 /* head vectors per block */

/* rope_kernel. x [B, T, H, hd] in place, as rows = B·T·H head vectors of hd; cos_t, sin_t [T, hd/2].
 * For i < hd/2, with (a, b) = (v[i], v[i + hd/2]), s = ±sin (− for the inverse):
 * v[i] = a·c − b·s, v[i + hd/2] = b·c + a·s (tn_op_rope; t = (row / H) mod T).
 * block (32, ROPE_ROWS): threadIdx.y picks a row (rows past the grid loop), threadIdx.x the pairs
 * i = tx, tx + 32, ... (a warp reads 32 consecutive floats of each half). */
static __global__ void __launch_bounds__(32 * ROPE_ROWS)
rope_kernel(float *__restrict__ x, const float *__restrict__ cos_t, const float *__restrict__ sin_t, int64_t rows,
            int64_t T, int64_t H, int64_t hd, float sgn) {
    const int64_t half = hd / 2;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows; r += (int64_t)gridDim.x * blockDim.y) {
        const int64_t t = (r / H) % T;
        float *v = x + r * hd;
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
            const float a = v[i], b = v[i + half], ci = c[i], si = sgn * s[i];
            v[i] = sub_rn(__fmul_rn(a, ci), __fmul_rn(b, si));
            v[i + half] = __fadd_rn(__fmul_rn(b, ci), __fmul_rn(a, si));
        }
    }
}

extern "C" int tn_cuda_rope(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t T, int64_t n_heads,
                            int64_t hd, int inverse) {
    if (B < 0 || T < 0 || n_heads < 0 || hd < 0)
        return tn_err("tn_cuda_rope: B = %lld, T = %lld, n_heads = %lld, hd = %lld (must be >= 0)", (long long)B,
                      (long long)T, (long long)n_heads, (long long)hd);
    const int64_t rows = B * T * n_heads;
    if (rows == 0 || hd < 2) return 0;
    TN_LAUNCH(rope_kernel, stride_blocks(rows, ROPE_ROWS, MAX_ROW_BLOCKS), dim3(32, ROPE_ROWS), 0, x, cos_t, sin_t,
              rows, T, n_heads, hd, inverse ? -1.0f : 1.0f);
    TN_CU_LAUNCHED("tn_cuda_rope: launch");
    return 0;
}

/* ---- SwiGLU ----------------------------------------------------------------------------------------- */

/* a = silu(g)·u = (g·σ(g))·u (tn_op_swiglu) */
static __device__ __forceinline__ float swiglu1(float g, float u) {
    const float s = 1.0f / (1.0f + tn_expf(-g));
    return g * s * u;
}

/* du = da·silu(g), dg = da·u·σ(g)·(1 + g·(1 − σ(g))) (tn_op_swiglu_backward) */
static __device__ __forceinline__ void swiglu_grad1(float da, float g, float u, float &dg, float &du) {
    const float s = 1.0f / (1.0f + tn_expf(-g));
    du = da * (g * s);
    dg = da * u * s * (1.0f + g * (1.0f - s));
}

/* swiglu_kernel. a, g, u [n]. Grid-stride; vec: float4 over the first n/4·4 elements, then the tail. */
static __global__ void __launch_bounds__(EW_THREADS)
swiglu_kernel(float *__restrict__ a, const float *__restrict__ g, const float *__restrict__ u, int64_t n, int vec) {
    const int64_t n4 = vec ? n / 4 : 0;
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        const float4 gv = load4(g, i), uv = load4(u, i);
        store4(a, i, make_float4(swiglu1(gv.x, uv.x), swiglu1(gv.y, uv.y), swiglu1(gv.z, uv.z), swiglu1(gv.w, uv.w)));
    }
    for (int64_t i = 4 * n4 + global_thread(); i < n; i += grid_threads()) a[i] = swiglu1(g[i], u[i]);
}

/* swiglu_backward_kernel. dg, du, da, g, u [n]. Mapping as swiglu_kernel. */
static __global__ void __launch_bounds__(EW_THREADS)
swiglu_backward_kernel(float *__restrict__ dg, float *__restrict__ du, const float *__restrict__ da,
                       const float *__restrict__ g, const float *__restrict__ u, int64_t n, int vec) {
    const int64_t n4 = vec ? n / 4 : 0;
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        const float4 dv = load4(da, i), gv = load4(g, i), uv = load4(u, i);
        float4 dgv, duv;
        swiglu_grad1(dv.x, gv.x, uv.x, dgv.x, duv.x);
        swiglu_grad1(dv.y, gv.y, uv.y, dgv.y, duv.y);
        swiglu_grad1(dv.z, gv.z, uv.z, dgv.z, duv.z);
        swiglu_grad1(dv.w, gv.w, uv.w, dgv.w, duv.w);
        store4(dg, i, dgv);
        store4(du, i, duv);
    }
    for (int64_t i = 4 * n4 + global_thread(); i < n; i += grid_threads())
        swiglu_grad1(da[i], g[i], u[i], dg[i], du[i]);
}

extern "C" int tn_cuda_swiglu(float *a, const float *g, const float *u, int64_t n) {
    if (n < 0) return tn_err("tn_cuda_swiglu: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    const int vec = aligned16(a) && aligned16(g) && aligned16(u);
    TN_LAUNCH(swiglu_kernel, ew_blocks(n, vec), EW_THREADS, 0, a, g, u, n, vec);
    TN_CU_LAUNCHED("tn_cuda_swiglu: launch");
    return 0;
}

extern "C" int tn_cuda_swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u,
                                       int64_t n) {
    if (n < 0) return tn_err("tn_cuda_swiglu_backward: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    const int vec = aligned16(dg) && aligned16(du) && aligned16(da) && aligned16(g) && aligned16(u);
    TN_LAUNCH(swiglu_backward_kernel, ew_blocks(n, vec), EW_THREADS, 0, dg, du, da, g, u, n, vec);
    TN_CU_LAUNCHED("tn_cuda_swiglu_backward: launch");
    return 0;
}

/* ---- embedding ------------------------------------------------------------------------------------- */

/* embed_kernel. x [N, D] = E[tokens[n], :] (tn_op_embed). One block per row (rows past the grid loop),
 * threads over the columns; vec (D % 4 == 0, both arrays 16-byte aligned): float4 copies. */
static __global__ void __launch_bounds__(ROW_MAX_THREADS)
embed_kernel(float *__restrict__ x, const float *__restrict__ E, const int32_t *__restrict__ tokens, int64_t N,
             int64_t D, int vec) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float *er = E + (int64_t)tokens[n] * D;
        float *xr = x + n * D;
        if (vec)
            for (int64_t j = threadIdx.x; j < D / 4; j += blockDim.x) store4(xr, j, load4(er, j));
        else
            for (int64_t j = threadIdx.x; j < D; j += blockDim.x) xr[j] = er[j];
    }
}

/* embed_backward_kernel. dE [V, D], dx [N, D]; group u = token id[u] at positions pos[start[u] ..
 * start[u+1]) in increasing order. For each (group, column): acc = dE[id, d]; acc += dx[pos, d] for the
 * positions in order; dE[id, d] = acc: the CPU's serial loop over n (tn_op_embed_backward), bit for bit,
 * with no two threads writing one element. grid (groups, column tiles), both looping past the grid;
 * threads over columns (coalesced rows of dx). */
static __global__ void __launch_bounds__(ROW_MAX_THREADS)
embed_backward_kernel(float *__restrict__ dE, const float *__restrict__ dx, const int32_t *__restrict__ id,
                      const int32_t *__restrict__ pos, const int32_t *__restrict__ start, int64_t n_groups,
                      int64_t D) {
    for (int64_t u = blockIdx.x; u < n_groups; u += gridDim.x) {
        float *row = dE + (int64_t)id[u] * D;
        const int64_t k0 = start[u], k1 = start[u + 1];
        for (int64_t d = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; d < D; d += (int64_t)gridDim.y * blockDim.x) {
            float acc = row[d];
            for (int64_t k = k0; k < k1; k++) acc += dx[(int64_t)pos[k] * D + d];
            row[d] = acc;
        }
    }
}

extern "C" int tn_cuda_embed(float *x, const float *E, const int32_t *tokens, int64_t N, int64_t D) {
    if (N < 0 || D < 0) return tn_err("tn_cuda_embed: N = %lld, D = %lld (must be >= 0)", (long long)N, (long long)D);
    if (N == 0 || D == 0) return 0;
    const int vec = D % 4 == 0 && aligned16(x) && aligned16(E);
    TN_LAUNCH(embed_kernel, row_blocks(N), row_threads(vec ? D / 4 : D, ROW_MAX_THREADS), 0, x, E, tokens, N, D, vec);
    TN_CU_LAUNCHED("tn_cuda_embed: launch");
    return 0;
}

extern "C" int tn_cuda_embed_backward(float *dE, const float *dx, const tn_token_groups *groups, int64_t N,
                                      int64_t D) {
    if (N < 0 || D < 0)
        return tn_err("tn_cuda_embed_backward: N = %lld, D = %lld (must be >= 0)", (long long)N, (long long)D);
    if (N == 0 || D == 0) return 0;
    if (!groups) return tn_err("tn_cuda_embed_backward: no token groups");
    if (groups->n_groups < 0 || groups->n_groups > N)
        return tn_err("tn_cuda_embed_backward: %lld token groups for N = %lld tokens", (long long)groups->n_groups,
                      (long long)N);
    if (groups->n_groups == 0) return 0;
    const int threads = row_threads(D, ROW_MAX_THREADS);
    const int64_t tiles = (D + threads - 1) / threads;
    dim3 grid(row_blocks(groups->n_groups), (unsigned)(tiles < 65535 ? tiles : 65535));
    TN_LAUNCH(embed_backward_kernel, grid, threads, 0, dE, dx, groups->id, groups->pos, groups->start,
              groups->n_groups, D);
    TN_CU_LAUNCHED("tn_cuda_embed_backward: launch");
    return 0;
}

/* ---- cross-entropy ---------------------------------------------------------------------------------- */

/* Row statistics of logits row[0, V) for the whole block, in the CPU's two passes (tn_op_cross_entropy):
 * mx = max_j row[j], then returns Σ_j exp(row[j] − mx) in double, each term tn_expf (the CPU's exp), the
 * sum a fixed tree (threads take j = tid, tid + blockDim, ...; then the block reduction). */
static __device__ double row_sumexp(const float *row, int64_t V, float &mx, float *redf, double *redd) {
    float m = -FLT_MAX;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = row[j] > m ? row[j] : m;
    mx = block_reduce(m, -FLT_MAX, op_max(), redf);
    double s = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += (double)tn_expf(row[j] - mx);
    return block_reduce(s, 0.0, op_add(), redd);
}

/* cross_entropy_kernel. logits [N, V], targets [N], nll [N].
 * nll[n] = (float)(mx + log Σ_j exp(x_j − mx) − x[target]) in double (tn_op_cross_entropy); a target
 * outside [0, V) gives NaN (the CPU would read out of the row). One block per row (rows past the grid loop),
 * row_sumexp over the row. */
static __global__ void __launch_bounds__(CE_MAX_THREADS)
cross_entropy_kernel(float *__restrict__ nll, const float *__restrict__ logits, const int32_t *__restrict__ targets,
                     int64_t N, int64_t V) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float *row = logits + n * V;
        float mx;
        const double sum = row_sumexp(row, V, mx, redf, redd);
        if (threadIdx.x == 0) {
            const int32_t t = targets[n];
            nll[n] = t >= 0 && t < V ? (float)((double)mx + log(sum) - (double)row[t]) : NAN;
        }
    }
}

/* cross_entropy_backward_kernel. logits [N, V] in place, targets [N], mask [N] or NULL (all).
 * Rows with mask[n] == 0 become 0. Others (tn_op_cross_entropy_backward): k = g / (float)Σ exp(x − mx),
 * x_j ← exp(x_j − mx)·k, then x[target] −= g (skipped for a target outside [0, V)). One block per row
 * (rows past the grid loop): row_sumexp reads the row (its barriers end every read before the writes),
 * then the block writes it. */
static __global__ void __launch_bounds__(CE_MAX_THREADS)
cross_entropy_backward_kernel(float *__restrict__ logits, const int32_t *__restrict__ targets,
                              const uint8_t *__restrict__ mask, int64_t N, int64_t V, float g) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        float *row = logits + n * V;
        if (mask && !mask[n]) { /* the same n for the whole block: no thread meets the barriers below */
            for (int64_t j = threadIdx.x; j < V; j += blockDim.x) row[j] = 0.0f;
            continue;
        }
        float mx;
        const float k = g / (float)row_sumexp(row, V, mx, redf, redd);
        const int64_t t = targets[n];
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            float p = tn_expf(row[j] - mx) * k;
            if (j == t) p -= g;
            row[j] = p;
        }
    }
}

/* Threads per cross-entropy row: about 16 logits per thread, 32 .. CE_MAX_THREADS. */
static int ce_threads(int64_t V) { return row_threads((V + 15) / 16, CE_MAX_THREADS); }

extern "C" int tn_cuda_cross_entropy(float *nll, const float *logits, const int32_t *targets, int64_t N, int64_t V) {
    if (N < 0 || V < 1)
        return tn_err("tn_cuda_cross_entropy: N = %lld, V = %lld (need N >= 0, V >= 1)", (long long)N, (long long)V);
    if (N == 0) return 0;
    TN_LAUNCH(cross_entropy_kernel, row_blocks(N), ce_threads(V), 0, nll, logits, targets, N, V);
    TN_CU_LAUNCHED("tn_cuda_cross_entropy: launch");
    return 0;
}

extern "C" int tn_cuda_cross_entropy_backward(float *logits, const int32_t *targets, const uint8_t *mask, int64_t N,
                                              int64_t V, float g) {
    if (N < 0 || V < 1)
        return tn_err("tn_cuda_cross_entropy_backward: N = %lld, V = %lld (need N >= 0, V >= 1)", (long long)N,
                      (long long)V);
    if (N == 0) return 0;
    TN_LAUNCH(cross_entropy_backward_kernel, row_blocks(N), ce_threads(V), 0, logits, targets, mask, N, V, g);
    TN_CU_LAUNCHED("tn_cuda_cross_entropy_backward: launch");
    return 0;
}

/* ---- activation fake quantization ------------------------------------------------------------------- */

/* q = clamp(rint(x·k), ±127) exactly as quant/act.c quant1 (NaN -> 127) */
static __device__ __forceinline__ float act_quant1(float x, float k) {
    float v = rintf(x * k);
    v = v < 127.0f ? v : 127.0f;
    v = v > -127.0f ? v : -127.0f;
    return v;
}

/* act_fake_quant_kernel. x, out [rows, cols] (out may equal x).
 * Per row (tn_act_fake_quant): m = max|x| (NaN never wins); m = 0: out = 0; else k = 127 / m,
 * out = clamp(rint(x·k), ±127) / k. Single IEEE operations and rintf: bit-exact with the CPU.
 * One block per row (rows past the grid loop); the max by block_reduce, whose barriers end every read
 * of the row before the first write (in place). */
static __global__ void __launch_bounds__(ROW_MAX_THREADS)
act_fake_quant_kernel(const float *x, int64_t rows, int64_t cols, float *out) {
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * cols;
        float *o = out + r * cols;
        float m = 0.0f;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = op_max()(m, fabsf(xr[j]));
        m = block_reduce(m, 0.0f, op_max(), red);
        if (!(m > 0.0f)) {
            for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) o[j] = 0.0f;
            continue;
        }
        const float k = 127.0f / m;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) o[j] = act_quant1(xr[j], k) / k;
    }
}

extern "C" int tn_cuda_act_fake_quant(const float *x, int64_t rows, int64_t cols, float *out) {
    if (rows < 0 || cols < 0)
        return tn_err("tn_cuda_act_fake_quant: rows = %lld, cols = %lld (must be >= 0)", (long long)rows,
                      (long long)cols);
    if (rows == 0 || cols == 0) return 0;
    TN_LAUNCH(act_fake_quant_kernel, row_blocks(rows), row_threads(cols, ROW_MAX_THREADS), 0, x, rows, cols, out);
    TN_CU_LAUNCHED("tn_cuda_act_fake_quant: launch");
    return 0;
}

/* ---- vectors ---------------------------------------------------------------------------------------- */

/* add_kernel. y [n] += x [n]. Grid-stride, float4 when vec (then the tail). */
static __global__ void __launch_bounds__(EW_THREADS)
add_kernel(float *__restrict__ y, const float *__restrict__ x, int64_t n, int vec) {
    const int64_t n4 = vec ? n / 4 : 0;
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        float4 a = load4(y, i);
        const float4 b = load4(x, i);
        a.x += b.x;
        a.y += b.y;
        a.z += b.z;
        a.w += b.w;
        store4(y, i, a);
    }
    for (int64_t i = 4 * n4 + global_thread(); i < n; i += grid_threads()) y[i] += x[i];
}

/* scale_kernel. x [n] *= s. Mapping as add_kernel. */
static __global__ void __launch_bounds__(EW_THREADS) scale_kernel(float *__restrict__ x, float s, int64_t n, int vec) {
    const int64_t n4 = vec ? n / 4 : 0;
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        float4 a = load4(x, i);
        a.x *= s;
        a.y *= s;
        a.z *= s;
        a.w *= s;
        store4(x, i, a);
    }
    for (int64_t i = 4 * n4 + global_thread(); i < n; i += grid_threads()) x[i] *= s;
}

/* dropout_kernel. out [n] = drop(x [n]) (kernels/dropout_math.h): element i kept, times keep = (float)(1/(1−p)),
 * when mix64(key + i·φ) ≥ thr, else 0. thr and keep come from the host (the same integer and float as the
 * CPU's), so the one product per element is the CPU's bit for bit. Grid-stride, consecutive threads on
 * consecutive elements; out may equal x (each element is read, then written, by one thread). */
static __global__ void __launch_bounds__(EW_THREADS)
dropout_kernel(float *out, const float *x, int64_t n, uint64_t key, uint64_t thr, float keep) {
    for (int64_t i = global_thread(); i < n; i += grid_threads())
        out[i] = tn_dropout_keeps(key, (uint64_t)i, thr) ? x[i] * keep : 0.0f;
}

/* bias_add_kernel. y [N, C] += b [C] on every row; grid-stride over the N·C elements. */
static __global__ void __launch_bounds__(EW_THREADS)
    bias_add_kernel(float *__restrict__ y, const float *__restrict__ b, int64_t N, int64_t C) {
    for (int64_t i = global_thread(); i < N * C; i += grid_threads()) y[i] += b[i % C];
}

/* bias_grad_kernel. db [C] += Σ_n dy [N, C]: one thread per column, the rows in order (so the same float
 * additions as tn_op_bias_grad); a warp reads 32 adjacent columns of a row, which coalesces. */
static __global__ void __launch_bounds__(EW_THREADS)
    bias_grad_kernel(float *__restrict__ db, const float *__restrict__ dy, int64_t N, int64_t C) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int64_t n = 0; n < N; n++) acc += dy[n * C + c];
    db[c] += acc;
}

extern "C" int tn_cuda_bias_add(float *y, const float *b, int64_t N, int64_t C) {
    if (N < 0 || C < 0) return tn_err("tn_cuda_bias_add: N = %lld, C = %lld", (long long)N, (long long)C);
    if (N == 0 || C == 0) return 0;
    TN_LAUNCH(bias_add_kernel, ew_blocks(N * C, 0), EW_THREADS, 0, y, b, N, C);
    TN_CU_LAUNCHED("tn_cuda_bias_add: launch");
    return 0;
}

extern "C" int tn_cuda_bias_grad(float *db, const float *dy, int64_t N, int64_t C) {
    if (N < 0 || C < 0 || C > ((int64_t)1 << 30))
        return tn_err("tn_cuda_bias_grad: N = %lld, C = %lld", (long long)N, (long long)C);
    if (N == 0 || C == 0) return 0;
    TN_LAUNCH(bias_grad_kernel, (unsigned)((C + EW_THREADS - 1) / EW_THREADS), EW_THREADS, 0, db, dy, N, C);
    TN_CU_LAUNCHED("tn_cuda_bias_grad: launch");
    return 0;
}

extern "C" int tn_cuda_add(float *y, const float *x, int64_t n) {
    if (n < 0) return tn_err("tn_cuda_add: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    const int vec = aligned16(y) && aligned16(x);
    TN_LAUNCH(add_kernel, ew_blocks(n, vec), EW_THREADS, 0, y, x, n, vec);
    TN_CU_LAUNCHED("tn_cuda_add: launch");
    return 0;
}

extern "C" int tn_cuda_dropout(float *out, const float *x, int64_t n, uint64_t key, double p) {
    if (n < 0 || !(p >= 0 && p < 1))
        return tn_err("tn_cuda_dropout: n = %lld, p = %g (p must be in [0, 1))", (long long)n, p);
    if (n == 0) return 0;
    TN_LAUNCH(dropout_kernel, ew_blocks(n, 0), EW_THREADS, 0, out, x, n, key, tn_dropout_threshold(p),
              tn_dropout_keep_scale(p));
    TN_CU_LAUNCHED("tn_cuda_dropout: launch");
    return 0;
}

extern "C" int tn_cuda_scale(float *x, float s, int64_t n) {
    if (n < 0) return tn_err("tn_cuda_scale: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    const int vec = aligned16(x);
    TN_LAUNCH(scale_kernel, ew_blocks(n, vec), EW_THREADS, 0, x, s, n, vec);
    TN_CU_LAUNCHED("tn_cuda_scale: launch");
    return 0;
}

/* ---- reductions to the host ------------------------------------------------------------------------- */

/* The summed term of each reduction, element i. */
namespace {
struct sumsq_term {
    const float *x;
    __device__ __forceinline__ double operator()(int64_t i) const {
        const double v = x[i];
        return v * v;
    }
};
struct bf16_sumsq_term {
    const uint16_t *x;
    __device__ __forceinline__ double operator()(int64_t i) const {
        const double v = tn_bf16_widen(x[i]);
        return v * v;
    }
};
struct masked_term {
    const float *x;
    const uint8_t *mask; /* NULL: all */
    __device__ __forceinline__ double operator()(int64_t i) const { return !mask || mask[i] ? (double)x[i] : 0.0; }
};
struct nonzero_term {
    const int8_t *v;
    __device__ __forceinline__ long long operator()(int64_t i) const { return v[i] != 0; }
};
} /* namespace */

/* partial_sum_kernel, first stage. partial[b] = Σ term(i) over the elements of block b: thread t of the
 * grid takes i = t, t + S, t + 2S, ... (S = all threads; four at a time, for loads in flight), then
 * block_reduce. The tree depends only on n and the grid (red_blocks(n)), so the sum repeats exactly. */
template <class T, class Term>
static __global__ void __launch_bounds__(RED_THREADS) partial_sum_kernel(Term term, int64_t n, T *partial) {
    __shared__ T red[32];
    const int64_t S = grid_threads();
    int64_t i = global_thread();
    T s = 0;
    for (; i + 3 * S < n; i += 4 * S) s += (term(i) + term(i + S)) + (term(i + 2 * S) + term(i + 3 * S));
    for (; i < n; i += S) s += term(i);
    s = block_reduce(s, T(0), op_add(), red);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* final_sum_kernel, second stage: one block; *out = Σ_p partial[p] (fixed tree as above). */
template <class T>
static __global__ void __launch_bounds__(RED_THREADS) final_sum_kernel(const T *partial, int64_t P, T *out) {
    __shared__ T red[32];
    T s = 0;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) s += partial[p];
    s = block_reduce(s, T(0), op_add(), red);
    if (threadIdx.x == 0) *out = s;
}

/* First-stage blocks for n elements: a function of n only. */
static int64_t red_blocks(int64_t n) {
    int64_t b = (n + RED_ITEMS_PER_BLOCK - 1) / RED_ITEMS_PER_BLOCK;
    return b < 1 ? 1 : b > RED_MAX_BLOCKS ? RED_MAX_BLOCKS : b;
}

/* *host_out = Σ_i term(i), i < n, through the scratch buffer; waits for the copy. */
template <class T, class Term> static int sum_to_host(Term term, int64_t n, T *host_out, const char *what) {
    if (n <= 0) {
        *host_out = 0;
        return 0;
    }
    const int64_t P = red_blocks(n);
    T *partial = (T *)tn_cuda_scratch((size_t)(P + 1) * sizeof(T));
    if (!partial) return -1;
    auto stage1 = partial_sum_kernel<T, Term>;
    TN_LAUNCH(stage1, (unsigned)P, RED_THREADS, 0, term, n, partial);
    TN_CU_LAUNCHED(what);
    auto stage2 = final_sum_kernel<T>;
    TN_LAUNCH(stage2, 1, RED_THREADS, 0, (const T *)partial, P, partial + P);
    TN_CU_LAUNCHED(what);
    TN_CU(cudaMemcpy(host_out, partial + P, sizeof(T), cudaMemcpyDeviceToHost), what);
    return 0;
}

extern "C" int tn_cuda_sumsq(const float *x, int64_t n, double *host_out) {
    if (n < 0) return tn_err("tn_cuda_sumsq: n = %lld (must be >= 0)", (long long)n);
    return sum_to_host(sumsq_term{x}, n, host_out, "tn_cuda_sumsq");
}

extern "C" int tn_cuda_bf16_sumsq(const uint16_t *x, int64_t n, double *host_out) {
    if (n < 0) return tn_err("tn_cuda_bf16_sumsq: n = %lld (must be >= 0)", (long long)n);
    return sum_to_host(bf16_sumsq_term{x}, n, host_out, "tn_cuda_bf16_sumsq");
}

extern "C" int tn_cuda_masked_sum(const float *x, const uint8_t *mask, int64_t n, double *host_out) {
    if (n < 0) return tn_err("tn_cuda_masked_sum: n = %lld (must be >= 0)", (long long)n);
    return sum_to_host(masked_term{x, mask}, n, host_out, "tn_cuda_masked_sum");
}

extern "C" int tn_cuda_count_nonzero_i8(const int8_t *v, int64_t n, int64_t *host_out) {
    if (n < 0) return tn_err("tn_cuda_count_nonzero_i8: n = %lld (must be >= 0)", (long long)n);
    long long c = 0;
    if (sum_to_host(nonzero_term{v}, n, &c, "tn_cuda_count_nonzero_i8") != 0) return -1;
    *host_out = (int64_t)c;
    return 0;
}

/* ---- AdamW ------------------------------------------------------------------------------------------ */

/* One element of tn_adamw_apply, in its float order without contraction:
 * m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g·g; p −= lr·((m·c1) / (sqrt(v·c2) + eps) + wd·p). */
static __device__ __forceinline__ void adamw1(float &p, float g, float &m, float &v, const tn_adamw_step &h) {
    const float mi = __fadd_rn(__fmul_rn(h.beta1, m), __fmul_rn(1.0f - h.beta1, g));
    const float vi = __fadd_rn(__fmul_rn(h.beta2, v), __fmul_rn(__fmul_rn(1.0f - h.beta2, g), g));
    m = mi;
    v = vi;
    const float step = __fadd_rn(__fmul_rn(mi, h.c1) / (sqrtf(__fmul_rn(vi, h.c2)) + h.eps), __fmul_rn(h.wd, p));
    p = sub_rn(p, __fmul_rn(h.lr, step));
}

/* adamw_kernel. p, g, m, v [n]; h by value. Grid-stride, float4 when vec (then the tail). */
static __global__ void __launch_bounds__(EW_THREADS)
adamw_kernel(float *__restrict__ p, const float *__restrict__ g, float *__restrict__ m, float *__restrict__ v,
             int64_t n, tn_adamw_step h, int vec) {
    const int64_t n4 = vec ? n / 4 : 0;
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        float4 pv = load4(p, i), mv = load4(m, i), vv = load4(v, i);
        const float4 gv = load4(g, i);
        adamw1(pv.x, gv.x, mv.x, vv.x, h);
        adamw1(pv.y, gv.y, mv.y, vv.y, h);
        adamw1(pv.z, gv.z, mv.z, vv.z, h);
        adamw1(pv.w, gv.w, mv.w, vv.w, h);
        store4(p, i, pv);
        store4(m, i, mv);
        store4(v, i, vv);
    }
    for (int64_t i = 4 * n4 + global_thread(); i < n; i += grid_threads()) adamw1(p[i], g[i], m[i], v[i], h);
}

extern "C" int tn_cuda_adamw(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_step *h) {
    if (n < 0) return tn_err("tn_cuda_adamw: n = %lld (must be >= 0)", (long long)n);
    if (!h) return tn_err("tn_cuda_adamw: no step constants");
    if (n == 0) return 0;
    const int vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
    TN_LAUNCH(adamw_kernel, ew_blocks(n, vec), EW_THREADS, 0, p, g, m, v, n, *h, vec);
    TN_CU_LAUNCHED("tn_cuda_adamw: launch");
    return 0;
}
