/* GGUF import (llama, qwen2 and qwen3 architectures). Metadata keys and tensor names as llama.cpp writes them
 * (gguf-py/gguf/constants.py: LLM_KV_*, MODEL_TENSOR names for MODEL_ARCH.LLAMA). */
#include "core/error.h"
#include "core/gguf.h"
#include "export/gguf_dequant.h"
#include "export/import_internal.h"
#include "model/rope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int str_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && memcmp(s, lit, n) == 0; }

/* Optional u32 key: default when absent, error when present but wrong. */
static int opt_u32(const tn_gguf *g, const char *key, uint32_t def, uint32_t *out) {
    if (!tn_gguf_find(g, key)) {
        *out = def;
        return 0;
    }
    return tn_gguf_get_u32(g, key, out);
}

static int opt_f32(const tn_gguf *g, const char *key, float def, float *out) {
    if (!tn_gguf_find(g, key)) {
        *out = def;
        return 0;
    }
    return tn_gguf_get_f32(g, key, out);
}

/* The architecture's own metadata keys: "<arch>.<suffix>" (llama.embedding_length, qwen2.embedding_length).
 * Returns buf. */
static const char *akey(char buf[96], const char *arch, const char *suffix) {
    snprintf(buf, 96, "%s.%s", arch, suffix);
    return buf;
}

/* Architectures read: llama (Q/K rows permuted by the converter), qwen2 (q/k/v biases), qwen3 (per-head q/k
 * norms, attention.key_length as the head dimension); the qwen rows are as in HF. */
typedef struct {
    char name[16];
    int permute_qk;
} gguf_arch;

static int as_int(uint32_t v, const char *key, int *out) {
    if (v > (1u << 30)) return tn_err("gguf: %s = %u is out of range", key, v);
    *out = (int)v;
    return 0;
}

/* RoPE scaling: llama.rope.scaling.type "linear" with llama.rope.scaling.factor, or Llama 3.1's rule as
 * llama.cpp's converter stores it, a tensor rope_freqs.weight of per-frequency divisors (no metadata), from
 * which the llama3 parameters are recovered (model/rope.h). Other types (yarn, ...) are refused. */
static int read_rope_scaling(const tn_gguf *g, const char *arch, tn_llama_config *c) {
    const int hd = tn_llama_head_dim(c);
    char kb[96];
    if (tn_gguf_find(g, akey(kb, arch, "rope.scaling.type"))) {
        const char *s;
        size_t n;
        TN_CHECK(tn_gguf_get_str(g, kb, &s, &n));
        if (str_is(s, n, "linear")) {
            c->rope_type = TN_ROPE_LINEAR;
            TN_CHECK(tn_gguf_get_f32(g, akey(kb, arch, "rope.scaling.factor"), &c->rope_factor));
        } else if (!str_is(s, n, "none")) {
            return tn_err("gguf: RoPE scaling '%.*s' is not supported (none, linear, or llama3 as rope_freqs.weight)",
                          (int)(n > 32 ? 32 : n), s);
        }
    }
    const tn_gguf_tensor *rf = tn_gguf_find_tensor(g, "rope_freqs.weight");
    if (!rf) return tn_llama_config_validate(c);
    if (c->rope_type != TN_ROPE_DEFAULT) return tn_err("gguf: rope_freqs.weight together with RoPE scaling type linear");
    if (rf->type != 0 /* F32 */ || rf->n_dims != 1 || rf->ne[0] != (uint64_t)(hd / 2))
        return tn_err("gguf: rope_freqs.weight must be F32 of [%d] (type %s, %u dims)", hd / 2, tn_ggml_type_name(rf->type),
                      rf->n_dims);
    const uint8_t *data;
    size_t nb;
    TN_CHECK(tn_gguf_tensor_data(rf, &data, &nb));
    float f[512];
    if (hd / 2 > 512 || nb != (size_t)(hd / 2) * sizeof(float)) return tn_err("gguf: rope_freqs.weight has %zu bytes", nb);
    memcpy(f, data, nb);
    if (tn_rope_fit_llama3(c, hd, f) != 0) return tn_err_prefix("gguf");
    return tn_llama_config_validate(c);
}

