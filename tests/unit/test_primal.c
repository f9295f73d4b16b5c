/* optim/primal: the PRIMAL rule on hand-made gradients with fixed RNGs. Init, materialize, exact votes and
 * scale gradients, sign(scale), saturation at ±127, consensus, clamping at both ends of the weight's own
 * grid, index direction = value direction, p from the scale (statistically, with the clamps), vote clearing
 * and decay, determinism (RNG draws, thread count, packed = unpacked), save/load, the AVX2 vote kernel. */
#include "tn_test.h"

#include "core/config.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/rng.h"
#include "optim/primal.h"
#include "quant/grid.h"
#include "quant/snap.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tn_grid G15, G25;

/* Options with p fixed to `p` (p_min = p_max) so that flips are certain (1) or impossible (0). */
static tn_primal_opts fixed_p(double p) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    o.p_min = o.p_max = p;
    return o;
}

static void new_tensor(tn_primal_tensor *t, int64_t rows, int64_t cols, const tn_grid *g, const tn_primal_opts *o,
                       uint64_t seed) {
    tn_rng rng;
    tn_rng_seed(&rng, seed);
    CHECK_OK(tn_primal_tensor_init(t, rows, cols, g, o, NULL, &rng));
}

static void test_init(void) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    CHECK(o.z == 1.0 && o.c == 0.002 && o.p_min == 1e-4 && o.p_max == 0.05 && o.consensus == 1 &&
          o.vote_decay == 0.0 && o.init_std == 0.02 && !o.scale_per_row && !o.packed_indices);
    tn_primal_tensor t, tp;
    new_tensor(&t, 64, 100, &G15, &o, 5);
    /* replay the documented draw order: one normal per weight, row-major, snapped at scale 1.0 */
    tn_rng rng;
    tn_rng_seed(&rng, 5);
    int bad = 0, nonzero = 0;
    for (int64_t i = 0; i < t.n; i++) {
        int want = tn_grid_snap_one(&G15, 0.02f * tn_rng_normal(&rng));
        bad += tn_primal_index(&t, i) != want || t.vote[i] != 0;
        nonzero += want != G15.zero_idx;
    }
    CHECK(bad == 0);
    CHECK(t.scale[0] == 1.0f && t.n_scales == 1 && t.owns_scale);
    /* P(|N(0, 0.02²)| > (1/13)/2) = P(|z| > 1.923) = 0.0545 */
    CHECKF(fabs(nonzero / 6400.0 - 0.0545) < 0.012, "nonzero share %g", nonzero / 6400.0);
    /* packed: same indices, 1.5 bytes per weight */
    o.packed_indices = 1;
    o.scale_per_row = 1;
    new_tensor(&tp, 64, 100, &G15, &o, 5);
    bad = 0;
    for (int64_t i = 0; i < t.n; i++) bad += tn_primal_index(&tp, i) != tn_primal_index(&t, i);
    CHECK(bad == 0);
    int64_t ib, vb, sb;
    tn_primal_bytes(&t, &ib, &vb, &sb);
    CHECK(ib == 6400 && vb == 6400 && sb == 4);
    tn_primal_bytes(&tp, &ib, &vb, &sb);
    CHECK(ib == 3200 && vb == 6400 && sb == 64 * 4);
    CHECK(tp.n_scales == 64 && tp.scale[63] == 1.0f);
    /* packed needs <= 16 values */
    tn_primal_tensor bad_t;
    tn_rng_seed(&rng, 1);
    CHECK(tn_primal_tensor_init(&bad_t, 4, 4, &G25, &o, NULL, &rng) != 0);
    CHECK(strstr(tn_errmsg(), "16") != NULL);
    /* borrowed scale storage */
    float store[3] = {7, 7, 7};
    o.packed_indices = 0;
    CHECK_OK(tn_primal_tensor_init(&bad_t, 3, 5, &G25, &o, store, &rng));
    CHECK(!bad_t.owns_scale && bad_t.scale == store && store[2] == 1.0f);
    tn_primal_tensor_free(&bad_t);
    CHECK(store[0] == 1.0f); /* not freed, not cleared */
    tn_primal_tensor_free(&t);
    tn_primal_tensor_free(&tp);
}

