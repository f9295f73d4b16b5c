/* Chat templates (data/chat.h): recognition by markers, the five layouts, and the tokenization of the
 * rendered conversation.
 *
 * A layout appends "pieces" to a list: a control token (one id), or a span of text that is either the
 * template's or a message's content. Adjacent text pieces form one run, encoded at once, so the ids are
 * those of the rendered string tokenized between control tokens; each piece remembers whether its bytes
 * are a training target, and a token is a target when any of its bytes is. */
#include "data/chat.h"
#include "core/error.h"
#include "data/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const family_names[TN_CHAT_FAMILIES] = {"chatml", "llama3", "llama2", "zephyr", "mistral"};

const char *tn_chat_family_list(void) { return "chatml, llama3, llama2, zephyr, mistral"; }

const char *tn_chat_family_name(tn_chat_family f) {
    return f >= 0 && f < TN_CHAT_FAMILIES ? family_names[f] : "?";
}

int tn_chat_family_parse(const char *name, tn_chat_family *f) {
    for (int i = 0; i < TN_CHAT_FAMILIES; i++)
        if (strcmp(name, family_names[i]) == 0) {
            *f = (tn_chat_family)i;
            return 0;
        }
    if (strcmp(name, "tinyllama") == 0) {
        *f = TN_CHAT_ZEPHYR;
        return 0;
    }
    return tn_err("unknown chat template '%s' (known: %s)", name, tn_chat_family_list());
}

static int has(const char *t, const char *s) { return strstr(t, s) != NULL; }

