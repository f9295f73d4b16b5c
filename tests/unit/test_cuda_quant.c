/* CUDA STE quantization (kernels/cuda/quant.cu) against the CPU: tn_cuda_quantize against
 * tn_quantize_tensor over the five built-in grids x the three scale rules x per-row / per-tensor scales on
 * odd shapes (1 x 1, single rows and columns, rows of zeros, a row of exact ties, tiny and huge rows, more
 * rows than the combine kernel stages at once), scales, indices and W_q compared BIT FOR BIT; the optional
 * outputs (Wq only, idx only, no scales); a NaN / inf weight fails naming the first bad row and column and
 * leaves every output untouched. tn_cuda_ste_blend against tn_ste_blend for λ in {−1, 0, 0.3, 1, 2, NaN},
 * out of place and in place, bit for bit. Without CUDA (or its emulator) or a device: skipped. */
#include "cuda_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "optim/ste.h"
#include "quant/grid.h"
#include "quant/snap.h"


#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

static int64_t count_diff_bytes(const void *a, const void *b, size_t n, size_t elem) {
    int64_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp((const char *)a + i * elem, (const char *)b + i * elem, elem) != 0;
    return d;
}

/* Weights of [rows, cols] with the special rows of the header comment. */
static void make_weights(tn_rng *g, float *W, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float *w = W + r * cols;
        const float rs = 0.01f + 3.0f * tn_rng_uniform(g);
        for (int64_t c = 0; c < cols; c++) w[c] = rs * tn_rng_normal(g) * (c % 13 == 0 ? 4.0f : 1.0f);
        if (rows > 1 && r == 1)
            for (int64_t c = 0; c < cols; c++) w[c] = 0.0f; /* all zeros: the epsilon guard */
        if (r == 2) /* exact ties under absmax (max 1): k/8, k/6 halfway points of ternary / prime grids */
            for (int64_t c = 0; c < cols; c++)
                w[c] = c == 0 ? 1.0f : (float)((int)(c % 17) - 8) / (c % 2 ? 8.0f : 6.0f);
        if (r == 3)
            for (int64_t c = 0; c < cols; c++) w[c] = 1e-7f * tn_rng_normal(g); /* spread below the guard */
        if (r == 4)
            for (int64_t c = 0; c < cols; c++) w[c] = 1e30f * tn_rng_normal(g);
        if (r == 5)
            for (int64_t c = 0; c < cols; c++) w[c] = (c % 3 == 0) ? -0.0f : 0.25f; /* signed zeros */
    }
}

static const char *GRIDS[] = {"ternary", "prime7", "prime81", "primal15", "primal25"};
#define N_GRIDS 5

