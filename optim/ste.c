#include "optim/ste.h"

#include <string.h>

void tn_ste_blend(const float *W, const float *Wq, int64_t n, float lambda, float *out) {
    if (lambda >= 1.0f) {
        if (out != Wq) memmove(out, Wq, (size_t)n * sizeof(float));
        return;
    }
    if (!(lambda > 0.0f)) { /* also NaN: never blend with a NaN factor */
        if (out != W) memmove(out, W, (size_t)n * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = W[i] + lambda * (Wq[i] - W[i]);
}
