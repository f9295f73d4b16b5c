/* Checkpoint -> GGUF v3 for llama.cpp (export/export_gguf.h). One pass over the layout: each tensor is
 * decided by export/export_source.h, given a GGUF name and a ggml type, encoded block by block, and handed
 * to the GGUF writer (core/gguf.h), which writes the file atomically at the end.
 *
 * Block layouts, written from ggml's ggml-common.h (block_q4_0, block_q8_0, block_tq1_0, block_tq2_0) and the
 * reference quantizers in ggml-quants.c (quantize_row_q4_0_ref, quantize_row_q8_0_ref,
 * quantize_row_tq1_0_ref, quantize_row_tq2_0_ref); every multi-byte field little-endian, fp16 as IEEE
 * binary16. export/gguf_dequant.c reads the same layouts back. */
#include "export/export_gguf.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "export/export_source.h"
#include "export/gguf_dequant.h"
#include "model/rope.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tn_export_gguf_opts_default(tn_export_gguf_opts *o) {
    memset(o, 0, sizeof *o);
    o->dense = TN_EXPORT_DENSE_AUTO;
    o->ternary_type = TN_GGML_TQ2_0;
}

/* ---- architectures and names ------------------------------------------------------------------------ */

/* llama.cpp architectures trinity models map to (src/llama-arch.cpp LLM_ARCH_NAMES; the metadata keys are
 * "<name>.embedding_length" etc.). permute_qk: llama.cpp applies RoPE to adjacent pairs for this
 * architecture (GGML_ROPE_TYPE_NORM), so its converter reorders Q and K rows from Hugging Face's
 * rotate-half layout (convert_hf_to_gguf.py LlamaModel.permute); rotate-half architectures
 * (GGML_ROPE_TYPE_NEOX: qwen2, qwen3) take the rows as they are. First match wins. */
typedef struct {
    const char *name;
    int permute_qk;
    int rope_freqs;                               /* llama3 RoPE as a rope_freqs.weight tensor */
    int (*describes)(const tn_llama_config *c);
} gguf_arch;

static int is_llama(const tn_llama_config *c) { return !c->qkv_bias && !c->qk_norm; }
static int is_qwen2(const tn_llama_config *c) { return c->qkv_bias && !c->qk_norm; }
static int is_qwen3(const tn_llama_config *c) { return c->qk_norm && !c->qkv_bias; }

static const gguf_arch archs[] = {
    {"llama", 1, 1, is_llama},
    {"qwen2", 0, 0, is_qwen2}, /* q/k/v biases */
    {"qwen3", 0, 0, is_qwen3}, /* per-head q/k RMSNorm (attn_q_norm, attn_k_norm), explicit head dim */
};

/* Hugging Face tensor names -> GGUF (gguf-py/gguf/tensor_mapping.py). In a layer the suffix after the
 * module is ".weight" or ".bias" and is kept. qk: 1 = Q projection (n_heads), 2 = K (n_kv_heads). */
static const struct {
    const char *hf, *gguf;
} top_names[] = {{"model.embed_tokens.weight", "token_embd.weight"},
                 {"model.norm.weight", "output_norm.weight"},
                 {"lm_head.weight", "output.weight"}};
static const struct {
    const char *hf, *gguf;
    int qk;
} blk_names[] = {{"input_layernorm", "attn_norm", 0},   {"self_attn.q_proj", "attn_q", 1},
                 {"self_attn.k_proj", "attn_k", 2},     {"self_attn.v_proj", "attn_v", 0},
                 {"self_attn.o_proj", "attn_output", 0}, {"self_attn.q_norm", "attn_q_norm", 0},
                 {"self_attn.k_norm", "attn_k_norm", 0}, {"post_attention_layernorm", "ffn_norm", 0},
                 {"mlp.gate_proj", "ffn_gate", 0},       {"mlp.up_proj", "ffn_up", 0},
                 {"mlp.down_proj", "ffn_down", 0}};

/* The GGUF name of an HF tensor name, and whether it is Q (1) or K (2). -1 with a message when unknown. */
static int gguf_name(const char *hf, char *out, size_t cap, int *qk) {
    *qk = 0;
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (strcmp(hf, top_names[i].hf) == 0) {
            snprintf(out, cap, "%s", top_names[i].gguf);
            return 0;
        }
    int layer, n = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &n) == 1 && n > 0) {
        const char *rest = hf + n;
        for (size_t i = 0; i < sizeof blk_names / sizeof blk_names[0]; i++) {
            size_t l = strlen(blk_names[i].hf);
            if (strncmp(rest, blk_names[i].hf, l) != 0) continue;
            const char *sfx = rest + l;
            if (strcmp(sfx, ".weight") != 0 && strcmp(sfx, ".bias") != 0) continue;
            snprintf(out, cap, "blk.%d.%s%s", layer, blk_names[i].gguf, sfx);
            *qk = blk_names[i].qk;
            return 0;
        }
    }
    return tn_err("tensor '%s' has no GGUF name", hf);
}

