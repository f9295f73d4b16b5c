/* Q8 (int8, a float scale per row) and Q4 (4-bit blocks of 32, an fp16 scale per block) products with
 * int16 activations: the LM head and the embedding table in a quantized .trin file. Layouts and the exact
 * arithmetic are in kernels/packed.h; docs/PACKING.md has the bytes.
 *
 * Q8. sum_c q_c x_c with q int8 and x int16: each 16 (256-bit) or 32 (512-bit) weights are sign-extended to
 * int16 (vpmovsxbw) and multiplied with vpmaddwd (AVX2) or vpdpwssd (VNNI), which add adjacent products
 * into int32 lanes; the lanes are summed in int64. Integer arithmetic throughout, so every path gives the
 * same sum. Tiles of R rows x T tokens load each block of weights once for T tokens (a prompt's logits,
 * eval).
 * Q4. Each block is expanded to 32 signed codes (code − 8; low nibbles then high nibbles: byte j = column
 * j), sign-extended and multiplied as Q8's are; the 8 int32 lanes of a block are converted to float,
 * scaled by the block's d and added to 8 float accumulators. The scalar reference keeps the same 8 lanes
 * and the same reduction, so all paths agree bit for bit. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/packed_simd.h"
#include "kernels/cpu/packed_threads.h"
#include "kernels/packed.h"

float tn_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf / NaN (payload kept) */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign; /* signed zero */
        } else {
            /* subnormal: man * 2^-24, exactly representable */
            float f = (float)man * 0x1p-24f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

size_t tn_q8_row_bytes(int64_t cols) { return (size_t)((cols + TN_Q8_BLOCK - 1) / TN_Q8_BLOCK) * TN_Q8_BLOCK; }
size_t tn_q8_packed_size(int64_t rows, int64_t cols) { return (size_t)rows * tn_q8_row_bytes(cols); }
size_t tn_q4_row_bytes(int64_t cols) { return (size_t)((cols + TN_Q4_BLOCK - 1) / TN_Q4_BLOCK) * TN_Q4_BLOCK_BYTES; }
size_t tn_q4_packed_size(int64_t rows, int64_t cols) { return (size_t)rows * tn_q4_row_bytes(cols); }

static float q4_d(const uint8_t *blk) { return tn_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)); }

/* Code of column j (0..31) of a block. */
static int q4_code(const uint8_t *blk, int j) { return j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4; }

void tn_q4_row_to_f32(const uint8_t *W, int64_t r, int64_t cols, float *out) {
    const uint8_t *p = W + (size_t)r * tn_q4_row_bytes(cols);
    for (int64_t c = 0; c < cols; c++) {
        const uint8_t *blk = p + (size_t)(c / TN_Q4_BLOCK) * TN_Q4_BLOCK_BYTES;
        out[c] = q4_d(blk) * (float)(q4_code(blk, (int)(c % TN_Q4_BLOCK)) - 8);
    }
}

/* The one float epilogue of Q8 (as T2's): every path rounds the same way. */
static inline float q8_out(int64_t isum, float xscale, float s) { return ((float)isum * xscale) * s; }

/* Q4's fixed 8-lane reduction (packed.h). */
static inline float q4_reduce(const float a[8]) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

/* ---- scalar references ------------------------------------------------------------------------------ */

/* Rows [r0, r1) x n_tok tokens: Y[t * ldy + r] = q8_out(sum_c q[r,c] xq[t,c]). */
static void q8_rows_scalar(const uint8_t *W, const float *s, int64_t r0, int64_t r1, int64_t cols, int64_t n_tok,
                           const int16_t *Xq, const float *xs, float *Y, int64_t ldy) {
    const size_t rb = tn_q8_row_bytes(cols);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) {
            const int8_t *q = (const int8_t *)(W + (size_t)r * rb);
            const int16_t *x = Xq + t * cols;
            int64_t acc = 0;
            for (int64_t c = 0; c < cols; c++) acc += (int32_t)q[c] * x[c];
            Y[t * ldy + r] = q8_out(acc, xs[t], s[r]);
        }
}

