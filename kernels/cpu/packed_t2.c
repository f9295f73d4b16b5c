/* T2 (ternary, 2 bits per weight) packing and products with int8 activations; see kernels/packed.h and
 * docs/PACKING.md for the layout.
 *
 * Arithmetic: a weight w in {-1, 0, 1} is stored as the unsigned code c = w + 1 in {0, 1, 2}, so
 *     sum_c w_c q_c = sum_c c_c q_c - sum_c q_c,
 * and sum c_c q_c is an unsigned-by-signed byte dot product, one instruction on x86 (vpmaddubsw on
 * AVX2, vpdpbusd on AVX-VNNI / AVX512-VNNI). The idea of storing w+1 and correcting with the activation
 * sum is the one llama.cpp's TQ2_0 and bitnet.cpp's I2_S use; the block layout here is our own.
 *
 * GEMV trick: byte j of a 64-byte block holds the codes of columns j, j+64, j+128, j+192 in bit pairs
 * 0-1, 2-3, 4-5, 6-7. Masking a loaded vector with 0x03, 0x0C, 0x30 or 0xC0 (no shift) leaves 4^k * c
 * for the k-th group of 64 columns, whose activations are 64 consecutive bytes of xq: one AND and one
 * dot instruction per 64 (AVX-512) or 32 (AVX2) weights. Each group has its own int32 accumulator; all
 * its lanes are multiples of 4^k, so an arithmetic shift by 2k before adding the groups is exact.
 * (Products stay within int16 for vpmaddubsw: 2 * 128 * 127 = 32512.)
 * GEMM: codes are shifted down and masked once per block and used for up to 4 tokens; on AVX-512, from 16
 * tokens on, they are unpacked once into bytes and an int8 GEMM runs over them (the prompt path below).
 *
 * All paths compute the same exact int32 sum per row and the same float epilogue, so they agree bit
 * for bit. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/packed_threads.h"
#include "kernels/cpu/packed_simd.h"
#include "kernels/packed.h"

/* Software prefetch: T2_PF / T2_PF_NEAR are packed_simd.h's PK_PF / PK_PF_NEAR over 64-byte blocks. */
#define T2_PF PK_PF
#define T2_PF_NEAR PK_PF_NEAR

size_t tn_t2_row_bytes(int64_t cols) { return (size_t)((cols + TN_T2_BLOCK - 1) / TN_T2_BLOCK) * TN_T2_BLOCK_BYTES; }

size_t tn_t2_packed_size(int64_t rows, int64_t cols) { return (size_t)rows * tn_t2_row_bytes(cols); }

int tn_t2_pack(const int8_t *w, int64_t rows, int64_t cols, uint8_t *out) {
    size_t rb = tn_t2_row_bytes(cols);
    memset(out, 0x55, (size_t)rows * rb); /* code 1 (w = 0) everywhere, so padding is zero weight */
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *o = out + (size_t)r * rb;
        const int8_t *wr = w + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            int v = wr[c];
            if (v < -1 || v > 1) return tn_err("T2 pack: weight [%lld, %lld] = %d is not in {-1, 0, 1}", (long long)r, (long long)c, v);
            int64_t blk = c / TN_T2_BLOCK, in = c % TN_T2_BLOCK;
            int k = (int)(in / 64), j = (int)(in % 64);
            uint8_t *b = o + blk * TN_T2_BLOCK_BYTES + j;
            *b = (uint8_t)((*b & ~(3u << (2 * k))) | ((unsigned)(v + 1) << (2 * k)));
        }
    }
    return 0;
}

int tn_t2_unpack(const uint8_t *packed, int64_t rows, int64_t cols, int8_t *w) {
    size_t rb = tn_t2_row_bytes(cols);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *p = packed + (size_t)r * rb;
        for (int64_t c = 0; c < cols; c++) {
            int64_t blk = c / TN_T2_BLOCK, in = c % TN_T2_BLOCK;
            int k = (int)(in / 64), j = (int)(in % 64);
            int code = (p[blk * TN_T2_BLOCK_BYTES + j] >> (2 * k)) & 3;
            if (code == 3) return tn_err("T2 unpack: invalid code 3 at [%lld, %lld]", (long long)r, (long long)c);
            w[r * cols + c] = (int8_t)(code - 1);
        }
    }
    return 0;
}

/* ---- shared helpers ------------------------------------------------------------------------------ */

/* The one float epilogue every path uses (so that all paths agree bit for bit). */
static inline float t2_out(int32_t isum, float xscale, float tensor_scale, const float *row_scale, int64_t r) {
    float s = row_scale ? tensor_scale * row_scale[r] : tensor_scale;
    return ((float)isum * xscale) * s;
}

static int32_t sum_i8_scalar(const int8_t *q, int64_t n) {
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += q[i];
    return s;
}

