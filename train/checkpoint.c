#include "train/checkpoint.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/h5.h"
#include "kernels/cpu/ops_cpu.h"
#include "model/rope.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- config ---------------------------------------------------------------------------------------- */

static int write_config(hid_t f, const tn_llama_config *c) {
    hid_t g;
    TN_CHECK(tn_h5_group(f, "config", &g));
    int rc = 0;
    rc |= tn_h5_attr_set_i64(g, ".", "dim", c->dim);
    rc |= tn_h5_attr_set_i64(g, ".", "n_layers", c->n_layers);
    rc |= tn_h5_attr_set_i64(g, ".", "n_heads", c->n_heads);
    rc |= tn_h5_attr_set_i64(g, ".", "n_kv_heads", c->n_kv_heads);
    rc |= tn_h5_attr_set_i64(g, ".", "ffn_dim", c->ffn_dim);
    rc |= tn_h5_attr_set_i64(g, ".", "vocab_size", c->vocab_size);
    rc |= tn_h5_attr_set_i64(g, ".", "max_seq_len", c->max_seq_len);
    rc |= tn_h5_attr_set_f64(g, ".", "rope_theta", c->rope_theta);
    rc |= tn_h5_attr_set_f64(g, ".", "norm_eps", c->norm_eps);
    if (c->qkv_bias) rc |= tn_h5_attr_set_i64(g, ".", "qkv_bias", 1); /* absent = 0 */
    if (c->qk_norm) rc |= tn_h5_attr_set_i64(g, ".", "qk_norm", 1);   /* absent = 0 */
    if (c->head_dim) rc |= tn_h5_attr_set_i64(g, ".", "head_dim", c->head_dim); /* absent = dim / n_heads */
    if (c->rope_type != TN_ROPE_DEFAULT) { /* absent = default: older readers see what they know */
        rc |= tn_h5_attr_set_str(g, ".", "rope_scaling", tn_rope_type_name(c->rope_type));
        rc |= tn_h5_attr_set_f64(g, ".", "rope_factor", c->rope_factor);
        rc |= tn_h5_attr_set_f64(g, ".", "rope_low_freq_factor", c->rope_low_freq_factor);
        rc |= tn_h5_attr_set_f64(g, ".", "rope_high_freq_factor", c->rope_high_freq_factor);
        rc |= tn_h5_attr_set_i64(g, ".", "rope_original_max_position_embeddings", c->rope_orig_max_pos);
    }
    rc |= tn_h5_attr_set_i64(g, ".", "tied_embeddings", c->tied_embeddings);
    rc |= tn_h5_attr_set_i64(g, ".", "bos_id", c->bos_id);
    rc |= tn_h5_attr_set_i64(g, ".", "eos_id", c->eos_id);
    H5Gclose(g);
    return rc ? -1 : 0;
}

