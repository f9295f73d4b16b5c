/* The batch loader: turns one or more shards into (inputs, targets, mask) batches for training.
 *
 * Text mode (sft_mode = 0): the tokens of all shards, in the order given, form one stream of N tokens.
 * Window k is stream[k*T .. k*T+T] (T+1 tokens, stride T, T = seq_len), k in [0, (N-1)/T). Windows are
 * visited in a seeded random order that is reshuffled every epoch.
 *
 * SFT mode (sft_mode = 1): every document (example) of length >= 2 is an item; items are visited in a
 * seeded random order reshuffled every epoch. An example longer than T+1 tokens is cut to its first T+1.
 *   sft_pack = 0: one example per row, the rest of the row padded.
 *   sft_pack = 1: whole examples are appended to the row while they fit in T+1 tokens; the first example
 *                 that does not fit starts the next row (an example is never split across rows; one that
 *                 is longer than a row on its own is truncated). Examples in a row attend to each other
 *                 (no block-diagonal mask); the mask keeps the loss on each example's own response.
 *
 * Row layout (every mode): for the row's token buffer w[0..u) (u <= T+1), inputs[t] = w[t],
 * targets[t] = w[t+1], mask[t] = loss_mask of w[t+1], for t < u-1. Positions t >= u-1 are padding:
 * targets[t] = pad, mask[t] = 0, inputs[t] = w[t] if t < u else pad; pad = eos_id (0 when there is none).
 *
 * Order: the permutation of epoch e is a Fisher-Yates shuffle drawn from an RNG seeded with
 * (seed, e), so the cursor (epoch, position) alone fixes every later batch; save/restore stores it. */
#ifndef TN_DATA_LOADER_H
#define TN_DATA_LOADER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int batch, seq_len;
    uint64_t seed;
    int sft_mode; /* 0 = text windows, 1 = SFT rows */
    int sft_pack; /* 1 = pack several examples per row, 0 = one example per row, padded */
    int sequential; /* 1 = no shuffling: items in file order every epoch (evaluation) */
} tn_loader_opts;

typedef struct tn_loader tn_loader;

/* Load the shards (all kept in memory) and set the cursor to epoch 0, position 0. Shards must agree
 * on tokenizer_sha256. Errors if the data cannot fill even one row (text: N < seq_len + 1 tokens;
 * SFT: no example with at least 2 tokens). */
int tn_loader_open(tn_loader **out, const char *const *paths, int n_paths, const tn_loader_opts *o);
/* inputs/targets: [batch*seq_len] int32; mask: [batch*seq_len] uint8 (row-major, row b at b*seq_len). */
int tn_loader_next(tn_loader *l, int32_t *inputs, int32_t *targets, uint8_t *mask);
int64_t tn_loader_vocab_size(const tn_loader *l); /* max over shards */
int64_t tn_loader_epoch(const tn_loader *l);      /* epochs completed so far (starts at 0) */
int64_t tn_loader_items(const tn_loader *l);      /* windows (text) or examples (SFT) per epoch */
int64_t tn_loader_tokens(const tn_loader *l);     /* total tokens over all shards */
int64_t tn_loader_eos_id(const tn_loader *l);     /* of the first shard, -1 if none */
const char *tn_loader_tokenizer_sha256(const tn_loader *l);
/* Cursor as a small versioned blob (malloc'd; caller frees): epoch, position, seed, and a fingerprint of
 * the data and mode so a cursor is never applied to different shards. */
int tn_loader_save_state(const tn_loader *l, uint8_t **buf, size_t *len);
int tn_loader_restore_state(tn_loader *l, const uint8_t *buf, size_t len);
void tn_loader_close(tn_loader *l);

#endif
