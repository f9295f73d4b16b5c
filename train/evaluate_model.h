/* `trinity eval` on a checkpoint: load it, evaluate on a shard with the model's snapped weights when the
 * checkpoint is quantized (STE or PRIMAL), dense otherwise. */
#ifndef TN_TRAIN_EVALUATE_MODEL_H
#define TN_TRAIN_EVALUATE_MODEL_H

#include <stdint.h>

/* seq_len 0 = min(512, max_seq_len). max_windows 0 = all. device: "cpu", "cuda" or "cuda:N" (device/device.h). */
int tn_eval_checkpoint(const char *ckpt, const char *shard, int seq_len, int batch, int64_t max_windows,
                       const char *device, double *loss, int64_t *counted);

#endif