#ifdef TN_X86
/* sum of n int8 as u8 (q + 128 via XOR 0x80) with vpsadbw against zero, minus 128 n. */
PK_AVX2 static int32_t sum_i8_avx2(const int8_t *q, int64_t n) {
    const __m256i flip = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    __m256i acc = zero;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(q + i)), flip), zero));
    __m128i a = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    a = _mm_add_epi64(a, _mm_unpackhi_epi64(a, a));
    int64_t s = _mm_cvtsi128_si64(a) - 128 * i;
    for (; i < n; i++) s += q[i];
    return (int32_t)s;
}
#endif

static int32_t sum_i8(tn_isa isa, const int8_t *q, int64_t n) {
#ifdef TN_X86
    if (isa >= TN_ISA_AVX2) return sum_i8_avx2(q, n);
#endif
    (void)isa;
    return sum_i8_scalar(q, n);
}

/* Threads for a product of rows x cols: at least ~64K weights and 4 rows per thread. */
static int t2_nthreads(int64_t rows, int64_t cols) { return tn_packed_split_threads(rows, rows * cols, 65536); }

/* ---- scalar reference ---------------------------------------------------------------------------- */

/* sum_c w_c * xq_c for one packed row, decoded column by column. */
static int32_t t2_dot_scalar(const uint8_t *p, int64_t cols, const int8_t *xq) {
    int32_t acc = 0;
    int64_t nb = cols / TN_T2_BLOCK;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = p + b * TN_T2_BLOCK_BYTES;
        const int8_t *xb = xq + b * TN_T2_BLOCK;
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 64; j++) acc += (((pb[j] >> (2 * k)) & 3) - 1) * xb[64 * k + j];
    }
    for (int64_t c = nb * TN_T2_BLOCK; c < cols; c++) {
        int64_t in = c % TN_T2_BLOCK;
        int code = (p[nb * TN_T2_BLOCK_BYTES + in % 64] >> (2 * (in / 64))) & 3;
        acc += (code - 1) * xq[c];
    }
    return acc;
}

static void t2_rows_scalar(const uint8_t *W, const float *rs, float ts, int64_t r0, int64_t r1, int64_t cols,
                           int64_t n_tok, const int8_t *Xq, const float *xs, float *Y, int64_t ldy) {
    size_t rb = tn_t2_row_bytes(cols);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++)
            Y[t * ldy + r] = t2_out(t2_dot_scalar(W + (size_t)r * rb, cols, Xq + t * cols), xs[t], ts, rs, r);
}

#ifdef TN_X86
/* ---- AVX-512 VNNI -------------------------------------------------------------------------------- */

/* R rows (R constant after inlining) starting at w (row stride rb bytes): nbf full blocks against xq,
 * then, if xt != NULL, one tail block against the zero-padded xt[256]. out[r] = sum c*q (codes). */
PK_INLINE PK_AVX512 void t2_gemv_rows_512(const uint8_t *w, size_t rb, const int R, int64_t nbf, const int8_t *xq,
                                          const int8_t *xt, int32_t *out) {
    const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0C), m2 = _mm512_set1_epi8(0x30),
                  m3 = _mm512_set1_epi8((char)0xC0);
    __m512i a0[4], a1[4], a2[4], a3[4];
    for (int r = 0; r < R; r++) a0[r] = a1[r] = a2[r] = a3[r] = _mm512_setzero_si512();
    int64_t nb = nbf + (xt != NULL);
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *x = b < nbf ? xq + b * TN_T2_BLOCK : xt;
        const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 64),
                      x2 = _mm512_loadu_si512(x + 128), x3 = _mm512_loadu_si512(x + 192);
        for (int r = 0; r < R; r++) {
            const __m512i v = _mm512_loadu_si512(w + (size_t)r * rb + b * TN_T2_BLOCK_BYTES);
            T2_PF(w, rb, R, b, r);
            T2_PF_NEAR(w, rb, R, b, r);
            a0[r] = pk_dp512(a0[r], _mm512_and_si512(v, m0), x0);
            a1[r] = pk_dp512(a1[r], _mm512_and_si512(v, m1), x1);
            a2[r] = pk_dp512(a2[r], _mm512_and_si512(v, m2), x2);
            a3[r] = pk_dp512(a3[r], _mm512_and_si512(v, m3), x3);
        }
    }
    for (int r = 0; r < R; r++) {
        __m512i s = _mm512_add_epi32(_mm512_add_epi32(a0[r], _mm512_srai_epi32(a1[r], 2)),
                                     _mm512_add_epi32(_mm512_srai_epi32(a2[r], 4), _mm512_srai_epi32(a3[r], 6)));
        out[r] = _mm512_reduce_add_epi32(s);
    }
}

