/* The STE quantizer: for the tensors a tn_quant_spec selects, W_f = W + λ(s·grid[nearest(W/s)] − W) is
 * materialised once per optimizer step into one buffer, and a tn_weight_source hands those matrices
 * to the model (gradients pass straight through to the shadow weights W). Used by the STE training
 * method and by `trinity bench train --quant`. Every buffer is in the ops table's memory and every
 * number computed by its ops, so the same code runs on the CPU and on a CUDA device. */
#ifndef TN_TRAIN_STE_QUANTIZER_H
#define TN_TRAIN_STE_QUANTIZER_H

#include <stddef.h>
#include <stdint.h>

#include "model/llama.h"
#include "train/quant_spec.h"

typedef struct {
    tn_quant_spec spec;
    const tn_ops *ops;
    const tn_llama_layout *layout;
    const float *params;  /* the shadow weights (borrowed, table memory) */
    int n_q;              /* quantized tensors */
    int *tensor;          /* [n_q] layout index */
    int *lookup;          /* [n_tensors] quantized slot or -1 */
    size_t *off;          /* [n_q] offset into wq / idx */
    size_t total;         /* quantized weights */
    float *wq;            /* [total] the weights the forward uses (table memory) */
    uint8_t *idx;         /* [total] grid indices of the last materialisation (table memory) */
    uint8_t *host_idx;    /* [total] host copy for telemetry when the table is a device's, else NULL */
    float *scales;        /* [max rows] scratch (table memory) */
    float lambda;
} tn_ste_quantizer;

/* Bytes tn_ste_quantizer_init allocates in table memory for this spec and layout (memory planning). */
int64_t tn_ste_quantizer_plan_bytes(const tn_quant_spec *spec, const tn_llama_layout *layout);
int tn_ste_quantizer_init(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *layout,
                          const float *params, const tn_ops *ops);
void tn_ste_quantizer_free(tn_ste_quantizer *q);
/* Snap every selected tensor and blend with its shadow weight using λ. */
int tn_ste_quantizer_update(tn_ste_quantizer *q, float lambda);
/* The indices of the last update in host memory (downloaded from a device). */
const uint8_t *tn_ste_quantizer_indices(tn_ste_quantizer *q);
/* Point model m's weights at the quantizer (and its head, when the spec quantizes it). */
void tn_ste_quantizer_attach(tn_ste_quantizer *q, tn_llama *m);

#endif
