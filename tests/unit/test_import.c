/* Importers: a tiny Llama written by this test as GGUF (mixed F32/F16/BF16/Q8_0/Q4_0, Q/K rows permuted
 * the llama.cpp way), as llama2.c v0/v1 .bin (Meta row order) and as HF safetensors dirs (F32/BF16/F16,
 * single and sharded) must all import to exactly the same HF-named tensors. Weights are drawn from grids
 * every encoding represents exactly, so the comparisons are exact. Plus bad inputs (each a clear error),
 * the shared tiny-random-llama GGUF, and a checkpoint save/load round trip. */
#include "core/alloc.h"
#include "core/error.h"
#include "core/gguf.h"
#include "data/tokenizer.h"
#include "export/gguf_dequant.h"
#include "export/import.h"
#include "export/safetensors.h"
#include "model/rope.h"
#include "tn_test.h"
#include "byte_writer.h"
#include "train/checkpoint.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static float tn_f16_to_f32_test(const uint8_t *p) { return tn_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* ---- byte buffer ------------------------------------------------------------------------------------ */


static void write_file(const char *path, const buf *b) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(b->p, 1, b->n, f);
    fclose(f);
}

/* exact f16 / bf16 encodings of the grid values used here (normal numbers or zero) */
static uint16_t to_f16(float x) {
    if (x == 0) return 0;
    int e;
    float m = frexpf(fabsf(x), &e); /* |x| = m 2^e, m in [0.5, 1) */
    uint16_t man = (uint16_t)lrintf((m * 2 - 1) * 1024);
    return (uint16_t)((x < 0 ? 0x8000 : 0) | (uint16_t)(e - 1 + 15) << 10 | man);
}
static uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)(u >> 16);
}

/* ---- the reference model ---------------------------------------------------------------------------- */

static tn_llama_config test_cfg(int tied) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.ffn_dim = 64, c.vocab_size = 40;
    c.max_seq_len = 128, c.rope_theta = 500000.0f, c.norm_eps = 1e-5f, c.tied_embeddings = tied;
    c.bos_id = 1, c.eos_id = 2;
    return c;
}

/* GGUF type each tensor is written with (so every supported decoder is exercised). */
static uint32_t gguf_type_for(const tn_tensor_info *t) {
    if (t->rank == 1) return TN_GGML_F32;
    switch (t->kind) {
    case TN_W_Q: return TN_GGML_Q8_0;
    case TN_W_K: return TN_GGML_F16;
    case TN_W_V: return TN_GGML_Q4_0;
    case TN_W_O: return TN_GGML_BF16;
    case TN_W_GATE: return TN_GGML_Q8_0;
    case TN_W_UP: return TN_GGML_F32;
    case TN_W_DOWN: return TN_GGML_F16;
    default: return t->group == TN_GROUP_HEAD ? TN_GGML_Q8_0 : TN_GGML_F32;
    }
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static int rnd(int n) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rs >> 33) % (uint64_t)n);
}

/* Values: k/64 with |k| <= 127 (exact in Q8_0 with d = 1/64, f16, bf16), or (k-8)/16 for Q4_0 tensors. */
static void fill_model(const tn_llama_layout *l, float *w) {
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        for (size_t j = 0; j < t->numel; j++)
            w[t->offset + j] = gguf_type_for(t) == TN_GGML_Q4_0 ? (float)(rnd(16) - 8) / 16.0f : (float)(rnd(255) - 127) / 64.0f;
    }
}

/* Interleaved (llama.cpp / Meta) row order from HF's: file[h*hd + 2j + i] = hf[h*hd + i*hd/2 + j]. */
static void permute_rows(const float *hf, float *file, int n_heads, int hd, int cols) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < hd / 2; j++)
                memcpy(file + (size_t)(h * hd + 2 * j + i) * cols, hf + (size_t)(h * hd + i * hd / 2 + j) * cols,
                       (size_t)cols * sizeof(float));
}

/* The tensor's values in file row order (Q/K permuted for the llama architecture) into a new buffer. */
static float *file_rows(const tn_llama_layout *l, const tn_tensor_info *t, const float *w, int permute) {
    float *o = malloc(t->numel * sizeof *o);
    int hd = tn_llama_head_dim(&l->cfg);
    if (!permute) memcpy(o, w + t->offset, t->numel * sizeof *o);
    else if (t->kind == TN_W_Q) permute_rows(w + t->offset, o, l->cfg.n_heads, hd, (int)t->shape[1]);
    else if (t->kind == TN_W_K) permute_rows(w + t->offset, o, l->cfg.n_kv_heads, hd, (int)t->shape[1]);
    else memcpy(o, w + t->offset, t->numel * sizeof *o);
    return o;
}

static void encode(buf *b, uint32_t type, const float *x, size_t n) {
    switch (type) {
    case TN_GGML_F32: for (size_t i = 0; i < n; i++) f32(b, x[i]); break;
    case TN_GGML_F16: for (size_t i = 0; i < n; i++) u16(b, to_f16(x[i])); break;
    case TN_GGML_BF16: for (size_t i = 0; i < n; i++) u16(b, to_bf16(x[i])); break;
    case TN_GGML_Q8_0:
        for (size_t k = 0; k < n; k += 32) {
            u16(b, 0x2400); /* 1/64 */
            for (int i = 0; i < 32; i++) u8(b, (uint8_t)(int8_t)lrintf(x[k + i] * 64));
        }
        break;
    case TN_GGML_Q4_0:
        for (size_t k = 0; k < n; k += 32) {
            u16(b, 0x2C00); /* 1/16 */
            for (int i = 0; i < 16; i++)
                u8(b, (uint8_t)(lrintf(x[k + i] * 16 + 8) | lrintf(x[k + i + 16] * 16 + 8) << 4));
        }
        break;
    }
}

/* ---- GGUF writer ------------------------------------------------------------------------------------- */

enum {
    G_OK = 0, G_NO_OUTPUT = 1, G_DROP_FFN_UP = 2, G_BAD_SHAPE = 4, G_EXTRA = 8, G_ARCH = 16, G_Q5K = 32,
    G_NAN = 64, G_BAD_LAYER = 128,
    G_ROPE_FREQS = 256,  /* llama3 scaling of the config as llama.cpp stores it: a rope_freqs.weight tensor */
    G_ROPE_BENT = 512,   /* ... with one divisor off the rule */
    G_ROPE_LINEAR = 1024, G_ROPE_YARN = 2048, /* llama.rope.scaling.type metadata */
    G_QWEN2 = 4096, /* architecture qwen2: qwen2.* keys, Q/K rows as in HF, attn_{q,k,v}.bias tensors */
    G_QWEN3 = 8192  /* architecture qwen3: attention.key_length, attn_{q,k}_norm.weight */
};

