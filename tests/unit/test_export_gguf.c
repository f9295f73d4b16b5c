/* trinity export --format gguf (export/export_gguf.c), read back with trinity's own GGUF reader and
 * dequantizers:
 *   dense, --dtype f32: re-imported (tn_import_gguf) parameters bit-identical, logits equal to 1e-6; tied
 *     embeddings write no output.weight; default F16 values are the fp16 roundings
 *   STE ternary per row: TQ2_0 / TQ1_0 where rows are 256 long, else Q4_0 (or Q8_0 everywhere): every
 *     dequantized value is fp16(scale) · code with the code the snapped index exactly, |fp16(s) - s| <= 2^-11 |s|;
 *     Q/K rows in llama.cpp's interleaved order; re-import gives those values
 *   PRIMAL: prime7 (integer multiples of 1/30) as Q8_0 with d = fp16(s / 30) and exact codes; primal15 as F16
 *     (each value rounded, a warning), an error under --strict that leaves no file
 *   qwen2 (q/k/v biases), qwen3 (q/k norms, explicit head dim): architecture and keys, F32 biases and norms,
 *     Q/K rows not permuted, re-import equal
 *   RoPE llama3 (rope_freqs.weight) and linear survive export + import
 *   tokenizers: every llama.cpp vocabulary in ../shared/data/llama-cpp-vocab that trinity reads, written as
 *     tokenizer.ggml.* keys and read back, has the same fingerprint; the bytes tokenizer as byte-level BPE
 *     encodes like the original; padding to the model's vocabulary; a stored GGUF vocabulary copied
 *   bad input: one clear error, no output file. */
#include "tn_test.h"
#include "tiny_ckpt.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/gguf.h"
#include "core/h5.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "export/export_gguf.h"
#include "export/gguf_dequant.h"
#include "export/import.h"
#include "model/llama.h"
#include "model/params.h"
#include "model/rope.h"
#include "optim/primal.h"
#include "quant/snap.h"
#include "train/checkpoint.h"
#include "train/quant_spec.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NT 24

static char dir[] = "/tmp/tn_test_export_ggufXXXXXX";
static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static tn_llama_config test_config(int tied) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 64;       /* rows of 64: Q4_0 */
    c.n_layers = 2;
    c.n_heads = 4;    /* head dim 16 */
    c.n_kv_heads = 2;
    c.ffn_dim = 256;  /* down_proj rows of 256: TQ2_0 */
    c.vocab_size = 258;
    c.max_seq_len = 64;
    c.rope_theta = 10000.0f;
    c.tied_embeddings = tied;
    c.bos_id = 256;
    c.eos_id = 257;
    return c;
}


static int32_t tokens[NT];

static float *logits(const tn_llama_layout *l, const float *params) {
    tn_llama *m;
    if (tn_llama_create(&m, l, 1, NT, NULL) != 0) return NULL;
    float loss, *out = NULL;
    if (tn_llama_forward(m, params, tokens, NULL, NULL, &loss, NULL) == 0) {
        size_t n = (size_t)NT * (size_t)l->cfg.vocab_size;
        out = malloc(n * sizeof *out);
        memcpy(out, tn_llama_logits(m), n * sizeof *out);
    }
    tn_llama_free(m);
    return out;
}

/* A GGUF tensor dequantized (malloc'd), rows in file order. */
static float *read_tensor(const tn_gguf *g, const char *name, uint32_t *type) {
    const tn_gguf_tensor *t = tn_gguf_find_tensor(g, name);
    if (!t) {
        fprintf(stderr, "no tensor %s\n", name);
        return NULL;
    }
    const uint8_t *data;
    size_t nb;
    float *out = malloc((size_t)t->n_elements * sizeof *out);
    if (tn_gguf_tensor_data(t, &data, &nb) != 0 || tn_ggml_dequantize(t->type, data, nb, out, (size_t)t->n_elements) != 0) {
        fprintf(stderr, "%s: %s\n", name, tn_errmsg());
        free(out);
        return NULL;
    }
    if (type) *type = t->type;
    return out;
}

/* GGUF name of a layer tensor. */
static const char *gname(int layer, const char *what) {
    static char b[4][64];
    static int k = 0;
    char *s = b[k++ % 4];
    snprintf(s, 64, "blk.%d.%s", layer, what);
    return s;
}

static const char *const mats[7] = {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                                    "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};

/* Source row of file row r for Q (kind 0) / K (kind 1) under the llama architecture. */
static int64_t src_row(int kind, int64_t r, int hd) { return kind <= 1 ? tn_export_gguf_qk_source_row(r, hd) : r; }

static int no_leftovers(void) {
    DIR *d = opendir(dir);
    int ok = 1;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) ok = 0;
    if (d) closedir(d);
    return ok;
}

/* ---- dense ------------------------------------------------------------------------------------------ */

