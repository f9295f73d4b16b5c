#include "quant/snap.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TN_X86 1
#else
#define TN_X86 0
#endif

static int simd_enabled = 1;

void tn_quant_set_simd(int on) { simd_enabled = on != 0; }

int tn_quant_have_avx2(void) {
#if TN_X86
    /* libgcc fills the CPU model in a constructor, so this is a plain read, safe from any thread. */
    return simd_enabled && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/* ---- scalar reference ------------------------------------------------------------------------------ */

void tn_grid_snap_ref(const tn_grid *g, const float *x, int64_t n, float s, uint8_t *idx) {
    for (int64_t i = 0; i < n; i++) idx[i] = (uint8_t)tn_grid_snap_one(g, x[i] / s);
}

void tn_grid_dequant_ref(const tn_grid *g, const uint8_t *idx, int64_t n, float s, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = s * g->v[idx[i]];
}

/* ---- AVX2 ------------------------------------------------------------------------------------------ */
#if TN_X86

/* 8 int32 lanes (each 0..255) to 8 bytes. */
__attribute__((target("avx2"))) static inline void store8_u8(uint8_t *dst, __m256i v) {
    __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)dst, _mm_packus_epi16(p16, p16));
}

/* Indices for 8 values, idx = #{ k : x >= up[k] }, then NaN -> zero_idx and a clip to n-1 (+inf also
 * counts the +inf padding).
 *   n <= 8: compare against every threshold (n-1 compares, no memory traffic).
 *   larger (search size P >= 16): two levels. With bs = P/8, B = #{ b in 1..7 : x >= up[b·bs] } picks the
 *   lane's block (thresholds are sorted, so blocks below B lie entirely <= x and blocks above entirely
 *   > x); then idx = bs·B + #{ m < bs : x >= up[B·bs + m] }, each up[B·bs + m] fetched for all lanes at
 *   once by an in-register permute of row m of up_t. 7 + bs compares instead of n-1, no gathers (which are
 *   slow on many cores: a gathered binary search measured 2x slower than a linear scan for prime81). */
__attribute__((target("avx2"))) static inline __m256i snap8(const tn_grid *g, __m256 x) {
    __m256i idx = _mm256_setzero_si256();
    if (g->search_size < 16) {
        for (int j = 0; j < g->n - 1; j++) {
            __m256 ge = _mm256_cmp_ps(x, _mm256_broadcast_ss(&g->up[j]), _CMP_GE_OQ);
            idx = _mm256_sub_epi32(idx, _mm256_castps_si256(ge)); /* mask is -1 where true */
        }
    } else {
        const int bs = g->search_size >> 3;
        __m256i blk = _mm256_setzero_si256();
        for (int b = 1; b < 8; b++) {
            __m256 ge = _mm256_cmp_ps(x, _mm256_broadcast_ss(&g->up[b * bs]), _CMP_GE_OQ);
            blk = _mm256_sub_epi32(blk, _mm256_castps_si256(ge));
        }
        __m256i cnt = _mm256_setzero_si256();
        for (int m = 0; m < bs; m++) {
            __m256 t = _mm256_permutevar8x32_ps(_mm256_loadu_ps(&g->up_t[m * 8]), blk);
            cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(x, t, _CMP_GE_OQ)));
        }
        idx = _mm256_add_epi32(_mm256_mullo_epi32(blk, _mm256_set1_epi32(bs)), cnt);
        idx = _mm256_min_epi32(idx, _mm256_set1_epi32(g->n - 1));
    }
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(idx, _mm256_set1_epi32(g->zero_idx), nan);
}

__attribute__((target("avx2"))) static void snap_avx2(const tn_grid *g, const float *x, int64_t n, float s,
                                                       uint8_t *idx) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) store8_u8(idx + i, snap8(g, _mm256_div_ps(_mm256_loadu_ps(x + i), vs)));
    for (; i < n; i++) idx[i] = (uint8_t)tn_grid_snap_one(g, x[i] / s);
}

__attribute__((target("avx2"))) static void dequant_avx2(const tn_grid *g, const uint8_t *idx, int64_t n, float s,
                                                          float *out) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i vi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(idx + i)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(vs, _mm256_i32gather_ps(g->v, vi, 4)));
    }
    for (; i < n; i++) out[i] = s * g->v[idx[i]];
}
#endif

/* ---- dispatch -------------------------------------------------------------------------------------- */

void tn_grid_snap(const tn_grid *g, const float *x, int64_t n, float s, uint8_t *idx) {
#if TN_X86
    if (tn_quant_have_avx2()) {
        snap_avx2(g, x, n, s, idx);
        return;
    }
#endif
    tn_grid_snap_ref(g, x, n, s, idx);
}

void tn_grid_dequant(const tn_grid *g, const uint8_t *idx, int64_t n, float s, float *out) {
#if TN_X86
    if (tn_quant_have_avx2()) {
        dequant_avx2(g, idx, n, s, out);
        return;
    }
#endif
    tn_grid_dequant_ref(g, idx, n, s, out);
}

int tn_quantize_tensor(const float *W, int64_t rows, int64_t cols, const tn_grid *g, tn_scale_rule rule, int per_row,
                       float *out_Wq, uint8_t *out_idx, float *out_scales) {
    if (!W || !g) return tn_err("quantize: NULL argument");
    if (rows <= 0 || cols <= 0) return tn_err("quantize: empty tensor [%lld, %lld]", (long long)rows, (long long)cols);
    float one_scale;
    float *scales = out_scales;
    if (!scales) {
        scales = per_row ? malloc((size_t)rows * sizeof(float)) : &one_scale;
        if (!scales) return tn_err("quantize: out of memory");
    }
    if (tn_scale_compute(W, rows, cols, rule, per_row, scales) != 0) {
        if (scales != out_scales && scales != &one_scale) free(scales);
        return tn_err_prefix("quantize");
    }
    uint8_t *tmp = NULL;
    if (out_Wq && !out_idx) { /* indices are needed to build W_q: one row of scratch per row */
        tmp = malloc((size_t)rows * (size_t)cols);
        if (!tmp) {
            if (scales != out_scales && scales != &one_scale) free(scales);
            return tn_err("quantize: out of memory for %lld indices", (long long)(rows * cols));
        }
    }
    uint8_t *ix = out_idx ? out_idx : tmp;
    if (ix) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
        for (int64_t r = 0; r < rows; r++) {
            const float s = scales[per_row ? r : 0];
            tn_grid_snap(g, W + r * cols, cols, s, ix + r * cols);
            if (out_Wq) tn_grid_dequant(g, ix + r * cols, cols, s, out_Wq + r * cols);
        }
    }
    free(tmp);
    if (scales != out_scales && scales != &one_scale) free(scales);
    return 0;
}
