/* Parameter layout: every tensor of the model in one flat float allocation, in a fixed order, with
 * Hugging Face names ("model.layers.3.mlp.gate_proj.weight") and row-major shapes [out, in].
 * The same layout describes the parameters, their gradients and the AdamW moments, so any per-tensor
 * walk (checkpointing, quantizers, optimizers) iterates tn_llama_layout.tensors. */
#ifndef TN_MODEL_PARAMS_H
#define TN_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "model/config.h"

/* Which part of the model a tensor belongs to; quantizers select by group. */
typedef enum {
    TN_GROUP_EMBED = 0, /* model.embed_tokens.weight */
    TN_GROUP_NORM,      /* every RMSNorm weight (also Qwen3's per-head q_norm / k_norm, [head_dim]) */
    TN_GROUP_ATTN,      /* q_proj, k_proj, v_proj, o_proj */
    TN_GROUP_MLP,       /* gate_proj, up_proj, down_proj */
    TN_GROUP_HEAD,      /* lm_head.weight (absent when tied) */
    TN_GROUP_BIAS,      /* q/k/v_proj.bias (Qwen2): rank 1, float, never quantized, no weight decay */
} tn_param_group;

/* Index of a matrix inside a layer, in layout order. */
typedef enum { TN_W_Q = 0, TN_W_K, TN_W_V, TN_W_O, TN_W_GATE, TN_W_UP, TN_W_DOWN, TN_W_COUNT } tn_linear_kind;

/* Index of a vector (rank-1 tensor) inside a layer: the two RMSNorm weights, Qwen2's q/k/v biases and
 * Qwen3's per-head q/k norms. Set by the layout, so nobody needs to tell them apart by name. */
typedef enum {
    TN_V_ATTN_NORM = 0, /* input_layernorm */
    TN_V_MLP_NORM,      /* post_attention_layernorm */
    TN_V_Q_BIAS,        /* self_attn.q_proj.bias (qkv_bias) */
    TN_V_K_BIAS,
    TN_V_V_BIAS,
    TN_V_Q_NORM,        /* self_attn.q_norm (qk_norm) */
    TN_V_K_NORM,
    TN_V_COUNT
} tn_layer_vector;

typedef struct {
    char name[96];
    int rank;          /* 1 or 2 */
    int64_t shape[2];  /* [rows(out), cols(in)] or [n] */
    size_t offset;     /* in floats, from the start of the flat buffer */
    size_t numel;
    tn_param_group group;
    int layer;         /* -1 outside the layer stack */
    int kind;          /* tn_linear_kind for matrices inside layers, -1 otherwise */
    int vec;           /* tn_layer_vector for vectors inside layers, -1 otherwise */
    int external;      /* 1: no storage in the flat buffers (a PRIMAL ghost tensor); offset is 0 */
} tn_tensor_info;

typedef struct {
    tn_llama_config cfg;
    int n_tensors;
    tn_tensor_info *tensors;
    size_t numel; /* total floats */
} tn_llama_layout;

/* Views into one flat buffer laid out by a tn_llama_layout. lm_head == embed when tied. */
typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w_gate, *w_up, *w_down;
    float *bq, *bk, *bv; /* NULL without qkv_bias */
    float *q_norm, *k_norm; /* [head_dim] each; NULL without qk_norm */
} tn_layer_view;

typedef struct {
    float *embed;      /* [vocab, dim] */
    float *final_norm; /* [dim] */
    float *lm_head;    /* [vocab, dim] */
    tn_layer_view *layers;
    int n_layers;
} tn_llama_view;

int tn_llama_layout_init(tn_llama_layout *l, const tn_llama_config *cfg);
void tn_llama_layout_free(tn_llama_layout *l);
/* dst = a copy of src (its own tensor array). */
int tn_llama_layout_copy(tn_llama_layout *dst, const tn_llama_layout *src);
const tn_tensor_info *tn_llama_layout_find(const tn_llama_layout *l, const char *name);
/* Mark tensors external (is_external[i] != 0 for tensor i) and re-pack the others' offsets, so that
 * flat buffers hold only the float tensors. Norms cannot be external; an external embedding needs a weight
 * source that supplies it (model/llama.h). */
int tn_llama_layout_set_external(tn_llama_layout *l, const uint8_t *is_external);
/* Tensor index of (layer, kind); layer -1 with kind TN_W_COUNT is the LM head (or the tied embedding). */
int tn_llama_layout_index(const tn_llama_layout *l, int layer, int kind);

/* Build views over `base` (which must hold l->numel floats). */
int tn_llama_view_init(tn_llama_view *v, const tn_llama_layout *l, float *base);
void tn_llama_view_free(tn_llama_view *v);
/* The matrix (TN_W_Q, TN_W_K, TN_W_V) whose output a bias tensor is added to; -1 for other tensors. */
int tn_bias_target(const tn_tensor_info *t);
/* The LM head's matrix: lm_head.weight, or the embedding table of a model that ties it to the head. */
const char *tn_llama_head_name(const tn_llama_config *cfg);
int tn_tensor_is_head(const tn_tensor_info *t, const tn_llama_config *cfg);
/* Pointer to matrix `kind` of layer `layer` in a view. */
float *tn_layer_matrix(const tn_layer_view *lv, tn_linear_kind kind);

/* Initialise parameters for training from scratch: matrices ~ N(0, std^2), norms = 1, biases = 0. The residual
 * output projections (o_proj, down_proj) use std / sqrt(2 * n_layers) (GPT-2 / llm.c). */
void tn_llama_init_random(const tn_llama_layout *l, float *params, tn_rng *rng, float std);

#endif