int tn_chat_recognise(const char *t, tn_chat_family *f) {
    if (has(t, "<|im_start|>") && has(t, "<|im_end|>")) *f = TN_CHAT_CHATML;
    else if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>") && has(t, "<|eot_id|>")) *f = TN_CHAT_LLAMA3;
    else if (has(t, "[INST]") && has(t, "<<SYS>>")) *f = TN_CHAT_LLAMA2;
    else if (has(t, "[INST]") && has(t, "[/INST]")) *f = TN_CHAT_MISTRAL;
    /* Phi-3 also writes <|user|> / <|assistant|>, but ends turns with <|end|>: a different layout */
    else if (has(t, "<|user|>") && has(t, "<|assistant|>") && has(t, "eos_token") && !has(t, "<|end|>")) *f = TN_CHAT_ZEPHYR;
    else
        return tn_err("chat template not recognised (known: %s; force one with --chat-template NAME)",
                      tn_chat_family_list());
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Jinja string literals: every '...' or "..." inside {{ }} and {% %}, with Python's escapes undone (\n,
 * \t, \r, \\, \', \", \uXXXX). The particulars a layout takes from a template are read from these. */

typedef struct {
    char **s;
    int n, cap;
} lits;

static void lits_free(lits *L) {
    for (int i = 0; i < L->n; i++) free(L->s[i]);
    free(L->s);
    memset(L, 0, sizeof *L);
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int scan_literals(const char *t, lits *L) {
    size_t n = strlen(t);
    char *buf = malloc(n + 1);
    if (!buf) return tn_err("out of memory");
    int in_tag = 0, rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        if (!in_tag) {
            if (t[i] == '{' && i + 1 < n && (t[i + 1] == '{' || t[i + 1] == '%')) {
                in_tag = 1;
                i += 2;
            } else if (t[i] == '{' && i + 1 < n && t[i + 1] == '#') { /* comment */
                const char *e = strstr(t + i + 2, "#}");
                i = e ? (size_t)(e - t) + 2 : n;
            } else {
                i++;
            }
            continue;
        }
        char q = t[i];
        if ((q == '}' || q == '%') && i + 1 < n && t[i + 1] == '}') {
            in_tag = 0;
            i += 2;
            continue;
        }
        if (q != '\'' && q != '"') {
            i++;
            continue;
        }
        size_t k = 0;
        for (i++; i < n && t[i] != q;) {
            if (t[i] != '\\' || i + 1 == n) {
                buf[k++] = t[i++];
                continue;
            }
            char e = t[i + 1];
            i += 2;
            if (e == 'n') buf[k++] = '\n';
            else if (e == 't') buf[k++] = '\t';
            else if (e == 'r') buf[k++] = '\r';
            else if (e == '\\' || e == '\'' || e == '"') buf[k++] = e;
            else if (e == 'u' && i + 4 <= n && hexval(t[i]) >= 0 && hexval(t[i + 1]) >= 0 && hexval(t[i + 2]) >= 0 &&
                     hexval(t[i + 3]) >= 0) {
                uint32_t cp = (uint32_t)(hexval(t[i]) << 12 | hexval(t[i + 1]) << 8 | hexval(t[i + 2]) << 4 | hexval(t[i + 3]));
                char u[4];
                /* a \u escape is never longer than the 6 bytes it replaces */
                int m = cp >= 0xD800 && cp < 0xE000 ? 0 : tn_utf8_encode(cp, u);
                memcpy(buf + k, u, (size_t)m);
                k += (size_t)m;
                i += 4;
            } else { /* unknown escape: kept as written, as Python does */
                buf[k++] = '\\';
                buf[k++] = e;
            }
        }
        i++; /* the closing quote */
        buf[k] = '\0';
        if (L->n == L->cap) {
            int cap = L->cap ? 2 * L->cap : 32;
            char **p = realloc(L->s, (size_t)cap * sizeof *p);
            if (!p) {
                rc = tn_err("out of memory");
                break;
            }
            L->s = p;
            L->cap = cap;
        }
        if (!(L->s[L->n] = strdup(buf))) rc = tn_err("out of memory");
        else L->n++;
    }
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * the handle */

struct tn_chat {
    const tn_tokenizer *tok;
    tn_chat_family family;
    /* chatml */
    char *default_system; /* NULL: none */
    char *gen_prompt;     /* "<|im_start|>assistant\n" */
    int think;            /* Qwen3's <think> rules */
    /* llama3 */
    int dated;            /* Llama-3.1+ system header */
    char *cutoff;         /* "December 2023" */
    char date[64];        /* the date written into it */
    /* mistral */
    char *inst_open, *inst_close; /* "[INST] ", " [/INST]" */
    int eos_space;                /* eos_token + ' ' */
    int fold_system;              /* system message folded into the first user turn */
    int32_t bos, eos, end_turn;   /* end_turn: the id that closes an assistant turn */
    char describe[256];
};

void tn_chat_free(tn_chat *c) {
    if (!c) return;
    free(c->default_system);
    free(c->gen_prompt);
    free(c->cutoff);
    free(c->inst_open);
    free(c->inst_close);
    free(c);
}

tn_chat_family tn_chat_get_family(const tn_chat *c) { return c->family; }
const char *tn_chat_describe(const tn_chat *c) { return c->describe; }

static int32_t control_id(const tn_tokenizer *tok, const char *s) {
    int32_t id = tn_tokenizer_find(tok, s, strlen(s));
    int ty = tn_tokenizer_token_type(tok, id);
    return id >= 0 && (ty == TN_TOKTYPE_CONTROL || ty == TN_TOKTYPE_USER) ? id : -1;
}

static int need_token(const tn_chat *c, const char *s, int32_t *id) {
    *id = control_id(c->tok, s);
    if (*id < 0)
        return tn_err("the %s chat template needs the token %s, which this vocabulary lacks", family_names[c->family], s);
    return 0;
}

/* Particulars of the template text (see chat.h). */
static int read_particulars(tn_chat *c, const char *t) {
    lits L = {0};
    if (scan_literals(t, &L) != 0) {
        lits_free(&L);
        return -1;
    }
    int rc = 0;
    if (c->family == TN_CHAT_CHATML) {
        static const char sys[] = "<|im_start|>system\n", gen[] = "<|im_start|>assistant";
        for (int i = 0; i < L.n && rc == 0; i++) {
            const char *s = L.s[i];
            if (strncmp(s, sys, sizeof sys - 1) == 0) {
                const char *x = s + sizeof sys - 1, *e = strstr(x, "<|im_end|>");
                if (e && !c->default_system) { /* an empty default is one too */
                    c->default_system = strndup(x, (size_t)(e - x));
                    if (!c->default_system) rc = tn_err("out of memory");
                }
            }
            if (strncmp(s, gen, sizeof gen - 1) == 0) {
                free(c->gen_prompt);
                /* '<|im_start|>assistant' + '\n' spelled as two literals: the newline is the family's */
                c->gen_prompt = strcmp(s, gen) == 0 ? strdup("<|im_start|>assistant\n") : strdup(s);
                if (!c->gen_prompt) rc = tn_err("out of memory");
            }
        }
        c->think = has(t, "<think>") && has(t, "</think>");
    } else if (c->family == TN_CHAT_LLAMA3 && has(t, "Cutting Knowledge Date")) {
        c->dated = 1;
        for (int i = 0; i < L.n && !c->cutoff; i++) {
            const char *p = strstr(L.s[i], "Cutting Knowledge Date: ");
            if (!p) continue;
            p += strlen("Cutting Knowledge Date: ");
            c->cutoff = strndup(p, strcspn(p, "\n"));
            if (!c->cutoff) rc = tn_err("out of memory");
        }
        /* the date: today's where the template asks strftime_now (as transformers renders it), else the
         * literal after `date_string = ` */
        const char *d = strstr(t, "date_string = ");
        if (has(t, "strftime_now")) {
            c->date[0] = '\0';
        } else if (d) {
            d += strlen("date_string = ");
            char q = *d;
            const char *e = (q == '"' || q == '\'') ? strchr(d + 1, q) : NULL;
            if (e && (size_t)(e - d - 1) < sizeof c->date) snprintf(c->date, sizeof c->date, "%.*s", (int)(e - d - 1), d + 1);
        }
    } else if (c->family == TN_CHAT_MISTRAL) {
        for (int i = 0; i < L.n && rc == 0; i++) {
            char **slot = strstr(L.s[i], "[INST]") ? &c->inst_open : strstr(L.s[i], "[/INST]") ? &c->inst_close : NULL;
            if (slot && !*slot && !(*slot = strdup(L.s[i]))) rc = tn_err("out of memory");
        }
        c->eos_space = has(t, "eos_token + ' '") || has(t, "eos_token + \" \"");
        c->fold_system = has(t, "system_message");
    }
    lits_free(&L);
    return rc;
}

int tn_chat_new(const tn_tokenizer *tok, const char *text, const tn_chat_opts *o, tn_chat **out) {
    *out = NULL;
    tn_chat_family fam, seen = TN_CHAT_FAMILIES;
    if (o && o->force) {
        TN_CHECK(tn_chat_family_parse(o->force, &fam));
        if (text && tn_chat_recognise(text, &seen) != 0) seen = TN_CHAT_FAMILIES; /* forced: not an error */
    } else {
        if (!text) return tn_err("the tokenizer carries no chat template (choose one with --chat-template NAME: %s)", tn_chat_family_list());
        TN_CHECK(tn_chat_recognise(text, &fam));
        seen = fam;
    }
    tn_chat *c = calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    c->tok = tok;
    c->family = fam;
    c->bos = (int32_t)tn_tokenizer_bos_id(tok);
    c->eos = (int32_t)tn_tokenizer_eos_id(tok);
    snprintf(c->date, sizeof c->date, "26 Jul 2024");
    int rc = seen == fam ? read_particulars(c, text) : 0;
    if (rc == 0 && !c->gen_prompt && fam == TN_CHAT_CHATML && !(c->gen_prompt = strdup("<|im_start|>assistant\n")))
        rc = tn_err("out of memory");
    if (rc == 0 && fam == TN_CHAT_LLAMA3 && c->dated && !c->cutoff && !(c->cutoff = strdup("December 2023")))
        rc = tn_err("out of memory");
    if (rc == 0 && fam == TN_CHAT_MISTRAL && !c->inst_open && !(c->inst_open = strdup("[INST] "))) rc = tn_err("out of memory");
    if (rc == 0 && fam == TN_CHAT_MISTRAL && !c->inst_close && !(c->inst_close = strdup(" [/INST]"))) rc = tn_err("out of memory");
    if (rc == 0 && o && o->date) snprintf(c->date, sizeof c->date, "%s", o->date);
    else if (rc == 0 && c->dated && c->date[0] == '\0') {
        time_t now = time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm) || strftime(c->date, sizeof c->date, "%d %b %Y", &tm) == 0)
            snprintf(c->date, sizeof c->date, "26 Jul 2024");
    }
    /* the tokens each layout writes */
    int32_t unused;
    if (rc == 0) switch (fam) {
        case TN_CHAT_CHATML:
            rc = need_token(c, "<|im_start|>", &unused);
            if (rc == 0) rc = need_token(c, "<|im_end|>", &c->end_turn);
            break;
        case TN_CHAT_LLAMA3:
            rc = need_token(c, "<|start_header_id|>", &unused);
            if (rc == 0) rc = need_token(c, "<|end_header_id|>", &unused);
            if (rc == 0) rc = need_token(c, "<|eot_id|>", &c->end_turn);
            break;
        default: /* llama2, zephyr, mistral: EOS closes a turn; llama2 and mistral open with BOS */
            c->end_turn = c->eos;
            if (c->eos < 0) rc = tn_err("the %s chat template needs an EOS token, which this tokenizer lacks", family_names[fam]);
            else if (fam != TN_CHAT_ZEPHYR && c->bos < 0)
                rc = tn_err("the %s chat template needs a BOS token, which this tokenizer lacks", family_names[fam]);
        }
    if (rc != 0) {
        tn_chat_free(c);
        return -1;
    }
    int w = snprintf(c->describe, sizeof c->describe, "%s", family_names[fam]);
    if (c->default_system) w += snprintf(c->describe + w, sizeof c->describe - (size_t)w, ", default system prompt \"%.80s\"", c->default_system);
    if (c->think) w += snprintf(c->describe + w, sizeof c->describe - (size_t)w, ", <think> blocks");
    if (c->dated) snprintf(c->describe + w, sizeof c->describe - (size_t)w, ", system header dated %s", c->date);
    *out = c;
    return 0;
}

