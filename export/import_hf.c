/* Hugging Face directory import: config.json (LlamaConfig field names) + safetensors weights. */
#include "core/error.h"
#include "core/fileio.h"
#include "export/import_internal.h"
#include "export/safetensors.h"
#include "model/rope.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config.json --------------------------------------------------------------------------------------- */

/* Integer key: required ones fail "config.json: missing key K"; a present key must be an integer in
 * [lo, 2^30]. null counts as absent. */
static int cfg_int(const cJSON *root, const char *key, int required, int def, int lo, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return tn_err("config.json: missing key %s", key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > (double)(1 << 30))
        return tn_err("config.json: %s must be an integer >= %d", key, lo);
    *out = (int)j->valuedouble;
    return 0;
}

static int cfg_float(const cJSON *root, const char *key, float def, float *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || !(j->valuedouble > 0))
        return tn_err("config.json: %s must be a positive number", key);
    *out = (float)j->valuedouble;
    return 0;
}

/* bos/eos: an integer, null (-1), or a list whose first element is used (Llama 3 lists several eos). */
static int cfg_token(const cJSON *root, const char *key, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = -1;
    if (!j || cJSON_IsNull(j)) return 0;
    if (cJSON_IsArray(j)) {
        if (cJSON_GetArraySize(j) == 0) return 0;
        j = cJSON_GetArrayItem(j, 0);
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 0 ||
        j->valuedouble > (double)(1 << 30))
        return tn_err("config.json: %s must be a token id", key);
    *out = (int)j->valuedouble;
    return 0;
}

static int is_true(const cJSON *root, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, key));
}

/* The rotary embedding's settings, in either layout transformers writes: rope_theta and rope_scaling at the
 * top level (4.x), or both inside rope_parameters (5.x: {"rope_theta": ..., "rope_type": ..., "factor": ...}).
 * Types default, linear and llama3 are implemented (model/rope.h); any other type, a key of the object
 * that is not understood (unless null), a partial rotary factor other than 1, and a theta given twice
 * with two values are refused; never guessed. */
static int rope_object(const cJSON *obj, const char *where, tn_llama_config *c) {
    if (!obj || cJSON_IsNull(obj)) return 0;
    if (!cJSON_IsObject(obj)) return tn_err("config.json: %s must be an object or null", where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "rope_type");
    if (!t || cJSON_IsNull(t)) t = cJSON_GetObjectItemCaseSensitive(obj, "type"); /* the older spelling */
    if (t && !cJSON_IsNull(t) && !cJSON_IsString(t)) return tn_err("config.json: %s.rope_type must be a string", where);
    const char *type = t && cJSON_IsString(t) ? t->valuestring : NULL;
    if (!type && cJSON_GetObjectItemCaseSensitive(obj, "factor"))
        return tn_err("config.json: %s has a factor but no rope_type", where);
    if (!type) return 0;
    int rt;
    if (tn_rope_parse_type(type, &rt) != 0) return tn_err_prefix("config.json: %s", where);
    /* every key must be one this type reads (or null) */
    static const char *const common[] = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
    static const char *const llama3[] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int known = cJSON_IsNull(it);
        for (size_t i = 0; i < sizeof common / sizeof common[0] && !known; i++) known = strcmp(it->string, common[i]) == 0;
        size_t n_own = rt == TN_ROPE_LLAMA3 ? 4 : rt == TN_ROPE_LINEAR ? 1 : 0;
        for (size_t i = 0; i < n_own && !known; i++) known = strcmp(it->string, llama3[i]) == 0;
        if (!known)
            return tn_err("config.json: %s.%.48s is not understood for rope_type %s", where, it->string, type);
    }
    c->rope_type = rt;
    if (rt == TN_ROPE_DEFAULT) return 0;
    TN_CHECK(cfg_float(obj, "factor", 0.0f, &c->rope_factor));
    if (!(c->rope_factor > 0)) return tn_err("config.json: %s needs a positive factor for rope_type %s", where, type);
    if (rt == TN_ROPE_LLAMA3) {
        for (int i = 1; i < 4; i++)
            if (!cJSON_GetObjectItemCaseSensitive(obj, llama3[i]))
                return tn_err("config.json: %s needs %s for rope_type llama3", where, llama3[i]);
        TN_CHECK(cfg_float(obj, "low_freq_factor", 0.0f, &c->rope_low_freq_factor));
        TN_CHECK(cfg_float(obj, "high_freq_factor", 0.0f, &c->rope_high_freq_factor));
        TN_CHECK(cfg_int(obj, "original_max_position_embeddings", 1, 0, 1, &c->rope_orig_max_pos));
    }
    return 0;
}

