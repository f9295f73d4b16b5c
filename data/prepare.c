/* `trinity prepare`: Alpaca JSON and plain text to shards (see prepare.h for the templates and the
 * masking rule). */
#include "data/prepare.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "data/shard.h"
#include "data/unicode.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------------
 * templates */

static const char *ALPACA_WITH_INPUT =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n"
    "### Response:\n";
static const char *ALPACA_NO_INPUT =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n%s\n\n### Response:\n";
static const char *TRINITY = "Instruction: %s\nInput: %s\nResponse: ";

int tn_prepare_prompt(const char *template_name, const char *instruction, const char *input, char **prompt) {
    const char *tpl = template_name ? template_name : "trinity";
    size_t n = strlen(instruction) + strlen(input) + 512;
    char *p = malloc(n);
    if (!p) return tn_err("out of memory");
    if (strcmp(tpl, "trinity") == 0) snprintf(p, n, TRINITY, instruction, input);
    else if (strcmp(tpl, "alpaca") == 0 && input[0]) snprintf(p, n, ALPACA_WITH_INPUT, instruction, input);
    else if (strcmp(tpl, "alpaca") == 0) snprintf(p, n, ALPACA_NO_INPUT, instruction);
    else {
        free(p);
        return tn_err("unknown template '%s' (trinity or alpaca)", tpl);
    }
    *prompt = p;
    return 0;
}

static int mask_reserve(uint8_t **mask, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < n) c *= 2;
    uint8_t *m = realloc(*mask, c);
    if (!m) return tn_err("out of memory");
    *mask = m;
    *cap = c;
    return 0;
}

/* Tokenize prompt+output as one text; mark tokens ending past the prompt (see prepare.h). Token byte
 * spans come from the decoded pieces, which concatenate back to the text exactly. */
