/* STE quantization on the GPU: tn_cuda_quantize (quant/snap.h tn_quantize_tensor with the scale rules of
 * quant/scale.h) and the λ blend tn_cuda_ste_blend (optim/ste.c tn_ste_blend).
 *
 * Exactness. Scales, indices and W_q equal the CPU's bit for bit (the test checks every built-in grid, rule
 * and layout): the row sums are taken in the CPU's own order, not just "in double".
 *   - quant/scale.c sums a row in 8 lanes: lane k adds elements j ≡ k (mod 8) in increasing j (the tail
 *     element n8 + t goes to lane t, which is the same rule), and combines them as
 *     ((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7)). Here 8 consecutive threads own a row, thread k walks that
 *     same chain, and shuffles combine in that order (xor 4, then xor 1, then xor 2; IEEE addition is
 *     commutative, so every lane of the group ends with the same bits). The second pass of std,
 *     Σ (w − mean)², is the same chain with __dmul_rn / __dadd_rn so that nvcc cannot contract it into an
 *     fma the CPU (ISO C, -ffp-contract=off) never uses.
 *   - per tensor, the CPU adds the row results in row order (sum, Σ|w|, then Σ (w − mean)² with the tensor
 *     mean). That is a sequential chain; one block stages the per-row values in shared memory, coalesced,
 *     and one thread per chain adds them in row order (three chains in three different warps run side by
 *     side). It costs about `rows` dependent double adds (a few µs for thousands of rows), keeps the op at
 *     one host wait, and avoids a round trip of rows × 32 bytes.
 *   - the guard is the CPU's: max((float)s, 1e-5f); W / s is the IEEE division (nvcc's default
 *     -prec-div=true), the snap the same branchless search over the grid's exact thresholds up[] as
 *     tn_grid_snap_one, W_q = s · v[idx] one rounded product.
 *
 * Non-finite weights. The first pass flags, per row, the first column holding a NaN or an infinity and
 * keeps the smallest flat index (integer atomicMin) in a status word in tn_cuda_scratch. Every later kernel
 * reads that word and writes nothing when it is set, so a failing call leaves Wq, idx and scales as they
 * were; the host downloads the word (the op's one wait) and reports the row and column (one more 4-byte
 * download for the value, on the error path only).
 *
 * Kernels (launch order):
 *   quant_row_stats_kernel  pass 0: per-row Σw, Σ|w|, max|w| (+ per-row Σ (w − mean_row)² and the row's
 *                           scale when per_row) and the first bad column; pass 1 (per-tensor std): per-row
 *                           Σ (w − mean)² with the tensor mean.
 *   quant_combine_kernel    per tensor only: the row-order chains; phase 0 ends in the tensor mean (std)
 *                           or the scale, phase 1 (std) in the scale.
 *   quant_snap_kernel       idx = nearest(W / s), W_q = s · v[idx], scales copied out.
 *   quant_blend_kernel      out = W + λ (Wq − W) for 0 < λ < 1 (else one device-to-device copy).
 * Nothing here waits for the device except tn_cuda_quantize (once, for the non-finite check). */
#include "kernels/cuda/cuda_internal.h"

extern "C" {
#include "quant/scale.h"
}

#include <cfloat>

#define FULL_MASK 0xffffffffu
#define QS_THREADS 128           /* row-statistics kernel: 16 rows of 8 lanes per block */
#define QS_LANES 8               /* lanes per row: the CPU's 8 accumulators */
#define QS_MAX_BLOCKS 65535
#define QC_THREADS 256           /* the one-block combine kernel */
#define QC_CHUNK 1024            /* rows staged in shared memory per step (3 x 8 KiB) */
#define QE_THREADS 256           /* snap and blend */
#define QE_MAX_BLOCKS 8192       /* more work: grid-stride */
#define QE_MAX_X 1024            /* column blocks per row at most */

/* The grid as the kernels get it: by value (about 2 KB of kernel parameters, under the 4 KB limit). */
struct quant_grid {
    int n, zero_idx, search_size;
    float v[TN_GRID_MAX];  /* values, zero-padded to 256 */
    float up[TN_GRID_MAX]; /* thresholds, +inf-padded (quant/grid.h) */
};

