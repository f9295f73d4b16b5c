/* Checkpoint -> Hugging Face model directory (export/export_hf.h). One pass over the layout for the
 * safetensors header (names, shapes, offsets are known before any data is read), a second that decides each
 * tensor (export/export_source.h), turns it into floats and writes them in the chosen dtype, a few rows at a
 * time, so no second copy of the model is ever held. */
#include "export/export_hf.h"

#include "core/error.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "export/export_source.h"
#include "model/rope.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tn_export_hf_opts_default(tn_export_hf_opts *o) {
    o->quantize = NULL;
    o->dtype = TN_HF_BF16;
}

int tn_export_hf_parse_dtype(const char *s, tn_hf_dtype *d) {
    if (!strcmp(s, "bf16")) *d = TN_HF_BF16;
    else if (!strcmp(s, "f32")) *d = TN_HF_F32;
    else return tn_err("--hf-dtype '%.32s': must be f32 or bf16", s);
    return 0;
}

/* bfloat16 is the top half of binary32: add half an ulp of the result (minus one when the kept part is
 * even, so that exact ties go to the even neighbour) and truncate. A carry into the exponent is still the
 * right rounding, up to +inf for values beyond the largest bfloat16. */
uint16_t tn_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* NaN: keep it a quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- config.json ---------------------------------------------------------------------------------------- */

/* A float as the shortest decimal that reads back as the same float (1e-05, not 9.99999974737875e-06),
 * always with a '.' or an exponent (8.0, not 8): transformers checks that rope factors are Python floats,
 * and trinity's importer rounds the value back to f. The config's floats are all finite (validated). */
static cJSON *num_f(float f) {
    char buf[40];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}

static cJSON *token_id(int id) { return id >= 0 ? cJSON_CreateNumber(id) : cJSON_CreateNull(); }

int tn_export_hf_config_json(const tn_llama_config *c, tn_hf_dtype dtype, char **json, const char **arch) {
    *json = NULL;
    const int hd = tn_llama_head_dim(c);
    if (c->qk_norm && c->qkv_bias)
        return tn_err("config: q/k norms together with q/k/v biases have no transformers class (Qwen3ForCausalLM has "
                      "no biases, Qwen2ForCausalLM no q/k norms)");
    if (c->qkv_bias && c->head_dim > 0 && c->head_dim * c->n_heads != c->dim)
        return tn_err("config: head_dim %d with q/k/v biases has no transformers class (Qwen2ForCausalLM derives the "
                      "head size from hidden_size / num_attention_heads = %d)", c->head_dim, c->dim / c->n_heads);
    TN_CHECK(tn_rope_validate(c));
    const char *a = c->qk_norm ? "Qwen3ForCausalLM" : c->qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
    const char *mt = c->qk_norm ? "qwen3" : c->qkv_bias ? "qwen2" : "llama";
    const int qwen = c->qk_norm || c->qkv_bias;
    cJSON *j = cJSON_CreateObject();
    if (!j) return tn_err("out of memory");
    cJSON *archs = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(a));
    cJSON_AddStringToObject(j, "model_type", mt);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->ffn_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", hd);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq_len);
    cJSON_AddItemToObject(j, "rms_norm_eps", num_f(c->norm_eps));
    cJSON_AddItemToObject(j, "rope_theta", num_f(c->rope_theta));
    if (c->rope_type == TN_ROPE_DEFAULT) {
        cJSON_AddNullToObject(j, "rope_scaling");
    } else {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", tn_rope_type_name(c->rope_type));
        cJSON_AddItemToObject(rs, "factor", num_f(c->rope_factor));
        if (c->rope_type == TN_ROPE_LLAMA3) {
            cJSON_AddItemToObject(rs, "low_freq_factor", num_f(c->rope_low_freq_factor));
            cJSON_AddItemToObject(rs, "high_freq_factor", num_f(c->rope_high_freq_factor));
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_max_pos);
        }
    }
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings != 0);
    cJSON_AddItemToObject(j, "bos_token_id", token_id(c->bos_id));
    cJSON_AddItemToObject(j, "eos_token_id", token_id(c->eos_id));
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (!c->qkv_bias) cJSON_AddBoolToObject(j, "attention_bias", 0); /* Qwen2's biases are implied by its class */
    if (!qwen) cJSON_AddBoolToObject(j, "mlp_bias", 0);
    if (qwen) {
        cJSON_AddBoolToObject(j, "use_sliding_window", 0);
        cJSON_AddNullToObject(j, "sliding_window");
        cJSON_AddNumberToObject(j, "max_window_layers", c->n_layers);
    }
    cJSON_AddNumberToObject(j, "attention_dropout", 0);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddBoolToObject(j, "use_cache", 1);
    cJSON_AddStringToObject(j, "torch_dtype", dtype == TN_HF_F32 ? "float32" : "bfloat16");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return tn_err("out of memory");
    *json = text;
    if (arch) *arch = a;
    return 0;
}

