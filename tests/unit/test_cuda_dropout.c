/* The ops table's dropout (kernels/ops.h; LoRA's adapter input, model/lora.h) on the device (kernels/cuda/model.cu)
 * against the CPU (kernels/cpu/ops_cpu.c tn_op_dropout):
 *   - BIT FOR BIT for n = 1, 7, 1000, 70001 and 2^20 + 1001 (one block, many, the grid-stride loop past the
 *     4096-block cap), p = 0.05, 0.5, 0.9 and three keys, out of place and in place (out = x);
 *   - the mask is the documented hash (kernels/dropout_math.h), checked against this file's own SplitMix64:
 *     kept elements are exactly x · (float)(1/(1−p)), dropped ones exactly 0;
 *   - statistics: the kept fraction within 5 standard deviations of 1 − p (n = 70001 and 2^20 + 1001), and
 *     two keys draw different masks while one key redraws the same;
 *   - p = 0 is the identity, bit for bit, on both devices;
 *   - p = 1, p < 0, NaN and n < 0 fail with a message on both.
 * Without CUDA (or its emulator) or a device: skipped. */
#include "cuda_test.h"

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA
/* The mask as docs define it, written out independently of kernels/dropout_math.h. */
static int ref_keeps(uint64_t key, uint64_t i, double p) {
    uint64_t z = key + i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return p <= 0 || z >= (uint64_t)(p * 18446744073709551616.0);
}

static int64_t bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

/* CPU and device on the same input; returns the number of kept elements (checked against the reference). */
static int64_t compare(const float *x, int64_t n, uint64_t key, double p, int in_place) {
    const tn_ops *cpu = tn_ops_cpu(), *dev = tn_cuda_ops();
    const size_t bytes = sizeof(float) * (size_t)n;
    float *hc = malloc(bytes), *hd = malloc(bytes);
    float *dx = tn_test_dev_copy(x, bytes), *dout = in_place ? dx : tn_cuda_alloc(bytes);
    if (!hc || !hd || !dx || !dout) {
        CHECKF(0, "allocation of %lld floats", (long long)n);
        return -1;
    }
    memcpy(hc, x, bytes);
    CHECK_OK(cpu->dropout(hc, in_place ? hc : x, n, key, p));
    CHECK_OK(dev->dropout(dout, dx, n, key, p));
    CHECK_OK(tn_cuda_download(hd, dout, bytes));
    const int64_t d = bit_diffs(hc, hd, n);
    CHECKF(d == 0, "n %lld p %g key %llx%s: %lld floats differ between CPU and device", (long long)n, p,
           (unsigned long long)key, in_place ? " in place" : "", (long long)d);
    const float keep = (float)(1.0 / (1.0 - p));
    int64_t kept = 0, wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        const int k = ref_keeps(key, (uint64_t)i, p);
        kept += k;
        const float want = k ? x[i] * keep : 0.0f;
        wrong += memcmp(&want, hc + i, sizeof(float)) != 0;
    }
    CHECKF(wrong == 0, "n %lld p %g: %lld elements differ from the documented mask", (long long)n, p, (long long)wrong);
    tn_cuda_free(dx);
    if (!in_place) tn_cuda_free(dout);
    free(hc);
    free(hd);
    return kept;
}

static void test_size(int64_t n) {
    tn_rng r;
    tn_rng_seed(&r, 11 + (uint64_t)n);
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(&r) + 3.0f; /* none is exactly 0 */
    static const double ps[3] = {0.05, 0.5, 0.9};
    static const uint64_t keys[3] = {0, 0x0123456789abcdefull, 0xfffffffffffffff1ull};
    double worst_z = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            const int64_t kept = compare(x, n, keys[b], ps[a], (a + b) % 2);
            if (n >= 70001) { /* binomial: kept ~ n(1−p) ± sqrt(n p (1−p)) */
                const double mu = (double)n * (1 - ps[a]), sd = sqrt((double)n * ps[a] * (1 - ps[a]));
                const double z = fabs((double)kept - mu) / sd;
                CHECKF(z < 5, "n %lld p %g: %lld kept, expected %.0f ± %.0f", (long long)n, ps[a], (long long)kept, mu, sd);
                if (z > worst_z) worst_z = z;
            }
        }
    /* p = 0: the identity, on both devices */
    const tn_ops *cpu = tn_ops_cpu();
    float *h = malloc(sizeof(float) * (size_t)n), *dx = tn_test_dev_copy(x, sizeof(float) * (size_t)n);
    CHECK_OK(cpu->dropout(h, x, n, 42, 0.0));
    CHECK(bit_diffs(h, x, n) == 0);
    CHECK_OK(tn_cuda_ops()->dropout(dx, dx, n, 42, 0.0));
    CHECK_OK(tn_cuda_download(h, dx, sizeof(float) * (size_t)n));
    CHECK(bit_diffs(h, x, n) == 0);
    tn_cuda_free(dx);
    free(h);
    free(x);
    char stats[64] = "";
    if (n >= 70001) snprintf(stats, sizeof stats, "; kept fraction within %.2f sd of 1 - p", worst_z);
    printf("n = %lld: 3 p x 3 keys bit for bit, the documented mask%s; p = 0 identity\n", (long long)n, stats);
}

/* Same key, same mask; another key, another mask (n = 4096, p = 0.5: equal masks by chance ~2^-4096). */
static void test_keys(void) {
    enum { N = 4096 };
    static float x[N], a[N], b[N], c[N];
    for (int i = 0; i < N; i++) x[i] = 1.0f;
    const tn_ops *cpu = tn_ops_cpu();
    CHECK_OK(cpu->dropout(a, x, N, 7, 0.5));
    CHECK_OK(cpu->dropout(b, x, N, 7, 0.5));
    CHECK_OK(cpu->dropout(c, x, N, 8, 0.5));
    int agree = 0;
    for (int i = 0; i < N; i++) agree += (a[i] != 0) == (c[i] != 0);
    CHECK(!memcmp(a, b, sizeof a));
    CHECKF(agree > N / 2 - 5 * 32 && agree < N / 2 + 5 * 32, "keys 7 and 8: %d of %d mask entries agree", agree, N);
    printf("keys: one key redraws its mask; keys 7 and 8 agree on %d of %d entries (independent: ~%d)\n", agree, N, N / 2);
}

static void test_errors(void) {
    const tn_ops *ops[2] = {tn_ops_cpu(), tn_cuda_ops()};
    float *d = tn_cuda_alloc(16 * sizeof(float)), h[16] = {0};
    for (int k = 0; k < 2; k++) {
        float *buf = k ? d : h;
        CHECK(ops[k]->dropout(buf, buf, 16, 1, 1.0) != 0);
        printf("%s, p = 1: %s\n", ops[k]->name, tn_errmsg());
        CHECK(ops[k]->dropout(buf, buf, 16, 1, -0.1) != 0);
        CHECK(ops[k]->dropout(buf, buf, 16, 1, NAN) != 0);
        CHECK(ops[k]->dropout(buf, buf, -1, 1, 0.5) != 0);
        CHECK_OK(ops[k]->dropout(buf, buf, 0, 1, 0.5));
    }
    tn_cuda_free(d);
}
#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    test_size(1);
    test_size(7);
    test_size(1000);
    test_size(70001);
    test_size((1 << 20) + 1001);
    test_keys();
    test_errors();
#endif
    return tn_test_finish();
}
