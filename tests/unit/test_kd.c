/* Knowledge distillation on the CPU (kernels/cpu/kd.h) against PyTorch (tests/reference/gen_kd.py, kd.h5) and
 * against itself:
 *   - fixture, τ = 1 and τ = 2.5 (rows: independent, masked out, |logits| ~ 1000, near-equal, sharper,
 *     equal): per-row KL within 1e-5 relative (a row whose reference is 0 must be exactly 0), the loss
 *     α·τ²/n_counted·Σ_counted kl within 1e-5 relative, the gradient within 1e-4 normwise (max|Δ| / max|ref|)
 *     over the tensor and over every counted row, masked rows exactly 0; grad aliasing t_logits and 1 or 3
 *     threads give the same bits;
 *   - fixture, hidden MSE: the sum within 1e-12 relative, dx within 1e-5 normwise (rows not counted stay
 *     exactly 0), a second call adds exactly the same increment, mask NULL = all ones, 1 or 3 threads the
 *     same bits;
 *   - finite differences of g·τ²·Σ_counted kl (the op's own float kl) on a tiny case, both temperatures,
 *     and of the MSE sum;
 *   - teacher == student (large logits included, aliased or not): kl = 0 and grad = 0 exactly; V = 1.
 * The largest errors are printed. The fixture part skips (77) when kd.h5 is missing. */
#include "tn_test.h"

#include "core/error.h"
#include "core/h5.h"
#include "core/rng.h"
#include "kernels/cpu/kd.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL_KL 1e-5
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-4
#define TOL_MSE_SUM 1e-12
#define TOL_MSE_DX 1e-5

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

static double rel_d(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1.0); }

static float *randn(tn_rng *g, int64_t n, float s) {
    float *x = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(g);
    return x;
}

/* ---- fixture: the KL term -------------------------------------------------------------------------- */

static void fixture_kd(hid_t f, const char *grp) {
    char path[64];
    double tau, alpha;
    int64_t n_counted, shape[TN_H5_MAX_RANK];
    int rank;
    snprintf(path, sizeof path, "%s/s_logits", grp);
    if (tn_h5_shape(f, path, &rank, shape) != 0 || rank != 2) {
        CHECKF(0, "%s: %s", path, tn_errmsg());
        return;
    }
    const int64_t N = shape[0], V = shape[1];
    const size_t nv = (size_t)(N * V);
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "tau", &tau));
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "alpha", &alpha));
    CHECK_OK(tn_h5_attr_get_i64(f, grp, "n_counted", &n_counted));
    float *s = xmalloc(nv * sizeof(float)), *t = xmalloc(nv * sizeof(float)), *gref = xmalloc(nv * sizeof(float));
    float *klref = xmalloc((size_t)N * sizeof(float));
    uint8_t *mask = xmalloc((size_t)N);
    double loss_ref;
    snprintf(path, sizeof path, "%s/s_logits", grp);
    CHECK_OK(tn_h5_read(f, path, TN_H5_F32, 2, shape, s));
    snprintf(path, sizeof path, "%s/t_logits", grp);
    CHECK_OK(tn_h5_read(f, path, TN_H5_F32, 2, shape, t));
    snprintf(path, sizeof path, "%s/grad", grp);
    CHECK_OK(tn_h5_read(f, path, TN_H5_F32, 2, shape, gref));
    snprintf(path, sizeof path, "%s/kl", grp);
    CHECK_OK(tn_h5_read(f, path, TN_H5_F32, 1, &N, klref));
    snprintf(path, sizeof path, "%s/mask", grp);
    CHECK_OK(tn_h5_read(f, path, TN_H5_U8, 1, &N, mask));
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "loss", &loss_ref));

    int64_t counted = 0;
    for (int64_t n = 0; n < N; n++) counted += mask[n] != 0;
    CHECK(counted == n_counted && counted > 0);
    const float g = (float)(alpha / (double)n_counted);

    float *kl = xmalloc((size_t)N * sizeof(float)), *grad = xmalloc(nv * sizeof(float));
    tn_op_kd(kl, grad, s, t, mask, N, V, (float)tau, g);

    /* per-row KL, loss */
    double kl_worst = 0, sum = 0;
    for (int64_t n = 0; n < N; n++) {
        const double e = klref[n] == 0.0f ? (kl[n] == 0.0f ? 0 : INFINITY) : rel_d(kl[n], klref[n]);
        CHECKF(e <= TOL_KL, "%s row %lld: kl %.9g, reference %.9g (rel %.3g)", grp, (long long)n, kl[n], klref[n], e);
        if (e > kl_worst) kl_worst = e;
        if (mask[n]) sum += kl[n];
    }
    const double loss = alpha * tau * tau / (double)n_counted * sum;
    const double loss_err = rel_d(loss, loss_ref);
    CHECKF(loss_err <= TOL_LOSS, "%s: loss %.9g, reference %.9g", grp, loss, loss_ref);

    /* gradient: the tensor, every counted row, masked rows exactly 0 */
    const double grad_err = tn_test_rel_err(grad, gref, nv);
    CHECKF(grad_err <= TOL_GRAD, "%s: grad rel err %.3g", grp, grad_err);
    double row_worst = 0;
    int64_t masked_nonzero = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *gr = grad + n * V;
        if (!mask[n]) {
            for (int64_t v = 0; v < V; v++) masked_nonzero += gr[v] != 0.0f || signbit(gr[v]);
            continue;
        }
        const double e = tn_test_rel_err(gr, gref + n * V, (size_t)V);
        CHECKF(e <= TOL_GRAD, "%s row %lld: grad rel err %.3g", grp, (long long)n, e);
        if (e > row_worst) row_worst = e;
    }
    CHECKF(masked_nonzero == 0, "%s: %lld gradient elements of masked rows are not +0", grp, (long long)masked_nonzero);

    /* grad aliasing t_logits; 1 and 3 threads */
    float *kl2 = xmalloc((size_t)N * sizeof(float)), *buf = xmalloc(nv * sizeof(float));
    memcpy(buf, t, nv * sizeof(float));
    tn_op_kd(kl2, buf, s, buf, mask, N, V, (float)tau, g);
    CHECK(same_bits(kl2, kl, (size_t)N * sizeof(float)));
    CHECK(same_bits(buf, grad, nv * sizeof(float)));
    const int threads = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt += 2) {
        omp_set_num_threads(nt);
        tn_op_kd(kl2, buf, s, t, mask, N, V, (float)tau, g);
        CHECKF(same_bits(kl2, kl, (size_t)N * sizeof(float)) && same_bits(buf, grad, nv * sizeof(float)),
               "%s: %d threads give other bits", grp, nt);
    }
    omp_set_num_threads(threads);

    printf("%s (tau %g, N %lld, V %lld): kl worst row rel %.2e, loss rel %.2e, grad normwise %.2e "
           "(worst counted row %.2e)\n",
           grp, tau, (long long)N, (long long)V, kl_worst, loss_err, grad_err, row_worst);
    free(s), free(t), free(gref), free(klref), free(mask), free(kl), free(grad), free(kl2), free(buf);
}

