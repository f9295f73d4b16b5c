/* Tokenizer from a Hugging Face tokenizer.json (the `tokenizers` library's serialization). What is read:
 *
 *   model          {"type": "BPE", "vocab": {string: id}, "merges": ["a b", ...] or [["a", "b"], ...],
 *                   "byte_fallback": bool, "unk_token": string,
 *                   "ignore_merges": bool (Llama-3)}
 *   added_tokens   [{"id", "content", "special"}]: special -> control token, else a user-defined token
 *                   (matched whole in the text before anything else)
 *   pre_tokenizer  byte-level:   ByteLevel{use_regex: true, add_prefix_space}, possibly after
 *                                Digits{individual_digits: true} in a Sequence (SmolLM2); or
 *                                Split{pattern: {Regex: R}, behavior: Isolated} then
 *                                ByteLevel{use_regex: false} where R is, character for character, the
 *                                Llama-3, Qwen2 or Qwen3.5 regex (split_regexes below)
 *                  SentencePiece: null, or Metaspace{prepend_scheme, split: false}
 *   normalizer     SentencePiece style: Prepend("▁") and Replace(" " -> "▁") (Llama / TinyLlama);
 *                  byte-level: none, or NFC with a Split regex (Qwen), accepted but NOT applied, as
 *                  llama.cpp does: text that is not in NFC can tokenize differently from HF tokenizers
 *   post_processor TemplateProcessing whose single-sequence template starts with a special token = BOS,
 *                  alone or in a Sequence (Llama-3: [ByteLevel, TemplateProcessing])
 * plus, when given, the sibling tokenizer_config.json: bos_token, eos_token (a string or {"content"}),
 * add_bos_token. Anything else (WordPiece, Unigram, any other Split regex) is refused by name, because
 * tokenizing with a different rule would silently give different ids. */
#include "core/error.h"
#include "data/tok_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int is_type(const cJSON *o, const char *type) {
    const char *t = jstr(o, "type");
    return t && strcmp(t, type) == 0;
}

/* A "bos_token" style entry: "<s>" or {"content": "<s>", ...}. */
static const char *token_name(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return jstr(v, "content");
    return NULL;
}

/* Parse, reporting where the JSON breaks as a byte offset. */
static cJSON *parse(const char *what, const char *text, size_t size) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (j) return j;
    if (end && end >= text && end <= text + size) tn_err("%s: malformed JSON at byte %zu", what, (size_t)(end - text));
    else tn_err("%s: malformed JSON", what);
    return NULL;
}

typedef struct {
    int kind, pretok;
    uint32_t flags;
} shape;

/* The Split regexes trinity implements (data/tok_bpe.c), as tokenizer.json spells them (after JSON
 * unescaping), plus llama.cpp's equivalent spelling of the contractions without (?i:...). */
static const struct {
    const char *regex;
    int pretok;
} split_regexes[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
     "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TN_PRETOK_LLAMA3},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
     "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TN_PRETOK_LLAMA3},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
     "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TN_PRETOK_QWEN2},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
     "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TN_PRETOK_QWEN2},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
     "[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TN_PRETOK_QWEN35},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
     "[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TN_PRETOK_QWEN35},
};

/* A Split step: its regex must be one of split_regexes, isolated, not inverted. */
static int split_step(const cJSON *st, int *pretok) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(st, "pattern");
    const char *re = jstr(pat, "Regex"), *behavior = jstr(st, "behavior");
    if (!re) return tn_err("tokenizer.json: Split by a plain string is not supported (only the Llama-3/Qwen regexes)");
    for (size_t i = 0; i < sizeof split_regexes / sizeof split_regexes[0]; i++)
        if (strcmp(re, split_regexes[i].regex) == 0) *pretok = split_regexes[i].pretok;
    if (*pretok == TN_PRETOK_NONE)
        return tn_err("tokenizer.json: Split regex \"%.60s%s\" is not supported (only the Llama-3, Qwen2 and Qwen3.5 "
                      "patterns)", re, strlen(re) > 60 ? "..." : "");
    if (!behavior || strcmp(behavior, "Isolated") != 0 || jbool(st, "invert", 0))
        return tn_err("tokenizer.json: Split with behavior '%s'%s is not supported (only Isolated)",
                      behavior ? behavior : "(none)", jbool(st, "invert", 0) ? " inverted" : "");
    return 0;
}

