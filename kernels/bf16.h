/* bfloat16 storage for training state (bf16 shadow weights, [quant] shadow = bf16): conversions and the
 * seeded, counter-based stochastic rounding that keeps small updates alive without bias.
 *
 * bf16 is the top 16 bits of an IEEE float (sign, 8 exponent bits, 7 mantissa bits): widening is exact.
 *   round to nearest (ties to even):  the nearest bf16; NaN stays NaN (quiet), ±inf stays ±inf.
 *   stochastic rounding of x:         with bits(x) the float's 32 bits and r a uniform 16-bit number,
 *                                     bf16 = (bits(x) + r) >> 16. The magnitude rounds up with probability
 *                                     (its distance to the bf16 below) / (the spacing), so E[bf16] = x
 *                                     exactly (unbiased), for either sign and for subnormals. x already
 *                                     on the bf16 grid never moves. NaN and ±inf are rounded to nearest;
 *                                     a finite x within one bf16 step of FLT_MAX may round to ±inf.
 *   the random bits:                  r = the top 16 bits of mix64(seed + counter · φ64), mix64 the
 *                                     SplitMix64 finalizer: a pure function of (seed, counter), so a run
 *                                     that resumes at the same step with the same seed rounds the same way,
 *                                     on any device and with any number of threads.
 * The trainer uses seed = f(run seed, step) and counter = the element's index in the shadow array.
 * Plain C; every function is __host__ __device__ under nvcc, so the CPU and CUDA kernels share the bits. */
#ifndef TN_KERNELS_BF16_H
#define TN_KERNELS_BF16_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define TN_BF16_HD __host__ __device__
#else
#define TN_BF16_HD
#endif

static inline TN_BF16_HD uint32_t tn_bf16_float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline TN_BF16_HD float tn_bf16_widen(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline TN_BF16_HD uint16_t tn_bf16_round_nearest(float x) {
    const uint32_t u = tn_bf16_float_bits(x);
    if ((u & 0x7f800000u) == 0x7f800000u) /* inf stays inf; NaN stays NaN (quiet bit set) */
        return (uint16_t)((u >> 16) | ((u & 0x007fffffu) ? 0x0040u : 0u));
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* The bf16 nearest to a sum the caller computed in float; a NaN sum becomes the canonical quiet NaN 0x7fc0
 * (the payload of a NaN sum differs between devices), so accumulations agree bit for bit. */
static inline TN_BF16_HD uint16_t tn_bf16_add_nearest(float sum) {
    return sum != sum ? (uint16_t)0x7fc0u : tn_bf16_round_nearest(sum);
}

/* The SplitMix64 finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mix. */
static inline TN_BF16_HD uint64_t tn_bf16_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The 16 random bits of element `counter` under `seed`. */
static inline TN_BF16_HD uint32_t tn_bf16_random16(uint64_t seed, uint64_t counter) {
    return (uint32_t)(tn_bf16_mix64(seed + counter * 0x9e3779b97f4a7c15ull) >> 48);
}

static inline TN_BF16_HD uint16_t tn_bf16_round_stochastic(float x, uint64_t seed, uint64_t counter) {
    const uint32_t u = tn_bf16_float_bits(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return tn_bf16_round_nearest(x);
    return (uint16_t)((u + tn_bf16_random16(seed, counter)) >> 16);
}

#endif
