/* PRIMAL on the GPU: materialise, vote, flip (optim/primal.h has the rule; optim/primal.c the CPU code these
 * equal bit for bit: tn_primal_materialize, tn_primal_accumulate, tn_primal_step_keyed).
 *
 * Exactness.
 *   - materialise: W = scale · v[idx], one rounded product, as tn_grid_dequant.
 *   - accumulate: optim/primal.c row_stats sums a row in 4 accumulators (j ≡ k mod 4 for the 4-aligned
 *     part, the tail into accumulator 0, combined (a0 + a1) + (a2 + a3)); here 4 consecutive threads own
 *     a row and walk exactly those chains, products and squares through __dmul_rn / __dadd_rn so that nvcc
 *     does not contract them into fmas the CPU never uses. The rows are then combined in row order exactly
 *     as the CPU does (Σ s1, mean, Chan's M2 = Σ [M2_r + cols (mean_r − mean)²], Σ sg). That is a
 *     sequential chain: it runs ON THE DEVICE in one block (all threads stage the per-row values in shared
 *     memory, coalesced, one thread per chain adds them in row order; chains in separate warps run side by
 *     side) rather than on the host, so that the threshold, the non-finite check and the scale gradient stay
 *     on the device and the op waits once (for the status and the voter count) instead of twice, with no
 *     rows x 24-byte download in between. Its cost is about `rows` dependent double adds per chain.
 *     thr = float_below(mean + z · std) as the CPU (IEEE double sqrt and division), so the same weights vote.
 *   - flip: kernels/primal_math.h (tn_primal_uniform, tn_primal_prob, tn_primal_vote_after) is the one
 *     definition both devices run; the walk over weights changes nothing but the order.
 *
 * Non-finite G: the combine kernel sets st->bad; the scale gradient and the vote kernel then write nothing,
 * and the host reports the error after its one download.
 *
 * Packed 4-bit indices (quant/pack.h: element 2k low nibble, 2k+1 high nibble): in the flip kernel one
 * thread owns a byte, i.e. both of its elements, so no two threads write one byte. Byte k belongs to the row
 * of its low element 2k; its high element may be the first of the next row (odd cols), and then uses that
 * row's flip probability. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/primal_math.h"

#include <cfloat>
#include <cstring>

#define FULL_MASK 0xffffffffu
#define PR_THREADS 128       /* row-statistics kernel: 32 rows of 4 lanes per block */
#define PR_LANES 4           /* the CPU's 4 accumulators */
#define PR_MAX_BLOCKS 65535
#define PC_THREADS 256       /* the one-block combine kernel */
#define PC_CHUNK 1024        /* rows staged per step (2 x 8 KiB) */
#define PE_THREADS 256       /* materialise, vote, flip */
#define PE_MAX_BLOCKS 8192
#define PE_MAX_X 1024
#define VOTE_MAX 127

/* The grid's values by value (1 KB of kernel parameters), zero-padded to 256 like tn_grid.v. */
struct primal_grid {
    int n;
    float v[TN_GRID_MAX];
};

/* One call's status in scratch. */
struct primal_status {
    unsigned long long voters, voted, flipped;
    int bad;   /* accumulate: G not finite */
    float thr; /* accumulate: the vote threshold */
};
#define PS_STATUS_BYTES 64

static __device__ __forceinline__ bool primal_finite(double x) { return fabs(x) <= DBL_MAX; }

/* optim/primal.c float_below: the largest float <= thr. */
static __device__ __forceinline__ float primal_float_below(double thr) {
    float f = (float)thr;
    if ((double)f > thr) f = nextafterf(f, -FLT_MAX);
    return f;
}

static __device__ __forceinline__ int primal_get_index(const uint8_t *idx, int packed, int64_t i) {
    return packed ? (idx[i >> 1] >> ((int)(i & 1) * 4)) & 0x0F : idx[i];
}

/* Sum over the block (blockDim.x = PE_THREADS) for thread 0; every thread must call it. red: shared [32]. */
static __device__ unsigned long long primal_block_sum(unsigned long long v, unsigned long long *red) {
    const int lane = (int)(threadIdx.x % 32), warp = (int)(threadIdx.x / 32);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL_MASK, v, o);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < PE_THREADS / 32 ? red[lane] : 0ull;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL_MASK, v, o);
    }
    return v;
}

