/* The BPE merge loop shared by the SentencePiece and byte-level encoders (see tok_internal.h).
 *
 * Symbols form a doubly linked list; every adjacent pair that could merge is a candidate in a binary
 * max-heap ordered by (priority, then leftmost). Popping the best candidate merges the right symbol into
 * the left one and pushes at most two new candidates (with the new left and right neighbours), so a
 * text of n symbols costs O(n log n) instead of the O(n^2) of rescanning all pairs after each merge.
 * Candidates are never removed from the heap when a merge makes them stale; instead each records the byte
 * lengths of its two symbols, and a popped candidate whose symbols changed since is skipped (a symbol's
 * start never moves, so equal start and length mean equal content). */
#include "data/tok_internal.h"
#include "core/error.h"

#include <stdlib.h>

/* A candidate: key = priority << 32 | (UINT32_MAX - left), so one integer comparison orders by priority
 * and then leftmost. The right symbol is next[left]: it can only change when left's length does. */
typedef struct {
    uint64_t key;
    uint32_t llen, rlen;
    int32_t merged;
} cand;

typedef struct {
    cand *v;
    size_t n, cap;
} heap;

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        cand *v = realloc(h->v, cap * sizeof *v);
        if (!v) return tn_err("tokenizer: out of memory");
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (c.key <= h->v[p].key) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = last.key;
        if (l < n && h->v[l].key > best) m = l, best = h->v[l].key;
        if (l + 1 < n && h->v[l + 1].key > best) m = l + 1;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (n) h->v[i] = last;
    return top;
}

static int try_pair(const tn_tokenizer *t, const char *text, const tn_tok_syms *s, int32_t l, int32_t r,
                    int by_text, heap *h) {
    if (l < 0 || r < 0) return 0;
    uint32_t prio;
    int32_t merged;
    if (s->id[l] >= 0 && s->id[r] >= 0) {
        if (!tn_tok_pair(t, s->id[l], s->id[r], &prio, &merged)) return 0;
    } else {
        if (!by_text) return 0;
        merged = tn_tok_lookup(t, text + s->start[l], (size_t)s->len[l] + s->len[r]);
        if (merged < 0 || !tn_tok_mergeable(t, merged)) return 0;
        prio = tn_tok_score_key(t->score[merged]);
    }
    cand c = {(uint64_t)prio << 32 | (UINT32_MAX - (uint32_t)l), s->len[l], s->len[r], merged};
    return heap_push(h, c);
}

int tn_tok_merge(const tn_tokenizer *t, const char *text, tn_tok_syms *s, int32_t n_sym, int by_text) {
    heap h = {0};
    int rc = 0;
    for (int32_t i = 0; i + 1 < n_sym && rc == 0; i++) rc = try_pair(t, text, s, i, i + 1, by_text, &h);
    while (rc == 0 && h.n > 0) {
        cand c = heap_pop(&h);
        int32_t l = (int32_t)(UINT32_MAX - (uint32_t)c.key), r = s->next[l];
        if (s->len[l] != c.llen || r < 0 || s->len[r] != c.rlen) continue; /* stale */
        s->len[l] += s->len[r];
        s->id[l] = c.merged;
        s->len[r] = 0;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        rc = try_pair(t, text, s, s->prev[l], l, by_text, &h);
        if (rc == 0) rc = try_pair(t, text, s, l, s->next[l], by_text, &h);
    }
    free(h.v);
    return rc;
}
