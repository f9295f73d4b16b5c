/* trinity export --format hf (export/export_hf.c, data/tok_hfjson_write.c), read back with trinity's own
 * Hugging Face importer and tokenizer.json reader (transformers itself: scripts/check-hf-export.py):
 *   f32: tn_import_hf of the directory gives the same config (memcmp) and parameters bit-identical to the
 *     weights trinity runs: dense, tied, STE ternary per row (act_bits 8: counted, and warned about), PRIMAL
 *     (prime7 ghost tensors), --quantize ternary, Qwen2 (q/k/v biases), Qwen3 (q/k norms, head_dim), llama3
 *     and linear RoPE, and the transformers-made fixtures of tests/fixtures/hf-families imported then exported
 *   bf16: every value is the round-to-nearest-even bfloat16 of the f32 one (and tn_f32_to_bf16 itself on
 *     ties, NaN, infinities and overflow)
 *   the file: safetensors header padded to 8 bytes, __metadata__ format "pt", contiguous data offsets,
 *     no lm_head.weight when tied; config.json keys per family
 *   tokenizers: every llama.cpp vocabulary trinity reads (../shared/data/llama-cpp-vocab), Llama's
 *     tokenizer.model, SmolLM2's GGUF and the bytes tokenizer written as tokenizer.json and loaded back give
 *     the same ids on llama.cpp's test strings and every WikiText-2 line, the same BOS/EOS and chat template;
 *     Falcon's pre-tokenizer is refused by name (and the export then writes no tokenizer files)
 *   bad input: an existing non-empty directory, an unknown dtype, a config no transformers class expresses:
 *     one clear error, nothing left behind (no directory, no DIR.tmp-*). */
#include "tn_test.h"
#include "tiny_ckpt.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/h5.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "export/export_hf.h"
#include "export/gguf_dequant.h"
#include "export/import.h"
#include "export/safetensors.h"
#include "model/params.h"
#include "model/rope.h"
#include "optim/primal.h"
#include "quant/snap.h"
#include "train/checkpoint.h"
#include "train/quant_spec.h"
#include "train/snapshot.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_export_hfXXXXXX";
static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* Nothing but `keep` (and what it holds) in the test directory: no DIR.tmp-* left by a failed export. */
static int no_leftovers(void) {
    DIR *d = opendir(dir);
    int ok = 1;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) ok = 0;
    if (d) closedir(d);
    return ok;
}

static void rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        rm_rf(p);
    }
    closedir(d);
    rmdir(path);
}

static tn_llama_config test_config(int tied) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 96;
    c.vocab_size = 260; /* more rows than the bytes tokenizer's 258 tokens */
    c.max_seq_len = 64;
    c.rope_theta = 500000.0f;
    c.norm_eps = 1e-5f;
    c.tied_embeddings = tied;
    c.bos_id = 256;
    c.eos_id = 257;
    return c;
}


/* The weights trinity runs for checkpoint h5 (snapped / materialised), as eval loads them. */
static int run_weights(const char *h5, tn_checkpoint *ck) {
    TN_CHECK(tn_ckpt_load(h5, ck, NULL, 0));
    return tn_snapshot_apply(h5, ck, NULL, NULL);
}

/* ---- reading the exported directory ------------------------------------------------------------------ */

static char *slurp(const char *path) {
    char *d;
    size_t n;
    return tn_read_file(path, &d, &n) == 0 ? d : NULL;
}

/* The safetensors file as the format wants it: header length a multiple of 8, __metadata__ format "pt",
 * data offsets contiguous in file order and covering the data section exactly. */
static int check_safetensors_file(const char *path, int want_head) {
    char *d;
    size_t size;
    if (tn_read_file(path, &d, &size) != 0) return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)d[i];
    int ok = n % 8 == 0 && n + 8 <= size;
    cJSON *h = ok ? cJSON_ParseWithLength(d + 8, (size_t)n) : NULL;
    ok = ok && h;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    ok = ok && cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "pt");
    double end = 0;
    int head = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) continue;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        ok = ok && cJSON_GetArrayItem(o, 0)->valuedouble == end;
        end = cJSON_GetArrayItem(o, 1)->valuedouble;
        head += !strcmp(e->string, "lm_head.weight");
    }
    ok = ok && end == (double)(size - 8 - n) && head == want_head;
    cJSON_Delete(h);
    free(d);
    return ok;
}