/* Lane k of a Q4 block: columns 2k, 2k+1, 2k+16, 2k+17 (packed.h). */
static void q4_rows_scalar(const uint8_t *W, int64_t r0, int64_t r1, int64_t cols, int64_t n_tok, const int16_t *Xq,
                           const float *xs, float *Y, int64_t ldy) {
    const size_t rb = tn_q4_row_bytes(cols);
    const int64_t nb = (cols + TN_Q4_BLOCK - 1) / TN_Q4_BLOCK;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *p = W + (size_t)r * rb;
            const int16_t *x = Xq + t * cols;
            float acc[8] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = p + (size_t)b * TN_Q4_BLOCK_BYTES;
                const float d = q4_d(blk);
                for (int k = 0; k < 8; k++) {
                    static const int off[4] = {0, 1, 16, 17};
                    int32_t lane = 0;
                    for (int i = 0; i < 4; i++) {
                        const int j = 2 * k + off[i];
                        const int64_t c = b * TN_Q4_BLOCK + j;
                        if (c < cols) lane += (q4_code(blk, j) - 8) * x[c];
                    }
                    const float m = d * (float)lane; /* two statements: never contracted into an fma */
                    acc[k] += m;
                }
            }
            Y[t * ldy + r] = q4_reduce(acc) * xs[t];
        }
}

#ifdef TN_X86
/* ---- Q8, AVX-512 VNNI --------------------------------------------------------------------------------
 * Tile of R <= 4 rows (w, row stride rb) x T <= 4 tokens: nbf full 64-column blocks of X[t], then, if
 * has_tail, one block against the zero-padded XT[t]. out[r][t] = sum q · x, exact. */
PK_INLINE PK_AVX512 void q8_tile_512(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                     int has_tail, const int16_t *const *X, const int16_t *const *XT,
                                     int64_t out[4][4]) {
    __m512i acc[4][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_si512();
    const int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        __m512i v[4][2];
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + (size_t)r * rb + (size_t)b * TN_Q8_BLOCK;
            v[r][0] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
            v[r][1] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p + 32)));
            PK_PF(w, rb, R, b, r);
            if (T == 1) PK_PF_NEAR(w, rb, R, b, r);
        }
        for (int t = 0; t < T; t++) {
            const int16_t *x = b < nbf ? X[t] + b * TN_Q8_BLOCK : XT[t];
            const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 32);
            for (int r = 0; r < R; r++) acc[r][t] = pk_dpw512(pk_dpw512(acc[r][t], v[r][0], x0), v[r][1], x1);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            const __m512i a = acc[r][t];
            out[r][t] = _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(a)),
                                                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a, 1))));
        }
}

/* ---- Q8, AVX2 and AVX-VNNI (256-bit): R <= 2 rows x T <= 4 tokens ------------------------------------ */
#define Q8_DOT_AVX2(acc, a, x) _mm256_add_epi32(acc, _mm256_madd_epi16(a, x))
#define Q8_DOT_VNNI(acc, a, x) pk_dpw256(acc, a, x)

PK_INLINE PK_AVX2 int64_t hsum256_epi32_64(__m256i s) {
    const __m256i q = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(s)),
                                       _mm256_cvtepi32_epi64(_mm256_extracti128_si256(s, 1)));
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
}

#define Q8_TILE_256(NAME, ATTR, DOT)                                                                           \
    PK_INLINE ATTR void NAME(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf, int has_tail,    \
                             const int16_t *const *X, const int16_t *const *XT, int64_t out[4][4]) {           \
        __m256i acc[2][4];                                                                                     \
        for (int r = 0; r < R; r++)                                                                            \
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_si256();                                    \
        const int64_t nb = nbf + has_tail;                                                                     \
        for (int64_t b = 0; b < nb; b++)                                                                       \
            for (int h = 0; h < 4; h++) {                                                                      \
                __m256i v[2];                                                                                  \
                for (int r = 0; r < R; r++) {                                                                  \
                    const uint8_t *p = w + (size_t)r * rb + (size_t)b * TN_Q8_BLOCK + 16 * h;                  \
                    v[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));                          \
                    if (h == 0) PK_PF(w, rb, R, b, r);                                                         \
                }                                                                                              \
                for (int t = 0; t < T; t++) {                                                                  \
                    const int16_t *x = b < nbf ? X[t] + b * TN_Q8_BLOCK : XT[t];                               \
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 16 * h));                      \
                    for (int r = 0; r < R; r++) acc[r][t] = DOT(acc[r][t], v[r], xv);                          \
                }                                                                                              \
            }                                                                                                  \
        for (int r = 0; r < R; r++)                                                                            \
            for (int t = 0; t < T; t++) out[r][t] = hsum256_epi32_64(acc[r][t]);                               \
    }

