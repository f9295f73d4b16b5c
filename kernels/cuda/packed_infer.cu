/* The runner's float products with discrete or half-precision weights, and its embedding rows, on the GPU
 * (kernels/cuda/cuda_ops.h, "inference"). The weights are the CPU's bytes as they are (kernels/packed.h,
 * docs/PACKING.md); the T2 products with int8 activations are in t2.cu.
 *
 *   W [rows, cols] (packed L4 / L8, or binary16), X [n_tok, cols] float, Y [n_tok, rows] float:
 *   Y[t, r] = s_r · Σ_c w[r, c] · X[t, c]
 *   L4 / L8: w = grid[idx[r, c]], s_r = tensor_scale · row_scale[r] (tensor_scale when row_scale is NULL);
 *   F16:     w = float(W[r, c]) (exact widening), s_r = 1.
 *
 * Two kernels per format behind one entry point, picked by n_tok:
 *  - n_tok == 1, decoding (bandwidth bound: every weight byte is read once, so the weights' bytes set the
 *    time): a warp per row, 16-byte weight loads that a warp issues for 512 contiguous bytes of the row,
 *    the grid table in shared memory; per lane a float partial sum, then a shuffle tree (pk_gemv_*).
 *  - n_tok > 1, prefill: a block owns a tile of 64 rows x 16 tokens; per chunk of 128 columns it decodes the
 *    tile's weights into floats in shared memory once (then used for all 16 tokens) and stages the tokens'
 *    activations beside them; each thread accumulates 4 rows x 2 tokens from there (pk_gemm_kernel).
 * Sums are fp32 in an order of our own (nvcc contracts a·b + c into FFMA), so results agree with the CPU's
 * (whose paths also differ in their order) to float summation rounding, not bit for bit. Columns past `cols`
 * (the packed rows' padding) are never multiplied: gemv skips them, the tiled kernel stages zeros for
 * both the weight and the activation.
 *
 * Embedding rows (pk_embed_kernel): X[t, :] = row tokens[t] of W, dequantized with the CPU's own float
 * expression (runner/infer_ops_cpu.c tn_imat_row), so they are equal bit for bit: one multiply per element, which no
 * compiler contracts. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/t2_math.h"


#define PK_FULL 0xffffffffu

/* Loops over register arrays are unrolled completely, so the arrays stay in registers (the emulator's host
 * compiler decides for itself). */
#ifdef __CUDACC__
#define PK_PRAGMA(x) _Pragma(#x)
#define PK_UNROLL PK_PRAGMA(unroll)
#else
#define PK_UNROLL
#endif

enum pk_format { PK_L4, PK_L8, PK_F16 };

static constexpr int GV_WARPS = 8; /* gemv: rows (one warp each) per block; the L8 grid (1 KiB) is read per block */

static constexpr int GM_THREADS = 128; /* tiled: 4 warps */
static constexpr int GM_ROWS = 64;     /* rows of a tile */
static constexpr int GM_TOKS = 16;     /* tokens of a tile */
static constexpr int GM_KC = 128;      /* columns per staged chunk: one L4 block, two L8 blocks */
static constexpr int GM_LD = GM_KC + 4; /* row stride of the staged tiles in floats: 16-byte aligned rows, and
                                          rows 4 banks apart, so 8 lanes reading 8 rows' float4 hit 32 banks */
static_assert(GM_KC == GM_THREADS, "the activation staging gives each thread one column");
static_assert(GM_KC == TN_L4_BLOCK && GM_KC % TN_L8_BLOCK == 0, "a chunk is whole L4 / L8 blocks");

static constexpr int EM_THREADS = 256;   /* embedding rows: threads per block */
static constexpr int EM_MAX_BLOCKS = 64; /* blocks per token row; wider rows are strided */

/* ---- helpers -------------------------------------------------------------------------------------- */

/* Exact widening of a binary16 bit pattern (the emulator: the toolkit's host conversion). */
static __device__ __forceinline__ float pk_h2f(uint32_t bits) {
    __half_raw h;
    h.x = (unsigned short)(bits & 0xffffu);
    return __half2float(__half(h));
}

