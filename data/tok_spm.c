/* SentencePiece BPE: the encoder and the tokenizer.model (protobuf) loader. */
#include "core/error.h"
#include "data/tok_internal.h"
#include "data/unicode.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MARK "\xE2\x96\x81" /* U+2581 "▁", SentencePiece's visible space */

/* ---------------------------------------------------------------------------------------------------
 * encoding
 *
 * text -> normalized: "▁" + text with every ' ' replaced by "▁" (the dummy prefix only when the tokenizer
 * has one, the text is not empty, and this piece starts the text, i.e. no added token came before it) -> one symbol per UTF-8 character -> merges (by the merged piece's
 * score; by merge rank when the vocabulary came with a merge list, as HF tokenizer.json files do) ->
 * each final symbol's id, or with byte fallback one <0xNN> token per byte of a character the vocabulary
 * lacks (else UNK). */
int tn_tok_encode_spm(const tn_tokenizer *t, const char *text, size_t len, int at_start, tn_tokens *out) {
    size_t n_space = 0;
    for (size_t i = 0; i < len; i++) n_space += text[i] == ' ';
    int prefix = at_start && (t->flags & TN_TOKF_DUMMY_PREFIX) != 0;
    size_t nlen = len + 2 * n_space + (prefix ? 3 : 0);
    if (nlen > UINT32_MAX - 8) return tn_err("tokenizer: text of %zu bytes is too long for one call", len);
    /* Normalized text plus five per-symbol arrays (at most one symbol per byte). */
    char *norm = malloc(nlen + 1);
    int32_t *arr = malloc((nlen + 1) * 5 * sizeof *arr);
    if (!norm || !arr) {
        free(norm);
        free(arr);
        return tn_err("tokenizer: out of memory (%zu bytes of text)", len);
    }
    tn_tok_syms s = {arr, (uint32_t *)(arr + (nlen + 1)), (uint32_t *)(arr + 2 * (nlen + 1)), arr + 3 * (nlen + 1),
                     arr + 4 * (nlen + 1)};
    size_t k = 0;
    if (prefix) memcpy(norm, SPACE_MARK, 3), k = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(norm + k, SPACE_MARK, 3), k += 3;
        else norm[k++] = text[i];
    }

    int32_t n = 0;
    for (size_t i = 0; i < nlen;) {
        uint32_t cp;
        int cl = tn_utf8_decode((const uint8_t *)norm + i, nlen - i, &cp);
        int32_t id = tn_tok_lookup(t, norm + i, (size_t)cl);
        if (id >= 0 && t->type[id] != TN_TOKTYPE_NORMAL && t->type[id] != TN_TOKTYPE_USER) id = -1;
        s.id[n] = id;
        s.start[n] = (uint32_t)i;
        s.len[n] = (uint32_t)cl;
        s.prev[n] = n - 1;
        s.next[n] = n + 1;
        n++;
        i += (size_t)cl;
    }
    s.next[n - 1] = -1;
    int rc = tn_tok_merge(t, norm, &s, n, t->n_merges == 0);
    for (int32_t i = 0; rc == 0 && i >= 0; i = s.next[i]) {
        if (s.id[i] >= 0) {
            rc = tn_tokens_push(out, s.id[i]);
            continue;
        }
        for (uint32_t b = 0; rc == 0 && b < s.len[i]; b++) {
            uint8_t byte = (uint8_t)norm[s.start[i] + b];
            int32_t id = (t->flags & TN_TOKF_BYTE_FALLBACK) ? t->byte_id[byte] : -1;
            if (id < 0) {
                /* Without byte fallback, an unknown character is one UNK (not one per byte). */
                if (t->unk < 0) rc = tn_err("tokenizer: character at byte %u has no token and there is no UNK", s.start[i]);
                else rc = tn_tokens_push(out, t->unk);
                break;
            }
            rc = tn_tokens_push(out, id);
        }
    }
    free(norm);
    free(arr);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * tokenizer.model: a serialized sentencepiece.ModelProto (protobuf, proto2). The field numbers below are
 * from sentencepiece_model.proto (as shipped in Debian's python3-sentencepiece):
 *   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 *   TrainerSpec     3 model_type (enum: 1 UNIGRAM default, 2 BPE, 3 WORD, 4 CHAR), 35 byte_fallback,
 *                   40 unk_id (default 0), 41 bos_id (1), 42 eos_id (2), 43 pad_id (-1)
 *   NormalizerSpec  1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (default true)
 * Wire format: each field is a varint key (number << 3 | wire type); wire types 0 varint, 1 fixed64,
 * 2 length-delimited, 5 fixed32. Groups (3, 4) are obsolete and rejected. */

typedef struct {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *r, uint64_t *v) {
    *v = 0;
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return tn_err("protobuf: truncated varint");
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return tn_err("protobuf: varint longer than 10 bytes");
}

/* Next field: number, wire type, and for wire type 2 the payload as a sub-reader; for 0 the value;
 * for 5 the 4 raw bytes in *v. */
static int pb_field(pb *r, uint32_t *num, int *wt, uint64_t *v, pb *sub) {
    uint64_t key;
    TN_CHECK(pb_varint(r, &key));
    *num = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    if (*num == 0 || key >> 3 > 0x1FFFFFFF) return tn_err("protobuf: bad field number");
    switch (*wt) {
    case 0: return pb_varint(r, v);
    case 1:
        if (r->end - r->p < 8) return tn_err("protobuf: truncated fixed64");
        r->p += 8;
        return 0;
    case 2: {
        uint64_t n;
        TN_CHECK(pb_varint(r, &n));
        if (n > (uint64_t)(r->end - r->p)) return tn_err("protobuf: field %u length %" PRIu64 " runs past the end", *num, n);
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        return 0;
    }
    case 5:
        if (r->end - r->p < 4) return tn_err("protobuf: truncated fixed32");
        *v = (uint64_t)r->p[0] | (uint64_t)r->p[1] << 8 | (uint64_t)r->p[2] << 16 | (uint64_t)r->p[3] << 24;
        r->p += 4;
        return 0;
    default: return tn_err("protobuf: unsupported wire type %d (field %u)", *wt, *num);
    }
}

typedef struct {
    int64_t model_type, unk, bos, eos;
    int byte_fallback, dummy_prefix, remove_ws;
    char norm_name[32];
} spm_spec;

static int parse_piece(tn_tokenizer *t, pb r) {
    const uint8_t *s = NULL;
    size_t len = 0;
    float score = 0;
    int64_t type = TN_TOKTYPE_NORMAL;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb sub = {0};
        TN_CHECK(pb_field(&r, &num, &wt, &v, &sub));
        if (num == 1 && wt == 2) s = sub.p, len = (size_t)(sub.end - sub.p);
        else if (num == 2 && wt == 5) {
            uint32_t bits = (uint32_t)v;
            memcpy(&score, &bits, 4);
        } else if (num == 3 && wt == 0) type = (int64_t)v;
    }
    if (!s) return tn_err("piece %d has no text", t->n_vocab);
    if (type < TN_TOKTYPE_NORMAL || type > TN_TOKTYPE_BYTE) return tn_err("piece %d has unknown type %" PRId64, t->n_vocab, type);
    if (tn_utf8_check(s, len) != (size_t)-1) return tn_err("piece %d is not valid UTF-8", t->n_vocab);
    return tn_tok_add(t, (const char *)s, len, score, (int)type);
}

