/* PRIMAL: training weights that live on a grid, with no fp32 shadow copy.
 *
 * ==========================================================================================================
 *  THE RULE (defaults in brackets are the original PRIMAL scripts'; each is a [primal] config key)
 * ----------------------------------------------------------------------------------------------------------
 *  State per ghost weight:  idx  uint8 grid index (4-bit packed when packed_indices)   grid ascending, so
 *                           vote int8, saturating at ±127                               idx+1 = larger value
 *  State per tensor or row: scale  fp32, init 1.0, learned by AdamW with the float params (scale_per_row)
 *
 *  init         idx = nearest(N(0, init_std²) / 1.0)                                         [init_std 0.02]
 *  forward      W = scale · grid[idx]                                           (tn_primal_materialize)
 *  backward     given G = dL/dW of this tensor (every micro-batch)               (tn_primal_accumulate)
 *                 scale_grad   += Σ G · grid[idx]              (over the row, or the whole tensor)
 *                 thr           = mean|G| + z · std|G|         (over the whole tensor; std with n-1) [z 1.0]
 *                 where |G| > thr:  vote = clamp(vote - sign(G · sign(scale)), -127, 127)
 *                 (vote +1 = "the value should increase": G < 0 with scale > 0; scale = 0 casts no vote)
 *  step         after AdamW, every `accum` micro-batches                                 (tn_primal_step)
 *                 p = clamp(c / (|scale| + 1e-6), p_min, p_max)  per tensor, or per row with its own scale
 *                                                               [c 0.002, p_min 1e-4, p_max 0.05]
 *                 every weight with |vote| >= consensus, with probability p:              [consensus 1]
 *                   idx = clamp(idx + sign(vote), 0, grid_n - 1)   (its OWN grid's ends)
 *                 then votes are cleared                                                  [vote_decay 0]
 *                 or, with 0 < vote_decay < 1: weights drawn to move lose their vote (it was spent) and the
 *                 others keep trunc(vote · vote_decay), rounded toward zero (a lone ±1 vote dies).
 *
 *  Randomness, so that a resumed run is bit-identical: tn_primal_tensor_init draws one tn_rng_normal per
 *  weight in row-major order. tn_primal_step draws exactly ONE tn_rng_u64 per call (a key K, drawn even when
 *  nothing votes); weight i (row-major flat index) then uses the uniform
 *      u_i = top 53 bits of splitmix64_mix(K + (i + 1) · 0x9e3779b97f4a7c15) / 2^53     (flip iff u_i < p)
 *  i.e. the i-th output of a SplitMix64 stream seeded with K: independent of thread count, of which other
 *  weights voted, and of the device (kernels/primal_math.h is the one definition the CPU and the CUDA flip
 *  kernel share). The caller steps tensors in a fixed order (layout order) with one tn_rng.
 *  Reductions (|G| statistics, scale gradients) are per row in double, then summed row by row in order, so
 *  they do not depend on the number of threads either.
 *
 *  Memory: idx 1 byte + vote 1 byte = 2 bytes per weight; 1.5 with packed 4-bit indices (grids <= 16 values).
 *  G is the caller's one-layer scratch; nothing here allocates per weight beyond idx and vote.
 * ==========================================================================================================
 * Math, differences from the original scripts, and config keys: docs/QUANT.md. */
#ifndef TN_OPTIM_PRIMAL_H
#define TN_OPTIM_PRIMAL_H

#include <hdf5.h>
#include <stdint.h>

#include "core/config.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "quant/grid.h"

typedef struct {
    double z;            /* vote threshold in standard deviations of |G| above its mean         [z = 1.0] */
    double c;            /* flip probability numerator: p = c / (|scale| + 1e-6)                 [c = 0.002] */
    double p_min, p_max; /* clamp of p                                                 [1e-4, 0.05] */
    int consensus;       /* |vote| needed to move, 1..127                                        [1] */
    double vote_decay;   /* 0 = clear votes after a step; in (0, 1): keep trunc(vote · decay)    [0] */
    double init_std;     /* std of the normal the initial indices are snapped from               [0.02] */
    int scale_per_row;  /* one scale per output row instead of per tensor                        [0] */
    int packed_indices; /* 4-bit indices (grid must have <= 16 values)                           [0] */
} tn_primal_opts;

/* One ghost tensor: a row-major [rows, cols] = [out, in] matrix. */
typedef struct {
    int64_t rows, cols, n;   /* n = rows · cols */
    const tn_grid *grid;     /* borrowed; must outlive the tensor */
    int packed;              /* idx is 4-bit packed (tn_pack4 layout, quant/pack.h) */
    int scale_per_row;
    int64_t n_scales;        /* rows or 1 */
    uint8_t *idx;            /* [n] or [(n + 1) / 2] when packed */
    int8_t *vote;            /* [n], values in [-127, 127] */
    float *scale;            /* [n_scales]; owned, or borrowed from the caller (e.g. AdamW's parameter buffer) */
    int owns_scale;
} tn_primal_tensor;