/* The CPU's lut_scale (kernels/cpu/packed_lut.c). */
static __device__ __forceinline__ float pk_row_s(float ts, const float *rs, int64_t r) { return rs ? ts * rs[r] : ts; }

static __device__ __forceinline__ float pk_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(PK_FULL, v, o);
    return v;
}

/* acc + Σ_j w_j · x[c + j] over the columns c .. c+3 that are < cols. One float4 load when the four are
 * columns and x is 16-byte aligned (xvec; c is always a multiple of 4), else element by element. */
static __device__ __forceinline__ float pk_dot4(float acc, float w0, float w1, float w2, float w3,
                                                const float *__restrict__ x, int64_t c, int64_t cols, int xvec) {
    if (xvec && c + 4 <= cols) {
        const float4 v = *reinterpret_cast<const float4 *>(x + c);
        acc += w0 * v.x;
        acc += w1 * v.y;
        acc += w2 * v.z;
        acc += w3 * v.w;
        return acc;
    }
    if (c < cols) acc += w0 * x[c];
    if (c + 1 < cols) acc += w1 * x[c + 1];
    if (c + 2 < cols) acc += w2 * x[c + 2];
    if (c + 3 < cols) acc += w3 * x[c + 3];
    return acc;
}

static __device__ __forceinline__ float4 pk_f4(float a, float b, float c, float d) { return make_float4(a, b, c, d); }

/* ---- gemv: n_tok == 1 --------------------------------------------------------------------------------
 * Common shape: grid = ceil(rows / GV_WARPS) blocks of GV_WARPS warps; warp w of block b owns row
 * r = b·GV_WARPS + w (warps past the last row leave after the grid table is loaded). Lane l reads the
 * row's 16-byte pieces l, l + 32, ...: a warp reads 512 contiguous bytes per step, coalesced. Each lane sums
 * its columns in float; xor-shuffles add the 32 partials; lane 0 writes y[r] = sum · s_r. W must be 16-byte
 * aligned (checked by the host): rows are multiples of 64 bytes long, so every piece is aligned. */

/* L4: W [rows, 64·ceil(cols/128)] bytes, grid [16]. Piece q of a row is words 4(q%4) .. 4(q%4)+3 of block
 * q/4; nibble s of word i is column 16s + i of the block, so piece q holds, for each s, the 4 consecutive
 * columns 128(q/4) + 16s + 4(q%4) + 0..3: one float4 of x per s. */
static __global__ void __launch_bounds__(32 * GV_WARPS)
pk_gemv_l4_kernel(const uint8_t *__restrict__ W, const float *__restrict__ grid, const float *__restrict__ row_scale,
                  float tensor_scale, int64_t rows, int64_t cols, const float *__restrict__ x, float *__restrict__ y,
                  int xvec) {
    __shared__ float g[16];
    if (threadIdx.x < 16) g[threadIdx.x] = grid[threadIdx.x];
    __syncthreads();
    const int64_t r = (int64_t)blockIdx.x * GV_WARPS + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (r >= rows) return; /* whole warps: the shuffles below stay full */
    const int64_t nq = (cols + TN_L4_BLOCK - 1) / TN_L4_BLOCK * 4;
    const uint4 *wr = reinterpret_cast<const uint4 *>(W + (size_t)r * (size_t)(nq * 16));
    float acc = 0.0f;
    for (int64_t q = lane; q < nq; q += 32) {
        const uint4 v = wr[q];
        const int64_t c = TN_L4_BLOCK * (q / 4) + 4 * (q % 4);
        PK_UNROLL
        for (int s = 0; s < 8; s++) {
            const int sh = 4 * s;
            acc = pk_dot4(acc, g[(v.x >> sh) & 15u], g[(v.y >> sh) & 15u], g[(v.z >> sh) & 15u], g[(v.w >> sh) & 15u],
                          x, c + 16 * s, cols, xvec);
        }
    }
    acc = pk_warp_sum(acc);
    if (lane == 0) y[r] = acc * pk_row_s(tensor_scale, row_scale, r);
}

