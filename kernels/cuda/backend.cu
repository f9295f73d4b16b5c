/* The CUDA backend as the device layer sees it (device/device.h tn_cuda_backend): open device N (probe that
 * this build has code for it, create the cuBLAS handle and its workspace), memory info, precision, the
 * peak FLOP/s the MFU figures divide by, and the ops table. */
#include "kernels/cuda/cuda_internal.h"

#include <stdio.h>

#ifndef TN_CUDA_ARCHS
#define TN_CUDA_ARCHS "?"
#endif

extern "C" int tn_cuda_probe(void);

static cudaDeviceProp g_prop;
static int g_clock_khz = 0;

static int open_device(int index, char *name, int name_cap, int *cc, int *emulated) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return tn_err("device cuda:%d: no CUDA device: %s", index, cudaGetErrorString(e));
    }
    if (index >= n) return tn_err("device cuda:%d: the machine has %d CUDA device(s)", index, n);
    TN_CU(cudaSetDevice(index), "cudaSetDevice");
    TN_CU(cudaGetDeviceProperties(&g_prop, index), "cudaGetDeviceProperties");
    if (tn_cuda_probe() != 0)
        return tn_err("device cuda:%d: no kernel image for sm_%d%d (%s) in this build (CMAKE_CUDA_ARCHITECTURES=%s); "
                      "rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d (docs/CUDA.md)",
                      index, g_prop.major, g_prop.minor, g_prop.name, TN_CUDA_ARCHS, g_prop.major, g_prop.minor);
    if (cudaDeviceGetAttribute(&g_clock_khz, cudaDevAttrClockRate, index) != cudaSuccess) {
        cudaGetLastError();
        g_clock_khz = 0;
    }
    *cc = g_prop.major * 10 + g_prop.minor;
    *emulated = tn_cuda_is_emulated();
    snprintf(name, (size_t)name_cap, "%s, sm_%d%d, %d SMs, %.1f GiB", g_prop.name, g_prop.major, g_prop.minor,
             g_prop.multiProcessorCount, (double)g_prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    /* cuBLAS's recommended workspace: 32 MiB on Hopper, 4 MiB before (allocated by us, so it is counted), and
     * the ops' scratch at the largest any of them asks for with the shapes of real models (RMSNorm's dw
     * partials: 16 MiB), so that neither grows after the memory plan was made. */
    TN_CHECK(tn_cuda_blas_init(*cc >= 90 ? (size_t)32 << 20 : (size_t)4 << 20));
    return tn_cuda_scratch((size_t)16 << 20) ? 0 : -1;
}

static int mem_info(int64_t *free_bytes, int64_t *total_bytes) {
    size_t f = 0, t = 0;
    TN_CU(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
    *free_bytes = (int64_t)f;
    *total_bytes = (int64_t)t;
    return 0;
}

/* Per-SM per-clock throughput (FLOP, a fused multiply-add counting 2) by compute capability: FP32 CUDA
 * cores × 2, and dense TF32 tensor-core FLOP (BF16 is twice TF32). From NVIDIA's architecture whitepapers
 * (Pascal GP102, Volta, Turing, Ampere GA100 / GA102, Ada, Hopper); e.g. H100 SXM5: 132 SMs × 128 × 2 ×
 * 1.98 GHz = 66.9 TFLOP/s FP32, 132 × 2048 × 1.83 GHz ≈ 495 TFLOP/s TF32 (the datasheet's dense figures).
 * The sm_86 / sm_89 tensor rates are the data-centre parts' (A10, L4); GeForce RTX 30xx / 40xx run TF32 and
 * BF16 with FP32 accumulation at half that, so their MFU in those precisions reads half the true figure. */
static void per_sm_clock(int cc, double *fp32, double *tf32) {
    *tf32 = 0;
    if (cc >= 90) *fp32 = 256, *tf32 = 2048;
    else if (cc == 80) *fp32 = 128, *tf32 = 1024;
    else if (cc >= 86) *fp32 = 256, *tf32 = 512;
    else if (cc >= 70) *fp32 = 128;
    else if (cc == 60) *fp32 = 128;
    else *fp32 = 256; /* sm_61: 128 cores */
}

static double peak_flops(int precision) {
    if (g_clock_khz <= 0) return 0;
    const int cc = g_prop.major * 10 + g_prop.minor;
    double fp32, tf32;
    per_sm_clock(cc, &fp32, &tf32);
    const double per_clock = precision == TN_PRECISION_FP32 ? fp32 : precision == TN_PRECISION_TF32 ? tf32 : 2 * tf32;
    return per_clock * g_prop.multiProcessorCount * (double)g_clock_khz * 1e3;
}

static const tn_cuda_backend g_backend = {open_device, mem_info, tn_cuda_set_precision, peak_flops, tn_cuda_ops,
                                          tn_cuda_infer_ops, tn_cuda_nccl_api};

extern "C" const tn_cuda_backend *tn_cuda_backend_get(void) { return &g_backend; }