PK_AVX512 static void t2_gemv_range_512(const uint8_t *W, const float *rs, float ts, int64_t r0, int64_t r1,
                                        int64_t cols, const int8_t *xq, float xscale, int32_t sumq, float *y) {
    size_t rb = tn_t2_row_bytes(cols);
    int64_t nbf = cols / TN_T2_BLOCK, tail = cols % TN_T2_BLOCK;
    int8_t xt_buf[TN_T2_BLOCK] __attribute__((aligned(64)));
    const int8_t *xt = NULL;
    if (tail) {
        memset(xt_buf, 0, sizeof xt_buf);
        memcpy(xt_buf, xq + nbf * TN_T2_BLOCK, (size_t)tail);
        xt = xt_buf;
    }
    int32_t d[4];
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        t2_gemv_rows_512(W + (size_t)r * rb, rb, 4, nbf, xq, xt, d);
        for (int i = 0; i < 4; i++) y[r + i] = t2_out(d[i] - sumq, xscale, ts, rs, r + i);
    }
    for (; r < r1; r++) {
        t2_gemv_rows_512(W + (size_t)r * rb, rb, 1, nbf, xq, xt, d);
        y[r] = t2_out(d[0] - sumq, xscale, ts, rs, r);
    }
}

/* GEMM tile: R rows x T tokens, codes shifted down to {0,1,2} once per block and reused for T tokens.
 * X[t] points at token t's activations (full blocks), XT[t] at its zero-padded tail block. */
