/* A tokenizer as GGUF tokenizer.ggml.* metadata: the inverse of tn_tokenizer_from_gguf (tok_gguf.c), with
 * the keys llama.cpp reads (gguf-py/gguf/constants.py Keys.Tokenizer; src/llama-vocab.cpp load):
 *
 *   spm    model "llama": tokens, scores, token_type, add_space_prefix (the dummy prefix). llama.cpp merges
 *          SentencePiece pieces by score; a vocabulary that came from tokenizer.json has merge ranks and
 *          no scores, so scores are derived from the ranks (the piece made by merge r scores -r): the same
 *          merges except where a piece can be built from two tokens that are not its merge pair (warned).
 *   bpe    model "gpt2": tokens, token_type, merges ("a b", rank = index), pre = llama.cpp's name of the
 *          pre-tokenizer (gpt-2, smollm, falcon, llama-bpe, smaug-bpe, qwen2, qwen35).
 *   bytes  model "gpt2" with no merges: token b (< 256) is GPT-2's printable character for byte b, so
 *          llama.cpp's byte-level BPE maps every byte to its own token, as trinity does; BOS/EOS follow.
 *
 * Every kind: bos/eos/unknown/padding ids where the tokenizer has them, add_bos_token, and
 * tokenizer.chat_template when the tokenizer carries one. A vocabulary
 * smaller than the model's embedding is padded with "[PAD<id>]" tokens of type unused (what llama.cpp's
 * converter does), since llama.cpp takes the number of tokens as the embedding's row count. */
#include "core/error.h"
#include "core/log.h"
#include "data/tok_internal.h"
#include "data/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* trinity pre-tokenizer -> llama.cpp's name (one that tok_gguf.c reads back as the same pre-tokenizer
 * with the same merge behaviour). */
static const char *pre_name(const tn_tokenizer *t) {
    int ignore = (t->flags & TN_TOKF_IGNORE_MERGES) != 0;
    switch (t->pretok) {
    case TN_PRETOK_GPT2: return "gpt-2";
    case TN_PRETOK_GPT2_DIGITS: return "smollm";
    case TN_PRETOK_FALCON: return "falcon";
    case TN_PRETOK_LLAMA3: return ignore ? "llama-bpe" : "smaug-bpe";
    case TN_PRETOK_QWEN2: return "qwen2";
    case TN_PRETOK_QWEN35: return "qwen35";
    default: return NULL;
    }
}

typedef struct {
    const char **s;
    size_t *len;
    char *pad;        /* "[PAD<id>]" strings back to back */
    char *bytes;      /* bytes kind: 256 mapped characters, 4 bytes each */
    float *score;
    int32_t *type;
    const char **ms;  /* merges */
    size_t *mlen;
    char *mbuf;
} arrays;

static void arrays_free(arrays *a) {
    free(a->s), free(a->len), free(a->pad), free(a->bytes), free(a->score), free(a->type);
    free(a->ms), free(a->mlen), free(a->mbuf);
}

/* SentencePiece scores from merge ranks when the vocabulary has ranks but no scores. */
static void scores_from_ranks(const tn_tokenizer *t, float *score) {
    for (int32_t i = 0; i < t->n_vocab; i++) score[i] = -(float)t->n_merges - 1.0f;
    for (int32_t r = t->n_merges - 1; r >= 0; r--) { /* the lowest rank that makes a piece wins */
        uint32_t prio;
        int32_t merged;
        if (tn_tok_pair(t, t->merge_a[r], t->merge_b[r], &prio, &merged) == 1 && merged >= 0) score[merged] = -(float)r;
    }
}

static int fill_arrays(const tn_tokenizer *t, int64_t n_vocab, arrays *a) {
    const int64_t n = n_vocab;
    a->s = calloc((size_t)n, sizeof *a->s);
    a->len = calloc((size_t)n, sizeof *a->len);
    a->score = calloc((size_t)n, sizeof *a->score);
    a->type = calloc((size_t)n, sizeof *a->type);
    a->pad = malloc((size_t)(n - t->n_vocab) * 20 + 1);
    if (!a->s || !a->len || !a->score || !a->type || !a->pad) return tn_err("out of memory");
    if (t->kind == TN_TOK_BYTES && !(a->bytes = malloc(256 * 4))) return tn_err("out of memory");
    int all_zero = 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        a->s[i] = t->str + t->str_off[i];
        a->len[i] = (size_t)(t->str_off[i + 1] - t->str_off[i]);
        a->score[i] = t->score[i];
        a->type[i] = t->type[i];
        all_zero &= t->score[i] == 0.0f;
        if (t->kind == TN_TOK_BYTES && i < 256) {
            char *u = a->bytes + 4 * i;
            a->len[i] = (size_t)tn_utf8_encode(tn_tok_byte_to_cp((uint8_t)i), u);
            a->s[i] = u;
            a->type[i] = TN_TOKTYPE_NORMAL; /* a byte-level BPE token; llama.cpp maps it back to its byte */
        }
    }
    if (t->kind == TN_TOK_SPM && all_zero && t->n_merges > 0) {
        scores_from_ranks(t, a->score);
        tn_log_warn("tokenizer: SentencePiece vocabulary without scores (from tokenizer.json): GGUF scores derived "
                    "from its merge ranks (llama.cpp merges by score)");
    }
    char *p = a->pad;
    for (int64_t i = t->n_vocab; i < n; i++) {
        int k = snprintf(p, 20, "[PAD%lld]", (long long)i);
        a->s[i] = p;
        a->len[i] = (size_t)k;
        a->score[i] = 0.0f;
        a->type[i] = TN_TOKTYPE_UNUSED;
        p += k;
    }
    if (t->kind != TN_TOK_BPE || t->n_merges <= 0) return 0;
    size_t total = 0;
    for (int32_t r = 0; r < t->n_merges; r++)
        total += (size_t)(t->str_off[t->merge_a[r] + 1] - t->str_off[t->merge_a[r]]) +
                 (size_t)(t->str_off[t->merge_b[r] + 1] - t->str_off[t->merge_b[r]]) + 1;
    a->ms = malloc((size_t)t->n_merges * sizeof *a->ms);
    a->mlen = malloc((size_t)t->n_merges * sizeof *a->mlen);
    a->mbuf = malloc(total ? total : 1);
    if (!a->ms || !a->mlen || !a->mbuf) return tn_err("out of memory");
    char *m = a->mbuf;
    for (int32_t r = 0; r < t->n_merges; r++) {
        size_t la = (size_t)(t->str_off[t->merge_a[r] + 1] - t->str_off[t->merge_a[r]]);
        size_t lb = (size_t)(t->str_off[t->merge_b[r] + 1] - t->str_off[t->merge_b[r]]);
        a->ms[r] = m;
        a->mlen[r] = la + 1 + lb;
        memcpy(m, t->str + t->str_off[t->merge_a[r]], la);
        m[la] = ' ';
        memcpy(m + la + 1, t->str + t->str_off[t->merge_b[r]], lb);
        m += la + 1 + lb;
    }
    return 0;
}

