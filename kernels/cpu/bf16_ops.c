#include "kernels/cpu/bf16_ops.h"
#include "kernels/bf16.h"

void tn_op_bf16_from_f32(uint16_t *out, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = tn_bf16_round_nearest(x[i]);
}

void tn_op_bf16_to_f32(float *out, const uint16_t *x, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = tn_bf16_widen(x[i]);
}

void tn_op_bf16_round_stochastic(uint16_t *out, const float *x, int64_t n, uint64_t seed, uint64_t counter) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = tn_bf16_round_stochastic(x[i], seed, counter + (uint64_t)i);
}

void tn_op_bf16_accumulate(uint16_t *g, const float *d, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) g[i] = tn_bf16_add_nearest(tn_bf16_widen(g[i]) + d[i]);
}

double tn_op_bf16_sumsq(const uint16_t *x, int64_t n) {
    enum { CHUNKS = 64 }; /* fixed chunks, added in order: the same sum for any thread count */
    double part[CHUNKS];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < CHUNKS; c++) {
        const int64_t i0 = n * c / CHUNKS, i1 = n * (c + 1) / CHUNKS;
        double s = 0;
        for (int64_t i = i0; i < i1; i++) {
            const double v = (double)tn_bf16_widen(x[i]);
            s += v * v;
        }
        part[c] = s;
    }
    double s = 0;
    for (int c = 0; c < CHUNKS; c++) s += part[c];
    return s;
}
