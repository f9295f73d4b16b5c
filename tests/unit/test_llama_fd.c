/* Finite-difference check of tn_llama_backward, in the C model alone (no fixture).
 *
 * Four tiny random models (GQA + untied head; tied head with another rope_theta / norm_eps; q/k/v biases
 * with llama3 RoPE scaling; per-head q/k norms with an explicit head_dim), B = 2, T = 8,
 * a loss mask with zeros. For every tensor: central differences on 5 elements (the one with the largest
 * analytic gradient plus 4 random ones) and on one random direction over the whole tensor.
 *
 * Tolerance, for float32: the loss (~3-5) is computed in float32 with a rounding noise of a few 1e-7,
 * which becomes ~1e-5 in (L+ - L-) / 2h at h = 1e-2; the truncation error of central differences is
 * O(h^2 f''') ~ 1e-4 relative with weights of std 0.2. So we accept
 *     |fd - analytic| <= 2e-2 * max(|fd|, |analytic|) + 1e-4,
 * which a wrong gradient (missing term, wrong sign, wrong head mapping, factor 2) fails by far. Calibrated
 * on the float32 PyTorch reference over 40 seeds: worst (|fd - an| / allowed) was 0.5. The step actually
 * taken is measured from the stored floats, so rounding of p +- h does not enter. */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/llama.h"

#include <math.h>
#include <string.h>

#define FD_H 1e-2f
#define FD_REL 2e-2
#define FD_ABS 1e-4
#define N_ELEMS 5

enum { B = 2, T = 8 };

typedef struct {
    tn_llama *m;
    const int32_t *inputs, *targets;
    const uint8_t *mask;
} fd_ctx;

static double eval_loss(fd_ctx *c, const float *params) {
    float loss = NAN;
    if (tn_llama_forward(c->m, params, c->inputs, c->targets, c->mask, &loss, NULL) != 0) {
        fprintf(stderr, "forward failed: %s\n", tn_errmsg());
        return NAN;
    }
    return loss;
}

/* Allowed-error ratio (> 1 = fail). */
static double ratio(double fd, double an) {
    double d = fabs(fd - an), allowed = FD_REL * fmax(fabs(fd), fabs(an)) + FD_ABS;
    return isfinite(d) ? d / allowed : INFINITY;
}

