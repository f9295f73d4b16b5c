/* bf16 storage on the CPU (kernels/bf16.h, kernels/cpu/bf16_ops.c, optim/adamw_bf16.c):
 *   - round to nearest against a reference that knows nothing of bit tricks: the two bf16 neighbours of x
 *     computed in double (frexp, the spacing 2^(e−8), at least 2^−133), the nearer taken, ties to the even
 *     mantissa, 2^128 meaning ∞; for 2^20 random float bit patterns (every exponent, subnormals included),
 *     2^20 more with the low 16 bits a tie or one off it, and hand-picked values (1 + 2^−8 → 1, 1 + 3·2^−8 →
 *     up, ±0, ±∞, FLT_MAX → ∞, the largest bf16, subnormal ties); every NaN stays a quiet NaN of its sign;
 *   - stochastic rounding: for 14 values (fractions 1/2, 1/3, 0.01, 0.99, 2^−16 and 1 − 2^−16 of a step,
 *     negatives, subnormals, 1e−30, 1e30, a value that rounds up across a power of two) over 2^22 counters
 *     the result is only ever one of the two neighbours, the share of round-ups is the fraction f and the
 *     sample mean is x, within 6 standard errors (σ = step · sqrt(f (1 − f) / N)); the same with the seed
 *     varied instead of the counter; neighbouring counters uncorrelated (|corr| < 0.01); the 16 random bits
 *     uniform (χ² of both bytes, 255 degrees of freedom); values on the bf16 grid never move; the bits are
 *     the documented pure function of (seed, counter) (SplitMix64, checked against its published first
 *     outputs), another seed differs in a share 2 f (1 − f) of the counters;
 *   - the array ops equal the scalar functions (element i with counter + i, also across 2^32 and across the
 *     2^64 wrap), accumulate and sumsq equal straightforward references (sumsq within 1e-12 relative, in
 *     long double), every result the same with 1, 2 and 3 OpenMP threads;
 *   - tn_adamw_bf16_apply is BIT FOR BIT the composition it documents: widen, g·g_scale, tn_adamw_apply
 *     (fp32 moments) or tn_adamw8_apply (8-bit moments) on float copies, stochastic rounding with counter + i;
 *     for n = 1, 2047, 2048, 2049, 5000, 3 steps, g_scale 1 and 0.37; the same with 1, 2 and 3 threads; the
 *     CPU table refuses moments of 7 bits;
 *   - why stochastic rounding: updates of a tenth of a bf16 step for 200 steps move the bf16 weights on
 *     average as far as fp32 weights move (within 3%, and within 6 standard errors), where rounding to nearest
 *     leaves every weight where it started. */
#include "tn_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/cpu/bf16_ops.h"
#include "kernels/ops.h"
#include "optim/adamw.h"
#include "optim/adamw8.h"
#include "optim/adamw_bf16.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------------------------- */

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static uint32_t to_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static int64_t float_bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

