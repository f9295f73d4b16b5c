/* PEFT LoRA adapters (export/peft.h). */
#include "export/peft.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "export/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "base_model.model."

/* "base_model.model.model.layers.3.mlp.up_proj.lora_A.weight" of slot s (ab: 'A' or 'B'). */
static void tensor_name(const tn_lora *l, int s, char ab, char *buf, size_t cap) {
    const int k = l->slot_kind[s];
    snprintf(buf, cap, PREFIX "model.layers.%d.%s.%s.lora_%c.weight", l->slot_layer[s], k <= TN_W_O ? "self_attn" : "mlp",
             tn_lora_kind_name(k), ab);
}

static char *path_in(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

int tn_peft_save(const char *dir, const tn_lora *l, const char *base) {
    TN_CHECK(tn_mkdir_p(dir));
    cJSON *j = cJSON_CreateObject();
    if (!j) return tn_err("out of memory");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    if (base) cJSON_AddStringToObject(j, "base_model_name_or_path", base);
    else cJSON_AddNullToObject(j, "base_model_name_or_path");
    cJSON_AddNumberToObject(j, "r", l->spec.rank);
    cJSON_AddNumberToObject(j, "lora_alpha", l->spec.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", l->spec.dropout);
    cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
    for (int k = 0; k < TN_W_COUNT; k++)
        if (l->spec.kinds & (1u << k)) cJSON_AddItemToArray(tm, cJSON_CreateString(tn_lora_kind_name(k)));
    int all = 1;
    for (int i = 0; i < l->spec.n_layers; i++) all &= l->spec.layer_on[i] != 0;
    if (all) {
        cJSON_AddNullToObject(j, "layers_to_transform");
    } else {
        cJSON *lt = cJSON_AddArrayToObject(j, "layers_to_transform");
        for (int i = 0; i < l->spec.n_layers; i++)
            if (l->spec.layer_on[i]) cJSON_AddItemToArray(lt, cJSON_CreateNumber(i));
    }
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "use_rslora", 0);
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1); /* a bool: peft reads the string "true" as an init method */
    cJSON_AddNullToObject(j, "modules_to_save");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return tn_err("out of memory");

    tn_st_out *t = calloc((size_t)(2 * l->n_slots), sizeof *t);
    char (*names)[128] = calloc((size_t)(2 * l->n_slots), sizeof *names);
    char *st_path = path_in(dir, "adapter_model.safetensors"), *cfg_path = path_in(dir, "adapter_config.json");
    int rc = t && names && st_path && cfg_path ? 0 : tn_err("out of memory");
    /* the values in host memory: the adapters' own on the CPU table, else a downloaded copy */
    float *copy = NULL;
    const float *P = l->params;
    if (rc == 0 && l->ops->device_memory) {
        rc = (copy = tn_alloc((size_t)l->numel, sizeof(float))) ? tn_lora_get_params(l, copy) : -1;
        P = copy;
    }
    for (int s = 0; rc == 0 && s < l->n_slots; s++) {
        tensor_name(l, s, 'A', names[2 * s], sizeof names[0]);
        tensor_name(l, s, 'B', names[2 * s + 1], sizeof names[0]);
        t[2 * s] = (tn_st_out){names[2 * s], 2, {l->spec.rank, l->cols[s]}, P + l->off_a[s]};
        t[2 * s + 1] = (tn_st_out){names[2 * s + 1], 2, {l->rows[s], l->spec.rank}, P + l->off_b[s]};
    }
    static const char *const meta[] = {"format", "pt"};
    if (rc == 0) rc = tn_st_write_f32(st_path, t, 2 * l->n_slots, meta, 1);
    if (rc == 0) rc = tn_write_file_atomic(cfg_path, text, strlen(text));
    free(text);
    tn_free(copy);
    free(t);
    free(names);
    free(st_path);
    free(cfg_path);
    return rc ? tn_err_prefix("adapter %s", dir) : 0;
}

/* ---- load ------------------------------------------------------------------------------------------------- */

