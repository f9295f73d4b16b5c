/* Element conversions on the GPU: IEEE binary16 to float (a 16-bit distillation teacher's weights,
 * widened one matrix at a time). */
#include "kernels/cuda/cuda_internal.h"

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