static int64_t u16_diffs(const uint16_t *a, const uint16_t *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static int64_t byte_diffs(const uint8_t *a, const uint8_t *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* The bf16 neighbours of finite x, in double, by arithmetic only: |x| in [2^(e−1), 2^e) has bf16 spacing
 * q = 2^(e−8) (8 significant bits), and never below 2^−133 (bf16 subnormals share float's exponent range);
 * lo = ⌊|x| / q⌋ q <= |x| < hi = lo + q. Every quantity is exact in double. */
static void ref_neighbours(float x, double *lo, double *hi, double *q) {
    const double ax = fabs((double)x);
    int e = -1000;
    if (ax > 0) frexp(ax, &e);
    *q = ldexp(1.0, e - 8 < -133 ? -133 : e - 8);
    *lo = floor(ax / *q) * *q;
    *hi = *lo + *q;
}

/* Round to nearest, ties to the even mantissa (lo / q even), overflow to ∞ (a result of 2^128): the float
 * value of the bf16 IEEE 754 prescribes for finite x. */
static float ref_nearest(float x) {
    if (isnan(x) || isinf(x)) return x;
    double lo, hi, q;
    ref_neighbours(x, &lo, &hi, &q);
    const double ax = fabs((double)x), dl = ax - lo, dh = hi - ax;
    const double r = dl < dh ? lo : dh < dl ? hi : fmod(lo / q, 2.0) == 0.0 ? lo : hi;
    const float f = r >= ldexp(1.0, 128) ? INFINITY : (float)r;
    return copysignf(f, x);
}

static float widen(uint16_t h) { return tn_bf16_widen(h); }

/* SplitMix64's finalizer (Steele, Lea, Flood 2014), written out here from the paper's constants. */
static uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- round to nearest ----------------------------------------------------------------------------- */

static void test_nearest(void) {
    tn_rng r;
    tn_rng_seed(&r, 101);
    enum { RANDOM = 1 << 20, TIES = 1 << 20 };
    int64_t bad = 0, checked = 0, nan_bad = 0, nans = 0, by_exponent[256] = {0};
    uint32_t first_bad = 0;
    const uint32_t low_parts[] = {0x8000u, 0x7fffu, 0x8001u, 0x0000u, 0xffffu};
    for (int64_t k = 0; k < RANDOM + TIES; k++) {
        uint32_t u = (uint32_t)tn_rng_u64(&r);
        if (k >= RANDOM) u = (u & 0xffff0000u) | low_parts[k % 5];
        const float x = from_bits(u);
        const uint16_t h = tn_bf16_round_nearest(x);
        if (isnan(x)) {
            nans++;
            /* a quiet NaN of x's sign; not ∞ even when the payload sits in the low 16 bits only */
            const int ok = isnan(widen(h)) && (h & 0x0040u) && (h >> 15) == (u >> 31);
            nan_bad += !ok;
            continue;
        }
        by_exponent[(u >> 23) & 0xff]++;
        checked++;
        if (to_bits(widen(h)) != to_bits(ref_nearest(x))) {
            if (!bad) first_bad = u;
            bad++;
        }
    }
    int all_exponents = 1;
    for (int e = 0; e < 255; e++) all_exponents &= by_exponent[e] > 0;
    printf("round to nearest: %lld values (every exponent %s), %lld differ from the double reference; %lld NaNs, "
           "%lld not quiet NaNs of their sign\n", (long long)checked, all_exponents ? "seen" : "NOT seen",
           (long long)bad, (long long)nans, (long long)nan_bad);
    CHECKF(bad == 0, "%lld of %lld values round differently from the reference, first 0x%08x", (long long)bad,
           (long long)checked, first_bad);
    CHECK(all_exponents);
    CHECKF(nans > 0 && nan_bad == 0, "%lld of %lld NaNs", (long long)nan_bad, (long long)nans);

    /* hand-picked: {float bits, expected bf16} */
    static const uint32_t cases[][2] = {
        {0x3f800000u, 0x3f80u}, /* 1 */
        {0x3f808000u, 0x3f80u}, /* 1 + 2^-8: halfway, to the even 1 */
        {0x3f808001u, 0x3f81u}, /* just above halfway: up */
        {0x3f807fffu, 0x3f80u}, /* just below: down */
        {0x3f818000u, 0x3f82u}, /* 1 + 3·2^-8: halfway between odd 0x3f81 and 0x3f82: up */
        {0xbf818000u, 0xbf82u}, /* the same, negative */
        {0x3f7fffffu, 0x3f80u}, /* just below 1: up across the power of two */
        {0x00000000u, 0x0000u}, /* +0 */
        {0x80000000u, 0x8000u}, /* -0 */
        {0x80000001u, 0x8000u}, /* the smallest negative subnormal: to -0 */
        {0x00008000u, 0x0000u}, /* subnormal tie between 0 and 2^-133: even 0 */
        {0x00018000u, 0x0002u}, /* subnormal tie between 0x0001 and 0x0002: even */
        {0x00010000u, 0x0001u}, /* the smallest bf16 subnormal, exact */
        {0x007fffffu, 0x0080u}, /* the largest float subnormal: up to the smallest normal */
        {0x7f800000u, 0x7f80u}, /* +inf */
        {0xff800000u, 0xff80u}, /* -inf */
        {0x7f7f0000u, 0x7f7fu}, /* the largest bf16 */
        {0x7f7f7fffu, 0x7f7fu}, /* below the halfway point to 2^128 */
        {0x7f7f8000u, 0x7f80u}, /* halfway, odd mantissa: to 2^128, i.e. inf */
        {0x7f7fffffu, 0x7f80u}, /* FLT_MAX: past the halfway point: inf */
        {0xff7fffffu, 0xff80u}, /* -FLT_MAX: -inf */
        {0x7f7e8000u, 0x7f7eu}, /* halfway, even mantissa: down */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uint16_t h = tn_bf16_round_nearest(from_bits(cases[k][0]));
        CHECKF(h == cases[k][1], "round_nearest(0x%08x) = 0x%04x, expected 0x%04x", cases[k][0], h, cases[k][1]);
        CHECKF(to_bits(ref_nearest(from_bits(cases[k][0]))) == cases[k][1] << 16, "the reference on 0x%08x",
               cases[k][0]);
    }
    CHECK(tn_bf16_round_nearest(FLT_MAX) == 0x7f80u && tn_bf16_round_nearest(1.0f + 0x1p-8f) == 0x3f80u);
    CHECK(tn_bf16_round_nearest(1.0f + 3 * 0x1p-8f) == 0x3f82u);
    static const uint32_t nan_bits[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu,
                                        0x7f80ffffu, 0xffffffffu, 0x7f810000u};
    for (size_t k = 0; k < sizeof nan_bits / sizeof nan_bits[0]; k++) {
        const uint16_t h = tn_bf16_round_nearest(from_bits(nan_bits[k]));
        CHECKF(isnan(widen(h)) && (h & 0x40u) && (h >> 15) == (nan_bits[k] >> 31), "NaN 0x%08x -> 0x%04x",
               nan_bits[k], h);
    }
    /* widening is exact: every finite bf16 back to itself */
    int64_t back = 0;
    for (uint32_t h = 0; h < 0x10000u; h++)
        if ((h & 0x7f80u) != 0x7f80u) back += tn_bf16_round_nearest(widen((uint16_t)h)) != h;
    CHECKF(back == 0, "%lld finite bf16 values do not survive widen + round", (long long)back);
}

/* ---- stochastic rounding -------------------------------------------------------------------------- */

enum { SR_N = 1 << 22 };

typedef struct {
    double worst_mean_se, worst_share_se, worst_corr;
} sr_stats;

/* N stochastic roundings of x, by counter (vary_seed 0: seed fixed, counters c0 .. c0 + N − 1) or by seed
 * (vary_seed 1: seeds s0 .. s0 + N − 1 at one counter). Checks the two neighbours, the round-up share and the
 * mean within 6 standard errors, and the correlation of consecutive round-up indicators. */
static void sr_sample(float x, uint64_t s0, uint64_t c0, int vary_seed, sr_stats *st) {
    double lo, hi, q;
    ref_neighbours(x, &lo, &hi, &q);
    const double sgn = signbit(x) ? -1.0 : 1.0, f = (fabs((double)x) - lo) / q;
    const float flo = (float)(sgn * lo), fhi = hi >= ldexp(1.0, 128) ? (float)(sgn * INFINITY) : (float)(sgn * hi);
    int64_t ups = 0, others = 0, pairs = 0;
    double sum = 0;
    int prev = 0;
    for (int64_t k = 0; k < SR_N; k++) {
        const uint16_t h = vary_seed ? tn_bf16_round_stochastic(x, s0 + (uint64_t)k, c0)
                                     : tn_bf16_round_stochastic(x, s0, c0 + (uint64_t)k);
        const float w = widen(h);
        const int up = to_bits(w) == to_bits(fhi);
        others += !up && to_bits(w) != to_bits(flo);
        ups += up;
        pairs += k > 0 && up && prev;
        prev = up;
        sum += isinf(w) ? sgn * hi : (double)w; /* near FLT_MAX the upper neighbour is 2^128: inf */
    }
    const double share = (double)ups / SR_N, mean = sum / SR_N;
    const double se_share = sqrt(f * (1 - f) / SR_N), se_mean = q * se_share;
    const double dev_share = se_share > 0 ? (share - f) / se_share : (share == f ? 0 : INFINITY);
    const double dev_mean = se_mean > 0 ? (mean - x) / se_mean : (mean == x ? 0 : INFINITY);
    /* corr(U_k, U_k+1) = (E[U_k U_k+1] − p²) / (p (1 − p)) */
    const double corr = share > 0 && share < 1
                            ? ((double)pairs / (SR_N - 1) - share * share) / (share * (1 - share)) : 0.0;
    printf("  x = %-14.8g (0x%08x) f = %.6f by %s: round-up share %.6f (%+.2f se), mean %+.2f se, corr %+.5f\n",
           (double)x, to_bits(x), f, vary_seed ? "seed   " : "counter", share, dev_share, dev_mean, corr);
    CHECKF(others == 0, "x = %g: %lld results are neither neighbour (%g, %g)", (double)x, (long long)others,
           (double)flo, (double)fhi);
    CHECKF(fabs(dev_share) <= 6, "x = %g: round-up share %.7f, f = %.7f: %.2f standard errors", (double)x, share, f,
           dev_share);
    CHECKF(fabs(dev_mean) <= 6, "x = %g: mean %.10g, %.2f standard errors off", (double)x, mean, dev_mean);
    CHECKF(fabs(corr) < 0.01, "x = %g: consecutive round-ups correlate by %.4f", (double)x, corr);
    st->worst_mean_se = fmax(st->worst_mean_se, fabs(dev_mean));
    st->worst_share_se = fmax(st->worst_share_se, fabs(dev_share));
    st->worst_corr = fmax(st->worst_corr, fabs(corr));
}

static void test_stochastic(void) {
    const uint64_t seed = 0x5eed5eed12345678ull;
    const float xs[] = {
        (float)(1.0 + 0.5 / 128),       /* f = 1/2 */
        (float)(1.0 + (1.0 / 3) / 128), /* f = 1/3 (to 2^-16) */
        (float)(1.0 + 0.01 / 128),      /* f = 0.01 */
        (float)(1.0 + 0.99 / 128),      /* f = 0.99 */
        from_bits(0x3f800001u),         /* f = 2^-16 */
        from_bits(0x3f80ffffu),         /* f = 1 − 2^-16 */
        (float)-(1.5 + 0.3 / 128),      /* negative, f = 0.3 */
        (float)-(3.0 + (1.0 / 3) / 64), /* negative, f = 1/3 */
        from_bits(0x00012345u),         /* a subnormal */
        from_bits(0x807fabcdu),         /* a negative subnormal rounding up to the smallest normal */
        1e-30f,
        -1e30f,
        from_bits(0x3f7fc000u),         /* 1 − 2^-10: rounds up to 1, across the power of two */
        from_bits(0x7f7f4000u),         /* near FLT_MAX: documented to round up to inf a quarter of the time */
    };
    sr_stats st = {0, 0, 0};
    printf("stochastic rounding over %d samples:\n", SR_N);
    for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) /* disjoint ranges of counters: independent samples */
        sr_sample(xs[k], seed, 1000 + ((uint64_t)k << 36), 0, &st);
    sr_sample(xs[1], 7, 123456789, 1, &st); /* the trainer varies the seed per step at a fixed counter */
    sr_sample(xs[6], 0x9e3779b97f4a7c15ull, 5, 1, &st);
    printf("worst deviations: mean %.2f se, round-up share %.2f se, |corr| %.5f\n", st.worst_mean_se,
           st.worst_share_se, st.worst_corr);

    /* the 16 random bits: both bytes uniform (χ², 255 degrees of freedom: mean 255, sd 22.6) */
    int64_t hist[2][256] = {{0}}, wide = 0;
    for (int64_t c = 0; c < SR_N; c++) {
        const uint32_t r16 = tn_bf16_random16(seed, (uint64_t)c);
        wide += r16 > 0xffffu;
        hist[0][r16 >> 8]++;
        hist[1][r16 & 0xff]++;
    }
    CHECK(wide == 0);
    for (int b = 0; b < 2; b++) {
        double chi2 = 0;
        const double e = SR_N / 256.0;
        for (int k = 0; k < 256; k++) chi2 += (hist[b][k] - e) * (hist[b][k] - e) / e;
        printf("random16 %s byte: chi2 = %.1f (255 dof)\n", b ? "low" : "high", chi2);
        CHECKF(chi2 < 255 + 6 * 22.6, "random16's %s byte: chi2 %.1f", b ? "low" : "high", chi2);
    }

    /* values on the grid never move: every finite bf16, 64 counters each, two seeds */
    int64_t moved = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7f80u) == 0x7f80u) continue;
        for (uint64_t c = 0; c < 64; c++)
            moved += (tn_bf16_round_stochastic(widen((uint16_t)h), seed, c * 1000003u) != h) +
                     (tn_bf16_round_stochastic(widen((uint16_t)h), c, ~c) != h);
    }
    CHECKF(moved == 0, "%lld roundings moved a value on the bf16 grid", (long long)moved);
    /* ±inf stay; NaN stays NaN; the near-FLT_MAX case only ever the largest bf16 or inf */
    int special = 1;
    for (uint64_t c = 0; c < 4096; c++) {
        special &= tn_bf16_round_stochastic(INFINITY, seed, c) == 0x7f80u;
        special &= tn_bf16_round_stochastic(-INFINITY, seed, c) == 0xff80u;
        special &= isnan(widen(tn_bf16_round_stochastic(from_bits(0x7f800001u), seed, c)));
        special &= isnan(widen(tn_bf16_round_stochastic(NAN, seed, c)));
        const uint16_t h = tn_bf16_round_stochastic(FLT_MAX, seed, c);
        special &= h == 0x7f7fu || h == 0x7f80u;
        special &= tn_bf16_round_stochastic(0.0f, seed, c) == 0 && tn_bf16_round_stochastic(-0.0f, seed, c) == 0x8000u;
    }
    CHECK(special);

    /* determinism: the bits are the documented pure function of (seed, counter), SplitMix64's output
     * (published vector: seeded with 0, its first outputs are 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4), and
     * the rounding is (bits(x) + r) >> 16 with exactly those bits */
    CHECK(tn_bf16_random16(0, 1) == 0xe220u && tn_bf16_random16(0, 2) == 0x6e78u);
    int64_t not_pure = 0;
    for (uint64_t k = 0; k < 65536; k++) {
        const uint64_t s = k * 0x2545f4914f6cdd1dull, c = k ^ (k << 29);
        not_pure += tn_bf16_random16(s, c) != (uint32_t)(splitmix64_mix(s + c * 0x9e3779b97f4a7c15ull) >> 48);
        const float x = xs[k % (sizeof xs / sizeof xs[0] - 1)];
        not_pure += tn_bf16_round_stochastic(x, s, c) != (uint16_t)((to_bits(x) + tn_bf16_random16(s, c)) >> 16);
    }
    CHECKF(not_pure == 0, "%lld roundings are not the documented function of (seed, counter)", (long long)not_pure);

    /* another seed: results differ in a share 2 f (1 − f) of the counters */
    enum { M = 1 << 20 };
    const float half = xs[0], third = xs[1];
    int64_t diff_half = 0, diff_third = 0, diff_near = 0;
    for (int64_t c = 0; c < M; c++) {
        diff_half +=
            tn_bf16_round_stochastic(half, seed, (uint64_t)c) != tn_bf16_round_stochastic(half, 42, (uint64_t)c);
        diff_third +=
            tn_bf16_round_stochastic(third, seed, (uint64_t)c) != tn_bf16_round_stochastic(third, 43, (uint64_t)c);
        diff_near += tn_bf16_round_stochastic(half, seed, (uint64_t)c) !=
                     tn_bf16_round_stochastic(half, seed + 1, (uint64_t)c);
    }
    double lo, hi, q;
    ref_neighbours(third, &lo, &hi, &q);
    const double f3 = ((double)third - lo) / q;
    const double ps[3] = {0.5, 2 * f3 * (1 - f3), 0.5};
    const int64_t ds[3] = {diff_half, diff_third, diff_near};
    for (int k = 0; k < 3; k++) {
        const double share = (double)ds[k] / M, se = sqrt(ps[k] * (1 - ps[k]) / M);
        printf("another seed (%s): %.5f of the roundings differ, expected %.5f (%+.2f se)\n",
               k == 0 ? "f = 1/2, 42" : k == 1 ? "f = 1/3, 43" : "f = 1/2, seed + 1", share, ps[k],
               (share - ps[k]) / se);
        CHECKF(fabs(share - ps[k]) <= 6 * se, "another seed: share %.5f, expected %.5f", share, ps[k]);
    }
}

