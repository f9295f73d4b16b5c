/* Tokenizer core: the builder, hash tables, GPT-2's byte table, decode, the serialized form, and source
 * auto-detection. The encoders live in tok_spm.c and tok_bpe.c, the loaders in tok_spm.c (protobuf),
 * tok_hfjson.c and tok_gguf.c. */
#include "data/tok_internal.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/fileio.h"
#include "data/sha256.h"
#include "data/unicode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------------------------------------
 * id arrays */

int tn_tokens_push(tn_tokens *t, int32_t id) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        int32_t *p = realloc(t->ids, cap * sizeof *p);
        if (!p) return tn_err("tokens: out of memory");
        t->ids = p;
        t->cap = cap;
    }
    t->ids[t->n++] = id;
    return 0;
}

void tn_tokens_free(tn_tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------------------------------------------
 * builder */

tn_tokenizer *tn_tok_new(int kind) {
    tn_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        tn_err("tokenizer: out of memory");
        return NULL;
    }
    t->kind = kind;
    t->bos = t->eos = t->unk = t->pad = -1;
    t->str_off = calloc(1, sizeof *t->str_off);
    if (!t->str_off) {
        free(t);
        tn_err("tokenizer: out of memory");
        return NULL;
    }
    return t;
}

void tn_tokenizer_free(tn_tokenizer *t) {
    if (!t) return;
    free(t->str);
    free(t->str_off);
    free(t->score);
    free(t->type);
    free(t->merge_a);
    free(t->merge_b);
    free(t->map.slot);
    free(t->pairs.slot);
    free(t->dec);
    free(t->dec_off);
    free(t->chat_template);
    free(t);
}

int tn_tok_set_chat_template(tn_tokenizer *t, const char *s, size_t len) {
    if (len > TN_TOK_MAX_CHAT_TEMPLATE)
        return tn_err("tokenizer: chat template of %zu bytes (at most %d)", len, TN_TOK_MAX_CHAT_TEMPLATE);
    if (memchr(s, '\0', len)) return tn_err("tokenizer: chat template contains a NUL byte");
    char *c = malloc(len + 1);
    if (!c) return tn_err("tokenizer: out of memory");
    memcpy(c, s, len);
    c[len] = '\0';
    free(t->chat_template);
    t->chat_template = c;
    return 0;
}

int tn_tok_add(tn_tokenizer *t, const char *s, size_t len, float score, int type) {
    if (t->n_vocab >= TN_TOK_MAX_VOCAB) return tn_err("tokenizer: more than %d tokens", TN_TOK_MAX_VOCAB);
    if (len > TN_TOK_MAX_PIECE) return tn_err("tokenizer: token %d is %zu bytes long", t->n_vocab, len);
    if (type < TN_TOKTYPE_NORMAL || type > TN_TOKTYPE_BYTE)
        return tn_err("tokenizer: token %d has unknown type %d", t->n_vocab, type);
    int32_t n = t->n_vocab;
    /* Grow the per-token arrays geometrically (capacity = next power of two). */
    if ((n & (n - 1)) == 0) {
        size_t cap = n ? 2 * (size_t)n : 1;
        uint64_t *o = realloc(t->str_off, (cap + 1) * sizeof *o);
        if (o) t->str_off = o;
        float *sc = realloc(t->score, cap * sizeof *sc);
        if (sc) t->score = sc;
        uint8_t *ty = realloc(t->type, cap);
        if (ty) t->type = ty;
        if (!o || !sc || !ty) return tn_err("tokenizer: out of memory");
    }
    uint64_t used = t->str_off[n];
    /* Allocate on the first token even when it is empty: with str NULL, a vocabulary of only empty
     * strings would reach lookups and pair building with a NULL base pointer (a crash, found by fuzzing). */
    if (used + len > t->str_cap || !t->str) {
        size_t cap = t->str_cap ? t->str_cap : 4096;
        while (cap < used + len) cap *= 2;
        char *p = realloc(t->str, cap);
        if (!p) return tn_err("tokenizer: out of memory");
        t->str = p;
        t->str_cap = cap;
    }
    if (len) memcpy(t->str + used, s, len);
    t->str_off[n + 1] = used + len;
    t->score[n] = score;
    t->type[n] = (uint8_t)type;
    t->n_vocab = n + 1;
    return 0;
}

