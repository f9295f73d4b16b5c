/* Snapped weights of a quantized checkpoint: for an STE checkpoint (group "quant") the shadow weights
 * of the quantized layers are replaced by s·grid[nearest(W/s)]; for a PRIMAL checkpoint (group "primal")
 * the ghost layers are materialised from their indices and scales. A dense checkpoint is unchanged.
 * This is the model that export and eval see. */
#ifndef TN_TRAIN_SNAPSHOT_H
#define TN_TRAIN_SNAPSHOT_H

#include "train/checkpoint.h"

/* Rewrites ck->params in place from the quantizer state stored in the checkpoint file `path`. */
int tn_snapshot_apply(const char *path, tn_checkpoint *ck);

#endif