static void test_dense(int tied) {
    tn_llama_config cfg = test_config(tied);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 11 + (uint64_t)tied));
    const char *h5 = tmp("dense.h5"), *g32 = tmp("dense32.gguf"), *g16 = tmp("dense16.gguf");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    tn_export_gguf_report rep;
    o.dense = TN_EXPORT_DENSE_F32;
    CHECK_OK(tn_export_gguf(h5, g32, &o, &rep));
    CHECK(strcmp(rep.arch, "llama") == 0 && rep.n_tensors == ck.layout.n_tensors && rep.n_by_type[TN_GGML_F32] == rep.n_tensors);
    tn_gguf g;
    CHECK_OK(tn_gguf_open(g32, &g));
    CHECK((tn_gguf_find_tensor(&g, "output.weight") == NULL) == tied);
    const char *s;
    size_t n;
    CHECK(tn_gguf_get_str(&g, "general.architecture", &s, &n) == 0 && n == 5 && !memcmp(s, "llama", 5));
    uint32_t v;
    CHECK(tn_gguf_get_u32(&g, "llama.rope.dimension_count", &v) == 0 && v == 16);
    CHECK(tn_gguf_get_u32(&g, "llama.attention.head_count_kv", &v) == 0 && v == 2);
    tn_gguf_close(&g);

    /* re-import: the same parameters, bit for bit (F32 and a permutation and its inverse), same logits */
    tn_checkpoint back;
    CHECK_OK(tn_import_gguf(g32, &back, NULL));
    if (back.params) {
        CHECK(back.layout.numel == ck.layout.numel && back.layout.cfg.tied_embeddings == tied);
        CHECK(memcmp(back.params, ck.params, ck.layout.numel * sizeof(float)) == 0);
        float *a = logits(&ck.layout, ck.params), *b = logits(&back.layout, back.params);
        CHECK(a && b);
        if (a && b) {
            double e = tn_test_rel_err(b, a, (size_t)NT * (size_t)cfg.vocab_size);
            CHECKF(e <= 1e-6, "dense round trip logits: %g", e);
            printf("dense (tied %d) export f32 -> import: params identical, logits rel err %g\n", tied, e);
        }
        free(a), free(b);
        CHECK(back.tokenizer != NULL);
        tn_ckpt_free(&back);
    }

    /* default: matrices F16 (fp16 roundings, Q/K permuted), norms F32 */
    o.dense = TN_EXPORT_DENSE_AUTO;
    CHECK_OK(tn_export_gguf(h5, g16, &o, &rep));
    CHECK_OK(tn_gguf_open(g16, &g));
    const int hd = tn_llama_head_dim(&cfg);
    int ok = 1;
    for (int L = 0; L < cfg.n_layers; L++)
        for (int k = 0; k < 7; k++) {
            uint32_t type;
            float *x = read_tensor(&g, gname(L, mats[k]), &type);
            const tn_tensor_info *t = &ck.layout.tensors[tn_llama_layout_index(&ck.layout, L, k)];
            if (!x || type != TN_GGML_F16) {
                ok = 0;
                free(x);
                continue;
            }
            const int64_t rows = t->shape[0], cols = t->shape[1];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++)
                    ok &= x[r * cols + c] == tn_f16_to_f32(tn_f32_to_f16(ck.params[t->offset + src_row(k, r, hd) * cols + c]));
            free(x);
        }
    uint32_t type;
    float *nw = read_tensor(&g, "blk.1.ffn_norm.weight", &type);
    const tn_tensor_info *nt = tn_llama_layout_find(&ck.layout, "model.layers.1.post_attention_layernorm.weight");
    CHECK(nw && nt && type == TN_GGML_F32 && memcmp(nw, ck.params + nt->offset, nt->numel * 4) == 0);
    free(nw);
    CHECK(ok);
    tn_gguf_close(&g);
    tn_ckpt_free(&ck);
}

/* ---- STE ternary -------------------------------------------------------------------------------------- */

static tn_quant_spec g_spec;
static int save_quant(void *ctx, hid_t group) {
    (void)ctx;
    return tn_quant_spec_save(&g_spec, group);
}

/* Every quantized matrix of the file: value == fp16(scale of its source row) * code, codes == the snapped
 * indices (ternary: idx - 1), and the re-import holds exactly those values. want256: type of the 256-long
 * rows, want64: of the 64-long ones. */