/* ---- the output directory ------------------------------------------------------------------------------- */

#define MAX_FILES 4

typedef struct {
    char *dir;                 /* the final directory (no trailing slash) */
    char *tmp;                 /* DIR.tmp-<pid>-<n>, NULL until created */
    char *written[MAX_FILES];  /* files created in tmp (removed again on failure) */
    int n_written;
} out_dir;

static int dir_state(const char *path, int *exists_empty) {
    struct stat st;
    *exists_empty = 0;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return tn_err("%s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return tn_err("%s exists and is not a directory", path);
    DIR *d = opendir(path);
    if (!d) return tn_err("%s: %s", path, strerror(errno));
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    if (n) return tn_err("%s exists and is not empty (an export never overwrites a directory: remove it first)", path);
    *exists_empty = 1;
    return 0;
}

static int out_open(out_dir *o, const char *path) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (n == 0) return tn_err("empty output directory name");
    o->dir = malloc(n + 1);
    if (!o->dir) return tn_err("out of memory");
    memcpy(o->dir, path, n);
    o->dir[n] = '\0';
    int empty;
    TN_CHECK(dir_state(o->dir, &empty));
    /* mkdir, not mkdtemp: the directory gets the umask's permissions, as DIR itself would */
    o->tmp = malloc(n + 48);
    if (!o->tmp) return tn_err("out of memory");
    for (int k = 0; k < 1000; k++) {
        snprintf(o->tmp, n + 48, "%s.tmp-%ld-%d", o->dir, (long)getpid(), k);
        if (mkdir(o->tmp, 0777) == 0) return 0;
        if (errno != EEXIST) break;
    }
    int e = errno;
    free(o->tmp);
    o->tmp = NULL;
    return tn_err("%s: cannot create a directory beside it: %s", o->dir, strerror(e));
}

static char *out_path(const out_dir *o, const char *name) {
    size_t n = strlen(o->tmp) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", o->tmp, name);
    else tn_err("out of memory");
    return p;
}

/* Create tmp/name for writing (remembered for the cleanup). */
static FILE *out_create(out_dir *o, const char *name) {
    if (o->n_written == MAX_FILES) {
        tn_err("internal: too many output files");
        return NULL;
    }
    char *p = out_path(o, name);
    if (!p) return NULL;
    FILE *f = fopen(p, "wb");
    if (!f) {
        tn_err("%s: %s", p, strerror(errno));
        free(p);
        return NULL;
    }
    o->written[o->n_written++] = p;
    return f;
}

/* Flush, fsync and close; any failure (a full disk) is an error. */
static int out_close(FILE *f, const char *name) {
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok) return tn_err("%s: write failed: %s", name, strerror(e));
    return 0;
}

static int out_write_text(out_dir *o, const char *name, const char *text) {
    FILE *f = out_create(o, name);
    if (!f) return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    int rc = out_close(f, name);
    if (!ok && rc == 0) rc = tn_err("%s: write failed", name);
    return rc;
}

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some filesystems refuse directory fsync */
        close(fd);
    }
}

/* tmp -> dir. rename() replaces an empty directory and fails on a non-empty one (someone wrote there
 * meanwhile): never anything of theirs is lost. */