int tn_chat_stop_ids(const tn_chat *c, int32_t *ids, int cap) {
    int n = 0;
    int32_t cand[3] = {c->end_turn, c->eos, -1};
    if (c->family == TN_CHAT_LLAMA3) cand[2] = control_id(c->tok, "<|end_of_text|>");
    for (int i = 0; i < 3; i++) {
        int dup = cand[i] < 0;
        for (int k = 0; k < n && !dup; k++) dup = ids[k] == cand[i];
        if (!dup && n < cap) ids[n++] = cand[i];
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------------
 * pieces */

typedef struct {
    int32_t id;        /* a control token, or -1: text */
    const char *s;     /* text (borrowed: the message, the handle or a static string) */
    size_t n;
    int owner;         /* index of the message whose content this is; -1: the template's */
    int target;        /* a training target (assistant content, its reasoning, the token closing it) */
} piece;

typedef struct {
    const tn_chat *c;
    piece *p;
    int n, cap;
    char **own;        /* strings built while rendering, freed with the list */
    int n_own, cap_own;
} pieces;

static void pieces_free(pieces *P) {
    for (int i = 0; i < P->n_own; i++) free(P->own[i]);
    free(P->own);
    free(P->p);
}

static int push(pieces *P, int32_t id, const char *s, size_t n, int owner, int target) {
    if (P->n == P->cap) {
        int cap = P->cap ? 2 * P->cap : 64;
        piece *q = realloc(P->p, (size_t)cap * sizeof *q);
        if (!q) return tn_err("out of memory");
        P->p = q;
        P->cap = cap;
    }
    P->p[P->n++] = (piece){id, s, n, owner, target};
    return 0;
}

static int special(pieces *P, int32_t id, int owner, int target) { return push(P, id, NULL, 0, owner, target); }
static int text(pieces *P, const char *s, int owner, int target) { return push(P, -1, s, strlen(s), owner, target); }

/* Template text: control tokens spelled in it (<|im_start|>, <|eot_id|>, [INST] where the vocabulary has
 * it as one) become their ids, longest match first; the rest is text. User-defined tokens stay in the
 * text, where the encoder matches them as it does in content. */
static int lit(pieces *P, const char *s, int owner, int target) {
    size_t n = strlen(s), start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '<' && s[i] != '[') continue;
        for (size_t j = n < i + 64 ? n : i + 64; j > i + 1; j--) {
            if (s[j - 1] != '>' && s[j - 1] != ']') continue;
            int32_t id = tn_tokenizer_find(P->c->tok, s + i, j - i);
            if (id < 0 || tn_tokenizer_token_type(P->c->tok, id) != TN_TOKTYPE_CONTROL) continue;
            if (i > start) TN_CHECK(push(P, -1, s + start, i - start, owner, target));
            TN_CHECK(special(P, id, owner, target));
            start = j;
            i = j - 1;
            break;
        }
    }
    return start < n ? push(P, -1, s + start, n - start, owner, target) : 0;
}

