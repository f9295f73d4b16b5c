/* quant/snap + quant/scale: nearest-point snapping against a brute-force argmin (exact ties, values next to
 * ties, huge, tiny, infinite, NaN), the AVX2 kernels against the scalar ones on odd lengths, ternary = BitNet
 * RoundClip, the three scale rules per tensor and per row, and tn_quantize_tensor end to end. */
#include "tn_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "quant/grid.h"
#include "quant/scale.h"
#include "quant/snap.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* |x - a| as an exact unevaluated sum hi + lo (Knuth's TwoSum in long double), sign-normalised. Comparing
 * (hi, lo) lexicographically is then the exact comparison of distances: rounding is monotone, so different
 * hi already order the true values, and equal hi leave the order to lo. Deliberately not the midpoint
 * method quant/grid.c uses, so the two are independent. */
typedef struct {
    long double hi, lo;
} dist;

static dist exact_dist(float x, float a) {
    long double X = x, A = -(long double)a;
    long double s = X + A, bb = s - X, e = (X - (s - bb)) + (A - bb);
    if (s < 0 || (s == 0 && e < 0)) s = -s, e = -e;
    return (dist){s, e};
}

static int dist_cmp(dist p, dist q) {
    if (p.hi != q.hi) return p.hi < q.hi ? -1 : 1;
    return (p.lo > q.lo) - (p.lo < q.lo);
}

/* Brute force: argmin_j |x - g_j| exactly, ties to the smaller magnitude, then to the positive value;
 * ±inf to the ends; NaN like 0. */
static int brute(const tn_grid *g, float x) {
    if (isnan(x)) return brute(g, 0.0f);
    if (isinf(x)) return x > 0 ? g->n - 1 : 0;
    int best = 0;
    dist bd = exact_dist(x, g->v[0]);
    for (int j = 1; j < g->n; j++) {
        dist d = exact_dist(x, g->v[j]);
        int c = dist_cmp(d, bd), better = c < 0;
        if (c == 0) {
            float a = fabsf(g->v[j]), b = fabsf(g->v[best]);
            better = a < b || (a == b && g->v[j] > g->v[best]);
        }
        if (better) best = j, bd = d;
    }
    return best;
}

/* Test inputs for a grid: random at several scales, every exact midpoint that is a float, its float
 * neighbours, the grid values themselves, and the extremes. */
static float *make_inputs(const tn_grid *g, tn_rng *rng, int *count) {
    int cap = 20000 + 8 * g->n + 64, n = 0;
    float *x = malloc((size_t)cap * sizeof(float));
    const float spread[] = {1e-3f, 0.05f, 0.3f, 1.0f, 4.0f};
    for (int i = 0; i < 20000; i++) x[n++] = spread[i % 5] * tn_rng_normal(rng);
    for (int j = 0; j < g->n; j++) {
        x[n++] = g->v[j];
        if (j + 1 < g->n) {
            double mid = 0.5 * ((double)g->v[j] + (double)g->v[j + 1]);
            float m = (float)mid;
            x[n++] = m; /* an exact tie when m == mid */
            x[n++] = nextafterf(m, INFINITY);
            x[n++] = nextafterf(m, -INFINITY);
            x[n++] = -m;
            x[n++] = nextafterf(g->up[j], -INFINITY);
            x[n++] = g->up[j];
        }
    }
    const float ext[] = {0.0f, -0.0f, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 1e-45f, -1e-45f,
                         1e-30f, -1e-30f, 1e30f, -1e30f, NAN, 0.5f, -0.5f, 1.5f, -1.5f};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) x[n++] = ext[i];
    *count = n;
    return x;
}