static int rope_config(const cJSON *root, tn_llama_config *c) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    /* Both may be present (a 5.x config keeping the old key too): they must then say the same. */
    tn_llama_config from_rs = *c;
    TN_CHECK(rope_object(rs, "rope_scaling", &from_rs));
    TN_CHECK(rope_object(rp, "rope_parameters", c));
    if (rs && !cJSON_IsNull(rs) && rp && !cJSON_IsNull(rp)) {
        if (from_rs.rope_type != c->rope_type || from_rs.rope_factor != c->rope_factor ||
            from_rs.rope_low_freq_factor != c->rope_low_freq_factor ||
            from_rs.rope_high_freq_factor != c->rope_high_freq_factor || from_rs.rope_orig_max_pos != c->rope_orig_max_pos)
            return tn_err("config.json: rope_scaling and rope_parameters describe different scalings");
    } else if (rs && !cJSON_IsNull(rs)) {
        *c = from_rs;
    }
    TN_CHECK(cfg_float(root, "rope_theta", 10000.0f, &c->rope_theta));
    float prf = 1.0f;
    TN_CHECK(cfg_float(root, "partial_rotary_factor", 1.0f, &prf));
    if (rp && cJSON_IsObject(rp)) {
        if (cJSON_GetObjectItemCaseSensitive(rp, "rope_theta")) {
            float inner = 0;
            TN_CHECK(cfg_float(rp, "rope_theta", 0.0f, &inner));
            if (cJSON_GetObjectItemCaseSensitive(root, "rope_theta") && inner != c->rope_theta)
                return tn_err("config.json: rope_theta %g and rope_parameters.rope_theta %g differ",
                              (double)c->rope_theta, (double)inner);
            c->rope_theta = inner;
        }
        if (cJSON_GetObjectItemCaseSensitive(rp, "partial_rotary_factor"))
            TN_CHECK(cfg_float(rp, "partial_rotary_factor", 1.0f, &prf));
    }
    if (prf != 1.0f) return tn_err("config.json: partial_rotary_factor %g is not supported (1)", (double)prf);
    return 0;
}

enum { FAMILY_LLAMA, FAMILY_MISTRAL, FAMILY_QWEN2, FAMILY_QWEN3 };

/* Qwen2's per-layer attention kinds (transformers >= 4.53 writes layer_types): every layer must be full
 * attention, as a sliding window is not implemented. */
static int full_attention_only(const cJSON *root) {
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types"), *it;
    if (!lt || cJSON_IsNull(lt)) return 0;
    if (!cJSON_IsArray(lt)) return tn_err("config.json: layer_types must be a list");
    cJSON_ArrayForEach(it, lt) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, "full_attention") != 0)
            return tn_err("config.json: layer_types holds '%.32s': only full_attention is supported",
                          cJSON_IsString(it) ? it->valuestring : "?");
    }
    return 0;
}