int tn_prepare_example(const tn_tokenizer *tok, const char *template_name, const char *instruction,
                       const char *input, const char *output, tn_tokens *ids, uint8_t **mask, size_t *mask_cap) {
    char *prompt;
    TN_CHECK(tn_prepare_prompt(template_name, instruction, input, &prompt));
    size_t bp = strlen(prompt), bo = strlen(output);
    char *text = malloc(bp + bo + 1);
    if (!text) {
        free(prompt);
        return tn_err("out of memory");
    }
    memcpy(text, prompt, bp);
    memcpy(text + bp, output, bo + 1);
    free(prompt);
    size_t first = ids->n;
    int use_bos = tn_tokenizer_uses_bos(tok);
    int rc = tn_tokenizer_encode(tok, text, bp + bo, use_bos, ids);
    if (rc == 0 && tn_tokenizer_eos_id(tok) >= 0) rc = tn_tokens_push(ids, (int32_t)tn_tokenizer_eos_id(tok));
    if (rc == 0) rc = mask_reserve(mask, mask_cap, ids->n);
    if (rc == 0) {
        size_t pos = 0;
        for (size_t i = first; i < ids->n; i++) {
            size_t n;
            const char *p = tn_tokenizer_piece(tok, i > first ? ids->ids[i - 1] : -1, ids->ids[i], &n);
            if (!p) {
                rc = tn_err("token %d outside the vocabulary", ids->ids[i]);
                break;
            }
            pos += n;
            (*mask)[i] = pos > bp;
        }
        if (rc == 0 && pos != bp + bo) rc = tn_err("tokenization does not decode back to the text (%zu of %zu bytes)", pos, bp + bo);
        if (rc == 0 && tn_tokenizer_eos_id(tok) >= 0) (*mask)[ids->n - 1] = 1;
    }
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * input helpers */

/* Line and column (1-based) of a byte offset, for error messages. */
static void line_col(const char *s, size_t off, size_t *line, size_t *col) {
    *line = 1;
    size_t last = 0;
    for (size_t i = 0; i < off; i++)
        if (s[i] == '\n') (*line)++, last = i + 1;
    *col = off - last + 1;
}

static int read_utf8(const char *path, char **data, size_t *size) {
    TN_CHECK(tn_read_file(path, data, size));
    if (*size == 0) {
        free(*data);
        return tn_err("%s: empty file", path);
    }
    size_t bad = tn_utf8_check((const uint8_t *)*data, *size);
    if (bad != (size_t)-1) {
        size_t line, col;
        line_col(*data, bad, &line, &col);
        free(*data);
        return tn_err("%s: invalid UTF-8 at byte %zu (line %zu, column %zu)", path, bad, line, col);
    }
    return 0;
}

/* A growing shard under construction. */
typedef struct {
    tn_tokens ids;
    uint8_t *mask;
    size_t mask_cap;
    uint64_t *offs;
    size_t n_docs, offs_cap;
} builder;

static int builder_end_doc(builder *b) {
    if (b->n_docs + 2 > b->offs_cap) {
        size_t c = b->offs_cap ? 2 * b->offs_cap : 1024;
        uint64_t *o = realloc(b->offs, c * sizeof *o);
        if (!o) return tn_err("out of memory");
        b->offs = o;
        b->offs_cap = c;
        if (b->n_docs == 0) b->offs[0] = 0;
    }
    b->offs[++b->n_docs] = b->ids.n;
    return 0;
}

static void builder_free(builder *b) {
    tn_tokens_free(&b->ids);
    free(b->mask);
    free(b->offs);
    memset(b, 0, sizeof *b);
}

static int builder_write(builder *b, const tn_tokenizer *tok, const char *kind, const char *tpl, const char *path) {
    tn_shard s;
    memset(&s, 0, sizeof s);
    snprintf(s.kind, sizeof s.kind, "%s", kind);
    snprintf(s.template_name, sizeof s.template_name, "%s", tpl);
    s.vocab_size = tn_tokenizer_vocab_size(tok);
    s.bos_id = tn_tokenizer_bos_id(tok);
    s.eos_id = tn_tokenizer_eos_id(tok);
    snprintf(s.tokenizer_sha256, sizeof s.tokenizer_sha256, "%s", tn_tokenizer_sha256(tok));
    if (!b->offs) { /* no document at all: offsets = [0] */
        TN_CHECK(builder_end_doc(b));
        b->n_docs = 0;
    }
    TN_CHECK(mask_reserve(&b->mask, &b->mask_cap, 1));
    s.n_tokens = (int64_t)b->ids.n;
    s.n_docs = (int64_t)b->n_docs;
    uint32_t dummy = 0;
    s.tokens = b->ids.n ? (uint32_t *)b->ids.ids : &dummy; /* ids are < vocab_size <= 2^31: same bits */
    s.loss_mask = b->mask;
    s.doc_offsets = b->offs;
    return tn_shard_write(path, &s);
}

/* ---------------------------------------------------------------------------------------------------
 * Alpaca */

static int get_field(const cJSON *rec, size_t i, const char *key, int required, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v) {
        if (required) return tn_err("record %zu: missing \"%s\"", i, key);
        *out = "";
        return 0;
    }
    if (!cJSON_IsString(v)) return tn_err("record %zu: \"%s\" is not a string", i, key);
    /* \u escapes can produce bytes the file check did not see (cJSON passes lone surrogates through). */
    if (tn_utf8_check((const uint8_t *)v->valuestring, strlen(v->valuestring)) != (size_t)-1)
        return tn_err("record %zu: \"%s\" is not valid UTF-8 (a bad \\u escape?)", i, key);
    *out = v->valuestring;
    return 0;
}

/* Parse a JSON array, or JSON lines (one object per line), into an array the caller deletes. */
static cJSON *parse_records(const char *path, const char *data, size_t size) {
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) i++;
    if (i == size) {
        tn_err("%s: no JSON in the file", path);
        return NULL;
    }
    if (data[i] == '[') {
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(data, size, &end, 0);
        if (!root) {
            size_t off = end && end >= data && end <= data + size ? (size_t)(end - data) : 0, line, col;
            line_col(data, off, &line, &col);
            tn_err("%s: malformed JSON at byte %zu (line %zu, column %zu)", path, off, line, col);
            return NULL;
        }
        /* Only whitespace may follow the array. */
        size_t k = (size_t)(end - data);
        while (k < size && (data[k] == ' ' || data[k] == '\t' || data[k] == '\n' || data[k] == '\r')) k++;
        if (k < size) {
            cJSON_Delete(root);
            tn_err("%s: malformed JSON at byte %zu (text after the top-level array)", path, k);
            return NULL;
        }
        return root;
    }
    if (data[i] != '{') {
        tn_err("%s: expected a JSON array of records or JSON lines, found '%c' at byte %zu", path, data[i], i);
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    while (i < size) {
        const char *nl = memchr(data + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (data + i)) : size - i;
        size_t k = 0;
        while (k < len && (data[i + k] == ' ' || data[i + k] == '\t' || data[i + k] == '\r')) k++;
        if (k < len) {
            const char *end = NULL;
            cJSON *o = cJSON_ParseWithLengthOpts(data + i, len, &end, 0);
            if (o) { /* one object per line: only whitespace may follow it */
                const char *e = end, *stop = data + i + len;
                while (e < stop && (*e == ' ' || *e == '\t' || *e == '\r')) e++;
                if (e < stop) {
                    cJSON_Delete(o);
                    o = NULL;
                    end = e;
                }
            }
            if (!o) {
                size_t off = end ? (size_t)(end - data) : i, line, col;
                line_col(data, off, &line, &col);
                tn_err("%s: malformed JSON at byte %zu (line %zu, column %zu)", path, off, line, col);
                cJSON_Delete(arr);
                return NULL;
            }
            cJSON_AddItemToArray(arr, o);
        }
        i += len + 1;
    }
    return arr;
}

