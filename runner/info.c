/* `trinity info FILE` (runner/info.h): the file type is told from its first bytes (TRIN, GGUF, HDF5) and,
 * for HDF5, from the root attribute `format` (trinity-checkpoint or trinity-shard). Each describer
 * builds one cJSON object; text output is rendered from the same object, so the two never disagree. */
#include "runner/info.h"
#include "model/rope.h"

#include "core/error.h"
#include "core/gguf.h"
#include "core/h5.h"
#include "core/json.h"
#include "data/chat.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "export/trin.h"
#include "train/checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_config(cJSON *o, const tn_llama_config *c) {
    cJSON *j = cJSON_AddObjectToObject(o, "config");
    cJSON_AddNumberToObject(j, "dim", c->dim);
    cJSON_AddNumberToObject(j, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", tn_llama_head_dim(c));
    cJSON_AddNumberToObject(j, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_seq_len", c->max_seq_len);
    tn_json_add_num(j, "rope_theta", c->rope_theta);
    cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
    cJSON_AddStringToObject(rs, "type", tn_rope_type_name(c->rope_type));
    if (c->rope_type != TN_ROPE_DEFAULT) tn_json_add_num(rs, "factor", c->rope_factor);
    if (c->rope_type == TN_ROPE_LLAMA3) {
        tn_json_add_num(rs, "low_freq_factor", c->rope_low_freq_factor);
        tn_json_add_num(rs, "high_freq_factor", c->rope_high_freq_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_max_pos);
    }
    tn_json_add_num(j, "norm_eps", c->norm_eps);
    cJSON_AddBoolToObject(j, "qkv_bias", c->qkv_bias != 0);
    cJSON_AddBoolToObject(j, "qk_norm", c->qk_norm != 0);
    cJSON_AddBoolToObject(j, "tied_embeddings", c->tied_embeddings != 0);
    cJSON_AddNumberToObject(j, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(j, "eos_id", c->eos_id);
    cJSON_AddNumberToObject(j, "n_params", (double)tn_llama_config_n_params(c));
}

static cJSON *shape_json(int rank, const int64_t *shape) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < rank; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[i]));
    return a;
}

/* ---- .trin ------------------------------------------------------------------------------------------ */

