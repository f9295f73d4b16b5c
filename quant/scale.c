#include "quant/scale.h"
#include "core/error.h"
#include "quant/snap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TN_X86 1
#else
#define TN_X86 0
#endif

int tn_scale_rule_parse(const char *name, tn_scale_rule *out) {
    if (name && strcmp(name, "std") == 0) *out = TN_SCALE_STD;
    else if (name && strcmp(name, "absmean") == 0) *out = TN_SCALE_ABSMEAN;
    else if (name && strcmp(name, "absmax") == 0) *out = TN_SCALE_ABSMAX;
    else return tn_err("unknown scale rule '%s' (known: std, absmean, absmax)", name ? name : "");
    return 0;
}

const char *tn_scale_rule_name(tn_scale_rule r) {
    switch (r) {
    case TN_SCALE_STD: return "std";
    case TN_SCALE_ABSMEAN: return "absmean";
    case TN_SCALE_ABSMAX: return "absmax";
    }
    return "?";
}

/* Per-row partial statistics, in double. bad = column of the first non-finite value, or -1. */
typedef struct {
    double sum, sumabs, maxabs, m2;
    int64_t bad;
} row_stats;

/* Both the scalar and the AVX2 sums use 8 lanes: lane k adds elements j = k (mod 8) of the 8-aligned
 * part in order, the tail element n8 + t goes to lane t, and the lanes combine as
 * ((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7)). Same operations in the same order, so both paths give
 * bit-identical scales (and the lanes give the CPU independent add chains). */
static double combine8(const double l[8]) { return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])); }

static void first_pass_ref(const float *w, int64_t n, row_stats *st) {
    double s[8] = {0}, a[8] = {0}, mx = 0;
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t j = 0; j < n8; j += 8)
        for (int k = 0; k < 8; k++) {
            s[k] += (double)w[j + k];
            a[k] += fabs((double)w[j + k]);
            mx = fabs((double)w[j + k]) > mx ? fabs((double)w[j + k]) : mx;
        }
    for (int64_t j = n8; j < n; j++) {
        s[j - n8] += (double)w[j];
        a[j - n8] += fabs((double)w[j]);
        mx = fabs((double)w[j]) > mx ? fabs((double)w[j]) : mx;
    }
    st->sum = combine8(s);
    st->sumabs = combine8(a);
    st->maxabs = mx;
}

/* Σ (w - mean)², the second pass of the two-pass variance (no cancellation, unlike Σw² - n·mean²). */
static double m2_ref(const float *w, int64_t n, double mean) {
    double m[8] = {0};
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t j = 0; j < n8; j += 8)
        for (int k = 0; k < 8; k++) {
            double d = (double)w[j + k] - mean;
            m[k] += d * d;
        }
    for (int64_t j = n8; j < n; j++) {
        double d = (double)w[j] - mean;
        m[j - n8] += d * d;
    }
    return combine8(m);
}

#if TN_X86
__attribute__((target("avx2"))) static void first_pass_avx2(const float *w, int64_t n, row_stats *st) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, a0 = s0, a1 = s0, m0 = s0, m1 = s0;
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t j = 0; j < n8; j += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(w + j)), hi = _mm256_cvtps_pd(_mm_loadu_ps(w + j + 4));
        __m256d alo = _mm256_andnot_pd(sign, lo), ahi = _mm256_andnot_pd(sign, hi);
        s0 = _mm256_add_pd(s0, lo);
        s1 = _mm256_add_pd(s1, hi);
        a0 = _mm256_add_pd(a0, alo);
        a1 = _mm256_add_pd(a1, ahi);
        m0 = _mm256_max_pd(alo, m0); /* NaN lanes keep m; NaN is caught through the sums */
        m1 = _mm256_max_pd(ahi, m1);
    }
    double s[8], a[8], m[8], mx = 0;
    _mm256_storeu_pd(s, s0), _mm256_storeu_pd(s + 4, s1);
    _mm256_storeu_pd(a, a0), _mm256_storeu_pd(a + 4, a1);
    _mm256_storeu_pd(m, m0), _mm256_storeu_pd(m + 4, m1);
    for (int k = 0; k < 8; k++) mx = m[k] > mx ? m[k] : mx;
    for (int64_t j = n8; j < n; j++) {
        s[j - n8] += (double)w[j];
        a[j - n8] += fabs((double)w[j]);
        mx = fabs((double)w[j]) > mx ? fabs((double)w[j]) : mx;
    }
    st->sum = combine8(s);
    st->sumabs = combine8(a);
    st->maxabs = mx;
}

