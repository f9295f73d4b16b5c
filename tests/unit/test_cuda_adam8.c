/* 8-bit AdamW on the device (kernels/cuda/adam8.cu tn_cuda_adamw8) against the CPU (optim/adamw8.c
 * tn_adamw8_apply), BIT FOR BIT: p, both code arrays and both absmax arrays after each of 4 consecutive steps,
 * for n = 1, 2047, 2048, 2049, 5000, 4·2048 + 3 and 40·2048 + 1001 (a short last block, exactly one block, a
 * block of one element, blocks spread over the emulator's threads). The starting state mixes ordinary blocks (moments over six decades), an all-zero-bytes block (the
 * fresh state), a block of tiny values (subnormal g·g and v) and one of huge values (v ~ 1e30); in every
 * block a gradient is exactly 0 and one is −0 at a weight of −0 (in the fresh block only the + 0 of the
 * dequantization then keeps p's sign as the CPU has it). Also: n = 0 changes nothing, n < 0 and a NULL step
 * fail with a message. Without CUDA (or its emulator) or a device the test is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cuda/adam8.h"
#include "optim/adamw8.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

static int64_t float_bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

static int64_t byte_diffs(const uint8_t *a, const uint8_t *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* Normal values whose magnitudes spread log-uniformly over 10^lo .. 10^hi. */
static void spread(tn_rng *r, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(r) * (float)pow(10.0, lo + (hi - lo) * tn_rng_uniform_d(r));
}

/* The magnitude range (decades) of block b's values: ordinary, tiny, huge by b mod 4 (block 1 also starts
 * from the zero state). */
static void block_range(int64_t b, double *lo, double *hi) {
    switch (b % 4) {
    case 2: *lo = -19, *hi = -17; break;
    case 3: *lo = 13, *hi = 15; break;
    default: *lo = -6, *hi = -1; break;
    }
}

static void gradients(tn_rng *r, float *g, int64_t n) {
    for (int64_t off = 0, b = 0; off < n; off += TN_ADAM8_BLOCK, b++) {
        const int64_t len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        double lo, hi;
        block_range(b, &lo, &hi);
        spread(r, g + off, len, lo, hi);
    }
    for (int64_t off = 0; off + 10 < n; off += TN_ADAM8_BLOCK) {
        g[off + 3] = 0.0f;
        g[off + 7] = -0.0f;
    }
}