static int describe_trin(const char *path, cJSON *o) {
    tn_trin *t;
    TN_CHECK(tn_trin_open(path, &t)); /* full validation: info doubles as an integrity check */
    cJSON_AddStringToObject(o, "format", "trin");
    cJSON_AddNumberToObject(o, "version", t->version);
    cJSON_AddNumberToObject(o, "bytes", (double)t->file_size);
    cJSON_AddNumberToObject(o, "header_bytes", (double)t->header_size);
    cJSON_AddNumberToObject(o, "data_offset", (double)t->data_offset);
    add_config(o, &t->cfg);
    cJSON *tk = cJSON_AddObjectToObject(o, "tokenizer");
    cJSON_AddStringToObject(tk, "format", t->tokenizer_format);
    cJSON_AddNumberToObject(tk, "bytes", (double)t->tokenizer_len);
    tn_tokenizer *tok = NULL;
    if (!strcmp(t->tokenizer_format, "trinity-tokenizer") && tn_tokenizer_deserialize(t->tokenizer, t->tokenizer_len, &tok) == 0) {
        cJSON_AddStringToObject(tk, "kind", tn_tokenizer_kind_name(tok));
        cJSON_AddNumberToObject(tk, "vocab_size", (double)tn_tokenizer_vocab_size(tok));
        cJSON_AddNumberToObject(tk, "bos_id", (double)tn_tokenizer_bos_id(tok));
        cJSON_AddNumberToObject(tk, "eos_id", (double)tn_tokenizer_eos_id(tok));
        cJSON_AddStringToObject(tk, "sha256", tn_tokenizer_sha256(tok));
        tn_chat_family fam;
        const char *ct = tn_tokenizer_chat_template(tok);
        if (ct) cJSON_AddStringToObject(tk, "chat_template", tn_chat_recognise(ct, &fam) == 0 ? tn_chat_family_name(fam) : "unrecognised");
        tn_tokenizer_free(tok);
    }
    cJSON *meta = cJSON_AddObjectToObject(o, "meta");
    for (const char *line = t->meta; *line;) {
        const char *nl = strchr(line, '\n'), *eq = strchr(line, '=');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (eq && eq < line + len) {
            char key[128], val[1024];
            snprintf(key, sizeof key, "%.*s", (int)(eq - line), line);
            snprintf(val, sizeof val, "%.*s", (int)(line + len - eq - 1), eq + 1);
            cJSON_AddStringToObject(meta, key, val);
        }
        line += len + (nl ? 1 : 0);
    }
    int64_t by_dtype[TN_TRIN_N_DTYPES] = {0};
    cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
    for (int i = 0; i < t->n_tensors; i++) {
        const tn_trin_tensor *e = &t->tensors[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", e->name);
        cJSON_AddStringToObject(j, "dtype", tn_trin_dtype_name(e->dtype));
        cJSON_AddItemToObject(j, "shape", shape_json(e->rank, e->shape));
        cJSON_AddStringToObject(j, "scales", tn_trin_scale_layout_name(e->scale_layout));
        cJSON_AddNumberToObject(j, "grid", e->grid_len);
        cJSON_AddNumberToObject(j, "act_bits", e->act_bits);
        cJSON_AddNumberToObject(j, "offset", (double)e->offset);
        cJSON_AddNumberToObject(j, "bytes", (double)(e->size + 4 * (uint64_t)e->n_scales));
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", e->crc);
        cJSON_AddStringToObject(j, "crc32", crc);
        cJSON_AddItemToArray(arr, j);
        by_dtype[e->dtype] += (int64_t)e->size;
    }
    cJSON *bd = cJSON_AddObjectToObject(o, "bytes_by_dtype");
    for (int d = 0; d < TN_TRIN_N_DTYPES; d++)
        if (by_dtype[d]) cJSON_AddNumberToObject(bd, tn_trin_dtype_name((tn_trin_dtype)d), (double)by_dtype[d]);
    tn_trin_close(t);
    return 0;
}

/* ---- HDF5: checkpoint or shard ------------------------------------------------------------------------ */

typedef struct {
    cJSON *arr;
    int n;
} h5_list;

static herr_t list_dataset(hid_t g, const char *name, const H5L_info_t *info, void *vctx) {
    (void)info;
    h5_list *l = vctx;
    hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
    if (obj < 0) return 0;
    if (H5Iget_type(obj) == H5I_DATASET) {
        hid_t sp = H5Dget_space(obj), ty = H5Dget_type(obj);
        hsize_t dims[8] = {0};
        int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (rank > 8) rank = 8;
        if (rank >= 0) H5Sget_simple_extent_dims(sp, dims, NULL);
        H5T_class_t cls = H5Tget_class(ty);
        size_t size = H5Tget_size(ty);
        char tname[16];
        int sgn = cls == H5T_INTEGER ? H5Tget_sign(ty) == H5T_SGN_2 : 0;
        snprintf(tname, sizeof tname, "%s%zu", cls == H5T_FLOAT ? "f" : cls == H5T_INTEGER ? (sgn ? "i" : "u") : "other",
                 8 * size);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", name);
        cJSON_AddStringToObject(j, "dtype", tname);
        cJSON *sh = cJSON_AddArrayToObject(j, "shape");
        for (int i = 0; i < rank; i++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)dims[i]));
        cJSON_AddItemToArray(l->arr, j);
        l->n++;
        if (sp >= 0) H5Sclose(sp);
        if (ty >= 0) H5Tclose(ty);
    }
    H5Oclose(obj);
    return 0;
}

