/* Run-time CPU feature detection and the TN_KERNELS cap (see cpu_features.h). */
#include "kernels/cpu/cpu_features.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/error.h"
#include "core/log.h"

static tn_isa detect_best(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!avx2) return TN_ISA_SCALAR;
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (avx512) return TN_ISA_AVX512;
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    if (__builtin_cpu_supports("avxvnni")) return TN_ISA_AVXVNNI;
#endif
    return TN_ISA_AVX2;
#else
    return TN_ISA_SCALAR;
#endif
}

int tn_cpu_has_avxvnni(void) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    return __builtin_cpu_supports("avxvnni");
#else
    return 0;
#endif
}

int tn_cpu_has_f16c(void) {
#if defined(__x86_64__) || defined(__i386__)
    static int has = -1; /* cpuid is slow (a VM exit in a guest): asked once; benign race as g_best's */
    if (has < 0) {
        unsigned a, b, c, d;
        has = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C); /* CPUID.1:ECX bit 29 */
    }
    return has;
#else
    return 0;
#endif
}

/* -1 = not yet computed. Written once (benign race: every thread computes the same value). */
static int g_best = -1;
static int g_env_cap = -1;
static int g_code_cap = -1;

tn_isa tn_cpu_best_isa(void) {
    if (g_best < 0) g_best = (int)detect_best();
    return (tn_isa)g_best;
}

static tn_isa env_cap(void) {
    if (g_env_cap < 0) {
        tn_isa cap = TN_ISA_AVX512;
        const char *s = getenv("TN_KERNELS");
        if (s && *s && tn_isa_parse(s, &cap) != 0) {
            tn_log_warn("TN_KERNELS=%s is not one of scalar|avx2|avxvnni|avx512; ignored", s);
            cap = TN_ISA_AVX512;
        }
        g_env_cap = (int)cap;
    }
    return (tn_isa)g_env_cap;
}

tn_isa tn_kernels_isa(void) {
    int isa = (int)tn_cpu_best_isa();
    int cap = g_code_cap >= 0 ? g_code_cap : (int)env_cap();
    if (cap < isa) isa = cap;
    /* avxvnni is a superset of avx2 only; an AVX-512 machine without AVX-VNNI capped at avxvnni runs
     * the plain AVX2 path. */
    if (isa == TN_ISA_AVXVNNI && tn_cpu_best_isa() == TN_ISA_AVX512) {
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
        if (!__builtin_cpu_supports("avxvnni")) isa = TN_ISA_AVX2;
#else
        isa = TN_ISA_AVX2;
#endif
    }
    return (tn_isa)isa;
}

tn_isa tn_kernels_set_isa(tn_isa cap) {
    g_code_cap = (int)cap;
    return tn_kernels_isa();
}

void tn_kernels_reset_isa(void) { g_code_cap = -1; }

const char *tn_isa_name(tn_isa isa) {
    switch (isa) {
    case TN_ISA_SCALAR: return "scalar";
    case TN_ISA_AVX2: return "avx2";
    case TN_ISA_AVXVNNI: return "avxvnni";
    case TN_ISA_AVX512: return "avx512";
    }
    return "?";
}

int tn_isa_parse(const char *s, tn_isa *out) {
    static const char *names[] = {"scalar", "avx2", "avxvnni", "avx512"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (tn_isa)i;
            return 0;
        }
    return tn_err("unknown kernel level '%s' (scalar, avx2, avxvnni, avx512)", s);
}