int64_t tn_export_gguf_qk_source_row(int64_t r, int head_dim) {
    const int64_t hd = head_dim, h = r / hd, rem = r % hd, j = rem / 2, i = rem % 2;
    return h * hd + i * (hd / 2) + j;
}

/* ---- block encoders --------------------------------------------------------------------------------- */

static void put_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 255);
    p[1] = (uint8_t)(h >> 8);
}

/* Q8_0, 34 bytes per 32 values: f16 d, int8 qs[32];  x[i] = d * qs[i]. */
static void enc_q8_0(const int8_t *c, uint16_t d, uint8_t *b) {
    put_f16(b, d);
    for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)c[i];
}

/* Q4_0, 18 bytes per 32 values: f16 d, uint8 qs[16]; value j in the low nibble of qs[j], value j + 16 in
 * the high nibble, each stored as q + 8:  x = d * (nibble - 8), so q in [-8, 7]. */
static void enc_q4_0(const int8_t *c, uint16_t d, uint8_t *b) {
    put_f16(b, d);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)((c[j] + 8) | (c[j + 16] + 8) << 4);
}

/* TQ2_0, 66 bytes per 256 values: uint8 qs[64], f16 d. Half h (128 values) uses qs[32h .. 32h + 32):
 * byte m holds values 128h + m + 32n (n = 0..3) in bits 2n..2n+1 as t + 1;  x = d * t, t in {-1, 0, 1}. */
static void enc_tq2_0(const int8_t *c, uint16_t d, uint8_t *b) {
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 32; m++) {
            unsigned q = 0;
            for (int n = 0; n < 4; n++) q |= (unsigned)(c[128 * h + m + 32 * n] + 1) << (2 * n);
            b[32 * h + m] = (uint8_t)q;
        }
    put_f16(b + 64, d);
}

/* TQ1_0, 54 bytes per 256 values: uint8 qs[48], uint8 qh[4], f16 d. A byte holds five trits (t + 1 in
 * {0, 1, 2}) as the base-3 number v with the first value most significant, stored as the fixed-point
 * fraction q = ceil(v * 256 / 243) (so a reader gets trit n as ((uint8)(q * 3^n) * 3) >> 8):
 *   qs[m],      m < 32: values m + 32n (n = 0..4)
 *   qs[32 + m], m < 16: values 160 + m + 16n (n = 0..4)
 *   qh[j],      j < 4:  values 240 + j + 4n (n = 0..3), then a fifth trit 0 */
static uint8_t tq1_pack(const int8_t *c, int stride, int n_trits) {
    unsigned v = 0;
    for (int n = 0; n < 5; n++) v = v * 3 + (n < n_trits ? (unsigned)(c[n * stride] + 1) : 0u);
    return (uint8_t)((v * 256 + 242) / 243);
}

static void enc_tq1_0(const int8_t *c, uint16_t d, uint8_t *b) {
    for (int m = 0; m < 32; m++) b[m] = tq1_pack(c + m, 32, 5);
    for (int m = 0; m < 16; m++) b[32 + m] = tq1_pack(c + 160 + m, 16, 5);
    for (int j = 0; j < 4; j++) b[48 + j] = tq1_pack(c + 240 + j, 4, 4);
    put_f16(b + 52, d);
}

/* ---- choosing a type -------------------------------------------------------------------------------- */

/* The smallest integer k <= 127 for which every k * grid[i] is an integer code[i] with |code| <= 127
 * (within the float rounding of the grid's rationals: 1/3 is 0.33333334f). 0 when there is none. */
static int grid_step(const float *grid, int n, int8_t *code) {
    for (int k = 1; k <= 127; k++) {
        int ok = 1;
        for (int i = 0; i < n && ok; i++) {
            double x = (double)k * grid[i], m = nearbyint(x);
            ok = fabs(x - m) <= 1e-5 && fabs(m) <= 127;
            if (ok) code[i] = (int8_t)m;
        }
        if (ok) return k;
    }
    return 0;
}