/* Row blocks (y, at most 65535, rows past loop) x unit blocks (x) for PE_THREADS threads. */
static dim3 primal_rows_grid(int64_t rows, int64_t units) {
    int64_t gx = (units + PE_THREADS - 1) / PE_THREADS;
    gx = gx < 1 ? 1 : gx > PE_MAX_X ? PE_MAX_X : gx;
    int64_t gy = PE_MAX_BLOCKS / gx;
    gy = gy < 1 ? 1 : gy;
    gy = gy < rows ? gy : rows;
    gy = gy < 65535 ? gy : 65535;
    return dim3((unsigned)gx, (unsigned)gy);
}

/* ---- materialise ------------------------------------------------------------------------------------ */

/* W [rows, cols] = scale[per_row ? r : 0] · v[idx[r, c]]; idx [rows·cols] bytes or 4-bit packed.
 * Thread mapping: blockIdx.y walks rows (past gridDim.y loop), x · blockDim + thread the columns
 * (grid-stride): coalesced float writes, byte reads (two neighbours share a packed byte, reads only).
 * v goes to shared memory first (indexed per thread). */
__global__ void __launch_bounds__(PE_THREADS)
primal_materialize_kernel(const uint8_t *__restrict__ idx, int packed, const float *__restrict__ scale, int per_row,
                          int64_t rows, int64_t cols, primal_grid g, float *__restrict__ W) {
    __shared__ float v[TN_GRID_MAX];
    for (int i = (int)threadIdx.x; i < TN_GRID_MAX; i += PE_THREADS) v[i] = g.v[i];
    __syncthreads();
    const int64_t c0 = (int64_t)blockIdx.x * PE_THREADS + threadIdx.x, cstep = (int64_t)gridDim.x * PE_THREADS;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float s = scale[per_row ? r : 0];
        float *w = W + r * cols;
        if (packed) {
            for (int64_t c = c0, i = r * cols + c0; c < cols; c += cstep, i += cstep)
                w[c] = s * v[(idx[i >> 1] >> ((int)(i & 1) * 4)) & 0x0F];
        } else {
            const uint8_t *ix = idx + r * cols;
            for (int64_t c = c0; c < cols; c += cstep) w[c] = s * v[ix[c]];
        }
    }
}

extern "C" int tn_cuda_primal_materialize(const tn_ghost_view *t, float *W) {
    if (!t || !t->grid || !W) return tn_err("tn_cuda_primal_materialize: NULL argument");
    if (t->rows <= 0 || t->cols <= 0) return 0;
    primal_grid g;
    g.n = t->grid->n;
    memcpy(g.v, t->grid->v, sizeof g.v);
    TN_LAUNCH(primal_materialize_kernel, primal_rows_grid(t->rows, t->cols), PE_THREADS, 0, t->idx, t->packed,
              t->scale, t->scale_per_row, t->rows, t->cols, g, W);
    TN_CU_LAUNCHED("tn_cuda_primal_materialize: launch");
    return 0;
}

/* ---- accumulate ------------------------------------------------------------------------------------- */

/* (a0 + a1) + (a2 + a3) over the 4 lanes of a row group, on every lane. */
static __device__ __forceinline__ double primal_combine4(double a) {
    a = a + __shfl_xor_sync(FULL_MASK, a, 1);
    return a + __shfl_xor_sync(FULL_MASK, a, 2);
}

/* Per-row statistics of G [rows, cols] (optim/primal.c row_stats): s1[r] = Σ|G|, m2[r] = Σ (|G| − s1/cols)²,
 * sg[r] = Σ G · v[idx], all double, into scratch.
 * Thread mapping: 4 consecutive threads per row (PR_THREADS / 4 rows per block, row groups past the grid
 * loop); lane k walks j = k, k + 4, ... below cols & ~3 and lane 0 then the tail, the CPU's chains; a warp
 * reads 8 rows x 16 contiguous bytes per step. Rows past the end shuffle zeros. v as doubles in shared. */
