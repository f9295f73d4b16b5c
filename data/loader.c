/* The batch loader (see loader.h for the row layout and the order of items). */
#include "data/loader.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/shard.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct tn_loader {
    tn_loader_opts o;
    int n_shards;
    tn_shard *shards;
    int64_t *shard_start; /* [n_shards + 1]: first global token index of each shard */
    int64_t n_tokens, vocab_size, eos_id;
    char sha256[65];
    /* Items: text windows are implicit (window k starts at k*T); SFT examples are listed. */
    int64_t n_items;
    int64_t *item_start; /* SFT: global start of each kept example */
    int64_t *item_len;   /* SFT: its length in tokens */
    /* Cursor: perm is the order of epoch `epoch`; pos is the next entry of perm to use. */
    uint64_t *perm;
    int64_t epoch, pos;
    uint32_t *row_tok; /* [T+1] scratch for one row */
    uint8_t *row_mask;
};

/* Fill perm with the order of the current epoch: identity when sequential, else a shuffle whose RNG is
 * derived from (seed, epoch) only, so restoring a cursor needs nothing but those two numbers. */
static void make_perm(tn_loader *l) {
    for (int64_t i = 0; i < l->n_items; i++) l->perm[i] = (uint64_t)i;
    if (l->o.sequential) return;
    tn_rng r;
    tn_rng_seed(&r, l->o.seed);
    uint64_t base = tn_rng_u64(&r);
    tn_rng_seed(&r, base ^ ((uint64_t)l->epoch * 0x9e3779b97f4a7c15ULL));
    tn_rng_shuffle_u64(&r, l->perm, (uint64_t)l->n_items);
}

/* The item at the cursor, starting a new epoch first if the current one is used up. */
static uint64_t peek_item(tn_loader *l) {
    if (l->pos >= l->n_items) {
        l->epoch++;
        l->pos = 0;
        make_perm(l);
    }
    return l->perm[l->pos];
}

