/* tn_expf: exp(x) in float, written so that the compiler vectorizes it inside `#pragma omp simd` loops,
 * and shared with the CUDA kernels (__host__ __device__ under nvcc), so that the CPU and the GPU take the
 * same exponentials in SwiGLU and cross-entropy.
 *
 * Why: libm's expf is an opaque call, and glibc only declares its vector variants (libmvec) under
 * -ffast-math, which trinity does not use. Softmax over a 49k vocabulary and the SiLU of every MLP
 * activation call exp about 10^8 times per training step of a 135M model; one call at a time, that was
 * 4-5% of the step.
 *
 * Method (Cody-Waite range reduction, as in Cephes expf):
 *   x = k·ln2 + r with k = round(x / ln2), |r| <= ln2/2; ln2 split into a short high part (exact k·ln2_hi
 *   for |k| <= 128) and the remainder;
 *   e^r by its Taylor polynomial of degree 7 (truncation error r^8/8! < 6e-9 relative at |r| = ln2/2);
 *   2^k built from exponent bits as 2^(k/2) · 2^(k - k/2), so that every k in [-126, 128] is exact.
 * Accuracy: max relative error 1.03e-7 (1.22 ulp, at x = 59.265) against exp() in double, checked on every
 * float in [-87.3, 88.7] with |x| >= 2^-30
 * (tests/unit/test_vexp.c checks 1e-6 on a dense sweep).
 * Edge cases: x < -87.3365 (e^x below FLT_MIN) gives 0; x > 88.7228 (ln FLT_MAX) gives +inf; NaN gives NaN.
 */
#ifndef TN_KERNELS_VEXP_H
#define TN_KERNELS_VEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* always_inline: GCC does not inline a function into a caller compiled for another -march (the
 * target_clones of kernels/cpu/ops_cpu.c) unless told to, and a call per element defeats the point. */
#if defined(__CUDACC__)
#define TN_VEXP_INLINE static inline __host__ __device__ __attribute__((always_inline))
#elif defined(__GNUC__)
#define TN_VEXP_INLINE static inline __attribute__((always_inline))
#else
#define TN_VEXP_INLINE static inline
#endif

/* 2^k for k in [-126, 127] from the exponent field */
TN_VEXP_INLINE float tn_vexp_pow2i(int32_t k) {
    const int32_t bits = (k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

TN_VEXP_INLINE float tn_expf(float x) {
    const float lo = -87.336548f, hi = 88.722839f;
    /* NaN fails both comparisons and is passed through at the end; clamp so k stays in [-126, 128] */
    float xc = x > lo ? x : lo;
    xc = xc < hi ? xc : hi;
    xc = x == x ? xc : 0.0f;
    /* round-to-nearest by the 1.5·2^23 trick (SSE2 has no round instruction) */
    const float shifter = 12582912.0f;
    const float shifted = xc * 1.44269504088896341f + shifter; /* rounded to float here, also on x87 */
    const float kf = shifted - shifter;
    float r = xc - kf * 0.693145751953125f; /* ln2_hi: 16 significant bits, so kf·ln2_hi is exact */
    r = r - kf * 1.42860682030941723e-06f;  /* ln2 - ln2_hi */
    /* e^r, Horner, coefficients 1/n! */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t k = (int32_t)kf, k1 = k / 2;
    float y = p * tn_vexp_pow2i(k1) * tn_vexp_pow2i(k - k1);
    y = x > lo ? y : 0.0f;
    y = x > hi ? INFINITY : y;
    return x == x ? y : x;
}

#endif
