/* Knowledge distillation on the GPU (kernels/cuda/kd.h): the KL term of the distillation loss with its
 * gradient, and the hidden-state MSE. Each computes what its CPU reference computes (kernels/cpu/kd.c
 * tn_op_kd, tn_op_hidden_mse) in the same float expressions: products and differences are written with
 * __fmul_rn / __fadd_rn, which nvcc never contracts into an fma (a contracted e_s·k_s − e_t·k_t would not
 * give exactly 0 for equal rows), and the exponential is the CPU's own tn_expf (kernels/vexp.h). Double sums
 * are taken in another order than the CPU's, in a fixed tree (per-thread strided partial sums, warp
 * shuffles, the per-warp sums by warp 0; no atomics), so a run repeats bit for bit on one GPU.
 *
 * Mappings: one block per row (rows past the grid cap loop), threads striding the row so that a warp reads
 * 32 consecutive floats; the MSE's per-row sums are then added by one block through tn_cuda_scratch. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/kd.h"
#include "kernels/vexp.h"

#include <cmath>


#define KD_MAX_THREADS 512       /* KL rows (up to 150k logits): about 16 logits per thread */
#define MSE_MAX_THREADS 256      /* hidden-state rows */
#define RED_THREADS 256          /* the MSE's final sum over rows */
#define MAX_ROW_BLOCKS (1 << 20) /* rows past this loop */

/* z = (x − m)·(1/τ), rounded per operation as on the CPU */
static __device__ __forceinline__ float scaled(float x, float m, float inv_tau) {
    return __fmul_rn(sub_rn(x, m), inv_tau);
}

/* Threads for one block per row of `cols` items: rounded up to a warp, within [32, max_threads]. */
static int row_threads(int64_t cols, int max_threads) {
    int64_t t = (cols + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > max_threads ? max_threads : t);
}

static unsigned row_blocks(int64_t rows) { return (unsigned)(rows < MAX_ROW_BLOCKS ? rows : MAX_ROW_BLOCKS); }

/* ---- the KL term -------------------------------------------------------------------------------------- */

/* kd_kernel. s_logits, t_logits, grad [N, V]; kl [N]; mask [N] or NULL (all). inv_tau = 1/τ, gt = g·τ (host
 * floats, as the CPU computes them).
 * Per row (tn_op_kd): m_s, m_t = row maxima; z = (x − m)·inv_tau; e = tn_expf(z);
 *   S_s = Σ e_s, S_t = Σ e_t, A = Σ e_t (z_t − z_s) in double;   kl = A / S_t + log(S_s / S_t);
 *   grad = e_s·(float)(gt / S_s) − e_t·(float)(gt / S_t) on counted rows, else 0.
 * One block per row (rows past the grid loop); thread t takes j = t, t + blockDim, ...; the maxima (two at
 * once) and the sums (three at once) by block_reduce_k. Its barriers end every read of the row before the
 * gradient pass writes it, and that pass reads element j before writing it in the same thread: so grad may
 * be t_logits (neither is __restrict__). The mask is the same for the whole block: the zero-fill branch
 * skips no barrier that another thread meets. */
static __global__ void __launch_bounds__(KD_MAX_THREADS)
kd_kernel(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *__restrict__ mask,
          int64_t N, int64_t V, float inv_tau, float gt) {
    __shared__ float redf[2][32];
    __shared__ double redd[3][32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const float *s = s_logits + n * V, *t = t_logits + n * V;
        float m[2] = {-INFINITY, -INFINITY};
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            const float a = s[j], b = t[j];
            m[0] = op_max()(m[0], a);
            m[1] = op_max()(m[1], b);
        }
        block_reduce_k<2>(m, -INFINITY, op_max(), redf);
        const float ms = m[0], mt = m[1];
        double acc[3] = {0, 0, 0}; /* S_s, S_t, A */
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            const float zs = scaled(s[j], ms, inv_tau), zt = scaled(t[j], mt, inv_tau);
            const float es = tn_expf(zs), et = tn_expf(zt);
            acc[0] += (double)es;
            acc[1] += (double)et;
            acc[2] += (double)et * ((double)zt - (double)zs);
        }
        block_reduce_k<3>(acc, 0.0, op_add(), redd);
        if (threadIdx.x == 0) kl[n] = (float)(acc[2] / acc[1] + log(acc[0] / acc[1]));
        float *gr = grad + n * V;
        if (mask && !mask[n]) {
            for (int64_t j = threadIdx.x; j < V; j += blockDim.x) gr[j] = 0.0f;
            continue;
        }
        const float ks = (float)((double)gt / acc[0]), kt = (float)((double)gt / acc[1]);
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            const float es = tn_expf(scaled(s[j], ms, inv_tau)), et = tn_expf(scaled(t[j], mt, inv_tau));
            gr[j] = sub_rn(__fmul_rn(es, ks), __fmul_rn(et, kt));
        }
    }
}