typedef struct {
    tn_export_src src;
    const tn_export_gguf_opts *o;
    tn_export_gguf_report *rep;
    const gguf_arch *arch;
    tn_gguf_writer *w;
    int warned_act8;
} exporter;

static void note_type(tn_export_gguf_report *rep, const char *gname, uint32_t type) {
    const char *k = gname;
    if (strncmp(k, "blk.", 4) == 0) {
        const char *dot = strchr(k + 4, '.');
        if (dot) k = dot + 1;
    }
    if (type < 64) rep->n_by_type[type]++;
    int i = 0;
    while (i < rep->n_kinds && strcmp(rep->kinds[i], k) != 0) i++;
    if (i == rep->n_kinds) {
        if (i == TN_EXPORT_GGUF_MAX_KINDS) return;
        snprintf(rep->kinds[i], sizeof rep->kinds[i], "%s", k);
        rep->kind_types[i][0] = '\0';
        rep->n_kinds++;
    }
    const char *tn = tn_ggml_type_name(type);
    char *s = rep->kind_types[i];
    size_t n = strlen(s), tl = strlen(tn);
    for (const char *p = s; *p;) { /* already listed? */
        const char *e = strchr(p, '+');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == tl && strncmp(p, tn, tl) == 0) return;
        if (!e) break;
        p = e + 1;
    }
    if (n + tl + 2 <= sizeof rep->kind_types[i]) snprintf(s + n, sizeof rep->kind_types[i] - n, "%s%s", n ? "+" : "", tn);
}

/* Float values (dense, or a quantized tensor dequantized) as F32 or F16, rows in file order. */
static int add_float(exporter *e, const char *gname, const tn_tensor_info *t, const float *v, int64_t (*row_of)(int64_t, int),
                     int hd, int f16) {
    const int64_t rows = t->shape[0], cols = t->rank == 2 ? t->shape[1] : 1;
    const size_t n = (size_t)(rows * cols), es = f16 ? 2 : 4;
    uint8_t *buf = malloc(n * es);
    if (!buf) return tn_err("out of memory");
    for (int64_t r = 0; r < rows; r++) {
        const float *src = v + (row_of ? row_of(r, hd) : r) * cols;
        uint8_t *dst = buf + (size_t)(r * cols) * es;
        if (!f16) {
            memcpy(dst, src, (size_t)cols * 4); /* little-endian host (x86-64 / aarch64), as the reader assumes */
            continue;
        }
        for (int64_t c = 0; c < cols; c++) {
            if (!(fabsf(src[c]) <= 65504.0f)) {
                free(buf);
                return tn_err("value %g at [%lld, %lld] does not fit F16 (export with --dtype f32)", (double)src[c],
                              (long long)r, (long long)c);
            }
            put_f16(dst + 2 * c, tn_f32_to_f16(src[c]));
        }
    }
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    if (t->rank == 1) ne[0] = (uint64_t)rows; /* a vector: one dimension */
    uint32_t type = f16 ? TN_GGML_F16 : TN_GGML_F32;
    TN_CHECK(tn_gguf_writer_tensor(e->w, gname, (uint32_t)t->rank, ne, type, buf, n * es, 1));
    note_type(e->rep, gname, type);
    return 0;
}

/* A quantized tensor as blocks of `type` (Q4_0, Q8_0, TQ1_0, TQ2_0) with codes code[idx] and block scale
 * d = fp16(scale / k). */
static int add_blocks(exporter *e, const char *gname, const tn_export_tensor *x, int64_t (*row_of)(int64_t, int), int hd,
                      uint32_t type, const int8_t *code, int k) {
    const int64_t rows = x->t->shape[0], cols = x->t->shape[1];
    uint32_t be, bb;
    TN_CHECK(tn_ggml_type_layout(type, &be, &bb));
    const size_t row_bytes = (size_t)(cols / be) * bb, n_bytes = row_bytes * (size_t)rows;
    uint8_t *buf = malloc(n_bytes);
    int8_t *c = malloc((size_t)cols);
    if (!buf || !c) {
        free(buf), free(c);
        return tn_err("out of memory");
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t sr = row_of ? row_of(r, hd) : r;
        const float s = x->scales[x->n_scales == 1 ? 0 : sr], dk = s / (float)k;
        if (!(fabsf(dk) <= 65504.0f)) {
            free(buf), free(c);
            return tn_err("row %lld: scale %g does not fit the fp16 block scale", (long long)sr, (double)s);
        }
        const uint16_t d = tn_f32_to_f16(dk);
        if (s != 0.0f) {
            double err = fabs((double)tn_f16_to_f32(d) * k - (double)s) / fabs((double)s);
            if (err > e->rep->max_scale_rel_err) e->rep->max_scale_rel_err = err;
        }
        const uint8_t *idx = x->idx + sr * cols;
        for (int64_t j = 0; j < cols; j++) c[j] = code[idx[j]];
        uint8_t *out = buf + (size_t)r * row_bytes;
        for (int64_t j = 0; j < cols; j += be, out += bb) {
            switch (type) {
            case TN_GGML_Q8_0: enc_q8_0(c + j, d, out); break;
            case TN_GGML_Q4_0: enc_q4_0(c + j, d, out); break;
            case TN_GGML_TQ1_0: enc_tq1_0(c + j, d, out); break;
            default: enc_tq2_0(c + j, d, out); break;
            }
        }
    }
    free(c);
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    TN_CHECK(tn_gguf_writer_tensor(e->w, gname, 2, ne, type, buf, n_bytes, 1));
    note_type(e->rep, gname, type);
    return 0;
}

