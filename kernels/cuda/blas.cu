/* The one cuBLAS wrapper (kernels/cuda/cuda_ops.h tn_cuda_gemm). Compiled by nvcc it calls cuBLAS; compiled
 * for the emulator it calls OpenBLAS's cblas_sgemm with the same column-major arguments, so the index
 * arithmetic of every caller (row-major products expressed as column-major ones) is exercised on the CPU.
 *
 * Precision (tn_cuda_set_precision): FP32 uses CUBLAS_COMPUTE_32F (no TF32, whatever NVIDIA_TF32_OVERRIDE
 * says); TF32 and BF16 keep FP32 inputs, outputs and accumulation and let the tensor cores round the
 * inputs (CUBLAS_COMPUTE_32F_FAST_TF32 / _FAST_16BF, the "autocast" of a float GEMM). The emulator rounds
 * the inputs to TF32 (10 mantissa bits) or bfloat16 (7) to nearest even, then multiplies in FP32: close to,
 * not bit-equal with, the tensor cores, which may also reorder the sums. */
#include "kernels/cuda/cuda_internal.h"

#ifdef TN_CUDA_EMU
#include <cblas.h>
#include <vector>
#else
#include <cublas_v2.h>
#endif

static int g_precision = TN_CUDA_FP32;

extern "C" int tn_cuda_set_precision(int precision) {
    if (precision != TN_CUDA_FP32 && precision != TN_CUDA_TF32 && precision != TN_CUDA_BF16)
        return tn_err("tn_cuda_set_precision: unknown precision %d", precision);
    g_precision = precision;
    return 0;
}

extern "C" int tn_cuda_get_precision(void) { return g_precision; }

/* Sizes in int range, and every leading dimension at least the rows of its column-major operand (cuBLAS
 * refuses otherwise; OpenBLAS would print and skip the product). */
static int shape_ok(int transa, int transb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
    const int64_t big = INT32_MAX;
    if (m < 0 || n < 0 || k < 0 || m > big || n > big || k > big || lda > big || ldb > big || ldc > big)
        return tn_err("tn_cuda_gemm: shape m %lld n %lld k %lld out of range", (long long)m, (long long)n, (long long)k);
    const int64_t rows_a = transa ? k : m, rows_b = transb ? n : k;
    if (lda < (rows_a > 1 ? rows_a : 1) || ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1))
        return tn_err("tn_cuda_gemm: leading dimensions %lld, %lld, %lld too small for m %lld n %lld k %lld",
                      (long long)lda, (long long)ldb, (long long)ldc, (long long)m, (long long)n, (long long)k);
    return 0;
}

#ifdef TN_CUDA_EMU

/* Round a float to `bits` mantissa bits, to nearest even (finite values; inf and NaN unchanged). */
static float round_mantissa(float x, int bits) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    const int drop = 23 - bits;
    const uint32_t half = 1u << (drop - 1), rest = u & ((1u << drop) - 1);
    u >>= drop;
    if (rest > half || (rest == half && (u & 1))) u++;
    u <<= drop;
    memcpy(&x, &u, 4);
    return x;
}

/* A copy of the column-major [rows, cols] matrix (leading dimension ld) with rounded inputs. */
static std::vector<float> rounded(const float *A, int64_t rows, int64_t cols, int64_t ld, int bits) {
    std::vector<float> r((size_t)(ld * (cols - 1) + rows));
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) r[(size_t)(j * ld + i)] = round_mantissa(A[j * ld + i], bits);
    return r;
}

extern "C" int tn_cuda_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    TN_CHECK(shape_ok(transa, transb, m, n, k, lda, ldb, ldc));
    if (m == 0 || n == 0) return 0;
    if (!tn_emu::is_device_ptr(A) || !tn_emu::is_device_ptr(B) || !tn_emu::is_device_ptr(C))
        return tn_err("tn_cuda_gemm: an operand is not device memory");
    if (cudaError_t e = cudaPeekAtLastError()) return tn_cuda_err("tn_cuda_gemm", e);
    tn_emu::arena_scope open;
    std::vector<float> ra, rb;
    if (g_precision != TN_CUDA_FP32 && k > 0) {
        const int bits = g_precision == TN_CUDA_TF32 ? 10 : 7;
        ra = rounded(A, transa ? k : m, transa ? m : k, lda, bits);
        rb = rounded(B, transb ? n : k, transb ? k : n, ldb, bits);
        A = ra.data();
        B = rb.data();
    }
    cblas_sgemm(CblasColMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans, (blasint)m,
                (blasint)n, (blasint)k, alpha, A, (blasint)(lda > 0 ? lda : 1), B, (blasint)(ldb > 0 ? ldb : 1), beta,
                C, (blasint)(ldc > 0 ? ldc : 1));
    return 0;
}

