/* Shared inline math of the T2 (ternary) kernels and of int8 activation quantization, compiled both as C
 * (CPU code, tests) and as CUDA (the .cu files of kernels/cuda/: every function is __host__ __device__ there), so the
 * CPU and GPU backends use one definition of each formula. Layout and rules: docs/PACKING.md,
 * kernels/packed.h. Nothing here allocates or fails.
 *
 * Exactness: T2 sums are exact integers; the float formulas below are single IEEE multiplies/divides with
 * no additions (so no FMA contraction can change them) and rintf, so a device build without fast-math
 * (the default: -prec-div=true, -ftz=false) gives the same bits as the CPU. */
#ifndef TN_KERNELS_T2_MATH_H
#define TN_KERNELS_T2_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#ifndef __CUDA_ARCH__
#include <string.h>
#endif

#if defined(__CUDACC__)
#define TN_T2_HD __host__ __device__
#else
#define TN_T2_HD
#endif

/* ---- T2 bytes -----------------------------------------------------------------------------------
 * Block of 256 columns = 64 bytes; byte j holds columns j, 64+j, 128+j, 192+j (group k = 0..3) in bits
 * 2k..2k+1, each as the code w+1 in {0, 1, 2} (3 is invalid). */

/* Byte offset of column col inside its row, and the bit shift of its code in that byte. */
static inline TN_T2_HD size_t tn_t2_col_byte(int64_t col) { return (size_t)(64 * (col / 256) + col % 64); }
static inline TN_T2_HD int tn_t2_col_shift(int64_t col) { return (int)(2 * ((col % 256) / 64)); }

/* Code (0..3) of group k (0..3) of one byte. */
static inline TN_T2_HD int tn_t2_code(uint8_t byte, int k) { return (byte >> (2 * k)) & 3; }

/* The four weights of one byte: w[k] = code_k - 1 for the columns j, 64+j, 128+j, 192+j. Returns 0, or -1
 * if a code is 3 (w[k] is then 2: products on a corrupt buffer are unspecified but memory-safe). */
static inline TN_T2_HD int tn_t2_decode_byte(uint8_t byte, int8_t w[4]) {
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        int c = tn_t2_code(byte, k);
        bad |= c == 3;
        w[k] = (int8_t)(c - 1);
    }
    return bad ? -1 : 0;
}

/* Four bytes at once (little-endian word = bytes j..j+3 of a block): byte i of the result is the code of
 * group k of byte i of the word. */
static inline TN_T2_HD uint32_t tn_t2_word_codes(uint32_t word, int k) { return (word >> (2 * k)) & 0x03030303u; }

/* sum_i (code_i - 1) * q_i over the four bytes i of `codes` (from tn_t2_word_codes) and of x4 (four int8
 * activations, little-endian). On the device: one per-byte subtract and one dp4a. */
static inline TN_T2_HD int32_t tn_t2_dot4(uint32_t codes, uint32_t x4) {
#ifdef __CUDA_ARCH__
    return __dp4a((int)__vsub4(codes, 0x01010101u), (int)x4, 0);
#else
    int32_t s = 0;
    for (int i = 0; i < 4; i++) s += ((int32_t)((codes >> (8 * i)) & 3u) - 1) * (int32_t)(int8_t)(uint8_t)(x4 >> (8 * i));
    return s;
#endif
}

/* Word i (bytes 4i..4i+3) of a packed row. The device reads it with one 32-bit load: the row must be
 * 4-byte aligned (it is whenever the buffer is, as row_bytes is a multiple of 64). */
static inline TN_T2_HD uint32_t tn_t2_load_w4(const uint8_t *row, int64_t i) {
#ifdef __CUDA_ARCH__
    return *(const uint32_t *)(row + 4 * i);
#else
    uint32_t v;
    memcpy(&v, row + 4 * i, 4);
    return v;
#endif
}

/* Activations x[c .. c+3] of a row of `cols` as a little-endian word; entries at or past cols read as 0
 * (never loaded). One 32-bit load when the four are in range and 4-byte aligned, else byte by byte. */
static inline TN_T2_HD uint32_t tn_t2_load_x4(const int8_t *x, int64_t c, int64_t cols) {
    if (c + 4 <= cols && ((uintptr_t)(x + c) & 3u) == 0) {
#ifdef __CUDA_ARCH__
        return *(const uint32_t *)(x + c);
#else
        uint32_t v;
        memcpy(&v, x + c, 4);
        return v;
#endif
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        if (c + i < cols) v |= (uint32_t)(uint8_t)x[c + i] << (8 * i);
    return v;
}

/* Partial dot product of one packed row with xq[cols], as one of `nlanes` lanes computes it: lane takes
 * the words lane, lane + nlanes, ... of the row (16 words per block; word i covers bytes 4(i%16)..+3 of
 * block i/16, i.e. columns 256(i/16) + 64k + 4(i%16) + 0..3 for k = 0..3). The sum over all lanes is
 * sum_c w[c] * xq[c], exact. The CUDA kernel runs it with nlanes = 32 (one warp per row). */
static inline TN_T2_HD int32_t tn_t2_lane_dot(const uint8_t *row, int64_t cols, const int8_t *xq, int lane, int nlanes) {
    int64_t nw = (cols + 255) / 256 * 16;
    int32_t s = 0;
    for (int64_t i = lane; i < nw; i += nlanes) {
        uint32_t v = tn_t2_load_w4(row, i);
        int64_t c0 = 256 * (i / 16) + 4 * (i % 16);
        for (int k = 0; k < 4; k++) s += tn_t2_dot4(tn_t2_word_codes(v, k), tn_t2_load_x4(xq, c0 + 64 * k, cols));
    }
    return s;
}

/* Epilogue of every T2 product: s_r = tensor_scale * row_scale[r] (tensor_scale if row_scale is NULL);
 * y = ((float)isum * xscale) * s_r. */
static inline TN_T2_HD float tn_t2_row_s(float tensor_scale, const float *row_scale, int64_t r) {
    return row_scale ? tensor_scale * row_scale[r] : tensor_scale;
}
static inline TN_T2_HD float tn_t2_out(int32_t isum, float xscale, float s) { return ((float)isum * xscale) * s; }

/* ---- int8 activations, per-token absmax ---------------------------------------------------------
 * amax = max|x|; if !(amax > 0): scale = 0, q = 0. Else inv = 127 / amax (once), q = clamp(rint(x * inv),
 * -127, 127) (round half to even), scale = amax / 127. */
static inline TN_T2_HD float tn_act_inv(float amax) { return 127.0f / amax; }
static inline TN_T2_HD float tn_act_scale(float amax) { return amax / 127.0f; }
static inline TN_T2_HD int8_t tn_act_q(float x, float inv) {
    float v = rintf(x * inv);
    if (v > 127.0f) v = 127.0f;
    if (v < -127.0f) v = -127.0f;
    return (int8_t)v;
}

#endif
