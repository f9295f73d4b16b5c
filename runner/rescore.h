/* Re-scoring a quantized LM head's best candidates from its exact rows (docs/TRIN.md, "Exact head rows").
 *
 * A Q8 head (int8, a scale per row) costs almost no perplexity but moves the argmax where the two best
 * logits nearly tie: on SmolLM2-135M its top-1 agrees with the F16 head's at 97.5% of 4,096 WikiText-2
 * positions, and no 8-bit per-row rule reaches 99.5% (scripts/study-head-bits.py). The F16 head's top-1
 * was, however, always among the Q8 head's best 3 logits (the Q4 head's best 25). So the runner scans the
 * whole vocabulary with the quantized head, takes its best K logits and recomputes those K from the F16
 * rows that `trinity export --exact-head` stores beside the table (TN_TRIN_EXACT_HEAD): the F16 head's
 * argmax, for the quantized head's bytes plus K rows read per token.
 *
 *   logits [V] = h · Q̃ᵀ               (the quantized head, every row)
 *   C = the K largest of logits       (tn_top_indices)
 *   logits[c] = h · E[c]ᵀ, c ∈ C      (E: the exact rows; the same product an F16 head computes)
 */
#ifndef TN_RUNNER_RESCORE_H
#define TN_RUNNER_RESCORE_H

#include <stdint.h>

#define TN_RESCORE_DEFAULT 32 /* candidates re-scored per token: covers the Q4 head's worst rank (25) */
#define TN_RESCORE_MAX 1024

/* The positions of the k largest of x[0..n) into idx, largest first; equal values in index order. NaNs
 * are never chosen while enough numbers remain. Returns min(k, n). O(n + m·k) for m insertions (a few
 * times k·ln(n/k) on unordered data). */
int tn_top_indices(const float *x, int64_t n, int k, int32_t *idx);

#endif