/* Export ckpt h5 (f32), import the directory, compare with want (config and every parameter, bits). */
static void roundtrip(const char *what, const char *h5, const char *quantize, const tn_checkpoint *want,
                      int want_act8) {
    const char *out = tmp("hf-out");
    rm_rf(out);
    tn_export_hf_opts o;
    tn_export_hf_opts_default(&o);
    o.dtype = TN_HF_F32;
    o.quantize = quantize;
    tn_export_hf_report rep;
    tn_log_level lv = tn_log_get_level();
    if (want_act8) tn_log_set_level(TN_LOG_QUIET); /* the act8 warning, expected */
    int rc = tn_export_hf(h5, out, &o, &rep);
    tn_log_set_level(lv);
    CHECKF(rc == 0, "%s: %s", what, tn_errmsg());
    if (rc) return;
    CHECKF(rep.n_act8 == want_act8, "%s: %d act8 tensors", what, rep.n_act8);
    const tn_llama_config *wc = &want->layout.cfg;
    const char *want_arch = wc->qk_norm ? "Qwen3ForCausalLM" : wc->qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
    CHECKF(!strcmp(rep.arch, want_arch) && !strcmp(rep.dtype, "F32"), "%s: %s %s", what, rep.arch, rep.dtype);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    CHECKF(check_safetensors_file(p, !wc->tied_embeddings), "%s: safetensors layout", what);
    tn_checkpoint back;
    tn_import_info info;
    rc = tn_import_hf(out, &back, &info);
    CHECKF(rc == 0, "%s: import: %s", what, tn_errmsg());
    if (rc) return;
    CHECKF(memcmp(&back.layout.cfg, wc, sizeof *wc) == 0, "%s: config differs after import", what);
    int same = back.layout.numel == want->layout.numel && back.layout.n_tensors == want->layout.n_tensors;
    for (int i = 0; same && i < want->layout.n_tensors; i++) {
        const tn_tensor_info *a = &want->layout.tensors[i], *b = &back.layout.tensors[i];
        same = !strcmp(a->name, b->name) &&
               memcmp(want->params + a->offset, back.params + b->offset, a->numel * sizeof(float)) == 0;
        if (!same) fprintf(stderr, "%s: tensor %s differs\n", what, a->name);
    }
    CHECKF(same, "%s: parameters not bit-identical", what);
    CHECKF(back.tokenizer_len > 0 && !strcmp(back.tokenizer_format, "trinity-tokenizer"), "%s: tokenizer %s", what,
           back.tokenizer_format);
    printf("%-28s -> %s (%s, %d tensors, %d quantized): config and parameters identical after import\n", what,
           rep.arch, rep.kind, rep.n_tensors, rep.n_quantized);
    tn_ckpt_free(&back);
}

/* ---- models ----------------------------------------------------------------------------------------- */