int tn_tok_add_merge(tn_tokenizer *t, int32_t a, int32_t b) {
    if (t->n_merges >= TN_TOK_MAX_VOCAB * 4) return tn_err("tokenizer: too many merges");
    if ((size_t)t->n_merges == t->merge_cap) {
        size_t cap = t->merge_cap ? 2 * t->merge_cap : 1024;
        int32_t *pa = realloc(t->merge_a, cap * sizeof *pa);
        if (pa) t->merge_a = pa;
        int32_t *pb = realloc(t->merge_b, cap * sizeof *pb);
        if (pb) t->merge_b = pb;
        if (!pa || !pb) return tn_err("tokenizer: out of memory");
        t->merge_cap = cap;
    }
    t->merge_a[t->n_merges] = a;
    t->merge_b[t->n_merges] = b;
    t->n_merges++;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * hash tables (open addressing, linear probing, load factor <= 1/2) */

static uint64_t hash_bytes(const char *s, size_t n) {
    /* FNV-1a, then a final mix so the low bits (the slot index) depend on every byte. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t table_size(uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

int32_t tn_tok_lookup(const tn_tokenizer *t, const char *s, size_t len) {
    if (!t->map.slot) return -1; /* not indexed yet */
    uint64_t i = hash_bytes(s, len) & t->map.mask;
    for (;;) {
        int32_t id = t->map.slot[i];
        if (id < 0) return -1;
        uint64_t o = t->str_off[id];
        if (t->str_off[id + 1] - o == len && memcmp(t->str + o, s, len) == 0) return id;
        i = (i + 1) & t->map.mask;
    }
}

int tn_tok_pair(const tn_tokenizer *t, int32_t a, int32_t b, uint32_t *prio, int32_t *merged) {
    if (!t->pairs.slot) return 0;
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint64_t i = hash_u64(k) & t->pairs.mask;
    for (;;) {
        const tn_tok_pairslot *s = &t->pairs.slot[i];
        if (s->key == k) {
            *prio = s->prio;
            *merged = s->merged;
            return 1;
        }
        if (s->key == 0) return 0;
        i = (i + 1) & t->pairs.mask;
    }
}

static int build_strmap(tn_tokenizer *t) {
    uint64_t cap = table_size((uint64_t)t->n_vocab);
    t->map.slot = malloc(cap * sizeof *t->map.slot);
    if (!t->map.slot) return tn_err("tokenizer: out of memory");
    memset(t->map.slot, 0xff, cap * sizeof *t->map.slot);
    t->map.mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->str + t->str_off[id];
        size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
        uint64_t i = hash_bytes(s, len) & t->map.mask;
        int dup = 0;
        while (t->map.slot[i] >= 0) {
            int32_t o = t->map.slot[i];
            if (t->str_off[o + 1] - t->str_off[o] == len && memcmp(t->str + t->str_off[o], s, len) == 0) {
                dup = 1; /* some vocabularies repeat a string; the lowest id wins, as in llama.cpp */
                break;
            }
            i = (i + 1) & t->map.mask;
        }
        if (!dup) t->map.slot[i] = id;
    }
    return 0;
}

int tn_tok_index(tn_tokenizer *t) {
    free(t->map.slot);
    t->map.slot = NULL;
    return build_strmap(t);
}

uint32_t tn_tok_score_key(float score) {
    uint32_t bits;
    memcpy(&bits, &score, 4);
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

/* SentencePiece keeps control, unknown, byte and unused pieces out of its merge table, so "<s>" is never
 * assembled from "<", "s", ">". */
int tn_tok_mergeable(const tn_tokenizer *t, int32_t id) {
    int ty = t->type[id];
    return ty == TN_TOKTYPE_NORMAL || ty == TN_TOKTYPE_USER;
}

static int pairs_alloc(tn_tokenizer *t, uint64_t n) {
    uint64_t cap = table_size(n);
    t->pairs.slot = calloc(cap, sizeof *t->pairs.slot);
    if (!t->pairs.slot) return tn_err("tokenizer: out of memory");
    t->pairs.mask = cap - 1;
    return 0;
}

/* Insert unless present; with keep_better, a present pair is replaced when prio is higher. */
static void pairs_put(tn_tokenizer *t, int32_t a, int32_t b, uint32_t prio, int32_t merged, int keep_better) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint64_t i = hash_u64(k) & t->pairs.mask;
    tn_tok_pairslot *s = t->pairs.slot;
    while (s[i].key != 0 && s[i].key != k) i = (i + 1) & t->pairs.mask;
    if (s[i].key == k && !(keep_better && prio > s[i].prio)) return;
    s[i].key = k;
    s[i].prio = prio;
    s[i].merged = merged;
}

