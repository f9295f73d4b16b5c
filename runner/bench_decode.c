/* `trinity bench decode` (runner/bench_decode.h). */
#include "runner/bench_decode.h"

#include "cli/commands.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/timer.h"
#include "export/export_trin.h"
#include "export/table_quant.h"
#include "export/trin.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/packed.h"
#include "model/params.h"
#include "runner/bandwidth.h"
#include "runner/infer.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    const char *name;
    tn_llama_config cfg;
} preset;

static const preset PRESETS[] = {
    /* TinyLlama-1.1B (config.json of TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T) */
    {"tinyllama-1.1b",
     {.dim = 2048, .n_layers = 22, .n_heads = 32, .n_kv_heads = 4, .ffn_dim = 5632, .vocab_size = 32000,
      .max_seq_len = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .bos_id = 1, .eos_id = 2}},
    /* a small shape for tests */
    {"tiny",
     {.dim = 256, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 768, .vocab_size = 1024,
      .max_seq_len = 256, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .bos_id = 1, .eos_id = 2}},
};
#define N_PRESETS (int)(sizeof PRESETS / sizeof PRESETS[0])

static void usage(FILE *f, int prefill) {
    if (prefill)
        fprintf(f,
                "usage: trinity bench prefill [--preset tinyllama-1.1b|tiny | --model FILE.trin [--load L]] [--prompt N]\n"
                "                             [--head f16|q8|q4] [--embed f16|q8|q4] [--device D] [--threads N] [--json]\n"
                "\n"
                "Builds the random-weight T2 model of `trinity bench decode` and times the processing of a prompt of\n"
                "--prompt tokens (default 512) as one batch through the inference engine (chunks of 64 tokens, the\n"
                "logits of the last token): the best and the median of 5 runs after a warm-up, in tokens/s. It\n"
                "prints the bytes of weights, which a batched product reads once per chunk.\n"
                "  --model F   time this .trin (or .h5) instead of the preset's random model\n"
                "  --load L    --model: copy (the CPU's default: read into huge pages) or map (docs/TRIN.md)\n"
                "  --head T    the preset's LM head as f16 (default), q8 or q4 (TRIN Q8 / Q4, docs/TRIN.md)\n"
                "  --embed T   the preset's embedding table, likewise\n"
                "  --device D  cpu (default), cuda or cuda:N\n"
                "  --json      one JSON object on one line\n");
    else
        fprintf(f,
                "usage: trinity bench decode [--preset tinyllama-1.1b|tiny | --model FILE.trin [--load L]] [--device D]\n"
                "                            [--head f16|q8|q4] [--embed f16|q8|q4] [--no-graph] [--threads N]\n"
                "                            [--tokens N] [--json]\n"
                "\n"
                "Builds a random-weight T2 model of the preset's shape in memory (attention and MLP ternary with a\n"
                "per-tensor scale, embeddings and LM head F16 or as --head / --embed say, norms F32), opens it\n"
                "through the TRIN reader and the inference engine, and times greedy decoding of --tokens tokens\n"
                "(default 128) after a warm-up. In the same run it measures the read bandwidth of the device's\n"
                "memory (before and after decoding; the higher counts) and prints the bandwidth-bound tokens/s for\n"
                "the bytes read per token, and the ratio measured / bound. Threads default to 2. Run it on an\n"
                "otherwise idle machine.\n"
                "  --model F    time this .trin (or .h5) instead of the preset's random model (greedy from\n"
                "               its BOS token)\n"
                "  --load L     --model: copy (the CPU's default: read into huge pages) or map (docs/TRIN.md)\n"
                "  --head T     the preset's LM head as f16 (default), q8 or q4 (TRIN Q8 / Q4, docs/TRIN.md)\n"
                "  --embed T    the preset's embedding table, likewise\n"
                "  --device D   cpu (default), cuda or cuda:N (docs/CUDA.md)\n"
                "  --no-graph   CUDA: run each step kernel by kernel instead of replaying a CUDA graph\n"
                "  --json       one JSON object on one line\n");
}

/* The 81 bytes whose four 2-bit fields are all valid ternary codes (0, 1, 2). */
static void valid_t2_bytes(uint8_t out[81]) {
    int n = 0;
    for (int b = 0; b < 256; b++)
        if (((b & (b >> 1)) & 0x55) == 0) out[n++] = (uint8_t)b;
}