static void *g_workspace = NULL;

extern "C" int tn_cuda_blas_init(size_t workspace_bytes) {
    if (g_workspace) return 0;
    g_workspace = tn_cuda_alloc(workspace_bytes); /* what cuBLAS would hold on a card, for the same arithmetic */
    return g_workspace ? 0 : -1;
}

extern "C" void tn_cuda_blas_shutdown(void) {
    tn_cuda_free(g_workspace);
    g_workspace = NULL;
}

#else

static cublasHandle_t g_blas = NULL;
static void *g_workspace = NULL;
static size_t g_workspace_bytes = 0;

static int blas_err(const char *what, cublasStatus_t s) { return tn_err("%s: %s", what, cublasGetStatusString(s)); }

/* The handle with a workspace of our own allocation (cublasSetWorkspace), so that cuBLAS allocates
 * nothing behind the memory plan's back. */
extern "C" int tn_cuda_blas_init(size_t workspace_bytes) {
    if (g_blas) return 0;
    cublasStatus_t s = cublasCreate(&g_blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        g_blas = NULL;
        return blas_err("cublasCreate", s);
    }
    g_workspace = tn_cuda_alloc(workspace_bytes);
    g_workspace_bytes = workspace_bytes;
    s = g_workspace ? cublasSetWorkspace(g_blas, g_workspace, workspace_bytes) : CUBLAS_STATUS_ALLOC_FAILED;
    if (s != CUBLAS_STATUS_SUCCESS) { /* no half-made handle: the next init starts over */
        int rc = g_workspace ? blas_err("cublasSetWorkspace", s) : -1;
        tn_cuda_blas_shutdown();
        return rc;
    }
    return 0;
}

static int blas_handle(cublasHandle_t *h) {
    if (!g_blas) TN_CHECK(tn_cuda_blas_init((size_t)4 << 20));
    *h = g_blas;
    return 0;
}

extern "C" int tn_cuda_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    TN_CHECK(shape_ok(transa, transb, m, n, k, lda, ldb, ldc));
    if (m == 0 || n == 0) return 0;
    cublasHandle_t h = NULL;
    TN_CHECK(blas_handle(&h));
    const cublasComputeType_t compute = g_precision == TN_CUDA_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                                        : g_precision == TN_CUDA_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                                      : CUBLAS_COMPUTE_32F;
    cublasStatus_t s = cublasGemmEx(h, transa ? CUBLAS_OP_T : CUBLAS_OP_N, transb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m,
                                    (int)n, (int)k, &alpha, A, CUDA_R_32F, (int)(lda > 0 ? lda : 1), B, CUDA_R_32F,
                                    (int)(ldb > 0 ? ldb : 1), &beta, C, CUDA_R_32F, (int)(ldc > 0 ? ldc : 1), compute,
                                    CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return blas_err("cublasGemmEx", s);
    return 0;
}

/* Queue cuBLAS work on stream s (0: the legacy default stream). cublasSetStream also resets the handle to
 * cuBLAS's own default workspace pool (cuBLAS documentation, cublasSetStream), which would allocate
 * behind the memory plan's back, and inside a graph capture: our workspace is set again at once. */
extern "C" int tn_cuda_blas_set_stream(cudaStream_t s) {
    cublasHandle_t h = NULL;
    TN_CHECK(blas_handle(&h));
    cublasStatus_t st = cublasSetStream(h, s);
    if (st != CUBLAS_STATUS_SUCCESS) return blas_err("cublasSetStream", st);
    st = cublasSetWorkspace(h, g_workspace, g_workspace_bytes);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : blas_err("cublasSetWorkspace", st);
}

extern "C" void tn_cuda_blas_shutdown(void) {
    if (g_blas) cublasDestroy(g_blas);
    g_blas = NULL;
    tn_cuda_free(g_workspace);
    g_workspace = NULL;
    g_workspace_bytes = 0;
}

#endif

/* Row-major y[N,out] = x[N,in] · W[out,in]ᵀ is, read column-major, yᵀ[out,N] = W · xᵀ, where the row-major
 * W buffer is the column-major [in,out] matrix Wᵀ (so op = T, lda = in) and the row-major x buffer is the
 * column-major [in,N] matrix xᵀ (op = N, ldb = in); yᵀ has ldc = out. */
extern "C" int tn_cuda_sgemm(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    if (N < 0 || in < 0 || out < 0)
        return tn_err("tn_cuda_sgemm: shape [%lld, %lld] x [%lld, %lld]^T out of range", (long long)N, (long long)in,
                      (long long)out, (long long)in);
    return tn_cuda_gemm(1, 0, out, N, in, 1.0f, W, in, x, in, beta, y, out);
}