/* Which tokenizer this is, from the pre-tokenizer and normalizer. */
static int detect(const cJSON *root, const cJSON *model, shape *sh) {
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const char *mtype = jstr(model, "type");
    if (mtype && strcmp(mtype, "BPE") != 0) return tn_err("tokenizer.json model type '%s' is not supported (only BPE)", mtype);
    /* The pre-tokenizer as a list of steps. */
    const cJSON *steps[4];
    int n = 0;
    if (pre && !cJSON_IsNull(pre)) {
        if (is_type(pre, "Sequence")) {
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers")) {
                if (n == 4) return tn_err("tokenizer.json: pre_tokenizer sequence too long to be supported");
                steps[n++] = it;
            }
        } else {
            steps[n++] = pre;
        }
    }
    int byte_level = 0, digits = 0, metaspace = 0, split = TN_PRETOK_NONE;
    for (int i = 0; i < n; i++) {
        const char *ty = jstr(steps[i], "type");
        if (ty && strcmp(ty, "ByteLevel") == 0 && i == n - 1) {
            /* After a Split, ByteLevel only maps bytes (use_regex false); alone, its regex is GPT-2's. */
            if (jbool(steps[i], "use_regex", 1) != (split == TN_PRETOK_NONE))
                return tn_err(split ? "tokenizer.json: ByteLevel with its own regex after a Split is not supported"
                                    : "tokenizer.json: ByteLevel without its regex is not supported");
            /* HF would prepend the space to every split piece; no model does that */
            if (jbool(steps[i], "add_prefix_space", 0)) {
                if (split) return tn_err("tokenizer.json: ByteLevel add_prefix_space after a Split is not supported");
                sh->flags |= TN_TOKF_PREFIX_SPACE;
            }
            byte_level = 1;
        } else if (ty && strcmp(ty, "Split") == 0) {
            TN_CHECK(split_step(steps[i], &split));
            if (i != 0 || n != 2) return tn_err("tokenizer.json: a Split must be followed by ByteLevel alone");
        } else if (ty && strcmp(ty, "Digits") == 0 && i == 0 && n == 2 && jbool(steps[i], "individual_digits", 0)) {
            digits = 1;
        } else if (ty && strcmp(ty, "Metaspace") == 0 && n == 1) {
            const char *scheme = jstr(steps[i], "prepend_scheme");
            if (jbool(steps[i], "split", 0)) return tn_err("tokenizer.json: Metaspace with split=true is not supported");
            if ((scheme && strcmp(scheme, "never") != 0) || (!scheme && jbool(steps[i], "add_prefix_space", 1)))
                sh->flags |= TN_TOKF_DUMMY_PREFIX;
            metaspace = 1;
        } else {
            return tn_err("tokenizer.json pre-tokenizer '%s' is not supported (the splitting rule would differ)",
                          ty ? ty : "(no type)");
        }
    }
    if (byte_level) {
        /* Qwen's NFC is accepted and not applied: llama.cpp does the same with these GGUFs (see the top). */
        int nfc = split && is_type(norm, "NFC");
        if (norm && !cJSON_IsNull(norm) && !nfc)
            return tn_err("tokenizer.json: a normalizer with a byte-level pre-tokenizer is not supported");
        sh->kind = TN_TOK_BPE;
        sh->pretok = split ? split : digits ? TN_PRETOK_GPT2_DIGITS : TN_PRETOK_GPT2;
        if (jbool(model, "ignore_merges", 0)) sh->flags |= TN_TOKF_IGNORE_MERGES;
        return 0;
    }
    if (digits || split)
        return tn_err("tokenizer.json: %s without ByteLevel is not supported", split ? "Split" : "Digits");
    /* SentencePiece style: Prepend("▁") + Replace(" ", "▁") normalizers, or a Metaspace pre-tokenizer. */
    int replace = metaspace;
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *ns[4];
        int m = 0;
        if (is_type(norm, "Sequence")) {
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(norm, "normalizers")) {
                if (m == 4) return tn_err("tokenizer.json: normalizer sequence too long to be supported");
                ns[m++] = it;
            }
        } else {
            ns[m++] = norm;
        }
        for (int i = 0; i < m; i++) {
            const char *ty = jstr(ns[i], "type");
            const char *prep = jstr(ns[i], "prepend");
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(ns[i], "pattern");
            const char *content = jstr(ns[i], "content");
            if (ty && strcmp(ty, "Prepend") == 0 && prep && strcmp(prep, "\xE2\x96\x81") == 0) {
                sh->flags |= TN_TOKF_DUMMY_PREFIX;
            } else if (ty && strcmp(ty, "Replace") == 0 && pat && jstr(pat, "String") &&
                       strcmp(jstr(pat, "String"), " ") == 0 && content && strcmp(content, "\xE2\x96\x81") == 0) {
                replace = 1;
            } else {
                return tn_err("tokenizer.json normalizer '%s' is not supported", ty ? ty : "(no type)");
            }
        }
    }
    if (!replace) return tn_err("tokenizer.json: neither byte-level nor SentencePiece style (no ByteLevel, Metaspace or \"▁\" normalizer)");
    sh->kind = TN_TOK_SPM;
    sh->pretok = TN_PRETOK_NONE;
    if (jbool(model, "byte_fallback", 0)) sh->flags |= TN_TOKF_BYTE_FALLBACK;
    return 0;
}