Q8_TILE_256(q8_tile_avx2, PK_AVX2, Q8_DOT_AVX2)
Q8_TILE_256(q8_tile_vnni, PK_AVXVNNI, Q8_DOT_VNNI)

/* The tokens [t0, t0 + T) of Xq [n_tok, cols] for a tile (T = min(4, n_tok - t0), returned): X[t] their rows,
 * XT[t] their last `block` columns' tail, zero-padded into xt (when cols % block != 0). */
static inline int token_group(const int16_t *Xq, int64_t cols, int64_t n_tok, int64_t t0, int block,
                              int16_t xt[4][TN_Q8_BLOCK], const int16_t *X[4], const int16_t *XT[4]) {
    const int T = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
    const int64_t full = cols / block * block;
    for (int t = 0; t < T; t++) {
        X[t] = Xq + (t0 + t) * cols;
        XT[t] = xt[t];
        if (full < cols) {
            memset(xt[t], 0, TN_Q8_BLOCK * sizeof(int16_t));
            memcpy(xt[t], X[t] + full, (size_t)(cols - full) * sizeof(int16_t));
        }
    }
    return T;
}

/* Rows [r0, r1) of Y [n_tok, ldy] with the tile function TILE (RT rows, then single rows), tokens in
 * groups of 4 (each token's tail block copied once into a zero-padded buffer). */
#define Q8_RANGE(NAME, ATTR, TILE, RT)                                                                         \
    ATTR static void NAME(const uint8_t *W, const float *s, int64_t r0, int64_t r1, int64_t cols, int64_t n_tok,  \
                          const int16_t *Xq, const float *xs, float *Y, int64_t ldy) {                         \
        const size_t rb = tn_q8_row_bytes(cols);                                                               \
        const int64_t nbf = cols / TN_Q8_BLOCK, tail = cols % TN_Q8_BLOCK;                                     \
        int16_t xt_buf[4][TN_Q8_BLOCK] __attribute__((aligned(64)));                                           \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {                                                            \
            const int16_t *X[4], *XT[4];                                                                       \
            const int T = token_group(Xq, cols, n_tok, t0, TN_Q8_BLOCK, xt_buf, X, XT);                        \
            int64_t d[4][4];                                                                                   \
            int64_t r = r0;                                                                                    \
            for (; r + RT <= r1; r += RT) {                                                                    \
                const uint8_t *w = W + (size_t)r * rb;                                                         \
                PK_TILE_T4(TILE, RT)                                                                            \
                for (int i = 0; i < RT; i++)                                                                   \
                    for (int t = 0; t < T; t++) Y[(t0 + t) * ldy + r + i] = q8_out(d[i][t], xs[t0 + t], s[r + i]); \
            }                                                                                                  \
            for (; r < r1; r++) {                                                                              \
                const uint8_t *w = W + (size_t)r * rb;                                                         \
                PK_TILE_T4(TILE, 1)                                                                             \
                for (int t = 0; t < T; t++) Y[(t0 + t) * ldy + r] = q8_out(d[0][t], xs[t0 + t], s[r]);         \
            }                                                                                                  \
        }                                                                                                      \
    }

Q8_RANGE(q8_range_512, PK_AVX512, q8_tile_512, 4)
Q8_RANGE(q8_range_vnni, PK_AVXVNNI, q8_tile_vnni, 2)
Q8_RANGE(q8_range_avx2, PK_AVX2, q8_tile_avx2, 2)

/* ---- Q4, AVX2 and AVX-VNNI (the AVX-512 level runs one of them: a block is 32 columns, two 256-bit
 * vectors of int16) ------------------------------------------------------------------------------------
 * One row x T <= 4 tokens: per block, the 16 code bytes become 32 signed codes (c − 8), sign-extended in
 * two halves (columns 0-15, 16-31); each token's two vpmaddwd (or vpdpwssd) results add into 8 int32 lanes,
 * lane k = columns 2k, 2k+1, 2k+16, 2k+17, which are scaled by d in float and added to its accumulators. */