/* One call's status in scratch. bad: flat index of the first non-finite weight, or ~0 (set by a memset). */
struct quant_status {
    unsigned long long bad;
    double mean; /* per-tensor std: the tensor mean (phase 0 -> pass 1) */
};
#define QS_NONE (~0ull)
#define QS_STATUS_BYTES 64 /* the status, padded so the double arrays after it stay aligned */

static __device__ __forceinline__ bool quant_finite_f(float x) { return fabsf(x) <= FLT_MAX; }

/* The CPU's combine8 over the 8 lanes of a group: ((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7)), on every lane. */
static __device__ __forceinline__ double quant_combine8(double l) {
    l = l + __shfl_xor_sync(FULL_MASK, l, 4);
    l = l + __shfl_xor_sync(FULL_MASK, l, 1);
    return l + __shfl_xor_sync(FULL_MASK, l, 2);
}

/* quant/scale.c rule_value and guard. */
static __device__ __forceinline__ double quant_rule_value(int rule, double sumabs, double maxabs, double m2,
                                                          int64_t n) {
    switch (rule) {
    case TN_SCALE_STD: return n > 1 ? sqrt(m2 / (double)(n - 1)) : 0.0;
    case TN_SCALE_ABSMEAN: return sumabs / (double)n;
    default: return maxabs;
    }
}
static __device__ __forceinline__ float quant_guard(double s) {
    const float f = (float)s;
    return f > TN_SCALE_EPS ? f : TN_SCALE_EPS;
}

/* Σ (w[j] − mean)² over j ≡ k (mod 8), in increasing j (m2_ref's lane k). */
static __device__ __forceinline__ double quant_lane_m2(const float *__restrict__ w, int64_t cols, int k,
                                                       double mean) {
    double m = 0.0;
    for (int64_t j = k; j < cols; j += QS_LANES) {
        const double d = (double)__ldg(w + j) - mean;
        m = __dadd_rn(m, __dmul_rn(d, d));
    }
    return m;
}

/* Per-row statistics. W [rows, cols]; outputs [rows] (scratch): sum, sabs, smax, m2; sc [rows] (per_row).
 * Thread mapping: 8 consecutive threads per row (QS_THREADS / 8 rows per block, row groups past the grid
 * loop); thread k of a row walks the CPU's lane-k chain j = k, k + 8, ... (a warp reads 4 rows x 32
 * contiguous bytes per step), quant_combine8 merges the lanes. Groups whose row is past the end take part
 * in the shuffles with zeros.
 * pass 0: sum, sabs, smax and the first non-finite column (atomicMin of r·cols + c into st->bad); when
 *         per_row, also the row's m2 (std) and its guarded scale sc[r].
 * pass 1: m2[r] = Σ (w − st->mean)² (per-tensor std, after quant_combine_kernel phase 0). */
__global__ void __launch_bounds__(QS_THREADS)
quant_row_stats_kernel(const float *__restrict__ W, int64_t rows, int64_t cols, int rule, int per_row, int pass,
                       double *__restrict__ sum, double *__restrict__ sabs, double *__restrict__ smax,
                       double *__restrict__ m2, float *__restrict__ sc, quant_status *st) {
    const int tid = (int)threadIdx.x, k = tid % QS_LANES;
    const int64_t rows_per_block = QS_THREADS / QS_LANES;
    const double tensor_mean = pass == 1 ? st->mean : 0.0;
    for (int64_t base = (int64_t)blockIdx.x * rows_per_block; base < rows;
         base += (int64_t)gridDim.x * rows_per_block) {
        const int64_t r = base + tid / QS_LANES;
        const bool on = r < rows;
        const float *w = W + (on ? r : 0) * cols;
        if (pass == 1) {
            const double m = quant_combine8(on ? quant_lane_m2(w, cols, k, tensor_mean) : 0.0);
            if (on && k == 0) m2[r] = m;
            continue;
        }
        double s = 0.0, a = 0.0, mx = 0.0;
        unsigned long long bad = QS_NONE;
        if (on)
            for (int64_t j = k; j < cols; j += QS_LANES) {
                const float x = __ldg(w + j);
                const double d = (double)x, ad = fabs(d);
                s += d;
                a += ad;
                mx = ad > mx ? ad : mx;
                if (bad == QS_NONE && !quant_finite_f(x)) bad = (unsigned long long)j;
            }
        s = quant_combine8(s);
        a = quant_combine8(a);
        for (int o = 4; o > 0; o >>= 1) { /* max and the first bad column: any order gives the same */
            const double om = __shfl_xor_sync(FULL_MASK, mx, o);
            const unsigned long long ob = __shfl_xor_sync(FULL_MASK, bad, o);
            mx = om > mx ? om : mx;
            bad = ob < bad ? ob : bad;
        }
        double m = 0.0;
        if (per_row && rule == TN_SCALE_STD) /* uniform: every lane shuffles */
            m = quant_combine8(on ? quant_lane_m2(w, cols, k, s / (double)cols) : 0.0);
        if (on && k == 0) {
            sum[r] = s;
            sabs[r] = a;
            smax[r] = mx;
            m2[r] = m;
            if (bad != QS_NONE) atomicMin(&st->bad, (unsigned long long)r * (unsigned long long)cols + bad);
            if (per_row) sc[r] = quant_guard(quant_rule_value(rule, a, mx, m, cols));
        }
    }
}

