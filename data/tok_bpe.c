/* Byte-level BPE (GPT-2 family): the pre-tokenizers, written out by hand, and the encoder.
 *
 * A pre-tokenizer is a sequence of splitting passes; each pass cuts every current fragment into the
 * matches of its pattern and the gaps between them (both kept), as llama.cpp's unicode_regex_split and
 * HF tokenizers' Split(behavior=isolated) do. Passes see only their fragment, so lookaheads stop at
 * fragment ends. The patterns:
 *   GPT-2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *           (openai/gpt-2 encoder.py; alternatives tried in order at each position, leftmost first)
 *   digits  \p{N}        every number character alone (HF Digits(individual_digits=true); SmolLM2,
 *                        StarCoder, Refact run this before GPT-2's pattern)
 *   falcon  [\p{P}\$\+<=>\^~\|`]+ , then GPT-2's pattern, then [0-9][0-9][0-9]
 *   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *           (Meta-Llama-3's tokenizer.json; llama.cpp LLAMA_VOCAB_PRE_TYPE_LLAMA3)
 *   qwen2   the same with \p{N} for \p{N}{1,3} (Qwen2's tokenizer.json; llama.cpp LLAMA_VOCAB_PRE_TYPE_QWEN2)
 *   qwen35  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *           (Qwen3.5's tokenizer.json; llama.cpp LLAMA_VOCAB_PRE_TYPE_QWEN35)
 * \s is the Unicode White_Space property, \p{L}/\p{N}/\p{P}/\p{M} general categories (unicode.h). */
#include "core/error.h"
#include "data/tok_internal.h"
#include "data/unicode.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint32_t *cp; /* code points of the text (0xFFFFFFFF for an invalid byte) */
    const uint8_t *cls; /* their tn_uni_class */
    const uint8_t *sp;  /* their White_Space flag */
} cps;

typedef struct {
    int32_t *a, *b; /* fragment i is code points [a[i], b[i]) */
    size_t n, cap;
} frags;

static int frag_add(frags *f, int32_t a, int32_t b) {
    if (a >= b) return 0;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        int32_t *na = realloc(f->a, cap * sizeof *na);
        if (na) f->a = na;
        int32_t *nb = realloc(f->b, cap * sizeof *nb);
        if (nb) f->b = nb;
        if (!na || !nb) return tn_err("tokenizer: out of memory");
        f->cap = cap;
    }
    f->a[f->n] = a;
    f->b[f->n] = b;
    f->n++;
    return 0;
}

static int is_l(const cps *c, int32_t i) { return c->cls[i] == TN_UNI_LETTER; }
static int is_n(const cps *c, int32_t i) { return c->cls[i] == TN_UNI_NUMBER; }
static int is_other(const cps *c, int32_t i) { return !c->sp[i] && !is_l(c, i) && !is_n(c, i); }

/* GPT-2's pattern over [a, b). */
static int split_gpt2(const cps *c, int32_t a, int32_t b, frags *out) {
    int32_t pos = a;
    while (pos < b) {
        int32_t start = pos;
        uint32_t ch = c->cp[pos];
        /* 's 't 'm 'd 're 've 'll (case-sensitive, as in the original pattern) */
        if (ch == '\'' && pos + 1 < b) {
            uint32_t c1 = c->cp[pos + 1], c2 = pos + 2 < b ? c->cp[pos + 2] : 0;
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
                TN_CHECK(frag_add(out, start, pos + 2));
                pos += 2;
                continue;
            }
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                TN_CHECK(frag_add(out, start, pos + 3));
                pos += 3;
                continue;
            }
        }
        /* ' ?' followed by a run of letters, of numbers, or of "other" characters */
        int32_t q = pos + (ch == ' ');
        if (q < b) {
            int (*run)(const cps *, int32_t) = is_l(c, q) ? is_l : is_n(c, q) ? is_n : is_other(c, q) ? is_other : NULL;
            if (run) {
                while (q < b && run(c, q)) q++;
                TN_CHECK(frag_add(out, start, q));
                pos = q;
                continue;
            }
        }
        /* \s+(?!\S) then \s+: a whitespace run followed by a non-space gives up its last character
         * (which then starts the next word as its ' ?' prefix, or stands alone). */
        int32_t w = pos;
        while (w < b && c->sp[w]) w++;
        if (w > pos) {
            int32_t end = (w - pos > 1 && w < b) ? w - 1 : w;
            TN_CHECK(frag_add(out, start, end));
            pos = end;
            continue;
        }
        TN_CHECK(frag_add(out, start, pos + 1)); /* cannot happen with the classes above; kept for safety */
        pos++;
    }
    return 0;
}

