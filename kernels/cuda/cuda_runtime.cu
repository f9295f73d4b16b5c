/* Device discovery and device memory (kernels/cuda/cuda_ops.h). */
#include <stdio.h>

#include "kernels/cuda/cuda_internal.h"

#ifndef TN_CUDA_ARCHS
#define TN_CUDA_ARCHS "?"
#endif

/* Does nothing; cudaFuncGetAttributes on it tells whether this build has code the device can run. */
__global__ void tn_cuda_probe_kernel(int *p) {
    if (p) *p = 0;
}

static int g_avail = -1; /* -1 unknown, 0 no, 1 yes */
static char g_reason[512];

extern "C" int tn_cuda_available(const char **reason) {
    if (g_avail < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        cudaDeviceProp p;
        cudaFuncAttributes fa;
        if (e != cudaSuccess) {
            snprintf(g_reason, sizeof g_reason, "no CUDA device: %s", cudaGetErrorString(e));
            g_avail = 0;
        } else if (n < 1) {
            snprintf(g_reason, sizeof g_reason, "no CUDA device: none found");
            g_avail = 0;
        } else if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) {
            snprintf(g_reason, sizeof g_reason, "no CUDA device: device 0: %s", cudaGetErrorString(e));
            g_avail = 0;
        } else if ((e = cudaFuncGetAttributes(&fa, tn_cuda_probe_kernel)) != cudaSuccess) {
            snprintf(g_reason, sizeof g_reason,
                     "no kernel image for sm_%d%d (%s) in this build (CMAKE_CUDA_ARCHITECTURES=%s): %s",
                     p.major, p.minor, p.name, TN_CUDA_ARCHS, cudaGetErrorString(e));
            g_avail = 0;
        } else {
            snprintf(g_reason, sizeof g_reason, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
                     (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
            g_avail = 1;
        }
        cudaGetLastError(); /* clear a non-sticky error left by the probing */
    }
    if (reason) *reason = g_reason;
    return g_avail;
}

/* ---- memory ---------------------------------------------------------------------------------------- */

extern "C" void *tn_cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        tn_err("cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void tn_cuda_free(void *dev) {
    if (dev) cudaFree(dev);
}

extern "C" int tn_cuda_upload(void *dev_dst, const void *host_src, size_t bytes) {
    if (bytes) TN_CU(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice), "CUDA upload");
    return 0;
}

extern "C" int tn_cuda_download(void *host_dst, const void *dev_src, size_t bytes) {
    if (bytes) TN_CU(cudaMemcpy(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost), "CUDA download");
    else TN_CU(cudaDeviceSynchronize(), "CUDA download");
    return 0;
}

extern "C" int tn_cuda_memset0(void *dev, size_t bytes) {
    if (bytes) TN_CU(cudaMemset(dev, 0, bytes), "CUDA memset");
    return 0;
}

extern "C" int tn_cuda_sync(void) {
    TN_CU(cudaDeviceSynchronize(), "CUDA sync");
    return 0;
}

extern "C" int tn_cuda_is_emulated(void) {
#ifdef TN_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

extern "C" void tn_cuda_shutdown(void) { tn_cuda_blas_shutdown(); }
