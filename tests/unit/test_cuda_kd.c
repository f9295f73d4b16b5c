/* Knowledge distillation on CUDA (kernels/cuda/kd.cu) against the CPU reference (kernels/cpu/kd.c), on random
 * data of odd shapes: tn_cuda_kd for one row of V = 1, 7, 1000, 50000, 151936 and for N = 5 rows of V = 7,
 * 1000 (a row with |logits| ~ 1000 and a row equal to the teacher among them), τ = 1 and 2.5, mask NULL and
 * partial, grad separate and aliasing t_logits; tn_cuda_hidden_mse for N = 1, 5, 37 and D = 1, 7, 1000, 4099,
 * dx accumulated onto random values, mask NULL and partial; the refusals.
 * Tolerances: kl and grad 1e-5 normwise (max|gpu − cpu| / max|cpu|), the same expressions in float but the
 * double sums in another order, and on a card tn_expf's polynomial contracted into fma; a row equal to its
 * teacher exactly 0; masked rows exactly 0; a second run bit for bit the same. Hidden MSE: dx bit for bit,
 * the sum within 1e-12 relative. The largest error per check is printed. Without CUDA (or its emulator) or a
 * device the test is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"

#ifdef TN_HAVE_CUDA
#include "kernels/cpu/kd.h"
#include "kernels/cuda/kd.h"
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

#define TOL_KD 1e-5
#define TOL_MSE_SUM 1e-12

enum { MAX_STATS = 16 };
static struct {
    const char *op;
    double err, tol;
} g_stats[MAX_STATS];
static int g_nstats = 0;

/* Record err for op and CHECK it against tol (tol 0: exact). */
static void note(const char *op, const char *what, double err, double tol) {
    int k = 0;
    while (k < g_nstats && strcmp(g_stats[k].op, op) != 0) k++;
    if (k == g_nstats && g_nstats < MAX_STATS) {
        g_stats[g_nstats].op = op;
        g_stats[g_nstats].err = 0;
        g_stats[g_nstats].tol = tol;
        g_nstats++;
    }
    if (k < g_nstats && !(err <= g_stats[k].err)) g_stats[k].err = err;
    CHECKF(err <= tol, "%s %s: error %.3g > %.3g", op, what, err, tol);
}

static void report(void) {
    printf("largest error per check (normwise relative; 0 = bit-exact):\n");
    for (int k = 0; k < g_nstats; k++)
        printf("  %-28s %.3g (tolerance %.3g)\n", g_stats[k].op, g_stats[k].err, g_stats[k].tol);
}

static void download(void *host, const void *dev, size_t bytes) { CHECK_OK(tn_cuda_download(host, dev, bytes)); }

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static float *randn(tn_rng *g, int64_t n, float s) {
    float *x = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(g);
    return x;
}

static double bit_diffs(const void *a, const void *b, size_t n, size_t size) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp((const char *)a + i * size, (const char *)b + i * size, size) != 0;
    return (double)d;
}

static double rel(const float *a, const float *b, int64_t n) { return tn_test_rel_err(a, b, (size_t)n); }

/* ---- the KL term ------------------------------------------------------------------------------------ */