static void test_materialize(void) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    for (int packed = 0; packed <= 1; packed++)
        for (int per_row = 0; per_row <= 1; per_row++) {
            o.packed_indices = packed;
            o.scale_per_row = per_row;
            tn_primal_tensor t;
            const int rows = 41, cols = 1001; /* odd, > 32768: OpenMP and AVX2 tails */
            new_tensor(&t, rows, cols, &G15, &o, 9);
            tn_rng rng;
            tn_rng_seed(&rng, 10);
            for (int64_t i = 0; i < t.n; i++) tn_primal_set_index(&t, i, (uint8_t)tn_rng_below(&rng, 15));
            for (int64_t r = 0; r < t.n_scales; r++) t.scale[r] = (r % 2 ? -0.5f : 2.0f) + 0.01f * (float)r;
            float *W = malloc((size_t)t.n * sizeof(float));
            tn_primal_materialize(&t, W);
            int bad = 0;
            for (int64_t i = 0; i < t.n; i++) {
                float s = t.scale[per_row ? i / cols : 0];
                bad += W[i] != s * G15.v[tn_primal_index(&t, i)];
            }
            CHECKF(bad == 0, "materialize packed=%d per_row=%d: %d wrong", packed, per_row, bad);
            float *W2 = malloc((size_t)rows * cols * sizeof(float));
            tn_quant_set_simd(0); /* the scalar path gives the same bits */
            tn_primal_materialize(&t, W2);
            tn_quant_set_simd(1);
            CHECK(memcmp(W, W2, (size_t)rows * cols * sizeof(float)) == 0);
            free(W2);
            free(W);
            tn_primal_tensor_free(&t);
        }
}

/* The worked example of docs/QUANT.md: 2×4, per-tensor scale. |G| = 4, .5, .25, 1, .5, 3, .25, 0:
 * mean 1.1875, std (n-1) 1.4806, threshold 2.668: only -4 and 3 vote. */