static int parse_config(const cJSON *root, tn_llama_config *c) {
    if (!cJSON_IsObject(root)) return tn_err("config.json: not a JSON object");
    /* Architecture: Llama; Mistral used without a sliding window (then it is the same network); Qwen2 (Llama
     * with biases on q, k and v), also without a sliding window; Qwen3 (per-head q/k RMSNorms, head_dim). */
    static const struct {
        const char *arch, *model_type;
        int family;
    } archs_known[] = {{"LlamaForCausalLM", "llama", FAMILY_LLAMA},
                       {"MistralForCausalLM", "mistral", FAMILY_MISTRAL},
                       {"Qwen2ForCausalLM", "qwen2", FAMILY_QWEN2},
                       {"Qwen3ForCausalLM", "qwen3", FAMILY_QWEN3}};
    const size_t n_known = sizeof archs_known / sizeof archs_known[0];
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    int family = -1;
    if (cJSON_IsArray(archs) && cJSON_GetArraySize(archs) > 0) {
        const cJSON *a;
        const char *first = NULL;
        cJSON_ArrayForEach(a, archs) {
            if (!cJSON_IsString(a)) continue;
            if (!first) first = a->valuestring;
            for (size_t i = 0; i < n_known && family < 0; i++)
                if (strcmp(a->valuestring, archs_known[i].arch) == 0) family = archs_known[i].family;
        }
        if (family < 0)
            return tn_err("config.json: architecture %.64s is not supported (LlamaForCausalLM, MistralForCausalLM, "
                          "Qwen2ForCausalLM, Qwen3ForCausalLM)", first ? first : "?");
    } else if (cJSON_IsString(mt)) {
        for (size_t i = 0; i < n_known && family < 0; i++)
            if (strcmp(mt->valuestring, archs_known[i].model_type) == 0) family = archs_known[i].family;
        if (family < 0)
            return tn_err("config.json: model_type %.64s is not supported (llama, mistral, qwen2, qwen3)", mt->valuestring);
    } else {
        return tn_err("config.json: missing key architectures");
    }
    const int mistral = family == FAMILY_MISTRAL;
    tn_llama_config_defaults(c);
    c->qkv_bias = family == FAMILY_QWEN2;
    c->qk_norm = family == FAMILY_QWEN3;
    TN_CHECK(cfg_int(root, "hidden_size", 1, 0, 1, &c->dim));
    TN_CHECK(cfg_int(root, "num_hidden_layers", 1, 0, 1, &c->n_layers));
    TN_CHECK(cfg_int(root, "num_attention_heads", 1, 0, 1, &c->n_heads));
    TN_CHECK(cfg_int(root, "num_key_value_heads", 0, c->n_heads, 1, &c->n_kv_heads));
    TN_CHECK(cfg_int(root, "intermediate_size", 1, 0, 1, &c->ffn_dim));
    TN_CHECK(cfg_int(root, "vocab_size", 1, 0, 1, &c->vocab_size));
    TN_CHECK(cfg_int(root, "max_position_embeddings", 0, 2048, 1, &c->max_seq_len));
    TN_CHECK(rope_config(root, c));
    TN_CHECK(cfg_float(root, "rms_norm_eps", 1e-6f, &c->norm_eps)); /* LlamaConfig's default */
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie) && !cJSON_IsNull(tie)) return tn_err("config.json: tie_word_embeddings must be true or false");
    c->tied_embeddings = cJSON_IsTrue(tie);
    TN_CHECK(cfg_token(root, "bos_token_id", &c->bos_id));
    TN_CHECK(cfg_token(root, "eos_token_id", &c->eos_id));
    /* token ids outside the vocabulary (some configs carry stale ones) are dropped, not fatal */
    if (c->bos_id >= c->vocab_size) c->bos_id = -1;
    if (c->eos_id >= c->vocab_size) c->eos_id = -1;

    /* Features this model does not implement: refuse rather than import something that computes
     * different logits. */
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && cJSON_IsString(act) && strcmp(act->valuestring, "silu") != 0)
        return tn_err("config.json: hidden_act %.32s is not supported (silu)", act->valuestring);
    if (is_true(root, "use_sliding_window")) return tn_err("config.json: use_sliding_window true is not supported");
    TN_CHECK(full_attention_only(root));
    if (is_true(root, "attention_bias") || is_true(root, "mlp_bias"))
        return tn_err("config.json: attention_bias / mlp_bias are not supported");
    /* head_dim: an explicit value that differs from hidden_size / num_attention_heads (Qwen3) is kept */
    int head_dim = 0;
    TN_CHECK(cfg_int(root, "head_dim", 0, 0, 1, &head_dim));
    if (head_dim && !(c->dim % c->n_heads == 0 && head_dim == c->dim / c->n_heads)) c->head_dim = head_dim;
    if (mistral) {
        int sw = 0;
        TN_CHECK(cfg_int(root, "sliding_window", 0, 0, 1, &sw));
        if (sw && sw < c->max_seq_len)
            return tn_err("config.json: sliding_window %d < max_position_embeddings %d is not supported", sw, c->max_seq_len);
    }
    if (tn_llama_config_validate(c) != 0) return tn_err_prefix("config.json");
    return 0;
}

int tn_import_hf_config(const char *json, size_t len, tn_llama_config *c) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return tn_err("config.json: not valid JSON");
    int rc = parse_config(root, c);
    cJSON_Delete(root);
    return rc;
}

/* ---- weights ------------------------------------------------------------------------------------------- */

typedef struct {
    tn_safetensors *files;
    int n_files;
} shard_set;

static void shards_close(shard_set *s) {
    for (int i = 0; i < s->n_files; i++) tn_st_close(&s->files[i]);
    free(s->files);
    s->files = NULL;
    s->n_files = 0;
}

