/* Recompute ([train] recompute = layer, model/llama.h tn_llama_opts): a model that keeps only the residual
 * stream and runs each layer's forward again in the backward gives the same loss and the same gradients, bit
 * for bit, as one that keeps every activation: dense, and with the STE quantizer's weight source and int8
 * activations (two micro-batches accumulated, a mask with zeros). It plans (and allocates) fewer bytes. A
 * forward-only model gives the same logits and refuses a backward. */
#include "tn_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/llama.h"
#include "train/ste_quantizer.h"

#include <string.h>

enum { B = 2, T = 16 };

static void run(const tn_llama_layout *l, const float *params, const tn_llama_opts *o, const tn_quant_spec *spec,
                const int32_t *in, const int32_t *tg, const uint8_t *mk, float *loss, float *grads, float *logits) {
    tn_llama *m = NULL;
    tn_ste_quantizer q;
    CHECK_OK(tn_llama_create_opts(&m, l, B, T, NULL, o));
    if (spec) {
        CHECK_OK(tn_ste_quantizer_init(&q, spec, l, params, NULL));
        CHECK_OK(tn_ste_quantizer_update(&q, 0.7f));
        tn_ste_quantizer_attach(&q, m);
    }
    memset(grads, 0, l->numel * sizeof(float));
    for (int mb = 0; mb < 2; mb++) { /* two micro-batches, as accumulation does */
        CHECK_OK(tn_llama_forward(m, params, in + mb * B * T, tg + mb * B * T, mk + mb * B * T, &loss[mb], NULL));
        if (mb == 0) memcpy(logits, tn_llama_logits(m), sizeof(float) * B * T * l->cfg.vocab_size);
        CHECK_OK(tn_llama_backward(m, params, grads, 0.5f));
    }
    if (spec) tn_ste_quantizer_free(&q);
    tn_llama_free(m);
}

static void check(const char *label, const tn_quant_spec *spec) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 48;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 96;
    c.vocab_size = 37;
    c.max_seq_len = T;
    c.tied_embeddings = 0;
    tn_llama_layout l;
    CHECK_OK(tn_llama_layout_init(&l, &c));
    tn_rng g;
    tn_rng_seed(&g, 5);
    float *params = tn_alloc(l.numel, sizeof(float));
    tn_llama_init_random(&l, params, &g, 0.2f);
    int32_t in[2 * B * T], tg[2 * B * T];
    uint8_t mk[2 * B * T];
    for (int i = 0; i < 2 * B * T; i++) {
        in[i] = (int32_t)tn_rng_below(&g, (uint64_t)c.vocab_size);
        tg[i] = (int32_t)tn_rng_below(&g, (uint64_t)c.vocab_size);
        mk[i] = i % 5 != 0;
    }
    const size_t nl = (size_t)B * T * c.vocab_size;
    float *g0 = tn_alloc(l.numel, sizeof(float)), *g1 = tn_alloc(l.numel, sizeof(float));
    float *lg0 = tn_alloc(nl, sizeof(float)), *lg1 = tn_alloc(nl, sizeof(float));
    float loss0[2], loss1[2];
    const tn_llama_opts keep = {0, 0}, recompute = {1, 0}, fwd = {0, 1};
    run(&l, params, &keep, spec, in, tg, mk, loss0, g0, lg0);
    run(&l, params, &recompute, spec, in, tg, mk, loss1, g1, lg1);
    CHECKF(memcmp(loss0, loss1, sizeof loss0) == 0, "%s: losses %.9g %.9g vs %.9g %.9g", label, loss0[0], loss0[1],
           loss1[0], loss1[1]);
    CHECKF(memcmp(g0, g1, l.numel * sizeof(float)) == 0, "%s: gradients differ with recompute", label);
    CHECK(memcmp(lg0, lg1, nl * sizeof(float)) == 0);

    /* forward only: the same logits; no backward */
    tn_llama *m = NULL;
    CHECK_OK(tn_llama_create_opts(&m, &l, B, T, NULL, &fwd));
    tn_ste_quantizer q;
    if (spec) {
        CHECK_OK(tn_ste_quantizer_init(&q, spec, &l, params, NULL));
        CHECK_OK(tn_ste_quantizer_update(&q, 0.7f));
        tn_ste_quantizer_attach(&q, m);
    }
    float lf;
    CHECK_OK(tn_llama_forward(m, params, in, tg, mk, &lf, NULL));
    CHECK(lf == loss0[0] && memcmp(tn_llama_logits(m), lg0, nl * sizeof(float)) == 0);
    CHECK(tn_llama_backward(m, params, g1, 1.0f) != 0 && strstr(tn_errmsg(), "forward passes only"));
    tn_err_clear();
    if (spec) tn_ste_quantizer_free(&q);
    tn_llama_free(m);

    const int64_t b_keep = tn_llama_plan_bytes(&l, B, T, NULL, &keep), b_re = tn_llama_plan_bytes(&l, B, T, NULL, &recompute),
                  b_fwd = tn_llama_plan_bytes(&l, B, T, NULL, &fwd);
    CHECKF(b_re < b_keep && b_fwd < b_re, "%s: plan %lld, recompute %lld, forward only %lld", label, (long long)b_keep,
           (long long)b_re, (long long)b_fwd);
    printf("%s: loss %.6f, bit-identical with recompute; activations %lld -> %lld bytes (forward only %lld)\n", label,
           loss0[0], (long long)b_keep, (long long)b_re, (long long)b_fwd);
    tn_free(params), tn_free(g0), tn_free(g1), tn_free(lg0), tn_free(lg1);
    tn_llama_layout_free(&l);
}

int main(void) {
    check("dense", NULL);
    tn_quant_spec spec;
    memset(&spec, 0, sizeof spec);
    CHECK_OK(tn_grid_by_name("ternary", &spec.grid));
    spec.rule = TN_SCALE_ABSMEAN;
    spec.per_row = 1;
    spec.groups = (1u << TN_GROUP_ATTN) | (1u << TN_GROUP_MLP) | (1u << TN_GROUP_HEAD);
    spec.act_bits = 8;
    check("ste ternary + int8 activations", &spec);
    return tn_test_finish();
}