/* Defaults above. */
void tn_primal_opts_default(tn_primal_opts *o);
/* Range checks: z finite, c >= 0, 0 <= p_min <= p_max <= 1, 1 <= consensus <= 127, 0 <= vote_decay < 1,
 * init_std > 0. */
int tn_primal_opts_check(const tn_primal_opts *o);
/* Defaults overridden by [primal] z, c, p_min, p_max, consensus, vote_decay, init_std, scale_per_row,
 * packed_indices (then checked). ghost_layers / fine_layers are layer selections, read by train/. */
int tn_primal_opts_from_config(tn_config *c, tn_primal_opts *o);

/* Allocate idx and vote, set every scale to 1.0 and the indices to nearest(init_std · N(0, 1)).
 * scale_storage: n_scales floats the tensor borrows (rows when o->scale_per_row, else 1), or NULL to own
 * them. Fails if packed indices are asked for a grid of more than 16 values. */
int tn_primal_tensor_init(tn_primal_tensor *t, int64_t rows, int64_t cols, const tn_grid *grid,
                          const tn_primal_opts *o, float *scale_storage, tn_rng *rng);
void tn_primal_tensor_free(tn_primal_tensor *t);

/* Index of weight i (flat, row-major), packed or not, and setting it (v < grid->n; for tests and import). */
uint8_t tn_primal_index(const tn_primal_tensor *t, int64_t i);
void tn_primal_set_index(tn_primal_tensor *t, int64_t i, uint8_t v);

/* W[rows, cols] = scale · grid[idx] (the row's scale when per row). AVX2 gather when available. */
void tn_primal_materialize(const tn_primal_tensor *t, float *W);

/* Backward of one micro-batch, G = dL/dW [rows, cols] (read only, the caller's scratch):
 * scale_grad[n_scales] += Σ G · grid[idx], and votes as in the rule. *n_voters (may be NULL) = weights that
 * cast a vote this call. Fails, changing nothing, if G holds a NaN or infinity. */
int tn_primal_accumulate(tn_primal_tensor *t, const float *G, const tn_primal_opts *o, float *scale_grad,
                         int64_t *n_voters);

/* The flip probability for a given scale: clamp(c / (|scale| + 1e-6), p_min, p_max), in double. */
double tn_primal_flip_prob(const tn_primal_opts *o, float scale);

/* The optimizer step of the rule (after AdamW has updated the scales). Draws one tn_rng_u64.
 * *n_flipped (may be NULL) = weights whose index changed (a move clamped at a grid end is not counted).
 * Fails if a scale is not finite; nothing changes then and no random number is drawn. */
int tn_primal_step(tn_primal_tensor *t, tn_rng *rng, const tn_primal_opts *o, int64_t *n_flipped);

/* The step split for devices: the caller checks the scales (tn_primal_check_scales, host memory), draws
 * the key with tn_rng_u64 and runs the flip loop (tn_primal_step_keyed on the CPU, the ops table's
 * primal_flip on a device). *n_voted (may be NULL) = weights that had a vote before the step. */
int tn_primal_check_scales(const float *scale, int64_t n);
void tn_primal_step_keyed(tn_primal_tensor *t, uint64_t key, const tn_primal_opts *o, int64_t *n_voted,
                          int64_t *n_flipped);

/* The ops table's view of a tensor and of the rule's constants (kernels/ops.h), and back: a tensor struct
 * over a view's arrays (owning nothing; for the CPU table's PRIMAL entries). */
tn_ghost_view tn_primal_view(const tn_primal_tensor *t);
tn_flip_rule tn_primal_rule(const tn_primal_opts *o);
tn_primal_tensor tn_primal_tensor_of(const tn_ghost_view *v);
tn_primal_opts tn_primal_opts_of(const tn_flip_rule *r, double z);

/* Bytes held per state component (idx, vote, scales). */
void tn_primal_bytes(const tn_primal_tensor *t, int64_t *idx_bytes, int64_t *vote_bytes, int64_t *scale_bytes);

/* Save into / load from an open HDF5 group (one group per tensor, created by the caller):
 *   idx    uint8 [rows, cols]   always unpacked, so packed and unpacked runs read each other's files
 *   vote   int8  [rows, cols]
 *   scale  f32   [n_scales]
 *   grid   f32   [grid n]       the values, checked bit for bit on load
 *   attributes: format = "trinity-primal", version = 1, grid_name, rows, cols, scale_per_row
 * Load requires the same shape, scale layout and grid as t (initialised from the run's config) and rejects
 * out-of-range indices, votes of -128 and non-finite scales. */
/* Internal vote kernel for one row (where |g| > thr: vote = sat(vote - sign(g) · ss), ss = sign(scale)),
 * exposed so the unit test can compare the AVX2 variant (allow_simd = 1) with the scalar one (0). */
int64_t tn_primal_vote_row(const float *g, int8_t *vote, int64_t n, float thr, int ss, int allow_simd);

int tn_primal_save(const tn_primal_tensor *t, hid_t group);
int tn_primal_load(tn_primal_tensor *t, hid_t group);

#endif
