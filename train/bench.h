/* `trinity bench train`: the real training step (train/train.c: forward, backward, clipping, the method's
 * optimizer) of a preset shape and method on random tokens, on a device, timed; tokens/s, achieved
 * FLOP/s, and the ratio to a peak: the device's for its precision on CUDA (MFU), OpenBLAS sgemm on 2048³
 * measured in the same run on the CPU. Memory: the run's plan component by component, the process's peak
 * RSS during each run (the count restarted at its start), and the measured peak on CUDA. */
#ifndef TN_TRAIN_BENCH_H
#define TN_TRAIN_BENCH_H

typedef struct {
    const char *preset;        /* tiny, ghost-tiny, smollm2-135m, ghost-0.1b, tinyllama-1.1b */
    const char *device;        /* cpu, cuda, cuda:N */
    int batch, seq_len;        /* 0 = the device's default (CPU 4 × 256, CUDA 16 × 512) */
    int steps, threads, json;
    const char *quant;         /* grid name: also time the STE step on attn+mlp, or NULL */
    int ste_only;              /* with quant: time the STE step alone */
    char *const *overrides;    /* section.key=value, applied after the preset */
    int n_overrides;
} tn_bench_train_opts;

/* The names of the presets, for --help. */
const char *tn_bench_train_presets(void);
/* Run and print (one JSON object with json). Fails with a message on an unknown preset or a run error. */
int tn_bench_train_report(const tn_bench_train_opts *o);

#endif
