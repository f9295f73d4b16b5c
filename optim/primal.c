/* PRIMAL vote/flip optimizer. The rule, its defaults and the order of random draws are in the comment at
 * the top of optim/primal.h; this file implements exactly that, with a scalar and an AVX2 vote kernel. */
#include "optim/primal.h"
#include "core/alloc.h"
#include "kernels/primal_math.h"
#include "core/error.h"
#include "core/h5.h"
#include "quant/pack.h"
#include "quant/snap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TN_X86 1
#else
#define TN_X86 0
#endif

#define TN_PRIMAL_FORMAT "trinity-primal"
#define TN_PRIMAL_VERSION 1
#define VOTE_MAX 127
/* Work items of the flat loops in tn_primal_step: even, so two threads never share a packed byte. */
#define STEP_CHUNK 16384

/* ---- options ------------------------------------------------------------------------------------------ */

void tn_primal_opts_default(tn_primal_opts *o) {
    o->z = 1.0;
    o->c = 0.002;
    o->p_min = 1e-4;
    o->p_max = 0.05;
    o->consensus = 1;
    o->vote_decay = 0.0;
    o->init_std = 0.02;
    o->scale_per_row = 0;
    o->packed_indices = 0;
}

int tn_primal_opts_check(const tn_primal_opts *o) {
    if (!isfinite(o->z)) return tn_err("[primal] z = %g: must be finite", o->z);
    if (!(o->c >= 0) || !isfinite(o->c)) return tn_err("[primal] c = %g: must be >= 0", o->c);
    if (!(o->p_min >= 0 && o->p_min <= o->p_max && o->p_max <= 1))
        return tn_err("[primal] p_min = %g, p_max = %g: need 0 <= p_min <= p_max <= 1", o->p_min, o->p_max);
    if (o->consensus < 1 || o->consensus > VOTE_MAX)
        return tn_err("[primal] consensus = %d: must be in 1..%d (votes saturate at ±%d)", o->consensus, VOTE_MAX,
                      VOTE_MAX);
    if (!(o->vote_decay >= 0 && o->vote_decay < 1))
        return tn_err("[primal] vote_decay = %g: must be in [0, 1)", o->vote_decay);
    if (!(o->init_std > 0) || !isfinite(o->init_std)) return tn_err("[primal] init_std = %g: must be > 0", o->init_std);
    return 0;
}

int tn_primal_opts_from_config(tn_config *c, tn_primal_opts *o) {
    tn_primal_opts d;
    tn_primal_opts_default(&d);
    int64_t consensus;
    TN_CHECK(tn_config_float(c, "primal", "z", d.z, &o->z));
    TN_CHECK(tn_config_float(c, "primal", "c", d.c, &o->c));
    TN_CHECK(tn_config_float(c, "primal", "p_min", d.p_min, &o->p_min));
    TN_CHECK(tn_config_float(c, "primal", "p_max", d.p_max, &o->p_max));
    TN_CHECK(tn_config_int(c, "primal", "consensus", d.consensus, &consensus));
    TN_CHECK(tn_config_float(c, "primal", "vote_decay", d.vote_decay, &o->vote_decay));
    TN_CHECK(tn_config_float(c, "primal", "init_std", d.init_std, &o->init_std));
    TN_CHECK(tn_config_bool(c, "primal", "scale_per_row", d.scale_per_row, &o->scale_per_row));
    TN_CHECK(tn_config_bool(c, "primal", "packed_indices", d.packed_indices, &o->packed_indices));
    if (consensus < 1 || consensus > VOTE_MAX)
        return tn_err("[primal] consensus = %lld: must be in 1..%d", (long long)consensus, VOTE_MAX);
    o->consensus = (int)consensus;
    return tn_primal_opts_check(o);
}

/* ---- state ------------------------------------------------------------------------------------------- */

uint8_t tn_primal_index(const tn_primal_tensor *t, int64_t i) {
    return t->packed ? tn_pack4_get(t->idx, i) : t->idx[i];
}

void tn_primal_set_index(tn_primal_tensor *t, int64_t i, uint8_t v) {
    if (t->packed) tn_pack4_set(t->idx, i, v);
    else t->idx[i] = v;
}