__global__ void __launch_bounds__(PR_THREADS)
primal_row_stats_kernel(const float *__restrict__ G, const uint8_t *__restrict__ idx, int packed, int64_t rows,
                        int64_t cols, primal_grid g, double *__restrict__ s1, double *__restrict__ m2,
                        double *__restrict__ sg) {
    __shared__ double vd[TN_GRID_MAX];
    const int tid = (int)threadIdx.x, k = tid % PR_LANES;
    for (int i = tid; i < TN_GRID_MAX; i += PR_THREADS) vd[i] = (double)g.v[i];
    __syncthreads();
    const int64_t rpb = PR_THREADS / PR_LANES, cols4 = cols & ~(int64_t)3;
    for (int64_t base = (int64_t)blockIdx.x * rpb; base < rows; base += (int64_t)gridDim.x * rpb) {
        const int64_t r = base + tid / PR_LANES;
        const bool on = r < rows;
        const int64_t off = (on ? r : 0) * cols;
        const float *gr = G + off;
        double a = 0.0, b = 0.0;
        if (on) {
            for (int64_t j = k; j < cols4; j += PR_LANES) {
                const double x = (double)__ldg(gr + j);
                a += fabs(x);
                b = __dadd_rn(b, __dmul_rn(x, vd[primal_get_index(idx, packed, off + j)]));
            }
            if (k == 0)
                for (int64_t j = cols4; j < cols; j++) {
                    const double x = (double)__ldg(gr + j);
                    a += fabs(x);
                    b = __dadd_rn(b, __dmul_rn(x, vd[primal_get_index(idx, packed, off + j)]));
                }
        }
        a = primal_combine4(a);
        b = primal_combine4(b);
        const double mean = a / (double)cols;
        double m = 0.0;
        if (on) {
            for (int64_t j = k; j < cols4; j += PR_LANES) {
                const double d = fabs((double)__ldg(gr + j)) - mean;
                m = __dadd_rn(m, __dmul_rn(d, d));
            }
            if (k == 0)
                for (int64_t j = cols4; j < cols; j++) {
                    const double d = fabs((double)__ldg(gr + j)) - mean;
                    m = __dadd_rn(m, __dmul_rn(d, d));
                }
        }
        m = primal_combine4(m);
        if (on && k == 0) {
            s1[r] = a;
            m2[r] = m;
            sg[r] = b;
        }
    }
}

/* The row-order combination of tn_primal_accumulate, one block of PC_THREADS:
 *   S1 = Σ_r s1[r], SG = Σ_r sg[r] (per tensor) in row order; mean = S1 / n;
 *   M2 = Σ_r (m2[r] + (cols · d_r) · d_r), d_r = s1[r] / cols − mean, in row order;
 *   bad = S1 or M2 not finite; thr = float_below(mean + z · sqrt(M2 / (n − 1))) (0 std when n = 1);
 *   unless bad: scale_grad[0] += (float)SG, or scale_grad[r] += (float)sg[r] per row (parallel).
 * Thread mapping: all threads stage PC_CHUNK rows (and the M2 terms, computed in parallel) in shared memory;
 * lane 0 of warp 0 adds S1 and then M2, lane 0 of warp 1 adds SG. Writes st->bad, st->thr, st->voters = 0. */
__global__ void __launch_bounds__(PC_THREADS)
primal_combine_kernel(int64_t rows, int64_t cols, double z, int per_row, const double *__restrict__ s1,
                      const double *__restrict__ m2, const double *__restrict__ sg, float *scale_grad,
                      primal_status *st) {
    __shared__ double buf[2][PC_CHUNK];
    __shared__ double res[2];
    __shared__ int sbad;
    const int tid = (int)threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int64_t n = rows * cols;
    const double dcols = (double)cols;
    double acc = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += PC_CHUNK) {
        const int len = rows - r0 < PC_CHUNK ? (int)(rows - r0) : PC_CHUNK;
        for (int i = tid; i < len; i += PC_THREADS) {
            buf[0][i] = s1[r0 + i];
            buf[1][i] = sg[r0 + i];
        }
        __syncthreads();
        if (lane == 0 && warp < 2)
            for (int i = 0; i < len; i++) acc += buf[warp][i];
        __syncthreads();
    }
    if (lane == 0 && warp < 2) res[warp] = acc;
    __syncthreads();
    const double mean = res[0] / (double)n;
    acc = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += PC_CHUNK) {
        const int len = rows - r0 < PC_CHUNK ? (int)(rows - r0) : PC_CHUNK;
        for (int i = tid; i < len; i += PC_THREADS) {
            const double d = s1[r0 + i] / dcols - mean;
            buf[0][i] = __dadd_rn(m2[r0 + i], __dmul_rn(__dmul_rn(dcols, d), d));
        }
        __syncthreads();
        if (tid == 0)
            for (int i = 0; i < len; i++) acc += buf[0][i];
        __syncthreads();
    }
    if (tid == 0) {
        const int bad = !primal_finite(res[0]) || !primal_finite(acc);
        const double sd = n > 1 ? sqrt(acc / (double)(n - 1)) : 0.0;
        st->bad = bad;
        st->thr = bad ? 0.0f : primal_float_below(__dadd_rn(mean, __dmul_rn(z, sd)));
        st->voters = 0;
        if (!bad && !per_row && scale_grad) scale_grad[0] += (float)res[1];
        sbad = bad;
    }
    __syncthreads();
    if (!sbad && per_row && scale_grad)
        for (int64_t r = tid; r < rows; r += PC_THREADS) scale_grad[r] += (float)sg[r];
}

