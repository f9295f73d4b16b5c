/* Token shards: one HDF5 file holding a tokenized corpus (kind "text") or a set of SFT examples (kind
 * "sft"), written by `trinity prepare` and read by the batch loader and `trinity eval`.
 *
 * Layout (docs/SHARDS.md is the reference):
 *   /tokens       uint32 [N]      token ids, every id < vocab_size
 *   /loss_mask    uint8  [N]      1 where the token is a training target, else 0
 *   /doc_offsets  uint64 [D+1]    document/example d is tokens[doc_offsets[d] .. doc_offsets[d+1])
 *   root attributes: format="trinity-shard", version=1, vocab_size, bos_id, eos_id (-1 = none),
 *                    tokenizer_sha256 (64 hex chars, or "" when unknown), kind ("text"|"sft"), template
 * Datasets are chunked and deflate-compressed. Files written by h5py with the same names load too: string
 * attributes may be fixed- or variable-length, integers of any width or signedness are range-checked. */
#ifndef TN_DATA_SHARD_H
#define TN_DATA_SHARD_H

#include <stdint.h>

#define TN_SHARD_FORMAT "trinity-shard"
#define TN_SHARD_VERSION 1

typedef struct {
    char kind[16];          /* "text" or "sft" */
    char template_name[32]; /* "" for text */
    int64_t vocab_size, bos_id, eos_id; /* -1 when none */
    char tokenizer_sha256[65];
    int64_t n_tokens, n_docs;
    uint32_t *tokens;       /* [n_tokens] */
    uint8_t *loss_mask;     /* [n_tokens], 1 = training target */
    uint64_t *doc_offsets;  /* [n_docs + 1], doc_offsets[0] = 0, last = n_tokens, non-decreasing */
} tn_shard;

/* Read and validate a whole shard into memory (arrays from tn_alloc; release with tn_shard_free). */
int tn_shard_load(const char *path, tn_shard *s);
/* Free the arrays of a shard that came from tn_shard_load or tn_shard_alloc, and zero it. */
void tn_shard_free(tn_shard *s);
/* Allocate zeroed arrays for n_tokens tokens and n_docs documents (doc_offsets gets n_docs + 1 entries).
 * Other fields are left as they are. */
int tn_shard_alloc(tn_shard *s, int64_t n_tokens, int64_t n_docs);
/* Check an in-memory shard with the same rules tn_shard_load applies. */
int tn_shard_validate(const tn_shard *s);
/* Validate, then write atomically (temporary file, fsync, rename): nothing is left at `path` on failure. */
int tn_shard_write(const char *path, const tn_shard *s);

#endif
