/* Memory read bandwidth and int8 dot-product peak of the CPU (runner/bandwidth.h). */
#include "runner/bandwidth.h"

#include "core/alloc.h"
#include "core/timer.h"
#include "kernels/cpu/cpu_features.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Sum of n words as 4 interleaved streams (4 quarters of the range), with software prefetch ahead on
 * each: like the kernels' access pattern, and it keeps more lines in flight than one sequential stream
 * (a single stream without prefetch under-reports the bandwidth on the development machine). */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t sum_range(const uint64_t *p, size_t n) {
    size_t q = n / 4 / 8 * 8;
    const uint64_t *s0 = p, *s1 = p + q, *s2 = p + 2 * q, *s3 = p + 3 * q;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < q; i += 8) {
        _mm_prefetch((const char *)(s0 + i) + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)(s1 + i) + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)(s2 + i) + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)(s3 + i) + 1024, _MM_HINT_T0);
        a = _mm256_add_epi64(a, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(s0 + i)),
                                                 _mm256_load_si256((const __m256i *)(s0 + i + 4))));
        b = _mm256_add_epi64(b, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(s1 + i)),
                                                 _mm256_load_si256((const __m256i *)(s1 + i + 4))));
        c = _mm256_add_epi64(c, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(s2 + i)),
                                                 _mm256_load_si256((const __m256i *)(s2 + i + 4))));
        d = _mm256_add_epi64(d, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(s3 + i)),
                                                 _mm256_load_si256((const __m256i *)(s3 + i + 4))));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t s[4];
    _mm256_storeu_si256((__m256i *)s, a);
    uint64_t t = s[0] + s[1] + s[2] + s[3];
    for (size_t i = 4 * q; i < n; i++) t += p[i];
    return t;
}
#else
static uint64_t sum_range(const uint64_t *p, size_t n) {
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) t += p[i];
    return t;
}
#endif

static volatile uint64_t g_sink;

double tn_bench_read_bandwidth(size_t bytes, int threads, int passes) {
    const size_t chunk_words = ((size_t)16 << 20) / 8; /* 16 MiB per timed piece */
    size_t n = bytes / 8 / chunk_words * chunk_words;
    if (n == 0) n = chunk_words;
    uint64_t *buf = tn_alloc(n, 8);
    if (!buf) return 0;
    /* Touch every page (from the threads that will read it): calloc'd memory may be the shared zero
     * page, which would read impossibly fast. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i;
    /* Each 16 MiB piece (far beyond L2; the sweep over the whole buffer evicts it from L3 before it comes
     * round again) is timed on its own and the 10th-percentile time is reported: robust against another
     * process taking a core for a few milliseconds (every piece needs all threads), which on a shared
     * 2-core machine would otherwise decide a whole-pass or median figure, yet not a lucky outlier. */
    size_t n_chunks = n / chunk_words;
    int n_t = (int)n_chunks * passes;
    double *t = malloc((size_t)n_t * sizeof(double));
    if (!t) {
        tn_free(buf);
        return 0;
    }
    uint64_t total = 0;
    for (int p = 0; p < passes; p++)
        for (size_t c = 0; c < n_chunks; c++) {
            const uint64_t *base = buf + c * chunk_words;
            double t0 = tn_time_s();
#pragma omp parallel num_threads(threads) reduction(+ : total)
            {
                int tid = omp_get_thread_num(), nt = omp_get_num_threads();
                size_t per = (chunk_words / (size_t)nt) / 64 * 64;
                size_t lo = per * (size_t)tid, hi = tid == nt - 1 ? chunk_words : lo + per;
                total += sum_range(base + lo, hi - lo);
            }
            t[p * (int)n_chunks + (int)c] = tn_time_s() - t0;
        }
    g_sink = total;
    tn_sort_doubles(t, n_t);
    double p10 = t[n_t / 10];
    free(t);
    tn_free(buf);
    return (double)(chunk_words * 8) / p10;
}

/* ---- int8 dot-product peak ------------------------------------------------------------------------------
 * The rate at which the CPU's best int8 instruction at the kernels' level (kernels/cpu/cpu_features.h)
 * multiplies and adds when nothing waits on memory: each thread runs 12 independent accumulator chains
 * (enough to cover the instruction's latency at 2 per cycle) over registers, each chain feeding its own
 * accumulator back as the unsigned operand so that nothing can be hoisted out of the loop (the values are
 * meaningless, the instructions are the point). One multiply-add counts as 2
 * operations. The denominator of `bench prefill`'s compute ratio: the T2 prompt kernels do the same
 * instructions on weights they also have to unpack. */