/* A random tensor for descriptor d. Data from malloc (the writer takes it). */
static int random_tensor(tn_trin_writer *w, tn_trin_tensor *d, tn_rng *r, const uint8_t t2b[81]) {
    uint64_t size;
    TN_CHECK(tn_trin_data_size(d->dtype, d->rank, d->shape, &size));
    uint8_t *buf = malloc(size);
    if (!buf) return tn_err("out of memory (%llu bytes)", (unsigned long long)size);
    float *scale = NULL;
    if (d->dtype == TN_TRIN_T2) {
        /* Rows of 2048 or 5632 columns fill whole blocks, so no padding column needs code 1. Otherwise
         * pack properly. */
        if (d->shape[1] % TN_T2_BLOCK == 0) {
            for (uint64_t i = 0; i + 8 <= size; i += 8) {
                uint64_t u = tn_rng_u64(r);
                for (int k = 0; k < 8; k++) buf[i + k] = t2b[((u >> (8 * k)) & 255) % 81];
            }
            for (uint64_t i = size / 8 * 8; i < size; i++) buf[i] = t2b[tn_rng_u64(r) % 81];
        } else {
            int64_t n = d->shape[0] * d->shape[1];
            int8_t *v = malloc((size_t)n);
            if (!v) {
                free(buf);
                return tn_err("out of memory");
            }
            for (int64_t i = 0; i < n; i++) v[i] = (int8_t)((int)(tn_rng_u64(r) % 3) - 1);
            tn_t2_pack(v, d->shape[0], d->shape[1], buf);
            free(v);
        }
        scale = malloc(sizeof *scale);
        if (!scale) {
            free(buf);
            return tn_err("out of memory");
        }
        scale[0] = 0.02f;
        d->scale_layout = TN_TRIN_SCALE_TENSOR;
    } else if (d->dtype == TN_TRIN_F16) {
        /* 4096 normal values, then picked at random: the head reads like a real one (no zeros, no
         * pattern a cache could exploit) at a fraction of the cost of 65M Box-Muller draws */
        uint16_t table[4096];
        for (int i = 0; i < 4096; i++) table[i] = tn_f32_to_f16(0.02f * tn_rng_normal(r));
        uint16_t *h = (uint16_t *)(void *)buf;
        for (uint64_t i = 0; i + 4 <= size / 2; i += 4) {
            uint64_t u = tn_rng_u64(r);
            for (int k = 0; k < 4; k++) h[i + k] = table[(u >> (16 * k)) & 4095];
        }
        for (uint64_t i = size / 2 / 4 * 4; i < size / 2; i++) h[i] = table[tn_rng_u64(r) & 4095];
    } else if (d->dtype == TN_TRIN_Q8) {
        /* int8 rows of a table quantized by absmax: codes spread over ±127, a scale per row */
        for (uint64_t i = 0; i + 8 <= size; i += 8) {
            const uint64_t u = tn_rng_u64(r);
            memcpy(buf + i, &u, 8);
        }
        scale = malloc((size_t)d->shape[0] * sizeof *scale);
        if (!scale) {
            free(buf);
            return tn_err("out of memory");
        }
        for (int64_t k = 0; k < d->shape[0]; k++) scale[k] = 0.0005f;
        d->scale_layout = TN_TRIN_SCALE_ROW;
    } else if (d->dtype == TN_TRIN_Q4) {
        /* random codes, every block's fp16 scale 0.005 */
        const uint16_t h = tn_f32_to_f16(0.005f);
        for (uint64_t i = 0; i < size; i++)
            buf[i] = i % TN_Q4_BLOCK_BYTES == 0 ? (uint8_t)h : i % TN_Q4_BLOCK_BYTES == 1 ? (uint8_t)(h >> 8) : (uint8_t)tn_rng_u64(r);
    } else {
        float *f = (float *)(void *)buf;
        for (uint64_t i = 0; i < size / 4; i++) f[i] = 1.0f;
    }
    return tn_trin_writer_add(w, d, buf, scale, 1);
}

/* The dtype of a table (TRIN) for a --head / --embed setting; auto = F16. */
static tn_trin_dtype table_dtype(tn_table_type t) {
    return t == TN_TABLE_Q8 ? TN_TRIN_Q8 : t == TN_TABLE_Q4 ? TN_TRIN_Q4 : t == TN_TABLE_F32 ? TN_TRIN_F32 : TN_TRIN_F16;
}

