/* The inference engine's KV-cache attention on the GPU (kernels/cuda/kv_attention.cu, tn_cuda_kv_attention)
 * against a scalar CPU reference written here with runner/infer_ops_cpu.c's formulas (rope, attend_group): RoPE
 * rotate-half from tn_op_rope_table's tables, rows p0 .. p0+n-1 of the cache, causal softmax attention.
 *   - q and k_new roped in place bit for bit; the whole cache bit for bit (the rows written equal the
 *     roped k / the v rows, every other row untouched);
 *   - out per (token, head) row (max|gpu − ref| / max|ref| over its hd values) within TOL_OUT of the CPU
 *     formula in float and within TOL_EXACT of the same formula in double. The emulator measures at most
 *     5.7e-6 and 8.8e-7: the first is the CPU formula's own drift (its position-ordered float sums are
 *     5.7e-6 from double at 8192 positions, the GPU's chunked sums below 1e-6);
 * over head shapes (H, KV, hd) = (4, 4, 8), (6, 2, 24), (32, 4, 64), (8, 2, 128), (2, 1, 64) with contexts
 * of 300 to 8192 (2 to 32 chunks of 256 positions): decode (n = 1) at p0 = 0, 1, 37 and ctx − 1, a prompt
 * chunk of 13 at p0 = 0 and at p0 = 20 (the earlier rows random, as left by earlier steps), a chunk of 64
 * across a chunk boundary and a chunk of 3 that ends the context. The cache's other rows, the outputs and
 * the scratch start random or fresh (NaN in the emulator: an element read before it is written shows).
 * Then: 13 decode steps from p0 = 250 (across a chunk boundary), *pos rewritten in device
 * memory between them (the same device pointer, as a replayed CUDA graph sees it), give the bits of one
 * prompt chunk of the same 13 tokens; a *pos that breaks
 * p0 + n <= ctx writes nothing and gives NaN; the argument checks. The largest error is printed.
 * Without CUDA (or its emulator) or a device it is skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"

#ifdef TN_HAVE_CUDA
#include "kernels/cpu/ops_cpu.h"
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

#define TOL_OUT 1e-5   /* against the CPU formula in float */
#define TOL_EXACT 3e-6 /* against the double reference */
#define THETA 10000.0

/* the largest errors: GPU vs CPU, GPU vs double, CPU vs double */
static double g_max_err[3];

typedef struct {
    int64_t H, KV, hd, ctx;
    float *cos_t, *sin_t;     /* host [ctx, hd/2] */
    float *d_cos, *d_sin;     /* device copies */
} shape;

static float *randn(tn_rng *g, int64_t n, float s) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = s * tn_rng_normal(g);
    return x;
}

static int same(const float *a, const float *b, int64_t n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }

/* ---- the CPU reference (runner/infer_ops_cpu.c) -------------------------------------------------------------- */

/* Rotate-half RoPE of the `heads` heads of x[n, heads·hd], token t at position p0 + t. */
static void ref_rope(float *x, const shape *s, int64_t p0, int64_t n, int64_t heads) {
    const int64_t hd = s->hd, half = hd / 2;
    for (int64_t t = 0; t < n; t++) {
        const float *c = s->cos_t + (p0 + t) * half, *sn = s->sin_t + (p0 + t) * half;
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + (t * heads + h) * hd;
            for (int64_t i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * sn[i];
                v[i + half] = b * c[i] + a * sn[i];
            }
        }
    }
}

/* out[n, H, hd] = softmax(q·kⱼ · scale, j = 0 .. p0+t) · v for roped q[n, H, hd] and the cache kc, vc
 * [ctx, KV, hd] (attend_group: scores, max, expf, sum, p = e · (1/sum), out = Σ p v in position order). */
