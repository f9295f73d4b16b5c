/* L4 / L8 packing and products with float activations through table lookup; see kernels/packed.h and
 * docs/PACKING.md for the layouts.
 *
 * L4 (AVX-512): the 16 grid floats live in one zmm register. A 64-byte block is 16 uint32 lanes of 8
 * nibbles; shifting the block right by 4s leaves, in the low 4 bits of lane i, the index of column
 * 16s + i, and vpermps ignores the bits above the 4th, so one shift + one permute yields 16 weights
 * (no masking, no byte-to-dword widening). AVX2: vpermps has 8 entries, so two permutes (grid[0..7],
 * grid[8..15]) are blended on bit 3 of the nibble, moved into the sign bit by a left shift.
 * L8: gathers from the 256-entry grid (vgatherdps), after widening 16 (8) index bytes to dwords; on
 * AVX-512, grids of at most 128 values use in-register permutes instead (l8_lookup_512).
 * The idea of expanding small-grid indices with in-register permutes/shuffles is common to LUT-based
 * low-bit kernels (T-MAC, llama.cpp IQ4_NL); the layouts here are our own.
 *
 * GEMM: each decoded weight vector is used for up to 4 tokens. Every path sums in float; results agree
 * with the scalar reference to float rounding (summation order differs). */
#include <omp.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/packed_threads.h"
#include "kernels/packed.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TN_X86 1
#endif

#define LUT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define LUT_AVX2 __attribute__((target("avx2,fma")))
#define LUT_INLINE static inline __attribute__((always_inline))

/* Linear software prefetch into L2, 4 row tiles ahead, one line per row per 64-byte block step (see
 * T2_PF in packed_t2.c for the reasoning). */
#define LUT_PF(w, rb, R, b, r)                                                                                 \
    _mm_prefetch((const char *)((uintptr_t)(w) + (size_t)4 * (R) * (rb) + (size_t)(b) * 64 * (R) + 64 * (r)), _MM_HINT_T1)

size_t tn_l4_row_bytes(int64_t cols) { return (size_t)((cols + TN_L4_BLOCK - 1) / TN_L4_BLOCK) * TN_L4_BLOCK_BYTES; }
size_t tn_l4_packed_size(int64_t rows, int64_t cols) { return (size_t)rows * tn_l4_row_bytes(cols); }
size_t tn_l8_row_bytes(int64_t cols) { return (size_t)((cols + TN_L8_BLOCK - 1) / TN_L8_BLOCK) * TN_L8_BLOCK; }
size_t tn_l8_packed_size(int64_t rows, int64_t cols) { return (size_t)rows * tn_l8_row_bytes(cols); }

/* Byte offset within a row and the nibble shift of column c (L4). */
static inline size_t l4_pos(int64_t c, int *shift) {
    int64_t blk = c / TN_L4_BLOCK, in = c % TN_L4_BLOCK;
    int s = (int)(in / 16), i = (int)(in % 16);
    *shift = 4 * (s & 1);
    return (size_t)(blk * TN_L4_BLOCK_BYTES + 4 * i + s / 2);
}

int tn_l4_pack(const uint8_t *idx, int64_t rows, int64_t cols, int n_grid, uint8_t *out) {
    if (n_grid < 1 || n_grid > 16) return tn_err("L4 pack: grid of %d values (1 to 16 allowed)", n_grid);
    size_t rb = tn_l4_row_bytes(cols);
    memset(out, 0, (size_t)rows * rb);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int v = idx[r * cols + c], sh;
            if (v >= n_grid)
                return tn_err("L4 pack: index [%lld, %lld] = %d is outside the grid of %d", (long long)r, (long long)c, v, n_grid);
            size_t o = l4_pos(c, &sh); /* sets sh: must come before the shift below */
            out[(size_t)r * rb + o] |= (uint8_t)(v << sh);
        }
    return 0;
}

void tn_l4_unpack(const uint8_t *packed, int64_t rows, int64_t cols, uint8_t *idx) {
    size_t rb = tn_l4_row_bytes(cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int sh;
            size_t o = l4_pos(c, &sh);
            idx[r * cols + c] = (uint8_t)((packed[(size_t)r * rb + o] >> sh) & 15);
        }
}

int tn_l8_pack(const uint8_t *idx, int64_t rows, int64_t cols, int n_grid, uint8_t *out) {
    if (n_grid < 1 || n_grid > 256) return tn_err("L8 pack: grid of %d values (1 to 256 allowed)", n_grid);
    size_t rb = tn_l8_row_bytes(cols);
    memset(out, 0, (size_t)rows * rb);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int v = idx[r * cols + c];
            if (v >= n_grid)
                return tn_err("L8 pack: index [%lld, %lld] = %d is outside the grid of %d", (long long)r, (long long)c, v, n_grid);
            out[(size_t)r * rb + c] = (uint8_t)v;
        }
    return 0;
}