/* From a merge list: (a, b) -> the token spelled a+b, priority from the rank. A merge whose result is
 * not in the vocabulary can never fire and is skipped; a repeated pair keeps its first (best) rank. */
static int build_pairs_from_merges(tn_tokenizer *t) {
    TN_CHECK(pairs_alloc(t, (uint64_t)t->n_merges));
    char *buf = malloc(2 * TN_TOK_MAX_PIECE);
    if (!buf) return tn_err("tokenizer: out of memory");
    for (int32_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merge_a[r], b = t->merge_b[r];
        if (a < 0 || b < 0 || a >= t->n_vocab || b >= t->n_vocab) {
            free(buf);
            return tn_err("tokenizer: merge %d refers to token %d, outside the vocabulary", r, a < 0 || a >= t->n_vocab ? a : b);
        }
        size_t la = (size_t)(t->str_off[a + 1] - t->str_off[a]), lb = (size_t)(t->str_off[b + 1] - t->str_off[b]);
        memcpy(buf, t->str + t->str_off[a], la);
        memcpy(buf + la, t->str + t->str_off[b], lb);
        int32_t m = tn_tok_lookup(t, buf, la + lb);
        if (m < 0) continue;
        pairs_put(t, a, b, UINT32_MAX - (uint32_t)r, m, 0);
    }
    free(buf);
    return 0;
}

/* SentencePiece (no merge list): every split of a mergeable piece into two tokens at a character
 * boundary is a pair, priority = the piece's score. Equivalent to SentencePiece's lookup of the
 * concatenated text for symbols that are tokens (the encoder falls back to that lookup for characters
 * that are not), and a hash probe on two ids instead of hashing and comparing strings. */
static int build_pairs_from_scores(tn_tokenizer *t) {
    /* Two passes: count the pairs, so the table is sized to them (smaller table, fewer cache misses). */
    uint64_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) TN_CHECK(pairs_alloc(t, n ? n : 1));
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (!tn_tok_mergeable(t, id)) continue;
            const char *s = t->str + t->str_off[id];
            size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
            /* an empty piece has no split, and s[0] below would read past the strings (fuzzing) */
            if (len == 0) continue;
            if (tn_tok_lookup(t, s, len) != id) continue; /* a duplicate string: the first id is the token */
            for (size_t cut = (size_t)tn_utf8_len((uint8_t)s[0]); cut < len; cut += (size_t)tn_utf8_len((uint8_t)s[cut])) {
                int32_t a = tn_tok_lookup(t, s, cut), b = tn_tok_lookup(t, s + cut, len - cut);
                if (a < 0 || b < 0) continue;
                if (pass == 0) n++;
                else pairs_put(t, a, b, tn_tok_score_key(t->score[id]), id, 1);
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * GPT-2's byte-to-unicode table: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
 * themselves; the other 68 bytes get U+0100, U+0101, ... in byte order (openai/gpt-2 encoder.py). */

/* Computed, not tabulated, so that nothing is initialised lazily (loading is thread-safe). The 68
 * remapped bytes are 0x00-0x20 (33), 0x7F-0xA0 (34) and 0xAD, in that order. */
static int printable(uint32_t b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

uint32_t tn_tok_byte_to_cp(uint8_t b) {
    if (printable(b)) return b;
    uint32_t k = b <= 0x20 ? b : b <= 0xA0 ? 33u + (b - 0x7Fu) : 67u;
    return 256 + k;
}

int tn_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    return k < 33 ? (int)k : k < 67 ? (int)(0x7F + (k - 33)) : 0xAD;
}

/* ---------------------------------------------------------------------------------------------------
 * finishing a definition: derived tables */

static int parse_byte_piece(const char *s, size_t n) {
    /* "<0xNN>" with two uppercase or lowercase hex digits */
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decoded bytes of one token (see tn_tokenizer_decode): appended to *buf. */
static int decoded_piece(const tn_tokenizer *t, int32_t id, char *out, size_t *n) {
    const char *s = t->str + t->str_off[id];
    size_t len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
    int type = t->type[id];
    *n = 0;
    if (type == TN_TOKTYPE_CONTROL) return 0;
    if (t->kind == TN_TOK_BYTES) {
        if (id < 256) out[(*n)++] = (char)id;
        return 0;
    }
    if (t->kind == TN_TOK_SPM) {
        if (type == TN_TOKTYPE_BYTE) {
            int b = parse_byte_piece(s, len);
            if (b >= 0) {
                out[(*n)++] = (char)b;
                return 0;
            }
        }
        if (type == TN_TOKTYPE_UNKNOWN) {
            memcpy(out, " \xE2\x81\x87 ", 5); /* SentencePiece's unk_surface " ⁇ " */
            *n = 5;
            return 0;
        }
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                out[(*n)++] = ' ';
                i += 3;
            } else {
                out[(*n)++] = s[i++];
            }
        }
        return 0;
    }
    /* byte-level BPE: map every character back to its byte. Added (user) tokens are stored as plain text. */
    if (type == TN_TOKTYPE_USER) {
        memcpy(out, s, len);
        *n = len;
        return 0;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = tn_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        int b = tn_tok_cp_to_byte(cp);
        if (b >= 0) {
            out[(*n)++] = (char)b;
        } else {
            memcpy(out + *n, s + i, (size_t)k);
            *n += (size_t)k;
        }
        i += (size_t)k;
    }
    return 0;
}