/* Copy global tokens [g, g+n) (they may cross shard boundaries) into tok/mask. */
static void copy_tokens(const tn_loader *l, int64_t g, int64_t n, uint32_t *tok, uint8_t *mask) {
    /* Binary search for the shard holding g. */
    int lo = 0, hi = l->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (l->shard_start[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    int s = lo;
    while (n > 0) {
        while (g >= l->shard_start[s + 1]) s++; /* skips empty shards too */
        int64_t off = g - l->shard_start[s];
        int64_t c = l->shard_start[s + 1] - g;
        if (c > n) c = n;
        memcpy(tok, l->shards[s].tokens + off, (size_t)c * sizeof *tok);
        memcpy(mask, l->shards[s].loss_mask + off, (size_t)c);
        tok += c;
        mask += c;
        g += c;
        n -= c;
    }
}

/* Fill the row buffer with the next row's tokens; returns the number used (u <= T+1). */
static int64_t fill_row(tn_loader *l) {
    int64_t T1 = (int64_t)l->o.seq_len + 1;
    if (!l->o.sft_mode) {
        uint64_t k = peek_item(l);
        l->pos++;
        copy_tokens(l, (int64_t)k * l->o.seq_len, T1, l->row_tok, l->row_mask);
        return T1;
    }
    int64_t u = 0;
    for (;;) {
        uint64_t k = peek_item(l);
        int64_t len = l->item_len[k] < T1 ? l->item_len[k] : T1;
        if (u > 0 && u + len > T1) break; /* does not fit: starts the next row */
        copy_tokens(l, l->item_start[k], len, l->row_tok + u, l->row_mask + u);
        u += len;
        l->pos++;
        if (!l->o.sft_pack || u >= T1) break;
    }
    return u;
}

int tn_loader_next(tn_loader *l, int32_t *inputs, int32_t *targets, uint8_t *mask) {
    int T = l->o.seq_len;
    int32_t pad = l->eos_id >= 0 ? (int32_t)l->eos_id : 0;
    for (int b = 0; b < l->o.batch; b++) {
        int64_t u = fill_row(l);
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        uint8_t *m = mask + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            if (t + 1 < u) {
                in[t] = (int32_t)l->row_tok[t];
                tg[t] = (int32_t)l->row_tok[t + 1];
                m[t] = l->row_mask[t + 1];
            } else {
                in[t] = t < u ? (int32_t)l->row_tok[t] : pad;
                tg[t] = pad;
                m[t] = 0;
            }
        }
    }
    return 0;
}

void tn_loader_close(tn_loader *l) {
    if (!l) return;
    for (int i = 0; i < l->n_shards; i++) tn_shard_free(&l->shards[i]);
    free(l->shards);
    free(l->shard_start);
    free(l->item_start);
    free(l->item_len);
    free(l->perm);
    free(l->row_tok);
    free(l->row_mask);
    free(l);
}

static int open_items(tn_loader *l) {
    int64_t T = l->o.seq_len;
    if (!l->o.sft_mode) {
        if (l->n_tokens < T + 1)
            return tn_err("shards hold %" PRId64 " tokens, fewer than one window of seq_len+1 = %" PRId64,
                          l->n_tokens, T + 1);
        l->n_items = (l->n_tokens - 1) / T;
    } else {
        int64_t n_docs = 0;
        for (int i = 0; i < l->n_shards; i++) n_docs += l->shards[i].n_docs;
        l->item_start = malloc((size_t)(n_docs ? n_docs : 1) * sizeof *l->item_start);
        l->item_len = malloc((size_t)(n_docs ? n_docs : 1) * sizeof *l->item_len);
        if (!l->item_start || !l->item_len) return tn_err("loader: out of memory");
        int64_t k = 0;
        for (int i = 0; i < l->n_shards; i++) {
            const tn_shard *s = &l->shards[i];
            for (int64_t d = 0; d < s->n_docs; d++) {
                int64_t len = (int64_t)(s->doc_offsets[d + 1] - s->doc_offsets[d]);
                if (len < 2) continue; /* no target to train on */
                l->item_start[k] = l->shard_start[i] + (int64_t)s->doc_offsets[d];
                l->item_len[k] = len;
                k++;
            }
        }
        if (k == 0) return tn_err("shards hold no example with at least 2 tokens");
        l->n_items = k;
    }
    l->perm = malloc((size_t)l->n_items * sizeof *l->perm);
    if (!l->perm) return tn_err("loader: out of memory for %" PRId64 " items", l->n_items);
    make_perm(l);
    return 0;
}

int tn_loader_open(tn_loader **out, const char *const *paths, int n_paths, const tn_loader_opts *o) {
    *out = NULL;
    if (n_paths < 1) return tn_err("loader: no shard given");
    if (o->batch < 1 || o->seq_len < 1)
        return tn_err("loader: batch %d and seq_len %d must be positive", o->batch, o->seq_len);
    tn_loader *l = calloc(1, sizeof *l);
    if (!l) return tn_err("loader: out of memory");
    l->o = *o;
    l->shards = calloc((size_t)n_paths, sizeof *l->shards);
    l->shard_start = calloc((size_t)n_paths + 1, sizeof *l->shard_start);
    l->row_tok = malloc(((size_t)o->seq_len + 1) * sizeof *l->row_tok);
    l->row_mask = malloc((size_t)o->seq_len + 1);
    if (!l->shards || !l->shard_start || !l->row_tok || !l->row_mask) {
        tn_loader_close(l);
        return tn_err("loader: out of memory");
    }
    for (int i = 0; i < n_paths; i++) {
        if (tn_shard_load(paths[i], &l->shards[i]) != 0) {
            tn_loader_close(l);
            return -1;
        }
        l->n_shards = i + 1;
        const tn_shard *s = &l->shards[i];
        if (i == 0) {
            memcpy(l->sha256, s->tokenizer_sha256, sizeof l->sha256);
            l->eos_id = s->eos_id;
        } else if (strcmp(s->tokenizer_sha256, l->sha256) != 0) {
            tn_err("%s: tokenizer_sha256 %.12s... differs from %s (%.12s...): shards from different tokenizers",
                   paths[i], s->tokenizer_sha256[0] ? s->tokenizer_sha256 : "(none)", paths[0],
                   l->sha256[0] ? l->sha256 : "(none)");
            tn_loader_close(l);
            return -1;
        }
        if (s->vocab_size > l->vocab_size) l->vocab_size = s->vocab_size;
        l->shard_start[i + 1] = l->shard_start[i] + s->n_tokens;
    }
    l->n_tokens = l->shard_start[n_paths];
    if (open_items(l) != 0) {
        tn_loader_close(l);
        return -1;
    }
    *out = l;
    return 0;
}

int64_t tn_loader_vocab_size(const tn_loader *l) { return l->vocab_size; }
int64_t tn_loader_epoch(const tn_loader *l) { return l->epoch; }
int64_t tn_loader_items(const tn_loader *l) { return l->n_items; }
int64_t tn_loader_tokens(const tn_loader *l) { return l->n_tokens; }
int64_t tn_loader_eos_id(const tn_loader *l) { return l->eos_id; }
const char *tn_loader_tokenizer_sha256(const tn_loader *l) { return l->sha256; }

/* Cursor blob, little-endian, 68 bytes:
 *   0  "TNLDCUR1" magic          8  u32 version (1)       12 u32 mode bits (sft_mode | pack<<1 | seq<<2)
 *   16 u32 seq_len               20 u32 reserved (0)      24 u64 seed
 *   32 i64 epoch                 40 i64 pos               48 i64 n_items         56 i64 n_tokens
 *   64 u32 CRC-32 of bytes [0, 64) */
#define STATE_LEN 68
#define STATE_MAGIC "TNLDCUR1"

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint32_t mode_bits(const tn_loader_opts *o) {
    return (uint32_t)(!!o->sft_mode) | (uint32_t)(!!o->sft_pack && o->sft_mode) << 1 | (uint32_t)(!!o->sequential) << 2;
}

int tn_loader_save_state(const tn_loader *l, uint8_t **buf, size_t *len) {
    uint8_t *b = calloc(1, STATE_LEN);
    if (!b) return tn_err("loader state: out of memory");
    memcpy(b, STATE_MAGIC, 8);
    put_u32(b + 8, 1);
    put_u32(b + 12, mode_bits(&l->o));
    put_u32(b + 16, (uint32_t)l->o.seq_len);
    put_u64(b + 24, l->o.seed);
    put_u64(b + 32, (uint64_t)l->epoch);
    put_u64(b + 40, (uint64_t)l->pos);
    put_u64(b + 48, (uint64_t)l->n_items);
    put_u64(b + 56, (uint64_t)l->n_tokens);
    put_u32(b + 64, tn_crc32(0, b, 64));
    *buf = b;
    *len = STATE_LEN;
    return 0;
}

int tn_loader_restore_state(tn_loader *l, const uint8_t *b, size_t len) {
    if (!b || len != STATE_LEN) return tn_err("loader state: %zu bytes, expected %d", len, STATE_LEN);
    if (memcmp(b, STATE_MAGIC, 8) != 0) return tn_err("loader state: bad magic");
    if (get_u32(b + 64) != tn_crc32(0, b, 64)) return tn_err("loader state: checksum mismatch (corrupted)");
    if (get_u32(b + 8) != 1) return tn_err("loader state: version %" PRIu32 " not supported", get_u32(b + 8));
    if (get_u32(b + 12) != mode_bits(&l->o))
        return tn_err("loader state: saved for a different mode (sft/pack/sequential bits %" PRIu32 ", now %" PRIu32 ")",
                      get_u32(b + 12), mode_bits(&l->o));
    if (get_u32(b + 16) != (uint32_t)l->o.seq_len)
        return tn_err("loader state: saved with seq_len %" PRIu32 ", now %d", get_u32(b + 16), l->o.seq_len);
    int64_t epoch = (int64_t)get_u64(b + 32), pos = (int64_t)get_u64(b + 40);
    int64_t n_items = (int64_t)get_u64(b + 48), n_tokens = (int64_t)get_u64(b + 56);
    if (n_items != l->n_items || n_tokens != l->n_tokens)
        return tn_err("loader state: saved for data with %" PRId64 " items / %" PRId64 " tokens, these shards have %" PRId64
                      " / %" PRId64,
                      n_items, n_tokens, l->n_items, l->n_tokens);
    if (epoch < 0 || pos < 0 || pos > n_items)
        return tn_err("loader state: cursor epoch %" PRId64 " position %" PRId64 " out of range", epoch, pos);
    l->o.seed = get_u64(b + 24);
    l->epoch = epoch;
    l->pos = pos;
    make_perm(l);
    return 0;
}
