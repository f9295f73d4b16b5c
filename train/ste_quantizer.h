/* The STE quantizer: for the tensors a tn_quant_spec selects, W_f = W + λ(s·grid[nearest(W/s)] − W) is
 * materialised once per optimizer step into one buffer, and a tn_weight_source hands those matrices
 * to the model (gradients pass straight through to the shadow weights W). Used by the STE training
 * method and by `trinity bench train --quant`. */
#ifndef TN_TRAIN_STE_QUANTIZER_H
#define TN_TRAIN_STE_QUANTIZER_H

#include <stddef.h>
#include <stdint.h>

#include "model/llama.h"
#include "train/quant_spec.h"

typedef struct {
    tn_quant_spec spec;
    const tn_llama_layout *layout;
    const float *params;  /* the shadow weights (borrowed) */
    int n_q;              /* quantized tensors */
    int *tensor;          /* [n_q] layout index */
    int *lookup;          /* [n_tensors] quantized slot or -1 */
    size_t *off;          /* [n_q] offset into wq / idx */
    size_t total;         /* quantized weights */
    float *wq;            /* [total] the weights the forward uses */
    uint8_t *idx;         /* [total] grid indices of the last materialisation */
    float *scales;        /* [max rows] scratch */
    float lambda;
} tn_ste_quantizer;

int tn_ste_quantizer_init(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *layout,
                          const float *params);
void tn_ste_quantizer_free(tn_ste_quantizer *q);
/* Snap every selected tensor and blend with its shadow weight using λ. */
int tn_ste_quantizer_update(tn_ste_quantizer *q, float lambda);
/* Point model m's weights at the quantizer (and its head, when the spec quantizes it). */
void tn_ste_quantizer_attach(tn_ste_quantizer *q, tn_llama *m);

#endif