PK_INLINE PK_AVX512 void t2_gemm_tile_512(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                          int has_tail, const int8_t *const *X, const int8_t *const *XT,
                                          int32_t out[4][4]) {
    const __m512i m = _mm512_set1_epi8(0x03);
    __m512i acc[4][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_si512();
    int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        __m512i v[4];
        for (int r = 0; r < R; r++) {
            v[r] = _mm512_loadu_si512(w + (size_t)r * rb + b * TN_T2_BLOCK_BYTES);
            T2_PF(w, rb, R, b, r);
        }
        for (int k = 0; k < 4; k++) {
            __m512i u[4];
            for (int r = 0; r < R; r++) u[r] = _mm512_and_si512(_mm512_srli_epi16(v[r], 2 * k), m);
            for (int t = 0; t < T; t++) {
                const int8_t *x = b < nbf ? X[t] + b * TN_T2_BLOCK : XT[t];
                const __m512i xv = _mm512_loadu_si512(x + 64 * k);
                for (int r = 0; r < R; r++) acc[r][t] = pk_dp512(acc[r][t], u[r], xv);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = _mm512_reduce_add_epi32(acc[r][t]);
}

/* Rows [r0, r1) of a GEMM with one tile function TILE(w, rb, R, T, nbf, has_tail, X, XT, out) that handles
 * RT rows (and R = 1 for the leftover rows) by up to 4 tokens. Y is [n_tok, rows]. */
#define T2_GEMM_RANGE(NAME, ATTR, TILE, RT)                                                                    \
    ATTR static void NAME(const uint8_t *W, const float *rs, float ts, int64_t rows, int64_t r0, int64_t r1,      \
                          int64_t cols, int64_t n_tok, const int8_t *Xq, const float *xs, const int32_t *sumq,   \
                          float *Y) {                                                                          \
        size_t rb = tn_t2_row_bytes(cols);                                                                     \
        int64_t nbf = cols / TN_T2_BLOCK, tail = cols % TN_T2_BLOCK;                                            \
        int8_t xt_buf[4][TN_T2_BLOCK] __attribute__((aligned(64)));                                            \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {                                                            \
            int T = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;                                                    \
            const int8_t *X[4], *XT[4];                                                                        \
            for (int t = 0; t < T; t++) {                                                                      \
                X[t] = Xq + (t0 + t) * cols;                                                                   \
                XT[t] = xt_buf[t];                                                                             \
                if (tail) {                                                                                    \
                    memset(xt_buf[t], 0, TN_T2_BLOCK);                                                         \
                    memcpy(xt_buf[t], X[t] + nbf * TN_T2_BLOCK, (size_t)tail);                                 \
                }                                                                                              \
            }                                                                                                  \
            int32_t d[4][4];                                                                                   \
            int64_t r = r0;                                                                                    \
            for (; r + RT <= r1; r += RT) {                                                                    \
                const uint8_t *w = W + (size_t)r * rb;                                                         \
                PK_TILE_T4(TILE, RT)                                                                            \
                for (int i = 0; i < RT; i++)                                                                   \
                    for (int t = 0; t < T; t++)                                                                \
                        Y[(t0 + t) * rows + r + i] = t2_out(d[i][t] - sumq[t0 + t], xs[t0 + t], ts, rs, r + i); \
            }                                                                                                  \
            for (; r < r1; r++) {                                                                              \
                const uint8_t *w = W + (size_t)r * rb;                                                         \
                PK_TILE_T4(TILE, 1)                                                                             \
                for (int t = 0; t < T; t++)                                                                    \
                    Y[(t0 + t) * rows + r] = t2_out(d[0][t] - sumq[t0 + t], xs[t0 + t], ts, rs, r);            \
            }                                                                                                  \
        }                                                                                                      \
    }

T2_GEMM_RANGE(t2_gemm_range_512, PK_AVX512, t2_gemm_tile_512, 4)

/* ---- AVX-512 prompt path: unpack once, then an int8 GEMM --------------------------------------------
 * For a prompt (n_tok >= T2P_MIN_TOK) the codes are unpacked once per 64 tokens into a thread-private
 * buffer of bytes, and the register tile multiplies bytes only: per step of 4 columns, T2P_RV vectors of
 * weights (16 rows each, one row per 32-bit lane) and one broadcast dword of activations per token,
 * T2P_RV x T2P_T vpdpbusd and no unpacking. Rows in lanes means a 16 x 16 transpose of 32-bit words at
 * unpack time (per 16 rows x 256 columns: 64 shuffles and 112 shifts / masks, for 4096 vpdpbusd at
 * 64 tokens), and outputs that are 16 consecutive rows of Y, stored as vectors.
 *
 * Unpacked layout of a group of up to 16 RV rows (row g + 16v + i) and a chunk of T2P_KC columns
 * (from c0): buf[s][v][i][m] = code(row g + 16v + i, column c0 + 4s + m), s = 0 .. T2P_KC/4 - 1. A packed
 * dword (bytes 4d .. 4d+3 of a block) holds the columns 64k + 4d + (0..3) of the block in its bit pairs
 * 2k, so after the transpose (v >> 2k) & 3 is step s = 16k + d of the block: consecutive columns,
 * consecutive activations. The sums are the same integers as the other paths' (sum c·q, then − sum q),
 * and the epilogue is t2_out's float expression on 16 lanes, so the outputs are bit-identical.
 * The path needs cols % 4 == 0 (no step straddles the end of a row); other shapes use the 4 x 4 tile. */
#define T2P_MIN_TOK 16 /* fewer tokens: the 4 x 4 tile (unpacking once pays off only over many tokens) */
#define T2P_RV 3       /* vectors of 16 rows per group: 48 rows */
#define T2P_T 8        /* tokens per register tile: 3 x 8 = 24 accumulators */
#define T2P_KC 512     /* columns per chunk (a multiple of 256): 48 x 512 bytes of codes stay in L1 */
#define T2P_NTOK 64    /* tokens per pass over an unpacked chunk (bounds the partial sums) */

/* 16 x 16 transpose of 32-bit words: z[d] lane i <- z[i] lane d. */
PK_INLINE PK_AVX512 void t2p_transpose16(__m512i z[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* z[i + j], 128-bit lane L: element 4L + j of rows i .. i+3 */
        z[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        z[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        z[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        z[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int j = 0; j < 4; j++) {
            t[h + j] = _mm512_shuffle_i32x4(z[h + j], z[h + 4 + j], 0x88);
            t[h + 4 + j] = _mm512_shuffle_i32x4(z[h + j], z[h + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        z[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
        z[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
    }
}

/* Rows [0, nr) of w (nr <= 16 rv; the others get code 0), blocks [b0, b0 + nb) -> buf (layout above). */
PK_AVX512 static void t2p_unpack(const uint8_t *w, size_t rb, int64_t nr, int rv, int64_t b0, int64_t nb,
                                 uint8_t *buf) {
    const __m512i m = _mm512_set1_epi8(0x03);
    for (int64_t b = 0; b < nb; b++)
        for (int v = 0; v < rv; v++) {
            __m512i z[16];
            for (int i = 0; i < 16; i++) {
                int64_t r = 16 * v + i;
                z[i] = r < nr ? _mm512_loadu_si512(w + (size_t)r * rb + (b0 + b) * TN_T2_BLOCK_BYTES)
                              : _mm512_setzero_si512();
            }
            t2p_transpose16(z);
            uint8_t *o = buf + ((size_t)b * 64 * rv + v) * 64;
            for (int d = 0; d < 16; d++) {
                _mm512_store_si512(o + (size_t)d * rv * 64, _mm512_and_si512(z[d], m));
                _mm512_store_si512(o + (size_t)(16 + d) * rv * 64, _mm512_and_si512(_mm512_srli_epi32(z[d], 2), m));
                _mm512_store_si512(o + (size_t)(32 + d) * rv * 64, _mm512_and_si512(_mm512_srli_epi32(z[d], 4), m));
                _mm512_store_si512(o + (size_t)(48 + d) * rv * 64, _mm512_and_si512(_mm512_srli_epi32(z[d], 6), m));
            }
        }
}

/* Token t's activations (t < 8, a constant) from three pointers and the row stride ld, so that the
 * loop's addresses take few registers: p + ld·{1, 2, 4} is one addressing mode. */
PK_INLINE const int8_t *t2p_tok(const int8_t *p, const int8_t *p3, const int8_t *p6, ptrdiff_t ld, int t) {
    switch (t) {
    case 0: return p;
    case 1: return p + ld;
    case 2: return p + 2 * ld;
    case 3: return p3;
    case 4: return p + 4 * ld;
    case 5: return p3 + 2 * ld;
    case 6: return p6;
    default: return p6 + ld;
    }
}

/* The register tile: RV x 16 rows by T tokens over ns steps of buf. X: the first token's activations at
 * the chunk's first column, the next tokens ld bytes apart. part [T][RV][16]: partial sums, read first
 * unless `first`, written back. */
PK_INLINE PK_AVX512 void t2p_tile(const uint8_t *buf, const int RV, const int T, int64_t ns,
                                  const int8_t *X, ptrdiff_t ld, int first, int32_t *part) {
    __m512i acc[T2P_RV][T2P_T];
    for (int t = 0; t < T; t++)
        for (int v = 0; v < RV; v++)
            acc[v][t] = first ? _mm512_setzero_si512() : _mm512_load_si512(part + (t * RV + v) * 16);
    const int8_t *p = X, *p3 = X + (T > 3 ? 3 : 0) * ld, *p6 = X + (T > 6 ? 6 : 0) * ld; /* in bounds */
    for (int64_t s = 0; s < ns; s++, p += 4, p3 += 4, p6 += 4) {
        __m512i wv[T2P_RV];
        for (int v = 0; v < RV; v++) wv[v] = _mm512_load_si512(buf + ((size_t)s * RV + v) * 64);
        for (int t = 0; t < T; t++) {
            int32_t x4;
            memcpy(&x4, t2p_tok(p, p3, p6, ld, t), 4);
            const __m512i xb = _mm512_set1_epi32(x4);
            for (int v = 0; v < RV; v++) acc[v][t] = pk_dp512(acc[v][t], wv[v], xb);
        }
    }
    for (int t = 0; t < T; t++)
        for (int v = 0; v < RV; v++) _mm512_store_si512(part + (t * RV + v) * 16, acc[v][t]);
}

/* t2p_tile with RV and T as compile-time constants. */
#define T2P_TILE_T(RV)                                                                                         \
    switch (T) {                                                                                               \
    case 8: t2p_tile(buf, RV, 8, ns, X, ld, first, part); break;                                                   \
    case 7: t2p_tile(buf, RV, 7, ns, X, ld, first, part); break;                                                   \
    case 6: t2p_tile(buf, RV, 6, ns, X, ld, first, part); break;                                                   \
    case 5: t2p_tile(buf, RV, 5, ns, X, ld, first, part); break;                                                   \
    case 4: t2p_tile(buf, RV, 4, ns, X, ld, first, part); break;                                                   \
    case 3: t2p_tile(buf, RV, 3, ns, X, ld, first, part); break;                                                   \
    case 2: t2p_tile(buf, RV, 2, ns, X, ld, first, part); break;                                                   \
    default: t2p_tile(buf, RV, 1, ns, X, ld, first, part); break;                                                  \
    }
PK_AVX512 static void t2p_tile_any(const uint8_t *buf, int rv, int T, int64_t ns, const int8_t *X, ptrdiff_t ld,
                                   int first, int32_t *part) {
    _Static_assert(T2P_RV == 3 && T2P_T == 8, "t2p_tile_any instantiates RV <= 3, T <= 8");
    if (rv == 3) { T2P_TILE_T(3) }
    else if (rv == 2) { T2P_TILE_T(2) }
    else { T2P_TILE_T(1) }
}

/* Rows [r0, r1) of Y [n_tok, rows] on this thread. */
PK_AVX512 static void t2p_range_512(const uint8_t *W, const float *rs, float ts, int64_t rows, int64_t r0, int64_t r1,
                                    int64_t cols, int64_t n_tok, const int8_t *Xq, const float *xs,
                                    const int32_t *sumq, float *Y) {
    uint8_t buf[T2P_KC / 4 * T2P_RV * 64] __attribute__((aligned(64)));
    int32_t part[T2P_NTOK * T2P_RV * 16] __attribute__((aligned(64)));
    const size_t rb = tn_t2_row_bytes(cols);
    for (int64_t g = r0; g < r1; g += 16 * T2P_RV) {
        const int64_t nr = r1 - g < 16 * T2P_RV ? r1 - g : 16 * T2P_RV;
        const int rv = (int)((nr + 15) / 16);
        const uint8_t *wg = W + (size_t)g * rb;
        for (int64_t t0 = 0; t0 < n_tok; t0 += T2P_NTOK) {
            const int64_t nt = n_tok - t0 < T2P_NTOK ? n_tok - t0 : T2P_NTOK;
            for (int64_t c0 = 0; c0 < cols; c0 += T2P_KC) {
                const int64_t kc = cols - c0 < T2P_KC ? cols - c0 : T2P_KC;
                const int64_t nb = (kc + TN_T2_BLOCK - 1) / TN_T2_BLOCK;
                t2p_unpack(wg, rb, nr, rv, c0 / TN_T2_BLOCK, nb, buf);
                /* Meanwhile the next chunk (these rows' next columns, or the next group's first ones) comes
                 * into L2: its nr x nb lines spread over the token tiles, a burst would wait on the fill
                 * buffers. */
                const uintptr_t pf =
                    (uintptr_t)wg + (c0 + T2P_KC < cols ? (size_t)(c0 + T2P_KC) / 4 : 16 * T2P_RV * rb);
                const int64_t n_lines = nr * nb, n_tiles = (nt + T2P_T - 1) / T2P_T;
                for (int64_t tt = 0, l = 0; tt < nt; tt += T2P_T) {
                    for (const int64_t l1 = n_lines * (tt / T2P_T + 1) / n_tiles; l < l1; l++)
                        _mm_prefetch((const char *)(pf + (size_t)(l / nb) * rb + (size_t)(l % nb) * TN_T2_BLOCK_BYTES),
                                     _MM_HINT_T1);
                    const int T = nt - tt < T2P_T ? (int)(nt - tt) : T2P_T;
                    t2p_tile_any(buf, rv, T, kc / 4, Xq + (t0 + tt) * cols + c0, (ptrdiff_t)cols, c0 == 0,
                                 part + tt * rv * 16);
                }
            }
            /* y = ((float)(sum c·q − sum q) · xscale) · s_r on 16 rows at a time (t2_out) */
            for (int v = 0; v < rv; v++) {
                const int64_t r = g + 16 * v;
                const __mmask16 k = r1 - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r1 - r)) - 1);
                const __m512 s =
                    rs ? _mm512_mul_ps(_mm512_set1_ps(ts), _mm512_maskz_loadu_ps(k, rs + r)) : _mm512_set1_ps(ts);
                for (int64_t t = 0; t < nt; t++) {
                    const __m512i d = _mm512_sub_epi32(_mm512_load_si512(part + (t * rv + v) * 16),
                                                       _mm512_set1_epi32(sumq[t0 + t]));
                    const __m512 y =
                        _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(xs[t0 + t])), s);
                    _mm512_mask_storeu_ps(Y + (t0 + t) * rows + r, k, y);
                }
            }
        }
    }
}

/* ---- AVX2 and AVX-VNNI (256-bit) ------------------------------------------------------------------
 * Same scheme on 32-byte halves of each 64-byte block: half h of block b holds, in group k, the columns
 * 256b + 64k + 32h + (0..31). Only 16 vector registers, so 2 rows per tile and activations are read
 * from memory (L1) by the dot instructions. */
#define DOT_AVX2(acc, a, x) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, x), ones16))
#define DOT_VNNI(acc, a, x) pk_dp256(acc, a, x)

#define T2_GEMV_ROWS_256(NAME, ATTR, DOT)                                                                      \
    PK_INLINE ATTR void NAME(const uint8_t *w, size_t rb, const int R, int64_t nbf, const int8_t *xq,            \
                             const int8_t *xt, int32_t *out) {                                                 \
        const __m256i m0 = _mm256_set1_epi8(0x03), m1 = _mm256_set1_epi8(0x0C), m2 = _mm256_set1_epi8(0x30),   \
                      m3 = _mm256_set1_epi8((char)0xC0);                                                       \
        const __m256i ones16 = _mm256_set1_epi16(1);                                                           \
        (void)ones16;                                                                                          \
        __m256i a0[2], a1[2], a2[2], a3[2];                                                                    \
        for (int r = 0; r < R; r++) a0[r] = a1[r] = a2[r] = a3[r] = _mm256_setzero_si256();                    \
        int64_t nb = nbf + (xt != NULL);                                                                       \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            const int8_t *x = b < nbf ? xq + b * TN_T2_BLOCK : xt;                                             \
            for (int h = 0; h < 2; h++) {                                                                      \
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(x + 32 * h));                          \
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(x + 64 + 32 * h));                     \
                const __m256i x2 = _mm256_loadu_si256((const __m256i *)(x + 128 + 32 * h));                    \
                const __m256i x3 = _mm256_loadu_si256((const __m256i *)(x + 192 + 32 * h));                    \
                for (int r = 0; r < R; r++) {                                                                  \
                    const __m256i v =                                                                          \
                        _mm256_loadu_si256((const __m256i *)(w + (size_t)r * rb + b * TN_T2_BLOCK_BYTES + 32 * h)); \
                    if (h == 0) {                                                                              \
                        T2_PF(w, rb, R, b, r);                                                                 \
                        T2_PF_NEAR(w, rb, R, b, r);                                                            \
                    }                                                                                          \
                    a0[r] = DOT(a0[r], _mm256_and_si256(v, m0), x0);                                           \
                    a1[r] = DOT(a1[r], _mm256_and_si256(v, m1), x1);                                           \
                    a2[r] = DOT(a2[r], _mm256_and_si256(v, m2), x2);                                           \
                    a3[r] = DOT(a3[r], _mm256_and_si256(v, m3), x3);                                           \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < R; r++) {                                                                          \
            __m256i s = _mm256_add_epi32(_mm256_add_epi32(a0[r], _mm256_srai_epi32(a1[r], 2)),                 \
                                         _mm256_add_epi32(_mm256_srai_epi32(a2[r], 4), _mm256_srai_epi32(a3[r], 6))); \
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));             \
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));                                               \
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));                                               \
            out[r] = _mm_cvtsi128_si32(s4);                                                                    \
        }                                                                                                      \
    }