static void test_ste(uint32_t ternary_type, uint32_t want256, uint32_t want64) {
    tn_llama_config cfg = test_config(1);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 21));
    memset(&g_spec, 0, sizeof g_spec);
    CHECK_OK(tn_grid_by_name("ternary", &g_spec.grid));
    g_spec.rule = TN_SCALE_ABSMEAN;
    g_spec.per_row = 1;
    g_spec.groups = 1u << TN_GROUP_ATTN | 1u << TN_GROUP_MLP;
    const char *h5 = tmp("ste.h5"), *gg = tmp("ste.gguf");
    tn_ckpt_hook hook = {"quant", save_quant, NULL, NULL};
    CHECK_OK(tn_ckpt_save(h5, &ck, &hook, 1));
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    o.ternary_type = ternary_type;
    o.strict = 1; /* everything here is exact */
    tn_export_gguf_report rep;
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    CHECKF(rep.n_by_type[want256] >= cfg.n_layers && rep.n_by_type[want64] >= 6 * cfg.n_layers, "%s/%s: %d, %d",
           tn_ggml_type_name(want256), tn_ggml_type_name(want64), rep.n_by_type[want256], rep.n_by_type[want64]);
    CHECKF(rep.max_scale_rel_err > 0 && rep.max_scale_rel_err <= 0x1p-11, "scale rounding %g", rep.max_scale_rel_err);
    tn_gguf g;
    CHECK_OK(tn_gguf_open(gg, &g));
    tn_checkpoint back;
    CHECK_OK(tn_import_gguf(gg, &back, NULL));
    const int hd = tn_llama_head_dim(&cfg);
    int ok = 1, ok_back = 1, ok_scale = 1, n_checked = 0;
    for (int L = 0; L < cfg.n_layers; L++)
        for (int k = 0; k < 7; k++) {
            const tn_tensor_info *t = &ck.layout.tensors[tn_llama_layout_index(&ck.layout, L, k)];
            const int64_t rows = t->shape[0], cols = t->shape[1];
            uint32_t type;
            float *x = read_tensor(&g, gname(L, mats[k]), &type);
            uint8_t *idx = malloc((size_t)(rows * cols));
            float *sc = malloc((size_t)rows * sizeof *sc);
            CHECK_OK(tn_quantize_tensor(ck.params + t->offset, rows, cols, &g_spec.grid, g_spec.rule, 1, NULL, idx, sc));
            CHECKF(x && type == (cols % 256 == 0 ? want256 : want64), "%s: %s", gname(L, mats[k]), tn_ggml_type_name(type));
            for (int64_t r = 0; x && r < rows; r++) {
                const int64_t sr = src_row(k, r, hd);
                const float d = tn_f16_to_f32(tn_f32_to_f16(sc[sr]));
                ok_scale &= fabsf(d - sc[sr]) <= 0x1p-11f * fabsf(sc[sr]);
                for (int64_t c = 0; c < cols; c++) {
                    const float want = d * (float)((int)idx[sr * cols + c] - 1);
                    ok &= x[r * cols + c] == want;
                    if (back.params) ok_back &= back.params[back.layout.tensors[tn_llama_layout_index(&back.layout, L, k)].offset + sr * cols + c] == want;
                }
            }
            n_checked++;
            free(x), free(idx), free(sc);
        }
    CHECKF(ok && ok_scale && n_checked == 7 * cfg.n_layers, "%s: values are fp16(scale) x code", tn_ggml_type_name(want256));
    CHECKF(ok_back, "%s: re-import", tn_ggml_type_name(want256));
    printf("STE ternary -> %s (256-long rows) / %s (64-long rows): codes exact, scales within %.3g relative\n",
           tn_ggml_type_name(want256), tn_ggml_type_name(want64), rep.max_scale_rel_err);
    if (back.params) tn_ckpt_free(&back);
    tn_gguf_close(&g);
    tn_ckpt_free(&ck);
}

/* ---- PRIMAL ------------------------------------------------------------------------------------------- */

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

/* A PRIMAL checkpoint (attention and MLP as ghost tensors on `grid`, per-row scales on every other one). */
static void make_primal(const char *h5, const char *grid_name, tn_primal_tensor **pt_out, tn_checkpoint *ck) {
    tn_llama_config cfg = test_config(0);
    tn_checkpoint full;
    CHECK_OK(tn_test_random_ckpt(&full, &cfg, 31));
    memset(ck, 0, sizeof *ck);
    CHECK_OK(tn_llama_layout_init(&ck->layout, &cfg));
    uint8_t *ghost = calloc((size_t)ck->layout.n_tensors, 1);
    for (int i = 0; i < ck->layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck->layout.tensors[i];
        ghost[i] = t->rank == 2 && (t->group == TN_GROUP_ATTN || t->group == TN_GROUP_MLP);
    }
    CHECK_OK(tn_llama_layout_set_external(&ck->layout, ghost));
    ck->params = tn_alloc(ck->layout.numel, sizeof(float));
    for (int i = 0; i < ck->layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck->layout.tensors[i];
        if (!t->external) memcpy(ck->params + t->offset, full.params + full.layout.tensors[i].offset, t->numel * 4);
    }
    ck->tokenizer = full.tokenizer, ck->tokenizer_len = full.tokenizer_len;
    full.tokenizer = NULL;
    memcpy(ck->tokenizer_format, full.tokenizer_format, sizeof ck->tokenizer_format);
    static tn_grid grid; /* the tensors borrow it until free_primal */
    CHECK_OK(tn_grid_by_name(grid_name, &grid));
    tn_primal_opts po;
    tn_primal_opts_default(&po);
    po.init_std = 0.3;
    tn_primal_tensor *pt = calloc((size_t)ck->layout.n_tensors, sizeof *pt);
    tn_rng r;
    tn_rng_seed(&r, 6);
    for (int i = 0; i < ck->layout.n_tensors; i++) {
        if (!ghost[i]) continue;
        po.scale_per_row = i % 2;
        const tn_tensor_info *t = &ck->layout.tensors[i];
        CHECK_OK(tn_primal_tensor_init(&pt[i], t->shape[0], t->shape[1], &grid, &po, NULL, &r));
        for (int64_t k = 0; k < pt[i].n_scales; k++) pt[i].scale[k] = 0.05f + 0.01f * (float)(k % 5);
    }
    primal_save_ctx pc = {pt, &ck->layout, ghost};
    tn_ckpt_hook hook = {"primal", save_primal, NULL, &pc};
    CHECK_OK(tn_ckpt_save(h5, ck, &hook, 1));
    free(ghost);
    tn_ckpt_free(&full);
    *pt_out = pt;
}

static void free_primal(tn_primal_tensor *pt, tn_checkpoint *ck) {
    for (int i = 0; i < ck->layout.n_tensors; i++)
        if (ck->layout.tensors[i].external) tn_primal_tensor_free(&pt[i]);
    free(pt);
    tn_ckpt_free(ck);
}

