/* T2 (ternary) products on the GPU: the CPU packed layout as is (docs/PACKING.md), int8 activations.
 *   W [rows, row_bytes] packed, Xq [n_tok, cols] int8, xscales [n_tok], row_scale [rows] or NULL,
 *   Y [n_tok, rows]:  Y[t, r] = ((float)Σ_c w[r, c]·Xq[t, c] · xscales[t]) · s_r  (tn_t2_out, tn_t2_row_s).
 * The integer sums are exact whatever the order, and the epilogue is the CPU's float expression, so every
 * kernel here equals the CPU tn_t2_gemv / tn_t2_gemm bit for bit. tn_cuda_t2_gemm runs one of two kernels:
 *
 * n_tok == 1 (decoding), t2_gemm_kernel: one warp per (row, token).
 *   grid = (ceil(rows / 4), min(n_tok, 65535)), block = 4 warps (128 threads); tokens past gridDim.y loop
 *   (launched with n_tok = 1: one row per warp, each weight byte read once).
 * Each lane reads 32-bit words lane, lane+32, ... of the row (a warp reads 128 contiguous bytes = 2
 * blocks per step, coalesced) and, for each group k, the 4 activations 256b + 64k + 4(i%16) + 0..3, and
 * accumulates sum (code-1)*q with one __vsub4 + __dp4a (kernels/t2_math.h, tn_t2_lane_dot). The warp sums
 * the exact int32 partials with shuffles; lane 0 applies the CPU epilogue (tn_t2_out). Weights would be
 * re-read per token, hence the tiled kernel for more tokens.
 *
 * n_tok > 1 (prefill), t2_gemm_tiled_kernel: a block owns 32 rows x 8 tokens and reads each packed weight
 * word once for its 8 tokens. See the comment above it. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/t2_math.h"

#define T2_WARPS 4

/* Loops over register arrays are unrolled completely, so the arrays stay in registers (the emulator's host
 * compiler decides for itself). */
#ifdef __CUDACC__
#define T2_PRAGMA(x) _Pragma(#x)
#define T2_UNROLL T2_PRAGMA(unroll)
#else
#define T2_UNROLL
#endif

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

/* t2_gemm_tiled_kernel. grid = (ceil(rows / 32), min(ceil(n_tok / 8), 65535)), block = 8 warps (256
 * threads); token tiles past gridDim.y loop. Block (bx, by) owns rows 32·bx .. +31 (warp w: the 4 rows
 * 32·bx + 4w .. +3; rows past the end re-read the last row and are not written) and tokens t0 = 8·by .. +7.
 *
 * The row is walked in chunks of 64 words (4 blocks = 1024 columns). Per chunk:
 *   - the block stages the 8 tokens' activations of the chunk's columns in shared memory as 32-bit words,
 *     xs[c4][t] = Xq[t0 + t, c0 + 4·c4 .. +3] (c4 = 0..255; 0 past cols and past n_tok). The 8 words of a
 *     column quad are two uint4, so a lane reads all 8 tokens' activations of a quad in two loads. Halves
 *     are swapped when bit 2 of c4 is set (a swizzle): then 8 lanes reading the quads 16k + 0..7 hit 32
 *     distinct banks, and the staging stores (4 quads x 8 tokens per warp) do too.
 *   - lane l takes words l and l+32 of the chunk of each of its warp's 4 rows (4-byte loads, a warp reads 128
 *     contiguous bytes of a row: coalesced). Word i covers, for group k = 0..3, the columns
 *     256(i/16) + 64k + 4(i%16) + 0..3, i.e. quad c4 = 64(i/16) + 16k + i%16. Per word and group: the codes
 *     of the 4 rows (tn_t2_word_codes, once) times the quad of each of the 8 tokens (tn_t2_dot4: per-byte
 *     (code-1)·q, one __dp4a on the device): 32 exact int32 dot products from one weight load per row.
 * Each lane holds 4 x 8 int32 partial sums. A reduce-scatter over the warp (31 xor-shuffles: at each step a
 * lane keeps half of its sums and receives its partner's half of the same outputs) leaves lane l with the
 * exact total of row l/8, token l%8, which it writes with the CPU epilogue.
 * Shared memory: 256 x 8 words = 8 KiB. */
#define T2T_WARPS 8
#define T2T_ROWS_PER_WARP 4
#define T2T_ROWS (T2T_WARPS * T2T_ROWS_PER_WARP)
#define T2T_TOKS 8
#define T2T_WORDS 64                 /* words of a row per chunk */
#define T2T_QUADS (T2T_WORDS * 4)    /* 4-column quads per chunk: 16 columns per word */

/* One step of the warp's reduce-scatter of 2·O live sums a[0 .. 2O-1] (O = 16, 8, 4, 2, 1): the lane keeps
 * the half selected by its bit O, moved down to a[0 .. O-1], and adds its partner's partial sums of the same
 * outputs. After O = 1, a[0] of lane l is the warp's total of the original a[l]. (A template, so that every
 * index is a constant and the sums stay in registers.) */
template <int O> static __device__ __forceinline__ void t2_rs_step(int32_t *a, int lane) {
    const bool up = (lane & O) != 0;
    T2_UNROLL
    for (int j = 0; j < O; j++) {
        const int32_t send = up ? a[j] : a[j + O], keep = up ? a[j + O] : a[j];
        a[j] = keep + __shfl_xor_sync(0xffffffffu, send, O);
    }
}