/* Votes (optim/primal.c vote_row_ref): where |G| > thr, vote = clamp(vote − sign(G) · sign(scale_r), ±127);
 * a row with scale 0 casts none. st->voters += the number of weights that voted. Nothing when st->bad.
 * Thread mapping: blockIdx.y walks rows, x · blockDim + thread the columns (grid-stride, coalesced); the
 * count goes through a block reduction and one integer atomicAdd per block. */
__global__ void __launch_bounds__(PE_THREADS)
primal_vote_kernel(const float *__restrict__ G, int8_t *__restrict__ vote, const float *__restrict__ scale,
                   int per_row, int64_t rows, int64_t cols, primal_status *st) {
    __shared__ unsigned long long red[32];
    const bool ok = st->bad == 0; /* uniform */
    const float thr = st->thr;
    unsigned long long cnt = 0;
    if (ok)
        for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
            const float s = scale[per_row ? r : 0];
            const int ss = (s > 0.0f) - (s < 0.0f);
            if (ss == 0) continue;
            for (int64_t c = (int64_t)blockIdx.x * PE_THREADS + threadIdx.x; c < cols;
                 c += (int64_t)gridDim.x * PE_THREADS) {
                const int64_t i = r * cols + c;
                const float x = __ldg(G + i);
                if (!(fabsf(x) > thr)) continue;
                const int d = ((x < 0.0f) - (x > 0.0f)) * ss;
                if (!d) continue;
                const int v = vote[i] + d;
                vote[i] = (int8_t)(v > VOTE_MAX ? VOTE_MAX : v < -VOTE_MAX ? -VOTE_MAX : v);
                cnt++;
            }
        }
    cnt = primal_block_sum(cnt, red);
    if (threadIdx.x == 0 && cnt) atomicAdd(&st->voters, cnt);
}

extern "C" int tn_cuda_primal_accumulate(const tn_ghost_view *t, const float *G, double z, float *scale_grad,
                                         int64_t *host_voters) {
    if (!t || !t->grid || !G) return tn_err("tn_cuda_primal_accumulate: NULL argument");
    const int64_t rows = t->rows, cols = t->cols;
    if (rows <= 0 || cols <= 0)
        return tn_err("tn_cuda_primal_accumulate: empty tensor [%lld, %lld]", (long long)rows, (long long)cols);
    primal_grid g;
    g.n = t->grid->n;
    memcpy(g.v, t->grid->v, sizeof g.v);
    const int per_row = t->scale_per_row != 0;

    /* scratch: status | s1, m2, sg [rows] doubles */
    const size_t R = (size_t)rows;
    char *scr = (char *)tn_cuda_scratch(PS_STATUS_BYTES + 3 * R * sizeof(double));
    if (!scr) return -1;
    primal_status *st = (primal_status *)scr;
    double *s1 = (double *)(scr + PS_STATUS_BYTES), *m2 = s1 + R, *sg = m2 + R;

    const int64_t rpb = PR_THREADS / PR_LANES, sb = (rows + rpb - 1) / rpb;
    TN_LAUNCH(primal_row_stats_kernel, (unsigned)(sb < PR_MAX_BLOCKS ? sb : PR_MAX_BLOCKS), PR_THREADS, 0, G, t->idx,
              t->packed, rows, cols, g, s1, m2, sg);
    TN_CU_LAUNCHED("tn_cuda_primal_accumulate: row statistics");
    TN_LAUNCH(primal_combine_kernel, 1, PC_THREADS, 0, rows, cols, z, per_row, s1, m2, sg, scale_grad, st);
    TN_CU_LAUNCHED("tn_cuda_primal_accumulate: combine");
    TN_LAUNCH(primal_vote_kernel, primal_rows_grid(rows, cols), PE_THREADS, 0, G, t->vote, t->scale, per_row, rows,
              cols, st);
    TN_CU_LAUNCHED("tn_cuda_primal_accumulate: votes");

    primal_status hs;
    TN_CU(cudaMemcpy(&hs, st, sizeof hs, cudaMemcpyDeviceToHost), "tn_cuda_primal_accumulate: status download");
    if (hs.bad)
        return tn_err("tn_cuda_primal_accumulate: gradient of [%lld, %lld] tensor is not finite", (long long)rows,
                      (long long)cols);
    if (host_voters) *host_voters = (int64_t)hs.voters;
    return 0;
}

