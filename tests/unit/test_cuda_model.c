/* The training model's CUDA ops (kernels/cuda/model.cu) against their CPU references, on random data of odd
 * sizes, both aligned and misaligned (float4 paths and their scalar tails):
 *   rmsnorm (+ an all-zero row), rmsnorm_backward (dx and dw accumulated; N = 70 takes three dw chunks),
 *   rope forward and inverse (hd = 8, 64, 130), swiglu and its backward, embed, embed_backward (token groups
 *   built as the spec says: (id, position) pairs sorted), cross_entropy (V = 3, 1000, 50000; a row shifted by
 *   +60), cross_entropy_backward (masked rows, mask NULL), act_fake_quant (an all-zero row, a NaN, in place),
 *   add, scale, bias_add and bias_grad (bit for bit), sumsq, masked_sum (mask and NULL), count_nonzero_i8,
 *   adamw, and the size checks; add, scale
 *   and sumsq also on 4.5M elements, past every grid cap (grid-stride loops, 1024 reduction blocks).
 * Tolerances (normwise: max|gpu - cpu| / max|cpu|, tn_test_rel_err): bit-exact for act_fake_quant, embed,
 * embed_backward, rope, add, scale, count_nonzero; 1e-6 for rmsnorm and adamw; 1e-5 for swiglu and
 * cross-entropy (the CPU's own vectorised exp); 1e-12 relative for the double reductions. The largest error
 * seen per op is printed at the end. Without CUDA (or its emulator) or a device the test is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"

#ifdef TN_HAVE_CUDA
#include "kernels/cpu/ops_cpu.h"
#include "optim/adamw.h"
#include "quant/act.h"
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

/* ---- helpers -------------------------------------------------------------------------------------- */

/* The largest error seen per op, printed by report(). */
enum { MAX_STATS = 32 };
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
    printf("largest error per op (normwise relative; 0 = bit-exact):\n");
    for (int k = 0; k < g_nstats; k++)
        printf("  %-24s %.3g (tolerance %.3g)\n", g_stats[k].op, g_stats[k].err, g_stats[k].tol);
}

static void download(void *host, const void *dev, size_t bytes) { CHECK_OK(tn_cuda_download(host, dev, bytes)); }

static float *randn(tn_rng *g, int64_t n, float s) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(g);
    return x;
}

static float *copy_floats(const float *x, int64_t n) {
    float *y = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    memcpy(y, x, sizeof(float) * (size_t)n);
    return y;
}

/* Elements whose bits differ (NaN payloads included). */
static double bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return (double)d;
}

static double rel(const float *a, const float *b, int64_t n) { return tn_test_rel_err(a, b, (size_t)n); }

/* ---- RMSNorm --------------------------------------------------------------------------------------- */