static void test_dense(void) {
    for (int tied = 0; tied < 2; tied++) {
        tn_llama_config cfg = test_config(tied);
        tn_checkpoint ck;
        CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 11 + (uint64_t)tied));
        const char *h5 = tmp("dense.h5");
        CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
        roundtrip(tied ? "dense, tied" : "dense", h5, NULL, &ck, 0);

        /* the same export in bf16: each value the RNE rounding of the f32 one */
        const char *out = tmp("hf-bf16");
        tn_export_hf_opts o;
        tn_export_hf_opts_default(&o);
        tn_export_hf_report rep;
        CHECK_OK(tn_export_hf(h5, out, &o, &rep));
        CHECK(!strcmp(rep.dtype, "BF16"));
        char p[600];
        snprintf(p, sizeof p, "%s/model.safetensors", out);
        tn_safetensors st;
        CHECK_OK(tn_st_open(p, &st));
        int ok = st.n_tensors == ck.layout.n_tensors;
        double max_rel = 0;
        for (int i = 0; ok && i < ck.layout.n_tensors; i++) {
            const tn_tensor_info *t = &ck.layout.tensors[i];
            const tn_st_tensor *s = tn_st_find(&st, t->name);
            ok = s && s->dtype == TN_ST_BF16 && (size_t)s->numel == t->numel;
            for (size_t k = 0; ok && k < t->numel; k++) {
                const float w = ck.params[t->offset + k];
                const uint16_t h = (uint16_t)(s->data[2 * k] | s->data[2 * k + 1] << 8);
                ok = h == tn_f32_to_bf16(w);
                double rel = fabs((double)tn_bf16_to_f32(h) - w) / fabs((double)w);
                if (w != 0 && rel > max_rel) max_rel = rel;
            }
        }
        CHECKF(ok && max_rel <= 1.0 / 256, "bf16: values are the roundings (max rel %g)", max_rel);
        printf("dense%s bf16: every value the RNE bfloat16 of the f32 weight, max rel err %.3g (<= 2^-8)\n",
               tied ? " tied" : "", max_rel);
        tn_st_close(&st);
        /* config.json says bfloat16 and the family's keys */
        snprintf(p, sizeof p, "%s/config.json", out);
        char *cj = slurp(p);
        cJSON *j = cj ? cJSON_Parse(cj) : NULL;
        CHECK(j && !strcmp(cJSON_GetObjectItemCaseSensitive(j, "torch_dtype")->valuestring, "bfloat16"));
        CHECK(j && !strcmp(cJSON_GetObjectItemCaseSensitive(j, "model_type")->valuestring, "llama"));
        CHECK(j && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "attention_bias")) &&
              cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "rope_scaling")) &&
              cJSON_GetObjectItemCaseSensitive(j, "head_dim")->valuedouble == 16);
        CHECK(strstr(cj, "\"rms_norm_eps\":\t1e-05") != NULL); /* the shortest decimal, not 9.99999974737875e-06 */
        cJSON_Delete(j);
        free(cj);
        rm_rf(out);
        tn_ckpt_free(&ck);
    }
}

static tn_quant_spec g_spec;
static int save_quant(void *ctx, hid_t group) {
    (void)ctx;
    return tn_quant_spec_save(&g_spec, group);
}

static void test_ste(void) {
    tn_llama_config cfg = test_config(1);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 21));
    memset(&g_spec, 0, sizeof g_spec);
    CHECK_OK(tn_grid_by_name("ternary", &g_spec.grid));
    g_spec.rule = TN_SCALE_ABSMEAN;
    g_spec.per_row = 1;
    g_spec.act_bits = 8;
    g_spec.groups = 1u << TN_GROUP_ATTN | 1u << TN_GROUP_MLP;
    const char *h5 = tmp("ste.h5");
    tn_ckpt_hook hook = {"quant", save_quant, NULL, NULL};
    CHECK_OK(tn_ckpt_save(h5, &ck, &hook, 1));
    tn_checkpoint want;
    CHECK_OK(run_weights(h5, &want));
    /* the snapped weights are not the shadows */
    CHECK(memcmp(want.params, ck.params, ck.layout.numel * sizeof(float)) != 0);
    roundtrip("STE ternary per-row act8", h5, NULL, &want, 7 * cfg.n_layers);
    /* prime7 per tensor, no act8 */
    CHECK_OK(tn_grid_by_name("prime7", &g_spec.grid));
    g_spec.rule = TN_SCALE_STD;
    g_spec.per_row = 0;
    g_spec.act_bits = 0;
    CHECK_OK(tn_ckpt_save(h5, &ck, &hook, 1));
    tn_ckpt_free(&want);
    CHECK_OK(run_weights(h5, &want));
    roundtrip("STE prime7 per-tensor", h5, NULL, &want, 0);
    tn_ckpt_free(&want);

    /* --quantize ternary of the dense checkpoint: absmean ternary per tensor on attention and MLP */
    const char *dense = tmp("dense-q.h5");
    CHECK_OK(tn_ckpt_save(dense, &ck, NULL, 0));
    tn_grid tern;
    CHECK_OK(tn_grid_by_name("ternary", &tern));
    float scale;
    for (int i = 0; i < ck.layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck.layout.tensors[i];
        if (t->rank == 2 && (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP))
            CHECK_OK(tn_quantize_tensor(ck.params + t->offset, t->shape[0], t->shape[1], &tern, TN_SCALE_ABSMEAN, 0,
                                        ck.params + t->offset, NULL, &scale));
    }
    roundtrip("--quantize ternary", dense, "ternary", &ck, 0);
    tn_ckpt_free(&ck);
}