/* prime7 = {0, ±1/2, ±1/3, ±1/5} = {0, ±15, ±10, ±6} / 30: Q8_0 with d = fp16(s / 30), codes exact. */
static void test_primal_prime7(void) {
    const char *h5 = tmp("primal7.h5"), *gg = tmp("primal7.gguf");
    tn_primal_tensor *pt;
    tn_checkpoint ck;
    make_primal(h5, "prime7", &pt, &ck);
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    o.strict = 1;
    tn_export_gguf_report rep;
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    CHECKF(rep.n_by_type[TN_GGML_Q8_0] == 7 * ck.layout.cfg.n_layers && rep.n_fallback == 0, "prime7: %d Q8_0",
           rep.n_by_type[TN_GGML_Q8_0]);
    tn_gguf g;
    CHECK_OK(tn_gguf_open(gg, &g));
    const int hd = tn_llama_head_dim(&ck.layout.cfg);
    int ok = 1;
    for (int L = 0; L < ck.layout.cfg.n_layers; L++)
        for (int k = 0; k < 7; k++) {
            int ti = tn_llama_layout_index(&ck.layout, L, k);
            const tn_primal_tensor *p = &pt[ti];
            const int64_t rows = ck.layout.tensors[ti].shape[0], cols = ck.layout.tensors[ti].shape[1];
            float *x = read_tensor(&g, gname(L, mats[k]), NULL);
            for (int64_t r = 0; x && r < rows; r++) {
                const int64_t sr = src_row(k, r, hd);
                const float d = tn_f16_to_f32(tn_f32_to_f16(p->scale[p->n_scales == 1 ? 0 : sr] / 30.0f));
                for (int64_t c = 0; c < cols; c++) {
                    const float gv = p->grid->v[tn_primal_index(p, sr * cols + c)];
                    ok &= x[r * cols + c] == d * nearbyintf(30.0f * gv);
                }
            }
            ok &= x != NULL;
            free(x);
        }
    CHECK(ok);
    printf("PRIMAL prime7 -> Q8_0 (d = scale / 30): codes exact\n");
    tn_gguf_close(&g);
    free_primal(pt, &ck);
}

/* primal15 has 1/7, 1/11, 1/13: no common step within int8, so F16 with a warning; --strict refuses. */
static void test_primal_fallback(void) {
    const char *h5 = tmp("primal15.h5"), *gg = tmp("primal15.gguf");
    tn_primal_tensor *pt;
    tn_checkpoint ck;
    make_primal(h5, "primal15", &pt, &ck);
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    tn_export_gguf_report rep;
    o.strict = 1;
    CHECK(tn_export_gguf(h5, gg, &o, &rep) != 0);
    CHECKF(strstr(tn_errmsg(), "cannot be stored exactly") && strstr(tn_errmsg(), "--strict"), "%s", tn_errmsg());
    CHECK(!tn_file_exists(gg) && no_leftovers());
    o.strict = 0;
    tn_log_level lv = tn_log_get_level();
    tn_log_set_level(TN_LOG_QUIET); /* 14 warnings */
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    tn_log_set_level(lv);
    CHECK(rep.n_fallback == 7 * ck.layout.cfg.n_layers && rep.n_by_type[TN_GGML_F16] >= 7 * ck.layout.cfg.n_layers);
    tn_gguf g;
    CHECK_OK(tn_gguf_open(gg, &g));
    const int hd = tn_llama_head_dim(&ck.layout.cfg);
    int ok = 1;
    int ti = tn_llama_layout_index(&ck.layout, 1, TN_W_K);
    const tn_primal_tensor *p = &pt[ti];
    const int64_t rows = ck.layout.tensors[ti].shape[0], cols = ck.layout.tensors[ti].shape[1];
    float *x = read_tensor(&g, "blk.1.attn_k.weight", NULL);
    for (int64_t r = 0; x && r < rows; r++) {
        const int64_t sr = src_row(1, r, hd);
        const float s = p->scale[p->n_scales == 1 ? 0 : sr];
        for (int64_t c = 0; c < cols; c++)
            ok &= x[r * cols + c] == tn_f16_to_f32(tn_f32_to_f16(s * p->grid->v[tn_primal_index(p, sr * cols + c)]));
    }
    CHECK(x && ok);
    free(x);
    /* with --dtype f32 the fallback is exact, so --strict accepts it */
    o.strict = 1;
    o.dense = TN_EXPORT_DENSE_F32;
    CHECK_OK(tn_export_gguf(h5, tmp("primal15-f32.gguf"), &o, &rep));
    tn_gguf_close(&g);
    free_primal(pt, &ck);
}

/* ---- qwen2 and RoPE scaling ----------------------------------------------------------------------------- */