static void test_rmsnorm_case(tn_rng *g, int64_t N, int64_t D) {
    const float eps = 1e-5f;
    float *x = randn(g, N * D, 1.5f), *w = randn(g, D, 1.0f), *dy = randn(g, N * D, 1.0f);
    float *dx0 = randn(g, N * D, 0.5f), *dw0 = randn(g, D, 0.5f);
    if (N > 2) memset(x + 2 * D, 0, sizeof(float) * (size_t)D); /* an all-zero row */
    float *y = malloc(sizeof(float) * (size_t)(N * D)), *rstd = malloc(sizeof(float) * (size_t)N);
    float *yr = malloc(sizeof(float) * (size_t)(N * D)), *rstdr = malloc(sizeof(float) * (size_t)N);
    float *dxr = copy_floats(dx0, N * D), *dwr = copy_floats(dw0, D);
    float *dx = malloc(sizeof(float) * (size_t)(N * D)), *dw = malloc(sizeof(float) * (size_t)D);
    tn_op_rmsnorm(yr, rstdr, x, w, N, D, eps);
    tn_op_rmsnorm_backward(dxr, dwr, dy, x, w, rstdr, N, D);

    const size_t nd = sizeof(float) * (size_t)(N * D);
    float *d_x = tn_test_dev_copy(x, nd), *d_w = tn_test_dev_copy(w, sizeof(float) * (size_t)D), *d_dy = tn_test_dev_copy(dy, nd);
    float *d_dx = tn_test_dev_copy(dx0, nd), *d_dw = tn_test_dev_copy(dw0, sizeof(float) * (size_t)D);
    float *d_y = tn_cuda_alloc(nd), *d_rstd = tn_cuda_alloc(sizeof(float) * (size_t)N);
    CHECK_OK(tn_cuda_rmsnorm(d_y, d_rstd, d_x, d_w, N, D, eps));
    CHECK_OK(tn_cuda_rmsnorm_backward(d_dx, d_dw, d_dy, d_x, d_w, d_rstd, N, D));
    download(y, d_y, nd);
    download(rstd, d_rstd, sizeof(float) * (size_t)N);
    download(dx, d_dx, nd);
    download(dw, d_dw, sizeof(float) * (size_t)D);
    char what[64];
    snprintf(what, sizeof what, "N=%lld D=%lld", (long long)N, (long long)D);
    note("rmsnorm y", what, rel(y, yr, N * D), 1e-6);
    note("rmsnorm rstd", what, rel(rstd, rstdr, N), 1e-6);
    note("rmsnorm_backward dx", what, rel(dx, dxr, N * D), 1e-6);
    note("rmsnorm_backward dw", what, rel(dw, dwr, D), 1e-6);

    tn_cuda_free(d_x);
    tn_cuda_free(d_w);
    tn_cuda_free(d_dy);
    tn_cuda_free(d_dx);
    tn_cuda_free(d_dw);
    tn_cuda_free(d_y);
    tn_cuda_free(d_rstd);
    free(x), free(w), free(dy), free(dx0), free(dw0), free(y), free(rstd), free(yr), free(rstdr);
    free(dxr), free(dwr), free(dx), free(dw);
}

static void test_rmsnorm(tn_rng *g) {
    const int64_t shapes[][2] = {{1, 5}, {7, 64}, {33, 129}, {70, 33}, {5, 300}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) test_rmsnorm_case(g, shapes[k][0], shapes[k][1]);
}

/* ---- RoPE ------------------------------------------------------------------------------------------- */

static void test_rope(tn_rng *g) {
    const int64_t shapes[][4] = {{2, 5, 3, 8}, {1, 3, 2, 64}, {1, 4, 1, 130}}; /* B, T, H, hd */
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t B = shapes[k][0], T = shapes[k][1], H = shapes[k][2], hd = shapes[k][3], n = B * T * H * hd;
        float *cs = malloc(sizeof(float) * (size_t)(T * hd / 2)), *sn = malloc(sizeof(float) * (size_t)(T * hd / 2));
        tn_op_rope_table(cs, sn, T, hd, 10000.0, 3);
        float *d_c = tn_test_dev_copy(cs, sizeof(float) * (size_t)(T * hd / 2));
        float *d_s = tn_test_dev_copy(sn, sizeof(float) * (size_t)(T * hd / 2));
        for (int inverse = 0; inverse <= 1; inverse++) {
            float *x = randn(g, n, 1.0f), *ref = copy_floats(x, n), *out = malloc(sizeof(float) * (size_t)n);
            tn_op_rope(ref, cs, sn, B, T, H, hd, inverse);
            float *d_x = tn_test_dev_copy(x, sizeof(float) * (size_t)n);
            CHECK_OK(tn_cuda_rope(d_x, d_c, d_s, B, T, H, hd, inverse));
            download(out, d_x, sizeof(float) * (size_t)n);
            note("rope (differing elems)", inverse ? "inverse" : "forward", bit_diffs(out, ref, n), 0);
            tn_cuda_free(d_x);
            free(x), free(ref), free(out);
        }
        tn_cuda_free(d_c);
        tn_cuda_free(d_s);
        free(cs), free(sn);
    }
}

/* ---- SwiGLU ----------------------------------------------------------------------------------------- */

