/* The bf16 ops of the CUDA table (kernels/cuda/convert.cu, model.cu tn_cuda_bf16_sumsq, adam8.cu
 * tn_cuda_adamw_bf16) against the CPU table's (kernels/cpu/bf16_ops.c, optim/adamw_bf16.c), through the
 * tables themselves (their alloc / upload / download):
 *   - bf16_from_f32, bf16_to_f32, bf16_round_stochastic and bf16_accumulate BIT FOR BIT, for n = 1, 255, 256,
 *     1000, 100003 and 4096·256 + 4099 (a partial block, exactly one, several, and past the 4096 blocks of
 *     the grid, where the threads loop),
 *     the floats mixing ±0, ±∞, NaNs (quiet, signalling, with payloads), subnormals, ties, values near FLT_MAX,
 *     random bit patterns and normals over 60 decades; every bf16 pattern for to_f32; the stochastic
 *     rounding with counters across 2^32 and across the 2^64 wrap; accumulate twice in place. The one
 *     allowance: where accumulate's float addition gives a NaN, its payload is the hardware's choice (x86
 *     keeps an operand's, for two NaNs the one the compiler put first; a card makes its canonical NaN), so
 *     two NaN results count as equal whatever their bits;
 *   - bf16_sumsq within 1e-12 relative (the two sums add in different orders), ∞ and NaN propagated, n = 0;
 *   - adamw_bf16 with fp32 and with 8-bit moments BIT FOR BIT: p, and m, v (fp32) or both code arrays and
 *     both absmax arrays (8-bit), after each of 4 consecutive steps, for n = 1, 2047, 2048, 2049, 5000 and
 *     40·2048 + 1001, g_scale 1 and 0.5; blocks of ordinary, tiny (subnormal g·g) and huge moments, a fresh
 *     all-zero 8-bit block, gradients of +0 and −0 (at a weight of −0); counters across 2^32;
 *   - refusals: moments of 7 bits and n < 0 fail with a message, n = 0 changes nothing; the conversions refuse
 *     n < 0 too.
 * Without CUDA (or its emulator) or a device the test is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/ops.h"
#include "optim/adamw.h"
#include "optim/adamw8.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

static const tn_ops *cpu, *gpu;

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

/* A device copy of host memory through the CUDA table (NULL, with a failed CHECK, on failure). */
static void *dev_copy(const void *host, size_t bytes) {
    void *d = gpu->alloc(bytes ? bytes : 1);
    if (d && bytes && gpu->upload(d, host, bytes) != 0) {
        gpu->free(d);
        d = NULL;
    }
    CHECKF(d != NULL, "device copy of %zu bytes: %s", bytes, tn_errmsg());
    return d;
}

static void download(void *host, const void *dev, size_t bytes) { CHECK_OK(gpu->download(host, dev, bytes)); }

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

/* Floats mixing specials, ties, subnormals, random bit patterns and normals over 60 decades. */
static void mixed_floats(tn_rng *r, float *x, int64_t n) {
    static const uint32_t specials[] = {
        0x00000000u, 0x80000000u,                            /* ±0 */
        0x7f800000u, 0xff800000u,                            /* ±inf */
        0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff80ffffu, /* NaNs: quiet, signalling, payload in the low bits */
        0x7fbfffffu, 0x7fd12345u,                            /* NaNs with payloads in the high bits */
        0x00000001u, 0x807fffffu, 0x00008000u, 0x00018000u, /* subnormals, subnormal ties */
        0x3f808000u, 0x3f818000u, 0xbf808000u,               /* ties to even */
        0x7f7fffffu, 0x7f7f8000u, 0x7f7f7fffu, 0xff7f8000u, /* near FLT_MAX */
        0x007fffffu, 0x00800000u,                            /* the subnormal / normal boundary */
    };
    for (int64_t i = 0; i < n; i++) {
        const uint64_t k = tn_rng_below(r, 8);
        if (k == 0) x[i] = from_bits((uint32_t)tn_rng_u64(r));
        else if (k == 1) x[i] = from_bits(specials[tn_rng_below(r, sizeof specials / sizeof specials[0])]);
        else if (k == 2) x[i] = from_bits(((uint32_t)tn_rng_u64(r) & 0xffff0000u) | 0x8000u); /* a tie */
        else if (k == 3) x[i] = from_bits((uint32_t)tn_rng_u64(r) & 0x807fffffu);             /* subnormal */
        else x[i] = tn_rng_normal(r) * (float)pow(10.0, -30 + 60 * tn_rng_uniform_d(r));
    }
}