static int read_config(hid_t f, tn_llama_config *c) {
    if (!tn_h5_exists(f, "config")) return tn_err("no /config group (not a trinity checkpoint?)");
    int64_t v;
    double d;
    tn_llama_config_defaults(c);
#define I(key, field)                                                                                  \
    if (tn_h5_attr_get_i64(f, "config", key, &v) != 0) return tn_err_prefix("config");               \
    if (v < -1 || v > ((int64_t)1 << 30)) return tn_err("config: %s = %lld out of range", key, (long long)v); \
    c->field = (int)v
    I("dim", dim);
    I("n_layers", n_layers);
    I("n_heads", n_heads);
    I("n_kv_heads", n_kv_heads);
    I("ffn_dim", ffn_dim);
    I("vocab_size", vocab_size);
    I("max_seq_len", max_seq_len);
    I("tied_embeddings", tied_embeddings);
    I("bos_id", bos_id);
    I("eos_id", eos_id);
#undef I
    if (tn_h5_attr_get_f64(f, "config", "rope_theta", &d) != 0) return tn_err_prefix("config");
    c->rope_theta = (float)d;
    if (tn_h5_attr_get_f64(f, "config", "norm_eps", &d) != 0) return tn_err_prefix("config");
    c->norm_eps = (float)d;
    if (tn_h5_attr_has(f, "config", "qkv_bias")) {
        if (tn_h5_attr_get_i64(f, "config", "qkv_bias", &v) != 0) return tn_err_prefix("config");
        if (v != 0 && v != 1) return tn_err("config: qkv_bias = %lld (0 or 1)", (long long)v);
        c->qkv_bias = (int)v;
    }
    if (tn_h5_attr_has(f, "config", "qk_norm")) {
        if (tn_h5_attr_get_i64(f, "config", "qk_norm", &v) != 0) return tn_err_prefix("config");
        if (v != 0 && v != 1) return tn_err("config: qk_norm = %lld (0 or 1)", (long long)v);
        c->qk_norm = (int)v;
    }
    if (tn_h5_attr_has(f, "config", "head_dim")) {
        if (tn_h5_attr_get_i64(f, "config", "head_dim", &v) != 0) return tn_err_prefix("config");
        if (v < 0 || v > 4096) return tn_err("config: head_dim = %lld out of range", (long long)v);
        c->head_dim = (int)v;
    }
    if (tn_h5_attr_has(f, "config", "rope_scaling")) {
        char name[32];
        if (tn_h5_attr_get_str(f, "config", "rope_scaling", name, sizeof name) != 0 ||
            tn_rope_parse_type(name, &c->rope_type) != 0)
            return tn_err_prefix("config");
        if (tn_h5_attr_get_f64(f, "config", "rope_factor", &d) != 0) return tn_err_prefix("config");
        c->rope_factor = (float)d;
        if (tn_h5_attr_get_f64(f, "config", "rope_low_freq_factor", &d) != 0) return tn_err_prefix("config");
        c->rope_low_freq_factor = (float)d;
        if (tn_h5_attr_get_f64(f, "config", "rope_high_freq_factor", &d) != 0) return tn_err_prefix("config");
        c->rope_high_freq_factor = (float)d;
        if (tn_h5_attr_get_i64(f, "config", "rope_original_max_position_embeddings", &v) != 0) return tn_err_prefix("config");
        if (v <= 0 || v > ((int64_t)1 << 30)) return tn_err("config: rope_original_max_position_embeddings out of range");
        c->rope_orig_max_pos = (int)v;
    }
    return tn_llama_config_validate(c);
}

/* ---- per-tensor float arrays under a group ---------------------------------------------------------- */

/* base is host memory, or (ops set) the table's memory, fetched one tensor at a time. External tensors are
 * written when ext (may be NULL) supplies their values. */
static int write_tensors(hid_t f, const char *group, const tn_llama_layout *l, const float *base, const tn_ops *ops,
                         const tn_checkpoint *ext) {
    char path[160];
    float *buf = NULL;
    const int with_ext = ext && ext->external_values;
    size_t largest = 1;
    for (int i = 0; i < l->n_tensors; i++)
        if ((!l->tensors[i].external || with_ext) && l->tensors[i].numel > largest) largest = l->tensors[i].numel;
    if ((ops && ops->device_memory) || with_ext)
        if (!(buf = tn_alloc(largest, sizeof(float)))) return -1;
    int rc = 0;
    for (int i = 0; i < l->n_tensors && rc == 0; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        const float *src = base + t->offset;
        if (t->external) {
            if (!with_ext) continue;
            const int got = ext->external_values(ext->external_ctx, i, buf);
            if (got <= 0) {
                rc = got;
                continue;
            }
            src = buf;
        } else if (ops && ops->device_memory) {
            rc = ops->download(buf, src, t->numel * sizeof(float));
            src = buf;
        }
        if (rc == 0) rc = tn_h5_write(f, path, TN_H5_F32, t->rank, t->shape, src, 0);
    }
    tn_free(buf);
    return rc;
}

/* A ghost tensor saved by optim/primal.c (tn_primal_save): W = scale · grid[idx], scale per tensor or row. */
static int materialize_ghost(hid_t f, const tn_tensor_info *t, float *out) {
    char path[200];
    int64_t rows = t->shape[0], cols = t->rank == 2 ? t->shape[1] : 1, shape[2] = {rows, cols};
    int rank;
    int64_t gshape[TN_H5_MAX_RANK], sshape[TN_H5_MAX_RANK];
    float *grid = NULL, *scale = NULL;
    uint8_t *idx = NULL;
    int rc = 0;
    snprintf(path, sizeof path, "primal/%s/grid", t->name);
    rc = tn_h5_read_alloc(f, path, TN_H5_F32, &rank, gshape, (void **)&grid);
    if (rc == 0 && (rank != 1 || gshape[0] < 1 || gshape[0] > 256)) rc = tn_err("%s: bad grid", path);
    if (rc == 0) {
        snprintf(path, sizeof path, "primal/%s/scale", t->name);
        rc = tn_h5_read_alloc(f, path, TN_H5_F32, &rank, sshape, (void **)&scale);
        if (rc == 0 && (rank != 1 || (sshape[0] != 1 && sshape[0] != rows))) rc = tn_err("%s: bad shape", path);
    }
    if (rc == 0 && !(idx = tn_alloc((size_t)(rows * cols), 1))) rc = -1;
    if (rc == 0) {
        snprintf(path, sizeof path, "primal/%s/idx", t->name);
        rc = tn_h5_read(f, path, TN_H5_U8, 2, shape, idx);
    }
    for (int64_t r = 0; rc == 0 && r < rows; r++) {
        float s = scale[sshape[0] == 1 ? 0 : r];
        if (!isfinite(s)) rc = tn_err("primal/%s: non-finite scale", t->name);
        for (int64_t c = 0; rc == 0 && c < cols; c++) {
            uint8_t k = idx[r * cols + c];
            if (k >= gshape[0]) rc = tn_err("primal/%s: index %u outside the grid", t->name, k);
            else out[r * cols + c] = s * grid[k];
        }
    }
    tn_free(grid);
    tn_free(scale);
    tn_free(idx);
    return rc;
}

