/* CUDA PRIMAL ops (kernels/cuda/primal.cu) against the CPU (optim/primal.c), BIT FOR BIT: over grids
 * (ternary, prime7, primal15, primal25, prime81), packed 4-bit and byte indices, per-row and per-tensor
 * scales (per row with a zero and a negative scale; per tensor positive, negative and zero) and odd shapes
 * (1 x 1, odd element counts for packing, odd cols so packed bytes straddle rows, more rows than the combine
 * kernel stages at once):
 *   tn_cuda_primal_materialize  vs tn_primal_materialize (every float);
 *   tn_cuda_primal_accumulate   vs tn_primal_accumulate, two micro-batches, z = 1 and 0.3 (votes, scale_grad
 *                               bits, voter counts; saturated ±127 votes);
 *   tn_cuda_primal_flip         vs tn_primal_step_keyed, consensus 1 and 2, vote_decay 0 and 0.5, indices at
 *                               both grid ends, a high p_max so many weights move (idx bytes, votes, voted
 *                               and flipped counts), and once more without counts;
 *   a gradient with a NaN or an infinity fails on both and changes nothing on the device (votes,
 *   scale_grad). Without CUDA (or its emulator) or a device: skipped. */
#include "cuda_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "optim/primal.h"
#include "quant/grid.h"
#include "quant/pack.h"


#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

static int64_t count_diff(const void *a, const void *b, size_t n, size_t elem) {
    int64_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp((const char *)a + i * elem, (const char *)b + i * elem, elem) != 0;
    return d;
}

typedef struct {
    int64_t configs, mat_diff, vote_diff, sg_diff, voter_diff, idx_diff, count_diff, flips, votes_cast;
} primal_totals;

/* The device mirror of a CPU tensor: idx, vote, scale arrays in device memory, and its view. */
typedef struct {
    uint8_t *idx;
    int8_t *vote;
    float *scale;
    tn_ghost_view view;
    size_t idx_bytes;
} dev_tensor;

static int dev_tensor_make(dev_tensor *d, const tn_primal_tensor *t) {
    memset(d, 0, sizeof *d);
    d->idx_bytes = t->packed ? tn_pack4_bytes(t->n) : (size_t)t->n;
    d->idx = tn_test_dev_copy(t->idx, d->idx_bytes);
    d->vote = tn_test_dev_copy(t->vote, (size_t)t->n);
    d->scale = tn_test_dev_copy(t->scale, (size_t)t->n_scales * sizeof(float));
    d->view = tn_primal_view(t);
    d->view.idx = d->idx;
    d->view.vote = d->vote;
    d->view.scale = d->scale;
    return d->idx && d->vote && d->scale ? 0 : -1;
}

static void dev_tensor_free(dev_tensor *d) {
    tn_cuda_free(d->idx);
    tn_cuda_free(d->vote);
    tn_cuda_free(d->scale);
}

static void rand_grad(tn_rng *g, float *G, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float x = tn_rng_normal(g) * 1e-3f;
        if (i % 7 == 0) x *= 10.0f; /* heavy tail */
        if (i % 29 == 0) x = 0.0f;
        G[i] = x;
    }
}

/* Votes and indices of the device tensor equal the CPU's? Returns mismatching votes and idx bytes. */
static void compare_state(const tn_primal_tensor *t, const dev_tensor *d, int64_t *vote_diff, int64_t *idx_diff) {
    int8_t *v = tn_alloc((size_t)t->n, 1);
    uint8_t *ix = tn_alloc(d->idx_bytes, 1);
    CHECK_OK(tn_cuda_download(v, d->vote, (size_t)t->n));
    CHECK_OK(tn_cuda_download(ix, d->idx, d->idx_bytes));
    *vote_diff = count_diff(v, t->vote, (size_t)t->n, 1);
    *idx_diff = count_diff(ix, t->idx, d->idx_bytes, 1);
    tn_free(v);
    tn_free(ix);
}