/* L8: W [rows, 64·ceil(cols/64)] bytes (one index per column), grid [256]. Piece q is columns 16q .. 16q+15:
 * byte j of its word k is column 16q + 4k + j. */
static __global__ void __launch_bounds__(32 * GV_WARPS)
pk_gemv_l8_kernel(const uint8_t *__restrict__ W, const float *__restrict__ grid, const float *__restrict__ row_scale,
                  float tensor_scale, int64_t rows, int64_t cols, const float *__restrict__ x, float *__restrict__ y,
                  int xvec) {
    __shared__ float g[256];
    for (int i = (int)threadIdx.x; i < 256; i += 32 * GV_WARPS) g[i] = grid[i];
    __syncthreads();
    const int64_t r = (int64_t)blockIdx.x * GV_WARPS + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (r >= rows) return;
    const int64_t nq = (cols + TN_L8_BLOCK - 1) / TN_L8_BLOCK * 4;
    const uint4 *wr = reinterpret_cast<const uint4 *>(W + (size_t)r * (size_t)(nq * 16));
    float acc = 0.0f;
    for (int64_t q = lane; q < nq; q += 32) {
        const uint4 v = wr[q];
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
        PK_UNROLL
        for (int k = 0; k < 4; k++)
            acc = pk_dot4(acc, g[w[k] & 255u], g[(w[k] >> 8) & 255u], g[(w[k] >> 16) & 255u], g[w[k] >> 24], x,
                          16 * q + 4 * k, cols, xvec);
    }
    acc = pk_warp_sum(acc);
    if (lane == 0) y[r] = acc * pk_row_s(tensor_scale, row_scale, r);
}

/* F16: W [rows, cols] binary16. wvec (W 16-byte aligned and cols % 8 == 0, so every row is): piece q is
 * columns 8q .. 8q+7, half j in bits 16(j%2) of word j/2. Otherwise lane l reads columns l, l + 32, ...
 * (2-byte loads, still a contiguous 64 bytes per warp). No scale. */
static __global__ void __launch_bounds__(32 * GV_WARPS)
pk_gemv_f16_kernel(const uint16_t *__restrict__ W, int64_t rows, int64_t cols, const float *__restrict__ x,
                   float *__restrict__ y, int wvec, int xvec) {
    const int64_t r = (int64_t)blockIdx.x * GV_WARPS + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (r >= rows) return;
    const uint16_t *wr = W + (size_t)r * (size_t)cols;
    float acc = 0.0f;
    if (wvec) {
        const uint4 *w4 = reinterpret_cast<const uint4 *>(wr);
        for (int64_t q = lane; q < cols / 8; q += 32) {
            const uint4 v = w4[q];
            acc = pk_dot4(acc, pk_h2f(v.x), pk_h2f(v.x >> 16), pk_h2f(v.y), pk_h2f(v.y >> 16), x, 8 * q, cols, xvec);
            acc = pk_dot4(acc, pk_h2f(v.z), pk_h2f(v.z >> 16), pk_h2f(v.w), pk_h2f(v.w >> 16), x, 8 * q + 4, cols, xvec);
        }
    } else {
        for (int64_t c = lane; c < cols; c += 32) acc += pk_h2f(wr[c]) * x[c];
    }
    acc = pk_warp_sum(acc);
    if (lane == 0) y[r] = acc;
}

