/* The MPI implementation of comm/comm.h (Open MPI; any MPI-3 library). Buffers are in host memory.
 *
 * Fixed-order sum of a buffer of n elements over N ranks, in segments of at most min(N · SEG_PER_RANK,
 * SEG_MAX) elements (so the receive scratch stays bounded and MPI's int counts cannot overflow):
 *   chunk = ceil(seg / N); rank k owns elements [k·chunk, min(seg, (k+1)·chunk))
 *   all-to-all:  rank j sends its copy of chunk k to rank k        → scratch[j][0 .. own)
 *   local sum:   own chunk = scratch[0] + scratch[1] + ... + scratch[N-1], in that order
 *                (votes: int32 sum then saturated to ±127; bf16: float sum rounded to nearest once)
 *   all-gather:  every owner's sum to every rank, in place
 * Every collective is non-blocking and waited for with a deadline, so a dead or stopped rank turns into an
 * error on the others instead of a hang. */
#include "comm/comm.h"

#include "core/error.h"
#include "core/timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_HAVE_MPI
#include <mpi.h>

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "kernels/bf16.h"

#define SEG_PER_RANK (1 << 22) /* elements per rank per segment: scratch = N · 4M · element size ... */
#define SEG_MAX (1 << 26)      /* ... but at most 64M elements a segment (MPI's int counts and displacements,
                                  and a scratch of at most 256 MiB, whatever N is) */

typedef struct {
    MPI_Comm comm;
    int rank, size;
    double timeout_s;
    void *scratch;
    size_t scratch_bytes;
    int *counts, *displs, *rcounts, *rdispls; /* [size] each */
} mpi_ctx;

int tn_comm_have_mpi(void) { return 1; }

/* ---- the launcher's SIGTERM: say which rank was stopped and why, then exit ------------------------------ */

static volatile sig_atomic_t g_rank = -1;

static void put_int(char **p, long v) {
    char tmp[24];
    int n = 0;
    if (v < 0) *(*p)++ = '-', v = -v;
    do tmp[n++] = (char)('0' + v % 10), v /= 10;
    while (v && n < (int)sizeof tmp);
    while (n) *(*p)++ = tmp[--n];
}

static void on_sigterm(int sig) {
    (void)sig;
    char msg[200], *p = msg;
    const char *a = "trinity: error: rank ";
    const char *b = ": terminated by the launcher (another rank failed, or the job was cancelled); the last "
                    "checkpoint in the run directory is intact\n";
    while (*a) *p++ = *a++;
    put_int(&p, (long)g_rank);
    while (*b && p < msg + sizeof msg - 1) *p++ = *b++;
    ssize_t w = write(2, msg, (size_t)(p - msg));
    (void)w;
    _exit(1);
}

/* ---- waiting with a deadline ------------------------------------------------------------------------------ */

