/* kernels/packed.h, T2 and activations: pack/unpack round trips and padding, invalid values refused,
 * int8 absmax quantization (SIMD bit-exact with scalar, bounds, reconstruction), every SIMD level of
 * tn_t2_gemv / tn_t2_gemm bit-exact with the scalar reference on odd shapes (1x1, tails, tall, wide,
 * multi-threaded; prompts of 1 to 70 tokens for the AVX-512 unpack-once path), gemm equal to per-token
 * gemv, the scale math against a double reference, and the TN_KERNELS cap. */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/packed.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

static const int64_t SHAPES[][2] = {{1, 1},     {1, 255},  {3, 256},   {5, 257},  {7, 513},  {4, 7},
                                    {9, 64},    {2, 1000}, {67, 1000}, {1029, 64}, {3, 5000}, {130, 2085},
                                    {256, 2048}, {13, 768}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

static void rand_ternary(tn_rng *g, int8_t *w, int64_t n) {
    for (int64_t i = 0; i < n; i++) w[i] = (int8_t)((int)tn_rng_below(g, 3) - 1);
}

static void rand_floats(tn_rng *g, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(g) * (i % 17 == 0 ? 4.0f : 1.0f);
}

static void test_env_cap(void) {
    /* Must run first: the environment cap is read once, on first use. */
    setenv("TN_KERNELS", "avx2", 1);
    tn_isa want = tn_cpu_best_isa() < TN_ISA_AVX2 ? tn_cpu_best_isa() : TN_ISA_AVX2;
    CHECK(tn_kernels_isa() == want);
    tn_isa p;
    CHECK(tn_isa_parse("avx512", &p) == 0 && p == TN_ISA_AVX512);
    CHECK(tn_isa_parse("sse9", &p) != 0);
    /* The code cap overrides the environment, limited by the CPU. */
    CHECK(tn_kernels_set_isa(TN_ISA_SCALAR) == TN_ISA_SCALAR);
    CHECK(tn_kernels_set_isa(TN_ISA_AVX512) == tn_cpu_best_isa());
    printf("cpu: best kernel level %s\n", tn_isa_name(tn_cpu_best_isa()));
}

static void test_pack(void) {
    tn_rng g;
    tn_rng_seed(&g, 1);
    for (size_t s = 0; s < N_SHAPES; s++) {
        int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        int8_t *w = tn_alloc((size_t)(rows * cols), 1), *w2 = tn_alloc((size_t)(rows * cols), 1);
        uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
        rand_ternary(&g, w, rows * cols);
        CHECK_OK(tn_t2_pack(w, rows, cols, p));
        CHECK_OK(tn_t2_unpack(p, rows, cols, w2));
        CHECKF(memcmp(w, w2, (size_t)(rows * cols)) == 0, "round trip %lldx%lld", (long long)rows, (long long)cols);
        /* Padding columns are code 1 (w = 0). */
        size_t rb = tn_t2_row_bytes(cols);
        int pad_ok = 1;
        for (int64_t c = cols; c < (int64_t)(rb / 64) * 256; c++) {
            int64_t in = c % 256;
            int code = (p[(rows - 1) * rb + (c / 256) * 64 + in % 64] >> (2 * (in / 64))) & 3;
            if (code != 1) pad_ok = 0;
        }
        CHECK(pad_ok);
        tn_free(w);
        tn_free(w2);
        tn_free(p);
    }
    CHECK(tn_t2_row_bytes(256) == 64 && tn_t2_row_bytes(257) == 128 && tn_t2_packed_size(3, 1) == 192);
    int8_t bad[4] = {0, 1, 2, -1};
    uint8_t out[64];
    CHECK(tn_t2_pack(bad, 1, 4, out) != 0);
    CHECK(strstr(tn_errmsg(), "not in {-1, 0, 1}") != NULL);
    /* A corrupt code 3 is refused by unpack. */
    int8_t ok[4] = {0, 1, 0, -1}, back[4];
    CHECK_OK(tn_t2_pack(ok, 1, 4, out));
    out[2] |= 3;
    CHECK(tn_t2_unpack(out, 1, 4, back) != 0);
    /* Byte layout: column 64k + j of block 0 is in byte j, bits 2k. */
    int8_t one[256];
    memset(one, 0, sizeof one);
    one[64 + 5] = 1;  /* k = 1, j = 5 -> code 2 at bits 2-3 of byte 5 */
    one[192 + 0] = -1; /* k = 3, j = 0 -> code 0 at bits 6-7 of byte 0 */
    CHECK_OK(tn_t2_pack(one, 1, 256, out));
    CHECK(out[5] == 0x59 && out[0] == 0x15 && out[1] == 0x55);
}

static void test_act_quant(void) {
    tn_rng g;
    tn_rng_seed(&g, 2);
    const int64_t ns[] = {0, 1, 7, 31, 32, 33, 100, 2048, 5633};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int64_t n = ns[k];
        float *x = tn_alloc((size_t)n + 1, sizeof(float));
        int8_t *q0 = tn_alloc((size_t)n + 1, 1), *q1 = tn_alloc((size_t)n + 1, 1);
        rand_floats(&g, x, n);
        if (n > 3) x[3] = 2.5f * (float)(x[0] != 0); /* a tie case, scaled */
        float s0 = -1, s1 = -1;
        tn_kernels_set_isa(TN_ISA_SCALAR);
        tn_act_quant_i8(x, n, q0, &s0);
        tn_kernels_set_isa(TN_ISA_AVX512);
        tn_act_quant_i8(x, n, q1, &s1);
        CHECKF(s0 == s1 && memcmp(q0, q1, (size_t)n) == 0, "act quant simd == scalar, n=%lld", (long long)n);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            if (q0[i] == -128) ok = 0;
            if (fabsf(q0[i] * s0 - x[i]) > 0.5001f * s0) ok = 0;
        }
        CHECK(ok);
        tn_free(x);
        tn_free(q0);
        tn_free(q1);
    }
    /* All zeros: scale 0, q 0. Rounding is half to even. */
    float z[5] = {0, 0, 0, 0, 0};
    int8_t qz[5] = {1, 1, 1, 1, 1};
    float sz = 1;
    tn_act_quant_i8(z, 5, qz, &sz);
    CHECK(sz == 0.0f && qz[0] == 0 && qz[4] == 0);
    float h[2] = {127.0f, 0.5f}; /* scale 1: 0.5 -> 0 (half to even) */
    int8_t qh[2];
    float sh;
    tn_act_quant_i8(h, 2, qh, &sh);
    CHECK(sh == 1.0f && qh[0] == 127 && qh[1] == 0);
    /* Rows variant. */
    float X[6] = {1, -2, 4, 0, 0, -8};
    int8_t Q[6];
    float S[2];
    tn_act_quant_i8_rows(X, 2, 3, Q, S);
    CHECK(S[0] == 4.0f / 127 && Q[2] == 127 && S[1] == 8.0f / 127 && Q[5] == -127);
}