/* ---- the array ops -------------------------------------------------------------------------------- */

/* Floats for the array ops: random bit patterns, normals over many decades, ties, specials. */
static void mixed_floats(tn_rng *r, float *x, int64_t n) {
    static const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                        0x7f800001u, 0xffc00001u, 0x00000001u, 0x807fffffu, 0x3f808000u,
                                        0x3f818000u, 0x7f7fffffu, 0x7f7f8000u, 0xff7f7fffu, 0x00018000u};
    for (int64_t i = 0; i < n; i++) {
        const uint64_t k = tn_rng_below(r, 8);
        if (k == 0) x[i] = from_bits((uint32_t)tn_rng_u64(r));
        else if (k == 1) x[i] = from_bits(specials[tn_rng_below(r, sizeof specials / sizeof specials[0])]);
        else if (k == 2) x[i] = from_bits(((uint32_t)tn_rng_u64(r) & 0xffff0000u) | 0x8000u);
        else if (k == 3) x[i] = from_bits((uint32_t)tn_rng_u64(r) & 0x807fffffu); /* subnormal */
        else x[i] = tn_rng_normal(r) * (float)pow(10.0, -30 + 60 * tn_rng_uniform_d(r));
    }
}

static void test_array_ops(void) {
    tn_rng r;
    tn_rng_seed(&r, 303);
    const int saved = omp_get_max_threads();
    const int64_t n = 100003;
    float *x = xmalloc(sizeof(float) * n), *w = xmalloc(sizeof(float) * n), *w2 = xmalloc(sizeof(float) * n);
    uint16_t *h[3], *ref = xmalloc(sizeof(uint16_t) * n), *bits = xmalloc(sizeof(uint16_t) * n);
    for (int k = 0; k < 3; k++) h[k] = xmalloc(sizeof(uint16_t) * n);
    mixed_floats(&r, x, n);
    for (int64_t i = 0; i < n; i++) bits[i] = (uint16_t)tn_rng_u64(&r);
    const uint64_t seed = 0xfeedfacecafebeefull;
    const uint64_t counters[] = {0, (1ull << 32) - 5000, UINT64_MAX - 40000}; /* across 2^32; across the wrap */
    for (size_t ci = 0; ci < sizeof counters / sizeof counters[0]; ci++) {
        for (int64_t i = 0; i < n; i++) ref[i] = tn_bf16_round_stochastic(x[i], seed, counters[ci] + (uint64_t)i);
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(t + 1);
            tn_op_bf16_round_stochastic(h[t], x, n, seed, counters[ci]);
            CHECKF(u16_diffs(h[t], ref, n) == 0, "round_stochastic, counter %llu, %d threads: %lld differ",
                   (unsigned long long)counters[ci], t + 1, (long long)u16_diffs(h[t], ref, n));
        }
        omp_set_num_threads(saved);
    }
    /* the table's op is the same */
    CHECK_OK(tn_ops_cpu()->bf16_round_stochastic(h[0], x, n, seed, counters[1]));
    for (int64_t i = 0; i < n; i++) ref[i] = tn_bf16_round_stochastic(x[i], seed, counters[1] + (uint64_t)i);
    CHECK(u16_diffs(h[0], ref, n) == 0);
    /* from_f32 and to_f32 */
    for (int64_t i = 0; i < n; i++) ref[i] = tn_bf16_round_nearest(x[i]);
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        tn_op_bf16_from_f32(h[t], x, n);
        CHECKF(u16_diffs(h[t], ref, n) == 0, "from_f32, %d threads", t + 1);
        tn_op_bf16_to_f32(w, bits, n);
        int64_t d = 0;
        for (int64_t i = 0; i < n; i++) d += to_bits(w[i]) != (uint32_t)bits[i] << 16;
        CHECKF(d == 0, "to_f32, %d threads: %lld differ", t + 1, (long long)d);
    }
    omp_set_num_threads(saved);
    CHECK_OK(tn_ops_cpu()->bf16_from_f32(h[0], x, n));
    CHECK(u16_diffs(h[0], ref, n) == 0);
    CHECK_OK(tn_ops_cpu()->bf16_to_f32(w2, bits, n));
    CHECK(float_bit_diffs(w, w2, n) == 0);

    /* accumulate: g = nearest(widen(g) + d), twice in a row */
    float *d1 = xmalloc(sizeof(float) * n), *d2 = xmalloc(sizeof(float) * n);
    mixed_floats(&r, d1, n);
    for (int64_t i = 0; i < n; i++) d2[i] = tn_rng_normal(&r) * (float)pow(10.0, -6 + 6 * tn_rng_uniform_d(&r));
    for (int64_t i = 0; i < n; i++) bits[i] = tn_bf16_round_nearest(tn_rng_normal(&r) * 0.01f);
    for (int64_t i = 0; i < n; i++) {
        uint16_t g = bits[i];
        for (int k = 0; k < 2; k++) {
            const float s = widen(g) + (k ? d2[i] : d1[i]); /* one float addition */
            g = isnan(s) ? 0x7fc0u : to_bits(ref_nearest(s)) >> 16;
        }
        ref[i] = g;
    }
    int64_t worst = 0, nan_results = 0;
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        memcpy(h[t], bits, sizeof(uint16_t) * n);
        tn_op_bf16_accumulate(h[t], d1, n);
        tn_op_bf16_accumulate(h[t], d2, n);
        int64_t d = 0;
        nan_results = 0;
        for (int64_t i = 0; i < n; i++) {
            const int nan_ref = isnan(widen(ref[i])), nan_got = isnan(widen(h[t][i]));
            nan_results += nan_ref;
            d += nan_ref ? !nan_got : h[t][i] != ref[i];
        }
        worst = d > worst ? d : worst;
    }
    omp_set_num_threads(saved);
    CHECK(u16_diffs(h[0], h[1], n) == 0 && u16_diffs(h[0], h[2], n) == 0);
    memcpy(h[1], bits, sizeof(uint16_t) * n);
    CHECK_OK(tn_ops_cpu()->bf16_accumulate(h[1], d1, n));
    CHECK_OK(tn_ops_cpu()->bf16_accumulate(h[1], d2, n));
    CHECK(u16_diffs(h[0], h[1], n) == 0);
    printf("accumulate: %lld of %lld differ from the reference (%lld NaN results)\n", (long long)worst, (long long)n,
           (long long)nan_results);
    CHECKF(worst == 0, "accumulate: %lld differ", (long long)worst);

    /* sumsq: long double reference, 1e-12 relative; the same bits for 1, 2, 3 threads */
    const int64_t sizes[] = {0, 1, 63, 64, 65, 1000, 1000003};
    uint16_t *xs = xmalloc(sizeof(uint16_t) * 1000003);
    for (int64_t i = 0; i < 1000003; i++)
        xs[i] = tn_bf16_round_nearest(tn_rng_normal(&r) * (float)pow(10.0, -20 + 40 * tn_rng_uniform_d(&r)));
    double worst_rel = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        long double s = 0;
        for (int64_t i = 0; i < sizes[k]; i++) s += (long double)widen(xs[i]) * widen(xs[i]);
        double got[3];
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(t + 1);
            got[t] = tn_op_bf16_sumsq(xs, sizes[k]);
        }
        omp_set_num_threads(saved);
        const double rel = s == 0 ? fabs(got[0]) : (double)fabsl((got[0] - s) / s);
        worst_rel = fmax(worst_rel, rel);
        CHECKF(rel <= 1e-12, "sumsq n = %lld: relative error %.3g", (long long)sizes[k], rel);
        CHECKF(memcmp(&got[0], &got[1], sizeof(double)) == 0 && memcmp(&got[0], &got[2], sizeof(double)) == 0,
               "sumsq n = %lld: %.17g / %.17g / %.17g with 1 / 2 / 3 threads", (long long)sizes[k], got[0], got[1],
               got[2]);
        double tab = -1;
        CHECK_OK(tn_ops_cpu()->bf16_sumsq(xs, sizes[k], &tab));
        CHECK(memcmp(&tab, &got[0], sizeof(double)) == 0);
    }
    printf("sumsq: worst relative error %.3g\n", worst_rel);
    /* inf and NaN propagate */
    uint16_t sp[3] = {0x3f80u, 0x7f80u, 0x3f80u};
    CHECK(isinf(tn_op_bf16_sumsq(sp, 3)));
    sp[1] = 0x7fc0u;
    CHECK(isnan(tn_op_bf16_sumsq(sp, 3)));
    sp[1] = 0xff80u; /* -inf squared */
    CHECK(tn_op_bf16_sumsq(sp, 3) == INFINITY);

    free(x);
    free(w);
    free(w2);
    free(ref);
    free(bits);
    for (int k = 0; k < 3; k++) free(h[k]);
    free(d1);
    free(d2);
    free(xs);
}