static const char *gguf_name(const tn_tensor_info *t, char *out, size_t cap) {
    static const char *kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    if (t->layer < 0) {
        snprintf(out, cap, "%s", t->group == TN_GROUP_EMBED ? "token_embd.weight" : t->group == TN_GROUP_HEAD ? "output.weight" : "output_norm.weight");
    } else if (t->kind >= 0) {
        snprintf(out, cap, "blk.%d.%s.weight", t->layer, kinds[t->kind]);
    } else if (tn_bias_target(t) >= 0) {
        snprintf(out, cap, "blk.%d.%s.bias", t->layer, kinds[tn_bias_target(t)]);
    } else if (strstr(t->name, ".q_norm.") || strstr(t->name, ".k_norm.")) {
        snprintf(out, cap, "blk.%d.attn_%c_norm.weight", t->layer, strstr(t->name, ".q_norm.") ? 'q' : 'k');
    } else {
        snprintf(out, cap, "blk.%d.%s", t->layer, strstr(t->name, "input_layernorm") ? "attn_norm.weight" : "ffn_norm.weight");
    }
    return out;
}

static void write_gguf(const char *path, const tn_llama_layout *l, const float *w, int flags) {
    const tn_llama_config *c = &l->cfg;
    buf b = {0}, data = {0};
    int n_t = 0;
    buf infos = {0};
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        if ((flags & G_DROP_FFN_UP) && t->kind == TN_W_UP && t->layer == 1) continue;
        char name[96];
        gguf_name(t, name, sizeof name);
        if ((flags & G_BAD_LAYER) && t->kind == TN_W_UP && t->layer == 1) snprintf(name, sizeof name, "blk.7.ffn_up.weight");
        uint32_t type = gguf_type_for(t);
        while (data.n % 32) u8(&data, 0);
        uint64_t off = data.n;
        if ((flags & G_Q5K) && t->kind == TN_W_DOWN) {
            /* a well-formed Q5_K tensor (rows of 256): the importer must reject the type */
            gstr(&infos, name), u32(&infos, 2), u64(&infos, 256), u64(&infos, (uint64_t)(t->numel / 256));
            u32(&infos, TN_GGML_Q5_K), u64(&infos, off);
            for (size_t k = 0; k < t->numel / 256 * 176; k++) u8(&data, 0);
            n_t++;
            continue;
        }
        float *x = file_rows(l, t, w, !(flags & (G_QWEN2 | G_QWEN3)));
        if ((flags & G_NAN) && t->kind == TN_W_UP) x[3] = NAN;
        encode(&data, type, x, t->numel);
        free(x);
        int grow = (flags & G_BAD_SHAPE) && t->kind == TN_W_GATE; /* one extra row */
        if (grow) encode(&data, type, w, (size_t)t->shape[1]);
        gstr(&infos, name);
        if (t->rank == 1) {
            u32(&infos, 1), u64(&infos, (uint64_t)t->shape[0]);
        } else {
            u32(&infos, 2), u64(&infos, (uint64_t)t->shape[1]), u64(&infos, (uint64_t)t->shape[0] + (uint64_t)grow);
        }
        u32(&infos, type);
        u64(&infos, off);
        n_t++;
    }
    if (!c->tied_embeddings && (flags & G_NO_OUTPUT)) abort(); /* layout has lm_head only when untied */
    if (flags & G_EXTRA) {
        while (data.n % 32) u8(&data, 0);
        gstr(&infos, "blk.0.attn_q.bias"), u32(&infos, 1), u64(&infos, 4), u32(&infos, TN_GGML_F32), u64(&infos, data.n);
        for (int k = 0; k < 4; k++) f32(&data, 0);
        n_t++;
    }
    if (flags & (G_ROPE_FREQS | G_ROPE_BENT)) {
        /* llama.cpp's convert_hf_to_gguf.py (LlamaModel): per frequency, 1 (short wavelengths), factor (long),
         * or 1 / ((1 - s) / factor + s) in between, in double, stored F32 */
        const int half = tn_llama_head_dim(c) / 2;
        while (data.n % 32) u8(&data, 0);
        gstr(&infos, "rope_freqs.weight"), u32(&infos, 1), u64(&infos, (uint64_t)half), u32(&infos, TN_GGML_F32);
        u64(&infos, data.n);
        const double lo_w = c->rope_orig_max_pos / c->rope_low_freq_factor;
        const double hi_w = c->rope_orig_max_pos / c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(c->rope_theta, 2.0 * i / (2.0 * half)), wavelen = 2 * M_PI / freq, f;
            if (wavelen < hi_w) f = 1;
            else if (wavelen > lo_w) f = c->rope_factor;
            else {
                double sm = (c->rope_orig_max_pos / wavelen - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = 1 / ((1 - sm) / c->rope_factor + sm);
            }
            if ((flags & G_ROPE_BENT) && i == half / 2) f *= 1.01;
            f32(&data, (float)f);
        }
        n_t++;
    }
    int n_kv = 13 + ((flags & G_ROPE_LINEAR) ? 2 : 0) + ((flags & G_ROPE_YARN) ? 1 : 0) + ((flags & G_QWEN3) ? 1 : 0);
    put(&b, "GGUF", 4), u32(&b, 3), u64(&b, (uint64_t)n_t), u64(&b, (uint64_t)n_kv);
    if (flags & G_ROPE_LINEAR) {
        gstr(&b, "llama.rope.scaling.type"), u32(&b, TN_GGUF_STRING), gstr(&b, "linear");
        gstr(&b, "llama.rope.scaling.factor"), u32(&b, TN_GGUF_FLOAT32), f32(&b, 4.0f);
    }
    if (flags & G_ROPE_YARN) gstr(&b, "llama.rope.scaling.type"), u32(&b, TN_GGUF_STRING), gstr(&b, "yarn");
    const char *A = (flags & G_ARCH) ? "gpt2" : (flags & G_QWEN2) ? "qwen2" : (flags & G_QWEN3) ? "qwen3" : "llama";
    char k[96];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", A, suffix), k)
    gstr(&b, "general.architecture"), u32(&b, TN_GGUF_STRING), gstr(&b, A);
    gstr(&b, KEY("embedding_length")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)c->dim);
    gstr(&b, KEY("block_count")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)c->n_layers);
    gstr(&b, KEY("attention.head_count")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)c->n_heads);
    gstr(&b, KEY("attention.head_count_kv")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)c->n_kv_heads);
    gstr(&b, KEY("feed_forward_length")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)c->ffn_dim);
    gstr(&b, KEY("context_length")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)c->max_seq_len);
    gstr(&b, KEY("rope.freq_base")), u32(&b, TN_GGUF_FLOAT32), f32(&b, c->rope_theta);
    gstr(&b, KEY("attention.layer_norm_rms_epsilon")), u32(&b, TN_GGUF_FLOAT32), f32(&b, c->norm_eps);
    if (flags & G_QWEN3)
        gstr(&b, KEY("attention.key_length")), u32(&b, TN_GGUF_UINT32), u32(&b, (uint32_t)tn_llama_head_dim(c));
