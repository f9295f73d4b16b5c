/* Seeded RNG: xoshiro256** (Blackman & Vigna), seeded through splitmix64. The whole state is four
 * uint64 words so checkpoints can store it and a resumed run draws the same numbers. */
#ifndef TN_CORE_RNG_H
#define TN_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} tn_rng;

void tn_rng_seed(tn_rng *r, uint64_t seed);
uint64_t tn_rng_u64(tn_rng *r);
/* Uniform in [0, 1) with 24 random bits (float) or 53 bits (double). */
float tn_rng_uniform(tn_rng *r);
double tn_rng_uniform_d(tn_rng *r);
/* Uniform integer in [0, n), unbiased (rejection). n > 0. */
uint64_t tn_rng_below(tn_rng *r, uint64_t n);
/* Standard normal (Box-Muller, one draw per call; the second value is discarded so the state is
 * a pure function of the number of calls). */
float tn_rng_normal(tn_rng *r);
/* Fisher-Yates shuffle of n uint64 values. */
void tn_rng_shuffle_u64(tn_rng *r, uint64_t *v, uint64_t n);

#endif
