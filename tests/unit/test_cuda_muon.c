/* Muon and Grokfast on the device (kernels/cuda/muon.cu) against the CPU ops (optim/muon.c,
 * optim/grokfast.c): the momentum (Nesterov and plain, the update written over the gradient as the
 * training step does), the parameter update and the Grokfast filter (its first step and three more) BIT FOR
 * BIT, for n = 1, 1000 and 70001 (one block, a grid-stride tail); the Newton–Schulz orthogonalisation of a
 * wide [24, 70], a tall [90, 33], a square [40, 40] and a [1, 17] matrix within 1e-5 relative (max |d| /
 * max |cpu|: the device iterates in fp32 through the cuBLAS wrapper, the CPU in double), and a zero matrix
 * stays zero. Bad arguments fail with a message. Without CUDA (or its emulator) or a device: skipped. */
#include "cuda_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "optim/muon.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA
#include "kernels/cuda/muon.h"

static int64_t bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

static void randn(tn_rng *r, float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(r);
}

static float *download(const float *d, int64_t n) {
    float *h = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    CHECK_OK(tn_cuda_download(h, d, sizeof(float) * (size_t)n));
    return h;
}

/* Momentum, apply and Grokfast: four steps on both sides, compared after each. */
static void test_elementwise(int64_t n) {
    const tn_ops *cpu = tn_ops_cpu();
    tn_rng r;
    tn_rng_seed(&r, 77 + (uint64_t)n);
    float *p = malloc(sizeof(float) * (size_t)n), *buf = calloc((size_t)n, sizeof(float)),
          *g = malloc(sizeof(float) * (size_t)n), *ema = calloc((size_t)n, sizeof(float));
    randn(&r, p, n, 0.05f);
    float *dp = tn_test_dev_copy(p, sizeof(float) * (size_t)n), *dbuf = tn_test_dev_copy(buf, sizeof(float) * (size_t)n),
          *dg = tn_test_dev_copy(p, sizeof(float) * (size_t)n), *dema = tn_test_dev_copy(ema, sizeof(float) * (size_t)n);
    int64_t diffs = 0;
    for (int s = 0; s < 4 && dp && dbuf && dg && dema; s++) {
        const int nesterov = s != 2;
        randn(&r, g, n, 1e-2f);
        g[0] = s == 1 ? 0.0f : g[0];
        CHECK_OK(tn_cuda_upload(dg, g, sizeof(float) * (size_t)n));
        /* Grokfast first, as in the step; then the momentum over the gradient; then the update */
        CHECK_OK(cpu->grokfast(g, ema, n, 0.98f, 2.0f, s == 0));
        CHECK_OK(tn_cuda_grokfast(dg, dema, n, 0.98f, 2.0f, s == 0));
        CHECK_OK(cpu->muon_momentum(buf, g, g, n, 0.95f, nesterov));
        CHECK_OK(tn_cuda_muon_momentum(dbuf, dg, dg, n, 0.95f, nesterov));
        CHECK_OK(cpu->muon_apply(p, g, n, 1.5f, 0.02f, 0.999f));
        CHECK_OK(tn_cuda_muon_apply(dp, dg, n, 1.5f, 0.02f, 0.999f));
        float *hp = download(dp, n), *hb = download(dbuf, n), *hg = download(dg, n), *he = download(dema, n);
        const int64_t d = bit_diffs(hp, p, n) + bit_diffs(hb, buf, n) + bit_diffs(hg, g, n) + bit_diffs(he, ema, n);
        CHECKF(d == 0, "n %lld step %d: %lld floats differ", (long long)n, s + 1, (long long)d);
        diffs += d;
        free(hp);
        free(hb);
        free(hg);
        free(he);
    }
    printf("elementwise n = %lld: 4 steps of Grokfast, momentum (Nesterov, plain), update: %lld bit differences\n",
           (long long)n, (long long)diffs);
    tn_cuda_free(dp);
    tn_cuda_free(dbuf);
    tn_cuda_free(dg);
    tn_cuda_free(dema);
    free(p);
    free(buf);
    free(g);
    free(ema);
}

static void test_orthogonalize(int64_t R, int64_t C, int steps, int zero) {
    const int64_t n = R * C, ns = tn_muon_scratch_floats(R, C);
    tn_rng r;
    tn_rng_seed(&r, 1000 + (uint64_t)n);
    float *x = malloc(sizeof(float) * (size_t)n), *scratch = tn_alloc((size_t)ns, sizeof(float));
    randn(&r, x, n, zero ? 0.0f : 0.3f);
    float *dx = tn_test_dev_copy(x, sizeof(float) * (size_t)n), *dscratch = tn_cuda_alloc(sizeof(float) * (size_t)ns);
    CHECK(dscratch != NULL);
    if (dx && dscratch) {
        tn_muon_orthogonalize(x, R, C, steps, scratch);
        CHECK_OK(tn_cuda_muon_orthogonalize(dx, R, C, steps, dscratch));
        float *h = download(dx, n);
        double worst = 0, big = 0;
        for (int64_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs((double)h[i] - (double)x[i]));
            big = fmax(big, fabs((double)x[i]));
        }
        if (zero) {
            CHECKF(worst == 0 && big == 0, "zero [%lld, %lld]: max %.3g", (long long)R, (long long)C, worst);
        } else {
            CHECKF(worst <= 1e-5 * big, "[%lld, %lld]: max diff %.3g of %.3g", (long long)R, (long long)C, worst, big);
        }
        printf("orthogonalize [%lld, %lld], %d steps%s: rel diff %.2g\n", (long long)R, (long long)C, steps,
               zero ? " (zeros)" : "", big > 0 ? worst / big : worst);
        free(h);
    }
    tn_cuda_free(dx);
    tn_cuda_free(dscratch);
    free(x);
    tn_free(scratch);
}

static void test_errors(void) {
    float *d = tn_cuda_alloc(64 * sizeof(float));
    CHECK(tn_cuda_muon_momentum(d, d, d, -1, 0.9f, 1) != 0);
    CHECK(tn_cuda_muon_apply(d, d, -1, 1, 1, 1) != 0);
    CHECK(tn_cuda_grokfast(d, d, -1, 0.9f, 1, 0) != 0);
    CHECK(tn_cuda_muon_orthogonalize(d, 0, 4, 5, d) != 0);
    CHECK(tn_cuda_muon_orthogonalize(d, 4, 4, -1, d) != 0);
    CHECK(strstr(tn_errmsg(), "tn_cuda_muon_orthogonalize") != NULL);
    CHECK_OK(tn_cuda_muon_momentum(d, d, d, 0, 0.9f, 1));
    tn_cuda_free(d);
}
#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    test_elementwise(1);
    test_elementwise(1000);
    test_elementwise(70001);
    test_orthogonalize(24, 70, 5, 0);
    test_orthogonalize(90, 33, 5, 0);
    test_orthogonalize(40, 40, 3, 0);
    test_orthogonalize(1, 17, 5, 0);
    test_orthogonalize(16, 8, 5, 1);
    test_errors();
#endif
    return tn_test_finish();
}