static int read_config(const tn_gguf *g, tn_llama_config *c, gguf_arch *ga) {
    const char *arch;
    size_t al;
    TN_CHECK(tn_gguf_get_str(g, "general.architecture", &arch, &al));
    const int qwen2 = str_is(arch, al, "qwen2"), qwen3 = str_is(arch, al, "qwen3");
    if (str_is(arch, al, "llama") || qwen2 || qwen3) {
        memcpy(ga->name, arch, al);
        ga->name[al] = '\0';
        ga->permute_qk = str_is(arch, al, "llama");
    } else {
        return tn_err("gguf: architecture '%.*s' is not supported (llama, qwen2, qwen3)", (int)(al > 64 ? 64 : al), arch);
    }
    const char *A = ga->name;
    char kb[96];
    tn_llama_config_defaults(c);
    c->qkv_bias = qwen2;
    c->qk_norm = qwen3;
    uint32_t v;
    TN_CHECK(tn_gguf_get_u32(g, akey(kb, A, "embedding_length"), &v)); TN_CHECK(as_int(v, kb, &c->dim));
    TN_CHECK(tn_gguf_get_u32(g, akey(kb, A, "block_count"), &v)); TN_CHECK(as_int(v, kb, &c->n_layers));
    TN_CHECK(tn_gguf_get_u32(g, akey(kb, A, "attention.head_count"), &v)); TN_CHECK(as_int(v, kb, &c->n_heads));
    TN_CHECK(opt_u32(g, akey(kb, A, "attention.head_count_kv"), (uint32_t)c->n_heads, &v));
    TN_CHECK(as_int(v, kb, &c->n_kv_heads));
    TN_CHECK(tn_gguf_get_u32(g, akey(kb, A, "feed_forward_length"), &v)); TN_CHECK(as_int(v, kb, &c->ffn_dim));
    TN_CHECK(opt_u32(g, akey(kb, A, "context_length"), 2048, &v)); TN_CHECK(as_int(v, kb, &c->max_seq_len));
    TN_CHECK(opt_f32(g, akey(kb, A, "rope.freq_base"), 10000.0f, &c->rope_theta));
    TN_CHECK(opt_f32(g, akey(kb, A, "attention.layer_norm_rms_epsilon"), 1e-5f, &c->norm_eps));

    /* vocabulary size: <arch>.vocab_size, else the token list, else token_embd's rows */
    const tn_gguf_kv *toks = tn_gguf_find(g, "tokenizer.ggml.tokens");
    const tn_gguf_tensor *emb = tn_gguf_find_tensor(g, "token_embd.weight");
    if (tn_gguf_find(g, akey(kb, A, "vocab_size"))) {
        TN_CHECK(tn_gguf_get_u32(g, kb, &v));
    } else if (toks) {
        if (tn_gguf_arr_len(toks) > (1u << 30)) return tn_err("gguf: tokenizer.ggml.tokens is too long");
        v = (uint32_t)tn_gguf_arr_len(toks);
    } else if (emb && emb->n_dims == 2 && emb->ne[1] <= (1u << 30)) {
        v = (uint32_t)emb->ne[1];
    } else {
        return tn_err("gguf: cannot tell the vocabulary size (no %s.vocab_size, tokenizer.ggml.tokens or token_embd.weight)", A);
    }
    TN_CHECK(as_int(v, "vocab_size", &c->vocab_size));
    if (tn_gguf_find(g, "tokenizer.ggml.bos_token_id")) {
        TN_CHECK(tn_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v));
        c->bos_id = v < (uint32_t)c->vocab_size ? (int)v : -1;
    }
    if (tn_gguf_find(g, "tokenizer.ggml.eos_token_id")) {
        TN_CHECK(tn_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v));
        c->eos_id = v < (uint32_t)c->vocab_size ? (int)v : -1;
    }
    c->tied_embeddings = tn_gguf_find_tensor(g, "output.weight") == NULL;

    /* what this model cannot represent */
    if (tn_gguf_find(g, akey(kb, A, "expert_count"))) {
        TN_CHECK(tn_gguf_get_u32(g, kb, &v));
        if (v > 0) return tn_err("gguf: mixture-of-experts models (%s = %u) are not supported", kb, v);
    }
    /* an explicit head dimension (Qwen3: attention.key_length 128 with 1024 / 16 heads) */
    if (tn_gguf_find(g, akey(kb, A, "attention.key_length"))) {
        TN_CHECK(tn_gguf_get_u32(g, kb, &v));
        if (v == 0 || v > 4096) return tn_err("gguf: %s = %u out of range", kb, v);
        if (!(c->n_heads > 0 && c->dim % c->n_heads == 0 && (int)v == c->dim / c->n_heads)) c->head_dim = (int)v;
    }
    if (tn_gguf_find(g, akey(kb, A, "attention.value_length"))) {
        TN_CHECK(tn_gguf_get_u32(g, kb, &v));
        if (c->n_heads > 0 && (int64_t)v != (c->head_dim ? c->head_dim : c->dim / c->n_heads))
            return tn_err("gguf: %s %u differs from the key length (not supported)", kb, v);
    }
    TN_CHECK(tn_llama_config_validate(c));
    TN_CHECK(read_rope_scaling(g, A, c));
    if (tn_gguf_find(g, akey(kb, A, "rope.dimension_count"))) {
        TN_CHECK(tn_gguf_get_u32(g, kb, &v));
        if (v != (uint32_t)tn_llama_head_dim(c))
            return tn_err("gguf: %s %u != head dim %d (partial RoPE is not supported)", kb, v, tn_llama_head_dim(c));
    }
    return 0;
}