#define T2_GEMV_RANGE(NAME, ATTR, ROWS, RT)                                                                    \
    ATTR static void NAME(const uint8_t *W, const float *rs, float ts, int64_t r0, int64_t r1, int64_t cols,      \
                          const int8_t *xq, float xscale, int32_t sumq, float *y) {                            \
        size_t rb = tn_t2_row_bytes(cols);                                                                     \
        int64_t nbf = cols / TN_T2_BLOCK, tail = cols % TN_T2_BLOCK;                                            \
        int8_t xt_buf[TN_T2_BLOCK] __attribute__((aligned(64)));                                               \
        const int8_t *xt = NULL;                                                                               \
        if (tail) {                                                                                            \
            memset(xt_buf, 0, sizeof xt_buf);                                                                  \
            memcpy(xt_buf, xq + nbf * TN_T2_BLOCK, (size_t)tail);                                              \
            xt = xt_buf;                                                                                       \
        }                                                                                                      \
        int32_t d[4];                                                                                          \
        int64_t r = r0;                                                                                        \
        for (; r + RT <= r1; r += RT) {                                                                        \
            ROWS(W + (size_t)r * rb, rb, RT, nbf, xq, xt, d);                                                  \
            for (int i = 0; i < RT; i++) y[r + i] = t2_out(d[i] - sumq, xscale, ts, rs, r + i);                \
        }                                                                                                      \
        for (; r < r1; r++) {                                                                                  \
            ROWS(W + (size_t)r * rb, rb, 1, nbf, xq, xt, d);                                                   \
            y[r] = t2_out(d[0] - sumq, xscale, ts, rs, r);                                                     \
        }                                                                                                      \
    }