static int describe_checkpoint(const char *path, hid_t f, cJSON *o) {
    tn_llama_config cfg;
    TN_CHECK(tn_ckpt_read_config(path, &cfg));
    cJSON_AddStringToObject(o, "format", "checkpoint");
    int64_t v;
    if (tn_h5_attr_has(f, ".", "version") && tn_h5_attr_get_i64(f, ".", "version", &v) == 0)
        cJSON_AddNumberToObject(o, "version", (double)v);
    if (tn_h5_attr_has(f, ".", "step") && tn_h5_attr_get_i64(f, ".", "step", &v) == 0)
        cJSON_AddNumberToObject(o, "step", (double)v);
    add_config(o, &cfg);
    const char *kind = tn_h5_exists(f, "primal") ? "primal" : tn_h5_exists(f, "quant") ? "ste" : "dense";
    cJSON_AddStringToObject(o, "kind", kind);
    if (tn_h5_exists(f, "quant")) {
        char buf[64];
        cJSON *q = cJSON_AddObjectToObject(o, "quant");
        static const char *keys[] = {"grid_name", "scale", "layers"};
        for (int i = 0; i < 3; i++)
            if (tn_h5_attr_has(f, "quant", keys[i]) && tn_h5_attr_get_str(f, "quant", keys[i], buf, sizeof buf) == 0)
                cJSON_AddStringToObject(q, keys[i], buf);
        static const char *ikeys[] = {"scale_per_row", "act_bits", "lambda_warmup_steps"};
        for (int i = 0; i < 3; i++)
            if (tn_h5_attr_has(f, "quant", ikeys[i]) && tn_h5_attr_get_i64(f, "quant", ikeys[i], &v) == 0)
                cJSON_AddNumberToObject(q, ikeys[i], (double)v);
    }
    if (tn_h5_exists(f, "tokenizer")) {
        char fmt[64] = "";
        if (tn_h5_attr_has(f, "tokenizer", "format")) tn_h5_attr_get_str(f, "tokenizer", "format", fmt, sizeof fmt);
        int rank;
        int64_t shape[TN_H5_MAX_RANK];
        cJSON *tk = cJSON_AddObjectToObject(o, "tokenizer");
        cJSON_AddStringToObject(tk, "format", fmt);
        if (tn_h5_shape(f, "tokenizer", &rank, shape) == 0 && rank == 1) cJSON_AddNumberToObject(tk, "bytes", (double)shape[0]);
    }
    h5_list l = {cJSON_AddArrayToObject(o, "datasets"), 0};
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, list_dataset, &l);
    return 0;
}

static int describe_shard(const char *path, cJSON *o) {
    tn_shard s;
    TN_CHECK(tn_shard_load(path, &s));
    cJSON_AddStringToObject(o, "format", "shard");
    cJSON_AddStringToObject(o, "kind", s.kind);
    cJSON_AddStringToObject(o, "template", s.template_name);
    cJSON_AddNumberToObject(o, "vocab_size", (double)s.vocab_size);
    cJSON_AddNumberToObject(o, "bos_id", (double)s.bos_id);
    cJSON_AddNumberToObject(o, "eos_id", (double)s.eos_id);
    cJSON_AddStringToObject(o, "tokenizer_sha256", s.tokenizer_sha256);
    cJSON_AddNumberToObject(o, "tokens", (double)s.n_tokens);
    cJSON_AddNumberToObject(o, "docs", (double)s.n_docs);
    int64_t masked = 0;
    for (int64_t i = 0; i < s.n_tokens; i++) masked += s.loss_mask[i] != 0;
    cJSON_AddNumberToObject(o, "loss_tokens", (double)masked);
    tn_shard_free(&s);
    return 0;
}

static int describe_h5(const char *path, cJSON *o) {
    hid_t f;
    TN_CHECK(tn_h5_open(path, &f));
    char fmt[64] = "";
    int rc = 0;
    if (tn_h5_attr_has(f, ".", "format")) rc = tn_h5_attr_get_str(f, ".", "format", fmt, sizeof fmt);
    if (rc == 0) {
        if (!strcmp(fmt, TN_CKPT_FORMAT)) rc = describe_checkpoint(path, f, o);
        else if (!strcmp(fmt, TN_SHARD_FORMAT)) rc = describe_shard(path, o);
        else rc = tn_err("%s: an HDF5 file but neither a trinity checkpoint nor a shard (format \"%s\")", path, fmt);
    }
    tn_h5_close(f);
    return rc;
}

