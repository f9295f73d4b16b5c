#include "quant/act.h"
#include "quant/snap.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TN_X86 1
#else
#define TN_X86 0
#endif

/* ---- scalar reference: written to mirror the AVX2 semantics exactly (max_ps(a, m) keeps m when a is NaN;
 * min/max clamps return the constant for NaN), so both paths agree bit for bit. ---- */

static float row_absmax_ref(const float *x, int64_t n) {
    float m = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        m = a > m ? a : m;
    }
    return m;
}

static inline float quant1(float x, float k) {
    float v = rintf(x * k); /* default rounding mode: half to even */
    v = v < 127.0f ? v : 127.0f;
    v = v > -127.0f ? v : -127.0f;
    return v;
}

void tn_act_quant_int8_ref(const float *x, int64_t rows, int64_t cols, int8_t *q, float *row_max) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        const float m = row_absmax_ref(xr, cols), k = 127.0f / m;
        row_max[r] = m;
        if (!(m > 0.0f)) { /* all-zero token */
            memset(q + r * cols, 0, (size_t)cols);
            continue;
        }
        for (int64_t j = 0; j < cols; j++) q[r * cols + j] = (int8_t)quant1(xr[j], k);
    }
}

void tn_act_fake_quant_ref(const float *x, int64_t rows, int64_t cols, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        const float m = row_absmax_ref(xr, cols), k = 127.0f / m;
        if (!(m > 0.0f)) {
            memset(out + r * cols, 0, (size_t)cols * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < cols; j++) out[r * cols + j] = quant1(xr[j], k) / k;
    }
}

/* ---- AVX2 ------------------------------------------------------------------------------------------ */
#if TN_X86
__attribute__((target("avx2"))) static float row_absmax_avx2(const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), m);
    float lanes[8], r = 0.0f;
    _mm256_storeu_ps(lanes, m);
    for (int i = 0; i < 8; i++) r = lanes[i] > r ? lanes[i] : r;
    for (; j < n; j++) {
        float a = fabsf(x[j]);
        r = a > r ? a : r;
    }
    return r;
}

__attribute__((target("avx2"))) static inline __m256 quant8(__m256 x, __m256 k) {
    __m256 v = _mm256_round_ps(_mm256_mul_ps(x, k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));  /* NaN -> 127, like the scalar ternaries */
    return _mm256_max_ps(v, _mm256_set1_ps(-127.0f));
}

__attribute__((target("avx2"))) static void quant_row_avx2(const float *x, int64_t n, int8_t *q, float *row_max) {
    const float m = row_absmax_avx2(x, n), k = 127.0f / m;
    *row_max = m;
    if (!(m > 0.0f)) {
        memset(q, 0, (size_t)n);
        return;
    }
    const __m256 vk = _mm256_set1_ps(k);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256i v = _mm256_cvtps_epi32(quant8(_mm256_loadu_ps(x + j), vk)); /* already integral: exact */
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storel_epi64((__m128i *)(q + j), _mm_packs_epi16(p16, p16));
    }
    for (; j < n; j++) q[j] = (int8_t)quant1(x[j], k);
}

__attribute__((target("avx2"))) static void fake_row_avx2(const float *x, int64_t n, float *out) {
    const float m = row_absmax_avx2(x, n), k = 127.0f / m;
    if (!(m > 0.0f)) {
        memset(out, 0, (size_t)n * sizeof(float));
        return;
    }
    const __m256 vk = _mm256_set1_ps(k);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, _mm256_div_ps(quant8(_mm256_loadu_ps(x + j), vk), vk));
    for (; j < n; j++) out[j] = quant1(x[j], k) / k;
}
#endif

static int use_avx2(void) { return tn_quant_have_avx2(); }

void tn_act_quant_int8(const float *x, int64_t rows, int64_t cols, int8_t *q, float *row_max) {
    const int simd = use_avx2();
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; r++) {
#if TN_X86
        if (simd) {
            quant_row_avx2(x + r * cols, cols, q + r * cols, row_max + r);
            continue;
        }
#endif
        (void)simd;
        tn_act_quant_int8_ref(x + r * cols, 1, cols, q + r * cols, row_max + r);
    }
}

void tn_act_fake_quant(const float *x, int64_t rows, int64_t cols, float *out) {
    const int simd = use_avx2();
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; r++) {
#if TN_X86
        if (simd) {
            fake_row_avx2(x + r * cols, cols, out + r * cols);
            continue;
        }
#endif
        (void)simd;
        tn_act_fake_quant_ref(x + r * cols, 1, cols, out + r * cols);
    }
}