/* off = 1 shifts every device array by one float: the scalar path. */
static void test_swiglu_case(tn_rng *g, int64_t n, int off) {
    float *gg = randn(g, n, 3.0f), *u = randn(g, n, 1.0f), *da = randn(g, n, 1.0f);
    float *a = malloc(sizeof(float) * (size_t)n), *ar = malloc(sizeof(float) * (size_t)n);
    float *dg = malloc(sizeof(float) * (size_t)n), *du = malloc(sizeof(float) * (size_t)n);
    float *dgr = malloc(sizeof(float) * (size_t)n), *dur = malloc(sizeof(float) * (size_t)n);
    tn_op_swiglu(ar, gg, u, n);
    tn_op_swiglu_backward(dgr, dur, da, gg, u, n);
    const size_t bytes = sizeof(float) * (size_t)(n + 1);
    float *d_g = tn_cuda_alloc(bytes), *d_u = tn_cuda_alloc(bytes), *d_da = tn_cuda_alloc(bytes);
    float *d_a = tn_cuda_alloc(bytes), *d_dg = tn_cuda_alloc(bytes), *d_du = tn_cuda_alloc(bytes);
    CHECK_OK(tn_cuda_upload(d_g + off, gg, sizeof(float) * (size_t)n));
    CHECK_OK(tn_cuda_upload(d_u + off, u, sizeof(float) * (size_t)n));
    CHECK_OK(tn_cuda_upload(d_da + off, da, sizeof(float) * (size_t)n));
    CHECK_OK(tn_cuda_swiglu(d_a + off, d_g + off, d_u + off, n));
    CHECK_OK(tn_cuda_swiglu_backward(d_dg + off, d_du + off, d_da + off, d_g + off, d_u + off, n));
    download(a, d_a + off, sizeof(float) * (size_t)n);
    download(dg, d_dg + off, sizeof(float) * (size_t)n);
    download(du, d_du + off, sizeof(float) * (size_t)n);
    char what[64];
    snprintf(what, sizeof what, "n=%lld off=%d", (long long)n, off);
    note("swiglu", what, rel(a, ar, n), 1e-5);
    note("swiglu_backward dg", what, rel(dg, dgr, n), 1e-5);
    note("swiglu_backward du", what, rel(du, dur, n), 1e-5);
    tn_cuda_free(d_g), tn_cuda_free(d_u), tn_cuda_free(d_da), tn_cuda_free(d_a), tn_cuda_free(d_dg);
    tn_cuda_free(d_du);
    free(gg), free(u), free(da), free(a), free(ar), free(dg), free(du), free(dgr), free(dur);
}

static void test_swiglu(tn_rng *g) {
    const int64_t sizes[] = {1, 7, 1001, 4099};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int off = 0; off <= 1; off++) test_swiglu_case(g, sizes[k], off);
}

/* ---- embedding -------------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The groups of tokens[N]: (id, position) pairs sorted; group u = id[u] at pos[start[u] .. start[u+1]). */
static int64_t build_groups(const int32_t *tokens, int64_t N, int32_t *id, int32_t *pos, int32_t *start) {
    uint64_t *pairs = malloc(sizeof(uint64_t) * (size_t)N);
    for (int64_t n = 0; n < N; n++) pairs[n] = (uint64_t)(uint32_t)tokens[n] << 32 | (uint64_t)n;
    qsort(pairs, (size_t)N, sizeof *pairs, cmp_u64);
    int64_t G = 0;
    for (int64_t k = 0; k < N; k++) {
        const int32_t t = (int32_t)(pairs[k] >> 32);
        if (k == 0 || t != id[G - 1]) {
            id[G] = t;
            start[G++] = (int32_t)k;
        }
        pos[k] = (int32_t)(pairs[k] & 0xffffffffu);
    }
    start[G] = (int32_t)N;
    free(pairs);
    return G;
}