/* ---- GGUF ------------------------------------------------------------------------------------------- */

static cJSON *gguf_value(const tn_gguf_kv *kv) {
    char buf[256];
    switch (kv->type) {
    case TN_GGUF_STRING:
        snprintf(buf, sizeof buf, "%.*s", (int)(kv->str_len < 200 ? kv->str_len : 200), kv->str);
        return cJSON_CreateString(buf);
    case TN_GGUF_BOOL: return cJSON_CreateBool(kv->num.u != 0);
    case TN_GGUF_FLOAT32:
    case TN_GGUF_FLOAT64: return cJSON_CreateNumber(kv->num.f);
    case TN_GGUF_INT8:
    case TN_GGUF_INT16:
    case TN_GGUF_INT32:
    case TN_GGUF_INT64: return cJSON_CreateNumber((double)kv->num.i);
    case TN_GGUF_ARRAY:
        snprintf(buf, sizeof buf, "[%s x %" PRIu64 "]", tn_gguf_type_name(kv->arr_type), kv->arr_len);
        return cJSON_CreateString(buf);
    default: return cJSON_CreateNumber((double)kv->num.u);
    }
}

static int describe_gguf(const char *path, cJSON *o) {
    tn_gguf g;
    TN_CHECK(tn_gguf_open(path, &g));
    cJSON_AddStringToObject(o, "format", "gguf");
    cJSON_AddNumberToObject(o, "version", g.version);
    cJSON_AddNumberToObject(o, "alignment", g.alignment);
    cJSON_AddNumberToObject(o, "data_offset", (double)g.data_offset);
    cJSON *meta = cJSON_AddObjectToObject(o, "meta");
    for (uint64_t i = 0; i < g.n_kv; i++) cJSON_AddItemToObject(meta, g.kv[i].key, gguf_value(&g.kv[i]));
    cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const tn_gguf_tensor *t = &g.tensors[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", t->name);
        cJSON_AddStringToObject(j, "dtype", tn_ggml_type_name(t->type));
        cJSON *sh = cJSON_AddArrayToObject(j, "shape"); /* ggml order: ne[0] = row length */
        for (uint32_t d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->ne[d]));
        cJSON_AddNumberToObject(j, "offset", (double)t->offset);
        cJSON_AddNumberToObject(j, "bytes", (double)t->n_bytes);
        cJSON_AddItemToArray(arr, j);
    }
    tn_gguf_close(&g);
    return 0;
}

/* ---- text rendering ----------------------------------------------------------------------------------- */

static double num(const cJSON *o, const char *k) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(j) ? j->valuedouble : 0;
}
static const char *str(const cJSON *o, const char *k) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(j) ? j->valuestring : "";
}

static void size_text(double b, char *buf, size_t cap) {
    if (b >= 1e9) snprintf(buf, cap, "%.2f GB", b / 1e9);
    else if (b >= 1e6) snprintf(buf, cap, "%.1f MB", b / 1e6);
    else if (b >= 1e3) snprintf(buf, cap, "%.1f KB", b / 1e3);
    else snprintf(buf, cap, "%.0f B", b);
}

static void shape_text(const cJSON *sh, char *buf, size_t cap) {
    size_t w = (size_t)snprintf(buf, cap, "[");
    const cJSON *d;
    int first = 1;
    cJSON_ArrayForEach(d, sh) {
        w += (size_t)snprintf(buf + w, w < cap ? cap - w : 0, "%s%.0f", first ? "" : ", ", d->valuedouble);
        first = 0;
    }
    if (w < cap) snprintf(buf + w, cap - w, "]");
}