#define Q4_ROW(NAME, ATTR, DOT)                                                                                \
    PK_INLINE ATTR void NAME(const uint8_t *p, const int T, int64_t nbf, int has_tail, const int16_t *const *X, \
                             const int16_t *const *XT, float out[4]) {                                         \
        const __m128i low = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);                                       \
        __m256 acc[4];                                                                                         \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                              \
        const int64_t nb = nbf + has_tail;                                                                     \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            const uint8_t *blk = p + (size_t)b * TN_Q4_BLOCK_BYTES;                                            \
            const __m128i c16 = _mm_loadu_si128((const __m128i *)(blk + 2));                                   \
            const __m256i lo = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_and_si128(c16, low), eight));             \
            const __m256i hi = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(c16, 4), low), eight)); \
            /* the block's fp16 d: F16C on 8 lanes of the same value (exact, as tn_f16_to_f32) */             \
            const __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)(blk[0] | blk[1] << 8)));                   \
            for (int t = 0; t < T; t++) {                                                                      \
                const int16_t *x = b < nbf ? X[t] + b * TN_Q4_BLOCK : XT[t];                                   \
                __m256i lanes = DOT(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)x));       \
                lanes = DOT(lanes, hi, _mm256_loadu_si256((const __m256i *)(x + 16)));                         \
                acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes)));                   \
            }                                                                                                  \
        }                                                                                                      \
        for (int t = 0; t < T; t++) {                                                                          \
            float a8[8];                                                                                       \
            _mm256_storeu_ps(a8, acc[t]);                                                                      \
            out[t] = q4_reduce(a8);                                                                            \
        }                                                                                                      \
    }

/* F16C comes with every AVX2 CPU; range_dispatch checks it anyway. */
#define Q4_AVX2 __attribute__((target("avx2,fma,f16c")))
#define Q4_AVXVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
Q4_ROW(q4_row_avx2, Q4_AVX2, Q8_DOT_AVX2)
Q4_ROW(q4_row_vnni, Q4_AVXVNNI, Q8_DOT_VNNI)

#define Q4_RANGE(NAME, ATTR, ROW)                                                                              \
    ATTR static void NAME(const uint8_t *W, int64_t r0, int64_t r1, int64_t cols, int64_t n_tok, const int16_t *Xq, \
                          const float *xs, float *Y, int64_t ldy) {                                            \
        const size_t rb = tn_q4_row_bytes(cols);                                                               \
        const int64_t nbf = cols / TN_Q4_BLOCK, tail = cols % TN_Q4_BLOCK;                                     \
        int16_t xt_buf[4][TN_Q8_BLOCK] __attribute__((aligned(64)));                                           \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {                                                            \
            const int16_t *X[4], *XT[4];                                                                       \
            const int T = token_group(Xq, cols, n_tok, t0, TN_Q4_BLOCK, xt_buf, X, XT);                        \
            for (int64_t r = r0; r < r1; r++) {                                                                \
                float o[4] = {0, 0, 0, 0};                                                                     \
                const uint8_t *p = W + (size_t)r * rb;                                                         \
                _mm_prefetch(PK_PF_ADDR(p, 4 * rb), _MM_HINT_T0); /* rows of 18-byte blocks: 4 rows ahead */    \
                switch (T) {                                                                                   \
                case 4: ROW(p, 4, nbf, tail != 0, X, XT, o); break;                                            \
                case 3: ROW(p, 3, nbf, tail != 0, X, XT, o); break;                                            \
                case 2: ROW(p, 2, nbf, tail != 0, X, XT, o); break;                                            \
                default: ROW(p, 1, nbf, tail != 0, X, XT, o); break;                                           \
                }                                                                                              \
                for (int t = 0; t < T; t++) Y[(t0 + t) * ldy + r] = o[t] * xs[t0 + t];                         \
            }                                                                                                  \
        }                                                                                                      \
    }

Q4_RANGE(q4_range_avx2, Q4_AVX2, q4_row_avx2)
Q4_RANGE(q4_range_vnni, Q4_AVXVNNI, q4_row_vnni)
#endif /* TN_X86 */

/* ---- dispatch and threads ------------------------------------------------------------------------------ */