/* The model as a TRIN image in memory: layers T2, the head and embedding table as asked. */
static int build_image(const tn_llama_config *cfg, tn_table_type head, tn_table_type embed, uint8_t **img, size_t *size) {
    tn_llama_layout l;
    TN_CHECK(tn_llama_layout_init(&l, cfg));
    tn_trin_writer *w = tn_trin_writer_new(cfg);
    int rc = w ? 0 : -1;
    tn_rng r;
    tn_rng_seed(&r, 2024);
    uint8_t t2b[81];
    valid_t2_bytes(t2b);
    if (rc == 0) rc = tn_trin_writer_meta(w, "created_by", "trinity bench decode (random weights)");
    for (int i = 0; rc == 0 && i < l.n_tensors; i++) {
        const tn_tensor_info *t = &l.tensors[i];
        tn_trin_tensor d;
        memset(&d, 0, sizeof d);
        snprintf(d.name, sizeof d.name, "%s", t->name);
        d.rank = t->rank;
        d.shape[0] = t->shape[0];
        d.shape[1] = t->rank == 2 ? t->shape[1] : 0;
        d.dtype = t->rank == 1 ? TN_TRIN_F32
                  : (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP) ? TN_TRIN_T2
                                                                            : table_dtype(tn_table_for(t, cfg, head, embed));
        rc = random_tensor(w, &d, &r, t2b);
    }
    if (rc == 0) rc = tn_trin_writer_to_memory(w, img, size);
    tn_trin_writer_free(w);
    tn_llama_layout_free(&l);
    return rc;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

typedef struct {
    const preset *p;
    const char *model; /* a .trin (or .h5) to time instead of the preset's random model */
    const char *name;  /* the preset's name or the model file's */
    int threads, tokens, prompt, json, graph;
    tn_infer_load load;
    const char *device;
    tn_table_type head, embed; /* the preset's tables (auto = F16) */
} bench_opts;

/* The options of `bench decode` (prefill = 0) or `bench prefill`; returns -1 to go on, else an exit code. */
static int parse(int argc, char **argv, int prefill, bench_opts *o) {
    const char *cmd = prefill ? "bench prefill" : "bench decode";
    int preset_given = 0;
    o->p = &PRESETS[0];
    o->model = NULL;
    o->threads = 2, o->tokens = 128, o->prompt = 512, o->json = 0, o->graph = 1;
    o->device = "cpu";
    o->head = o->embed = TN_TABLE_AUTO;
    o->load = TN_LOAD_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            usage(stdout, prefill);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!prefill && !strcmp(a, "--no-graph")) {
            o->graph = 0;
        } else if (!strcmp(a, "--device")) {
            if (++i >= argc) return tn_cli_usage_error(cmd, "--device needs cpu, cuda or cuda:N");
            o->device = argv[i];
        } else if (!strcmp(a, "--head") || !strcmp(a, "--embed")) {
            if (++i >= argc) return tn_cli_usage_error(cmd, "%s needs f16, q8 or q4", a);
            tn_table_type *t = !strcmp(a, "--head") ? &o->head : &o->embed;
            if (tn_table_type_parse(argv[i], t) != 0) return tn_cli_usage_error(cmd, "%s: %s", a, tn_errmsg());
        } else if (!strcmp(a, "--model")) {
            if (++i >= argc) return tn_cli_usage_error(cmd, "--model needs a .trin file");
            o->model = argv[i];
        } else if (!strcmp(a, "--load")) {
            if (++i >= argc) return tn_cli_usage_error(cmd, "--load needs auto, map or copy");
            if (tn_infer_load_parse(argv[i], &o->load) != 0) return tn_cli_usage_error(cmd, "--load: %s", tn_errmsg());
        } else if (!strcmp(a, "--preset")) {
            if (++i >= argc) return tn_cli_usage_error(cmd, "--preset needs a name");
            preset_given = 1;
            o->p = NULL;
            for (int k = 0; k < N_PRESETS; k++)
                if (!strcmp(argv[i], PRESETS[k].name)) o->p = &PRESETS[k];
            if (!o->p) return tn_cli_usage_error(cmd, "unknown preset '%s' (tinyllama-1.1b, tiny)", argv[i]);
        } else if (!strcmp(a, "--threads") || (!prefill && !strcmp(a, "--tokens")) || (prefill && !strcmp(a, "--prompt"))) {
            if (++i >= argc) return tn_cli_usage_error(cmd, "%s needs a value", a);
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*argv[i] == '\0' || *end || v <= 0 || v > 100000)
                return tn_cli_usage_error(cmd, "%s: '%s' is not a positive integer", a, argv[i]);
            if (!strcmp(a, "--threads")) o->threads = (int)v;
            else if (!strcmp(a, "--tokens")) o->tokens = (int)v;
            else o->prompt = (int)v;
        } else {
            return tn_cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (o->model && preset_given) return tn_cli_usage_error(cmd, "--model and --preset exclude each other");
    if (!o->model && o->load != TN_LOAD_AUTO)
        return tn_cli_usage_error(cmd, "--load applies to a --model file (the preset's model is built in huge pages)");
    if (o->model && (o->head != TN_TABLE_AUTO || o->embed != TN_TABLE_AUTO))
        return tn_cli_usage_error(cmd, "--head and --embed shape the preset's random model; a --model file has its own");
    const char *slash = o->model ? strrchr(o->model, '/') : NULL;
    o->name = o->model ? (slash ? slash + 1 : o->model) : o->p->name;
    const int need = prefill ? o->prompt : o->tokens + 16;
    if (!o->model && need > o->p->cfg.max_seq_len)
        return tn_cli_usage_error(cmd, "%s: at most %d for this preset", prefill ? "--prompt" : "--tokens",
                                  o->p->cfg.max_seq_len - (prefill ? 0 : 16));
    omp_set_num_threads(o->threads);
    tn_packed_set_threads(o->threads);
    openblas_set_num_threads(o->threads);
    return -1;
}

