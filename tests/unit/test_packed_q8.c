/* kernels/packed.h, Q8 and Q4 (the quantized LM head and embeddings): every SIMD level of the gemv and
 * gemm bit-exact with the scalar reference on odd shapes (1x1, tails of every length, wide, tall,
 * multi-threaded), with any byte values (Q8 -128 included, Q4 padding codes other than 8, subnormal and
 * negative fp16 scales), gemm equal to per-token gemv, the arithmetic against a double reference, the
 * largest sums the layout allows, int16 activations, the row sizes, and tn_q4_row_to_f32. */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/packed.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

static const int64_t SHAPES[][2] = {{1, 1},   {1, 31},   {3, 32},    {5, 33},    {7, 63},   {4, 64},   {9, 65},
                                    {2, 127}, {67, 200}, {1029, 64}, {3, 5000}, {130, 577}, {256, 576}, {13, 768}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
#define NT 7

/* Random bytes of a Q4 matrix with finite scales: random fp16 bit patterns below the inf/NaN exponent
 * (subnormals, zeros and negatives included), and random codes (padding too: the products must not
 * depend on it). */
static void rand_q4(tn_rng *g, uint8_t *p, int64_t rows, int64_t cols) {
    const size_t n = tn_q4_packed_size(rows, cols);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)tn_rng_below(g, 256);
    for (size_t b = 0; b < n; b += TN_Q4_BLOCK_BYTES) {
        uint16_t h = (uint16_t)tn_rng_below(g, 65536);
        if (((h >> 10) & 31) == 31) h &= 0xBFFF; /* exponent 31 -> 15 */
        if (tn_rng_below(g, 4) != 0) h = (uint16_t)((h & 0x83FF) | (uint16_t)((9 + tn_rng_below(g, 6)) << 10)); /* ~1e-3..1e-1 mostly */
        p[b] = (uint8_t)h;
        p[b + 1] = (uint8_t)(h >> 8);
    }
}

static void rand_acts(tn_rng *g, int64_t n_tok, int64_t cols, int16_t *xq, float *xs) {
    float *x = tn_alloc((size_t)(n_tok * cols), sizeof *x);
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = tn_rng_normal(g) * (i % 17 == 0 ? 4.0f : 1.0f);
    tn_act_quant_i16_rows(x, n_tok, cols, xq, xs);
    tn_free(x);
}

static void test_sizes(void) {
    CHECK(tn_q8_row_bytes(1) == 64 && tn_q8_row_bytes(64) == 64 && tn_q8_row_bytes(65) == 128);
    CHECK(tn_q8_packed_size(3, 100) == 384);
    CHECK(tn_q4_row_bytes(1) == 18 && tn_q4_row_bytes(32) == 18 && tn_q4_row_bytes(33) == 36);
    CHECK(tn_q4_packed_size(2, 576) == 2 * 18 * 18);
    CHECK(tn_f16_to_f32(0x3C00) == 1.0f && tn_f16_to_f32(0xC000) == -2.0f && tn_f16_to_f32(0x0001) == 0x1p-24f);
    /* Q4 bytes: d = 0.5, block 0: column 0 code 0 (-8), column 16 code 15 (+7), column 1 code 9 (+1). */
    uint8_t b[18] = {0x00, 0x38};
    for (int j = 0; j < 16; j++) b[2 + j] = 0x88;
    b[2] = 0xF0;
    b[3] = 0x89;
    float w[32];
    tn_q4_row_to_f32(b, 0, 32, w);
    CHECK(w[0] == -4.0f && w[16] == 3.5f && w[1] == 0.5f && w[2] == 0.0f && w[17] == 0.0f);
}

/* Every level equals the scalar reference bit for bit, for gemv and gemm of 1..7 tokens, and the scalar
 * reference equals a double computation of the documented arithmetic to float rounding. */
