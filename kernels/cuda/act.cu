/* Per-token absmax int8 activation quantization on the GPU (kernels/packed.h tn_act_quant_i8_rows).
 *
 * Kernel act_quant_kernel: one thread block (256 threads) per token, tokens past gridDim.x loop.
 *   X [n_tok, n] float -> Q [n_tok, n] int8, scales [n_tok].
 * amax by a block max-reduction (order does not matter for a max; like the CPU, NaN never wins), then every
 * element with the shared formula (kernels/t2_math.h: inv = 127/amax once, q = clamp(rint(x*inv))): IEEE
 * division, multiply and rint on both sides, so Q and scales equal the CPU's bit for bit. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/t2_math.h"

#define AQ_THREADS 256

static __device__ __forceinline__ float max_nan_skip(float m, float a) { return a > m ? a : m; }

__global__ void __launch_bounds__(AQ_THREADS)
act_quant_kernel(const float *__restrict__ X, int64_t n_tok, int64_t n, int8_t *__restrict__ Q,
                 float *__restrict__ scales) {
    __shared__ float red[AQ_THREADS / 32];
    const int tid = (int)threadIdx.x, lane = tid % 32, warp = tid / 32;
    for (int64_t t = blockIdx.x; t < n_tok; t += gridDim.x) {
        const float *x = X + t * n;
        int8_t *q = Q + t * n;
        float m = 0.0f;
        for (int64_t i = tid; i < n; i += AQ_THREADS) m = max_nan_skip(m, fabsf(x[i]));
        for (int o = 16; o > 0; o >>= 1) m = max_nan_skip(m, __shfl_down_sync(0xffffffffu, m, o));
        if (lane == 0) red[warp] = m;
        __syncthreads();
        if (warp == 0) {
            m = lane < AQ_THREADS / 32 ? red[lane] : 0.0f;
            for (int o = 16; o > 0; o >>= 1) m = max_nan_skip(m, __shfl_down_sync(0xffffffffu, m, o));
            if (lane == 0) red[0] = m;
        }
        __syncthreads();
        const float amax = red[0];
        __syncthreads(); /* red is reused by the next token */
        if (!(amax > 0.0f)) {
            for (int64_t i = tid; i < n; i += AQ_THREADS) q[i] = 0;
            if (tid == 0) scales[t] = 0.0f;
            continue;
        }
        const float inv = tn_act_inv(amax);
        for (int64_t i = tid; i < n; i += AQ_THREADS) q[i] = tn_act_q(x[i], inv);
        if (tid == 0) scales[t] = tn_act_scale(amax);
    }
}

extern "C" int tn_cuda_act_quant_i8(const float *X, int64_t n_tok, int64_t n, int8_t *Q, float *scales) {
    if (n_tok <= 0) return 0;
    if (n < 0) return tn_err("tn_cuda_act_quant_i8: n = %lld", (long long)n);
    unsigned grid = (unsigned)(n_tok < (1 << 20) ? n_tok : (1 << 20));
    TN_LAUNCH(act_quant_kernel, grid, AQ_THREADS, 0, X, n_tok, n, Q, scales);
    TN_CU_LAUNCHED("tn_cuda_act_quant_i8: launch");
    return 0;
}
