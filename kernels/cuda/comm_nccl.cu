/* NCCL reductions for data-parallel training on GPUs (comm/comm.h, docs/SCALE.md): one GPU per rank,
 * buffers in the GPU's memory, all-reduce on the default stream (where every training kernel runs).
 *   f32    ncclAllReduce(float, sum) in place
 *   bf16   widened to a float scratch, summed, rounded to nearest once (as the MPI path does)
 *   votes  int8 widened to an int32 scratch, summed, saturated to [-127, 127] (PRIMAL: optim/primal.h)
 * The scratch holds at most NC_SEG elements (4 bytes each, 16 MiB); longer buffers go in segments.
 * Every reduction is waited for with a deadline (an event polled with cudaEventQuery, NCCL's asynchronous
 * error checked): a dead or hung rank becomes an error, and ncclCommAbort frees the communicator.
 * Built by nvcc when the toolkit has nccl.h (TN_HAVE_NCCL), and by the emulator against its one-rank NCCL
 * (emu/nccl_emu.h), so that the kernels and the plumbing are tested on every commit.
 * The nvcc build does not link NCCL: libnccl.so.2 (~200 MiB, shipped by the CUDA toolkit and by PyTorch's
 * wheels) is opened when a run asks for comm = nccl, so a trinity without it still trains on one GPU. */
#include "kernels/cuda/cuda_internal.h"


extern "C" {
#include "comm/comm.h"
#include "core/timer.h"
}

#ifdef TN_CUDA_EMU
#include "kernels/cuda/emu/nccl_emu.h"
#define TN_HAVE_NCCL 1
#elif defined(TN_HAVE_NCCL)
#include <dlfcn.h>
#include <nccl.h>
#endif

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NC_THREADS 256
#define NC_MAX_BLOCKS 4096
#define NC_SEG ((int64_t)1 << 22) /* scratch elements: 16 MiB, and 16 MiB messages (NCCL's bandwidth regime) */

#define NC_FOR(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static unsigned nc_blocks(int64_t n) {
    const int64_t b = (n + NC_THREADS - 1) / NC_THREADS;
    return (unsigned)(b < NC_MAX_BLOCKS ? (b > 0 ? b : 1) : NC_MAX_BLOCKS);
}

/* wide [n] int32 = v [n] int8 */
static __global__ void __launch_bounds__(NC_THREADS) votes_widen_kernel(int32_t *__restrict__ wide,
                                                                        const int8_t *__restrict__ v, int64_t n) {
    NC_FOR(i, n) wide[i] = v[i];
}

/* v [n] int8 = clamp(wide [n] int32, -127, 127) */
static __global__ void __launch_bounds__(NC_THREADS) votes_saturate_kernel(int8_t *__restrict__ v,
                                                                           const int32_t *__restrict__ wide,
                                                                           int64_t n) {
    NC_FOR(i, n) {
        const int32_t s = wide[i];
        v[i] = (int8_t)(s > 127 ? 127 : s < -127 ? -127 : s);
    }
}

extern "C" int tn_cuda_votes_widen(const int8_t *v, int64_t n, int32_t *wide) {
    if (n <= 0) return 0;
    TN_LAUNCH(votes_widen_kernel, nc_blocks(n), NC_THREADS, 0, wide, v, n);
    TN_CU_LAUNCHED("votes_widen: launch");
    return 0;
}

extern "C" int tn_cuda_votes_saturate(const int32_t *wide, int64_t n, int8_t *v) {
    if (n <= 0) return 0;
    TN_LAUNCH(votes_saturate_kernel, nc_blocks(n), NC_THREADS, 0, v, wide, n);
    TN_CU_LAUNCHED("votes_saturate: launch");
    return 0;
}

#ifdef TN_HAVE_NCCL

/* The NCCL calls used, resolved once: from libnccl.so.2 (nvcc build) or the emulator's one-rank NCCL. */
static struct {
    int state; /* 0 not tried, 1 loaded, -1 failed */
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    ncclResult_t (*CommAbort)(ncclComm_t);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    const char *(*GetErrorString)(ncclResult_t);
} nc;

static int nccl_load(void) {
    if (nc.state) return nc.state > 0 ? 0 : tn_err("comm = nccl: libnccl.so.2 could not be loaded");
    nc.state = -1;
#ifdef TN_CUDA_EMU
    nc.GetUniqueId = ncclGetUniqueId, nc.CommInitRank = ncclCommInitRank, nc.AllReduce = ncclAllReduce;
    nc.CommGetAsyncError = ncclCommGetAsyncError, nc.CommAbort = ncclCommAbort, nc.CommDestroy = ncclCommDestroy;
    nc.GetErrorString = ncclGetErrorString;
#else
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) return tn_err("comm = nccl: cannot load libnccl.so.2 (%s); install NCCL or add its directory to "
                          "LD_LIBRARY_PATH", dlerror());
#define NC_SYM(field, name)                                                                            \
    if (!(*(void **)&nc.field = dlsym(h, name))) return tn_err("comm = nccl: libnccl.so.2 has no %s", name)
    NC_SYM(GetUniqueId, "ncclGetUniqueId");
    NC_SYM(CommInitRank, "ncclCommInitRank");
    NC_SYM(AllReduce, "ncclAllReduce");
    NC_SYM(CommGetAsyncError, "ncclCommGetAsyncError");
    NC_SYM(CommAbort, "ncclCommAbort");
    NC_SYM(CommDestroy, "ncclCommDestroy");
    NC_SYM(GetErrorString, "ncclGetErrorString");