static void test_votes_exact(void) {
    const float G[8] = {-4.0f, 0.5f, 0.25f, 1.0f, 0.5f, 3.0f, -0.25f, 0.0f};
    double m = 0, v = 0;
    for (int i = 0; i < 8; i++) m += fabs(G[i]) / 8;
    for (int i = 0; i < 8; i++) v += (fabs(G[i]) - m) * (fabs(G[i]) - m) / 7;
    CHECK(fabs(m - 1.1875) < 1e-12 && m + sqrt(v) > 1.0 && m + sqrt(v) < 3.0);

    tn_primal_opts o;
    tn_primal_opts_default(&o);
    const float scales[3] = {1.0f, -2.0f, 0.0f};
    const int8_t want_vote[3][8] = {{1, 0, 0, 0, 0, -1, 0, 0}, {-1, 0, 0, 0, 0, 1, 0, 0}, {0}};
    for (int k = 0; k < 3; k++) {
        tn_primal_tensor t;
        new_tensor(&t, 2, 4, &G15, &o, 1);
        for (int i = 0; i < 8; i++) tn_primal_set_index(&t, i, 7); /* value 0 */
        tn_primal_set_index(&t, 0, 14);                           /* 1 */
        tn_primal_set_index(&t, 1, 13);                           /* 1/2 */
        tn_primal_set_index(&t, 5, 0);                            /* -1 */
        t.scale[0] = scales[k];
        float sg = 0.5f;
        int64_t voters = -1;
        CHECK_OK(tn_primal_accumulate(&t, G, &o, &sg, &voters));
        /* Σ G·grid[idx] = -4·1 + 0.5·0.5 + 3·(-1) = -6.75, added to 0.5 */
        CHECKF(sg == 0.5f - 6.75f, "scale grad %g", (double)sg);
        CHECK(memcmp(t.vote, want_vote[k], 8) == 0);
        CHECKF(voters == (k < 2 ? 2 : 0), "voters %lld", (long long)voters);
        tn_primal_tensor_free(&t);
    }
    /* per row: row 1 has a negative scale, so its vote flips; scale grads are per row */
    o.scale_per_row = 1;
    tn_primal_tensor t;
    new_tensor(&t, 2, 4, &G15, &o, 1);
    for (int i = 0; i < 8; i++) tn_primal_set_index(&t, i, 7);
    tn_primal_set_index(&t, 0, 14);
    tn_primal_set_index(&t, 1, 13);
    tn_primal_set_index(&t, 5, 0);
    t.scale[0] = 1.0f;
    t.scale[1] = -1.0f;
    float sg[2] = {0, 0};
    CHECK_OK(tn_primal_accumulate(&t, G, &o, sg, NULL));
    CHECK(sg[0] == -3.75f && sg[1] == -3.0f);
    CHECK(t.vote[0] == 1 && t.vote[5] == 1 && t.vote[1] == 0 && t.vote[4] == 0);
    /* z moves the threshold: z = -1 (threshold below the mean minus...) lets every nonzero G vote */
    o.z = -10.0;
    memset(t.vote, 0, 8);
    int64_t voters;
    CHECK_OK(tn_primal_accumulate(&t, G, &o, sg, &voters));
    CHECK(voters == 7 && t.vote[7] == 0 && t.vote[2] == -1 && t.vote[6] == -1); /* row 1: -sign(-0.25·-1) */
    /* NaN: error, nothing touched */
    float Gn[8];
    memcpy(Gn, G, sizeof Gn);
    Gn[3] = NAN;
    int8_t before[8];
    memcpy(before, t.vote, 8);
    sg[0] = sg[1] = 1.0f;
    CHECK(tn_primal_accumulate(&t, Gn, &o, sg, &voters) != 0);
    CHECK(memcmp(before, t.vote, 8) == 0 && sg[0] == 1.0f && sg[1] == 1.0f);
    Gn[3] = INFINITY;
    CHECK(tn_primal_accumulate(&t, Gn, &o, sg, &voters) != 0);
    tn_primal_tensor_free(&t);
}

static void test_saturation(void) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    tn_primal_tensor t;
    new_tensor(&t, 1, 10, &G15, &o, 2);
    float G[10] = {-5.0f, 5.0f, 0, 0, 0, 0, 0, 0, 0, 0}, sg = 0;
    int ok = 1;
    for (int k = 0; k < 200; k++) {
        int64_t voters;
        CHECK_OK(tn_primal_accumulate(&t, G, &o, &sg, &voters));
        ok &= voters == 2;
        int want = k + 1 < 127 ? k + 1 : 127;
        ok &= t.vote[0] == want && t.vote[1] == -want;
    }
    CHECK(ok);
    CHECK(t.vote[0] == 127 && t.vote[1] == -127 && t.vote[2] == 0);
    tn_primal_tensor_free(&t);
}

/* Direction: a vote of +1 (G < 0, scale > 0) moves the index up, the value up, and the loss down to first
 * order (G · ΔW < 0); with scale < 0 the index moves down and W = s·v still moves against G. */
static void test_direction(void) {
    for (int neg = 0; neg <= 1; neg++) {
        tn_primal_opts o = fixed_p(1.0);
        tn_primal_tensor t;
        new_tensor(&t, 1, 6, &G15, &o, 3);
        const uint8_t start[6] = {3, 7, 10, 12, 5, 9};
        for (int i = 0; i < 6; i++) tn_primal_set_index(&t, i, start[i]);
        t.scale[0] = neg ? -0.7f : 0.7f;
        const float G[6] = {-9, 8, -7, 6, -5, 4};
        float W0[6], W1[6], sg = 0;
        tn_primal_materialize(&t, W0);
        o.z = -10; /* everyone votes */
        CHECK_OK(tn_primal_accumulate(&t, G, &o, &sg, NULL));
        tn_rng rng;
        tn_rng_seed(&rng, 4);
        int64_t flipped;
        CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
        CHECK(flipped == 6);
        tn_primal_materialize(&t, W1);
        for (int i = 0; i < 6; i++) {
            int dir = (G[i] < 0) == !neg ? 1 : -1; /* index direction */
            CHECK(tn_primal_index(&t, i) == start[i] + dir);
            CHECK(G[i] * (W1[i] - W0[i]) < 0);
            CHECK(G15.v[start[i] + 1] > G15.v[start[i]]); /* ascending: up = larger */
        }
        tn_primal_tensor_free(&t);
    }
}

