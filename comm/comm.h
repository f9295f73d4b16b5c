/* Communication between the ranks of a data-parallel run (docs/SCALE.md): the reductions a training step
 * needs, behind one interface with three implementations.
 *
 *   single   one process, nothing to do (every call returns at once)
 *   mpi      Open MPI, buffers in host memory (device = cpu); one process per rank, `mpirun -np N`
 *   nccl     NCCL, buffers in the GPU's memory (device = cuda, one GPU per rank); bootstrapped over MPI
 *            when launched by mpirun, else a communicator of one rank (the reductions still run)
 *
 * Every reduction gives every rank the same bits. Float sums are taken in a fixed order so that the result
 * does not depend on which message arrived first:
 *   MPI   buffer cut into N chunks (rank k owns chunk k); each rank receives every rank's copy of its
 *         chunk (all-to-all), adds them in rank order 0, 1, ..., N-1, and the owners' sums are gathered
 *         back to everyone (all-gather).
 *   NCCL  its ring all-reduce: a fixed order for a fixed N and topology (NCCL's documentation), and the
 *         same result on every rank.
 * PRIMAL votes (int8) are summed as int32 and saturated to [-127, 127] once, after the sum.
 *
 * A reduction that does not complete within the timeout (a rank died or hangs) fails with one error line
 * and the caller ends the job (tn_comm_close(c, 1) aborts every rank). */
#ifndef TN_COMM_COMM_H
#define TN_COMM_COMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tn_device;

typedef enum {
    TN_COMM_F32 = 0,   /* float sum */
    TN_COMM_BF16 = 1,  /* bfloat16 sum (taken in float, rounded to nearest once) */
    TN_COMM_VOTES = 2, /* int8 PRIMAL votes: int32 sum, then saturated to [-127, 127] */
} tn_comm_dtype;

/* Reductions over buffers in one memory (host for MPI, the GPU for NCCL). ctx is the implementation's. */
typedef struct tn_comm_impl {
    /* Sum buf[0..n) over the ranks, in place. */
    int (*sum)(void *ctx, void *buf, int64_t n, tn_comm_dtype t);
    void (*close)(void *ctx); /* NULL: nothing to release (MPI's context ends with tn_comm_mpi_finalize) */
} tn_comm_impl;

/* What the CUDA backend provides for NCCL (kernels/cuda/comm_nccl.cu; NULL without NCCL). */
typedef struct tn_nccl_api {
    int id_bytes;                                 /* the size of an ncclUniqueId */
    int (*get_unique_id)(void *id);               /* rank 0 makes it; the launcher's channel carries it */
    /* A communicator on the open device; timeout_s bounds every reduction (ncclCommAbort after it). */
    int (*open)(const void *id, int rank, int size, double timeout_s, void **ctx);
    const tn_comm_impl *impl;
} tn_nccl_api;

typedef struct tn_comm {
    int rank, size;
    const char *name;              /* "single", "mpi" or "nccl" */
    const tn_comm_impl *dev;       /* reductions over the run device's buffers */
    void *dev_ctx;
    void *mpi_ctx;                 /* MPI is initialised: host reductions and the job's abort go through it;
                                      NULL without MPI */
    double timeout_s;
    double seconds;                /* wall time spent in reductions since the last tn_comm_take_seconds */
} tn_comm;

/* A launcher's world size from the environment (Open MPI, PMIx, MPICH's PMI), 0 when not launched by one. */
int tn_comm_launcher_size(void);

/* Open the communication of a run: kind "auto" (mpi or nccl when launched by mpirun, per device, else
 * single), "single", "mpi" or "nccl". dev: the run's device (nccl needs cuda, mpi needs cpu). Errors: an
 * unknown kind, mpi without MPI in the build, nccl without NCCL or on the CPU, "single" under a launcher
 * with N > 1, a timeout <= 0. */
int tn_comm_open(const char *kind, const struct tn_device *dev, double timeout_s, tn_comm **out);
/* The one-process communicator (a static object; closing it does nothing). */
tn_comm *tn_comm_single(void);

/* Sum a buffer in the run device's memory over the ranks (nothing at all for "single"). */
int tn_comm_sum(tn_comm *c, void *buf, int64_t n, tn_comm_dtype t);
/* Sum n doubles in host memory over the ranks, in rank order (the same bits everywhere). */
int tn_comm_sum_host(tn_comm *c, double *x, int n);
/* Seconds spent in reductions since the last call, and reset. */
double tn_comm_take_seconds(tn_comm *c);

/* End the communication. failed = 1 with more than one rank: end the whole job now (MPI_Abort), after the
 * caller has printed its error; does not return then. */
void tn_comm_close(tn_comm *c, int failed);

/* Test hooks (docs/SCALE.md, "Faults"): TN_TEST_FAULT="RANK:STEP:kill|stop" makes that rank SIGKILL or
 * SIGSTOP itself when it begins that step; the CLI tests use it to prove that a dead or hung rank ends the
 * job with an error. Does nothing when the variable is unset or names another rank or step. */
void tn_comm_test_fault(const tn_comm *c, int64_t step);

/* MPI internals (comm/comm_mpi.c), used by comm.c. tn_comm_mpi_init sets rank, size and mpi_ctx. */
int tn_comm_mpi_init(tn_comm *c);
int tn_comm_mpi_sum_host(void *mpi_ctx, double *x, int n, double timeout_s);
int tn_comm_mpi_bcast(void *mpi_ctx, void *buf, int bytes, double timeout_s);
void tn_comm_mpi_finalize(void *mpi_ctx, int abort_job);
extern const tn_comm_impl tn_comm_mpi_impl;
int tn_comm_have_mpi(void);

#ifdef __cplusplus
}
#endif

#endif