/* ---- the conversions ------------------------------------------------------------------------------ */

static void test_conversions(tn_rng *r, int64_t n) {
    const size_t fb = sizeof(float) * (size_t)n, hb = sizeof(uint16_t) * (size_t)n;
    float *x = xmalloc(fb), *d1 = xmalloc(fb), *d2 = xmalloc(fb), *wc = xmalloc(fb), *wg = xmalloc(fb);
    uint16_t *bits = xmalloc(hb), *hc = xmalloc(hb), *hg = xmalloc(hb), *g0 = xmalloc(hb);
    mixed_floats(r, x, n);
    mixed_floats(r, d1, n);
    for (int64_t i = 0; i < n; i++) d2[i] = tn_rng_normal(r) * (float)pow(10.0, -6 + 6 * tn_rng_uniform_d(r));
    for (int64_t i = 0; i < n; i++) bits[i] = (uint16_t)tn_rng_u64(r);
    if (n >= 256) /* every bf16 pattern at least once among the first 65536 (the rest random) */
        for (int64_t i = 0; i < n && i < 65536; i++) bits[i] = (uint16_t)(i * 40503u);
    for (int64_t i = 0; i < n; i++) g0[i] = i % 3 ? tn_bf16_round_nearest(0.01f * tn_rng_normal(r)) : bits[i];

    float *dx = dev_copy(x, fb), *dd1 = dev_copy(d1, fb), *dd2 = dev_copy(d2, fb), *dw = gpu->alloc(fb);
    uint16_t *dbits = dev_copy(bits, hb), *dh = gpu->alloc(hb);
    CHECK(dw != NULL && dh != NULL);

    /* from_f32 */
    CHECK_OK(cpu->bf16_from_f32(hc, x, n));
    CHECK_OK(gpu->bf16_from_f32(dh, dx, n));
    download(hg, dh, hb);
    const int64_t d_from = u16_diffs(hc, hg, n);
    CHECKF(d_from == 0, "bf16_from_f32 n = %lld: %lld differ", (long long)n, (long long)d_from);

    /* to_f32 */
    CHECK_OK(cpu->bf16_to_f32(wc, bits, n));
    CHECK_OK(gpu->bf16_to_f32(dw, dbits, n));
    download(wg, dw, fb);
    const int64_t d_to = float_bit_diffs(wc, wg, n);
    CHECKF(d_to == 0, "bf16_to_f32 n = %lld: %lld differ", (long long)n, (long long)d_to);

    /* round_stochastic, counters across 2^32 and across the wrap of 2^64 */
    const uint64_t seeds[] = {0x0123456789abcdefull, 7, UINT64_MAX};
    const uint64_t counters[] = {0, (1ull << 32) - 100, UINT64_MAX - 50};
    int64_t d_sr = 0;
    for (int k = 0; k < 3; k++) {
        CHECK_OK(cpu->bf16_round_stochastic(hc, x, n, seeds[k], counters[k]));
        CHECK_OK(gpu->bf16_round_stochastic(dh, dx, n, seeds[k], counters[k]));
        download(hg, dh, hb);
        const int64_t d = u16_diffs(hc, hg, n);
        CHECKF(d == 0, "bf16_round_stochastic n = %lld seed %llu counter %llu: %lld differ", (long long)n,
               (unsigned long long)seeds[k], (unsigned long long)counters[k], (long long)d);
        d_sr += d;
    }

    /* accumulate twice in place. A NaN sum's payload is not the ops' to choose: x86 returns one operand's
     * payload (which one, for two NaNs, depends on the compiler's operand order), a card its canonical NaN;
     * two NaN results count as equal, and how many differ in their bits is printed. */
    memcpy(hc, g0, hb);
    CHECK_OK(gpu->upload(dh, g0, hb));
    CHECK_OK(cpu->bf16_accumulate(hc, d1, n));
    CHECK_OK(gpu->bf16_accumulate(dh, dd1, n));
    CHECK_OK(cpu->bf16_accumulate(hc, d2, n));
    CHECK_OK(gpu->bf16_accumulate(dh, dd2, n));
    download(hg, dh, hb);
    int64_t d_acc = 0, nans = 0, nan_payloads = 0;
    for (int64_t i = 0; i < n; i++) {
        const int nan_c = isnan(tn_bf16_widen(hc[i])), nan_g = isnan(tn_bf16_widen(hg[i]));
        nans += nan_c;
        if (hc[i] == hg[i]) continue;
        if (nan_c && nan_g) nan_payloads++;
        else if (d_acc++ < 5) {
            uint32_t u1, u2;
            memcpy(&u1, &d1[i], 4);
            memcpy(&u2, &d2[i], 4);
            fprintf(stderr, "  accumulate element %lld: g 0x%04x + d1 0x%08x + d2 0x%08x: CPU 0x%04x, device 0x%04x\n",
                    (long long)i, g0[i], u1, u2, hc[i], hg[i]);
        }
    }
    CHECKF(d_acc == 0, "bf16_accumulate n = %lld: %lld differ", (long long)n, (long long)d_acc);

    printf("n = %7lld: from_f32 %lld, to_f32 %lld, round_stochastic %lld, accumulate %lld differences (%lld NaN "
           "results, %lld with another payload)\n", (long long)n, (long long)d_from, (long long)d_to,
           (long long)d_sr, (long long)d_acc, (long long)nans, (long long)nan_payloads);

    gpu->free(dx);
    gpu->free(dd1);
    gpu->free(dd2);
    gpu->free(dw);
    gpu->free(dbits);
    gpu->free(dh);
    free(x);
    free(d1);
    free(d2);
    free(wc);
    free(wg);
    free(bits);
    free(hc);
    free(hg);
    free(g0);
}

