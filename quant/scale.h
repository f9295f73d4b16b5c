/* Scale rules: how a tensor (or each output row) is mapped to the scale s in W_q = s · grid[nearest(W / s)].
 *
 *   std      s = sqrt( Σ (w - mean)² / (n - 1) )   Trinity (torch.Tensor.std(), Bessel-corrected; 0 if n = 1)
 *   absmean  s = Σ |w| / n                          BitNet b1.58 ("absmean")
 *   absmax   s = max |w|                            (grids whose ends are ±1 then never clip)
 *
 * n is the tensor's element count (per tensor) or the row length (per row: one scale per output row of a
 * row-major [rows, cols] = [out, in] matrix). Sums are taken in double, per row and then row by row in a
 * fixed order, so the result does not depend on the number of threads.
 *
 * Epsilon guard: every scale is max(s, TN_SCALE_EPS). An all-zero row (or one whose spread is below 1e-5)
 * would otherwise give s = 0 and W / s = NaN; with the guard its weights snap to the grid point nearest 0.
 * 1e-5 is BitNet's own clamp (w.abs().mean().clamp(min=1e-5)), so ternary/absmean matches it exactly. */
#ifndef TN_QUANT_SCALE_H
#define TN_QUANT_SCALE_H

#include <stdint.h>

#define TN_SCALE_EPS 1e-5f

typedef enum { TN_SCALE_STD = 0, TN_SCALE_ABSMEAN = 1, TN_SCALE_ABSMAX = 2 } tn_scale_rule;

/* "std", "absmean", "absmax" (config key [quant] scale). */
int tn_scale_rule_parse(const char *name, tn_scale_rule *out);
const char *tn_scale_rule_name(tn_scale_rule r);

/* scales[per_row ? rows : 1] for the row-major [rows, cols] tensor W. Fails (naming the element) if W holds
 * a NaN or an infinity, since every rule would silently turn it into a NaN scale. */
int tn_scale_compute(const float *W, int64_t rows, int64_t cols, tn_scale_rule rule, int per_row, float *scales);

#endif
