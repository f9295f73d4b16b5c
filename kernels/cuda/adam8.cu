/* AdamW in blocks of 2048 elements on the GPU: tn_cuda_adamw8, the device side of optim/adamw8.c
 * tn_adamw8_apply (the scheme: optim/adamw8.h), and tn_cuda_adamw_bf16, of optim/adamw_bf16.c (bf16
 * parameters and gradients with fp32 or 8-bit moments, stochastic rounding: the same element arithmetic with
 * bf16 loads and stores, kernels/bf16.h), both bit for bit. One kernel template serves both.
 *
 * Exactness. The code tables are built in the kernel from the formula the CPU uses (kernels/adam8_math.h
 * tn_adam8_code_value: one IEEE float division per entry, nvcc's default -prec-div=true), the midpoints as
 * (a + b) · 0.5 in float, and each code by the CPU's own function (tn_adam8_quantize1: u = x / absmax, an
 * IEEE division, the branchless search over the midpoints, v's floor for small positive values). The update
 * is tn_adamw_apply's float expressions written with __fmul_rn / __fadd_rn, which nvcc never contracts into
 * fma (the CPU, ISO C with -ffp-contract=off, never does either); sqrtf and the divisions are IEEE (nvcc's
 * -prec-sqrt / -prec-div defaults). The block's absmax is a maximum, exact in any order; here a fixed shuffle
 * tree, no atomics.
 *
 * Mapping: one CUDA block of A8_THREADS = 256 threads per quantization block of TN_ADAM8_BLOCK = 2048
 * elements; thread t takes elements t, t + 256, ..., t + 7·256 of the block (a warp reads 32 consecutive
 * floats / bytes), keeping its 8 new moments in registers between the update and the requantization.
 *   1. thread t builds entry t of both tables in (dynamic) shared memory; then the 255 midpoints of each;
 *   2. dequantize m, v; the AdamW update (p written back); running max |m|, max |v|;
 *   3. block maximum (warp shuffles, then warp 0 over the per-warp values); thread 0 writes the absmaxes
 *      (every thread has read the old ones before the reduction's first barrier);
 *   4. requantize m and v against the new absmax.
 * The loops over a thread's 8 elements have constant trip counts; nvcc unrolls them, so mk / vk stay in
 * registers (ptxas: no stack frame).
 * Threads past the end of a short last block skip the element work but reach every barrier. */
#include "kernels/cuda/cuda_internal.h"

#include "kernels/cuda/adam8.h"

#include "kernels/bf16.h"

#include <climits>

#define FULL_MASK 0xffffffffu
#define A8_THREADS 256
#define A8_PER_THREAD (TN_ADAM8_BLOCK / A8_THREADS)
#define A8_SMEM_BYTES (4 * TN_ADAM8_CODES * sizeof(float)) /* both tables and their midpoints: 4 KiB */

static_assert(TN_ADAM8_BLOCK % A8_THREADS == 0, "a thread takes a whole number of elements of a block");
static_assert(A8_THREADS == TN_ADAM8_CODES, "thread t builds entry t of each table");

/* max that never picks a NaN a (the CPU's `|x| > a ? |x| : a`); the running value is never NaN. */
static __device__ __forceinline__ float keep_max(float m, float a) { return a > m ? a : m; }

/* Both maxima over the block, returned to every thread (blockDim.x = A8_THREADS). red [2][32] shared. */
static __device__ void block_max2(float &am, float &av, float (*red)[32]) {
    const int lane = (int)(threadIdx.x % 32), warp = (int)(threadIdx.x / 32), nwarps = (int)(blockDim.x / 32);
    for (int o = 16; o > 0; o >>= 1) {
        am = keep_max(am, __shfl_down_sync(FULL_MASK, am, o));
        av = keep_max(av, __shfl_down_sync(FULL_MASK, av, o));
    }
    if (lane == 0) {
        red[0][warp] = am;
        red[1][warp] = av;
    }
    __syncthreads();
    if (warp == 0) {
        float wm = lane < nwarps ? red[0][lane] : 0.0f, wv = lane < nwarps ? red[1][lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) {
            wm = keep_max(wm, __shfl_down_sync(FULL_MASK, wm, o));
            wv = keep_max(wv, __shfl_down_sync(FULL_MASK, wv, o));
        }
        if (lane == 0) {
            red[0][0] = wm;
            red[1][0] = wv;
        }
    }
    __syncthreads();
    am = red[0][0];
    av = red[1][0];
}

/* x = T[code] · absmax + 0 (the + 0 turns a −0 product into +0, as optim/adamw8.c tn_adam8_dequantize). */
static __device__ __forceinline__ float dequant(float tv, float absmax) {
    return __fadd_rn(__fmul_rn(tv, absmax), 0.0f);
}

