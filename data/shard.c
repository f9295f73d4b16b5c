/* Token shards in HDF5: load with full validation, write atomically. See shard.h and docs/SHARDS.md. */
#include "data/shard.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/h5.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Elements per block when a dataset must be converted with a range check (signed or wider than the
 * in-memory type): bounds the temporary buffer to 8 MiB whatever the shard size. */
#define CONVERT_BLOCK (1 << 20)

void tn_shard_free(tn_shard *s) {
    if (!s) return;
    tn_free(s->tokens);
    tn_free(s->loss_mask);
    tn_free(s->doc_offsets);
    memset(s, 0, sizeof *s);
}

int tn_shard_alloc(tn_shard *s, int64_t n_tokens, int64_t n_docs) {
    if (n_tokens < 0 || n_docs < 0) return tn_err("shard: negative size");
    s->tokens = tn_alloc((size_t)(n_tokens ? n_tokens : 1), sizeof(uint32_t));
    s->loss_mask = tn_alloc((size_t)(n_tokens ? n_tokens : 1), 1);
    s->doc_offsets = tn_alloc((size_t)n_docs + 1, sizeof(uint64_t));
    if (!s->tokens || !s->loss_mask || !s->doc_offsets) {
        tn_free(s->tokens);
        tn_free(s->loss_mask);
        tn_free(s->doc_offsets);
        s->tokens = NULL;
        s->loss_mask = NULL;
        s->doc_offsets = NULL;
        return tn_err("shard: out of memory for %" PRId64 " tokens", n_tokens);
    }
    s->n_tokens = n_tokens;
    s->n_docs = n_docs;
    return 0;
}

static int is_hex64(const char *h) {
    size_t n = strlen(h);
    if (n != 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
    }
    return 1;
}

/* The metadata and structural rules shared by load and write. Arrays are checked element by element:
 * a shard is read once and trained on many times, so a full pass is cheap insurance. */
int tn_shard_validate(const tn_shard *s) {
    if (strcmp(s->kind, "text") != 0 && strcmp(s->kind, "sft") != 0)
        return tn_err("kind \"%s\": must be \"text\" or \"sft\"", s->kind);
    if (s->vocab_size <= 0 || s->vocab_size > ((int64_t)1 << 32))
        return tn_err("vocab_size %" PRId64 ": must be in [1, 2^32]", s->vocab_size);
    if (s->bos_id < -1 || s->bos_id >= s->vocab_size)
        return tn_err("bos_id %" PRId64 " outside [-1, vocab_size %" PRId64 ")", s->bos_id, s->vocab_size);
    if (s->eos_id < -1 || s->eos_id >= s->vocab_size)
        return tn_err("eos_id %" PRId64 " outside [-1, vocab_size %" PRId64 ")", s->eos_id, s->vocab_size);
    if (s->tokenizer_sha256[0] && !is_hex64(s->tokenizer_sha256))
        return tn_err("tokenizer_sha256 \"%.70s\": not 64 lowercase hex digits", s->tokenizer_sha256);
    if (s->n_tokens < 0 || s->n_docs < 0) return tn_err("negative token or document count");
    if (s->n_tokens > 0 && (!s->tokens || !s->loss_mask)) return tn_err("tokens or loss_mask missing");
    if (!s->doc_offsets) return tn_err("doc_offsets missing");
    if (s->doc_offsets[0] != 0)
        return tn_err("doc_offsets[0] = %" PRIu64 ", must be 0", s->doc_offsets[0]);
    for (int64_t d = 0; d < s->n_docs; d++)
        if (s->doc_offsets[d + 1] < s->doc_offsets[d])
            return tn_err("doc_offsets decrease at index %" PRId64 " (%" PRIu64 " after %" PRIu64 ")", d + 1,
                          s->doc_offsets[d + 1], s->doc_offsets[d]);
    if (s->doc_offsets[s->n_docs] != (uint64_t)s->n_tokens)
        return tn_err("doc_offsets ends at %" PRIu64 ", but there are %" PRId64 " tokens",
                      s->doc_offsets[s->n_docs], s->n_tokens);
    uint64_t vocab = (uint64_t)s->vocab_size;
    for (int64_t i = 0; i < s->n_tokens; i++) {
        if (s->tokens[i] >= vocab)
            return tn_err("token id %" PRIu32 " at position %" PRId64 " >= vocab_size %" PRId64, s->tokens[i], i,
                          s->vocab_size);
        if (s->loss_mask[i] > 1)
            return tn_err("loss_mask value %u at position %" PRId64 ": must be 0 or 1", s->loss_mask[i], i);
    }
    return 0;
}