typedef struct {
    tn_primal_tensor *t;
    const tn_llama_layout *l;
    const uint8_t *ghost;
} primal_save_ctx;
static int save_primal(void *vctx, hid_t group) {
    primal_save_ctx *c = vctx;
    for (int i = 0; i < c->l->n_tensors; i++) {
        if (!c->ghost[i]) continue;
        hid_t sub;
        TN_CHECK(tn_h5_group(group, c->l->tensors[i].name, &sub));
        int rc = tn_primal_save(&c->t[i], sub);
        H5Gclose(sub);
        TN_CHECK(rc);
    }
    return 0;
}

/* A PRIMAL checkpoint: attention and MLP as ghost tensors on prime7, per-row scales on every other one. */
static void test_primal(void) {
    tn_llama_config cfg = test_config(0);
    tn_checkpoint full, ck;
    CHECK_OK(tn_test_random_ckpt(&full, &cfg, 31));
    memset(&ck, 0, sizeof ck);
    CHECK_OK(tn_llama_layout_init(&ck.layout, &cfg));
    uint8_t *ghost = calloc((size_t)ck.layout.n_tensors, 1);
    for (int i = 0; i < ck.layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck.layout.tensors[i];
        ghost[i] = t->rank == 2 && (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP);
    }
    CHECK_OK(tn_llama_layout_set_external(&ck.layout, ghost));
    ck.params = tn_alloc(ck.layout.numel, sizeof(float));
    for (int i = 0; i < ck.layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck.layout.tensors[i];
        if (!t->external) memcpy(ck.params + t->offset, full.params + full.layout.tensors[i].offset, t->numel * 4);
    }
    ck.tokenizer = full.tokenizer, ck.tokenizer_len = full.tokenizer_len;
    full.tokenizer = NULL;
    memcpy(ck.tokenizer_format, full.tokenizer_format, sizeof ck.tokenizer_format);
    tn_grid grid;
    CHECK_OK(tn_grid_by_name("prime7", &grid));
    tn_primal_opts po;
    tn_primal_opts_default(&po);
    po.init_std = 0.3;
    tn_primal_tensor *pt = calloc((size_t)ck.layout.n_tensors, sizeof *pt);
    tn_rng r;
    tn_rng_seed(&r, 6);
    for (int i = 0; i < ck.layout.n_tensors; i++) {
        if (!ghost[i]) continue;
        po.scale_per_row = i % 2;
        const tn_tensor_info *t = &ck.layout.tensors[i];
        CHECK_OK(tn_primal_tensor_init(&pt[i], t->shape[0], t->shape[1], &grid, &po, NULL, &r));
        for (int64_t k = 0; k < pt[i].n_scales; k++) pt[i].scale[k] = 0.05f + 0.01f * (float)(k % 5);
    }
    primal_save_ctx pc = {pt, &ck.layout, ghost};
    tn_ckpt_hook hook = {"primal", save_primal, NULL, &pc};
    const char *h5 = tmp("primal.h5");
    CHECK_OK(tn_ckpt_save(h5, &ck, &hook, 1));
    tn_checkpoint want;
    CHECK_OK(run_weights(h5, &want));
    /* the materialised weights are scale · grid[idx], computed here on their own */
    int ok = 1;
    for (int i = 0; i < ck.layout.n_tensors; i++) {
        if (!ghost[i]) continue;
        const tn_tensor_info *t = &want.layout.tensors[i];
        for (int64_t k = 0; k < t->shape[0] * t->shape[1]; k++) {
            const float s = pt[i].scale[pt[i].n_scales == 1 ? 0 : k / t->shape[1]];
            ok &= want.params[t->offset + k] == s * grid.v[tn_primal_index(&pt[i], k)];
        }
    }
    CHECK(ok);
    roundtrip("PRIMAL prime7", h5, NULL, &want, 0);
    tn_ckpt_free(&want);
    for (int i = 0; i < ck.layout.n_tensors; i++)
        if (ghost[i]) tn_primal_tensor_free(&pt[i]);
    free(pt);
    free(ghost);
    tn_ckpt_free(&ck);
    tn_ckpt_free(&full);
}

