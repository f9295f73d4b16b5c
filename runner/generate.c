/* Generation loop (runner/generate.h). */
#include "runner/generate.h"

#include "core/error.h"
#include "core/timer.h"
#include "data/prepare.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tn_generate_opts_default(tn_generate_opts *o) {
    o->max_new = 256;
    tn_sampler_opts_default(&o->sampling);
    o->template_name = NULL;
    o->stop_at_eos = 1;
    o->chat = NULL;
    o->system = NULL;
}

int tn_generate_template_check(const char *name) {
    if (!name || !strcmp(name, "trinity") || !strcmp(name, "alpaca")) return 0;
    return tn_err("unknown template '%s' (known: trinity, alpaca)", name);
}

char *tn_generate_apply_template(const char *name, const char *prompt) {
    char *s = NULL;
    if (!name) s = strdup(prompt);
    else if (tn_prepare_prompt(name, prompt, "", &s) != 0) return NULL; /* the very text `prepare` trains on */
    if (!s) tn_err("out of memory");
    return s;
}

/* ---- UTF-8 safe streaming ------------------------------------------------------------------------
 * Bytes are held until they end on a character boundary. A malformed sequence is written as it is (the
 * model produced it; hiding it would hide the bug), so nothing is held for more than 4 bytes. */
typedef struct {
    FILE *f;
    unsigned char pend[8];
    int n;
} u8stream;

static int seq_len(unsigned char b) {
    if (b < 0x80) return 1;
    if ((b & 0xe0) == 0xc0) return 2;
    if ((b & 0xf0) == 0xe0) return 3;
    if ((b & 0xf8) == 0xf0) return 4;
    return 1; /* a stray continuation or invalid lead byte: pass through */
}

static void u8_flush(u8stream *u) {
    if (u->n) fwrite(u->pend, 1, (size_t)u->n, u->f);
    u->n = 0;
    fflush(u->f);
}

static void u8_put(u8stream *u, const char *bytes, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)bytes[i];
        if (u->n > 0 && (b & 0xc0) != 0x80) u8_flush(u); /* a new character starts: the held one was cut short */
        u->pend[u->n++] = b;
        if (u->n >= seq_len(u->pend[0])) {
            fwrite(u->pend, 1, (size_t)u->n, u->f);
            u->n = 0;
        }
    }
    fflush(u->f);
}

/* Tokens of `text` (with BOS at the start of a fresh context when the tokenizer uses one). */
static int encode_prompt(const tn_tokenizer *tok, const char *text, int fresh, tn_tokens *ids) {
    memset(ids, 0, sizeof *ids);
    int add_bos = fresh && tn_tokenizer_uses_bos(tok);
    if (tn_tokenizer_encode(tok, text, strlen(text), add_bos, ids) != 0) {
        tn_tokens_free(ids);
        return tn_err_prefix("encoding the prompt");
    }
    return 0;
}

/* The history the repeat penalty looks at: a ring of the last 1024 tokens of the context. */
#define HIST 1024
typedef struct {
    int32_t t[HIST];
    int n;
} history;
static void hist_push(history *h, int32_t id) {
    if (h->n == HIST) {
        memmove(h->t, h->t + HIST / 2, HIST / 2 * sizeof *h->t);
        h->n = HIST / 2;
    }
    h->t[h->n++] = id;
}

/* Feed ids, then sample until a stop id (not fed, not printed), max_new tokens or a full context. The
 * generated ids are appended to gen when it is not NULL. */
