/* Run-time dispatch of the CPU's vector loops (kernels/cpu/ops_cpu.c, kernels/cpu/kd.c).
 * The portable build targets baseline x86-64 (SSE2). The exp-heavy row loops (softmax over the vocabulary
 * and over attention rows, SiLU, the distillation KL) and the gradient-norm sum are compiled three times and
 * the widest one the CPU supports is picked when the program loads (GCC target_clones; the x86-64-v4 and -v3
 * levels are chosen by CPU features, where arch=<cpu name> would match only that CPU model).
 * `omp simd` lets the compiler reorder the reductions, so sums are taken in vector lanes: a result does not
 * depend on the thread count, but it may differ in the last bits between CPUs of different vector width (as
 * OpenBLAS's sgemm does anyway); exact resume holds on the same machine. */
#ifndef TN_KERNELS_CPU_VEC_CLONES_H
#define TN_KERNELS_CPU_VEC_CLONES_H

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TN_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TN_VEC_CLONES
#endif

/* max of x[0..n) (-inf for n = 0); a NaN element is never picked (x > m ? x : m). */
TN_VEC_CLONES static inline float tn_vec_max(const float *x, int64_t n) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

#endif
