/* Causal grouped-query attention on the GPU (kernels/cuda/attention.cu) against the CPU reference
 * (kernels/cpu/ops_cpu.c tn_op_attention / tn_op_attention_backward), on random q, k, v, dout:
 *   out, dq, dk, dv normwise (max|gpu - cpu| / max|cpu|, tn_test_rel_err) within 1e-5 (out) and 2e-5 (the
 *   gradients: three chained float products; the emulator measures about 1e-6); lse against the log-sum-exp of the scaled scores computed in
 *   double, within 1e-5 · max(1, |lse|);
 * over shapes (B, T, H, KV, hd) with T = 1, T below, at and past a multiple of the 64-row tile (up to four
 * tiles), H = KV and groups of 2, 3 and 4, hd = 2, 16, 24, 32, 64, 80, 128 (every head-dim class of the kernels). The outputs are
 * allocated fresh, so in the emulator they start as NaN (0xFF bytes): an element left unwritten fails. The
 * backward runs twice on one shape and must repeat bit for bit (no atomics). Then the size checks: odd,
 * too large or zero head dims, H not a multiple of KV, too long T, NULL arrays, and B = 0 doing nothing.
 * The largest errors per output are printed. Without CUDA (or its emulator) or a device it is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"

#ifdef TN_HAVE_CUDA
#include "kernels/cpu/ops_cpu.h"
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

#define TOL_OUT 1e-5
#define TOL_GRAD 2e-5
#define TOL_LSE 1e-5

/* The largest error seen per output over all shapes. */
static double g_max_err[5];
static const char *const g_names[5] = {"out", "lse", "dq", "dk", "dv"};

static void note(int which, const char *shape, double err, double tol) {
    if (!(err <= g_max_err[which])) g_max_err[which] = err;
    CHECKF(err <= tol, "%s %s: error %.3g > %.3g", shape, g_names[which], err, tol);
}

static float *randn(tn_rng *g, int64_t n, float s) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(g);
    return x;
}

/* lse[b, h, i] = log Σ_{j <= i} exp(s_ij), s_ij = scale · q_i·k_j, all in double; the largest
 * |lse - ref| / max(1, |ref|). */
static double lse_err(const float *lse, const float *q, const float *k, int64_t B, int64_t T, int64_t H, int64_t KV,
                      int64_t hd) {
    const double scale = 1.0f / sqrtf((float)hd);
    double *s = malloc(sizeof(double) * (size_t)T), worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * H + h) * hd;
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    const float *kj = k + ((b * T + j) * KV + h / (H / KV)) * hd;
                    double d = 0;
                    for (int64_t x = 0; x < hd; x++) d += (double)qi[x] * kj[x];
                    s[j] = scale * d;
                    if (s[j] > m) m = s[j];
                }
                for (int64_t j = 0; j <= i; j++) sum += exp(s[j] - m);
                const double ref = m + log(sum), got = lse[(b * H + h) * T + i];
                const double e = fabs(got - ref) / (fabs(ref) > 1 ? fabs(ref) : 1);
                if (!(e <= worst)) worst = e;
            }
    free(s);
    return worst;
}

/* Forward and backward of one shape on both sides; repeat = 1 also runs the GPU backward a second time
 * and requires the same bits. */
