/* A tokenizer as a Hugging Face tokenizer.json + tokenizer_config.json (data/tokenizer.h
 * tn_tokenizer_to_hf_json): the inverse of data/tok_hfjson.c, in the forms that reader accepts, so that
 * trinity reading the files back and transformers' PreTrainedTokenizerFast both encode text as the
 * original does.
 *
 *   byte-level BPE   model BPE {vocab, merges in rank order (a pair listed twice keeps its first rank, a
 *                    merge whose result is not a token is dropped: neither can ever fire), ignore_merges},
 *                    pre_tokenizer by pre-tokenizer: GPT-2 ByteLevel{use_regex}; SmolLM2's
 *                    Digits{individual} + ByteLevel; Llama-3 / Qwen2 / Qwen3.5 Split{their regex, Isolated}
 *                    + ByteLevel{use_regex: false}; decoder ByteLevel. No NFC normalizer for Qwen: trinity
 *                    does not apply it (data/tok_hfjson.c), and the export must tokenize as trinity did.
 *   SentencePiece    Hugging Face's (legacy) Llama fast-tokenizer layout: normalizer Prepend("▁") +
 *                    Replace(" " -> "▁"), model BPE with byte_fallback, decoder Replace + ByteFallback + Fuse
 *                    + Strip. SentencePiece merges the pair whose merged piece scores highest; as a merge
 *                    list that is every split of a mergeable piece into two mergeable tokens, ordered by
 *                    the piece's score (then id, then the pair's ids). Exact when no two mergeable pieces
 *                    share a score (Llama's and Phi-3's tie only in their whitespace runs, which still
 *                    tokenize the same); a warning otherwise.
 *   bytes            byte-level BPE over the 256 byte characters with no merges: the same ids.
 *   added_tokens     control, unknown and unused tokens as special tokens, user-defined ones as non-special
 *                    (matched whole in the text, as trinity matches them), all with normalized false.
 *   post_processor   TemplateProcessing with BOS when the tokenizer prepends one.
 *
 * Known difference, said in a warning where it applies: transformers normalizes the text after a
 * user-defined token on its own, so for a SentencePiece vocabulary with user-defined tokens (Phi-3's
 * "</s>") it gets a "▁" that trinity does not add. Refused (an error; the exporter then writes no
 * tokenizer files): Falcon's pre-tokenizer (no form the reader takes back), token strings that JSON cannot
 * carry (invalid UTF-8, NUL bytes), and two tokens with the same string. */
#include "core/error.h"
#include "core/log.h"
#include "data/tok_internal.h"
#include "data/unicode.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* The Split regexes, as Llama-3's, Qwen2's and Qwen3.5's tokenizer.json spell them (what the reader's
 * table in data/tok_hfjson.c matches). */
static const char *split_regex(int pretok) {
    switch (pretok) {
    case TN_PRETOK_LLAMA3:
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    case TN_PRETOK_QWEN2:
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    case TN_PRETOK_QWEN35:
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+"
               "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    default: return NULL;
    }
}

static const char *pretok_name(int p) {
    static const char *names[TN_PRETOK_COUNT] = {"none", "gpt2", "gpt2+digits", "falcon", "llama3", "qwen2", "qwen35"};
    return p >= 0 && p < TN_PRETOK_COUNT ? names[p] : "?";
}

/* Token id's string as tokenizer.json holds it. The bytes tokenizer's byte tokens are raw bytes; as
 * byte-level BPE they are GPT-2's printable characters. s is NUL-terminated (buf, or a copy). */
typedef struct {
    const tn_tokenizer *t;
    char *s;     /* scratch for one token, TN_TOK_MAX_PIECE + 1 */
} strings;

static const char *tok_str(strings *st, int32_t id) {
    const tn_tokenizer *t = st->t;
    if (t->kind == TN_TOK_BYTES && id < 256) {
        int k = tn_utf8_encode(tn_tok_byte_to_cp((uint8_t)id), st->s);
        st->s[k] = '\0';
        return st->s;
    }
    size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
    memcpy(st->s, t->str + t->str_off[id], len);
    st->s[len] = '\0';
    return st->s;
}

