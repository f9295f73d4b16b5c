/* quant/grid: the five built-in grids value for value (recomputed here independently from their
 * definitions), custom grid parsing and its validation, resolve by name or list. */
#include "tn_test.h"

#include "core/error.h"
#include "quant/grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Trial division, independent of the sieve in grid.c. */
static int is_prime(int p) {
    if (p < 2) return 0;
    for (int d = 2; d * d <= p; d++)
        if (p % d == 0) return 0;
    return 1;
}

/* Compare a grid with an expected multiset of values (sorted here), bit for bit. */
static void expect_grid(const char *name, float *want, int n) {
    tn_grid g;
    CHECK_OK(tn_grid_by_name(name, &g));
    qsort(want, (size_t)n, sizeof(float), cmpf);
    CHECKF(g.n == n, "%s: %d values, want %d", name, g.n, n);
    if (g.n != n) return;
    CHECKF(memcmp(g.v, want, (size_t)n * sizeof(float)) == 0, "%s: values differ", name);
    for (int i = 1; i < n; i++) CHECK(g.v[i - 1] < g.v[i]);
    CHECKF(strcmp(g.name, name) == 0, "%s: name %s", name, g.name);
    CHECKF(g.v[g.zero_idx] == 0.0f, "%s: zero_idx %d -> %g", name, g.zero_idx, (double)g.v[g.zero_idx]);
    CHECK(g.search_size >= n && g.search_size / 2 < n);
    for (int i = 0; i < n; i++) CHECK(tn_grid_find(&g, want[i]) == i);
    CHECK(tn_grid_find(&g, 0.123456f) == -1);
}

static void test_builtins(void) {
    float v[TN_GRID_MAX];
    int n = 0;
    /* ternary */
    v[n++] = -1.0f, v[n++] = 0.0f, v[n++] = 1.0f;
    expect_grid("ternary", v, n);
    /* prime7 */
    n = 0;
    v[n++] = 0.0f;
    for (int p = 2; p <= 5; p++)
        if (is_prime(p)) v[n++] = 1.0f / (float)p, v[n++] = -1.0f / (float)p;
    CHECK(n == 7);
    expect_grid("prime7", v, n);
    /* prime81: 36 primes from 2 to 151 */
    n = 0;
    int np = 0;
    v[n++] = 0.0f;
    for (int p = 2; p <= 151; p++)
        if (is_prime(p)) v[n++] = 1.0f / (float)p, v[n++] = -1.0f / (float)p, np++;
    CHECK(np == 36);
    const float extra[] = {1.0f, 1.5f, 2.0f, 3.0f};
    for (int i = 0; i < 4; i++) v[n++] = extra[i], v[n++] = -extra[i];
    CHECK(n == 81);
    expect_grid("prime81", v, n);
    /* primal15 */
    const int d15[] = {1, 2, 3, 5, 7, 11, 13};
    n = 0;
    v[n++] = 0.0f;
    for (int i = 0; i < 7; i++) v[n++] = 1.0f / (float)d15[i], v[n++] = -1.0f / (float)d15[i];
    CHECK(n == 15);
    expect_grid("primal15", v, n);
    /* primal25 = primal15 ∪ {±2/3, ±1/4, ±1/6, ±1/8, ±1/12} */
    v[n++] = 2.0f / 3.0f, v[n++] = -2.0f / 3.0f;
    const int d25[] = {4, 6, 8, 12};
    for (int i = 0; i < 4; i++) v[n++] = 1.0f / (float)d25[i], v[n++] = -1.0f / (float)d25[i];
    CHECK(n == 25);
    expect_grid("primal25", v, n);

    /* Index order is value order, and the coarse grid's zero sits in the middle (index 7 of 15, 12 of 25). */
    tn_grid g;
    CHECK_OK(tn_grid_by_name("primal15", &g));
    CHECK(g.zero_idx == 7 && g.v[14] == 1.0f && g.v[0] == -1.0f);
    CHECK_OK(tn_grid_by_name("primal25", &g));
    CHECK(g.zero_idx == 12);
    /* 1/3 is the correctly rounded float, not a truncated literal like 0.333333 */
    CHECK(tn_grid_find(&g, 1.0f / 3.0f) >= 0 && tn_grid_find(&g, 0.333333f) < 0);

    CHECK(tn_grid_builtin_count() == 5);
    for (int i = 0; i < tn_grid_builtin_count(); i++) CHECK_OK(tn_grid_by_name(tn_grid_builtin_name(i), &g));
    CHECK(tn_grid_builtin_name(5) == NULL);
    CHECK(tn_grid_by_name("prime13", &g) != 0);
    CHECK(strstr(tn_errmsg(), "unknown grid 'prime13'") != NULL);
}