static void test_consensus_and_clamp(void) {
    tn_primal_opts o = fixed_p(1.0);
    o.consensus = 2;
    tn_primal_tensor t;
    new_tensor(&t, 1, 8, &G15, &o, 4);
    const uint8_t idx0[8] = {7, 7, 7, 7, 0, 14, 0, 14};
    const int8_t votes[8] = {1, -1, 2, -3, -5, 5, 5, -5};
    const uint8_t want[8] = {7, 7, 8, 6, 0, 14, 1, 13};
    for (int i = 0; i < 8; i++) tn_primal_set_index(&t, i, idx0[i]);
    memcpy(t.vote, votes, 8);
    tn_rng rng;
    tn_rng_seed(&rng, 5);
    int64_t flipped;
    CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
    for (int i = 0; i < 8; i++) CHECKF(tn_primal_index(&t, i) == want[i], "weight %d: %d", i, tn_primal_index(&t, i));
    CHECK(flipped == 4); /* clamped moves at the ends do not count */
    for (int i = 0; i < 8; i++) CHECK(t.vote[i] == 0);
    tn_primal_tensor_free(&t);

    /* A fine-grid tensor moves up to ITS top (24); the original scripts clamped it at 14. */
    o.consensus = 1;
    new_tensor(&t, 1, 4, &G25, &o, 4);
    const uint8_t f0[4] = {14, 20, 23, 24};
    for (int i = 0; i < 4; i++) tn_primal_set_index(&t, i, f0[i]), t.vote[i] = 1;
    CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
    CHECK(tn_primal_index(&t, 0) == 15 && tn_primal_index(&t, 1) == 21 && tn_primal_index(&t, 2) == 24 &&
          tn_primal_index(&t, 3) == 24 && flipped == 3);
    tn_primal_tensor_free(&t);
}

