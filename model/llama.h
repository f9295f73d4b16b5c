/* The Llama model for training: forward and backward over a batch of B sequences of T tokens, fp32.
 *
 *   x = embed[tokens]                                              [B, T, D]
 *   for each layer:
 *     h = rmsnorm(x) * attn_norm;  q,k,v = h Wq^T, h Wk^T, h Wv^T  (RoPE on q, k; GQA: H/KV q heads per kv head)
 *     x = x + softmax(q k^T / sqrt(hd) + causal) v  Wo^T
 *     h = rmsnorm(x) * mlp_norm;   x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T
 *   logits = rmsnorm(x) * final_norm  lm_head^T                    [B, T, V]
 *   loss = mean over {(b,t): mask[b,t] = 1} of -log softmax(logits[b,t])[targets[b,t]]
 *
 * Conventions are Hugging Face LlamaForCausalLM's (rotate-half RoPE with rope_theta, eps inside the rsqrt),
 * so an imported model gives the reference logits. Every number is computed through an ops table
 * (kernels/ops.h): the CPU's (OpenBLAS sgemm and OpenMP loops) or CUDA's. With a device table, params,
 * grads, the weight source's matrices and the logits are device memory; token ids and masks are passed
 * from the host and uploaded.
 *
 * Linear weights may come from somewhere other than the parameter buffer (quantized training): a
 * tn_weight_source supplies the matrix the forward/backward should use and receives its gradient. */
#ifndef TN_MODEL_LLAMA_H
#define TN_MODEL_LLAMA_H

#include <stdint.h>

#include "kernels/ops.h"
#include "model/params.h"

/* Where linear-layer weights come from during forward/backward. NULL source = the dense parameters. */
typedef struct {
    /* Return the [out, in] matrix to use for (layer, kind), in the model's table memory. `scratch` has room
     * for the largest matrix; the source may fill it and return it, or return any pointer valid until the
     * next call. NULL = failure (the source sets the message). */
    const float *(*weight)(void *ctx, int layer, tn_linear_kind kind, float *scratch);
    /* Receives dL/dW for (layer, kind), valid only during the call (it lives in scratch). If NULL, the
     * gradient is accumulated into the grads buffer passed to backward, as for dense training. */
    int (*weight_grad)(void *ctx, int layer, tn_linear_kind kind, const float *grad);
    /* Activation quantization (BitNet b1.58): when act_bits == 8, the input of every linear for which
     * is_quantized(ctx, layer, kind) is true is replaced by its per-token absmax int8 fake-quantization
     * in the forward, and the backward passes straight through it (dW uses the quantized input). */
    int act_bits;
    int (*is_quantized)(void *ctx, int layer, tn_linear_kind kind);
    void *ctx;
    /* Optional: the [vocab, dim] embedding table for the lookup, when it is not in the parameters (a
     * 16-bit distillation teacher); same contract as `weight`. */
    const float *(*embedding)(void *ctx, float *scratch);
} tn_weight_source;

/* Low-rank adapters beside the layer matrices (layer >= 0; LoRA, model/lora.h), arrays in the model's table
 * memory. With an adapter set, every linear weight is frozen: the backward computes no dW for them (neither
 * into grads nor through a weight source's weight_grad). begin_forward runs at the start of every
 * tn_llama_forward; forward adds the adapter's term to a linear's output y[N, out] given its input x[N, in]
 * (before any activation quantization); grad accumulates the adapter's own gradients from dy[N, out] and the
 * same x; dx adds the adapter's term to dx[N, in]. Each returns 0 for a matrix it does not adapt. */
typedef struct {
    void *ctx;
    int (*begin_forward)(void *ctx);
    int (*forward)(void *ctx, int layer, tn_linear_kind kind, float *y, const float *x, int64_t N);
    int (*grad)(void *ctx, int layer, tn_linear_kind kind, const float *dy, const float *x, int64_t N);
    int (*dx)(void *ctx, int layer, tn_linear_kind kind, float *dx, const float *dy, int64_t N);
} tn_llama_adapter;

typedef struct tn_llama tn_llama;

/* How a model keeps its activations.
 *   recompute:    only the residual stream entering each layer is kept; the backward runs each layer's
 *                 forward again (one layer's worth of activations) before its backward. Same bits as
 *                 without ([train] recompute = layer).
 *   forward_only: no backward: the residual stream and one layer's activations, no gradient scratch (a distillation teacher). */
typedef struct {
    int recompute;
    int forward_only;
} tn_llama_opts;

