#include "model/params.h"
#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add(tn_llama_layout *l, int cap, const char *name, int rank, int64_t r, int64_t c, tn_param_group g,
               int layer, int kind, int vec) {
    if (l->n_tensors >= cap) return tn_err("layout: too many tensors");
    tn_tensor_info *t = &l->tensors[l->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rank = rank;
    t->shape[0] = r;
    t->shape[1] = rank == 2 ? c : 1;
    t->numel = (size_t)(r * (rank == 2 ? c : 1));
    t->offset = l->numel;
    /* Keep every tensor 16-float (64-byte) aligned inside the flat buffer for SIMD loads. */
    l->numel += (t->numel + 15) & ~(size_t)15;
    t->group = g;
    t->layer = layer;
    t->kind = kind;
    t->vec = vec;
    return 0;
}

int tn_llama_layout_init(tn_llama_layout *l, const tn_llama_config *cfg) {
    memset(l, 0, sizeof *l);
    TN_CHECK(tn_llama_config_validate(cfg));
    l->cfg = *cfg;
    int cap = 3 + 14 * cfg->n_layers;
    l->tensors = calloc((size_t)cap, sizeof *l->tensors);
    if (!l->tensors) return tn_err("layout: out of memory");
    int64_t d = cfg->dim, hd = tn_llama_head_dim(cfg), q = (int64_t)cfg->n_heads * hd,
            kv = (int64_t)cfg->n_kv_heads * hd, f = cfg->ffn_dim, V = cfg->vocab_size;
    char n[96];
    TN_CHECK(add(l, cap, "model.embed_tokens.weight", 2, V, d, TN_GROUP_EMBED, -1, -1, -1));
    for (int i = 0; i < cfg->n_layers; i++) {
#define ADD(suffix, rank, r, c, g, k, v)                                                               \
    do {                                                                                               \
        snprintf(n, sizeof n, "model.layers.%d.%s", i, suffix);                                        \
        TN_CHECK(add(l, cap, n, rank, r, c, g, i, k, v));                                              \
    } while (0)
        ADD("input_layernorm.weight", 1, d, 1, TN_GROUP_NORM, -1, TN_V_ATTN_NORM);
        ADD("self_attn.q_proj.weight", 2, q, d, TN_GROUP_ATTN, TN_W_Q, -1);
        if (cfg->qkv_bias) {
            ADD("self_attn.q_proj.bias", 1, q, 1, TN_GROUP_BIAS, -1, TN_V_Q_BIAS);
        }
        ADD("self_attn.k_proj.weight", 2, kv, d, TN_GROUP_ATTN, TN_W_K, -1);
        if (cfg->qkv_bias) {
            ADD("self_attn.k_proj.bias", 1, kv, 1, TN_GROUP_BIAS, -1, TN_V_K_BIAS);
        }
        ADD("self_attn.v_proj.weight", 2, kv, d, TN_GROUP_ATTN, TN_W_V, -1);
        if (cfg->qkv_bias) {
            ADD("self_attn.v_proj.bias", 1, kv, 1, TN_GROUP_BIAS, -1, TN_V_V_BIAS);
        }
        if (cfg->qk_norm) {
            ADD("self_attn.q_norm.weight", 1, hd, 1, TN_GROUP_NORM, -1, TN_V_Q_NORM);
            ADD("self_attn.k_norm.weight", 1, hd, 1, TN_GROUP_NORM, -1, TN_V_K_NORM);
        }
        ADD("self_attn.o_proj.weight", 2, d, q, TN_GROUP_ATTN, TN_W_O, -1);
        ADD("post_attention_layernorm.weight", 1, d, 1, TN_GROUP_NORM, -1, TN_V_MLP_NORM);
        ADD("mlp.gate_proj.weight", 2, f, d, TN_GROUP_MLP, TN_W_GATE, -1);
        ADD("mlp.up_proj.weight", 2, f, d, TN_GROUP_MLP, TN_W_UP, -1);
        ADD("mlp.down_proj.weight", 2, d, f, TN_GROUP_MLP, TN_W_DOWN, -1);
#undef ADD
    }
    TN_CHECK(add(l, cap, "model.norm.weight", 1, d, 1, TN_GROUP_NORM, -1, -1, -1));
    if (!cfg->tied_embeddings) TN_CHECK(add(l, cap, "lm_head.weight", 2, V, d, TN_GROUP_HEAD, -1, -1, -1));
    return 0;
}

int tn_llama_layout_set_external(tn_llama_layout *l, const uint8_t *is_external) {
    l->numel = 0;
    for (int i = 0; i < l->n_tensors; i++) {
        tn_tensor_info *t = &l->tensors[i];
        t->external = is_external[i] != 0;
        if (t->external && t->group == TN_GROUP_NORM) return tn_err("layout: %s cannot be external", t->name);
        if (t->external) {
            t->offset = 0;
            continue;
        }
        t->offset = l->numel;
        l->numel += (t->numel + 15) & ~(size_t)15;
    }
    if (l->numel == 0) l->numel = 16;
    return 0;
}

int tn_llama_layout_index(const tn_llama_layout *l, int layer, int kind) {
    int embed = -1;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        if (layer >= 0 && t->layer == layer && t->kind == kind) return i;
        if (layer < 0 && t->group == TN_GROUP_HEAD) return i;
        if (t->group == TN_GROUP_EMBED) embed = i;
    }
    return layer < 0 ? embed : -1;
}