/* ---- AdamW on bf16 -------------------------------------------------------------------------------- */

/* Normal values whose magnitudes spread log-uniformly over 10^lo .. 10^hi. */
static void spread(tn_rng *r, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(r) * (float)pow(10.0, lo + (hi - lo) * tn_rng_uniform_d(r));
}

/* bf16 parameters and gradients with fp32 (bits 32) or 8-bit blockwise (bits 8) moments. */
typedef struct {
    int64_t n, nb;
    int bits;
    uint16_t *p, *g;
    float *m, *v, *ma, *va;
    uint8_t *mc, *vc;
} state16;

static state16 state_new(int64_t n, int bits) {
    state16 s;
    s.n = n;
    s.nb = tn_adam8_blocks(n);
    s.bits = bits;
    s.p = xmalloc(sizeof(uint16_t) * (size_t)n);
    s.g = xmalloc(sizeof(uint16_t) * (size_t)n);
    s.m = xmalloc(sizeof(float) * (size_t)n);
    s.v = xmalloc(sizeof(float) * (size_t)n);
    s.mc = xmalloc((size_t)n);
    s.vc = xmalloc((size_t)n);
    s.ma = xmalloc(sizeof(float) * (size_t)s.nb);
    s.va = xmalloc(sizeof(float) * (size_t)s.nb);
    return s;
}