/* One shape: random student and teacher (N > 2: row 1 with |logits| ~ 1000, row 2 equal to the teacher). */
static void kd_case(tn_rng *rng, int64_t N, int64_t V) {
    const size_t nv = (size_t)(N * V), fb = nv * sizeof(float);
    float *s = randn(rng, (int64_t)nv, 2.0f), *t = randn(rng, (int64_t)nv, 2.5f);
    if (N > 2) {
        for (int64_t v = 0; v < V; v++) s[V + v] = 1000.0f + 10.0f * s[V + v], t[V + v] = -300.0f + 8.0f * t[V + v];
        memcpy(t + 2 * V, s + 2 * V, (size_t)V * sizeof(float));
    }
    uint8_t *mask = xmalloc((size_t)N);
    for (int64_t n = 0; n < N; n++) mask[n] = N == 1 ? 0 : (n % 3 != 1); /* N = 1: the row masked out */
    float *d_s = tn_test_dev_copy(s, fb), *d_t = tn_test_dev_copy(t, fb), *d_buf = tn_cuda_alloc(fb);
    float *d_kl = tn_cuda_alloc((size_t)N * sizeof(float)), *d_grad = tn_cuda_alloc(fb);
    uint8_t *d_mask = tn_test_dev_copy(mask, (size_t)N);
    float *kl_ref = xmalloc((size_t)N * sizeof(float)), *kl = xmalloc((size_t)N * sizeof(float));
    float *g_ref = xmalloc(fb), *grad = xmalloc(fb), *grad2 = xmalloc(fb), *kl2 = xmalloc((size_t)N * sizeof(float));

    const float taus[2] = {1.0f, 2.5f}, g = 0.7f / 3.0f;
    for (int k = 0; k < 2; k++)
        for (int use_mask = 0; use_mask < 2; use_mask++) {
            const uint8_t *m = use_mask ? mask : NULL;
            char what[96];
            snprintf(what, sizeof what, "N=%lld V=%lld tau=%g %s", (long long)N, (long long)V, taus[k],
                     use_mask ? "mask" : "mask NULL");
            tn_op_kd(kl_ref, g_ref, s, t, m, N, V, taus[k], g);
            CHECK_OK(tn_cuda_kd(d_kl, d_grad, d_s, d_t, use_mask ? d_mask : NULL, N, V, taus[k], g));
            download(kl, d_kl, (size_t)N * sizeof(float));
            download(grad, d_grad, fb);
            note("kd kl", what, rel(kl, kl_ref, N), TOL_KD);
            note("kd grad", what, rel(grad, g_ref, (int64_t)nv), TOL_KD);
            /* rows: masked out exactly +0, equal to the teacher exactly 0 */
            int64_t bad = 0;
            for (int64_t n = 0; n < N; n++) {
                const int zero_grad = (m && !m[n]) || (N > 2 && n == 2);
                for (int64_t v = 0; zero_grad && v < V; v++) bad += grad[n * V + v] != 0.0f || signbit(grad[n * V + v]);
                if (N > 2 && n == 2) bad += kl[n] != 0.0f;
            }
            note("kd exact zeros (count)", what, (double)bad, 0);

            /* again: the same bits; then grad aliasing t_logits */
            CHECK_OK(tn_cuda_kd(d_kl, d_grad, d_s, d_t, use_mask ? d_mask : NULL, N, V, taus[k], g));
            download(kl2, d_kl, (size_t)N * sizeof(float));
            download(grad2, d_grad, fb);
            note("kd repeat (bits)", what,
                 bit_diffs(kl2, kl, (size_t)N, sizeof(float)) + bit_diffs(grad2, grad, nv, sizeof(float)), 0);
            CHECK_OK(tn_cuda_upload(d_buf, t, fb));
            CHECK_OK(tn_cuda_kd(d_kl, d_buf, d_s, d_buf, use_mask ? d_mask : NULL, N, V, taus[k], g));
            download(kl2, d_kl, (size_t)N * sizeof(float));
            download(grad2, d_buf, fb);
            note("kd alias t (bits)", what,
                 bit_diffs(kl2, kl, (size_t)N, sizeof(float)) + bit_diffs(grad2, grad, nv, sizeof(float)), 0);
        }
    tn_cuda_free(d_s), tn_cuda_free(d_t), tn_cuda_free(d_buf), tn_cuda_free(d_kl), tn_cuda_free(d_grad);
    tn_cuda_free(d_mask);
    free(s), free(t), free(mask), free(kl_ref), free(kl), free(g_ref), free(grad), free(grad2), free(kl2);
}

static void test_kd(tn_rng *rng) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {1, 1000}, {1, 50000}, {1, 151936}, {5, 7}, {5, 1000}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) kd_case(rng, shapes[k][0], shapes[k][1]);
}

/* ---- the hidden-state MSE ------------------------------------------------------------------------------ */