/* A dense table (head, embeddings; never Q/K-permuted) as Q8_0 or Q4_0 (export/table_quant.h). */
static int add_table(exporter *e, const char *gname, const tn_tensor_info *t, const float *W, tn_table_type table) {
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const uint32_t type = table == TN_TABLE_Q8 ? TN_GGML_Q8_0 : TN_GGML_Q4_0;
    if (cols % 32)
        return tn_err("%s needs rows of a multiple of 32 values, this table's are %lld", tn_ggml_type_name(type),
                      (long long)cols);
    const size_t row_bytes = (size_t)(cols / 32) * (type == TN_GGML_Q8_0 ? 34 : 18), n_bytes = row_bytes * (size_t)rows;
    uint8_t *buf = malloc(n_bytes);
    if (!buf) return tn_err("out of memory");
    int rc = 0;
    if (type == TN_GGML_Q4_0) rc = tn_q4_quantize(W, rows, cols, buf); /* TRIN's Q4 rows are Q4_0 rows */
    for (int64_t r = 0; r < rows && rc == 0 && type == TN_GGML_Q8_0; r++)
        rc = tn_q8_0_quantize_row(W + r * cols, cols, buf + (size_t)r * row_bytes);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    TN_CHECK(tn_gguf_writer_tensor(e->w, gname, 2, ne, type, buf, n_bytes, 1));
    note_type(e->rep, gname, type);
    return 0;
}

