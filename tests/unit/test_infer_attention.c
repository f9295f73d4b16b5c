/* The CPU inference engine's attention op (runner/infer_ops_cpu.c, tn_infer_ops_cpu()->attention) against a
 * straightforward double-precision reference, on the shapes that reach its two paths: one token (decode,
 * attend_group) and a prompt chunk (n > 1: per kv head, tiles of tokens as two products S = Q Kᵀ, O = P V).
 *
 * Shapes: n = 1 .. 70 tokens (tiles of 32: full, partial and several), after 0 or 37 cached positions (a
 * chunk after earlier chunks), group sizes G = H / KV of 1, 3 and 8, head dims 64, 72 (a 16-wide loop and a
 * tail) and 24, and the kv heads split over 1, 2 or 3 OpenMP threads as the engine splits them (each thread
 * its own kv heads [kh0, kh1) and its own scratch).
 *
 * The reference takes the op's own roped q and k (RoPE is checked separately, against double) and computes
 * o = Σ_j softmax_j(q·k_j / √hd) v_j in double. Error measure per output: |o − ref| / Σ_j p_j |v_j| (the
 * magnitude of the weighted sum, so cancellation in o does not inflate it). Bound 2e-5, from float rounding:
 * a score q·k/√hd carries at most γ_hd · Σ_i |q_i k_i| / √hd of error (N(0, 1) rows: Σ|q k|/√hd ≈ 0.64·√hd ≈ 5
 * at hd 72, γ_72 ≈ 4.3e-6), which moves each p_j by about that much relatively; exp adds a few ulp; the
 * softmax's sum and P·V add γ_L with L ≤ 107 positions (6.4e-6). Those worst cases need every rounding to
 * align (≈ 3e-5 together); rounding errors that do not align give ~1e-6, and the measured worst (printed)
 * is 8.8e-7, so 2e-5 leaves 20× room while a wrong mask, scale or tile edge gives errors of order 0.1 .. 1e3. */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/rng.h"
#include "kernels/infer_ops.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double g_worst, g_worst_rope;