/* GGUF tensor name -> HF name. *permute_heads is set for Q (n_heads) and K (n_kv_heads) when permute_qk
 * (the llama architecture), else 0.
 * Returns -1 (no message) for a name that is not part of the llama layout. */
static int map_name(const char *gn, const tn_llama_config *c, int permute_qk, char *hf, size_t cap, int *permute_heads) {
    static const struct {
        const char *gguf, *hf;
    } top[] = {{"token_embd.weight", "model.embed_tokens.weight"},
               {"output_norm.weight", "model.norm.weight"},
               {"output.weight", "lm_head.weight"}},
      blk[] = {{"attn_norm.weight", "input_layernorm.weight"}, {"attn_q.weight", "self_attn.q_proj.weight"},
               {"attn_k.weight", "self_attn.k_proj.weight"},   {"attn_v.weight", "self_attn.v_proj.weight"},
               {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
               {"ffn_gate.weight", "mlp.gate_proj.weight"},    {"ffn_up.weight", "mlp.up_proj.weight"},
               {"ffn_down.weight", "mlp.down_proj.weight"},    {"attn_q.bias", "self_attn.q_proj.bias"},
               {"attn_k.bias", "self_attn.k_proj.bias"},       {"attn_v.bias", "self_attn.v_proj.bias"},
               {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"}};
    *permute_heads = 0;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(gn, top[i].gguf) == 0) {
            snprintf(hf, cap, "%s", top[i].hf);
            return 0;
        }
    if (strncmp(gn, "blk.", 4) != 0) return -1;
    const char *p = gn + 4;
    long layer = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 6) layer = layer * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.' || (digits > 1 && gn[4] == '0') || layer >= c->n_layers) return -1;
    p++;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (strcmp(p, blk[i].gguf) == 0) {
            snprintf(hf, cap, "model.layers.%ld.%s", layer, blk[i].hf);
            if (i == 1 && permute_qk) *permute_heads = c->n_heads;
            if (i == 2 && permute_qk) *permute_heads = c->n_kv_heads;
            return 0;
        }
    return -1;
}

/* The file's tokenizer: serialized by data/tokenizer.h, or else its tokenizer.* metadata as a vocab-only
 * GGUF ("gguf-vocab"). */
static int take_tokenizer(const tn_gguf *g, const char *path, tn_checkpoint *ck, tn_import_info *info) {
    if (!tn_gguf_find(g, "tokenizer.ggml.tokens")) return 0;
    static const char *const prefixes[] = {"tokenizer.", "general.architecture"};
    uint8_t *bytes;
    size_t len;
    TN_CHECK(tn_gguf_write_meta(g, prefixes, 2, &bytes, &len));
    int rc = tn_import_take_tokenizer(ck, path, "gguf-vocab", bytes, len, NULL, info);
    free(bytes);
    return rc;
}

/* Where GGUF tensor t goes in layout l: its layout entry and, for Q / K, the head count to unpermute.
 * Fails on a tensor that is not part of the model, of a type that cannot be dequantized, or of the wrong
 * shape. */
static int place_tensor(const tn_gguf_tensor *t, const tn_llama_config *cfg, int permute_qk, const tn_llama_layout *l,
                        const tn_tensor_info **out, int *perm) {
    char hf[128];
    *out = NULL;
    if (strcmp(t->name, "rope_freqs.weight") == 0) return 0; /* read into the config (read_rope_scaling) */
    if (map_name(t->name, cfg, permute_qk, hf, sizeof hf, perm) != 0)
        return tn_err("unexpected tensor '%s' (not part of a llama model with %d layers)", t->name, cfg->n_layers);
    const tn_tensor_info *ti = tn_llama_layout_find(l, hf);
    if (!ti) /* a bias in a model without biases; lm_head when tied cannot happen (output.weight is absent) */
        return tn_err("unexpected tensor '%s' (%s is not part of this model)", t->name, hf);
    if (!tn_ggml_can_dequantize(t->type))
        return tn_err("tensor '%s': ggml type %s (%u) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)",
                      t->name, tn_ggml_type_name(t->type), t->type);
    /* GGUF lists dims fastest-first (ne[0] = row length): the row-major shape is ne reversed. */
    int ok = (int)t->n_dims == ti->rank &&
             (ti->rank == 1 ? t->ne[0] == (uint64_t)ti->shape[0]
                            : t->ne[1] == (uint64_t)ti->shape[0] && t->ne[0] == (uint64_t)ti->shape[1]);
    if (!ok) {
        char got[96] = "";
        for (int d = (int)t->n_dims - 1; d >= 0; d--)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", d == (int)t->n_dims - 1 ? "" : ", ",
                     (unsigned long long)t->ne[d]);
        return ti->rank == 2 ? tn_err("tensor '%s' (%s): shape [%s], expected [%lld, %lld]", t->name, hf, got,
                                      (long long)ti->shape[0], (long long)ti->shape[1])
                             : tn_err("tensor '%s' (%s): shape [%s], expected [%lld]", t->name, hf, got,
                                      (long long)ti->shape[0]);
    }
    *out = ti;
    return 0;
}