static void check_config(const char *label, const tn_llama_config *cfg, float embed_std, float std, uint64_t seed) {
    tn_llama_layout l;
    CHECK_OK(tn_llama_layout_init(&l, cfg));
    tn_rng rng;
    tn_rng_seed(&rng, seed);

    float *params = tn_alloc(l.numel, sizeof(float)), *grads = tn_alloc(l.numel, sizeof(float));
    float *g1 = tn_alloc(l.numel, sizeof(float)), *dir = tn_alloc(l.numel, sizeof(float));
    int32_t inputs[B * T], targets[B * T];
    uint8_t mask[B * T];
    if (!params || !grads || !g1 || !dir) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    /* Norms 1 + N(0, 0.2^2); matrices N(0, std^2) (embedding: embed_std), large enough that attention is far
     * from uniform and every gradient is well above the float32 noise floor. */
    for (int i = 0; i < l.n_tensors; i++) {
        const tn_tensor_info *t = &l.tensors[i];
        float s = t->rank == 1 ? 0.2f : t->group == TN_GROUP_EMBED ? embed_std : std;
        const float base = t->group == TN_GROUP_NORM ? 1.0f : 0.0f; /* biases around 0 */
        for (size_t j = 0; j < t->numel; j++) params[t->offset + j] = base + s * tn_rng_normal(&rng);
    }
    int n_on = 0;
    for (int i = 0; i < B * T; i++) {
        inputs[i] = (int32_t)tn_rng_below(&rng, (uint64_t)cfg->vocab_size);
        targets[i] = (int32_t)tn_rng_below(&rng, (uint64_t)cfg->vocab_size);
        mask[i] = (i % T) >= 2 && tn_rng_uniform(&rng) >= 0.3f; /* two leading "prompt" tokens + random zeros */
        n_on += mask[i];
    }
    CHECK(n_on > 0 && n_on < B * T);

    fd_ctx c = {NULL, inputs, targets, mask};
    CHECK_OK(tn_llama_create(&c.m, &l, B, T, NULL));
    if (!c.m) exit(tn_test_finish());

    float loss;
    int64_t counted;
    CHECK_OK(tn_llama_forward(c.m, params, inputs, targets, mask, &loss, &counted));
    CHECK(counted == n_on);
    /* The loss is the mean of the per-position NLL over the mask. */
    const float *nll = tn_llama_nll(c.m);
    double mean = 0;
    for (int i = 0; i < B * T; i++) mean += mask[i] ? nll[i] : 0.0;
    mean /= n_on;
    CHECKF(fabs(mean - loss) <= 2e-6 * fabs(mean), "%s: loss %.7f, mean masked nll %.7f", label, loss, mean);
    CHECK_OK(tn_llama_backward(c.m, params, grads, 1.0f));
    memcpy(g1, grads, l.numel * sizeof(float));

    /* Targets at masked positions do not matter. */
    for (int i = 0; i < B * T; i++)
        if (!mask[i]) targets[i] = (targets[i] + 1) % cfg->vocab_size;
    float loss2;
    CHECK_OK(tn_llama_forward(c.m, params, inputs, targets, mask, &loss2, NULL));
    CHECKF(fabs(loss2 - loss) <= 1e-6f * fabsf(loss), "%s: masked targets changed the loss", label);

    double worst = 0, worst_dir = 0;
    char worst_what[160] = "";
    for (int i = 0; i < l.n_tensors; i++) {
        const tn_tensor_info *t = &l.tensors[i];
        float *p = params + t->offset;
        const float *g = g1 + t->offset;
        size_t idx[N_ELEMS];
        idx[0] = 0;
        for (size_t j = 1; j < t->numel; j++)
            if (fabsf(g[j]) > fabsf(g[idx[0]])) idx[0] = j;
        for (int k = 1; k < N_ELEMS; k++) idx[k] = (size_t)tn_rng_below(&rng, t->numel);

        for (int k = 0; k < N_ELEMS; k++) {
            size_t j = idx[k];
            float p0 = p[j], pp = p0 + FD_H, pm = p0 - FD_H;
            p[j] = pp;
            double lp = eval_loss(&c, params);
            p[j] = pm;
            double lm = eval_loss(&c, params);
            p[j] = p0;
            double fd = (lp - lm) / ((double)pp - (double)pm), an = g[j];
            double r = ratio(fd, an);
            CHECKF(r <= 1.0, "%s: %s[%zu]: finite difference %.6e, analytic %.6e", label, t->name, j, fd, an);
            if (!(r <= worst)) {
                worst = r;
                snprintf(worst_what, sizeof worst_what, "%s[%zu] fd %.5e an %.5e", t->name, j, fd, an);
            }
        }

        /* A random unit direction over the whole tensor: catches a gradient that is right in the largest
         * element but wrong elsewhere (e.g. one head, one row of the embedding). */
        double norm = 0;
        for (size_t j = 0; j < t->numel; j++) {
            dir[j] = tn_rng_normal(&rng);
            norm += (double)dir[j] * dir[j];
        }
        float *saved = grads; /* reuse as scratch for the original values */
        memcpy(saved, p, t->numel * sizeof(float));
        for (size_t j = 0; j < t->numel; j++) p[j] = saved[j] + FD_H * (float)(dir[j] / sqrt(norm));
        double lp = eval_loss(&c, params), an = 0;
        for (size_t j = 0; j < t->numel; j++) an += (double)g[j] * ((double)p[j] - saved[j]);
        for (size_t j = 0; j < t->numel; j++) p[j] = saved[j] - FD_H * (float)(dir[j] / sqrt(norm));
        double lm = eval_loss(&c, params);
        for (size_t j = 0; j < t->numel; j++) an -= (double)g[j] * ((double)p[j] - saved[j]);
        memcpy(p, saved, t->numel * sizeof(float));
        /* fd and an are both the change over the whole +-step; normalise by 2h to compare as slopes. */
        double fd = (lp - lm) / (2.0 * FD_H);
        an /= 2.0 * FD_H;
        double r = ratio(fd, an);
        CHECKF(r <= 1.0, "%s: %s along a random direction: finite difference %.6e, analytic %.6e", label, t->name,
               fd, an);
        if (!(r <= worst_dir)) worst_dir = r;
    }
    printf("%s: loss %.6f over %d of %d positions; worst element error %.2f of allowed (%s); worst direction "
           "%.2f of allowed\n", label, loss, n_on, B * T, worst, worst_what, worst_dir);

    /* The parameters are restored exactly: a new forward gives the same loss. */
    float loss3;
    CHECK_OK(tn_llama_forward(c.m, params, inputs, targets, mask, &loss3, NULL));
    CHECKF(fabs(loss3 - loss) <= 1e-6f * fabsf(loss), "%s: loss changed after the check", label);

    tn_llama_free(c.m);
    tn_free(params);
    tn_free(grads);
    tn_free(g1);
    tn_free(dir);
    tn_llama_layout_free(&l);
}

int main(void) {
    tn_llama_config a;
    tn_llama_config_defaults(&a);
    a.dim = 16, a.n_layers = 2, a.n_heads = 4, a.n_kv_heads = 2, a.ffn_dim = 24, a.vocab_size = 32;
    a.max_seq_len = 16, a.rope_theta = 10000.0f, a.norm_eps = 1e-5f, a.tied_embeddings = 0;
    check_config("gqa-untied", &a, 1.0f, 0.2f, 11);

    tn_llama_config b = a;
    b.dim = 24, b.n_heads = 2, b.n_kv_heads = 2, b.ffn_dim = 40, b.vocab_size = 48;
    b.rope_theta = 500000.0f, b.norm_eps = 1e-6f, b.tied_embeddings = 1;
    check_config("tied", &b, 0.3f, 0.2f, 12);

    /* Qwen2's q/k/v biases and Llama 3's RoPE scaling (short original length, so it bends within T) */
    tn_llama_config q = a;
    q.qkv_bias = 1, q.rope_type = TN_ROPE_LLAMA3, q.rope_factor = 8.0f, q.rope_low_freq_factor = 1.0f;
    q.rope_high_freq_factor = 4.0f, q.rope_orig_max_pos = 4;
    check_config("qkv-bias-llama3", &q, 1.0f, 0.2f, 13);

    /* Qwen3's per-head q/k norms with an explicit head_dim (8 with dim 16 and 4 heads: q_proj [32, 16]) */
    tn_llama_config k3 = a;
    k3.qk_norm = 1, k3.head_dim = 8;
    check_config("qk-norm-head-dim", &k3, 1.0f, 0.2f, 14);
    return tn_test_finish();
}