static int out_commit(out_dir *o) {
    fsync_dir(o->tmp);
    if (rename(o->tmp, o->dir) != 0) return tn_err("%s: rename from %s: %s", o->dir, o->tmp, strerror(errno));
    for (int i = 0; i < o->n_written; i++) free(o->written[i]);
    o->n_written = 0;
    free(o->tmp);
    o->tmp = NULL;
    char *copy = strdup(o->dir);
    if (copy) {
        fsync_dir(dirname(copy));
        free(copy);
    }
    return 0;
}

/* Remove what this export created (only its own files, then its own directory). */
static void out_free(out_dir *o) {
    for (int i = 0; i < o->n_written; i++) {
        unlink(o->written[i]);
        free(o->written[i]);
    }
    if (o->tmp) rmdir(o->tmp);
    free(o->tmp);
    free(o->dir);
    memset(o, 0, sizeof *o);
}

/* ---- model.safetensors ---------------------------------------------------------------------------------- */

/* Header: {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}, ...} in layout order, the data
 * packed back to back in that order (safetensors requires contiguous, non-overlapping ranges that cover
 * the data section exactly), padded with spaces so that the data starts 8-byte aligned. */
static int st_header(const tn_llama_layout *l, tn_hf_dtype dt, const char *quant, char **hdr, size_t *hdr_len,
                     uint64_t *data_bytes) {
    const size_t es = dt == TN_HF_F32 ? 4 : 2;
    cJSON *j = cJSON_CreateObject();
    if (!j) return tn_err("out of memory");
    cJSON *meta = cJSON_AddObjectToObject(j, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddStringToObject(meta, "source", "trinity export");
    cJSON_AddStringToObject(meta, "quant", quant);
    uint64_t off = 0;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(j, t->name);
        cJSON_AddStringToObject(e, "dtype", dt == TN_HF_F32 ? "F32" : "BF16");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->rank; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        const uint64_t n = (uint64_t)t->numel * es;
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + n)));
        off += n;
    }
    /* cJSON prints integers above 2^31 with %1.15g: exact below 10^15 bytes, far beyond any model here */
    if (off >= 1000000000000000ull) {
        cJSON_Delete(j);
        return tn_err("model of %llu bytes is too large for this writer", (unsigned long long)off);
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return tn_err("out of memory");
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *h = realloc(text, padded + 1);
    if (!h) {
        free(text);
        return tn_err("out of memory");
    }
    memset(h + n, ' ', padded - n);
    h[padded] = '\0';
    *hdr = h;
    *hdr_len = padded;
    *data_bytes = off;
    return 0;
}

/* Floats -> little-endian F32 or BF16 bytes (the host is little-endian, as everywhere in trinity). */
static size_t encode(const float *x, size_t n, tn_hf_dtype dt, uint8_t *out) {
    if (dt == TN_HF_F32) {
        memcpy(out, x, n * 4);
        return n * 4;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = tn_f32_to_bf16(x[i]);
        out[2 * i] = (uint8_t)(h & 0xff);
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
    return n * 2;
}

#define CHUNK ((size_t)1 << 20) /* floats per write */

typedef struct {
    tn_export_src src;
    const tn_export_hf_opts *o;
    tn_export_hf_report *rep;
    float *w;     /* [CHUNK] */
    uint8_t *buf; /* [CHUNK * 4] */
} exporter;

/* Tensor i: dense values as they are, quantized ones as scale · grid[idx] in float (the product trinity
 * itself forms: quant/snap.c tn_grid_dequant, train/checkpoint.c materialize_ghost), rows in chunks. */
static int write_tensor(exporter *e, int i, FILE *f) {
    tn_export_tensor x;
    TN_CHECK(tn_export_src_tensor(&e->src, i, &x));
    const tn_tensor_info *t = x.t;
    const int64_t rows = t->shape[0], cols = t->rank == 2 ? t->shape[1] : 1;
    int64_t per = (int64_t)(CHUNK / (size_t)cols);
    if (per < 1) per = 1;
    /* a row longer than a chunk: never for these models (the longest row is ffn_dim), but stay correct */
    int rc = cols > (int64_t)CHUNK ? tn_err("row of %lld values is too long", (long long)cols) : 0;
    if (x.quantized) {
        e->rep->n_quantized++;
        if (x.act_bits == 8) e->rep->n_act8++;
        for (int64_t k = 0; rc == 0 && k < rows * cols; k++)
            if (x.idx[k] >= x.n_grid) rc = tn_err("index %u outside the grid of %d values", x.idx[k], x.n_grid);
    }
    for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += per) {
        const int64_t nr = rows - r0 < per ? rows - r0 : per;
        const float *src;
        if (x.quantized) {
            for (int64_t r = 0; r < nr; r++) {
                const float s = x.scales[x.n_scales == 1 ? 0 : r0 + r];
                const uint8_t *ix = x.idx + (r0 + r) * cols;
                float *dst = e->w + r * cols;
                for (int64_t c = 0; c < cols; c++) dst[c] = s * x.grid[ix[c]];
            }
            src = e->w;
        } else {
            src = x.W + r0 * cols;
        }
        const size_t n = (size_t)(nr * cols), nb = encode(src, n, e->o->dtype, e->buf);
        if (fwrite(e->buf, 1, nb, f) != nb) rc = tn_err("model.safetensors: write failed");
    }
    tn_export_tensor_free(&x);
    return rc;
}