static void test_products(int q4) {
    tn_rng g;
    tn_rng_seed(&g, q4 ? 11 : 10);
    const tn_isa best = tn_cpu_best_isa();
    for (size_t s = 0; s < N_SHAPES; s++) {
        const int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        const size_t size = q4 ? tn_q4_packed_size(rows, cols) : tn_q8_packed_size(rows, cols);
        uint8_t *p = tn_alloc(size, 1);
        float *sc = tn_alloc((size_t)rows, sizeof *sc), xs[NT];
        int16_t *xq = tn_alloc((size_t)(NT * cols), sizeof *xq);
        float *y_ref = tn_alloc((size_t)(NT * rows), sizeof *y_ref), *y = tn_alloc((size_t)(NT * rows), sizeof *y);
        if (q4) rand_q4(&g, p, rows, cols);
        else
            for (size_t i = 0; i < size; i++) p[i] = (uint8_t)tn_rng_below(&g, 256); /* every int8, -128 too */
        for (int64_t r = 0; r < rows; r++) sc[r] = 0.001f + 0.01f * tn_rng_uniform(&g);
        rand_acts(&g, NT, cols, xq, xs);
#define GEMV(t, out) (q4 ? tn_q4_gemv(p, rows, cols, xq + (t) * cols, xs[t], out) : tn_q8_gemv(p, sc, rows, cols, xq + (t) * cols, xs[t], out))
#define GEMM(n, out) (q4 ? tn_q4_gemm(p, rows, cols, n, xq, xs, out) : tn_q8_gemm(p, sc, rows, cols, n, xq, xs, out))
        tn_kernels_set_isa(TN_ISA_SCALAR);
        for (int64_t t = 0; t < NT; t++) GEMV(t, y_ref + t * rows);

        /* The arithmetic, in double: Q8 exactly the integer sum, Q4 to float rounding of the lanes. */
        double maxd = 0, maxr = 0;
        const size_t rb = q4 ? tn_q4_row_bytes(cols) : tn_q8_row_bytes(cols);
        float *wrow = tn_alloc((size_t)cols, sizeof *wrow);
        for (int64_t r = 0; r < rows; r++) {
            if (q4) tn_q4_row_to_f32(p, r, cols, wrow);
            for (int64_t t = 0; t < NT; t++) {
                double acc = 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) {
                    const double wv = q4 ? (double)wrow[c] : (double)((const int8_t *)(p + (size_t)r * rb))[c];
                    acc += wv * xq[t * cols + c];
                    mag += fabs(wv * xq[t * cols + c]);
                }
                acc *= (double)xs[t] * (q4 ? 1.0 : (double)sc[r]);
                mag *= (double)xs[t] * (q4 ? 1.0 : (double)sc[r]);
                maxd = fmax(maxd, fabs(acc - y_ref[t * rows + r]) / (mag + 1e-30));
            }
            (void)maxr;
        }
        CHECKF(maxd <= 1e-5, "%s arithmetic %lldx%lld: relative error %g", q4 ? "Q4" : "Q8", (long long)rows,
               (long long)cols, maxd);
        tn_free(wrow);

        for (int lv = TN_ISA_SCALAR; lv <= (int)best; lv++) {
            if (tn_kernels_set_isa((tn_isa)lv) != (tn_isa)lv) continue; /* e.g. avxvnni absent */
            for (int threads = 1; threads <= 3; threads += 2) {
                tn_packed_set_threads(threads);
                memset(y, 0, (size_t)(NT * rows) * sizeof *y);
                for (int64_t t = 0; t < NT; t++) GEMV(t, y + t * rows);
                CHECKF(memcmp(y, y_ref, (size_t)(NT * rows) * sizeof *y) == 0, "%s gemv %s %lldx%lld threads %d",
                       q4 ? "Q4" : "Q8", tn_isa_name((tn_isa)lv), (long long)rows, (long long)cols, threads);
                for (int64_t n = 1; n <= NT; n += (n < 5 ? 1 : 2)) {
                    memset(y, 0, (size_t)(NT * rows) * sizeof *y);
                    GEMM(n, y);
                    CHECKF(memcmp(y, y_ref, (size_t)(n * rows) * sizeof *y) == 0, "%s gemm %s %lldx%lld n_tok=%lld",
                           q4 ? "Q4" : "Q8", tn_isa_name((tn_isa)lv), (long long)rows, (long long)cols, (long long)n);
                }
            }
            tn_packed_set_threads(0);
        }
#undef GEMV
#undef GEMM
        tn_free(p);
        tn_free(sc);
        tn_free(xq);
        tn_free(y_ref);
        tn_free(y);
    }
    tn_kernels_reset_isa();
}