/* A string kept until the list is freed. */
static const char *keep(pieces *P, char *s) {
    if (!s) {
        tn_err("out of memory");
        return NULL;
    }
    if (P->n_own == P->cap_own) {
        int cap = P->cap_own ? 2 * P->cap_own : 8;
        char **q = realloc(P->own, (size_t)cap * sizeof *q);
        if (!q) {
            free(s);
            tn_err("out of memory");
            return NULL;
        }
        P->own = q;
        P->cap_own = cap;
    }
    return P->own[P->n_own++] = s;
}

/* Python's str.isspace (what Jinja's trim and str.strip() remove): Unicode White_Space plus U+001C..1F. */
static int py_space(uint32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || tn_uni_is_space(cp); }

/* Length of the whitespace character at s[0..n) / ending at s[n], 0 when there is none. */
static size_t space_at(const char *s, size_t n) {
    uint32_t cp;
    int k = tn_utf8_decode((const uint8_t *)s, n, &cp);
    return py_space(cp) ? (size_t)k : 0;
}
static size_t space_before(const char *s, size_t n) {
    size_t k = n;
    while (k > 0 && n - k < 4 && ((uint8_t)s[k - 1] & 0xC0) == 0x80) k--;
    if (k == 0) return 0;
    k--;
    uint32_t cp;
    int m = tn_utf8_decode((const uint8_t *)s + k, n - k, &cp);
    return (size_t)m == n - k && py_space(cp) ? (size_t)m : 0;
}

