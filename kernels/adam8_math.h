/* The per-element arithmetic of 8-bit AdamW that the CPU (optim/adamw8.c) and the GPU (kernels/cuda/adam8.cu)
 * share: the formula of the two code tables and the nearest-code search. The scheme, its constants and the
 * state layout are documented once, in optim/adamw8.h; this header is plain C, and every inline function is
 * __host__ __device__ under nvcc, so both devices build the very same tables and pick the very same codes. */
#ifndef TN_KERNELS_ADAM8_MATH_H
#define TN_KERNELS_ADAM8_MATH_H

#include <stdint.h>

#if defined(__CUDACC__)
#define TN_ADAM8_HD __host__ __device__
#else
#define TN_ADAM8_HD
#endif

/* Elements per quantization block (one absmax for m and one for v per block; the last block may be short). */
#define TN_ADAM8_BLOCK 2048
/* Entries of each code table (8-bit codes). */
#define TN_ADAM8_CODES 256
/* The code of 0: in the signed table (m) and in the unsigned table (v). */
#define TN_ADAM8_M_ZERO 127
#define TN_ADAM8_V_ZERO 0

/* The dynamic magnitude of index c (1 <= c < 2^bits, bits <= 8) in a table of 2^bits − 1 magnitudes:
 *   e = floor(log2 c) (the position of c's leading one bit), n = 2^e, j = c − n + 1 (1..n),
 *   k = bits − 1 − e (the decade: values in (10^-(k+1), 10^-k]),
 *   value = 10^-k · (0.1 + 0.9 · j / n) = (n + 9 j) / (10^(k+1) · n).
 * Both integers are exact in float (numerator <= 1280, denominator = 2^(e+k+1) · 5^(k+1) with 5^8 < 2^24),
 * so the value is one IEEE float division: the correctly rounded float of the rational, on every device. */
static inline TN_ADAM8_HD float tn_adam8_magnitude(int bits, int c) {
    int e = 0;
    while ((c >> (e + 1)) != 0) e++;
    const int n = 1 << e, j = c - n + 1, k = bits - 1 - e;
    int32_t den = n;
    for (int i = 0; i <= k; i++) den *= 10;
    return (float)(n + 9 * j) / (float)den;
}

/* Entry `code` (0..255, ascending) of the signed table (m: is_signed = 1) or the unsigned one (v: 0).
 *   unsigned: code 0 → 0; code c >= 1 → magnitude(8, c)                      (1e-7 .. 1, 8 decades)
 *   signed:   code c < 127 → −magnitude(7, 127 − c); 127 → 0; 128 → +magnitude(8, 1) = +1e-7 (the spare
 *             code); c >= 129 → +magnitude(7, c − 128)                         (±1e-6 .. ±1, 7 decades) */
static inline TN_ADAM8_HD float tn_adam8_code_value(int is_signed, int code) {
    if (!is_signed) return code == 0 ? 0.0f : tn_adam8_magnitude(8, code);
    if (code < TN_ADAM8_M_ZERO) return -tn_adam8_magnitude(7, TN_ADAM8_M_ZERO - code);
    if (code == TN_ADAM8_M_ZERO) return 0.0f;
    if (code == TN_ADAM8_M_ZERO + 1) return tn_adam8_magnitude(8, 1);
    return tn_adam8_magnitude(7, code - (TN_ADAM8_M_ZERO + 1));
}

/* The code of u: the number of the 255 ascending midpoints mid[] that are < u (so u exactly on a midpoint
 * takes the lower code; NaN gives code 0). Eight branchless binary-search steps. */
static inline TN_ADAM8_HD int tn_adam8_nearest(const float *mid, float u) {
    int c = 0;
    for (int s = TN_ADAM8_CODES / 2; s > 0; s >>= 1)
        if (u > mid[c + s - 1]) c += s;
    return c;
}

/* The code of x in a block of absmax a > 0: the nearest code of u = x / a (IEEE division); in the unsigned
 * table (is_v) a positive x never takes code 0 (the code of 0) but at least code 1, the smallest positive
 * entry (optim/adamw8.h, QUANTIZE, says why). */
static inline TN_ADAM8_HD int tn_adam8_quantize1(const float *mid, int is_v, float x, float a) {
    const int c = tn_adam8_nearest(mid, x / a);
    return is_v && c == TN_ADAM8_V_ZERO && x > 0.0f ? TN_ADAM8_V_ZERO + 1 : c;
}

#endif