/* One configuration: materialise, two accumulates, a flip with counts, a flip without, the non-finite error. */
static void run_config(const tn_grid *grid, int64_t rows, int64_t cols, int packed, int per_row, int variant,
                       primal_totals *tot) {
    tn_rng g;
    tn_rng_seed(&g, (uint64_t)(1000 + 37 * rows + 11 * cols + 5 * packed + 3 * per_row + variant));
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    o.init_std = 0.5; /* indices spread over the grid */
    o.scale_per_row = per_row;
    o.packed_indices = packed;
    o.consensus = variant % 2 ? 2 : 1;
    o.vote_decay = variant % 3 == 1 ? 0.5 : 0.0;
    o.p_max = 0.6; /* many flips */
    o.c = 0.3;
    tn_primal_tensor t;
    if (tn_primal_tensor_init(&t, rows, cols, grid, &o, NULL, &g) != 0) {
        CHECKF(0, "tensor init: %s", tn_errmsg());
        return;
    }
    const int64_t n = t.n, top = grid->n - 1;
    /* scales: per row random with a zero and a negative one; per tensor by variant */
    for (int64_t r = 0; r < t.n_scales; r++) t.scale[r] = 0.05f + 2.0f * tn_rng_uniform(&g);
    if (per_row && rows > 1) t.scale[1] = 0.0f;
    if (per_row && rows > 2) t.scale[2] = -0.4f;
    if (!per_row) t.scale[0] = variant % 3 == 0 ? 0.7f : variant % 3 == 1 ? -0.3f : (variant % 5 == 2 ? 0.0f : 1e-3f);
    /* indices at both ends of the grid, votes across the whole range (saturated included) */
    for (int64_t i = 0; i < n; i++) {
        if (i % 5 == 0) tn_primal_set_index(&t, i, 0);
        if (i % 5 == 1) tn_primal_set_index(&t, i, (uint8_t)top);
        int v = (int)tn_rng_below(&g, 255) - 127;
        if (i % 4 == 0) v = 0;
        if (i % 9 == 0) v = 127;
        if (i % 9 == 1) v = -127;
        if (i % 9 == 2) v = i % 2 ? 1 : -1;
        t.vote[i] = (int8_t)v;
    }
    dev_tensor d;
    if (dev_tensor_make(&d, &t) != 0) {
        dev_tensor_free(&d);
        tn_primal_tensor_free(&t);
        return;
    }
    const tn_ghost_view *dv = &d.view;

    /* materialise */
    float *W = tn_alloc((size_t)n, sizeof(float)), *Wg = tn_alloc((size_t)n, sizeof(float));
    float *dW = tn_cuda_alloc((size_t)n * sizeof(float));
    tn_primal_materialize(&t, W);
    CHECK_OK(tn_cuda_primal_materialize(dv, dW));
    CHECK_OK(tn_cuda_download(Wg, dW, (size_t)n * sizeof(float)));
    const int64_t md = count_diff(W, Wg, (size_t)n, sizeof(float));
    CHECKF(md == 0, "materialize %s [%lld, %lld] packed %d per_row %d: %lld differ", grid->name, (long long)rows,
           (long long)cols, packed, per_row, (long long)md);
    tot->mat_diff += md;

    /* accumulate: two micro-batches */
    float *G = tn_alloc((size_t)n, sizeof(float));
    float *sg = tn_alloc((size_t)t.n_scales, sizeof(float)), *sg_g = tn_alloc((size_t)t.n_scales, sizeof(float));
    for (int64_t r = 0; r < t.n_scales; r++) sg[r] = 0.01f * (float)(r + 1);
    float *dG = tn_cuda_alloc((size_t)n * sizeof(float)), *dsg = tn_test_dev_copy(sg, (size_t)t.n_scales * sizeof(float));
    int64_t vd = 0, id = 0;
    for (int mb = 0; mb < 2; mb++) {
        const double z = mb == 0 ? 1.0 : 0.3;
        rand_grad(&g, G, n);
        CHECK_OK(tn_cuda_upload(dG, G, (size_t)n * sizeof(float)));
        tn_primal_opts oz = o;
        oz.z = z;
        int64_t voters = -1, voters_g = -2;
        CHECK_OK(tn_primal_accumulate(&t, G, &oz, sg, &voters));
        CHECK_OK(tn_cuda_primal_accumulate(dv, dG, z, dsg, &voters_g));
        CHECK_OK(tn_cuda_download(sg_g, dsg, (size_t)t.n_scales * sizeof(float)));
        compare_state(&t, &d, &vd, &id);
        const int64_t sd = count_diff(sg, sg_g, (size_t)t.n_scales, sizeof(float));
        CHECKF(vd == 0 && sd == 0 && voters == voters_g,
               "accumulate %s [%lld, %lld] packed %d per_row %d z %g: %lld votes, %lld scale grads differ, voters "
               "%lld vs %lld",
               grid->name, (long long)rows, (long long)cols, packed, per_row, z, (long long)vd, (long long)sd,
               (long long)voters, (long long)voters_g);
        tot->vote_diff += vd;
        tot->sg_diff += sd;
        tot->voter_diff += voters != voters_g;
        tot->votes_cast += voters;
    }

    /* flip with counts, then again (fresh votes) without */
    const tn_flip_rule rule = tn_primal_rule(&o);
    const uint64_t key = tn_rng_u64(&g);
    int64_t voted = -1, flipped = -1, voted_g = -2, flipped_g = -2;
    tn_primal_step_keyed(&t, key, &o, &voted, &flipped);
    CHECK_OK(tn_cuda_primal_flip(dv, key, &rule, &voted_g, &flipped_g));
    compare_state(&t, &d, &vd, &id);
    CHECKF(vd == 0 && id == 0 && voted == voted_g && flipped == flipped_g,
           "flip %s [%lld, %lld] packed %d per_row %d consensus %d decay %g: %lld votes, %lld idx bytes differ; "
           "voted %lld vs %lld, flipped %lld vs %lld",
           grid->name, (long long)rows, (long long)cols, packed, per_row, o.consensus, o.vote_decay, (long long)vd,
           (long long)id, (long long)voted, (long long)voted_g, (long long)flipped, (long long)flipped_g);
    tot->vote_diff += vd;
    tot->idx_diff += id;
    tot->count_diff += (voted != voted_g) + (flipped != flipped_g);
    tot->flips += flipped;

    rand_grad(&g, G, n);
    CHECK_OK(tn_cuda_upload(dG, G, (size_t)n * sizeof(float)));
    CHECK_OK(tn_primal_accumulate(&t, G, &o, sg, NULL));
    CHECK_OK(tn_cuda_primal_accumulate(dv, dG, o.z, dsg, NULL));
    const uint64_t key2 = tn_rng_u64(&g);
    tn_primal_step_keyed(&t, key2, &o, NULL, NULL);
    CHECK_OK(tn_cuda_primal_flip(dv, key2, &rule, NULL, NULL));
    compare_state(&t, &d, &vd, &id);
    CHECKF(vd == 0 && id == 0, "second flip %s [%lld, %lld] packed %d per_row %d: %lld votes, %lld idx bytes differ",
           grid->name, (long long)rows, (long long)cols, packed, per_row, (long long)vd, (long long)id);
    tot->vote_diff += vd;
    tot->idx_diff += id;

    /* materialise after the flips */
    tn_primal_materialize(&t, W);
    CHECK_OK(tn_cuda_primal_materialize(dv, dW));
    CHECK_OK(tn_cuda_download(Wg, dW, (size_t)n * sizeof(float)));
    tot->mat_diff += count_diff(W, Wg, (size_t)n, sizeof(float));
    CHECK(count_diff(W, Wg, (size_t)n, sizeof(float)) == 0);

    /* a non-finite gradient: fails on both, the device state does not change */
    rand_grad(&g, G, n);
    G[n / 2] = variant % 2 ? NAN : -INFINITY;
    CHECK_OK(tn_cuda_upload(dG, G, (size_t)n * sizeof(float)));
    CHECK_OK(tn_cuda_download(sg_g, dsg, (size_t)t.n_scales * sizeof(float)));
    int8_t *vb = tn_alloc((size_t)n, 1), *va = tn_alloc((size_t)n, 1);
    float *sga = tn_alloc((size_t)t.n_scales, sizeof(float));
    CHECK_OK(tn_cuda_download(vb, d.vote, (size_t)n));
    CHECK(tn_primal_accumulate(&t, G, &o, sg, NULL) != 0);
    tn_err_clear();
    int64_t voters_g = 12345;
    const int rc = tn_cuda_primal_accumulate(dv, dG, o.z, dsg, &voters_g);
    CHECKF(rc != 0 && strstr(tn_errmsg(), "not finite") != NULL, "non-finite G: rc %d, '%s'", rc, tn_errmsg());
    tn_err_clear();
    CHECK_OK(tn_cuda_download(va, d.vote, (size_t)n));
    CHECK_OK(tn_cuda_download(sga, dsg, (size_t)t.n_scales * sizeof(float)));
    CHECK(memcmp(va, vb, (size_t)n) == 0 && memcmp(sga, sg_g, (size_t)t.n_scales * sizeof(float)) == 0);
    CHECK(voters_g == 12345);
    CHECK(memcmp(va, t.vote, (size_t)n) == 0); /* and equal to the CPU's, which did not change either */

    tot->configs++;
    tn_free(vb);
    tn_free(va);
    tn_free(sga);
    tn_free(W);
    tn_free(Wg);
    tn_free(G);
    tn_free(sg);
    tn_free(sg_g);
    tn_cuda_free(dW);
    tn_cuda_free(dG);
    tn_cuda_free(dsg);
    dev_tensor_free(&d);
    tn_primal_tensor_free(&t);
}