#undef KEY
    gstr(&b, "tokenizer.ggml.model"), u32(&b, TN_GGUF_STRING), gstr(&b, "llama");
    gstr(&b, "tokenizer.ggml.tokens"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_STRING), u64(&b, (uint64_t)c->vocab_size);
    for (int i = 0; i < c->vocab_size; i++) {
        char s[16];
        snprintf(s, sizeof s, i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "tok%d", i);
        gstr(&b, s);
    }
    gstr(&b, "tokenizer.ggml.bos_token_id"), u32(&b, TN_GGUF_UINT32), u32(&b, 1);
    gstr(&b, "tokenizer.ggml.eos_token_id"), u32(&b, TN_GGUF_UINT32), u32(&b, 2);
    put(&b, infos.p, infos.n);
    while (b.n % 32) u8(&b, 0);
    put(&b, data.p, data.n);
    write_file(path, &b);
    free(b.p), free(data.p), free(infos.p);
}

/* ---- llama2.c writer --------------------------------------------------------------------------------- */

static void put_floats(buf *b, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) f32(b, x[i]);
}

/* All layers' tensor of `kind` (or norm: 0 = input, 1 = post-attention) in file row order. */
static void put_all_layers(buf *b, const tn_llama_layout *l, const float *w, int kind, int norm) {
    for (int li = 0; li < l->cfg.n_layers; li++)
        for (int i = 0; i < l->n_tensors; i++) {
            const tn_tensor_info *t = &l->tensors[i];
            if (t->layer != li) continue;
            int match = kind >= 0 ? t->kind == kind
                                  : t->kind < 0 && (strstr(t->name, "input_layernorm") != NULL) == (norm == 0);
            if (!match) continue;
            float *x = file_rows(l, t, w, 1); /* llama2.c: interleaved like llama.cpp */
            put_floats(b, x, t->numel);
            free(x);
        }
}

static const float *tensor(const tn_llama_layout *l, const float *w, const char *name) {
    const tn_tensor_info *t = tn_llama_layout_find(l, name);
    return t ? w + t->offset : NULL;
}

static void write_llama2c(const char *path, const tn_llama_layout *l, const float *w, int version, int truncate) {
    const tn_llama_config *c = &l->cfg;
    buf b = {0};
    int32_t h[7] = {c->dim, c->ffn_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len};
    size_t V = (size_t)c->vocab_size, d = (size_t)c->dim;
    if (version == 1) {
        u32(&b, 0x616b3432), u32(&b, 1);
        for (int i = 0; i < 7; i++) u32(&b, (uint32_t)h[i]);
        u8(&b, (uint8_t)c->tied_embeddings);
        while (b.n < 256) u8(&b, 0);
        put_all_layers(&b, l, w, -1, 0);
        put_all_layers(&b, l, w, -1, 1);
        put_floats(&b, tensor(l, w, "model.norm.weight"), d);
        put_floats(&b, tensor(l, w, "model.embed_tokens.weight"), V * d);
        const int order[] = {TN_W_Q, TN_W_K, TN_W_V, TN_W_O, TN_W_GATE, TN_W_DOWN, TN_W_UP};
        for (int k = 0; k < 7; k++) put_all_layers(&b, l, w, order[k], 0);
    } else {
        if (!c->tied_embeddings) h[5] = -h[5];
        for (int i = 0; i < 7; i++) u32(&b, (uint32_t)h[i]);
        put_floats(&b, tensor(l, w, "model.embed_tokens.weight"), V * d);
        put_all_layers(&b, l, w, -1, 0);
        const int attn[] = {TN_W_Q, TN_W_K, TN_W_V, TN_W_O};
        for (int k = 0; k < 4; k++) put_all_layers(&b, l, w, attn[k], 0);
        put_all_layers(&b, l, w, -1, 1);
        const int mlp[] = {TN_W_GATE, TN_W_DOWN, TN_W_UP}; /* w1, w2, w3 */
        for (int k = 0; k < 3; k++) put_all_layers(&b, l, w, mlp[k], 0);
        put_floats(&b, tensor(l, w, "model.norm.weight"), d);
        size_t hd = (size_t)tn_llama_head_dim(c);
        for (size_t k = 0; k < (size_t)c->max_seq_len * hd; k++) f32(&b, 0.5f); /* freqs_cos, freqs_sin */
    }
    if (!c->tied_embeddings) put_floats(&b, tensor(l, w, "lm_head.weight"), V * d);
    b.n -= (size_t)truncate;
    write_file(path, &b);
    free(b.p);
}

/* ---- safetensors writer ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *dtype;   /* "F32", "BF16", "F16", or others for the bad-dtype case */
    int rank;
    int64_t shape[2];
    const float *x;
} st_entry;

/* raw_header: when non-NULL, written instead of the generated JSON (bad-header cases). */
static void write_st(const char *path, const st_entry *e, int n, const char *raw_header, int64_t len_delta) {
    buf data = {0};
    char *hdr = malloc(1 << 20);
    size_t hl = 0;
    hl += (size_t)sprintf(hdr + hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t begin = data.n, numel = (size_t)(e[i].rank == 2 ? e[i].shape[0] * e[i].shape[1] : e[i].shape[0]);
        for (size_t k = 0; k < numel; k++) {
            if (strcmp(e[i].dtype, "F32") == 0) f32(&data, e[i].x[k]);
            else if (strcmp(e[i].dtype, "BF16") == 0) u16(&data, to_bf16(e[i].x[k]));
            else if (strcmp(e[i].dtype, "F16") == 0) u16(&data, to_f16(e[i].x[k]));
            else if (strcmp(e[i].dtype, "I32") == 0) u32(&data, 0);
        }
        if (e[i].rank == 2)
            hl += (size_t)sprintf(hdr + hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                                  e[i].name, e[i].dtype, (long long)e[i].shape[0], (long long)e[i].shape[1], begin, data.n);
        else
            hl += (size_t)sprintf(hdr + hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                                  e[i].name, e[i].dtype, (long long)e[i].shape[0], begin, data.n);
    }
    hl += (size_t)sprintf(hdr + hl, "}");
    if (raw_header) hl = (size_t)sprintf(hdr, "%s", raw_header);
    while (hl % 8) hdr[hl++] = ' ';
    buf b = {0};
    u64(&b, (uint64_t)((int64_t)hl + len_delta));
    put(&b, hdr, hl);
    put(&b, data.p, data.n);
    write_file(path, &b);
    free(b.p), free(data.p), free(hdr);
}