static void ref_attend(float *out, const float *q, const float *kc, const float *vc, const shape *s, int64_t p0,
                       int64_t n) {
    const int64_t H = s->H, KV = s->KV, hd = s->hd, kvd = KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *sc = malloc(sizeof(float) * (size_t)s->ctx);
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < H; h++) {
            const float *qh = q + (t * H + h) * hd;
            const int64_t len = p0 + t + 1, kh = h / (H / KV);
            float mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < len; j++) {
                const float *kj = kc + j * kvd + kh * hd;
                float d = 0;
                for (int64_t i = 0; i < hd; i++) d += qh[i] * kj[i];
                sc[j] = d * scale;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int64_t j = 0; j < len; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            const float inv = 1.0f / sum;
            float *o = out + (t * H + h) * hd;
            memset(o, 0, sizeof(float) * (size_t)hd);
            for (int64_t j = 0; j < len; j++) {
                const float p = sc[j] * inv, *vj = vc + j * kvd + kh * hd;
                for (int64_t i = 0; i < hd; i++) o[i] += p * vj[i];
            }
        }
    free(sc);
}

/* The same in double from the same float inputs: the exact answer to float rounding, against which both the
 * GPU and the CPU formula are measured (the CPU's position-ordered float sums drift at thousands of
 * positions: 5.7e-6 at 8192, the GPU's chunked sums stay below 1e-6). */
static void ref_attend_double(float *out, const float *q, const float *kc, const float *vc, const shape *s,
                              int64_t p0, int64_t n) {
    const int64_t H = s->H, KV = s->KV, hd = s->hd, kvd = KV * hd;
    const double scale = 1.0f / sqrtf((float)hd);
    double *sc = malloc(sizeof(double) * (size_t)s->ctx), *o = malloc(sizeof(double) * (size_t)hd);
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < H; h++) {
            const float *qh = q + (t * H + h) * hd;
            const int64_t len = p0 + t + 1, kh = h / (H / KV);
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < len; j++) {
                const float *kj = kc + j * kvd + kh * hd;
                double d = 0;
                for (int64_t i = 0; i < hd; i++) d += (double)qh[i] * kj[i];
                sc[j] = d * scale;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int64_t j = 0; j < len; j++) {
                sc[j] = exp(sc[j] - mx);
                sum += sc[j];
            }
            for (int64_t i = 0; i < hd; i++) o[i] = 0;
            for (int64_t j = 0; j < len; j++) {
                const float *vj = vc + j * kvd + kh * hd;
                for (int64_t i = 0; i < hd; i++) o[i] += sc[j] / sum * vj[i];
            }
            for (int64_t i = 0; i < hd; i++) out[(t * H + h) * hd + i] = (float)o[i];
        }
    free(sc);
    free(o);
}