static void test_flip_probability(void) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    CHECK(tn_primal_flip_prob(&o, 1.0f) == 0.002 / (1.0 + 1e-6));
    CHECK(tn_primal_flip_prob(&o, -0.1f) == 0.002 / (fabs((double)-0.1f) + 1e-6));
    CHECK(tn_primal_flip_prob(&o, 0.01f) == 0.05);   /* p_max */
    CHECK(tn_primal_flip_prob(&o, 0.0f) == 0.05);
    CHECK(tn_primal_flip_prob(&o, 1000.0f) == 1e-4); /* p_min */

    /* Statistics: 4 rows × 250000 weights, every one voting +1 from the middle of the grid. Per-row scales
     * 0.1 (p = 0.02), 0.01 (clamped to p_max = 0.05), 100 (clamped to p_min = 1e-4), -0.2 (p = 0.01). */
    o.scale_per_row = 1;
    const int rows = 4, cols = 250000;
    const float sc[4] = {0.1f, 0.01f, 100.0f, -0.2f};
    tn_primal_tensor t;
    new_tensor(&t, rows, cols, &G15, &o, 6);
    for (int r = 0; r < rows; r++) t.scale[r] = sc[r];
    for (int64_t i = 0; i < t.n; i++) tn_primal_set_index(&t, i, 7), t.vote[i] = 1;
    tn_rng rng;
    tn_rng_seed(&rng, 7);
    int64_t flipped;
    CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
    int64_t total = 0;
    for (int r = 0; r < rows; r++) {
        int64_t moved = 0, wrong = 0;
        for (int64_t j = 0; j < cols; j++) {
            int k = tn_primal_index(&t, r * cols + j);
            moved += k == 8;
            wrong += k != 7 && k != 8;
        }
        double p = tn_primal_flip_prob(&o, sc[r]), frac = (double)moved / cols, sd = sqrt(p * (1 - p) / cols);
        CHECKF(fabs(frac - p) < 5 * sd, "row %d: flip fraction %g, p %g (5 sd = %g)", r, frac, p, 5 * sd);
        CHECK(wrong == 0);
        total += moved;
    }
    CHECK(total == flipped);
    int nonzero = 0;
    for (int64_t i = 0; i < t.n; i++) nonzero += t.vote[i] != 0;
    CHECK(nonzero == 0); /* cleared */
    tn_primal_tensor_free(&t);

    /* per-tensor scale: one p for everything */
    o.scale_per_row = 0;
    new_tensor(&t, 10, 100000, &G15, &o, 8);
    t.scale[0] = 0.1f;
    for (int64_t i = 0; i < t.n; i++) t.vote[i] = (int8_t)(i % 2 ? 3 : -3);
    CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
    double frac = (double)flipped / (double)t.n, p = tn_primal_flip_prob(&o, 0.1f);
    /* some weights already sit at a grid end and cannot move that way; they are a small share at init */
    CHECKF(fabs(frac - p) < 5 * sqrt(p * (1 - p) / (double)t.n) + 1e-4, "per-tensor fraction %g vs %g", frac, p);
    tn_primal_tensor_free(&t);
}

static void test_decay(void) {
    tn_primal_opts o = fixed_p(1.0);
    o.consensus = 3;
    o.vote_decay = 0.5;
    tn_primal_tensor t;
    new_tensor(&t, 1, 7, &G15, &o, 9);
    const int8_t v0[7] = {5, -3, 1, 2, -2, 127, -127};
    /* eligible (|v| >= 3) weights move and their vote is spent; the others keep trunc(v · 0.5) */
    const int8_t want[7] = {0, 0, 0, 1, -1, 0, 0};
    for (int i = 0; i < 7; i++) tn_primal_set_index(&t, i, 7);
    memcpy(t.vote, v0, 7);
    tn_rng rng;
    tn_rng_seed(&rng, 10);
    int64_t flipped;
    CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
    CHECK(memcmp(t.vote, want, 7) == 0 && flipped == 4);
    /* with p = 0 nothing moves and every vote decays, rounding toward zero */
    o.p_min = o.p_max = 0.0;
    const int8_t want0[7] = {2, -1, 0, 1, -1, 63, -63};
    memcpy(t.vote, v0, 7);
    CHECK_OK(tn_primal_step(&t, &rng, &o, &flipped));
    CHECK(memcmp(t.vote, want0, 7) == 0 && flipped == 0);
    tn_primal_tensor_free(&t);
}

/* Run a few accumulate/step rounds on a tensor and return a checksum-free copy of its indices. */
static void train_rounds(tn_primal_tensor *t, const tn_primal_opts *o, uint64_t seed, int rounds) {
    tn_rng data, rng;
    tn_rng_seed(&data, seed);
    tn_rng_seed(&rng, seed + 1);
    float *G = malloc((size_t)t->n * sizeof(float)), sg[64] = {0};
    for (int k = 0; k < rounds; k++) {
        for (int a = 0; a < 2; a++) { /* two micro-batches per step */
            for (int64_t i = 0; i < t->n; i++) G[i] = tn_rng_normal(&data) * (1.0f + (float)(i % 7));
            CHECK_OK(tn_primal_accumulate(t, G, o, sg, NULL));
        }
        CHECK_OK(tn_primal_step(t, &rng, o, NULL));
    }
    free(G);
}

