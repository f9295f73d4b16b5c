/* Run-time CPU feature detection for the packed kernels (kernels/packed.h). No file is compiled with
 * -march: each SIMD function carries __attribute__((target(...))) and is only called when the CPU has
 * the features (checked here with __builtin_cpu_supports).
 *
 * Levels, each including the ones below it:
 *   scalar   portable C, the reference
 *   avx2     AVX2 + FMA (int8 dot products with vpmaddubsw/vpmaddwd)
 *   avxvnni  AVX2 + AVX-VNNI (vpdpbusd on 256-bit vectors)
 *   avx512   AVX-512 F/BW/VL + AVX512-VNNI (vpdpbusd on 512-bit vectors)
 * The environment variable TN_KERNELS=scalar|avx2|avxvnni|avx512 caps the level (read once); asking
 * for a level the CPU lacks gives the best one it has below that. */
#ifndef TN_KERNELS_CPU_FEATURES_H
#define TN_KERNELS_CPU_FEATURES_H

typedef enum { TN_ISA_SCALAR = 0, TN_ISA_AVX2 = 1, TN_ISA_AVXVNNI = 2, TN_ISA_AVX512 = 3 } tn_isa;

/* The best level this CPU supports. */
tn_isa tn_cpu_best_isa(void);
/* The level the kernels use now: min(best, TN_KERNELS cap, tn_kernels_set_isa cap). */
tn_isa tn_kernels_isa(void);
/* Cap the level from code (tests, benchmarks), replacing the environment cap; the result is still
 * limited by the CPU. Returns the level now in effect. */
tn_isa tn_kernels_set_isa(tn_isa cap);
/* Drop the cap set by tn_kernels_set_isa (the TN_KERNELS cap applies again). */
void tn_kernels_reset_isa(void);
const char *tn_isa_name(tn_isa isa);
/* Single features the levels do not imply: AVX-VNNI (its VEX form; an AVX-512 CPU may lack it, e.g. Zen 4)
 * and F16C (the Q4 kernels' fp16 scales). 0 where unknown (AVX-VNNI under clang, which cannot query it). */
int tn_cpu_has_avxvnni(void);
int tn_cpu_has_f16c(void);
/* Parse "scalar" | "avx2" | "avxvnni" | "avx512"; 0 on success, -1 (tn_err) otherwise. */
int tn_isa_parse(const char *s, tn_isa *out);

#endif
