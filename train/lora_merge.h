/* `trinity merge BASE ADAPTER -o OUT`: fold a LoRA adapter (PEFT directory, export/peft.h) into a quantized
 * base (an STE or PRIMAL checkpoint, a merge's output or a .trin: train/lora_base.h) — "prompt baking"
 * (docs/LORA.md). For every matrix the adapter touches, with coef = strength · alpha / r:
 *
 *   STE base       W_s' = W_s + coef · B A on the shadow weights W_s, then snapped exactly as the run snaps
 *                  (its grid, scale rule, per-row setting): the adapter's update lands where an STE step's
 *                  would, and what stays below a threshold is kept in the shadows for the next merge
 *   otherwise,     W' = dequant(W) + coef · B A, indices nearest(W' / scale) with the base's scale kept (a
 *   or keep_scale  PRIMAL or .trin scale is learned or unknown: no rule to recompute it with)
 *   dense          W' = dequant(W) + coef · B A kept in fp32
 *
 * (B A summed in double: model/lora.h tn_lora_merge_into.) Matrices the adapter does not touch are unchanged.
 * Why not recompute the scale from dequant(W) by the rule: absmean of s·{−1, 0, 1} is s times the share of
 * non-zero weights, so every such cycle shrinks the scale (measured in docs/LORA.md).
 *
 * Output: OUT.h5 — an STE checkpoint (shadows + /quant) for an STE base, a checkpoint whose quantized
 * matrices are /primal/<name> groups (idx, scale, grid) otherwise, all fp32 /params with dense; each is what
 * eval, export, run and the next merge or LoRA run read. OUT.trin — the same checkpoint exported
 * (export/export_trin.h). Written atomically: nothing appears at OUT when the merge fails. Repeated merges at
 * strength 0.5 ("half-baking") are the documented workflow: each cycle's output is the next cycle's base. */
#ifndef TN_TRAIN_LORA_MERGE_H
#define TN_TRAIN_LORA_MERGE_H

#include <stdint.h>

typedef struct {
    double strength;     /* s (default 1) */
    int dense;           /* keep W' in fp32 */
    int keep_scale;      /* hold the base's scales fixed (always for a PRIMAL base) */
    const char *data;    /* shard for the losses, or NULL */
    int seq_len;         /* 0: min(512, max_seq_len) */
    int64_t max_windows; /* 0: all */
} tn_merge_opts;

typedef struct {
    char base_kind[16];       /* "ste" or "primal" */
    int n_adapted;            /* matrices the adapter touches */
    int n_requantized;        /* of which quantized in the base (re-quantized unless dense) */
    int64_t n_weights;        /* weights of the re-quantized matrices */
    int64_t n_changed;        /* of which on another grid point than in the base */
    int shadows;              /* 1: an STE base's shadow weights merged and re-snapped by its rule */
    int has_loss;
    double loss_base, loss_adapter, loss_merged; /* base; base + adapter at strength s in fp32; the output */
    int64_t tokens;
} tn_merge_report;

void tn_merge_opts_default(tn_merge_opts *o);
int tn_lora_merge(const char *base, const char *adapter, const char *out, const tn_merge_opts *o, tn_merge_report *rep);

#endif