/* Per-tensor combination, one block of QC_THREADS: the CPU's row-order loops of tn_scale_compute.
 * phase 0: sum = Σ_r sum[r], sumabs = Σ_r sabs[r] (in row order), maxabs = max_r smax[r]; then
 *          st->mean = sum / n (std) or sc[0] = guard(rule value).
 * phase 1: m2 = Σ_r m2[r] in row order; sc[0] = guard(sqrt(m2 / (n − 1))).
 * Thread mapping: all threads stage QC_CHUNK rows of each array into shared memory (coalesced), then lane 0
 * of warp c adds chain c sequentially (chains in separate warps run concurrently). */
__global__ void __launch_bounds__(QC_THREADS)
quant_combine_kernel(int64_t rows, int64_t cols, int rule, int phase, const double *__restrict__ sum,
                     const double *__restrict__ sabs, const double *__restrict__ smax, const double *__restrict__ m2,
                     float *__restrict__ sc, quant_status *st) {
    __shared__ double buf[3][QC_CHUNK];
    __shared__ double res[3];
    const int tid = (int)threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int nchains = phase == 0 ? 3 : 1;
    double acc = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += QC_CHUNK) {
        const int len = rows - r0 < QC_CHUNK ? (int)(rows - r0) : QC_CHUNK;
        for (int i = tid; i < len; i += QC_THREADS) {
            if (phase == 0) {
                buf[0][i] = sum[r0 + i];
                buf[1][i] = sabs[r0 + i];
                buf[2][i] = smax[r0 + i];
            } else {
                buf[0][i] = m2[r0 + i];
            }
        }
        __syncthreads();
        if (lane == 0 && warp < nchains) {
            const double *b = buf[warp];
            if (warp < 2)
                for (int i = 0; i < len; i++) acc += b[i];
            else
                for (int i = 0; i < len; i++) acc = b[i] > acc ? b[i] : acc;
        }
        __syncthreads(); /* buf is restaged */
    }
    if (lane == 0 && warp < nchains) res[warp] = acc;
    __syncthreads();
    if (tid == 0) {
        const int64_t n = rows * cols;
        if (phase == 1) sc[0] = quant_guard(quant_rule_value(TN_SCALE_STD, 0.0, 0.0, res[0], n));
        else if (rule == TN_SCALE_STD) st->mean = res[0] / (double)n;
        else sc[0] = quant_guard(quant_rule_value(rule, res[1], res[2], 0.0, n));
    }
}

/* Snap and dequantize. W [rows, cols]; sc [rows] or [1] (scratch); Wq [rows, cols] float, idx [rows, cols]
 * uint8, scales [rows] or [1], each optional (NULL).
 *   idx = #{ j : W/s >= up[j] } by tn_grid_snap_one's branchless search, clipped to n − 1; Wq = s · v[idx].
 * Thread mapping: blockIdx.y walks rows (rows past gridDim.y loop), blockIdx.x · blockDim.x + threadIdx.x
 * the columns (grid-stride), so a warp reads 32 consecutive floats. The grid's v and up go to shared memory
 * first (the search indexes them per thread). Thread 0 of each row's first column block copies the row's
 * scale out. Writes nothing when st->bad is set. */