void tn_l8_unpack(const uint8_t *packed, int64_t rows, int64_t cols, uint8_t *idx) {
    size_t rb = tn_l8_row_bytes(cols);
    for (int64_t r = 0; r < rows; r++) memcpy(idx + r * cols, packed + (size_t)r * rb, (size_t)cols);
}

void tn_lut_grid_pad(const float *grid, int n_grid, float *out, int cap) {
    int n = n_grid < cap ? (n_grid > 0 ? n_grid : 0) : cap;
    if (n > 0) memcpy(out, grid, (size_t)n * sizeof(float));
    for (int i = n; i < cap; i++) out[i] = 0.0f;
}

/* ---- shared ---------------------------------------------------------------------------------------- */

static inline float lut_scale(float ts, const float *rs, int64_t r) { return rs ? ts * rs[r] : ts; }

/* Threads: at least ~32K multiply-adds and 4 rows per thread. */
static int lut_nthreads(int64_t rows, int64_t work) { return tn_packed_split_threads(rows, work, 32768); }

/* ---- scalar reference ---------------------------------------------------------------------------- */

static void l4_range_scalar(const uint8_t *W, const float *grid, const float *rs, float ts, int64_t rows, int64_t r0,
                            int64_t r1, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    size_t rb = tn_l4_row_bytes(cols);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *p = W + (size_t)r * rb;
            const float *x = X + t * cols;
            float acc = 0.0f;
            for (int64_t c = 0; c < cols; c++) {
                int sh;
                size_t o = l4_pos(c, &sh);
                acc += grid[(p[o] >> sh) & 15] * x[c];
            }
            Y[t * rows + r] = acc * lut_scale(ts, rs, r);
        }
}

static void l8_range_scalar(const uint8_t *W, const float *grid, const float *rs, float ts, int64_t rows, int64_t r0,
                            int64_t r1, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    size_t rb = tn_l8_row_bytes(cols);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *p = W + (size_t)r * rb;
            const float *x = X + t * cols;
            float acc = 0.0f;
            for (int64_t c = 0; c < cols; c++) acc += grid[p[c]] * x[c];
            Y[t * rows + r] = acc * lut_scale(ts, rs, r);
        }
}

#ifdef TN_X86
/* ---- tiles: R rows x T tokens (R*T <= 4), two accumulators each to hide FMA latency -------------- */

