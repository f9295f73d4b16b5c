/* The CUDA emulator (kernels/cuda/emu/) and, in a GPU build, the card, feature by feature: a warp-shuffle
 * softmax, an RMSNorm through dynamic shared memory, a tiled sgemm through static shared memory and
 * __syncthreads, a __dp4a ternary gemv, a ballot/atomic vote kernel, __half/__nv_bfloat16 conversions,
 * each against scalar C. In the emulated build also: a reduction with one __syncthreads() left out gives a
 * wrong sum in at least one thread order (ctest runs this test with TN_CUDA_EMU_ORDER forward and reverse;
 * the broken kernel is run in the order given and must fail in forward order), launch limits (1025
 * threads, 48 KiB + 4 of dynamic shared memory, a host pointer argument) are refused, a copy that leaves its
 * allocation is refused, TN_CUDA_EMU_MEM caps allocations, and a host read of device memory kills the
 * process. Without CUDA the test is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"

#ifdef TN_HAVE_CUDA
#include "tests/cuda/emu_selftest.h"
#endif

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef TN_HAVE_CUDA

static void rand_floats(tn_rng *g, float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(g);
}

static void test_softmax(tn_rng *g) {
    const int rows = 5, n = 77;
    float x[5 * 77], y[5 * 77], ref[5 * 77];
    rand_floats(g, x, rows * n, 3.0f);
    for (int r = 0; r < rows; r++) {
        float m = -INFINITY;
        double s = 0;
        for (int j = 0; j < n; j++) m = fmaxf(m, x[r * n + j]);
        for (int j = 0; j < n; j++) s += exp((double)x[r * n + j] - m);
        for (int j = 0; j < n; j++) ref[r * n + j] = (float)(exp((double)x[r * n + j] - m) / s);
    }
    float *dx = tn_test_dev_copy(x, sizeof x), *dy = tn_cuda_alloc(sizeof y);
    CHECK_OK(tn_selftest_softmax(dx, dy, rows, n));
    CHECK_OK(tn_cuda_download(y, dy, sizeof y));
    double err = tn_test_rel_err(y, ref, (size_t)(rows * n));
    CHECKF(err < 1e-5, "warp-shuffle softmax rel err %.3g", err);
    tn_cuda_free(dx);
    tn_cuda_free(dy);
}

static void test_rmsnorm(tn_rng *g) {
    const int rows = 3, n = 1000;
    float *x = malloc(sizeof(float) * rows * n), *y = malloc(sizeof(float) * rows * n),
          *ref = malloc(sizeof(float) * rows * n);
    rand_floats(g, x, rows * n, 1.0f);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < n; j++) ss += (double)x[r * n + j] * x[r * n + j];
        double rs = 1.0 / sqrt(ss / n + 1e-5);
        for (int j = 0; j < n; j++) ref[r * n + j] = (float)(x[r * n + j] * rs);
    }
    float *dx = tn_test_dev_copy(x, sizeof(float) * rows * n), *dy = tn_cuda_alloc(sizeof(float) * rows * n);
    for (int threads = 32; threads <= 1024; threads *= 4) {
        CHECK_OK(tn_selftest_rmsnorm(dx, dy, rows, n, 1e-5f, threads));
        CHECK_OK(tn_cuda_download(y, dy, sizeof(float) * rows * n));
        double err = tn_test_rel_err(y, ref, (size_t)(rows * n));
        CHECKF(err < 1e-5, "dynamic-shared-memory RMSNorm, %d threads: rel err %.3g", threads, err);
    }
    tn_cuda_free(dx);
    tn_cuda_free(dy);
    free(x);
    free(y);
    free(ref);
}

static void test_sgemm(tn_rng *g) {
    const int M = 37, N = 21, K = 50;
    float A[37 * 50], B[50 * 21], C[37 * 21], ref[37 * 21];
    rand_floats(g, A, M * K, 1.0f);
    rand_floats(g, B, K * N, 1.0f);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[i * K + k] * B[k * N + j];
            ref[i * N + j] = (float)s;
        }
    float *dA = tn_test_dev_copy(A, sizeof A), *dB = tn_test_dev_copy(B, sizeof B), *dC = tn_cuda_alloc(sizeof C);
    CHECK_OK(tn_selftest_sgemm(dA, dB, dC, M, N, K));
    CHECK_OK(tn_cuda_download(C, dC, sizeof C));
    double err = tn_test_rel_err(C, ref, (size_t)(M * N));
    CHECKF(err < 1e-5, "tiled sgemm rel err %.3g", err);
    tn_cuda_free(dA);
    tn_cuda_free(dB);
    tn_cuda_free(dC);
}

static void test_dp4a(tn_rng *g) {
    const int rows = 9, n = 196;
    int8_t w[9 * 196], x[196];
    int32_t y[9], ref[9];
    for (int i = 0; i < rows * n; i++) w[i] = (int8_t)((int)tn_rng_below(g, 3) - 1);
    for (int j = 0; j < n; j++) x[j] = (int8_t)((int)tn_rng_below(g, 255) - 127);
    for (int r = 0; r < rows; r++) {
        ref[r] = 0;
        for (int j = 0; j < n; j++) ref[r] += w[r * n + j] * x[j];
    }
    int8_t *dw = tn_test_dev_copy(w, sizeof w), *dx = tn_test_dev_copy(x, sizeof x);
    int32_t *dy = tn_cuda_alloc(sizeof y);
    CHECK_OK(tn_selftest_dp4a_gemv(dw, dx, dy, rows, n));
    CHECK_OK(tn_cuda_download(y, dy, sizeof y));
    CHECK(memcmp(y, ref, sizeof y) == 0);
    tn_cuda_free(dw);
    tn_cuda_free(dx);
    tn_cuda_free(dy);
}

static void test_vote(tn_rng *g) {
    const int n = 320;
    const float thr = 1.0f;
    float gr[320];
    int8_t vote[320], ref_vote[320];
    unsigned flags[10], ref_flags[10] = {0};
    unsigned long long count = 0, ref_count = 0;
    rand_floats(g, gr, n, 1.0f);
    for (int i = 0; i < n; i++) vote[i] = ref_vote[i] = (int8_t)((int)tn_rng_below(g, 21) - 10);
    for (int i = 0; i < n; i++)
        if (fabsf(gr[i]) > thr) {
            ref_vote[i] = (int8_t)(ref_vote[i] + (gr[i] < 0 ? 1 : -1));
            ref_flags[i / 32] |= 1u << (i % 32);
            ref_count++;
        }
    float *dg = tn_test_dev_copy(gr, sizeof gr);
    int8_t *dv = tn_test_dev_copy(vote, sizeof vote);
    unsigned *df = tn_cuda_alloc(sizeof flags);
    unsigned long long *dc = tn_test_dev_copy(&count, sizeof count);
    CHECK_OK(tn_selftest_vote(dg, dv, df, dc, n, thr));
    CHECK_OK(tn_cuda_download(vote, dv, sizeof vote));
    CHECK_OK(tn_cuda_download(flags, df, sizeof flags));
    CHECK_OK(tn_cuda_download(&count, dc, sizeof count));
    CHECK(memcmp(vote, ref_vote, sizeof vote) == 0);
    CHECK(memcmp(flags, ref_flags, sizeof flags) == 0);
    CHECKF(count == ref_count, "voters %llu, expected %llu", count, ref_count);
    tn_cuda_free(dg);
    tn_cuda_free(dv);
    tn_cuda_free(df);
    tn_cuda_free(dc);
}

/* Round to nearest even of float -> binary16 / bfloat16 and back, computed bit by bit (normal range). */
static float ref_round(float x, int mant_bits) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const int drop = 23 - mant_bits;
    uint32_t half = 1u << (drop - 1), rest = u & ((1u << drop) - 1), keep = u >> drop;
    if (rest > half || (rest == half && (keep & 1))) keep++;
    u = keep << drop;
    float r;
    memcpy(&r, &u, 4);
    return r;
}