static int run_turn(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, const int32_t *ids, int n, history *h,
                    const int32_t *stop, int n_stop, const tn_generate_opts *o, FILE *out, tn_generate_stats *st,
                    tn_tokens *gen) {
    const tn_llama_config *c = tn_infer_config(m);
    const int V = c->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!logits) return tn_err("out of memory");
    if (n > tn_infer_ctx(m) - tn_infer_pos(m)) {
        free(logits);
        return tn_err("the prompt (%d tokens) does not fit in the context (%d of %d positions left)", n,
                      tn_infer_ctx(m) - tn_infer_pos(m), tn_infer_ctx(m));
    }
    double t0 = tn_time_s();
    int rc = tn_infer_forward(m, ids, n, logits, 0);
    st->prompt_seconds += tn_time_s() - t0;
    st->prompt_tokens += n;
    for (int i = 0; i < n; i++) hist_push(h, ids[i]);

    u8stream u = {out, {0}, 0};
    int32_t prev = n > 0 ? ids[n - 1] : -1;
    t0 = tn_time_s();
    for (int i = 0; rc == 0 && i < o->max_new; i++) {
        int32_t next = tn_sampler_sample(s, logits, h->t, h->n);
        int is_stop = 0;
        for (int k = 0; k < n_stop; k++) is_stop |= next == stop[k];
        if (o->stop_at_eos && is_stop) {
            st->hit_eos = 1;
            break;
        }
        if (gen && tn_tokens_push(gen, next) != 0) {
            rc = -1;
            break;
        }
        size_t len = 0;
        const char *piece = next < tn_tokenizer_vocab_size(tok) ? tn_tokenizer_piece(tok, prev, next, &len) : NULL;
        if (piece) u8_put(&u, piece, len);
        prev = next;
        hist_push(h, next);
        st->gen_tokens++;
        if (i + 1 == o->max_new) break; /* no need to compute logits nobody samples */
        if (tn_infer_pos(m) >= tn_infer_ctx(m)) {
            st->ctx_full = 1;
            break;
        }
        const float *lg = tn_infer_step(m, next);
        if (!lg) rc = -1;
        else memcpy(logits, lg, (size_t)V * sizeof *logits);
    }
    st->gen_seconds += tn_time_s() - t0;
    u8_flush(&u);
    free(logits);
    return rc;
}

int tn_generate(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, const char *prompt, const tn_generate_opts *o,
                FILE *out, tn_generate_stats *st) {
    char *text = tn_generate_apply_template(o->template_name, prompt);
    if (!text) return -1;
    tn_tokens ids;
    int rc = encode_prompt(tok, text, tn_infer_pos(m) == 0, &ids);
    free(text);
    if (rc != 0) return -1;
    if (ids.n == 0) {
        tn_tokens_free(&ids);
        return tn_err("the prompt is empty (and the tokenizer adds no BOS)");
    }
    history h = {{0}, 0};
    int32_t eos = (int32_t)(tn_tokenizer_eos_id(tok) >= 0 ? tn_tokenizer_eos_id(tok) : tn_infer_config(m)->eos_id);
    rc = run_turn(m, tok, s, ids.ids, (int)ids.n, &h, &eos, 1, o, out, st, NULL);
    tn_tokens_free(&ids);
    return rc;
}

int tn_generate_interactive(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, FILE *in, const tn_generate_opts *o,
                            FILE *out, tn_generate_stats *st) {
    const int tty = isatty(fileno(in));
    const int64_t eos = tn_tokenizer_eos_id(tok);
    history h = {{0}, 0};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (tty) fputs("> ", stderr);
        ssize_t got = getline(&line, &cap, in);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        char *text = tn_generate_apply_template(o->template_name, line);
        if (!text) {
            rc = -1;
            break;
        }
        tn_tokens ids;
        int fresh = tn_infer_pos(m) == 0;
        rc = encode_prompt(tok, text, fresh, &ids);
        free(text);
        if (rc != 0) break;
        /* A previous answer that ended in EOS is closed with it, so the model sees the turn boundary. */
        if (!fresh && st->hit_eos && eos >= 0) {
            tn_tokens joined = {0};
            rc = tn_tokens_push(&joined, (int32_t)eos);
            if (rc == 0 && tn_tokenizer_uses_bos(tok)) rc = tn_tokens_push(&joined, (int32_t)tn_tokenizer_bos_id(tok));
            for (size_t i = 0; rc == 0 && i < ids.n; i++) rc = tn_tokens_push(&joined, ids.ids[i]);
            tn_tokens_free(&ids);
            ids = joined;
            if (rc != 0) break;
        }
        if ((int64_t)ids.n + o->max_new > tn_infer_ctx(m) - tn_infer_pos(m) && !fresh) {
            fprintf(stderr, "[context full: starting a new conversation]\n");
            tn_infer_reset(m);
            h.n = 0;
            tn_tokens_free(&ids);
            text = tn_generate_apply_template(o->template_name, line);
            rc = text ? encode_prompt(tok, text, 1, &ids) : -1;
            free(text);
            if (rc != 0) break;
        }
        st->hit_eos = 0;
        if (ids.n == 0) {
            tn_tokens_free(&ids);
            continue;
        }
        int32_t stop = (int32_t)(eos >= 0 ? eos : tn_infer_config(m)->eos_id);
        rc = run_turn(m, tok, s, ids.ids, (int)ids.n, &h, &stop, 1, o, out, st, NULL);
        tn_tokens_free(&ids);
        fputc('\n', out);
        fflush(out);
        if (rc != 0) break;
    }
    free(line);
    return rc;
}