/* The preset's random model, in huge pages where the kernel allows, opened through the TRIN reader on the
 * device. *img / *hp / *hp_len: what to release after tn_infer_free (release_image). */
typedef struct {
    uint8_t *img;
    void *hp;
    size_t hp_len;
    double t_build, t_open;
} image;

static void release_image(image *im) {
    tn_free(im->img);
    if (im->hp) munmap(im->hp, im->hp_len);
    memset(im, 0, sizeof *im);
}

static int open_model(const bench_opts *b, int ctx, image *im, tn_infer **out) {
    const tn_llama_config *cfg = &b->p->cfg;
    memset(im, 0, sizeof *im);
    tn_infer_opts o;
    tn_infer_opts_default(&o);
    o.threads = b->threads;
    o.ctx = ctx;
    o.device = b->device;
    o.graph = b->graph;
    o.load = b->load;
    double t0 = tn_time_s();
    if (b->model) { /* a model file: loaded and opened as `trinity run` opens it (b->load) */
        TN_CHECK(tn_infer_open(b->model, &o, out));
        im->t_open = tn_time_s() - t0;
        if (tn_infer_ctx(*out) < ctx) {
            const int have = tn_infer_ctx(*out);
            tn_infer_free(*out);
            *out = NULL;
            return tn_err("%s: a context of %d positions is needed, the model has %d", b->model, ctx, have);
        }
        return 0;
    }
    size_t img_size = 0;
    if (build_image(cfg, b->head, b->embed, &im->img, &img_size) != 0) return tn_err_prefix("building the model");
    const uint8_t *img_view = im->img;
    im->t_build = tn_time_s() - t0;
    t0 = tn_time_s();
    /* Move the image into 2 MiB pages when the kernel allows it (transparent huge pages, madvise mode):
     * fewer TLB misses while streaming 370 MB per token. TN_BENCH_NO_HUGEPAGES=1 keeps 4 KiB pages. */
    if (!getenv("TN_BENCH_NO_HUGEPAGES")) {
        void *region;
        uint8_t *aligned = tn_huge_alloc(img_size, &region, &im->hp_len);
        if (aligned) {
            im->hp = region;
            memcpy(aligned, im->img, img_size);
            tn_free(im->img);
            im->img = NULL;
            img_view = aligned;
        }
    }
    tn_trin *t = NULL;
    int rc = tn_trin_open_memory(img_view, img_size, &t);
    if (rc == 0) rc = tn_infer_from_trin(t, &o, out); /* takes t */
    im->t_open = tn_time_s() - t0;
    if (rc != 0) release_image(im);
    return rc;
}

/* The fields both benchmarks' JSON lines start with: what ran, on which model, device and kernels. */
static cJSON *json_head(const char *bench, const bench_opts *b, const tn_infer *m) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "bench", bench);
    cJSON_AddStringToObject(j, b->model ? "model_file" : "preset", b->name);
    cJSON_AddStringToObject(j, "model", tn_infer_describe(m));
    cJSON_AddStringToObject(j, "device", tn_infer_device(m));
    cJSON_AddStringToObject(j, "device_name", tn_infer_device_name(m));
    cJSON_AddNumberToObject(j, "threads", b->threads);
    cJSON_AddStringToObject(j, "kernels", tn_isa_name(tn_kernels_isa()));
    return j;
}