/* ---- fixture: the hidden-state MSE ----------------------------------------------------------------- */

static void fixture_mse(hid_t f) {
    int64_t shape[TN_H5_MAX_RANK], n_counted;
    int rank;
    double weight, sum_ref, loss_ref;
    if (tn_h5_shape(f, "mse/xs", &rank, shape) != 0 || rank != 2) {
        CHECKF(0, "mse/xs: %s", tn_errmsg());
        return;
    }
    const int64_t N = shape[0], D = shape[1];
    const size_t nd = (size_t)(N * D);
    float *xs = xmalloc(nd * sizeof(float)), *xt = xmalloc(nd * sizeof(float)), *dxref = xmalloc(nd * sizeof(float));
    uint8_t *mask = xmalloc((size_t)N);
    CHECK_OK(tn_h5_attr_get_f64(f, "mse", "weight", &weight));
    CHECK_OK(tn_h5_attr_get_i64(f, "mse", "n_counted", &n_counted));
    CHECK_OK(tn_h5_read(f, "mse/xs", TN_H5_F32, 2, shape, xs));
    CHECK_OK(tn_h5_read(f, "mse/xt", TN_H5_F32, 2, shape, xt));
    CHECK_OK(tn_h5_read(f, "mse/dx", TN_H5_F32, 2, shape, dxref));
    CHECK_OK(tn_h5_read(f, "mse/mask", TN_H5_U8, 1, &N, mask));
    CHECK_OK(tn_h5_attr_get_f64(f, "mse", "sum", &sum_ref));
    CHECK_OK(tn_h5_attr_get_f64(f, "mse", "loss", &loss_ref));
    const float g = (float)(weight / ((double)n_counted * (double)D));

    float *dx = calloc(nd, sizeof(float)), *dx2 = xmalloc(nd * sizeof(float));
    double sum;
    tn_op_hidden_mse(&sum, dx, xs, xt, mask, N, D, g);
    const double sum_err = rel_d(sum, sum_ref), loss_err = rel_d(weight * sum / ((double)n_counted * D), loss_ref);
    CHECKF(sum_err <= TOL_MSE_SUM, "mse sum %.17g, reference %.17g", sum, sum_ref);
    CHECKF(loss_err <= TOL_MSE_SUM, "mse loss rel err %.3g", loss_err);
    const double dx_err = tn_test_rel_err(dx, dxref, nd);
    CHECKF(dx_err <= TOL_MSE_DX, "mse dx rel err %.3g", dx_err);
    int64_t untouched_bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D && !mask[n]; d++) untouched_bad += dx[n * D + d] != 0.0f;
    CHECK(untouched_bad == 0);

    /* accumulation: the same increment again gives exactly twice */
    memcpy(dx2, dx, nd * sizeof(float));
    double sum2;
    tn_op_hidden_mse(&sum2, dx2, xs, xt, mask, N, D, g);
    int64_t not_double = 0;
    for (size_t i = 0; i < nd; i++) not_double += dx2[i] != 2.0f * dx[i];
    CHECKF(not_double == 0 && sum2 == sum, "%lld elements not doubled", (long long)not_double);

    /* mask NULL = all ones; thread count */
    uint8_t *ones = xmalloc((size_t)N);
    memset(ones, 1, (size_t)N);
    double sa, sb;
    float *da = calloc(nd, sizeof(float)), *db = calloc(nd, sizeof(float));
    tn_op_hidden_mse(&sa, da, xs, xt, ones, N, D, g);
    tn_op_hidden_mse(&sb, db, xs, xt, NULL, N, D, g);
    CHECK(sa == sb && same_bits(da, db, nd * sizeof(float)));
    const int threads = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt += 2) {
        omp_set_num_threads(nt);
        memset(dx2, 0, nd * sizeof(float));
        tn_op_hidden_mse(&sum2, dx2, xs, xt, mask, N, D, g);
        CHECKF(same_bits(&sum2, &sum, sizeof sum) && same_bits(dx2, dx, nd * sizeof(float)),
               "mse: %d threads give other bits", nt);
    }
    omp_set_num_threads(threads);
    printf("mse (N %lld, D %lld): sum rel %.2e, loss rel %.2e, dx normwise %.2e\n", (long long)N, (long long)D,
           sum_err, loss_err, dx_err);
    free(xs), free(xt), free(dxref), free(mask), free(dx), free(dx2), free(ones), free(da), free(db);
}