/* The Llama-3 family's pattern over [a, b), PCRE semantics (alternatives in order, leftmost first, with
 * backtracking); `digits` is 3 for llama3's \p{N}{1,3} and 1 for qwen's \p{N}, and `marks` makes \p{M}
 * a word character and no longer an "other" one (qwen35). Per alternative, what the backtracking comes to:
 *   (?i:'s|'t|...)             an apostrophe and its suffix, ASCII case-insensitively (llama.cpp spells it
 *                              '[sS]|...; full Unicode case folding would also take U+017F "ſ" for s)
 *   [^\r\n\p{L}\p{N}]?\p{L}+   a word, with the one character before it when that is not \r, \n, a letter
 *                              or a number (" word", "\tword", "(word"); with marks the prefix may be a
 *                              mark, which changes nothing: [\p{L}\p{M}]+ takes it as well
 *   \p{N}{1,3}                 up to `digits` numbers
 *    ?[^\s\p{L}\p{N}]+[\r\n]*  a run of other characters, with one space before it and the newlines after
 *   \s*[\r\n]+                 a whitespace run holding \r or \n: \s* gives back until [\r\n]+ matches, so
 *                              the match ends after the run's last \r or \n
 *   \s+(?!\S)                  a whitespace run before a non-space gives back its last character (which
 *                              then prefixes the next word or other-run, or stands alone)
 *   \s+                        a lone whitespace character before a non-space
 * Each character is exactly one of word / number / other / whitespace, so some alternative always matches. */
static int is_word(const cps *c, int32_t i, int marks) {
    return c->cls[i] == TN_UNI_LETTER || (marks && c->cls[i] == TN_UNI_MARK);
}

/* [^\s\p{L}\p{N}], or [^\s\p{L}\p{M}\p{N}] with marks */
static int other_char(const cps *c, int32_t i, int marks) { return !c->sp[i] && !is_word(c, i, marks) && !is_n(c, i); }

static int split_llama3(const cps *c, int32_t a, int32_t b, int digits, int marks, frags *out) {
    int32_t pos = a;
    while (pos < b) {
        int32_t end;
        uint32_t ch = c->cp[pos];
        /* | 0x20 folds ASCII upper case to lower; a non-ASCII code point stays non-ASCII */
        uint32_t c1 = pos + 1 < b ? c->cp[pos + 1] | 0x20 : 0, c2 = pos + 2 < b ? c->cp[pos + 2] | 0x20 : 0;
        int prefix = ch != '\r' && ch != '\n' && !is_l(c, pos) && !is_n(c, pos); /* [^\r\n\p{L}\p{N}] */
        if (ch == '\'' && (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')) {
            end = pos + 2;
        } else if (ch == '\'' && ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))) {
            end = pos + 3;
        } else if (is_word(c, pos, marks) || (prefix && pos + 1 < b && is_word(c, pos + 1, marks))) {
            end = pos + 1;
            while (end < b && is_word(c, end, marks)) end++;
        } else if (is_n(c, pos)) {
            end = pos + 1;
            while (end < b && end - pos < digits && is_n(c, end)) end++;
        } else if (other_char(c, pos, marks) || (ch == ' ' && pos + 1 < b && other_char(c, pos + 1, marks))) {
            end = pos + 1;
            while (end < b && other_char(c, end, marks)) end++;
            while (end < b && (c->cp[end] == '\r' || c->cp[end] == '\n')) end++;
        } else {
            int32_t w = pos, nl = -1;
            for (; w < b && c->sp[w]; w++)
                if (c->cp[w] == '\r' || c->cp[w] == '\n') nl = w;
            end = nl >= 0 ? nl + 1 : (w - pos > 1 && w < b) ? w - 1 : w;
        }
        TN_CHECK(frag_add(out, pos, end));
        pos = end;
    }
    return 0;
}

