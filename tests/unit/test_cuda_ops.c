/* The CUDA ops table's own entries (kernels/cuda/ops_table.cu, blas.cu, backend.cu), the ones the kernel
 * tests do not cover: the backend opens device 0 (and refuses a device index past the count), memory moves
 * (upload, download, copy, zero), the allocation count, the reservation that a run's memory plan is
 * carved from, and the three row-major linear products mapped
 * onto cuBLAS's column-major GEMM (y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x, with beta 0 and 1) against the CPU ops
 * on odd shapes: bit for bit through the emulator (it calls the same OpenBLAS the CPU does), within 1e-5 on
 * a GPU. TF32 and BF16 compute: the emulator's result equals FP32 products of inputs rounded to 10 / 7
 * mantissa bits, and differs from FP32. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/ops_cpu.h"


#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

static const tn_ops *g_ops;
static int g_emulated;

static float *dev_from(const float *host, int64_t n) {
    float *d = g_ops->alloc((size_t)n * sizeof(float));
    if (d && g_ops->upload(d, host, (size_t)n * sizeof(float)) != 0) {
        g_ops->free(d);
        return NULL;
    }
    return d;
}

static void rand_floats(tn_rng *g, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(g);
}

static void test_open(void) {
    const tn_cuda_backend *b = tn_cuda_backend_get();
    char name[200];
    int cc = 0, emulated = -1;
    CHECK_OK(b->open(0, name, (int)sizeof name, &cc, &emulated));
    CHECK(cc >= 50 && emulated == tn_cuda_is_emulated());
    CHECK(b->open(7, name, (int)sizeof name, &cc, &emulated) != 0);
    CHECK(strstr(tn_errmsg(), "cuda:7") != NULL);
    tn_err_clear();
    int64_t free_b = 0, total_b = 0;
    CHECK_OK(b->mem_info(&free_b, &total_b));
    CHECK(free_b > 0 && total_b >= free_b);
    g_ops = b->ops();
    CHECK(g_ops->device_memory == 1 && !strcmp(g_ops->name, "cuda"));
    printf("device: %s (cc %d)\n", name, cc);
}

static void test_memory(void) {
    float h[100], back[100];
    for (int i = 0; i < 100; i++) h[i] = (float)i;
    int64_t before = 0, during = 0, peak = 0, after = 0;
    g_ops->mem_usage(&before, NULL);
    float *a = dev_from(h, 100), *b = g_ops->alloc(100 * sizeof(float));
    CHECK(a && b);
    g_ops->mem_usage(&during, &peak);
    CHECK(during - before == 800 && peak >= during);
    CHECK_OK(g_ops->copy(b, a, 100 * sizeof(float)));
    CHECK_OK(g_ops->zero(a + 10, 5 * sizeof(float)));
    CHECK_OK(g_ops->download(back, b, sizeof back));
    CHECK(memcmp(back, h, sizeof h) == 0);
    CHECK_OK(g_ops->download(back, a, sizeof back));
    CHECK(back[9] == 9.0f && back[10] == 0.0f && back[14] == 0.0f && back[15] == 15.0f);
    CHECK_OK(g_ops->sync());
    g_ops->free(a);
    g_ops->free(b);
    g_ops->mem_usage(&after, NULL);
    CHECK(after == before);
}

/* The reservation (tn_cuda_reserve): carvings come from it in 256-byte spans, freed spans coalesce and are
 * reused, an allocation past it falls back to its own, the held memory is the reservation plus that one, a
 * new reservation is refused while carvings are live. In the emulator only when TN_CUDA_EMU_POOL=1. */
static void test_reservation(void) {
    if (g_emulated) setenv("TN_CUDA_EMU_POOL", "1", 1);
    int64_t before = 0, held = 0;
    g_ops->mem_usage(&before, NULL);
    CHECK_OK(g_ops->reserve(4096));
    g_ops->mem_usage(&held, NULL);
    CHECK(held - before == 4096);
    char *a = g_ops->alloc(100), *b = g_ops->alloc(300), *c = g_ops->alloc(1000);
    CHECK(a && b && c);
    CHECK(b - a == 256 && c - b == 512); /* spans of 256 bytes, first fit */
    g_ops->mem_usage(&held, NULL);
    CHECK(held - before == 4096); /* inside the reservation: nothing more held */
    g_ops->free(a);
    g_ops->free(b);
    char *d = g_ops->alloc(700); /* the coalesced 768 bytes where a and b were */
    CHECK(d == a);
    char *e = g_ops->alloc(3000); /* more than is left: an allocation of its own */
    CHECK(e != NULL && (e < a || e >= a + 4096));
    g_ops->mem_usage(&held, NULL);
    CHECK(held - before == 4096 + 3000);
    CHECK(g_ops->reserve(8192) != 0 && strstr(tn_errmsg(), "still holds")); /* c and d are live */
    tn_err_clear();
    float x[4] = {1, 2, 3, 4}, y[4];
    CHECK_OK(g_ops->upload(c, x, sizeof x));
    CHECK_OK(g_ops->download(y, c, sizeof y));
    CHECK(memcmp(x, y, sizeof x) == 0);
    g_ops->free(c);
    g_ops->free(d);
    g_ops->free(e);
    CHECK_OK(g_ops->reserve(0)); /* released */
    g_ops->mem_usage(&held, NULL);
    CHECK(held == before);
    if (g_emulated) unsetenv("TN_CUDA_EMU_POOL");
}

/* max |a - b| / max |b| */
static double rel(const float *a, const float *b, int64_t n) { return tn_test_rel_err(a, b, (size_t)n); }

