/* Element conversions on the GPU: IEEE binary16 to float (a 16-bit distillation teacher's weights,
 * widened one matrix at a time), and the bf16 arrays of [quant] shadow = bf16 (kernels/bf16.h: the rounding
 * rules, shared with the CPU's kernels/cpu/bf16_ops.c, so both give the same bits). */
#include "kernels/cuda/cuda_internal.h"

#include "kernels/bf16.h"

#define CV_THREADS 256
#define CV_MAX_BLOCKS 4096

/* f16_to_f32_kernel. h [n] binary16 bits, out [n] float. Grid-stride, one element per thread per step;
 * the widening is exact (__half2float). */
static __global__ void __launch_bounds__(CV_THREADS) f16_to_f32_kernel(const uint16_t *__restrict__ h, int64_t n,
                                                                       float *__restrict__ out) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        __half_raw r;
        r.x = h[i];
        out[i] = __half2float(__half(r));
    }
}

extern "C" int tn_cuda_f16_to_f32(const uint16_t *h, int64_t n, float *out) {
    if (n < 0) return tn_err("tn_cuda_f16_to_f32: n = %lld", (long long)n);
    if (n == 0) return 0;
    const int64_t blocks = (n + CV_THREADS - 1) / CV_THREADS;
    TN_LAUNCH(f16_to_f32_kernel, (unsigned)(blocks < CV_MAX_BLOCKS ? blocks : CV_MAX_BLOCKS), CV_THREADS, 0, h, n, out);
    TN_CU_LAUNCHED("tn_cuda_f16_to_f32: launch");
    return 0;
}

/* ---- bf16 ---------------------------------------------------------------------------------------------- */

/* Grid-stride loops over n elements, one per thread per step. */
#define CV_FOR(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static unsigned cv_blocks(int64_t n) {
    const int64_t b = (n + CV_THREADS - 1) / CV_THREADS;
    return (unsigned)(b < CV_MAX_BLOCKS ? b : CV_MAX_BLOCKS);
}

/* out [n] bf16, x [n] float. */
static __global__ void __launch_bounds__(CV_THREADS) bf16_from_f32_kernel(uint16_t *__restrict__ out,
                                                                          const float *__restrict__ x, int64_t n) {
    CV_FOR(i, n) out[i] = tn_bf16_round_nearest(x[i]);
}

/* out [n] float, x [n] bf16. */
static __global__ void __launch_bounds__(CV_THREADS) bf16_to_f32_kernel(float *__restrict__ out,
                                                                        const uint16_t *__restrict__ x, int64_t n) {
    CV_FOR(i, n) out[i] = tn_bf16_widen(x[i]);
}

/* out [n] bf16, x [n] float; element i uses the bits of (seed, counter + i). */
static __global__ void __launch_bounds__(CV_THREADS)
bf16_round_stochastic_kernel(uint16_t *__restrict__ out, const float *__restrict__ x, int64_t n, uint64_t seed,
                             uint64_t counter) {
    CV_FOR(i, n) out[i] = tn_bf16_round_stochastic(x[i], seed, counter + (uint64_t)i);
}

/* g [n] bf16 += d [n] float, rounded to nearest (the sum in float, as the CPU: one __fadd_rn; a NaN sum as
 * the canonical NaN). */
static __global__ void __launch_bounds__(CV_THREADS) bf16_accumulate_kernel(uint16_t *__restrict__ g,
                                                                           const float *__restrict__ d, int64_t n) {
    CV_FOR(i, n) g[i] = tn_bf16_add_nearest(__fadd_rn(tn_bf16_widen(g[i]), d[i]));
}

#define CV_CHECK_N(name) \
    if (n < 0) return tn_err(name ": n = %lld (must be >= 0)", (long long)n); \
    if (n == 0) return 0

extern "C" int tn_cuda_bf16_from_f32(uint16_t *out, const float *x, int64_t n) {
    CV_CHECK_N("tn_cuda_bf16_from_f32");
    TN_LAUNCH(bf16_from_f32_kernel, cv_blocks(n), CV_THREADS, 0, out, x, n);
    TN_CU_LAUNCHED("tn_cuda_bf16_from_f32: launch");
    return 0;
}

extern "C" int tn_cuda_bf16_to_f32(float *out, const uint16_t *x, int64_t n) {
    CV_CHECK_N("tn_cuda_bf16_to_f32");
    TN_LAUNCH(bf16_to_f32_kernel, cv_blocks(n), CV_THREADS, 0, out, x, n);
    TN_CU_LAUNCHED("tn_cuda_bf16_to_f32: launch");
    return 0;
}

extern "C" int tn_cuda_bf16_round_stochastic(uint16_t *out, const float *x, int64_t n, uint64_t seed,
                                             uint64_t counter) {
    CV_CHECK_N("tn_cuda_bf16_round_stochastic");
    TN_LAUNCH(bf16_round_stochastic_kernel, cv_blocks(n), CV_THREADS, 0, out, x, n, seed, counter);
    TN_CU_LAUNCHED("tn_cuda_bf16_round_stochastic: launch");
    return 0;
}

extern "C" int tn_cuda_bf16_accumulate(uint16_t *g, const float *d, int64_t n) {
    CV_CHECK_N("tn_cuda_bf16_accumulate");
    TN_LAUNCH(bf16_accumulate_kernel, cv_blocks(n), CV_THREADS, 0, g, d, n);
    TN_CU_LAUNCHED("tn_cuda_bf16_accumulate: launch");
    return 0;
}
