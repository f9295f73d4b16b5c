/* Evaluation: mean masked NLL of a model over a shard in non-overlapping windows. Window w covers
 * tokens [w·T, w·T + T] (T+1 tokens: inputs are the first T, targets the last T); the last window may
 * be shorter and is padded with mask 0, so every token after the first is predicted exactly once.
 * A target counts when its loss_mask is 1. */
#ifndef TN_TRAIN_EVAL_H
#define TN_TRAIN_EVAL_H

#include <stdint.h>

#include "data/shard.h"
#include "model/llama.h"

/* Number of windows of seq_len over a shard. */
int64_t tn_eval_windows(const tn_shard *s, int seq_len);
/* Evaluate the first max_windows windows (0 = all) with model m (its batch and seq_len are used).
 * loss = Σ nll / counted (0 if nothing counted), counted = number of targets in the mean. */
int tn_eval_shard(tn_llama *m, const float *params, const tn_shard *s, int64_t max_windows, double *loss,
                  int64_t *counted);

#endif