static void test_linear(tn_rng *g) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 64, 33}, {64, 130, 96}, {5, 257, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = malloc(sizeof(float) * N * in), *W = malloc(sizeof(float) * out * in),
              *dy = malloc(sizeof(float) * N * out), *y0 = malloc(sizeof(float) * N * out),
              *ref = malloc(sizeof(float) * (N * in + out * in + N * out)), *got = malloc(sizeof(float) * (N * in + out * in + N * out));
        rand_floats(g, x, N * in);
        rand_floats(g, W, out * in);
        rand_floats(g, dy, N * out);
        rand_floats(g, y0, N * out);
        float *dx_, *dW_, *dy_ = dev_from(dy, N * out), *x_ = dev_from(x, N * in), *W_ = dev_from(W, out * in);
        for (int beta = 0; beta <= 1; beta++) {
            /* y = x·Wᵀ (+ y) */
            memcpy(ref, y0, sizeof(float) * N * out);
            tn_op_linear(ref, x, W, N, in, out, (float)beta);
            float *y_ = dev_from(y0, N * out);
            CHECK_OK(g_ops->linear(y_, x_, W_, N, in, out, (float)beta));
            CHECK_OK(g_ops->download(got, y_, sizeof(float) * N * out));
            double e = rel(got, ref, N * out);
            CHECKF(g_emulated ? e == 0 : e < 1e-5, "linear [%lld,%lld,%lld] beta %d: %.3g", (long long)N,
                   (long long)in, (long long)out, beta, e);
            g_ops->free(y_);
            /* dx = dy·W (+ dx) */
            for (int64_t i = 0; i < N * in; i++) ref[i] = 0.25f * (float)(i % 7);
            dx_ = dev_from(ref, N * in);
            tn_op_linear_dx(ref, dy, W, N, in, out, (float)beta);
            CHECK_OK(g_ops->linear_dx(dx_, dy_, W_, N, in, out, (float)beta));
            CHECK_OK(g_ops->download(got, dx_, sizeof(float) * N * in));
            e = rel(got, ref, N * in);
            CHECKF(g_emulated ? e == 0 : e < 1e-5, "linear_dx: %.3g", e);
            g_ops->free(dx_);
            /* dW = dyᵀ·x (+ dW) */
            for (int64_t i = 0; i < out * in; i++) ref[i] = 0.5f * (float)(i % 5);
            dW_ = dev_from(ref, out * in);
            tn_op_linear_dw(ref, dy, x, N, in, out, (float)beta);
            CHECK_OK(g_ops->linear_dw(dW_, dy_, x_, N, in, out, (float)beta));
            CHECK_OK(g_ops->download(got, dW_, sizeof(float) * out * in));
            e = rel(got, ref, out * in);
            CHECKF(g_emulated ? e == 0 : e < 1e-5, "linear_dw: %.3g", e);
            g_ops->free(dW_);
        }
        g_ops->free(dy_);
        g_ops->free(x_);
        g_ops->free(W_);
        free(x), free(W), free(dy), free(y0), free(ref), free(got);
    }
}

/* Round to `bits` mantissa bits, to nearest even. */
static float round_bits(float x, int bits) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const int drop = 23 - bits;
    const uint32_t half = 1u << (drop - 1), rest = u & ((1u << drop) - 1);
    u >>= drop;
    if (rest > half || (rest == half && (u & 1))) u++;
    u <<= drop;
    memcpy(&x, &u, 4);
    return x;
}

static void test_precision(tn_rng *g) {
    const int64_t N = 9, in = 40, out = 11;
    float x[9 * 40], W[11 * 40], xr[9 * 40], Wr[11 * 40], y[9 * 11], ref[9 * 11], fp32[9 * 11];
    rand_floats(g, x, N * in);
    rand_floats(g, W, out * in);
    tn_op_linear(fp32, x, W, N, in, out, 0.0f);
    float *x_ = dev_from(x, N * in), *W_ = dev_from(W, out * in), *y_ = g_ops->alloc(sizeof y);
    const int modes[2] = {TN_CUDA_TF32, TN_CUDA_BF16}, bits[2] = {10, 7};
    for (int m = 0; m < 2; m++) {
        CHECK_OK(tn_cuda_set_precision(modes[m]));
        CHECK_OK(g_ops->linear(y_, x_, W_, N, in, out, 0.0f));
        CHECK_OK(g_ops->download(y, y_, sizeof y));
        for (int64_t i = 0; i < N * in; i++) xr[i] = round_bits(x[i], bits[m]);
        for (int64_t i = 0; i < out * in; i++) Wr[i] = round_bits(W[i], bits[m]);
        tn_op_linear(ref, xr, Wr, N, in, out, 0.0f);
        const double e_ref = rel(y, ref, N * out), e_fp32 = rel(y, fp32, N * out);
        if (g_emulated) CHECKF(e_ref == 0, "precision %d: %.3g from the rounded-input product", modes[m], e_ref);
        CHECKF(e_fp32 > 0 && e_fp32 < (m ? 2e-2 : 2e-3), "precision %d: %.3g from FP32", modes[m], e_fp32);
    }
    CHECK_OK(tn_cuda_set_precision(TN_CUDA_FP32));
    CHECK(tn_cuda_set_precision(7) != 0);
    tn_err_clear();
    g_ops->free(x_);
    g_ops->free(W_);
    g_ops->free(y_);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    g_emulated = tn_cuda_is_emulated();
    tn_rng g;
    tn_rng_seed(&g, 11);
    test_open();
    test_memory();
    test_reservation();
    test_linear(&g);
    /* tf32 / bf16 exist from compute capability 8.0 (the emulator applies the rounding whatever it reports) */
    int cc = 0, emulated = 0;
    char name[200];
    if (g_emulated || (tn_cuda_backend_get()->open(0, name, (int)sizeof name, &cc, &emulated) == 0 && cc >= 80))
        test_precision(&g);
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