static int parse_trainer(spm_spec *sp, pb r) {
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb sub = {0};
        TN_CHECK(pb_field(&r, &num, &wt, &v, &sub));
        if (wt != 0) continue;
        /* int32 fields: negative values are sign-extended to 64 bits on the wire. */
        int64_t iv = (int64_t)v;
        switch (num) {
        case 3: sp->model_type = iv; break;
        case 35: sp->byte_fallback = v != 0; break;
        case 40: sp->unk = iv; break;
        case 41: sp->bos = iv; break;
        case 42: sp->eos = iv; break;
        default: break;
        }
    }
    return 0;
}

static int parse_normalizer(spm_spec *sp, pb r) {
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb sub = {0};
        TN_CHECK(pb_field(&r, &num, &wt, &v, &sub));
        if (num == 1 && wt == 2) {
            size_t n = (size_t)(sub.end - sub.p);
            if (n >= sizeof sp->norm_name) n = sizeof sp->norm_name - 1;
            memcpy(sp->norm_name, sub.p, n);
            sp->norm_name[n] = '\0';
        } else if (num == 3 && wt == 0) sp->dummy_prefix = v != 0;
        else if (num == 4 && wt == 0) sp->remove_ws = v != 0;
    }
    return 0;
}

static int parse_model(tn_tokenizer *t, spm_spec *sp, const uint8_t *data, size_t size) {
    pb r = {data, data + size};
    int have_trainer = 0;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb sub = {0};
        TN_CHECK(pb_field(&r, &num, &wt, &v, &sub));
        if (wt != 2) continue;
        if (num == 1) TN_CHECK(parse_piece(t, sub));
        else if (num == 2) {
            TN_CHECK(parse_trainer(sp, sub));
            have_trainer = 1;
        } else if (num == 3) TN_CHECK(parse_normalizer(sp, sub));
    }
    if (t->n_vocab == 0) return tn_err("no pieces");
    if (!have_trainer) return tn_err("no trainer_spec");
    return 0;
}

