#include "model/config.h"
#include "core/config.h"
#include "core/error.h"
#include "model/rope.h"

#include <math.h>

void tn_llama_config_defaults(tn_llama_config *c) {
    c->dim = 0;
    c->n_layers = 0;
    c->n_heads = 0;
    c->n_kv_heads = 0;
    c->ffn_dim = 0;
    c->vocab_size = 0;
    c->max_seq_len = 2048;
    c->rope_theta = 10000.0f;
    c->rope_type = TN_ROPE_DEFAULT;
    c->rope_factor = 1.0f;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_orig_max_pos = 8192;
    c->qkv_bias = 0;
    c->head_dim = 0;
    c->qk_norm = 0;
    c->norm_eps = 1e-5f;
    c->tied_embeddings = 0;
    c->bos_id = -1;
    c->eos_id = -1;
}

int tn_llama_config_validate(const tn_llama_config *c) {
    const int64_t cap = (int64_t)1 << 24;
    if (c->dim <= 0 || c->dim > cap) return tn_err("model config: dim %d out of range", c->dim);
    if (c->n_layers <= 0 || c->n_layers > 4096) return tn_err("model config: n_layers %d out of range", c->n_layers);
    if (c->head_dim < 0 || c->head_dim > 4096) return tn_err("model config: head_dim %d out of range", c->head_dim);
    if (c->n_heads <= 0 || c->n_heads > (1 << 16) || (c->head_dim == 0 && c->dim % c->n_heads != 0))
        return tn_err("model config: n_heads %d must be positive and divide dim %d (or head_dim be given)", c->n_heads,
                      c->dim);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0)
        return tn_err("model config: n_kv_heads %d must be positive and divide n_heads %d", c->n_kv_heads, c->n_heads);
    if (tn_llama_head_dim(c) % 2 != 0 || tn_llama_head_dim(c) <= 0)
        return tn_err("model config: head dim %d must be even and positive for RoPE", tn_llama_head_dim(c));
    if (c->ffn_dim <= 0 || c->ffn_dim > cap) return tn_err("model config: ffn_dim %d out of range", c->ffn_dim);
    if (c->vocab_size <= 0 || c->vocab_size > cap) return tn_err("model config: vocab_size %d out of range", c->vocab_size);
    if (c->max_seq_len <= 0 || c->max_seq_len > cap) return tn_err("model config: max_seq_len %d out of range", c->max_seq_len);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) return tn_err("model config: rope_theta must be positive");
    TN_CHECK(tn_rope_validate(c));
    if (c->qkv_bias != 0 && c->qkv_bias != 1) return tn_err("model config: qkv_bias must be 0 or 1");
    if (c->qk_norm != 0 && c->qk_norm != 1) return tn_err("model config: qk_norm must be 0 or 1");
    if (!(c->norm_eps > 0) || !(c->norm_eps < 1)) return tn_err("model config: norm_eps must be in (0, 1)");
    if (c->bos_id >= c->vocab_size || c->eos_id >= c->vocab_size)
        return tn_err("model config: bos_id/eos_id (%d/%d) must be below vocab_size %d", c->bos_id, c->eos_id, c->vocab_size);
    if (tn_llama_config_n_params(c) > ((int64_t)1 << 40)) return tn_err("model config: too many parameters");
    return 0;
}

int64_t tn_llama_config_n_params(const tn_llama_config *c) {
    int64_t d = c->dim, hd = c->n_heads ? tn_llama_head_dim(c) : 0, q = (int64_t)c->n_heads * hd,
            kv = (int64_t)c->n_kv_heads * hd;
    int64_t per_layer = 2 * d + 2 * q * d + 2 * kv * d + 3 * d * (int64_t)c->ffn_dim;
    if (c->qkv_bias) per_layer += q + 2 * kv;
    if (c->qk_norm) per_layer += 2 * hd;
    int64_t n = (int64_t)c->vocab_size * d + per_layer * c->n_layers + d;
    if (!c->tied_embeddings) n += (int64_t)c->vocab_size * d;
    return n;
}

int tn_llama_config_from_ini(struct tn_config *ini, tn_llama_config *c) {
    tn_llama_config_defaults(c);
    int64_t v;
    double f;
    int b;
    const char *s = "model";
    TN_CHECK(tn_config_int_req(ini, s, "dim", &v)); c->dim = (int)v;
    TN_CHECK(tn_config_int_req(ini, s, "n_layers", &v)); c->n_layers = (int)v;
    TN_CHECK(tn_config_int_req(ini, s, "n_heads", &v)); c->n_heads = (int)v;
    TN_CHECK(tn_config_int(ini, s, "n_kv_heads", c->n_heads, &v)); c->n_kv_heads = (int)v;
    TN_CHECK(tn_config_int_req(ini, s, "ffn_dim", &v)); c->ffn_dim = (int)v;
    TN_CHECK(tn_config_int(ini, s, "vocab_size", 0, &v)); c->vocab_size = (int)v;
    TN_CHECK(tn_config_int(ini, s, "max_seq_len", 2048, &v)); c->max_seq_len = (int)v;
    TN_CHECK(tn_config_float(ini, s, "rope_theta", 10000.0, &f)); c->rope_theta = (float)f;
    TN_CHECK(tn_rope_config_from_ini(ini, c));
    TN_CHECK(tn_config_float(ini, s, "norm_eps", 1e-5, &f)); c->norm_eps = (float)f;
    TN_CHECK(tn_config_bool(ini, s, "tied_embeddings", 1, &b)); c->tied_embeddings = b;
    TN_CHECK(tn_config_bool(ini, s, "qkv_bias", 0, &b)); c->qkv_bias = b;
    TN_CHECK(tn_config_bool(ini, s, "qk_norm", 0, &b)); c->qk_norm = b;
    TN_CHECK(tn_config_int(ini, s, "head_dim", 0, &v));
    if (v < 0 || v > 4096) return tn_err("[model] head_dim %lld out of range", (long long)v);
    c->head_dim = (int)v;
    return 0;
}