static int wait_for(mpi_ctx *m, MPI_Request *req, double timeout_s, const char *what) {
    const double t0 = tn_time_s();
    for (long spins = 0;; spins++) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return tn_err("rank %d: MPI %s failed", m->rank, what);
        if (done) return 0;
        if (spins > 2000) { /* past the fast path: poll without taking a core from the other ranks */
            if (tn_time_s() - t0 > timeout_s)
                return tn_err("no answer from the other ranks within %.0f s in %s (a rank died or hangs; "
                              "[train] comm_timeout_s)", timeout_s, what);
            const struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

int tn_comm_mpi_init(tn_comm *c) {
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (inited) return tn_err("MPI is already initialised in this process (one training run per process)");
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return tn_err("MPI_Init failed");
    mpi_ctx *m = calloc(1, sizeof *m);
    if (!m) return tn_err("out of memory");
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->rank);
    MPI_Comm_size(m->comm, &m->size);
    m->counts = calloc((size_t)m->size * 4, sizeof(int));
    if (!m->counts) {
        free(m);
        return tn_err("out of memory");
    }
    m->displs = m->counts + m->size;
    m->rcounts = m->displs + m->size;
    m->rdispls = m->rcounts + m->size;
    m->timeout_s = c->timeout_s;
    c->rank = m->rank;
    c->size = m->size;
    c->mpi_ctx = m;
    g_rank = m->rank;
    signal(SIGTERM, on_sigterm);
    return 0;
}

static MPI_Datatype mpi_type(tn_comm_dtype t) {
    return t == TN_COMM_F32 ? MPI_FLOAT : t == TN_COMM_BF16 ? MPI_UINT16_T : MPI_INT8_T;
}

static size_t elem_bytes(tn_comm_dtype t) { return t == TN_COMM_F32 ? 4 : t == TN_COMM_BF16 ? 2 : 1; }

/* own[i] = Σ_j parts[j·len + i] in rank order j = 0..N-1 */
static void sum_parts(void *own, const void *parts, int len, int n_ranks, tn_comm_dtype t) {
    if (t == TN_COMM_F32) {
        const float *p = parts;
        float *o = own;
        for (int i = 0; i < len; i++) {
            float s = p[i];
            for (int j = 1; j < n_ranks; j++) s += p[(size_t)j * len + i];
            o[i] = s;
        }
    } else if (t == TN_COMM_BF16) {
        const uint16_t *p = parts;
        uint16_t *o = own;
        for (int i = 0; i < len; i++) {
            float s = tn_bf16_widen(p[i]);
            for (int j = 1; j < n_ranks; j++) s += tn_bf16_widen(p[(size_t)j * len + i]);
            o[i] = tn_bf16_add_nearest(s);
        }
    } else {
        const int8_t *p = parts;
        int8_t *o = own;
        for (int i = 0; i < len; i++) {
            int32_t s = p[i];
            for (int j = 1; j < n_ranks; j++) s += p[(size_t)j * len + i];
            o[i] = (int8_t)(s > 127 ? 127 : s < -127 ? -127 : s);
        }
    }
}

static int sum_segment(mpi_ctx *m, char *seg, int64_t n, tn_comm_dtype t, double timeout_s) {
    const int N = m->size;
    const int64_t chunk = (n + N - 1) / N;
    for (int k = 0; k < N; k++) {
        int64_t lo = (int64_t)k * chunk, hi = lo + chunk < n ? lo + chunk : n;
        m->counts[k] = hi > lo ? (int)(hi - lo) : 0;
        m->displs[k] = (int)(lo < n ? lo : n);
    }
    const int own = m->counts[m->rank];
    for (int j = 0; j < N; j++) {
        m->rcounts[j] = own;
        m->rdispls[j] = j * own;
    }
    const size_t es = elem_bytes(t), need = (size_t)N * (size_t)(own > 0 ? own : 1) * es;
    if (need > m->scratch_bytes) {
        void *p = realloc(m->scratch, need);
        if (!p) return tn_err("out of memory (%zu bytes of reduction scratch)", need);
        m->scratch = p;
        m->scratch_bytes = need;
    }
    const MPI_Datatype dt = mpi_type(t);
    MPI_Request req;
    if (MPI_Ialltoallv(seg, m->counts, m->displs, dt, m->scratch, m->rcounts, m->rdispls, dt, m->comm, &req) !=
        MPI_SUCCESS)
        return tn_err("rank %d: MPI_Ialltoallv failed", m->rank);
    TN_CHECK(wait_for(m, &req, timeout_s, "the gradient reduction (all-to-all)"));
    sum_parts(seg + (size_t)m->displs[m->rank] * es, m->scratch, own, N, t);
    if (MPI_Iallgatherv(MPI_IN_PLACE, 0, dt, seg, m->counts, m->displs, dt, m->comm, &req) != MPI_SUCCESS)
        return tn_err("rank %d: MPI_Iallgatherv failed", m->rank);
    return wait_for(m, &req, timeout_s, "the gradient reduction (all-gather)");
}

static int mpi_sum(void *vctx, void *buf, int64_t n, tn_comm_dtype t) {
    mpi_ctx *m = vctx;
    if (m->size == 1) return 0;
    const int64_t seg_max = (int64_t)SEG_PER_RANK * m->size < SEG_MAX ? (int64_t)SEG_PER_RANK * m->size : SEG_MAX;
    const size_t es = elem_bytes(t);
    for (int64_t off = 0; off < n; off += seg_max) {
        const int64_t len = n - off < seg_max ? n - off : seg_max;
        TN_CHECK(sum_segment(m, (char *)buf + (size_t)off * es, len, t, m->timeout_s));
    }
    return 0;
}

const tn_comm_impl tn_comm_mpi_impl = {mpi_sum, NULL}; /* the context ends with tn_comm_mpi_finalize */

int tn_comm_mpi_sum_host(void *vctx, double *x, int n, double timeout_s) {
    mpi_ctx *m = vctx;
    double *all = malloc((size_t)n * (size_t)m->size * sizeof *all);
    if (!all) return tn_err("out of memory");
    MPI_Request req;
    int rc = MPI_Iallgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, m->comm, &req) == MPI_SUCCESS
                 ? wait_for(m, &req, timeout_s, "a host reduction")
                 : tn_err("rank %d: MPI_Iallgather failed", m->rank);
    if (rc == 0)
        for (int i = 0; i < n; i++) {
            double s = all[i];
            for (int j = 1; j < m->size; j++) s += all[(size_t)j * n + i];
            x[i] = s;
        }
    free(all);
    return rc;
}

int tn_comm_mpi_bcast(void *vctx, void *buf, int bytes, double timeout_s) {
    mpi_ctx *m = vctx;
    MPI_Request req;
    if (MPI_Ibcast(buf, bytes, MPI_BYTE, 0, m->comm, &req) != MPI_SUCCESS)
        return tn_err("rank %d: MPI_Ibcast failed", m->rank);
    return wait_for(m, &req, timeout_s, "the broadcast of the NCCL id");
}

void tn_comm_mpi_finalize(void *vctx, int abort_job) {
    mpi_ctx *m = vctx;
    signal(SIGTERM, SIG_DFL); /* this rank has said why it ends */
    if (abort_job) MPI_Abort(MPI_COMM_WORLD, 1); /* ends every rank; does not return */
    MPI_Comm_free(&m->comm);
    MPI_Finalize();
    free(m->scratch);
    free(m->counts);
    free(m);
}

#else /* built without MPI: comm = mpi is refused by tn_comm_open before any of these is reached */

int tn_comm_have_mpi(void) { return 0; }
int tn_comm_mpi_init(tn_comm *c) {
    (void)c;
    return tn_err("this trinity was built without MPI");
}
int tn_comm_mpi_sum_host(void *m, double *x, int n, double timeout_s) {
    (void)m, (void)x, (void)n, (void)timeout_s;
    return tn_err("this trinity was built without MPI");
}
int tn_comm_mpi_bcast(void *m, void *buf, int bytes, double timeout_s) {
    (void)m, (void)buf, (void)bytes, (void)timeout_s;
    return tn_err("this trinity was built without MPI");
}
void tn_comm_mpi_finalize(void *m, int abort_job) { (void)m, (void)abort_job; }
static int no_sum(void *ctx, void *buf, int64_t n, tn_comm_dtype t) {
    (void)ctx, (void)buf, (void)n, (void)t;
    return tn_err("this trinity was built without MPI");
}
const tn_comm_impl tn_comm_mpi_impl = {no_sum, NULL};

#endif
