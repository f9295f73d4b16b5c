/* The communication interface (comm/comm.h): choosing an implementation, the one-process case, timing,
 * and the fault-injection hook of the tests. MPI itself is in comm_mpi.c, NCCL in kernels/cuda/comm_nccl.cu. */
#include "comm/comm.h"

#include "core/error.h"
#include "core/timer.h"
#include "device/device.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tn_comm g_single = {.rank = 0, .size = 1, .name = "single", .timeout_s = 0};

tn_comm *tn_comm_single(void) { return &g_single; }

/* Launchers export the world size: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE), PMIx-based launchers
 * (PMIX_SIZE is not standard, so PMIX_RANK only says "launched"), MPICH / Slurm PMI (PMI_SIZE). */
int tn_comm_launcher_size(void) {
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            long n = strtol(v, NULL, 10);
            return n > 0 && n < (1 << 20) ? (int)n : 1;
        }
    }
    return getenv("PMIX_RANK") ? 1 : 0;
}

static int open_nccl(tn_comm *c, const tn_device *dev) {
    const tn_nccl_api *api = tn_device_nccl(dev);
    if (!api) return tn_err("comm = nccl: this build's CUDA backend has no NCCL (docs/SCALE.md)");
    unsigned char id[512];
    if (api->id_bytes <= 0 || api->id_bytes > (int)sizeof id) return tn_err("comm = nccl: unexpected id size");
    memset(id, 0, sizeof id);
    if (c->rank == 0) TN_CHECK(api->get_unique_id(id));
    if (c->mpi_ctx) TN_CHECK(tn_comm_mpi_bcast(c->mpi_ctx, id, api->id_bytes, c->timeout_s));
    TN_CHECK(api->open(id, c->rank, c->size, c->timeout_s, &c->dev_ctx));
    c->dev = api->impl;
    return 0;
}

int tn_comm_open(const char *kind, const tn_device *dev, double timeout_s, tn_comm **out) {
    *out = NULL;
    if (!(timeout_s > 0)) return tn_err("[train] comm_timeout_s must be > 0");
    const int launched = tn_comm_launcher_size();
    if (!strcmp(kind, "auto")) kind = launched ? (dev->is_cuda ? "nccl" : "mpi") : "single";
    if (!strcmp(kind, "single")) {
        if (launched > 1)
            return tn_err("[train] comm = single, but the job was launched with %d processes (use comm = auto)",
                          launched);
        *out = tn_comm_single();
        return 0;
    }
    const int nccl = !strcmp(kind, "nccl");
    if (!nccl && strcmp(kind, "mpi") != 0)
        return tn_err("[train] comm: '%s' is not auto, single, mpi or nccl", kind);
    if (nccl && !dev->is_cuda) return tn_err("[train] comm = nccl needs device = cuda");
    if (!nccl && dev->is_cuda)
        return tn_err("[train] comm = mpi reduces host buffers; with device = cuda use comm = nccl (or auto)");
    if ((!nccl || launched) && !tn_comm_have_mpi())
        return tn_err("[train] comm = %s: this trinity was built without MPI (install libopenmpi-dev and rebuild)",
                      kind);
    tn_comm *c = calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    c->size = 1;
    c->timeout_s = timeout_s;
    int rc = 0;
    if (!nccl || launched) rc = tn_comm_mpi_init(c); /* sets rank, size, mpi_ctx */
    if (rc == 0 && nccl) rc = open_nccl(c, dev);
    if (rc == 0 && !nccl) {
        c->dev = &tn_comm_mpi_impl;
        c->dev_ctx = c->mpi_ctx;
    }
    c->name = nccl ? "nccl" : "mpi";
    if (rc != 0) {
        /* The other ranks may already wait in a collective: end the job rather than leave them hanging. */
        if (c->mpi_ctx && c->size > 1) {
            fprintf(stderr, "trinity: error: rank %d: %s\n", c->rank, tn_errmsg());
            tn_comm_mpi_finalize(c->mpi_ctx, 1);
        }
        if (c->mpi_ctx) tn_comm_mpi_finalize(c->mpi_ctx, 0);
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int tn_comm_sum(tn_comm *c, void *buf, int64_t n, tn_comm_dtype t) {
    if (!c->dev || n <= 0) return 0;
    const double t0 = tn_time_s();
    int rc = c->dev->sum(c->dev_ctx, buf, n, t);
    c->seconds += tn_time_s() - t0;
    return rc;
}

int tn_comm_sum_host(tn_comm *c, double *x, int n) {
    if (!c->mpi_ctx || c->size == 1 || n <= 0) return 0;
    const double t0 = tn_time_s();
    int rc = tn_comm_mpi_sum_host(c->mpi_ctx, x, n, c->timeout_s);
    c->seconds += tn_time_s() - t0;
    return rc;
}

double tn_comm_take_seconds(tn_comm *c) {
    const double s = c->seconds;
    c->seconds = 0;
    return s;
}

void tn_comm_close(tn_comm *c, int failed) {
    if (!c || c == &g_single) return;
    if (failed && c->mpi_ctx && c->size > 1) tn_comm_mpi_finalize(c->mpi_ctx, 1); /* does not return */
    if (c->dev && c->dev->close) c->dev->close(c->dev_ctx);
    if (c->mpi_ctx) tn_comm_mpi_finalize(c->mpi_ctx, 0);
    free(c);
}

void tn_comm_test_fault(const tn_comm *c, int64_t step) {
    const char *spec = getenv("TN_TEST_FAULT");
    if (!spec || !*spec) return;
    int rank;
    long long at;
    char what[8];
    if (sscanf(spec, "%d:%lld:%7s", &rank, &at, what) != 3 || rank != c->rank || at != step) return;
    fprintf(stderr, "trinity: TN_TEST_FAULT: rank %d %s at step %lld\n", rank, what, at);
    fflush(stderr);
    if (!strcmp(what, "kill")) raise(SIGKILL);
    if (!strcmp(what, "stop")) raise(SIGSTOP);
}