/* One record -> one example's ids and mask (ex is emptied first). Errors name the field, not the file. */
typedef int (*example_fn)(const void *ctx, const cJSON *rec, int i, tn_tokens *ex, uint8_t **mask, size_t *mask_cap);

typedef struct {
    const tn_tokenizer *tok;
    const char *tpl;
} alpaca_ctx;

static int alpaca_example(const void *ctx, const cJSON *rec, int i, tn_tokens *ex, uint8_t **mask, size_t *mask_cap) {
    const alpaca_ctx *a = ctx;
    const char *ins = "", *inp = "", *out = "";
    if (!cJSON_IsObject(rec)) return tn_err("record %d is not an object", i);
    if (get_field(rec, (size_t)i, "instruction", 1, &ins) || get_field(rec, (size_t)i, "input", 0, &inp) ||
        get_field(rec, (size_t)i, "output", 1, &out))
        return -1;
    if (tn_prepare_example(a->tok, a->tpl, ins, inp, out, ex, mask, mask_cap) != 0) return tn_err_prefix("record %d", i);
    return 0;
}

/* The SFT loop both input kinds share: records -> examples -> train / validation shards. */
static int prepare_sft(const tn_tokenizer *tok, const char *in_path, const char *out_path, const char *val_path,
                       const tn_prepare_sft_opts *o, tn_prepare_stats *st, example_fn example, const void *ctx,
                       const char *tpl) {
    memset(st, 0, sizeof *st);
    if (o->val_fraction < 0 || o->val_fraction >= 1) return tn_err("val fraction %g outside [0, 1)", o->val_fraction);
    if (o->val_fraction > 0 && !val_path) return tn_err("a validation fraction needs a validation output path");
    if (o->max_len < 0) return tn_err("max length %" PRId64 " is negative", o->max_len);
    char *data;
    size_t size;
    TN_CHECK(read_utf8(in_path, &data, &size));
    cJSON *root = parse_records(in_path, data, size);
    free(data);
    if (!root) return -1;
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return tn_err("%s: top level is not an array of records", in_path);
    }
    int n = cJSON_GetArraySize(root);
    if (n == 0) {
        cJSON_Delete(root);
        return tn_err("%s: no records", in_path);
    }
    st->n_records = n;

    /* Which records go to validation: the first round(n * f) of a seeded shuffle; file order is kept
     * inside each shard. */
    uint8_t *is_val = calloc((size_t)n, 1);
    uint64_t *perm = malloc((size_t)n * sizeof *perm);
    builder tr = {0}, va = {0};
    tn_tokens ex = {0};
    uint8_t *exmask = NULL;
    size_t exmask_cap = 0;
    int rc = (!is_val || !perm) ? tn_err("out of memory") : 0;
    if (rc == 0) {
        for (int i = 0; i < n; i++) perm[i] = (uint64_t)i;
        tn_rng r;
        tn_rng_seed(&r, o->seed);
        tn_rng_shuffle_u64(&r, perm, (uint64_t)n);
        int64_t n_val = (int64_t)llround(o->val_fraction * n);
        for (int64_t i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    }
    int i = 0;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, root) {
        if (rc) break;
        ex.n = 0;
        rc = example(ctx, rec, i, &ex, &exmask, &exmask_cap);
        if (rc) {
            tn_err_prefix("%s", in_path);
            break;
        }
        size_t len = ex.n;
        if (o->max_len > 0 && (int64_t)len > o->max_len) {
            if (o->drop_long) {
                st->n_dropped++;
                i++;
                continue;
            }
            len = (size_t)o->max_len;
            int any = 0;
            for (size_t k = 0; k < len; k++) any |= exmask[k];
            if (!any) { /* the prompt alone fills max_len: nothing left to train on */
                st->n_dropped++;
                i++;
                continue;
            }
            st->n_truncated++;
        }
        builder *b = is_val[i] ? &va : &tr;
        rc = mask_reserve(&b->mask, &b->mask_cap, b->ids.n + len);
        for (size_t k = 0; rc == 0 && k < len; k++) {
            b->mask[b->ids.n] = exmask[k];
            rc = tn_tokens_push(&b->ids, ex.ids[k]);
        }
        if (rc == 0) rc = builder_end_doc(b);
        i++;
    }
    if (rc == 0 && tr.n_docs == 0) rc = tn_err("%s: no training example left (all dropped or in validation)", in_path);
    if (rc == 0) {
        st->n_train = (int64_t)tr.n_docs;
        st->n_val = (int64_t)va.n_docs;
        st->tokens_train = (int64_t)tr.ids.n;
        st->tokens_val = (int64_t)va.ids.n;
        for (size_t k = 0; k < tr.ids.n; k++) st->masked_train += tr.mask[k];
        rc = builder_write(&tr, tok, "sft", tpl, out_path);
        if (rc == 0 && val_path && o->val_fraction > 0) {
            rc = builder_write(&va, tok, "sft", tpl, val_path);
            if (rc != 0) unlink(out_path); /* all or nothing */
        }
    }
    builder_free(&tr);
    builder_free(&va);
    tn_tokens_free(&ex);
    free(exmask);
    free(is_val);
    free(perm);
    cJSON_Delete(root);
    return rc;
}