static void roundtrip_f32(const tn_llama_config *cfg, const char *what, const char *want_arch) {
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, cfg, 41));
    const char *h5 = tmp("rt.h5"), *gg = tmp("rt.gguf");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    o.dense = TN_EXPORT_DENSE_F32;
    tn_export_gguf_report rep;
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    CHECKF(strcmp(rep.arch, want_arch) == 0, "%s: architecture %s", what, rep.arch);
    tn_gguf g;
    CHECK_OK(tn_gguf_open(gg, &g));
    if (cfg->qkv_bias) {
        const char *s;
        size_t n;
        uint32_t v, type;
        CHECK(tn_gguf_get_str(&g, "general.architecture", &s, &n) == 0 && n == 5 && !memcmp(s, "qwen2", 5));
        CHECK(tn_gguf_get_u32(&g, "qwen2.block_count", &v) == 0 && v == (uint32_t)cfg->n_layers);
        CHECK(tn_gguf_find(&g, "llama.block_count") == NULL);
        /* biases F32 as they are; Q rows not permuted for qwen2 */
        float *b = read_tensor(&g, "blk.1.attn_k.bias", &type), *q = read_tensor(&g, "blk.0.attn_q.weight", NULL);
        const tn_tensor_info *tb = tn_llama_layout_find(&ck.layout, "model.layers.1.self_attn.k_proj.bias"),
                             *tq = tn_llama_layout_find(&ck.layout, "model.layers.0.self_attn.q_proj.weight");
        CHECK(b && tb && type == TN_GGML_F32 && memcmp(b, ck.params + tb->offset, tb->numel * 4) == 0);
        CHECK(q && tq && memcmp(q, ck.params + tq->offset, tq->numel * 4) == 0);
        free(b), free(q);
    }
    if (cfg->qk_norm) {
        uint32_t v, type;
        CHECK(tn_gguf_get_u32(&g, "qwen3.attention.key_length", &v) == 0 && v == (uint32_t)tn_llama_head_dim(cfg));
        CHECK(tn_gguf_get_u32(&g, "qwen3.rope.dimension_count", &v) == 0 && v == (uint32_t)tn_llama_head_dim(cfg));
        float *n = read_tensor(&g, "blk.1.attn_q_norm.weight", &type), *q = read_tensor(&g, "blk.1.attn_q.weight", NULL);
        const tn_tensor_info *tn = tn_llama_layout_find(&ck.layout, "model.layers.1.self_attn.q_norm.weight"),
                             *tq = tn_llama_layout_find(&ck.layout, "model.layers.1.self_attn.q_proj.weight");
        CHECK(n && tn && type == TN_GGML_F32 && tn->numel == (size_t)tn_llama_head_dim(cfg) &&
              memcmp(n, ck.params + tn->offset, tn->numel * 4) == 0);
        CHECK(q && tq && memcmp(q, ck.params + tq->offset, tq->numel * 4) == 0); /* not permuted */
        free(n), free(q);
    }
    if (cfg->rope_type == TN_ROPE_LLAMA3) CHECK(tn_gguf_find_tensor(&g, "rope_freqs.weight") != NULL);
    tn_gguf_close(&g);
    tn_checkpoint back;
    CHECK_OK(tn_import_gguf(gg, &back, NULL));
    if (back.params) {
        const tn_llama_config *c = &back.layout.cfg;
        CHECKF(c->qkv_bias == cfg->qkv_bias && c->qk_norm == cfg->qk_norm && c->head_dim == cfg->head_dim &&
                   c->rope_type == cfg->rope_type &&
                   fabsf(c->rope_factor - cfg->rope_factor) <= 1e-5f * cfg->rope_factor,
               "%s: config back: type %d factor %g", what, c->rope_type, (double)c->rope_factor);
        CHECK(back.layout.numel == ck.layout.numel && memcmp(back.params, ck.params, ck.layout.numel * 4) == 0);
        float *a = logits(&ck.layout, ck.params), *b = logits(&back.layout, back.params);
        double e = a && b ? tn_test_rel_err(b, a, (size_t)NT * (size_t)cfg->vocab_size) : 1;
        CHECKF(e <= 1e-6, "%s: logits %g", what, e);
        printf("%s: export f32 -> import: logits rel err %g\n", what, e);
        free(a), free(b);
        tn_ckpt_free(&back);
    }
    tn_ckpt_free(&ck);
}

static void test_families(void) {
    tn_llama_config c = test_config(1);
    c.qkv_bias = 1;
    roundtrip_f32(&c, "qwen2 (q/k/v biases)", "qwen2");
    c = test_config(0);
    c.qk_norm = 1;
    c.head_dim = 32; /* not dim / n_heads = 16 */
    roundtrip_f32(&c, "qwen3 (q/k norms, head dim 32)", "qwen3");
    c.qkv_bias = 1;
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &c, 42));
    CHECK_OK(tn_ckpt_save(tmp("both.h5"), &ck, NULL, 0));
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    tn_export_gguf_report rep;
    CHECK(tn_export_gguf(tmp("both.h5"), tmp("both.gguf"), &o, &rep) != 0 && strstr(tn_errmsg(), "no llama.cpp architecture"));
    tn_ckpt_free(&ck);
    c = test_config(0);
    c.rope_type = TN_ROPE_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_orig_max_pos = 32; /* short enough that this head dim has kept, smoothed and divided frequencies */
    roundtrip_f32(&c, "llama3 RoPE", "llama");
    c = test_config(0);
    c.rope_type = TN_ROPE_LINEAR;
    c.rope_factor = 4.0f;
    roundtrip_f32(&c, "linear RoPE", "llama");
}

/* ---- tokenizers ------------------------------------------------------------------------------------------ */

/* t -> GGUF keys -> tokenizer: the same definition (fingerprint). */
static int same_after_gguf(const tn_tokenizer *t, const char *what) {
    tn_gguf_writer *w = tn_gguf_writer_new();
    uint8_t *img = NULL;
    size_t len = 0;
    int rc = tn_tokenizer_to_gguf(t, tn_tokenizer_vocab_size(t), w);
    if (rc == 0) rc = tn_gguf_writer_to_memory(w, &img, &len);
    tn_gguf_writer_free(w);
    tn_gguf g;
    tn_tokenizer *b = NULL;
    if (rc == 0) rc = tn_gguf_open_buffer(img, len, &g);
    if (rc == 0) {
        rc = tn_tokenizer_from_gguf(&g, &b);
        tn_gguf_close(&g);
    }
    int same = rc == 0 && strcmp(tn_tokenizer_sha256(t), tn_tokenizer_sha256(b)) == 0;
    if (rc != 0) fprintf(stderr, "%s: %s\n", what, tn_errmsg());
    tn_tokenizer_free(b);
    free(img);
    return same;
}