/* GEMM tile on 256-bit vectors: R <= 2 rows x T <= 4 tokens. */
#define T2_GEMM_TILE_256(NAME, ATTR, DOT)                                                                      \
    PK_INLINE ATTR void NAME(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf, int has_tail,    \
                             const int8_t *const *X, const int8_t *const *XT, int32_t out[4][4]) {             \
        const __m256i m = _mm256_set1_epi8(0x03);                                                              \
        const __m256i ones16 = _mm256_set1_epi16(1);                                                           \
        (void)ones16;                                                                                          \
        __m256i acc[2][4];                                                                                     \
        for (int r = 0; r < R; r++)                                                                            \
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_si256();                                    \
        int64_t nb = nbf + has_tail;                                                                           \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            for (int h = 0; h < 2; h++) {                                                                      \
                __m256i v[2];                                                                                  \
                for (int r = 0; r < R; r++)                                                                    \
                    v[r] = _mm256_loadu_si256((const __m256i *)(w + (size_t)r * rb + b * TN_T2_BLOCK_BYTES + 32 * h)); \
                for (int k = 0; k < 4; k++) {                                                                  \
                    __m256i u[2];                                                                              \
                    for (int r = 0; r < R; r++) u[r] = _mm256_and_si256(_mm256_srli_epi16(v[r], 2 * k), m);     \
                    for (int t = 0; t < T; t++) {                                                              \
                        const int8_t *x = b < nbf ? X[t] + b * TN_T2_BLOCK : XT[t];                            \
                        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 64 * k + 32 * h));         \
                        for (int r = 0; r < R; r++) acc[r][t] = DOT(acc[r][t], u[r], xv);                      \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int t = 0; t < T; t++) {                                                                      \
                __m256i s = acc[r][t];                                                                         \
                __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));         \
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));                                           \
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));                                           \
                out[r][t] = _mm_cvtsi128_si32(s4);                                                             \
            }                                                                                                  \
    }

