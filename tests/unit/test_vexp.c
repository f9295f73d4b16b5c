/* tn_expf (kernels/vexp.h) against exp() in double: relative error over a dense sweep of the whole
 * finite range, the edge cases, and the same results from a vectorized loop as from scalar calls. */
#include "kernels/vexp.h"
#include "tn_test.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* Not inlined into a vector loop: the scalar reference for the vectorized results. */
__attribute__((noinline)) static float expf_scalar_call(float x) { return tn_expf(x); }

static double rel_err(float got, double want) { return fabs((double)got - want) / want; }

int main(void) {
    /* Dense sweep: every 2^-12 from -87.33 to 88.72 (about 728k points), plus random points. */
    double worst = 0, worst_x = 0;
    for (double xd = -87.33; xd <= 88.72; xd += 1.0 / 4096) {
        const float x = (float)xd;
        const double e = rel_err(tn_expf(x), exp((double)x));
        if (e > worst) worst = e, worst_x = x;
    }
    srand(7);
    for (int i = 0; i < 1000000; i++) {
        const float x = -87.3f + 176.0f * (float)rand() / (float)RAND_MAX;
        const double e = rel_err(tn_expf(x), exp((double)x));
        if (e > worst) worst = e, worst_x = x;
    }
    printf("tn_expf: max relative error %.3g at x = %.9g\n", worst, worst_x);
    CHECKF(worst < 1e-6, "max relative error %.3g at %.9g", worst, worst_x);

    /* Small arguments, where softmax and SiLU live: tighter. */
    double worst_small = 0;
    for (float x = -20.0f; x <= 20.0f; x += 1e-3f) {
        const double e = rel_err(tn_expf(x), exp((double)x));
        if (e > worst_small) worst_small = e;
    }
    CHECKF(worst_small < 5e-7, "max relative error on [-20, 20] %.3g", worst_small);

    /* Edge cases. */
    CHECK(tn_expf(0.0f) == 1.0f);
    CHECK(tn_expf(-100.0f) == 0.0f);
    CHECK(tn_expf(-INFINITY) == 0.0f);
    CHECK(isinf(tn_expf(100.0f)) && tn_expf(100.0f) > 0);
    CHECK(isinf(tn_expf(INFINITY)));
    CHECK(isnan(tn_expf(NAN)));
    CHECK(isfinite(tn_expf(88.7f)) && rel_err(tn_expf(88.7f), exp((double)88.7f)) < 1e-6);
    CHECK(tn_expf(-87.3f) > 0 && rel_err(tn_expf(-87.3f), exp((double)-87.3f)) < 1e-6);
    CHECK(tn_expf(1.0f) == (float)M_E || rel_err(tn_expf(1.0f), M_E) < 2e-7);

    /* A vectorized loop gives bit-identical results to scalar calls (no lane does anything else). */
    enum { N = 4099 };
    static float xs[N], vec[N];
    for (int i = 0; i < N; i++) xs[i] = -90.0f + 180.0f * (float)i / (float)(N - 1);
    xs[17] = NAN;
#pragma omp simd
    for (int i = 0; i < N; i++) vec[i] = tn_expf(xs[i]);
    int same = 1;
    for (int i = 0; i < N; i++) {
        const float s = expf_scalar_call(xs[i]);
        if (!(s == vec[i] || (isnan(s) && isnan(vec[i])))) same = 0;
    }
    CHECK(same);
    return tn_test_finish();
}
