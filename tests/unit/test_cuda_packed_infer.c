/* The runner's packed products and embedding rows on the GPU (kernels/cuda/packed_infer.cu, t2.cu) against the
 * CPU kernels (kernels/packed.h, runner/f16.h, runner/infer_ops_cpu.c's row dequantization (tn_imat_row)).
 * Products: rows x cols from 1 x 1 to 130 x 2085 and 33 x 4100 (odd sizes, partial blocks and tiles) with
 * n_tok = 1 (the gemv kernels; token 0 also at an odd float address, their unaligned path), 2, 7, 33 and 70
 * (the tiled kernels: partial and several token tiles), and 1 x TN_PACKED_MAX_COLS with n_tok = 1 and 3.
 *   T2:  tn_cuda_t2_gemm against tn_t2_gemm, bit for bit (exact int32 sums, the same float epilogue);
 *        random ternary weights, activations from tn_act_quant_i8_rows, row_scale NULL and not.
 *   L4:  grids of 16 values and of 7 (padded to 16 with tn_lut_grid_pad); L8: 256 values and 81 (padded);
 *        F16: random halves. Float sums in another order than the CPU's, so each output must satisfy
 *          |gpu - cpu| <= 1e-5 · |s_r| · Σ_c |w[r,c] · X[t,c]|
 *        (the bound of summation-order rounding, relative to the sum of the terms' magnitudes); the largest
 *        ratio |gpu - cpu| / (|s_r| · Σ|terms|) per format is printed.
 * embed_rows: every dtype (F32, F16 with ±0, subnormals, ±inf and NaNs, T2, L4, L8), the same shapes but the
 *   last (2 x 20000 instead: rows wider than the kernel's 64 blocks), tokens including the first and last
 *   row, row_scale NULL and not, a negative tensor scale (so T2's zeros are -0): bit for bit against the
 *   runner's expressions (NaN: NaN on both sides; the emulator's widening does not keep NaN payloads).
 * Bad arguments: cols > TN_PACKED_MAX_COLS, unaligned weights, an unknown dtype, NULL grid: -1 with a
 *   message; rows or n_tok 0: 0 and nothing written; cols 0: zeros.
 * Without CUDA (or its emulator) or a device the test is skipped. */
#include "cuda_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"

#ifdef TN_HAVE_CUDA
#include "export/export_trin.h"
#include "export/gguf_dequant.h"
#include "export/trin.h"
#include "kernels/packed.h"
#include "runner/f16.h"
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

/* The last shape: products of the widest rows (one row, cols = TN_PACKED_MAX_COLS); embedding rows wider
 * than 64 blocks x 256 threads (the strided loop). */
static const int64_t SHAPES[][2] = {{1, 1},     {3, 127},    {5, 129},  {17, 300},
                                    {67, 1000}, {130, 2085}, {33, 4100}, {1, TN_PACKED_MAX_COLS}};