/* ---- flip ------------------------------------------------------------------------------------------- */

/* One weight of tn_primal_step_keyed: given its vote v and index k (k read only when drawn), returns the
 * new vote; *k_out the new index, *moved whether it changed. */
static __device__ __forceinline__ int8_t primal_flip_one(int v, int64_t i, double p, uint64_t key, int consensus,
                                                         double decay, int top, int k, int *k_out, int *moved) {
    int spent = 0;
    *k_out = k;
    *moved = 0;
    if ((v < 0 ? -v : v) >= consensus && tn_primal_uniform(key, i) < p) {
        spent = 1;
        int k2 = k + (v > 0 ? 1 : -1);
        k2 = k2 < 0 ? 0 : k2 > top ? top : k2; /* the weight's own grid ends */
        *k_out = k2;
        *moved = k2 != k;
    }
    return tn_primal_vote_after(v, spent, decay);
}

/* The flip step: for each weight i with |vote| >= consensus and tn_primal_uniform(key, i) < p_row, idx +=
 * sign(vote) clamped to [0, top]; then vote = tn_primal_vote_after(vote, drawn, decay). cnt (may be NULL):
 * += weights with a vote before the step, indices that changed.
 * Thread mapping: blockIdx.y walks rows; thread 0 puts the row's p (and, packed, the next row's) in shared
 * memory once per row. Unpacked: x · blockDim + thread walks the row's elements (grid-stride, byte loads,
 * coalesced). Packed: it walks the bytes whose low element lies in the row, [ceil(r·cols / 2),
 * ceil((r+1)·cols / 2)), one thread per byte and both its nibbles, so bytes are never shared; a high nibble
 * past the row's end is the next row's first element (odd cols) and takes that row's p. Votes and indices
 * are written only where they change. */