/* Every string can go into JSON and back unchanged, and names one token. */
static int check_strings(strings *st) {
    const tn_tokenizer *t = st->t;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *p = t->str + t->str_off[id];
        size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
        if (t->kind == TN_TOK_BYTES && id < 256) continue; /* mapped to distinct characters */
        if (memchr(p, '\0', len)) return tn_err("token %d contains a NUL byte, which tokenizer.json cannot hold", id);
        if (tn_utf8_check((const uint8_t *)p, len) != (size_t)-1)
            return tn_err("token %d is not valid UTF-8, which tokenizer.json cannot hold", id);
        int32_t first = tn_tok_lookup(t, p, len);
        if (first != id)
            return tn_err("tokens %d and %d have the same string, which tokenizer.json cannot hold", first, id);
    }
    return 0;
}

static int is_added(const tn_tokenizer *t, int32_t id) {
    int ty = t->type[id];
    if (t->kind == TN_TOK_BYTES) return id >= 256;
    return ty == TN_TOKTYPE_CONTROL || ty == TN_TOKTYPE_UNKNOWN || ty == TN_TOKTYPE_USER || ty == TN_TOKTYPE_UNUSED;
}

/* ---- merges ------------------------------------------------------------------------------------------------ */

typedef struct {
    float score;
    int32_t id, a, b;
} spm_merge;

static int cmp_spm_merge(const void *x, const void *y) {
    const spm_merge *p = x, *q = y;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    if (p->id != q->id) return p->id < q->id ? -1 : 1;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

static int all_spaces(const tn_tokenizer *t, int32_t id) {
    const char *s = t->str + t->str_off[id];
    size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
    for (size_t i = 0; i + 3 <= len; i += 3)
        if (memcmp(s + i, "\xE2\x96\x81", 3) != 0) return 0;
    return len % 3 == 0;
}

/* SentencePiece without a merge list: the pairs trinity's encoder can merge (both halves and the piece
 * mergeable; data/tokenizer.c build_pairs_from_scores), best score first. */
static int spm_merges(const tn_tokenizer *t, spm_merge **out, size_t *n_out) {
    size_t n = 0, cap = 0;
    spm_merge *m = NULL;
    int32_t prev_id = -1;
    float prev_score = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!tn_tok_mergeable(t, id)) continue;
        const char *s = t->str + t->str_off[id];
        size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
        for (size_t cut = len ? (size_t)tn_utf8_len((uint8_t)s[0]) : len; cut < len; cut += (size_t)tn_utf8_len((uint8_t)s[cut])) {
            int32_t a = tn_tok_lookup(t, s, cut), b = tn_tok_lookup(t, s + cut, len - cut);
            if (a < 0 || b < 0 || !tn_tok_mergeable(t, a) || !tn_tok_mergeable(t, b)) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                spm_merge *g = realloc(m, cap * sizeof *m);
                if (!g) {
                    free(m);
                    return tn_err("out of memory");
                }
                m = g;
            }
            m[n++] = (spm_merge){t->score[id], id, a, b};
        }
    }
    qsort(m, n, sizeof *m, cmp_spm_merge);
    /* Pieces of equal score: trinity merges the leftmost of them first, a merge list the lower rank. Llama's
     * whitespace pieces ("▁▁" ... 16 of them, all -1e9) tie, yet give the same tokens either way (runs of up
     * to 64 spaces are compared in tests/unit/test_export_hf.c): not counted. */
    int ties = 0;
    for (size_t i = 0; i < n; i++) {
        if (prev_id >= 0 && m[i].id != prev_id && m[i].score == prev_score && !all_spaces(t, m[i].id) &&
            !all_spaces(t, prev_id))
            ties++;
        prev_id = m[i].id;
        prev_score = m[i].score;
    }
    if (ties)
        tn_log_warn("tokenizer.json: %d mergeable SentencePiece pieces share a score with another: their merge order "
                    "is by id, which can differ from trinity's (leftmost first) on rare texts", ties);
    *out = m;
    *n_out = n;
    return 0;
}

static int any_space(strings *st, int32_t a, int32_t b) {
    return strchr(tok_str(st, a), ' ') != NULL || strchr(tok_str(st, b), ' ') != NULL;
}