__global__ void __launch_bounds__(32 * T2T_WARPS)
t2_gemm_tiled_kernel(const uint8_t *__restrict__ W, const float *__restrict__ row_scale, float tensor_scale,
                     int64_t rows, int64_t cols, int64_t n_tok, const int8_t *__restrict__ Xq,
                     const float *__restrict__ xscales, float *__restrict__ Y) {
    __shared__ uint4 xs[T2T_QUADS * 2]; /* [c4][half], half h = tokens 4h .. 4h+3 (swizzled, see above) */
    uint32_t *xw = reinterpret_cast<uint32_t *>(xs);
    const int tid = (int)threadIdx.x, lane = tid % 32, warp = tid / 32;
    const size_t rb = (size_t)((cols + TN_T2_BLOCK - 1) / TN_T2_BLOCK) * TN_T2_BLOCK_BYTES;
    const int64_t nw = (int64_t)(rb / 4); /* words per row */
    const int64_t rw = (int64_t)blockIdx.x * T2T_ROWS + warp * T2T_ROWS_PER_WARP;
    const uint8_t *wrow[T2T_ROWS_PER_WARP];
    T2_UNROLL
    for (int i = 0; i < T2T_ROWS_PER_WARP; i++) wrow[i] = W + (size_t)(rw + i < rows ? rw + i : rows - 1) * rb;

    for (int64_t t0 = (int64_t)blockIdx.y * T2T_TOKS; t0 < n_tok; t0 += (int64_t)gridDim.y * T2T_TOKS) {
        int32_t acc[T2T_ROWS_PER_WARP * T2T_TOKS]; /* acc[8i + t]: row i of the warp, token t0 + t */
        T2_UNROLL
        for (int j = 0; j < T2T_ROWS_PER_WARP * T2T_TOKS; j++) acc[j] = 0;
        for (int64_t w0 = 0; w0 < nw; w0 += T2T_WORDS) {
            const int64_t c0 = 16 * w0; /* first column of the chunk */
            __syncthreads();            /* the previous chunk's readers are done */
            /* e -> quad (e & 3) + 4·(e / 32), token (e / 4) % 8: a warp stages 4 quads (16 bytes) of 8 tokens */
            for (int e = tid; e < T2T_QUADS * T2T_TOKS; e += 32 * T2T_WARPS) {
                const int c4 = (e & 3) | ((e >> 5) << 2), t = (e >> 2) & 7;
                const int64_t tok = t0 + t;
                const uint32_t v = tok < n_tok ? tn_t2_load_x4(Xq + tok * cols, c0 + 4 * c4, cols) : 0u;
                xw[c4 * 8 + (t ^ (4 * ((c4 >> 2) & 1)))] = v;
            }
            __syncthreads();
            const int64_t left = nw - w0;
            const int nwc = left < T2T_WORDS ? (int)left : T2T_WORDS; /* 16, 32, 48 or 64 */
            if (rw >= rows) continue; /* a warp past the last row: nothing to compute (it joins the barriers) */
            for (int w = lane; w < nwc; w += 32) {
                uint32_t v[T2T_ROWS_PER_WARP];
                T2_UNROLL
                for (int i = 0; i < T2T_ROWS_PER_WARP; i++) v[i] = tn_t2_load_w4(wrow[i], w0 + w);
                T2_UNROLL
                for (int k = 0; k < 4; k++) {
                    const int c4 = 64 * (w / 16) + 16 * k + w % 16, sw = (c4 >> 2) & 1;
                    const uint4 lo = xs[2 * c4 + sw], hi = xs[2 * c4 + (sw ^ 1)];
                    const uint32_t x[T2T_TOKS] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                    T2_UNROLL
                    for (int i = 0; i < T2T_ROWS_PER_WARP; i++) {
                        const uint32_t codes = tn_t2_word_codes(v[i], k);
                        T2_UNROLL
                        for (int t = 0; t < T2T_TOKS; t++) acc[T2T_TOKS * i + t] += tn_t2_dot4(codes, x[t]);
                    }
                }
            }
        }
        /* Reduce-scatter (t2_rs_step): afterwards acc[0] of lane l is output l (row l/8, token l%8), summed
         * over the warp. */
        t2_rs_step<16>(acc, lane);
        t2_rs_step<8>(acc, lane);
        t2_rs_step<4>(acc, lane);
        t2_rs_step<2>(acc, lane);
        t2_rs_step<1>(acc, lane);
        const int64_t r = rw + lane / T2T_TOKS, t = t0 + lane % T2T_TOKS;
        if (r < rows && t < n_tok) Y[t * rows + r] = tn_t2_out(acc[0], xscales[t], tn_t2_row_s(tensor_scale, row_scale, r));
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
    if (n_tok == 1) {
        TN_LAUNCH(t2_gemm_kernel, dim3((unsigned)gx), 32 * T2_WARPS, 0, W, row_scale, tensor_scale, rows, cols, n_tok,
                  Xq, xscales, Y);
    } else {
        const int64_t ty = (n_tok + T2T_TOKS - 1) / T2T_TOKS;
        const dim3 grid((unsigned)((rows + T2T_ROWS - 1) / T2T_ROWS), (unsigned)(ty < 65535 ? ty : 65535));
        TN_LAUNCH(t2_gemm_tiled_kernel, grid, 32 * T2T_WARPS, 0, W, row_scale, tensor_scale, rows, cols, n_tok, Xq,
                  xscales, Y);
    }
    TN_CU_LAUNCHED("tn_cuda_t2_gemm: launch");
    return 0;
}

extern "C" int tn_cuda_t2_gemv(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows,
                               int64_t cols, const int8_t *xq, const float *xscale, float *y) {
    return tn_cuda_t2_gemm(W, row_scale, tensor_scale, rows, cols, 1, xq, xscale, y);
}
