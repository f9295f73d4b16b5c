/* LoRA (Hu et al. 2021, as Hugging Face PEFT implements it): low-rank fp32 adapters beside frozen linear
 * weights. For a linear y = x Wᵀ of shape [out, in] with an adapter (A [r, in], B [out, r]):
 *
 *   y = x Wᵀ + s · (drop(x) Aᵀ) Bᵀ          s = alpha / r   (PEFT's scaling without rsLoRA)
 *
 * drop(x) = m ⊙ x with m[n, i] ∈ {0, 1/(1−p)} (inverted dropout, p = dropout, training only). PEFT's
 * initialisation: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0, so training starts at the base
 * model. Adapters sit on the layer matrices (q, k, v, o, gate, up, down) the selection names; never on the
 * embedding or the head.
 *
 * The model (model/llama.c) calls three hooks per adapted linear (tn_llama_adapter), the base being frozen.
 * s is applied to the [N, r] intermediate (PEFT multiplies the [N, out] output by s: the same product up to
 * float rounding):
 *   forward      u = s · drop(x) Aᵀ  [N, r];       y[N, out] += u Bᵀ
 *   params grad  u as above;  dB[out, r] += dyᵀ u;  v = s · dy B  [N, r];  dA[r, in] += vᵀ drop(x)
 *   input grad   v as above;  dx[N, in] += m ⊙ (v A)
 * Every product is the ops table's linear / linear_dx / linear_dw (OpenBLAS on the CPU, cuBLAS on CUDA), s
 * its scale, the mask its dropout op. The dropout mask is a pure function of (key, element) with the key from
 * (seed, step, forward, slot) (kernels/dropout_math.h): the backward (and a recomputed forward) regenerates
 * the forward's mask instead of storing it. The key changes at every forward (tn_lora_begin_forward: a
 * counter within the step) and is reset by tn_lora_set_step, so a resumed run draws the same masks, on any
 * device.
 *
 * Memory: params, grads and the scratch live in the memory of the table the adapters run on (l->ops):
 * tn_lora_create makes them on the CPU table (host memory, where PEFT files are read and merges run);
 * tn_lora_move puts them on another table (a CUDA run). Host code reads and writes them through
 * tn_lora_get_params / tn_lora_set_params, never directly unless l->ops is the CPU table. */
#ifndef TN_MODEL_LORA_H
#define TN_MODEL_LORA_H

#include <stdint.h>

#include "core/rng.h"
#include "kernels/ops.h"
#include "model/llama.h"

#define TN_LORA_MAX_RANK 4096

/* Which matrices get adapters. */
typedef struct {
    int rank;
    double alpha, dropout;
    unsigned kinds;     /* bit (1 << tn_linear_kind) */
    uint8_t *layer_on;  /* [n_layers] 1 = this layer's selected matrices get adapters (malloc'd) */
    int n_layers;
} tn_lora_spec;

/* Parse `layers`: comma-separated group names (attn, mlp), module names (q_proj, k_proj, v_proj, o_proj,
 * gate_proj, up_proj, down_proj) and layer indices (negative counts from the end). Names select matrices
 * (none named: attn and mlp), indices select layers (none given: every layer). A layer index outside the
 * model or an unknown name fails. */
int tn_lora_spec_parse(tn_lora_spec *s, const char *layers, int n_layers);
void tn_lora_spec_free(tn_lora_spec *s);
/* PEFT module name of a kind ("q_proj", ...). */
const char *tn_lora_kind_name(int kind);

typedef struct {
    tn_lora_spec spec;
    float scale;         /* alpha / rank, as float (PEFT multiplies by the Python float) */
    int n_slots;         /* adapted matrices, in layout order (layer, then kind) */
    int *slot;           /* [n_layers · TN_W_COUNT] slot of (layer, kind) or −1 */
    int *slot_layer, *slot_kind;
    int64_t *rows, *cols; /* [n_slots] out, in */
    int64_t *off_a, *off_b; /* [n_slots] offsets (floats) of A and B in params / grads */
    int64_t numel;       /* all adapter floats */
    int64_t max_cols;    /* the widest adapter input */
    const tn_ops *ops;   /* the table the adapters run on; params, grads and scratch are its memory */
    float *params, *grads; /* [numel] each */
    int training;        /* 1: dropout active */
    uint64_t seed, step, micro; /* the dropout key's inputs */
    /* scratch, grown on demand (tn_lora_reserve: at once): [N, r] twice and one dropped input [N, in] */
    float *u, *v, *xd;
    int64_t cap_u, cap_x;
} tn_lora;

/* Adapters for every (layer, kind) the spec selects, laid out by cfg's shapes, on the CPU table; params zero
 * (call tn_lora_init_params). Takes ownership of spec->layer_on. */
int tn_lora_create(tn_lora *l, tn_lora_spec *spec, const tn_llama_config *cfg, uint64_t seed);
void tn_lora_free(tn_lora *l);
/* Move the adapters to table `ops` (their values; the gradients start at zero, the scratch is dropped). */
int tn_lora_move(tn_lora *l, const tn_ops *ops);
/* Allocate the scratch for N rows now (the dropped input too when spec.dropout > 0), so that it is part of
 * a run's memory plan instead of growing in the first step. */
int tn_lora_reserve(tn_lora *l, int64_t N);
/* Bytes tn_lora_reserve(N) allocates (in allocation spans), for memory plans. */
int64_t tn_lora_scratch_bytes(const tn_lora *l, int64_t N);
/* All params [numel] to / from host memory. */
int tn_lora_get_params(const tn_lora *l, float *host);
int tn_lora_set_params(tn_lora *l, const float *host);
/* PEFT's initialisation: A uniform in ±1/√in from rng (slot order, row-major), B = 0. */
int tn_lora_init_params(tn_lora *l, tn_rng *rng);
int tn_lora_slot(const tn_lora *l, int layer, int kind);

/* Dropout bookkeeping: a new optimizer step resets the forward counter. */
void tn_lora_set_step(tn_lora *l, uint64_t step);
void tn_lora_begin_forward(tn_lora *l);

/* The three hooks (shapes above), arrays in l->ops's memory. Return 0 (nothing to do) for a matrix without an
 * adapter. */
int tn_lora_forward(tn_lora *l, int layer, int kind, float *y, const float *x, int64_t N);
int tn_lora_backward_params(tn_lora *l, int layer, int kind, const float *dy, const float *x, int64_t N);
int tn_lora_backward_input(tn_lora *l, int layer, int kind, float *dx, const float *dy, int64_t N);

/* The model's adapter hooks (model/llama.h tn_llama_set_adapter) over l. */
void tn_lora_hook(tn_lora *l, tn_llama_adapter *a);

/* The merge of one adapter into its dense weight, in double, host memory (a CPU-table tn_lora's params):
 *   W[o, i] = (float)( W[o, i] + coef · Σ_k B[o, k] · A[k, i] )      coef = strength · alpha / r
 * W [rows, cols], A [r, cols], B [rows, r]. Summed in k order in double, so an independent reference that
 * computes the same sum in float64 rounds to the same floats. */
void tn_lora_merge_into(float *W, const float *A, const float *B, int64_t rows, int64_t cols, int r, double coef);

#endif
