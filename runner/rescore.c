/* runner/rescore.h: the selection of the candidates. The products are the engine's own (runner/infer.c). */
#include "runner/rescore.h"

#include <math.h>

/* "a ranks before b": larger first, NaN last; ties keep the earlier index (insertion goes after equals). */
static int before(float a, float b) { return a > b || (isnan(b) && !isnan(a)); }

int tn_top_indices(const float *x, int64_t n, int k, int32_t *idx) {
    if (k <= 0 || n <= 0) return 0;
    int m = 0; /* idx[0..m) sorted, best first */
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (m == k && !before(v, x[idx[k - 1]])) continue; /* the common case: not among the best */
        int j = m < k ? m++ : k - 1;                       /* the slot it enters from */
        while (j > 0 && before(v, x[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = (int32_t)i;
    }
    return m;
}