int tn_primal_tensor_init(tn_primal_tensor *t, int64_t rows, int64_t cols, const tn_grid *grid,
                          const tn_primal_opts *o, float *scale_storage, tn_rng *rng) {
    memset(t, 0, sizeof *t);
    if (rows <= 0 || cols <= 0) return tn_err("primal: empty tensor [%lld, %lld]", (long long)rows, (long long)cols);
    if (!grid || grid->n < 2) return tn_err("primal: no grid");
    TN_CHECK(tn_primal_opts_check(o));
    if (o->packed_indices && grid->n > 16)
        return tn_err("primal: packed_indices needs a grid of at most 16 values; '%s' has %d", grid->name, grid->n);
    t->rows = rows;
    t->cols = cols;
    t->n = rows * cols;
    t->grid = grid;
    t->packed = o->packed_indices != 0;
    t->scale_per_row = o->scale_per_row != 0;
    t->n_scales = t->scale_per_row ? rows : 1;
    t->idx = tn_alloc(t->packed ? tn_pack4_bytes(t->n) : (size_t)t->n, 1);
    t->vote = tn_alloc((size_t)t->n, 1);
    if (scale_storage) {
        t->scale = scale_storage;
    } else {
        t->scale = tn_alloc((size_t)t->n_scales, sizeof(float));
        t->owns_scale = 1;
    }
    if (!t->idx || !t->vote || !t->scale) {
        tn_primal_tensor_free(t);
        return tn_err_prefix("primal: allocating state for [%lld, %lld]", (long long)rows, (long long)cols);
    }
    for (int64_t r = 0; r < t->n_scales; r++) t->scale[r] = 1.0f;
    /* One normal per weight in row-major order (the documented draw order). The scale is 1.0, so the
     * value snapped is the sample itself. */
    const float std = (float)o->init_std;
    for (int64_t i = 0; i < t->n; i++) {
        float w = std * tn_rng_normal(rng);
        tn_primal_set_index(t, i, (uint8_t)tn_grid_snap_one(grid, w));
    }
    return 0;
}

void tn_primal_tensor_free(tn_primal_tensor *t) {
    if (!t) return;
    tn_free(t->idx);
    tn_free(t->vote);
    if (t->owns_scale) tn_free(t->scale);
    memset(t, 0, sizeof *t);
}

void tn_primal_bytes(const tn_primal_tensor *t, int64_t *idx_bytes, int64_t *vote_bytes, int64_t *scale_bytes) {
    if (idx_bytes) *idx_bytes = t->packed ? (int64_t)tn_pack4_bytes(t->n) : t->n;
    if (vote_bytes) *vote_bytes = t->n;
    if (scale_bytes) *scale_bytes = t->n_scales * (int64_t)sizeof(float);
}

static inline float row_scale(const tn_primal_tensor *t, int64_t r) { return t->scale[t->scale_per_row ? r : 0]; }

/* ---- forward ----------------------------------------------------------------------------------------- */

void tn_primal_materialize(const tn_primal_tensor *t, float *W) {
    const int64_t rows = t->rows, cols = t->cols;
#pragma omp parallel for schedule(static) if (t->n > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float s = row_scale(t, r);
        if (!t->packed) {
            tn_grid_dequant(t->grid, t->idx + r * cols, cols, s, W + r * cols);
            continue;
        }
        uint8_t buf[1024]; /* unpack a piece, then the same dequant kernel */
        for (int64_t j0 = 0; j0 < cols; j0 += (int64_t)sizeof buf) {
            int64_t len = cols - j0 < (int64_t)sizeof buf ? cols - j0 : (int64_t)sizeof buf;
            for (int64_t j = 0; j < len; j++) buf[j] = tn_pack4_get(t->idx, r * cols + j0 + j);
            tn_grid_dequant(t->grid, buf, len, s, W + r * cols + j0);
        }
    }
}

/* ---- backward: statistics, scale gradient, votes ------------------------------------------------------ */

typedef struct {
    double s1;   /* Σ |G| */
    double m2;   /* Σ (|G| - mean_row)² */
    double sg;   /* Σ G · grid[idx] */
} row_acc;

/* Four independent accumulators per sum for instruction-level parallelism; their order is fixed, so the
 * result is deterministic. */
