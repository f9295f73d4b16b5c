/* CUDA backend (built with -DTN_CUDA=ON; docs/CUDA.md). A plain C header: callers need no CUDA headers.
 * The library defines TN_HAVE_CUDA for every target that links trinity_cuda.
 *
 * Memory: every array argument of the products is DEVICE memory (tn_cuda_alloc / cudaMalloc), including
 * scales, so that quantize -> product chains never return to the host. Work is queued on the default
 * stream and is asynchronous with the host: tn_cuda_download (or tn_cuda_sync) waits for it.
 *
 * Errors: functions return 0 / a pointer, or -1 / NULL with a message in tn_errmsg() (core/error.h).
 * Launch errors are reported by the call that launches; faults inside a kernel by the next synchronising
 * call. Single host thread assumed for now (one cuBLAS handle, created on first use). */
#ifndef TN_KERNELS_CUDA_OPS_H
#define TN_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if device 0 exists and can run this build's kernels; else 0 and, if reason != NULL, *reason points to
 * a static message ("no CUDA device: ...", "no kernel image for sm_61 in this build (...)"). Cheap after
 * the first call (the answer is cached). */
int tn_cuda_available(const char **reason);

/* Device memory. tn_cuda_alloc(0) returns a valid (unique) pointer; tn_cuda_free(NULL) does nothing. */
void *tn_cuda_alloc(size_t bytes);
void tn_cuda_free(void *dev);
int tn_cuda_upload(void *dev_dst, const void *host_src, size_t bytes);   /* waits for the copy */
int tn_cuda_download(void *host_dst, const void *dev_src, size_t bytes); /* waits for queued work */
int tn_cuda_memset0(void *dev, size_t bytes);
int tn_cuda_sync(void);

/* ---- int8 activations (kernels/packed.h tn_act_quant_i8_rows, bit-exact) ---------------------------
 * X [n_tok, n] float -> Q [n_tok, n] int8, scales [n_tok]. One thread block per token. */
int tn_cuda_act_quant_i8(const float *X, int64_t n_tok, int64_t n, int8_t *Q, float *scales);

/* ---- T2 products (kernels/packed.h tn_t2_gemv / tn_t2_gemm, bit-exact) ----------------------------
 * W: T2-packed [rows, cols] exactly as on the CPU (row r at r * tn_t2_row_bytes(cols)), 4-byte aligned.
 * row_scale [rows] or NULL; tensor_scale a host float. cols <= TN_PACKED_MAX_COLS.
 * gemv: xq [cols], *xscale (one float, device), y [rows].
 * gemm: Xq [n_tok, cols], xscales [n_tok], Y [n_tok, rows]. Any cols (odd, unaligned rows of Xq are fine). */
int tn_cuda_t2_gemv(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                    const int8_t *xq, const float *xscale, float *y);
int tn_cuda_t2_gemm(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                    int64_t n_tok, const int8_t *Xq, const float *xscales, float *Y);

/* ---- float GEMM: the one cuBLAS wrapper (kernels/cuda/blas.cu) -------------------------------------
 * Column-major C[m, n] = alpha · op(A) · op(B) + beta · C exactly as cublasSgemm (trans = 1: op = ᵀ), all
 * float. In the emulated build the same arguments go to OpenBLAS cblas_sgemm(CblasColMajor, ...).
 * Sizes and leading dimensions <= INT32_MAX. Precision: the compute mode below. */
enum { TN_CUDA_FP32 = 0, TN_CUDA_TF32 = 1, TN_CUDA_BF16 = 2 };
int tn_cuda_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* FP32 (default, exact FP32 products), TF32 or BF16 (tensor cores round the inputs; needs sm_80). */
int tn_cuda_set_precision(int precision);
int tn_cuda_get_precision(void);
/* Row-major y[N, out] = x[N, in] · W[out, in]ᵀ (+ beta · y) (kernels/ops.h tn_op_linear, to float rounding). */
int tn_cuda_sgemm(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta);

/* 1 when this build runs kernels on the CPU emulator (-DTN_CUDA_EMU=ON), 0 for a real CUDA build. */
int tn_cuda_is_emulated(void);
/* Release the cuBLAS handle (optional, e.g. before exit under a leak checker). */
void tn_cuda_shutdown(void);

#ifdef __cplusplus
}
#endif

#endif
