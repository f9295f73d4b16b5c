/* Kernels that exercise the CUDA emulator (and, in a GPU build, the card) feature by feature; the C test
 * tests/unit/test_cuda_emu.c compares each with a scalar C version. Each kernel is small and written the
 * way trinity's real kernels are: shapes, the math, the thread mapping, then code.
 * The last one, broken_reduce_kernel, is wrong on purpose (a missing __syncthreads): the emulator must
 * make it fail in at least one of the two thread orders. */
#include "kernels/cuda/tn_cuda.h"

#include <stdint.h>

#include "tests/cuda/emu_selftest.h"

/* Shared-memory scratch for block reductions: one float per warp. */
static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* softmax over rows: x[rows, n] -> y[rows, n]. One warp per row (block = 32 threads, grid = rows);
 * lane l takes columns l, l+32, ...; max and sum by xor-shuffle butterflies. */
__global__ void softmax_kernel(const float *x, float *y, int n) {
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    const int lane = (int)threadIdx.x;
    float m = -INFINITY;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, xr[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j < n; j += 32) s += expf(xr[j] - m);
    s = warp_sum(s);
    for (int j = lane; j < n; j += 32) yr[j] = expf(xr[j] - m) / s;
}

/* RMSNorm: y[r, :] = x[r, :] / sqrt(mean(x²) + eps). One block of NT threads per row; the row is staged
 * in dynamic shared memory (n floats), the sum of squares reduced through a per-warp slot. */
__global__ void rmsnorm_kernel(const float *x, float *y, int n, float eps) {
    TN_DYN_SHARED(float, row);
    __shared__ float part[32];
    const int tid = (int)threadIdx.x, nt = (int)blockDim.x;
    const float *xr = x + (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int j = tid; j < n; j += nt) {
        row[j] = xr[j];
        ss += row[j] * row[j];
    }
    ss = warp_sum(ss);
    if (tid % 32 == 0) part[tid / 32] = ss;
    __syncthreads();
    if (tid < 32) {
        float v = tid < nt / 32 ? part[tid] : 0.0f;
        v = warp_sum(v);
        if (tid == 0) part[0] = v;
    }
    __syncthreads();
    const float r = 1.0f / sqrtf(part[0] / (float)n + eps);
    for (int j = tid; j < n; j += nt) y[(int64_t)blockIdx.x * n + j] = row[j] * r;
}

/* C[M, N] = A[M, K] · B[K, N], row-major, in 16×16 tiles: block (16, 16), grid (ceil(N/16), ceil(M/16)).
 * Thread (tx, ty) computes C[by·16 + ty, bx·16 + tx]; A and B tiles go through static shared memory. */
#define TILE 16
__global__ void sgemm_tiled_kernel(const float *A, const float *B, float *C, int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE + 1];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const int row = (int)blockIdx.y * TILE + ty, col = (int)blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = row < M && k0 + tx < K ? A[(int64_t)row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = col < N && k0 + ty < K ? B[(int64_t)(k0 + ty) * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; k++) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[(int64_t)row * N + col] = acc;
}

/* Ternary gemv with __dp4a: y[r] = Σ_j w[r, j] · x[j], w in {-1, 0, 1} stored as int8, x int8, exact int32.
 * One warp per row (block 128 = 4 rows); lane l takes 4-byte words l, l+32, ...; n must be a multiple of 4. */