static int add_tensor(exporter *e, int i) {
    const tn_llama_config *cfg = &e->src.ck.layout.cfg;
    const int hd = tn_llama_head_dim(cfg);
    char gname[64];
    int qk;
    TN_CHECK(gguf_name(e->src.ck.layout.tensors[i].name, gname, sizeof gname, &qk));
    int64_t (*row_of)(int64_t, int) = qk && e->arch->permute_qk ? tn_export_gguf_qk_source_row : NULL;
    const int dense_f16 = e->o->dense != TN_EXPORT_DENSE_F32;
    tn_export_tensor x;
    TN_CHECK(tn_export_src_tensor(&e->src, i, &x));
    const tn_tensor_info *t = x.t;
    int rc;
    const tn_table_type table = tn_table_for(t, cfg, e->o->head, e->o->embed);
    if (x.quantized && table != TN_TABLE_AUTO) {
        tn_export_tensor_free(&x);
        return tn_err("the run quantized this table itself: --head / --embed apply to dense tables");
    }
    if (!x.quantized && (table == TN_TABLE_Q8 || table == TN_TABLE_Q4)) return add_table(e, gname, t, x.W, table);
    if (!x.quantized) {
        const int f16 = table == TN_TABLE_AUTO ? dense_f16 : table == TN_TABLE_F16;
        rc = add_float(e, gname, t, x.W, row_of, hd, t->rank == 2 && f16);
        return rc;
    }
    if (x.act_bits == 8 && !e->warned_act8) {
        e->warned_act8 = 1;
        tn_log_warn("the run quantized activations to int8 per token (act_bits = 8); llama.cpp quantizes them its "
                    "own way (Q8_K / Q8_0 blocks), so its logits differ slightly from trinity's");
    }
    const int64_t cols = t->shape[1];
    int8_t code[TN_GRID_MAX] = {0}; /* an index past the grid (never in a validated checkpoint) reads as 0 */
    const int k = grid_step(x.grid, x.n_grid, code);
    int fits4 = k > 0;
    for (int g = 0; g < x.n_grid && fits4; g++) fits4 = code[g] >= -8 && code[g] <= 7;
    const int ternary = tn_export_grid_is_ternary(x.grid, x.n_grid);
    const uint32_t tt = e->o->ternary_type;
    uint32_t type = 0;
    if (ternary && tt == TN_GGML_F16) type = 0; /* asked for: the dense path below (exact for ternary) */
    else if (ternary && cols % 256 == 0 && (tt == TN_GGML_TQ2_0 || tt == TN_GGML_TQ1_0)) type = tt;
    else if (k && cols % 32 == 0) type = fits4 && tt != TN_GGML_Q8_0 ? TN_GGML_Q4_0 : TN_GGML_Q8_0;
    if (type) {
        rc = add_blocks(e, gname, &x, row_of, hd, type, code, k);
        tn_export_tensor_free(&x);
        return rc;
    }
    /* No exact block type: the snapped values s·grid[idx] in the dense type. F32 holds them exactly; so does
     * F16 when every grid value is 0 or ±2^e (fp16(s·g) = fp16(s)·g in fp16's normal range: the codes exact,
     * the scale rounded as a block scale would be, ternary included); other grids get each value rounded. */
    const char *why = k ? "its row length is not a multiple of 32" : "its grid is not a set of integer multiples of one step";
    const char *fb = dense_f16 ? "F16" : "F32";
    int pow2 = 1;
    for (int g = 0; g < x.n_grid && pow2; g++) {
        int ex;
        pow2 = x.grid[g] == 0.0f || fabsf(frexpf(x.grid[g], &ex)) == 0.5f;
    }
    if (pow2 || !dense_f16) {
        if (dense_f16)
            for (int64_t r = 0; r < x.n_scales; r++)
                if (x.scales[r] != 0.0f) {
                    double err = fabs((double)tn_f16_to_f32(tn_f32_to_f16(x.scales[r])) - x.scales[r]) / fabs((double)x.scales[r]);
                    if (err > e->rep->max_scale_rel_err) e->rep->max_scale_rel_err = err;
                }
    } else if (e->o->strict) {
        tn_export_tensor_free(&x);
        return tn_err("its grid of %d values cannot be stored exactly as a GGUF block type (%s) and F16 would round "
                      "each value (--strict; --dtype f32 stores the values exactly)", x.n_grid, why);
    } else {
        tn_log_warn("tensor '%s': grid of %d values cannot be stored exactly as a GGUF block type (%s): stored as %s "
                    "(each value rounded to fp16)", t->name, x.n_grid, why, fb);
        e->rep->n_fallback++;
    }
    const int64_t rows = t->shape[0];
    float *v = tn_alloc((size_t)(rows * cols), sizeof *v);
    if (!v) {
        tn_export_tensor_free(&x);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float s = x.scales[x.n_scales == 1 ? 0 : r];
        for (int64_t j = 0; j < cols; j++) v[r * cols + j] = s * x.grid[x.idx[r * cols + j]];
    }
    rc = add_float(e, gname, t, v, row_of, hd, dense_f16);
    tn_free(v);
    tn_export_tensor_free(&x);
    return rc;
}

/* ---- metadata ---------------------------------------------------------------------------------------- */

static int put_u32(tn_gguf_writer *w, const char *arch, const char *key, uint32_t v) {
    char k[96];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return tn_gguf_writer_u32(w, k, v);
}

static int put_f32(tn_gguf_writer *w, const char *arch, const char *key, float v) {
    char k[96];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return tn_gguf_writer_f32(w, k, v);
}

static int put_str(tn_gguf_writer *w, const char *key, const char *s) { return tn_gguf_writer_str(w, key, s, strlen(s)); }

/* Hyper-parameters as llama.cpp reads them (LLM_KV_* in src/llama-arch.cpp), and RoPE scaling: linear as
 * rope.scaling.type/factor, llama3 as the tensor rope_freqs.weight of per-frequency divisors
 * default[i] / scaled[i] (what convert_hf_to_gguf.py writes for Llama 3.1; the importer fits it back). */
