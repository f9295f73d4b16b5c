/* Reductions inside a thread block, shared by the CUDA kernels whose sums must repeat bit for bit
 * (kernels/cuda/model.cu, kd.cu): a fixed tree whose shape depends only on blockDim.x (warp shuffles, then
 * the per-warp results by warp 0), no atomics. blockDim.x must be a multiple of 32, at most 1024. */
#ifndef TN_KERNELS_CUDA_BLOCK_REDUCE_CUH
#define TN_KERNELS_CUDA_BLOCK_REDUCE_CUH

#include "kernels/cuda/tn_cuda.h" /* the CUDA runtime, or the emulator's */

#ifndef FULL_MASK
#define FULL_MASK 0xffffffffu
#endif

/* The types are in an unnamed namespace: their inline members stay out of other files' way. */
namespace {
struct op_add {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
/* max that never picks a NaN b (the CPU's a > m ? a : m); the running value is never NaN. */
struct op_max {
    __device__ __forceinline__ float operator()(float m, float a) const { return a > m ? a : m; }
};
} /* namespace */

/* Lane 0 gets op over the 32 lanes of the warp (fixed shuffle tree). */
template <class T, class Op> static __device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(FULL_MASK, v, o));
    return v;
}

/* v[0..K) ← op over the block of each, in every thread: each warp reduces with shuffles, warp 0 reduces the
 * per-warp results from red[K][32] (shared). Every thread must call it; it ends with a barrier, so red may be
 * reused at once and every read the block made before it is complete. */
template <int K, class T, class Op> static __device__ void block_reduce_k(T *v, T identity, Op op, T (*red)[32]) {
    const int lane = (int)(threadIdx.x % 32), warp = (int)(threadIdx.x / 32), nwarps = (int)(blockDim.x / 32);
    for (int k = 0; k < K; k++) v[k] = warp_reduce(v[k], op);
    if (lane == 0)
        for (int k = 0; k < K; k++) red[k][warp] = v[k];
    __syncthreads();
    if (warp == 0)
        for (int k = 0; k < K; k++) {
            T w = lane < nwarps ? red[k][lane] : identity;
            w = warp_reduce(w, op);
            if (lane == 0) red[k][0] = w;
        }
    __syncthreads();
    for (int k = 0; k < K; k++) v[k] = red[k][0];
    __syncthreads();
}

/* One value: op over the block, returned to every thread (red[32], shared; reusable on return). */
template <class T, class Op> static __device__ T block_reduce(T v, T identity, Op op, T *red) {
    block_reduce_k<1>(&v, identity, op, reinterpret_cast<T(*)[32]>(red));
    return v;
}

/* a - b, never contracted with a product that forms a or b */
static __device__ __forceinline__ float sub_rn(float a, float b) { return __fadd_rn(a, -b); }

#endif
