/* The NCCL path of comm/comm.h on the device (kernels/cuda/comm_nccl.cu). Through the emulator NCCL has one
 * rank (kernels/cuda/emu/nccl_emu.h), on a GPU this runs NCCL itself with one rank; either way:
 *   - the vote kernels, bit for bit against the CPU rule: widen int8 -> int32 exactly, saturate int32 ->
 *     [-127, 127] (values far outside int8, the edges ±127, ±128, 0) for n = 1, 255, 256, 257, 100003;
 *   - a communicator of one rank (comm = nccl, no launcher) leaves f32, bf16 and vote buffers bit for bit
 *     as they were (the sum over one rank), including buffers longer than one scratch segment of votes;
 *   - comm = mpi on a CUDA device is refused by name. */
#include "cuda_test.h"

#include "comm/comm.h"
#include "core/error.h"
#include "core/rng.h"
#include "device/device.h"
#include "kernels/bf16.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_CUDA

static void test_vote_kernels(tn_rng *g) {
    const int64_t ns[] = {1, 255, 256, 257, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int64_t n = ns[k];
        int8_t *v = malloc((size_t)n), *back = malloc((size_t)n);
        int32_t *wide = malloc((size_t)n * 4), *sums = malloc((size_t)n * 4);
        const int32_t edges[] = {0, 1, -1, 126, 127, 128, -127, -128, -129, 100000, -100000, INT32_MAX, INT32_MIN};
        for (int64_t i = 0; i < n; i++) {
            v[i] = (int8_t)((int)tn_rng_below(g, 255) - 127);
            sums[i] = i < (int64_t)(sizeof edges / sizeof edges[0]) ? edges[i]
                                                                      : (int32_t)tn_rng_below(g, 2001) - 1000;
        }
        int8_t *dv = tn_test_dev_copy(v, (size_t)n);
        int32_t *dw = tn_cuda_alloc((size_t)n * 4), *ds = tn_test_dev_copy(sums, (size_t)n * 4);
        CHECK_OK(tn_cuda_votes_widen(dv, n, dw));
        CHECK_OK(tn_cuda_download(wide, dw, (size_t)n * 4));
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += wide[i] != v[i];
        CHECKF(bad == 0, "widen n=%lld: %lld differ", (long long)n, (long long)bad);
        CHECK_OK(tn_cuda_votes_saturate(ds, n, dv));
        CHECK_OK(tn_cuda_download(back, dv, (size_t)n));
        bad = 0;
        for (int64_t i = 0; i < n; i++) {
            const int32_t s = sums[i];
            bad += back[i] != (int8_t)(s > 127 ? 127 : s < -127 ? -127 : s);
        }
        CHECKF(bad == 0, "saturate n=%lld: %lld differ", (long long)n, (long long)bad);
        tn_cuda_free(dv);
        tn_cuda_free(dw);
        tn_cuda_free(ds);
        free(v), free(back), free(wide), free(sums);
    }
}

/* One rank: every reduction is the identity, bit for bit. */
static void test_one_rank(tn_rng *g) {
    tn_device dev;
    if (tn_device_open("cuda", &dev) != 0) {
        CHECKF(0, "open cuda: %s", tn_errmsg());
        return;
    }
    tn_comm *c = NULL;
    CHECK(tn_comm_open("mpi", &dev, 10, &c) != 0 && strstr(tn_errmsg(), "use comm = nccl"));
    if (tn_comm_open("nccl", &dev, 10, &c) != 0) {
        CHECKF(0, "comm = nccl: %s", tn_errmsg());
        return;
    }
    CHECK(c->size == 1 && c->rank == 0 && !strcmp(c->name, "nccl"));
    const int64_t nf = 1001, nv = ((int64_t)1 << 22) + 77; /* votes: more than one 4M-element segment */
    float *f = malloc((size_t)nf * 4), *f2 = malloc((size_t)nf * 4);
    uint16_t *h = malloc((size_t)nf * 2), *h2 = malloc((size_t)nf * 2);
    int8_t *v = malloc((size_t)nv), *v2 = malloc((size_t)nv);
    for (int64_t i = 0; i < nf; i++) {
        f[i] = tn_rng_normal(g) * 1e-3f;
        h[i] = tn_bf16_round_nearest(tn_rng_normal(g));
    }
    for (int64_t i = 0; i < nv; i++) v[i] = (int8_t)((int)(i % 255) - 127);
    float *df = tn_test_dev_copy(f, (size_t)nf * 4);
    uint16_t *dh = tn_test_dev_copy(h, (size_t)nf * 2);
    int8_t *dv = tn_test_dev_copy(v, (size_t)nv);
    CHECK_OK(tn_comm_sum(c, df, nf, TN_COMM_F32));
    CHECK_OK(tn_comm_sum(c, dh, nf, TN_COMM_BF16));
    CHECK_OK(tn_comm_sum(c, dv, nv, TN_COMM_VOTES));
    CHECK_OK(tn_cuda_download(f2, df, (size_t)nf * 4));
    CHECK_OK(tn_cuda_download(h2, dh, (size_t)nf * 2));
    CHECK_OK(tn_cuda_download(v2, dv, (size_t)nv));
    CHECK(memcmp(f, f2, (size_t)nf * 4) == 0);
    CHECK(memcmp(h, h2, (size_t)nf * 2) == 0);
    CHECK(memcmp(v, v2, (size_t)nv) == 0);
    double x = 3.5;
    CHECK_OK(tn_comm_sum_host(c, &x, 1));
    CHECK(x == 3.5);
    tn_comm_close(c, 0);
    tn_cuda_free(df);
    tn_cuda_free(dh);
    tn_cuda_free(dv);
    free(f), free(f2), free(h), free(h2), free(v), free(v2);
}

#endif

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_device_register_cuda(tn_cuda_backend_get());
    tn_rng g;
    tn_rng_seed(&g, 5);
    test_vote_kernels(&g);
    if (tn_cuda_nccl_api()) test_one_rank(&g);
    else printf("this CUDA build has no NCCL: the one-rank communicator was not tested\n");
    tn_cuda_shutdown();
    return tn_test_finish();
#endif
}
