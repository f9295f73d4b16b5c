/* `trinity train CONFIG.ini [section.key=value ...]`: the training loop. Config keys are documented in
 * docs/CONFIG.md; the run directory gets config.ini (effective config), log.jsonl and ckpt-NNNNNN.h5. */
#ifndef TN_TRAIN_TRAIN_H
#define TN_TRAIN_TRAIN_H

/* resume: NULL = fresh run; "" = newest checkpoint in the run directory; otherwise a checkpoint path. */
int tn_train_run(const char *config_path, char *const *overrides, int n_overrides, const char *resume);

#endif