static int check_special(const tn_tokenizer *t, const char *what, int32_t id) {
    if (id < -1 || id >= t->n_vocab)
        return tn_err("tokenizer: %s id %" PRId32 " outside the vocabulary of %" PRId32, what, id, t->n_vocab);
    return 0;
}

static int serialize(const tn_tokenizer *t, int with_template, uint8_t **blob, size_t *len);

int tn_tok_finish(tn_tokenizer *t) {
    if (t->kind < TN_TOK_BYTES || t->kind > TN_TOK_BPE) return tn_err("tokenizer: unknown kind %d", t->kind);
    if (t->n_vocab < 1) return tn_err("tokenizer: empty vocabulary");
    if (t->flags & ~(uint32_t)TN_TOKF_ALL) return tn_err("tokenizer: unknown flags 0x%x", t->flags);
    if (t->pretok < 0 || t->pretok >= TN_PRETOK_COUNT) return tn_err("tokenizer: unknown pre-tokenizer %d", t->pretok);
    if ((t->kind == TN_TOK_BPE) != (t->pretok != TN_PRETOK_NONE))
        return tn_err("tokenizer: pre-tokenizer %d does not fit kind %d", t->pretok, t->kind);
    TN_CHECK(check_special(t, "BOS", t->bos));
    TN_CHECK(check_special(t, "EOS", t->eos));
    TN_CHECK(check_special(t, "UNK", t->unk));
    TN_CHECK(check_special(t, "PAD", t->pad));
    if (t->kind == TN_TOK_BYTES && t->n_vocab < 256) return tn_err("tokenizer: bytes vocabulary needs 256 byte tokens");
    if (!t->map.slot) TN_CHECK(build_strmap(t));
    if (t->n_merges > 0) TN_CHECK(build_pairs_from_merges(t));
    else if (t->kind == TN_TOK_SPM) TN_CHECK(build_pairs_from_scores(t));

    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    if (t->kind == TN_TOK_BYTES) {
        for (int b = 0; b < 256; b++) t->byte_id[b] = b;
    } else if (t->kind == TN_TOK_SPM) {
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (t->type[id] != TN_TOKTYPE_BYTE) continue;
            int b = parse_byte_piece(t->str + t->str_off[id], (size_t)(t->str_off[id + 1] - t->str_off[id]));
            if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = id;
        }
    } else {
        for (int b = 0; b < 256; b++) {
            char u[4];
            int k = tn_utf8_encode(tn_tok_byte_to_cp((uint8_t)b), u);
            t->byte_id[b] = tn_tok_lookup(t, u, (size_t)k);
        }
    }

    /* User-defined tokens: first bytes and distinct lengths, longest first (more than 64 distinct
     * lengths is refused rather than silently missing matches). */
    memset(t->user_first, 0, sizeof t->user_first);
    t->n_user_len = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t l = (uint32_t)(t->str_off[id + 1] - t->str_off[id]);
        if (t->type[id] != TN_TOKTYPE_USER || l == 0 || t->kind == TN_TOK_BYTES) continue;
        t->user_first[(uint8_t)t->str[t->str_off[id]]] = 1;
        int k = 0;
        while (k < t->n_user_len && t->user_len[k] > l) k++;
        if (k < t->n_user_len && t->user_len[k] == l) continue;
        if (t->n_user_len == 64) return tn_err("tokenizer: user-defined tokens of more than 64 different lengths");
        memmove(t->user_len + k + 1, t->user_len + k, (size_t)(t->n_user_len - k) * sizeof t->user_len[0]);
        t->user_len[k] = l;
        t->n_user_len++;
    }

    /* Decoded pieces: never longer than the raw string, except unk_surface (5 bytes). */
    uint64_t total = t->str_off[t->n_vocab] + 5 * (uint64_t)t->n_vocab;
    t->dec = malloc(total ? total : 1);
    t->dec_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->dec_off);
    if (!t->dec || !t->dec_off) return tn_err("tokenizer: out of memory");
    t->dec_off[0] = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n;
        decoded_piece(t, id, t->dec + t->dec_off[id], &n);
        t->dec_off[id + 1] = t->dec_off[id] + n;
    }

    uint8_t *blob;
    size_t len;
    TN_CHECK(serialize(t, 0, &blob, &len)); /* the fingerprint leaves the chat template out */
    tn_sha256_hex(blob, len, t->sha);
    free(blob);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * the bytes tokenizer */