static void test_embed_case(tn_rng *g, int64_t N, int64_t D) {
    const int64_t V = 50;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)N), *id = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)N), *start = malloc(sizeof(int32_t) * (size_t)(N + 1));
    for (int64_t n = 0; n < N; n++) tokens[n] = (int32_t)(n % 3 == 0 ? 7 : tn_rng_below(g, (uint64_t)V)); /* repeats */
    const int64_t G = build_groups(tokens, N, id, pos, start);
    float *E = randn(g, V * D, 1.0f), *dx = randn(g, N * D, 1.0f), *dE0 = randn(g, V * D, 1.0f);
    float *x = malloc(sizeof(float) * (size_t)(N * D)), *xr = malloc(sizeof(float) * (size_t)(N * D));
    float *dE = malloc(sizeof(float) * (size_t)(V * D)), *dEr = copy_floats(dE0, V * D);
    tn_op_embed(xr, E, tokens, N, D);
    tn_op_embed_backward(dEr, dx, tokens, N, D);

    float *d_E = tn_test_dev_copy(E, sizeof(float) * (size_t)(V * D)), *d_dE = tn_test_dev_copy(dE0, sizeof(float) * (size_t)(V * D));
    float *d_dx = tn_test_dev_copy(dx, sizeof(float) * (size_t)(N * D)), *d_x = tn_cuda_alloc(sizeof(float) * (size_t)(N * D));
    int32_t *d_tok = tn_test_dev_copy(tokens, sizeof(int32_t) * (size_t)N), *d_id = tn_test_dev_copy(id, sizeof(int32_t) * (size_t)G);
    int32_t *d_pos = tn_test_dev_copy(pos, sizeof(int32_t) * (size_t)N);
    int32_t *d_start = tn_test_dev_copy(start, sizeof(int32_t) * (size_t)(G + 1));
    const tn_token_groups groups = {G, d_id, d_pos, d_start};
    CHECK_OK(tn_cuda_embed(d_x, d_E, d_tok, N, D));
    CHECK_OK(tn_cuda_embed_backward(d_dE, d_dx, &groups, N, D));
    download(x, d_x, sizeof(float) * (size_t)(N * D));
    download(dE, d_dE, sizeof(float) * (size_t)(V * D));
    char what[64];
    snprintf(what, sizeof what, "N=%lld D=%lld, %lld groups", (long long)N, (long long)D, (long long)G);
    note("embed (differing elems)", what, bit_diffs(x, xr, N * D), 0);
    note("embed_backward (diff elems)", what, bit_diffs(dE, dEr, V * D), 0);

    tn_cuda_free(d_E), tn_cuda_free(d_dE), tn_cuda_free(d_dx), tn_cuda_free(d_x), tn_cuda_free(d_tok);
    tn_cuda_free(d_id), tn_cuda_free(d_pos), tn_cuda_free(d_start);
    free(tokens), free(id), free(pos), free(start), free(E), free(dx), free(dE0), free(x), free(xr), free(dE);
    free(dEr);
}

static void test_embed(tn_rng *g) {
    const int64_t shapes[][2] = {{1, 5}, {33, 5}, {33, 64}, {7, 129}, {9, 300}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) test_embed_case(g, shapes[k][0], shapes[k][1]);
}

/* ---- cross-entropy ---------------------------------------------------------------------------------- */