typedef enum { KIND_Q8, KIND_Q4 } qkind;

static void range_dispatch(qkind kind, tn_isa isa, const uint8_t *W, const float *s, int64_t r0, int64_t r1,
                           int64_t cols, int64_t n_tok, const int16_t *Xq, const float *xs, float *Y, int64_t ldy) {
#ifdef TN_X86
    /* AVX-VNNI is a separate CPUID bit from AVX512-VNNI: an AVX-512 machine without it runs the AVX2 form of
     * the 256-bit kernels (Q4 and the Q8 fallbacks). */
    const int vex_vnni = isa >= TN_ISA_AVXVNNI && tn_cpu_has_avxvnni();
    if (kind == KIND_Q8) {
        if (isa == TN_ISA_AVX512) q8_range_512(W, s, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
        else if (vex_vnni) q8_range_vnni(W, s, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
        else if (isa >= TN_ISA_AVX2) q8_range_avx2(W, s, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
        else q8_rows_scalar(W, s, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
    } else {
        const int f16c = tn_cpu_has_f16c();
        if (vex_vnni && f16c) q4_range_vnni(W, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
        else if (isa >= TN_ISA_AVX2 && f16c) q4_range_avx2(W, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
        else q4_rows_scalar(W, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
    }
#else
    (void)isa;
    if (kind == KIND_Q8) q8_rows_scalar(W, s, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
    else q4_rows_scalar(W, r0, r1, cols, n_tok, Xq, xs, Y, ldy);
#endif
}

/* Rows in chunks of ~128 KiB of weights, so that a chunk stays in L2 while every tile of tokens passes
 * over it (the weights come from memory once per call, not once per 4 tokens). */
static void range_chunked(qkind kind, tn_isa isa, const uint8_t *W, const float *s, int64_t r0, int64_t r1,
                          int64_t cols, int64_t n_tok, const int16_t *Xq, const float *xs, float *Y, int64_t ldy) {
    const size_t rb = kind == KIND_Q8 ? tn_q8_row_bytes(cols) : tn_q4_row_bytes(cols);
    int64_t rc = n_tok <= 4 ? r1 - r0 : (int64_t)((128 << 10) / rb) & ~(int64_t)3;
    if (rc < 4) rc = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += rc)
        range_dispatch(kind, isa, W, s, c0, c0 + rc < r1 ? c0 + rc : r1, cols, n_tok, Xq, xs, Y, ldy);
}

static void product(qkind kind, const uint8_t *W, const float *s, int64_t rows, int64_t cols, int64_t n_tok,
                    const int16_t *Xq, const float *xs, float *Y) {
    if (rows <= 0 || n_tok <= 0) return;
    const tn_isa isa = tn_kernels_isa();
    const int nt = tn_packed_split_threads(rows, rows * cols * n_tok, 65536);
    if (nt == 1 || omp_in_parallel()) { /* called on a row slice from a parallel region: this thread only */
        range_chunked(kind, isa, W, s, 0, rows, cols, n_tok, Xq, xs, Y, rows);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        tn_packed_row_range(rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) range_chunked(kind, isa, W, s, r0, r1, cols, n_tok, Xq, xs, Y, rows);
    }
}

void tn_q8_gemv(const uint8_t *W, const float *scales, int64_t rows, int64_t cols, const int16_t *xq, float xscale,
                float *y) {
    product(KIND_Q8, W, scales, rows, cols, 1, xq, &xscale, y);
}

void tn_q8_gemm(const uint8_t *W, const float *scales, int64_t rows, int64_t cols, int64_t n_tok, const int16_t *Xq,
                const float *xscales, float *Y) {
    product(KIND_Q8, W, scales, rows, cols, n_tok, Xq, xscales, Y);
}

void tn_q4_gemv(const uint8_t *W, int64_t rows, int64_t cols, const int16_t *xq, float xscale, float *y) {
    product(KIND_Q4, W, NULL, rows, cols, 1, xq, &xscale, y);
}

void tn_q4_gemm(const uint8_t *W, int64_t rows, int64_t cols, int64_t n_tok, const int16_t *Xq, const float *xscales,
                float *Y) {
    product(KIND_Q4, W, NULL, rows, cols, n_tok, Xq, xscales, Y);
}