T2_GEMV_ROWS_256(t2_gemv_rows_avx2, PK_AVX2, DOT_AVX2)
T2_GEMV_ROWS_256(t2_gemv_rows_vnni, PK_AVXVNNI, DOT_VNNI)
T2_GEMV_RANGE(t2_gemv_range_avx2, PK_AVX2, t2_gemv_rows_avx2, 2)
T2_GEMV_RANGE(t2_gemv_range_vnni, PK_AVXVNNI, t2_gemv_rows_vnni, 2)
T2_GEMM_TILE_256(t2_gemm_tile_avx2, PK_AVX2, DOT_AVX2)
T2_GEMM_TILE_256(t2_gemm_tile_vnni, PK_AVXVNNI, DOT_VNNI)
T2_GEMM_RANGE(t2_gemm_range_avx2, PK_AVX2, t2_gemm_tile_avx2, 2)
T2_GEMM_RANGE(t2_gemm_range_vnni, PK_AVXVNNI, t2_gemm_tile_vnni, 2)
#endif /* TN_X86 */

/* ---- dispatch ------------------------------------------------------------------------------------ */

static void t2_gemv_range(tn_isa isa, const uint8_t *W, const float *rs, float ts, int64_t r0, int64_t r1,
                          int64_t cols, const int8_t *xq, float xscale, int32_t sumq, float *y) {
    switch (isa) {
#ifdef TN_X86
    case TN_ISA_AVX512: t2_gemv_range_512(W, rs, ts, r0, r1, cols, xq, xscale, sumq, y); return;
    case TN_ISA_AVXVNNI: t2_gemv_range_vnni(W, rs, ts, r0, r1, cols, xq, xscale, sumq, y); return;
    case TN_ISA_AVX2: t2_gemv_range_avx2(W, rs, ts, r0, r1, cols, xq, xscale, sumq, y); return;
#endif
    default: (void)sumq; t2_rows_scalar(W, rs, ts, r0, r1, cols, 1, xq, &xscale, y, 0); return;
    }
}