/* One tensor of a group into out (numel floats), validated: its shape, and finite values. In /params, a
 * tensor stored as a PRIMAL ghost is materialised. */
static int read_tensor(hid_t f, const char *group, const tn_tensor_info *t, float *out) {
    char path[160];
    snprintf(path, sizeof path, "%s/%s", group, t->name);
    if (!strcmp(group, "params") && !tn_h5_exists(f, path)) {
        snprintf(path, sizeof path, "primal/%s", t->name);
        if (tn_h5_exists(f, path)) return materialize_ghost(f, t, out);
        snprintf(path, sizeof path, "%s/%s", group, t->name);
    }
    if (tn_h5_read(f, path, TN_H5_F32, t->rank, t->shape, out) != 0) return -1;
    if (!tn_op_all_finite(out, (int64_t)t->numel)) return tn_err("%s: contains NaN or Inf", path);
    return 0;
}

static int read_tensors(hid_t f, const char *group, const tn_llama_layout *l, float *base) {
    for (int i = 0; i < l->n_tensors; i++)
        if (!l->tensors[i].external) TN_CHECK(read_tensor(f, group, &l->tensors[i], base + l->tensors[i].offset));
    return 0;
}

/* ---- save ------------------------------------------------------------------------------------------- */

static int save_body(hid_t f, const tn_checkpoint *ck, const tn_ckpt_hook *hooks, int n_hooks) {
    TN_CHECK(tn_h5_attr_set_str(f, ".", "format", TN_CKPT_FORMAT));
    TN_CHECK(tn_h5_attr_set_i64(f, ".", "version", TN_CKPT_VERSION));
    TN_CHECK(tn_h5_attr_set_i64(f, ".", "step", ck->step));
    if (ck->world_size > 1) TN_CHECK(tn_h5_attr_set_i64(f, ".", "world_size", ck->world_size));
    TN_CHECK(write_config(f, &ck->layout.cfg));
    TN_CHECK(write_tensors(f, "params", &ck->layout, ck->params, ck->ops, ck));
    if (ck->adam_m && ck->adam_v) {
        TN_CHECK(write_tensors(f, "optim/adam_m", &ck->layout, ck->adam_m, ck->ops, NULL));
        TN_CHECK(write_tensors(f, "optim/adam_v", &ck->layout, ck->adam_v, ck->ops, NULL));
    }
    if (ck->has_rng) {
        int64_t n = 4;
        TN_CHECK(tn_h5_write(f, "state/rng", TN_H5_U64, 1, &n, ck->rng.s, 0));
    }
    if (ck->loader_state && ck->loader_state_len) {
        int64_t n = (int64_t)ck->loader_state_len;
        TN_CHECK(tn_h5_write(f, "state/loader", TN_H5_U8, 1, &n, ck->loader_state, 0));
    }
    if (ck->tokenizer && ck->tokenizer_len) {
        int64_t n = (int64_t)ck->tokenizer_len;
        TN_CHECK(tn_h5_write(f, "tokenizer", TN_H5_U8, 1, &n, ck->tokenizer, 6));
        TN_CHECK(tn_h5_attr_set_str(f, "tokenizer", "format", ck->tokenizer_format));
    }
    if (ck->config_text) TN_CHECK(tn_h5_attr_set_str(f, ".", "run_config", ck->config_text));
    for (int i = 0; i < n_hooks; i++) {
        hid_t g;
        TN_CHECK(tn_h5_group(f, hooks[i].group, &g));
        int rc = hooks[i].save(hooks[i].ctx, g);
        H5Gclose(g);
        if (rc != 0) return tn_err_prefix("saving %s state", hooks[i].group);
    }
    return 0;
}