static void test_tokenizers(void) {
    /* every llama.cpp vocabulary trinity reads */
    const char *vocabs[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2", "qwen35", "falcon", "refact", "starcoder", "mpt"};
    const char *vdir = tn_test_shared("llama-cpp-vocab");
    int n_same = 0, n_read = 0;
    for (size_t i = 0; vdir && i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf", vdir, vocabs[i]);
        tn_tokenizer *t;
        if (access(p, R_OK) != 0 || tn_tokenizer_load(p, &t) != 0) continue;
        n_read++;
        int same = same_after_gguf(t, vocabs[i]);
        CHECKF(same, "tokenizer %s: fingerprint changed through GGUF keys", vocabs[i]);
        n_same += same;
        tn_tokenizer_free(t);
    }
    if (vdir) printf("tokenizers: %d of %d llama.cpp vocabularies identical after GGUF export\n", n_same, n_read);
    const char *spm = tn_test_shared("llama-tokenizer/tokenizer.model");
    tn_tokenizer *t;
    if (spm && tn_tokenizer_load(spm, &t) == 0) {
        CHECK(same_after_gguf(t, "tokenizer.model"));
        tn_tokenizer_free(t);
    }

    /* bytes -> byte-level BPE without merges: encodes like the original; padded to 260 tokens */
    CHECK_OK(tn_tokenizer_load("bytes", &t));
    tn_gguf_writer *w = tn_gguf_writer_new();
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK_OK(tn_tokenizer_to_gguf(t, 260, w));
    CHECK_OK(tn_gguf_writer_to_memory(w, &img, &len));
    tn_gguf_writer_free(w);
    tn_gguf g;
    CHECK_OK(tn_gguf_open_buffer(img, len, &g));
    const tn_gguf_kv *toks;
    const char *s;
    size_t n;
    CHECK(tn_gguf_get_arr(&g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &toks) == 0 && tn_gguf_arr_len(toks) == 260);
    CHECK(tn_gguf_arr_str(toks, 'A', &s, &n) == 0 && n == 1 && s[0] == 'A');
    CHECK(tn_gguf_arr_str(toks, ' ', &s, &n) == 0 && n == 2 && !memcmp(s, "\xC4\xA0", 2)); /* U+0120 'Ġ' */
    CHECK(tn_gguf_arr_str(toks, 259, &s, &n) == 0 && n == 8 && !memcmp(s, "[PAD259]", 8));
    CHECK(tn_gguf_get_str(&g, "tokenizer.ggml.model", &s, &n) == 0 && n == 4 && !memcmp(s, "gpt2", 4));
    tn_tokenizer *b = NULL;
    CHECK_OK(tn_tokenizer_from_gguf(&g, &b));
    if (b) {
        const char text[] = "Hello, w\xC3\xB6rld!\n\t 123  x";
        tn_tokens x = {0}, y = {0};
        CHECK_OK(tn_tokenizer_encode(t, text, sizeof text - 1, 1, &x));
        CHECK_OK(tn_tokenizer_encode(b, text, sizeof text - 1, 1, &y));
        CHECK(x.n == y.n && x.n > 0 && memcmp(x.ids, y.ids, x.n * sizeof *x.ids) == 0);
        tn_tokens_free(&x), tn_tokens_free(&y);
        tn_tokenizer_free(b);
    }
    tn_gguf_close(&g);
    free(img);
    CHECK(tn_tokenizer_to_gguf(t, 100, (w = tn_gguf_writer_new())) != 0 && strstr(tn_errmsg(), "more than"));
    tn_gguf_writer_free(w);
    tn_tokenizer_free(t);
}

/* Checkpoints with a stored GGUF vocabulary (copied, padded, chat template kept), none, or a raw one. */
static void test_ckpt_tokenizers(void) {
    tn_llama_config cfg = test_config(1);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 51));
    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    tn_export_gguf_report rep;
    const char *h5 = tmp("tok.h5"), *gg = tmp("tok.gguf");
    /* a tensor-less GGUF of 200 tokens with a chat template */
    tn_gguf_writer *w = tn_gguf_writer_new();
    const char *strs[200];
    size_t lens[200];
    char buf[200][8];
    float sc[200];
    int32_t ty[200];
    for (int i = 0; i < 200; i++) {
        lens[i] = (size_t)snprintf(buf[i], 8, "t%d", i);
        strs[i] = buf[i];
        sc[i] = -(float)i;
        ty[i] = 1;
    }
    CHECK_OK(tn_gguf_writer_str(w, "tokenizer.ggml.model", "llama", 5));
    CHECK_OK(tn_gguf_writer_arr_str(w, "tokenizer.ggml.tokens", strs, lens, 200));
    CHECK_OK(tn_gguf_writer_arr(w, "tokenizer.ggml.scores", TN_GGUF_FLOAT32, sc, 200));
    CHECK_OK(tn_gguf_writer_arr(w, "tokenizer.ggml.token_type", TN_GGUF_INT32, ty, 200));
    CHECK_OK(tn_gguf_writer_str(w, "tokenizer.chat_template", "{{ messages }}", 14));
    CHECK(tn_gguf_writer_str(w, "tokenizer.chat_template", "x", 1) != 0 && strstr(tn_errmsg(), "duplicate"));
    uint8_t *img;
    size_t len;
    CHECK_OK(tn_gguf_writer_to_memory(w, &img, &len));
    tn_gguf_writer_free(w);
    tn_free(ck.tokenizer);
    ck.tokenizer = tn_alloc(len, 1);
    memcpy(ck.tokenizer, img, len);
    ck.tokenizer_len = len;
    free(img);
    snprintf(ck.tokenizer_format, sizeof ck.tokenizer_format, "gguf-vocab");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    tn_gguf g;
    CHECK_OK(tn_gguf_open(gg, &g));
    const tn_gguf_kv *a;
    const char *s;
    size_t n;
    CHECK(tn_gguf_get_arr(&g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &a) == 0 && tn_gguf_arr_len(a) == 258);
    CHECK(tn_gguf_arr_str(a, 199, &s, &n) == 0 && n == 4 && !memcmp(s, "t199", 4));
    CHECK(tn_gguf_arr_str(a, 257, &s, &n) == 0 && n == 8 && !memcmp(s, "[PAD257]", 8));
    CHECK(tn_gguf_get_arr(&g, "tokenizer.ggml.token_type", -1, &a) == 0 && tn_gguf_arr_len(a) == 258 && tn_gguf_arr_i32(a, 257) == 5);
    CHECK(tn_gguf_get_arr(&g, "tokenizer.ggml.scores", -1, &a) == 0 && tn_gguf_arr_len(a) == 258 && tn_gguf_arr_f32(a, 3) == -3.0f);
    CHECK(tn_gguf_get_str(&g, "tokenizer.chat_template", &s, &n) == 0 && n == 14);
    tn_gguf_close(&g);

    /* none: tokenizer.ggml.model = none */
    tn_free(ck.tokenizer);
    ck.tokenizer = NULL;
    ck.tokenizer_len = 0;
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_log_level lv = tn_log_get_level();
    tn_log_set_level(TN_LOG_QUIET);
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    CHECK(strcmp(rep.tokenizer, "none") == 0);
    /* --tokenizer FILE instead */
    o.tokenizer_path = "bytes";
    CHECK_OK(tn_export_gguf(h5, gg, &o, &rep));
    CHECK(strstr(rep.tokenizer, "gpt2") != NULL);
    o.tokenizer_path = NULL;
    /* a raw tokenizer trinity cannot read: a clear error, no file */
    static const char junk[] = "{\"model\": {\"type\": \"Unigram\"}}";
    ck.tokenizer = tn_alloc(sizeof junk, 1);
    memcpy(ck.tokenizer, junk, sizeof junk);
    ck.tokenizer_len = sizeof junk - 1;
    snprintf(ck.tokenizer_format, sizeof ck.tokenizer_format, "hf-tokenizer-json");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    const char *bad = tmp("tok-bad.gguf");
    CHECK(tn_export_gguf(h5, bad, &o, &rep) != 0);
    CHECKF(strstr(tn_errmsg(), "stored raw as 'hf-tokenizer-json'") && strstr(tn_errmsg(), "--tokenizer"), "%s", tn_errmsg());
    CHECK(!tn_file_exists(bad));
    tn_log_set_level(lv);
    tn_ckpt_free(&ck);
}