static void row_stats(const tn_primal_tensor *t, const float *g, int64_t r, row_acc *out) {
    const int64_t cols = t->cols, base = r * cols;
    const float *v = t->grid->v;
    double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4)
        for (int k = 0; k < 4; k++) {
            a[k] += fabs((double)g[j + k]);
            b[k] += (double)g[j + k] * (double)v[tn_primal_index(t, base + j + k)];
        }
    for (; j < cols; j++) {
        a[0] += fabs((double)g[j]);
        b[0] += (double)g[j] * (double)v[tn_primal_index(t, base + j)];
    }
    const double s1 = (a[0] + a[1]) + (a[2] + a[3]);
    const double mean = s1 / (double)cols;
    double m[4] = {0, 0, 0, 0};
    j = 0;
    for (; j + 4 <= cols; j += 4)
        for (int k = 0; k < 4; k++) {
            double d = fabs((double)g[j + k]) - mean;
            m[k] += d * d;
        }
    for (; j < cols; j++) {
        double d = fabs((double)g[j]) - mean;
        m[0] += d * d;
    }
    out->s1 = s1;
    out->m2 = (m[0] + m[1]) + (m[2] + m[3]);
    out->sg = (b[0] + b[1]) + (b[2] + b[3]);
}

/* Votes for one row: where |g| > thr, vote = sat(vote + d), d = -sign(g) · ss, ss = sign(scale) in {-1, 0, 1}.
 * Returns the number of weights that voted (d != 0). */
static int64_t vote_row_ref(const float *g, int8_t *vote, int64_t n, float thr, int ss) {
    if (ss == 0) return 0;
    int64_t cnt = 0;
    for (int64_t j = 0; j < n; j++) {
        const float x = g[j];
        if (!(fabsf(x) > thr)) continue;
        const int d = ((x < 0.0f) - (x > 0.0f)) * ss;
        if (!d) continue;
        int v = vote[j] + d;
        vote[j] = (int8_t)(v > VOTE_MAX ? VOTE_MAX : v < -VOTE_MAX ? -VOTE_MAX : v);
        cnt++;
    }
    return cnt;
}

#if TN_X86
/* 32 weights per iteration: four float compares to ±1/0 int32 lanes, packed to int8 in order, then one
 * saturating add (adds_epi8 saturates at +127 and -128; the max brings -128 back to -127). */
__attribute__((target("avx2"))) static int64_t vote_row_avx2(const float *g, int8_t *vote, int64_t n, float thr,
                                                              int ss) {
    if (ss == 0) return 0;
    const __m256 sign = _mm256_set1_ps(-0.0f), vt = _mm256_set1_ps(thr), zero = _mm256_setzero_ps();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), vmin = _mm256_set1_epi8(-VOTE_MAX);
    int64_t cnt = 0, j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256i d[4];
        for (int k = 0; k < 4; k++) {
            __m256 x = _mm256_loadu_ps(g + j + 8 * k);
            __m256i sel = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(sign, x), vt, _CMP_GT_OQ));
            __m256i pos = _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_GT_OQ)); /* -1 where x > 0 */
            __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_LT_OQ)); /* -1 where x < 0 */
            __m256i dk = _mm256_and_si256(_mm256_sub_epi32(pos, neg), sel);       /* -sign(x) where voting */
            d[k] = ss < 0 ? _mm256_sub_epi32(_mm256_setzero_si256(), dk) : dk;
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(d[0], d[1]), _mm256_packs_epi32(d[2], d[3]));
        p = _mm256_permutevar8x32_epi32(p, order); /* undo the per-128-bit-lane interleave of the packs */
        unsigned zmask = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(p, _mm256_setzero_si256()));
        cnt += 32 - __builtin_popcount(zmask);
        __m256i v = _mm256_loadu_si256((const __m256i *)(vote + j));
        v = _mm256_max_epi8(_mm256_adds_epi8(v, p), vmin);
        _mm256_storeu_si256((__m256i *)(vote + j), v);
    }
    return cnt + vote_row_ref(g + j, vote + j, n - j, thr, ss);
}
#endif

int64_t tn_primal_vote_row(const float *g, int8_t *vote, int64_t n, float thr, int ss, int allow_simd) {
#if TN_X86
    if (allow_simd && tn_quant_have_avx2()) return vote_row_avx2(g, vote, n, thr, ss);
#endif
    (void)allow_simd;
    return vote_row_ref(g, vote, n, thr, ss);
}

/* The largest float <= thr: for a float a, a > thr (in double) <=> a > that float. Lets the vote kernels
 * compare in single precision and still apply the double-precision threshold exactly. */
static float float_below(double thr) {
    float f = (float)thr;
    if ((double)f > thr) f = nextafterf(f, -INFINITY);
    return f;
}