int tn_ckpt_save(const char *path, const tn_checkpoint *ck, const tn_ckpt_hook *hooks, int n_hooks) {
    char *tmp = tn_tmp_path_for(path);
    if (!tmp) return -1;
    hid_t f;
    if (tn_h5_create(tmp, &f) != 0) {
        free(tmp);
        return tn_err_prefix("saving %s", path);
    }
    int rc = save_body(f, ck, hooks, n_hooks);
    if (H5Fclose(f) < 0 && rc == 0) rc = tn_err("closing HDF5 file failed");
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return tn_err_prefix("saving %s", path);
    }
    rc = tn_commit_file(tmp, path);
    free(tmp);
    return rc;
}

/* ---- load ------------------------------------------------------------------------------------------- */

static int check_format(hid_t f) {
    char fmt[64];
    int64_t version;
    if (tn_h5_attr_get_str(f, ".", "format", fmt, sizeof fmt) != 0 || strcmp(fmt, TN_CKPT_FORMAT) != 0)
        return tn_err("not a trinity checkpoint (format attribute is not '%s')", TN_CKPT_FORMAT);
    if (tn_h5_attr_get_i64(f, ".", "version", &version) != 0) return -1;
    if (version < 1 || version > TN_CKPT_VERSION)
        return tn_err("checkpoint version %lld not supported (this build reads up to %d)", (long long)version,
                      TN_CKPT_VERSION);
    return 0;
}

static int load_body(hid_t f, tn_checkpoint *ck, const tn_llama_layout *given, const tn_ckpt_hook *hooks,
                     int n_hooks) {
    TN_CHECK(check_format(f));
    tn_llama_config cfg;
    TN_CHECK(read_config(f, &cfg));
    if (given) {
        if (memcmp(&cfg, &given->cfg, sizeof cfg) != 0) return tn_err("model config differs from the run's");
        TN_CHECK(tn_llama_layout_copy(&ck->layout, given));
    } else {
        TN_CHECK(tn_llama_layout_init(&ck->layout, &cfg));
    }
    if (!(ck->params = tn_alloc(ck->layout.numel, sizeof(float)))) return -1;
    TN_CHECK(read_tensors(f, "params", &ck->layout, ck->params));
    TN_CHECK(tn_h5_attr_get_i64(f, ".", "step", &ck->step));
    ck->world_size = 1;
    if (tn_h5_attr_has(f, ".", "world_size")) TN_CHECK(tn_h5_attr_get_i64(f, ".", "world_size", &ck->world_size));
    /* Moments matter only for resuming. A plain load into the dense layout skips them where some tensors have
     * none there: a PRIMAL run (ghost tensors) and a bf16 STE run (the shadows' moments are under /quant). */
    int external_shadows = 0;
    if (!given && tn_h5_attr_has(f, "quant", "shadow")) {
        char shadow[16];
        TN_CHECK(tn_h5_attr_get_str(f, "quant", "shadow", shadow, sizeof shadow));
        external_shadows = strcmp(shadow, "fp32") != 0;
    }
    if (tn_h5_exists(f, "optim/adam_m") && (given || (!tn_h5_exists(f, "primal") && !external_shadows))) {
        if (!(ck->adam_m = tn_alloc(ck->layout.numel, sizeof(float)))) return -1;
        if (!(ck->adam_v = tn_alloc(ck->layout.numel, sizeof(float)))) return -1;
        TN_CHECK(read_tensors(f, "optim/adam_m", &ck->layout, ck->adam_m));
        TN_CHECK(read_tensors(f, "optim/adam_v", &ck->layout, ck->adam_v));
    }
    if (tn_h5_exists(f, "state/rng")) {
        int64_t n = 4;
        TN_CHECK(tn_h5_read(f, "state/rng", TN_H5_U64, 1, &n, ck->rng.s));
        ck->has_rng = 1;
    }
    if (tn_h5_exists(f, "state/loader")) {
        int rank;
        int64_t shape[TN_H5_MAX_RANK];
        void *buf;
        TN_CHECK(tn_h5_read_alloc(f, "state/loader", TN_H5_U8, &rank, shape, &buf));
        ck->loader_state = buf;
        ck->loader_state_len = (size_t)shape[0];
    }
    if (tn_h5_exists(f, "tokenizer")) {
        int rank;
        int64_t shape[TN_H5_MAX_RANK];
        void *buf;
        TN_CHECK(tn_h5_read_alloc(f, "tokenizer", TN_H5_U8, &rank, shape, &buf));
        ck->tokenizer = buf;
        ck->tokenizer_len = (size_t)shape[0];
        TN_CHECK(tn_h5_attr_get_str(f, "tokenizer", "format", ck->tokenizer_format, sizeof ck->tokenizer_format));
    }
    if (tn_h5_attr_has(f, ".", "run_config")) {
        char *text = malloc(1 << 20);
        if (!text) return tn_err("out of memory");
        if (tn_h5_attr_get_str(f, ".", "run_config", text, 1 << 20) != 0) {
            free(text);
            return -1;
        }
        ck->config_text = text;
    }
    for (int i = 0; i < n_hooks; i++) {
        if (!tn_h5_exists(f, hooks[i].group)) continue;
        hid_t g;
        TN_CHECK(tn_h5_group(f, hooks[i].group, &g));
        int rc = hooks[i].load(hooks[i].ctx, g);
        H5Gclose(g);
        if (rc != 0) return tn_err_prefix("%s state", hooks[i].group);
    }
    return 0;
}