static int parse_config(const char *dir, const tn_llama_config *cfg, tn_lora_spec *spec) {
    char *path = path_in(dir, "adapter_config.json"), *text = NULL;
    size_t len;
    if (!path) return tn_err("out of memory");
    int rc = tn_read_file(path, &text, &len);
    free(path);
    TN_CHECK(rc);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return tn_err("adapter_config.json: not a JSON object");
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type"), *r = cJSON_GetObjectItemCaseSensitive(j, "r"),
                *alpha = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha"),
                *drop = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout"),
                *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules"),
                *lt = cJSON_GetObjectItemCaseSensitive(j, "layers_to_transform"),
                *bias = cJSON_GetObjectItemCaseSensitive(j, "bias");
    /* options that change the math per module or the base itself: refused, never silently dropped */
    static const char *const refused[] = {"use_rslora", "use_dora", "fan_in_fan_out", "lora_bias"},
                             *const must_be_empty[] = {"rank_pattern", "alpha_pattern", "layer_replication"};
    memset(spec, 0, sizeof *spec);
    spec->n_layers = cfg->n_layers;
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") != 0) rc = tn_err("adapter_config.json: peft_type is not LORA");
    else if (!cJSON_IsNumber(r) || r->valuedouble != floor(r->valuedouble) || r->valuedouble < 1 || r->valuedouble > TN_LORA_MAX_RANK)
        rc = tn_err("adapter_config.json: r must be an integer in [1, %d]", TN_LORA_MAX_RANK);
    else if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0)) rc = tn_err("adapter_config.json: lora_alpha must be > 0");
    else if (bias && !cJSON_IsNull(bias) && !(cJSON_IsString(bias) && !strcmp(bias->valuestring, "none")))
        rc = tn_err("adapter_config.json: bias training ('bias' other than \"none\") is not supported");
    for (size_t k = 0; rc == 0 && k < sizeof refused / sizeof refused[0]; k++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, refused[k])))
            rc = tn_err("adapter_config.json: %s = true is not supported", refused[k]);
    for (size_t k = 0; rc == 0 && k < sizeof must_be_empty / sizeof must_be_empty[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, must_be_empty[k]);
        if (v && !cJSON_IsNull(v) && !((cJSON_IsObject(v) || cJSON_IsArray(v)) && cJSON_GetArraySize(v) == 0))
            rc = tn_err("adapter_config.json: %s is not supported (it must be empty or null)", must_be_empty[k]);
    }
    if (rc == 0) {
        spec->rank = (int)r->valuedouble;
        spec->alpha = alpha->valuedouble;
        spec->dropout = cJSON_IsNumber(drop) ? drop->valuedouble : 0;
        if (cJSON_IsString(tm) && !strcmp(tm->valuestring, "all-linear")) {
            spec->kinds = (1u << TN_W_COUNT) - 1;
        } else if (cJSON_IsArray(tm) && cJSON_GetArraySize(tm) > 0) {
            const cJSON *it;
            cJSON_ArrayForEach(it, tm) {
                int k = 0;
                while (k < TN_W_COUNT && !(cJSON_IsString(it) && !strcmp(it->valuestring, tn_lora_kind_name(k)))) k++;
                if (k == TN_W_COUNT) {
                    rc = tn_err("adapter_config.json: target module %s is not one of q_proj, k_proj, v_proj, o_proj, "
                                "gate_proj, up_proj, down_proj",
                                cJSON_IsString(it) ? it->valuestring : "(not a string)");
                    break;
                }
                spec->kinds |= 1u << k;
            }
        } else {
            rc = tn_err("adapter_config.json: target_modules must be a list of module names or \"all-linear\"");
        }
    }
    if (rc == 0 && !(spec->layer_on = calloc((size_t)(cfg->n_layers ? cfg->n_layers : 1), 1))) rc = tn_err("out of memory");
    if (rc == 0 && (!lt || cJSON_IsNull(lt))) {
        memset(spec->layer_on, 1, (size_t)cfg->n_layers);
    } else if (rc == 0) {
        const cJSON *it;
        if (cJSON_IsNumber(lt)) {
            const int v = lt->valueint;
            if (v < 0 || v >= cfg->n_layers) rc = tn_err("adapter_config.json: layer %d does not exist (the model has %d)", v, cfg->n_layers);
            else spec->layer_on[v] = 1;
        } else if (cJSON_IsArray(lt)) {
            cJSON_ArrayForEach(it, lt) {
                if (!cJSON_IsNumber(it) || it->valueint < 0 || it->valueint >= cfg->n_layers) {
                    rc = tn_err("adapter_config.json: layers_to_transform: layer %d does not exist (the model has %d)",
                                cJSON_IsNumber(it) ? it->valueint : -1, cfg->n_layers);
                    break;
                }
                spec->layer_on[it->valueint] = 1;
            }
        } else {
            rc = tn_err("adapter_config.json: layers_to_transform must be null, an integer or a list");
        }
    }
    cJSON_Delete(j);
    if (rc) tn_lora_spec_free(spec);
    return rc;
}

