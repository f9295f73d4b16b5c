#include "optim/grokfast.h"

void tn_grokfast_apply(float *g, float *ema, int64_t n, float alpha, float lambda, int first) {
    const float keep = alpha, take = 1.0f - alpha;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], e = first ? gi : ema[i] * keep + gi * take;
        ema[i] = e;
        g[i] = gi + e * lambda;
    }
}