static int write_safetensors(exporter *e, out_dir *od) {
    const tn_llama_layout *l = &e->src.ck.layout;
    char *hdr = NULL;
    size_t hlen = 0;
    uint64_t data_bytes = 0;
    TN_CHECK(st_header(l, e->o->dtype, e->src.quant, &hdr, &hlen, &data_bytes));
    FILE *f = out_create(od, "model.safetensors");
    if (!f) {
        free(hdr);
        return -1;
    }
    uint8_t len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)hlen >> (8 * b));
    int rc = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen ? 0 : tn_err("model.safetensors: write failed");
    free(hdr);
    for (int i = 0; rc == 0 && i < l->n_tensors; i++) {
        rc = write_tensor(e, i, f);
        if (rc != 0) tn_err_prefix("tensor '%s'", l->tensors[i].name);
    }
    if (rc == 0) {
        long pos = ftell(f);
        if (pos < 0 || (uint64_t)pos != 8 + hlen + data_bytes) rc = tn_err("model.safetensors: size mismatch (internal)");
    }
    int rc2 = out_close(f, "model.safetensors");
    if (rc == 0) {
        rc = rc2;
        e->rep->safetensors_bytes = (int64_t)(8 + hlen + data_bytes);
        e->rep->n_tensors = l->n_tensors;
    }
    return rc;
}

/* ---- tokenizer ------------------------------------------------------------------------------------------ */

/* The checkpoint's tokenizer as an object: serialized by trinity, or a GGUF vocabulary kept by the
 * importer. NULL with *why set when there is none or it is stored in a form only the importer knew. */
static tn_tokenizer *ckpt_tokenizer(const tn_checkpoint *ck, char *why, size_t cap) {
    tn_tokenizer *t = NULL;
    if (!ck->tokenizer_len) {
        snprintf(why, cap, "the checkpoint has no tokenizer");
        return NULL;
    }
    int rc = -1;
    if (!strcmp(ck->tokenizer_format, "trinity-tokenizer")) {
        rc = tn_tokenizer_deserialize(ck->tokenizer, ck->tokenizer_len, &t);
    } else if (!strcmp(ck->tokenizer_format, "gguf-vocab")) {
        tn_gguf g;
        rc = tn_gguf_open_buffer(ck->tokenizer, ck->tokenizer_len, &g);
        if (rc == 0) {
            rc = tn_tokenizer_from_gguf(&g, &t);
            tn_gguf_close(&g);
        }
    } else {
        snprintf(why, cap, "the checkpoint's tokenizer is stored raw as '%.31s', which trinity could not read",
                 ck->tokenizer_format);
        return NULL;
    }
    if (rc != 0) {
        snprintf(why, cap, "the checkpoint's tokenizer: %s", tn_errmsg());
        return NULL;
    }
    return t;
}

/* tokenizer.json + tokenizer_config.json, or a warning and none. A tokenizer with more tokens than the
 * model's embedding is an error: transformers would index past it. */