static void test_cross_entropy_case(tn_rng *g, int64_t N, int64_t V) {
    float *logits = randn(g, N * V, 3.0f);
    if (N > 1)
        for (int64_t j = 0; j < V; j++) logits[V + j] += 60.0f; /* a shifted row: the max matters */
    int32_t *targets = malloc(sizeof(int32_t) * (size_t)N);
    uint8_t *mask = malloc((size_t)N);
    int64_t counted = 0;
    for (int64_t n = 0; n < N; n++) {
        targets[n] = (int32_t)tn_rng_below(g, (uint64_t)V);
        mask[n] = (uint8_t)(N == 1 || n % 3 != 1); /* every third row masked out */
        counted += mask[n];
    }
    float *nll = malloc(sizeof(float) * (size_t)N), *nllr = malloc(sizeof(float) * (size_t)N);
    tn_op_cross_entropy(nllr, logits, targets, NULL, N, V);
    const size_t lb = sizeof(float) * (size_t)(N * V);
    float *d_logits = tn_test_dev_copy(logits, lb), *d_nll = tn_cuda_alloc(sizeof(float) * (size_t)N);
    int32_t *d_t = tn_test_dev_copy(targets, sizeof(int32_t) * (size_t)N);
    uint8_t *d_mask = tn_test_dev_copy(mask, (size_t)N);
    CHECK_OK(tn_cuda_cross_entropy(d_nll, d_logits, d_t, N, V));
    download(nll, d_nll, sizeof(float) * (size_t)N);
    char what[64];
    snprintf(what, sizeof what, "N=%lld V=%lld", (long long)N, (long long)V);
    note("cross_entropy", what, rel(nll, nllr, N), 1e-5);

    float *grad = malloc(lb);
    for (int use_mask = 0; use_mask <= 1; use_mask++) {
        const float gs = 1.0f / (float)(use_mask ? counted : N);
        float *ref = copy_floats(logits, N * V);
        tn_op_cross_entropy_backward(ref, targets, use_mask ? mask : NULL, N, V, gs);
        CHECK_OK(tn_cuda_upload(d_logits, logits, lb));
        CHECK_OK(tn_cuda_cross_entropy_backward(d_logits, d_t, use_mask ? d_mask : NULL, N, V, gs));
        download(grad, d_logits, lb);
        note("cross_entropy_backward", use_mask ? "mask" : "mask NULL", rel(grad, ref, N * V), 1e-5);
        int64_t nonzero_masked = 0;
        for (int64_t n = 0; n < N; n++)
            if (use_mask && !mask[n])
                for (int64_t j = 0; j < V; j++) nonzero_masked += grad[n * V + j] != 0.0f;
        CHECKF(nonzero_masked == 0, "%lld nonzero gradients in masked rows", (long long)nonzero_masked);
        free(ref);
    }
    tn_cuda_free(d_logits), tn_cuda_free(d_nll), tn_cuda_free(d_t), tn_cuda_free(d_mask);
    free(logits), free(targets), free(mask), free(nll), free(nllr), free(grad);
}