static void test_determinism(void) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    o.p_min = 0.2;
    o.p_max = 0.3;
    o.scale_per_row = 1;
    const int rows = 37, cols = 2049; /* several step chunks, odd row length */
    tn_primal_tensor a, b, c;
    new_tensor(&a, rows, cols, &G15, &o, 20);
    o.packed_indices = 1;
    new_tensor(&b, rows, cols, &G15, &o, 20);
    new_tensor(&c, rows, cols, &G15, &o, 20);
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    train_rounds(&a, &o, 21, 3); /* unpacked, 1 thread */
    omp_set_num_threads(nt > 1 ? nt : 2);
    train_rounds(&b, &o, 21, 3); /* packed, several threads */
    omp_set_num_threads(nt);
    int same = 1, moved = 0;
    for (int64_t i = 0; i < a.n; i++) {
        same &= tn_primal_index(&a, i) == tn_primal_index(&b, i);
        moved += tn_primal_index(&a, i) != tn_primal_index(&c, i);
    }
    CHECK(same);
    CHECK(memcmp(a.vote, b.vote, (size_t)a.n) == 0);
    CHECKF(moved > 1000, "only %d weights moved", moved);
    /* one tn_rng_u64 per step call, nothing else */
    tn_rng r1, r2;
    tn_rng_seed(&r1, 99);
    r2 = r1;
    CHECK_OK(tn_primal_step(&a, &r1, &o, NULL));
    tn_rng_u64(&r2);
    CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    /* a non-finite scale: error, no draw */
    a.scale[3] = NAN;
    CHECK(tn_primal_step(&a, &r1, &o, NULL) != 0);
    CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    tn_primal_tensor_free(&a);
    tn_primal_tensor_free(&b);
    tn_primal_tensor_free(&c);
}

