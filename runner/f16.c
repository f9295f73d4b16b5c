/* F16-weight products (runner/f16.h). The F16C path widens 8 halves per instruction (vcvtph2ps) and
 * accumulates with FMA; it is memory-bound on any LM head, which is what the decode benchmark needs. */
#include "runner/f16.h"

#include "export/gguf_dequant.h"
#include "kernels/cpu/cpu_features.h"

#include <cblas.h>
#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

/* F16C (CPUID.1:ECX bit 29) on top of the kernels' AVX2 level, which already includes FMA and the OS's
 * AVX state support. (clang 14's __builtin_cpu_supports does not know "f16c", hence cpuid.) */
static int have_f16c(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned a, b, c, d;
        cached = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    }
    return cached && tn_kernels_isa() >= TN_ISA_AVX2;
}

__attribute__((target("avx2,fma,f16c"))) static void row_to_f32_f16c(const uint16_t *h, int64_t n, float *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) out[i] = tn_f16_to_f32(h[i]);
}

void tn_f16_to_f32_row(const uint16_t *h, int64_t n, float *out) {
    if (have_f16c()) {
        row_to_f32_f16c(h, n, out);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = tn_f16_to_f32(h[i]);
}

__attribute__((target("avx2,fma,f16c"))) static float hsum(__m256 s) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* y[0..nr) for nr <= 4 rows at w (row stride cols). Four rows at once: four independent streams keep
 * more loads in flight than one, and each x vector is loaded once for all four. `next` is the start of
 * the following 4 rows (NULL: none): one cache line of each is prefetched per 32 columns, so the next
 * group is on its way before the hardware prefetcher, which stops at every 4 KiB page (one row of a
 * 2048-wide F16 matrix), would start on it. On one core here: 11 GB/s for one row at a time, 14 for
 * four, 16-17 with the prefetch, against a read bandwidth of 17-18. `far` (NULL: none), the group
 * F16_FAR groups ahead, is prefetched the same way into L2 only (as the T2 kernels do): ~2% more. */
#define F16_FAR 4
__attribute__((target("avx2,fma,f16c"))) static void rows4_f16c(const uint16_t *w, int nr, int64_t cols,
                                                                  const float *x, float *y, const uint16_t *next,
                                                                  const uint16_t *far) {
    const uint16_t *w0 = w, *w1 = w + (nr > 1 ? cols : 0), *w2 = w + (nr > 2 ? 2 * cols : 0),
                   *w3 = w + (nr > 3 ? 3 * cols : 0); /* missing rows re-read row 0; their sums are dropped */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        if (next && (c & 31) == 0)
            for (int k = 0; k < 4; k++) _mm_prefetch((const char *)(next + k * cols + c), _MM_HINT_T0);
        if (far && (c & 31) == 0)
            for (int k = 0; k < 4; k++) _mm_prefetch((const char *)(far + k * cols + c), _MM_HINT_T1);
        const __m256 xv = _mm256_loadu_ps(x + c);
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w0 + c))), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w1 + c))), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w2 + c))), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w3 + c))), xv, a3);
    }
    float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    const uint16_t *rows[4] = {w0, w1, w2, w3};
    for (int k = 0; k < nr; k++) {
        for (int64_t t = c; t < cols; t++) s[k] += tn_f16_to_f32(rows[k][t]) * x[t];
        y[k] = s[k];
    }
}

static float dot_scalar(const uint16_t *w, const float *x, int64_t n) {
    float r = 0;
    for (int64_t c = 0; c < n; c++) r += tn_f16_to_f32(w[c]) * x[c];
    return r;
}

void tn_f16_gemv(const uint16_t *W, int64_t rows, int64_t cols, const float *x, float *y) {
    if (have_f16c()) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r += 4) {
            const int nr = rows - r < 4 ? (int)(rows - r) : 4;
            /* prefetch the next group only if it has 4 whole rows (never past the matrix) */
            const uint16_t *next = r + 8 <= rows ? W + (r + 4) * cols : NULL;
            const uint16_t *far = r + 4 * (F16_FAR + 1) <= rows ? W + (r + 4 * F16_FAR) * cols : NULL;
            rows4_f16c(W + r * cols, nr, cols, x, y + r, next, far);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) y[r] = dot_scalar(W + r * cols, x, cols);
}

#define GEMM_ROWS 64

void tn_f16_gemm(const uint16_t *W, int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y) {
    if (n_tok == 1) {
        tn_f16_gemv(W, rows, cols, X, Y);
        return;
    }
#pragma omp parallel
    {
        /* One block of widened rows per thread; sgemm runs single-threaded inside the parallel region. */
        float *blk = malloc((size_t)GEMM_ROWS * (size_t)cols * sizeof *blk);
#pragma omp for schedule(dynamic, 1)
        for (int64_t r0 = 0; r0 < rows; r0 += GEMM_ROWS) {
            int64_t nr = rows - r0 < GEMM_ROWS ? rows - r0 : GEMM_ROWS;
            if (!blk) { /* out of memory: slow but correct */
                for (int64_t t = 0; t < n_tok; t++)
                    for (int64_t r = r0; r < r0 + nr; r++) Y[t * rows + r] = dot_scalar(W + r * cols, X + t * cols, cols);
                continue;
            }
            for (int64_t r = 0; r < nr; r++) tn_f16_to_f32_row(W + (r0 + r) * cols, cols, blk + r * cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n_tok, (blasint)nr, (blasint)cols, 1.0f, X,
                        (blasint)cols, blk, (blasint)cols, 0.0f, Y + r0, (blasint)rows);
        }
        free(blk);
    }
}