static void test_against_brute(const tn_grid *g, tn_rng *rng) {
    int n;
    float *x = make_inputs(g, rng, &n);
    uint8_t *a = malloc((size_t)n), *b = malloc((size_t)n);
    tn_grid_snap_ref(g, x, n, 1.0f, a);
    tn_grid_snap(g, x, n, 1.0f, b);
    int bad_ref = 0, bad_simd = 0, ties = 0;
    for (int i = 0; i < n; i++) {
        int want = brute(g, x[i]);
        if (a[i] != want) {
            if (bad_ref++ < 5) fprintf(stderr, "  %s: x=%.9g snapped %d, brute %d\n", g->name, (double)x[i], a[i], want);
        }
        bad_simd += b[i] != a[i];
    }
    CHECKF(bad_ref == 0, "grid %s: %d of %d differ from brute force", g->name, bad_ref, n);
    CHECKF(bad_simd == 0, "grid %s: %d AVX2 results differ from scalar", g->name, bad_simd);
    /* Exact ties really occur in the inputs for these grids (e.g. 1/2 and 1 meet at 3/4). */
    for (int j = 0; j + 1 < g->n; j++) {
        float m = (float)(0.5 * ((double)g->v[j] + (double)g->v[j + 1]));
        if (dist_cmp(exact_dist(m, g->v[j]), exact_dist(m, g->v[j + 1])) != 0) continue; /* not an exact tie */
        ties++;
        int k = tn_grid_snap_one(g, m);
        int want = fabsf(g->v[j]) < fabsf(g->v[j + 1]) ? j : fabsf(g->v[j]) > fabsf(g->v[j + 1]) ? j + 1
                   : (g->v[j] > 0 ? j : j + 1);
        CHECKF(k == want, "grid %s: tie between %g and %g went to %d", g->name, (double)g->v[j], (double)g->v[j + 1], k);
    }
    CHECKF(ties > 0 || strcmp(g->name, "custom") == 0 || g->n > 100, "grid %s: no exact tie exercised", g->name);
    /* Ends, infinities and NaN */
    CHECK(tn_grid_snap_one(g, INFINITY) == g->n - 1 && tn_grid_snap_one(g, -INFINITY) == 0);
    CHECK(tn_grid_snap_one(g, FLT_MAX) == g->n - 1 && tn_grid_snap_one(g, -FLT_MAX) == 0);
    CHECK(tn_grid_snap_one(g, NAN) == g->zero_idx && tn_grid_snap_one(g, 0.0f) == g->zero_idx);
    free(x);
    free(a);
    free(b);
}

/* AVX2 = scalar on every length 0..70 and a long odd one, with a scale != 1 (the division happens inside). */
static void test_simd_lengths(const tn_grid *g, tn_rng *rng) {
    const int N = 1001;
    float *x = malloc(N * sizeof(float)), *wa = malloc(N * sizeof(float)), *wb = malloc(N * sizeof(float));
    uint8_t *a = malloc(N), *b = malloc(N);
    for (int i = 0; i < N; i++) x[i] = 0.037f * tn_rng_normal(rng);
    x[3] = NAN;
    x[10] = INFINITY;
    int bad = 0;
    for (int n = 0; n <= N; n += (n < 70 ? 1 : N - 70)) {
        memset(a, 0xAA, N);
        memset(b, 0xAA, N);
        tn_grid_snap_ref(g, x, n, 0.0213f, a);
        tn_grid_snap(g, x, n, 0.0213f, b);
        bad += memcmp(a, b, N) != 0; /* also: nothing written past n */
        tn_grid_dequant_ref(g, a, n, 0.0213f, wa);
        tn_grid_dequant(g, a, n, 0.0213f, wb);
        bad += memcmp(wa, wb, (size_t)n * sizeof(float)) != 0;
    }
    CHECKF(bad == 0, "grid %s: AVX2 differs from scalar on %d lengths", g->name, bad);
    free(x);
    free(wa);
    free(wb);
    free(a);
    free(b);
}

/* BitNet b1.58: W_q = s · RoundClip(W / s, -1, 1) with s = mean|W| and round = torch.round (half to even). */
static void test_ternary_is_bitnet(tn_rng *rng) {
    tn_grid g;
    CHECK_OK(tn_grid_by_name("ternary", &g));
    const int rows = 7, cols = 301;
    float *W = malloc(rows * cols * sizeof(float)), *Wq = malloc(rows * cols * sizeof(float)), s[7], st;
    uint8_t *idx = malloc(rows * cols);
    for (int i = 0; i < rows * cols; i++) W[i] = 0.02f * tn_rng_normal(rng);
    for (int per_row = 0; per_row <= 1; per_row++) {
        CHECK_OK(tn_quantize_tensor(W, rows, cols, &g, TN_SCALE_ABSMEAN, per_row, Wq, idx, per_row ? s : &st));
        int bad = 0;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                float sc = per_row ? s[r] : st;
                float y = rintf(W[r * cols + c] / sc);
                y = y < -1 ? -1 : y > 1 ? 1 : y;
                bad += Wq[r * cols + c] != sc * y || idx[r * cols + c] != (uint8_t)(y + 1);
            }
        CHECKF(bad == 0, "ternary absmean per_row=%d: %d differ from RoundClip", per_row, bad);
    }
    /* the ties themselves: x/s = ±0.5 -> 0 (torch.round(0.5) = 0), ±1.5 -> ±1 (clipped 2) */
    const float t[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, 0.49999997f, 0.50000006f};
    const int want[] = {1, 1, 2, 0, 2, 1, 2};
    for (int i = 0; i < 7; i++) CHECKF(tn_grid_snap_one(&g, t[i]) == want[i], "ternary(%g)", (double)t[i]);
    free(W);
    free(Wq);
    free(idx);
}