/* Every level's gemv and gemm equal the scalar reference bit for bit; scale math against double. */
static void test_products(void) {
    tn_rng g;
    tn_rng_seed(&g, 3);
    tn_isa best = tn_cpu_best_isa();
    for (size_t s = 0; s < N_SHAPES; s++) {
        int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        const int64_t NT = 7;
        int8_t *w = tn_alloc((size_t)(rows * cols), 1);
        uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
        float *x = tn_alloc((size_t)(NT * cols), sizeof(float)), *rs = tn_alloc((size_t)rows, sizeof(float));
        int8_t *xq = tn_alloc((size_t)(NT * cols), 1);
        float xs[7];
        float *y_ref = tn_alloc((size_t)(NT * rows), sizeof(float)), *y = tn_alloc((size_t)(NT * rows), sizeof(float));
        rand_ternary(&g, w, rows * cols);
        rand_floats(&g, x, NT * cols);
        for (int64_t r = 0; r < rows; r++) rs[r] = 0.5f + tn_rng_uniform(&g);
        CHECK_OK(tn_t2_pack(w, rows, cols, p));
        tn_kernels_set_isa(TN_ISA_SCALAR);
        tn_act_quant_i8_rows(x, NT, cols, xq, xs);
        const float ts = 0.037f;
        for (int64_t t = 0; t < NT; t++) tn_t2_gemv(p, rs, ts, rows, cols, xq + t * cols, xs[t], y_ref + t * rows);

        /* Scale math: double reference of dequantized weights x dequantized activations. */
        double maxd = 0, maxr = 0;
        for (int64_t t = 0; t < NT; t++)
            for (int64_t r = 0; r < rows; r++) {
                double acc = 0;
                for (int64_t c = 0; c < cols; c++)
                    acc += ((double)ts * rs[r] * w[r * cols + c]) * ((double)xq[t * cols + c] * xs[t]);
                maxd = fmax(maxd, fabs(acc - y_ref[t * rows + r]));
                maxr = fmax(maxr, fabs(acc));
            }
        CHECKF(maxd <= 1e-5 * maxr + 1e-30, "scale math %lldx%lld: %g vs %g", (long long)rows, (long long)cols, maxd, maxr);

        for (int lv = TN_ISA_SCALAR; lv <= (int)best; lv++) {
            if (tn_kernels_set_isa((tn_isa)lv) != (tn_isa)lv) continue; /* e.g. avxvnni absent */
            memset(y, 0, (size_t)(NT * rows) * sizeof(float));
            for (int64_t t = 0; t < NT; t++) tn_t2_gemv(p, rs, ts, rows, cols, xq + t * cols, xs[t], y + t * rows);
            CHECKF(memcmp(y, y_ref, (size_t)(NT * rows) * sizeof(float)) == 0, "gemv %s %lldx%lld",
                   tn_isa_name((tn_isa)lv), (long long)rows, (long long)cols);
            for (int64_t nt = 1; nt <= NT; nt += (nt < 5 ? 1 : 2)) {
                memset(y, 0, (size_t)(NT * rows) * sizeof(float));
                tn_t2_gemm(p, rs, ts, rows, cols, nt, xq, xs, y);
                CHECKF(memcmp(y, y_ref, (size_t)(nt * rows) * sizeof(float)) == 0, "gemm %s %lldx%lld n_tok=%lld",
                       tn_isa_name((tn_isa)lv), (long long)rows, (long long)cols, (long long)nt);
            }
            /* NULL row scale. */
            tn_t2_gemv(p, NULL, 1.0f, rows, cols, xq, xs[0], y);
            float y1;
            tn_isa cur = tn_kernels_isa();
            tn_kernels_set_isa(TN_ISA_SCALAR);
            tn_t2_gemv(p + (rows - 1) * tn_t2_row_bytes(cols), NULL, 1.0f, 1, cols, xq, xs[0], &y1);
            tn_kernels_set_isa(cur);
            CHECK(y[rows - 1] == y1);
        }
        tn_free(w);
        tn_free(p);
        tn_free(x);
        tn_free(rs);
        tn_free(xq);
        tn_free(y_ref);
        tn_free(y);
    }
    tn_kernels_set_isa(TN_ISA_AVX512);
}

