/* Muon and Grokfast on the CPU (optim/muon.c, optim/grokfast.c, through the CPU ops table) against the
 * PyTorch reference of tests/reference/gen_muon.py (float64, after the public reference implementations):
 * three consecutive optimizer steps of a wide, a tall and a square matrix (Nesterov and plain momentum, 5 and
 * 2 Newton–Schulz steps, with and without weight decay): the momentum buffer, the scaled orthogonalised
 * update s·U′ and the weights after every step within 1e-6 relative (max |c − ref| / max |ref|); four steps
 * of the Grokfast EMA filter (the paper's α = 0.98, λ = 2 and α = 0.5, λ = 0.3): the filtered gradient and
 * the EMA within 1e-6 relative. Without the fixture (no torch) that part is skipped. Also, without it: the
 * orthogonalisation of Xᵀ is the transpose of X's (the tall path against the wide one), a zero gradient
 * gives a zero update, and the non-square scale is sqrt(max(1, rows / cols)). */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "optim/grokfast.h"
#include "optim/muon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-6

/* Read a float dataset of known element count. */
static float *read_f32(hid_t f, const char *path, int rank, const int64_t *shape, size_t n) {
    float *buf = malloc(n * sizeof(float));
    if (!buf || tn_h5_read(f, path, TN_H5_F32, rank, shape, buf) != 0) {
        CHECKF(0, "fixture %s: %s", path, tn_errmsg());
        free(buf);
        return NULL;
    }
    return buf;
}

static void muon_case(hid_t f, const char *name) {
    const tn_ops *ops = tn_ops_cpu();
    char path[128];
    snprintf(path, sizeof path, "muon/%s/p0", name);
    int rank;
    int64_t shape[4];
    if (tn_h5_shape(f, path, &rank, shape) != 0 || rank != 2) {
        CHECKF(0, "fixture %s: %s", path, tn_errmsg());
        return;
    }
    const int64_t R = shape[0], C = shape[1], n = R * C, S = 3;
    const int64_t sh3[3] = {S, R, C};
    char grp[64];
    snprintf(grp, sizeof grp, "muon/%s", name);
    double beta, lr, wd;
    int64_t nesterov, ns_steps;
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "beta", &beta));
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "lr", &lr));
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "wd", &wd));
    CHECK_OK(tn_h5_attr_get_i64(f, grp, "nesterov", &nesterov));
    CHECK_OK(tn_h5_attr_get_i64(f, grp, "ns_steps", &ns_steps));
    float *p = read_f32(f, path, 2, shape, (size_t)n);
    snprintf(path, sizeof path, "muon/%s/g", name);
    float *g = read_f32(f, path, 3, sh3, (size_t)(S * n));
    snprintf(path, sizeof path, "muon/%s/momentum", name);
    float *ref_m = read_f32(f, path, 3, sh3, (size_t)(S * n));
    snprintf(path, sizeof path, "muon/%s/update", name);
    float *ref_u = read_f32(f, path, 3, sh3, (size_t)(S * n));
    snprintf(path, sizeof path, "muon/%s/p", name);
    float *ref_p = read_f32(f, path, 3, sh3, (size_t)(S * n));
    float *buf = calloc((size_t)n, sizeof(float)), *u = malloc((size_t)n * sizeof(float)),
          *su = malloc((size_t)n * sizeof(float));
    float *scratch = tn_alloc((size_t)tn_muon_scratch_floats(R, C), sizeof(float));
    if (!p || !g || !ref_m || !ref_u || !ref_p || !buf || !u || !su || !scratch) goto done;
    const float scale = tn_muon_shape_scale(R, C), decay = (float)(1.0 - lr * wd);
    double worst[3] = {0, 0, 0};
    for (int64_t s = 0; s < S; s++) {
        memcpy(u, g + s * n, (size_t)n * sizeof(float));
        CHECK_OK(ops->muon_momentum(buf, u, u, n, (float)beta, (int)nesterov));
        CHECK_OK(ops->muon_orthogonalize(u, R, C, (int)ns_steps, scratch));
        for (int64_t i = 0; i < n; i++) su[i] = scale * u[i];
        CHECK_OK(ops->muon_apply(p, u, n, scale, (float)lr, decay));
        const double e[3] = {tn_test_rel_err(buf, ref_m + s * n, (size_t)n), tn_test_rel_err(su, ref_u + s * n, (size_t)n),
                             tn_test_rel_err(p, ref_p + s * n, (size_t)n)};
        for (int k = 0; k < 3; k++) {
            CHECKF(e[k] <= TOL, "muon %s step %lld: %s rel err %.3g", name, (long long)s + 1,
                   k == 0 ? "momentum" : k == 1 ? "update" : "weights", e[k]);
            if (e[k] > worst[k]) worst[k] = e[k];
        }
    }
    printf("muon %s [%lld, %lld], %s, %lld NS steps: rel err momentum %.2g, update %.2g, weights %.2g\n", name,
           (long long)R, (long long)C, nesterov ? "Nesterov" : "plain", (long long)ns_steps, worst[0], worst[1],
           worst[2]);
