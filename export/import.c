/* Import dispatch, format detection and the helpers shared by the three importers. */
#include "export/import.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "export/import_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *tn_import_format_name(tn_import_format f) {
    switch (f) {
    case TN_IMPORT_HF: return "hf";
    case TN_IMPORT_GGUF: return "gguf";
    case TN_IMPORT_LLAMA2C: return "llama2c";
    default: return "auto";
    }
}

int tn_import_parse_format(const char *s, tn_import_format *f) {
    if (strcmp(s, "hf") == 0) *f = TN_IMPORT_HF;
    else if (strcmp(s, "gguf") == 0) *f = TN_IMPORT_GGUF;
    else if (strcmp(s, "llama2c") == 0) *f = TN_IMPORT_LLAMA2C;
    else if (strcmp(s, "auto") == 0) *f = TN_IMPORT_AUTO;
    else return tn_err("unknown import format '%s' (hf, gguf, llama2c)", s);
    return 0;
}

int tn_import_detect(const char *src, tn_import_format *f) {
    struct stat st;
    if (stat(src, &st) != 0) return tn_err("%s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        *f = TN_IMPORT_HF;
        return 0;
    }
    if (!S_ISREG(st.st_mode)) return tn_err("%s: not a file or directory", src);
    FILE *fp = fopen(src, "rb");
    if (!fp) return tn_err("%s: %s", src, strerror(errno));
    unsigned char m[4] = {0};
    size_t n = fread(m, 1, 4, fp);
    fclose(fp);
    if (n == 4 && memcmp(m, "GGUF", 4) == 0) *f = TN_IMPORT_GGUF;
    else if (n == 4 && (m[0] | m[1] << 8 | m[2] << 16 | (uint32_t)m[3] << 24) == 0x616b3432u) *f = TN_IMPORT_LLAMA2C;
    else {
        /* legacy llama2.c has no magic; anything else we cannot name */
        size_t l = strlen(src);
        if (l >= 4 && strcmp(src + l - 4, ".bin") == 0) *f = TN_IMPORT_LLAMA2C;
        else return tn_err("%s: unknown model format (not a directory, GGUF or llama2.c .bin; use --format)", src);
    }
    return 0;
}