static void print_config(FILE *f, const cJSON *c) {
    if (!c) return;
    fprintf(f, "model     dim %.0f, layers %.0f, heads %.0f (kv %.0f, head dim %.0f), ffn %.0f, vocab %.0f\n", num(c, "dim"),
            num(c, "n_layers"), num(c, "n_heads"), num(c, "n_kv_heads"), num(c, "head_dim"), num(c, "ffn_dim"),
            num(c, "vocab_size"));
    fprintf(f, "          max_seq_len %.0f, rope_theta %g, norm_eps %g, %s embeddings, bos %.0f, eos %.0f\n",
            num(c, "max_seq_len"), num(c, "rope_theta"), num(c, "norm_eps"),
            cJSON_IsTrue(cJSON_GetObjectItem(c, "tied_embeddings")) ? "tied" : "untied", num(c, "bos_id"), num(c, "eos_id"));
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "qkv_bias"))) fprintf(f, "          q/k/v projections with biases\n");
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "qk_norm"))) fprintf(f, "          per-head RMSNorm of q and k\n");
    const cJSON *rs = cJSON_GetObjectItem(c, "rope_scaling");
    const cJSON *rt = rs ? cJSON_GetObjectItem(rs, "type") : NULL;
    if (cJSON_IsString(rt) && strcmp(rt->valuestring, "default") != 0) {
        fprintf(f, "          RoPE scaling %s, factor %g", rt->valuestring, num(rs, "factor"));
        if (strcmp(rt->valuestring, "llama3") == 0)
            fprintf(f, ", low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %.0f",
                    num(rs, "low_freq_factor"), num(rs, "high_freq_factor"), num(rs, "original_max_position_embeddings"));
        fprintf(f, "\n");
    }
    fprintf(f, "params    %.0f (%.3fB)\n", num(c, "n_params"), num(c, "n_params") / 1e9);
}