/* Prompts (many tokens: the AVX-512 path that unpacks the codes once, from 16 tokens on) against the
 * scalar reference, token by token: rows that are not a multiple of the 48-row group or of 16 (1, 17,
 * 47, 49, ...), columns of a partial block or a partial 512-column chunk, columns that are not a multiple
 * of 4 (the 4 x 4 tile), every n_tok from 1 to 70 (tiles of 8 tokens, passes of 64), 1 and 3 threads. */
static void test_prompt(void) {
    static const int64_t shapes[][2] = {{1, 256},  {17, 4},   {47, 260},  {48, 512},  {49, 516},
                                        {96, 768}, {100, 2048}, {5, 2085}, {130, 1000}, {301, 2304}};
    tn_rng g;
    tn_rng_seed(&g, 5);
    const int64_t NT = 70;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], cols = shapes[s][1];
        int8_t *w = tn_alloc((size_t)(rows * cols), 1), *xq = tn_alloc((size_t)(NT * cols), 1);
        uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
        float *x = tn_alloc((size_t)(NT * cols), sizeof(float)), *rs = tn_alloc((size_t)rows, sizeof(float));
        float *y_ref = tn_alloc((size_t)(NT * rows), sizeof(float)), *y = tn_alloc((size_t)(NT * rows), sizeof(float));
        float xs[70];
        rand_ternary(&g, w, rows * cols);
        rand_floats(&g, x, NT * cols);
        for (int64_t r = 0; r < rows; r++) rs[r] = 0.5f + tn_rng_uniform(&g);
        CHECK_OK(tn_t2_pack(w, rows, cols, p));
        tn_kernels_set_isa(TN_ISA_SCALAR);
        tn_act_quant_i8_rows(x, NT, cols, xq, xs);
        if (s == 0) memset(xq + 3 * cols, 0x81, (size_t)cols); /* a token of -127 only */
        for (int64_t t = 0; t < NT; t++) tn_t2_gemv(p, rs, 0.037f, rows, cols, xq + t * cols, xs[t], y_ref + t * rows);
        for (int lv = TN_ISA_AVX2; lv <= (int)tn_cpu_best_isa(); lv++) {
            if (tn_kernels_set_isa((tn_isa)lv) != (tn_isa)lv) continue;
            const int64_t step = rows * cols > 100000 && lv != (int)tn_cpu_best_isa() ? 9 : 1;
            for (int64_t nt = 1; nt <= NT; nt += step)
                for (int th = 1; th <= 3; th += 2) {
                    tn_packed_set_threads(th);
                    memset(y, 0xFF, (size_t)(NT * rows) * sizeof(float));
                    tn_t2_gemm(p, rs, 0.037f, rows, cols, nt, xq, xs, y);
                    CHECKF(memcmp(y, y_ref, (size_t)(nt * rows) * sizeof(float)) == 0,
                           "prompt %s %lldx%lld n_tok=%lld threads=%d", tn_isa_name((tn_isa)lv), (long long)rows,
                           (long long)cols, (long long)nt, th);
                }
            tn_packed_set_threads(0);
            /* NULL row scale, from inside a parallel region on two row slices (how the runner calls it) */
            tn_kernels_set_isa(TN_ISA_SCALAR);
            for (int64_t t = 0; t < NT; t++) tn_t2_gemv(p, NULL, 0.5f, rows, cols, xq + t * cols, xs[t], y_ref + t * rows);
            tn_kernels_set_isa((tn_isa)lv);
            const int64_t half = rows / 2;
            float *y0 = tn_alloc((size_t)(NT * rows), sizeof(float)), *y1 = tn_alloc((size_t)(NT * rows), sizeof(float));
#pragma omp parallel num_threads(2)
            {
                const int64_t a = omp_get_thread_num() ? half : 0, b = omp_get_thread_num() ? rows : half;
                if (b > a) tn_t2_gemm(p + (size_t)a * tn_t2_row_bytes(cols), NULL, 0.5f, b - a, cols, NT, xq, xs,
                                      omp_get_thread_num() ? y1 : y0);
            }
            int ok = 1;
            for (int64_t t = 0; t < NT; t++)
                for (int64_t r = 0; r < rows; r++) {
                    float v = r < half ? y0[t * half + r] : y1[t * (rows - half) + r - half];
                    if (memcmp(&v, &y_ref[t * rows + r], sizeof v) != 0) ok = 0;
                }
            CHECKF(ok, "prompt on row slices %s %lldx%lld", tn_isa_name((tn_isa)lv), (long long)rows, (long long)cols);
            tn_free(y0);
            tn_free(y1);
            tn_kernels_set_isa(TN_ISA_SCALAR);
            for (int64_t t = 0; t < NT; t++) tn_t2_gemv(p, rs, 0.037f, rows, cols, xq + t * cols, xs[t], y_ref + t * rows);
        }
        tn_free(w);
        tn_free(xq);
        tn_free(p);
        tn_free(x);
        tn_free(rs);
        tn_free(y_ref);
        tn_free(y);
    }
    tn_kernels_set_isa(TN_ISA_AVX512);
}