done:
    free(p);
    free(g);
    free(ref_m);
    free(ref_u);
    free(ref_p);
    free(buf);
    free(u);
    free(su);
    tn_free(scratch);
}

static void grokfast_case(hid_t f, const char *name) {
    const tn_ops *ops = tn_ops_cpu();
    char path[128], grp[64];
    snprintf(grp, sizeof grp, "grokfast/%s", name);
    snprintf(path, sizeof path, "grokfast/%s/g", name);
    int rank;
    int64_t shape[4];
    if (tn_h5_shape(f, path, &rank, shape) != 0 || rank != 2) {
        CHECKF(0, "fixture %s: %s", path, tn_errmsg());
        return;
    }
    const int64_t S = shape[0], n = shape[1];
    double alpha, lambda;
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "alpha", &alpha));
    CHECK_OK(tn_h5_attr_get_f64(f, grp, "lambda", &lambda));
    float *g = read_f32(f, path, 2, shape, (size_t)(S * n));
    snprintf(path, sizeof path, "grokfast/%s/g_out", name);
    float *ref_g = read_f32(f, path, 2, shape, (size_t)(S * n));
    snprintf(path, sizeof path, "grokfast/%s/ema", name);
    float *ref_e = read_f32(f, path, 2, shape, (size_t)(S * n));
    float *ema = calloc((size_t)n, sizeof(float));
    double worst = 0;
    for (int64_t s = 0; g && ref_g && ref_e && ema && s < S; s++) {
        float *gs = g + s * n;
        CHECK_OK(ops->grokfast(gs, ema, n, (float)alpha, (float)lambda, s == 0));
        const double eg = tn_test_rel_err(gs, ref_g + s * n, (size_t)n), ee = tn_test_rel_err(ema, ref_e + s * n, (size_t)n);
        CHECKF(eg <= TOL && ee <= TOL, "grokfast %s step %lld: rel err g %.3g, ema %.3g", name, (long long)s + 1, eg, ee);
        worst = fmax(worst, fmax(eg, ee));
    }
    printf("grokfast %s (alpha %g, lambda %g, n %lld): %lld steps, rel err %.2g\n", name, alpha, lambda, (long long)n,
           (long long)S, worst);
    free(g);
    free(ref_g);
    free(ref_e);
    free(ema);
}

static void test_fixture(void) {
    const char *path = tn_test_fixture("muon_grokfast.h5");
    if (!path || access(path, R_OK) != 0) {
        printf("SKIPPED part: fixture muon_grokfast.h5 missing (run tests/reference/gen_muon.py; needs torch)\n");
        return;
    }
    hid_t f;
    if (tn_h5_open(path, &f) != 0) {
        CHECKF(0, "%s", tn_errmsg());
        return;
    }
    muon_case(f, "wide");
    muon_case(f, "tall");
    muon_case(f, "square");
    grokfast_case(f, "paper");
    grokfast_case(f, "fast");
    tn_h5_close(f);
}

/* The tall path (A = XᵀX, X·Bᵀ) on Xᵀ gives the transpose of the wide path on X; zeros stay zero. */
static void test_transpose_and_zero(void) {
    const int64_t R = 12, C = 30, n = R * C;
    float *x = malloc(sizeof(float) * (size_t)n), *xt = malloc(sizeof(float) * (size_t)n);
    float *scratch = tn_alloc((size_t)tn_muon_scratch_floats(R, C), sizeof(float));
    tn_rng rng;
    tn_rng_seed(&rng, 5);
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(&rng);
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) xt[j * R + i] = x[i * C + j];
    tn_muon_orthogonalize(x, R, C, 5, scratch);
    tn_muon_orthogonalize(xt, C, R, 5, scratch);
    double worst = 0, big = 0;
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            worst = fmax(worst, fabs((double)x[i * C + j] - (double)xt[j * R + i]));
            big = fmax(big, fabs((double)x[i * C + j]));
        }
    CHECKF(worst <= 1e-6 * big, "transpose: %.3g of %.3g", worst, big);
    memset(x, 0, sizeof(float) * (size_t)n);
    tn_muon_orthogonalize(x, R, C, 5, scratch);
    int zeros = 1;
    for (int64_t i = 0; i < n; i++) zeros &= x[i] == 0.0f;
    CHECK(zeros);
    CHECK(tn_muon_shape_scale(40, 10) == 2.0f);
    CHECK(tn_muon_shape_scale(10, 40) == 1.0f);
    CHECK(tn_muon_shape_scale(7, 7) == 1.0f);
    free(x);
    free(xt);
    tn_free(scratch);
}

int main(void) {
    test_fixture();
    test_transpose_and_zero();
    return tn_test_finish();
}