/* One case: H query heads, KV kv heads, head dim hd, n new tokens after pos cached ones, nth threads. */
static void check_case(int H, int KV, int hd, int pos, int n, int nth, uint64_t seed) {
    const tn_infer_ops *ops = tn_infer_ops_cpu();
    const int ctx = pos + n + 3, G = H / KV;
    const int64_t qd = (int64_t)H * hd, kvd = (int64_t)KV * hd, half = hd / 2;
    tn_rng r;
    tn_rng_seed(&r, seed);
    float *q = tn_alloc((size_t)(n * qd), 4), *q0 = tn_alloc((size_t)(n * qd), 4);
    float *kc = tn_alloc((size_t)(ctx * kvd), 4), *k0 = tn_alloc((size_t)(ctx * kvd), 4);
    float *vc = tn_alloc((size_t)(ctx * kvd), 4), *out = tn_alloc((size_t)(n * qd), 4);
    float *cs = tn_alloc((size_t)(ctx * half), 4), *sn = tn_alloc((size_t)(ctx * half), 4);
    for (int64_t i = 0; i < n * qd; i++) q0[i] = q[i] = tn_rng_normal(&r);
    for (int64_t i = 0; i < (pos + n) * kvd; i++) k0[i] = kc[i] = tn_rng_normal(&r), vc[i] = tn_rng_normal(&r);
    for (int64_t p = 0; p < ctx; p++)
        for (int64_t i = 0; i < half; i++) {
            const double a = (double)p * pow(10000.0, -2.0 * (double)i / hd);
            cs[p * half + i] = (float)cos(a), sn[p * half + i] = (float)sin(a);
        }
    const int64_t sfl = ops->attention_scratch_floats(n, H, KV, hd, ctx);
    float *scratch = tn_alloc((size_t)(sfl * nth), 4);
#pragma omp parallel num_threads(nth)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const int kh0 = KV * tid / nt, kh1 = KV * (tid + 1) / nt; /* as runner/infer.c splits them */
        tn_infer_attn a = {.q = q, .k_new = kc + (int64_t)pos * kvd, .v_new = vc + (int64_t)pos * kvd,
                           .k_cache = kc, .v_cache = vc, .pos = pos, .cos_t = cs, .sin_t = sn, .n = n, .H = H,
                           .KV = KV, .hd = hd, .ctx = ctx, .out = out, .scratch = scratch + tid * sfl};
        if (kh0 < kh1) ops->attention(&a, kh0, kh1);
    }
    /* RoPE of the new q and k rows, against double (rotate-half, position pos + t) */
    for (int t = 0; t < n; t++)
        for (int which = 0; which < 2; which++) {
            const int heads = which ? KV : H;
            const float *src = which ? k0 + (int64_t)(pos + t) * kvd : q0 + t * qd;
            const float *got = which ? kc + (int64_t)(pos + t) * kvd : q + t * qd;
            for (int h = 0; h < heads; h++)
                for (int64_t i = 0; i < half; i++) {
                    const double c = cs[(pos + t) * half + i], s = sn[(pos + t) * half + i];
                    const double a = src[h * hd + i], b = src[h * hd + i + half];
                    g_worst_rope = fmax(g_worst_rope, fabs(got[h * hd + i] - (a * c - b * s)) / (fabs(a) + fabs(b)));
                    g_worst_rope =
                        fmax(g_worst_rope, fabs(got[h * hd + i + half] - (b * c + a * s)) / (fabs(a) + fabs(b)));
                }
        }
    /* attention in double over the op's roped q and k */
    double *p = malloc(sizeof(double) * (size_t)(pos + n));
    double worst = 0;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            const float *qh = q + t * qd + (int64_t)h * hd;
            const int kh = h / G, len = pos + t + 1;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < len; j++) {
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)qh[i] * kc[(int64_t)j * kvd + kh * hd + i];
                p[j] = d / sqrt((double)hd);
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j < len; j++) sum += p[j] = exp(p[j] - mx);
            for (int i = 0; i < hd; i++) {
                double ref = 0, mag = 0;
                for (int j = 0; j < len; j++) {
                    const double v = vc[(int64_t)j * kvd + kh * hd + i];
                    ref += p[j] / sum * v;
                    mag += p[j] / sum * fabs(v);
                }
                worst = fmax(worst, fabs(out[t * qd + (int64_t)h * hd + i] - ref) / mag);
            }
        }
    CHECKF(worst < 2e-5, "attention H %d KV %d hd %d pos %d n %d threads %d: rel err %g", H, KV, hd, pos, n, nth, worst);
    g_worst = fmax(g_worst, worst);
    free(p);
    tn_free(q), tn_free(q0), tn_free(kc), tn_free(k0), tn_free(vc), tn_free(out), tn_free(cs), tn_free(sn);
    tn_free(scratch);
}

int main(void) {
    static const struct {
        int H, KV, hd;
    } shapes[] = {{2, 2, 64}, {6, 2, 72}, {32, 4, 64}, {9, 3, 24}, {16, 2, 72}};
    uint64_t seed = 1;
    int cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int pos = 0; pos <= 37; pos += 37)
            for (int n = 1; n <= 70; n++) {
                /* every n for the small shapes, a spread of n for TinyLlama's (32 heads, 4 kv heads) */
                if (shapes[s].H == 32 && n > 3 && n != 31 && n != 32 && n != 33 && n != 64 && n != 70) continue;
                const int nth = 1 + (n + (int)s) % 3;
                check_case(shapes[s].H, shapes[s].KV, shapes[s].hd, pos, n, nth, seed++);
                cases++;
            }
    printf("attention: %d cases, worst rel err %.3g (bound 2e-5), rope %.3g\n", cases, g_worst, g_worst_rope);
    CHECKF(g_worst_rope < 1e-6, "rope rel err %g", g_worst_rope);
    return tn_test_finish();
}
