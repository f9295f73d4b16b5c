/* Packed discrete-weight kernels for inference on CPU: T2 (ternary, 2 bits per weight) with int8
 * activations, and L4 / L8 (4- / 8-bit indices into a small float grid) with float activations.
 * docs/PACKING.md describes every layout byte by byte and the arithmetic of each kernel.
 *
 * Shapes: a weight matrix W is [rows, cols] = [out, in], row-major; a product is y = W·x with
 * x [cols] and y [rows]. Batched forms take X [n_tok, cols] and write Y [n_tok, rows].
 *
 * Dispatch: each product picks a path at run time from the CPU (scalar, AVX2, AVX-VNNI, AVX-512 with
 * VNNI); the environment variable TN_KERNELS=scalar|avx2|avxvnni|avx512 caps it (kernels/cpu/
 * cpu_features.h). Every SIMD path has a scalar reference and gives the same result: bit-exact for T2
 * (the dot product is an exact integer), within float rounding (summation order) for L4/L8.
 *
 * Threads: products split rows over OpenMP threads (omp_get_max_threads(), or tn_packed_set_threads).
 * Small products (under ~64K weights per thread) run on fewer threads. Called from inside an OpenMP
 * parallel region, a product runs on the calling thread only (so a caller may split rows itself: a
 * slice of whole rows of a packed matrix is a packed matrix, starting at r0 * row_bytes).
 * Results never depend on the number of threads.
 *
 * Packed buffers need no particular alignment, but 64-byte alignment (tn_alloc, TRIN data) is fastest.
 * None of these functions allocate on the hot path or fail: shapes are checked by the caller (the TRIN
 * reader), within the limits below. */
#ifndef TN_KERNELS_PACKED_H
#define TN_KERNELS_PACKED_H

#include <stddef.h>
#include <stdint.h>

/* How a weight matrix is stored. The values are TRIN's dtype codes (export/trin.h tn_trin_dtype, checked
 * there), so a tensor's dtype passes through unchanged. */
typedef enum {
    TN_PACKED_F32 = 0, /* float */
    TN_PACKED_F16 = 1, /* IEEE binary16 */
    TN_PACKED_T2 = 2,  /* ternary, 2 bits (below) */
    TN_PACKED_L4 = 3,  /* 4-bit grid indices */
    TN_PACKED_L8 = 4,  /* 8-bit grid indices */
    TN_PACKED_Q8 = 5,  /* int8, one float scale per row (LM heads, embedding tables) */
    TN_PACKED_Q4 = 6   /* 4-bit, blocks of 32 with an fp16 scale each (GGML's Q4_0 block) */
} tn_packed_dtype;

/* Largest supported `cols` for every product (keeps int32 accumulators exact). rows: any int64. */
#define TN_PACKED_MAX_COLS ((int64_t)1 << 19)

/* ---- activations: per-token absmax int8 ---------------------------------------------------------
 * amax = max|x_i|; scale = amax / 127; q_i = clamp(rint(x_i * (127 / amax)), -127, 127), rint rounding
 * half to even (like torch.round). amax == 0 (or n == 0) gives scale = 0 and q = 0. Non-finite input
 * is not checked. x·q reconstructs as q_i * scale. */
void tn_act_quant_i8(const float *x, int64_t n, int8_t *q, float *scale);
/* X [n_tok, n] row by row: Q [n_tok, n], scales [n_tok]. */
void tn_act_quant_i8_rows(const float *X, int64_t n_tok, int64_t n, int8_t *Q, float *scales);

/* ---- T2: ternary weights {-1, 0, +1}, 2 bits each ----------------------------------------------
 * Layout (docs/PACKING.md): each row is ceil(cols/256) blocks of 64 bytes; byte j of a block holds the
 * columns j, j+64, j+128, j+192 of that block in bits 0-1, 2-3, 4-5, 6-7, each as the code w+1 in
 * {0, 1, 2}. Columns past `cols` are padded with code 1 (w = 0). Rows follow each other with no gap:
 * row r starts at byte r * tn_t2_row_bytes(cols). No header, no scales (they are passed separately). */
#define TN_T2_BLOCK 256 /* columns per block */
#define TN_T2_BLOCK_BYTES 64
size_t tn_t2_row_bytes(int64_t cols);
size_t tn_t2_packed_size(int64_t rows, int64_t cols);
/* w [rows*cols] with values in {-1, 0, 1}. Returns 0, or -1 (tn_err) if a value is out of range. */
int tn_t2_pack(const int8_t *w, int64_t rows, int64_t cols, uint8_t *out);
/* Inverse of tn_t2_pack: w [rows*cols] in {-1, 0, 1}. Returns -1 (tn_err) on the reserved code 3
 * (a corrupt buffer). */