/* Stored integer type of a 1-D dataset: its length, signedness and width. */
static int ds_int_info(hid_t f, const char *name, int64_t *len, int *is_signed, size_t *size) {
    int rank;
    int64_t shape[TN_H5_MAX_RANK];
    TN_CHECK(tn_h5_shape(f, name, &rank, shape));
    if (rank != 1) return tn_err("dataset %s: rank %d, expected 1-D", name, rank);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return tn_err("dataset %s: cannot open", name);
    hid_t t = H5Dget_type(ds);
    int ok = H5Tget_class(t) == H5T_INTEGER;
    *is_signed = H5Tget_sign(t) == H5T_SGN_2;
    *size = H5Tget_size(t);
    H5Tclose(t);
    H5Dclose(ds);
    if (!ok) return tn_err("dataset %s: not an integer dataset", name);
    *len = shape[0];
    return 0;
}

/* Read 1-D integer dataset `name` of length n into out (width out_size = 1, 4 or 8 bytes, unsigned).
 * Stored types that fit (unsigned, no wider) go straight through HDF5; anything else is read in blocks
 * as 64-bit and range-checked, because HDF5's own conversion would silently clamp -1 to 0. */
static int read_unsigned(hid_t f, const char *name, int64_t n, size_t out_size, void *out) {
    int64_t len;
    int sgn;
    size_t size;
    TN_CHECK(ds_int_info(f, name, &len, &sgn, &size));
    if (len != n) return tn_err("dataset %s: length %" PRId64 ", expected %" PRId64, name, len, n);
    tn_h5_type direct = out_size == 1 ? TN_H5_U8 : out_size == 4 ? TN_H5_U32 : TN_H5_U64;
    if (!sgn && size <= out_size) {
        if (n == 0) return 0;
        int64_t shape[1] = {n};
        return tn_h5_read(f, name, direct, 1, shape, out);
    }
    uint64_t maxv = out_size == 1 ? UINT8_MAX : out_size == 4 ? UINT32_MAX : UINT64_MAX;
    int64_t blk = n < CONVERT_BLOCK ? n : CONVERT_BLOCK;
    uint64_t *buf = malloc((size_t)(blk ? blk : 1) * sizeof *buf);
    if (!buf) return tn_err("dataset %s: out of memory", name);
    for (int64_t s = 0; s < n; s += blk) {
        int64_t c = n - s < blk ? n - s : blk;
        if (tn_h5_read_range(f, name, sgn ? TN_H5_I64 : TN_H5_U64, s, c, buf) != 0) {
            free(buf);
            return -1;
        }
        for (int64_t i = 0; i < c; i++) {
            uint64_t v = buf[i];
            if (sgn && (int64_t)v < 0) {
                free(buf);
                return tn_err("dataset %s: negative value %" PRId64 " at position %" PRId64, name, (int64_t)v, s + i);
            }
            if (v > maxv) {
                free(buf);
                return tn_err("dataset %s: value %" PRIu64 " at position %" PRId64 " does not fit %zu bytes", name, v,
                              s + i, out_size);
            }
            if (out_size == 1) ((uint8_t *)out)[s + i] = (uint8_t)v;
            else if (out_size == 4) ((uint32_t *)out)[s + i] = (uint32_t)v;
            else ((uint64_t *)out)[s + i] = v;
        }
    }
    free(buf);
    return 0;
}

static int get_str_opt(hid_t f, const char *key, char *buf, size_t cap, const char *dflt) {
    if (!tn_h5_attr_has(f, ".", key)) {
        snprintf(buf, cap, "%s", dflt);
        return 0;
    }
    return tn_h5_attr_get_str(f, ".", key, buf, cap);
}

static int get_i64_opt(hid_t f, const char *key, int64_t *v, int64_t dflt) {
    if (!tn_h5_attr_has(f, ".", key)) {
        *v = dflt;
        return 0;
    }
    return tn_h5_attr_get_i64(f, ".", key, v);
}