static const int64_t EMBED_SHAPES[][2] = {{1, 1},     {3, 127},    {5, 129},  {17, 300},
                                          {67, 1000}, {130, 2085}, {33, 4100}, {2, 20000}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
#define N_EMBED_SHAPES (sizeof EMBED_SHAPES / sizeof EMBED_SHAPES[0])
static const int64_t NTOK[] = {1, 2, 7, 33, 70};
#define N_NTOK (sizeof NTOK / sizeof NTOK[0])
#define MAX_TOK 70
static const int64_t NTOK_WIDE[] = {1, 3}; /* for cols = TN_PACKED_MAX_COLS: keeps the test fast */
#define WIDE_COLS 100000
#define FLOAT_TOL 1e-5

/* The largest ratio |gpu - cpu| / (|s_r| Σ|terms|) per float format. */
static double g_max_ratio[3];
static const char *const FMT_NAME[3] = {"L4", "L8", "F16"};
enum { FMT_L4, FMT_L8, FMT_F16 };

static void rand_floats(tn_rng *g, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(g) * (i % 17 == 0 ? 4.0f : 1.0f);
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* Elements that differ, NaN equal to any NaN. */
static int64_t embed_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += isnan(a[i]) ? !isnan(b[i]) : memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

/* One weight matrix of every dtype, on the host and on the device. */
typedef struct {
    int64_t rows, cols;
    int8_t *w3;                   /* T2 weights [rows*cols] */
    uint8_t *t2, *l4, *l8;        /* packed */
    uint8_t *i4, *i8;             /* L4 / L8 indices [rows*cols] */
    uint16_t *f16;                /* [rows*cols], finite */
    float *f32;                   /* [rows*cols] */
    float g4[16], g8[256];        /* zero-padded grids */
    float *rs;                    /* [rows] */
    float *dense[3];              /* L4, L8, F16 weights as floats [rows*cols] (unscaled): the error bound */
    void *d_t2, *d_l4, *d_l8, *d_f16, *d_f32;
    float *d_g4, *d_g8, *d_rs;
} mats;

static int mats_make(mats *m, tn_rng *g, int64_t rows, int64_t cols, int small_grid) {
    memset(m, 0, sizeof *m);
    m->rows = rows;
    m->cols = cols;
    const size_t n = (size_t)(rows * cols);
    m->w3 = tn_alloc(n, 1);
    m->i4 = tn_alloc(n, 1);
    m->i8 = tn_alloc(n, 1);
    m->f16 = tn_alloc(n, 2);
    m->f32 = tn_alloc(n, 4);
    m->rs = tn_alloc((size_t)rows, 4);
    m->t2 = tn_alloc(tn_t2_packed_size(rows, cols), 1);
    m->l4 = tn_alloc(tn_l4_packed_size(rows, cols), 1);
    m->l8 = tn_alloc(tn_l8_packed_size(rows, cols), 1);
    for (int f = 0; f < 3; f++) m->dense[f] = tn_alloc(n, sizeof(float));
    if (!m->w3 || !m->i4 || !m->i8 || !m->f16 || !m->f32 || !m->rs || !m->t2 || !m->l4 || !m->l8 || !m->dense[0] ||
        !m->dense[1] || !m->dense[2])
        return -1;
    /* grids: 16 / 256 values, or 7 / 81 zero-padded (tn_lut_grid_pad) */
    const int n4 = small_grid ? 7 : 16, n8 = small_grid ? 81 : 256;
    float raw[256];
    for (int i = 0; i < 256; i++) raw[i] = tn_rng_normal(g);
    tn_lut_grid_pad(raw, n4, m->g4, 16);
    tn_lut_grid_pad(raw, n8, m->g8, 256);
    for (size_t i = 0; i < n; i++) {
        m->w3[i] = (int8_t)((int)tn_rng_below(g, 3) - 1);
        m->i4[i] = (uint8_t)tn_rng_below(g, (uint64_t)n4);
        m->i8[i] = (uint8_t)tn_rng_below(g, (uint64_t)n8);
        m->f32[i] = tn_rng_normal(g);
        m->f16[i] = tn_f32_to_f16(0.25f * tn_rng_normal(g));
        m->dense[FMT_L4][i] = m->g4[m->i4[i]];
        m->dense[FMT_L8][i] = m->g8[m->i8[i]];
        m->dense[FMT_F16][i] = tn_f16_to_f32(m->f16[i]);
    }
    for (int64_t r = 0; r < rows; r++) m->rs[r] = 0.5f + tn_rng_uniform(g);
    if (tn_t2_pack(m->w3, rows, cols, m->t2) != 0 || tn_l4_pack(m->i4, rows, cols, n4, m->l4) != 0 ||
        tn_l8_pack(m->i8, rows, cols, n8, m->l8) != 0)
        return -1;
    m->d_t2 = tn_test_dev_copy(m->t2, tn_t2_packed_size(rows, cols));
    m->d_l4 = tn_test_dev_copy(m->l4, tn_l4_packed_size(rows, cols));
    m->d_l8 = tn_test_dev_copy(m->l8, tn_l8_packed_size(rows, cols));
    m->d_f16 = tn_test_dev_copy(m->f16, n * 2);
    m->d_f32 = tn_test_dev_copy(m->f32, n * 4);
    m->d_g4 = tn_test_dev_copy(m->g4, sizeof m->g4);
    m->d_g8 = tn_test_dev_copy(m->g8, sizeof m->g8);
    m->d_rs = tn_test_dev_copy(m->rs, (size_t)rows * 4);
    return m->d_t2 && m->d_l4 && m->d_l8 && m->d_f16 && m->d_f32 && m->d_g4 && m->d_g8 && m->d_rs ? 0 : -1;
}

static void mats_free(mats *m) {
    tn_free(m->w3);
    tn_free(m->i4);
    tn_free(m->i8);
    tn_free(m->f16);
    tn_free(m->f32);
    tn_free(m->rs);
    tn_free(m->t2);
    tn_free(m->l4);
    tn_free(m->l8);
    for (int f = 0; f < 3; f++) tn_free(m->dense[f]);
    tn_cuda_free(m->d_t2);
    tn_cuda_free(m->d_l4);
    tn_cuda_free(m->d_l8);
    tn_cuda_free(m->d_f16);
    tn_cuda_free(m->d_f32);
    tn_cuda_free(m->d_g4);
    tn_cuda_free(m->d_g8);
    tn_cuda_free(m->d_rs);
}

/* ---- products ------------------------------------------------------------------------------------ */

/* Y [n_tok, rows] of float format fmt on both sides; every output within FLOAT_TOL of the CPU's, relative
 * to |s_r| Σ_c |w x|. */
static void check_float(const mats *m, int fmt, int use_rs, float ts, int64_t n_tok, const float *X, const float *dX,
                        float *Y, float *Yg, float *dY) {
    const int64_t rows = m->rows, cols = m->cols;
    const float *rs = use_rs ? m->rs : NULL, *drs = use_rs ? m->d_rs : NULL;
    int rc = -1;
    switch (fmt) {
    case FMT_L4:
        tn_l4_gemm(m->l4, m->g4, rs, ts, rows, cols, n_tok, X, Y);
        rc = tn_cuda_l4_gemm(m->d_l4, m->d_g4, drs, ts, rows, cols, n_tok, dX, dY);
        break;
    case FMT_L8:
        tn_l8_gemm(m->l8, m->g8, rs, ts, rows, cols, n_tok, X, Y);
        rc = tn_cuda_l8_gemm(m->d_l8, m->d_g8, drs, ts, rows, cols, n_tok, dX, dY);
        break;
    default:
        tn_f16_gemm(m->f16, rows, cols, n_tok, X, Y);
        rc = tn_cuda_f16_gemm(m->d_f16, rows, cols, n_tok, dX, dY);
        break;
    }
    CHECKF(rc == 0, "%s gemm %lldx%lld x %lld: %s", FMT_NAME[fmt], (long long)rows, (long long)cols, (long long)n_tok,
           tn_errmsg());
    if (rc != 0) return;
    CHECK_OK(tn_cuda_download(Yg, dY, (size_t)(n_tok * rows) * sizeof(float)));
    int64_t bad = 0;
    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float s = fmt == FMT_F16 ? 1.0f : rs ? ts * rs[r] : ts;
        for (int64_t t = 0; t < n_tok; t++) {
            const float *x = X + t * cols, *w = m->dense[fmt] + r * cols;
            double mag = 0.0;
            for (int64_t c = 0; c < cols; c++) mag += fabs((double)w[c] * (double)x[c]);
            mag *= fabs((double)s);
            const double a = Yg[t * rows + r], b = Y[t * rows + r], err = fabs(a - b);
            if (!(err <= FLOAT_TOL * mag)) bad++;
            if (mag > 0 && err / mag > worst) worst = err / mag;
        }
    }
    if (worst > g_max_ratio[fmt]) g_max_ratio[fmt] = worst;
    CHECKF(bad == 0, "%s gemm %lldx%lld x %lld tokens, rs=%d: %lld outputs outside the bound (worst ratio %.3g)",
           FMT_NAME[fmt], (long long)rows, (long long)cols, (long long)n_tok, use_rs, (long long)bad, worst);
}

static void test_products(void) {
    tn_rng g;
    tn_rng_seed(&g, 2024);
    for (size_t s = 0; s < N_SHAPES; s++) {
        const int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        const int wide = cols > WIDE_COLS;
        const int64_t *ntoks = wide ? NTOK_WIDE : NTOK;
        const size_t n_ntok = wide ? sizeof NTOK_WIDE / sizeof NTOK_WIDE[0] : N_NTOK;
        const int64_t max_tok = ntoks[n_ntok - 1];
        mats m;
        float *X = tn_alloc((size_t)(max_tok * cols), sizeof(float)), *Y = tn_alloc((size_t)(max_tok * rows), sizeof(float));
        float *Yg = tn_alloc((size_t)(max_tok * rows), sizeof(float)), *xs = tn_alloc((size_t)max_tok, sizeof(float));
        int8_t *Xq = tn_alloc((size_t)(max_tok * cols), 1);
        if (mats_make(&m, &g, rows, cols, (int)(s & 1)) != 0 || !X || !Y || !Yg || !xs || !Xq) {
            CHECKF(0, "set-up of %lldx%lld: %s", (long long)rows, (long long)cols, tn_errmsg());
            mats_free(&m);
            tn_free(X), tn_free(Y), tn_free(Yg), tn_free(xs), tn_free(Xq);
            return;
        }
        rand_floats(&g, X, max_tok * cols);
        tn_act_quant_i8_rows(X, max_tok, cols, Xq, xs);
        float *dX = tn_test_dev_copy(X, (size_t)(max_tok * cols) * sizeof(float));
        float *dxs = tn_test_dev_copy(xs, (size_t)max_tok * sizeof(float));
        int8_t *dXq = tn_test_dev_copy(Xq, (size_t)(max_tok * cols));
        float *dY = tn_cuda_alloc((size_t)(max_tok * rows) * sizeof(float));
        /* token 0 at an odd float address as well: the gemv kernels' unaligned x path */
        float *dXodd = tn_cuda_alloc((size_t)(cols + 1) * sizeof(float));
        if (dXodd) CHECK_OK(tn_cuda_upload(dXodd + 1, X, (size_t)cols * sizeof(float)));
        if (dX && dxs && dXq && dY && dXodd) {
            for (size_t k = 0; k < n_ntok; k++) {
                const int64_t n_tok = ntoks[k];
                for (int use_rs = 0; use_rs < 2; use_rs++) {
                    const float ts = use_rs ? 0.7f : -1.3f;
                    /* T2: bit for bit */
                    tn_t2_gemm(m.t2, use_rs ? m.rs : NULL, ts, rows, cols, n_tok, Xq, xs, Y);
                    CHECK_OK(tn_cuda_t2_gemm(m.d_t2, use_rs ? m.d_rs : NULL, ts, rows, cols, n_tok, dXq, dxs, dY));
                    CHECK_OK(tn_cuda_download(Yg, dY, (size_t)(n_tok * rows) * sizeof(float)));
                    CHECKF(same_bits(Y, Yg, (size_t)(n_tok * rows)), "T2 gemm %lldx%lld x %lld tokens, rs=%d",
                           (long long)rows, (long long)cols, (long long)n_tok, use_rs);
                    if (use_rs == (int)((k + s) & 1)) { /* row_scale NULL or not, alternately */
                        check_float(&m, FMT_L4, use_rs, ts, n_tok, X, dX, Y, Yg, dY);
                        check_float(&m, FMT_L8, use_rs, ts, n_tok, X, dX, Y, Yg, dY);
                    }
                }
                check_float(&m, FMT_F16, 0, 1.0f, n_tok, X, dX, Y, Yg, dY);
                if (n_tok == 1)
                    for (int f = FMT_L4; f <= FMT_F16; f++) check_float(&m, f, f != FMT_F16, 0.7f, 1, X, dXodd + 1, Y, Yg, dY);
            }
        }
        tn_cuda_free(dX);
        tn_cuda_free(dxs);
        tn_cuda_free(dXq);
        tn_cuda_free(dY);
        tn_cuda_free(dXodd);
        mats_free(&m);
        tn_free(X);
        tn_free(Y);
        tn_free(Yg);
        tn_free(xs);
        tn_free(Xq);
    }
}

/* ---- embedding rows ------------------------------------------------------------------------------- */

/* Row r of dtype dt as runner/infer_ops_cpu.c tn_imat_row computes it. */
static void ref_row(const mats *m, int dt, const uint16_t *f16, const float *rs, float ts, int64_t r, float *out,
                    int8_t *w8, uint8_t *u8) {
    const int64_t n = m->cols;
    const float s = ts * (rs ? rs[r] : 1.0f);
    switch (dt) {
    case TN_TRIN_F32: memcpy(out, m->f32 + r * n, (size_t)n * sizeof *out); return;
    case TN_TRIN_F16: tn_f16_to_f32_row(f16 + r * n, n, out); return;
    case TN_TRIN_T2:
        CHECK_OK(tn_t2_unpack(m->t2 + (size_t)r * tn_t2_row_bytes(n), 1, n, w8));
        for (int64_t c = 0; c < n; c++) out[c] = s * (float)w8[c];
        return;
    case TN_TRIN_L4:
        tn_l4_unpack(m->l4 + (size_t)r * tn_l4_row_bytes(n), 1, n, u8);
        for (int64_t c = 0; c < n; c++) out[c] = s * m->g4[u8[c]];
        return;
    default:
        tn_l8_unpack(m->l8 + (size_t)r * tn_l8_row_bytes(n), 1, n, u8);
        for (int64_t c = 0; c < n; c++) out[c] = s * m->g8[u8[c]];
        return;
    }
}

static void test_embed(void) {
    tn_rng g;
    tn_rng_seed(&g, 77);
    static const uint16_t special[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x0001, 0x83ff, 0x03ff, 0x7bff, 0x7e00, 0x7c01, 0xfe01};
    const int n_special = (int)(sizeof special / sizeof special[0]);
    for (size_t s = 0; s < N_EMBED_SHAPES; s++) {
        const int64_t rows = EMBED_SHAPES[s][0], cols = EMBED_SHAPES[s][1];
        mats m;
        enum { NT = 7 };
        int32_t tok[NT] = {0, (int32_t)(rows - 1), (int32_t)(rows / 2), 0, 0, (int32_t)(rows - 1), 0};
        tok[3] = (int32_t)tn_rng_below(&g, (uint64_t)rows);
        tok[4] = (int32_t)tn_rng_below(&g, (uint64_t)rows);
        uint16_t *f16 = tn_alloc((size_t)(rows * cols), 2);
        float *ref = tn_alloc((size_t)(NT * cols), sizeof(float)), *got = tn_alloc((size_t)(NT * cols), sizeof(float));
        int8_t *w8 = tn_alloc((size_t)cols, 1);
        uint8_t *u8 = tn_alloc((size_t)cols, 1);
        if (mats_make(&m, &g, rows, cols, (int)(s & 1)) != 0 || !f16 || !ref || !got || !w8 || !u8) {
            CHECKF(0, "set-up of %lldx%lld: %s", (long long)rows, (long long)cols, tn_errmsg());
            mats_free(&m);
            tn_free(f16), tn_free(ref), tn_free(got), tn_free(w8), tn_free(u8);
            return;
        }
        /* F16 with the special values sprinkled in (first and last element of each row included) */
        memcpy(f16, m.f16, (size_t)(rows * cols) * 2);
        for (int64_t r = 0; r < rows; r++) {
            f16[r * cols] = special[r % n_special];
            f16[r * cols + cols - 1] = special[(r + 3) % n_special];
            for (int k = 0; k < 4; k++) f16[r * cols + (int64_t)tn_rng_below(&g, (uint64_t)cols)] = special[k + (r % 7)];
        }
        void *d_f16 = tn_test_dev_copy(f16, (size_t)(rows * cols) * 2);
        int32_t *d_tok = tn_test_dev_copy(tok, sizeof tok);
        float *dX = tn_cuda_alloc((size_t)(NT * cols) * sizeof(float));
        if (d_f16 && d_tok && dX) {
            for (int dt = TN_TRIN_F32; dt <= TN_TRIN_L8; dt++) {
                const void *dW = dt == TN_TRIN_F32 ? m.d_f32 : dt == TN_TRIN_F16 ? d_f16 : dt == TN_TRIN_T2 ? m.d_t2
                               : dt == TN_TRIN_L4 ? m.d_l4 : m.d_l8;
                const float *dgrid = dt == TN_TRIN_L4 ? m.d_g4 : dt == TN_TRIN_L8 ? m.d_g8 : NULL;
                for (int use_rs = 0; use_rs < 2; use_rs++) {
                    const float ts = use_rs ? 0.9f : -0.75f; /* negative: T2's zero weights give -0 */
                    for (int t = 0; t < NT; t++)
                        ref_row(&m, dt, f16, use_rs ? m.rs : NULL, ts, tok[t], ref + t * cols, w8, u8);
                    CHECK_OK(tn_cuda_embed_rows(dt, dW, dgrid, use_rs ? m.d_rs : NULL, ts, rows, cols, d_tok, NT, dX));
                    CHECK_OK(tn_cuda_download(got, dX, (size_t)(NT * cols) * sizeof(float)));
                    const int64_t d = embed_diffs(ref, got, NT * cols);
                    CHECKF(d == 0, "embed_rows %s %lldx%lld rs=%d: %lld elements differ", tn_trin_dtype_name(dt),
                           (long long)rows, (long long)cols, use_rs, (long long)d);
                }
            }
        }
        tn_cuda_free(d_f16);
        tn_cuda_free(d_tok);
        tn_cuda_free(dX);
        mats_free(&m);
        tn_free(f16);
        tn_free(ref);
        tn_free(got);
        tn_free(w8);
        tn_free(u8);
    }
}

/* ---- arguments ------------------------------------------------------------------------------------ */

static int msg_has(const char *s) { return strstr(tn_errmsg(), s) != NULL; }

static void test_args(void) {
    uint8_t w[256];
    float grid[256], x[8], sentinel = 12345.0f, y = sentinel;
    int32_t tok = 0;
    memset(w, 0x55, sizeof w);
    for (int i = 0; i < 256; i++) grid[i] = (float)i;
    for (int i = 0; i < 8; i++) x[i] = 1.0f;
    uint8_t *dW = tn_test_dev_copy(w, sizeof w);
    float *dg = tn_test_dev_copy(grid, sizeof grid), *dx = tn_test_dev_copy(x, sizeof x), *dy = tn_test_dev_copy(&y, sizeof y);
    int32_t *dtok = tn_test_dev_copy(&tok, sizeof tok);
    if (!dW || !dg || !dx || !dy || !dtok) return;
    const int64_t big = TN_PACKED_MAX_COLS + 1;
    CHECK(tn_cuda_l4_gemm(dW, dg, NULL, 1.0f, 1, big, 1, dx, dy) == -1 && msg_has("out of range"));
    CHECK(tn_cuda_l8_gemm(dW, dg, NULL, 1.0f, 1, big, 2, dx, dy) == -1 && msg_has("out of range"));
    CHECK(tn_cuda_f16_gemm((const uint16_t *)dW, 1, big, 1, dx, dy) == -1 && msg_has("out of range"));
    CHECK(tn_cuda_t2_gemm(dW, NULL, 1.0f, 1, big, 1, (const int8_t *)dW, dx, dy) == -1 && msg_has("out of range"));
    CHECK(tn_cuda_embed_rows(TN_TRIN_L8, dW, dg, NULL, 1.0f, 1, big, dtok, 1, dy) == -1 && msg_has("out of range"));
    CHECK(tn_cuda_l4_gemm(dW, dg, NULL, 1.0f, 1, -1, 1, dx, dy) == -1);
    CHECK(tn_cuda_l4_gemm(dW, dg, NULL, 1.0f, -1, 8, 1, dx, dy) == -1);
    CHECK(tn_cuda_l4_gemm(dW + 4, dg, NULL, 1.0f, 1, 8, 1, dx, dy) == -1 && msg_has("aligned"));
    CHECK(tn_cuda_l8_gemm(dW, NULL, NULL, 1.0f, 1, 8, 1, dx, dy) == -1 && msg_has("NULL"));
    CHECK(tn_cuda_f16_gemm((const uint16_t *)(dW + 1), 1, 8, 1, dx, dy) == -1 && msg_has("aligned"));
    CHECK(tn_cuda_embed_rows(7, dW, dg, NULL, 1.0f, 1, 8, dtok, 1, dy) == -1 && msg_has("dtype"));
    CHECK(tn_cuda_embed_rows(TN_TRIN_L4, dW, NULL, NULL, 1.0f, 1, 8, dtok, 1, dy) == -1 && msg_has("NULL"));
    CHECK(tn_cuda_embed_rows(TN_TRIN_F32, dW + 2, NULL, NULL, 1.0f, 1, 8, dtok, 1, dy) == -1 && msg_has("aligned"));
    tn_err_clear();
    /* nothing to do: 0, Y untouched */
    CHECK_OK(tn_cuda_l4_gemm(dW, dg, NULL, 1.0f, 0, 8, 1, dx, dy));
    CHECK_OK(tn_cuda_l8_gemm(dW, dg, NULL, 1.0f, 1, 8, 0, dx, dy));
    CHECK_OK(tn_cuda_f16_gemm((const uint16_t *)dW, 0, 8, 3, dx, dy));
    CHECK_OK(tn_cuda_t2_gemm(dW, NULL, 1.0f, 0, 8, 3, (const int8_t *)dW, dx, dy));
    CHECK_OK(tn_cuda_embed_rows(TN_TRIN_T2, dW, NULL, NULL, 1.0f, 1, 8, dtok, 0, dy));
    CHECK_OK(tn_cuda_download(&y, dy, sizeof y));
    CHECK(y == sentinel);
    /* cols = 0: an empty sum, 0 · s */
    CHECK_OK(tn_cuda_l4_gemm(dW, dg, NULL, 2.0f, 1, 0, 1, dx, dy));
    CHECK_OK(tn_cuda_download(&y, dy, sizeof y));
    CHECK(y == 0.0f);
    tn_cuda_free(dW);
    tn_cuda_free(dg);
    tn_cuda_free(dx);
    tn_cuda_free(dy);
    tn_cuda_free(dtok);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    test_args();
    test_products();
    test_embed();
    printf("largest |gpu - cpu| / (|s| sum|w x|) (tolerance %g):", FLOAT_TOL);
    for (int f = 0; f < 3; f++) printf(" %s %.3g", FMT_NAME[f], g_max_ratio[f]);
    printf("\nT2 gemm and embed_rows: bit-exact\n");
    tn_cuda_shutdown();
#endif
    return tn_test_finish();
}