/* "a b" strings, or ["a", "b"] pairs (tokenizers >= 0.20) when a token holds a space. */
static int add_merge(cJSON *arr, strings *st, int32_t a, int32_t b, int pairs, char *buf) {
    if (pairs) {
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, p);
        cJSON_AddItemToArray(p, cJSON_CreateString(tok_str(st, a)));
        cJSON_AddItemToArray(p, cJSON_CreateString(tok_str(st, b)));
        return 0;
    }
    size_t la = strlen(tok_str(st, a));
    memcpy(buf, st->s, la);
    buf[la] = ' ';
    size_t lb = strlen(tok_str(st, b));
    memcpy(buf + la + 1, st->s, lb + 1);
    cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
    return 0;
}

static int add_merges(cJSON *model, strings *st) {
    const tn_tokenizer *t = st->t;
    cJSON *arr = cJSON_AddArrayToObject(model, "merges");
    char *buf = malloc(2 * (size_t)TN_TOK_MAX_PIECE + 2);
    if (!buf) return tn_err("out of memory");
    int rc = 0;
    if (t->n_merges > 0) {
        /* the list as it is, less what can never fire: tn_tok_pair gives the pair's first rank and
         * fails when its result is not a token */
        int pairs = 0;
        for (int32_t r = 0; r < t->n_merges && !pairs; r++) pairs = any_space(st, t->merge_a[r], t->merge_b[r]);
        for (int32_t r = 0; r < t->n_merges; r++) {
            uint32_t prio;
            int32_t merged;
            if (!tn_tok_pair(t, t->merge_a[r], t->merge_b[r], &prio, &merged) || prio != UINT32_MAX - (uint32_t)r) continue;
            add_merge(arr, st, t->merge_a[r], t->merge_b[r], pairs, buf);
        }
    } else if (t->kind == TN_TOK_SPM) {
        spm_merge *m = NULL;
        size_t n = 0;
        rc = spm_merges(t, &m, &n);
        if (rc == 0) {
            int pairs = 0;
            for (size_t i = 0; i < n && !pairs; i++) pairs = any_space(st, m[i].a, m[i].b);
            for (size_t i = 0; i < n; i++) add_merge(arr, st, m[i].a, m[i].b, pairs, buf);
            free(m);
        }
    }
    free(buf);
    return rc;
}

/* ---- the pieces of tokenizer.json ---------------------------------------------------------------------- */

static cJSON *byte_level(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "ByteLevel");
    cJSON_AddBoolToObject(j, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(j, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(j, "use_regex", use_regex);
    return j;
}

static cJSON *sequence(const char *list_key, cJSON *a, cJSON *b) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "Sequence");
    cJSON *arr = cJSON_AddArrayToObject(j, list_key);
    if (a) cJSON_AddItemToArray(arr, a);
    if (b) cJSON_AddItemToArray(arr, b);
    return j;
}

static cJSON *replace(const char *from, const char *to) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "Replace");
    cJSON *p = cJSON_AddObjectToObject(j, "pattern");
    cJSON_AddStringToObject(p, "String", from);
    cJSON_AddStringToObject(j, "content", to);
    return j;
}

static cJSON *typed(const char *type) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", type);
    return j;
}

static cJSON *pre_tokenizer(const tn_tokenizer *t, int pretok) {
    const int ps = (t->flags & TN_TOKF_PREFIX_SPACE) != 0;
    if (pretok == TN_PRETOK_GPT2) return byte_level(ps, 1, 1);
    if (pretok == TN_PRETOK_GPT2_DIGITS) {
        cJSON *d = typed("Digits");
        cJSON_AddBoolToObject(d, "individual_digits", 1);
        return sequence("pretokenizers", d, byte_level(ps, 1, 1));
    }
    cJSON *s = typed("Split");
    cJSON *p = cJSON_AddObjectToObject(s, "pattern");
    cJSON_AddStringToObject(p, "Regex", split_regex(pretok));
    cJSON_AddStringToObject(s, "behavior", "Isolated");
    cJSON_AddBoolToObject(s, "invert", 0);
    return sequence("pretokenizers", s, byte_level(0, 1, 0));
}

