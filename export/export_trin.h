/* `trinity export`: an HDF5 checkpoint to a .trin file (docs/TRIN.md).
 *
 *   dense checkpoint     every tensor F32 (or F16 with dtype f16; norms stay F32)
 *   STE checkpoint       (group /quant: grid, scale rule, layers, act_bits) the selected matrices are
 *                        snapped from their shadow weights exactly as the run snapped them
 *                        (tn_quantize_tensor) and stored as indices + scales: T2 for the ternary grid,
 *                        L4 for grids of <= 16 values, L8 otherwise; act_bits carried per tensor
 *   PRIMAL checkpoint    (group /primal/<name>: idx, scale, grid) ghost tensors' indices as they are
 *   quantize = ternary   a dense checkpoint's attention and MLP matrices snapped with absmean ternary
 *                        (per tensor) to T2: a synthetic quantized model for benchmarks and tests
 *   head / embed         the LM head and the embedding table, when dense in the checkpoint, as F32, F16,
 *                        Q8 or Q4 (export/table_quant.h) instead of the dense dtype
 *   exact_head           beside a Q8 / Q4 head, its rows in F16 as TN_TRIN_EXACT_HEAD (the runner
 *                        re-scores the quantized head's top candidates from them: runner/rescore.h)
 * Which tensor is which is decided in export/export_source.h, shared with the GGUF exporter
 * (export/export_gguf.h). The tokenizer is copied as stored in the checkpoint. The output is written
 * atomically. */
#ifndef TN_EXPORT_EXPORT_TRIN_H
#define TN_EXPORT_EXPORT_TRIN_H

#include <stdint.h>

#include "export/table_quant.h"
#include "export/trin.h"

typedef enum { TN_EXPORT_DENSE_AUTO = 0, TN_EXPORT_DENSE_F32 = 1, TN_EXPORT_DENSE_F16 = 2 } tn_export_dense;

typedef struct {
    tn_export_dense dense;  /* dtype of tensors that stay dense (auto = F32) */
    const char *quantize;   /* NULL, or "ternary" (dense checkpoints only) */
    tn_table_type head;     /* the LM head (and a tied embedding table): auto (= dense), f32, f16, q8, q4 */
    tn_table_type embed;    /* an untied embedding table; must stay auto when the model ties it */
    int exact_head;         /* 1: with head Q8 / Q4, also the head's F16 rows (TN_TRIN_EXACT_HEAD, TRIN 4) */
} tn_export_opts;

typedef struct {
    char kind[16];          /* "dense", "ste", "primal", "synthetic" */
    char grid[32];          /* grid name of the quantized tensors, "" if none */
    int n_tensors, n_by_dtype[TN_TRIN_N_DTYPES];
    int64_t file_bytes;
    int64_t n_params;
} tn_export_report;

void tn_export_opts_default(tn_export_opts *o);
int tn_export_trin(const char *ckpt_path, const char *out_path, const tn_export_opts *o, tn_export_report *rep);

/* IEEE binary32 -> binary16, round to nearest even (values beyond ±65504 round to ±inf). */
uint16_t tn_f32_to_f16(float f);

#endif
