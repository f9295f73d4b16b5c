/* Private to data/tok_*.c and tokenizer.c: the tokenizer struct, the builder every loader fills, and the
 * encoders. A loader only fills the "definition" fields (kind, flags, vocabulary, scores, types, merges,
 * special ids) and calls tn_tok_finish, which derives everything else (hash tables, byte tokens, decoded
 * pieces, the fingerprint) — so every source of the same vocabulary ends up with the same object. */
#ifndef TN_DATA_TOK_INTERNAL_H
#define TN_DATA_TOK_INTERNAL_H

#include "data/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* Byte-level BPE pre-tokenizers (which regex sequence splits the text before merging). */
enum {
    TN_PRETOK_NONE = 0,        /* spm, bytes */
    TN_PRETOK_GPT2 = 1,        /* GPT-2's regex */
    TN_PRETOK_GPT2_DIGITS = 2, /* every \p{N} on its own first, then GPT-2's regex (SmolLM, StarCoder) */
    TN_PRETOK_FALCON = 3,      /* punctuation runs, GPT-2's regex, then digit triples (Falcon) */
    TN_PRETOK_LLAMA3 = 4,      /* Llama-3's regex (numbers in threes) */
    TN_PRETOK_QWEN2 = 5,       /* Llama-3's regex with single digits (Qwen2, Qwen2.5, Qwen3) */
    TN_PRETOK_QWEN35 = 6,      /* Qwen2's regex with marks (\p{M}) inside words (Qwen3.5) */
    TN_PRETOK_COUNT
};

/* Definition flags (serialized). */
enum {
    TN_TOKF_DUMMY_PREFIX = 1,   /* spm: prepend "▁" to the text */
    TN_TOKF_BYTE_FALLBACK = 2,  /* spm: unknown characters become <0xNN> tokens */
    TN_TOKF_ADD_BOS = 4,        /* BOS is conventionally prepended */
    TN_TOKF_PREFIX_SPACE = 8,   /* bpe: prepend a space when the text does not start with whitespace */
    TN_TOKF_IGNORE_MERGES = 16, /* bpe: a pre-token that is itself a token is that token, merges unused (Llama-3) */
    TN_TOKF_ALL = 31
};

/* Limits a definition must respect (also the deserializer's sanity bounds). */
#define TN_TOK_MAX_VOCAB (1 << 24)
#define TN_TOK_MAX_PIECE (1 << 16)
#define TN_TOK_MAX_CHAT_TEMPLATE (1 << 20)

typedef struct {
    int32_t *slot; /* -1 = empty */
    uint64_t mask;
} tn_tok_strmap;

/* Merge table: (a, b) -> the token a+b and its priority (higher merges first). Byte-level BPE and
 * tokenizer.json vocabularies fill it from their merge list (priority from the rank); SentencePiece
 * models from every way a mergeable piece splits into two tokens (priority from the piece's score). */
typedef struct {
    uint64_t key; /* (a << 32 | b) + 1, 0 = empty */
    uint32_t prio;
    int32_t merged;
} tn_tok_pairslot; /* one slot = 16 bytes, so a probe touches one cache line */

typedef struct {
    tn_tok_pairslot *slot;
    uint64_t mask;
} tn_tok_pairmap;

struct tn_tokenizer {
    /* ---- definition (what serialize writes) ---- */
    int kind, pretok;
    uint32_t flags;
    int32_t bos, eos, unk, pad;
    int32_t n_vocab;
    char *str;          /* all vocabulary strings back to back */
    uint64_t *str_off;  /* [n_vocab + 1] */
    float *score;       /* [n_vocab] */
    uint8_t *type;      /* [n_vocab] */
    int32_t n_merges;
    int32_t *merge_a, *merge_b; /* [n_merges], rank = index */
    size_t str_cap, merge_cap;
    /* The model's chat template (Jinja text, NUL-terminated) or NULL. Serialized (blob version 2) but
     * not part of the fingerprint: it says how conversations are written, not how text is tokenized. */
    char *chat_template;
    /* ---- derived by tn_tok_finish ---- */
    tn_tok_strmap map;
    tn_tok_pairmap pairs;
    int32_t byte_id[256]; /* spm: id of <0xNN>; bpe: id of the mapped character; -1 when absent */
    char *dec;            /* decoded bytes of every token, back to back */
    uint64_t *dec_off;    /* [n_vocab + 1] */
    char sha[65];
    /* User-defined (added, non-special) tokens are matched whole in the text before anything else, as
     * llama.cpp and HF tokenizers do: which first bytes can start one, and their distinct lengths. */
    uint8_t user_first[256];
    uint32_t user_len[64];
    int n_user_len;
};