/* Matches of `match(i)`-runs (or single characters when single) and the gaps between them. */
static int split_runs(const cps *c, int32_t a, int32_t b, int (*match)(const cps *, int32_t), int single,
                      frags *out) {
    int32_t gap = a, i = a;
    while (i < b) {
        if (!match(c, i)) {
            i++;
            continue;
        }
        TN_CHECK(frag_add(out, gap, i));
        int32_t j = i + 1;
        if (!single)
            while (j < b && match(c, j)) j++;
        TN_CHECK(frag_add(out, i, j));
        gap = i = j;
    }
    return frag_add(out, gap, b);
}

static int is_falcon_punct(const cps *c, int32_t i) {
    uint32_t ch = c->cp[i];
    return c->cls[i] == TN_UNI_PUNCT || ch == '$' || ch == '+' || ch == '<' || ch == '=' || ch == '>' || ch == '^' ||
           ch == '~' || ch == '|' || ch == '`';
}

static int split_digit3(const cps *c, int32_t a, int32_t b, frags *out) {
    int32_t gap = a, i = a;
    while (i + 3 <= b) {
        int d = 1;
        for (int k = 0; k < 3; k++) d &= c->cp[i + k] >= '0' && c->cp[i + k] <= '9';
        if (!d) {
            i++;
            continue;
        }
        TN_CHECK(frag_add(out, gap, i));
        TN_CHECK(frag_add(out, i, i + 3));
        gap = i = i + 3;
    }
    return frag_add(out, gap, b);
}

enum { PASS_GPT2, PASS_DIGITS, PASS_FALCON_PUNCT, PASS_DIGIT3, PASS_LLAMA3, PASS_QWEN2, PASS_QWEN35 };

static int run_pass(const cps *c, int pass, frags *in, frags *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        int32_t a = in->a[i], b = in->b[i];
        int rc = pass == PASS_GPT2           ? split_gpt2(c, a, b, out)
                 : pass == PASS_DIGITS       ? split_runs(c, a, b, is_n, 1, out)
                 : pass == PASS_FALCON_PUNCT ? split_runs(c, a, b, is_falcon_punct, 0, out)
                 : pass == PASS_DIGIT3       ? split_digit3(c, a, b, out)
                 : pass == PASS_LLAMA3       ? split_llama3(c, a, b, 3, 0, out)
                 : pass == PASS_QWEN2        ? split_llama3(c, a, b, 1, 0, out)
                                             : split_llama3(c, a, b, 1, 1, out);
        TN_CHECK(rc);
    }
    frags tmp = *in;
    *in = *out;
    *out = tmp;
    return 0;
}

/* Merge one pre-token's bytes [s, e) of text and append the ids. With TN_TOKF_IGNORE_MERGES a pre-token
 * whose byte-level spelling is a token is that token (HF BPE ignore_merges; llama.cpp does the same for
 * Llama-3): merges could reach a different split of it. `spell` has room for 2 bytes per text byte. */
static int encode_word(const tn_tokenizer *t, const char *text, size_t s, size_t e, tn_tok_syms *sy, char *spell,
                       tn_tokens *out) {
    if (t->flags & TN_TOKF_IGNORE_MERGES) {
        size_t k = 0;
        for (size_t i = s; i < e; i++) k += (size_t)tn_utf8_encode(tn_tok_byte_to_cp((uint8_t)text[i]), spell + k);
        int32_t id = tn_tok_lookup(t, spell, k);
        if (id >= 0) return tn_tokens_push(out, id);
    }
    int32_t n = 0;
    for (size_t i = s; i < e; i++, n++) {
        sy->id[n] = t->byte_id[(uint8_t)text[i]];
        sy->start[n] = (uint32_t)(i - s);
        sy->len[n] = 1;
        sy->prev[n] = n - 1;
        sy->next[n] = n + 1;
    }
    sy->next[n - 1] = -1;
    TN_CHECK(tn_tok_merge(t, text + s, sy, n, 0));
    for (int32_t i = 0; i >= 0; i = sy->next[i]) {
        int32_t id = sy->id[i];
        if (id < 0) {
            if (t->unk < 0)
                return tn_err("tokenizer: byte 0x%02x has no token in this vocabulary", (uint8_t)text[s + sy->start[i]]);
            id = t->unk;
        }
        TN_CHECK(tn_tokens_push(out, id));
    }
    return 0;
}