#undef NC_SYM
#endif
    nc.state = 1;
    return 0;
}

typedef struct {
    ncclComm_t comm;
    int rank, size;
    double timeout_s;
    void *scratch; /* [NC_SEG] 4-byte elements, allocated at the first bf16 or vote reduction */
    cudaEvent_t done;
    int aborted;
} nccl_ctx;

static int nccl_err(const char *what, ncclResult_t r) { return tn_err("NCCL %s: %s", what, nc.GetErrorString(r)); }

/* Wait for the work queued so far on the default stream, at most timeout_s. */
static int nccl_wait(nccl_ctx *c, const char *what) {
    TN_CU(cudaEventRecord(c->done, 0), "NCCL: event record");
    const double t0 = tn_time_s();
    for (;;) {
        cudaError_t e = cudaEventQuery(c->done);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) return tn_cuda_err(what, e);
        ncclResult_t async = ncclSuccess;
        nc.CommGetAsyncError(c->comm, &async);
        if (async != ncclSuccess && async != ncclInProgress) {
            nc.CommAbort(c->comm);
            c->aborted = 1;
            return nccl_err(what, async);
        }
        if (tn_time_s() - t0 > c->timeout_s) {
            nc.CommAbort(c->comm);
            c->aborted = 1;
            return tn_err("rank %d: no answer from the other ranks within %.0f s in %s (a rank died or hangs; "
                          "[train] comm_timeout_s)", c->rank, c->timeout_s, what);
        }
        const struct timespec ts = {0, 50 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int all_reduce(nccl_ctx *c, const void *send, void *recv, int64_t n, ncclDataType_t t) {
    if (c->aborted) return tn_err("NCCL: the communicator was aborted after an earlier failure");
    ncclResult_t r = nc.AllReduce(send, recv, (size_t)n, t, ncclSum, c->comm, 0);
    if (r != ncclSuccess) return nccl_err("all-reduce", r);
    return nccl_wait(c, "the NCCL all-reduce");
}

static int nccl_sum(void *vctx, void *buf, int64_t n, tn_comm_dtype t) {
    nccl_ctx *c = (nccl_ctx *)vctx;
    if (t == TN_COMM_F32) return all_reduce(c, buf, buf, n, ncclFloat32);
    if (!c->scratch && !(c->scratch = tn_cuda_alloc((size_t)NC_SEG * 4))) return tn_err_prefix("NCCL: reduction scratch");
    for (int64_t off = 0; off < n; off += NC_SEG) {
        const int64_t len = n - off < NC_SEG ? n - off : NC_SEG;
        if (t == TN_COMM_VOTES) {
            int8_t *v = (int8_t *)buf + off;
            int32_t *wide = (int32_t *)c->scratch;
            TN_CHECK(tn_cuda_votes_widen(v, len, wide));
            TN_CHECK(all_reduce(c, wide, wide, len, ncclInt32));
            TN_CHECK(tn_cuda_votes_saturate(wide, len, v));
        } else {
            uint16_t *x = (uint16_t *)buf + off;
            float *wide = (float *)c->scratch;
            TN_CHECK(tn_cuda_bf16_to_f32(wide, x, len)); /* exact (convert.cu) */
            TN_CHECK(all_reduce(c, wide, wide, len, ncclFloat32));
            TN_CHECK(tn_cuda_bf16_from_f32(x, wide, len)); /* rounded to nearest once */
        }
    }
    return 0;
}

static void nccl_close(void *vctx) {
    nccl_ctx *c = (nccl_ctx *)vctx;
    if (!c) return;
    if (!c->aborted) nc.CommDestroy(c->comm);
    tn_cuda_free(c->scratch);
    cudaEventDestroy(c->done);
    free(c);
}

static const tn_comm_impl g_nccl_impl = {nccl_sum, nccl_close};

static int nccl_get_unique_id(void *id) {
    TN_CHECK(nccl_load());
    ncclResult_t r = nc.GetUniqueId((ncclUniqueId *)id);
    return r == ncclSuccess ? 0 : nccl_err("get unique id", r);
}

static int nccl_open(const void *id, int rank, int size, double timeout_s, void **out) {
    *out = NULL;
    TN_CHECK(nccl_load());
    nccl_ctx *c = (nccl_ctx *)calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    c->rank = rank;
    c->size = size;
    c->timeout_s = timeout_s;
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    ncclResult_t r = nc.CommInitRank(&c->comm, size, uid, rank);
    if (r != ncclSuccess) {
        free(c);
        return nccl_err("communicator init", r);
    }
    if (cudaEventCreate(&c->done) != cudaSuccess) {
        nc.CommDestroy(c->comm);
        free(c);
        return tn_err("NCCL: cannot create an event");
    }
    *out = c;
    return 0;
}

static const tn_nccl_api g_nccl_api = {(int)sizeof(ncclUniqueId), nccl_get_unique_id, nccl_open, &g_nccl_impl};

extern "C" const tn_nccl_api *tn_cuda_nccl_api(void) { return &g_nccl_api; }

#else /* an nvcc build without NCCL: the backend reports none, and comm = nccl is refused by name */

extern "C" const tn_nccl_api *tn_cuda_nccl_api(void) { return NULL; }

#endif