void tn_t2_gemv(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                const int8_t *xq, float xscale, float *y) {
    if (rows <= 0) return;
    tn_isa isa = tn_kernels_isa();
    int32_t sumq = sum_i8(isa, xq, cols);
    int nt = t2_nthreads(rows, cols);
    if (nt == 1 || omp_in_parallel()) { /* called from a parallel region (e.g. on a row slice): this thread */
        t2_gemv_range(isa, W, row_scale, tensor_scale, 0, rows, cols, xq, xscale, sumq, y);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        tn_packed_row_range(rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) t2_gemv_range(isa, W, row_scale, tensor_scale, r0, r1, cols, xq, xscale, sumq, y);
    }
}

static void t2_gemm_chunk(tn_isa isa, const uint8_t *W, const float *rs, float ts, int64_t rows, int64_t r0,
                          int64_t r1, int64_t cols, int64_t n_tok, const int8_t *Xq, const float *xs,
                          const int32_t *sumq, float *Y) {
    switch (isa) {
#ifdef TN_X86
    case TN_ISA_AVX512: t2_gemm_range_512(W, rs, ts, rows, r0, r1, cols, n_tok, Xq, xs, sumq, Y); return;
    case TN_ISA_AVXVNNI: t2_gemm_range_vnni(W, rs, ts, rows, r0, r1, cols, n_tok, Xq, xs, sumq, Y); return;
    case TN_ISA_AVX2: t2_gemm_range_avx2(W, rs, ts, rows, r0, r1, cols, n_tok, Xq, xs, sumq, Y); return;
#endif
    default: (void)sumq; t2_rows_scalar(W, rs, ts, r0, r1, cols, n_tok, Xq, xs, Y, rows); return;
    }
}

/* Rows in chunks of ~128 KiB of weights, so that a chunk stays in L2 while every token tile passes over
 * it (weights are read from memory once per call, not once per 4 tokens). */
static void t2_gemm_range(tn_isa isa, const uint8_t *W, const float *rs, float ts, int64_t rows, int64_t r0,
                          int64_t r1, int64_t cols, int64_t n_tok, const int8_t *Xq, const float *xs,
                          const int32_t *sumq, float *Y) {
#ifdef TN_X86
    if (isa == TN_ISA_AVX512 && n_tok >= T2P_MIN_TOK && cols % 4 == 0) { /* a prompt: unpack once */
        t2p_range_512(W, rs, ts, rows, r0, r1, cols, n_tok, Xq, xs, sumq, Y);
        return;
    }
#endif
    int64_t rc = (int64_t)((128 << 10) / tn_t2_row_bytes(cols)) & ~(int64_t)3;
    if (rc < 4) rc = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += rc)
        t2_gemm_chunk(isa, W, rs, ts, rows, c0, c0 + rc < r1 ? c0 + rc : r1, cols, n_tok, Xq, xs, sumq, Y);
}

void tn_t2_gemm(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                int64_t n_tok, const int8_t *Xq, const float *xscales, float *Y) {
    if (rows <= 0 || n_tok <= 0) return;
    if (n_tok == 1) {
        tn_t2_gemv(W, row_scale, tensor_scale, rows, cols, Xq, xscales[0], Y);
        return;
    }
    tn_isa isa = tn_kernels_isa();
    int32_t sumq_small[64];
    int32_t *sumq = n_tok <= 64 ? sumq_small : (int32_t *)malloc((size_t)n_tok * sizeof(int32_t));
    if (!sumq) { /* out of memory: fall back to one token at a time */
        for (int64_t t = 0; t < n_tok; t++)
            tn_t2_gemv(W, row_scale, tensor_scale, rows, cols, Xq + t * cols, xscales[t], Y + t * rows);
        return;
    }
    for (int64_t t = 0; t < n_tok; t++) sumq[t] = sum_i8(isa, Xq + t * cols, cols);
    int nt = t2_nthreads(rows, cols * n_tok);
    if (nt == 1 || omp_in_parallel()) {
        t2_gemm_range(isa, W, row_scale, tensor_scale, rows, 0, rows, cols, n_tok, Xq, xscales, sumq, Y);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int64_t r0, r1;
            tn_packed_row_range(rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
            if (r1 > r0) t2_gemm_range(isa, W, row_scale, tensor_scale, rows, r0, r1, cols, n_tok, Xq, xscales, sumq, Y);
        }
    }
    if (sumq != sumq_small) free(sumq);
}
