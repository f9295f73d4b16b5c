/* llama2.c checkpoint import (github.com/karpathy/llama2.c, export.py and run.c).
 *
 * v0 ("legacy_export"): 7 int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len};
 *   a negative vocab_size means the classifier is NOT shared with the embedding. Then fp32 arrays, each
 *   over all layers before the next:
 *     tok_embeddings [V, d], attention_norm [L, d], wq [L, H*hd, d], wk [L, KV*hd, d], wv [L, KV*hd, d],
 *     wo [L, d, H*hd], ffn_norm [L, d], w1 [L, F, d], w2 [L, d, F], w3 [L, F, d], norm [d],
 *     freqs_cos [S, hd/2], freqs_sin [S, hd/2] (ignored), then output [V, d] when not shared.
 * v1 ("version1_export"): 256-byte header: u32 magic 0x616b3432 ("ak42"), i32 version = 1, the same 7 int32,
 *   u8 shared_classifier, zero padding. Then: attention_norm [L, d], ffn_norm [L, d], norm [d],
 *   tok_embeddings, wq, wk, wv, wo, w1, w2, w3 (each [L, ...]), output when not shared.
 *   (v2 is int8 Q8_0 with group scales: not supported.)
 *
 * Matrices are PyTorch nn.Linear weights, [out, in], as in HF. w1 = gate_proj, w2 = down_proj,
 * w3 = up_proj. llama2.c's RoPE rotates interleaved pairs (model.py apply_rotary_emb views the last dim
 * as (-1, 2)), and export.py's load_hf_model applies permute_reverse to HF's q/k, so wq and wk are in
 * the interleaved (Meta) row order: tn_import_unpermute_qk converts them to HF's rotate-half order.
 * llama2.c uses rope theta 10000 and RMSNorm eps 1e-5 (run.c). */
#include "core/error.h"
#include "core/fileio.h"
#include "export/import_internal.h"

#include <stdlib.h>
#include <string.h>

#define AK42_MAGIC 0x616b3432u

static int32_t rd_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

typedef struct {
    const float *src; /* fp32 in the file (mapped, little-endian host) */
    size_t pos;       /* next float to read */
    size_t n;         /* total floats available */
} reader;

/* Copy `count` floats from the file (memcpy: the map need not be float-aligned). */
static void take(reader *r, float *dst, size_t count) {
    memcpy(dst, (const uint8_t *)r->src + r->pos * 4, count * 4);
    r->pos += count;
}