/* The accumulate of a big random tensor against a plain reference written from the rule. */
static void test_accumulate_reference(void) {
    for (int per_row = 0; per_row <= 1; per_row++) {
        tn_primal_opts o;
        tn_primal_opts_default(&o);
        o.scale_per_row = per_row;
        o.z = 0.7;
        const int rows = 53, cols = 1003;
        tn_primal_tensor t;
        new_tensor(&t, rows, cols, &G25, &o, 30);
        tn_rng rng;
        tn_rng_seed(&rng, 31);
        for (int64_t r = 0; r < t.n_scales; r++) t.scale[r] = tn_rng_normal(&rng);
        for (int64_t i = 0; i < t.n; i++) t.vote[i] = (int8_t)((int)tn_rng_below(&rng, 255) - 127);
        int8_t *want = malloc((size_t)rows * cols);
        memcpy(want, t.vote, (size_t)rows * cols);
        float *G = malloc((size_t)rows * cols * sizeof(float));
        for (int64_t i = 0; i < t.n; i++) G[i] = 1e-3f * tn_rng_normal(&rng);
        double mean = 0, m2 = 0, sgw[53] = {0};
        for (int64_t i = 0; i < t.n; i++) mean += fabs(G[i]);
        mean /= (double)t.n;
        for (int64_t i = 0; i < t.n; i++) m2 += (fabs(G[i]) - mean) * (fabs(G[i]) - mean);
        const double thr = mean + o.z * sqrt(m2 / (double)(t.n - 1));
        int64_t want_voters = 0;
        for (int64_t i = 0; i < t.n; i++) {
            const int64_t r = i / cols;
            const float s = t.scale[per_row ? r : 0];
            sgw[per_row ? r : 0] += (double)G[i] * G25.v[tn_primal_index(&t, i)];
            if (!(fabs(G[i]) > thr)) continue;
            int d = -((G[i] * s > 0) - (G[i] * s < 0));
            if (!d) continue;
            int v = want[i] + d;
            want[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            want_voters++;
        }
        float sg[53] = {0};
        int64_t voters;
        CHECK_OK(tn_primal_accumulate(&t, G, &o, sg, &voters));
        CHECK(voters == want_voters);
        CHECK(memcmp(t.vote, want, (size_t)t.n) == 0);
        int bad = 0;
        for (int64_t r = 0; r < t.n_scales; r++) bad += fabs(sg[r] - sgw[r]) > 1e-6 * (fabs(sgw[r]) + 1e-6);
        CHECK(bad == 0);
        CHECKF(voters > t.n / 20 && voters < t.n / 2, "voters %lld", (long long)voters);
        free(want);
        free(G);
        tn_primal_tensor_free(&t);
    }
}

static void test_vote_kernel(void) {
    tn_rng rng;
    tn_rng_seed(&rng, 40);
    enum { N = 1100 };
    float g[N];
    int8_t a[N], b[N];
    int bad = 0;
    for (int n = 0; n <= N; n += (n < 100 ? 1 : 333)) {
        for (int ss = -1; ss <= 1; ss++) {
            for (int i = 0; i < n; i++) {
                g[i] = (i % 17 == 0) ? 0.0f : (i % 13 == 0 ? -0.0f : tn_rng_normal(&rng));
                a[i] = b[i] = (int8_t)((int)tn_rng_below(&rng, 255) - 127);
            }
            if (n > 5) g[5] = 0.75f, g[4] = -0.75f; /* exactly at the threshold: no vote */
            int64_t ca = tn_primal_vote_row(g, a, n, 0.75f, ss, 0);
            int64_t cb = tn_primal_vote_row(g, b, n, 0.75f, ss, 1);
            bad += ca != cb || memcmp(a, b, (size_t)n) != 0;
            for (int i = 0; i < n; i++) bad += a[i] == -128;
        }
    }
    CHECKF(bad == 0, "vote kernels differ in %d cases", bad);
}

static void test_save_load(void) {
    char path[] = "/tmp/tn_test_primalXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    o.scale_per_row = 1;
    o.packed_indices = 1;
    tn_primal_tensor t, u, w;
    new_tensor(&t, 3, 5, &G15, &o, 50);
    train_rounds(&t, &o, 51, 2);
    tn_rng rng;
    tn_rng_seed(&rng, 52);
    for (int64_t i = 0; i < t.n; i++) t.vote[i] = (int8_t)((int)tn_rng_below(&rng, 255) - 127);
    t.scale[1] = -0.25f;

    hid_t f, g;
    CHECK_OK(tn_h5_create(path, &f));
    CHECK_OK(tn_h5_group(f, "primal/model.layers.0.mlp.up_proj.weight", &g));
    CHECK_OK(tn_primal_save(&t, g));
    H5Gclose(g);
    /* a corrupted copy: an index outside primal15 */
    CHECK_OK(tn_h5_group(f, "bad_idx", &g));
    CHECK_OK(tn_primal_save(&t, g));
    uint8_t idx[15];
    for (int i = 0; i < 15; i++) idx[i] = tn_primal_index(&t, i);
    idx[4] = 15;
    H5Ldelete(g, "idx", H5P_DEFAULT);
    const int64_t shape[2] = {3, 5};
    CHECK_OK(tn_h5_write(g, "idx", TN_H5_U8, 2, shape, idx, 0));
    H5Gclose(g);
    CHECK_OK(tn_h5_group(f, "bad_vote", &g));
    CHECK_OK(tn_primal_save(&t, g));
    int8_t vv[15];
    memcpy(vv, t.vote, 15);
    vv[14] = -128;
    H5Ldelete(g, "vote", H5P_DEFAULT);
    CHECK_OK(tn_h5_write(g, "vote", TN_H5_I8, 2, shape, vv, 0));
    H5Gclose(g);
    tn_h5_close(f);

    CHECK_OK(tn_h5_open(path, &f));
    /* into an unpacked tensor (different seed): identical state */
    o.packed_indices = 0;
    new_tensor(&u, 3, 5, &G15, &o, 77);
    g = H5Gopen2(f, "primal/model.layers.0.mlp.up_proj.weight", H5P_DEFAULT);
    CHECK_OK(tn_primal_load(&u, g));
    int same = 1;
    for (int64_t i = 0; i < t.n; i++) same &= tn_primal_index(&u, i) == tn_primal_index(&t, i);
    CHECK(same && memcmp(u.vote, t.vote, 15) == 0 && memcmp(u.scale, t.scale, 3 * sizeof(float)) == 0);
    /* wrong grid, wrong shape, wrong scale layout: refused, state untouched */
    new_tensor(&w, 3, 5, &G25, &o, 77);
    CHECK(tn_primal_load(&w, g) != 0 && strstr(tn_errmsg(), "grid") != NULL);
    tn_primal_tensor_free(&w);
    new_tensor(&w, 5, 3, &G15, &o, 77);
    CHECK(tn_primal_load(&w, g) != 0 && strstr(tn_errmsg(), "shape") != NULL);
    tn_primal_tensor_free(&w);
    o.scale_per_row = 0;
    new_tensor(&w, 3, 5, &G15, &o, 77);
    CHECK(tn_primal_load(&w, g) != 0 && strstr(tn_errmsg(), "scale_per_row") != NULL);
    tn_primal_tensor_free(&w);
    H5Gclose(g);
    o.scale_per_row = 1;
    new_tensor(&w, 3, 5, &G15, &o, 77);
    uint8_t before = tn_primal_index(&w, 4);
    g = H5Gopen2(f, "bad_idx", H5P_DEFAULT);
    CHECK(tn_primal_load(&w, g) != 0 && strstr(tn_errmsg(), "outside") != NULL);
    CHECK(tn_primal_index(&w, 4) == before && w.scale[0] == 1.0f);
    H5Gclose(g);
    g = H5Gopen2(f, "bad_vote", H5P_DEFAULT);
    CHECK(tn_primal_load(&w, g) != 0 && strstr(tn_errmsg(), "-128") != NULL);
    H5Gclose(g);
    tn_h5_close(f);
    tn_primal_tensor_free(&t);
    tn_primal_tensor_free(&u);
    tn_primal_tensor_free(&w);
    unlink(path);
}

static void test_config(void) {
    tn_config *c = tn_config_new();
    tn_primal_opts o;
    CHECK_OK(tn_primal_opts_from_config(c, &o));
    CHECK(o.z == 1.0 && o.consensus == 1 && o.p_max == 0.05);
    CHECK_OK(tn_config_put(c, "primal", "z", "1.5"));
    CHECK_OK(tn_config_put(c, "primal", "consensus", "2"));
    CHECK_OK(tn_config_put(c, "primal", "vote_decay", "0.5"));
    CHECK_OK(tn_config_put(c, "primal", "scale_per_row", "true"));
    CHECK_OK(tn_primal_opts_from_config(c, &o));
    CHECK(o.z == 1.5 && o.consensus == 2 && o.vote_decay == 0.5 && o.scale_per_row == 1 && o.packed_indices == 0);
    CHECK_OK(tn_config_check_unused(c));
    CHECK_OK(tn_config_put(c, "primal", "consensus", "0"));
    CHECK(tn_primal_opts_from_config(c, &o) != 0);
    CHECK_OK(tn_config_put(c, "primal", "consensus", "1"));
    CHECK_OK(tn_config_put(c, "primal", "p_min", "0.5"));
    CHECK(tn_primal_opts_from_config(c, &o) != 0 && strstr(tn_errmsg(), "p_min") != NULL);
    CHECK_OK(tn_config_put(c, "primal", "p_min", "0.001"));
    CHECK_OK(tn_config_put(c, "primal", "vote_decay", "1"));
    CHECK(tn_primal_opts_from_config(c, &o) != 0);
    tn_config_free(c);
}

int main(void) {
    CHECK_OK(tn_grid_by_name("primal15", &G15));
    CHECK_OK(tn_grid_by_name("primal25", &G25));
    test_init();
    test_materialize();
    test_votes_exact();
    test_saturation();
    test_direction();
    test_consensus_and_clamp();
    test_flip_probability();
    test_decay();
    test_determinism();
    test_accumulate_reference();
    test_vote_kernel();
    test_save_load();
    test_config();
    return tn_test_finish();
}
