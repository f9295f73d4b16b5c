#include "train/bench.h"
#include "train/train.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/json.h"
#include "core/timer.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A preset: the model's shape (Hugging Face config.json values of the real models, the ghost configs of
 * configs/) and its training method, as config assignments. */
typedef struct {
    const char *name;
    const char *assignments[24];
} preset;

static const preset presets[] = {
    {"tiny",
     {"model.dim=128", "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=384",
      "model.vocab_size=512", "model.max_seq_len=512", "model.tied_embeddings=true", NULL}},
    {"smollm2-135m",
     {"model.dim=576", "model.n_layers=30", "model.n_heads=9", "model.n_kv_heads=3", "model.ffn_dim=1536",
      "model.vocab_size=49152", "model.max_seq_len=2048", "model.rope_theta=100000", "model.norm_eps=1e-5",
      "model.tied_embeddings=true", NULL}},
    {"tinyllama-1.1b",
     {"model.dim=2048", "model.n_layers=22", "model.n_heads=32", "model.n_kv_heads=4", "model.ffn_dim=5632",
      "model.vocab_size=32000", "model.max_seq_len=2048", "model.rope_theta=10000", "model.norm_eps=1e-5",
      "model.tied_embeddings=false", NULL}},
    /* configs/ghost-tiny.ini and configs/ghost-0.1b.ini: PRIMAL on attention and MLP */
    {"ghost-tiny",
     {"model.dim=256", "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=4", "model.ffn_dim=704",
      "model.vocab_size=258", "model.max_seq_len=512", "optim.method=primal", "optim.lr=3e-3", "primal.init_std=0.05",
      "primal.c=0.01", NULL}},
    {"ghost-0.1b",
     {"model.dim=768", "model.n_layers=12", "model.n_heads=12", "model.n_kv_heads=4", "model.ffn_dim=3072",
      "model.vocab_size=32000", "model.max_seq_len=2048", "model.tied_embeddings=true", "optim.method=primal",
      "optim.lr=1e-3", "primal.init_std=0.05", "primal.c=0.01", NULL}},
};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

const char *tn_bench_train_presets(void) { return "tiny, ghost-tiny, smollm2-135m, ghost-0.1b, tinyllama-1.1b"; }

/* FLOPs of one forward + backward over B×T tokens: 6·N·in·out per linear (2 forward, 4 backward), the
 * LM head likewise, attention 2 products of B·H·hd times the T(T+1)/2 causal score entries each, ×3 for
 * backward (the useful work: a kernel that also computes masked entries, or recomputes the probabilities
 * in the backward, does more than this counts). A distillation teacher's forward is not counted. */
static double step_flops(const tn_llama_config *c, int64_t B, int64_t T) {
    double N = (double)B * T, d = c->dim, hd = d / c->n_heads, q = c->n_heads * hd, kv = c->n_kv_heads * hd;
    double per_layer = d * q + 2 * d * kv + q * d + 3 * d * c->ffn_dim;
    double lin = 6.0 * N * (per_layer * c->n_layers + d * c->vocab_size);
    double attn = 3.0 * 2.0 * 2.0 * (double)B * c->n_heads * ((double)T * (T + 1.0) / 2.0) * hd * c->n_layers;
    return lin + attn;
}

/* GFLOP/s of sgemm C[n,n] = A[n,n] B[n,n], median of reps: the CPU's attainable peak, measured now. */
static double sgemm_gflops(int n, int reps) {
    float *a = tn_alloc((size_t)n * n, 4), *b = tn_alloc((size_t)n * n, 4), *c = tn_alloc((size_t)n * n, 4);
    double t[16], g = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)n * n; i++) {
            a[i] = (float)(i % 7) * 0.1f;
            b[i] = (float)(i % 5) * 0.1f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double t0 = tn_time_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
            t[r] = tn_time_s() - t0;
        }
        g = 2.0 * n * (double)n * n / tn_median(t, reps) / 1e9;
    }
    tn_free(a);
    tn_free(b);
    tn_free(c);
    return g;
}