static const int64_t SHAPES[][2] = {{1, 1}, {1, 9}, {9, 1}, {3, 7}, {6, 33}, {7, 100}, {19, 67}, {2, 1031}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

typedef struct {
    int64_t calls, scale_diff, idx_diff, wq_diff;
} quant_stats;

/* One configuration on the CPU and on the device; counts mismatching elements. */
static void compare_one(const float *W, const float *dW, int64_t rows, int64_t cols, const tn_grid *grid, int rule,
                        int per_row, quant_stats *qs) {
    const int64_t n = rows * cols, ns = per_row ? rows : 1;
    float *Wq = tn_alloc((size_t)n, sizeof(float)), *Wq_g = tn_alloc((size_t)n, sizeof(float));
    float *sc = tn_alloc((size_t)ns, sizeof(float)), *sc_g = tn_alloc((size_t)ns, sizeof(float));
    uint8_t *ix = tn_alloc((size_t)n, 1), *ix_g = tn_alloc((size_t)n, 1);
    float *dWq = tn_cuda_alloc((size_t)n * sizeof(float)), *dsc = tn_cuda_alloc((size_t)ns * sizeof(float));
    uint8_t *dix = tn_cuda_alloc((size_t)n);
    CHECK_OK(tn_quantize_tensor(W, rows, cols, grid, (tn_scale_rule)rule, per_row, Wq, ix, sc));
    int rc = tn_cuda_quantize(dW, rows, cols, grid, rule, per_row, dWq, dix, dsc);
    CHECKF(rc == 0, "tn_cuda_quantize %s rule %d per_row %d [%lld, %lld]: %s", grid->name, rule, per_row,
           (long long)rows, (long long)cols, tn_errmsg());
    CHECK_OK(tn_cuda_download(Wq_g, dWq, (size_t)n * sizeof(float)));
    CHECK_OK(tn_cuda_download(sc_g, dsc, (size_t)ns * sizeof(float)));
    CHECK_OK(tn_cuda_download(ix_g, dix, (size_t)n));
    const int64_t ds = count_diff_bytes(sc, sc_g, (size_t)ns, sizeof(float));
    const int64_t di = count_diff_bytes(ix, ix_g, (size_t)n, 1);
    const int64_t dq = count_diff_bytes(Wq, Wq_g, (size_t)n, sizeof(float));
    CHECKF(ds == 0 && di == 0 && dq == 0,
           "%s rule %d per_row %d [%lld, %lld]: %lld scales, %lld indices, %lld W_q differ (first scale %.9g vs %.9g)",
           grid->name, rule, per_row, (long long)rows, (long long)cols, (long long)ds, (long long)di, (long long)dq,
           (double)sc[0], (double)sc_g[0]);
    qs->calls++;
    qs->scale_diff += ds;
    qs->idx_diff += di;
    qs->wq_diff += dq;
    tn_cuda_free(dWq);
    tn_cuda_free(dsc);
    tn_cuda_free(dix);
    tn_free(Wq);
    tn_free(Wq_g);
    tn_free(sc);
    tn_free(sc_g);
    tn_free(ix);
    tn_free(ix_g);
}

static void test_quantize_all(void) {
    tn_rng g;
    tn_rng_seed(&g, 101);
    quant_stats qs = {0, 0, 0, 0};
    tn_grid grids[N_GRIDS];
    for (int gi = 0; gi < N_GRIDS; gi++) CHECK_OK(tn_grid_by_name(GRIDS[gi], &grids[gi]));
    /* the shapes above, plus one with more rows than the combine kernel stages per step (1024) */
    for (size_t s = 0; s <= N_SHAPES; s++) {
        const int64_t rows = s < N_SHAPES ? SHAPES[s][0] : 1100, cols = s < N_SHAPES ? SHAPES[s][1] : 3;
        const int64_t n = rows * cols;
        float *W = tn_alloc((size_t)n, sizeof(float));
        make_weights(&g, W, rows, cols);
        float *dW = tn_test_dev_copy(W, (size_t)n * sizeof(float));
        for (int gi = 0; gi < N_GRIDS && dW; gi++) {
            if (s == N_SHAPES && gi % 2) continue; /* the big shape on three grids */
            for (int rule = 0; rule < 3; rule++)
                for (int per_row = 0; per_row < 2; per_row++)
                    compare_one(W, dW, rows, cols, &grids[gi], rule, per_row, &qs);
        }
        tn_cuda_free(dW);
        tn_free(W);
    }
    /* more rows than the snap kernel launches row blocks (8192): its rows loop */
    {
        const int64_t rows = 9001, cols = 3;
        float *W = tn_alloc((size_t)(rows * cols), sizeof(float));
        make_weights(&g, W, rows, cols);
        float *dW = tn_test_dev_copy(W, (size_t)(rows * cols) * sizeof(float));
        if (dW) {
            compare_one(W, dW, rows, cols, &grids[3], TN_SCALE_STD, 0, &qs);
            compare_one(W, dW, rows, cols, &grids[2], TN_SCALE_ABSMEAN, 1, &qs);
        }
        tn_cuda_free(dW);
        tn_free(W);
    }
    printf("quantize: %lld configurations, differing elements: %lld scales, %lld indices, %lld W_q\n",
           (long long)qs.calls, (long long)qs.scale_diff, (long long)qs.idx_diff, (long long)qs.wq_diff);
}

/* Wq only (indices computed but not stored), idx only, and no scales. */
static void test_quantize_optional(void) {
    tn_rng g;
    tn_rng_seed(&g, 5);
    tn_grid grid;
    CHECK_OK(tn_grid_by_name("primal15", &grid));
    const int64_t rows = 11, cols = 45, n = rows * cols;
    float *W = tn_alloc((size_t)n, sizeof(float)), *Wq = tn_alloc((size_t)n, sizeof(float));
    float *Wq_g = tn_alloc((size_t)n, sizeof(float)), sc[11], sc_g[11];
    uint8_t *ix = tn_alloc((size_t)n, 1), *ix_g = tn_alloc((size_t)n, 1);
    make_weights(&g, W, rows, cols);
    float *dW = tn_test_dev_copy(W, (size_t)n * sizeof(float)), *dWq = tn_cuda_alloc((size_t)n * sizeof(float));
    float *dsc = tn_cuda_alloc(sizeof sc);
    uint8_t *dix = tn_cuda_alloc((size_t)n);
    CHECK_OK(tn_quantize_tensor(W, rows, cols, &grid, TN_SCALE_ABSMEAN, 1, Wq, ix, sc));

    CHECK_OK(tn_cuda_quantize(dW, rows, cols, &grid, TN_SCALE_ABSMEAN, 1, dWq, NULL, NULL));
    CHECK_OK(tn_cuda_download(Wq_g, dWq, (size_t)n * sizeof(float)));
    CHECK(memcmp(Wq, Wq_g, (size_t)n * sizeof(float)) == 0);

    CHECK_OK(tn_cuda_quantize(dW, rows, cols, &grid, TN_SCALE_ABSMEAN, 1, NULL, dix, dsc));
    CHECK_OK(tn_cuda_download(ix_g, dix, (size_t)n));
    CHECK_OK(tn_cuda_download(sc_g, dsc, sizeof sc));
    CHECK(memcmp(ix, ix_g, (size_t)n) == 0 && memcmp(sc, sc_g, sizeof sc) == 0);

    CHECK_OK(tn_cuda_quantize(dW, rows, cols, &grid, TN_SCALE_STD, 0, NULL, NULL, dsc)); /* scales only */
    CHECK_OK(tn_quantize_tensor(W, rows, cols, &grid, TN_SCALE_STD, 0, NULL, NULL, sc));
    CHECK_OK(tn_cuda_download(sc_g, dsc, sizeof(float)));
    CHECK(memcmp(sc, sc_g, sizeof(float)) == 0);

    /* argument errors */
    CHECK(tn_cuda_quantize(dW, 0, cols, &grid, 0, 1, dWq, dix, dsc) != 0);
    CHECK(tn_cuda_quantize(dW, rows, cols, &grid, 3, 1, dWq, dix, dsc) != 0);
    tn_err_clear();
    tn_cuda_free(dW);
    tn_cuda_free(dWq);
    tn_cuda_free(dsc);
    tn_cuda_free(dix);
    tn_free(W);
    tn_free(Wq);
    tn_free(Wq_g);
    tn_free(ix);
    tn_free(ix_g);
}

/* A non-finite weight: the error names the first bad element; Wq, idx and scales keep their contents. */
static void test_quantize_nonfinite(void) {
    tn_rng g;
    tn_rng_seed(&g, 17);
    tn_grid grid;
    CHECK_OK(tn_grid_by_name("ternary", &grid));
    const int64_t rows = 7, cols = 13, n = rows * cols;
    float *W = tn_alloc((size_t)n, sizeof(float)), *back = tn_alloc((size_t)n, sizeof(float));
    uint8_t *ib = tn_alloc((size_t)n, 1);
    float sc_back[7];
    make_weights(&g, W, rows, cols);
    W[4 * cols + 0] = INFINITY; /* later in row order than the NaN below */
    W[2 * cols + 9] = -INFINITY;
    W[2 * cols + 5] = NAN;
    float *dW = tn_test_dev_copy(W, (size_t)n * sizeof(float)), *dWq = tn_cuda_alloc((size_t)n * sizeof(float));
    float *dsc = tn_cuda_alloc(sizeof sc_back);
    uint8_t *dix = tn_cuda_alloc((size_t)n);
    CHECK_OK(tn_cuda_memset0(dWq, (size_t)n * sizeof(float)));
    CHECK_OK(tn_cuda_memset0(dix, (size_t)n));
    CHECK_OK(tn_cuda_memset0(dsc, sizeof sc_back));
    CHECK(tn_quantize_tensor(W, rows, cols, &grid, TN_SCALE_ABSMEAN, 1, NULL, NULL, NULL) != 0);
    printf("CPU: %s\n", tn_errmsg());
    for (int per_row = 0; per_row < 2; per_row++)
        for (int rule = 0; rule < 3; rule++) {
            tn_err_clear();
            int rc = tn_cuda_quantize(dW, rows, cols, &grid, rule, per_row, dWq, dix, dsc);
            CHECKF(rc != 0 && strstr(tn_errmsg(), "[2, 5]") != NULL, "rule %d per_row %d: rc %d, '%s'", rule, per_row,
                   rc, tn_errmsg());
            if (rule == 0 && per_row == 0) printf("GPU: %s\n", tn_errmsg());
            CHECK_OK(tn_cuda_download(back, dWq, (size_t)n * sizeof(float)));
            CHECK_OK(tn_cuda_download(ib, dix, (size_t)n));
            CHECK_OK(tn_cuda_download(sc_back, dsc, sizeof sc_back));
            int changed = 0;
            for (int64_t i = 0; i < n; i++) changed += back[i] != 0.0f || ib[i] != 0;
            for (int r = 0; r < 7; r++) changed += sc_back[r] != 0.0f;
            CHECKF(changed == 0, "rule %d per_row %d: %d outputs changed by a failing call", rule, per_row, changed);
        }
    /* only an infinity, in the first row */
    W[2 * cols + 5] = 1.0f;
    W[2 * cols + 9] = 1.0f;
    W[4 * cols + 0] = 1.0f;
    W[0 * cols + 3] = INFINITY;
    CHECK_OK(tn_cuda_upload(dW, W, (size_t)n * sizeof(float)));
    tn_err_clear();
    CHECK(tn_cuda_quantize(dW, rows, cols, &grid, TN_SCALE_ABSMAX, 0, dWq, dix, dsc) != 0 &&
          strstr(tn_errmsg(), "[0, 3]") != NULL);
    /* and the same tensor made finite again quantizes */
    W[0 * cols + 3] = 2.0f;
    CHECK_OK(tn_cuda_upload(dW, W, (size_t)n * sizeof(float)));
    CHECK_OK(tn_cuda_quantize(dW, rows, cols, &grid, TN_SCALE_ABSMAX, 0, dWq, dix, dsc));
    tn_err_clear();
    tn_cuda_free(dW);
    tn_cuda_free(dWq);
    tn_cuda_free(dsc);
    tn_cuda_free(dix);
    tn_free(W);
    tn_free(back);
    tn_free(ib);
}

/* Inputs whose float scale depends on the ORDER of the double sums (ties at the float rounding boundary),
 * so a GPU that summed in another order than the CPU would show here:
 *   lanes: one row [1, 0, e, e, 2^-24, 0, e, e] (e = 2^-54), absmean. The CPU's 8-lane order
 *     ((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7)) gathers the four e into 2^-52 before adding them to
 *     1 + 2^-24, so the float rounds UP: s = (1 + 2^-23) / 8; adding them one by one would lose them.
 *   rows: [4, 8], row 0 sums to 1 + 2^-24, rows 1..3 to 2^-53 each, absmean per tensor. Row order loses
 *     each 2^-53 (half an ulp, ties to even), so s = 1/32 exactly; a tree (pairwise) sum would keep them
 *     and give (1 + 2^-23) / 32. */
static void test_quantize_order(void) {
    tn_grid grid;
    CHECK_OK(tn_grid_by_name("ternary", &grid));
    const float e = ldexpf(1.0f, -54), u = ldexpf(1.0f, -24);
    float W1[8] = {1.0f, 0.0f, e, e, u, 0.0f, e, e}, W2[32] = {0};
    W2[0] = 1.0f;
    W2[4] = u;
    for (int r = 1; r < 4; r++) W2[r * 8] = W2[r * 8 + 1] = e;
    float s1 = 0, s2 = 0, g1 = -1, g2 = -1;
    CHECK_OK(tn_quantize_tensor(W1, 1, 8, &grid, TN_SCALE_ABSMEAN, 1, NULL, NULL, &s1));
    CHECK_OK(tn_quantize_tensor(W2, 4, 8, &grid, TN_SCALE_ABSMEAN, 0, NULL, NULL, &s2));
    CHECKF(s1 == (1.0f + 2.0f * u) / 8.0f && s2 == 1.0f / 32.0f, "CPU order probes: %.9g %.9g", (double)s1,
           (double)s2); /* the probes mean what the comment says */
    float *d1 = tn_test_dev_copy(W1, sizeof W1), *d2 = tn_test_dev_copy(W2, sizeof W2), *ds = tn_cuda_alloc(sizeof(float));
    CHECK_OK(tn_cuda_quantize(d1, 1, 8, &grid, TN_SCALE_ABSMEAN, 1, NULL, NULL, ds));
    CHECK_OK(tn_cuda_download(&g1, ds, sizeof g1));
    CHECK_OK(tn_cuda_quantize(d2, 4, 8, &grid, TN_SCALE_ABSMEAN, 0, NULL, NULL, ds));
    CHECK_OK(tn_cuda_download(&g2, ds, sizeof g2));
    CHECKF(g1 == s1 && g2 == s2, "order probes: GPU %.9g %.9g, CPU %.9g %.9g", (double)g1, (double)g2, (double)s1,
           (double)s2);
    tn_cuda_free(d1);
    tn_cuda_free(d2);
    tn_cuda_free(ds);
}

static void test_blend(void) {
    tn_rng g;
    tn_rng_seed(&g, 23);
    static const float lambdas[] = {-1.0f, 0.0f, 0.3f, 1.0f, 2.0f, NAN};
    static const int64_t lens[] = {1, 1001, 70001};
    int64_t total_diff = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        const size_t bytes = (size_t)n * sizeof(float);
        float *W = tn_alloc((size_t)n, sizeof(float)), *Wq = tn_alloc((size_t)n, sizeof(float));
        float *out = tn_alloc((size_t)n, sizeof(float)), *out_g = tn_alloc((size_t)n, sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            W[i] = tn_rng_normal(&g);
            Wq[i] = i % 5 == 0 ? W[i] : 0.5f * roundf(2.0f * W[i]);
        }
        float *dW = tn_test_dev_copy(W, bytes), *dWq = tn_test_dev_copy(Wq, bytes), *dout = tn_cuda_alloc(bytes);
        for (size_t k = 0; k < sizeof lambdas / sizeof lambdas[0] && dW && dWq && dout; k++) {
            const float lam = lambdas[k];
            tn_ste_blend(W, Wq, n, lam, out);
            CHECK_OK(tn_cuda_memset0(dout, bytes));
            CHECK_OK(tn_cuda_ste_blend(dW, dWq, n, lam, dout));
            CHECK_OK(tn_cuda_download(out_g, dout, bytes));
            int64_t d = count_diff_bytes(out, out_g, (size_t)n, sizeof(float));
            CHECKF(d == 0, "blend n=%lld lambda=%g: %lld differ", (long long)n, (double)lam, (long long)d);
            total_diff += d;
            /* in place: out = W (a fresh copy of W on the device) */
            CHECK_OK(tn_cuda_upload(dout, W, bytes));
            CHECK_OK(tn_cuda_ste_blend(dout, dWq, n, lam, dout));
            CHECK_OK(tn_cuda_download(out_g, dout, bytes));
            d = count_diff_bytes(out, out_g, (size_t)n, sizeof(float));
            CHECKF(d == 0, "in-place blend n=%lld lambda=%g: %lld differ", (long long)n, (double)lam, (long long)d);
            total_diff += d;
        }
        tn_cuda_free(dW);
        tn_cuda_free(dWq);
        tn_cuda_free(dout);
        tn_free(W);
        tn_free(Wq);
        tn_free(out);
        tn_free(out_g);
    }
    CHECK_OK(tn_cuda_ste_blend(NULL, NULL, 0, 0.5f, NULL)); /* n = 0: nothing */
    printf("blend: %lld elements differ\n", (long long)total_diff);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    test_quantize_all();
    test_quantize_order();
    test_quantize_optional();
    test_quantize_nonfinite();
    test_blend();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
