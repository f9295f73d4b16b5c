/* `trinity bench decode` (runner/bench_decode.h). */
#include "runner/bench_decode.h"

#include "cli/commands.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/timer.h"
#include "export/export_trin.h"
#include "export/trin.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/packed.h"
#include "model/params.h"
#include "runner/bench_gemv.h"
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
    {"tinyllama-1.1b", {2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, 0, 1, 2}},
    /* a small shape for tests */
    {"tiny", {256, 2, 4, 2, 768, 1024, 256, 10000.0f, 1e-5f, 0, 1, 2}},
};
#define N_PRESETS (int)(sizeof PRESETS / sizeof PRESETS[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: trinity bench decode [--preset tinyllama-1.1b|tiny] [--threads N] [--tokens N] [--json]\n"
            "\n"
            "Builds a random-weight T2 model of the preset's shape in memory (attention and MLP ternary with a\n"
            "per-tensor scale, embeddings and LM head F16, norms F32), opens it through the TRIN reader and the\n"
            "inference engine, and times greedy decoding of --tokens tokens (default 128) after a warm-up. In the\n"
            "same run it measures the memory read bandwidth (before and after decoding; the higher counts) and\n"
            "prints the bandwidth-bound tokens/s for the bytes read per token, and the ratio measured / bound.\n"
            "Threads default to 2. Run it on an otherwise idle machine.\n"
            "  --json   one JSON object on one line\n");
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
    } else {
        float *f = (float *)(void *)buf;
        for (uint64_t i = 0; i < size / 4; i++) f[i] = 1.0f;
    }
    return tn_trin_writer_add(w, d, buf, scale, 1);
}

