/* T2 (ternary) products on the GPU: the CPU packed layout as is (docs/PACKING.md), int8 activations.
 *
 * Kernel t2_gemm_kernel: one warp per (row, token).
 *   W [rows, row_bytes] packed, Xq [n_tok, cols] int8, xscales [n_tok], row_scale [rows] or NULL,
 *   Y [n_tok, rows]. grid = (ceil(rows / 4), min(n_tok, 65535)), block = 4 warps (128 threads);
 *   tokens past gridDim.y loop.
 * Each lane reads 32-bit words lane, lane+32, ... of the row (a warp reads 128 contiguous bytes = 2
 * blocks per step, coalesced) and, for each group k, the 4 activations 256b + 64k + 4(i%16) + 0..3, and
 * accumulates sum (code-1)*q with one __vsub4 + __dp4a (kernels/t2_math.h, tn_t2_lane_dot). The warp sums
 * the exact int32 partials with shuffles; lane 0 applies the CPU epilogue (tn_t2_out), so Y equals the
 * CPU tn_t2_gemv / tn_t2_gemm bit for bit. Not tuned: weights are re-read per token (from L2 for small
 * n_tok); a tiled multi-token kernel is the next step for prefill. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/t2_math.h"

#define T2_WARPS 4

__global__ void __launch_bounds__(32 * T2_WARPS)
t2_gemm_kernel(const uint8_t *__restrict__ W, const float *__restrict__ row_scale, float tensor_scale, int64_t rows,
               int64_t cols, int64_t n_tok, const int8_t *__restrict__ Xq, const float *__restrict__ xscales,
               float *__restrict__ Y) {
    const int64_t r = (int64_t)blockIdx.x * T2_WARPS + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (r >= rows) return; /* r is the same for the 32 lanes: whole warps leave, shuffles stay full */
    const size_t rb = (size_t)((cols + TN_T2_BLOCK - 1) / TN_T2_BLOCK) * TN_T2_BLOCK_BYTES;
    const uint8_t *wrow = W + (size_t)r * rb;
    const float s = tn_t2_row_s(tensor_scale, row_scale, r);
    for (int64_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        int32_t acc = tn_t2_lane_dot(wrow, cols, Xq + t * cols, lane, 32);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
        if (lane == 0) Y[t * rows + r] = tn_t2_out(acc, xscales[t], s);
    }
}

extern "C" int tn_cuda_t2_gemm(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows,
                               int64_t cols, int64_t n_tok, const int8_t *Xq, const float *xscales, float *Y) {
    if (rows <= 0 || n_tok <= 0) return 0;
    if (cols < 0 || cols > TN_PACKED_MAX_COLS)
        return tn_err("tn_cuda_t2_gemm: cols = %lld out of range (max %lld)", (long long)cols,
                      (long long)TN_PACKED_MAX_COLS);
    if (((uintptr_t)W & 3u) != 0) return tn_err("tn_cuda_t2_gemm: packed weights not 4-byte aligned");
    int64_t gx = (rows + T2_WARPS - 1) / T2_WARPS;
    if (gx > INT32_MAX) return tn_err("tn_cuda_t2_gemm: %lld rows is too many", (long long)rows);
    dim3 grid((unsigned)gx, (unsigned)(n_tok < 65535 ? n_tok : 65535));
    TN_LAUNCH(t2_gemm_kernel, grid, 32 * T2_WARPS, 0, W, row_scale, tensor_scale, rows, cols, n_tok, Xq, xscales, Y);
    TN_CU_LAUNCHED("tn_cuda_t2_gemm: launch");
    return 0;
}

extern "C" int tn_cuda_t2_gemv(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows,
                               int64_t cols, const int8_t *xq, const float *xscale, float *y) {
    return tn_cuda_t2_gemm(W, row_scale, tensor_scale, rows, cols, 1, xq, xscale, y);
}