/* Builder: start a definition, append tokens and merges, then finish. On failure the caller frees
 * with tn_tokenizer_free (safe on a half-built object). */
tn_tokenizer *tn_tok_new(int kind);
int tn_tok_add(tn_tokenizer *t, const char *s, size_t len, float score, int type);
int tn_tok_add_merge(tn_tokenizer *t, int32_t a, int32_t b);
int tn_tok_finish(tn_tokenizer *t);
/* Attach a chat template (copied; replaces any). May follow tn_tok_finish: the template is not part of
 * the fingerprint. Refuses more than TN_TOK_MAX_CHAT_TEMPLATE bytes and NUL bytes. */
int tn_tok_set_chat_template(tn_tokenizer *t, const char *s, size_t len);
/* Build the string -> id table now (all tokens added) so a loader can resolve merge strings; finish
 * then reuses it. */
int tn_tok_index(tn_tokenizer *t);

/* Hash-map lookups (finish must have run). */
int32_t tn_tok_lookup(const tn_tokenizer *t, const char *s, size_t len);
int tn_tok_pair(const tn_tokenizer *t, int32_t a, int32_t b, uint32_t *prio, int32_t *merged);
/* Priority of a score as an unsigned key with the same order. */
uint32_t tn_tok_score_key(float score);
int tn_tok_mergeable(const tn_tokenizer *t, int32_t id);

/* Encoders (tok_spm.c, tok_bpe.c). They append to out. */
int tn_tok_encode_spm(const tn_tokenizer *t, const char *text, size_t len, int at_start, tn_tokens *out);
int tn_tok_encode_bpe(const tn_tokenizer *t, const char *text, size_t len, tn_tokens *out);

/* The merge engine both encoders share: symbols are contiguous byte ranges of `text` with a token id
 * (-1 when the range is not a token). Merges the best adjacent pair, per the merge table, until none
 * applies; ties go to the leftmost pair. by_text = 1 (SentencePiece without a merge list) also lets a
 * symbol that is not a token merge when the concatenated bytes are a mergeable token, as SentencePiece
 * looks pairs up by text. On return id/len describe the final symbols (len == 0 for absorbed ones),
 * linked by next from symbol 0. */
typedef struct {
    int32_t *id;
    uint32_t *start, *len;
    int32_t *prev, *next;
} tn_tok_syms;
int tn_tok_merge(const tn_tokenizer *t, const char *text, tn_tok_syms *s, int32_t n_sym, int by_text);

/* Loaders (tok_spm.c, tok_hfjson.c, tok_gguf.c). */
int tn_tok_load_spm_model(const uint8_t *data, size_t size, tn_tokenizer **out);
int tn_tok_load_hf_json(const char *json, size_t size, const char *config_json, tn_tokenizer **out);
/* tokenizer_config.json's "chat_template" attached to t: a string, or of a list of {"name", "template"} the
 * "default" entry (the one transformers applies). Absent, null, or a list without "default": nothing. */
int tn_tok_chat_template_from_config(tn_tokenizer *t, const char *config_json, size_t size);
int tn_tok_load_llama2c(const uint8_t *data, size_t size, tn_tokenizer **out);
/* GPT-2's byte <-> printable-character table. */
uint32_t tn_tok_byte_to_cp(uint8_t b);
int tn_tok_cp_to_byte(uint32_t cp); /* -1 when cp is not in the table */

#endif