static void state_free(state16 *s) {
    free(s->p);
    free(s->g);
    free(s->m);
    free(s->v);
    free(s->mc);
    free(s->vc);
    free(s->ma);
    free(s->va);
}

static void state_copy(state16 *d, const state16 *s) {
    memcpy(d->p, s->p, sizeof(uint16_t) * (size_t)s->n);
    memcpy(d->g, s->g, sizeof(uint16_t) * (size_t)s->n);
    memcpy(d->m, s->m, sizeof(float) * (size_t)s->n);
    memcpy(d->v, s->v, sizeof(float) * (size_t)s->n);
    memcpy(d->mc, s->mc, (size_t)s->n);
    memcpy(d->vc, s->vc, (size_t)s->n);
    memcpy(d->ma, s->ma, sizeof(float) * (size_t)s->nb);
    memcpy(d->va, s->va, sizeof(float) * (size_t)s->nb);
}

static tn_adam_moments moments_of(state16 *s) {
    tn_adam_moments mo = {s->bits, s->m, s->v, s->mc, s->vc, s->ma, s->va};
    return mo;
}

static void new_gradients(tn_rng *r, state16 *s) {
    float *x = xmalloc(sizeof(float) * (size_t)s->n);
    spread(r, x, s->n, -6, -1);
    for (int64_t i = 0; i < s->n; i++) s->g[i] = tn_bf16_round_nearest(x[i]);
    if (s->n > 10) s->g[3] = 0, s->g[7] = 0x8000u; /* +0, −0 */
    free(x);
}