/* Entries for every layout tensor, dtype from `dtype` (F16 gets only representable values anyway). */
static int model_entries(const tn_llama_layout *l, const float *w, const char *dtype, st_entry *e) {
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        e[i] = (st_entry){t->name, dtype, t->rank, {t->shape[0], t->shape[1]}, w + t->offset};
    }
    return l->n_tensors;
}

static void write_config(const char *dir, const tn_llama_config *c, const char *drop_key, const char *extra) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"");
    const char *keys[] = {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                          "intermediate_size", "vocab_size", "max_position_embeddings"};
    int vals[] = {c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab_size, c->max_seq_len};
    for (int i = 0; i < 7; i++)
        if (!drop_key || strcmp(drop_key, keys[i]) != 0) fprintf(f, ", \"%s\": %d", keys[i], vals[i]);
    if (c->rope_theta > 0) fprintf(f, ", \"rope_theta\": %.1f", (double)c->rope_theta); /* 0: left out */
    fprintf(f, ", \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": %s, \"bos_token_id\": 1, "
               "\"eos_token_id\": [2, 3], \"hidden_act\": \"silu\", \"torch_dtype\": \"bfloat16\"%s}\n",
            c->tied_embeddings ? "true" : "false", extra ? extra : ", \"rope_scaling\": null");
    fclose(f);
}

static const char *mkdir_tmp(const char *name) {
    const char *p = tmp(name);
    mkdir(p, 0755);
    return p;
}

/* ---- checks ------------------------------------------------------------------------------------------ */

static void expect_same(const tn_checkpoint *ck, const tn_llama_layout *l, const float *w, const char *what) {
    CHECKF(ck->layout.n_tensors == l->n_tensors, "%s: %d tensors", what, ck->layout.n_tensors);
    const tn_llama_config *a = &ck->layout.cfg, *b = &l->cfg;
    CHECKF(a->dim == b->dim && a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
               a->ffn_dim == b->ffn_dim && a->vocab_size == b->vocab_size && a->tied_embeddings == b->tied_embeddings,
           "%s: config differs", what);
    for (int i = 0; i < l->n_tensors && ck->layout.n_tensors == l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        const tn_tensor_info *u = tn_llama_layout_find(&ck->layout, t->name);
        CHECKF(u && memcmp(ck->params + u->offset, w + t->offset, t->numel * sizeof(float)) == 0, "%s: tensor %s differs",
               what, t->name);
    }
}

static void expect_fail(int rc, const char *want, const char *what) {
    CHECKF(rc != 0 && strstr(tn_errmsg(), want), "%s: want error containing '%s', got rc=%d '%s'", what, want, rc,
           rc ? tn_errmsg() : "");
}

/* ---- tests ------------------------------------------------------------------------------------------- */

/* RoPE scaling from GGUF: linear from metadata; llama3 recovered from rope_freqs.weight for the shapes of
 * Llama 3.1 8B (hd 128, theta 5e5, factor 8, original 8192) and 3.2 (factor 32), and for a short original
 * length where few frequencies are smoothed; the recovered rule gives the same frequencies. Refused: yarn,
 * a divisor off the rule. */
static void test_gguf_rope(const tn_llama_layout *l0, const float *w) {
    const char *q = tmp("rope.gguf");
    tn_checkpoint ck;
    write_gguf(q, l0, w, G_ROPE_LINEAR);
    CHECK_OK(tn_import_gguf(q, &ck, NULL));
    CHECK(ck.layout.cfg.rope_type == TN_ROPE_LINEAR && ck.layout.cfg.rope_factor == 4.0f);
    tn_ckpt_free(&ck);
    write_gguf(q, l0, w, G_ROPE_YARN);
    expect_fail(tn_import_gguf(q, &ck, NULL), "RoPE scaling 'yarn' is not supported", "gguf yarn");

    static const struct {
        int dim, heads;
        float theta, factor, low, high;
        int orig;
    } rules[] = {
        {512, 4, 500000.0f, 8.0f, 1.0f, 4.0f, 8192},  /* Llama 3.1: hd 128 */
        {256, 2, 500000.0f, 32.0f, 1.0f, 4.0f, 8192}, /* Llama 3.2: hd 128 */
        {32, 4, 10000.0f, 8.0f, 1.0f, 4.0f, 16},      /* the hf-families fixture: hd 8, one smoothed frequency */
        {64, 2, 10000.0f, 4.0f, 2.0f, 8.0f, 64},      /* low_freq_factor != 1 */
    };
    for (size_t k = 0; k < sizeof rules / sizeof rules[0]; k++) {
        tn_llama_config c = l0->cfg;
        c.dim = rules[k].dim, c.n_heads = rules[k].heads, c.n_kv_heads = rules[k].heads, c.n_layers = 1;
        c.rope_theta = rules[k].theta, c.rope_type = TN_ROPE_LLAMA3, c.rope_factor = rules[k].factor;
        c.rope_low_freq_factor = rules[k].low, c.rope_high_freq_factor = rules[k].high, c.rope_orig_max_pos = rules[k].orig;
        tn_llama_layout l;
        CHECK_OK(tn_llama_layout_init(&l, &c));
        float *wk = tn_alloc(l.numel, sizeof(float));
        fill_model(&l, wk);
        write_gguf(q, &l, wk, G_ROPE_FREQS);
        if (tn_import_gguf(q, &ck, NULL) != 0) {
            CHECKF(0, "rule %zu: %s", k, tn_errmsg());
        } else {
            const tn_llama_config *got = &ck.layout.cfg;
            const int hd = tn_llama_head_dim(&c);
            float want[128], have[128];
            tn_rope_inv_freq(&c, hd, want);
            tn_rope_inv_freq(got, hd, have);
            double worst = 0;
            for (int i = 0; i < hd / 2; i++) worst = fmax(worst, fabs(have[i] / want[i] - 1));
            printf("gguf rope_freqs rule %zu: llama3 factor %g, original %d, low %g, high %g; frequencies within %.1e\n", k,
                   (double)got->rope_factor, got->rope_orig_max_pos, (double)got->rope_low_freq_factor,
                   (double)got->rope_high_freq_factor, worst);
            CHECK(got->rope_type == TN_ROPE_LLAMA3 && got->rope_factor == c.rope_factor && worst < 1e-6);
            if (k < 2) /* many smoothed frequencies: the parameters themselves come back */
                CHECK(got->rope_orig_max_pos == 8192 && got->rope_low_freq_factor == 1.0f &&
                      fabsf(got->rope_high_freq_factor - 4.0f) < 1e-4f);
            tn_ckpt_free(&ck);
        }
        write_gguf(q, &l, wk, G_ROPE_BENT);
        expect_fail(tn_import_gguf(q, &ck, NULL), "follow the llama3 rule", "bent rope_freqs");
        tn_free(wk);
        tn_llama_layout_free(&l);
    }
}