void tn_llama_layout_free(tn_llama_layout *l) {
    free(l->tensors);
    memset(l, 0, sizeof *l);
}

int tn_llama_layout_copy(tn_llama_layout *dst, const tn_llama_layout *src) {
    *dst = *src;
    dst->tensors = malloc((size_t)src->n_tensors * sizeof *src->tensors);
    if (!dst->tensors) {
        memset(dst, 0, sizeof *dst);
        return tn_err("out of memory");
    }
    memcpy(dst->tensors, src->tensors, (size_t)src->n_tensors * sizeof *src->tensors);
    return 0;
}

const tn_tensor_info *tn_llama_layout_find(const tn_llama_layout *l, const char *name) {
    for (int i = 0; i < l->n_tensors; i++)
        if (strcmp(l->tensors[i].name, name) == 0) return &l->tensors[i];
    return NULL;
}

int tn_llama_view_init(tn_llama_view *v, const tn_llama_layout *l, float *base) {
    memset(v, 0, sizeof *v);
    v->n_layers = l->cfg.n_layers;
    v->layers = calloc((size_t)v->n_layers, sizeof *v->layers);
    if (!v->layers) return tn_err("view: out of memory");
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        float *p = base + t->offset;
        if (t->layer < 0) {
            if (t->group == TN_GROUP_EMBED) v->embed = p;
            else if (t->group == TN_GROUP_HEAD) v->lm_head = p;
            else v->final_norm = p;
            continue;
        }
        tn_layer_view *lv = &v->layers[t->layer];
        if (t->vec >= 0) {
            float **slot[TN_V_COUNT] = {&lv->attn_norm, &lv->mlp_norm, &lv->bq, &lv->bk, &lv->bv, &lv->q_norm, &lv->k_norm};
            *slot[t->vec] = p;
            continue;
        }
        switch (t->kind) {
        case TN_W_Q: lv->wq = p; break;
        case TN_W_K: lv->wk = p; break;
        case TN_W_V: lv->wv = p; break;
        case TN_W_O: lv->wo = p; break;
        case TN_W_GATE: lv->w_gate = p; break;
        case TN_W_UP: lv->w_up = p; break;
        case TN_W_DOWN: lv->w_down = p; break;
        }
    }
    if (!v->lm_head) v->lm_head = v->embed;
    return 0;
}

const char *tn_llama_head_name(const tn_llama_config *cfg) {
    return cfg->tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
}

int tn_tensor_is_head(const tn_tensor_info *t, const tn_llama_config *cfg) {
    return t->group == TN_GROUP_HEAD || (cfg->tied_embeddings && t->group == TN_GROUP_EMBED);
}

int tn_bias_target(const tn_tensor_info *t) {
    switch (t->vec) {
    case TN_V_Q_BIAS: return TN_W_Q;
    case TN_V_K_BIAS: return TN_W_K;
    case TN_V_V_BIAS: return TN_W_V;
    default: return -1;
    }
}

void tn_llama_view_free(tn_llama_view *v) {
    free(v->layers);
    v->layers = NULL;
}

float *tn_layer_matrix(const tn_layer_view *lv, tn_linear_kind kind) {
    switch (kind) {
    case TN_W_Q: return lv->wq;
    case TN_W_K: return lv->wk;
    case TN_W_V: return lv->wv;
    case TN_W_O: return lv->wo;
    case TN_W_GATE: return lv->w_gate;
    case TN_W_UP: return lv->w_up;
    case TN_W_DOWN: return lv->w_down;
    default: return NULL;
    }
}

void tn_llama_init_random(const tn_llama_layout *l, float *params, tn_rng *rng, float std) {
    float resid_std = std / sqrtf(2.0f * (float)l->cfg.n_layers);
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        float *p = params + t->offset;
        if (t->external) continue;
        if (t->group == TN_GROUP_NORM || t->group == TN_GROUP_BIAS) {
            for (size_t j = 0; j < t->numel; j++) p[j] = t->group == TN_GROUP_NORM ? 1.0f : 0.0f;
            continue;
        }
        float s = (t->kind == TN_W_O || t->kind == TN_W_DOWN) ? resid_std : std;
        for (size_t j = 0; j < t->numel; j++) p[j] = s * tn_rng_normal(rng);
    }
}