/* ---- TQ2_0 / TQ1_0 known answers (export/gguf_dequant.c), from ggml's layouts by hand ----------------- */

static void test_dequant_known(void) {
    uint8_t b[66];
    float y[256];
    /* TQ2_0: every qs byte 0x92 = 10 01 00 10 (bits 2n..2n+1 for n = 3..0): trits +1, -1, 0, +1 for
     * n = 0..3, i.e. values 128h + 32n + m; d = 1.0 (fp16 0x3C00) after the 64 bytes */
    memset(b, 0x92, 64);
    b[64] = 0x00, b[65] = 0x3C;
    CHECK_OK(tn_ggml_dequantize(TN_GGML_TQ2_0, b, 66, y, 256));
    static const float want2[4] = {1, -1, 0, 1};
    int ok = 1;
    for (int i = 0; i < 256; i++) ok &= y[i] == want2[(i % 128) / 32];
    CHECK(ok);
    /* TQ1_0: 171 = ceil(162 * 256 / 243) holds the trits 2, 0, 0, 0, 0 (162 = 2 * 81); 128 holds 1, 1, 1, 1,
     * 1 (121); qh 171 = digits 2, 0, 0, 0 (and the fifth 0). d = 2.0 (0x4000) after qs[48], qh[4]. */
    memset(b, 171, 32);
    memset(b + 32, 128, 16);
    memset(b + 48, 171, 4);
    b[52] = 0x00, b[53] = 0x40;
    CHECK_OK(tn_ggml_dequantize(TN_GGML_TQ1_0, b, 54, y, 256));
    ok = 1;
    for (int i = 0; i < 160; i++) ok &= y[i] == (i / 32 == 0 ? 2.0f : -2.0f); /* value m + 32n: trit n */
    for (int i = 160; i < 240; i++) ok &= y[i] == 0.0f;
    for (int i = 240; i < 256; i++) ok &= y[i] == ((i - 240) / 4 == 0 ? 2.0f : -2.0f); /* 240 + j + 4n: digit n */
    CHECK(ok);
    CHECK(tn_ggml_dequantize(TN_GGML_TQ1_0, b, 53, y, 256) != 0 && tn_ggml_dequantize(TN_GGML_TQ2_0, b, 66, y, 255) != 0);
}

