#include "runner/bench_train.h"

#include "cli/commands.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "train/ste_quantizer.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    tn_llama_config cfg;
} preset;

/* Shapes from the models' Hugging Face config.json files. */
static const preset presets[] = {
    {"smollm2-135m", {576, 30, 9, 3, 1536, 49152, 2048, 100000.0f, 1e-5f, 1, 0, 0}},
    {"tinyllama-1.1b", {2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, 0, 1, 2}},
    {"tiny", {128, 4, 4, 2, 384, 512, 512, 10000.0f, 1e-5f, 1, 0, 0}},
};

/* GFLOP/s of sgemm C[n,n] = A[n,n] B[n,n], median of reps. */
static double sgemm_gflops(int n, int reps) {
    float *a = tn_alloc((size_t)n * n, 4), *b = tn_alloc((size_t)n * n, 4), *c = tn_alloc((size_t)n * n, 4);
    if (!a || !b || !c) {
        tn_free(a);
        tn_free(b);
        tn_free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double t[16];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = tn_time_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t[r] = tn_time_s() - t0;
    }
    tn_free(a);
    tn_free(b);
    tn_free(c);
    return 2.0 * n * (double)n * n / tn_median(t, reps) / 1e9;
}

/* FLOPs of one forward+backward over B×T tokens: 6·N·in·out per linear (2 forward, 4 backward), the
 * LM head likewise, attention 2 products of B·H·hd times the T(T+1)/2 causal score entries each, ×3 for
 * backward (the useful work; the kernels also compute the diagonal blocks' upper halves). */
static double step_flops(const tn_llama_config *c, int B, int T) {
    double N = (double)B * T, d = c->dim, hd = d / c->n_heads, q = c->n_heads * hd, kv = c->n_kv_heads * hd;
    double per_layer = d * q + 2 * d * kv + q * d + 3 * d * c->ffn_dim;
    double lin = 6.0 * N * (per_layer * c->n_layers + d * c->vocab_size);
    double attn = 3.0 * 2.0 * 2.0 * B * (double)c->n_heads * (T * (T + 1.0) / 2.0) * hd * c->n_layers;
    return lin + attn;
}

/* Median seconds of `steps` training steps (after one warm-up step); with q, the STE quantizer is
 * re-materialised at the start of every step, as in training. */
static int time_steps(tn_llama *m, const tn_llama_layout *layout, float *params, float *grads, float *mom, float *vel,
                      const int32_t *in, const int32_t *tg, int steps, tn_ste_quantizer *q, double *median_s) {
    tn_adamw_hparams h = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    double times[32];
    for (int s = 0; s <= steps; s++) {
        double t0 = tn_time_s();
        float loss;
        memset(grads, 0, layout->numel * 4);
        if (q) TN_CHECK(tn_ste_quantizer_update(q, 1.0f));
        TN_CHECK(tn_llama_forward(m, params, in, tg, NULL, &loss, NULL));
        TN_CHECK(tn_llama_backward(m, params, grads, 1.0f));
        tn_clip_grad_norm(grads, (int64_t)layout->numel, 1.0);
        tn_adamw_update(params, grads, mom, vel, (int64_t)layout->numel, &h, s + 1, 1);
        if (s > 0) times[s - 1] = tn_time_s() - t0;
    }
    *median_s = tn_median(times, steps);
    return 0;
}

static void help(void) {
    printf("usage: trinity bench train --preset smollm2-135m|tinyllama-1.1b|tiny [--batch B] [--seq-len T]\n"
           "                           [--steps N] [--threads N] [--quant GRID] [--json]\n\n"
           "Times forward+backward+AdamW on random weights of a preset shape, and OpenBLAS sgemm 2048^3 in\n"
           "the same run. Prints tokens/s, achieved GFLOP/s and the ratio to the sgemm rate. With --quant,\n"
           "also times the STE step (attn+mlp snapped to GRID every step) and prints STE/dense step time.\n");
}