/* ---- tiled: n_tok > 1 --------------------------------------------------------------------------------
 * pk_gemm_kernel<FMT>. grid = (ceil(rows / 64), min(ceil(n_tok / 16), 65535)), block = 128 threads; token
 * tiles past gridDim.y loop. Block (bx, by) owns rows r0 = 64·bx .. r0+63 and tokens t0 = 16·by .. t0+15.
 * Per chunk of 128 columns c0 .. c0+127:
 *   Ws [64][GM_LD]: the tile's weights as floats (grid[idx] for L4/L8: the scale comes last, as on the CPU;
 *                   widened halves for F16), 0 past `cols` and for rows past `rows`: each weight byte of the
 *                   tile is read from memory once per 16 tokens;
 *   Xs [16][GM_LD]: X[t0 + t, c0 + c], 0 past `cols` and `n_tok`; thread c reads column c of each token
 *                   (128 consecutive floats per token, coalesced).
 * Thread (tr = tid / 8, tt = tid % 8) accumulates rows r0 + tr + 16i (i = 0..3) x tokens t0 + tt + 8j (j = 0, 1)
 * in 8 registers: per 4 columns 2 + 4 float4 loads from shared memory (Ws rows are a broadcast to the 8
 * lanes that share tr; the 8 Xs rows of 8 lanes lie in distinct banks) for 32 FMAs. Then Y = acc · s_r.
 * Threads whose first row or first token is past the end (small matrices, a last partial tile) skip the
 * FMAs but still stage and reach every barrier.
 * Shared memory: (64 + 16) · 132 floats + the 256-float grid = 43,264 bytes (static; under sm_61's 48 KiB). */
template <int FMT>
static __device__ __forceinline__ void pk_stage_weights(float *__restrict__ Ws, const uint8_t *__restrict__ W,
                                                        const float *__restrict__ g, int64_t rows, int64_t cols,
                                                        int64_t r0, int64_t c0, int wvec) {
    const int tid = (int)threadIdx.x;
    if constexpr (FMT == PK_L4) {
        /* 64 rows x 4 pieces of 16 bytes (one L4 block per row); piece p: columns 16s + 4p + 0..3, s = 0..7 */
        const size_t rb = (size_t)((cols + TN_L4_BLOCK - 1) / TN_L4_BLOCK) * TN_L4_BLOCK_BYTES;
        for (int e = tid; e < GM_ROWS * 4; e += GM_THREADS) {
            const int row = e / 4, p = e % 4;
            const int64_t r = r0 + row;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r < rows) v = *reinterpret_cast<const uint4 *>(W + (size_t)r * rb + (size_t)(c0 / TN_L4_BLOCK) * TN_L4_BLOCK_BYTES + 16 * p);
            PK_UNROLL
            for (int s = 0; s < 8; s++) {
                const int sh = 4 * s;
                const int64_t c = c0 + 16 * s + 4 * p;
                *reinterpret_cast<float4 *>(Ws + row * GM_LD + 16 * s + 4 * p) =
                    pk_f4(c < cols ? g[(v.x >> sh) & 15u] : 0.0f, c + 1 < cols ? g[(v.y >> sh) & 15u] : 0.0f,
                          c + 2 < cols ? g[(v.z >> sh) & 15u] : 0.0f, c + 3 < cols ? g[(v.w >> sh) & 15u] : 0.0f);
            }
        }
    } else if constexpr (FMT == PK_L8) {
        /* 64 rows x 8 pieces of 16 bytes; piece p: columns 16p + 0..15 */
        const size_t rb = (size_t)((cols + TN_L8_BLOCK - 1) / TN_L8_BLOCK) * TN_L8_BLOCK;
        for (int e = tid; e < GM_ROWS * 8; e += GM_THREADS) {
            const int row = e / 8, p = e % 8;
            const int64_t r = r0 + row, c = c0 + 16 * p;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r < rows && c < cols) v = *reinterpret_cast<const uint4 *>(W + (size_t)r * rb + (size_t)c);
            const uint32_t w[4] = {v.x, v.y, v.z, v.w};
            PK_UNROLL
            for (int k = 0; k < 4; k++) {
                const int64_t ck = c + 4 * k;
                *reinterpret_cast<float4 *>(Ws + row * GM_LD + 16 * p + 4 * k) =
                    pk_f4(ck < cols ? g[w[k] & 255u] : 0.0f, ck + 1 < cols ? g[(w[k] >> 8) & 255u] : 0.0f,
                          ck + 2 < cols ? g[(w[k] >> 16) & 255u] : 0.0f, ck + 3 < cols ? g[w[k] >> 24] : 0.0f);
            }
        }
    } else {
        const uint16_t *W16 = reinterpret_cast<const uint16_t *>(W);
        if (wvec) {
            /* 64 rows x 16 pieces of 8 halves (cols % 8 == 0: a piece is all columns or none) */
            for (int e = tid; e < GM_ROWS * 16; e += GM_THREADS) {
                const int row = e / 16, p = e % 16;
                const int64_t r = r0 + row, c = c0 + 8 * p;
                uint4 v = make_uint4(0u, 0u, 0u, 0u);
                if (r < rows && c < cols) v = *reinterpret_cast<const uint4 *>(W16 + (size_t)r * (size_t)cols + (size_t)c);
                float *d = Ws + row * GM_LD + 8 * p;
                /* a zero piece widens to zeros */
                *reinterpret_cast<float4 *>(d) = pk_f4(pk_h2f(v.x), pk_h2f(v.x >> 16), pk_h2f(v.y), pk_h2f(v.y >> 16));
                *reinterpret_cast<float4 *>(d + 4) = pk_f4(pk_h2f(v.z), pk_h2f(v.z >> 16), pk_h2f(v.w), pk_h2f(v.w >> 16));
            }
        } else {
            /* one half per thread and step: 128 consecutive columns of a row per step */
            for (int e = tid; e < GM_ROWS * GM_KC; e += GM_THREADS) {
                const int row = e / GM_KC, cc = e % GM_KC;
                const int64_t r = r0 + row, c = c0 + cc;
                Ws[row * GM_LD + cc] = r < rows && c < cols ? pk_h2f(W16[(size_t)r * (size_t)cols + (size_t)c]) : 0.0f;
            }
        }
    }
}