static int make_bytes(tn_tokenizer **out) {
    tn_tokenizer *t = tn_tok_new(TN_TOK_BYTES);
    if (!t) return -1;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (tn_tok_add(t, &c, 1, 0, TN_TOKTYPE_BYTE) != 0) goto fail;
    }
    if (tn_tok_add(t, "<s>", 3, 0, TN_TOKTYPE_CONTROL) != 0 || tn_tok_add(t, "</s>", 4, 0, TN_TOKTYPE_CONTROL) != 0)
        goto fail;
    t->bos = 256;
    t->eos = 257;
    t->flags = TN_TOKF_ADD_BOS;
    if (tn_tok_finish(t) != 0) goto fail;
    *out = t;
    return 0;
fail:
    tn_tokenizer_free(t);
    return -1;
}

/* ---------------------------------------------------------------------------------------------------
 * encode / decode */

static int encode_text(const tn_tokenizer *t, const char *text, size_t len, int at_start, tn_tokens *out) {
    if (len == 0) return 0;
    switch (t->kind) {
    case TN_TOK_BYTES:
        for (size_t i = 0; i < len; i++) TN_CHECK(tn_tokens_push(out, (uint8_t)text[i]));
        return 0;
    case TN_TOK_SPM: return tn_tok_encode_spm(t, text, len, at_start, out);
    default: return tn_tok_encode_bpe(t, text, len, out);
    }
}

/* The longest user-defined token starting at text[i], or -1. */
static int32_t user_token_at(const tn_tokenizer *t, const char *text, size_t len, size_t i, uint32_t *tl) {
    if (!t->user_first[(uint8_t)text[i]]) return -1;
    for (int k = 0; k < t->n_user_len; k++) { /* lengths are sorted longest first */
        uint32_t l = t->user_len[k];
        if (l > len - i) continue;
        int32_t id = tn_tok_lookup(t, text + i, l);
        if (id >= 0 && t->type[id] == TN_TOKTYPE_USER) {
            *tl = l;
            return id;
        }
    }
    return -1;
}

/* Leftmost-longest matches of user-defined tokens become those tokens; the text between them is
 * encoded normally. */
int tn_tokenizer_encode(const tn_tokenizer *t, const char *text, size_t len, int add_bos, tn_tokens *out) {
    if (add_bos && t->bos >= 0) TN_CHECK(tn_tokens_push(out, t->bos));
    if (t->n_user_len == 0) return encode_text(t, text, len, 1, out);
    size_t gap = 0;
    for (size_t i = 0; i < len;) {
        uint32_t tl;
        int32_t id = user_token_at(t, text, len, i, &tl);
        if (id < 0) {
            i++;
            continue;
        }
        TN_CHECK(encode_text(t, text + gap, i - gap, gap == 0, out));
        TN_CHECK(tn_tokens_push(out, id));
        i += tl;
        gap = i;
    }
    return encode_text(t, text + gap, len - gap, gap == 0, out);
}

const char *tn_tokenizer_piece(const tn_tokenizer *t, int32_t prev, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    const char *p = t->dec + t->dec_off[id];
    size_t n = (size_t)(t->dec_off[id + 1] - t->dec_off[id]);
    /* SentencePiece drops the space the dummy prefix added, on the first piece only (and after BOS). */
    if (t->kind == TN_TOK_SPM && (t->flags & TN_TOKF_DUMMY_PREFIX) && (prev < 0 || prev == t->bos) && n > 0 &&
        p[0] == ' ' && t->type[id] != TN_TOKTYPE_BYTE && t->type[id] != TN_TOKTYPE_UNKNOWN) {
        p++;
        n--;
    }
    *len = n;
    return p;
}

