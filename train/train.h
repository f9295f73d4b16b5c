/* `trinity train CONFIG.ini [section.key=value ...]`: the training loop. Config keys are documented in
 * docs/CONFIG.md; the run directory gets config.ini (effective config), log.jsonl and ckpt-NNNNNN.h5. */
#ifndef TN_TRAIN_TRAIN_H
#define TN_TRAIN_TRAIN_H

#include <stdint.h>

#include "device/device.h"
#include "model/config.h"

/* resume: NULL = fresh run; "" = newest checkpoint in the run directory; otherwise a checkpoint path. */
int tn_train_run(const char *config_path, char *const *overrides, int n_overrides, const char *resume);

/* `trinity train CONFIG --plan`: the memory plan of the run on its device, printed as one JSON object
 * {"memory": {..., "fits": true|false}} on stdout, without reading the shards or allocating the model;
 * fails (after printing) when the plan does not fit the device's free memory. */
int tn_train_plan(const char *config_path, char *const *overrides, int n_overrides);

/* A timed training run for `trinity bench train`: the configuration is the `section.key=value`
 * assignments alone (later ones win; [train] out_dir is required but nothing is written), the data
 * uniform random tokens. One warm-up optimizer step, then `steps` timed ones (wall clock, the device
 * synchronised), median reported. */
typedef struct {
    double step_s;                /* median seconds per optimizer step */
    int64_t tokens_per_step, batch, seq_len, accum;
    double loss_first, loss_last;
    char method[16];              /* dense, ste, primal */
    tn_llama_config cfg;
    tn_device dev;
    int64_t planned_bytes;        /* the memory plan (without the backend's workspace) */
    int64_t peak_allocated_bytes; /* the ops table's own count, workspace included */
    int64_t peak_measured_bytes;  /* CUDA: the drop of the device's free memory; 0 on the CPU */
    int64_t peak_rss_bytes;       /* the process's peak resident set during the run (set-up and steps) */
    int peak_rss_reset;           /* 1: the count restarted at the run's start; 0: it is the process's */
    struct cJSON *memory;         /* the plan's components (log.jsonl's "memory" object); the caller frees */
} tn_train_bench_result;
int tn_train_bench(char *const *assignments, int n, int steps, tn_train_bench_result *res);

#endif