extern "C" int tn_cuda_kd(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *mask,
                          int64_t N, int64_t V, float tau, float g) {
    if (N < 0 || V < 1)
        return tn_err("tn_cuda_kd: N = %lld, V = %lld (need N >= 0, V >= 1)", (long long)N, (long long)V);
    if (!(tau > 0.0f) || !std::isfinite(tau))
        return tn_err("tn_cuda_kd: tau = %g (need a finite tau > 0)", (double)tau);
    if (N == 0) return 0;
    if (!kl || !grad || !s_logits || !t_logits) return tn_err("tn_cuda_kd: NULL array");
    if (grad == s_logits) return tn_err("tn_cuda_kd: grad must not be s_logits");
    const float inv_tau = 1.0f / tau, gt = g * tau;
    const int threads = row_threads((V + 15) / 16, KD_MAX_THREADS);
    TN_LAUNCH(kd_kernel, row_blocks(N), threads, 0, kl, grad, s_logits, t_logits, mask, N, V, inv_tau, gt);
    TN_CU_LAUNCHED("tn_cuda_kd: launch");
    return 0;
}

/* ---- the hidden-state MSE ------------------------------------------------------------------------------ */

/* mse_rows_kernel. xs, xt, dx [N, D]; mask [N] or NULL (all); row_sum [N] (double).
 * Counted rows: row_sum[n] = Σ_d (xs − xt)² (each difference exact in double), dx += g2·(xs − xt) rounded
 * per operation as on the CPU (bit for bit). Other rows: row_sum[n] = 0, dx untouched (a branch the whole
 * block takes). One block per row (rows past the grid loop), thread t takes d = t, t + blockDim, ... */
static __global__ void __launch_bounds__(MSE_MAX_THREADS)
mse_rows_kernel(double *__restrict__ row_sum, float *__restrict__ dx, const float *__restrict__ xs,
                const float *__restrict__ xt, const uint8_t *__restrict__ mask, int64_t N, int64_t D, float g2) {
    __shared__ double red[1][32];
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        if (mask && !mask[n]) {
            if (threadIdx.x == 0) row_sum[n] = 0.0;
            continue;
        }
        const int64_t o = n * D;
        double s[1] = {0};
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            const float a = xs[o + d], b = xt[o + d];
            const double diff = (double)a - (double)b;
            s[0] += diff * diff;
            dx[o + d] = __fadd_rn(dx[o + d], __fmul_rn(g2, sub_rn(a, b)));
        }
        block_reduce_k<1>(s, 0.0, op_add(), red);
        if (threadIdx.x == 0) row_sum[n] = s[0];
    }
}

/* sum_rows_kernel, one block: *out = Σ_n row_sum[n] (strided per thread, then block_reduce_k). */
static __global__ void __launch_bounds__(RED_THREADS)
sum_rows_kernel(const double *__restrict__ row_sum, int64_t N, double *__restrict__ out) {
    __shared__ double red[1][32];
    double s[1] = {0};
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) s[0] += row_sum[n];
    block_reduce_k<1>(s, 0.0, op_add(), red);
    if (threadIdx.x == 0) *out = s[0];
}

extern "C" int tn_cuda_hidden_mse(double *sum, float *dx, const float *xs, const float *xt, const uint8_t *mask,
                                  int64_t N, int64_t D, float g) {
    if (!sum) return tn_err("tn_cuda_hidden_mse: no host pointer for the sum");
    if (N < 0 || D < 0)
        return tn_err("tn_cuda_hidden_mse: N = %lld, D = %lld (must be >= 0)", (long long)N, (long long)D);
    *sum = 0;
    if (N == 0 || D == 0) return 0;
    if (!dx || !xs || !xt) return tn_err("tn_cuda_hidden_mse: NULL array");
    double *row_sum = (double *)tn_cuda_scratch((size_t)(N + 1) * sizeof(double));
    if (!row_sum) return -1;
    TN_LAUNCH(mse_rows_kernel, row_blocks(N), row_threads(D, MSE_MAX_THREADS), 0, row_sum, dx, xs, xt, mask, N, D,
              2.0f * g);
    TN_CU_LAUNCHED("tn_cuda_hidden_mse: launch");
    TN_LAUNCH(sum_rows_kernel, 1, RED_THREADS, 0, (const double *)row_sum, N, row_sum + N);
    TN_CU_LAUNCHED("tn_cuda_hidden_mse: launch");
    TN_CU(cudaMemcpy(sum, row_sum + N, sizeof(double), cudaMemcpyDeviceToHost), "tn_cuda_hidden_mse: copy the sum");
    return 0;
}