/* Random parameters, gradients and moments (over six decades); block 1 the fresh all-zero 8-bit state. */
static void state_random(tn_rng *r, state16 *s) {
    float *x = xmalloc(sizeof(float) * (size_t)s->n);
    for (int64_t i = 0; i < s->n; i++) s->p[i] = tn_bf16_round_nearest(0.5f * tn_rng_normal(r));
    if (s->n > 10) s->p[7] = 0x8000u;
    new_gradients(r, s);
    spread(r, s->m, s->n, -6, -1);
    spread(r, s->v, s->n, -6, -1);
    for (int64_t i = 0; i < s->n; i++) s->v[i] *= s->v[i];
    for (int64_t b = 0; b < s->nb; b++) {
        const int64_t off = b * TN_ADAM8_BLOCK, len = s->n - off < TN_ADAM8_BLOCK ? s->n - off : TN_ADAM8_BLOCK;
        tn_adam8_quantize(s->m + off, len, tn_adam8_table_m(), s->mc + off, &s->ma[b]);
        tn_adam8_quantize(s->v + off, len, tn_adam8_table_v(), s->vc + off, &s->va[b]);
        if (b == 1) {
            memset(s->mc + off, 0, (size_t)len);
            memset(s->vc + off, 0, (size_t)len);
            s->ma[b] = s->va[b] = 0.0f;
        }
    }
    free(x);
}

/* The documented composition on float copies: widen, g · g_scale, tn_adamw_apply / tn_adamw8_apply, SR. */
static void reference_step(state16 *s, float g_scale, const tn_adamw_step *h, uint64_t seed, uint64_t counter) {
    float *pf = xmalloc(sizeof(float) * (size_t)s->n), *gf = xmalloc(sizeof(float) * (size_t)s->n);
    for (int64_t i = 0; i < s->n; i++) {
        pf[i] = widen(s->p[i]);
        gf[i] = widen(s->g[i]) * g_scale;
    }
    if (s->bits == 8) tn_adamw8_apply(pf, gf, s->mc, s->ma, s->vc, s->va, s->n, h);
    else tn_adamw_apply(pf, gf, s->m, s->v, s->n, h);
    for (int64_t i = 0; i < s->n; i++) s->p[i] = tn_bf16_round_stochastic(pf[i], seed, counter + (uint64_t)i);
    free(pf);
    free(gf);
}