__global__ void __launch_bounds__(QE_THREADS)
quant_snap_kernel(const float *__restrict__ W, int64_t rows, int64_t cols, int per_row, quant_grid g,
                  const float *__restrict__ sc, const quant_status *st, float *__restrict__ Wq,
                  uint8_t *__restrict__ idx, float *__restrict__ scales) {
    __shared__ float up[TN_GRID_MAX], v[TN_GRID_MAX];
    const int tid = (int)threadIdx.x;
    const bool ok = st->bad == QS_NONE; /* the same word for every thread: uniform */
    for (int i = tid; i < TN_GRID_MAX; i += QE_THREADS) {
        up[i] = g.up[i];
        v[i] = g.v[i];
    }
    __syncthreads();
    if (!ok) return; /* after the only barrier, and uniform */
    const int half = g.search_size >> 1, top = g.n - 1;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float s = sc[per_row ? r : 0];
        if (scales && blockIdx.x == 0 && tid == 0 && (per_row || r == 0)) scales[per_row ? r : 0] = s;
        if (!Wq && !idx) continue;
        const float *w = W + r * cols;
        for (int64_t c = (int64_t)blockIdx.x * QE_THREADS + tid; c < cols; c += (int64_t)gridDim.x * QE_THREADS) {
            const float x = __ldg(w + c) / s;
            int k = 0;
            for (int step = half; step >= 1; step >>= 1)
                if (x >= up[k + step - 1]) k += step;
            k = k < top ? k : top;
            if (idx) idx[r * cols + c] = (uint8_t)k;
            if (Wq) Wq[r * cols + c] = s * v[k];
        }
    }
}

/* out[i] = W[i] + λ (Wq[i] − W[i]) for 0 < λ < 1, as tn_ste_blend: a subtraction, a product and a sum, each
 * rounded (__fmul_rn / __fadd_rn: no fma). Flat grid-stride, one element per thread per step; out may be
 * W or Wq. */
__global__ void __launch_bounds__(QE_THREADS)
quant_blend_kernel(const float *W, const float *Wq, int64_t n, float lambda, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * QE_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * QE_THREADS) {
        const float w = W[i];
        out[i] = __fadd_rn(w, __fmul_rn(lambda, Wq[i] - w));
    }
}

/* Row blocks (y, at most 65535, rows past loop) x column blocks (x) for QE_THREADS threads, about
 * QE_MAX_BLOCKS blocks at most. */
static dim3 quant_rows_grid(int64_t rows, int64_t cols) {
    int64_t gx = (cols + QE_THREADS - 1) / QE_THREADS;
    gx = gx < 1 ? 1 : gx > QE_MAX_X ? QE_MAX_X : gx;
    int64_t gy = QE_MAX_BLOCKS / gx;
    gy = gy < 1 ? 1 : gy;
    gy = gy < rows ? gy : rows;
    gy = gy < 65535 ? gy : 65535;
    return dim3((unsigned)gx, (unsigned)gy);
}