int tn_tokenizer_decode(const tn_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return tn_err("decode: token id %" PRId32 " at position %zu outside the vocabulary of %" PRId32, ids[i], i,
                          t->n_vocab);
        total += (size_t)(t->dec_off[ids[i] + 1] - t->dec_off[ids[i]]);
    }
    char *s = malloc(total);
    if (!s) return tn_err("decode: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        const char *p = tn_tokenizer_piece(t, i ? ids[i - 1] : -1, ids[i], &m);
        memcpy(s + k, p, m);
        k += m;
    }
    s[k] = '\0';
    *text = s;
    *len = k;
    return 0;
}

const char *tn_tokenizer_token(const tn_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = (size_t)(t->str_off[id + 1] - t->str_off[id]);
    return t->str + t->str_off[id];
}

int tn_tokenizer_token_type(const tn_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->type[id] : 0;
}

int32_t tn_tokenizer_find(const tn_tokenizer *t, const char *s, size_t len) { return tn_tok_lookup(t, s, len); }

tn_tokenizer_kind tn_tokenizer_get_kind(const tn_tokenizer *t) { return (tn_tokenizer_kind)t->kind; }
const char *tn_tokenizer_kind_name(const tn_tokenizer *t) {
    return t->kind == TN_TOK_SPM ? "spm" : t->kind == TN_TOK_BPE ? "bpe" : "bytes";
}
int64_t tn_tokenizer_vocab_size(const tn_tokenizer *t) { return t->n_vocab; }
int64_t tn_tokenizer_bos_id(const tn_tokenizer *t) { return t->bos; }
int64_t tn_tokenizer_eos_id(const tn_tokenizer *t) { return t->eos; }
int tn_tokenizer_uses_bos(const tn_tokenizer *t) { return (t->flags & TN_TOKF_ADD_BOS) && t->bos >= 0; }
const char *tn_tokenizer_sha256(const tn_tokenizer *t) { return t->sha; }
const char *tn_tokenizer_chat_template(const tn_tokenizer *t) { return t->chat_template; }

/* ---------------------------------------------------------------------------------------------------
 * serialized form (docs/TOKENIZERS.md), little-endian:
 *   "TNTK" u32 version (1, or 2 with a chat template) | u32 kind | u32 pretok | u32 flags | i32 bos, eos, unk
 *   | u32 n_vocab | u32 n_merges
 *   n_vocab x { u32 len, len bytes, f32 score, u8 type }
 *   n_merges x { u32 a, u32 b }
 *   version 2 only: u32 len, len bytes of chat template (UTF-8 Jinja text, no NUL)
 *   u32 CRC-32 of everything before it */

#define BLOB_MAGIC "TNTK"
#define BLOB_HEADER 40

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* with_template = 0 writes the version-1 form (the fingerprint's input) even when there is a template. */
static int serialize(const tn_tokenizer *t, int with_template, uint8_t **blob, size_t *len) {
    const char *tpl = with_template ? t->chat_template : NULL;
    size_t tl = tpl ? strlen(tpl) : 0;
    size_t n = BLOB_HEADER + (size_t)t->str_off[t->n_vocab] + 9 * (size_t)t->n_vocab + 8 * (size_t)t->n_merges + 4 +
               (tpl ? 4 + tl : 0);
    uint8_t *b = malloc(n), *p = b;
    if (!b) return tn_err("tokenizer: out of memory serializing");
    memcpy(p, BLOB_MAGIC, 4);
    put32(p + 4, tpl ? 2 : 1);
    put32(p + 8, (uint32_t)t->kind);
    put32(p + 12, (uint32_t)t->pretok);
    put32(p + 16, t->flags);
    put32(p + 20, (uint32_t)t->bos);
    put32(p + 24, (uint32_t)t->eos);
    put32(p + 28, (uint32_t)t->unk);
    put32(p + 32, (uint32_t)t->n_vocab);
    put32(p + 36, (uint32_t)t->n_merges);
    p += BLOB_HEADER;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t l = (uint32_t)(t->str_off[id + 1] - t->str_off[id]);
        put32(p, l);
        memcpy(p + 4, t->str + t->str_off[id], l);
        p += 4 + l;
        uint32_t bits;
        memcpy(&bits, &t->score[id], 4);
        put32(p, bits);
        p[4] = t->type[id];
        p += 5;
    }
    for (int32_t r = 0; r < t->n_merges; r++) {
        put32(p, (uint32_t)t->merge_a[r]);
        put32(p + 4, (uint32_t)t->merge_b[r]);
        p += 8;
    }
    if (tpl) {
        put32(p, (uint32_t)tl);
        memcpy(p + 4, tpl, tl);
        p += 4 + tl;
    }
    put32(p, tn_crc32(0, b, (size_t)(p - b)));
    *blob = b;
    *len = n;
    return 0;
}