/* Extreme activations: every q = +-127 and every weight = +-1, the largest possible sums. */
static void test_extremes(void) {
    const int64_t rows = 8, cols = 4099;
    int8_t *w = tn_alloc((size_t)(rows * cols), 1), *xq = tn_alloc((size_t)cols, 1);
    uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) w[r * cols + c] = (int8_t)((r & 1) ? 1 : ((c & 1) ? -1 : 1));
    for (int64_t c = 0; c < cols; c++) xq[c] = (int8_t)((c & 1) ? -127 : 127);
    CHECK_OK(tn_t2_pack(w, rows, cols, p));
    float y[8], yr[8];
    tn_kernels_set_isa(TN_ISA_SCALAR);
    tn_t2_gemv(p, NULL, 1.0f, rows, cols, xq, 1.0f, yr);
    CHECK(yr[0] == 127.0f * cols);
    for (int lv = TN_ISA_AVX2; lv <= (int)tn_cpu_best_isa(); lv++) {
        if (tn_kernels_set_isa((tn_isa)lv) != (tn_isa)lv) continue;
        tn_t2_gemv(p, NULL, 1.0f, rows, cols, xq, 1.0f, y);
        CHECKF(memcmp(y, yr, sizeof y) == 0, "extremes %s", tn_isa_name((tn_isa)lv));
    }
    tn_kernels_set_isa(TN_ISA_AVX512);
    tn_free(w);
    tn_free(xq);
    tn_free(p);
}