static int write_hparams(exporter *e, const char *ckpt_path) {
    const tn_llama_config *c = &e->src.ck.layout.cfg;
    const char *a = e->arch->name;
    tn_gguf_writer *w = e->w;
    const char *base = strrchr(ckpt_path, '/');
    base = base ? base + 1 : ckpt_path;
    char name[128];
    snprintf(name, sizeof name, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    TN_CHECK(put_str(w, "general.architecture", a));
    TN_CHECK(put_str(w, "general.name", name));
    TN_CHECK(tn_gguf_writer_u32(w, "general.quantization_version", 2)); /* GGML_QNT_VERSION */
    TN_CHECK(put_str(w, "trinity.quant", e->src.quant));
    TN_CHECK(put_u32(w, a, "context_length", (uint32_t)c->max_seq_len));
    TN_CHECK(put_u32(w, a, "embedding_length", (uint32_t)c->dim));
    TN_CHECK(put_u32(w, a, "block_count", (uint32_t)c->n_layers));
    TN_CHECK(put_u32(w, a, "feed_forward_length", (uint32_t)c->ffn_dim));
    TN_CHECK(put_u32(w, a, "attention.head_count", (uint32_t)c->n_heads));
    TN_CHECK(put_u32(w, a, "attention.head_count_kv", (uint32_t)c->n_kv_heads));
    TN_CHECK(put_f32(w, a, "attention.layer_norm_rms_epsilon", c->norm_eps));
    TN_CHECK(put_f32(w, a, "rope.freq_base", c->rope_theta));
    TN_CHECK(put_u32(w, a, "rope.dimension_count", (uint32_t)tn_llama_head_dim(c)));
    if (c->head_dim > 0) { /* an explicit head dimension (Qwen3: 128 with 1024 / 16 heads) */
        TN_CHECK(put_u32(w, a, "attention.key_length", (uint32_t)c->head_dim));
        TN_CHECK(put_u32(w, a, "attention.value_length", (uint32_t)c->head_dim));
    }
    TN_CHECK(put_u32(w, a, "vocab_size", (uint32_t)c->vocab_size));
    if (c->rope_type == TN_ROPE_LINEAR) {
        char k[96];
        snprintf(k, sizeof k, "%s.rope.scaling.type", a);
        TN_CHECK(put_str(w, k, "linear"));
        TN_CHECK(put_f32(w, a, "rope.scaling.factor", c->rope_factor));
    } else if (c->rope_type == TN_ROPE_LLAMA3) {
        if (!e->arch->rope_freqs)
            return tn_err("llama3 RoPE scaling has no GGUF form for architecture %s", a);
        const int hd = tn_llama_head_dim(c);
        tn_llama_config plain = *c;
        plain.rope_type = TN_ROPE_DEFAULT;
        float *def = malloc((size_t)hd / 2 * sizeof *def), *sc = malloc((size_t)hd / 2 * sizeof *sc);
        if (!def || !sc) {
            free(def), free(sc);
            return tn_err("out of memory");
        }
        tn_rope_inv_freq(&plain, hd, def);
        tn_rope_inv_freq(c, hd, sc);
        for (int i = 0; i < hd / 2; i++) def[i] = def[i] / sc[i];
        free(sc);
        uint64_t ne[1] = {(uint64_t)(hd / 2)};
        TN_CHECK(tn_gguf_writer_tensor(w, "rope_freqs.weight", 1, ne, TN_GGML_F32, def, (size_t)(hd / 2) * 4, 1));
        note_type(e->rep, "rope_freqs.weight", TN_GGML_F32);
    }
    return 0;
}

/* ---- tokenizer --------------------------------------------------------------------------------------- */

/* A GGUF vocabulary stored by the importer ("gguf-vocab", a tensor-less GGUF of tokenizer.* pairs): its
 * pairs copied as they are (pre-tokenizer name, chat template and all), the three per-token arrays padded
 * to the model's vocabulary when shorter. */
static int copy_gguf_vocab(exporter *e) {
    const tn_checkpoint *ck = &e->src.ck;
    const int64_t V = ck->layout.cfg.vocab_size;
    tn_gguf g;
    if (tn_gguf_open_buffer(ck->tokenizer, ck->tokenizer_len, &g) != 0) return tn_err_prefix("stored GGUF vocabulary");
    const tn_gguf_kv *toks;
    int rc = tn_gguf_get_arr(&g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &toks);
    const uint64_t n = rc == 0 ? tn_gguf_arr_len(toks) : 0;
    if (rc == 0 && n > (uint64_t)V) rc = tn_err("stored GGUF vocabulary has %llu tokens, more than the model's %lld", (unsigned long long)n, (long long)V);
    const char **s = NULL;
    size_t *len = NULL;
    char *pad = NULL;
    float *f = NULL;
    int32_t *ty = NULL;
    for (uint64_t i = 0; rc == 0 && i < g.n_kv; i++) {
        const tn_gguf_kv *kv = &g.kv[i];
        if (strncmp(kv->key, "tokenizer.", 10) != 0) continue;
        int is_tok = strcmp(kv->key, "tokenizer.ggml.tokens") == 0, is_sc = strcmp(kv->key, "tokenizer.ggml.scores") == 0,
            is_ty = strcmp(kv->key, "tokenizer.ggml.token_type") == 0;
        if ((uint64_t)V == n || !(is_tok || is_sc || is_ty)) {
            rc = tn_gguf_writer_copy(e->w, kv);
            continue;
        }
        if (tn_gguf_arr_len(kv) != n) {
            rc = tn_err("stored GGUF vocabulary: %s has %llu entries for %llu tokens", kv->key,
                        (unsigned long long)tn_gguf_arr_len(kv), (unsigned long long)n);
            break;
        }
        if (is_tok) {
            s = malloc((size_t)V * sizeof *s), len = malloc((size_t)V * sizeof *len), pad = malloc((size_t)(V - (int64_t)n) * 20);
            if (!s || !len || !pad) {
                rc = tn_err("out of memory");
                break;
            }
            char *p = pad;
            for (int64_t k = 0; k < V && rc == 0; k++) {
                if ((uint64_t)k < n) {
                    rc = tn_gguf_arr_str(kv, (uint64_t)k, &s[k], &len[k]);
                } else {
                    len[k] = (size_t)snprintf(p, 20, "[PAD%lld]", (long long)k);
                    s[k] = p;
                    p += len[k];
                }
            }
            if (rc == 0) rc = tn_gguf_writer_arr_str(e->w, kv->key, s, len, (uint64_t)V);
        } else if (is_sc) {
            if (!(f = malloc((size_t)V * sizeof *f))) {
                rc = tn_err("out of memory");
                break;
            }
            for (int64_t k = 0; k < V; k++) f[k] = (uint64_t)k < n ? tn_gguf_arr_f32(kv, (uint64_t)k) : 0.0f;
            rc = tn_gguf_writer_arr(e->w, kv->key, TN_GGUF_FLOAT32, f, (uint64_t)V);
        } else {
            if (!(ty = malloc((size_t)V * sizeof *ty))) {
                rc = tn_err("out of memory");
                break;
            }
            for (int64_t k = 0; k < V; k++) ty[k] = (uint64_t)k < n ? tn_gguf_arr_i32(kv, (uint64_t)k) : 5 /* unused */;
            rc = tn_gguf_writer_arr(e->w, kv->key, TN_GGUF_INT32, ty, (uint64_t)V);
        }
    }
    if (rc == 0 && !tn_gguf_find(&g, "tokenizer.ggml.model")) rc = tn_err("stored GGUF vocabulary has no tokenizer.ggml.model");
    if (rc == 0)
        snprintf(e->rep->tokenizer, sizeof e->rep->tokenizer, "GGUF vocabulary copied, %llu tokens%s", (unsigned long long)n,
                 tn_gguf_find(&g, "tokenizer.chat_template") ? ", chat template" : "");
    free(s), free(len), free(pad), free(f), free(ty);
    tn_gguf_close(&g);
    return rc;
}

/* A tokenizer the importer could not read was stored raw: let data/tokenizer.h try it once more (from a
 * temporary file named as its format implies), so the error says why it cannot be converted. */
static int load_raw_tokenizer(const tn_checkpoint *ck, tn_tokenizer **out) {
    const char *fmt = ck->tokenizer_format, *file = !strcmp(fmt, "sentencepiece-model") ? "tokenizer.model"
                                                  : !strcmp(fmt, "hf-tokenizer-json") ? "tokenizer.json"
                                                  : !strcmp(fmt, "llama2c-tokenizer") ? "tokenizer.bin"
                                                                                       : NULL;
    if (!file) return tn_err("tokenizer format '%s' is unknown", fmt);
    char dir[] = "/tmp/trinity-export-XXXXXX", path[64];
    if (!mkdtemp(dir)) return tn_err("cannot make a temporary directory");
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(ck->tokenizer, 1, ck->tokenizer_len, f) == ck->tokenizer_len ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    if (rc != 0) tn_err("cannot write a temporary file");
    else rc = tn_tokenizer_load(path, out);
    unlink(path);
    rmdir(dir);
    return rc;
}

static int write_tokenizer(exporter *e, const char *ckpt_path) {
    const tn_checkpoint *ck = &e->src.ck;
    const int64_t V = ck->layout.cfg.vocab_size;
    tn_tokenizer *t = NULL;
    int rc;
    if (e->o->tokenizer_path) {
        rc = tn_tokenizer_load(e->o->tokenizer_path, &t);
    } else if (!ck->tokenizer_len) {
        tn_log_warn("%s has no tokenizer: the GGUF says tokenizer.ggml.model = none (llama.cpp runs it from token ids "
                    "only); give one with --tokenizer", ckpt_path);
        snprintf(e->rep->tokenizer, sizeof e->rep->tokenizer, "none");
        return put_str(e->w, "tokenizer.ggml.model", "none");
    } else if (!strcmp(ck->tokenizer_format, "gguf-vocab")) {
        return copy_gguf_vocab(e);
    } else if (!strcmp(ck->tokenizer_format, "trinity-tokenizer")) {
        rc = tn_tokenizer_deserialize(ck->tokenizer, ck->tokenizer_len, &t);
    } else if (load_raw_tokenizer(ck, &t) != 0) {
        return tn_err("the checkpoint's tokenizer, stored raw as '%s' because trinity could not read it (%s), cannot be "
                      "converted to GGUF tokenizer keys: give one with --tokenizer", ck->tokenizer_format, tn_errmsg());
    } else {
        rc = 0;
    }
    if (rc != 0) return tn_err_prefix("tokenizer");
    rc = tn_tokenizer_to_gguf(t, V, e->w);
    if (rc == 0)
        snprintf(e->rep->tokenizer, sizeof e->rep->tokenizer, "%s as tokenizer.ggml.model %s, %lld tokens%s",
                 tn_tokenizer_kind_name(t), tn_tokenizer_get_kind(t) == TN_TOK_SPM ? "llama" : "gpt2", (long long)V,
                 tn_tokenizer_chat_template(t) ? ", chat template" : "");
    tn_tokenizer_free(t);
    return rc == 0 ? 0 : tn_err_prefix("tokenizer");
}

/* ---- the export -------------------------------------------------------------------------------------- */

int tn_export_gguf(const char *ckpt_path, const char *out_path, const tn_export_gguf_opts *o, tn_export_gguf_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (o->ternary_type != TN_GGML_TQ2_0 && o->ternary_type != TN_GGML_TQ1_0 && o->ternary_type != TN_GGML_Q4_0 &&
        o->ternary_type != TN_GGML_Q8_0 && o->ternary_type != TN_GGML_F16)
        return tn_err("GGUF ternary type %s is not one of TQ2_0, TQ1_0, Q4_0, Q8_0, F16", tn_ggml_type_name(o->ternary_type));
    exporter e;
    memset(&e, 0, sizeof e);
    e.o = o;
    e.rep = rep;
    TN_CHECK(tn_export_src_open(&e.src, ckpt_path, o->quantize));
    const tn_llama_layout *l = &e.src.ck.layout;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0] && !e.arch; i++)
        if (archs[i].describes(&l->cfg)) e.arch = &archs[i];
    int rc = e.arch ? 0 : tn_err("%s: no llama.cpp architecture describes this model (q/k/v biases and q/k norms "
                                 "together)", ckpt_path);
    if (rc == 0 && l->cfg.tied_embeddings && o->embed != TN_TABLE_AUTO)
        rc = tn_err("--embed %s: %s ties its embeddings to the LM head; --head sets the one table",
                    tn_table_type_name(o->embed), ckpt_path);
    if (rc == 0 && !(e.w = tn_gguf_writer_new())) rc = -1;
    if (rc == 0) {
        snprintf(rep->kind, sizeof rep->kind, "%s", e.src.kind);
        snprintf(rep->grid, sizeof rep->grid, "%s", e.src.grid);
        snprintf(rep->arch, sizeof rep->arch, "%s", e.arch->name);
        rc = write_hparams(&e, ckpt_path);
    }
    if (rc == 0) rc = write_tokenizer(&e, ckpt_path);
    for (int i = 0; rc == 0 && i < l->n_tensors; i++)
        if (add_tensor(&e, i) != 0) rc = tn_err_prefix("tensor '%s'", l->tensors[i].name);
    if (rc == 0) rc = tn_gguf_writer_write(e.w, out_path);
    if (rc == 0) {
        struct stat st;
        rep->n_tensors = (int)tn_gguf_writer_n_tensors(e.w);
        rep->n_params = tn_llama_config_n_params(&l->cfg);
        if (stat(out_path, &st) == 0) rep->file_bytes = st.st_size;
    }
    tn_gguf_writer_free(e.w);
    tn_export_src_close(&e.src);
    return rc;
}
