/* What an STE run quantizes and how: the [quant] config section, saved in checkpoints under /quant so
 * eval and export snap the shadow weights exactly as the run did. Math: docs/QUANT.md. */
#ifndef TN_TRAIN_QUANT_SPEC_H
#define TN_TRAIN_QUANT_SPEC_H

#include <hdf5.h>
#include <stdint.h>

#include "core/config.h"
#include "model/params.h"
#include "quant/grid.h"
#include "quant/scale.h"

typedef struct {
    tn_grid grid;
    tn_scale_rule rule;
    int per_row;                 /* one scale per output row */
    unsigned groups;             /* bit (1 << TN_GROUP_ATTN | MLP | HEAD) */
    int64_t lambda_warmup_steps; /* λ ramps 0 → 1 over these steps; 0 = quantized from the start */
    int act_bits;                /* 0 or 8 */
} tn_quant_spec;

/* Parse "attn,mlp,head" (any subset) into a group mask. */
int tn_quant_parse_groups(const char *list, unsigned *groups);
/* Read [quant] grid, scale, scale_per_row, layers, lambda_warmup_steps, act_bits. */
int tn_quant_spec_from_config(tn_config *c, tn_quant_spec *q);
/* 1 if tensor t is quantized under q (a matrix of a selected group). */
int tn_quant_selects(const tn_quant_spec *q, const tn_tensor_info *t);
int tn_quant_spec_save(const tn_quant_spec *q, hid_t group);
int tn_quant_spec_load(tn_quant_spec *q, hid_t group);
/* Replace every selected tensor of params by its snapped value s·grid[nearest(W/s)] (λ = 1). */
int tn_quant_snap_params(const tn_quant_spec *q, const tn_llama_layout *l, float *params);

#endif