static int is_byte_piece(const char *s) {
    return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

/* The vocabulary, by id, from model.vocab and added_tokens. */
static int fill_vocab(tn_tokenizer *t, const cJSON *model, const cJSON *added, const shape *sh) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return tn_err("tokenizer.json: model.vocab missing or not an object");
    double max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= TN_TOK_MAX_VOCAB ||
            it->valuedouble != (double)(int32_t)it->valuedouble)
            return tn_err("tokenizer.json: vocab entry \"%.40s\" has a bad id", it->string);
        if (it->valuedouble > max_id) max_id = it->valuedouble;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsNumber(id) || !jstr(it, "content") || id->valuedouble < 0 || id->valuedouble >= TN_TOK_MAX_VOCAB ||
            id->valuedouble != (double)(int32_t)id->valuedouble)
            return tn_err("tokenizer.json: an added token lacks a valid id or content");
        if (id->valuedouble > max_id) max_id = id->valuedouble;
    }
    int32_t n = (int32_t)max_id + 1;
    if (n <= 0) return tn_err("tokenizer.json: empty vocabulary");
    const char **str = calloc((size_t)n, sizeof *str);
    uint8_t *type = calloc((size_t)n, 1);
    if (!str || !type) {
        free(str);
        free(type);
        return tn_err("tokenizer.json: out of memory");
    }
    int rc = 0;
    const char *unk = jstr(model, "unk_token");
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)it->valuedouble;
        if (str[id]) {
            rc = tn_err("tokenizer.json: id %d used by both \"%.40s\" and \"%.40s\"", id, str[id], it->string);
            break;
        }
        str[id] = it->string;
        type[id] = TN_TOKTYPE_NORMAL;
        if (sh->kind == TN_TOK_SPM && (sh->flags & TN_TOKF_BYTE_FALLBACK) && is_byte_piece(it->string)) type[id] = TN_TOKTYPE_BYTE;
        if (unk && strcmp(unk, it->string) == 0) type[id] = TN_TOKTYPE_UNKNOWN;
    }
    cJSON_ArrayForEach(it, added) {
        if (rc) break;
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *content = jstr(it, "content");
        if (str[id] && strcmp(str[id], content) != 0) {
            rc = tn_err("tokenizer.json: added token %d \"%.40s\" clashes with vocab \"%.40s\"", id, content, str[id]);
            break;
        }
        str[id] = content;
        if (type[id] != TN_TOKTYPE_UNKNOWN)
            type[id] = jbool(it, "special", 0) ? TN_TOKTYPE_CONTROL : TN_TOKTYPE_USER;
    }
    for (int32_t id = 0; rc == 0 && id < n; id++) {
        if (!str[id]) rc = tn_err("tokenizer.json: no token has id %d (ids must be 0..%d without gaps)", id, n - 1);
        else rc = tn_tok_add(t, str[id], strlen(str[id]), 0.0f, type[id]);
    }
    free(str);
    free(type);
    return rc;
}

static int fill_merges(tn_tokenizer *t, const cJSON *model) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!merges || cJSON_IsNull(merges)) return 0;
    if (!cJSON_IsArray(merges)) return tn_err("tokenizer.json: model.merges is not an array");
    int r = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            /* "a b": tokens of either kind never contain a raw space (it is "Ġ" or "▁"), so the first
             * space splits. */
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!sp) return tn_err("tokenizer.json: merge %d \"%.40s\" has no space", r, s);
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(sp + 1);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring, la = strlen(a);
            b = cJSON_GetArrayItem(it, 1)->valuestring, lb = strlen(b);
        } else {
            return tn_err("tokenizer.json: merge %d is neither \"a b\" nor [\"a\", \"b\"]", r);
        }
        int32_t ia = tn_tok_lookup(t, a, la), ib = tn_tok_lookup(t, b, lb);
        if (ia < 0 || ib < 0) return tn_err("tokenizer.json: merge %d refers to a string outside the vocabulary", r);
        TN_CHECK(tn_tok_add_merge(t, ia, ib));
        r++;
    }
    return 0;
}