/* TemplateProcessing that puts BOS in front of every sequence. */
static cJSON *bos_template(const char *bos, int32_t bos_id) {
    cJSON *j = typed("TemplateProcessing");
    static const char *const keys[2] = {"single", "pair"};
    for (int k = 0; k < 2; k++) {
        cJSON *arr = cJSON_AddArrayToObject(j, keys[k]);
        for (int seq = 0; seq <= k; seq++) {
            cJSON *sp = cJSON_CreateObject(), *spv = cJSON_AddObjectToObject(sp, "SpecialToken");
            cJSON_AddStringToObject(spv, "id", bos);
            cJSON_AddNumberToObject(spv, "type_id", seq);
            cJSON_AddItemToArray(arr, sp);
            cJSON *sq = cJSON_CreateObject(), *sqv = cJSON_AddObjectToObject(sq, "Sequence");
            cJSON_AddStringToObject(sqv, "id", seq ? "B" : "A");
            cJSON_AddNumberToObject(sqv, "type_id", seq);
            cJSON_AddItemToArray(arr, sq);
        }
    }
    cJSON *st = cJSON_AddObjectToObject(j, "special_tokens"), *e = cJSON_AddObjectToObject(st, bos);
    cJSON_AddStringToObject(e, "id", bos);
    cJSON_AddItemToObject(e, "ids", cJSON_CreateIntArray((const int[]){bos_id}, 1));
    cJSON *toks = cJSON_AddArrayToObject(e, "tokens");
    cJSON_AddItemToArray(toks, cJSON_CreateString(bos));
    return j;
}

static cJSON *str_or_null(strings *st, int32_t id) {
    return id >= 0 ? cJSON_CreateString(tok_str(st, id)) : cJSON_CreateNull();
}

static cJSON *build_tokenizer_json(strings *st, int byte_level_bpe, int pretok) {
    const tn_tokenizer *t = st->t;
    const int spm = t->kind == TN_TOK_SPM, add_bos = (t->flags & TN_TOKF_ADD_BOS) && t->bos >= 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_added(t, id)) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", id);
        cJSON_AddStringToObject(a, "content", tok_str(st, id));
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", t->type[id] != TN_TOKTYPE_USER);
        cJSON_AddItemToArray(added, a);
    }
    if (spm) {
        cJSON *rep = replace(" ", "\xE2\x96\x81");
        if (t->flags & TN_TOKF_DUMMY_PREFIX) {
            cJSON *p = typed("Prepend");
            cJSON_AddStringToObject(p, "prepend", "\xE2\x96\x81");
            cJSON_AddItemToObject(j, "normalizer", sequence("normalizers", p, rep));
        } else {
            cJSON_AddItemToObject(j, "normalizer", sequence("normalizers", rep, NULL));
        }
        cJSON_AddNullToObject(j, "pre_tokenizer");
    } else {
        cJSON_AddNullToObject(j, "normalizer");
        cJSON_AddItemToObject(j, "pre_tokenizer", pre_tokenizer(t, pretok));
    }
    cJSON *bos_tp = add_bos ? bos_template(tok_str(st, t->bos), t->bos) : NULL;
    if (byte_level_bpe) cJSON_AddItemToObject(j, "post_processor", bos_tp ? sequence("processors", byte_level(1, 0, 1), bos_tp)
                                                                          : byte_level(1, 0, 1));
    else if (bos_tp) cJSON_AddItemToObject(j, "post_processor", bos_tp);
    else cJSON_AddNullToObject(j, "post_processor");
    if (spm) {
        cJSON *d = sequence("decoders", replace("\xE2\x96\x81", " "), typed("ByteFallback"));
        cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        cJSON_AddItemToArray(list, typed("Fuse"));
        if (t->flags & TN_TOKF_DUMMY_PREFIX) {
            cJSON *s = typed("Strip");
            cJSON_AddStringToObject(s, "content", " ");
            cJSON_AddNumberToObject(s, "start", 1);
            cJSON_AddNumberToObject(s, "stop", 0);
            cJSON_AddItemToArray(list, s);
        }
        cJSON_AddItemToObject(j, "decoder", d);
    } else {
        cJSON_AddItemToObject(j, "decoder", byte_level(1, 1, 1));
    }
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddItemToObject(m, "unk_token", spm ? str_or_null(st, t->unk) : cJSON_CreateNull());
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", 0); /* trinity: one UNK per unknown character */
    cJSON_AddBoolToObject(m, "byte_fallback", spm && (t->flags & TN_TOKF_BYTE_FALLBACK));
    cJSON_AddBoolToObject(m, "ignore_merges", (t->flags & TN_TOKF_IGNORE_MERGES) != 0);
    cJSON *v = cJSON_AddObjectToObject(m, "vocab");
    for (int32_t id = 0; id < t->n_vocab; id++) cJSON_AddNumberToObject(v, tok_str(st, id), id);
    if (add_merges(m, st) != 0) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static cJSON *build_config(strings *st, int64_t model_max_length) {
    const tn_tokenizer *t = st->t;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddBoolToObject(j, "add_bos_token", (t->flags & TN_TOKF_ADD_BOS) && t->bos >= 0);
    cJSON_AddBoolToObject(j, "add_eos_token", 0);
    cJSON_AddItemToObject(j, "bos_token", str_or_null(st, t->bos));
    cJSON_AddItemToObject(j, "eos_token", str_or_null(st, t->eos));
    cJSON_AddItemToObject(j, "unk_token", str_or_null(st, t->unk));
    if (t->pad >= 0) cJSON_AddItemToObject(j, "pad_token", str_or_null(st, t->pad));
    cJSON_AddBoolToObject(j, "clean_up_tokenization_spaces", 0); /* decode exactly */
    if (model_max_length > 0) cJSON_AddNumberToObject(j, "model_max_length", (double)model_max_length);
    if (t->chat_template) cJSON_AddStringToObject(j, "chat_template", t->chat_template);
    return j;
}