int tn_tokenizer_serialize(const tn_tokenizer *t, uint8_t **blob, size_t *len) { return serialize(t, 1, blob, len); }

int tn_tokenizer_deserialize(const uint8_t *b, size_t len, tn_tokenizer **out) {
    *out = NULL;
    if (len < BLOB_HEADER + 4 || memcmp(b, BLOB_MAGIC, 4) != 0) return tn_err("tokenizer blob: bad magic or too short");
    if (get32(b + len - 4) != tn_crc32(0, b, len - 4)) return tn_err("tokenizer blob: checksum mismatch (corrupted)");
    uint32_t version = get32(b + 4);
    if (version != 1 && version != 2) return tn_err("tokenizer blob: version %" PRIu32 " not supported", version);
    uint32_t kind = get32(b + 8), n_vocab = get32(b + 32), n_merges = get32(b + 36);
    if (kind > TN_TOK_BPE) return tn_err("tokenizer blob: unknown kind %" PRIu32, kind);
    if (n_vocab > TN_TOK_MAX_VOCAB || n_merges > 4u * TN_TOK_MAX_VOCAB)
        return tn_err("tokenizer blob: %" PRIu32 " tokens / %" PRIu32 " merges is too many", n_vocab, n_merges);
    tn_tokenizer *t = tn_tok_new((int)kind);
    if (!t) return -1;
    t->pretok = (int)get32(b + 12);
    t->flags = get32(b + 16);
    t->bos = (int32_t)get32(b + 20);
    t->eos = (int32_t)get32(b + 24);
    t->unk = (int32_t)get32(b + 28);
    size_t p = BLOB_HEADER, end = len - 4;
    for (uint32_t id = 0; id < n_vocab; id++) {
        if (end - p < 4) goto truncated;
        uint32_t l = get32(b + p);
        if (l > TN_TOK_MAX_PIECE || end - p - 4 < (size_t)l + 5) goto truncated;
        float score;
        uint32_t bits = get32(b + p + 4 + l);
        memcpy(&score, &bits, 4);
        if (tn_tok_add(t, (const char *)b + p + 4, l, score, b[p + 8 + l]) != 0) goto fail;
        p += 9 + (size_t)l;
    }
    if ((end - p) / 8 < n_merges) goto truncated;
    for (uint32_t r = 0; r < n_merges; r++, p += 8)
        if (tn_tok_add_merge(t, (int32_t)get32(b + p), (int32_t)get32(b + p + 4)) != 0) goto fail;
    if (version == 2) {
        if (end - p < 4) goto truncated;
        uint32_t tl = get32(b + p);
        if (end - p - 4 < (size_t)tl) goto truncated;
        if (tn_tok_set_chat_template(t, (const char *)b + p + 4, tl) != 0) goto fail;
        p += 4 + (size_t)tl;
    }
    if (p != end) {
        tn_err("tokenizer blob: %zu unexpected trailing bytes", end - p);
        goto fail;
    }
    if (tn_tok_finish(t) != 0) goto fail;
    *out = t;
    return 0;
truncated:
    tn_err("tokenizer blob: truncated at byte %zu", p);
fail:
    tn_tokenizer_free(t);
    return tn_err_prefix("tokenizer blob");
}

/* ---------------------------------------------------------------------------------------------------
 * loading with auto-detection */

/* path's directory + name (malloc'd), or NULL. */
static char *sibling(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path + 1) : 0;
    char *p = malloc(dl + strlen(name) + 1);
    if (!p) return NULL;
    memcpy(p, path, dl);
    strcpy(p + dl, name);
    return p;
}

/* The chat template of a Hugging Face model directory, for a tokenizer loaded from its tokenizer.json or
 * tokenizer.model: tokenizer_config.json "chat_template" (cfg: its text, NULL when there is no such file),
 * else the chat_template.jinja file newer transformers versions write instead. Neither: no template. */