static void test_scales(tn_rng *rng) {
    const int rows = 5, cols = 37;
    float W[5 * 37], s[5], s1;
    for (int i = 0; i < rows * cols; i++) W[i] = 0.1f * tn_rng_normal(rng) + (i % cols == 0 ? 0.3f : 0.0f);
    for (int c = 0; c < cols; c++) W[3 * cols + c] = 0.0f; /* an all-zero row */
    for (int rule = 0; rule < 3; rule++) {
        for (int per_row = 0; per_row <= 1; per_row++) {
            CHECK_OK(tn_scale_compute(W, rows, cols, (tn_scale_rule)rule, per_row, per_row ? s : &s1));
            int nr = per_row ? rows : 1;
            for (int r = 0; r < nr; r++) {
                const float *w = per_row ? W + r * cols : W;
                int n = per_row ? cols : rows * cols;
                double sum = 0, sa = 0, mx = 0, m2 = 0;
                for (int i = 0; i < n; i++) sum += w[i], sa += fabs(w[i]), mx = fmax(mx, fabs(w[i]));
                for (int i = 0; i < n; i++) m2 += (w[i] - sum / n) * (w[i] - sum / n);
                double want = rule == TN_SCALE_STD ? sqrt(m2 / (n - 1)) : rule == TN_SCALE_ABSMEAN ? sa / n : mx;
                if (want < TN_SCALE_EPS) want = TN_SCALE_EPS;
                float got = per_row ? s[r] : s1;
                CHECKF(fabs(got - want) <= 1e-6 * want, "rule %s per_row %d row %d: %g vs %g",
                       tn_scale_rule_name((tn_scale_rule)rule), per_row, r, (double)got, want);
            }
        }
    }
    CHECK_OK(tn_scale_compute(W, rows, cols, TN_SCALE_STD, 1, s));
    CHECK(s[3] == TN_SCALE_EPS); /* the zero row is guarded, not 0 */
    tn_scale_rule r;
    CHECK_OK(tn_scale_rule_parse("absmean", &r));
    CHECK(r == TN_SCALE_ABSMEAN && strcmp(tn_scale_rule_name(r), "absmean") == 0);
    CHECK(tn_scale_rule_parse("mean", &r) != 0);
    W[2 * cols + 5] = NAN;
    CHECK(tn_scale_compute(W, rows, cols, TN_SCALE_ABSMAX, 0, &s1) != 0);
    CHECK(strstr(tn_errmsg(), "[2, 5]") != NULL);
    W[2 * cols + 5] = -INFINITY;
    CHECK(tn_scale_compute(W, rows, cols, TN_SCALE_STD, 1, s) != 0);
    CHECK(tn_scale_compute(W, 0, cols, TN_SCALE_STD, 1, s) != 0);
}

/* tn_quantize_tensor: per row vs per tensor, outputs consistent with snap + dequant, optional outputs. */
static void test_quantize_tensor(tn_rng *rng) {
    tn_grid g;
    CHECK_OK(tn_grid_by_name("prime81", &g));
    const int rows = 67, cols = 515; /* > 32768 elements: the OpenMP path */
    const int n = rows * cols;
    float *W = malloc(n * sizeof(float)), *Wq = malloc(n * sizeof(float)), *Wq2 = malloc(n * sizeof(float));
    uint8_t *idx = malloc(n);
    float s[67], st;
    for (int i = 0; i < n; i++) W[i] = (0.01f + 0.002f * (float)(i / cols)) * tn_rng_normal(rng);
    for (int c = 0; c < cols; c++) W[9 * cols + c] = 0.0f;
    CHECK_OK(tn_quantize_tensor(W, rows, cols, &g, TN_SCALE_STD, 1, Wq, idx, s));
    int bad = 0, zero_ok = 1;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int i = r * cols + c;
            bad += idx[i] != brute(&g, W[i] / s[r]) || Wq[i] != s[r] * g.v[idx[i]];
            if (r == 9) zero_ok &= Wq[i] == 0.0f;
        }
    CHECKF(bad == 0, "per-row quantize: %d wrong", bad);
    CHECK(zero_ok);
    /* rows with larger spread get larger scales: per-row adapts, per-tensor does not */
    CHECK(s[60] > 2 * s[1]);
    CHECK_OK(tn_quantize_tensor(W, rows, cols, &g, TN_SCALE_STD, 0, Wq, idx, &st));
    bad = 0;
    for (int i = 0; i < n; i++) bad += idx[i] != brute(&g, W[i] / st) || Wq[i] != st * g.v[idx[i]];
    CHECKF(bad == 0, "per-tensor quantize: %d wrong", bad);
    /* optional outputs: W_q alone equals the full call */
    CHECK_OK(tn_quantize_tensor(W, rows, cols, &g, TN_SCALE_STD, 0, Wq2, NULL, NULL));
    CHECK(memcmp(Wq, Wq2, n * sizeof(float)) == 0);
    CHECK_OK(tn_quantize_tensor(W, rows, cols, &g, TN_SCALE_ABSMAX, 1, NULL, NULL, s));
    /* absmax: the largest weight of each row lands on the grid value nearest 1 */
    W[5] = NAN;
    CHECK(tn_quantize_tensor(W, rows, cols, &g, TN_SCALE_STD, 1, Wq, idx, s) != 0);
    CHECK(strstr(tn_errmsg(), "quantize") != NULL);
    free(W);
    free(Wq);
    free(Wq2);
    free(idx);
}