static void test_cross_entropy(tn_rng *g) {
    const int64_t shapes[][2] = {{7, 3}, {5, 1000}, {1, 50000}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        test_cross_entropy_case(g, shapes[k][0], shapes[k][1]);
}

/* ---- activation fake quantization ------------------------------------------------------------------- */

static void test_act_fake_quant(tn_rng *g) {
    const int64_t rows = 7, col_sizes[] = {5, 64, 129, 1000};
    for (size_t k = 0; k < sizeof col_sizes / sizeof col_sizes[0]; k++) {
        const int64_t cols = col_sizes[k], n = rows * cols;
        float *x = randn(g, n, 2.0f), *ref = malloc(sizeof(float) * (size_t)n);
        float *out = malloc(sizeof(float) * (size_t)n);
        memset(x + cols, 0, sizeof(float) * (size_t)cols); /* row 1: all zero */
        x[3 * cols + cols / 2] = NAN;                      /* row 3: a NaN never sets the max */
        x[4 * cols] = 1e-30f;                              /* row 4: tiny values next to normal ones */
        for (int64_t j = 0; j < cols; j++) x[5 * cols + j] = (float)((int)j % 5 - 2) * 0.5f; /* row 5: ties */
        tn_act_fake_quant(x, rows, cols, ref);
        float *d_x = tn_test_dev_copy(x, sizeof(float) * (size_t)n), *d_out = tn_cuda_alloc(sizeof(float) * (size_t)n);
        CHECK_OK(tn_cuda_act_fake_quant(d_x, rows, cols, d_out));
        download(out, d_out, sizeof(float) * (size_t)n);
        note("act_fake_quant (diff elems)", "out", bit_diffs(out, ref, n), 0);
        CHECK_OK(tn_cuda_act_fake_quant(d_x, rows, cols, d_x)); /* in place */
        download(out, d_x, sizeof(float) * (size_t)n);
        note("act_fake_quant (diff elems)", "in place", bit_diffs(out, ref, n), 0);
        tn_cuda_free(d_x), tn_cuda_free(d_out);
        free(x), free(ref), free(out);
    }
}

/* ---- vectors ---------------------------------------------------------------------------------------- */

/* bias_add and bias_grad: bit for bit the CPU's (the same float additions in the same order), on shapes with
 * odd column counts and more columns than one block of either; db accumulates onto its old contents. Also
 * checked against a double sum (which the float one must approach). */
static void test_bias(tn_rng *g) {
    const int64_t shapes[][2] = {{1, 1}, {3, 7}, {37, 130}, {300, 1029}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t N = shapes[k][0], C = shapes[k][1];
        float *y = randn(g, N * C, 1.0f), *b = randn(g, C, 1.0f), *db = randn(g, C, 1.0f);
        float *yr = copy_floats(y, N * C), *dbr = copy_floats(db, C), *out = malloc(sizeof(float) * (size_t)(N * C));
        tn_op_bias_add(yr, b, N, C);
        tn_op_bias_grad(dbr, y, N, C);
        double worst = 0;
        for (int64_t c = 0; c < C; c++) {
            double sd = db[c];
            for (int64_t n = 0; n < N; n++) sd += y[n * C + c];
            worst = fmax(worst, fabs(dbr[c] - sd) / (1.0 + fabs(sd)));
        }
        float *d_y = tn_cuda_alloc(sizeof(float) * (size_t)(N * C)), *d_b = tn_cuda_alloc(sizeof(float) * (size_t)C);
        float *d_db = tn_cuda_alloc(sizeof(float) * (size_t)C);
        CHECK_OK(tn_cuda_upload(d_y, y, sizeof(float) * (size_t)(N * C)));
        CHECK_OK(tn_cuda_upload(d_b, b, sizeof(float) * (size_t)C));
        CHECK_OK(tn_cuda_upload(d_db, db, sizeof(float) * (size_t)C));
        CHECK_OK(tn_cuda_bias_grad(d_db, d_y, N, C)); /* dy = y before the add */
        CHECK_OK(tn_cuda_bias_add(d_y, d_b, N, C));
        download(out, d_y, sizeof(float) * (size_t)(N * C));
        note("bias_add (differing elems)", "y", bit_diffs(out, yr, N * C), 0);
        download(out, d_db, sizeof(float) * (size_t)C);
        note("bias_grad (differing elems)", "db", bit_diffs(out, dbr, C), 0);
        note("bias_grad vs double", "db", worst, 1e-5);
        for (int64_t i = 0; i < N * C && k == 1; i++) CHECK(yr[i] == y[i] + b[i % C]);
        tn_cuda_free(d_y), tn_cuda_free(d_b), tn_cuda_free(d_db);
        free(y), free(b), free(db), free(yr), free(dbr), free(out);
    }
}

static void test_vectors(tn_rng *g) {
    const int64_t sizes[] = {1, 7, 1001, 4099};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int off = 0; off <= 1; off++) {
            const int64_t n = sizes[k];
            float *x = randn(g, n, 1.0f), *y = randn(g, n, 1.0f), *out = malloc(sizeof(float) * (size_t)n);
            float *yr = copy_floats(y, n), *xr = copy_floats(x, n);
            tn_op_add(yr, x, n);
            tn_op_scale(xr, 0.37f, n);
            float *d_x = tn_cuda_alloc(sizeof(float) * (size_t)(n + 1));
            float *d_y = tn_cuda_alloc(sizeof(float) * (size_t)(n + 1));
            CHECK_OK(tn_cuda_upload(d_x + off, x, sizeof(float) * (size_t)n));
            CHECK_OK(tn_cuda_upload(d_y + off, y, sizeof(float) * (size_t)n));
            CHECK_OK(tn_cuda_add(d_y + off, d_x + off, n));
            download(out, d_y + off, sizeof(float) * (size_t)n);
            note("add (differing elems)", "y", bit_diffs(out, yr, n), 0);
            CHECK_OK(tn_cuda_scale(d_x + off, 0.37f, n));
            download(out, d_x + off, sizeof(float) * (size_t)n);
            note("scale (differing elems)", "x", bit_diffs(out, xr, n), 0);
            tn_cuda_free(d_x), tn_cuda_free(d_y);
            free(x), free(y), free(out), free(yr), free(xr);
        }
}

/* ---- reductions ------------------------------------------------------------------------------------- */

static double rel_d(double a, double b) { return b == 0 ? fabs(a) : fabs(a - b) / fabs(b); }