/* The largest over (token, head) rows of max|a − b| / max|b| (NaN counts as infinite). */
static double row_err(const float *a, const float *b, int64_t rows, int64_t hd) {
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        const double e = tn_test_rel_err(a + r * hd, b + r * hd, (size_t)hd);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* ---- the GPU side ------------------------------------------------------------------------------------- */

/* The state of one call: the chunk's q, k_new, v_new [n, ·] and the layer's cache [ctx, KV·hd]. */
typedef struct {
    float *q, *k, *v, *kc, *vc, *out;
} state;

static state state_rand(tn_rng *g, const shape *s, int64_t n) {
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    /* q·k / sqrt(hd) with a standard deviation about 1.4: from flat to peaked softmaxes */
    state st = {randn(g, n * qd, 1.2f), randn(g, n * kvd, 1.2f), randn(g, n * kvd, 1.0f),
                randn(g, s->ctx * kvd, 1.2f), randn(g, s->ctx * kvd, 1.0f), randn(g, n * qd, 1.0f)};
    return st;
}

static void state_free(state *st) {
    free(st->q);
    free(st->k);
    free(st->v);
    free(st->kc);
    free(st->vc);
    free(st->out);
}

/* The same state on the device, and the position. */
typedef struct {
    float *q, *k, *v, *kc, *vc, *out, *scratch;
    int32_t *pos;
} dev_state;

static int dev_up(dev_state *d, const state *st, const shape *s, int64_t n, int32_t p0) {
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    const size_t fq = sizeof(float) * (size_t)(n * qd), fk = sizeof(float) * (size_t)(n * kvd),
                 fc = sizeof(float) * (size_t)(s->ctx * kvd);
    d->q = tn_test_dev_copy(st->q, fq);
    d->k = tn_test_dev_copy(st->k, fk);
    d->v = tn_test_dev_copy(st->v, fk);
    d->kc = tn_test_dev_copy(st->kc, fc);
    d->vc = tn_test_dev_copy(st->vc, fc);
    d->out = tn_cuda_alloc(fq); /* fresh: NaN in the emulator */
    d->scratch = tn_cuda_alloc(sizeof(float) * (size_t)tn_cuda_kv_attention_scratch_floats(n, s->H, s->hd, s->ctx));
    d->pos = tn_test_dev_copy(&p0, sizeof p0);
    return d->q && d->k && d->v && d->kc && d->vc && d->out && d->scratch && d->pos ? 0 : -1;
}

static void dev_down(state *st, const dev_state *d, const shape *s, int64_t n) {
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    CHECK_OK(tn_cuda_download(st->q, d->q, sizeof(float) * (size_t)(n * qd)));
    CHECK_OK(tn_cuda_download(st->k, d->k, sizeof(float) * (size_t)(n * kvd)));
    CHECK_OK(tn_cuda_download(st->kc, d->kc, sizeof(float) * (size_t)(s->ctx * kvd)));
    CHECK_OK(tn_cuda_download(st->vc, d->vc, sizeof(float) * (size_t)(s->ctx * kvd)));
    CHECK_OK(tn_cuda_download(st->out, d->out, sizeof(float) * (size_t)(n * qd)));
}

static void dev_free(dev_state *d) {
    tn_cuda_free(d->q);
    tn_cuda_free(d->k);
    tn_cuda_free(d->v);
    tn_cuda_free(d->kc);
    tn_cuda_free(d->vc);
    tn_cuda_free(d->out);
    tn_cuda_free(d->scratch);
    tn_cuda_free(d->pos);
}

static int call(const dev_state *d, const shape *s, int64_t n) {
    return tn_cuda_kv_attention(d->q, d->k, d->v, d->kc, d->vc, d->pos, s->d_cos, s->d_sin, n, s->H, s->KV, s->hd,
                                s->ctx, d->out, d->scratch);
}

/* One call of n tokens at p0 on random data against the CPU reference. */
static void test_case(tn_rng *g, const shape *s, int64_t p0, int64_t n) {
    char name[96];
    snprintf(name, sizeof name, "H %lld KV %lld hd %lld ctx %lld: n %lld at %lld", (long long)s->H, (long long)s->KV,
             (long long)s->hd, (long long)s->ctx, (long long)n, (long long)p0);
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    state in = state_rand(g, s, n), got = state_rand(g, s, n);
    dev_state d;
    if (dev_up(&d, &in, s, n, (int32_t)p0) != 0) {
        CHECKF(0, "%s: device allocation: %s", name, tn_errmsg());
        dev_free(&d);
        state_free(&in);
        state_free(&got);
        return;
    }
    CHECK_OK(call(&d, s, n));
    dev_down(&got, &d, s, n);

    /* the reference, in `in` */
    ref_rope(in.q, s, p0, n, s->H);
    ref_rope(in.k, s, p0, n, s->KV);
    memcpy(in.kc + p0 * kvd, in.k, sizeof(float) * (size_t)(n * kvd));
    memcpy(in.vc + p0 * kvd, in.v, sizeof(float) * (size_t)(n * kvd));
    ref_attend(in.out, in.q, in.kc, in.vc, s, p0, n);

    CHECKF(same(got.q, in.q, n * qd), "%s: q not roped as on the CPU", name);
    CHECKF(same(got.k, in.k, n * kvd), "%s: k_new not roped as on the CPU", name);
    CHECKF(same(got.kc, in.kc, s->ctx * kvd), "%s: k cache differs", name);
    CHECKF(same(got.vc, in.vc, s->ctx * kvd), "%s: v cache differs", name);
    float *exact = malloc(sizeof(float) * (size_t)(n * qd));
    ref_attend_double(exact, in.q, in.kc, in.vc, s, p0, n);
    const double e[3] = {row_err(got.out, in.out, n * s->H, s->hd), row_err(got.out, exact, n * s->H, s->hd),
                         row_err(in.out, exact, n * s->H, s->hd)};
    for (int i = 0; i < 3; i++)
        if (!(e[i] <= g_max_err[i])) g_max_err[i] = e[i];
    CHECKF(e[0] <= TOL_OUT, "%s: out differs from the CPU's by %.3g > %.3g", name, e[0], TOL_OUT);
    CHECKF(e[1] <= TOL_EXACT, "%s: out differs from the double reference by %.3g > %.3g", name, e[1], TOL_EXACT);
    printf("  %-44s %.2e  %.2e  (CPU %.2e)\n", name, e[0], e[1], e[2]);
    free(exact);

    dev_free(&d);
    state_free(&in);
    state_free(&got);
}

/* n decode steps (n = 1 each, *pos rewritten between them, q/k/v/out pointers at token t) against one call of
 * all n tokens: the same bits everywhere. */
static void test_steps(tn_rng *g, const shape *s, int64_t p0, int64_t n) {
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    state in = state_rand(g, s, n), one = state_rand(g, s, n), steps = state_rand(g, s, n);
    dev_state a, b;
    if (dev_up(&a, &in, s, n, (int32_t)p0) != 0 || dev_up(&b, &in, s, n, (int32_t)p0) != 0) {
        CHECKF(0, "steps: device allocation: %s", tn_errmsg());
    } else {
        CHECK_OK(call(&a, s, n));
        dev_down(&one, &a, s, n);
        for (int64_t t = 0; t < n; t++) {
            const int32_t p = (int32_t)(p0 + t);
            CHECK_OK(tn_cuda_upload(b.pos, &p, sizeof p));
            CHECK_OK(tn_cuda_kv_attention(b.q + t * qd, b.k + t * kvd, b.v + t * kvd, b.kc, b.vc, b.pos, s->d_cos,
                                          s->d_sin, 1, s->H, s->KV, s->hd, s->ctx, b.out + t * qd, b.scratch));
        }
        dev_down(&steps, &b, s, n);
        CHECK(same(one.q, steps.q, n * qd) && same(one.k, steps.k, n * kvd));
        CHECK(same(one.kc, steps.kc, s->ctx * kvd) && same(one.vc, steps.vc, s->ctx * kvd));
        CHECKF(same(one.out, steps.out, n * qd), "%lld decode steps from %lld differ from one chunk", (long long)n,
               (long long)p0);
        printf("  %lld decode steps from %lld: the bits of one chunk of %lld\n", (long long)n, (long long)p0,
               (long long)n);
    }
    dev_free(&a);
    dev_free(&b);
    state_free(&in);
    state_free(&one);
    state_free(&steps);
}

/* A *pos with p0 + n > ctx or p0 < 0: q, k_new and the cache as they were, out NaN. */
static void test_bad_pos(tn_rng *g, const shape *s, int64_t p0, int64_t n) {
    const int64_t qd = s->H * s->hd, kvd = s->KV * s->hd;
    state in = state_rand(g, s, n), got = state_rand(g, s, n);
    dev_state d;
    if (dev_up(&d, &in, s, n, (int32_t)p0) != 0) {
        CHECKF(0, "bad pos: device allocation: %s", tn_errmsg());
    } else {
        CHECK_OK(call(&d, s, n));
        dev_down(&got, &d, s, n);
        CHECK(same(got.q, in.q, n * qd) && same(got.k, in.k, n * kvd));
        CHECK(same(got.kc, in.kc, s->ctx * kvd) && same(got.vc, in.vc, s->ctx * kvd));
        int64_t nan = 0;
        for (int64_t i = 0; i < n * qd; i++) nan += isnan(got.out[i]) != 0;
        CHECKF(nan == n * qd, "*pos = %lld, n = %lld, ctx = %lld: %lld of %lld outputs NaN", (long long)p0,
               (long long)n, (long long)s->ctx, (long long)nan, (long long)(n * qd));
    }
    dev_free(&d);
    state_free(&in);
    state_free(&got);
}

static int shape_open(shape *s, int64_t H, int64_t KV, int64_t hd, int64_t ctx) {
    const size_t bytes = sizeof(float) * (size_t)(ctx * hd / 2);
    *s = (shape){H, KV, hd, ctx, malloc(bytes), malloc(bytes), NULL, NULL};
    tn_op_rope_table(s->cos_t, s->sin_t, ctx, hd, THETA, 0);
    s->d_cos = tn_test_dev_copy(s->cos_t, bytes);
    s->d_sin = tn_test_dev_copy(s->sin_t, bytes);
    return s->d_cos && s->d_sin ? 0 : -1;
}

static void shape_close(shape *s) {
    free(s->cos_t);
    free(s->sin_t);
    tn_cuda_free(s->d_cos);
    tn_cuda_free(s->d_sin);
}

/* A refused call returns -1 with a message containing `what`. */
static void expect_refusal(int rc, const char *what) {
    CHECKF(rc == -1 && strstr(tn_errmsg(), what) != NULL, "expected a refusal mentioning \"%s\", got %d (%s)", what,
           rc, rc ? tn_errmsg() : "no error");
    tn_err_clear();
}

static void test_refusals(void) {
    float *a = tn_cuda_alloc(4096 * sizeof(float));
    int32_t *p = tn_cuda_alloc(sizeof(int32_t));
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 2, 15, 8, a, a), "head dim 15");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 2, 130, 8, a, a), "head dim 130");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 2, 0, 8, a, a), "head dim 0");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 6, 4, 16, 8, a, a), "not a multiple");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 0, 16, 8, a, a), "not a multiple");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 9, 4, 2, 16, 8, a, a), "9 tokens");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, -1, 4, 2, 16, 8, a, a), "-1 tokens");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 2, 16, 0, a, a), "context of 0");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 2, 16, (int64_t)1 << 26, a, a), "grid");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, NULL, a, a, 1, 4, 2, 16, 8, a, a), "NULL");
    expect_refusal(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 1, 4, 2, 16, 8, a, NULL), "NULL");
    CHECK_OK(tn_cuda_kv_attention(a, a, a, a, a, p, a, a, 0, 4, 2, 16, 8, a, a)); /* nothing to do */
    CHECK(tn_cuda_kv_attention_scratch_floats(13, 32, 64, 8192) == 13 * 32 * 32 * 66);
    CHECK(tn_cuda_kv_attention_scratch_floats(0, 32, 64, 8192) == 0);
    tn_cuda_free(a);
    tn_cuda_free(p);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_rng g;
    tn_rng_seed(&g, 17);
    /* (H, KV, hd, ctx): H = KV, groups of 3, 8 and 2; hd 8, 24, 64, 128; 2 to 32 chunks of 256 positions */
    static const int64_t shapes[][4] = {{4, 4, 8, 300}, {6, 2, 24, 600}, {32, 4, 64, 320}, {8, 2, 128, 700},
                                        {2, 1, 64, 8192}};
    printf("out, per (token, head) row, max|err| / max|ref|: GPU vs CPU, GPU vs double (CPU vs double):\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        shape s;
        if (shape_open(&s, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]) == 0) {
            const int64_t decode_at[] = {0, 1, 37, s.ctx - 1};
            for (size_t k = 0; k < sizeof decode_at / sizeof decode_at[0]; k++) test_case(&g, &s, decode_at[k], 1);
            test_case(&g, &s, 0, 13);
            test_case(&g, &s, 20, 13);
            if (i == 1) test_case(&g, &s, 230, 64); /* across the boundary of the first chunk */
            if (i == 4) test_case(&g, &s, s.ctx - 3, 3);   /* up to the last row */
            if (i == 1) test_steps(&g, &s, 250, 13);       /* across the boundary of the first chunk */
            if (i == 0) {
                test_bad_pos(&g, &s, s.ctx - 12, 13);
                test_bad_pos(&g, &s, -1, 1);
            }
        }
        shape_close(&s);
    }
    printf("largest: GPU vs CPU %.2e (tol %.0e), GPU vs double %.2e (tol %.0e), CPU vs double %.2e\n", g_max_err[0],
           TOL_OUT, g_max_err[1], TOL_EXACT, g_max_err[2]);
    test_refusals();
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