static void test_half(tn_rng *g) {
    const int n = 300;
    float x[300], yh[300], yb[300];
    rand_floats(g, x, n, 10.0f);
    float *dx = tn_test_dev_copy(x, sizeof x), *dh = tn_cuda_alloc(sizeof yh), *db = tn_cuda_alloc(sizeof yb);
    CHECK_OK(tn_selftest_half(dx, dh, db, n));
    CHECK_OK(tn_cuda_download(yh, dh, sizeof yh));
    CHECK_OK(tn_cuda_download(yb, db, sizeof yb));
    int bad_h = 0, bad_b = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > 6.2e-5f && yh[i] != ref_round(x[i], 10)) bad_h++;
        if (yb[i] != ref_round(x[i], 7)) bad_b++;
    }
    CHECKF(bad_h == 0 && bad_b == 0, "%d half and %d bfloat16 conversions differ", bad_h, bad_b);
    tn_cuda_free(dx);
    tn_cuda_free(dh);
    tn_cuda_free(db);
}

/* The correct reduction is exact on integers whatever the order; the broken one reads shared memory
 * that other threads have not written yet when the emulator runs thread 0 first (forward order). */
static void test_reduce(tn_rng *g, int emulated) {
    const int n = 1000;
    float x[1000], out, ref = 0;
    for (int i = 0; i < n; i++) {
        x[i] = (float)((int)tn_rng_below(g, 9) - 4);
        ref += x[i];
    }
    float *dx = tn_test_dev_copy(x, sizeof x), *dout = tn_cuda_alloc(sizeof(float));
    for (int threads = 64; threads <= 256; threads *= 2) {
        CHECK_OK(tn_selftest_reduce(dx, dout, n, threads, 0));
        CHECK_OK(tn_cuda_download(&out, dout, sizeof out));
        CHECKF(out == ref, "reduction with %d threads: %g, expected %g", threads, out, ref);
    }
    const char *order = getenv("TN_CUDA_EMU_ORDER");
    if (emulated && !(order && !strcmp(order, "reverse"))) {
        CHECK_OK(tn_selftest_reduce(dx, dout, n, 256, 1));
        CHECK_OK(tn_cuda_download(&out, dout, sizeof out));
        CHECKF(out != ref, "the reduction without its __syncthreads() gave the right sum %g in forward order: the "
                           "emulator did not expose the missing barrier", out);
    }
    tn_cuda_free(dx);
    tn_cuda_free(dout);
}