/* The public functions with SIMD switched off (scalar references throughout) and on: bit-identical scales,
 * indices and W_q for every rule and layout, on odd shapes. */
static void test_simd_switch(tn_rng *rng) {
    const int R = 3, C = 1001;
    float *W = malloc(R * C * sizeof(float)), *qa = malloc(R * C * sizeof(float)), *qb = malloc(R * C * sizeof(float));
    uint8_t *ia = malloc(R * C), *ib = malloc(R * C);
    float sa[3], sb[3];
    int bad = 0, cases = 0;
    for (int i = 0; i < R * C; i++) W[i] = 0.03f * tn_rng_normal(rng) + 0.001f;
    for (int b = 0; b < tn_grid_builtin_count(); b++) {
        tn_grid g;
        CHECK_OK(tn_grid_by_name(tn_grid_builtin_name(b), &g));
        for (int cols = 1; cols <= C; cols += (cols < 40 ? 1 : 320))
            for (int rule = 0; rule < 3; rule++)
                for (int per_row = 0; per_row <= 1; per_row++) {
                    tn_quant_set_simd(0);
                    CHECK_OK(tn_quantize_tensor(W, R, cols, &g, (tn_scale_rule)rule, per_row, qa, ia, sa));
                    tn_quant_set_simd(1);
                    CHECK_OK(tn_quantize_tensor(W, R, cols, &g, (tn_scale_rule)rule, per_row, qb, ib, sb));
                    int nr = per_row ? R : 1;
                    bad += memcmp(sa, sb, (size_t)nr * sizeof(float)) != 0 || memcmp(ia, ib, (size_t)R * cols) != 0 ||
                           memcmp(qa, qb, (size_t)R * cols * sizeof(float)) != 0;
                    cases++;
                }
    }
    CHECKF(bad == 0, "SIMD on/off differ in %d of %d cases", bad, cases);
    free(W), free(qa), free(qb), free(ia), free(ib);
}

int main(void) {
    tn_rng rng;
    tn_rng_seed(&rng, 1234);
    printf("AVX2: %s\n", tn_quant_have_avx2() ? "yes" : "no (scalar only)");
    for (int b = 0; b < tn_grid_builtin_count(); b++) {
        tn_grid g;
        CHECK_OK(tn_grid_by_name(tn_grid_builtin_name(b), &g));
        test_against_brute(&g, &rng);
        test_simd_lengths(&g, &rng);
    }
    /* custom grids: no zero (tie at 0 goes to +a), values 2^100 apart (the exact-threshold path), 256 values */
    const char *custom[] = {"-1, 1", "-3, -1/7, 1e-30, 1, 2e30", "1e-38, 3e-38, 1", "-0.75, -0.5, 0.25, 2"};
    for (size_t i = 0; i < sizeof custom / sizeof custom[0]; i++) {
        tn_grid g;
        CHECK_OK(tn_grid_parse(custom[i], &g));
        test_against_brute(&g, &rng);
        test_simd_lengths(&g, &rng);
    }
    {
        tn_grid g;
        float v[256];
        for (int i = 0; i < 256; i++) v[i] = (float)(i - 128) / 37.0f;
        CHECK_OK(tn_grid_from_values("wide", v, 256, &g));
        test_against_brute(&g, &rng);
        test_simd_lengths(&g, &rng);
        CHECK(tn_grid_snap_one(&g, 1e9f) == 255);
    }
    test_simd_switch(&rng);
    test_ternary_is_bitnet(&rng);
    test_scales(&rng);
    test_quantize_tensor(&rng);
    return tn_test_finish();
}