static int make_tokenizer(exporter *e, const char *ckpt_path, char **tok_json, char **tok_cfg) {
    char why[320];
    *tok_json = *tok_cfg = NULL;
    const tn_llama_config *c = &e->src.ck.layout.cfg;
    tn_tokenizer *t = ckpt_tokenizer(&e->src.ck, why, sizeof why);
    if (!t) {
        tn_log_warn("%s: no tokenizer files written (%s): transformers can load the model, not a tokenizer",
                    ckpt_path, why);
        snprintf(e->rep->tokenizer, sizeof e->rep->tokenizer, "none (%.100s)", why);
        return 0;
    }
    const int64_t n = tn_tokenizer_vocab_size(t);
    int rc = 0;
    if (n > c->vocab_size) {
        rc = tn_err("the tokenizer has %lld tokens, more than the model's vocabulary of %d", (long long)n, c->vocab_size);
    } else if (tn_tokenizer_to_hf_json(t, c->max_seq_len, tok_json, tok_cfg) != 0) {
        snprintf(why, sizeof why, "%s", tn_errmsg());
        tn_log_warn("%s: no tokenizer files written: %s", ckpt_path, why);
        snprintf(e->rep->tokenizer, sizeof e->rep->tokenizer, "none (%.100s)", why);
    } else {
        snprintf(e->rep->tokenizer, sizeof e->rep->tokenizer, "%s, %lld tokens%s", tn_tokenizer_kind_name(t),
                 (long long)n, tn_tokenizer_chat_template(t) ? ", chat template" : "");
    }
    tn_tokenizer_free(t);
    return rc;
}

/* ---- the export ----------------------------------------------------------------------------------------- */

int tn_export_hf(const char *ckpt_path, const char *out_dir_path, const tn_export_hf_opts *o, tn_export_hf_report *rep) {
    exporter e;
    memset(&e, 0, sizeof e);
    memset(rep, 0, sizeof *rep);
    e.o = o;
    e.rep = rep;
    snprintf(rep->dtype, sizeof rep->dtype, "%s", o->dtype == TN_HF_F32 ? "F32" : "BF16");
    /* Refuse an occupied output before reading anything. */
    int empty;
    TN_CHECK(dir_state(out_dir_path, &empty));
    TN_CHECK(tn_export_src_open(&e.src, ckpt_path, o->quantize));
    const tn_llama_config *c = &e.src.ck.layout.cfg;
    snprintf(rep->kind, sizeof rep->kind, "%s", e.src.kind);
    snprintf(rep->grid, sizeof rep->grid, "%s", e.src.grid);
    rep->n_params = tn_llama_config_n_params(c);

    char *config = NULL, *tok_json = NULL, *tok_cfg = NULL;
    const char *arch = NULL;
    out_dir od;
    memset(&od, 0, sizeof od);
    int rc = tn_export_hf_config_json(c, o->dtype, &config, &arch);
    if (rc == 0) snprintf(rep->arch, sizeof rep->arch, "%s", arch);
    if (rc == 0) rc = make_tokenizer(&e, ckpt_path, &tok_json, &tok_cfg);
    if (rc == 0) {
        e.w = malloc(CHUNK * sizeof *e.w);
        e.buf = malloc(CHUNK * 4);
        if (!e.w || !e.buf) rc = tn_err("out of memory");
    }
    if (rc == 0) rc = out_open(&od, out_dir_path);
    if (rc == 0) rc = out_write_text(&od, "config.json", config);
    if (rc == 0) rc = write_safetensors(&e, &od);
    if (rc == 0 && tok_json) rc = out_write_text(&od, "tokenizer.json", tok_json);
    if (rc == 0 && tok_cfg) rc = out_write_text(&od, "tokenizer_config.json", tok_cfg);
    if (rc == 0) rc = out_commit(&od);
    out_free(&od);
    if (rc == 0 && rep->n_act8)
        tn_log_warn("%s was trained with int8 activations (act_bits = 8) in %d layers: transformers runs them with "
                    "float activations, so its outputs differ from trinity's", ckpt_path, rep->n_act8);
    free(config);
    free(tok_json);
    free(tok_cfg);
    free(e.w);
    free(e.buf);
    tn_export_src_close(&e.src);
    return rc;
}
