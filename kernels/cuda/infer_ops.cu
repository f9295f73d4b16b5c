/* The CUDA table of the inference engine's packed ops (kernels/infer_ops.h): device memory, the packed
 * products (t2.cu, packed_infer.cu), cuBLAS for F32 weights, the KV-cache attention (kv_attention.cu), the
 * training's RMSNorm / SwiGLU / add / activation kernels (model.cu, act.cu), CUDA graphs for the decode
 * step, and the device's read bandwidth for the decode benchmark's bound.
 *
 * The engine runs on one host thread and every op covers all rows (tid 0 of 1): the row ranges the CPU
 * splits among threads are always whole here, and an op asked for part of its rows refuses. */
#include "kernels/cuda/cuda_internal.h"

extern "C" {
#include "kernels/infer_ops.h"
}

#include <string.h>

/* ---- memory ------------------------------------------------------------------------------------------- */

static void *dev_alloc(size_t bytes) {
    void *p = tn_cuda_alloc(bytes);
    if (p && tn_cuda_memset0(p, bytes) != 0) {
        tn_cuda_free(p);
        return NULL;
    }
    return p;
}

static int dev_upload(void *dst, const void *src, size_t n) { return tn_cuda_upload(dst, src, n); }
static int dev_download(void *dst, const void *src, size_t n) { return tn_cuda_download(dst, src, n); }

/* ---- products ----------------------------------------------------------------------------------------- */

static int dev_gemm_f32(const float *W, int64_t R, int64_t C, int64_t n, const float *X, float *Y) {
    return tn_cuda_sgemm(Y, X, W, n, C, R, 0.0f);
}

static int dev_gemm_t2(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t R, int64_t C, int64_t n,
                       const int8_t *Xq, const float *xscales, float *Y) {
    return tn_cuda_t2_gemm(W, row_scale, tensor_scale, R, C, n, Xq, xscales, Y);
}

static int dev_act_quant_i8(const float *X, int64_t n, int64_t C, int8_t *Q, float *scales) {
    return tn_cuda_act_quant_i8(X, n, C, Q, scales);
}

static int dev_embed(const tn_imat *E, const int32_t *tokens, int64_t n, float *X) {
    return tn_cuda_embed_rows((int)E->dtype, E->w, E->grid, E->row_scale, E->tensor_scale, E->rows, E->cols, tokens,
                              n, X);
}

/* ---- elementwise steps and attention ------------------------------------------------------------------- */

static int dev_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t n, int64_t D, float eps) {
    return tn_cuda_rmsnorm(y, rstd, x, w, n, D, eps);
}

static int whole(const char *what, int64_t c0, int64_t c1, int64_t width) {
    if (c0 == 0 && c1 == width) return 0;
    return tn_err("%s on CUDA: columns [%lld, %lld) of %lld (the engine runs one thread on a device)", what,
                  (long long)c0, (long long)c1, (long long)width);
}

static int dev_swiglu(float *g, const float *u, int64_t n, int64_t F, int64_t c0, int64_t c1) {
    TN_CHECK(whole("swiglu", c0, c1, F));
    return tn_cuda_swiglu(g, g, u, n * F);
}

static int dev_add(float *x, const float *y, int64_t n, int64_t D, int64_t c0, int64_t c1) {
    TN_CHECK(whole("add", c0, c1, D));
    return tn_cuda_add(x, y, n * D);
}

static int dev_add_bias(float *x, const float *b, int64_t n, int64_t D, int64_t c0, int64_t c1) {
    TN_CHECK(whole("add_bias", c0, c1, D));
    return tn_cuda_bias_add(x, b, n, D);
}

static int dev_attention(const tn_infer_attn *a, int kh0, int kh1) {
    TN_CHECK(whole("attention", kh0, kh1, a->KV));
    return tn_cuda_kv_attention(a->q, a->k_new, a->v_new, a->k_cache, a->v_cache, a->pos_dev, a->cos_t, a->sin_t,
                                a->n, a->H, a->KV, a->hd, a->ctx, a->out, a->scratch);
}

static int64_t dev_attention_scratch_floats(int64_t n, int64_t H, int64_t KV, int64_t hd, int64_t ctx) {
    (void)KV;
    return tn_cuda_kv_attention_scratch_floats(n, H, hd, ctx);
}

static void dev_barrier(void) {}

/* ---- CUDA graphs ----------------------------------------------------------------------------------------
 * Capture needs a stream other than the legacy default one: while capturing, every launch (TN_LAUNCH reads
 * tn_cuda_launch_stream) and cuBLAS go to g_stream, a blocking stream, so the engine's plain cudaMemcpy
 * uploads and downloads on the default stream stay ordered with the replays. The emulator has no graphs:
 * the table leaves these entries NULL there and the engine runs every step op by op. */
#ifndef TN_CUDA_EMU
static cudaStream_t g_stream = NULL;

static void capture_stream_off(void) {
    tn_cuda_launch_stream = 0;
    tn_cuda_blas_set_stream(0);
}