static void mse_case(tn_rng *rng, int64_t N, int64_t D) {
    const size_t nd = (size_t)(N * D), fb = nd * sizeof(float);
    float *xs = randn(rng, (int64_t)nd, 1.0f), *xt = randn(rng, (int64_t)nd, 1.0f);
    float *dx0 = randn(rng, (int64_t)nd, 0.1f);
    float *dx_ref = xmalloc(fb), *dx = xmalloc(fb);
    uint8_t *mask = xmalloc((size_t)N);
    for (int64_t n = 0; n < N; n++) mask[n] = N == 1 ? 1 : (n % 4 != 2);
    float *d_xs = tn_test_dev_copy(xs, fb), *d_xt = tn_test_dev_copy(xt, fb), *d_dx = tn_cuda_alloc(fb);
    uint8_t *d_mask = tn_test_dev_copy(mask, (size_t)N);
    const float g = 0.25f / (float)(N * D);
    for (int use_mask = 0; use_mask < 2; use_mask++) {
        char what[96];
        snprintf(what, sizeof what, "N=%lld D=%lld %s", (long long)N, (long long)D, use_mask ? "mask" : "mask NULL");
        double sum_ref, sum = -1, sum2 = -1;
        memcpy(dx_ref, dx0, fb);
        tn_op_hidden_mse(&sum_ref, dx_ref, xs, xt, use_mask ? mask : NULL, N, D, g);
        CHECK_OK(tn_cuda_upload(d_dx, dx0, fb));
        CHECK_OK(tn_cuda_hidden_mse(&sum, d_dx, d_xs, d_xt, use_mask ? d_mask : NULL, N, D, g));
        download(dx, d_dx, fb);
        note("hidden_mse sum", what, fabs(sum - sum_ref) / sum_ref, TOL_MSE_SUM);
        note("hidden_mse dx (bits)", what, bit_diffs(dx, dx_ref, nd, sizeof(float)), 0);
        /* a second run on the same inputs: the same sum, bit for bit */
        CHECK_OK(tn_cuda_upload(d_dx, dx0, fb));
        CHECK_OK(tn_cuda_hidden_mse(&sum2, d_dx, d_xs, d_xt, use_mask ? d_mask : NULL, N, D, g));
        note("hidden_mse repeat (bits)", what, bit_diffs(&sum2, &sum, 1, sizeof sum), 0);
    }
    tn_cuda_free(d_xs), tn_cuda_free(d_xt), tn_cuda_free(d_dx), tn_cuda_free(d_mask);
    free(xs), free(xt), free(dx0), free(dx_ref), free(dx), free(mask);
}

static void test_mse(tn_rng *rng) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {5, 7}, {5, 1000}, {37, 4099}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) mse_case(rng, shapes[k][0], shapes[k][1]);
}

/* ---- refusals ----------------------------------------------------------------------------------------- */

static void expect_error(int rc, const char *needle) {
    CHECKF(rc == -1 && strstr(tn_errmsg(), needle) != NULL, "rc %d, message \"%s\" (expected \"%s\")", rc,
           tn_errmsg(), needle);
    tn_err_clear();
}

static void test_refusals(void) {
    float *d = tn_cuda_alloc(64);
    double s = 5;
    expect_error(tn_cuda_kd(d, d + 4, d + 8, d + 12, NULL, -1, 4, 1.0f, 1.0f), "tn_cuda_kd: N = -1, V = 4");
    expect_error(tn_cuda_kd(d, d + 4, d + 8, d + 12, NULL, 1, 0, 1.0f, 1.0f), "tn_cuda_kd: N = 1, V = 0");
    expect_error(tn_cuda_kd(d, d + 4, d + 8, d + 12, NULL, 1, 4, 0.0f, 1.0f), "tn_cuda_kd: tau = 0");
    expect_error(tn_cuda_kd(d, d + 4, d + 8, d + 12, NULL, 1, 4, NAN, 1.0f), "need a finite tau > 0");
    expect_error(tn_cuda_kd(d, d + 8, d + 8, d + 12, NULL, 1, 4, 1.0f, 1.0f), "grad must not be s_logits");
    expect_error(tn_cuda_hidden_mse(&s, d, d + 4, d + 8, NULL, 1, -2, 1.0f), "tn_cuda_hidden_mse: N = 1, D = -2");
    expect_error(tn_cuda_hidden_mse(NULL, d, d + 4, d + 8, NULL, 1, 4, 1.0f), "no host pointer");
    /* empty work succeeds and touches nothing */
    CHECK_OK(tn_cuda_kd(d, d, d, d, NULL, 0, 4, 1.0f, 1.0f));
    CHECK_OK(tn_cuda_hidden_mse(&s, d, d, d, NULL, 0, 4, 1.0f));
    CHECK(s == 0);
    tn_cuda_free(d);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_rng rng;
    tn_rng_seed(&rng, 29);
    test_kd(&rng);
    test_mse(&rng);
    test_refusals();
    report();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