static int32_t id_of(const tn_tokenizer *t, const char *s) { return s ? tn_tok_lookup(t, s, strlen(s)) : -1; }

/* BOS / EOS / UNK and whether BOS is prepended. */
static void specials(tn_tokenizer *t, const cJSON *root, const cJSON *model, const cJSON *cfg) {
    t->unk = id_of(t, jstr(model, "unk_token"));
    int add_bos = -1;
    /* post_processor: TemplateProcessing {"single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": ...}]} */
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (pp && is_type(pp, "Sequence")) { /* Llama-3: [ByteLevel, TemplateProcessing] */
        const cJSON *it, *tp = NULL;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            if (is_type(it, "TemplateProcessing")) tp = it;
        }
        pp = tp;
    }
    if (pp && is_type(pp, "TemplateProcessing")) {
        const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        add_bos = sp != NULL;
        if (sp) t->bos = id_of(t, jstr(sp, "id"));
    }
    if (cfg) {
        int32_t b = id_of(t, token_name(cfg, "bos_token")), e = id_of(t, token_name(cfg, "eos_token"));
        if (b >= 0) t->bos = b;
        if (e >= 0) t->eos = e;
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
        if (cJSON_IsBool(ab)) add_bos = cJSON_IsTrue(ab);
    }
    /* Conventional names when nothing said otherwise, as special tokens only: Qwen2's vocabulary has a
     * plain "<s>" and "</s>" (ordinary text) beside its special "<|endoftext|>". */
    static const char *bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>"};
    static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>"};
    for (int i = 0; i < 3; i++) {
        int32_t b = id_of(t, bos_names[i]), e = id_of(t, eos_names[i]);
        if (t->bos < 0 && b >= 0 && t->type[b] == TN_TOKTYPE_CONTROL) t->bos = b;
        if (t->eos < 0 && e >= 0 && t->type[e] == TN_TOKTYPE_CONTROL) t->eos = e;
    }
    if (add_bos < 0) add_bos = t->kind == TN_TOK_SPM; /* Llama prepends BOS, GPT-2 does not */
    if (add_bos && t->bos >= 0) t->flags |= TN_TOKF_ADD_BOS;
}

int tn_tok_chat_template_from_config(tn_tokenizer *t, const char *config_json, size_t size) {
    cJSON *cfg = parse("tokenizer_config.json", config_json, size);
    if (!cfg) return -1;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tpl = NULL;
    int rc = 0;
    if (cJSON_IsString(ct)) {
        tpl = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, ct) {
            const char *name = jstr(it, "name"), *text = jstr(it, "template");
            if (!name || !text) {
                rc = tn_err("tokenizer_config.json: chat_template list entries must be {\"name\", \"template\"} strings");
                break;
            }
            if (strcmp(name, "default") == 0) tpl = text;
        }
    } else if (ct && !cJSON_IsNull(ct)) {
        rc = tn_err("tokenizer_config.json: chat_template is neither a string nor a list of named templates");
    }
    if (rc == 0 && tpl) rc = tn_tok_set_chat_template(t, tpl, strlen(tpl));
    cJSON_Delete(cfg);
    return rc;
}

int tn_tok_load_hf_json(const char *json, size_t size, const char *config_json, tn_tokenizer **out) {
    *out = NULL;
    cJSON *root = parse("tokenizer.json", json, size);
    if (!root) return -1;
    cJSON *cfg = NULL;
    if (config_json) {
        cfg = parse("tokenizer_config.json", config_json, strlen(config_json));
        if (!cfg) {
            cJSON_Delete(root);
            return -1;
        }
    }
    tn_tokenizer *t = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    shape sh = {0, 0, 0};
    int rc = cJSON_IsObject(model) ? 0 : tn_err("tokenizer.json: no \"model\" object (not a tokenizer.json?)");
    if (rc == 0) rc = detect(root, model, &sh);
    if (rc == 0) {
        t = tn_tok_new(sh.kind);
        rc = t ? 0 : -1;
    }
    if (rc == 0) {
        t->pretok = sh.pretok;
        t->flags = sh.flags;
        rc = fill_vocab(t, model, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &sh);
    }
    if (rc == 0) rc = tn_tok_index(t); /* merges and special names are looked up by string */
    if (rc == 0) rc = fill_merges(t, model);
    if (rc == 0) {
        specials(t, root, model, cfg);
        rc = tn_tok_finish(t);
    }
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (rc != 0) {
        tn_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}