static void test_reductions(tn_rng *g) {
    const tn_ops *cpu = tn_ops_cpu();
    const int64_t sizes[] = {0, 1, 7, 4099, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const int64_t n = sizes[k];
        float *x = randn(g, n, 2.0f);
        uint8_t *mask = malloc((size_t)(n > 0 ? n : 1));
        int8_t *v = malloc((size_t)(n > 0 ? n : 1));
        for (int64_t i = 0; i < n; i++) {
            mask[i] = (uint8_t)(tn_rng_below(g, 3) != 0 ? 1 + tn_rng_below(g, 255) : 0); /* any nonzero byte counts */
            v[i] = tn_rng_below(g, 3) == 0 ? 0 : (int8_t)((int)tn_rng_below(g, 255) - 127);
        }
        float *d_x = tn_test_dev_copy(x, sizeof(float) * (size_t)(n > 0 ? n : 1));
        uint8_t *d_mask = tn_test_dev_copy(mask, (size_t)(n > 0 ? n : 1));
        int8_t *d_v = tn_test_dev_copy(v, (size_t)(n > 0 ? n : 1));
        char what[64];
        snprintf(what, sizeof what, "n=%lld", (long long)n);

        double s = -1, s2 = -2, ref = 0;
        CHECK_OK(tn_cuda_sumsq(d_x, n, &s));
        CHECK_OK(tn_cuda_sumsq(d_x, n, &s2));
        CHECK_OK(cpu->sumsq(x, n, &ref));
        note("sumsq", what, rel_d(s, ref), 1e-12);
        CHECKF(memcmp(&s, &s2, sizeof s) == 0, "sumsq %s not repeatable: %.17g, %.17g", what, s, s2);
        for (int use_mask = 0; use_mask <= 1; use_mask++) {
            CHECK_OK(tn_cuda_masked_sum(d_x, use_mask ? d_mask : NULL, n, &s));
            CHECK_OK(cpu->masked_sum(x, use_mask ? mask : NULL, n, &ref));
            note("masked_sum", use_mask ? "mask" : "mask NULL", rel_d(s, ref), 1e-12);
        }
        int64_t c = -1, cref = -2;
        CHECK_OK(tn_cuda_count_nonzero_i8(d_v, n, &c));
        CHECK_OK(cpu->count_nonzero_i8(v, n, &cref));
        note("count_nonzero_i8 (diff)", what, fabs((double)(c - cref)), 0);
        tn_cuda_free(d_x), tn_cuda_free(d_mask), tn_cuda_free(d_v);
        free(x), free(mask), free(v);
    }
}

/* n past every grid cap: the elementwise grid-stride loops (aligned and not) and the reductions' 1024 blocks
 * each take several elements per thread. */
static void test_large(tn_rng *g) {
    const int64_t n = 4500001;
    const size_t nb = sizeof(float) * (size_t)n;
    float *x = randn(g, n, 1.0f), *y = randn(g, n, 1.0f), *out = malloc(nb);
    float *yr = copy_floats(y, n);
    float *d_x = tn_cuda_alloc(nb + sizeof(float)), *d_y = tn_cuda_alloc(nb + sizeof(float));
    for (int off = 0; off <= 1; off++) {
        memcpy(yr, y, nb);
        tn_op_add(yr, x, n);
        tn_op_scale(yr, 1.5f, n);
        CHECK_OK(tn_cuda_upload(d_x + off, x, nb));
        CHECK_OK(tn_cuda_upload(d_y + off, y, nb));
        CHECK_OK(tn_cuda_add(d_y + off, d_x + off, n));
        CHECK_OK(tn_cuda_scale(d_y + off, 1.5f, n));
        download(out, d_y + off, nb);
        note("add (differing elems)", "large", bit_diffs(out, yr, n), 0);
        double s = 0, ref = 0;
        CHECK_OK(tn_cuda_sumsq(d_y + off, n, &s));
        ref = tn_op_sumsq(yr, n);
        note("sumsq", "large", rel_d(s, ref), 1e-12);
    }
    tn_cuda_free(d_x), tn_cuda_free(d_y);
    free(x), free(y), free(out), free(yr);
}

/* ---- AdamW ------------------------------------------------------------------------------------------ */