int tn_primal_accumulate(tn_primal_tensor *t, const float *G, const tn_primal_opts *o, float *scale_grad,
                         int64_t *n_voters) {
    const int64_t rows = t->rows, cols = t->cols, n = t->n;
    row_acc *acc = malloc((size_t)rows * sizeof *acc);
    if (!acc) return tn_err("primal: out of memory for %lld row sums", (long long)rows);
    const int big = n > 32768;

#pragma omp parallel for schedule(static) if (big)
    for (int64_t r = 0; r < rows; r++) row_stats(t, G + r * cols, r, &acc[r]);

    /* Combine rows in order (Chan et al.'s pairwise update): M2 = Σ_r [M2_r + cols (mean_r - mean)²]. */
    double s1 = 0, m2 = 0;
    for (int64_t r = 0; r < rows; r++) s1 += acc[r].s1;
    const double mean = s1 / (double)n;
    for (int64_t r = 0; r < rows; r++) {
        const double d = acc[r].s1 / (double)cols - mean;
        m2 += acc[r].m2 + (double)cols * d * d;
    }
    if (!isfinite(s1) || !isfinite(m2)) { /* a NaN or inf anywhere in G makes Σ|G| non-finite */
        free(acc);
        return tn_err("primal: gradient of [%lld, %lld] tensor is not finite", (long long)rows, (long long)cols);
    }
    /* Bessel-corrected std, like torch.Tensor.std() in the original scripts. */
    const double std = n > 1 ? sqrt(m2 / (double)(n - 1)) : 0.0;
    const float thr = float_below(mean + o->z * std);

    if (t->scale_per_row) {
        for (int64_t r = 0; r < rows; r++) scale_grad[r] += (float)acc[r].sg;
    } else {
        double sg = 0;
        for (int64_t r = 0; r < rows; r++) sg += acc[r].sg;
        scale_grad[0] += (float)sg;
    }
    free(acc);

    int64_t voters = 0;
#pragma omp parallel for schedule(static) reduction(+ : voters) if (big)
    for (int64_t r = 0; r < rows; r++) {
        const float s = row_scale(t, r);
        const int ss = (s > 0.0f) - (s < 0.0f);
        voters += tn_primal_vote_row(G + r * cols, t->vote + r * cols, cols, thr, ss, 1);
    }
    if (n_voters) *n_voters = voters;
    return 0;
}

/* ---- optimizer step ---------------------------------------------------------------------------------- */

double tn_primal_flip_prob(const tn_primal_opts *o, float scale) {
    return tn_primal_prob(o->c, o->p_min, o->p_max, scale);
}

/* THE FLIP RULE, one optimizer step of one ghost tensor (votes were cast by tn_primal_vote):
 *   p = clamp(c / (|scale| + 1e-6), p_min, p_max)          the tensor's scale, or each row's (scale_per_row)
 *   every weight i with |vote_i| >= consensus, with probability p:
 *       idx_i += sign(vote_i), clamped to 0 .. n - 1 of its own grid ([primal] grid, or fine_grid for
 *       fine layers; primal15 and primal25 by default)
 *   then vote_i = 0, or trunc(vote_i * vote_decay) when vote_decay > 0 and weight i was not selected
 *   (a selected vote is spent even when the weight sits at its grid's end and cannot move).
 * The uniform draw for weight i is tn_primal_uniform(key, i) (kernels/primal_math.h) with one key per call,
 * so the result does not depend on the thread count, nor on the device. */
int tn_primal_step(tn_primal_tensor *t, tn_rng *rng, const tn_primal_opts *o, int64_t *n_flipped) {
    TN_CHECK(tn_primal_opts_check(o));
    TN_CHECK(tn_primal_check_scales(t->scale, t->n_scales));
    const uint64_t key = tn_rng_u64(rng); /* the one draw of this call */
    tn_primal_step_keyed(t, key, o, NULL, n_flipped);
    return 0;
}

int tn_primal_check_scales(const float *scale, int64_t n) {
    for (int64_t r = 0; r < n; r++)
        if (!isfinite(scale[r])) return tn_err("primal: scale %lld is %g", (long long)r, (double)scale[r]);
    return 0;
}