template <int FMT>
static __global__ void __launch_bounds__(GM_THREADS)
pk_gemm_kernel(const uint8_t *__restrict__ W, const float *__restrict__ grid, const float *__restrict__ row_scale,
               float tensor_scale, int64_t rows, int64_t cols, int64_t n_tok, const float *__restrict__ X,
               float *__restrict__ Y, int wvec) {
    __shared__ __align__(16) float Ws[GM_ROWS * GM_LD];
    __shared__ __align__(16) float Xs[GM_TOKS * GM_LD];
    __shared__ float g[256];
    const int tid = (int)threadIdx.x, tt = tid % 8, tr = tid / 8;
    if constexpr (FMT != PK_F16) {
        const int n_grid = FMT == PK_L4 ? 16 : 256;
        for (int i = tid; i < n_grid; i += GM_THREADS) g[i] = grid[i];
    }
    const int64_t r0 = (int64_t)blockIdx.x * GM_ROWS;
    for (int64_t t0 = (int64_t)blockIdx.y * GM_TOKS; t0 < n_tok; t0 += (int64_t)gridDim.y * GM_TOKS) {
        float acc[4][2];
        PK_UNROLL
        for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = 0.0f;
        for (int64_t c0 = 0; c0 < cols; c0 += GM_KC) {
            __syncthreads(); /* the grid is loaded / the previous chunk's readers are done */
            for (int t = 0; t < GM_TOKS; t++) {
                const int64_t tok = t0 + t, c = c0 + tid;
                Xs[t * GM_LD + tid] = tok < n_tok && c < cols ? X[tok * cols + c] : 0.0f;
            }
            pk_stage_weights<FMT>(Ws, W, g, rows, cols, r0, c0, wvec);
            __syncthreads();
            /* the last chunk: only its columns, rounded up to 4 (the staged zeros past them add nothing);
             * a thread whose first row or first token is past the end has no output to compute */
            const int kn = cols - c0 < GM_KC ? (int)((cols - c0 + 3) / 4 * 4) : GM_KC;
            if (r0 + tr >= rows || t0 + tt >= n_tok) continue;
            for (int k = 0; k < kn; k += 4) {
                const float4 xa = *reinterpret_cast<const float4 *>(Xs + tt * GM_LD + k);
                const float4 xb = *reinterpret_cast<const float4 *>(Xs + (tt + 8) * GM_LD + k);
                PK_UNROLL
                for (int i = 0; i < 4; i++) {
                    const float4 w = *reinterpret_cast<const float4 *>(Ws + (tr + 16 * i) * GM_LD + k);
                    acc[i][0] += w.x * xa.x;
                    acc[i][0] += w.y * xa.y;
                    acc[i][0] += w.z * xa.z;
                    acc[i][0] += w.w * xa.w;
                    acc[i][1] += w.x * xb.x;
                    acc[i][1] += w.y * xb.y;
                    acc[i][1] += w.z * xb.z;
                    acc[i][1] += w.w * xb.w;
                }
            }
        }
        PK_UNROLL
        for (int i = 0; i < 4; i++) {
            const int64_t r = r0 + tr + 16 * i;
            if (r >= rows) continue;
            const float s = FMT == PK_F16 ? 1.0f : pk_row_s(tensor_scale, row_scale, r);
            PK_UNROLL
            for (int j = 0; j < 2; j++) {
                const int64_t t = t0 + tt + 8 * j;
                if (t < n_tok) Y[t * rows + r] = FMT == PK_F16 ? acc[i][j] : acc[i][j] * s;
            }
        }
    }
}

