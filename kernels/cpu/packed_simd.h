/* What the x86 packed kernels (packed_t2.c, packed_q8.c) share: the target attributes of each dispatch
 * level (kernels/cpu/cpu_features.h; no file is compiled with -march) and the int8 dot-product
 * instruction. Internal to kernels/cpu/. */
#ifndef TN_KERNELS_CPU_PACKED_SIMD_H
#define TN_KERNELS_CPU_PACKED_SIMD_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define TN_X86 1

#define PK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define PK_AVX2 __attribute__((target("avx2,fma")))
#define PK_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define PK_INLINE static inline __attribute__((always_inline))

/* vpdpbusd through inline asm: acc += dot4(a as u8, b as s8) per int32 lane, wrapping. With the
 * intrinsics, GCC 12 copies every accumulator to a fresh register (and spills some) on each iteration of
 * the inner loop, costing ~10%; the "+v" constraint keeps the accumulator in place. b may come straight
 * from memory. */
PK_INLINE PK_AVX512 __m512i pk_dp512(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "vm"(b));
    return acc;
}
/* The VEX (AVX-VNNI) form on 256-bit vectors. */
PK_INLINE PK_AVXVNNI __m256i pk_dp256(__m256i acc, __m256i a, __m256i b) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "xm"(b));
    return acc;
}
/* vpdpwssd, the same for int16 pairs: acc += a0·b0 + a1·b1 per int32 lane (the Q8 / Q4 tables). */
PK_INLINE PK_AVX512 __m512i pk_dpw512(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "vm"(b));
    return acc;
}
PK_INLINE PK_AVXVNNI __m256i pk_dpw256(__m256i acc, __m256i a, __m256i b) {
    __asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(a), "xm"(b));
    return acc;
}

/* Software prefetch for kernels whose rows are 64-byte blocks (T2, Q8). A tile of R consecutive rows is a
 * contiguous R * rb bytes, consumed block column by block column; at each step (R lines) the kernel
 * prefetches the next R lines of the tile 4 tiles ahead into L2, so the whole slice is fetched linearly, well ahead of use. Streaming weights from DRAM (as in
 * decoding), this took 2 threads from ~19 to ~23 GB/s for 2048x2048 and from ~15 to ~24 GB/s for
 * 2048x5632 on the development machine, against ~14 GB/s with the hardware prefetchers alone (which do
 * not follow 4 interleaved short rows well). Prefetches past the end of the buffer are harmless.
 * The gemv kernels also move the next tile from L2 into L1 (PK_PF_NEAR, the same pattern one tile ahead):
 * the loads then rarely wait on an L2 hit, and the core keeps more memory requests in flight. Decoding's
 * T2 products, streamed by 2 threads, went from 30-33 to 33-37 GB/s with it (a T0 prefetch 4 tiles ahead
 * instead of the L2 one was slower; the distance of either, 2 to 8 tiles, hardly matters). */
#define PK_PF_TILES 4
/* The address is formed in integers: near the end of the weights it points past them, which a prefetch
 * tolerates but C pointer arithmetic does not. */
#define PK_PF_ADDR(w, off) ((const char *)((uintptr_t)(w) + (off)))
#define PK_PF(w, rb, R, b, r) \
    _mm_prefetch(PK_PF_ADDR(w, (size_t)PK_PF_TILES * (R) * (rb) + (size_t)(b) * 64 * (R) + 64 * (r)), _MM_HINT_T1)
#define PK_PF_NEAR(w, rb, R, b, r) \
    _mm_prefetch(PK_PF_ADDR(w, (size_t)(R) * (rb) + (size_t)(b) * 64 * (R) + 64 * (r)), _MM_HINT_T0)

/* A tile function TILE(w, rb, R, T, nbf, has_tail, X, XT, d) of R rows called with the run-time token count
 * T (1..4) as a compile-time constant, so that its loops over tokens unroll (the T2 and Q8 range loops). */
#define PK_TILE_T4(TILE, R)                                                                                    \
    switch (T) {                                                                                               \
    case 4: TILE(w, rb, R, 4, nbf, tail != 0, X, XT, d); break;                                                \
    case 3: TILE(w, rb, R, 3, nbf, tail != 0, X, XT, d); break;                                                \
    case 2: TILE(w, rb, R, 2, nbf, tail != 0, X, XT, d); break;                                                \
    default: TILE(w, rb, R, 1, nbf, tail != 0, X, XT, d); break;                                               \
    }

#endif

#endif