static int path_join(char *out, size_t cap, const char *dir, const char *name) {
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap) return tn_err("path too long: %s/%s", dir, name);
    return 0;
}

/* Open model.safetensors, or every shard named in model.safetensors.index.json. */
static int open_shards(const char *dir, shard_set *s) {
    char path[4096];
    TN_CHECK(path_join(path, sizeof path, dir, "model.safetensors.index.json"));
    if (!tn_file_exists(path)) {
        TN_CHECK(path_join(path, sizeof path, dir, "model.safetensors"));
        if (!tn_file_exists(path))
            return tn_err("%s: no model.safetensors or model.safetensors.index.json", dir);
        s->files = calloc(1, sizeof *s->files);
        if (!s->files) return tn_err("out of memory");
        TN_CHECK(tn_st_open(path, &s->files[0]));
        s->n_files = 1;
        return 0;
    }
    char *text;
    size_t len;
    TN_CHECK(tn_read_file(path, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return tn_err("%s: not valid JSON", path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = 0;
    if (!cJSON_IsObject(wm)) rc = tn_err("%s: missing \"weight_map\" object", path);
    /* distinct file names, each a plain name inside dir */
    const char **names = NULL;
    int n_names = 0;
    if (rc == 0) {
        names = calloc((size_t)cJSON_GetArraySize(wm) + 1, sizeof *names);
        if (!names) rc = tn_err("out of memory");
    }
    const cJSON *e;
    if (rc == 0) cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') || strcmp(e->valuestring, "..") == 0 ||
            strcmp(e->valuestring, ".") == 0) {
            rc = tn_err("%s: weight_map entry '%s' is not a file name in the directory", path, e->string ? e->string : "?");
            break;
        }
        int seen = 0;
        for (int i = 0; i < n_names && !seen; i++) seen = strcmp(names[i], e->valuestring) == 0;
        if (!seen) names[n_names++] = e->valuestring;
    }
    if (rc == 0) {
        s->files = calloc((size_t)n_names + 1, sizeof *s->files);
        if (!s->files) rc = tn_err("out of memory");
    }
    for (int i = 0; rc == 0 && i < n_names; i++) {
        char sp[4096];
        if ((rc = path_join(sp, sizeof sp, dir, names[i])) != 0) break;
        if ((rc = tn_st_open(sp, &s->files[i])) != 0) break;
        s->n_files = i + 1;
    }
    /* every mapped tensor is in the file the index names */
    if (rc == 0) cJSON_ArrayForEach(e, wm) {
        int found = 0;
        for (int i = 0; i < s->n_files && !found; i++) {
            const char *base = strrchr(s->files[i].path, '/') + 1;
            if (strcmp(base, e->valuestring) == 0) found = tn_st_find(&s->files[i], e->string) != NULL;
        }
        if (!found) {
            rc = tn_err("%s: tensor '%s' is not in %s", path, e->string, e->valuestring);
            break;
        }
    }
    free(names);
    cJSON_Delete(root);
    return rc;
}

/* Tensors HF checkpoints may carry that the model does not use. */
static int ignorable(const char *name, int tied) {
    if (tied && strcmp(name, "lm_head.weight") == 0) return 1; /* HF ties it to embed_tokens on load */
    size_t n = strlen(name);
    const char *s = "self_attn.rotary_emb.inv_freq"; /* a buffer older transformers saved */
    return n > strlen(s) && strcmp(name + n - strlen(s), s) == 0;
}

/* src[k] / src_file[k]: the safetensors tensor (and its file) for tensor k of layout l. Every tensor
 * placed, shaped and typed, and none missing; nothing is read or allocated beyond the two arrays. */
static int match_tensors(const shard_set *s, const tn_llama_layout *l, const tn_st_tensor **src,
                         const char **src_file) {
    int rc = 0;
    for (int f = 0; rc == 0 && f < s->n_files; f++) {
        const tn_safetensors *st = &s->files[f];
        for (int i = 0; i < st->n_tensors; i++) {
            const tn_st_tensor *t = &st->tensors[i];
            const tn_tensor_info *ti = tn_llama_layout_find(l, t->name);
            if (!ti) {
                if (ignorable(t->name, l->cfg.tied_embeddings)) continue;
                rc = tn_err("%s: unexpected tensor '%s' (not part of this Llama model)", st->path, t->name);
                break;
            }
            int k = (int)(ti - l->tensors);
            if (src[k]) {
                rc = tn_err("tensor '%s' appears in both %s and %s", t->name, src_file[k], st->path);
                break;
            }
            if (t->rank != ti->rank || t->shape[0] != ti->shape[0] || (ti->rank == 2 && t->shape[1] != ti->shape[1])) {
                char got[96] = "", want[64];
                for (int d = 0; d < t->rank; d++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
                if (ti->rank == 2) snprintf(want, sizeof want, "%lld, %lld", (long long)ti->shape[0], (long long)ti->shape[1]);
                else snprintf(want, sizeof want, "%lld", (long long)ti->shape[0]);
                rc = tn_err("%s: tensor '%s' has shape [%s], expected [%s]", st->path, t->name, got, want);
                break;
            }
            if (t->dtype != TN_ST_F32 && t->dtype != TN_ST_F16 && t->dtype != TN_ST_BF16) {
                rc = tn_err("%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", st->path, t->name,
                            tn_st_dtype_name(t->dtype));
                break;
            }
            src[k] = t;
            src_file[k] = st->path;
        }
    }
    for (int k = 0; rc == 0 && k < l->n_tensors; k++)
        if (!src[k]) rc = tn_err("missing tensor '%s'", l->tensors[k].name);
    return rc;
}

/* The parameters are allocated only after every tensor has been matched: config.json alone can describe a
 * model of hundreds of GB, and a directory whose tensors do not back it must fail before that (as the
 * GGUF importer does). Matched tensors lie inside their files (tn_safetensors checks every offset). */
static int load_weights(const shard_set *s, const tn_llama_config *cfg, tn_checkpoint *ck, tn_import_info *info) {
    tn_llama_layout lay;
    TN_CHECK(tn_llama_layout_init(&lay, cfg));
    const int n = lay.n_tensors;
    const tn_st_tensor **src = calloc((size_t)n, sizeof *src);
    const char **src_file = calloc((size_t)n, sizeof *src_file);
    int rc = (src && src_file) ? match_tensors(s, &lay, src, src_file) : tn_err("out of memory");
    tn_llama_layout_free(&lay);
    if (rc == 0) rc = tn_import_begin(ck, cfg); /* the same layout, in the same order */
    for (int k = 0; rc == 0 && k < n; k++) {
        const tn_tensor_info *ti = &ck->layout.tensors[k];
        float *dst = ck->params + ti->offset;
        if ((rc = tn_st_to_f32(src[k], dst)) != 0) break;
        if ((rc = tn_import_check_finite(ti->name, dst, ti->numel)) != 0) break;
        tn_import_note_dtype(info->source_dtypes, sizeof info->source_dtypes, tn_st_dtype_name(src[k]->dtype));
        info->n_tensors++;
    }
    free(src);
    free(src_file);
    return rc;
}

int tn_import_hf(const char *dir, tn_checkpoint *ck, tn_import_info *info) {
    tn_import_info local;
    memset(&local, 0, sizeof local);
    if (!info) info = &local;
    memset(ck, 0, sizeof *ck);
    char path[4096];
    TN_CHECK(path_join(path, sizeof path, dir, "config.json"));
    if (!tn_file_exists(path)) return tn_err("%s: no config.json (not a Hugging Face model directory)", dir);
    char *text;
    size_t len;
    TN_CHECK(tn_read_file(path, &text, &len));
    tn_llama_config cfg;
    int rc = tn_import_hf_config(text, len, &cfg);
    free(text);
    if (rc != 0) return tn_err_prefix("%s", dir);

    shard_set s = {0};
    rc = open_shards(dir, &s);
    if (rc == 0) rc = load_weights(&s, &cfg, ck, info);
    shards_close(&s);
    /* tokenizer: handed to data/tokenizer.h as the directory (it picks tokenizer.json or tokenizer.model);
     * the raw fallback keeps the SentencePiece model when there is one, else tokenizer.json */
    if (rc == 0) {
        const char *cands[] = {"tokenizer.model", "tokenizer.json"};
        for (int i = 0; i < 2 && rc == 0; i++) {
            if ((rc = path_join(path, sizeof path, dir, cands[i])) != 0) break;
            if (tn_file_exists(path)) {
                rc = tn_import_take_tokenizer(ck, dir, i == 0 ? "sentencepiece-model" : "hf-tokenizer-json", NULL, 0,
                                              path, info);
                break;
            }
        }
    }
    if (rc != 0) {
        tn_ckpt_free(ck);
        return -1;
    }
    return 0;
}