/* Gradients whose float scale gradient depends on the ORDER of the double sums (ties at the float rounding
 * boundary); ternary, every index at +1, scale 1:
 *   lanes: per row, row 0 of G = [1, 0, h, h, 2^-24, 0, 0, 0] (h = 2^-53). The CPU's (a0 + a1) + (a2 + a3)
 *     adds h + h = 2^-52 to 1 + 2^-24, so (float)sg rounds UP to 1 + 2^-23; (a0 + a2) + (a1 + a3) would
 *     lose both h.
 *   rows: per tensor, row 0 = [1, 0, 0, 0, 2^-24, 0, 0, 0], rows 1..3 = [h, 0, ...]. Row order loses every h
 *     (ties to even), so Σ sg = 1 + 2^-24 and (float) gives 1.0; a pairwise sum would give 1 + 2^-23. */
static void test_order(void) {
    static tn_grid grid;
    CHECK_OK(tn_grid_by_name("ternary", &grid));
    const float h = ldexpf(1.0f, -53), u = ldexpf(1.0f, -24);
    for (int per_row = 1; per_row >= 0; per_row--) {
        tn_primal_opts o;
        tn_primal_opts_default(&o);
        o.scale_per_row = per_row;
        tn_rng g;
        tn_rng_seed(&g, 3);
        tn_primal_tensor t;
        if (tn_primal_tensor_init(&t, 4, 8, &grid, &o, NULL, &g) != 0) {
            CHECKF(0, "%s", tn_errmsg());
            return;
        }
        for (int64_t i = 0; i < t.n; i++) {
            tn_primal_set_index(&t, i, 2);
            t.vote[i] = 0;
        }
        float G[32] = {0}, sg[4] = {0}, sg_g[4] = {-1, -1, -1, -1};
        G[0] = 1.0f;
        G[4] = u;
        if (per_row) G[2] = G[3] = h;
        for (int r = 1; r < 4; r++) G[r * 8] = h;
        dev_tensor d;
        float *dG = tn_test_dev_copy(G, sizeof G), *dsg = tn_test_dev_copy(sg, sizeof sg);
        if (dev_tensor_make(&d, &t) == 0 && dG && dsg) {
            CHECK_OK(tn_primal_accumulate(&t, G, &o, sg, NULL));
            CHECKF(sg[0] == (per_row ? 1.0f + 2.0f * u : 1.0f), "CPU order probe: %.9g", (double)sg[0]);
            CHECK_OK(tn_cuda_primal_accumulate(&d.view, dG, o.z, dsg, NULL));
            CHECK_OK(tn_cuda_download(sg_g, dsg, sizeof sg));
            CHECKF(memcmp(sg, sg_g, (size_t)t.n_scales * sizeof(float)) == 0,
                   "order probe per_row %d: GPU %.9g, CPU %.9g", per_row, (double)sg_g[0], (double)sg[0]);
        }
        tn_cuda_free(dG);
        tn_cuda_free(dsg);
        dev_tensor_free(&d);
        tn_primal_tensor_free(&t);
    }
}

