/* Snapped weights of a quantized checkpoint: for an STE checkpoint (group "quant") the shadow weights
 * of the quantized layers are replaced by s·grid[nearest(W/s)]; for a PRIMAL checkpoint (group "primal")
 * the ghost layers are materialised from their indices and scales. A dense checkpoint is unchanged.
 * This is the model that export and eval see. */
#ifndef TN_TRAIN_SNAPSHOT_H
#define TN_TRAIN_SNAPSHOT_H

#include "train/checkpoint.h"
#include "train/quant_spec.h"

/* Rewrites ck->params in place from the quantizer state stored in the checkpoint file `path`.
 * *is_ste = 1 and *spec filled when the checkpoint is an STE run (spec may be NULL). */
int tn_snapshot_apply(const char *path, tn_checkpoint *ck, tn_quant_spec *spec, int *is_ste);

#endif