/* Launch limits and copy checks: each refused with an error (the CUDA error, as on a card). */
static void test_refusals(void) {
    float x[64] = {0}, y[64];
    float *dx = tn_test_dev_copy(x, sizeof x), *dy = tn_cuda_alloc(sizeof y);
    CHECK(tn_selftest_launch_raw(1025, 64 * sizeof(float), dx, dy, 64) != 0);
    CHECK(tn_selftest_launch_raw(64, 48 * 1024 + 4, dx, dy, 64) != 0);
    CHECK(tn_selftest_launch_raw(64, 64 * sizeof(float), x, dy, 64) != 0); /* host pointer argument */
    CHECK_OK(tn_selftest_launch_raw(64, 64 * sizeof(float), dx, dy, 64));
    CHECK(tn_cuda_upload(dx, x, sizeof x + 4) != 0); /* past the end of the allocation */
    CHECK(tn_cuda_download(y, dy + 1, sizeof y) != 0);
    tn_err_clear();
    tn_cuda_free(dx);
    tn_cuda_free(dy);
}

/* Device memory is not host memory: a host read of a device pointer outside a launch or a copy kills the
 * process, as on a card (a child process does the read). */
static void test_host_read_faults(void) {
    float x[4] = {1, 2, 3, 4};
    float *dx = tn_test_dev_copy(x, sizeof x);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        volatile float v = dx[1]; /* must fault */
        (void)v;
        _exit(0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT ||
                                   WTERMSIG(status) == SIGBUS),
           "a host read of device memory did not fault (status 0x%x)", status);
    tn_cuda_free(dx);
}

/* TN_CUDA_EMU_MEM (set to 64M by the test's environment): an allocation past it fails with a message. */
static void test_mem_cap(void) {
    const char *cap = getenv("TN_CUDA_EMU_MEM");
    if (!cap) return;
    void *big = tn_cuda_alloc((size_t)128 << 20);
    CHECK(big == NULL);
    CHECK(strstr(tn_errmsg(), "out of memory") != NULL);
    tn_err_clear();
    void *fits = tn_cuda_alloc((size_t)16 << 20);
    CHECK(fits != NULL);
    tn_cuda_free(fits);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    const int emulated = tn_cuda_is_emulated();
    tn_rng g;
    tn_rng_seed(&g, 7);
    test_softmax(&g);
    test_rmsnorm(&g);
    test_sgemm(&g);
    test_dp4a(&g);
    test_vote(&g);
    test_half(&g);
    test_reduce(&g, emulated);
    if (emulated) {
        test_refusals();
        test_mem_cap();
        test_host_read_faults();
    }
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