int tn_bench_decode(int argc, char **argv) {
    bench_opts b;
    const int prc = parse(argc, argv, 0, &b);
    if (prc >= 0) return prc;
    const int threads = b.threads, tokens = b.tokens, json = b.json;
    tn_infer *m = NULL;
    image im;
    if (open_model(&b, tokens + 16, &im, &m) != 0) return tn_err_prefix("bench decode"), tn_cli_fail();
    const tn_llama_config *cfg = tn_infer_config(m);
    const double t_build = im.t_build, t_open = im.t_open;
    const int64_t bytes = tn_infer_weight_bytes(m);

    /* Bandwidth over a buffer at least the model's size (and >= 256 MiB), same thread count, measured
     * before and after decoding; the higher of the two sets the bound, so a disturbance during either
     * measurement can only make the ratio look worse, never better. */
    size_t bw_bytes = (size_t)bytes > ((size_t)256 << 20) ? (size_t)bytes : ((size_t)256 << 20);
    double bw_before = tn_infer_read_bandwidth(m, bw_bytes, threads, 5);

    /* Decode: a BOS prompt, a warm-up of 8 tokens, then `tokens` timed greedy steps. */
    const int V = cfg->vocab_size;
    double *dt = malloc((size_t)tokens * sizeof *dt);
    const float *lg = dt ? tn_infer_step(m, cfg->bos_id >= 0 ? cfg->bos_id : 0) : NULL;
    for (int i = 0; lg && i < 8; i++) lg = tn_infer_step(m, argmax(lg, V));
    double t_dec = tn_time_s();
    for (int i = 0; lg && i < tokens; i++) {
        double a = tn_time_s();
        lg = tn_infer_step(m, argmax(lg, V));
        dt[i] = tn_time_s() - a;
    }
    t_dec = tn_time_s() - t_dec;
    if (!lg) {
        free(dt);
        tn_infer_free(m);
        release_image(&im);
        return tn_err_prefix("bench decode"), tn_cli_fail();
    }
    tn_sort_doubles(dt, tokens);
    const double tok_s = tokens / t_dec, med_tok_s = 1.0 / dt[tokens / 2];
    free(dt);

    double bw_after = tn_infer_read_bandwidth(m, bw_bytes, threads, 5);
    double bw = bw_before > bw_after ? bw_before : bw_after;
    const double bound = bw > 0 ? bw / (double)bytes : 0, ratio = bound > 0 ? tok_s / bound : 0;

    if (json) {
        cJSON *j = json_head("decode", &b, m);
        cJSON_AddBoolToObject(j, "graph", b.graph && tn_infer_graph_active(m));
        cJSON_AddNumberToObject(j, "tokens", tokens);
        tn_json_add_num(j, "tok_s", tok_s);
        tn_json_add_num(j, "median_tok_s", med_tok_s);
        tn_json_add_num(j, "ms_per_token", 1e3 / tok_s);
        cJSON_AddNumberToObject(j, "bytes_per_token", (double)bytes);
        tn_json_add_num(j, "bandwidth_gb_s", bw / 1e9);
        tn_json_add_num(j, "bandwidth_before_gb_s", bw_before / 1e9);
        tn_json_add_num(j, "bandwidth_after_gb_s", bw_after / 1e9);
        tn_json_add_num(j, "bound_tok_s", bound);
        tn_json_add_num(j, "ratio", ratio);
        tn_json_add_num(j, "build_s", t_build);
        tn_json_add_num(j, "open_s", t_open);
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
    } else {
        printf("bench decode: %s (%s), %s%s, %d threads, kernels %s\n", b.name, tn_infer_describe(m),
               tn_infer_device(m), tn_infer_graph_active(m) ? " (CUDA graph)" : "", threads,
               tn_isa_name(tn_kernels_isa()));
        printf("  model      %.1f MB read per token (built in %.1fs, opened and verified in %.2fs)\n", (double)bytes / 1e6,
               t_build, t_open);
        printf("  decode     %.1f tok/s (%.2f ms/token; median %.1f tok/s) over %d tokens\n", tok_s, 1e3 / tok_s, med_tok_s,
               tokens);
        printf("  bandwidth  %.1f GB/s (before %.1f, after %.1f) -> bound %.1f tok/s; ratio %.2f\n", bw / 1e9,
               bw_before / 1e9, bw_after / 1e9, bound, ratio);
    }
    tn_infer_free(m);
    release_image(&im);
    return bw > 0 ? TN_EXIT_OK : (tn_err("bench decode: out of memory for the bandwidth buffer"), tn_cli_fail());
}