void tn_primal_step_keyed(tn_primal_tensor *t, uint64_t key, const tn_primal_opts *o, int64_t *n_voted,
                          int64_t *n_flipped) {
    const int64_t n = t->n, cols = t->cols, top = t->grid->n - 1;
    const int consensus = o->consensus;
    const double decay = o->vote_decay;
    const int64_t nchunks = (n + STEP_CHUNK - 1) / STEP_CHUNK;
    int64_t flipped = 0, voted = 0;

#pragma omp parallel for schedule(static) reduction(+ : flipped, voted) if (nchunks > 2)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t i0 = c * STEP_CHUNK, i1 = i0 + STEP_CHUNK < n ? i0 + STEP_CHUNK : n;
        int64_t r = i0 / cols, col = i0 % cols;
        double p = tn_primal_flip_prob(o, row_scale(t, r));
        for (int64_t i = i0; i < i1; i++, col++) {
            if (col == cols) { /* next row: its own scale, its own p */
                col = 0;
                r++;
                if (t->scale_per_row) p = tn_primal_flip_prob(o, row_scale(t, r));
            }
            const int v = t->vote[i];
            int spent = 0;
            voted += v != 0;
            if ((v < 0 ? -v : v) >= consensus && tn_primal_uniform(key, i) < p) {
                spent = 1;
                const int k = tn_primal_index(t, i);
                int k2 = k + (v > 0 ? 1 : -1);
                k2 = k2 < 0 ? 0 : k2 > top ? (int)top : k2; /* the weight's own grid ends */
                if (k2 != k) {
                    tn_primal_set_index(t, i, (uint8_t)k2);
                    flipped++;
                }
            }
            /* Clear, or decay with truncation toward zero; a selected vote is spent. */
            t->vote[i] = tn_primal_vote_after(v, spent, decay);
        }
    }
    if (n_voted) *n_voted = voted;
    if (n_flipped) *n_flipped = flipped;
}

/* ---- views for the ops table -------------------------------------------------------------------------- */

tn_ghost_view tn_primal_view(const tn_primal_tensor *t) {
    tn_ghost_view v = {t->rows, t->cols, t->grid, t->packed, t->scale_per_row, t->idx, t->vote, t->scale};
    return v;
}

tn_flip_rule tn_primal_rule(const tn_primal_opts *o) {
    tn_flip_rule r = {o->z, o->c, o->p_min, o->p_max, o->vote_decay, o->consensus};
    return r;
}

tn_primal_tensor tn_primal_tensor_of(const tn_ghost_view *v) {
    tn_primal_tensor t;
    memset(&t, 0, sizeof t);
    t.rows = v->rows;
    t.cols = v->cols;
    t.n = v->rows * v->cols;
    t.grid = v->grid;
    t.packed = v->packed;
    t.scale_per_row = v->scale_per_row;
    t.n_scales = v->scale_per_row ? v->rows : 1;
    t.idx = v->idx;
    t.vote = v->vote;
    t.scale = v->scale;
    return t;
}

tn_primal_opts tn_primal_opts_of(const tn_flip_rule *r, double z) {
    tn_primal_opts o;
    tn_primal_opts_default(&o);
    o.z = z;
    if (r) {
        o.c = r->c;
        o.p_min = r->p_min;
        o.p_max = r->p_max;
        o.vote_decay = r->vote_decay;
        o.consensus = r->consensus;
    }
    return o;
}

/* ---- save / load ------------------------------------------------------------------------------------- */

int tn_primal_save(const tn_primal_tensor *t, hid_t group) {
    const int64_t shape[2] = {t->rows, t->cols}, ns = t->n_scales, gn = t->grid->n;
    uint8_t *idx = t->idx;
    if (t->packed) {
        idx = tn_alloc((size_t)t->n, 1);
        if (!idx) return tn_err_prefix("primal save");
        tn_unpack4(t->idx, t->n, idx);
    }
    int rc = tn_h5_write(group, "idx", TN_H5_U8, 2, shape, idx, 1);
    if (t->packed) tn_free(idx);
    TN_CHECK(rc);
    TN_CHECK(tn_h5_write(group, "vote", TN_H5_I8, 2, shape, t->vote, 1));
    TN_CHECK(tn_h5_write(group, "scale", TN_H5_F32, 1, &ns, t->scale, 0));
    TN_CHECK(tn_h5_write(group, "grid", TN_H5_F32, 1, &gn, t->grid->v, 0));
    TN_CHECK(tn_h5_attr_set_str(group, ".", "format", TN_PRIMAL_FORMAT));
    TN_CHECK(tn_h5_attr_set_i64(group, ".", "version", TN_PRIMAL_VERSION));
    TN_CHECK(tn_h5_attr_set_str(group, ".", "grid_name", t->grid->name));
    TN_CHECK(tn_h5_attr_set_i64(group, ".", "rows", t->rows));
    TN_CHECK(tn_h5_attr_set_i64(group, ".", "cols", t->cols));
    TN_CHECK(tn_h5_attr_set_i64(group, ".", "scale_per_row", t->scale_per_row));
    return 0;
}