int tn_tok_load_spm_model(const uint8_t *data, size_t size, tn_tokenizer **out) {
    spm_spec sp = {.model_type = 1, .unk = 0, .bos = 1, .eos = 2, .dummy_prefix = 1, .remove_ws = 1};
    strcpy(sp.norm_name, "nmt_nfkc"); /* proto default when no normalizer_spec is stored */
    tn_tokenizer *t = tn_tok_new(TN_TOK_SPM);
    if (!t) return -1;
    if (parse_model(t, &sp, data, size) != 0) goto fail;
    if (sp.model_type != 2) {
        tn_err("SentencePiece model type %" PRId64 " (%s) is not supported, only BPE", sp.model_type,
               sp.model_type == 1 ? "unigram" : sp.model_type == 3 ? "word" : sp.model_type == 4 ? "char" : "unknown");
        goto fail;
    }
    /* Llama's model uses the identity normalizer and keeps whitespace as is; anything else would need
     * SentencePiece's normalization tables, which trinity does not implement. */
    if (strcmp(sp.norm_name, "identity") != 0) {
        tn_err("SentencePiece normalizer '%s' is not supported (only 'identity')", sp.norm_name);
        goto fail;
    }
    if (sp.remove_ws) {
        tn_err("SentencePiece remove_extra_whitespaces is not supported");
        goto fail;
    }
    /* The proto says -1 = none; an id outside the vocabulary counts as none too. */
    if (sp.unk < -1 || sp.unk >= t->n_vocab) sp.unk = -1;
    if (sp.bos < -1 || sp.bos >= t->n_vocab) sp.bos = -1;
    if (sp.eos < -1 || sp.eos >= t->n_vocab) sp.eos = -1;
    t->unk = (int32_t)sp.unk;
    t->bos = (int32_t)sp.bos;
    t->eos = (int32_t)sp.eos;
    t->flags = (sp.dummy_prefix ? TN_TOKF_DUMMY_PREFIX : 0) | (sp.byte_fallback ? TN_TOKF_BYTE_FALLBACK : 0) |
               (t->bos >= 0 ? TN_TOKF_ADD_BOS : 0);
    if (tn_tok_finish(t) != 0) goto fail;
    *out = t;
    return 0;
fail:
    tn_tokenizer_free(t);
    return -1;
}