/* The model as a TRIN image in memory. */
static int build_image(const tn_llama_config *cfg, uint8_t **img, size_t *size) {
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
                                                                            : TN_TRIN_F16;
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

int tn_bench_decode(int argc, char **argv) {
    const preset *p = &PRESETS[0];
    int threads = 2, tokens = 128, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            usage(stdout);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--preset")) {
            if (++i >= argc) return tn_cli_usage_error("bench decode", "--preset needs a name");
            p = NULL;
            for (int k = 0; k < N_PRESETS; k++)
                if (!strcmp(argv[i], PRESETS[k].name)) p = &PRESETS[k];
            if (!p) return tn_cli_usage_error("bench decode", "unknown preset '%s' (tinyllama-1.1b, tiny)", argv[i]);
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--tokens")) {
            if (++i >= argc) return tn_cli_usage_error("bench decode", "%s needs a value", a);
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*argv[i] == '\0' || *end || v <= 0 || v > 100000)
                return tn_cli_usage_error("bench decode", "%s: '%s' is not a positive integer", a, argv[i]);
            if (!strcmp(a, "--threads")) threads = (int)v;
            else tokens = (int)v;
        } else {
            return tn_cli_usage_error("bench decode", "unknown option '%s'", a);
        }
    }
    const tn_llama_config *cfg = &p->cfg;
    if (tokens + 16 > cfg->max_seq_len) return tn_cli_usage_error("bench decode", "--tokens: at most %d for this preset", cfg->max_seq_len - 16);
    omp_set_num_threads(threads);
    tn_packed_set_threads(threads);
    openblas_set_num_threads(threads);

    double t0 = tn_time_s();
    uint8_t *img = NULL;
    size_t img_size = 0;
    if (build_image(cfg, &img, &img_size) != 0) return tn_err_prefix("bench decode: building the model"), tn_cli_fail();
    const uint8_t *img_view = img;
    double t_build = tn_time_s() - t0;
    t0 = tn_time_s();
    tn_trin *t = NULL;
    tn_infer *m = NULL;
    tn_infer_opts o;
    tn_infer_opts_default(&o);
    o.threads = threads;
    o.ctx = tokens + 16;
    /* Move the image into 2 MiB pages when the kernel allows it (transparent huge pages, madvise mode):
     * fewer TLB misses while streaming 370 MB per token. TN_BENCH_NO_HUGEPAGES=1 keeps 4 KiB pages. */
    uint8_t *hp = NULL;
    size_t hp_len = 0;
    if (!getenv("TN_BENCH_NO_HUGEPAGES")) {
        const size_t huge = (size_t)2 << 20;
        hp_len = (img_size + 2 * huge - 1) / huge * huge;
        void *map = mmap(NULL, hp_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED) {
            hp_len = 0;
        } else {
            hp = map;
            uint8_t *aligned = (uint8_t *)(((uintptr_t)hp + huge - 1) & ~(uintptr_t)(huge - 1));
            madvise(aligned, img_size, MADV_HUGEPAGE);
            memcpy(aligned, img, img_size);
            tn_free(img);
            img = NULL;
            img_view = aligned;
        }
    }
    int rc = tn_trin_open_memory(img_view, img_size, &t);
    if (rc == 0) rc = tn_infer_from_trin(t, &o, &m); /* takes t */
    double t_open = tn_time_s() - t0;
    if (rc != 0) {
        tn_free(img);
        if (hp) munmap(hp, hp_len);
        return tn_err_prefix("bench decode"), tn_cli_fail();
    }
    const int64_t bytes = tn_infer_weight_bytes(m);

    /* Bandwidth over a buffer at least the model's size (and >= 256 MiB), same thread count, measured
     * before and after decoding; the higher of the two sets the bound, so a disturbance during either
     * measurement can only make the ratio look worse, never better. */
    size_t bw_bytes = (size_t)bytes > ((size_t)256 << 20) ? (size_t)bytes : ((size_t)256 << 20);
    double bw_before = tn_bench_read_bandwidth(bw_bytes, threads, 5);

    /* Decode: a BOS prompt, a warm-up of 8 tokens, then `tokens` timed greedy steps. */
    const int V = cfg->vocab_size;
    double *dt = malloc((size_t)tokens * sizeof *dt);
    const float *lg = dt ? tn_infer_step(m, cfg->bos_id) : NULL;
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
        tn_free(img);
        if (hp) munmap(hp, hp_len);
        return tn_err_prefix("bench decode"), tn_cli_fail();
    }
    tn_sort_doubles(dt, tokens);
    const double tok_s = tokens / t_dec, med_tok_s = 1.0 / dt[tokens / 2];
    free(dt);

    double bw_after = tn_bench_read_bandwidth(bw_bytes, threads, 5);
    double bw = bw_before > bw_after ? bw_before : bw_after;
    const double bound = bw > 0 ? bw / (double)bytes : 0, ratio = bound > 0 ? tok_s / bound : 0;

    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "bench", "decode");
        cJSON_AddStringToObject(j, "preset", p->name);
        cJSON_AddStringToObject(j, "model", tn_infer_describe(m));
        cJSON_AddNumberToObject(j, "threads", threads);
        cJSON_AddStringToObject(j, "kernels", tn_isa_name(tn_kernels_isa()));
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
        printf("bench decode: %s (%s), %d threads, kernels %s\n", p->name, tn_infer_describe(m), threads,
               tn_isa_name(tn_kernels_isa()));
        printf("  model      %.1f MB read per token (built in %.1fs, opened and verified in %.2fs)\n", (double)bytes / 1e6,
               t_build, t_open);
        printf("  decode     %.1f tok/s (%.2f ms/token; median %.1f tok/s) over %d tokens\n", tok_s, 1e3 / tok_s, med_tok_s,
               tokens);
        printf("  bandwidth  %.1f GB/s (before %.1f, after %.1f) -> bound %.1f tok/s; ratio %.2f\n", bw / 1e9,
               bw_before / 1e9, bw_after / 1e9, bound, ratio);
    }
    tn_infer_free(m);
    tn_free(img);
    if (hp) munmap(hp, hp_len);
    return bw > 0 ? TN_EXIT_OK : (tn_err("bench decode: out of memory for the bandwidth buffer"), tn_cli_fail());
}