static void test_families(void) {
    struct {
        const char *what;
        int tied, bias, qk, head_dim, rope;
    } cases[] = {
        {"qwen2 (q/k/v biases)", 1, 1, 0, 0, TN_ROPE_DEFAULT},
        {"qwen3 (q/k norms, head_dim)", 1, 0, 1, 32, TN_ROPE_DEFAULT},
        {"llama head_dim 32", 0, 0, 0, 32, TN_ROPE_DEFAULT},
        {"llama3 RoPE", 0, 0, 0, 0, TN_ROPE_LLAMA3},
        {"linear RoPE", 0, 0, 0, 0, TN_ROPE_LINEAR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tn_llama_config c = test_config(cases[i].tied);
        c.qkv_bias = cases[i].bias;
        c.qk_norm = cases[i].qk;
        c.head_dim = cases[i].head_dim;
        c.rope_type = cases[i].rope;
        if (c.rope_type == TN_ROPE_LLAMA3) {
            c.rope_factor = 8.0f;
            c.rope_low_freq_factor = 1.0f;
            c.rope_high_freq_factor = 4.0f;
            c.rope_orig_max_pos = 32;
        } else if (c.rope_type == TN_ROPE_LINEAR) {
            c.rope_factor = 4.0f;
        }
        tn_checkpoint ck;
        CHECK_OK(tn_test_random_ckpt(&ck, &c, 41 + i));
        const char *h5 = tmp("fam.h5");
        CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
        roundtrip(cases[i].what, h5, NULL, &ck, 0);
        tn_ckpt_free(&ck);
    }
}

/* Real transformers-made directories: import, save, export, import again: the same model. */
static void test_fixtures(void) {
    const char *src = getenv("TN_SOURCE_DIR");
    if (!src) {
        printf("TN_SOURCE_DIR not set: fixture part skipped\n");
        return;
    }
    const char *names[] = {"llama3-rope", "llama3-rope-v5", "linear-rope", "qwen2-bias", "qwen3-qknorm"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/tests/fixtures/hf-families/%s", src, names[i]);
        tn_checkpoint ck;
        CHECK_OK(tn_import_hf(p, &ck, NULL));
        CHECK(ck.tokenizer_len == 0); /* the fixtures carry no tokenizer */
        const char *h5 = tmp("fixture.h5");
        CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
        const char *out = tmp("hf-fixture");
        rm_rf(out);
        tn_export_hf_opts o;
        tn_export_hf_opts_default(&o);
        o.dtype = TN_HF_F32;
        tn_export_hf_report rep;
        tn_log_level lv = tn_log_get_level();
        tn_log_set_level(TN_LOG_QUIET); /* "no tokenizer files written" */
        CHECK_OK(tn_export_hf(h5, out, &o, &rep));
        tn_log_set_level(lv);
        CHECK(!strncmp(rep.tokenizer, "none", 4));
        snprintf(p, sizeof p, "%s/tokenizer.json", out);
        CHECK(!tn_file_exists(p));
        tn_checkpoint back;
        CHECK_OK(tn_import_hf(out, &back, NULL));
        if (back.params) {
            CHECKF(memcmp(&back.layout.cfg, &ck.layout.cfg, sizeof ck.layout.cfg) == 0, "%s: config", names[i]);
            CHECKF(back.layout.numel == ck.layout.numel &&
                       memcmp(back.params, ck.params, ck.layout.numel * sizeof(float)) == 0,
                   "%s: parameters", names[i]);
            printf("fixture %-16s import -> export f32 (%s) -> import: config and parameters identical\n", names[i],
                   rep.arch);
            tn_ckpt_free(&back);
        }
        rm_rf(out);
        tn_ckpt_free(&ck);
    }
}

/* ---- tokenizers ----------------------------------------------------------------------------------- */

#define SEP "\n__ggml_vocab_test__\n"

/* Write t as tokenizer files into a fresh directory and load that directory back. */
static int via_hf_json(const tn_tokenizer *t, const char *sub, tn_tokenizer **back) {
    char *tj, *cj;
    *back = NULL;
    TN_CHECK(tn_tokenizer_to_hf_json(t, 2048, &tj, &cj));
    const char *d = tmp(sub);
    rm_rf(d);
    mkdir(d, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    int rc = tn_write_file_atomic(p, tj, strlen(tj));
    snprintf(p, sizeof p, "%s/tokenizer_config.json", d);
    if (rc == 0) rc = tn_write_file_atomic(p, cj, strlen(cj));
    free(tj);
    free(cj);
    if (rc == 0) rc = tn_tokenizer_load(d, back);
    rm_rf(d);
    return rc;
}

static int same_ids(const tn_tokenizer *a, const tn_tokenizer *b, const char *text, size_t len, int bos) {
    tn_tokens x = {0}, y = {0};
    int ok = tn_tokenizer_encode(a, text, len, bos, &x) == 0 && tn_tokenizer_encode(b, text, len, bos, &y) == 0 &&
             x.n == y.n && (x.n == 0 || memcmp(x.ids, y.ids, x.n * sizeof *x.ids) == 0);
    tn_tokens_free(&x);
    tn_tokens_free(&y);
    return ok;
}

/* Ids on llama.cpp's test strings (when given) and on every WikiText-2 test line; 0 failures expected. */
static int compare(const tn_tokenizer *a, const tn_tokenizer *b, const char *name, const char *inp_path) {
    int fails = 0, cases = 0, lines = 0;
    char *inp;
    size_t n;
    if (inp_path && tn_read_file(inp_path, &inp, &n) == 0) {
        for (char *p = inp, *sep; (sep = strstr(p, SEP)); p = sep + strlen(SEP), cases++) {
            int ok = same_ids(a, b, p, (size_t)(sep - p), 0);
            if (!ok && fails < 3) fprintf(stderr, "%s: case %d \"%.*s\" differs\n", name, cases, (int)(sep - p > 60 ? 60 : sep - p), p);
            fails += !ok;
        }
        free(inp);
    }
    /* runs of spaces (SentencePiece's whitespace pieces share one score) and of newlines, alone and
     * between words */
    char run[160];
    for (int k = 1; k <= 64; k++) {
        for (int w = 0; w < 2; w++) {
            size_t len = 0;
            if (w) len += (size_t)snprintf(run, sizeof run, "a");
            memset(run + len, k % 3 == 0 ? '\n' : ' ', (size_t)k);
            len += (size_t)k;
            if (w) run[len++] = 'b';
            int ok = same_ids(a, b, run, len, 0);
            if (!ok && fails < 3) fprintf(stderr, "%s: a run of %d %s differs\n", name, k, k % 3 ? "spaces" : "newlines");
            fails += !ok;
            cases++;
        }
    }
    const char *wpath = tn_test_shared("wikitext2/wiki.test.raw");
    char *wiki;
    size_t size;
    if (wpath && tn_read_file(wpath, &wiki, &size) == 0) {
        for (size_t i = 0; i < size; lines++) {
            const char *nl = memchr(wiki + i, '\n', size - i);
            size_t len = nl ? (size_t)(nl - (wiki + i)) : size - i;
            int ok = same_ids(a, b, wiki + i, len, 1);
            if (!ok && fails < 3) fprintf(stderr, "%s: WikiText line %d \"%.*s\" differs\n", name, lines, (int)(len > 60 ? 60 : len), wiki + i);
            fails += !ok;
            i += len + 1;
        }
        free(wiki);
    }
    printf("tokenizer %-16s tokenizer.json back: %d test strings, %d WikiText lines, %d differ\n", name, cases, lines, fails);
    return fails;
}

static void check_tokenizer(const char *name, const char *path, const char *inp_path) {
    tn_tokenizer *a, *b;
    if (tn_tokenizer_load(path, &a) != 0) {
        CHECKF(0, "%s: %s", name, tn_errmsg());
        return;
    }
    int rc = via_hf_json(a, "tok", &b);
    CHECKF(rc == 0, "%s: %s", name, tn_errmsg());
    if (rc == 0) {
        CHECKF(tn_tokenizer_bos_id(a) == tn_tokenizer_bos_id(b) && tn_tokenizer_eos_id(a) == tn_tokenizer_eos_id(b) &&
                   tn_tokenizer_uses_bos(a) == tn_tokenizer_uses_bos(b) &&
                   tn_tokenizer_vocab_size(a) == tn_tokenizer_vocab_size(b),
               "%s: bos %lld/%lld eos %lld/%lld adds bos %d/%d", name, (long long)tn_tokenizer_bos_id(a),
               (long long)tn_tokenizer_bos_id(b), (long long)tn_tokenizer_eos_id(a), (long long)tn_tokenizer_eos_id(b),
               tn_tokenizer_uses_bos(a), tn_tokenizer_uses_bos(b));
        const char *ta = tn_tokenizer_chat_template(a), *tb = tn_tokenizer_chat_template(b);
        CHECKF((!ta && !tb) || (ta && tb && !strcmp(ta, tb)), "%s: chat template", name);
        CHECKF(compare(a, b, name, inp_path) == 0, "%s: ids differ", name);
        tn_tokenizer_free(b);
    }
    tn_tokenizer_free(a);
}

static void test_tokenizers(void) {
    static const char text[] = "Hello, w\xC3\xB6rld!\n\t 123  x  \xE4\xB8\xAD\xE6\x96\x87 don't";
    tn_tokenizer *a, *b;
    CHECK_OK(tn_tokenizer_load("bytes", &a));
    CHECK_OK(via_hf_json(a, "bytes", &b));
    if (b) {
        CHECK(same_ids(a, b, text, sizeof text - 1, 1) && tn_tokenizer_uses_bos(b) && tn_tokenizer_bos_id(b) == 256);
        tn_tokenizer_free(b);
    }
    tn_tokenizer_free(a);

    const char *vocabs[] = {"llama-spm", "phi-3", "gpt-2", "mpt", "starcoder", "refact", "llama-bpe", "qwen2", "qwen35"};
    const char *vd = tn_test_shared("llama-cpp-vocab");
    char vdir_buf[512];
    const char *vdir = NULL;
    if (vd) vdir = strcpy(vdir_buf, vd); /* tn_test_shared's buffer is reused */
    for (size_t i = 0; vdir && i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char p[600], q[620];
        snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf", vdir, vocabs[i]);
        snprintf(q, sizeof q, "%s.inp", p);
        tn_log_level lv = tn_log_get_level();
        if (!strcmp(vocabs[i], "phi-3")) tn_log_set_level(TN_LOG_QUIET); /* its user-defined "</s>": warned */
        check_tokenizer(vocabs[i], p, q);
        tn_log_set_level(lv);
    }
    const char *sp = tn_test_shared("llama-tokenizer/tokenizer.model");
    char spm_buf[512];
    const char *spm = sp ? strcpy(spm_buf, sp) : NULL;
    if (spm && vdir) {
        char q[600];
        snprintf(q, sizeof q, "%s/ggml-vocab-llama-spm.gguf.inp", vdir);
        check_tokenizer("tokenizer.model", spm, q);
    }
    const char *sm = tn_test_shared("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    char smol[512];
    if (sm) check_tokenizer("SmolLM2", strcpy(smol, sm), NULL);

    /* Falcon's pre-tokenizer: refused by name */
    if (vdir) {
        char p[600];
        snprintf(p, sizeof p, "%s/ggml-vocab-falcon.gguf", vdir);
        if (tn_tokenizer_load(p, &a) == 0) {
            char *tj, *cj;
            CHECK(tn_tokenizer_to_hf_json(a, 0, &tj, &cj) != 0 && strstr(tn_errmsg(), "falcon"));
            tn_tokenizer_free(a);
        }
    }
}

/* ---- bfloat16 rounding ------------------------------------------------------------------------------- */

static float bits(uint32_t x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static void test_bf16(void) {
    CHECK(tn_f32_to_bf16(1.0f) == 0x3F80 && tn_f32_to_bf16(-2.0f) == 0xC000 && tn_f32_to_bf16(0.0f) == 0);
    CHECK(tn_f32_to_bf16(bits(0x3F808000u)) == 0x3F80); /* tie, even below */
    CHECK(tn_f32_to_bf16(bits(0x3F818000u)) == 0x3F82); /* tie, even above */
    CHECK(tn_f32_to_bf16(bits(0x3F808001u)) == 0x3F81); /* just over half */
    CHECK(tn_f32_to_bf16(bits(0x3F807FFFu)) == 0x3F80);
    CHECK(tn_f32_to_bf16(INFINITY) == 0x7F80 && tn_f32_to_bf16(-INFINITY) == 0xFF80);
    CHECK(tn_f32_to_bf16(bits(0x7F7FFFFFu)) == 0x7F80); /* FLT_MAX rounds to +inf */
    uint16_t n = tn_f32_to_bf16(bits(0x7F800001u));     /* a NaN whose payload is in the low half */
    CHECK((n & 0x7F80) == 0x7F80 && (n & 0x7F) != 0);
    CHECK(tn_f32_to_bf16(bits(0x00010000u)) == 0x0001); /* subnormals keep their top bits */
}

/* ---- bad input ------------------------------------------------------------------------------------------- */

static void test_errors(void) {
    tn_hf_dtype d;
    CHECK(tn_export_hf_parse_dtype("f16", &d) != 0 && strstr(tn_errmsg(), "f32 or bf16"));
    CHECK(tn_export_hf_parse_dtype("f32", &d) == 0 && d == TN_HF_F32);

    tn_llama_config cfg = test_config(0);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 61));
    const char *h5 = tmp("err.h5"), *out = tmp("err-out");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_export_hf_opts o;
    tn_export_hf_opts_default(&o);
    tn_export_hf_report rep;

    /* an existing non-empty directory: refused and untouched */
    mkdir(out, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/mine.txt", out);
    CHECK_OK(tn_write_file_atomic(p, "keep", 4));
    CHECK(tn_export_hf(h5, out, &o, &rep) != 0 && strstr(tn_errmsg(), "not empty"));
    char *kept = slurp(p);
    CHECK(kept && !strcmp(kept, "keep") && no_leftovers());
    free(kept);
    rm_rf(out);
    /* an existing empty directory is replaced */
    mkdir(out, 0755);
    CHECK_OK(tn_export_hf(h5, out, &o, &rep));
    snprintf(p, sizeof p, "%s/config.json", out);
    CHECK(tn_file_exists(p) && no_leftovers());
    rm_rf(out);
    /* a file in the way */
    CHECK_OK(tn_write_file_atomic(out, "x", 1));
    CHECK(tn_export_hf(h5, out, &o, &rep) != 0 && strstr(tn_errmsg(), "not a directory"));
    unlink(out);

    /* q/k norms and biases together: no transformers class */
    tn_llama_config bad = test_config(0);
    bad.qk_norm = 1;
    bad.qkv_bias = 1;
    tn_checkpoint b;
    CHECK_OK(tn_test_random_ckpt(&b, &bad, 62));
    CHECK_OK(tn_ckpt_save(h5, &b, NULL, 0));
    CHECK(tn_export_hf(h5, out, &o, &rep) != 0 && strstr(tn_errmsg(), "no transformers class"));
    CHECK(!tn_file_exists(out) && no_leftovers());
    tn_ckpt_free(&b);
    /* an explicit head_dim with biases (Qwen2ForCausalLM ignores head_dim) */
    bad.qk_norm = 0;
    bad.head_dim = 32;
    CHECK_OK(tn_test_random_ckpt(&b, &bad, 63));
    CHECK_OK(tn_ckpt_save(h5, &b, NULL, 0));
    CHECK(tn_export_hf(h5, out, &o, &rep) != 0 && strstr(tn_errmsg(), "head_dim"));
    CHECK(!tn_file_exists(out) && no_leftovers());
    tn_ckpt_free(&b);

    /* a tokenizer larger than the model's vocabulary */
    tn_llama_config small = test_config(0);
    small.vocab_size = 200;
    small.bos_id = small.eos_id = -1;
    CHECK_OK(tn_test_random_ckpt(&b, &small, 64));
    CHECK_OK(tn_ckpt_save(h5, &b, NULL, 0));
    CHECK(tn_export_hf(h5, out, &o, &rep) != 0 && strstr(tn_errmsg(), "more than the model"));
    CHECK(!tn_file_exists(out) && no_leftovers());
    tn_ckpt_free(&b);

    /* no checkpoint; --quantize of a bad name */
    CHECK(tn_export_hf(tmp("missing.h5"), out, &o, &rep) != 0 && !tn_file_exists(out) && no_leftovers());
    o.quantize = "prime7";
    CHECK(tn_export_hf(h5, out, &o, &rep) != 0 && !tn_file_exists(out) && no_leftovers());
    /* an output whose parent does not exist */
    o.quantize = NULL;
    CHECK(tn_export_hf(h5, tmp("no/such/dir"), &o, &rep) != 0);
    tn_ckpt_free(&ck);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bf16();
    test_dense();
    test_ste();
    test_primal();
    test_families();
    test_fixtures();
    test_errors();
    test_tokenizers();
    rm_rf(dir);
    return tn_test_finish();
}