/* A gemm over more tokens than one tile and more rows than one L2 chunk (the chunked path). */
static void test_big_gemm(void) {
    tn_rng g;
    tn_rng_seed(&g, 12);
    const int64_t rows = 1500, cols = 576, n = 19;
    uint8_t *p8 = tn_alloc(tn_q8_packed_size(rows, cols), 1), *p4 = tn_alloc(tn_q4_packed_size(rows, cols), 1);
    float *sc = tn_alloc((size_t)rows, sizeof *sc), xs[19];
    int16_t *xq = tn_alloc((size_t)(n * cols), sizeof *xq);
    float *a = tn_alloc((size_t)(n * rows), sizeof *a), *b = tn_alloc((size_t)(n * rows), sizeof *b);
    for (size_t i = 0; i < tn_q8_packed_size(rows, cols); i++) p8[i] = (uint8_t)tn_rng_below(&g, 256);
    rand_q4(&g, p4, rows, cols);
    for (int64_t r = 0; r < rows; r++) sc[r] = tn_rng_uniform(&g);
    rand_acts(&g, n, cols, xq, xs);
    tn_q8_gemm(p8, sc, rows, cols, n, xq, xs, a);
    for (int64_t t = 0; t < n; t++) tn_q8_gemv(p8, sc, rows, cols, xq + t * cols, xs[t], b + t * rows);
    CHECK(memcmp(a, b, (size_t)(n * rows) * sizeof *a) == 0);
    tn_q4_gemm(p4, rows, cols, n, xq, xs, a);
    tn_kernels_set_isa(TN_ISA_SCALAR);
    tn_q4_gemm(p4, rows, cols, n, xq, xs, b);
    tn_kernels_reset_isa();
    CHECK(memcmp(a, b, (size_t)(n * rows) * sizeof *a) == 0);
    tn_free(p8);
    tn_free(p4);
    tn_free(sc);
    tn_free(xq);
    tn_free(a);
    tn_free(b);
}

/* The extremes: cols = TN_Q8_MAX_COLS, every weight -128 and every activation ±16383 (the largest int32
 * lane sums the layout allows), at every level, against the exact int64 sum; and int16 quantization. */
static void test_extremes(void) {
    const int64_t rows = 5, cols = TN_Q8_MAX_COLS;
    uint8_t *p = tn_alloc(tn_q8_packed_size(rows, cols), 1);
    int16_t *xq = tn_alloc((size_t)cols, sizeof *xq);
    float sc[5] = {1, 1, 1, 1, 1}, y[5];
    memset(p, 0x80, tn_q8_packed_size(rows, cols));
    for (int64_t c = 0; c < cols; c++) xq[c] = (int16_t)(c % 3 == 2 ? TN_ACT16_MAX : -TN_ACT16_MAX);
    int64_t want = 0;
    for (int64_t c = 0; c < cols; c++) want += -128 * (int64_t)xq[c];
    for (int lv = TN_ISA_SCALAR; lv <= (int)tn_cpu_best_isa(); lv++) {
        if (tn_kernels_set_isa((tn_isa)lv) != (tn_isa)lv) continue;
        tn_q8_gemv(p, sc, rows, cols, xq, 1.0f, y);
        CHECKF(y[0] == (float)want && y[4] == (float)want, "Q8 extremes %s: %g vs %lld", tn_isa_name((tn_isa)lv),
               (double)y[0], (long long)want);
    }
    tn_kernels_reset_isa();
    float x[4] = {1.0f, -0.5f, 0.25f, 0}, s;
    int16_t q[4];
    tn_act_quant_i16(x, 4, q, &s);
    CHECK(q[0] == TN_ACT16_MAX && q[1] == -8192 && q[3] == 0 && s == 1.0f / TN_ACT16_MAX);
    tn_free(p);
    tn_free(xq);
}

int main(void) {
    printf("cpu: best kernel level %s\n", tn_isa_name(tn_cpu_best_isa()));
    test_sizes();
    test_products(0);
    test_products(1);
    test_big_gemm();
    test_extremes();
    return tn_test_finish();
}