int tn_bench_prefill(int argc, char **argv) {
    bench_opts b;
    const int prc = parse(argc, argv, 1, &b);
    if (prc >= 0) return prc;
    const int n = b.prompt, runs = 5;
    tn_infer *m = NULL;
    image im;
    if (open_model(&b, n, &im, &m) != 0) return tn_err_prefix("bench prefill"), tn_cli_fail();
    const int V = tn_infer_config(m)->vocab_size;
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    float *logits = malloc((size_t)V * sizeof *logits);
    double dt[5];
    int rc = toks && logits ? 0 : tn_err("out of memory");
    tn_rng r;
    tn_rng_seed(&r, 7);
    for (int i = 0; toks && i < n; i++) toks[i] = (int32_t)tn_rng_below(&r, (uint64_t)V);
    /* a warm-up run, then the timed ones; tn_infer_forward returns after the logits came back (on CUDA
     * the download waits for the device) */
    for (int k = -1; rc == 0 && k < runs; k++) {
        tn_infer_reset(m);
        const double t0 = tn_time_s();
        rc = tn_infer_forward(m, toks, n, logits, 0);
        if (k >= 0) dt[k] = tn_time_s() - t0;
    }
    if (rc != 0) {
        free(toks);
        free(logits);
        tn_infer_free(m);
        release_image(&im);
        return tn_err_prefix("bench prefill"), tn_cli_fail();
    }
    tn_sort_doubles(dt, runs);
    const double best = n / dt[0], median = n / dt[runs / 2];
    const int64_t bytes = tn_infer_weight_bytes(m), int8_w = tn_infer_int8_weights(m);
    const int per_read = n < tn_infer_chunk_tokens() ? n : tn_infer_chunk_tokens(); /* tokens per weight read */
    /* CPU: the int8 ops the T2 products did per second against the int8 peak of the same threads, measured
     * after the prefill runs (the kernels' level, kernels/cpu/cpu_features.h) */
    const int on_cpu = !strcmp(tn_infer_device(m), "cpu");
    const double peak = on_cpu && int8_w > 0 ? tn_bench_int8_peak(b.threads, 5) : 0;
    const double int8_ops = 2.0 * (double)int8_w * best, peak_ratio = peak > 0 ? int8_ops / peak : 0;
    if (b.json) {
        cJSON *j = json_head("prefill", &b, m);
        cJSON_AddNumberToObject(j, "prompt", n);
        tn_json_add_num(j, "tok_s", best);
        tn_json_add_num(j, "median_tok_s", median);
        tn_json_add_num(j, "ms_per_prompt", 1e3 * dt[0]);
        cJSON_AddNumberToObject(j, "weight_bytes", (double)bytes);
        tn_json_add_num(j, "bytes_per_token", (double)bytes / per_read);
        cJSON_AddNumberToObject(j, "int8_weights", (double)int8_w);
        if (peak > 0) {
            tn_json_add_num(j, "int8_gops", int8_ops / 1e9);
            tn_json_add_num(j, "int8_peak_gops", peak / 1e9);
            tn_json_add_num(j, "int8_peak_ratio", peak_ratio);
        }
        tn_json_add_num(j, "build_s", im.t_build);
        tn_json_add_num(j, "open_s", im.t_open);
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
    } else {
        printf("bench prefill: %s (%s), %s, %d threads, kernels %s\n", b.name, tn_infer_describe(m),
               tn_infer_device(m), b.threads, tn_isa_name(tn_kernels_isa()));
        printf("  model      %.1f MB of weights, read once per %d tokens: %.1f MB per token (built in %.1fs, opened in "
               "%.2fs)\n", (double)bytes / 1e6, per_read, (double)bytes / per_read / 1e6, im.t_build, im.t_open);
        printf("  prefill    %d tokens: %.1f tok/s (%.1f ms; median of %d runs %.1f tok/s)\n", n, best, 1e3 * dt[0],
               runs, median);
        if (peak > 0)
            printf("  int8       T2 products %.1f Gop/s against the int8 peak of %.1f Gop/s (%s, %d threads): ratio %.2f\n",
                   int8_ops / 1e9, peak / 1e9, tn_isa_name(tn_kernels_isa()), b.threads, peak_ratio);
    }
    free(toks);
    free(logits);
    tn_infer_free(m);
    release_image(&im);
    return TN_EXIT_OK;
}