int tn_t2_unpack(const uint8_t *packed, int64_t rows, int64_t cols, int8_t *w);

/* y[r] = tensor_scale * (row_scale ? row_scale[r] : 1) * xscale * sum_c w[r,c] * xq[c].
 * xq [cols] (from tn_act_quant_i8), y [rows]. The integer sum is exact. */
void tn_t2_gemv(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                const int8_t *xq, float xscale, float *y);
/* Batched: Y[t, r] = tensor_scale * (row_scale ? row_scale[r] : 1) * xscales[t] * sum_c w[r,c] Xq[t,c].
 * Xq [n_tok, cols], xscales [n_tok], Y [n_tok, rows]. Each weight block is unpacked once and used for
 * several tokens. Equal, bit for bit, to n_tok calls of tn_t2_gemv. */
void tn_t2_gemm(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                int64_t n_tok, const int8_t *Xq, const float *xscales, float *Y);

/* ---- L4 / L8: indices into a float grid ---------------------------------------------------------
 * A weight is grid[idx]; L4 grids have <= 16 entries, L8 grids <= 256 (an index >= n_grid is refused by
 * pack; the products treat the grid as 16 / 256 entries and read only what the indices name, so pass a
 * grid of the full 16 / 256 floats padded with zeros - tn_lut_grid_pad - to be safe against corrupt
 * indices).
 * L4 layout: each row is ceil(cols/128) blocks of 64 bytes, read as 16 little-endian uint32 words;
 * nibble s (bits 4s..4s+3, s = 0..7) of word i (i = 0..15) holds column 16*s + i of the block. (So one
 * 512-bit load shifted right by 4s gives the indices of 16 consecutive columns in the low bits of each
 * 32-bit lane, ready for a 16-entry permute.) Padding columns have index 0 (the products multiply them
 * by x = 0, so they add nothing).
 * L8 layout: one byte per weight, the index itself; rows padded to a multiple of 64 columns with
 * index 0. Row r starts at r * tn_l{4,8}_row_bytes(cols). */
#define TN_L4_BLOCK 128
#define TN_L4_BLOCK_BYTES 64
#define TN_L8_BLOCK 64
size_t tn_l4_row_bytes(int64_t cols);
size_t tn_l4_packed_size(int64_t rows, int64_t cols);
size_t tn_l8_row_bytes(int64_t cols);
size_t tn_l8_packed_size(int64_t rows, int64_t cols);
/* idx [rows*cols]; every index must be < n_grid (<= 16 for L4, <= 256 for L8) or -1 (tn_err). */
int tn_l4_pack(const uint8_t *idx, int64_t rows, int64_t cols, int n_grid, uint8_t *out);
void tn_l4_unpack(const uint8_t *packed, int64_t rows, int64_t cols, uint8_t *idx);
int tn_l8_pack(const uint8_t *idx, int64_t rows, int64_t cols, int n_grid, uint8_t *out);
void tn_l8_unpack(const uint8_t *packed, int64_t rows, int64_t cols, uint8_t *idx);
/* Copy n_grid values into out[cap] (cap = 16 or 256) and zero the rest. */
void tn_lut_grid_pad(const float *grid, int n_grid, float *out, int cap);

/* y[r] = tensor_scale * (row_scale ? row_scale[r] : 1) * sum_c grid[idx[r,c]] * x[c].
 * grid: 16 floats (L4) / 256 floats (L8), see above. x [cols] float, y [rows]. */
void tn_l4_gemv(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, const float *x, float *y);
void tn_l8_gemv(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, const float *x, float *y);
/* Batched: X [n_tok, cols], Y [n_tok, rows]. */
void tn_l4_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, int64_t n_tok, const float *X, float *Y);
void tn_l8_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, int64_t n_tok, const float *X, float *Y);

/* ---- activations for the tables: per-token absmax int16 (15 bits) -----------------------------------
 * As tn_act_quant_i8 with 16383 levels instead of 127: scale = amax / 16383, q = rint(x · (16383 / amax)).
 * The LM head decides the next token, and its rows are short (cols = dim): int8 activations cost SmolLM2's
 * head 2.3 points of top-1 agreement and 0.4% perplexity next to float ones (docs/TRIN.md), int16 nothing
 * measurable. 15 bits, not 16, keep the int32 lane sums of the products below exact. */