#define PEAK_CHAINS 12
#define PEAK_ITERS 200000

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static uint64_t peak_avx512(void) {
    __m512i acc[PEAK_CHAINS];
    const __m512i b = _mm512_set1_epi8(-2);
    for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm512_set1_epi32(k);
    for (int i = 0; i < PEAK_ITERS; i++)
        for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm512_dpbusd_epi32(acc[k], acc[k], b);
    __m512i s = acc[0];
    for (int k = 1; k < PEAK_CHAINS; k++) s = _mm512_add_epi32(s, acc[k]);
    uint32_t lanes[16]; /* summed as unsigned: GCC's _mm512_reduce_add_epi32 adds signed ints, which overflow */
    _mm512_storeu_si512((void *)lanes, s);
    uint64_t t = 0;
    for (int k = 0; k < 16; k++) t += lanes[k];
    g_sink = t;
    return (uint64_t)PEAK_ITERS * PEAK_CHAINS * 64; /* multiply-adds */
}

__attribute__((target("avx2,avxvnni"))) static uint64_t peak_avxvnni(void) {
    __m256i acc[PEAK_CHAINS];
    const __m256i b = _mm256_set1_epi8(-2);
    for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm256_set1_epi32(k);
    for (int i = 0; i < PEAK_ITERS; i++)
        for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm256_dpbusd_avx_epi32(acc[k], acc[k], b);
    __m256i s = acc[0];
    for (int k = 1; k < PEAK_CHAINS; k++) s = _mm256_add_epi32(s, acc[k]);
    g_sink = (uint64_t)(uint32_t)_mm256_extract_epi32(s, 0);
    return (uint64_t)PEAK_ITERS * PEAK_CHAINS * 32;
}

/* AVX2: vpmaddubsw (u8 x s8 pairs to s16) then vpmaddwd against ones (pairs to s32), as the T2 kernels */
__attribute__((target("avx2"))) static uint64_t peak_avx2(void) {
    __m256i acc[PEAK_CHAINS];
    const __m256i b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm256_set1_epi32(k);
    for (int i = 0; i < PEAK_ITERS; i++)
        for (int k = 0; k < PEAK_CHAINS; k++)
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[k], b), ones));
    __m256i s = acc[0];
    for (int k = 1; k < PEAK_CHAINS; k++) s = _mm256_add_epi32(s, acc[k]);
    g_sink = (uint64_t)(uint32_t)_mm256_extract_epi32(s, 0);
    return (uint64_t)PEAK_ITERS * PEAK_CHAINS * 32;
}
#endif

static uint64_t peak_scalar(void) {
    int32_t acc[PEAK_CHAINS];
    volatile int8_t vb = -3; /* not folded away */
    const int32_t b = vb;
    for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = k;
    for (int i = 0; i < PEAK_ITERS / 16; i++) /* as the vector paths: the accumulator is the other operand */
        for (int k = 0; k < PEAK_CHAINS; k++) acc[k] += (int32_t)(int8_t)acc[k] * b;
    uint64_t s = 0;
    for (int k = 0; k < PEAK_CHAINS; k++) s += (uint64_t)(uint32_t)acc[k];
    g_sink = s;
    return (uint64_t)(PEAK_ITERS / 16) * PEAK_CHAINS;
}

static uint64_t peak_once(tn_isa isa) {
#if defined(__x86_64__)
    if (isa == TN_ISA_AVX512) return peak_avx512();
    if (isa == TN_ISA_AVXVNNI) return peak_avxvnni();
    if (isa == TN_ISA_AVX2) return peak_avx2();
#endif
    (void)isa;
    return peak_scalar();
}

double tn_bench_int8_peak(int threads, int reps) {
    const tn_isa isa = tn_kernels_isa();
    double best = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t macs = 0;
        const double t0 = tn_time_s();
#pragma omp parallel num_threads(threads) reduction(+ : macs)
        macs += peak_once(isa);
        const double dt = tn_time_s() - t0;
        if (dt > 0 && 2.0 * (double)macs / dt > best) best = 2.0 * (double)macs / dt;
    }
    return best;
}