/* One element of tn_adamw_apply, in its float order without contraction (as kernels/cuda/model.cu adamw1):
 * m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g·g; p −= lr·((m·c1) / (sqrt(v·c2) + eps) + wd·p). */
static __device__ __forceinline__ void adamw1(float &p, float g, float &m, float &v, const tn_adamw_step &h) {
    m = __fadd_rn(__fmul_rn(h.beta1, m), __fmul_rn(1.0f - h.beta1, g));
    v = __fadd_rn(__fmul_rn(h.beta2, v), __fmul_rn(__fmul_rn(1.0f - h.beta2, g), g));
    const float step = __fadd_rn(__fmul_rn(m, h.c1) / (sqrtf(__fmul_rn(v, h.c2)) + h.eps), __fmul_rn(h.wd, p));
    p = __fadd_rn(p, -__fmul_rn(h.lr, step));
}

/* A parameter element: float, or bf16 (BF16 = 1: widened exactly; stored back by stochastic rounding with the
 * bits of (seed, counter + e), kernels/bf16.h). */
template <int BF16> struct adam_param;
template <> struct adam_param<0> {
    static __device__ __forceinline__ float load(const void *p, int64_t e) { return ((const float *)p)[e]; }
    static __device__ __forceinline__ float load_grad(const void *g, int64_t e, float) { return ((const float *)g)[e]; }
    static __device__ __forceinline__ void store(void *p, int64_t e, float x, uint64_t, uint64_t) { ((float *)p)[e] = x; }
};
template <> struct adam_param<1> {
    static __device__ __forceinline__ float load(const void *p, int64_t e) {
        return tn_bf16_widen(((const uint16_t *)p)[e]);
    }
    /* the CPU's widen(g) · g_scale, one rounding */
    static __device__ __forceinline__ float load_grad(const void *g, int64_t e, float g_scale) {
        return __fmul_rn(tn_bf16_widen(((const uint16_t *)g)[e]), g_scale);
    }
    static __device__ __forceinline__ void store(void *p, int64_t e, float x, uint64_t seed, uint64_t counter) {
        ((uint16_t *)p)[e] = tn_bf16_round_stochastic(x, seed, counter + (uint64_t)e);
    }
};

/* adam_block_kernel<BF16, STATE8>. p, g [n] float (BF16 = 0) or bf16 (BF16 = 1); the moments: m, v [n] codes
 * with m_absmax, v_absmax [gridDim.x] (STATE8 = 1), or m32, v32 [n] float (STATE8 = 0); h by value.
 * Block b = elements [2048 b, min(n, 2048 (b + 1))); mapping in the file comment (steps 1, 3 and 4 only with
 * 8-bit state). <0, 1> is tn_adamw8_apply; <1, s> is tn_adamw_bf16_apply (optim/adamw_bf16.h). */
template <int BF16, int STATE8>
static __global__ void __launch_bounds__(A8_THREADS)
adam_block_kernel(void *__restrict__ p, const void *__restrict__ g, float g_scale, uint8_t *__restrict__ m,
                  float *__restrict__ m_absmax, uint8_t *__restrict__ v, float *__restrict__ v_absmax,
                  float *__restrict__ m32, float *__restrict__ v32, int64_t n, tn_adamw_step h, uint64_t seed,
                  uint64_t counter) {
    typedef adam_param<BF16> P;
    /* the tables in dynamic shared memory, which the emulator poisons before each block (NaN floats), so a
     * read before the barrier that publishes them fails the test rather than finding last block's values */
    TN_DYN_SHARED(float, smem);
    float *tab_m = smem, *tab_v = smem + TN_ADAM8_CODES, *mid_m = smem + 2 * TN_ADAM8_CODES,
          *mid_v = smem + 3 * TN_ADAM8_CODES;
    __shared__ float red[2][32];
    const int t = (int)threadIdx.x;

    if (STATE8) {
        tab_m[t] = tn_adam8_code_value(1, t);
        tab_v[t] = tn_adam8_code_value(0, t);
        __syncthreads();
        if (t + 1 < TN_ADAM8_CODES) {
            mid_m[t] = __fmul_rn(__fadd_rn(tab_m[t], tab_m[t + 1]), 0.5f);
            mid_v[t] = __fmul_rn(__fadd_rn(tab_v[t], tab_v[t + 1]), 0.5f);
        }
        __syncthreads(); /* the midpoints are first read in step 4, after more barriers; this one keeps it simple */
    }

    const int64_t b = blockIdx.x, off = b * TN_ADAM8_BLOCK;
    const int64_t len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
    const float am = STATE8 ? m_absmax[b] : 0.0f, av = STATE8 ? v_absmax[b] : 0.0f;
    float mk[A8_PER_THREAD], vk[A8_PER_THREAD];
    float nm = 0.0f, nv = 0.0f;
    for (int r = 0; r < A8_PER_THREAD; r++) {
        const int64_t i = t + (int64_t)r * A8_THREADS, e = off + i;
        mk[r] = 0.0f;
        vk[r] = 0.0f;
        if (i < len) {
            float pe = P::load(p, e);
            float me = STATE8 ? dequant(tab_m[m[e]], am) : m32[e], ve = STATE8 ? dequant(tab_v[v[e]], av) : v32[e];
            adamw1(pe, P::load_grad(g, e, g_scale), me, ve, h);
            P::store(p, e, pe, seed, counter);
            if (!STATE8) {
                m32[e] = me;
                v32[e] = ve;
                continue;
            }
            mk[r] = me;
            vk[r] = ve;
            nm = keep_max(nm, fabsf(me));
            nv = keep_max(nv, fabsf(ve));
        }
    }
    if (!STATE8) return; /* no barrier follows: every thread may leave */

    block_max2(nm, nv, red);
    if (t == 0) {
        m_absmax[b] = nm;
        v_absmax[b] = nv;
    }
    for (int r = 0; r < A8_PER_THREAD; r++) {
        const int64_t i = t + (int64_t)r * A8_THREADS, e = off + i;
        if (i < len) {
            m[e] = (uint8_t)(nm == 0.0f ? TN_ADAM8_M_ZERO : tn_adam8_quantize1(mid_m, 0, mk[r], nm));
            v[e] = (uint8_t)(nv == 0.0f ? TN_ADAM8_V_ZERO : tn_adam8_quantize1(mid_v, 1, vk[r], nv));
        }
    }
}