int tn_primal_load(tn_primal_tensor *t, hid_t group) {
    char fmt[64], gname[TN_GRID_NAME_MAX + 8];
    int64_t version, rows, cols, per_row;
    TN_CHECK(tn_h5_attr_get_str(group, ".", "format", fmt, sizeof fmt));
    if (strcmp(fmt, TN_PRIMAL_FORMAT) != 0) return tn_err("primal state: format '%s', expected '%s'", fmt, TN_PRIMAL_FORMAT);
    TN_CHECK(tn_h5_attr_get_i64(group, ".", "version", &version));
    if (version != TN_PRIMAL_VERSION) return tn_err("primal state: version %lld not supported", (long long)version);
    TN_CHECK(tn_h5_attr_get_i64(group, ".", "rows", &rows));
    TN_CHECK(tn_h5_attr_get_i64(group, ".", "cols", &cols));
    TN_CHECK(tn_h5_attr_get_i64(group, ".", "scale_per_row", &per_row));
    TN_CHECK(tn_h5_attr_get_str(group, ".", "grid_name", gname, sizeof gname));
    if (rows != t->rows || cols != t->cols)
        return tn_err("primal state: shape [%lld, %lld], the model has [%lld, %lld]", (long long)rows, (long long)cols,
                      (long long)t->rows, (long long)t->cols);
    if ((per_row != 0) != (t->scale_per_row != 0))
        return tn_err("primal state: scale_per_row = %lld in the checkpoint, %d in the config", (long long)per_row,
                      t->scale_per_row);
    /* The grid must be the same table, value for value: indices mean nothing on another grid. */
    int64_t gn = t->grid->n;
    float gv[TN_GRID_MAX];
    int rank;
    int64_t gshape[TN_H5_MAX_RANK];
    TN_CHECK(tn_h5_shape(group, "grid", &rank, gshape));
    if (rank != 1 || gshape[0] != gn || tn_h5_read(group, "grid", TN_H5_F32, 1, &gn, gv) != 0 ||
        memcmp(gv, t->grid->v, (size_t)gn * sizeof(float)) != 0)
        return tn_err("primal state: saved with grid '%s', the config uses '%s' (different values)", gname,
                      t->grid->name);

    const int64_t shape[2] = {rows, cols}, ns = t->n_scales;
    uint8_t *idx = tn_alloc((size_t)t->n, 1);
    int8_t *vote = tn_alloc((size_t)t->n, 1);
    float *scale = tn_alloc((size_t)ns, sizeof(float));
    int rc = -1;
    if (!idx || !vote || !scale) goto done;
    if (tn_h5_read(group, "idx", TN_H5_U8, 2, shape, idx) != 0) goto done;
    if (tn_h5_read(group, "vote", TN_H5_I8, 2, shape, vote) != 0) goto done;
    if (tn_h5_read(group, "scale", TN_H5_F32, 1, &ns, scale) != 0) goto done;
    for (int64_t i = 0; i < t->n; i++) {
        if (idx[i] >= gn) {
            tn_err("primal state: index %u at %lld is outside the %lld-value grid", idx[i], (long long)i, (long long)gn);
            goto done;
        }
        if (vote[i] < -VOTE_MAX) {
            tn_err("primal state: vote %d at %lld is outside ±%d", vote[i], (long long)i, VOTE_MAX);
            goto done;
        }
    }
    for (int64_t r = 0; r < ns; r++)
        if (!isfinite(scale[r])) {
            tn_err("primal state: scale %lld is %g", (long long)r, (double)scale[r]);
            goto done;
        }
    /* Validated: commit. */
    if (t->packed) {
        if (tn_pack4(idx, t->n, t->idx) != 0) goto done; /* cannot fail: gn <= 16 when packed */
    } else {
        memcpy(t->idx, idx, (size_t)t->n);
    }
    memcpy(t->vote, vote, (size_t)t->n);
    memcpy(t->scale, scale, (size_t)ns * sizeof(float));
    rc = 0;
done:
    if (rc != 0) tn_err_prefix("loading primal state");
    tn_free(idx);
    tn_free(vote);
    tn_free(scale);
    return rc;
}