/* Runs after the fixture-free checks: without the fixture, a failure among those still fails the test. */
static void test_fixture(void) {
    const char *path = tn_test_fixture("kd.h5");
    if (!path || access(path, R_OK) != 0) {
        if (tn_test_failed) exit(tn_test_finish());
        TN_SKIP("fixture kd.h5 missing (run tests/reference/gen_kd.py)");
    }
    hid_t f;
    if (tn_h5_open(path, &f) != 0) {
        CHECKF(0, "%s: %s", path, tn_errmsg());
        return;
    }
    fixture_kd(f, "tau1");
    fixture_kd(f, "tau2_5");
    fixture_mse(f);
    tn_h5_close(f);
}

/* ---- finite differences ----------------------------------------------------------------------------- */

/* L(s) = g·τ²·Σ_counted kl[n], in double from the op's float kl */
static double kd_objective(const float *s, const float *t, const uint8_t *mask, int64_t N, int64_t V, float tau,
                           float g, float *kl, float *grad) {
    tn_op_kd(kl, grad, s, t, mask, N, V, tau, g);
    double sum = 0;
    for (int64_t n = 0; n < N; n++)
        if (mask[n]) sum += kl[n];
    return (double)g * tau * tau * sum;
}

/* Central differences with h = 1e-2 (the real step measured from the stored floats) on every logit of a
 * 3 × 6 case. Bound |fd − an| <= 1e-3·max|an| + 1e-5: the float kl's rounding (~1e-7) gives ~5e-6 of noise
 * in the slope, the truncation h²/6·f''' about 1e-5. */