__global__ void __launch_bounds__(PE_THREADS)
primal_flip_kernel(uint8_t *__restrict__ idx, int8_t *__restrict__ vote, const float *__restrict__ scale, int packed,
                   int per_row, int64_t rows, int64_t cols, int top, uint64_t key, double c, double p_min,
                   double p_max, double decay, int consensus, primal_status *cnt) {
    __shared__ double sp[2];
    __shared__ unsigned long long red[32];
    const int tid = (int)threadIdx.x;
    const int64_t n = rows * cols;
    unsigned long long voted = 0, flipped = 0;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        if (tid == 0) {
            sp[0] = tn_primal_prob(c, p_min, p_max, scale[per_row ? r : 0]);
            sp[1] = per_row && r + 1 < rows ? tn_primal_prob(c, p_min, p_max, scale[r + 1]) : sp[0];
        }
        __syncthreads();
        const double p = sp[0];
        if (!packed) {
            for (int64_t col = (int64_t)blockIdx.x * PE_THREADS + tid; col < cols;
                 col += (int64_t)gridDim.x * PE_THREADS) {
                const int64_t i = r * cols + col;
                const int v = vote[i];
                if (!v && consensus > 0) continue; /* no vote: nothing moves, the vote stays 0 */
                voted += v != 0;
                const bool cand = (v < 0 ? -v : v) >= consensus;
                const int k = cand ? idx[i] : 0;
                int k2, moved;
                const int8_t nv = primal_flip_one(v, i, p, key, consensus, decay, top, k, &k2, &moved);
                if (moved) {
                    idx[i] = (uint8_t)k2;
                    flipped++;
                }
                if (nv != v) vote[i] = nv;
            }
        } else {
            const int64_t row_end = (r + 1) * cols, kb = (r * cols + 1) / 2, ke = (row_end + 1) / 2;
            const double p_next = sp[1];
            for (int64_t kk = kb + (int64_t)blockIdx.x * PE_THREADS + tid; kk < ke;
                 kk += (int64_t)gridDim.x * PE_THREADS) {
                const int64_t i0 = 2 * kk;
                const int v0 = vote[i0], v1 = i0 + 1 < n ? vote[i0 + 1] : 0;
                if (!v0 && !v1 && consensus > 0) continue;
                const int byte = idx[kk];
                int nb = byte;
                if (v0 || consensus <= 0) {
                    voted += v0 != 0;
                    int k2, moved;
                    const int8_t nv = primal_flip_one(v0, i0, p, key, consensus, decay, top, byte & 0x0F, &k2, &moved);
                    if (moved) {
                        nb = (nb & 0xF0) | k2;
                        flipped++;
                    }
                    if (nv != v0) vote[i0] = nv;
                }
                if ((v1 || consensus <= 0) && i0 + 1 < n) {
                    voted += v1 != 0;
                    int k2, moved;
                    const double p1 = i0 + 1 < row_end ? p : p_next;
                    const int8_t nv =
                        primal_flip_one(v1, i0 + 1, p1, key, consensus, decay, top, byte >> 4, &k2, &moved);
                    if (moved) {
                        nb = (nb & 0x0F) | (k2 << 4);
                        flipped++;
                    }
                    if (nv != v1) vote[i0 + 1] = nv;
                }
                if (nb != byte) idx[kk] = (uint8_t)nb;
            }
        }
        __syncthreads(); /* sp is rewritten for the next row */
    }
    if (cnt) { /* uniform */
        voted = primal_block_sum(voted, red);
        flipped = primal_block_sum(flipped, red);
        if (tid == 0) {
            if (voted) atomicAdd(&cnt->voted, voted);
            if (flipped) atomicAdd(&cnt->flipped, flipped);
        }
    }
}

extern "C" int tn_cuda_primal_flip(const tn_ghost_view *t, uint64_t key, const tn_flip_rule *rule,
                                   int64_t *host_voted, int64_t *host_flipped) {
    if (!t || !t->grid || !rule) return tn_err("tn_cuda_primal_flip: NULL argument");
    const int64_t rows = t->rows, cols = t->cols;
    const int want = host_voted || host_flipped;
    if (rows <= 0 || cols <= 0) {
        if (host_voted) *host_voted = 0;
        if (host_flipped) *host_flipped = 0;
        return 0;
    }
    if (t->packed && t->grid->n > 16)
        return tn_err("tn_cuda_primal_flip: packed indices need a grid of at most 16 values ('%s' has %d)",
                      t->grid->name, t->grid->n);
    primal_status *st = NULL;
    if (want) {
        st = (primal_status *)tn_cuda_scratch(sizeof(primal_status));
        if (!st) return -1;
        TN_CU(cudaMemsetAsync(st, 0, sizeof *st, 0), "tn_cuda_primal_flip: counters");
    }
    const int64_t units = t->packed ? cols / 2 + 1 : cols;
    TN_LAUNCH(primal_flip_kernel, primal_rows_grid(rows, units), PE_THREADS, 0, t->idx, t->vote, t->scale, t->packed,
              t->scale_per_row != 0, rows, cols, t->grid->n - 1, key, rule->c, rule->p_min, rule->p_max,
              rule->vote_decay, rule->consensus, st);
    TN_CU_LAUNCHED("tn_cuda_primal_flip: launch");
    if (want) {
        primal_status hs;
        TN_CU(cudaMemcpy(&hs, st, sizeof hs, cudaMemcpyDeviceToHost), "tn_cuda_primal_flip: counters download");
        if (host_voted) *host_voted = (int64_t)hs.voted;
        if (host_flipped) *host_flipped = (int64_t)hs.flipped;
    }
    return 0;
}