static int load_open(hid_t f, tn_shard *s) {
    char format[64];
    int64_t version;
    if (!tn_h5_attr_has(f, ".", "format")) return tn_err("not a trinity shard (no format attribute)");
    TN_CHECK(tn_h5_attr_get_str(f, ".", "format", format, sizeof format));
    if (strcmp(format, TN_SHARD_FORMAT) != 0)
        return tn_err("format \"%s\": not a trinity shard (expected \"%s\")", format, TN_SHARD_FORMAT);
    TN_CHECK(tn_h5_attr_get_i64(f, ".", "version", &version));
    if (version != TN_SHARD_VERSION)
        return tn_err("shard version %" PRId64 " not supported (this build reads version %d)", version,
                      TN_SHARD_VERSION);
    TN_CHECK(tn_h5_attr_get_i64(f, ".", "vocab_size", &s->vocab_size));
    TN_CHECK(get_i64_opt(f, "bos_id", &s->bos_id, -1));
    TN_CHECK(get_i64_opt(f, "eos_id", &s->eos_id, -1));
    TN_CHECK(tn_h5_attr_get_str(f, ".", "kind", s->kind, sizeof s->kind));
    TN_CHECK(get_str_opt(f, "template", s->template_name, sizeof s->template_name, ""));
    TN_CHECK(get_str_opt(f, "tokenizer_sha256", s->tokenizer_sha256, sizeof s->tokenizer_sha256, ""));

    int64_t n_tok, n_mask, n_off;
    int sgn;
    size_t size;
    TN_CHECK(ds_int_info(f, "tokens", &n_tok, &sgn, &size));
    TN_CHECK(ds_int_info(f, "loss_mask", &n_mask, &sgn, &size));
    TN_CHECK(ds_int_info(f, "doc_offsets", &n_off, &sgn, &size));
    if (n_mask != n_tok)
        return tn_err("loss_mask has %" PRId64 " entries but tokens has %" PRId64, n_mask, n_tok);
    if (n_off < 1) return tn_err("doc_offsets is empty (needs at least the leading 0)");
    TN_CHECK(tn_shard_alloc(s, n_tok, n_off - 1));
    TN_CHECK(read_unsigned(f, "tokens", n_tok, 4, s->tokens));
    TN_CHECK(read_unsigned(f, "loss_mask", n_tok, 1, s->loss_mask));
    TN_CHECK(read_unsigned(f, "doc_offsets", n_off, 8, s->doc_offsets));
    return tn_shard_validate(s);
}

int tn_shard_load(const char *path, tn_shard *s) {
    memset(s, 0, sizeof *s);
    hid_t f;
    if (tn_h5_open(path, &f) != 0) return -1;
    int rc = load_open(f, s);
    tn_h5_close(f);
    if (rc != 0) {
        tn_shard_free(s);
        return tn_err_prefix("%s", path);
    }
    return 0;
}

static int write_open(hid_t f, const tn_shard *s) {
    int64_t n[1] = {s->n_tokens}, d[1] = {s->n_docs + 1};
    TN_CHECK(tn_h5_attr_set_str(f, ".", "format", TN_SHARD_FORMAT));
    TN_CHECK(tn_h5_attr_set_i64(f, ".", "version", TN_SHARD_VERSION));
    TN_CHECK(tn_h5_attr_set_i64(f, ".", "vocab_size", s->vocab_size));
    TN_CHECK(tn_h5_attr_set_i64(f, ".", "bos_id", s->bos_id));
    TN_CHECK(tn_h5_attr_set_i64(f, ".", "eos_id", s->eos_id));
    TN_CHECK(tn_h5_attr_set_str(f, ".", "tokenizer_sha256", s->tokenizer_sha256));
    TN_CHECK(tn_h5_attr_set_str(f, ".", "kind", s->kind));
    TN_CHECK(tn_h5_attr_set_str(f, ".", "template", s->template_name));
    /* Level 4: token streams compress about 2x; higher levels cost time for little more. */
    TN_CHECK(tn_h5_write(f, "tokens", TN_H5_U32, 1, n, s->tokens, 4));
    TN_CHECK(tn_h5_write(f, "loss_mask", TN_H5_U8, 1, n, s->loss_mask, 4));
    TN_CHECK(tn_h5_write(f, "doc_offsets", TN_H5_U64, 1, d, s->doc_offsets, 4));
    return 0;
}

int tn_shard_write(const char *path, const tn_shard *s) {
    if (tn_shard_validate(s) != 0) return tn_err_prefix("%s", path);
    char *tmp = tn_tmp_path_for(path);
    if (!tmp) return -1;
    hid_t f;
    if (tn_h5_create(tmp, &f) != 0) {
        free(tmp);
        return -1;
    }
    int rc = write_open(f, s);
    if (H5Fclose(f) < 0 && rc == 0) rc = tn_err("%s: HDF5 close failed", tmp);
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return tn_err_prefix("%s", path);
    }
    rc = tn_commit_file(tmp, path);
    free(tmp);
    return rc;
}
