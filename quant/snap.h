/* Snapping: nearest grid point, and whole-tensor quantization W_q = s · grid[nearest(W / s)].
 *
 * Rule, for x = W / s (the division is IEEE single precision, correctly rounded, in every code path):
 *   idx(x) = argmin_j |x - grid[j]|, the distance taken exactly (in real numbers, not rounded floats).
 *   Ties (x exactly halfway between two neighbours) go to the value of smaller magnitude, i.e. toward 0;
 *   between -a and +a (only possible at x = 0 on a grid without 0) to +a.
 *   Beyond the ends: x < grid[0] gives 0, x > grid[n-1] gives n-1 (clipping); ±inf likewise.
 *   NaN gives grid->zero_idx, the index that 0.0 snaps to. (tn_quantize_tensor never sees NaN: it rejects
 *   non-finite weights with an error, because a NaN weight means training already diverged.)
 *
 * Ternary with absmean is exactly BitNet b1.58's RoundClip(W / s, -1, 1) as PyTorch computes it:
 * torch.round rounds half to even, so ±0.5 → 0 and ±1.5 → ±2 → clipped to ±1; our "ties toward zero" gives
 * the same. (C's round() rounds half away from zero and would map ±0.5 to ±1; the BitNet reference code is
 * PyTorch, so we follow PyTorch.) One remaining difference: BitNet multiplies by 1/s, we divide by s; the two
 * can differ in the last bit of W / s, which matters only for a W within one ulp of a tie.
 *
 * Implementation: each grid carries exact float thresholds up[] (quant/grid.h) so that
 * idx(x) = #{ j : x >= up[j] }: a branchless binary search (scalar), an AVX2 compare-and-count for grids of
 * at most 16 values, an AVX2 two-level count (block, then in-register permutes) for larger ones. All paths
 * give identical indices. */
#ifndef TN_QUANT_SNAP_H
#define TN_QUANT_SNAP_H

#include <stdint.h>

#include "quant/grid.h"
#include "quant/scale.h"

/* Scalar reference for one value. */
static inline int tn_grid_snap_one(const tn_grid *g, float x) {
    if (x != x) return g->zero_idx;
    int idx = 0;
    for (int step = g->search_size >> 1; step >= 1; step >>= 1)
        if (x >= g->up[idx + step - 1]) idx += step;
    return idx < g->n ? idx : g->n - 1;
}

/* idx[i] = nearest(x[i] / s) for n values (s = 1 snaps x itself). s must be positive and finite. Uses AVX2
 * when the CPU has it; _ref is the scalar reference the tests compare against. These two kernels are
 * serial (one row, one chunk): tensor-level callers parallelise across rows. */
void tn_grid_snap(const tn_grid *g, const float *x, int64_t n, float s, uint8_t *idx);
void tn_grid_snap_ref(const tn_grid *g, const float *x, int64_t n, float s, uint8_t *idx);

/* out[i] = s · grid[idx[i]] (dequantization). Indices >= g->n read 0 (the table is zero-padded to 256),
 * never memory outside it. */
void tn_grid_dequant(const tn_grid *g, const uint8_t *idx, int64_t n, float s, float *out);
void tn_grid_dequant_ref(const tn_grid *g, const uint8_t *idx, int64_t n, float s, float *out);

/* Quantize a row-major [rows, cols] tensor: scales by `rule` (per output row or per tensor), indices by the
 * rule above, out_Wq[i] = s · grid[out_idx[i]]. out_Wq, out_idx and out_scales may each be NULL (not
 * wanted); out_scales has rows entries when per_row, else 1. Fails on non-finite weights. OpenMP over rows. */
int tn_quantize_tensor(const float *W, int64_t rows, int64_t cols, const tn_grid *g, tn_scale_rule rule, int per_row,
                       float *out_Wq, uint8_t *out_idx, float *out_scales);

/* 1 when quant/ (and PRIMAL's kernels) take the AVX2 paths: the CPU has AVX2 and SIMD is enabled. */
int tn_quant_have_avx2(void);
/* Enable (default) or disable the AVX2 paths process-wide, so tests and benchmarks can run the scalar
 * reference through the public functions. Call it outside parallel regions. */
void tn_quant_set_simd(int on);

#endif