__attribute__((target("avx2"))) static double m2_avx2(const float *w, int64_t n, double mean) {
    const __m256d mu = _mm256_set1_pd(mean);
    __m256d m0 = _mm256_setzero_pd(), m1 = m0;
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t j = 0; j < n8; j += 8) {
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(w + j)), mu);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(w + j + 4)), mu);
        m0 = _mm256_add_pd(m0, _mm256_mul_pd(d0, d0)); /* mul then add, no FMA: same rounding as scalar */
        m1 = _mm256_add_pd(m1, _mm256_mul_pd(d1, d1));
    }
    double m[8];
    _mm256_storeu_pd(m, m0), _mm256_storeu_pd(m + 4, m1);
    for (int64_t j = n8; j < n; j++) {
        double d = (double)w[j] - mean;
        m[j - n8] += d * d;
    }
    return combine8(m);
}
#endif

static void row_first_pass(const float *w, int64_t n, row_stats *st) {
#if TN_X86
    if (tn_quant_have_avx2()) first_pass_avx2(w, n, st);
    else
#endif
        first_pass_ref(w, n, st);
    st->bad = -1;
    if (!isfinite(st->sumabs)) /* a NaN or inf somewhere (finite floats cannot overflow a double sum) */
        for (int64_t j = 0; j < n && st->bad < 0; j++)
            if (!isfinite(w[j])) st->bad = j;
}

static double row_m2(const float *w, int64_t n, double mean) {
#if TN_X86
    if (tn_quant_have_avx2()) return m2_avx2(w, n, mean);
#endif
    return m2_ref(w, n, mean);
}

static float guard(double s) {
    float f = (float)s;
    return f > TN_SCALE_EPS ? f : TN_SCALE_EPS;
}

static double rule_value(tn_scale_rule rule, double sumabs, double maxabs, double m2, int64_t n) {
    switch (rule) {
    case TN_SCALE_STD: return n > 1 ? sqrt(m2 / (double)(n - 1)) : 0.0;
    case TN_SCALE_ABSMEAN: return sumabs / (double)n;
    case TN_SCALE_ABSMAX: return maxabs;
    }
    return 0.0;
}

int tn_scale_compute(const float *W, int64_t rows, int64_t cols, tn_scale_rule rule, int per_row, float *scales) {
    if (rows <= 0 || cols <= 0) return tn_err("scale: empty tensor [%lld, %lld]", (long long)rows, (long long)cols);
    if (rule != TN_SCALE_STD && rule != TN_SCALE_ABSMEAN && rule != TN_SCALE_ABSMAX)
        return tn_err("scale: unknown rule %d", (int)rule);
    row_stats *st = malloc((size_t)rows * sizeof *st);
    if (!st) return tn_err("scale: out of memory for %lld rows", (long long)rows);
    const int big = rows * cols > 32768;

#pragma omp parallel for schedule(static) if (big)
    for (int64_t r = 0; r < rows; r++) {
        row_first_pass(W + r * cols, cols, &st[r]);
        /* Per-row std needs the row mean; per-tensor std gets its own pass below. */
        st[r].m2 = (per_row && rule == TN_SCALE_STD) ? row_m2(W + r * cols, cols, st[r].sum / (double)cols) : 0.0;
    }
    for (int64_t r = 0; r < rows; r++)
        if (st[r].bad >= 0) {
            int64_t c = st[r].bad;
            free(st);
            return tn_err("scale: non-finite weight %g at [%lld, %lld]", (double)W[r * cols + c], (long long)r,
                          (long long)c);
        }

    if (per_row) {
        for (int64_t r = 0; r < rows; r++)
            scales[r] = guard(rule_value(rule, st[r].sumabs, st[r].maxabs, st[r].m2, cols));
    } else {
        const int64_t n = rows * cols;
        double sum = 0, sumabs = 0, maxabs = 0, m2 = 0;
        for (int64_t r = 0; r < rows; r++) { /* fixed order: thread-count independent */
            sum += st[r].sum;
            sumabs += st[r].sumabs;
            if (st[r].maxabs > maxabs) maxabs = st[r].maxabs;
        }
        if (rule == TN_SCALE_STD) {
            const double mean = sum / (double)n;
#pragma omp parallel for schedule(static) if (big)
            for (int64_t r = 0; r < rows; r++) st[r].m2 = row_m2(W + r * cols, cols, mean);
            for (int64_t r = 0; r < rows; r++) m2 += st[r].m2;
        }
        scales[0] = guard(rule_value(rule, sumabs, maxabs, m2, n));
    }
    free(st);
    return 0;
}