/* ---- embedding rows ---------------------------------------------------------------------------------
 * pk_embed_kernel<DT>. grid = (min(ceil(cols / 256), 64), min(n_tok, 65535)), block = 256 threads; tokens
 * past gridDim.y loop. Block (bx, by) writes X[t, c] for t = by, by + gridDim.y, ... and c = 256·bx + tid,
 * strided by 256·gridDim.x (consecutive threads: consecutive outputs). W row r starts at r·rb bytes.
 * Element c of row r, as runner/infer_ops_cpu.c tn_imat_row computes it (s = tensor_scale · (row_scale ? row_scale[r] : 1)):
 *   F32: W's float; F16: the half widened exactly; T2: s · (float)(code - 1) with the code at
 *   tn_t2_col_byte(c) / tn_t2_col_shift(c); L4: s · grid[nibble], byte 64(c/128) + 4(c%16) + (c%128)/32,
 *   high nibble when (c%128)/16 is odd; L8: s · grid[byte c].
 * A token outside [0, rows) (the caller checks; this only keeps a bad one from reading outside W) gives a
 * row of NaN, which shows downstream. */
template <int DT>
static __device__ __forceinline__ float pk_embed_elem(const uint8_t *__restrict__ p, int64_t c,
                                                      const float *__restrict__ grid, float s) {
    if constexpr (DT == TN_PACKED_F32) {
        return reinterpret_cast<const float *>(p)[c];
    } else if constexpr (DT == TN_PACKED_F16) {
        return pk_h2f(reinterpret_cast<const uint16_t *>(p)[c]);
    } else if constexpr (DT == TN_PACKED_T2) {
        const int code = (p[tn_t2_col_byte(c)] >> tn_t2_col_shift(c)) & 3;
        return s * (float)(code - 1);
    } else if constexpr (DT == TN_PACKED_L4) {
        const int64_t in = c % TN_L4_BLOCK;
        const uint8_t b = p[(c / TN_L4_BLOCK) * TN_L4_BLOCK_BYTES + 4 * (in % 16) + in / 32];
        return s * grid[(b >> (4 * ((in / 16) & 1))) & 15];
    } else {
        return s * grid[p[c]];
    }
}

template <int DT>
static __global__ void __launch_bounds__(EM_THREADS)
pk_embed_kernel(const uint8_t *__restrict__ W, const float *__restrict__ grid, const float *__restrict__ row_scale,
                float tensor_scale, int64_t rows, int64_t cols, size_t rb, const int32_t *__restrict__ tokens,
                int64_t n_tok, float *__restrict__ X) {
    const int64_t first = (int64_t)blockIdx.x * EM_THREADS + threadIdx.x, stride = (int64_t)gridDim.x * EM_THREADS;
    for (int64_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        const int64_t r = tokens[t];
        float *out = X + t * cols;
        if (r < 0 || r >= rows) {
            for (int64_t c = first; c < cols; c += stride) out[c] = __int_as_float(0x7fffffff);
            continue;
        }
        const uint8_t *p = W + (size_t)r * rb;
        const float s = DT == TN_PACKED_F32 || DT == TN_PACKED_F16 ? 1.0f : tensor_scale * (row_scale ? row_scale[r] : 1.0f);
        for (int64_t c = first; c < cols; c += stride) out[c] = pk_embed_elem<DT>(p, c, grid, s);
    }
}