/* The thresholds: up[j] snaps up, the float just below it does not, and the padding is +inf. */
static void test_thresholds(void) {
    for (int b = 0; b < tn_grid_builtin_count(); b++) {
        tn_grid g;
        CHECK_OK(tn_grid_by_name(tn_grid_builtin_name(b), &g));
        int ok = 1;
        for (int j = 0; j < g.n - 1; j++) {
            ok &= g.v[j] < g.up[j] && g.up[j] <= g.v[j + 1];
            if (j > 0) ok &= g.up[j - 1] < g.up[j];
            /* just below the midpoint of two floats within a factor 2: nearer the lower one */
            double mid = 0.5 * ((double)g.v[j] + (double)g.v[j + 1]);
            ok &= fabs((double)g.up[j] - mid) <= 1e-6 * fabs(mid) + 1e-30;
        }
        for (int j = g.n - 1; j < TN_GRID_MAX; j++) ok &= isinf(g.up[j]) && g.up[j] > 0;
        CHECKF(ok, "grid %s thresholds", g.name);
    }
    /* Ternary: the boundary between 0 and 1 is 0.5 exactly, and 0.5 itself goes to 0 (toward zero), so
     * the threshold is the next float above 0.5; between -1 and 0 the tie -0.5 goes to 0 as well. */
    tn_grid t;
    CHECK_OK(tn_grid_by_name("ternary", &t));
    CHECK(t.up[1] == nextafterf(0.5f, 1.0f));
    CHECK(t.up[0] == -0.5f);
}

static void test_parse(void) {
    tn_grid g, want;
    CHECK_OK(tn_grid_parse("-1, -1/3, 0, 1/3, 1", &g));
    CHECK(g.n == 5 && strcmp(g.name, "custom") == 0);
    CHECK(g.v[1] == -1.0f / 3.0f && g.v[3] == 1.0f / 3.0f && g.v[2] == 0.0f);
    /* order and spacing do not matter; fractions equal the built-in reciprocals bit for bit */
    CHECK_OK(tn_grid_parse(" 1/5,-1/2 ,0,  1/2, -1/3,1/3 , -1/5 ", &g));
    CHECK_OK(tn_grid_by_name("prime7", &want));
    CHECK(tn_grid_equal(&g, &want));
    CHECK_OK(tn_grid_parse("0.5, -2/3, 1.5e0, -3", &g));
    CHECK(g.n == 4 && g.v[0] == -3.0f && g.v[1] == -2.0f / 3.0f && g.v[2] == 0.5f && g.v[3] == 1.5f);
    CHECK(g.v[g.zero_idx] == 0.5f); /* no zero: smallest magnitude */
    CHECK_OK(tn_grid_parse("-1, 1", &g));
    CHECK(g.zero_idx == 1); /* equal magnitudes: the positive one */

    /* Rejections, each with a message */
    const char *bad[] = {"", " ", "1", "1,1", "0,-0", "1/0", "abc", "1,,2", "1, inf", "nan, 1", "1e39, 1",
                         "1/3x, 2", "1/, 2", "1, 2/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tn_err_clear();
        int rc = tn_grid_parse(bad[i], &g);
        CHECKF(rc != 0, "'%s' accepted", bad[i]);
        CHECKF(strcmp(tn_errmsg(), "unknown error") != 0, "'%s': no message", bad[i]);
    }
    CHECK(tn_grid_parse("1,1", &g) != 0 && strstr(tn_errmsg(), "twice") != NULL);

    /* 256 values are fine, 257 are not */
    char *buf = malloc(257 * 16);
    size_t len = 0;
    for (int i = 0; i < 257; i++) len += (size_t)sprintf(buf + len, "%s%d", i ? "," : "", i - 128);
    CHECK(tn_grid_parse(buf, &g) != 0);
    *strrchr(buf, ',') = 0;
    CHECK_OK(tn_grid_parse(buf, &g));
    CHECK(g.n == 256 && g.v[0] == -128.0f && g.v[255] == 127.0f && g.zero_idx == 128);
    free(buf);
}

static void test_resolve(void) {
    tn_grid g, want;
    CHECK_OK(tn_grid_resolve("ternary", &g));
    CHECK_OK(tn_grid_by_name("ternary", &want));
    CHECK(tn_grid_equal(&g, &want) && strcmp(g.name, "ternary") == 0);
    CHECK_OK(tn_grid_resolve(" primal25", &g));
    CHECK(g.n == 25);
    CHECK_OK(tn_grid_resolve("-1, 0, 1", &g));
    CHECK(tn_grid_equal(&g, &want) && strcmp(g.name, "custom") == 0);
    CHECK_OK(tn_grid_resolve(".5, -.5", &g));
    CHECK(g.n == 2);
    CHECK(tn_grid_resolve("ternery", &g) != 0);
    CHECK(strstr(tn_errmsg(), "ternery") != NULL);
    CHECK(tn_grid_resolve(NULL, &g) != 0);
    float vals[3] = {1.0f, -0.0f, NAN};
    CHECK(tn_grid_from_values("x", vals, 3, &g) != 0);
    vals[2] = -1.0f;
    CHECK_OK(tn_grid_from_values("x", vals, 3, &g));
    CHECK(tn_grid_equal(&g, &want) && !signbit(g.v[1]));
}

int main(void) {
    test_builtins();
    test_thresholds();
    test_parse();
    test_resolve();
    return tn_test_finish();
}
