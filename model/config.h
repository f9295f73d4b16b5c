/* The Llama architecture's hyper-parameters, with Hugging Face LlamaConfig meanings. */
#ifndef TN_MODEL_CONFIG_H
#define TN_MODEL_CONFIG_H

#include <stdint.h>

/* RoPE frequency scaling, Hugging Face's rope_scaling / rope_parameters "rope_type" (model/rope.h has
 * the formulas). */
typedef enum { TN_ROPE_DEFAULT = 0, TN_ROPE_LINEAR = 1, TN_ROPE_LLAMA3 = 2, TN_ROPE_N_TYPES } tn_rope_type;

typedef struct {
    int dim;             /* hidden_size */
    int n_layers;        /* num_hidden_layers */
    int n_heads;         /* num_attention_heads */
    int n_kv_heads;      /* num_key_value_heads (grouped-query attention when < n_heads) */
    int ffn_dim;         /* intermediate_size */
    int vocab_size;
    int max_seq_len;     /* max_position_embeddings */
    float rope_theta;
    float norm_eps;      /* rms_norm_eps */
    int tied_embeddings; /* tie_word_embeddings: lm_head shares embed_tokens */
    int bos_id, eos_id;  /* -1 when the model has none */
    /* RoPE frequency scaling (model/rope.h); all zero reads as none */
    int rope_type;       /* tn_rope_type */
    float rope_factor;   /* linear, llama3: "factor" (1 for default) */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;                             /* llama3: original_max_position_embeddings */
    int qkv_bias;        /* 1: q_proj, k_proj and v_proj have biases (Qwen2 / Qwen2.5) */
    int head_dim;        /* 0: dim / n_heads; else the explicit head dimension (Qwen3: 128 with dim 1024, 16 heads) */
    int qk_norm;         /* 1: RMSNorm over each head of q and of k before RoPE, weights [head_dim] (Qwen3) */
} tn_llama_config;

static inline int tn_llama_head_dim(const tn_llama_config *c) {
    return c->head_dim > 0 ? c->head_dim : c->dim / c->n_heads;
}

/* Checks every field for sanity (positive sizes, dim divisible by heads unless head_dim is given, heads by kv
 * heads, even head dim for RoPE, sizes small enough that tensor byte counts fit in 63 bits). Message names
 * the field. */
int tn_llama_config_validate(const tn_llama_config *c);

/* Defaults used when a source omits a field. */
void tn_llama_config_defaults(tn_llama_config *c);

/* Read the [model] section of a trinity config (keys in docs/CONFIG.md). */
struct tn_config;
int tn_llama_config_from_ini(struct tn_config *ini, tn_llama_config *c);

/* Total parameter count (tied head counted once). */
int64_t tn_llama_config_n_params(const tn_llama_config *c);

#endif