/* Qwen2 and Qwen3 from GGUF: architecture qwen2 (qwen2.* keys), attn_{q,k,v}.bias tensors; qwen3 with
 * attention.key_length and attn_{q,k}_norm.weight; Q/K rows as HF's (llama.cpp permutes only for llama): the
 * import equals the model, biases and norms included. */
static void test_gguf_qwen2(void) {
    tn_llama_config c = test_cfg(1);
    c.qkv_bias = 1;
    tn_llama_layout l;
    CHECK_OK(tn_llama_layout_init(&l, &c));
    float *w = tn_alloc(l.numel, sizeof(float));
    fill_model(&l, w);
    const char *q = tmp("qwen2.gguf");
    write_gguf(q, &l, w, G_QWEN2);
    tn_checkpoint ck;
    CHECK_OK(tn_import_gguf(q, &ck, NULL));
    CHECK(ck.layout.cfg.qkv_bias == 1 && ck.layout.n_tensors == l.n_tensors);
    expect_same(&ck, &l, w, "gguf qwen2");
    tn_ckpt_free(&ck);
    write_gguf(q, &l, w, G_QWEN2 | G_DROP_FFN_UP);
    expect_fail(tn_import_gguf(q, &ck, NULL), "missing tensor", "qwen2 missing tensor");
    /* the same tensors under the llama architecture: the biases have no place */
    write_gguf(q, &l, w, G_OK);
    expect_fail(tn_import_gguf(q, &ck, NULL), "unexpected tensor 'blk.0.attn_q.bias'", "llama with biases");
    tn_free(w);
    tn_llama_layout_free(&l);

    /* Qwen3: per-head q/k norms, head_dim 16 with dim 32 and 4 heads (q_proj [64, 32]) */
    c = test_cfg(1);
    c.qk_norm = 1, c.head_dim = 16;
    CHECK_OK(tn_llama_layout_init(&l, &c));
    w = tn_alloc(l.numel, sizeof(float));
    fill_model(&l, w);
    write_gguf(q, &l, w, G_QWEN3);
    CHECK_OK(tn_import_gguf(q, &ck, NULL));
    CHECK(ck.layout.cfg.qk_norm == 1 && ck.layout.cfg.head_dim == 16 && ck.layout.cfg.qkv_bias == 0);
    expect_same(&ck, &l, w, "gguf qwen3");
    tn_ckpt_free(&ck);
    tn_free(w);
    tn_llama_layout_free(&l);
}

static void test_gguf(void) {
    for (int tied = 0; tied < 2; tied++) {
        tn_llama_config c = test_cfg(tied);
        tn_llama_layout l;
        CHECK_OK(tn_llama_layout_init(&l, &c));
        float *w = tn_alloc(l.numel, sizeof(float));
        fill_model(&l, w);
        const char *p = tmp(tied ? "tied.gguf" : "untied.gguf");
        write_gguf(p, &l, w, G_OK);
        tn_checkpoint ck;
        tn_import_info info;
        tn_import_opts opts = {TN_IMPORT_AUTO, NULL};
        CHECK_OK(tn_import(p, &opts, &ck, &info));
        expect_same(&ck, &l, w, p);
        CHECK(info.format == TN_IMPORT_GGUF && info.n_tensors == l.n_tensors);
        CHECKF(strstr(info.source_dtypes, "Q8_0") && strstr(info.source_dtypes, "Q4_0") && strstr(info.source_dtypes, "BF16"),
               "%s", info.source_dtypes);
        CHECK(ck.layout.cfg.rope_theta == 500000.0f && ck.layout.cfg.max_seq_len == 128 && ck.layout.cfg.bos_id == 1 &&
              ck.layout.cfg.eos_id == 2 && fabsf(ck.layout.cfg.norm_eps - 1e-5f) < 1e-12f);
        CHECK(ck.tokenizer && ck.tokenizer_len > 0);
        if (ck.tokenizer && strcmp(ck.tokenizer_format, "gguf-vocab") == 0) {
            tn_gguf g;
            CHECK_OK(tn_gguf_open_buffer(ck.tokenizer, ck.tokenizer_len, &g));
            const tn_gguf_kv *toks;
            CHECK_OK(tn_gguf_get_arr(&g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &toks));
            CHECK(tn_gguf_arr_len(toks) == 40 && g.n_tensors == 0 && tn_gguf_find(&g, "llama.block_count") == NULL);
            tn_gguf_close(&g);
        } else {
            CHECKF(strcmp(ck.tokenizer_format, "trinity-tokenizer") == 0, "%s", ck.tokenizer_format);
        }
        tn_ckpt_free(&ck);

        if (!tied) {
            /* bad files */
            struct {
                int flags;
                const char *want;
            } bad[] = {
                {G_DROP_FFN_UP, "missing tensor for 'model.layers.1.mlp.up_proj.weight'"},
                {G_BAD_SHAPE, "blk.0.ffn_gate.weight' (model.layers.0.mlp.gate_proj.weight): shape [65, 32], expected [64, 32]"},
                {G_EXTRA, "unexpected tensor 'blk.0.attn_q.bias'"},
                {G_ARCH, "architecture 'gpt2' is not supported"},
                {G_Q5K, "ggml type Q5_K (13) is not supported"},
                {G_NAN, "NaN or Inf"},
                {G_BAD_LAYER, "unexpected tensor 'blk.7.ffn_up.weight'"},
            };
            for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                const char *q = tmp("bad.gguf");
                write_gguf(q, &l, w, bad[k].flags);
                expect_fail(tn_import_gguf(q, &ck, NULL), bad[k].want, "bad gguf");
                CHECK(ck.params == NULL); /* nothing leaks out on failure */
            }
            test_gguf_rope(&l, w);
            test_gguf_qwen2();
        }
        tn_free(w);
        tn_llama_layout_free(&l);
    }
}