static void test_size(tn_rng *r, int64_t n) {
    const int64_t nb = tn_adam8_blocks(n);
    float *p = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
    float *ma = malloc(sizeof(float) * (size_t)nb), *va = malloc(sizeof(float) * (size_t)nb);
    uint8_t *mc = malloc((size_t)n), *vc = malloc((size_t)n);
    float *x = malloc(sizeof(float) * TN_ADAM8_BLOCK);
    for (int64_t i = 0; i < n; i++) p[i] = 0.5f * tn_rng_normal(r);
    for (int64_t off = 0; off + 10 < n; off += TN_ADAM8_BLOCK) p[off + 7] = -0.0f; /* with g = −0 (gradients) */
    for (int64_t b = 0; b < nb; b++) {
        const int64_t off = b * TN_ADAM8_BLOCK, len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        double lo, hi;
        block_range(b, &lo, &hi);
        spread(r, x, len, lo, hi);
        tn_adam8_quantize(x, len, tn_adam8_table_m(), mc + off, &ma[b]);
        spread(r, x, len, lo, hi);
        for (int64_t i = 0; i < len; i++) x[i] *= x[i];
        tn_adam8_quantize(x, len, tn_adam8_table_v(), vc + off, &va[b]);
        if (b == 1) { /* the fresh state */
            memset(mc + off, 0, (size_t)len);
            memset(vc + off, 0, (size_t)len);
            ma[b] = va[b] = 0.0f;
        }
    }
    float *d_p = tn_test_dev_copy(p, sizeof(float) * (size_t)n), *d_g = tn_cuda_alloc(sizeof(float) * (size_t)n);
    float *d_ma = tn_test_dev_copy(ma, sizeof(float) * (size_t)nb);
    float *d_va = tn_test_dev_copy(va, sizeof(float) * (size_t)nb);
    uint8_t *d_mc = tn_test_dev_copy(mc, (size_t)n), *d_vc = tn_test_dev_copy(vc, (size_t)n);
    float *hp = malloc(sizeof(float) * (size_t)n), *hma = malloc(sizeof(float) * (size_t)nb);
    float *hva = malloc(sizeof(float) * (size_t)nb);
    uint8_t *hmc = malloc((size_t)n), *hvc = malloc((size_t)n);
    int64_t worst = 0;
    for (int t = 1; t <= 4; t++) {
        const tn_adamw_hparams hpar = {t % 2 ? 1e-3f : 3e-2f, 0.9f, 0.999f, 1e-8f, 0.1f};
        const tn_adamw_step h = tn_adamw_step_of(&hpar, t, t != 3);
        gradients(r, g, n);
        CHECK_OK(tn_cuda_upload(d_g, g, sizeof(float) * (size_t)n));
        tn_adamw8_apply(p, g, mc, ma, vc, va, n, &h);
        CHECK_OK(tn_cuda_adamw8(d_p, d_g, d_mc, d_ma, d_vc, d_va, n, &h));
        CHECK_OK(tn_cuda_download(hp, d_p, sizeof(float) * (size_t)n));
        CHECK_OK(tn_cuda_download(hmc, d_mc, (size_t)n));
        CHECK_OK(tn_cuda_download(hvc, d_vc, (size_t)n));
        CHECK_OK(tn_cuda_download(hma, d_ma, sizeof(float) * (size_t)nb));
        CHECK_OK(tn_cuda_download(hva, d_va, sizeof(float) * (size_t)nb));
        const int64_t dp = float_bit_diffs(hp, p, n), dm = byte_diffs(hmc, mc, n), dv = byte_diffs(hvc, vc, n);
        const int64_t dma = float_bit_diffs(hma, ma, nb), dva = float_bit_diffs(hva, va, nb);
        CHECKF(dp == 0 && dm == 0 && dv == 0 && dma == 0 && dva == 0,
               "n = %lld step %d: differing p %lld, m codes %lld, v codes %lld, m absmax %lld, v absmax %lld",
               (long long)n, t, (long long)dp, (long long)dm, (long long)dv, (long long)dma, (long long)dva);
        worst = worst > dp + dm + dv + dma + dva ? worst : dp + dm + dv + dma + dva;
    }
    printf("n = %5lld (%lld blocks): 4 steps, %lld differences\n", (long long)n, (long long)nb, (long long)worst);
    tn_cuda_free(d_p);
    tn_cuda_free(d_g);
    tn_cuda_free(d_ma);
    tn_cuda_free(d_va);
    tn_cuda_free(d_mc);
    tn_cuda_free(d_vc);
    free(p);
    free(g);
    free(ma);
    free(va);
    free(mc);
    free(vc);
    free(x);
    free(hp);
    free(hma);
    free(hva);
    free(hmc);
    free(hvc);
}

static void test_arguments(void) {
    const tn_adamw_hparams hpar = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    const tn_adamw_step h = tn_adamw_step_of(&hpar, 1, 0);
    float p0 = 1.5f, hp = 0;
    float *d_p = tn_test_dev_copy(&p0, sizeof p0);
    CHECK_OK(tn_cuda_adamw8(d_p, NULL, NULL, NULL, NULL, NULL, 0, &h));
    CHECK_OK(tn_cuda_download(&hp, d_p, sizeof hp));
    CHECK(hp == 1.5f);
    CHECK(tn_cuda_adamw8(d_p, NULL, NULL, NULL, NULL, NULL, -1, &h) == -1);
    CHECK(strstr(tn_errmsg(), "tn_cuda_adamw8") != NULL);
    CHECK(tn_cuda_adamw8(d_p, NULL, NULL, NULL, NULL, NULL, 1, NULL) == -1);
    CHECK(strstr(tn_errmsg(), "step") != NULL);
    tn_cuda_free(d_p);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_rng r;
    tn_rng_seed(&r, 2022);
    const int64_t sizes[] = {1, 2047, 2048, 2049, 5000, 4 * TN_ADAM8_BLOCK + 3, 40 * TN_ADAM8_BLOCK + 1001};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) test_size(&r, sizes[k]);
    test_arguments();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