/* A special token id. A SentencePiece vocabulary without one says so with 0xFFFFFFFF (an id no vocabulary
 * has), since readers otherwise assume llama.cpp's defaults (unk 0, bos 1, eos 2): tok_gguf.c reads it as
 * none, llama.cpp warns and keeps its default. Byte-level BPE has no such defaults in trinity: the key is
 * left out. */
static int put_id(tn_gguf_writer *w, const char *key, int32_t id, int spm) {
    if (id >= 0) return tn_gguf_writer_u32(w, key, (uint32_t)id);
    return spm ? tn_gguf_writer_u32(w, key, UINT32_MAX) : 0;
}

int tn_tokenizer_to_gguf(const tn_tokenizer *t, int64_t n_vocab, tn_gguf_writer *w) {
    if (t->n_vocab > n_vocab)
        return tn_err("tokenizer has %d tokens, more than the model's vocabulary of %lld", t->n_vocab, (long long)n_vocab);
    const char *model = t->kind == TN_TOK_SPM ? "llama" : "gpt2";
    const char *pre = t->kind == TN_TOK_BPE ? pre_name(t) : t->kind == TN_TOK_BYTES ? "gpt-2" : NULL;
    if (t->kind == TN_TOK_BPE && !pre)
        return tn_err("tokenizer: byte-level BPE without a pre-tokenizer that llama.cpp names cannot be written as GGUF");
    if (t->kind == TN_TOK_BPE && (t->flags & TN_TOKF_PREFIX_SPACE))
        tn_log_warn("tokenizer: add_prefix_space has no GGUF key for byte-level BPE; llama.cpp will not add the space");
    if (t->kind == TN_TOK_SPM && !(t->flags & TN_TOKF_BYTE_FALLBACK)) {
        for (int32_t i = 0; i < t->n_vocab; i++)
            if (t->type[i] == TN_TOKTYPE_BYTE) {
                tn_log_warn("tokenizer: byte_fallback is off but <0xNN> tokens exist; llama.cpp falls back to them");
                break;
            }
    }
    arrays a;
    memset(&a, 0, sizeof a);
    int rc = fill_arrays(t, n_vocab, &a);
    if (rc == 0) rc = tn_gguf_writer_str(w, "tokenizer.ggml.model", model, strlen(model));
    if (rc == 0 && pre) rc = tn_gguf_writer_str(w, "tokenizer.ggml.pre", pre, strlen(pre));
    if (rc == 0) rc = tn_gguf_writer_arr_str(w, "tokenizer.ggml.tokens", a.s, a.len, (uint64_t)n_vocab);
    if (rc == 0 && t->kind == TN_TOK_SPM) rc = tn_gguf_writer_arr(w, "tokenizer.ggml.scores", TN_GGUF_FLOAT32, a.score, (uint64_t)n_vocab);
    if (rc == 0) rc = tn_gguf_writer_arr(w, "tokenizer.ggml.token_type", TN_GGUF_INT32, a.type, (uint64_t)n_vocab);
    if (rc == 0 && t->kind != TN_TOK_SPM) rc = tn_gguf_writer_arr_str(w, "tokenizer.ggml.merges", a.ms, a.mlen, t->kind == TN_TOK_BPE ? (uint64_t)t->n_merges : 0);
    const int spm = t->kind == TN_TOK_SPM;
    if (rc == 0) rc = put_id(w, "tokenizer.ggml.bos_token_id", t->bos, spm);
    if (rc == 0) rc = put_id(w, "tokenizer.ggml.eos_token_id", t->eos, spm);
    if (rc == 0) rc = put_id(w, "tokenizer.ggml.unknown_token_id", t->unk, spm);
    if (rc == 0) rc = put_id(w, "tokenizer.ggml.padding_token_id", t->pad, 0);
    if (rc == 0) rc = tn_gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", (t->flags & TN_TOKF_ADD_BOS) != 0);
    if (rc == 0 && t->kind == TN_TOK_SPM)
        rc = tn_gguf_writer_bool(w, "tokenizer.ggml.add_space_prefix", (t->flags & TN_TOKF_DUMMY_PREFIX) != 0);
    const char *tmpl = tn_tokenizer_chat_template(t);
    if (rc == 0 && tmpl) rc = tn_gguf_writer_str(w, "tokenizer.chat_template", tmpl, strlen(tmpl));
    arrays_free(&a);
    return rc;
}