int tn_import(const char *src, const tn_import_opts *opts, tn_checkpoint *ck, tn_import_info *info) {
    tn_import_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    memset(ck, 0, sizeof *ck);
    tn_import_format f = opts ? opts->format : TN_IMPORT_AUTO;
    if (f == TN_IMPORT_AUTO) TN_CHECK(tn_import_detect(src, &f));
    int rc;
    switch (f) {
    case TN_IMPORT_HF: rc = tn_import_hf(src, ck, info); break;
    case TN_IMPORT_GGUF: rc = tn_import_gguf(src, ck, info); break;
    case TN_IMPORT_LLAMA2C: rc = tn_import_llama2c(src, ck, info); break;
    default: return tn_err("import: bad format %d", (int)f);
    }
    if (rc == 0 && opts && opts->tokenizer_path) {
        tn_free(ck->tokenizer);
        ck->tokenizer = NULL;
        ck->tokenizer_len = 0;
        rc = tn_import_tokenizer_file(ck, opts->tokenizer_path);
    } else if (rc == 0 && info->tokenizer_problem[0]) {
        /* a model whose tokenizer cannot be read would encode differently or not at all: refuse it here, where
         * another one can still be given, rather than store bytes nothing reads */
        rc = tn_err("%s: its tokenizer is not supported (%s); give one with --tokenizer FILE", src,
                    info->tokenizer_problem);
    }
    if (rc != 0) {
        tn_ckpt_free(ck);
        return -1;
    }
    info->format = f;
    info->n_params = tn_llama_config_n_params(&ck->layout.cfg);
    snprintf(info->tokenizer_format, sizeof info->tokenizer_format, "%s", ck->tokenizer ? ck->tokenizer_format : "");
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------------------- */

int tn_import_begin(tn_checkpoint *ck, const tn_llama_config *cfg) {
    memset(ck, 0, sizeof *ck);
    TN_CHECK(tn_llama_layout_init(&ck->layout, cfg));
    ck->params = tn_alloc(ck->layout.numel, sizeof(float));
    if (!ck->params) return -1;
    return 0;
}

int tn_import_check_finite(const char *name, const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return tn_err("tensor '%s': NaN or Inf at index %zu", name, i);
    return 0;
}

int tn_import_set_tokenizer(tn_checkpoint *ck, const char *format, const void *bytes, size_t len) {
    if (strlen(format) >= sizeof ck->tokenizer_format) return tn_err("tokenizer format name '%s' too long", format);
    uint8_t *b = tn_alloc(len ? len : 1, 1);
    if (!b) return -1;
    if (len) memcpy(b, bytes, len);
    tn_free(ck->tokenizer);
    ck->tokenizer = b;
    ck->tokenizer_len = len;
    snprintf(ck->tokenizer_format, sizeof ck->tokenizer_format, "%s", format);
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *raw_format_for(const char *path) {
    return ends_with(path, ".model") ? "sentencepiece-model"
           : ends_with(path, ".json") ? "hf-tokenizer-json"
           : ends_with(path, ".gguf") ? "gguf-vocab"
                                      : "llama2c-tokenizer";
}

int tn_import_take_tokenizer(tn_checkpoint *ck, const char *load_path, const char *raw_format, const void *raw,
                             size_t raw_len, const char *raw_file, tn_import_info *info) {
    tn_tokenizer *t = NULL;
    if (tn_tokenizer_load(load_path, &t) == 0) {
        int64_t n = tn_tokenizer_vocab_size(t);
        if (n > ck->layout.cfg.vocab_size) {
            tn_tokenizer_free(t);
            return tn_err("tokenizer %s has %lld tokens, more than the model's vocabulary of %d", load_path,
                          (long long)n, ck->layout.cfg.vocab_size);
        }
        uint8_t *blob;
        size_t len;
        int rc = tn_tokenizer_serialize(t, &blob, &len);
        tn_tokenizer_free(t);
        if (rc != 0) return tn_err_prefix("tokenizer %s", load_path);
        rc = tn_import_set_tokenizer(ck, "trinity-tokenizer", blob, len);
        free(blob);
        return rc;
    }
    if (info) snprintf(info->tokenizer_problem, sizeof info->tokenizer_problem, "%s", tn_errmsg());
    else tn_log_warn("tokenizer %s not understood (%s); storing its raw bytes as '%s'", load_path, tn_errmsg(), raw_format);
    if (raw) return tn_import_set_tokenizer(ck, raw_format, raw, raw_len);
    char *data;
    size_t len;
    if (tn_read_file(raw_file, &data, &len) != 0) return tn_err_prefix("tokenizer");
    if (len == 0) {
        free(data);
        return tn_err("tokenizer %s: empty file", raw_file);
    }
    int rc = tn_import_set_tokenizer(ck, raw_format, data, len);
    free(data);
    return rc;
}

int tn_import_tokenizer_file(tn_checkpoint *ck, const char *path) {
    return tn_import_take_tokenizer(ck, path, raw_format_for(path), NULL, 0, path, NULL);
}

void tn_import_note_dtype(char *set, size_t cap, const char *name) {
    size_t n = strlen(name), len = strlen(set);
    for (const char *p = set; *p;) {
        const char *e = strchr(p, '+');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return;
        if (!e) break;
        p = e + 1;
    }
    if (len + n + 2 > cap) return;
    if (len) set[len++] = '+';
    memcpy(set + len, name, n + 1);
}

int tn_import_unpermute_qk(float *w, int n_heads, int head_dim, int64_t cols) {
    if (n_heads <= 0 || head_dim <= 0 || head_dim % 2 || cols <= 0) return tn_err("unpermute: bad shape");
    size_t row = (size_t)cols, hd = (size_t)head_dim, half = hd / 2;
    float *tmp = malloc(hd * row * sizeof *tmp);
    if (!tmp) return tn_err("out of memory");
    for (int h = 0; h < n_heads; h++) {
        float *head = w + (size_t)h * hd * row;
        memcpy(tmp, head, hd * row * sizeof *tmp);
        for (size_t i = 0; i < 2; i++)
            for (size_t j = 0; j < half; j++)
                memcpy(head + (i * half + j) * row, tmp + (2 * j + i) * row, row * sizeof *tmp);
    }
    free(tmp);
    return 0;
}