static void test_llama2c(void) {
    for (int version = 0; version < 2; version++)
        for (int tied = 0; tied < 2; tied++) {
            tn_llama_config c = test_cfg(tied);
            c.rope_theta = 10000.0f;
            tn_llama_layout l;
            CHECK_OK(tn_llama_layout_init(&l, &c));
            float *w = tn_alloc(l.numel, sizeof(float));
            fill_model(&l, w);
            const char *p = tmp("model.bin");
            write_llama2c(p, &l, w, version, 0);
            tn_checkpoint ck;
            tn_import_info info;
            tn_import_format f;
            CHECK_OK(tn_import_detect(p, &f));
            CHECK(f == TN_IMPORT_LLAMA2C);
            CHECK_OK(tn_import(p, NULL, &ck, &info));
            char what[64];
            snprintf(what, sizeof what, "llama2.c v%d %s", version, tied ? "tied" : "untied");
            expect_same(&ck, &l, w, what);
            CHECK(ck.layout.cfg.rope_theta == 10000.0f && ck.tokenizer == NULL && strcmp(info.source_dtypes, "F32") == 0);
            tn_ckpt_free(&ck);
            /* truncated by one float, or one byte */
            write_llama2c(p, &l, w, version, 4);
            expect_fail(tn_import_llama2c(p, &ck, NULL), "the header implies", what);
            write_llama2c(p, &l, w, version, 1);
            expect_fail(tn_import_llama2c(p, &ck, NULL), "the header implies", what);
            tn_free(w);
            tn_llama_layout_free(&l);
        }
    /* hostile headers */
    buf b = {0};
    int32_t h[7] = {1 << 30, 64, 2, 4, 2, 40, 128};
    for (int i = 0; i < 7; i++) u32(&b, (uint32_t)h[i]);
    write_file(tmp("bad.bin"), &b);
    tn_checkpoint ck;
    expect_fail(tn_import_llama2c(tmp("bad.bin"), &ck, NULL), "dim", "huge dim");
    b.n = 0;
    u32(&b, 0x616b3432), u32(&b, 2);
    while (b.n < 256) u8(&b, 0);
    write_file(tmp("bad.bin"), &b);
    expect_fail(tn_import_llama2c(tmp("bad.bin"), &ck, NULL), "version 2", "v2");
    b.n = 0;
    u32(&b, 5);
    write_file(tmp("bad.bin"), &b);
    expect_fail(tn_import_llama2c(tmp("bad.bin"), &ck, NULL), "too short", "short");
    free(b.p);
}

