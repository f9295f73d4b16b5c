/* Muon and Grokfast on the GPU (kernels/cuda/muon.h). The elementwise kernels compute the CPU's float
 * expressions (optim/muon.c, optim/grokfast.c) with __fmul_rn / __fadd_rn, which nvcc never
 * contracts into an fma (the CPU, ISO C, never contracts either), so they agree bit for bit. The
 * Newton–Schulz products go through the one cuBLAS wrapper, tn_cuda_gemm, with the row-major products of
 * optim/muon.c written as column-major ones: a row-major [r, c] buffer read column-major is its [c, r]
 * transpose, so row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ (rm_gemm below).
 *
 * Mapping of the elementwise kernels: grid-stride, EW_THREADS per block, consecutive threads on consecutive
 * elements (coalesced), at most EW_MAX_BLOCKS blocks. */
#include "kernels/cuda/cuda_internal.h"

#include "kernels/cuda/muon.h"
#include "optim/muon.h"

#include <cmath>

#define EW_THREADS 256
#define EW_MAX_BLOCKS 4096

static unsigned ew_blocks(int64_t n) {
    const int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 1 ? 1 : b > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : b);
}

static __device__ __forceinline__ int64_t first_index(void) { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
static __device__ __forceinline__ int64_t index_stride(void) { return (int64_t)gridDim.x * blockDim.x; }

/* ---- Muon -------------------------------------------------------------------------------------------- */

/* muon_momentum_kernel. buf, u, g [n] (u may be g: element i is read before it is written, by one thread).
 *   b = β·buf + (1−β)·g;  buf = b;  u = nesterov ? β·b + (1−β)·g : b */
static __global__ void __launch_bounds__(EW_THREADS)
muon_momentum_kernel(float *buf, float *u, const float *g, int64_t n, float keep, float take, int nesterov) {
    for (int64_t i = first_index(); i < n; i += index_stride()) {
        const float gi = g[i], tg = __fmul_rn(take, gi);
        const float b = __fadd_rn(__fmul_rn(keep, buf[i]), tg);
        buf[i] = b;
        u[i] = nesterov ? __fadd_rn(__fmul_rn(keep, b), tg) : b;
    }
}

extern "C" int tn_cuda_muon_momentum(float *buf, float *u, const float *g, int64_t n, float beta, int nesterov) {
    if (n < 0) return tn_err("tn_cuda_muon_momentum: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    TN_LAUNCH(muon_momentum_kernel, ew_blocks(n), EW_THREADS, 0, buf, u, g, n, beta, 1.0f - beta, nesterov);
    TN_CU_LAUNCHED("tn_cuda_muon_momentum: launch");
    return 0;
}

/* muon_apply_kernel. p, o [n].  p = p·decay − lr·(scale·o) */
static __global__ void __launch_bounds__(EW_THREADS)
muon_apply_kernel(float *__restrict__ p, const float *__restrict__ o, int64_t n, float scale, float lr, float decay) {
    for (int64_t i = first_index(); i < n; i += index_stride()) {
        const float upd = __fmul_rn(lr, __fmul_rn(scale, o[i]));
        p[i] = __fadd_rn(__fmul_rn(p[i], decay), -upd);
    }
}

extern "C" int tn_cuda_muon_apply(float *p, const float *o, int64_t n, float scale, float lr, float decay) {
    if (n < 0) return tn_err("tn_cuda_muon_apply: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    TN_LAUNCH(muon_apply_kernel, ew_blocks(n), EW_THREADS, 0, p, o, n, scale, lr, decay);
    TN_CU_LAUNCHED("tn_cuda_muon_apply: launch");
    return 0;
}

/* divide_kernel. x [n].  x = x / den (IEEE division, as the CPU's) */
static __global__ void __launch_bounds__(EW_THREADS) divide_kernel(float *x, int64_t n, float den) {
    for (int64_t i = first_index(); i < n; i += index_stride()) x[i] = x[i] / den; /* IEEE (nvcc -prec-div=true, the default) */
}

/* Row-major C[M, N] = alpha·op(A)·op(B) + beta·C (optim/muon.c's gemm) as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ. */
static int rm_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return tn_cuda_gemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}

static int dev_copy_floats(float *dst, const float *src, int64_t n) {
    TN_CU(cudaMemcpy(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice), "tn_cuda_muon_orthogonalize: copy");
    return 0;
}

/* X [R, C] row-major, m = min(R, C); scratch: Y [R·C], A [m, m], B [m, m] floats (optim/muon.c, same sequence
 * in fp32; the CPU iterates in double):
 *   X ← X / (‖X‖_F + 1e−7)                                  (the norm: tn_cuda_sumsq, through the host)
 *   wide: A = X·Xᵀ, tall: A = Xᵀ·X;  B = A, then B = c·A·A + b·B
 *   Y = X, then wide: Y = B·X + a·Y, tall: Y = X·Bᵀ + a·Y;  swap X and Y; after the last step the result
 *   is copied into the caller's X if it is in Y. */
extern "C" int tn_cuda_muon_orthogonalize(float *X, int64_t R, int64_t C, int steps, float *scratch) {
    if (R < 1 || C < 1 || steps < 0)
        return tn_err("tn_cuda_muon_orthogonalize: [%lld, %lld], %d steps", (long long)R, (long long)C, steps);
    const int64_t n = R * C, m = R < C ? R : C;
    const int tall = R > C;
    float *Y = scratch, *A = scratch + n, *B = A + m * m, *cur = X, *nxt = Y;
    double ss = 0;
    TN_CHECK(tn_cuda_sumsq(X, n, &ss));
    const float den = (float)(sqrt(ss) + TN_MUON_NS_EPS);
    TN_LAUNCH(divide_kernel, ew_blocks(n), EW_THREADS, 0, X, n, den);
    TN_CU_LAUNCHED("tn_cuda_muon_orthogonalize: launch");
    for (int s = 0; s < steps; s++) {
        if (tall) TN_CHECK(rm_gemm(1, 0, m, m, R, 1.0f, cur, C, cur, C, 0.0f, A, m));
        else TN_CHECK(rm_gemm(0, 1, m, m, C, 1.0f, cur, C, cur, C, 0.0f, A, m));
        TN_CHECK(dev_copy_floats(B, A, m * m));
        TN_CHECK(rm_gemm(0, 0, m, m, m, (float)TN_MUON_NS_C, A, m, A, m, (float)TN_MUON_NS_B, B, m));
        TN_CHECK(dev_copy_floats(nxt, cur, n));
        if (tall) TN_CHECK(rm_gemm(0, 1, R, C, C, 1.0f, cur, C, B, m, (float)TN_MUON_NS_A, nxt, C));
        else TN_CHECK(rm_gemm(0, 0, R, C, R, 1.0f, B, m, cur, C, (float)TN_MUON_NS_A, nxt, C));
        float *t = cur;
        cur = nxt;
        nxt = t;
    }
    if (cur != X) TN_CHECK(dev_copy_floats(X, cur, n));
    return 0;
}

/* ---- Grokfast ---------------------------------------------------------------------------------------- */

/* grokfast_kernel. g, ema [n].  e = first ? g : ema·α + g·(1−α);  ema = e;  g = g + e·λ */
static __global__ void __launch_bounds__(EW_THREADS)
grokfast_kernel(float *__restrict__ g, float *__restrict__ ema, int64_t n, float keep, float take, float lambda,
                int first) {
    for (int64_t i = first_index(); i < n; i += index_stride()) {
        const float gi = g[i], e = first ? gi : __fadd_rn(__fmul_rn(ema[i], keep), __fmul_rn(gi, take));
        ema[i] = e;
        g[i] = __fadd_rn(gi, __fmul_rn(e, lambda));
    }
}

extern "C" int tn_cuda_grokfast(float *g, float *ema, int64_t n, float alpha, float lambda, int first) {
    if (n < 0) return tn_err("tn_cuda_grokfast: n = %lld (must be >= 0)", (long long)n);
    if (n == 0) return 0;
    TN_LAUNCH(grokfast_kernel, ew_blocks(n), EW_THREADS, 0, g, ema, n, alpha, 1.0f - alpha, lambda, first);
    TN_CU_LAUNCHED("tn_cuda_grokfast: launch");
    return 0;
}