int tn_prepare_alpaca(const tn_tokenizer *tok, const char *in_path, const char *out_path, const char *val_path,
                      const tn_prepare_sft_opts *o, tn_prepare_stats *st) {
    memset(st, 0, sizeof *st);
    const char *tpl = o->template_name ? o->template_name : "trinity";
    char *probe;
    TN_CHECK(tn_prepare_prompt(tpl, "", "", &probe));
    free(probe);
    alpaca_ctx a = {tok, tpl};
    return prepare_sft(tok, in_path, out_path, val_path, o, st, alpaca_example, &a, tpl);
}

/* ---------------------------------------------------------------------------------------------------
 * conversations */

static int chat_example(const void *ctx, const cJSON *rec, int i, tn_tokens *ex, uint8_t **mask, size_t *mask_cap) {
    const tn_chat *chat = ctx;
    if (!cJSON_IsObject(rec)) return tn_err("record %d is not an object", i);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
    if (!cJSON_IsArray(msgs)) return tn_err("record %d: no \"messages\" array", i);
    int n = cJSON_GetArraySize(msgs), rc = 0, n_asst = 0;
    if (n == 0) return tn_err("record %d: \"messages\" is empty", i);
    tn_chat_msg *m = malloc((size_t)n * sizeof *m);
    if (!m) return tn_err("out of memory");
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role"), *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsObject(it) || !cJSON_IsString(role) || !cJSON_IsString(content)) {
            rc = tn_err("record %d: messages[%d] is not {\"role\": string, \"content\": string}", i, k);
            break;
        }
        if (tn_utf8_check((const uint8_t *)content->valuestring, strlen(content->valuestring)) != (size_t)-1 ||
            tn_utf8_check((const uint8_t *)role->valuestring, strlen(role->valuestring)) != (size_t)-1) {
            rc = tn_err("record %d: messages[%d] is not valid UTF-8 (a bad \\u escape?)", i, k);
            break;
        }
        m[k].role = role->valuestring;
        m[k].content = content->valuestring;
        n_asst += strcmp(role->valuestring, "assistant") == 0;
        k++;
    }
    if (rc == 0 && n_asst == 0) rc = tn_err("record %d: no assistant message (nothing to train on)", i);
    if (rc == 0 && tn_chat_render(chat, m, n, 0, ex, mask, mask_cap) != 0) rc = tn_err_prefix("record %d", i);
    free(m);
    return rc;
}

