/* The AdamW moments of a training run's arrays ([optim] state_bits): fp32 (8 bytes per parameter) or 8-bit
 * blockwise (optim/adamw8.h: 2 bytes per parameter plus 8 per block of 2048), in the ops table's memory.
 * Array k is [len[k]] elements at element offset off[k] of one allocation, so its moments line up with a
 * flat parameter buffer laid out the same way (the run's float parameters: the layout's tensors, external
 * ones with len 0; the STE's bf16 shadows: the quantized tensors, packed). Checkpoints keep the moments as
 * they are: fp32 state in the checkpoint's optim/adam_m and optim/adam_v (train/checkpoint.h), 8-bit state
 * per array under a group (tn_adam_state_save), so a resumed run continues bit for bit. */
#ifndef TN_TRAIN_ADAM_STATE_H
#define TN_TRAIN_ADAM_STATE_H

#include <hdf5.h>
#include <stdint.h>

#include "core/config.h"
#include "kernels/ops.h"

typedef struct {
    int bits; /* 32 or 8 */
    const tn_ops *ops;
    int n;                       /* arrays */
    int64_t *len, *off, *boff;   /* [n]: elements, element offset, block offset (bits 8) */
    int64_t total, blocks;       /* elements (the extent of the offsets), blocks (bits 8) */
    float *m, *v;                /* bits 32: [total] each */
    uint8_t *m8, *v8;            /* bits 8: [total] codes each */
    float *m_absmax, *v_absmax;  /* bits 8: [blocks] each */
} tn_adam_state;

/* [optim] state_bits (32 or 8; default 32), one error line for anything else. */
int tn_adam_state_bits_from_config(tn_config *ini, int *bits);

/* Bytes tn_adam_state_init allocates (memory planning). */
int64_t tn_adam_state_plan_bytes(int bits, const int64_t *len, const int64_t *off, int n);
/* Zeroed state (every moment +0, as fresh fp32 AdamW) for n arrays; off NULL = packed in order. */
int tn_adam_state_init(tn_adam_state *s, int bits, const int64_t *len, const int64_t *off, int n, const tn_ops *ops);
void tn_adam_state_free(tn_adam_state *s);
/* Array k's moments, for the ops. */
tn_adam_moments tn_adam_state_moments(const tn_adam_state *s, int k);
/* One AdamW step of array k for fp32 parameters p and gradients g (table memory, len[k] each). */
int tn_adam_state_step(tn_adam_state *s, int k, float *p, const float *g, const tn_adamw_step *h);

/* 8-bit state in a checkpoint group: per array names[k] (arrays of len 0 skipped), datasets
 * <names[k]>/m, <names[k]>/v (uint8 [len]) and <names[k]>/m_absmax, <names[k]>/v_absmax (float [blocks]);
 * the group gets the attribute block = 2048. Load checks every shape and the block size. */
int tn_adam_state_save8(const tn_adam_state *s, hid_t group, const char *const *names);
int tn_adam_state_load8(tn_adam_state *s, hid_t group, const char *const *names);

#endif
