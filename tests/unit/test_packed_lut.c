/* kernels/packed.h, L4 and L8: pack/unpack round trips and byte layout, out-of-grid indices refused,
 * grid padding, and every SIMD level of gemv / gemm against the scalar reference (1e-5 relative) and
 * against a double reference of grid[idx] * x (scale math), on odd shapes including tails, 1x1, tall,
 * wide and multi-threaded ones. */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/packed.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const int64_t SHAPES[][2] = {{1, 1},    {1, 127},  {3, 128},    {5, 129},  {7, 300},  {4, 7},
                                    {9, 64},   {2, 1000}, {67, 1000},  {1029, 33}, {3, 5000}, {130, 2085},
                                    {256, 2048}, {13, 65}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

typedef struct {
    const char *name;
    int cap, n_grid;
    size_t (*size)(int64_t, int64_t);
    int (*pack)(const uint8_t *, int64_t, int64_t, int, uint8_t *);
    void (*unpack)(const uint8_t *, int64_t, int64_t, uint8_t *);
    void (*gemv)(const uint8_t *, const float *, const float *, float, int64_t, int64_t, const float *, float *);
    void (*gemm)(const uint8_t *, const float *, const float *, float, int64_t, int64_t, int64_t, const float *,
                 float *);
} fmt;

static const fmt FMTS[] = {
    {"L4", 16, 15, tn_l4_packed_size, tn_l4_pack, tn_l4_unpack, tn_l4_gemv, tn_l4_gemm},
    /* L8 grid sizes pick different AVX-512 paths: <= 32, <= 64, <= 128 values (permutes), more (gather). */
    {"L8/25", 256, 25, tn_l8_packed_size, tn_l8_pack, tn_l8_unpack, tn_l8_gemv, tn_l8_gemm},
    {"L8/50", 256, 50, tn_l8_packed_size, tn_l8_pack, tn_l8_unpack, tn_l8_gemv, tn_l8_gemm},
    {"L8/81", 256, 81, tn_l8_packed_size, tn_l8_pack, tn_l8_unpack, tn_l8_gemv, tn_l8_gemm},
    {"L8/200", 256, 200, tn_l8_packed_size, tn_l8_pack, tn_l8_unpack, tn_l8_gemv, tn_l8_gemm},
};

static void test_layout(void) {
    uint8_t idx[256], out[128], back[256];
    for (int i = 0; i < 256; i++) idx[i] = 0;
    idx[16 * 3 + 5] = 9; /* L4 column 53: s = 3, i = 5 -> byte 4*5 + 1, high nibble */
    idx[130] = 4;        /* second block, column 2: s = 0, i = 2 -> byte 64 + 8, low nibble */
    CHECK_OK(tn_l4_pack(idx, 1, 200, 16, out));
    CHECK(tn_l4_packed_size(1, 200) == 128);
    CHECK(out[21] == 0x90 && out[72] == 0x04);
    int others = 0;
    for (int i = 0; i < 128; i++)
        if (i != 21 && i != 72 && out[i]) others++;
    CHECK(others == 0);
    tn_l4_unpack(out, 1, 200, back);
    CHECK(memcmp(idx, back, 200) == 0);
    CHECK(tn_l8_row_bytes(65) == 128 && tn_l8_row_bytes(64) == 64);
    idx[0] = 16;
    CHECK(tn_l4_pack(idx, 1, 200, 16, out) != 0);
    idx[0] = 15;
    CHECK(tn_l4_pack(idx, 1, 200, 15, out) != 0); /* 15 is outside a grid of 15 */
    CHECK(strstr(tn_errmsg(), "outside the grid") != NULL);
    idx[0] = 81;
    uint8_t o8[256];
    CHECK(tn_l8_pack(idx, 1, 200, 81, o8) != 0);
    CHECK(tn_l8_pack(idx, 1, 200, 82, o8) == 0 && o8[0] == 81 && o8[199] == 0);
    float g[3] = {1, 2, 3}, gp[16];
    tn_lut_grid_pad(g, 3, gp, 16);
    CHECK(gp[2] == 3 && gp[3] == 0 && gp[15] == 0);
}

static void test_format(const fmt *f) {
    tn_rng g;
    tn_rng_seed(&g, 7);
    float grid[256];
    float raw[256];
    for (int i = 0; i < f->n_grid; i++) raw[i] = tn_rng_normal(&g);
    raw[f->n_grid / 2] = 0.0f; /* a zero inside the grid, as in prime81 */
    if (f->n_grid == 81) raw[80] = 0.0f; /* trailing zero: the used part of the grid ends early */
    tn_lut_grid_pad(raw, f->n_grid, grid, f->cap);
    tn_isa best = tn_cpu_best_isa();
    for (size_t s = 0; s < N_SHAPES; s++) {
        int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        const int64_t NT = 6;
        uint8_t *idx = tn_alloc((size_t)(rows * cols), 1), *back = tn_alloc((size_t)(rows * cols), 1);
        uint8_t *p = tn_alloc(f->size(rows, cols), 1);
        float *x = tn_alloc((size_t)(NT * cols), sizeof(float)), *rs = tn_alloc((size_t)rows, sizeof(float));
        float *y_ref = tn_alloc((size_t)(NT * rows), sizeof(float)), *y = tn_alloc((size_t)(NT * rows), sizeof(float));
        for (int64_t i = 0; i < rows * cols; i++) idx[i] = (uint8_t)tn_rng_below(&g, (uint64_t)f->n_grid);
        for (int64_t i = 0; i < NT * cols; i++) x[i] = tn_rng_normal(&g);
        for (int64_t r = 0; r < rows; r++) rs[r] = 0.5f + tn_rng_uniform(&g);
        CHECK_OK(f->pack(idx, rows, cols, f->n_grid, p));
        f->unpack(p, rows, cols, back);
        CHECKF(memcmp(idx, back, (size_t)(rows * cols)) == 0, "%s round trip %lldx%lld", f->name, (long long)rows,
               (long long)cols);
        const float ts = 0.25f;
        tn_kernels_set_isa(TN_ISA_SCALAR);
        for (int64_t t = 0; t < NT; t++) f->gemv(p, grid, rs, ts, rows, cols, x + t * cols, y_ref + t * rows);
        /* double reference */
        double maxd = 0, maxr = 0;
        for (int64_t t = 0; t < NT; t++)
            for (int64_t r = 0; r < rows; r++) {
                double acc = 0;
                for (int64_t c = 0; c < cols; c++) acc += (double)grid[idx[r * cols + c]] * x[t * cols + c];
                acc *= (double)ts * rs[r];
                maxd = fmax(maxd, fabs(acc - y_ref[t * rows + r]));
                maxr = fmax(maxr, fabs(acc));
            }
        CHECKF(maxd <= 1e-5 * maxr, "%s scalar vs double %lldx%lld: %g / %g", f->name, (long long)rows,
               (long long)cols, maxd, maxr);
        for (int lv = TN_ISA_AVX2; lv <= (int)best; lv++) {
            if (tn_kernels_set_isa((tn_isa)lv) != (tn_isa)lv) continue;
            memset(y, 0, (size_t)(NT * rows) * sizeof(float));
            for (int64_t t = 0; t < NT; t++) f->gemv(p, grid, rs, ts, rows, cols, x + t * cols, y + t * rows);
            double e = tn_test_rel_err(y, y_ref, (size_t)(NT * rows));
            CHECKF(e <= 1e-5, "%s gemv %s %lldx%lld: rel err %g", f->name, tn_isa_name((tn_isa)lv), (long long)rows,
                   (long long)cols, e);
            for (int64_t nt = 1; nt <= NT; nt++) {
                memset(y, 0, (size_t)(NT * rows) * sizeof(float));
                f->gemm(p, grid, rs, ts, rows, cols, nt, x, y);
                e = tn_test_rel_err(y, y_ref, (size_t)(nt * rows));
                CHECKF(e <= 1e-5, "%s gemm %s %lldx%lld n_tok=%lld: rel err %g", f->name, tn_isa_name((tn_isa)lv),
                       (long long)rows, (long long)cols, (long long)nt, e);
            }
            /* NULL row scale = all ones */
            f->gemv(p, grid, NULL, ts, rows, cols, x, y);
            float y1;
            f->gemv(p + (f->size(rows, cols) / (size_t)rows) * (size_t)(rows - 1), grid, NULL, ts, 1, cols, x, &y1);
            CHECK(fabsf(y[rows - 1] - y1) <= 1e-5f * (fabsf(y1) + 1e-3f));
        }
        tn_kernels_reset_isa();
        tn_free(idx);
        tn_free(back);
        tn_free(p);
        tn_free(x);
        tn_free(rs);
        tn_free(y_ref);
        tn_free(y);
    }
}

int main(void) {
    test_layout();
    for (size_t i = 0; i < sizeof FMTS / sizeof FMTS[0]; i++) test_format(&FMTS[i]);
    return tn_test_finish();
}