/* str.strip() over the text of pieces [from, P->n), which together form one string. */
static void strip_pieces(pieces *P, int from) {
    for (int i = from; i < P->n; i++) {
        piece *q = &P->p[i];
        size_t k;
        while (q->n && (k = space_at(q->s, q->n)) > 0) q->s += k, q->n -= k;
        if (q->n) break;
    }
    for (int i = P->n - 1; i >= from; i--) {
        piece *q = &P->p[i];
        size_t k;
        while (q->n && (k = space_before(q->s, q->n)) > 0) q->n -= k;
        if (q->n) break;
    }
}

static int check_roles(const tn_chat_msg *m, int n) {
    for (int i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content) return tn_err("message %d: no role or content", i);
        if (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") && strcmp(m[i].role, "assistant"))
            return tn_err("message %d: role '%s' (only system, user and assistant are supported)", i, m[i].role);
    }
    return 0;
}

static int is(const tn_chat_msg *m, const char *role) { return strcmp(m->role, role) == 0; }

/* ---- chatml ------------------------------------------------------------------------------------------
 * [<|im_start|>system\n{default}<|im_end|>\n]  for each: <|im_start|>{role}\n{content}<|im_end|>\n
 * then the generation prompt. Qwen3 (think): an assistant turn after the last user turn is written
 * "<think>\n{reasoning}\n</think>\n\n{answer}" when it is the last message or has reasoning; the
 * reasoning of earlier turns is dropped. Reasoning = the text between <think> and </think> of the content,
 * answer = what follows the last </think> (as the Qwen3 template splits them). */