/* ---- the writer and bad input ------------------------------------------------------------------------------ */

static void test_writer_and_errors(void) {
    tn_gguf_writer *w = tn_gguf_writer_new();
    uint64_t ne[2] = {48, 2};
    uint8_t *d = malloc(100);
    CHECK(tn_gguf_writer_tensor(w, "x", 2, ne, TN_GGML_Q4_0, d, 100, 1) != 0 && strstr(tn_errmsg(), "multiple of"));
    ne[0] = 64;
    CHECK(tn_gguf_writer_tensor(w, "x", 2, ne, TN_GGML_Q4_0, malloc(10), 10, 1) != 0 && strstr(tn_errmsg(), "bytes"));
    static uint8_t blocks[4 * 18];
    CHECK_OK(tn_gguf_writer_tensor(w, "x", 2, ne, TN_GGML_Q4_0, blocks, sizeof blocks, 0));
    CHECK(tn_gguf_writer_tensor(w, "x", 2, ne, TN_GGML_Q4_0, blocks, sizeof blocks, 0) != 0 && strstr(tn_errmsg(), "duplicate"));
    CHECK(tn_gguf_writer_tensor(w, "a-name-that-is-far-too-long-for-ggml-which-allows-63-bytes-at-most", 2, ne,
                                TN_GGML_Q4_0, blocks, sizeof blocks, 0) != 0);
    CHECK(tn_gguf_writer_tensor(w, "y", 2, ne, 77, blocks, sizeof blocks, 0) != 0 && strstr(tn_errmsg(), "unknown ggml type"));
    CHECK(tn_gguf_writer_u32(w, "", 1) != 0);
    CHECK_OK(tn_gguf_writer_u32(w, "a.b", 7));
    float one = 1.0f;
    ne[0] = 1, ne[1] = 1;
    CHECK_OK(tn_gguf_writer_tensor(w, "z", 1, ne, TN_GGML_F32, &one, 4, 0));
    CHECK(tn_gguf_writer_write(w, "/nonexistent-dir/x.gguf") != 0 && strstr(tn_errmsg(), "/nonexistent-dir/x.gguf"));
    CHECK_OK(tn_gguf_writer_write(w, tmp("w.gguf")));
    tn_gguf_writer_free(w);
    tn_gguf g;
    CHECK_OK(tn_gguf_open(tmp("w.gguf"), &g));
    uint32_t v;
    CHECK(g.n_tensors == 2 && tn_gguf_get_u32(&g, "a.b", &v) == 0 && v == 7);
    CHECK(g.tensors[1].offset % 32 == 0 && g.tensors[1].data && memcmp(g.tensors[1].data, &one, 4) == 0);
    tn_gguf_close(&g);

    tn_export_gguf_opts o;
    tn_export_gguf_opts_default(&o);
    tn_export_gguf_report rep;
    const char *out = tmp("err.gguf");
    CHECK(tn_export_gguf("/nonexistent.h5", out, &o, &rep) != 0);
    CHECK(tn_export_gguf("/etc/hostname", out, &o, &rep) != 0);
    o.quantize = "ternary";
    CHECK(tn_export_gguf(tmp("ste.h5"), out, &o, &rep) != 0 && strstr(tn_errmsg(), "already quantized"));
    o.quantize = NULL;
    o.ternary_type = TN_GGML_Q4_K;
    CHECK(tn_export_gguf(tmp("dense.h5"), out, &o, &rep) != 0);
    o.ternary_type = TN_GGML_TQ2_0;
    CHECK(tn_export_gguf(tmp("dense.h5"), "/nonexistent-dir/x.gguf", &o, &rep) != 0);
    CHECK(!tn_file_exists(out) && no_leftovers());
    /* a value beyond fp16's range: F16 refuses with a hint, F32 takes it */
    tn_llama_config cfg = test_config(1);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 61));
    ck.params[ck.layout.tensors[tn_llama_layout_index(&ck.layout, 0, TN_W_UP)].offset + 5] = 1e5f;
    CHECK_OK(tn_ckpt_save(tmp("big.h5"), &ck, NULL, 0));
    CHECK(tn_export_gguf(tmp("big.h5"), out, &o, &rep) != 0 && strstr(tn_errmsg(), "--dtype f32"));
    CHECK(!tn_file_exists(out));
    o.dense = TN_EXPORT_DENSE_F32;
    CHECK_OK(tn_export_gguf(tmp("big.h5"), out, &o, &rep));
    tn_ckpt_free(&ck);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    tn_rng r;
    tn_rng_seed(&r, 3);
    for (int i = 0; i < NT; i++) tokens[i] = (int32_t)tn_rng_below(&r, 258);
    test_dequant_known();
    test_dense(0);
    test_dense(1);
    test_ste(TN_GGML_TQ2_0, TN_GGML_TQ2_0, TN_GGML_Q4_0);
    test_ste(TN_GGML_TQ1_0, TN_GGML_TQ1_0, TN_GGML_Q4_0);
    test_ste(TN_GGML_Q8_0, TN_GGML_Q8_0, TN_GGML_Q8_0);
    test_ste(TN_GGML_Q4_0, TN_GGML_Q4_0, TN_GGML_Q4_0);
    test_primal_prime7();
    test_primal_fallback();
    test_families();
    test_tokenizers();
    test_ckpt_tokenizers();
    test_writer_and_errors();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
