/* Inverted dropout with a hashed mask (LoRA's adapter input, model/lora.h): the keep decision of element i
 * under `key` is a pure function of (key, i), so the backward (and a recomputed forward) regenerates the
 * forward's mask instead of storing it, and every device draws the same mask.
 *
 *   keep(key, i) = mix64(key + i · φ64) ≥ thr,   thr = ⌊p · 2⁶⁴⌋,   out[i] = keep ? x[i] · (float)(1/(1−p)) : 0
 *
 * mix64 is the SplitMix64 finalizer (as kernels/bf16.h); φ64 = 0x9e3779b97f4a7c15. Element i is dropped with
 * probability thr / 2⁶⁴ = p (to 2⁻⁶⁴). thr and the keep factor are computed once on the host (in double, then
 * rounded); the per-element work is integer hashing and one float product, so the CPU (kernels/cpu/ops_cpu.c
 * tn_op_dropout) and the CUDA kernel (kernels/cuda/model.cu) agree bit for bit. Plain C; every function is
 * __host__ __device__ under nvcc. */
#ifndef TN_KERNELS_DROPOUT_MATH_H
#define TN_KERNELS_DROPOUT_MATH_H

#include <stdint.h>

#if defined(__CUDACC__)
#define TN_DROPOUT_HD __host__ __device__
#else
#define TN_DROPOUT_HD
#endif

/* The SplitMix64 finalizer (Steele, Lea, Flood 2014). */
static inline TN_DROPOUT_HD uint64_t tn_dropout_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* thr = ⌊p · 2⁶⁴⌋ for p in [0, 1) (p · 2⁶⁴ < 2⁶⁴ there, so the conversion is defined). */
static inline TN_DROPOUT_HD uint64_t tn_dropout_threshold(double p) {
    return p > 0 ? (uint64_t)(p * 18446744073709551616.0) : 0;
}

/* The kept elements' factor 1/(1−p), rounded to float once. */
static inline TN_DROPOUT_HD float tn_dropout_keep_scale(double p) { return (float)(1.0 / (1.0 - p)); }

/* 1 when element i survives under key (thr from tn_dropout_threshold). */
static inline TN_DROPOUT_HD int tn_dropout_keeps(uint64_t key, uint64_t i, uint64_t thr) {
    return tn_dropout_mix64(key + i * 0x9e3779b97f4a7c15ull) >= thr;
}

#endif