/* Allocate activations for batch B and sequence length T (T <= cfg.max_seq_len) in the memory of `ops`
 * (NULL = the CPU table). The layout and the table are borrowed and must outlive the model. */
int tn_llama_create(tn_llama **out, const tn_llama_layout *layout, int B, int T, const tn_ops *ops);
int tn_llama_create_opts(tn_llama **out, const tn_llama_layout *layout, int B, int T, const tn_ops *ops,
                         const tn_llama_opts *opts); /* opts NULL: every activation kept */
/* The bytes tn_llama_create would allocate, in allocation spans (kernels/ops.h tn_ops_span), without
 * allocating (memory planning). */
int64_t tn_llama_plan_bytes(const tn_llama_layout *layout, int B, int T, const tn_ops *ops,
                            const tn_llama_opts *opts);
void tn_llama_free(tn_llama *m);
/* Use `src` for linear weights (copied; NULL restores dense). */
void tn_llama_set_weight_source(tn_llama *m, const tn_weight_source *src);
/* The current weight source (returns 0 when the model is dense) and whether the head goes through it. */
int tn_llama_get_weight_source(const tn_llama *m, tn_weight_source *src, int *head_via_source);
/* Adapters (copied; NULL removes them) and the current ones (returns 0 when there are none). */
void tn_llama_set_adapter(tn_llama *m, const tn_llama_adapter *a);
int tn_llama_get_adapter(const tn_llama *m, tn_llama_adapter *a);
/* Also quantize/treat the LM head through the weight source (kind TN_W_COUNT, layer -1). */

void tn_llama_set_head_via_source(tn_llama *m, int on);

/* Forward pass. inputs/targets: [B*T] token ids (checked against vocab), mask: [B*T] (1 = counts toward
 * the loss), or NULL for all ones. *loss = masked mean NLL (0 when no position is masked in).
 * *n_counted = number of positions in the mean (may be NULL). targets may be NULL for logits only. */
int tn_llama_forward(tn_llama *m, const float *params, const int32_t *inputs, const int32_t *targets,
                     const uint8_t *mask, float *loss, int64_t *n_counted);
/* Backward of the last forward: grads[layout.numel] += scale * dLoss/dParams. scale lets callers average
 * over gradient-accumulation micro-batches. Requires forward with targets. */
int tn_llama_backward(tn_llama *m, const float *params, float *grads, float scale);

/* Terms a distillation loss adds to the backward (all arrays table memory; NULL / 0 for none):
 *   dlogits: [B·T, V] added to the cross-entropy's gradient of the logits (already scaled);
 *   hidden: for n_hidden layers `layers[i]`, the teacher's hidden state after that layer teacher_x[i]
 *   [B·T, D]: the term hidden_weight · Σ over counted positions of |x_l − teacher_x|² / (counted · D ·
 *   n_hidden), its gradient scaled by hidden_scale (the micro-batch's weight in the step); the backward
 *   returns the term's value (unscaled) in *hidden_loss (host). */
typedef struct {
    const float *dlogits;
    int n_hidden;
    const int *layers;
    const float *const *teacher_x;
    float hidden_weight, hidden_scale;
} tn_llama_extra_grad;
int tn_llama_backward_extra(tn_llama *m, const float *params, float *grads, float scale, const tn_llama_extra_grad *e,
                            double *hidden_loss);
/* The residual stream after layer l (l = -1: the embeddings), [B·T, D] table memory, of the last forward. */
const float *tn_llama_hidden(const tn_llama *m, int l);
/* The last forward's loss mask on the device, [B·T] (for the distillation ops). */
const uint8_t *tn_llama_mask(const tn_llama *m);

/* Logits of the last forward, [B, T, V], and the per-position NLL [B, T] (all positions, masked or
 * not): table memory (host memory only for the CPU table). */
const float *tn_llama_logits(const tn_llama *m);
const float *tn_llama_nll(const tn_llama *m);
/* Row n of the last forward's logits copied to host memory (V floats), on any device. */
int tn_llama_logits_row(const tn_llama *m, int64_t n, float *host_out);
/* Σ of the last forward's NLL over the counted positions, in double (loss · n_counted, unrounded). */
double tn_llama_nll_sum(const tn_llama *m);
const tn_ops *tn_llama_ops(const tn_llama *m);
int tn_llama_batch(const tn_llama *m);
const tn_llama_config *tn_llama_cfg(const tn_llama *m);
int tn_llama_seq_len(const tn_llama *m);
/* Bytes of activation memory held. */
int64_t tn_llama_activation_bytes(const tn_llama *m);

#endif
