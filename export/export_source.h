/* What every exporter (TRIN, GGUF) reads from a checkpoint: the model, its tokenizer, and each tensor
 * decided once, the same way for every output format:
 *
 *   PRIMAL ghost tensor   (group /primal/<name>: idx, scale, grid) its indices, scales and grid as stored
 *   STE-selected matrix   (group /quant) snapped from the shadow weights exactly as the run snapped them
 *                         (tn_quantize_tensor with the run's grid, scale rule and per-row setting)
 *   synthetic ternary     (quantize = "ternary", dense checkpoints only) attention and MLP matrices snapped
 *                         with absmean ternary, one scale per tensor (BitNet b1.58)
 *   anything else         dense: the checkpoint's fp32 values
 *
 * A quantized tensor is weight(r, c) = scales[r or 0] · grid[idx[r, c]]. The exporters only encode. */
#ifndef TN_EXPORT_EXPORT_SOURCE_H
#define TN_EXPORT_EXPORT_SOURCE_H

#include <hdf5.h>
#include <stdint.h>

#include "model/params.h"
#include "quant/grid.h"
#include "train/checkpoint.h"
#include "train/quant_spec.h"

typedef struct {
    tn_checkpoint ck;      /* the checkpoint (ghost tensors materialised, tokenizer as stored) */
    tn_quant_spec spec;    /* valid when is_ste */
    int is_ste, is_primal, synthetic;
    hid_t f;               /* the checkpoint file, open for the ghost tensors */
    char kind[16];         /* "dense", "ste", "primal", "synthetic" */
    char grid[32];         /* grid name of the quantized tensors, "" if none (PRIMAL: per tensor) */
    char quant[96];        /* one-line description: "ste prime7 std per-row act8", "primal", "ternary-absmean", "none" */
} tn_export_src;

typedef struct {
    const tn_tensor_info *t; /* the layout entry */
    int quantized;           /* 1: idx, grid, scales below; 0: dense values W */
    const float *W;          /* dense: [numel] in the checkpoint's buffer */
    uint8_t *idx;            /* quantized: [rows * cols] (tn_alloc, owned) */
    float grid[TN_GRID_MAX]; /* quantized: grid values, ascending */
    int n_grid;
    float *scales;           /* quantized: [n_scales] (tn_alloc, owned) */
    int64_t n_scales;        /* 1 (per tensor) or rows (per row) */
    int act_bits;            /* 8 when the run quantized this matrix's input to int8 per token */
} tn_export_tensor;

/* Load the checkpoint and tell what it is. quantize: NULL or "ternary" (a dense checkpoint only). */
int tn_export_src_open(tn_export_src *s, const char *ckpt_path, const char *quantize);
void tn_export_src_close(tn_export_src *s);
/* Tensor i of s->ck.layout, decided as above. Free with tn_export_tensor_free. */
int tn_export_src_tensor(tn_export_src *s, int i, tn_export_tensor *out);
void tn_export_tensor_free(tn_export_tensor *t);
/* 1 if the grid is exactly {-1, 0, 1}. */
int tn_export_grid_is_ternary(const float *grid, int n);

#endif