static void test_hf(void) {
    tn_llama_config c = test_cfg(0);
    tn_llama_layout l;
    CHECK_OK(tn_llama_layout_init(&l, &c));
    float *w = tn_alloc(l.numel, sizeof(float));
    fill_model(&l, w);
    st_entry *e = calloc((size_t)l.n_tensors + 4, sizeof *e);
    int n = model_entries(&l, w, "BF16", e);
    tn_checkpoint ck;
    tn_import_info info;

    /* single file, BF16 + one F32 + one F16 tensor, with a stale rotary buffer that must be ignored */
    const char *d = mkdir_tmp("hf1");
    write_config(d, &c, NULL, NULL);
    e[0].dtype = "F32";
    e[3].dtype = "F16";
    float inv[4] = {1, 2, 3, 4};
    e[n] = (st_entry){"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", 1, {4, 0}, inv};
    write_st(tmp("hf1/model.safetensors"), e, n + 1, NULL, 0);
    CHECK_OK(tn_import(d, NULL, &ck, &info));
    expect_same(&ck, &l, w, "hf single");
    CHECKF(strcmp(info.source_dtypes, "F32+BF16+F16") == 0, "%s", info.source_dtypes);
    CHECK(ck.layout.cfg.rope_theta == 500000.0f && ck.layout.cfg.eos_id == 2 && ck.layout.cfg.bos_id == 1);
    CHECK(info.format == TN_IMPORT_HF && ck.tokenizer == NULL);

    /* round trip through a checkpoint */
    CHECK_OK(tn_ckpt_save(tmp("hf1.h5"), &ck, NULL, 0));
    tn_checkpoint ck2;
    CHECK_OK(tn_ckpt_load(tmp("hf1.h5"), &ck2, NULL, 0));
    expect_same(&ck2, &l, w, "hf checkpoint round trip");
    tn_ckpt_free(&ck2);
    tn_ckpt_free(&ck);

    /* sharded: two files + index */
    d = mkdir_tmp("hf2");
    write_config(d, &c, NULL, NULL);
    n = model_entries(&l, w, "F32", e);
    int half = n / 2;
    write_st(tmp("hf2/model-00001-of-00002.safetensors"), e, half, NULL, 0);
    write_st(tmp("hf2/model-00002-of-00002.safetensors"), e + half, n - half, NULL, 0);
    FILE *f = fopen(tmp("hf2/model.safetensors.index.json"), "w");
    fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", e[i].name, i < half ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);
    CHECK_OK(tn_import(d, NULL, &ck, &info));
    expect_same(&ck, &l, w, "hf sharded");
    tn_ckpt_free(&ck);
    /* index pointing at the wrong shard */
    f = fopen(tmp("hf2/model.safetensors.index.json"), "w");
    fprintf(f, "{\"weight_map\": {\"%s\": \"model-00002-of-00002.safetensors\"}}", e[0].name);
    fclose(f);
    expect_fail(tn_import_hf(d, &ck, NULL), "is not in model-00002-of-00002.safetensors", "wrong shard");
    f = fopen(tmp("hf2/model.safetensors.index.json"), "w");
    fprintf(f, "{\"weight_map\": {\"%s\": \"../hf1/model.safetensors\"}}", e[0].name);
    fclose(f);
    expect_fail(tn_import_hf(d, &ck, NULL), "not a file name in the directory", "path traversal");

    /* tied: lm_head absent */
    tn_llama_config ct = test_cfg(1);
    tn_llama_layout lt;
    CHECK_OK(tn_llama_layout_init(&lt, &ct));
    float *wt = tn_alloc(lt.numel, sizeof(float));
    fill_model(&lt, wt);
    d = mkdir_tmp("hf3");
    write_config(d, &ct, NULL, NULL);
    n = model_entries(&lt, wt, "F32", e);
    write_st(tmp("hf3/model.safetensors"), e, n, NULL, 0);
    /* a tokenizer the tokenizer module cannot read: the importer keeps its raw bytes and says why; tn_import
     * (the CLI's) refuses the model unless another tokenizer is given */
    FILE *tf = fopen(tmp("hf3/tokenizer.json"), "w");
    fprintf(tf, "{\"model\": {\"type\": \"nonsense\"}}");
    fclose(tf);
    memset(&info, 0, sizeof info);
    CHECK_OK(tn_import_hf(d, &ck, &info));
    expect_same(&ck, &lt, wt, "hf tied");
    CHECKF(ck.tokenizer && strcmp(ck.tokenizer_format, "hf-tokenizer-json") == 0, "%s", ck.tokenizer_format);
    CHECKF(strstr(info.tokenizer_problem, "nonsense") != NULL, "problem: '%s'", info.tokenizer_problem);
    tn_ckpt_free(&ck);
    expect_fail(tn_import(d, NULL, &ck, &info), "its tokenizer is not supported", "unreadable tokenizer");
    CHECK(ck.params == NULL);

    /* bad directories: config problems */
    d = mkdir_tmp("hfbad");
    n = model_entries(&l, w, "F32", e);
    write_st(tmp("hfbad/model.safetensors"), e, n, NULL, 0);
    write_config(d, &c, "hidden_size", NULL);
    expect_fail(tn_import_hf(d, &ck, NULL), "config.json: missing key hidden_size", "missing key");
    write_config(d, &c, "intermediate_size", NULL);
    expect_fail(tn_import_hf(d, &ck, NULL), "config.json: missing key intermediate_size", "missing key");
    /* RoPE scaling: linear and llama3 read in both layouts, anything else refused by name */
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    CHECK(ck.layout.cfg.rope_type == TN_ROPE_LINEAR && ck.layout.cfg.rope_factor == 2.0f);
    tn_ckpt_free(&ck);
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0}");
    expect_fail(tn_import_hf(d, &ck, NULL), "RoPE scaling type 'yarn' is not supported (default, linear, llama3)", "yarn");
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}");
    expect_fail(tn_import_hf(d, &ck, NULL), "'dynamic' is not supported", "dynamic");
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0, \"beta_fast\": 32}");
    expect_fail(tn_import_hf(d, &ck, NULL), "rope_scaling.beta_fast is not understood", "unknown rope key");
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"rope_type\": \"linear\"}");
    expect_fail(tn_import_hf(d, &ck, NULL), "positive factor", "linear without factor");
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0}");
    expect_fail(tn_import_hf(d, &ck, NULL), "needs high_freq_factor", "llama3 incomplete");
    write_config(d, &c, NULL,
                 ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, "
                 "\"high_freq_factor\": 1.0, \"original_max_position_embeddings\": 8192}");
    expect_fail(tn_import_hf(d, &ck, NULL), "rope_low_freq_factor < rope_high_freq_factor", "llama3 inverted");
    write_config(d, &c, NULL,
                 ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                 "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}, "
                 "\"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, "
                 "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}");
    expect_fail(tn_import_hf(d, &ck, NULL), "describe different scalings", "two scalings");
    /* an explicit head_dim is the model's (Qwen3): these weights are then the wrong shape */
    write_config(d, &c, NULL, ", \"head_dim\": 16");
    expect_fail(tn_import_hf(d, &ck, NULL), "q_proj.weight' has shape [32, 32], expected [64, 32]", "head_dim");
    write_config(d, &c, NULL, ", \"head_dim\": 8"); /* = hidden_size / heads: neutral */
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    CHECK(ck.layout.cfg.head_dim == 0);
    tn_ckpt_free(&ck);
    /* transformers 5.x keeps theta (and any scaling) in rope_parameters: read there, never defaulted */
    tn_llama_config c5 = c;
    c5.rope_theta = 0; /* no top-level key */
    write_config(d, &c5, NULL, ", \"rope_parameters\": {\"rope_theta\": 250000.0, \"rope_type\": \"default\"}");
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    CHECKF(ck.layout.cfg.rope_theta == 250000.0f, "rope_parameters.rope_theta read as %g", (double)ck.layout.cfg.rope_theta);
    tn_ckpt_free(&ck);
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"rope_type\": \"default\"}");
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    CHECK(ck.layout.cfg.rope_theta == c.rope_theta);
    tn_ckpt_free(&ck);
    write_config(d, &c5, NULL,
                 ", \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"llama3\", \"factor\": 8.0, "
                 "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}");
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    CHECK(ck.layout.cfg.rope_type == TN_ROPE_LLAMA3 && ck.layout.cfg.rope_factor == 8.0f &&
          ck.layout.cfg.rope_low_freq_factor == 1.0f && ck.layout.cfg.rope_high_freq_factor == 4.0f &&
          ck.layout.cfg.rope_orig_max_pos == 8192 && ck.layout.cfg.rope_theta == 500000.0f);
    tn_ckpt_free(&ck);
    write_config(d, &c, NULL, ", \"rope_parameters\": {\"rope_theta\": 10000.0}"); /* c's is 500000 */
    expect_fail(tn_import_hf(d, &ck, NULL), "rope_parameters.rope_theta 10000 differ", "two thetas");
    write_config(d, &c, NULL, ", \"rope_scaling\": {\"factor\": 2.0}");
    expect_fail(tn_import_hf(d, &ck, NULL), "factor but no rope_type", "factor without type");
    write_config(d, &c, NULL, ", \"partial_rotary_factor\": 0.5");
    expect_fail(tn_import_hf(d, &ck, NULL), "partial_rotary_factor 0.5", "partial rotary");
    write_config(d, &c, NULL, ", \"use_sliding_window\": true");
    expect_fail(tn_import_hf(d, &ck, NULL), "use_sliding_window", "use_sliding_window");
    write_config(d, &c, NULL, ", \"use_sliding_window\": false");
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    tn_ckpt_free(&ck);
    f = fopen(tmp("hfbad/config.json"), "w");
    fprintf(f, "{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 8}");
    fclose(f);
    expect_fail(tn_import_hf(d, &ck, NULL), "architecture GPT2LMHeadModel is not supported", "arch");
    f = fopen(tmp("hfbad/config.json"), "w");
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], ");
    fclose(f);
    expect_fail(tn_import_hf(d, &ck, NULL), "not valid JSON", "bad config json");
    write_config(d, &c, NULL, NULL);
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    tn_ckpt_free(&ck);
    /* mistral with and without an effective sliding window */
    f = fopen(tmp("hfbad/config.json"), "w");
    fprintf(f, "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 40, "
               "\"max_position_embeddings\": 128, \"sliding_window\": 64}");
    fclose(f);
    expect_fail(tn_import_hf(d, &ck, NULL), "sliding_window 64", "mistral sliding window");
    f = fopen(tmp("hfbad/config.json"), "w");
    fprintf(f, "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 40, "
               "\"max_position_embeddings\": 128, \"sliding_window\": null}");
    fclose(f);
    CHECK_OK(tn_import_hf(d, &ck, NULL));
    CHECK(ck.layout.cfg.norm_eps == 1e-6f && ck.layout.cfg.bos_id == -1); /* LlamaConfig defaults */
    tn_ckpt_free(&ck);
    write_config(d, &c, NULL, NULL);

    /* bad tensors */
    const char *st = tmp("hfbad/model.safetensors");
    n = model_entries(&l, w, "F32", e);
    write_st(st, e, n - 1, NULL, 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "missing tensor 'lm_head.weight'", "missing tensor");
    e[n] = (st_entry){"model.layers.9.mlp.up_proj.weight", "F32", 1, {4, 0}, inv};
    write_st(st, e, n + 1, NULL, 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "unexpected tensor 'model.layers.9.mlp.up_proj.weight'", "extra tensor");
    e[5].shape[0] -= 1;
    write_st(st, e, n, NULL, 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "has shape [", "wrong shape");
    e[5].shape[0] += 1;
    e[2].dtype = "I32";
    write_st(st, e, n, NULL, 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "dtype I32", "wrong dtype");
    e[2].dtype = "F32";
    /* safetensors structure */
    write_st(st, e, n, NULL, 1000000);
    expect_fail(tn_import_hf(d, &ck, NULL), "runs past the end of the file", "header length > file");
    write_st(st, e, n, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "not valid JSON", "bad JSON");
    write_st(st, e, n, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 99999]}}", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "run past the end of the data", "offsets past end");
    write_st(st, e, n, "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "shape holds 3 x F32 = 12 bytes but data_offsets give 8", "size mismatch");
    write_st(st, e, n, "{\"a\": {\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "unknown dtype", "unknown dtype");
    write_st(st, e, n,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "overlap", "overlap");
    write_st(st, e, n, "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "non-negative", "negative shape");
    write_st(st, e, n, "[1, 2]", 0);
    expect_fail(tn_import_hf(d, &ck, NULL), "not a JSON object", "array header");
    /* truncations of a valid file: every one fails cleanly */
    write_st(st, e, n, NULL, 0);
    char *full;
    size_t full_len;
    CHECK_OK(tn_read_file(st, &full, &full_len));
    int accepted = 0;
    for (size_t cut = 0; cut < full_len; cut += (cut < 2048 ? 7 : 4099)) {
        FILE *tf2 = fopen(st, "wb");
        fwrite(full, 1, cut, tf2);
        fclose(tf2);
        if (tn_import_hf(d, &ck, NULL) == 0) {
            accepted++;
            tn_ckpt_free(&ck);
        }
    }
    CHECK(accepted == 0);
    free(full);
    rmdir(tmp("hfempty"));
    expect_fail(tn_import_hf(mkdir_tmp("hfempty"), &ck, NULL), "no config.json", "empty dir");

    tn_free(wt);
    tn_llama_layout_free(&lt);
    free(e);
    tn_free(w);
    tn_llama_layout_free(&l);
}

/* The shared 1-layer random Llama: config, tokenizer, and q_proj = un-permuted F16 data. */
static void test_tiny_random(void) {
    const char *p = tn_test_shared("tiny-random-llama-gguf/llama-2-tiny-random.gguf");
    if (!p) {
        printf("skipping tiny-random-llama-gguf (no shared data)\n");
        return;
    }
    tn_checkpoint ck;
    tn_import_info info;
    CHECK_OK(tn_import(p, NULL, &ck, &info));
    const tn_llama_config *c = &ck.layout.cfg;
    CHECK(c->dim == 8 && c->n_layers == 1 && c->n_heads == 2 && c->n_kv_heads == 2 && c->ffn_dim == 32 &&
          c->vocab_size == 32000 && c->max_seq_len == 4096 && !c->tied_embeddings && c->bos_id == 1 && c->eos_id == 2);
    CHECK(fabsf(c->norm_eps - 1e-5f) < 1e-12f && c->rope_theta == 10000.0f);
    CHECKF(strcmp(info.source_dtypes, "F16+F32") == 0 || strcmp(info.source_dtypes, "F32+F16") == 0, "%s", info.source_dtypes);
    CHECK(info.n_tensors == 12);
    /* q_proj against the raw file: HF row h*4 + i*2 + j = file row h*4 + 2j + i */
    tn_gguf g;
    CHECK_OK(tn_gguf_open(p, &g));
    const tn_gguf_tensor *t = tn_gguf_find_tensor(&g, "blk.0.attn_q.weight");
    const tn_tensor_info *qi = tn_llama_layout_find(&ck.layout, "model.layers.0.self_attn.q_proj.weight");
    if (t && qi) {
        int bad = 0;
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int col = 0; col < 8; col++) {
                        int fr = h * 4 + 2 * j + i, hr = h * 4 + i * 2 + j;
                        const uint8_t *x = t->data + 2 * (fr * 8 + col);
                        float v = tn_f16_to_f32_test(x);
                        bad += ck.params[qi->offset + (size_t)hr * 8 + col] != v;
                    }
        CHECK(bad == 0);
    }
    const tn_gguf_tensor *vt = tn_gguf_find_tensor(&g, "blk.0.attn_v.weight");
    const tn_tensor_info *vi = tn_llama_layout_find(&ck.layout, "model.layers.0.self_attn.v_proj.weight");
    if (vt && vi) {
        int bad = 0;
        for (int k = 0; k < 64; k++) bad += ck.params[vi->offset + k] != tn_f16_to_f32_test(vt->data + 2 * k);
        CHECK(bad == 0);
    }
    tn_gguf_close(&g);
    /* tokenizer: serialized by data/tokenizer.h, or the vocab-only GGUF fallback */
    CHECK(ck.tokenizer != NULL);
    if (ck.tokenizer && strcmp(ck.tokenizer_format, "trinity-tokenizer") == 0) {
        tn_tokenizer *tk;
        CHECK_OK(tn_tokenizer_deserialize(ck.tokenizer, ck.tokenizer_len, &tk));
        if (tk) {
            CHECK(tn_tokenizer_vocab_size(tk) == 32000);
            tn_tokenizer_free(tk);
        }
    } else if (ck.tokenizer) {
        CHECKF(strcmp(ck.tokenizer_format, "gguf-vocab") == 0, "%s", ck.tokenizer_format);
        CHECK_OK(tn_gguf_open_buffer(ck.tokenizer, ck.tokenizer_len, &g));
        const tn_gguf_kv *toks;
        CHECK_OK(tn_gguf_get_arr(&g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &toks));
        CHECK(tn_gguf_arr_len(toks) == 32000);
        tn_gguf_close(&g);
    }
    /* and through a checkpoint file */
    CHECK_OK(tn_ckpt_save(tmp("tiny.h5"), &ck, NULL, 0));
    tn_checkpoint ck2;
    CHECK_OK(tn_ckpt_load(tmp("tiny.h5"), &ck2, NULL, 0));
    CHECK(ck2.layout.numel == ck.layout.numel && memcmp(ck2.params, ck.params, ck.layout.numel * 4) == 0);
    CHECK(ck2.tokenizer_len == ck.tokenizer_len && strcmp(ck2.tokenizer_format, ck.tokenizer_format) == 0);
    tn_ckpt_free(&ck2);
    tn_ckpt_free(&ck);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tn_test_import.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_gguf();
    test_llama2c();
    test_hf();
    test_tiny_random();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return tn_test_finish();
}