static void test_adamw(tn_rng *g) {
    const tn_adamw_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    const int64_t sizes[] = {1, 7, 1001, 4099};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int off = 0; off <= 1; off++) {
            const int64_t n = sizes[k];
            const tn_adamw_step h = tn_adamw_step_of(&hp, 3 + (int64_t)k, off == 0);
            float *p = randn(g, n, 1.0f), *gr = randn(g, n, 0.1f), *m = randn(g, n, 0.01f), *v = randn(g, n, 0.01f);
            for (int64_t i = 0; i < n; i++) v[i] = v[i] * v[i];
            float *pr = copy_floats(p, n), *mr = copy_floats(m, n), *vr = copy_floats(v, n);
            tn_adamw_apply(pr, gr, mr, vr, n, &h);
            const size_t bytes = sizeof(float) * (size_t)(n + 1), nb = sizeof(float) * (size_t)n;
            float *d_p = tn_cuda_alloc(bytes), *d_g = tn_cuda_alloc(bytes), *d_m = tn_cuda_alloc(bytes);
            float *d_v = tn_cuda_alloc(bytes);
            CHECK_OK(tn_cuda_upload(d_p + off, p, nb));
            CHECK_OK(tn_cuda_upload(d_g + off, gr, nb));
            CHECK_OK(tn_cuda_upload(d_m + off, m, nb));
            CHECK_OK(tn_cuda_upload(d_v + off, v, nb));
            CHECK_OK(tn_cuda_adamw(d_p + off, d_g + off, d_m + off, d_v + off, n, &h));
            download(p, d_p + off, nb);
            download(m, d_m + off, nb);
            download(v, d_v + off, nb);
            char what[64];
            snprintf(what, sizeof what, "n=%lld off=%d", (long long)n, off);
            note("adamw p", what, rel(p, pr, n), 1e-6);
            note("adamw m", what, rel(m, mr, n), 1e-6);
            note("adamw v", what, rel(v, vr, n), 1e-6);
            tn_cuda_free(d_p), tn_cuda_free(d_g), tn_cuda_free(d_m), tn_cuda_free(d_v);
            free(p), free(gr), free(m), free(v), free(pr), free(mr), free(vr);
        }
}

/* ---- refusals --------------------------------------------------------------------------------------- */

static void expect_error(int rc, const char *needle) {
    CHECKF(rc == -1 && strstr(tn_errmsg(), needle) != NULL, "rc %d, message \"%s\" (expected \"%s\")", rc,
           tn_errmsg(), needle);
    tn_err_clear();
}

static void test_refusals(void) {
    float *d = tn_cuda_alloc(64);
    int32_t *t = tn_cuda_alloc(16);
    double s;
    expect_error(tn_cuda_rmsnorm(d, d, d, d, -1, 4, 1e-5f), "tn_cuda_rmsnorm: N = -1");
    expect_error(tn_cuda_cross_entropy(d, d, t, 1, 0), "tn_cuda_cross_entropy: N = 1, V = 0");
    expect_error(tn_cuda_add(d, d, -3), "tn_cuda_add: n = -3");
    expect_error(tn_cuda_bias_add(d, d, -1, 3), "tn_cuda_bias_add: N = -1");
    expect_error(tn_cuda_sumsq(d, -1, &s), "tn_cuda_sumsq: n = -1");
    expect_error(tn_cuda_embed_backward(d, d, NULL, 2, 2), "no token groups");
    expect_error(tn_cuda_adamw(d, d, d, d, 4, NULL), "no step constants");
    /* empty work succeeds and touches nothing */
    CHECK_OK(tn_cuda_rmsnorm(d, d, d, d, 0, 4, 1e-5f));
    CHECK_OK(tn_cuda_cross_entropy_backward(d, t, NULL, 0, 5, 1.0f));
    tn_cuda_free(d);
    tn_cuda_free(t);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_rng g;
    tn_rng_seed(&g, 11);
    test_rmsnorm(&g);
    test_rope(&g);
    test_swiglu(&g);
    test_embed(&g);
    test_cross_entropy(&g);
    test_act_fake_quant(&g);
    test_vectors(&g);
    test_bias(&g);
    test_reductions(&g);
    test_large(&g);
    test_adamw(&g);
    test_refusals();
    report();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