static int64_t state_diffs(const state16 *a, const state16 *b) {
    int64_t d = u16_diffs(a->p, b->p, a->n);
    if (a->bits == 8)
        d += byte_diffs(a->mc, b->mc, a->n) + byte_diffs(a->vc, b->vc, a->n) + float_bit_diffs(a->ma, b->ma, a->nb) +
             float_bit_diffs(a->va, b->va, a->nb);
    else d += float_bit_diffs(a->m, b->m, a->n) + float_bit_diffs(a->v, b->v, a->n);
    return d;
}

static tn_adamw_step step_at(int t) {
    const tn_adamw_hparams hp = {t % 2 ? 1e-3f : 3e-2f, 0.9f, 0.999f, 1e-8f, 0.1f};
    return tn_adamw_step_of(&hp, t, t != 2);
}

static void test_adamw_definition(void) {
    tn_rng r;
    tn_rng_seed(&r, 404);
    const int64_t sizes[] = {1, 2047, 2048, 2049, 5000};
    const float scales[] = {1.0f, 0.37f};
    int64_t worst = 0, moved = 0, total = 0;
    for (int bits = 32; bits >= 8; bits -= 24)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (size_t gi = 0; gi < 2; gi++) {
                const int64_t n = sizes[si];
                state16 a = state_new(n, bits), b = state_new(n, bits);
                state_random(&r, &a);
                state_copy(&b, &a);
                for (int t = 1; t <= 3; t++) {
                    const tn_adamw_step h = step_at(t);
                    const uint64_t seed = 0xabcdef01ull * (uint64_t)t, counter = (3ull << 32) - 2500 + 11 * (uint64_t)t;
                    const tn_adam_moments mo = moments_of(&a);
                    uint16_t *before = xmalloc(sizeof(uint16_t) * (size_t)n);
                    memcpy(before, a.p, sizeof(uint16_t) * (size_t)n);
                    tn_adamw_bf16_apply(a.p, a.g, scales[gi], &mo, n, &h, seed, counter);
                    reference_step(&b, scales[gi], &h, seed, counter);
                    const int64_t d = state_diffs(&a, &b);
                    CHECKF(d == 0, "adamw_bf16 (%d-bit moments) n = %lld g_scale %g step %d: %lld differences from "
                           "the composition", bits, (long long)n, (double)scales[gi], t, (long long)d);
                    worst = d > worst ? d : worst;
                    moved += u16_diffs(before, a.p, n);
                    total += n;
                    free(before);
                    new_gradients(&r, &a);
                    memcpy(b.g, a.g, sizeof(uint16_t) * (size_t)n);
                }
                state_free(&a);
                state_free(&b);
            }
    printf("adamw_bf16 = widen, AdamW, SR: worst %lld differences; %.1f%% of the weights changed per step\n",
           (long long)worst, 100.0 * moved / total);
    CHECK(moved > total / 2); /* the steps were not vacuous */

    /* the CPU table: the same, and moments of 7 bits refused */
    state16 a = state_new(3000, 8), b = state_new(3000, 8);
    state_random(&r, &a);
    state_copy(&b, &a);
    const tn_adamw_step h = step_at(1);
    tn_adam_moments mo = moments_of(&a);
    CHECK_OK(tn_ops_cpu()->adamw_bf16(a.p, a.g, 0.5f, &mo, a.n, &h, 9, 10));
    reference_step(&b, 0.5f, &h, 9, 10);
    CHECK(state_diffs(&a, &b) == 0);
    mo.bits = 7;
    tn_err("none");
    CHECK(tn_ops_cpu()->adamw_bf16(a.p, a.g, 0.5f, &mo, a.n, &h, 9, 10) == -1);
    CHECKF(strstr(tn_errmsg(), "7 bits") != NULL, "message: %s", tn_errmsg());
    CHECK(state_diffs(&a, &b) == 0);
    state_free(&a);
    state_free(&b);
}

static void test_adamw_threads(void) {
    tn_rng r;
    tn_rng_seed(&r, 505);
    const int64_t n = 5 * TN_ADAM8_BLOCK + 333;
    const int saved = omp_get_max_threads();
    for (int bits = 32; bits >= 8; bits -= 24) {
        state16 base = state_new(n, bits), s[3];
        state_random(&r, &base);
        for (int k = 0; k < 3; k++) {
            s[k] = state_new(n, bits);
            state_copy(&s[k], &base);
            omp_set_num_threads(k + 1);
            for (int t = 1; t <= 2; t++) {
                const tn_adamw_step h = step_at(t);
                const tn_adam_moments mo = moments_of(&s[k]);
                tn_adamw_bf16_apply(s[k].p, s[k].g, 0.8f, &mo, n, &h, 1234 + (uint64_t)t, 99);
            }
        }
        omp_set_num_threads(saved);
        CHECKF(state_diffs(&s[0], &s[1]) == 0 && state_diffs(&s[0], &s[2]) == 0,
               "adamw_bf16 (%d-bit moments): 1 vs 2 threads %lld, 1 vs 3 threads %lld differences", bits,
               (long long)state_diffs(&s[0], &s[1]), (long long)state_diffs(&s[0], &s[2]));
        for (int k = 0; k < 3; k++) state_free(&s[k]);
        state_free(&base);
    }
}

