/* quant/act (BitNet per-token absmax int8 activations) and optim/ste (the λ blend): formulas on hand-made
 * rows, ties rounding half to even, zero rows, AVX2 against scalar on odd lengths, in-place fake quant. */
#include "tn_test.h"

#include "core/rng.h"
#include "optim/ste.h"
#include "quant/act.h"
#include "quant/snap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_formula(void) {
    /* max|x| = 2 -> k = 63.5: x·k = 63.5 (tie -> 64, even), 127, -127, 0.5·... */
    const float x[6] = {1.0f, 2.0f, -2.0f, 0.0f, 1.0f / 127.0f, -0.6f};
    int8_t q[6];
    float m, out[6];
    tn_act_quant_int8_ref(x, 1, 6, q, &m);
    CHECK(m == 2.0f);
    const float k = 127.0f / 2.0f;
    for (int j = 0; j < 6; j++) CHECKF(q[j] == (int8_t)rintf(x[j] * k), "q[%d] = %d", j, q[j]);
    CHECK(q[0] == 64 && q[1] == 127 && q[2] == -127 && q[3] == 0);
    tn_act_fake_quant_ref(x, 1, 6, out);
    for (int j = 0; j < 6; j++) CHECK(out[j] == (float)q[j] / k);
    CHECK(out[1] == 2.0f && out[2] == -2.0f);
    /* all-zero token: max 0, everything quantizes to 0 (no division by zero) */
    const float z[3] = {0, 0, 0};
    tn_act_quant_int8(z, 1, 3, q, &m);
    CHECK(m == 0.0f && q[0] == 0 && q[1] == 0 && q[2] == 0);
    tn_act_fake_quant(z, 1, 3, out);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0);
    tn_act_fake_quant_ref(z, 1, 3, out);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0);
    /* a tiny token is scaled up like any other (BitNet's 1e-5 clamp would flatten it) */
    const float tiny[2] = {1e-7f, -5e-8f};
    tn_act_quant_int8(tiny, 1, 2, q, &m);
    CHECK(m == 1e-7f && q[0] == 127 && q[1] == (int8_t)rintf(-5e-8f * (127.0f / 1e-7f)));
    /* the error bound: |x - x̂| <= max / 254 */
    tn_rng rng;
    tn_rng_seed(&rng, 3);
    float y[257], yq[257];
    for (int j = 0; j < 257; j++) y[j] = tn_rng_normal(&rng);
    tn_act_fake_quant(y, 1, 257, yq);
    float mx = 0, err = 0;
    for (int j = 0; j < 257; j++) mx = fmaxf(mx, fabsf(y[j])), err = fmaxf(err, fabsf(y[j] - yq[j]));
    CHECKF(err <= mx / 254.0f * 1.0001f, "err %g max %g", (double)err, (double)mx);
}

static void test_simd(void) {
    tn_rng rng;
    tn_rng_seed(&rng, 11);
    const int rows = 3, C = 203;
    float *x = malloc(rows * C * sizeof(float)), *a = malloc(rows * C * sizeof(float)),
          *b = malloc(rows * C * sizeof(float));
    int8_t *qa = malloc(rows * C), *qb = malloc(rows * C);
    float ma[3], mb[3];
    int bad = 0;
    for (int cols = 1; cols <= C; cols += (cols < 40 ? 1 : 27)) {
        for (int i = 0; i < rows * cols; i++) x[i] = (i % 3 + 1) * tn_rng_normal(&rng);
        if (cols > 9) x[9] = 127.0f * 0.5f / 63.5f; /* some exact ties after scaling are likely anyway */
        if (cols % 5 == 0) memset(x + cols, 0, (size_t)cols * sizeof(float)); /* an all-zero middle row */
        tn_act_quant_int8_ref(x, rows, cols, qa, ma);
        tn_act_quant_int8(x, rows, cols, qb, mb);
        bad += memcmp(qa, qb, (size_t)(rows * cols)) != 0 || memcmp(ma, mb, sizeof ma) != 0;
        tn_act_fake_quant_ref(x, rows, cols, a);
        memcpy(b, x, (size_t)(rows * cols) * sizeof(float));
        tn_act_fake_quant(b, rows, cols, b); /* in place */
        bad += memcmp(a, b, (size_t)(rows * cols) * sizeof(float)) != 0;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) bad += a[r * cols + j] != (float)qa[r * cols + j] / (127.0f / ma[r]);
    }
    CHECKF(bad == 0, "act quant: %d mismatches between AVX2 and scalar", bad);
    /* and through the public functions with SIMD switched off */
    tn_quant_set_simd(0);
    tn_act_quant_int8(x, rows, 97, qa, ma);
    tn_act_fake_quant(x, rows, 97, a);
    tn_quant_set_simd(1);
    tn_act_quant_int8(x, rows, 97, qb, mb);
    tn_act_fake_quant(x, rows, 97, b);
    CHECK(memcmp(qa, qb, rows * 97) == 0 && memcmp(ma, mb, sizeof ma) == 0 &&
          memcmp(a, b, rows * 97 * sizeof(float)) == 0);
    /* per token: rows are independent (a large value in one row does not change another) */
    float t[6] = {1, 0.5f, 0.25f, 100, 0.5f, 0.25f};
    int8_t q[6];
    float m[2];
    tn_act_quant_int8(t, 2, 3, q, m);
    CHECK(m[0] == 1.0f && m[1] == 100.0f && q[0] == 127 && q[1] == 64 && q[4] == 1);
    free(x);
    free(a);
    free(b);
    free(qa);
    free(qb);
}

static void test_ste_blend(void) {
    const float W[4] = {0.1f, -0.3f, 0.7f, 1e-3f}, Wq[4] = {0.0f, -0.25f, 1.0f / 3.0f, 0.0f};
    float out[4];
    tn_ste_blend(W, Wq, 4, 1.0f, out);
    CHECK(memcmp(out, Wq, sizeof out) == 0);
    tn_ste_blend(W, Wq, 4, 0.0f, out);
    CHECK(memcmp(out, W, sizeof out) == 0);
    tn_ste_blend(W, Wq, 4, 0.25f, out);
    for (int i = 0; i < 4; i++) CHECK(out[i] == W[i] + 0.25f * (Wq[i] - W[i]));
    memcpy(out, W, sizeof out);
    tn_ste_blend(out, Wq, 4, 2.0f, out); /* aliasing, λ clamped to 1 */
    CHECK(memcmp(out, Wq, sizeof out) == 0);
}

int main(void) {
    test_formula();
    test_simd();
    test_ste_blend();
    return tn_test_finish();
}