static int load_file(const char *path, const tn_llama_layout *given, tn_checkpoint *ck, const tn_ckpt_hook *hooks,
                     int n_hooks) {
    memset(ck, 0, sizeof *ck);
    hid_t f;
    if (tn_h5_open(path, &f) != 0) return -1;
    int rc = load_body(f, ck, given, hooks, n_hooks);
    tn_h5_close(f);
    if (rc != 0) {
        tn_ckpt_free(ck);
        return tn_err_prefix("%s", path);
    }
    return 0;
}

int tn_ckpt_load(const char *path, tn_checkpoint *ck, const tn_ckpt_hook *hooks, int n_hooks) {
    return load_file(path, NULL, ck, hooks, n_hooks);
}

int tn_ckpt_load_into(const char *path, const tn_llama_layout *layout, tn_checkpoint *ck, const tn_ckpt_hook *hooks,
                      int n_hooks) {
    return load_file(path, layout, ck, hooks, n_hooks);
}

int tn_ckpt_read_config(const char *path, tn_llama_config *cfg) {
    hid_t f;
    if (tn_h5_open(path, &f) != 0) return -1;
    int rc = check_format(f);
    if (rc == 0) rc = read_config(f, cfg);
    tn_h5_close(f);
    return rc ? tn_err_prefix("%s", path) : 0;
}

void tn_ckpt_free(tn_checkpoint *ck) {
    tn_llama_layout_free(&ck->layout);
    tn_free(ck->params);
    tn_free(ck->adam_m);
    tn_free(ck->adam_v);
    tn_free(ck->loader_state);
    tn_free(ck->tokenizer);
    free(ck->config_text);
    memset(ck, 0, sizeof *ck);
}

/* ---- streaming reader --------------------------------------------------------------------------------- */

int tn_ckpt_reader_open(tn_ckpt_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->f = H5I_INVALID_HID;
    hid_t f;
    if (tn_h5_open(path, &f) != 0) return tn_err_prefix("%s", path);
    r->f = f;
    tn_llama_config cfg;
    int rc = check_format(f);
    if (rc == 0) rc = read_config(f, &cfg);
    if (rc == 0) rc = tn_llama_layout_init(&r->layout, &cfg);
    if (rc == 0 && tn_h5_exists(f, "tokenizer")) {
        int rank;
        int64_t shape[TN_H5_MAX_RANK];
        void *buf;
        rc = tn_h5_read_alloc(f, "tokenizer", TN_H5_U8, &rank, shape, &buf);
        if (rc == 0) {
            r->tokenizer = buf;
            r->tokenizer_len = (size_t)shape[0];
            rc = tn_h5_attr_get_str(f, "tokenizer", "format", r->tokenizer_format, sizeof r->tokenizer_format);
        }
    }
    if (rc != 0) {
        tn_ckpt_reader_close(r);
        return tn_err_prefix("%s", path);
    }
    return 0;
}

int tn_ckpt_reader_tensor(tn_ckpt_reader *r, int i, float *out) {
    if (i < 0 || i >= r->layout.n_tensors) return tn_err("checkpoint reader: no tensor %d", i);
    return read_tensor(r->f, "params", &r->layout.tensors[i], out);
}

void tn_ckpt_reader_close(tn_ckpt_reader *r) {
    if (r->f != H5I_INVALID_HID && r->f >= 0) tn_h5_close(r->f);
    tn_llama_layout_free(&r->layout);
    tn_free(r->tokenizer);
    memset(r, 0, sizeof *r);
    r->f = H5I_INVALID_HID;
}