__global__ void dp4a_gemv_kernel(const int8_t *w, const int8_t *x, int32_t *y, int rows, int n) {
    const int r = (int)blockIdx.x * 4 + (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    if (r >= rows) return; /* a whole warp leaves together */
    const int *wr = reinterpret_cast<const int *>(w + (int64_t)r * n);
    const int *xv = reinterpret_cast<const int *>(x);
    int acc = 0;
    for (int k = lane; k < n / 4; k += 32) acc = __dp4a(wr[k], xv[k], acc);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (lane == 0) y[r] = acc;
}

/* Votes: for each element with |g| > thr, vote[i] += -sign(g); count[0] += number of voters (atomicAdd
 * of one per warp, from the ballot's population count), flags[i/32] = the ballot word. 1-D grid of
 * 128-thread blocks over n (n a multiple of 32: whole warps). */
__global__ void ballot_vote_kernel(const float *g, int8_t *vote, unsigned *flags, unsigned long long *count, int n,
                                   float thr) {
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    const int in_range = i < n;
    const float v = in_range ? g[i] : 0.0f;
    const int votes = in_range && fabsf(v) > thr;
    const unsigned word = __ballot_sync(0xffffffffu, votes);
    if (votes) vote[i] = (int8_t)(vote[i] + (v < 0.0f ? 1 : -1));
    if (in_range && threadIdx.x % 32 == 0) {
        flags[i / 32] = word;
        atomicAdd(count, (unsigned long long)__popc(word));
    }
}

/* Block sum of x[0, n) with NT = blockDim.x threads and a tree in shared memory, written to out[0]. The
 * __syncthreads() between the stores and the first read is missing on purpose. */
__global__ void broken_reduce_kernel(const float *x, float *out, int n) {
    __shared__ float s[256];
    const int tid = (int)threadIdx.x;
    float v = 0.0f;
    for (int j = tid; j < n; j += (int)blockDim.x) v += x[j];
    s[tid] = v;
    /* __syncthreads(); -- missing */
    for (int h = (int)blockDim.x / 2; h > 0; h >>= 1) {
        if (tid < h) s[tid] += s[tid + h];
        __syncthreads();
    }
    if (tid == 0) out[0] = s[0];
}

/* The same reduction, correct. */
__global__ void reduce_kernel(const float *x, float *out, int n) {
    __shared__ float s[256];
    const int tid = (int)threadIdx.x;
    float v = 0.0f;
    for (int j = tid; j < n; j += (int)blockDim.x) v += x[j];
    s[tid] = v;
    __syncthreads();
    for (int h = (int)blockDim.x / 2; h > 0; h >>= 1) {
        if (tid < h) s[tid] += s[tid + h];
        __syncthreads();
    }
    if (tid == 0) out[0] = s[0];
}

/* __half and __nv_bfloat16 round trips: y16[i] = half(x[i]), yb[i] = bfloat16(x[i]), back as floats. */
__global__ void half_kernel(const float *x, float *yh, float *yb, int n) {
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    yh[i] = __half2float(__float2half_rn(x[i]));
    yb[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
}

/* ---- host wrappers (C interface of tests/cuda/emu_selftest.h) -------------------------------------------- */

static int launched(void) { return cudaGetLastError() == cudaSuccess ? 0 : -1; }

extern "C" int tn_selftest_softmax(const float *x, float *y, int rows, int n) {
    TN_LAUNCH(softmax_kernel, rows, 32, 0, x, y, n);
    return launched();
}

extern "C" int tn_selftest_rmsnorm(const float *x, float *y, int rows, int n, float eps, int threads) {
    TN_LAUNCH(rmsnorm_kernel, rows, threads, (size_t)n * sizeof(float), x, y, n, eps);
    return launched();
}

extern "C" int tn_selftest_sgemm(const float *A, const float *B, float *C, int M, int N, int K) {
    dim3 grid((unsigned)((N + TILE - 1) / TILE), (unsigned)((M + TILE - 1) / TILE)), block(TILE, TILE);
    TN_LAUNCH(sgemm_tiled_kernel, grid, block, 0, A, B, C, M, N, K);
    return launched();
}

extern "C" int tn_selftest_dp4a_gemv(const int8_t *w, const int8_t *x, int32_t *y, int rows, int n) {
    TN_LAUNCH(dp4a_gemv_kernel, (rows + 3) / 4, 128, 0, w, x, y, rows, n);
    return launched();
}

extern "C" int tn_selftest_vote(const float *g, int8_t *vote, unsigned *flags, unsigned long long *count, int n,
                                float thr) {
    TN_LAUNCH(ballot_vote_kernel, (n + 127) / 128, 128, 0, g, vote, flags, count, n, thr);
    return launched();
}

extern "C" int tn_selftest_reduce(const float *x, float *out, int n, int threads, int broken) {
    if (broken) TN_LAUNCH(broken_reduce_kernel, 1, threads, 0, x, out, n);
    else TN_LAUNCH(reduce_kernel, 1, threads, 0, x, out, n);
    return launched();
}

extern "C" int tn_selftest_half(const float *x, float *yh, float *yb, int n) {
    TN_LAUNCH(half_kernel, (n + 127) / 128, 128, 0, x, yh, yb, n);
    return launched();
}

extern "C" int tn_selftest_launch_raw(int threads, size_t smem, const float *x, float *y, int n) {
    TN_LAUNCH(rmsnorm_kernel, 1, threads, smem, x, y, n, 1e-5f);
    return launched();
}