int tn_peft_load(const char *dir, const tn_llama_config *cfg, tn_lora *l) {
    tn_lora_spec spec;
    memset(l, 0, sizeof *l);
    if (parse_config(dir, cfg, &spec) != 0) return tn_err_prefix("adapter %s", dir);
    int rc = tn_lora_create(l, &spec, cfg, 0);
    tn_lora_spec_free(&spec);
    if (rc) {
        tn_lora_free(l);
        return tn_err_prefix("adapter %s", dir);
    }
    char *path = path_in(dir, "adapter_model.safetensors");
    tn_safetensors st;
    if (!path || tn_st_open(path, &st) != 0) {
        free(path);
        tn_lora_free(l);
        return tn_err_prefix("adapter %s", dir);
    }
    free(path);
    int used = 0;
    for (int s = 0; rc == 0 && s < l->n_slots; s++) {
        for (int ab = 0; rc == 0 && ab < 2; ab++) {
            char name[128];
            tensor_name(l, s, ab ? 'B' : 'A', name, sizeof name);
            const tn_st_tensor *t = tn_st_find(&st, name);
            if (!t) { /* PEFT writes names without the adapter name; accept "...lora_A.default.weight" too */
                char alt[160];
                snprintf(alt, sizeof alt, "%.*s.default.weight", (int)(strlen(name) - strlen(".weight")), name);
                t = tn_st_find(&st, alt);
            }
            const int64_t want0 = ab ? l->rows[s] : l->spec.rank, want1 = ab ? l->spec.rank : l->cols[s];
            if (!t) rc = tn_err("missing tensor %s", name);
            else if (t->rank != 2 || t->shape[0] != want0 || t->shape[1] != want1)
                rc = tn_err("tensor %s has shape [%lld, %lld]; the base needs [%lld, %lld]", name,
                            (long long)t->shape[0], (long long)(t->rank > 1 ? t->shape[1] : 0), (long long)want0,
                            (long long)want1);
            else rc = tn_st_to_f32(t, l->params + (ab ? l->off_b[s] : l->off_a[s]));
            used++;
        }
    }
    if (rc == 0 && st.n_tensors != used) {
        for (int i = 0; i < st.n_tensors; i++) { /* name the first tensor nothing asked for */
            int known = 0;
            for (int s = 0; s < l->n_slots && !known; s++)
                for (int ab = 0; ab < 2 && !known; ab++) {
                    char name[128];
                    tensor_name(l, s, ab ? 'B' : 'A', name, sizeof name);
                    known = !strncmp(st.tensors[i].name, name, strlen(name) - strlen("weight"));
                }
            if (!known) {
                rc = tn_err("tensor %s is not an adapter of the configured modules and layers", st.tensors[i].name);
                break;
            }
        }
    }
    for (int64_t i = 0; rc == 0 && i < l->numel; i++)
        if (!isfinite(l->params[i])) rc = tn_err("adapter_model.safetensors: non-finite value");
    tn_st_close(&st);
    if (rc) {
        tn_lora_free(l);
        return tn_err_prefix("adapter %s", dir);
    }
    return 0;
}