int tn_tokenizer_to_hf_json(const tn_tokenizer *t, int64_t model_max_length, char **tokenizer_json, char **config_json) {
    *tokenizer_json = *config_json = NULL;
    const int pretok = t->kind == TN_TOK_BYTES ? TN_PRETOK_GPT2 : t->pretok;
    const int byte_level_bpe = t->kind != TN_TOK_SPM;
    if (byte_level_bpe && pretok != TN_PRETOK_GPT2 && pretok != TN_PRETOK_GPT2_DIGITS && !split_regex(pretok))
        return tn_err("tokenizer.json: the %s pre-tokenizer has no form that both transformers and trinity read",
                      pretok_name(pretok));
    if (split_regex(pretok) && (t->flags & TN_TOKF_PREFIX_SPACE))
        return tn_err("tokenizer.json: a prefix space with the %s pre-tokenizer has no tokenizer.json form",
                      pretok_name(pretok));
    strings st = {t, malloc((size_t)TN_TOK_MAX_PIECE + 8)};
    if (!st.s) return tn_err("out of memory");
    int rc = check_strings(&st);
    if (rc == 0 && t->kind == TN_TOK_SPM && t->n_user_len > 0)
        tn_log_warn("tokenizer.json: this SentencePiece vocabulary has user-defined tokens; after one, transformers "
                    "prepends \"\xE2\x96\x81\" to the following text and trinity does not, so such texts can tokenize "
                    "differently");
    cJSON *tj = NULL, *cj = NULL;
    if (rc == 0) {
        tj = build_tokenizer_json(&st, byte_level_bpe, pretok);
        if (!tj) rc = -1;
    }
    if (rc == 0 && !(cj = build_config(&st, model_max_length))) rc = tn_err("out of memory");
    if (rc == 0) {
        *tokenizer_json = cJSON_PrintUnformatted(tj);
        *config_json = cJSON_Print(cj);
        if (!*tokenizer_json || !*config_json) {
            free(*tokenizer_json);
            free(*config_json);
            *tokenizer_json = *config_json = NULL;
            rc = tn_err("out of memory");
        }
    }
    cJSON_Delete(tj);
    cJSON_Delete(cj);
    free(st.s);
    return rc;
}