/* Blocks for n elements, or an error naming `what`. */
static int adam_grid(int64_t n, const char *what, unsigned *blocks) {
    const int64_t nb = (n + TN_ADAM8_BLOCK - 1) / TN_ADAM8_BLOCK;
    if (nb > INT_MAX)
        return tn_err("%s: n = %lld needs %lld blocks, more than one grid launches", what, (long long)n, (long long)nb);
    *blocks = (unsigned)nb;
    return 0;
}

extern "C" int tn_cuda_adamw8(float *p, const float *g, uint8_t *m, float *m_absmax, uint8_t *v, float *v_absmax,
                              int64_t n, const tn_adamw_step *h) {
    if (n < 0) return tn_err("tn_cuda_adamw8: n = %lld (must be >= 0)", (long long)n);
    if (!h) return tn_err("tn_cuda_adamw8: no step constants");
    if (n == 0) return 0;
    unsigned nb = 0;
    TN_CHECK(adam_grid(n, "tn_cuda_adamw8", &nb));
    auto kernel = adam_block_kernel<0, 1>;
    TN_LAUNCH(kernel, nb, A8_THREADS, A8_SMEM_BYTES, (void *)p, (const void *)g, 1.0f, m, m_absmax, v, v_absmax,
              (float *)NULL, (float *)NULL, n, *h, (uint64_t)0, (uint64_t)0);
    TN_CU_LAUNCHED("tn_cuda_adamw8: launch");
    return 0;
}

extern "C" int tn_cuda_adamw_bf16(uint16_t *p, const uint16_t *g, float g_scale, const tn_adam_moments *s, int64_t n,
                                  const tn_adamw_step *h, uint64_t seed, uint64_t counter) {
    if (n < 0) return tn_err("tn_cuda_adamw_bf16: n = %lld (must be >= 0)", (long long)n);
    if (!h || !s) return tn_err("tn_cuda_adamw_bf16: no step constants or moments");
    if (s->bits != 8 && s->bits != 32) return tn_err("tn_cuda_adamw_bf16: moments of %d bits (32 or 8)", s->bits);
    if (n == 0) return 0;
    unsigned nb = 0;
    TN_CHECK(adam_grid(n, "tn_cuda_adamw_bf16", &nb));
    if (s->bits == 8) {
        auto kernel = adam_block_kernel<1, 1>;
        TN_LAUNCH(kernel, nb, A8_THREADS, A8_SMEM_BYTES, (void *)p, (const void *)g, g_scale, s->m8, s->m_absmax, s->v8,
                  s->v_absmax, (float *)NULL, (float *)NULL, n, *h, seed, counter);
    } else {
        auto kernel = adam_block_kernel<1, 0>;
        TN_LAUNCH(kernel, nb, A8_THREADS, 0, (void *)p, (const void *)g, g_scale, (uint8_t *)NULL, (float *)NULL,
                  (uint8_t *)NULL, (float *)NULL, s->m, s->v, n, *h, seed, counter);
    }
    TN_CU_LAUNCHED("tn_cuda_adamw_bf16: launch");
    return 0;
}
