/* A frozen quantized base model, for LoRA training (train/method_lora.c) and `trinity merge`
 * (train/lora_merge.h). Read from a checkpoint one tensor at a time, so that no quantized matrix is ever
 * held in fp32 beyond the one being converted:
 *
 *   STE checkpoint     (group /quant) each selected matrix snapped from its shadow weights exactly as the
 *                      run, eval and export snap it (tn_quantize_tensor with the run's grid, scale rule and
 *                      per-row setting): grid indices + scales; the grid and the rule are kept for re-quantizing
 *   PRIMAL checkpoint  (groups /primal/<name>: idx, scale, grid) the ghost tensors' indices and scales as
 *                      stored (also what `trinity merge` writes)
 *   .trin file         T2 (on the grid {-1, 0, 1}), L4 and L8 matrices as indices on their grid with their
 *                      scales (none: 1); F32 / F16 / Q8 / Q4 tensors dequantized to fp32
 *
 * A quantized matrix is W[r, c] = scales[r or 0] · grid[idx[r, c]] (float product). Every other tensor
 * (embedding, norms, float matrices) is fp32 in `floats`, laid out by `layout`, in which the quantized
 * matrices are external. Bases whose activations were quantized (STE act_bits = 8) and quantized tied heads
 * are refused: the adapters would train against another model than the deployed one. */
#ifndef TN_TRAIN_LORA_BASE_H
#define TN_TRAIN_LORA_BASE_H

#include <stdint.h>

#include "kernels/ops.h"
#include "model/llama.h"
#include "quant/grid.h"
#include "quant/scale.h"
#include "train/quant_spec.h"

typedef struct {
    int tensor;        /* layout index */
    int64_t rows, cols;
    uint8_t *idx;      /* [rows · cols] */
    float *scales;     /* [n_scales] */
    int64_t n_scales;  /* rows or 1 */
    tn_grid grid;
} tn_qtensor;

typedef struct {
    char kind[16];           /* "ste", "primal" or "trin" */
    tn_llama_layout layout;  /* the file's model; quantized matrices external */
    float *floats;           /* [layout.numel] the fp32 tensors (tn_alloc) */
    int n_q;
    tn_qtensor *q;           /* [n_q] in layout order */
    int *lookup;             /* [layout.n_tensors] slot in q or −1 */
    int is_ste;              /* an STE checkpoint: spec is its /quant (a merge re-snaps its shadow weights) */
    tn_quant_spec spec;
    int head_quantized;
    char tokenizer_format[32];
    uint8_t *tokenizer;      /* tn_alloc, or NULL */
    size_t tokenizer_len;
    uint32_t crc;            /* CRC32 of every index and scale, in slot order (the base's identity) */
} tn_qbase;

int tn_qbase_load(tn_qbase *b, const char *path);
void tn_qbase_free(tn_qbase *b);
/* Free the host copies of the indices (1 byte per weight) once a device source holds its own
 * (tn_qbase_source_open on a device table): from then on the base serves only through that source. */
void tn_qbase_drop_host_indices(tn_qbase *b);
/* W = the dequantized matrix of slot k, [rows, cols]. */
void tn_qbase_dequant(const tn_qbase *b, int k, float *W);
/* CRC32 of indices and scales (what tn_qbase_load stored in b->crc when the base is unchanged). */
uint32_t tn_qbase_crc(const tn_qbase *b);
/* Bytes held per quantized weight and in total (indices + scales; floats not included). */
int64_t tn_qbase_quant_bytes(const tn_qbase *b);

/* A weight source over the base, on the table the model runs on: quantized matrices dequantized into the
 * model's scratch on every call by the table's primal_materialize (W = scale · grid[idx], the float product
 * of tn_qbase_dequant: the same floats), float matrices read from `params` (the run's copy of b->floats in
 * the table's memory, laid out by b->layout). On a table with device memory the indices and scales are
 * uploaded once by tn_qbase_source_open (1 byte per weight and the scales; never the base in fp32); on the
 * CPU table the views read b's own arrays. The head goes through it when b->head_quantized
 * (tn_llama_set_head_via_source). */
typedef struct {
    const tn_qbase *b;
    const float *params;
    const tn_ops *ops;
    tn_ghost_view *views; /* [b->n_q] the matrices as the table's primal_materialize reads them */
    int owns;             /* the views' idx and scale are uploaded copies (freed by close) */
} tn_qbase_source;
/* ops NULL: the CPU table. b and params must outlive the source. */
int tn_qbase_source_open(tn_qbase_source *s, const tn_qbase *b, const float *params, const tn_ops *ops);
void tn_qbase_source_close(tn_qbase_source *s);
void tn_qbase_weight_source(tn_qbase_source *s, tn_weight_source *src);
/* CRC32 of the indices and scales the source reads (downloaded from a device): b->crc while the base is
 * unchanged. */
int tn_qbase_source_crc(const tn_qbase_source *s, uint32_t *crc);
/* Bytes tn_qbase_source_open allocates in the table's memory (device: the uploaded indices and scales, in
 * allocation spans), or, on the CPU table, the bytes of b's own indices and scales (what the model reads). */
int64_t tn_qbase_source_bytes(const tn_qbase *b, const tn_ops *ops);

#endif