LUT_INLINE LUT_AVX512 void l4_tile_512(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                       int has_tail, const float *const *X, const float *const *XT,
                                       const float *grid, float out[4][4]) {
    const __m512 tab = _mm512_loadu_ps(grid);
    __m512 acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        __m512i v[4];
        for (int r = 0; r < R; r++) {
            v[r] = _mm512_loadu_si512(w + (size_t)r * rb + b * TN_L4_BLOCK_BYTES);
            LUT_PF(w, rb, R, b, r);
        }
        for (int s = 0; s < 8; s++) {
            __m512 wv[4];
            for (int r = 0; r < R; r++) wv[r] = _mm512_permutexvar_ps(_mm512_srli_epi32(v[r], 4 * s), tab);
            for (int t = 0; t < T; t++) {
                const float *x = (b < nbf ? X[t] + b * TN_L4_BLOCK : XT[t]) + 16 * s;
                const __m512 xv = _mm512_loadu_ps(x);
                for (int r = 0; r < R; r++) acc[r][t][s & 1] = _mm512_fmadd_ps(wv[r], xv, acc[r][t][s & 1]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

LUT_INLINE LUT_AVX512 void l8_tile_512(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                       int has_tail, const float *const *X, const float *const *XT,
                                       const float *grid, float out[4][4]) {
    __m512 acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        for (int r = 0; r < R; r++) LUT_PF(w, rb, R, b, r);
        for (int g = 0; g < 4; g++) {
            __m512 wv[4];
            for (int r = 0; r < R; r++) {
                __m128i i8 = _mm_loadu_si128((const __m128i *)(w + (size_t)r * rb + b * TN_L8_BLOCK + 16 * g));
                wv[r] = _mm512_i32gather_ps(_mm512_cvtepu8_epi32(i8), grid, 4);
            }
            for (int t = 0; t < T; t++) {
                const float *x = (b < nbf ? X[t] + b * TN_L8_BLOCK : XT[t]) + 16 * g;
                const __m512 xv = _mm512_loadu_ps(x);
                for (int r = 0; r < R; r++) acc[r][t][g & 1] = _mm512_fmadd_ps(wv[r], xv, acc[r][t][g & 1]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

/* L8 through in-register permutes when the grid is small: if grid[32K..255] are all zero (a grid of at
 * most 32K values, K = 1, 2 or 4), vpermt2ps looks up 32 entries (index bits 0-4) per instruction;
 * chunks of 32 are selected on index bits 5 and 6, and indices >= 32K give 0 (their grid value). This
 * replaces a 16-lane gather (~7 cycles) by 2 to 8 single-cycle shuffles per 16 weights; primal15/25
 * take K = 1, prime81 K = 4. */
LUT_INLINE LUT_AVX512 __m512 l8_lookup_512(__m512i idx, const int K, const __m512 *t) {
    __m512 w = _mm512_permutex2var_ps(t[0], idx, t[1]);
    if (K >= 2) {
        __m512 w1 = _mm512_permutex2var_ps(t[2], idx, t[3]);
        w = _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), w, w1);
    }
    if (K >= 4) {
        __m512 w2 = _mm512_permutex2var_ps(t[4], idx, t[5]);
        __m512 w3 = _mm512_permutex2var_ps(t[6], idx, t[7]);
        w2 = _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), w2, w3);
        w = _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(64)), w, w2);
    }
    return _mm512_maskz_mov_ps(_mm512_cmplt_epu32_mask(idx, _mm512_set1_epi32(32 * K)), w);
}

LUT_INLINE LUT_AVX512 void l8p_tile_512(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                        int has_tail, const float *const *X, const float *const *XT,
                                        const float *grid, float out[4][4], const int K) {
    __m512 tab[8];
    for (int i = 0; i < 2 * K; i++) tab[i] = _mm512_loadu_ps(grid + 16 * i);
    __m512 acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        for (int r = 0; r < R; r++) LUT_PF(w, rb, R, b, r);
        for (int g = 0; g < 4; g++) {
            __m512 wv[4];
            for (int r = 0; r < R; r++) {
                __m128i i8 = _mm_loadu_si128((const __m128i *)(w + (size_t)r * rb + b * TN_L8_BLOCK + 16 * g));
                wv[r] = l8_lookup_512(_mm512_cvtepu8_epi32(i8), K, tab);
            }
            for (int t = 0; t < T; t++) {
                const float *x = (b < nbf ? X[t] + b * TN_L8_BLOCK : XT[t]) + 16 * g;
                const __m512 xv = _mm512_loadu_ps(x);
                for (int r = 0; r < R; r++) acc[r][t][g & 1] = _mm512_fmadd_ps(wv[r], xv, acc[r][t][g & 1]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

#define L8P_TILE(K)                                                                                            \
    LUT_INLINE LUT_AVX512 void l8p##K##_tile_512(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf, \
                                                 int has_tail, const float *const *X, const float *const *XT,  \
                                                 const float *grid, float out[4][4]) {                         \
        l8p_tile_512(w, rb, R, T, nbf, has_tail, X, XT, grid, out, K);                                         \
    }
L8P_TILE(1)
L8P_TILE(2)
L8P_TILE(4)

LUT_INLINE LUT_AVX2 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LUT_INLINE LUT_AVX2 void l4_tile_avx2(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                      int has_tail, const float *const *X, const float *const *XT,
                                      const float *grid, float out[4][4]) {
    const __m256 lo = _mm256_loadu_ps(grid), hi = _mm256_loadu_ps(grid + 8);
    __m256 acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        for (int h = 0; h < 2; h++) { /* 32-byte half h: lanes i = 8h..8h+7, columns 16s + 8h + (0..7) */
            __m256i v[4];
            for (int r = 0; r < R; r++) {
                v[r] = _mm256_loadu_si256((const __m256i *)(w + (size_t)r * rb + b * TN_L4_BLOCK_BYTES + 32 * h));
                if (h == 0) LUT_PF(w, rb, R, b, r);
            }
            for (int s = 0; s < 8; s++) {
                __m256 wv[4];
                for (int r = 0; r < R; r++) {
                    __m256i idx = _mm256_srli_epi32(v[r], 4 * s);
                    __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(v[r], 28 - 4 * s));
                    wv[r] = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), sel);
                }
                for (int t = 0; t < T; t++) {
                    const float *x = (b < nbf ? X[t] + b * TN_L4_BLOCK : XT[t]) + 16 * s + 8 * h;
                    const __m256 xv = _mm256_loadu_ps(x);
                    for (int r = 0; r < R; r++) acc[r][t][s & 1] = _mm256_fmadd_ps(wv[r], xv, acc[r][t][s & 1]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = hsum256(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
}

LUT_INLINE LUT_AVX2 void l8_tile_avx2(const uint8_t *w, size_t rb, const int R, const int T, int64_t nbf,
                                      int has_tail, const float *const *X, const float *const *XT,
                                      const float *grid, float out[4][4]) {
    __m256 acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    int64_t nb = nbf + has_tail;
    for (int64_t b = 0; b < nb; b++) {
        for (int r = 0; r < R; r++) LUT_PF(w, rb, R, b, r);
        for (int g = 0; g < 8; g++) {
            __m256 wv[4];
            for (int r = 0; r < R; r++) {
                __m128i i8 = _mm_loadl_epi64((const __m128i *)(w + (size_t)r * rb + b * TN_L8_BLOCK + 8 * g));
                wv[r] = _mm256_i32gather_ps(grid, _mm256_cvtepu8_epi32(i8), 4);
            }
            for (int t = 0; t < T; t++) {
                const float *x = (b < nbf ? X[t] + b * TN_L8_BLOCK : XT[t]) + 8 * g;
                const __m256 xv = _mm256_loadu_ps(x);
                for (int r = 0; r < R; r++) acc[r][t][g & 1] = _mm256_fmadd_ps(wv[r], xv, acc[r][t][g & 1]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[r][t] = hsum256(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
}

/* Rows [r0, r1) for all tokens: one token -> RG rows per tile; several -> 1 row x up to 4 tokens. */
#define LUT_RANGE(NAME, ATTR, TILE, BLOCK, ROWBYTES, RG)                                                       \
    ATTR static void NAME(const uint8_t *W, const float *grid, const float *rs, float ts, int64_t rows, int64_t r0, \
                          int64_t r1, int64_t cols, int64_t n_tok, const float *Xf, float *Y) {                \
        size_t rb = ROWBYTES(cols);                                                                            \
        int64_t nbf = cols / BLOCK, tail = cols % BLOCK;                                                       \
        int has_tail = tail != 0;                                                                              \
        float xt_buf[4][BLOCK] __attribute__((aligned(64)));                                                   \
        float d[4][4];                                                                                         \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {                                                            \
            int T = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;                                                    \
            const float *X[4], *XT[4];                                                                         \
            for (int t = 0; t < T; t++) {                                                                      \
                X[t] = Xf + (t0 + t) * cols;                                                                   \
                XT[t] = xt_buf[t];                                                                             \
                if (has_tail) {                                                                                \
                    memset(xt_buf[t], 0, sizeof xt_buf[t]);                                                    \
                    memcpy(xt_buf[t], X[t] + nbf * BLOCK, (size_t)tail * sizeof(float));                      \
                }                                                                                              \
            }                                                                                                  \
            int64_t r = r0;                                                                                    \
            if (T == 1)                                                                                        \
                for (; r + RG <= r1; r += RG) {                                                                \
                    TILE(W + (size_t)r * rb, rb, RG, 1, nbf, has_tail, X, XT, grid, d);                        \
                    for (int i = 0; i < RG; i++) Y[t0 * rows + r + i] = d[i][0] * lut_scale(ts, rs, r + i);    \
                }                                                                                              \
            for (; r < r1; r++) {                                                                              \
                const uint8_t *w = W + (size_t)r * rb;                                                         \
                switch (T) {                                                                                   \
                case 4: TILE(w, rb, 1, 4, nbf, has_tail, X, XT, grid, d); break;                               \
                case 3: TILE(w, rb, 1, 3, nbf, has_tail, X, XT, grid, d); break;                               \
                case 2: TILE(w, rb, 1, 2, nbf, has_tail, X, XT, grid, d); break;                               \
                default: TILE(w, rb, 1, 1, nbf, has_tail, X, XT, grid, d); break;                              \
                }                                                                                              \
                for (int t = 0; t < T; t++) Y[(t0 + t) * rows + r] = d[0][t] * lut_scale(ts, rs, r);           \
            }                                                                                                  \
        }                                                                                                      \
    }

LUT_RANGE(l4_range_512, LUT_AVX512, l4_tile_512, TN_L4_BLOCK, tn_l4_row_bytes, 4)
LUT_RANGE(l8_range_512, LUT_AVX512, l8_tile_512, TN_L8_BLOCK, tn_l8_row_bytes, 4)
LUT_RANGE(l8p1_range_512, LUT_AVX512, l8p1_tile_512, TN_L8_BLOCK, tn_l8_row_bytes, 4)
LUT_RANGE(l8p2_range_512, LUT_AVX512, l8p2_tile_512, TN_L8_BLOCK, tn_l8_row_bytes, 4)
LUT_RANGE(l8p4_range_512, LUT_AVX512, l8p4_tile_512, TN_L8_BLOCK, tn_l8_row_bytes, 4)
LUT_RANGE(l4_range_avx2, LUT_AVX2, l4_tile_avx2, TN_L4_BLOCK, tn_l4_row_bytes, 2)
LUT_RANGE(l8_range_avx2, LUT_AVX2, l8_tile_avx2, TN_L8_BLOCK, tn_l8_row_bytes, 2)
#endif /* TN_X86 */

/* ---- dispatch ------------------------------------------------------------------------------------ */

typedef void (*lut_range_fn)(const uint8_t *, const float *, const float *, float, int64_t, int64_t, int64_t,
                             int64_t, int64_t, const float *, float *);

/* Rows [r0, r1); with several tokens, in chunks of ~128 KiB of weights so that a chunk stays in L2 while
 * every token tile passes over it. */
static void lut_chunks(lut_range_fn fn, size_t rb, const uint8_t *W, const float *grid, const float *rs, float ts,
                       int64_t rows, int64_t r0, int64_t r1, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    int64_t rc = n_tok > 4 ? (int64_t)((128 << 10) / (rb ? rb : 1)) & ~(int64_t)3 : r1 - r0;
    if (rc < 4) rc = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += rc) fn(W, grid, rs, ts, rows, c0, c0 + rc < r1 ? c0 + rc : r1, cols, n_tok, X, Y);
}

static void lut_run(lut_range_fn fn, size_t rb, const uint8_t *W, const float *grid, const float *rs, float ts,
                    int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    if (rows <= 0 || n_tok <= 0) return;
    int nt = lut_nthreads(rows, rows * cols * n_tok);
    if (nt == 1 || omp_in_parallel()) { /* called from a parallel region (e.g. on a row slice): this thread */
        lut_chunks(fn, rb, W, grid, rs, ts, rows, 0, rows, cols, n_tok, X, Y);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        tn_packed_row_range(rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) lut_chunks(fn, rb, W, grid, rs, ts, rows, r0, r1, cols, n_tok, X, Y);
    }
}

static lut_range_fn l4_pick(void) {
#ifdef TN_X86
    tn_isa isa = tn_kernels_isa();
    if (isa >= TN_ISA_AVX512) return l4_range_512;
    if (isa >= TN_ISA_AVX2) return l4_range_avx2;
#endif
    return l4_range_scalar;
}

/* Number of leading grid entries that can be nonzero (bitwise: -0.0 counts as nonzero). */
static int grid_used(const float *grid, int cap) {
    int n = cap;
    while (n > 0) {
        uint32_t u;
        memcpy(&u, &grid[n - 1], 4);
        if (u) break;
        n--;
    }
    return n;
}

static lut_range_fn l8_pick(const float *grid) {
#ifdef TN_X86
    tn_isa isa = tn_kernels_isa();
    if (isa >= TN_ISA_AVX512) {
        int used = grid_used(grid, 256);
        if (used <= 32) return l8p1_range_512;
        if (used <= 64) return l8p2_range_512;
        if (used <= 128) return l8p4_range_512;
        return l8_range_512;
    }
    if (isa >= TN_ISA_AVX2) return l8_range_avx2;
#endif
    (void)grid;
    return l8_range_scalar;
}

void tn_l4_gemv(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, const float *x, float *y) {
    lut_run(l4_pick(), tn_l4_row_bytes(cols), W, grid, row_scale, tensor_scale, rows, cols, 1, x, y);
}

void tn_l8_gemv(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, const float *x, float *y) {
    lut_run(l8_pick(grid), tn_l8_row_bytes(cols), W, grid, row_scale, tensor_scale, rows, cols, 1, x, y);
}

void tn_l4_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, int64_t n_tok, const float *X, float *Y) {
    lut_run(l4_pick(), tn_l4_row_bytes(cols), W, grid, row_scale, tensor_scale, rows, cols, n_tok, X, Y);
}

void tn_l8_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                int64_t cols, int64_t n_tok, const float *X, float *Y) {
    lut_run(l8_pick(grid), tn_l8_row_bytes(cols), W, grid, row_scale, tensor_scale, rows, cols, n_tok, X, Y);
}