static int dev_graph_begin(void) {
    if (!g_stream) TN_CU(cudaStreamCreate(&g_stream), "cudaStreamCreate");
    TN_CHECK(tn_cuda_blas_set_stream(g_stream));
    tn_cuda_launch_stream = g_stream;
    cudaError_t e = cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        capture_stream_off();
        return tn_cuda_err("cudaStreamBeginCapture", e);
    }
    return 0;
}

static int dev_graph_end(void **out) {
    *out = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(g_stream, &g);
    capture_stream_off();
    if (e != cudaSuccess) {
        cudaGetLastError();
        return tn_cuda_err("cudaStreamEndCapture", e);
    }
    cudaGraphExec_t ex = NULL;
    e = cudaGraphInstantiate(&ex, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) return tn_cuda_err("cudaGraphInstantiate", e);
    *out = (void *)ex;
    return 0;
}

static int dev_graph_launch(void *graph) {
    TN_CU(cudaGraphLaunch((cudaGraphExec_t)graph, g_stream), "cudaGraphLaunch");
    return 0;
}

static void dev_graph_free(void *graph) {
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}
#endif

/* ---- read bandwidth ---------------------------------------------------------------------------------------
 * read_kernel. src [n16] 16-byte words, sink [1]. Grid-stride: every thread xors the words it reads (so
 * the loads cannot be dropped) and writes only if the result is a value random data essentially never
 * gives, so the kernel moves n16·16 bytes from memory and nothing back. */
static __global__ void read_kernel(const uint4 *__restrict__ src, int64_t n16, unsigned *sink) {
    unsigned acc = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += stride) {
        const uint4 v = src[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

static double dev_read_bandwidth(size_t bytes, int threads, int reps) {
    (void)threads;
    /* beside a large model the card may not hold a buffer of its size: half the free memory still dwarfs
     * any L2 (50 MiB on an H100) */
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && bytes > free_b / 2) bytes = free_b / 2;
    const int64_t n16 = (int64_t)(bytes / 16);
    uint4 *buf = (uint4 *)tn_cuda_alloc((size_t)n16 * 16);
    unsigned *sink = (unsigned *)tn_cuda_alloc(sizeof(unsigned));
    cudaEvent_t a = NULL, b = NULL;
    double best = 0;
    int sms = 0, dev = 0;
    if (buf && sink && cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        cudaMemset(buf, 0x5a, (size_t)n16 * 16) == cudaSuccess && cudaEventCreate(&a) == cudaSuccess &&
        cudaEventCreate(&b) == cudaSuccess) {
        const unsigned blocks = (unsigned)(sms > 0 ? 8 * sms : 256);
        TN_LAUNCH(read_kernel, blocks, 256, 0, buf, n16, sink); /* warm-up */
        for (int r = 0; r < reps; r++) {
            cudaEventRecord(a, 0);
            TN_LAUNCH(read_kernel, blocks, 256, 0, buf, n16, sink);
            cudaEventRecord(b, 0);
            float ms = 0;
            if (cudaEventSynchronize(b) != cudaSuccess || cudaEventElapsedTime(&ms, a, b) != cudaSuccess) break;
            const double bw = ms > 0 ? (double)n16 * 16 / (ms * 1e-3) : 0;
            if (bw > best) best = bw;
        }
    }
    cudaGetLastError();
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    tn_cuda_free(buf);
    tn_cuda_free(sink);
    return best;
}

/* ---- the table -------------------------------------------------------------------------------------------- */

/* Filled field by field: designated initializers are C++20, and this file is C++17 for nvcc. */
static tn_infer_ops make_table(void) {
    tn_infer_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.device_memory = 1;
    o.max_head_dim = 128; /* kv_attention.cu */
    o.alloc = dev_alloc;
    o.free = tn_cuda_free;
    o.upload = dev_upload;
    o.download = dev_download;
    o.gemm_f32 = dev_gemm_f32;
    o.gemm_f16 = tn_cuda_f16_gemm;
    o.gemm_t2 = dev_gemm_t2;
    o.gemm_l4 = tn_cuda_l4_gemm;
    o.gemm_l8 = tn_cuda_l8_gemm;
    o.act_quant_i8 = dev_act_quant_i8;
    o.act_fake_quant = tn_cuda_act_fake_quant;
    o.embed = dev_embed;
    o.rmsnorm = dev_rmsnorm;
    o.swiglu = dev_swiglu;
    o.add = dev_add;
    o.add_bias = dev_add_bias;
    o.attention = dev_attention;
    o.attention_scratch_floats = dev_attention_scratch_floats;
    o.barrier = dev_barrier;
#ifndef TN_CUDA_EMU
    o.graph_begin = dev_graph_begin;
    o.graph_end = dev_graph_end;
    o.graph_launch = dev_graph_launch;
    o.graph_free = dev_graph_free;
#endif
    o.read_bandwidth = dev_read_bandwidth;
    return o;
}

static const tn_infer_ops g_infer_ops = make_table();

extern "C" const tn_infer_ops *tn_cuda_infer_ops(void) { return &g_infer_ops; }
