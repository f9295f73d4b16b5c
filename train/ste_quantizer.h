/* The STE quantizer: for the tensors a tn_quant_spec selects, W_f = W + λ(s·grid[nearest(W/s)] − W) is what
 * the forward uses, and a tn_weight_source hands those matrices to the model (gradients pass straight through
 * to the shadow weights W). Used by the STE training method and by `trinity bench train --quant`. Every
 * buffer is in the ops table's memory and every number computed by its ops, so the same code runs on the CPU
 * and on a CUDA device. Two ways to hold the shadows:
 *   fp32 (tn_ste_quantizer_init): the shadows are the run's float parameters; W_f of every tensor is
 *        materialised once per optimizer step into one buffer (4 bytes per quantized weight, plus 1 for the
 *        grid indices), and gradients go to the run's fp32 gradient buffer.
 *   bf16 (tn_ste_quantizer_init_bf16, [quant] shadow = bf16): the quantized tensors are external in the
 *        layout; their shadows live here in bf16 (2 bytes), W_f is materialised one matrix at a time into the
 *        model's weight scratch each time the model asks for it (the forward, the backward's dX, and a
 *        recomputed forward: nothing per weight beyond the shadow), and the gradients are accumulated here in
 *        bf16 (2 bytes; each micro-batch's dW rounded to nearest into the sum). The optimizer step on the
 *        shadows is the method's (train/method_ste.c, optim/adamw_bf16.h). */
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
    const float *params;  /* the float parameters (borrowed, table memory): the shadows in fp32 mode */
    int n_q;              /* quantized tensors */
    int *tensor;          /* [n_q] layout index */
    int *lookup;          /* [n_tensors] quantized slot or -1 */
    size_t *off;          /* [n_q] offset into wq / idx / shadow / grad */
    size_t total;         /* quantized weights */
    size_t largest;       /* the largest quantized tensor */
    float *scales;        /* [max rows] scratch (table memory) */
    float lambda;
    /* fp32 mode */
    float *wq;            /* [total] the weights the forward uses (table memory) */
    uint8_t *idx;         /* [total] grid indices of the last materialisation (table memory) */
    /* bf16 mode */
    int bf16;
    uint16_t *shadow;     /* [total] bf16 shadow weights (table memory) */
    uint16_t *grad;       /* [total] their gradients, bf16 (table memory) */
    float *wf;            /* [largest] one shadow widened to float (scratch, table memory) */
    uint8_t *idx1;        /* [largest] one tensor's grid indices (scratch, table memory) */
    float *float_grads;   /* the run's fp32 gradients (borrowed): those of the layer matrices left in float */
} tn_ste_quantizer;

/* Bytes the init functions allocate in table memory for this spec and layout (memory planning): in bf16 mode
 * (bf16 != 0) the layout may already have the quantized tensors external. The parts, when non-NULL:
 * [0] the W_f buffer or the bf16 shadows, [1] the indices or the bf16 gradients, [2] the scratch. */
int64_t tn_ste_quantizer_plan_bytes(const tn_quant_spec *spec, const tn_llama_layout *layout, int bf16,
                                    int64_t parts[3]);
int tn_ste_quantizer_init(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *layout,
                          const float *params, const tn_ops *ops);
/* bf16 mode: `layout` has the quantized tensors external (tn_ste_quantizer_externalize); their initial
 * values are read from host_init, laid out by dense_layout (the layout before), and rounded to nearest.
 * Allocates only the shadows (and one tensor's scratch), so that the caller can free host_init before
 * tn_ste_quantizer_finish_bf16 allocates the gradients: the host copy and the full training state never
 * coexist. */
int tn_ste_quantizer_init_bf16(tn_ste_quantizer *q, const tn_quant_spec *spec, const tn_llama_layout *layout,
                               const float *params, const tn_ops *ops, const float *host_init,
                               const tn_llama_layout *dense_layout);
int tn_ste_quantizer_finish_bf16(tn_ste_quantizer *q, float *float_grads);
/* Mark the tensors spec selects external in l (bf16 mode, before any buffer is laid out by it). */
int tn_ste_quantizer_externalize(const tn_quant_spec *spec, tn_llama_layout *l);
void tn_ste_quantizer_free(tn_ste_quantizer *q);
/* fp32 mode: snap every selected tensor and blend with its shadow weight using λ. bf16 mode: set λ (each
 * matrix is materialised when the model asks for it). */
int tn_ste_quantizer_update(tn_ste_quantizer *q, float lambda);
/* The grid indices of quantized tensor k (its slot, 0 .. n_q − 1) into host memory
 * (layout->tensors[q->tensor[k]].numel bytes): fp32 mode, those of the last materialisation (the step's
 * begin, before its update); bf16 mode, those of the shadows now (after the update). The two modes' telemetry
 * is therefore one update apart. */
int tn_ste_quantizer_tensor_indices(tn_ste_quantizer *q, int k, uint8_t *host_out);
/* bf16 mode: the shadow of layout tensor i widened to float, into host memory; 0 when i is not quantized
 * (nothing written), 1 when written, -1 on error. */
int tn_ste_quantizer_shadow_values(tn_ste_quantizer *q, int i, float *host_out);
/* Point model m's weights at the quantizer (and its head, when the spec quantizes it). */
void tn_ste_quantizer_attach(tn_ste_quantizer *q, tn_llama *m);

#endif
