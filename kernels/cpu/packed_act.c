/* Per-token absmax int8 activation quantization (kernels/packed.h) and the thread count shared by
 * the packed products. The SIMD path is bit-exact with the scalar one: the same IEEE multiply by
 * 127/amax, and rounding half to even (rintf in the default rounding mode = vcvtps2dq). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/packed_threads.h"
#include "kernels/packed.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TN_X86 1
#endif

/* ---- threads ---------------------------------------------------------------------------------- */

static int g_threads = 0;

void tn_packed_set_threads(int n) { g_threads = n > 0 ? n : 0; }

int tn_packed_threads(void) {
    int n = g_threads > 0 ? g_threads : omp_get_max_threads();
    return n > 0 ? n : 1;
}

int tn_packed_split_threads(int64_t rows, int64_t work, int64_t work_per_thread) {
    int64_t nt = tn_packed_threads();
    int64_t by_work = work / work_per_thread;
    int64_t by_rows = (rows + 3) / 4;
    if (nt > by_work) nt = by_work;
    if (nt > by_rows) nt = by_rows;
    return nt < 1 ? 1 : (int)nt;
}

void tn_packed_row_range(int64_t rows, int tid, int n, int64_t *r0, int64_t *r1) {
    int64_t chunk = ((rows + n - 1) / n + 3) & ~(int64_t)3;
    *r0 = chunk * tid;
    *r1 = *r0 + chunk;
    if (*r0 > rows) *r0 = rows;
    if (*r1 > rows) *r1 = rows;
}

/* ---- scalar reference ---------------------------------------------------------------------------- */

static float absmax(const float *x, int64_t n) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    return amax;
}

static void quant_scalar(const float *x, int64_t n, int8_t *q, float *scale) {
    const float amax = absmax(x, n);
    if (!(amax > 0.0f)) {
        if (n > 0) memset(q, 0, (size_t)n);
        *scale = 0.0f;
        return;
    }
    float inv = 127.0f / amax;
    for (int64_t i = 0; i < n; i++) {
        float v = rintf(x[i] * inv);
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        q[i] = (int8_t)v;
    }
    *scale = amax / 127.0f;
}

#ifdef TN_X86
__attribute__((target("avx2,fma"))) static void quant_avx2(const float *x, int64_t n, int8_t *q, float *scale) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    float amax = _mm_cvtss_f32(m4);
    for (; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    if (!(amax > 0.0f)) {
        if (n > 0) memset(q, 0, (size_t)n);
        *scale = 0.0f;
        return;
    }
    float inv = 127.0f / amax;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv));
        __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vinv));
        __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vinv));
        a = _mm256_min_epi32(_mm256_max_epi32(a, lo), hi);
        b = _mm256_min_epi32(_mm256_max_epi32(b, lo), hi);
        c = _mm256_min_epi32(_mm256_max_epi32(c, lo), hi);
        d = _mm256_min_epi32(_mm256_max_epi32(d, lo), hi);
        /* packs work per 128-bit lane: ab = a0 b0 a1 b1 (4 x 16-bit groups), then bytes a0 b0 c0 d0 a1 b1
         * c1 d1; permute dwords back to a0 a1 b0 b1 c0 c1 d0 d1. */
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i abcd = _mm256_packs_epi16(ab, cd);
        abcd = _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), abcd);
    }
    for (; i < n; i++) {
        float v = rintf(x[i] * inv);
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        q[i] = (int8_t)v;
    }
    *scale = amax / 127.0f;
}
#endif

void tn_act_quant_i8(const float *x, int64_t n, int8_t *q, float *scale) {
#ifdef TN_X86
    if (tn_kernels_isa() >= TN_ISA_AVX2) {
        quant_avx2(x, n, q, scale);
        return;
    }
#endif
    quant_scalar(x, n, q, scale);
}

void tn_act_quant_i8_rows(const float *X, int64_t n_tok, int64_t n, int8_t *Q, float *scales) {
    for (int64_t t = 0; t < n_tok; t++) tn_act_quant_i8(X + t * n, n, Q + t * n, scales + t);
}

/* int16 (15-bit) activations for the Q8 / Q4 tables: one row per call of the head, so scalar code is
 * enough (a few thousand values next to millions of weights). */
void tn_act_quant_i16(const float *x, int64_t n, int16_t *q, float *scale) {
    const float amax = absmax(x, n);
    if (!(amax > 0.0f)) {
        if (n > 0) memset(q, 0, (size_t)n * sizeof *q);
        *scale = 0.0f;
        return;
    }
    const float inv = (float)TN_ACT16_MAX / amax;
    for (int64_t i = 0; i < n; i++) {
        float v = rintf(x[i] * inv);
        v = v > (float)TN_ACT16_MAX ? (float)TN_ACT16_MAX : v < -(float)TN_ACT16_MAX ? -(float)TN_ACT16_MAX : v;
        q[i] = (int16_t)v;
    }
    *scale = amax / (float)TN_ACT16_MAX;
}

void tn_act_quant_i16_rows(const float *X, int64_t n_tok, int64_t n, int16_t *Q, float *scales) {
    for (int64_t t = 0; t < n_tok; t++) tn_act_quant_i16(X + t * n, n, Q + t * n, scales + t);
}