/* Results do not depend on the thread count (rows are split, never columns). */
static void test_threads(void) {
    const int64_t rows = 301, cols = 2304, NT = 5;
    tn_rng g;
    tn_rng_seed(&g, 4);
    int8_t *w = tn_alloc((size_t)(rows * cols), 1), *xq = tn_alloc((size_t)(NT * cols), 1);
    uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
    float *y1 = tn_alloc((size_t)(NT * rows), 4), *y3 = tn_alloc((size_t)(NT * rows), 4), xs[5] = {1, 2, 3, 4, 5};
    rand_ternary(&g, w, rows * cols);
    for (int64_t i = 0; i < NT * cols; i++) xq[i] = (int8_t)((int)tn_rng_below(&g, 255) - 127);
    CHECK_OK(tn_t2_pack(w, rows, cols, p));
    tn_packed_set_threads(1);
    CHECK(tn_packed_threads() == 1);
    tn_t2_gemm(p, NULL, 0.5f, rows, cols, NT, xq, xs, y1);
    tn_packed_set_threads(3);
    tn_t2_gemm(p, NULL, 0.5f, rows, cols, NT, xq, xs, y3);
    CHECK(memcmp(y1, y3, (size_t)(NT * rows) * 4) == 0);
    tn_t2_gemv(p, NULL, 0.5f, rows, cols, xq, xs[0], y3);
    CHECK(memcmp(y1, y3, (size_t)rows * 4) == 0);
    tn_packed_set_threads(0);
    /* From inside a parallel region, on row slices (how the runner calls it). */
    memset(y3, 0, (size_t)rows * 4);
#pragma omp parallel num_threads(2)
    {
        int64_t r0 = omp_get_thread_num() ? 160 : 0, r1 = omp_get_thread_num() ? rows : 160;
        tn_t2_gemv(p + (size_t)r0 * tn_t2_row_bytes(cols), NULL, 0.5f, r1 - r0, cols, xq, xs[0], y3 + r0);
    }
    CHECK(memcmp(y1, y3, (size_t)rows * 4) == 0);
    tn_free(w);
    tn_free(xq);
    tn_free(p);
    tn_free(y1);
    tn_free(y3);
}

int main(void) {
    test_env_cap();
    test_threads();
    test_pack();
    test_act_quant();
    test_products();
    test_prompt();
    test_extremes();
    return tn_test_finish();
}