/* ---- sumsq ---------------------------------------------------------------------------------------- */

static double g_worst_sumsq = 0;

static void test_sumsq(tn_rng *r, int64_t n) {
    uint16_t *x = xmalloc(sizeof(uint16_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        x[i] = tn_bf16_round_nearest(tn_rng_normal(r) * (float)pow(10.0, -20 + 40 * tn_rng_uniform_d(r)));
    for (int64_t i = 50; i < n; i += 97) x[i] = i % 2 ? 0x0001u : 0x8000u; /* a subnormal, −0 */
    uint16_t *dx = dev_copy(x, sizeof(uint16_t) * (size_t)n);
    double sc = -1, sg = -2;
    CHECK_OK(cpu->bf16_sumsq(x, n, &sc));
    CHECK_OK(gpu->bf16_sumsq(dx, n, &sg));
    const double rel = fabs(sg - sc) / sc;
    if (!(rel <= g_worst_sumsq)) g_worst_sumsq = rel;
    CHECKF(rel <= 1e-12, "bf16_sumsq n = %lld: %.17g vs %.17g (%.3g relative)", (long long)n, sg, sc, rel);
    /* ∞ and NaN propagate */
    if (n >= 3) {
        const uint16_t inf = 0xff80u, nan = 0x7fc1u;
        CHECK_OK(gpu->upload(dx + n / 2, &inf, sizeof inf));
        CHECK_OK(gpu->bf16_sumsq(dx, n, &sg));
        CHECKF(sg == INFINITY, "bf16_sumsq with -inf: %g", sg);
        CHECK_OK(gpu->upload(dx + 1, &nan, sizeof nan));
        CHECK_OK(gpu->bf16_sumsq(dx, n, &sg));
        CHECKF(isnan(sg), "bf16_sumsq with a NaN: %g", sg);
    }
    gpu->free(dx);
    free(x);
}

/* ---- AdamW on bf16 -------------------------------------------------------------------------------- */

/* Normal values whose magnitudes spread log-uniformly over 10^lo .. 10^hi. */
static void spread(tn_rng *r, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(r) * (float)pow(10.0, lo + (hi - lo) * tn_rng_uniform_d(r));
}

/* The magnitude range (decades) of block b's gradients and moments: ordinary, tiny (g·g and v subnormal),
 * huge, by b mod 4 (block 1 also starts from the fresh 8-bit state). */
static void block_range(int64_t b, double *lo, double *hi) {
    switch (b % 4) {
    case 2: *lo = -19, *hi = -17; break;
    case 3: *lo = 13, *hi = 15; break;
    default: *lo = -6, *hi = -1; break;
    }
}

/* bf16 gradients by block range; +0 and −0 at elements 3 and 7 of every block. */
static void gradients(tn_rng *r, uint16_t *g, int64_t n) {
    float *x = xmalloc(sizeof(float) * TN_ADAM8_BLOCK);
    for (int64_t off = 0, b = 0; off < n; off += TN_ADAM8_BLOCK, b++) {
        const int64_t len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        double lo, hi;
        block_range(b, &lo, &hi);
        spread(r, x, len, lo, hi);
        for (int64_t i = 0; i < len; i++) g[off + i] = tn_bf16_round_nearest(x[i]);
        if (len > 10) g[off + 3] = 0x0000u, g[off + 7] = 0x8000u;
    }
    free(x);
}

static void test_adamw(tn_rng *r, int64_t n, int bits, float g_scale) {
    const int64_t nb = tn_adam8_blocks(n);
    const size_t hb = sizeof(uint16_t) * (size_t)n, fb = sizeof(float) * (size_t)n, ab = sizeof(float) * (size_t)nb;
    uint16_t *p = xmalloc(hb), *g = xmalloc(hb), *hp = xmalloc(hb);
    float *m = xmalloc(fb), *v = xmalloc(fb), *hm = xmalloc(fb), *hv = xmalloc(fb);
    float *ma = xmalloc(ab), *va = xmalloc(ab), *hma = xmalloc(ab), *hva = xmalloc(ab);
    uint8_t *mc = xmalloc((size_t)n), *vc = xmalloc((size_t)n), *hmc = xmalloc((size_t)n), *hvc = xmalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = tn_bf16_round_nearest(0.5f * tn_rng_normal(r));
    for (int64_t off = 0; off + 10 < n; off += TN_ADAM8_BLOCK) p[off + 7] = 0x8000u; /* −0, with g = −0 */
    for (int64_t b = 0; b < nb; b++) {
        const int64_t off = b * TN_ADAM8_BLOCK, len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        double lo, hi;
        block_range(b, &lo, &hi);
        spread(r, m + off, len, lo, hi);
        spread(r, v + off, len, lo, hi);
        for (int64_t i = 0; i < len; i++) v[off + i] *= v[off + i];
        tn_adam8_quantize(m + off, len, tn_adam8_table_m(), mc + off, &ma[b]);
        tn_adam8_quantize(v + off, len, tn_adam8_table_v(), vc + off, &va[b]);
        if (b == 1) {
            memset(mc + off, 0, (size_t)len);
            memset(vc + off, 0, (size_t)len);
            ma[b] = va[b] = 0.0f;
            memset(m + off, 0, sizeof(float) * (size_t)len);
            memset(v + off, 0, sizeof(float) * (size_t)len);
        }
    }
    uint16_t *dp = dev_copy(p, hb), *dg = gpu->alloc(hb);
    float *dm = dev_copy(m, fb), *dv = dev_copy(v, fb), *dma = dev_copy(ma, ab), *dva = dev_copy(va, ab);
    uint8_t *dmc = dev_copy(mc, (size_t)n), *dvc = dev_copy(vc, (size_t)n);
    tn_adam_moments sc = {bits, m, v, mc, vc, ma, va}, sg = {bits, dm, dv, dmc, dvc, dma, dva};
    int64_t worst = 0, moved = 0;
    for (int t = 1; t <= 4; t++) {
        const tn_adamw_hparams hpar = {t % 2 ? 1e-3f : 3e-2f, 0.9f, 0.999f, 1e-8f, 0.1f};
        const tn_adamw_step h = tn_adamw_step_of(&hpar, t, t != 3);
        const uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)t + 1, counter = (5ull << 32) - 40000 + (uint64_t)t;
        gradients(r, g, n);
        CHECK_OK(gpu->upload(dg, g, hb));
        memcpy(hp, p, hb);
        CHECK_OK(cpu->adamw_bf16(p, g, g_scale, &sc, n, &h, seed, counter));
        CHECK_OK(gpu->adamw_bf16(dp, dg, g_scale, &sg, n, &h, seed, counter));
        moved += u16_diffs(hp, p, n);
        download(hp, dp, hb);
        int64_t dpb = u16_diffs(hp, p, n), dmb = 0, dvb = 0, dmab = 0, dvab = 0;
        if (bits == 8) {
            download(hmc, dmc, (size_t)n);
            download(hvc, dvc, (size_t)n);
            download(hma, dma, ab);
            download(hva, dva, ab);
            dmb = byte_diffs(hmc, mc, n);
            dvb = byte_diffs(hvc, vc, n);
            dmab = float_bit_diffs(hma, ma, nb);
            dvab = float_bit_diffs(hva, va, nb);
        } else {
            download(hm, dm, fb);
            download(hv, dv, fb);
            dmb = float_bit_diffs(hm, m, n);
            dvb = float_bit_diffs(hv, v, n);
        }
        const int64_t d = dpb + dmb + dvb + dmab + dvab;
        CHECKF(d == 0, "adamw_bf16 %d-bit n = %lld g_scale %g step %d: differing p %lld, m %lld, v %lld, m absmax "
               "%lld, v absmax %lld", bits, (long long)n, (double)g_scale, t, (long long)dpb, (long long)dmb,
               (long long)dvb, (long long)dmab, (long long)dvab);
        worst = d > worst ? d : worst;
    }
    printf("adamw_bf16 %2d-bit n = %6lld (%2lld blocks) g_scale %.2g: 4 steps, %lld differences (%.0f%% of the "
           "weights moved per step)\n", bits, (long long)n, (long long)nb, (double)g_scale, (long long)worst,
           100.0 * moved / (4.0 * n));
    gpu->free(dp);
    gpu->free(dg);
    gpu->free(dm);
    gpu->free(dv);
    gpu->free(dma);
    gpu->free(dva);
    gpu->free(dmc);
    gpu->free(dvc);
    free(p);
    free(g);
    free(hp);
    free(m);
    free(v);
    free(hm);
    free(hv);
    free(ma);
    free(va);
    free(hma);
    free(hva);
    free(mc);
    free(vc);
    free(hmc);
    free(hvc);
}

/* ---- refusals ------------------------------------------------------------------------------------- */

static void test_arguments(void) {
    const tn_adamw_hparams hpar = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    const tn_adamw_step h = tn_adamw_step_of(&hpar, 1, 0);
    const uint16_t p0 = 0x3fc0u, g0 = 0x3f80u; /* 1.5, 1 */
    const float z = 0.0f;
    uint16_t hp = 0;
    float m1 = 0, v1 = 0;
    uint16_t *dp = dev_copy(&p0, sizeof p0), *dg = dev_copy(&g0, sizeof g0);
    float *dm = dev_copy(&z, sizeof z), *dv = dev_copy(&z, sizeof z);
    tn_adam_moments s = {32, dm, dv, NULL, NULL, NULL, NULL};

    /* n = 0: nothing changes */
    CHECK_OK(gpu->adamw_bf16(dp, dg, 1.0f, &s, 0, &h, 1, 0));
    download(&hp, dp, sizeof hp);
    download(&m1, dm, sizeof m1);
    download(&v1, dv, sizeof v1);
    CHECK(hp == p0 && m1 == 0.0f && v1 == 0.0f);
    /* n < 0 */
    tn_err("none");
    CHECK(gpu->adamw_bf16(dp, dg, 1.0f, &s, -1, &h, 1, 0) == -1);
    CHECKF(strstr(tn_errmsg(), "n = -1") != NULL, "message: %s", tn_errmsg());
    /* moments of 7 bits, on both tables */
    s.bits = 7;
    tn_err("none");
    CHECK(gpu->adamw_bf16(dp, dg, 1.0f, &s, 1, &h, 1, 0) == -1);
    CHECKF(strstr(tn_errmsg(), "7 bits") != NULL, "message: %s", tn_errmsg());
    tn_err("none");
    CHECK(cpu->adamw_bf16(&hp, &g0, 1.0f, &s, 1, &h, 1, 0) == -1);
    CHECKF(strstr(tn_errmsg(), "7 bits") != NULL, "message: %s", tn_errmsg());
    download(&hp, dp, sizeof hp);
    download(&m1, dm, sizeof m1);
    CHECK(hp == p0 && m1 == 0.0f);
    /* and a real step still works after the refusals, as on the CPU */
    uint16_t cp = p0;
    float cm = 0, cv = 0;
    tn_adam_moments cs = {32, &cm, &cv, NULL, NULL, NULL, NULL};
    s.bits = 32;
    CHECK_OK(gpu->adamw_bf16(dp, dg, 1.0f, &s, 1, &h, 1, 0));
    CHECK_OK(cpu->adamw_bf16(&cp, &g0, 1.0f, &cs, 1, &h, 1, 0));
    download(&hp, dp, sizeof hp);
    download(&m1, dm, sizeof m1);
    download(&v1, dv, sizeof v1);
    CHECK(hp == cp && memcmp(&m1, &cm, sizeof m1) == 0 && memcmp(&v1, &cv, sizeof v1) == 0 && m1 > 0.0f);

    /* the conversions and sumsq refuse n < 0 and accept n = 0 */
    float *dx = dev_copy(&z, sizeof z);
    double out = 0;
    tn_err("none");
    CHECK(gpu->bf16_from_f32(dp, dx, -1) == -1 && strstr(tn_errmsg(), "n = -1") != NULL);
    CHECK(gpu->bf16_to_f32(dx, dp, -1) == -1);
    CHECK(gpu->bf16_round_stochastic(dp, dx, -1, 1, 2) == -1);
    CHECK(gpu->bf16_accumulate(dp, dx, -1) == -1);
    CHECK(gpu->bf16_sumsq(dp, -1, &out) == -1);
    CHECK_OK(gpu->bf16_from_f32(dp, dx, 0));
    CHECK_OK(gpu->bf16_to_f32(dx, dp, 0));
    CHECK_OK(gpu->bf16_round_stochastic(dp, dx, 0, 1, 2));
    CHECK_OK(gpu->bf16_accumulate(dp, dx, 0));
    out = -1;
    CHECK_OK(gpu->bf16_sumsq(dp, 0, &out));
    CHECK(out == 0.0);
    gpu->free(dx);
    gpu->free(dp);
    gpu->free(dg);
    gpu->free(dm);
    gpu->free(dv);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    cpu = tn_ops_cpu();
    gpu = tn_cuda_ops();
    tn_rng r;
    tn_rng_seed(&r, 2024);
    const int64_t conv_sizes[] = {1, 255, 256, 1000, 100003, 4096 * 256 + 4099};
    for (size_t k = 0; k < sizeof conv_sizes / sizeof conv_sizes[0]; k++) test_conversions(&r, conv_sizes[k]);
    const int64_t sum_sizes[] = {1, 255, 256, 1000, 100003, 1000003};
    for (size_t k = 0; k < sizeof sum_sizes / sizeof sum_sizes[0]; k++) test_sumsq(&r, sum_sizes[k]);
    printf("bf16_sumsq: worst relative difference %.3g (tolerance 1e-12)\n", g_worst_sumsq);
    const int64_t sizes[] = {1, 2047, 2048, 2049, 5000, 40 * TN_ADAM8_BLOCK + 1001};
    const float scales[] = {1.0f, 0.5f};
    for (int bits = 32; bits >= 8; bits -= 24)
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            for (int s = 0; s < 2; s++) test_adamw(&r, sizes[k], bits, scales[s]);
    test_arguments();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