static void print_text(FILE *f, const cJSON *o) {
    const char *fmt = str(o, "format");
    char sz[32], sh[96];
    fprintf(f, "file      %s\n", str(o, "file"));
    if (!strcmp(fmt, "trin")) {
        size_text(num(o, "bytes"), sz, sizeof sz);
        fprintf(f, "format    TRIN v%.0f, %s (header %.0f bytes, data from offset %.0f)\n", num(o, "version"), sz,
                num(o, "header_bytes"), num(o, "data_offset"));
        print_config(f, cJSON_GetObjectItem(o, "config"));
        const cJSON *tk = cJSON_GetObjectItem(o, "tokenizer");
        if (str(tk, "format")[0])
            fprintf(f, "tokenizer %s, %.0f bytes%s%s%s%s\n", str(tk, "format"), num(tk, "bytes"), str(tk, "kind")[0] ? ", " : "",
                    str(tk, "kind"), str(tk, "chat_template")[0] ? ", chat template " : "", str(tk, "chat_template"));
        else fprintf(f, "tokenizer none\n");
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(o, "meta")) fprintf(f, "meta      %s = %s\n", m->string, m->valuestring);
        const cJSON *bd = cJSON_GetObjectItem(o, "bytes_by_dtype");
        cJSON_ArrayForEach(m, bd) {
            size_text(m->valuedouble, sz, sizeof sz);
            fprintf(f, "weights   %-4s %s\n", m->string, sz);
        }
        const cJSON *ts = cJSON_GetObjectItem(o, "tensors");
        fprintf(f, "tensors   %d\n  %-48s %-5s %-14s %-7s %5s %4s %12s %10s %s\n", cJSON_GetArraySize(ts), "name", "dtype",
                "shape", "scales", "grid", "act", "offset", "bytes", "crc32");
        const cJSON *t;
        cJSON_ArrayForEach(t, ts) {
            shape_text(cJSON_GetObjectItem(t, "shape"), sh, sizeof sh);
            fprintf(f, "  %-48s %-5s %-14s %-7s %5.0f %4.0f %12.0f %10.0f %s\n", str(t, "name"), str(t, "dtype"), sh,
                    str(t, "scales"), num(t, "grid"), num(t, "act_bits"), num(t, "offset"), num(t, "bytes"), str(t, "crc32"));
        }
    } else if (!strcmp(fmt, "checkpoint")) {
        fprintf(f, "format    trinity checkpoint v%.0f, %s, step %.0f\n", num(o, "version"), str(o, "kind"), num(o, "step"));
        print_config(f, cJSON_GetObjectItem(o, "config"));
        const cJSON *q = cJSON_GetObjectItem(o, "quant");
        if (q)
            fprintf(f, "quant     grid %s, scale %s%s, layers %s, act_bits %.0f\n", str(q, "grid_name"), str(q, "scale"),
                    num(q, "scale_per_row") ? " per row" : "", str(q, "layers"), num(q, "act_bits"));
        const cJSON *tk = cJSON_GetObjectItem(o, "tokenizer");
        if (tk) fprintf(f, "tokenizer %s, %.0f bytes\n", str(tk, "format"), num(tk, "bytes"));
        const cJSON *ds = cJSON_GetObjectItem(o, "datasets"), *d;
        fprintf(f, "datasets  %d\n", cJSON_GetArraySize(ds));
        cJSON_ArrayForEach(d, ds) {
            shape_text(cJSON_GetObjectItem(d, "shape"), sh, sizeof sh);
            fprintf(f, "  %-60s %-5s %s\n", str(d, "name"), str(d, "dtype"), sh);
        }
    } else if (!strcmp(fmt, "shard")) {
        fprintf(f, "format    trinity shard, kind %s%s%s\n", str(o, "kind"), str(o, "template")[0] ? ", template " : "",
                str(o, "template"));
        fprintf(f, "tokens    %.0f in %.0f documents, %.0f loss targets\n", num(o, "tokens"), num(o, "docs"),
                num(o, "loss_tokens"));
        fprintf(f, "vocab     %.0f, bos %.0f, eos %.0f, tokenizer sha256 %s\n", num(o, "vocab_size"), num(o, "bos_id"),
                num(o, "eos_id"), str(o, "tokenizer_sha256")[0] ? str(o, "tokenizer_sha256") : "(none)");
    } else if (!strcmp(fmt, "gguf")) {
        fprintf(f, "format    GGUF v%.0f, alignment %.0f, data from offset %.0f\n", num(o, "version"), num(o, "alignment"),
                num(o, "data_offset"));
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(o, "meta")) {
            if (cJSON_IsString(m)) fprintf(f, "meta      %s = %s\n", m->string, m->valuestring);
            else if (cJSON_IsBool(m)) fprintf(f, "meta      %s = %s\n", m->string, cJSON_IsTrue(m) ? "true" : "false");
            else fprintf(f, "meta      %s = %g\n", m->string, m->valuedouble);
        }
        const cJSON *ts = cJSON_GetObjectItem(o, "tensors"), *t;
        fprintf(f, "tensors   %d\n", cJSON_GetArraySize(ts));
        cJSON_ArrayForEach(t, ts) {
            shape_text(cJSON_GetObjectItem(t, "shape"), sh, sizeof sh);
            fprintf(f, "  %-48s %-8s %-16s %12.0f %10.0f\n", str(t, "name"), str(t, "dtype"), sh, num(t, "offset"),
                    num(t, "bytes"));
        }
    }
}

int tn_info(const char *path, int json, FILE *out) {
    unsigned char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return tn_err("%s: cannot open", path);
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    cJSON *o = cJSON_CreateObject();
    if (!o) return tn_err("out of memory");
    cJSON_AddStringToObject(o, "file", path);
    int rc;
    if (got >= 4 && !memcmp(magic, TN_TRIN_MAGIC, 4)) rc = describe_trin(path, o);
    else if (got >= 4 && !memcmp(magic, "GGUF", 4)) rc = describe_gguf(path, o);
    else if (got == 8 && !memcmp(magic, "\x89HDF\r\n\x1a\n", 8)) rc = describe_h5(path, o);
    else rc = tn_err("%s: unknown file type (not TRIN, GGUF or HDF5)", path);
    if (rc == 0) {
        if (json) rc = tn_json_print_line(out, o);
        else print_text(out, o);
    }
    cJSON_Delete(o);
    return rc;
}