/* ---- chat -------------------------------------------------------------------------------------------- */

/* The conversation so far: messages with their own copies of the text. */
typedef struct {
    tn_chat_msg *m;
    int n, cap;
} convo;

static void convo_clear(convo *v, int keep) {
    for (int i = keep; i < v->n; i++) free((char *)v->m[i].content);
    v->n = keep;
}

static int convo_add(convo *v, const char *role, const char *content, size_t len) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 16;
        tn_chat_msg *p = realloc(v->m, (size_t)cap * sizeof *p);
        if (!p) return tn_err("out of memory");
        v->m = p;
        v->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return tn_err("out of memory");
    memcpy(c, content, len);
    c[len] = '\0';
    v->m[v->n++] = (tn_chat_msg){role, c};
    return 0;
}

int tn_generate_chat(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, const char *prompt, FILE *in,
                     const tn_generate_opts *o, FILE *out, tn_generate_stats *st) {
    if (!o->chat) return tn_err("chat: no chat template");
    int32_t stop[5];
    int n_stop = tn_chat_stop_ids(o->chat, stop, 4);
    int32_t ceos = (int32_t)tn_infer_config(m)->eos_id;
    int dup = ceos < 0;
    for (int k = 0; k < n_stop; k++) dup |= stop[k] == ceos;
    if (!dup) stop[n_stop++] = ceos;

    const int tty = in && isatty(fileno(in));
    convo v = {0};
    int base = 0; /* messages every conversation starts with */
    int rc = 0;
    if (o->system) {
        rc = convo_add(&v, "system", o->system, strlen(o->system));
        base = 1;
    }
    history h = {{0}, 0};
    tn_tokens ids = {0}, gen = {0};
    char *line = NULL;
    size_t cap = 0;
    int last_reply = -1; /* index of the reply the cache ends with; -1: fresh conversation */
    for (int turn = 0; rc == 0; turn++) {
        const char *text = NULL;
        size_t len = 0;
        if (turn == 0 && prompt) {
            text = prompt;
            len = strlen(prompt);
        } else {
            if (!in) break;
            if (tty) fputs("> ", stderr);
            ssize_t got = getline(&line, &cap, in);
            if (got < 0) break;
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
            if (got == 0) continue;
            text = line;
            len = (size_t)got;
        }
        rc = convo_add(&v, "user", text, len);
        ids.n = 0;
        if (rc == 0 && last_reply >= 0) {
            rc = tn_chat_render_continue(o->chat, v.m, v.n, last_reply, &ids);
            if (rc == 0 && (int64_t)ids.n + o->max_new > tn_infer_ctx(m) - tn_infer_pos(m)) {
                fprintf(stderr, "[context full: starting a new conversation]\n");
                tn_infer_reset(m);
                h.n = 0;
                /* keep the system message and the new user turn */
                tn_chat_msg user = v.m[v.n - 1];
                v.n--;
                convo_clear(&v, base);
                v.m[v.n++] = user;
                last_reply = -1;
            }
        }
        if (rc == 0 && last_reply < 0) {
            ids.n = 0;
            rc = tn_chat_render(o->chat, v.m, v.n, 1, &ids, NULL, NULL);
        }
        if (rc != 0) {
            tn_err_prefix("chat template");
            break;
        }
        gen.n = 0;
        st->hit_eos = 0;
        rc = run_turn(m, tok, s, ids.ids, (int)ids.n, &h, stop, n_stop, o, out, st, &gen);
        fputc('\n', out);
        fflush(out);
        if (rc != 0) break;
        char *reply = NULL;
        size_t rl = 0;
        rc = tn_tokenizer_decode(tok, gen.ids, gen.n, &reply, &rl);
        if (rc == 0) rc = convo_add(&v, "assistant", reply, rl);
        free(reply);
        last_reply = v.n - 1;
    }
    convo_clear(&v, 0);
    free(v.m);
    free(line);
    tn_tokens_free(&ids);
    tn_tokens_free(&gen);
    return rc;
}