/* ---- host side ------------------------------------------------------------------------------------ */

static bool pk_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The products' argument checks: -1 (tn_err) on a bad argument, 0 when there is nothing to do, 1 to go on. */
static int pk_args(const char *name, const void *W, const float *grid, bool need_grid, int64_t rows, int64_t cols,
                   int64_t n_tok, const float *X, const float *Y) {
    if (rows < 0 || n_tok < 0)
        return tn_err("%s: rows = %lld, n_tok = %lld (must be >= 0)", name, (long long)rows, (long long)n_tok);
    if (cols < 0 || cols > TN_PACKED_MAX_COLS)
        return tn_err("%s: cols = %lld out of range (max %lld)", name, (long long)cols, (long long)TN_PACKED_MAX_COLS);
    if (rows == 0 || n_tok == 0) return 0;
    if (!W || !X || !Y || (need_grid && !grid)) return tn_err("%s: NULL weights, grid, X or Y", name);
    if ((rows + GV_WARPS - 1) / GV_WARPS > INT32_MAX) return tn_err("%s: %lld rows is too many", name, (long long)rows);
    return 1;
}

static dim3 pk_gemv_grid(int64_t rows) { return dim3((unsigned)((rows + GV_WARPS - 1) / GV_WARPS)); }
static dim3 pk_gemm_grid(int64_t rows, int64_t n_tok) {
    const int64_t ty = (n_tok + GM_TOKS - 1) / GM_TOKS;
    return dim3((unsigned)((rows + GM_ROWS - 1) / GM_ROWS), (unsigned)(ty < 65535 ? ty : 65535));
}

/* L4 and L8 differ in their kernels only. */
static int pk_lut_gemm(const char *name, int fmt, const uint8_t *W, const float *grid, const float *row_scale,
                       float tensor_scale, int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    const int a = pk_args(name, W, grid, true, rows, cols, n_tok, X, Y);
    if (a <= 0) return a;
    if (!pk_aligned16(W)) return tn_err("%s: packed weights not 16-byte aligned", name);
    if (n_tok == 1) {
        const int xvec = pk_aligned16(X);
        if (fmt == PK_L4)
            TN_LAUNCH(pk_gemv_l4_kernel, pk_gemv_grid(rows), 32 * GV_WARPS, 0, W, grid, row_scale, tensor_scale, rows,
                      cols, X, Y, xvec);
        else
            TN_LAUNCH(pk_gemv_l8_kernel, pk_gemv_grid(rows), 32 * GV_WARPS, 0, W, grid, row_scale, tensor_scale, rows,
                      cols, X, Y, xvec);
    } else {
        auto k = fmt == PK_L4 ? pk_gemm_kernel<PK_L4> : pk_gemm_kernel<PK_L8>;
        TN_LAUNCH(k, pk_gemm_grid(rows, n_tok), GM_THREADS, 0, W, grid, row_scale, tensor_scale, rows, cols, n_tok, X,
                  Y, 0);
    }
    TN_CU_LAUNCHED(fmt == PK_L4 ? "tn_cuda_l4_gemm: launch" : "tn_cuda_l8_gemm: launch");
    return 0;
}

extern "C" int tn_cuda_l4_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale,
                               int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    return pk_lut_gemm("tn_cuda_l4_gemm", PK_L4, W, grid, row_scale, tensor_scale, rows, cols, n_tok, X, Y);
}

extern "C" int tn_cuda_l8_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale,
                               int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    return pk_lut_gemm("tn_cuda_l8_gemm", PK_L8, W, grid, row_scale, tensor_scale, rows, cols, n_tok, X, Y);
}