int tn_prepare_chat(const tn_tokenizer *tok, const tn_chat *chat, const char *in_path, const char *out_path,
                    const char *val_path, const tn_prepare_sft_opts *o, tn_prepare_stats *st) {
    char tpl[32];
    snprintf(tpl, sizeof tpl, "chat:%s", tn_chat_family_name(tn_chat_get_family(chat)));
    return prepare_sft(tok, in_path, out_path, val_path, o, st, chat_example, chat, tpl);
}

/* ---------------------------------------------------------------------------------------------------
 * plain text */

static int blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* A WikiText article title: " = Title = " (level 1: not " = = Section = = "). */
static int heading_line(const char *s, size_t n) {
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ')) n--;
    size_t i = 0;
    while (i < n && s[i] == ' ') i++;
    if (n - i < 5 || s[i] != '=' || s[i + 1] != ' ' || s[n - 1] != '=' || s[n - 2] != ' ') return 0;
    return s[i + 2] != '=';
}

/* One document: [BOS] text [EOS]; mask 1 except on BOS. */
static int add_doc(const tn_tokenizer *tok, const char *text, size_t len, builder *b) {
    size_t first = b->ids.n;
    TN_CHECK(tn_tokenizer_encode(tok, text, len, tn_tokenizer_uses_bos(tok), &b->ids));
    if (tn_tokenizer_eos_id(tok) >= 0) TN_CHECK(tn_tokens_push(&b->ids, (int32_t)tn_tokenizer_eos_id(tok)));
    TN_CHECK(mask_reserve(&b->mask, &b->mask_cap, b->ids.n));
    for (size_t i = first; i < b->ids.n; i++) b->mask[i] = 1;
    if (tn_tokenizer_uses_bos(tok)) b->mask[first] = 0;
    return builder_end_doc(b);
}

/* Split one file (CRLF already turned into LF) into documents and add them. Leading and trailing blank
 * lines of a document are not part of it; the text in between is kept byte for byte. */
static int add_file(const tn_tokenizer *tok, const char *s, size_t n, tn_doc_split split, builder *b) {
    size_t doc = 0, end = 0; /* current document: [doc, end) */
    int in_doc = 0;
    for (size_t i = 0; i <= n;) {
        const char *nl = i < n ? memchr(s + i, '\n', n - i) : NULL;
        size_t len = i < n ? (nl ? (size_t)(nl - (s + i)) : n - i) : 0;
        int eof = i >= n;
        int blank = !eof && blank_line(s + i, len);
        int boundary = eof || (split == TN_DOCSPLIT_BLANK_LINE && blank) ||
                       (split == TN_DOCSPLIT_HEADING && heading_line(s + i, len));
        if (boundary && in_doc) {
            TN_CHECK(add_doc(tok, s + doc, end - doc, b));
            in_doc = 0;
        }
        if (eof) break;
        if (!blank) {
            if (!in_doc) doc = i, in_doc = 1;
            end = i + len + (nl ? 1 : 0); /* keep the line's newline */
        }
        i += len + (nl ? 1 : 0); /* a last line without a newline still ends at n */
    }
    return 0;
}

int tn_prepare_text(const tn_tokenizer *tok, const char *const *in_paths, int n_in, const char *out_path,
                    tn_doc_split split, tn_prepare_stats *st) {
    memset(st, 0, sizeof *st);
    if (n_in < 1) return tn_err("no input file");
    builder b = {0};
    int rc = 0;
    for (int f = 0; f < n_in && rc == 0; f++) {
        char *data;
        size_t size;
        rc = read_utf8(in_paths[f], &data, &size);
        if (rc) break;
        /* CRLF -> LF (a lone CR stays). */
        size_t k = 0;
        for (size_t i = 0; i < size; i++)
            if (!(data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')) data[k++] = data[i];
        size_t before = b.n_docs;
        rc = add_file(tok, data, k, split, &b);
        if (rc) tn_err_prefix("%s", in_paths[f]);
        else if (b.n_docs == before) rc = tn_err("%s: no text (only blank lines)", in_paths[f]);
        st->n_records += (int64_t)(b.n_docs - before);
        free(data);
    }
    if (rc == 0) {
        st->n_train = (int64_t)b.n_docs;
        st->tokens_train = (int64_t)b.ids.n;
        for (size_t i = 0; i < b.ids.n; i++) st->masked_train += b.mask[i];
        rc = builder_write(&b, tok, "text", "", out_path);
    }
    builder_free(&b);
    return rc;
}