static int load(const tn_gguf *g, const char *path, tn_checkpoint *ck, tn_import_info *info) {
    tn_llama_config cfg;
    gguf_arch ga;
    TN_CHECK(read_config(g, &cfg, &ga));
    /* Every tensor placed, typed and shaped, and none missing, BEFORE the parameters are allocated: the
     * metadata alone can describe a model of terabytes (a 1 KB file made the importer allocate and zero
     * 29 GB, found by fuzzing), while tensors that pass these checks lie inside the file. */
    tn_llama_layout lay;
    TN_CHECK(tn_llama_layout_init(&lay, &cfg));
    char *done = calloc((size_t)lay.n_tensors, 1);
    int rc = done ? 0 : tn_err("out of memory");
    for (uint64_t i = 0; rc == 0 && i < g->n_tensors; i++) {
        const tn_tensor_info *ti;
        int perm;
        if ((rc = place_tensor(&g->tensors[i], &cfg, ga.permute_qk, &lay, &ti, &perm)) == 0 && ti) done[ti - lay.tensors] = 1;
    }
    for (int k = 0; rc == 0 && k < lay.n_tensors; k++)
        if (!done[k]) rc = tn_err("missing tensor for '%s'", lay.tensors[k].name);
    free(done);
    tn_llama_layout_free(&lay);
    TN_CHECK(rc);

    TN_CHECK(tn_import_begin(ck, &cfg));
    const tn_llama_layout *l = &ck->layout;
    for (uint64_t i = 0; rc == 0 && i < g->n_tensors; i++) {
        const tn_gguf_tensor *t = &g->tensors[i];
        const tn_tensor_info *ti;
        int perm;
        if ((rc = place_tensor(t, &cfg, ga.permute_qk, l, &ti, &perm)) != 0) break;
        if (!ti) continue;
        const uint8_t *data;
        size_t nb;
        float *dst = ck->params + ti->offset;
        if ((rc = tn_gguf_tensor_data(t, &data, &nb)) != 0) break;
        if ((rc = tn_ggml_dequantize(t->type, data, nb, dst, ti->numel)) != 0) {
            rc = tn_err_prefix("tensor '%s'", t->name);
            break;
        }
        if (perm && (rc = tn_import_unpermute_qk(dst, perm, tn_llama_head_dim(&cfg), ti->shape[1])) != 0) break;
        if ((rc = tn_import_check_finite(t->name, dst, ti->numel)) != 0) break;
        info->n_tensors++;
        tn_import_note_dtype(info->source_dtypes, sizeof info->source_dtypes, tn_ggml_type_name(t->type));
    }
    if (rc == 0) rc = take_tokenizer(g, path, ck, info);
    return rc;
}

int tn_import_gguf(const char *path, tn_checkpoint *ck, tn_import_info *info) {
    tn_import_info local;
    memset(&local, 0, sizeof local);
    if (!info) info = &local;
    memset(ck, 0, sizeof *ck);
    tn_gguf g;
    TN_CHECK(tn_gguf_open(path, &g));
    int rc = load(&g, path, ck, info);
    tn_gguf_close(&g);
    if (rc != 0) {
        tn_ckpt_free(ck);
        return tn_err_prefix("%s", path);
    }
    return 0;
}