#define TN_ACT16_MAX 16383
void tn_act_quant_i16(const float *x, int64_t n, int16_t *q, float *scale);
void tn_act_quant_i16_rows(const float *X, int64_t n_tok, int64_t n, int16_t *Q, float *scales);

/* ---- Q8: int8 weights, one float scale per row --------------------------------------------------
 * For the LM head and the embedding table, where ternary would cost too much accuracy and F16 twice the
 * bytes per token. Layout: row r starts at r * tn_q8_row_bytes(cols) and holds the cols weights as int8
 * (two's complement, any value), then zero padding up to a multiple of 64 columns. Weight (r, c) =
 * scales[r] · q. The products take int16 activations (tn_act_quant_i16) and compute the exact integer
 * sum_c q[r,c] · xq[c] (in int32 lanes that cannot overflow for cols <= TN_Q8_MAX_COLS: |q·x| <= 128 ·
 * 16383 and a lane adds at most cols/8 of them; the lanes are summed in int64). Padding columns are
 * multiplied by zero activations, so whatever they hold adds nothing. All paths agree bit for bit. */
#define TN_Q8_BLOCK 64
#define TN_Q8_MAX_COLS ((int64_t)8192) /* 128 · 16383 · 8192 / 8 < 2^31 */
size_t tn_q8_row_bytes(int64_t cols);
size_t tn_q8_packed_size(int64_t rows, int64_t cols);
/* y[r] = ((float)(sum_c q[r,c] · xq[c]) · xscale) · scales[r]. xq [cols], y [rows]. */
void tn_q8_gemv(const uint8_t *W, const float *scales, int64_t rows, int64_t cols, const int16_t *xq, float xscale,
                float *y);
/* Batched: Xq [n_tok, cols], xscales [n_tok], Y [n_tok, rows]; each block of weights is loaded once
 * for a tile of tokens. Equal, bit for bit, to n_tok calls of tn_q8_gemv. */
void tn_q8_gemm(const uint8_t *W, const float *scales, int64_t rows, int64_t cols, int64_t n_tok, const int16_t *Xq,
                const float *xscales, float *Y);

/* ---- Q4: 4-bit weights in blocks of 32 with an fp16 scale (the bytes of GGML's Q4_0) --------------
 * Each row is ceil(cols/32) blocks of 18 bytes, rows back to back: d (IEEE binary16, little-endian), then
 * 16 bytes of which byte j holds the 4-bit code of column j of the block (low nibble) and of column j+16
 * (high nibble). Weight = d · (code − 8). Padding columns should hold code 8 (zero); the products
 * multiply them by zero activations anyway. Scales must be finite (the TRIN reader checks).
 * Products, with int16 activations: for each block b and lane k = 0..7 (columns 2k, 2k+1, 2k+16, 2k+17 of
 * the block: where a 256-bit vpmaddwd of the two 16-column halves puts them)
 *     p[b][k] = sum (code − 8) · xq          exact integer
 *     acc[k]  = acc[k] + d_b · (float)p[b][k]  (a float product, then a float sum: no fused multiply-add)
 * and y[r] = (((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))) · xscale: the order an
 * 8-lane vector reduces in, so every path (scalar, AVX2, VNNI) gives the same bits. */
#define TN_Q4_BLOCK 32
#define TN_Q4_BLOCK_BYTES 18
size_t tn_q4_row_bytes(int64_t cols);
size_t tn_q4_packed_size(int64_t rows, int64_t cols);
/* Row r of a Q4 matrix as floats: out[cols] = d · (code − 8). */
void tn_q4_row_to_f32(const uint8_t *W, int64_t r, int64_t cols, float *out);
void tn_q4_gemv(const uint8_t *W, int64_t rows, int64_t cols, const int16_t *xq, float xscale, float *y);
void tn_q4_gemm(const uint8_t *W, int64_t rows, int64_t cols, int64_t n_tok, const int16_t *Xq, const float *xscales,
                float *Y);

/* IEEE binary16 -> binary32, exact (subnormals, inf and NaN included). */
float tn_f16_to_f32(uint16_t h);

/* ---- threads ------------------------------------------------------------------------------------
 * Number of threads the products use; n <= 0 restores the default (omp_get_max_threads()). */
void tn_packed_set_threads(int n);
int tn_packed_threads(void);

#endif