/* Updates of a tenth of a bf16 step: weights ±1.5 (bf16 spacing 2^-7 there), constant gradients of p's sign
 * (0.5 .. 2 in magnitude), lr = 2^-7 / 10, no weight decay: Adam moves every weight toward 0 by about lr per
 * step, 20 steps of bf16 in 200 steps, staying inside [1, 2). Compared: the mean distance moved by the bf16
 * weights (stochastic rounding) and by float weights under the same moments (tn_adamw_apply or
 * tn_adamw8_apply on floats), and the bf16 weights rounded to nearest instead (the same composition), which
 * never move. */
static void test_drift(void) {
    enum { N = 2 * TN_ADAM8_BLOCK, STEPS = 200 };
    tn_rng r;
    tn_rng_seed(&r, 606);
    const float q = 0x1p-7f, lr = q / 10;
    for (int bits = 32; bits >= 8; bits -= 24) {
        state16 s = state_new(N, bits), rn = state_new(N, bits);
        float *pf = xmalloc(sizeof(float) * N), *gf = xmalloc(sizeof(float) * N), *pr = xmalloc(sizeof(float) * N);
        float *m32 = calloc(N, sizeof(float)), *v32 = calloc(N, sizeof(float));
        float *mr = calloc(N, sizeof(float)), *vr = calloc(N, sizeof(float));
        uint8_t *mc = calloc(N, 1), *vc = calloc(N, 1), *mcr = calloc(N, 1), *vcr = calloc(N, 1);
        float ma[2] = {0, 0}, va[2] = {0, 0}, mar[2] = {0, 0}, var[2] = {0, 0};
        for (int i = 0; i < N; i++) {
            const float sign = i % 2 ? -1.0f : 1.0f;
            s.p[i] = rn.p[i] = tn_bf16_round_nearest(1.5f * sign);
            s.g[i] = rn.g[i] = tn_bf16_round_nearest(sign * (0.5f + 1.5f * tn_rng_uniform(&r)));
            pf[i] = 1.5f * sign;
            gf[i] = widen(s.g[i]);
        }
        memset(s.m, 0, sizeof(float) * N);
        memset(s.v, 0, sizeof(float) * N);
        memset(s.mc, 0, N);
        memset(s.vc, 0, N);
        s.ma[0] = s.ma[1] = s.va[0] = s.va[1] = 0;
        int64_t rn_moved_first = 0;
        for (int t = 1; t <= STEPS; t++) {
            const tn_adamw_hparams hp = {lr, 0.9f, 0.999f, 1e-8f, 0.0f};
            const tn_adamw_step h = tn_adamw_step_of(&hp, t, 0);
            const tn_adam_moments mo = moments_of(&s);
            tn_adamw_bf16_apply(s.p, s.g, 1.0f, &mo, N, &h, 0x51ull * (uint64_t)t + 17, 0);
            if (bits == 8) tn_adamw8_apply(pf, gf, mc, ma, vc, va, N, &h);
            else tn_adamw_apply(pf, gf, m32, v32, N, &h);
            /* rounding to nearest instead: the same composition with tn_bf16_round_nearest */
            for (int i = 0; i < N; i++) pr[i] = widen(rn.p[i]);
            if (bits == 8) tn_adamw8_apply(pr, gf, mcr, mar, vcr, var, N, &h);
            else tn_adamw_apply(pr, gf, mr, vr, N, &h);
            for (int i = 0; i < N; i++) {
                if (t == 1) rn_moved_first += pr[i] != widen(rn.p[i]);
                rn.p[i] = tn_bf16_round_nearest(pr[i]);
            }
        }
        double sum16 = 0, sum32 = 0, sumd = 0, sumd2 = 0;
        int64_t rn_moved = 0;
        for (int i = 0; i < N; i++) {
            const double sign = i % 2 ? -1.0 : 1.0, d16 = 1.5 - sign * widen(s.p[i]); /* toward 0 */
            const double d32 = 1.5 - sign * pf[i];
            sum16 += d16;
            sum32 += d32;
            sumd += d16 - d32;
            sumd2 += (d16 - d32) * (d16 - d32);
            rn_moved += rn.p[i] != tn_bf16_round_nearest(1.5f * (float)sign);
        }
        const double mean16 = sum16 / N, mean32 = sum32 / N, md = sumd / N;
        const double se = sqrt((sumd2 / N - md * md) / (N - 1));
        printf("drift (%d-bit moments), %d steps of lr = step/10: fp32 moves %.6f (%.2f bf16 steps), bf16 with "
               "SR %.6f (%+.2f%%, %+.2f se), bf16 rounded to nearest: %lld of %d weights moved\n", bits, STEPS,
               mean32, mean32 / q, mean16, 100.0 * (mean16 - mean32) / mean32, md / se, (long long)rn_moved, N);
        CHECKF(mean32 > 15 * q && mean32 < 25 * q, "the fp32 drift %.5f is about 20 bf16 steps", mean32);
        CHECKF(fabs(mean16 - mean32) <= 0.03 * mean32, "SR drift %.6f vs fp32 %.6f", mean16, mean32);
        CHECKF(fabs(md) <= 6 * se, "SR drift off by %.2f standard errors", md / se);
        CHECKF(rn_moved_first == N && rn_moved == 0,
               "rounding to nearest: %lld weights changed in float in step 1, %lld bf16 weights moved at all",
               (long long)rn_moved_first, (long long)rn_moved);
        state_free(&s);
        state_free(&rn);
        free(pf);
        free(gf);
        free(pr);
        free(m32);
        free(v32);
        free(mr);
        free(vr);
        free(mc);
        free(vc);
        free(mcr);
        free(vcr);
    }
}

int main(void) {
    if (omp_get_max_threads() > 2) omp_set_num_threads(2);
    test_nearest();
    test_stochastic();
    test_array_ops();
    test_adamw_definition();
    test_adamw_threads();
    test_drift();
    return tn_test_finish();
}