int tn_bench_train(int argc, char **argv) {
    const char *name = "smollm2-135m", *quant = NULL;
    int B = 4, T = 256, steps = 3, json = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            help();
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (i + 1 < argc && !strcmp(a, "--preset")) {
            name = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--quant")) {
            quant = argv[++i];
        } else if (i + 1 < argc && (!strcmp(a, "--batch") || !strcmp(a, "--seq-len") || !strcmp(a, "--steps") ||
                                    !strcmp(a, "--threads"))) {
            int v = atoi(argv[++i]);
            if (v <= 0) return tn_cli_usage_error("bench train", "%s needs a positive integer", a);
            if (!strcmp(a, "--batch")) B = v;
            else if (!strcmp(a, "--seq-len")) T = v;
            else if (!strcmp(a, "--steps")) steps = v;
            else threads = v;
        } else {
            return tn_cli_usage_error("bench train", "unknown option '%s'", a);
        }
    }
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) p = &presets[i];
    if (!p) return tn_cli_usage_error("bench train", "unknown preset '%s'", name);
    if (threads > 0) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    if (steps > 32) steps = 32;

    double sgemm = sgemm_gflops(2048, 5);
    tn_llama_layout layout;
    tn_llama *m = NULL;
    float *params = NULL, *grads = NULL, *mom = NULL, *vel = NULL;
    int32_t *in = NULL, *tg = NULL;
    int rc = tn_llama_layout_init(&layout, &p->cfg);
    if (rc == 0) {
        params = tn_alloc(layout.numel, 4);
        grads = tn_alloc(layout.numel, 4);
        mom = tn_alloc(layout.numel, 4);
        vel = tn_alloc(layout.numel, 4);
        in = tn_alloc((size_t)B * T, 4);
        tg = tn_alloc((size_t)B * T, 4);
        rc = (params && grads && mom && vel && in && tg) ? 0 : -1;
    }
    if (rc == 0) rc = tn_llama_create(&m, &layout, B, T, NULL);
    double t = 0, t_ste = 0;
    tn_ste_quantizer q;
    int have_q = 0;
    if (rc == 0) {
        tn_rng rng;
        tn_rng_seed(&rng, 1);
        tn_llama_init_random(&layout, params, &rng, 0.02f);
        for (int i = 0; i < B * T; i++) {
            in[i] = (int32_t)tn_rng_below(&rng, (uint64_t)p->cfg.vocab_size);
            tg[i] = (int32_t)tn_rng_below(&rng, (uint64_t)p->cfg.vocab_size);
        }
        rc = time_steps(m, &layout, params, grads, mom, vel, in, tg, steps, NULL, &t);
    }
    if (rc == 0 && quant) {
        tn_quant_spec spec = {0};
        rc = tn_grid_resolve(quant, &spec.grid);
        spec.rule = strcmp(spec.grid.name, "ternary") ? TN_SCALE_STD : TN_SCALE_ABSMEAN;
        spec.groups = (1u << TN_GROUP_ATTN) | (1u << TN_GROUP_MLP);
        if (rc == 0) rc = tn_ste_quantizer_init(&q, &spec, &layout, params, NULL);
        have_q = rc == 0;
        if (rc == 0) {
            tn_ste_quantizer_attach(&q, m);
            rc = time_steps(m, &layout, params, grads, mom, vel, in, tg, steps, &q, &t_ste);
        }
    }
    if (rc == 0) {
        double flops = step_flops(&p->cfg, B, T);
        double tps = (double)B * T / t, gf = flops / t / 1e9;
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "bench", "train");
            cJSON_AddStringToObject(o, "preset", p->name);
            cJSON_AddNumberToObject(o, "batch", B);
            cJSON_AddNumberToObject(o, "seq_len", T);
            cJSON_AddNumberToObject(o, "threads", omp_get_max_threads());
            tn_json_add_num(o, "step_s", t);
            tn_json_add_num(o, "tokens_per_s", tps);
            tn_json_add_num(o, "gflops", gf);
            tn_json_add_num(o, "sgemm_gflops", sgemm);
            tn_json_add_num(o, "ratio_to_sgemm", gf / sgemm);
            if (quant) {
                cJSON_AddStringToObject(o, "quant", quant);
                tn_json_add_num(o, "ste_step_s", t_ste);
                tn_json_add_num(o, "ste_over_dense", t_ste / t);
            }
            tn_json_print_line(stdout, o);
            cJSON_Delete(o);
        } else {
            printf("bench train %s: batch %d x seq %d, %d threads\n", p->name, B, T, omp_get_max_threads());
            printf("  step %.3f s   %.0f tokens/s   %.1f GFLOP/s\n", t, tps, gf);
            printf("  sgemm 2048^3  %.1f GFLOP/s   ratio %.2f\n", sgemm, gf / sgemm);
            if (quant) printf("  STE (%s) step %.3f s   STE/dense %.3f\n", quant, t_ste, t_ste / t);
        }
    }
    if (have_q) tn_ste_quantizer_free(&q);
    tn_llama_free(m);
    tn_free(params);
    tn_free(grads);
    tn_free(mom);
    tn_free(vel);
    tn_free(in);
    tn_free(tg);
    tn_llama_layout_free(&layout);
    return rc == 0 ? TN_EXIT_OK : tn_cli_fail();
}