static int attach_hf_chat_template(const char *path, const char *cfg, size_t cfg_size, tn_tokenizer *t) {
    if (cfg && tn_tok_chat_template_from_config(t, cfg, cfg_size) != 0) return -1;
    if (t->chat_template) return 0;
    char *jpath = sibling(path, "chat_template.jinja");
    if (!jpath) return tn_err("out of memory");
    int rc = 0;
    if (tn_file_exists(jpath)) {
        char *data;
        size_t size;
        rc = tn_read_file(jpath, &data, &size);
        if (rc == 0) {
            rc = tn_tok_set_chat_template(t, data, size);
            free(data);
        }
        if (rc != 0) tn_err_prefix("%s", jpath);
    }
    free(jpath);
    return rc;
}

/* tokenizer_config.json beside path, read whole (*cfg NULL when there is none). */
static int read_config(const char *path, char **cfg, size_t *size) {
    *cfg = NULL;
    *size = 0;
    char *cpath = sibling(path, "tokenizer_config.json");
    if (!cpath) return tn_err("out of memory");
    int rc = tn_file_exists(cpath) ? tn_read_file(cpath, cfg, size) : 0;
    free(cpath);
    return rc;
}

static int load_file(const char *path, tn_tokenizer **out) {
    char *data;
    size_t size;
    TN_CHECK(tn_read_file(path, &data, &size));
    int rc;
    const uint8_t *u = (const uint8_t *)data;
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) i++;
    if (size == 0) {
        rc = tn_err("empty file, not a tokenizer");
    } else if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        free(data);
        tn_gguf g;
        if (tn_gguf_open(path, &g) != 0) return -1;
        rc = tn_tokenizer_from_gguf(&g, out);
        tn_gguf_close(&g);
        return rc ? tn_err_prefix("%s", path) : 0;
    } else if (size >= 4 && memcmp(data, BLOB_MAGIC, 4) == 0) {
        rc = tn_tokenizer_deserialize(u, size, out);
    } else if (data[i] == '{') {
        /* tokenizer.json; its tokenizer_config.json sibling names BOS/EOS and the chat template. */
        char *cfg = NULL;
        size_t cfg_size = 0;
        if (read_config(path, &cfg, &cfg_size) != 0) cfg = NULL;
        rc = tn_tok_load_hf_json(data, size, cfg, out);
        if (rc == 0 && attach_hf_chat_template(path, cfg, cfg_size, *out) != 0) {
            tn_tokenizer_free(*out);
            *out = NULL;
            rc = -1;
        }
        free(cfg);
    } else {
        rc = tn_tok_load_spm_model(u, size, out);
        if (rc == 0) { /* a SentencePiece model in a Hugging Face directory: its chat template */
            char *cfg = NULL;
            size_t cfg_size = 0;
            rc = read_config(path, &cfg, &cfg_size);
            if (rc == 0) rc = attach_hf_chat_template(path, cfg, cfg_size, *out);
            free(cfg);
            if (rc != 0) {
                tn_tokenizer_free(*out);
                *out = NULL;
            }
        } else {
            char why[256];
            snprintf(why, sizeof why, "%s", tn_errmsg());
            /* llama2.c's tokenizer.bin has no magic: accepted only if its entries tile the file exactly. */
            rc = tn_tok_load_llama2c(u, size, out);
            if (rc != 0)
                rc = tn_err("not a tokenizer (neither GGUF, tokenizer.json, llama2.c tokenizer.bin, nor a SentencePiece "
                            "model: %s)", why);
        }
    }
    free(data);
    return rc ? tn_err_prefix("%s", path) : 0;
}

int tn_tokenizer_load(const char *path_or_name, tn_tokenizer **out) {
    *out = NULL;
    if (strcmp(path_or_name, "bytes") == 0) return make_bytes(out);
    struct stat st;
    if (stat(path_or_name, &st) != 0) return tn_err("%s: no such tokenizer file (or the name 'bytes')", path_or_name);
    if (S_ISDIR(st.st_mode)) {
        /* A Hugging Face model directory: tokenizer.json first, as transformers' fast tokenizer would. */
        static const char *names[] = {"tokenizer.json", "tokenizer.model"};
        for (int i = 0; i < 2; i++) {
            size_t n = strlen(path_or_name) + 32;
            char *p = malloc(n);
            if (!p) return tn_err("out of memory");
            snprintf(p, n, "%s/%s", path_or_name, names[i]);
            if (tn_file_exists(p)) {
                int rc = load_file(p, out);
                free(p);
                return rc;
            }
            free(p);
        }
        return tn_err("%s: directory has neither tokenizer.json nor tokenizer.model", path_or_name);
    }
    return load_file(path_or_name, out);
}