static const char *GRIDS[] = {"ternary", "prime7", "primal15", "primal25", "prime81"};
#define N_GRIDS 5
static const int64_t SHAPES[][2] = {{1, 1}, {3, 5}, {1, 7}, {7, 33}, {5, 257}, {16, 100}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

static void test_all(void) {
    static tn_grid grids[N_GRIDS]; /* outlive the tensors */
    for (int gi = 0; gi < N_GRIDS; gi++) CHECK_OK(tn_grid_by_name(GRIDS[gi], &grids[gi]));
    primal_totals tot;
    memset(&tot, 0, sizeof tot);
    int variant = 0;
    for (int gi = 0; gi < N_GRIDS; gi++)
        for (size_t s = 0; s < N_SHAPES; s++)
            for (int packed = 0; packed < 2; packed++) {
                if (packed && grids[gi].n > 16) continue;
                for (int per_row = 0; per_row < 2; per_row++)
                    run_config(&grids[gi], SHAPES[s][0], SHAPES[s][1], packed, per_row, variant++, &tot);
            }
    /* more rows than one staging step of the combine kernel (1024), odd cols, packed */
    run_config(&grids[2], 1100, 3, 1, 1, 1, &tot);
    run_config(&grids[2], 1100, 3, 0, 0, 2, &tot);
    /* more rows than the row-mapped kernels launch row blocks (8192): their rows loop */
    run_config(&grids[0], 9001, 3, 1, 1, 4, &tot);
    printf("primal: %lld configurations (%lld votes cast, %lld flips); differing: %lld materialised floats, "
           "%lld votes, %lld scale grads, %lld voter counts, %lld idx bytes, %lld flip counts\n",
           (long long)tot.configs, (long long)tot.votes_cast, (long long)tot.flips, (long long)tot.mat_diff,
           (long long)tot.vote_diff, (long long)tot.sg_diff, (long long)tot.voter_diff, (long long)tot.idx_diff,
           (long long)tot.count_diff);
    CHECK(tot.flips > 0 && tot.votes_cast > 0);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    test_order();
    test_all();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