extern "C" int tn_cuda_f16_gemm(const uint16_t *W, int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    const int a = pk_args("tn_cuda_f16_gemm", W, NULL, false, rows, cols, n_tok, X, Y);
    if (a <= 0) return a;
    if (((uintptr_t)W & 1u) != 0) return tn_err("tn_cuda_f16_gemm: weights not 2-byte aligned");
    const int wvec = pk_aligned16(W) && cols % 8 == 0;
    if (n_tok == 1) {
        TN_LAUNCH(pk_gemv_f16_kernel, pk_gemv_grid(rows), 32 * GV_WARPS, 0, W, rows, cols, X, Y, wvec, (int)pk_aligned16(X));
    } else {
        auto k = pk_gemm_kernel<PK_F16>;
        TN_LAUNCH(k, pk_gemm_grid(rows, n_tok), GM_THREADS, 0, reinterpret_cast<const uint8_t *>(W), (const float *)NULL,
                  (const float *)NULL, 1.0f, rows, cols, n_tok, X, Y, wvec);
    }
    TN_CU_LAUNCHED("tn_cuda_f16_gemm: launch");
    return 0;
}

extern "C" int tn_cuda_embed_rows(int dtype, const void *W, const float *grid, const float *row_scale,
                                  float tensor_scale, int64_t rows, int64_t cols, const int32_t *tokens, int64_t n_tok,
                                  float *X) {
    static const char name[] = "tn_cuda_embed_rows";
    if (dtype < TN_PACKED_F32 || dtype > TN_PACKED_L8) return tn_err("%s: unknown dtype %d", name, dtype);
    if (rows < 0 || n_tok < 0)
        return tn_err("%s: rows = %lld, n_tok = %lld (must be >= 0)", name, (long long)rows, (long long)n_tok);
    if (cols < 0 || cols > TN_PACKED_MAX_COLS)
        return tn_err("%s: cols = %lld out of range (max %lld)", name, (long long)cols, (long long)TN_PACKED_MAX_COLS);
    if (n_tok == 0 || cols == 0) return 0;
    if (rows == 0) return tn_err("%s: %lld tokens of an empty table", name, (long long)n_tok);
    const bool lut = dtype == TN_PACKED_L4 || dtype == TN_PACKED_L8;
    if (!W || !tokens || !X || (lut && !grid)) return tn_err("%s: NULL weights, grid, tokens or X", name);
    const size_t align = dtype == TN_PACKED_F32 ? 4 : dtype == TN_PACKED_F16 ? 2 : 1;
    if ((uintptr_t)W % align != 0) return tn_err("%s: weights not %zu-byte aligned", name, align);
    const size_t rb = dtype == TN_PACKED_F32   ? (size_t)cols * 4
                      : dtype == TN_PACKED_F16 ? (size_t)cols * 2
                      : dtype == TN_PACKED_T2  ? tn_t2_row_bytes(cols)
                      : dtype == TN_PACKED_L4  ? tn_l4_row_bytes(cols)
                                               : tn_l8_row_bytes(cols);
    const int64_t bx = (cols + EM_THREADS - 1) / EM_THREADS;
    const dim3 eg((unsigned)(bx < EM_MAX_BLOCKS ? bx : EM_MAX_BLOCKS), (unsigned)(n_tok < 65535 ? n_tok : 65535));
    const uint8_t *Wb = static_cast<const uint8_t *>(W);
    auto k = pk_embed_kernel<TN_PACKED_F32>;
    switch (dtype) {
    case TN_PACKED_F16: k = pk_embed_kernel<TN_PACKED_F16>; break;
    case TN_PACKED_T2: k = pk_embed_kernel<TN_PACKED_T2>; break;
    case TN_PACKED_L4: k = pk_embed_kernel<TN_PACKED_L4>; break;
    case TN_PACKED_L8: k = pk_embed_kernel<TN_PACKED_L8>; break;
    default: break;
    }
    TN_LAUNCH(k, eg, EM_THREADS, 0, Wb, grid, row_scale, tensor_scale, rows, cols, rb, tokens, n_tok, X);
    TN_CU_LAUNCHED("tn_cuda_embed_rows: launch");
    return 0;
}