/* The assignments of one run: preset, then the options, then the user's overrides (which win). */
static int build(const tn_bench_train_opts *o, const preset *p, const char *quant, char ***out, int *n_out) {
    int cap = 32 + o->n_overrides, n = 0;
    char **a = calloc((size_t)cap, sizeof *a);
    if (!a) return tn_err("out of memory");
    const int cuda = strcmp(o->device, "cpu") != 0;
    const int B = o->batch > 0 ? o->batch : cuda ? 16 : 4, T = o->seq_len > 0 ? o->seq_len : cuda ? 512 : 256;
    char buf[128];
#define PUT(...) (snprintf(buf, sizeof buf, __VA_ARGS__), a[n++] = strdup(buf))
    for (int i = 0; p->assignments[i]; i++) a[n++] = strdup(p->assignments[i]);
    PUT("train.out_dir=(bench)");
    PUT("train.device=%s", o->device);
    PUT("train.batch=%d", B);
    PUT("train.seq_len=%d", T);
    PUT("train.steps=%d", o->steps + 1);
    PUT("train.seed=1");
    if (o->threads > 0) PUT("train.threads=%d", o->threads);
    if (quant) {
        PUT("quant.grid=%s", quant);
        PUT("quant.scale=%s", strcmp(quant, "ternary") ? "std" : "absmean");
        PUT("quant.layers=attn,mlp");
    }
#undef PUT
    for (int i = 0; i < o->n_overrides; i++) /* [quant] keys belong to the STE run */
        if (quant || strncmp(o->overrides[i], "quant.", 6) != 0) a[n++] = strdup(o->overrides[i]);
    for (int i = 0; i < n; i++)
        if (!a[i]) {
            for (int j = 0; j < n; j++) free(a[j]);
            free(a);
            return tn_err("out of memory");
        }
    *out = a;
    *n_out = n;
    return 0;
}

static int run(const tn_bench_train_opts *o, const preset *p, const char *quant, tn_train_bench_result *res) {
    char **a = NULL;
    int n = 0;
    TN_CHECK(build(o, p, quant, &a, &n));
    int rc = tn_train_bench(a, n, o->steps, res);
    for (int i = 0; i < n; i++) free(a[i]);
    free(a);
    return rc;
}

/* One run's memory in the JSON: the plan's components and the peak RSS. */
static void add_memory(cJSON *j, const char *prefix, const tn_train_bench_result *r) {
    char key[64];
    snprintf(key, sizeof key, "%smemory", prefix);
    if (r->memory) cJSON_AddItemToObject(j, key, cJSON_Duplicate(r->memory, 1));
    snprintf(key, sizeof key, "%speak_rss_bytes", prefix);
    cJSON_AddNumberToObject(j, key, (double)r->peak_rss_bytes);
    snprintf(key, sizeof key, "%speak_rss_reset", prefix); /* false: the peak is the whole process's */
    cJSON_AddBoolToObject(j, key, r->peak_rss_reset);
}

static void print_memory(const char *what, const tn_train_bench_result *r, int cpu) {
    const double M = 1 << 20;
    printf("  %smemory: planned %.1f MiB, peak allocated %.1f MiB", what, r->planned_bytes / M,
           r->peak_allocated_bytes / M);
    if (!cpu) printf(", peak measured %.1f MiB", r->peak_measured_bytes / M);
    printf(", peak RSS %.1f MiB%s\n", r->peak_rss_bytes / M, r->peak_rss_reset ? "" : " (the process's)");
    const char *parts[] = {"params_bytes", "grads_bytes", "adam_bytes", "activation_bytes", "method_state_bytes",
                           "ste_shadow_bytes", "ste_grad_bytes", "ste_moment_bytes", "ste_wq_bytes", "ste_idx_bytes",
                           "ste_scratch_bytes", "teacher_bytes", "workspace_bytes"};
    printf("   ");
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->memory, parts[i]);
        if (cJSON_IsNumber(v)) printf(" %.*s %.1f MiB", (int)(strlen(parts[i]) - 6), parts[i], v->valuedouble / M);
    }
    printf("\n");
}

