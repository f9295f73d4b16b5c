/* The PRIMAL flip rule's per-weight arithmetic, shared by the CPU (optim/primal.c) and the CUDA kernels
 * (kernels/cuda/primal.cu; every function is __host__ __device__ there), so that given the same votes,
 * scales and key both devices move exactly the same weights. The rule itself: optim/primal.h. */
#ifndef TN_KERNELS_PRIMAL_MATH_H
#define TN_KERNELS_PRIMAL_MATH_H

#include <stdint.h>

#if defined(__CUDACC__)
#define TN_PRIMAL_HD __host__ __device__
#else
#define TN_PRIMAL_HD
#endif

/* u_i: the i-th output (i from 0) of a SplitMix64 stream seeded with key, top 53 bits as a double in [0, 1).
 * Integer arithmetic and one exact int-to-double conversion and scaling: identical on every device. */
static inline TN_PRIMAL_HD double tn_primal_uniform(uint64_t key, int64_t i) {
    uint64_t z = key + ((uint64_t)i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* p = clamp(c / (|scale| + 1e-6), p_min, p_max), in double (one correctly rounded division). */
static inline TN_PRIMAL_HD double tn_primal_prob(double c, double p_min, double p_max, float scale) {
    double p = c / ((scale < 0 ? -(double)scale : (double)scale) + 1e-6);
    if (p < p_min) p = p_min;
    if (p > p_max) p = p_max;
    return p;
}

/* The vote left after a step: 0, or trunc(v · decay) for a weight that was not drawn to move (a drawn
 * vote is spent even when the weight sits at its grid's end). */
static inline TN_PRIMAL_HD int8_t tn_primal_vote_after(int v, int spent, double decay) {
    return (decay > 0 && !spent) ? (int8_t)(int)((double)v * decay) : (int8_t)0;
}

#endif