static void test_shape(tn_rng *g, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, int repeat) {
    char shape[96];
    snprintf(shape, sizeof shape, "B %lld T %lld H %lld KV %lld hd %lld", (long long)B, (long long)T, (long long)H,
             (long long)KV, (long long)hd);
    const int64_t nq = B * T * H * hd, nk = B * T * KV * hd, nl = tn_cuda_attention_saved_floats(B, T, H);
    CHECK(nl == B * H * T);
    /* q·k / sqrt(hd) with standard deviation 1.5: rows from flat to peaked softmaxes */
    float *q = randn(g, nq, 1.2f), *k = randn(g, nk, 1.2f), *v = randn(g, nk, 1.0f), *dout = randn(g, nq, 1.0f);

    /* CPU reference */
    float *out_ref = malloc(sizeof(float) * (size_t)nq), *probs = malloc(sizeof(float) * (size_t)(B * H * T * T));
    float *dq_ref = malloc(sizeof(float) * (size_t)nq), *dk_ref = malloc(sizeof(float) * (size_t)nk),
          *dv_ref = malloc(sizeof(float) * (size_t)nk);
    float *cpu_scratch = malloc(sizeof(float) * (size_t)tn_op_attention_scratch_floats(T));
    tn_op_attention(out_ref, probs, q, k, v, B, T, H, KV, hd);
    tn_op_attention_backward(dq_ref, dk_ref, dv_ref, dout, probs, q, k, v, B, T, H, KV, hd, cpu_scratch);

    /* GPU */
    const int64_t ns = tn_cuda_attention_scratch_floats(B, T, H, KV, hd);
    float *d_q = tn_test_dev_copy(q, sizeof(float) * (size_t)nq), *d_k = tn_test_dev_copy(k, sizeof(float) * (size_t)nk),
          *d_v = tn_test_dev_copy(v, sizeof(float) * (size_t)nk), *d_dout = tn_test_dev_copy(dout, sizeof(float) * (size_t)nq);
    float *d_out = tn_cuda_alloc(sizeof(float) * (size_t)nq), *d_lse = tn_cuda_alloc(sizeof(float) * (size_t)nl);
    float *d_dq = tn_cuda_alloc(sizeof(float) * (size_t)nq), *d_dk = tn_cuda_alloc(sizeof(float) * (size_t)nk),
          *d_dv = tn_cuda_alloc(sizeof(float) * (size_t)nk), *d_scratch = tn_cuda_alloc(sizeof(float) * (size_t)ns);
    CHECK(d_q && d_k && d_v && d_dout && d_out && d_lse && d_dq && d_dk && d_dv && d_scratch);

    float *out = malloc(sizeof(float) * (size_t)nq), *lse = malloc(sizeof(float) * (size_t)nl);
    float *dq = malloc(sizeof(float) * (size_t)nq), *dk = malloc(sizeof(float) * (size_t)nk),
          *dv = malloc(sizeof(float) * (size_t)nk);
    CHECK_OK(tn_cuda_attention(d_out, d_lse, d_q, d_k, d_v, B, T, H, KV, hd));
    CHECK_OK(tn_cuda_download(out, d_out, sizeof(float) * (size_t)nq));
    CHECK_OK(tn_cuda_download(lse, d_lse, sizeof(float) * (size_t)nl));
    /* the backward from the GPU's own out and lse, as in training */
    CHECK_OK(tn_cuda_attention_backward(d_dq, d_dk, d_dv, d_dout, d_out, d_lse, d_q, d_k, d_v, B, T, H, KV, hd,
                                        d_scratch));
    CHECK_OK(tn_cuda_download(dq, d_dq, sizeof(float) * (size_t)nq));
    CHECK_OK(tn_cuda_download(dk, d_dk, sizeof(float) * (size_t)nk));
    CHECK_OK(tn_cuda_download(dv, d_dv, sizeof(float) * (size_t)nk));

    const double e_out = tn_test_rel_err(out, out_ref, (size_t)nq), e_lse = lse_err(lse, q, k, B, T, H, KV, hd);
    const double e_dq = tn_test_rel_err(dq, dq_ref, (size_t)nq), e_dk = tn_test_rel_err(dk, dk_ref, (size_t)nk),
                 e_dv = tn_test_rel_err(dv, dv_ref, (size_t)nk);
    printf("  %-36s out %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e\n", shape, e_out, e_lse, e_dq, e_dk, e_dv);
    note(0, shape, e_out, TOL_OUT);
    note(1, shape, e_lse, TOL_LSE);
    note(2, shape, e_dq, TOL_GRAD);
    note(3, shape, e_dk, TOL_GRAD);
    note(4, shape, e_dv, TOL_GRAD);

    if (repeat) {
        float *again = malloc(sizeof(float) * (size_t)(nq > nk ? nq : nk));
        CHECK_OK(tn_cuda_attention_backward(d_dq, d_dk, d_dv, d_dout, d_out, d_lse, d_q, d_k, d_v, B, T, H, KV, hd,
                                            d_scratch));
        CHECK_OK(tn_cuda_download(again, d_dq, sizeof(float) * (size_t)nq));
        CHECKF(memcmp(again, dq, sizeof(float) * (size_t)nq) == 0, "%s: dq differs on a second run", shape);
        CHECK_OK(tn_cuda_download(again, d_dk, sizeof(float) * (size_t)nk));
        CHECKF(memcmp(again, dk, sizeof(float) * (size_t)nk) == 0, "%s: dk differs on a second run", shape);
        CHECK_OK(tn_cuda_download(again, d_dv, sizeof(float) * (size_t)nk));
        CHECKF(memcmp(again, dv, sizeof(float) * (size_t)nk) == 0, "%s: dv differs on a second run", shape);
        free(again);
    }

    float *dev[] = {d_q, d_k, d_v, d_dout, d_out, d_lse, d_dq, d_dk, d_dv, d_scratch};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) tn_cuda_free(dev[i]);
    float *host[] = {q, k, v, dout, out_ref, probs, dq_ref, dk_ref, dv_ref, cpu_scratch, out, lse, dq, dk, dv};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
}

