/* The communication interface (comm/comm.h) over MPI. Run without a launcher, the test starts itself under
 * `mpirun -np 3` (3 ranks, so that chunks are uneven and one can be empty) and passes when every rank
 * passes; it skips when mpirun or MPI is missing. Under the launcher, on every rank:
 *   - float sums equal, bit for bit, the sum in rank order 0, 1, 2 computed locally from every rank's
 *     (deterministic) input, for n = 1, 2, 3, 10 and one buffer longer than a segment;
 *   - bf16 sums equal the float sum of the widened inputs rounded to nearest once;
 *   - vote sums are the int32 sum saturated to ±127 once (inputs that overflow int8 on the way);
 *   - host double sums are in rank order;
 *   - the one-process communicator does nothing, and the refusals of tn_comm_open name the problem. */
#include "tn_test.h"

#include "comm/comm.h"
#include "core/error.h"
#include "device/device.h"
#include "kernels/bf16.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The input of rank r at element i: values of different magnitudes, so that the order of the sum shows. */
static float input_f32(int r, int64_t i) {
    const float mags[3] = {1e8f, 1.0f, -1e8f};
    return mags[(r + i) % 3] * (1.0f + (float)((i * 7 + r * 13) % 17) / 17.0f) + (float)r * 0.1f;
}

static int8_t input_vote(int r, int64_t i) {
    const int8_t v[5] = {127, -127, 100, -3, 0};
    return v[(r * 3 + i) % 5];
}

static void check_f32(tn_comm *c, int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = input_f32(c->rank, i);
    CHECK_OK(tn_comm_sum(c, x, n, TN_COMM_F32));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float want = input_f32(0, i);
        for (int r = 1; r < c->size; r++) want += input_f32(r, i);
        bad += memcmp(&want, &x[i], sizeof want) != 0;
    }
    CHECKF(bad == 0, "f32 n=%lld: %lld sums differ from the rank-order sum", (long long)n, (long long)bad);
    free(x);
}

static void check_bf16(tn_comm *c, int64_t n) {
    uint16_t *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = tn_bf16_round_nearest(input_f32(c->rank, i) * 1e-6f);
    CHECK_OK(tn_comm_sum(c, x, n, TN_COMM_BF16));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float s = tn_bf16_widen(tn_bf16_round_nearest(input_f32(0, i) * 1e-6f));
        for (int r = 1; r < c->size; r++) s += tn_bf16_widen(tn_bf16_round_nearest(input_f32(r, i) * 1e-6f));
        bad += x[i] != tn_bf16_round_nearest(s);
    }
    CHECKF(bad == 0, "bf16 n=%lld: %lld sums differ", (long long)n, (long long)bad);
    free(x);
}

static void check_votes(tn_comm *c, int64_t n) {
    int8_t *v = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = input_vote(c->rank, i);
    CHECK_OK(tn_comm_sum(c, v, n, TN_COMM_VOTES));
    int64_t bad = 0, saturated = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t s = 0;
        for (int r = 0; r < c->size; r++) s += input_vote(r, i);
        saturated += s > 127 || s < -127;
        const int8_t want = (int8_t)(s > 127 ? 127 : s < -127 ? -127 : s);
        bad += v[i] != want;
    }
    CHECKF(bad == 0, "votes n=%lld: %lld sums differ", (long long)n, (long long)bad);
    if (c->size > 1 && n >= 5) CHECKF(saturated > 0, "votes n=%lld: the test saturated nothing", (long long)n);
    free(v);
}

static int run_ranks(void) {
    tn_device cpu;
    if (tn_device_open("cpu", &cpu) != 0) return 1;
    tn_comm *c = NULL;
    CHECK_OK(tn_comm_open("auto", &cpu, 60, &c));
    if (!c) return tn_test_finish();
    CHECK(strcmp(c->name, "mpi") == 0);
    CHECK(c->size == 3);
    const int64_t ns[] = {1, 2, 3, 10, 1000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        check_f32(c, ns[k]);
        check_bf16(c, ns[k]);
        check_votes(c, ns[k]);
    }
    check_votes(c, 3 * (1 << 22) + 5); /* longer than one segment of 3 ranks x 4M elements */
    check_f32(c, (1 << 22) + 3);
    /* (1e16 + 1) - 1e16 = 0 in rank order (the 1 is below 1e16's spacing of 2); any other order gives 1. */
    double h[2] = {c->rank == 0 ? 1e16 : c->rank == 1 ? 1.0 : -1e16, 0.5 + c->rank};
    CHECK_OK(tn_comm_sum_host(c, h, 2));
    CHECKF(h[0] == 0.0 && h[1] == 0.5 + 1.5 + 2.5, "host sums %.17g %.17g", h[0], h[1]);
    tn_comm_close(c, 0);
    const int rc = tn_test_finish();
    if (rc != 0) fprintf(stderr, "rank failed\n");
    return rc;
}

int main(void) {
    if (tn_comm_launcher_size() > 0) return run_ranks();

    /* One process: the single communicator, and the refusals. */
    tn_device cpu;
    CHECK_OK(tn_device_open("cpu", &cpu));
    tn_comm *c = NULL;
    CHECK_OK(tn_comm_open("auto", &cpu, 10, &c));
    CHECK(c == tn_comm_single() && c->size == 1 && c->rank == 0);
    float x[3] = {1, 2, 3};
    CHECK_OK(tn_comm_sum(c, x, 3, TN_COMM_F32));
    CHECK(x[0] == 1 && x[1] == 2 && x[2] == 3);
    tn_comm_close(c, 0);
    CHECK(tn_comm_open("ring", &cpu, 10, &c) != 0 && strstr(tn_errmsg(), "not auto, single, mpi or nccl"));
    CHECK(tn_comm_open("nccl", &cpu, 10, &c) != 0 && strstr(tn_errmsg(), "needs device = cuda"));
    CHECK(tn_comm_open("auto", &cpu, 0, &c) != 0 && strstr(tn_errmsg(), "comm_timeout_s"));
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    CHECK(tn_comm_open("single", &cpu, 10, &c) != 0 && strstr(tn_errmsg(), "launched with 2 processes"));
    unsetenv("OMPI_COMM_WORLD_SIZE");

    if (!tn_comm_have_mpi()) {
        tn_test_finish();
        TN_SKIP("this build has no MPI (-DTN_MPI=OFF): the 3-rank reductions were not run");
    }
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        tn_test_finish();
        TN_SKIP("mpirun is not installed (scripts/setup.sh installs openmpi-bin): the 3-rank reductions were not run");
    }
    /* 3 ranks on however many cores: oversubscribed; as root (CI) mpirun needs the two ALLOW variables. */
    /* Under AddressSanitizer: Open MPI's libraries have no frame pointers, so the leak checker needs the slow
     * unwinder to see that MPI_Init's allocations are theirs (tests/lsan.supp). */
    const char *asan = getenv("ASAN_OPTIONS");
    if (asan) {
        char opts[2048];
        snprintf(opts, sizeof opts, "%s:fast_unwind_on_malloc=0", asan);
        setenv("ASAN_OPTIONS", opts, 1);
    }
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return 1;
    self[len] = 0;
    char cmd[4400];
    snprintf(cmd, sizeof cmd,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
             "OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun -np 3 '%s'",
             self);
    const int rc = system(cmd);
    CHECKF(rc == 0, "mpirun -np 3 %s: status %d", self, rc);
    return tn_test_finish();
}
