/* Backward of a PRIMAL ghost linear layer against PyTorch autograd (tests/reference/gen_ghost.py writes
 * ghost_linear.h5): W = scale·grid[idx] by tn_primal_materialize, y = x Wᵀ, G = dyᵀ x and dx = dy W by
 * sgemm, the scale gradient and the votes by tn_primal_accumulate. Per-tensor and per-row scales.
 * Tolerance: max |C - ref| / max |ref| <= 1e-4; votes exact except where |G| is within 1e-4 relative of
 * the threshold (float32 G from sgemm vs float64 autograd can fall on either side there). */
#include "tn_test.h"

#include "core/error.h"
#include "core/h5.h"
#include "core/rng.h"
#include "optim/primal.h"
#include "quant/grid.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *read_all(hid_t g, const char *name, tn_h5_type t, int want_rank, int64_t *shape) {
    void *p = NULL;
    int rank;
    int64_t sh[TN_H5_MAX_RANK];
    if (tn_h5_read_alloc(g, name, t, &rank, sh, &p) != 0 || rank != want_rank) {
        fprintf(stderr, "reading %s: %s\n", name, tn_errmsg());
        exit(1);
    }
    for (int i = 0; i < rank; i++) shape[i] = sh[i];
    return p;
}

static void check_case(hid_t f, const char *name, const tn_grid *grid, double z) {
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    CHECK(g >= 0);
    int64_t sx[2], sdy[2], sidx[2], ss[1], tmp[2];
    float *x = read_all(g, "x", TN_H5_F32, 2, sx), *dy = read_all(g, "dy", TN_H5_F32, 2, sdy);
    uint8_t *idx = read_all(g, "idx", TN_H5_U8, 2, sidx);
    float *scale = read_all(g, "scale", TN_H5_F32, 1, ss);
    float *Wr = read_all(g, "W", TN_H5_F32, 2, tmp), *yr = read_all(g, "y", TN_H5_F32, 2, tmp);
    float *Gr = read_all(g, "G", TN_H5_F32, 2, tmp), *dxr = read_all(g, "dx", TN_H5_F32, 2, tmp);
    float *dsr = read_all(g, "dscale", TN_H5_F32, 1, tmp);
    int8_t *vb = read_all(g, "vote_before", TN_H5_I8, 2, tmp), *va = read_all(g, "vote_after", TN_H5_I8, 2, tmp);
    int64_t per_row, n_voters_ref;
    double thr;
    CHECK_OK(tn_h5_attr_get_i64(g, ".", "per_row", &per_row));
    CHECK_OK(tn_h5_attr_get_i64(g, ".", "n_voters", &n_voters_ref));
    CHECK_OK(tn_h5_attr_get_f64(g, ".", "thr", &thr));
    const int N = (int)sx[0], in = (int)sx[1], out = (int)sidx[0];
    CHECK(sidx[1] == in && sdy[0] == N && sdy[1] == out && ss[0] == (per_row ? out : 1));

    tn_primal_opts o;
    tn_primal_opts_default(&o);
    o.scale_per_row = (int)per_row;
    o.z = z;
    tn_rng rng;
    tn_rng_seed(&rng, 1);
    tn_primal_tensor t;
    CHECK_OK(tn_primal_tensor_init(&t, out, in, grid, &o, NULL, &rng));
    for (int64_t i = 0; i < t.n; i++) tn_primal_set_index(&t, i, idx[i]);
    memcpy(t.scale, scale, (size_t)t.n_scales * sizeof(float));
    memcpy(t.vote, vb, (size_t)t.n);

    float *W = malloc((size_t)out * in * sizeof(float)), *y = malloc((size_t)N * out * sizeof(float));
    float *G = malloc((size_t)out * in * sizeof(float)), *dx = malloc((size_t)N * in * sizeof(float));
    float *dscale = calloc((size_t)t.n_scales, sizeof(float));
    tn_primal_materialize(&t, W);
    /* y[N, out] = x[N, in] W[out, in]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    /* G[out, in] = dy[N, out]^T x[N, in] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 0.0f, G, in);
    /* dx[N, in] = dy[N, out] W[out, in] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in);
    int64_t voters;
    CHECK_OK(tn_primal_accumulate(&t, G, &o, dscale, &voters));

    double eW = tn_test_rel_err(W, Wr, (size_t)out * in), ey = tn_test_rel_err(y, yr, (size_t)N * out);
    double eG = tn_test_rel_err(G, Gr, (size_t)out * in), edx = tn_test_rel_err(dx, dxr, (size_t)N * in);
    double es = tn_test_rel_err(dscale, dsr, (size_t)t.n_scales);
    printf("%-6s W %.2e  y %.2e  G %.2e  dx %.2e  dscale %.2e\n", name, eW, ey, eG, edx, es);
    CHECKF(eW <= 1e-6, "%s: W rel err %g", name, eW);
    CHECKF(ey <= 1e-4, "%s: y rel err %g", name, ey);
    CHECKF(eG <= 1e-4, "%s: G rel err %g", name, eG);
    CHECKF(edx <= 1e-4, "%s: dx rel err %g", name, edx);
    CHECKF(es <= 1e-4, "%s: dscale rel err %g", name, es);

    int64_t wrong = 0, borderline = 0;
    for (int64_t i = 0; i < t.n; i++) {
        if (t.vote[i] == va[i]) continue;
        if (fabs(fabs((double)Gr[i]) - thr) <= 1e-4 * thr) borderline++;
        else wrong++;
    }
    printf("%-6s voters %lld (reference %lld), %lld borderline\n", name, (long long)voters, (long long)n_voters_ref,
           (long long)borderline);
    CHECKF(wrong == 0, "%s: %lld votes differ from the reference", name, (long long)wrong);
    CHECK(llabs(voters - n_voters_ref) <= borderline);
    CHECK(n_voters_ref > t.n / 20); /* the fixture exercises the vote path for real */

    tn_primal_tensor_free(&t);
    free(W), free(y), free(G), free(dx), free(dscale);
    free(x), free(dy), free(idx), free(scale), free(Wr), free(yr), free(Gr), free(dxr), free(dsr), free(vb), free(va);
    H5Gclose(g);
}

int main(void) {
    const char *path = tn_test_fixture("ghost_linear.h5");
    if (!path || access(path, R_OK) != 0) TN_SKIP("no fixture ghost_linear.h5 (run tests/reference/gen_ghost.py)");
    hid_t f;
    CHECK_OK(tn_h5_open(path, &f));
    char gname[64];
    double z;
    CHECK_OK(tn_h5_attr_get_str(f, ".", "grid_name", gname, sizeof gname));
    CHECK_OK(tn_h5_attr_get_f64(f, ".", "z", &z));
    tn_grid grid;
    CHECK_OK(tn_grid_by_name(gname, &grid));
    /* the C grid is the Python one bit for bit */
    float gv[TN_GRID_MAX];
    int64_t gn = grid.n;
    CHECK_OK(tn_h5_read(f, "grid", TN_H5_F32, 1, &gn, gv));
    CHECK(memcmp(gv, grid.v, (size_t)gn * sizeof(float)) == 0);
    check_case(f, "tensor", &grid, z);
    check_case(f, "row", &grid, z);
    tn_h5_close(f);
    return tn_test_finish();
}