/* A refused call returns -1 with a message containing `what`. */
static void expect_refusal(int rc, const char *what) {
    CHECKF(rc == -1 && strstr(tn_errmsg(), what) != NULL, "expected a refusal mentioning \"%s\", got %d (%s)", what,
           rc, rc ? tn_errmsg() : "no error");
    tn_err_clear();
}

static void test_refusals(void) {
    float *a = tn_cuda_alloc(4096 * sizeof(float)), *s = tn_cuda_alloc(4096 * sizeof(float));
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, 4, 2, 2, 15), "head dim 15");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, 4, 2, 2, 130), "head dim 130");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, 4, 2, 2, 0), "head dim 0");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, 4, 3, 2, 16), "not a multiple");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, 4, 2, 0, 16), "not a multiple");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, -1, 2, 2, 16), "T = -1");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, 1, (int64_t)65536 * 64, 2, 2, 16), "too long");
    expect_refusal(tn_cuda_attention(a, a, a, a, a, (int64_t)1 << 31, 4, 2, 2, 16), "too many rows");
    expect_refusal(tn_cuda_attention(a, NULL, a, a, a, 1, 4, 2, 2, 16), "NULL");
    expect_refusal(tn_cuda_attention_backward(a, a, a, a, a, a, a, a, a, 1, 4, 2, 2, 7, s), "head dim 7");
    expect_refusal(tn_cuda_attention_backward(a, a, a, a, a, a, a, a, a, 1, 4, 4, 3, 16, s), "not a multiple");
    expect_refusal(tn_cuda_attention_backward(a, a, a, a, a, a, a, a, a, 1, 4, 2, 2, 16, NULL), "NULL");
    /* nothing to do: no launch, no error */
    CHECK_OK(tn_cuda_attention(a, a, a, a, a, 0, 4, 2, 2, 16));
    CHECK_OK(tn_cuda_attention_backward(a, a, a, a, a, a, a, a, a, 1, 0, 2, 2, 16, s));
    CHECK(tn_cuda_attention_scratch_floats(2, 5, 6, 3, 64) >= 2 * 5 * 6);
    tn_cuda_free(a);
    tn_cuda_free(s);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_rng g;
    tn_rng_seed(&g, 11);
    printf("normwise errors against the CPU (lse: against double):\n");
    test_shape(&g, 1, 1, 1, 1, 16, 0);    /* one row */
    test_shape(&g, 2, 37, 4, 2, 16, 0);   /* T inside one tile, groups of 2 */
    test_shape(&g, 1, 130, 4, 1, 64, 1);  /* three tiles, the last with 2 rows; one group of 4; twice */
    test_shape(&g, 2, 70, 3, 3, 64, 0);   /* H = KV */
    test_shape(&g, 1, 64, 2, 2, 32, 0);   /* exactly one tile */
    test_shape(&g, 1, 96, 4, 2, 128, 0);  /* the largest head dim */
    test_shape(&g, 1, 65, 2, 1, 80, 0);   /* 80 in the 96 class: a half-empty last chunk of dims */
    test_shape(&g, 1, 50, 4, 2, 24, 0);   /* 24 in the 32 class */
    test_shape(&g, 1, 33, 2, 1, 2, 0);    /* the smallest head dim */
    test_shape(&g, 2, 200, 6, 2, 64, 0);  /* four tiles, groups of 3 */
    test_shape(&g, 1, 150, 2, 1, 128, 0); /* three tiles at the largest head dim */
    test_shape(&g, 1, 256, 9, 3, 64, 0);  /* SmolLM2-135M's heads: 9 q heads on 3 kv heads, hd 64 */
    printf("largest: out %.2e (tol %.0e), lse %.2e (tol %.0e), dq %.2e, dk %.2e, dv %.2e (tol %.0e)\n", g_max_err[0],
           TOL_OUT, g_max_err[1], TOL_LSE, g_max_err[2], g_max_err[3], g_max_err[4], TOL_GRAD);
    test_refusals();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