/* Print one benchmark: r the dense run (or the STE run alone), rq the STE run to compare with it, or NULL. */
static void report(const tn_bench_train_opts *o, const preset *p, const tn_train_bench_result *r,
                   const tn_train_bench_result *rq) {
    const int cpu = !r->dev.is_cuda;
    const double sgemm = cpu ? sgemm_gflops(2048, 5) : 0;
    const double flops = step_flops(&r->cfg, r->batch, r->seq_len) * (double)r->accum;
    const double tps = (double)r->tokens_per_step / r->step_s, achieved = flops / r->step_s;
    const double peak = tn_device_peak_flops(&r->dev);

    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "bench", "train");
        cJSON_AddStringToObject(j, "preset", p->name);
        cJSON_AddStringToObject(j, "method", r->method);
        cJSON_AddStringToObject(j, "device", r->dev.spec);
        cJSON_AddStringToObject(j, "device_name", r->dev.name);
        cJSON_AddStringToObject(j, "precision", tn_precision_name(r->dev.precision));
        cJSON_AddNumberToObject(j, "batch", (double)r->batch);
        cJSON_AddNumberToObject(j, "seq_len", (double)r->seq_len);
        cJSON_AddNumberToObject(j, "accum", (double)r->accum);
        if (cpu) cJSON_AddNumberToObject(j, "threads", omp_get_max_threads());
        tn_json_add_num(j, "step_s", r->step_s);
        tn_json_add_num(j, "tokens_per_s", tps);
        tn_json_add_num(j, "gflops", achieved / 1e9);
        tn_json_add_num(j, "tflops", achieved / 1e12);
        if (peak > 0) {
            tn_json_add_num(j, "peak_tflops", peak / 1e12);
            tn_json_add_num(j, "mfu", achieved / peak);
        }
        if (cpu) {
            tn_json_add_num(j, "sgemm_gflops", sgemm);
            tn_json_add_num(j, "ratio_to_sgemm", achieved / 1e9 / sgemm);
        }
        tn_json_add_num(j, "loss_first", r->loss_first);
        tn_json_add_num(j, "loss_last", r->loss_last);
        cJSON_AddNumberToObject(j, "planned_bytes", (double)r->planned_bytes);
        cJSON_AddNumberToObject(j, "peak_allocated_bytes", (double)r->peak_allocated_bytes);
        if (!cpu) cJSON_AddNumberToObject(j, "peak_measured_bytes", (double)r->peak_measured_bytes);
        add_memory(j, "", r);
        if (o->quant) cJSON_AddStringToObject(j, "quant", o->quant);
        if (rq) {
            tn_json_add_num(j, "ste_step_s", rq->step_s);
            tn_json_add_num(j, "ste_over_dense", rq->step_s / r->step_s);
            cJSON_AddNumberToObject(j, "ste_planned_bytes", (double)rq->planned_bytes);
            add_memory(j, "ste_", rq);
        }
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
        return;
    }
    printf("bench train %s (%s) on %s [%s, %s]: batch %lld x seq %lld x accum %lld\n", p->name, r->method, r->dev.spec,
           r->dev.name, tn_precision_name(r->dev.precision), (long long)r->batch, (long long)r->seq_len, (long long)r->accum);
    printf("  step %.3f s   %.0f tokens/s   %.3f TFLOP/s", r->step_s, tps, achieved / 1e12);
    if (peak > 0) printf("   MFU %.1f%% of %.1f TFLOP/s", 100 * achieved / peak, peak / 1e12);
    printf("\n");
    if (cpu) printf("  sgemm 2048^3  %.1f GFLOP/s   ratio %.2f\n", sgemm, achieved / 1e9 / sgemm);
    print_memory("", r, cpu);
    if (rq) {
        printf("  STE (%s) step %.3f s   STE/dense %.3f\n", o->quant, rq->step_s, rq->step_s / r->step_s);
        print_memory("STE ", rq, cpu);
    }
}

int tn_bench_train_report(const tn_bench_train_opts *o) {
    const preset *p = NULL;
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, o->preset)) p = &presets[i];
    if (!p) return tn_err("bench train: unknown preset '%s' (known: %s)", o->preset, tn_bench_train_presets());
    int primal = 0;
    for (int i = 0; p->assignments[i]; i++) primal |= !strcmp(p->assignments[i], "optim.method=primal");
    if (o->quant && primal)
        return tn_err("bench train: --quant times STE on a dense preset; %s trains with PRIMAL", p->name);
    for (int i = 0; i < o->n_overrides && !o->quant; i++)
        if (!strncmp(o->overrides[i], "quant.", 6))
            return tn_err("bench train: %s applies to the STE run; add --quant GRID", o->overrides[i]);

    tn_train_bench_result r, rq;
    memset(&r, 0, sizeof r);
    memset(&rq, 0, sizeof rq);
    /* --ste-only: the STE run stands in the dense one's place */
    int rc = run(o, p, o->ste_only ? o->quant : NULL, &r);
    if (rc == 0 && o->quant && !o->ste_only) rc = run(o, p, o->quant, &rq);
    if (rc == 0) {
        report(o, p, &r, o->quant && !o->ste_only ? &rq : NULL);
    }
    cJSON_Delete(r.memory);
    cJSON_Delete(rq.memory);
    return rc;
}