static int render_chatml(pieces *P, const tn_chat_msg *m, int n, int gen) {
    const tn_chat *c = P->c;
    if (c->default_system && (n == 0 || !is(&m[0], "system"))) {
        TN_CHECK(lit(P, "<|im_start|>system\n", -1, 0));
        TN_CHECK(text(P, c->default_system, -1, 0));
        TN_CHECK(lit(P, "<|im_end|>\n", -1, 0));
    }
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--) {
        size_t l = strlen(m[i].content);
        int tool = l >= 31 && strncmp(m[i].content, "<tool_response>", 15) == 0 &&
                   strcmp(m[i].content + l - 16, "</tool_response>") == 0;
        if (is(&m[i], "user") && !tool) {
            last_query = i;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        int asst = is(&m[i], "assistant");
        TN_CHECK(lit(P, "<|im_start|>", -1, 0));
        TN_CHECK(text(P, m[i].role, -1, 0));
        TN_CHECK(lit(P, "\n", -1, 0));
        const char *body = m[i].content;
        if (asst && c->think) {
            const char *reason = "", *close = strstr(body, "</think>");
            size_t rn = 0;
            if (close) {
                /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
                const char *b = body, *e = close;
                while (e > b && e[-1] == '\n') e--;
                for (const char *o = b; (o = strstr(o, "<think>")) && o + 7 <= e; o += 7) b = o + 7;
                while (b < e && *b == '\n') b++;
                reason = b;
                rn = (size_t)(e - b);
                /* content.split('</think>')[-1].lstrip('\n') */
                const char *last = close;
                for (const char *o = close; (o = strstr(o + 8, "</think>"));) last = o;
                body = last + 8;
                while (*body == '\n') body++;
            }
            if (i > last_query && (i == n - 1 || rn > 0)) {
                /* reasoning_content.strip('\n') is already stripped of newlines at both ends */
                TN_CHECK(lit(P, "<think>\n", i, 1));
                TN_CHECK(push(P, -1, reason, rn, i, 1));
                TN_CHECK(lit(P, "\n</think>\n\n", i, 1));
                while (*body == '\n') body++;
            }
        }
        TN_CHECK(text(P, body, i, asst));
        TN_CHECK(special(P, c->end_turn, -1, asst));
        TN_CHECK(lit(P, "\n", -1, 0));
    }
    return gen ? lit(P, c->gen_prompt, -1, 0) : 0;
}

/* ---- llama3 ------------------------------------------------------------------------------------------
 * <|begin_of_text|> then per message <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>;
 * dated (3.1+): first a system header "Cutting Knowledge Date: {cutoff}\nToday Date: {date}\n\n{system|trim}"
 * holding the first system message, if any. */
static int header(pieces *P, const char *role) {
    TN_CHECK(lit(P, "<|start_header_id|>", -1, 0));
    TN_CHECK(text(P, role, -1, 0));
    return lit(P, "<|end_header_id|>\n\n", -1, 0);
}

static int render_llama3(pieces *P, const tn_chat_msg *m, int n, int gen) {
    const tn_chat *c = P->c;
    int i = 0;
    if (c->dated) {
        if (c->bos >= 0) TN_CHECK(special(P, c->bos, -1, 0));
        TN_CHECK(header(P, "system"));
        char buf[256];
        snprintf(buf, sizeof buf, "Cutting Knowledge Date: %s\nToday Date: %s\n\n", c->cutoff, c->date);
        const char *pre = keep(P, strdup(buf));
        if (!pre) return -1;
        TN_CHECK(text(P, pre, -1, 0));
        if (n > 0 && is(&m[0], "system")) {
            int from = P->n;
            TN_CHECK(text(P, m[0].content, 0, 0));
            strip_pieces(P, from);
            i = 1;
        }
        TN_CHECK(special(P, c->end_turn, -1, 0));
    }
    for (; i < n; i++) {
        int asst = is(&m[i], "assistant");
        if (i == 0 && !c->dated && c->bos >= 0) TN_CHECK(special(P, c->bos, -1, 0));
        TN_CHECK(header(P, m[i].role));
        int from = P->n;
        TN_CHECK(text(P, m[i].content, i, asst));
        strip_pieces(P, from);
        TN_CHECK(special(P, c->end_turn, -1, asst));
    }
    return gen ? header(P, "assistant") : 0;
}

/* ---- llama2 ------------------------------------------------------------------------------------------
 * per user turn: <s>[INST] {content.strip()} [/INST], the first one's content being
 * "<<SYS>>\n{system}\n<</SYS>>\n\n{user}"; per assistant turn: " {content.strip()} </s>". */
