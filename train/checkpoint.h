/* Checkpoints: one HDF5 file (layout in docs/CHECKPOINT.md) holding the model config, parameters under
 * their Hugging Face names, the tokenizer, and, for training runs, optimizer state, step, RNG and the
 * data-loader cursor. Modules with state of their own (quantizers, PRIMAL) add it through hooks, each
 * under its own group. Files are written to a temporary name, fsynced and renamed: an interrupted save
 * never destroys the previous checkpoint. */
#ifndef TN_TRAIN_CHECKPOINT_H
#define TN_TRAIN_CHECKPOINT_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "kernels/ops.h"
#include "model/params.h"

#define TN_CKPT_FORMAT "trinity-checkpoint"
#define TN_CKPT_VERSION 1

/* Extra state saved/loaded by another module under its own group of the open file. */
typedef struct {
    const char *group;                         /* e.g. "quant", "primal" */
    int (*save)(void *ctx, hid_t group);
    int (*load)(void *ctx, hid_t group);       /* called only when the group exists */
    void *ctx;
} tn_ckpt_hook;

typedef struct {
    tn_llama_layout layout;  /* owns cfg; filled by load */
    float *params;           /* [layout.numel] (tn_alloc) */
    /* Tokenizer, opaque to checkpoints: a format name and the bytes data/ understands. */
    char tokenizer_format[32];
    uint8_t *tokenizer;
    size_t tokenizer_len;
    /* Training state; zero/NULL in an imported model. */
    int64_t step;
    int64_t world_size;      /* ranks of the data-parallel run that wrote it (attribute; 0 = absent, one process) */
    float *adam_m, *adam_v;  /* [layout.numel] each, or NULL */
    /* Save only: when set, params / adam_m / adam_v are in this table's memory and are copied to the host
     * one tensor at a time (a device run's checkpoint needs no second full copy in host memory). */
    const tn_ops *ops;
    /* Save only: tensors external in the layout whose dense values another module holds (the bf16 STE
     * shadows) are written to /params like the others: external_values fills host_out (numel floats) and
     * returns 1, or returns 0 for a tensor it does not hold (PRIMAL ghosts, saved by their hook), -1 on
     * error. NULL: external tensors are skipped. */
    int (*external_values)(void *ctx, int tensor, float *host_out);
    void *external_ctx;
    tn_rng rng;
    int has_rng;
    uint8_t *loader_state;   /* opaque cursor of the batch loader */
    size_t loader_state_len;
    char *config_text;       /* the run's INI text, for provenance (NUL-terminated), or NULL */
} tn_checkpoint;

/* Save atomically. Fields that are NULL/0 are omitted. */
int tn_ckpt_save(const char *path, const tn_checkpoint *ck, const tn_ckpt_hook *hooks, int n_hooks);
/* Load everything present into a dense layout built from the file's config. Params are validated (shape
 * of every tensor, no NaN/Inf). A tensor absent from /params but stored as a PRIMAL ghost tensor
 * (/primal/<name>: idx, scale, grid) is materialised as scale·grid[idx], so eval and export see the
 * model the run trained. hooks may be NULL. */
int tn_ckpt_load(const char *path, tn_checkpoint *ck, const tn_ckpt_hook *hooks, int n_hooks);
/* Load for resuming into a run whose layout may have external (ghost) tensors: the file's config must
 * equal layout->cfg; only non-external tensors are read (into ck->params, layout->numel floats);
 * ck->layout becomes a copy of *layout. */
int tn_ckpt_load_into(const char *path, const tn_llama_layout *layout, tn_checkpoint *ck, const tn_ckpt_hook *hooks,
                      int n_hooks);
/* Read only the model config. */
int tn_ckpt_read_config(const char *path, tn_llama_config *cfg);
void tn_ckpt_free(tn_checkpoint *ck);

/* A checkpoint read one tensor at a time (a distillation teacher as large as the student must not be held
 * in fp32 on top of its 16-bit copy): the config (as layout, dense), the tokenizer, and each parameter tensor
 * on request, validated as tn_ckpt_load validates it (PRIMAL ghost tensors materialised). */
typedef struct {
    hid_t f;
    tn_llama_layout layout;
    char tokenizer_format[32];
    uint8_t *tokenizer; /* NULL when the file has none */
    size_t tokenizer_len;
} tn_ckpt_reader;
int tn_ckpt_reader_open(tn_ckpt_reader *r, const char *path);
/* Tensor i of r->layout into out (its numel floats). */
int tn_ckpt_reader_tensor(tn_ckpt_reader *r, int i, float *out);
void tn_ckpt_reader_close(tn_ckpt_reader *r);

#endif