extern "C" int tn_cuda_quantize(const float *W, int64_t rows, int64_t cols, const tn_grid *g, int rule, int per_row,
                                float *Wq, uint8_t *idx, float *scales) {
    if (!W || !g) return tn_err("tn_cuda_quantize: NULL argument");
    if (rows <= 0 || cols <= 0)
        return tn_err("tn_cuda_quantize: empty tensor [%lld, %lld]", (long long)rows, (long long)cols);
    if (rule != TN_SCALE_STD && rule != TN_SCALE_ABSMEAN && rule != TN_SCALE_ABSMAX)
        return tn_err("tn_cuda_quantize: unknown scale rule %d", rule);
    if (g->n < 1 || g->n > TN_GRID_MAX || g->search_size < 1 || g->search_size > TN_GRID_MAX)
        return tn_err("tn_cuda_quantize: bad grid (%d values)", g->n);
    quant_grid dg;
    dg.n = g->n;
    dg.zero_idx = g->zero_idx;
    dg.search_size = g->search_size;
    memcpy(dg.v, g->v, sizeof dg.v);
    memcpy(dg.up, g->up, sizeof dg.up);
    per_row = per_row != 0;

    /* scratch: status | sum, sabs, smax, m2 [rows] doubles | scales [rows] floats */
    const size_t R = (size_t)rows;
    char *scr = (char *)tn_cuda_scratch(QS_STATUS_BYTES + 4 * R * sizeof(double) + R * sizeof(float));
    if (!scr) return -1;
    quant_status *st = (quant_status *)scr;
    double *sum = (double *)(scr + QS_STATUS_BYTES), *sabs = sum + R, *smax = sabs + R, *m2 = smax + R;
    float *sc = (float *)(m2 + R);
    TN_CU(cudaMemsetAsync(st, 0xff, sizeof *st, 0), "tn_cuda_quantize: status");

    const int64_t rpb = QS_THREADS / QS_LANES, sb = (rows + rpb - 1) / rpb;
    const unsigned sblocks = (unsigned)(sb < QS_MAX_BLOCKS ? sb : QS_MAX_BLOCKS);
    TN_LAUNCH(quant_row_stats_kernel, sblocks, QS_THREADS, 0, W, rows, cols, rule, per_row, 0, sum, sabs, smax, m2,
              sc, st);
    TN_CU_LAUNCHED("tn_cuda_quantize: row statistics");
    if (!per_row) {
        TN_LAUNCH(quant_combine_kernel, 1, QC_THREADS, 0, rows, cols, rule, 0, sum, sabs, smax, m2, sc, st);
        TN_CU_LAUNCHED("tn_cuda_quantize: combine");
        if (rule == TN_SCALE_STD) {
            TN_LAUNCH(quant_row_stats_kernel, sblocks, QS_THREADS, 0, W, rows, cols, rule, per_row, 1, sum, sabs,
                      smax, m2, sc, st);
            TN_CU_LAUNCHED("tn_cuda_quantize: row deviations");
            TN_LAUNCH(quant_combine_kernel, 1, QC_THREADS, 0, rows, cols, rule, 1, sum, sabs, smax, m2, sc, st);
            TN_CU_LAUNCHED("tn_cuda_quantize: combine deviations");
        }
    }
    TN_LAUNCH(quant_snap_kernel, quant_rows_grid(rows, cols), QE_THREADS, 0, W, rows, cols, per_row, dg, sc, st, Wq,
              idx, scales);
    TN_CU_LAUNCHED("tn_cuda_quantize: snap");

    unsigned long long bad = 0;
    TN_CU(cudaMemcpy(&bad, &st->bad, sizeof bad, cudaMemcpyDeviceToHost), "tn_cuda_quantize: status download");
    if (bad != QS_NONE) {
        float x = 0.0f;
        TN_CU(cudaMemcpy(&x, W + bad, sizeof x, cudaMemcpyDeviceToHost), "tn_cuda_quantize: status download");
        return tn_err("tn_cuda_quantize: non-finite weight %g at [%lld, %lld]", (double)x,
                      (long long)(bad / (unsigned long long)cols), (long long)(bad % (unsigned long long)cols));
    }
    return 0;
}

extern "C" int tn_cuda_ste_blend(const float *W, const float *Wq, int64_t n, float lambda, float *out) {
    if (n <= 0) return 0;
    const size_t bytes = (size_t)n * sizeof(float);
    if (lambda >= 1.0f) {
        if (out != Wq) TN_CU(cudaMemcpyAsync(out, Wq, bytes, cudaMemcpyDeviceToDevice, 0), "tn_cuda_ste_blend: copy");
        return 0;
    }
    if (!(lambda > 0.0f)) { /* also NaN */
        if (out != W) TN_CU(cudaMemcpyAsync(out, W, bytes, cudaMemcpyDeviceToDevice, 0), "tn_cuda_ste_blend: copy");
        return 0;
    }
    int64_t nb = (n + QE_THREADS - 1) / QE_THREADS;
    nb = nb < QE_MAX_BLOCKS ? nb : QE_MAX_BLOCKS;
    TN_LAUNCH(quant_blend_kernel, (unsigned)nb, QE_THREADS, 0, W, Wq, n, lambda, out);
    TN_CU_LAUNCHED("tn_cuda_ste_blend: launch");
    return 0;
}