static int render_llama2(pieces *P, const tn_chat_msg *m, int n) {
    const tn_chat *c = P->c;
    int first = n > 0 && is(&m[0], "system") ? 1 : 0;
    for (int i = first; i < n; i++) {
        int k = i - first, user = is(&m[i], "user");
        if (user != (k % 2 == 0) || is(&m[i], "system"))
            return tn_err("message %d: conversation roles must alternate user/assistant/user/assistant/... after an "
                          "optional system message (llama2 template)", i);
        if (user) {
            TN_CHECK(special(P, c->bos, -1, 0));
            TN_CHECK(lit(P, "[INST] ", -1, 0));
            int from = P->n;
            if (k == 0 && first) {
                TN_CHECK(lit(P, "<<SYS>>\n", -1, 0));
                TN_CHECK(text(P, m[0].content, 0, 0));
                TN_CHECK(lit(P, "\n<</SYS>>\n\n", -1, 0));
            }
            TN_CHECK(text(P, m[i].content, i, 0));
            strip_pieces(P, from);
            TN_CHECK(lit(P, " [/INST]", -1, 0));
        } else {
            TN_CHECK(lit(P, " ", -1, 0));
            int from = P->n;
            TN_CHECK(text(P, m[i].content, i, 1));
            strip_pieces(P, from);
            TN_CHECK(lit(P, " ", -1, 0));
            TN_CHECK(special(P, c->eos, -1, 1));
        }
    }
    return 0;
}

/* ---- zephyr ------------------------------------------------------------------------------------------
 * per message <|{role}|>\n{content}</s>\n; after the last one, with the generation prompt, <|assistant|>\n */
static int render_zephyr(pieces *P, const tn_chat_msg *m, int n, int gen) {
    const tn_chat *c = P->c;
    for (int i = 0; i < n; i++) {
        int asst = is(&m[i], "assistant");
        TN_CHECK(lit(P, is(&m[i], "user") ? "<|user|>\n" : asst ? "<|assistant|>\n" : "<|system|>\n", -1, 0));
        TN_CHECK(text(P, m[i].content, i, asst));
        TN_CHECK(special(P, c->eos, -1, asst));
        TN_CHECK(lit(P, "\n", -1, 0));
        if (i == n - 1 && gen) TN_CHECK(lit(P, "<|assistant|>\n", -1, 0));
    }
    return 0;
}

/* ---- mistral -----------------------------------------------------------------------------------------
 * <s> then per user turn "[INST] {content} [/INST]" and per assistant turn "{content}</s>" (v0.1). */
static int render_mistral(pieces *P, const tn_chat_msg *m, int n) {
    const tn_chat *c = P->c;
    int first = n > 0 && is(&m[0], "system") ? 1 : 0;
    if (first && !c->fold_system)
        return tn_err("message 0: this mistral template supports only user and assistant roles (no system message)");
    TN_CHECK(special(P, c->bos, -1, 0));
    for (int i = first; i < n; i++) {
        int k = i - first, user = is(&m[i], "user");
        if (user != (k % 2 == 0) || is(&m[i], "system"))
            return tn_err("message %d: conversation roles must alternate user/assistant/user/assistant/... (mistral template)", i);
        if (user) {
            TN_CHECK(lit(P, c->inst_open, -1, 0));
            if (k == 0 && first) {
                TN_CHECK(text(P, m[0].content, 0, 0));
                TN_CHECK(lit(P, "\n\n", -1, 0));
            }
            TN_CHECK(text(P, m[i].content, i, 0));
            TN_CHECK(lit(P, c->inst_close, -1, 0));
        } else {
            TN_CHECK(text(P, m[i].content, i, 1));
            TN_CHECK(special(P, c->eos, -1, 1));
            if (c->eos_space) TN_CHECK(lit(P, " ", -1, 0));
        }
    }
    return 0;
}

static int build(const tn_chat *c, const tn_chat_msg *m, int n, int gen, pieces *P) {
    memset(P, 0, sizeof *P);
    P->c = c;
    if (n < 0) return tn_err("negative message count");
    TN_CHECK(check_roles(m, n));
    switch (c->family) {
    case TN_CHAT_CHATML: return render_chatml(P, m, n, gen);
    case TN_CHAT_LLAMA3: return render_llama3(P, m, n, gen);
    case TN_CHAT_LLAMA2: return render_llama2(P, m, n);
    case TN_CHAT_ZEPHYR: return render_zephyr(P, m, n, gen);
    default: return render_mistral(P, m, n);
    }
}