static void test_fd(tn_rng *rng, float tau) {
    enum { N = 3, V = 6 };
    const uint8_t mask[N] = {1, 0, 1};
    const float g = 0.4f;
    float *s = randn(rng, N * V, 1.5f), *t = randn(rng, N * V, 1.5f);
    float kl[N], an[N * V], scratch[N * V];
    kd_objective(s, t, mask, N, V, tau, g, kl, an);
    float amax = 0;
    for (int i = 0; i < N * V; i++) amax = fabsf(an[i]) > amax ? fabsf(an[i]) : amax;
    double worst = 0;
    for (int i = 0; i < N * V; i++) {
        const float s0 = s[i], sp = s0 + 1e-2f, sm = s0 - 1e-2f;
        s[i] = sp;
        const double lp = kd_objective(s, t, mask, N, V, tau, g, kl, scratch);
        s[i] = sm;
        const double lm = kd_objective(s, t, mask, N, V, tau, g, kl, scratch);
        s[i] = s0;
        const double fd = (lp - lm) / ((double)sp - (double)sm);
        const double err = fabs(fd - an[i]), bound = 1e-3 * amax + 1e-5;
        CHECKF(err <= bound, "fd tau %g, logit %d: fd %.8g, analytic %.8g", tau, i, fd, an[i]);
        if (err / bound > worst) worst = err / bound;
    }
    printf("finite differences (tau %g, 3 x 6): worst |fd - an| = %.2f of the bound (max |grad| %.3g)\n", tau, worst,
           amax);
    free(s), free(t);
}

/* d/dxs Σ (xs − xt)² = 2 (xs − xt): central differences of the double sum, exact for a quadratic up to
 * rounding; dx = g·2·(xs − xt) compared within 1e-5 of max|dx|. */
static void test_fd_mse(tn_rng *rng) {
    enum { N = 3, D = 5 };
    const uint8_t mask[N] = {1, 0, 1};
    const float g = 0.3f;
    float *xs = randn(rng, N * D, 1.0f), *xt = randn(rng, N * D, 1.0f);
    float dx[N * D] = {0}, junk[N * D];
    double sum, sp, sm;
    tn_op_hidden_mse(&sum, dx, xs, xt, mask, N, D, g);
    float amax = 0;
    for (int i = 0; i < N * D; i++) amax = fabsf(dx[i]) > amax ? fabsf(dx[i]) : amax;
    double worst = 0;
    for (int i = 0; i < N * D; i++) {
        const float x0 = xs[i], xp = x0 + 1e-2f, xm = x0 - 1e-2f;
        xs[i] = xp;
        tn_op_hidden_mse(&sp, junk, xs, xt, mask, N, D, g);
        xs[i] = xm;
        tn_op_hidden_mse(&sm, junk, xs, xt, mask, N, D, g);
        xs[i] = x0;
        const double fd = (double)g * (sp - sm) / ((double)xp - (double)xm);
        const double err = fabs(fd - dx[i]);
        CHECKF(err <= 1e-5 * amax, "mse fd element %d: fd %.8g, dx %.8g", i, fd, dx[i]);
        if (err > worst) worst = err;
    }
    printf("finite differences (mse, 3 x 5): worst |fd - dx| / max|dx| = %.2e\n", worst / amax);
    free(xs), free(xt);
}

/* ---- teacher == student ------------------------------------------------------------------------------ */

static void test_equal(tn_rng *rng) {
    enum { N = 4, V = 1000 };
    float *s = randn(rng, N * V, 2.0f);
    for (int v = 0; v < V; v++) s[2 * V + v] = 800.0f + 40.0f * s[2 * V + v]; /* large logits */
    for (int v = 0; v < V; v++) s[3 * V + v] *= 1e-3f;                        /* nearly uniform */
    float *t = xmalloc(sizeof(float) * N * V), *grad = xmalloc(sizeof(float) * N * V), kl[N];
    const float taus[2] = {1.0f, 2.5f};
    for (int k = 0; k < 2; k++)
        for (int alias = 0; alias < 2; alias++) {
            memcpy(t, s, sizeof(float) * N * V);
            float *gr = alias ? t : grad;
            if (!alias) memset(grad, 0xff, sizeof(float) * N * V); /* NaN: the op must overwrite */
            tn_op_kd(kl, gr, s, t, NULL, N, V, taus[k], 0.37f);
            int64_t bad = 0;
            for (int n = 0; n < N; n++) bad += kl[n] != 0.0f;
            for (int i = 0; i < N * V; i++) bad += gr[i] != 0.0f;
            CHECKF(bad == 0, "teacher == student, tau %g, alias %d: %lld nonzero", taus[k], alias, (long long)bad);
        }
    /* V = 1: one logit, nothing to distil */
    const float a = 3.0f, b = -7.0f;
    float k1, g1 = 1.0f;
    tn_op_kd(&k1, &g1, &a, &b, NULL, 1, 1, 2.0f, 1.0f);
    CHECK(k1 == 0.0f && g1 == 0.0f);
    free(s), free(t), free(grad);
}

int main(void) {
    tn_rng rng;
    tn_rng_seed(&rng, 23);
    test_fd(&rng, 1.0f);
    test_fd(&rng, 2.5f);
    test_fd_mse(&rng);
    test_equal(&rng);
    test_fixture();
    return tn_test_finish();
}