int tn_tok_encode_bpe(const tn_tokenizer *t, const char *text_in, size_t len_in, tn_tokens *out) {
    /* HF ByteLevel(add_prefix_space): a space in front unless the text starts with whitespace. */
    char *owned = NULL;
    const char *text = text_in;
    size_t len = len_in;
    if ((t->flags & TN_TOKF_PREFIX_SPACE) && len > 0) {
        uint32_t cp0;
        tn_utf8_decode((const uint8_t *)text_in, len_in, &cp0);
        if (!tn_uni_is_space(cp0)) {
            owned = malloc(len_in + 1);
            if (!owned) return tn_err("tokenizer: out of memory");
            owned[0] = ' ';
            memcpy(owned + 1, text_in, len_in);
            text = owned;
            len = len_in + 1;
        }
    }
    if (len > INT32_MAX / 2) {
        free(owned);
        return tn_err("tokenizer: text of %zu bytes is too long for one call", len);
    }
    /* Code points with their byte offsets and classes; symbols scratch sized for the whole text. */
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    uint32_t *off = malloc((len + 1) * sizeof *off);
    uint8_t *cls = malloc(len + 1), *sp = malloc(len + 1);
    int32_t *arr = malloc((len + 1) * 5 * sizeof *arr);
    char *spell = (t->flags & TN_TOKF_IGNORE_MERGES) ? malloc(2 * len + 1) : NULL;
    frags f1 = {0}, f2 = {0};
    int rc = 0;
    if (!cp || !off || !cls || !sp || !arr || ((t->flags & TN_TOKF_IGNORE_MERGES) && !spell)) {
        rc = tn_err("tokenizer: out of memory (%zu bytes of text)", len);
        goto done;
    }
    int32_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t c;
        int k = tn_utf8_decode((const uint8_t *)text + i, len - i, &c);
        cp[n] = c;
        off[n] = (uint32_t)i;
        cls[n] = (uint8_t)tn_uni_class(c);
        sp[n] = (uint8_t)tn_uni_is_space(c);
        i += (size_t)k;
    }
    off[n] = (uint32_t)len;
    cps c = {cp, cls, sp};
    rc = frag_add(&f1, 0, n);
    if (t->pretok == TN_PRETOK_GPT2_DIGITS && rc == 0) rc = run_pass(&c, PASS_DIGITS, &f1, &f2);
    if (t->pretok == TN_PRETOK_FALCON && rc == 0) rc = run_pass(&c, PASS_FALCON_PUNCT, &f1, &f2);
    int main_pass = t->pretok == TN_PRETOK_LLAMA3   ? PASS_LLAMA3
                    : t->pretok == TN_PRETOK_QWEN2  ? PASS_QWEN2
                    : t->pretok == TN_PRETOK_QWEN35 ? PASS_QWEN35
                                                    : PASS_GPT2;
    if (rc == 0) rc = run_pass(&c, main_pass, &f1, &f2);
    if (t->pretok == TN_PRETOK_FALCON && rc == 0) rc = run_pass(&c, PASS_DIGIT3, &f1, &f2);
    tn_tok_syms sy = {arr, (uint32_t *)(arr + (len + 1)), (uint32_t *)(arr + 2 * (len + 1)), arr + 3 * (len + 1),
                      arr + 4 * (len + 1)};
    for (size_t i = 0; rc == 0 && i < f1.n; i++)
        rc = encode_word(t, text, off[f1.a[i]], off[f1.b[i]], &sy, spell, out);
done:
    free(owned);
    free(cp);
    free(off);
    free(cls);
    free(sp);
    free(arr);
    free(spell);
    free(f1.a);
    free(f1.b);
    free(f2.a);
    free(f2.b);
    return rc;
}