static int load(const tn_mapped_file *m, tn_checkpoint *ck, tn_import_info *info) {
    const uint8_t *p = m->data;
    size_t size = m->size, header;
    int v1 = 0, shared;
    int32_t h[7];
    if (size >= 8 && (uint32_t)rd_i32(p) == AK42_MAGIC) {
        int32_t version = rd_i32(p + 4);
        if (version != 1)
            return tn_err("llama2.c version %d is not supported (v0 and v1 fp32; v2 is int8)", version);
        if (size < 256) return tn_err("truncated llama2.c v1 header (%zu bytes)", size);
        for (int i = 0; i < 7; i++) h[i] = rd_i32(p + 8 + 4 * i);
        if (p[36] > 1) return tn_err("llama2.c v1 header: shared_classifier flag is %u", p[36]);
        shared = p[36];
        header = 256;
        v1 = 1;
    } else {
        if (size < 28) return tn_err("file of %zu bytes is too short for a llama2.c header", size);
        for (int i = 0; i < 7; i++) h[i] = rd_i32(p + 4 * i);
        shared = h[5] > 0;
        if (h[5] == INT32_MIN) return tn_err("llama2.c header: bad vocab_size");
        h[5] = h[5] < 0 ? -h[5] : h[5];
        header = 28;
    }
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = h[0];
    c.ffn_dim = h[1];
    c.n_layers = h[2];
    c.n_heads = h[3];
    c.n_kv_heads = h[4];
    c.vocab_size = h[5];
    c.max_seq_len = h[6];
    c.rope_theta = 10000.0f;
    c.norm_eps = 1e-5f;
    c.tied_embeddings = shared;
    /* the Llama 2 SentencePiece vocabulary llama2.c uses: <unk> 0, <s> 1, </s> 2 */
    if (c.vocab_size > 2) c.bos_id = 1, c.eos_id = 2;
    if (tn_llama_config_validate(&c) != 0)
        return tn_err_prefix("llama2.c %s header (dim %d, hidden %d, layers %d, heads %d, kv %d, vocab %d, seq %d)",
                             v1 ? "v1" : "v0", h[0], h[1], h[2], h[3], h[4], h[5], h[6]);

    /* exact float count (config validation bounds every size, so these products fit in 63 bits) */
    uint64_t d = (uint64_t)c.dim, L = (uint64_t)c.n_layers, hd = (uint64_t)tn_llama_head_dim(&c);
    uint64_t q = (uint64_t)c.n_heads * hd, kv = (uint64_t)c.n_kv_heads * hd, F = (uint64_t)c.ffn_dim,
             V = (uint64_t)c.vocab_size, S = (uint64_t)c.max_seq_len;
    uint64_t floats = V * d + L * (2 * d + q * d + 2 * kv * d + d * q + 3 * F * d) + d + (shared ? 0 : V * d);
    if (!v1) floats += S * hd; /* freqs_cos + freqs_sin, S x hd/2 each */
    if (size - header != floats * 4 || (size - header) % 4)
        return tn_err("llama2.c %s: file has %zu bytes of weights, the header implies %llu", v1 ? "v1" : "v0",
                      size - header, (unsigned long long)(floats * 4));

    TN_CHECK(tn_import_begin(ck, &c));
    tn_llama_view view;
    TN_CHECK(tn_llama_view_init(&view, &ck->layout, ck->params));
    reader r = {(const float *)(p + header), 0, (size_t)floats};
    size_t nd = (size_t)d, nq = (size_t)q, nkv = (size_t)kv, nf = (size_t)F;
    int nl = c.n_layers;
#define EACH_LAYER(field, count)                                                                       \
    for (int i = 0; i < nl; i++) take(&r, view.layers[i].field, (count))
    if (v1) {
        EACH_LAYER(attn_norm, nd);
        EACH_LAYER(mlp_norm, nd);
        take(&r, view.final_norm, nd);
        take(&r, view.embed, (size_t)V * nd);
        EACH_LAYER(wq, nq * nd);
        EACH_LAYER(wk, nkv * nd);
        EACH_LAYER(wv, nkv * nd);
        EACH_LAYER(wo, nd * nq);
        EACH_LAYER(w_gate, nf * nd);
        EACH_LAYER(w_down, nd * nf);
        EACH_LAYER(w_up, nf * nd);
    } else {
        take(&r, view.embed, (size_t)V * nd);
        EACH_LAYER(attn_norm, nd);
        EACH_LAYER(wq, nq * nd);
        EACH_LAYER(wk, nkv * nd);
        EACH_LAYER(wv, nkv * nd);
        EACH_LAYER(wo, nd * nq);
        EACH_LAYER(mlp_norm, nd);
        EACH_LAYER(w_gate, nf * nd);
        EACH_LAYER(w_down, nd * nf);
        EACH_LAYER(w_up, nf * nd);
        take(&r, view.final_norm, nd);
        r.pos += (size_t)(S * hd); /* RoPE tables: recomputed by the model */
    }
#undef EACH_LAYER
    if (!shared) take(&r, view.lm_head, (size_t)V * nd);
    int rc = 0;
    for (int i = 0; rc == 0 && i < nl; i++) {
        rc = tn_import_unpermute_qk(view.layers[i].wq, c.n_heads, (int)hd, (int64_t)d);
        if (rc == 0) rc = tn_import_unpermute_qk(view.layers[i].wk, c.n_kv_heads, (int)hd, (int64_t)d);
    }
    tn_llama_view_free(&view);
    for (int k = 0; rc == 0 && k < ck->layout.n_tensors; k++) {
        const tn_tensor_info *t = &ck->layout.tensors[k];
        rc = tn_import_check_finite(t->name, ck->params + t->offset, t->numel);
    }
    if (rc == 0) {
        info->n_tensors = ck->layout.n_tensors;
        tn_import_note_dtype(info->source_dtypes, sizeof info->source_dtypes, "F32");
    }
    return rc;
}

int tn_import_llama2c(const char *path, tn_checkpoint *ck, tn_import_info *info) {
    tn_import_info local;
    memset(&local, 0, sizeof local);
    if (!info) info = &local;
    memset(ck, 0, sizeof *ck);
    tn_mapped_file m;
    TN_CHECK(tn_map_file(path, &m));
    int rc = load(&m, ck, info);
    tn_unmap_file(&m);
    if (rc != 0) {
        tn_ckpt_free(ck);
        return tn_err_prefix("%s", path);
    }
    return 0;
}