static int mask_reserve(uint8_t **mask, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < n) c *= 2;
    uint8_t *q = realloc(*mask, c);
    if (!q) return tn_err("out of memory");
    *mask = q;
    *cap = c;
    return 0;
}

/* Pieces [from, P->n) -> ids (and mask): control tokens as they are, each run of text encoded at once. A
 * token's bytes are found from its decoded piece (the pieces of a run concatenate back to its text). */
static int assemble(const pieces *P, int from, tn_tokens *ids, uint8_t **mask, size_t *mask_cap) {
    char *run = NULL;
    uint8_t *tgt = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int i = from; i < P->n && rc == 0;) {
        const piece *q = &P->p[i];
        if (q->id >= 0) {
            rc = tn_tokens_push(ids, q->id);
            if (rc == 0 && mask) rc = mask_reserve(mask, mask_cap, ids->n);
            if (rc == 0 && mask) (*mask)[ids->n - 1] = (uint8_t)q->target;
            i++;
            continue;
        }
        size_t len = 0;
        int j = i;
        for (; j < P->n && P->p[j].id < 0; j++) len += P->p[j].n;
        if (len + 1 > cap) {
            cap = 2 * (len + 1);
            char *r = realloc(run, cap);
            uint8_t *t = r ? realloc(tgt, cap) : NULL;
            if (r) run = r;
            if (t) tgt = t;
            if (!r || !t) {
                rc = tn_err("out of memory");
                break;
            }
        }
        size_t k = 0;
        for (int x = i; x < j; x++) {
            memcpy(run + k, P->p[x].s, P->p[x].n);
            memset(tgt + k, P->p[x].target, P->p[x].n);
            k += P->p[x].n;
        }
        size_t first = ids->n;
        rc = tn_tokenizer_encode(P->c->tok, run, len, 0, ids);
        if (rc == 0 && mask) rc = mask_reserve(mask, mask_cap, ids->n);
        if (rc == 0 && mask) {
            size_t pos = 0;
            for (size_t t = first; t < ids->n && rc == 0; t++) {
                size_t pl;
                const char *p = tn_tokenizer_piece(P->c->tok, t > first ? ids->ids[t - 1] : -1, ids->ids[t], &pl);
                if (!p || pos + pl > len) {
                    rc = tn_err("chat: the tokenization of \"%.40s\" does not decode back to it", run);
                    break;
                }
                uint8_t any = 0;
                for (size_t b = pos; b < pos + pl; b++) any |= tgt[b];
                (*mask)[t] = any;
                pos += pl;
            }
            if (rc == 0 && pos != len) rc = tn_err("chat: the tokenization of \"%.40s\" does not decode back to it", run);
        }
        i = j;
    }
    free(run);
    free(tgt);
    return rc;
}

int tn_chat_render(const tn_chat *c, const tn_chat_msg *m, int n, int add_generation_prompt, tn_tokens *ids,
                   uint8_t **mask, size_t *mask_cap) {
    pieces P;
    int rc = build(c, m, n, add_generation_prompt, &P);
    if (rc == 0) rc = assemble(&P, 0, ids, mask, mask_cap);
    pieces_free(&P);
    return rc;
}

int tn_chat_render_continue(const tn_chat *c, const tn_chat_msg *m, int n, int after, tn_tokens *ids) {
    if (after < 0 || after >= n || !is(&m[after], "assistant")) return tn_err("chat: message %d is not an assistant reply", after);
    pieces P;
    int rc = build(c, m, n, 1, &P);
    int last = -1, from = -1;
    for (int i = 0; rc == 0 && i < P.n; i++)
        if (P.p[i].owner == after && P.p[i].id < 0) last = i;
    for (int i = last + 1; rc == 0 && last >= 0 && i < P.n && from < 0; i++)
        if (P.p[i].id >= 0) from = i;
    if (rc == 0 && from < 0) rc = tn_err("chat: no token closes message %d", after);
    if (rc == 0) rc = assemble(&P, from, ids, NULL, NULL);
    pieces_free(&P);
    return rc;
}
