/* CUDA on the CPU: what a .cu file of kernels/cuda/ sees when it is compiled by the host C++ compiler
 * (-DTN_CUDA_EMU) instead of nvcc. Every kernel launch runs on the CPU, each CUDA thread of a block as a
 * fiber (Boost.Context, or POSIX ucontext with TN_CUDA_EMU_FIBERS=ucontext; kernels/cuda/emu/fiber.h) that
 * switches only at __syncthreads() and warp collectives. docs/CUDA.md, "The emulator", has the rules; in short:
 *
 *   - threadIdx / blockIdx / blockDim / gridDim / warpSize are the running fiber's; blocks of a grid run on
 *     OpenMP threads, the threads of one block on one OS thread, in forward or (TN_CUDA_EMU_ORDER=reverse)
 *     reverse order, so a kernel that reads shared memory before the barrier that publishes it fails in
 *     one of the two orders;
 *   - __shared__ variables are per OS thread (static thread_local), so per block, but NOT cleared between
 *     blocks (a block can see the previous one's values: reading static shared memory before writing it
 *     is not caught); dynamic shared memory (TN_DYN_SHARED) is a fresh allocation per block, filled with
 *     0xFF bytes (NaN floats, -1 integers);
 *   - warp collectives (__shfl*_sync, __ballot_sync, __any_sync, __all_sync, __syncwarp) need every lane of
 *     the warp present and the full mask; __syncthreads() needs every thread of the block at the same
 *     call site; otherwise the launch stops with a message (on a GPU it would hang or be undefined);
 *   - device memory (cudaMalloc) is one arena of host pages that stays PROT_NONE outside launches and
 *     copies, so host code that reads a device pointer faults as it would with a card; new allocations
 *     are filled with 0xFF; a pointer argument of a kernel must be device memory or NULL;
 *   - launch limits are the oldest architecture built (sm_61 unless TN_CUDA_EMU_CC says otherwise):
 *     1024 threads per block, block (1024, 1024, 64), grid (2^31-1, 65535, 65535), 48 KiB of dynamic
 *     shared memory unless the kernel opted in (cudaFuncSetAttribute) and the device allows more.
 *     Static shared memory is checked by nvcc (ptxas) for every architecture in CI's CUDA build.
 *     __launch_bounds__ is not checked (a launch larger than a kernel's bound fails only on a card), nor are
 *     pointers inside struct arguments.
 *
 * Only launch through TN_LAUNCH (kernels/cuda/tn_cuda.h); it checks the pointer arguments and the limits.
 * Types (dim3, cudaError_t, cudaDeviceProp, __half, __nv_bfloat16) are the toolkit's own headers, compiled
 * as host code. The runtime API below is the subset trinity uses, implemented in cuda_emu.cpp. */
#ifndef TN_CUDA_EMU_H
#define TN_CUDA_EMU_H

#ifndef __cplusplus
#error "cuda_emu.h is C++: include it from a .cu file compiled with -DTN_CUDA_EMU"
#endif
#if defined(__CUDACC__)
#error "cuda_emu.h is for the host compiler; nvcc builds use the real CUDA headers"
#endif

/* cuda_fp16.h brings the runtime API's declarations (cuda_runtime_api.h) and host_defines.h, which in a
 * host compilation defines __host__, __device__, __global__ and __shared__ as nothing. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ------------------------------------------------------------------------------------ */

#undef __shared__
#define __shared__ static thread_local
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace tn_emu {

/* ---- the running thread ------------------------------------------------------------------------------ */

struct block_info {
    uint3 idx;
    dim3 dim, grid;
};
/* The running fiber's threadIdx and its block. Functions rather than extern thread_local variables: GCC's
 * -fsanitize=null misreads the address of an extern thread_local (its TLS-wrapper check) at -O2. */
const uint3 &thread_index(void);
const block_info &block(void);

/* ---- barriers and warp collectives (cuda_emu.cpp) ------------------------------------------------ */

enum class bar_op { sync, count, all, any };
int block_barrier(bar_op op, int pred, const char *file, int line);

enum class warp_op { sync, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all };
uint64_t warp_collective(warp_op op, unsigned mask, uint64_t value, int arg, int width);

unsigned char *dynamic_shared(void);

template <class T> static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value,
                  "warp shuffles move at most 8 bytes of a trivially copyable type");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> static inline T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof v);
    return v;
}

/* ---- launching ----------------------------------------------------------------------------------- */

/* Runs body(ctx) once per CUDA thread of every block; sets the last error (and prints why) when the
 * configuration breaks a limit. kernel identifies the function for cudaFuncSetAttribute opt-ins. */
void run_grid(const char *name, const void *kernel, dim3 grid, dim3 block, size_t dyn_smem, void (*body)(void *),
              void *ctx);
/* 1 if p is NULL or inside a live device allocation (or up to one past its end). */
int is_device_ptr(const void *p);
void reject_launch(const char *name, int arg_index, const void *p);

template <class T> static inline int arg_ok(const char *name, int index, const T &v) {
    if constexpr (std::is_pointer<T>::value) {
        if (!is_device_ptr((const void *)v)) {
            reject_launch(name, index, (const void *)v);
            return 0;
        }
    }
    (void)name;
    (void)index;
    (void)v;
    return 1;
}

template <class Tuple, size_t... I> static inline int args_ok(const char *name, const Tuple &t, std::index_sequence<I...>) {
    return (1 & ... & arg_ok(name, (int)I, std::get<I>(t)));
}

template <class... P, class... A>
static inline void launch(const char *name, dim3 grid, dim3 block, size_t smem, void (*kernel)(P...), A &&...a) {
    static_assert(sizeof...(P) == sizeof...(A), "TN_LAUNCH: wrong number of kernel arguments");
    std::tuple<std::decay_t<P>...> args(static_cast<std::decay_t<P>>(std::forward<A>(a))...);
    if (!args_ok(name, args, std::index_sequence_for<P...>{})) return;
    struct call {
        void (*k)(P...);
        std::tuple<std::decay_t<P>...> *args;
    } c{kernel, &args};
    run_grid(name, (const void *)kernel, grid, block, smem,
             [](void *v) {
                 call *cc = static_cast<call *>(v);
                 std::apply(cc->k, *cc->args);
             },
             &c);
}

/* Make the device arena readable/writable by host code for the duration of a scope (the cuBLAS emulation
 * and other library calls that read device memory on the CPU). Nests. */
void arena_open(void);
void arena_close(void);
struct arena_scope {
    arena_scope() { arena_open(); }
    ~arena_scope() { arena_close(); }
    arena_scope(const arena_scope &) = delete;
    arena_scope &operator=(const arena_scope &) = delete;
};

/* Bytes allocated now and at most so far (the emulated device's own accounting). */
void mem_stats(size_t *in_use, size_t *peak);

} /* namespace tn_emu */

#define threadIdx (tn_emu::thread_index())
#define blockIdx (tn_emu::block().idx)
#define blockDim (tn_emu::block().dim)
#define gridDim (tn_emu::block().grid)
#define warpSize 32

/* ---- synchronisation ------------------------------------------------------------------------------- */

#define __syncthreads() ((void)tn_emu::block_barrier(tn_emu::bar_op::sync, 0, __FILE__, __LINE__))
#define __syncthreads_count(p) tn_emu::block_barrier(tn_emu::bar_op::count, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_and(p) tn_emu::block_barrier(tn_emu::bar_op::all, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_or(p) tn_emu::block_barrier(tn_emu::bar_op::any, (p) != 0, __FILE__, __LINE__)

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    tn_emu::warp_collective(tn_emu::warp_op::sync, mask, 0, 0, 32);
}
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return tn_emu::from_bits<T>(tn_emu::warp_collective(tn_emu::warp_op::shfl, mask, tn_emu::to_bits(v), src, width));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return tn_emu::from_bits<T>(
        tn_emu::warp_collective(tn_emu::warp_op::shfl_up, mask, tn_emu::to_bits(v), (int)delta, width));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return tn_emu::from_bits<T>(
        tn_emu::warp_collective(tn_emu::warp_op::shfl_down, mask, tn_emu::to_bits(v), (int)delta, width));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return tn_emu::from_bits<T>(
        tn_emu::warp_collective(tn_emu::warp_op::shfl_xor, mask, tn_emu::to_bits(v), lane_mask, width));
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)tn_emu::warp_collective(tn_emu::warp_op::ballot, mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred) {
    return (int)tn_emu::warp_collective(tn_emu::warp_op::any, mask, pred != 0, 0, 32);
}
static inline int __all_sync(unsigned mask, int pred) {
    return (int)tn_emu::warp_collective(tn_emu::warp_op::all, mask, pred != 0, 0, 32);
}

/* ---- atomics (real atomics: blocks run on several OS threads) ------------------------------------- */

#define TN_EMU_ATOMIC_INT(T)                                                                              \
    static inline T atomicAdd(T *a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }         \
    static inline T atomicSub(T *a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }         \
    static inline T atomicExch(T *a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }       \
    static inline T atomicAnd(T *a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }         \
    static inline T atomicOr(T *a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }           \
    static inline T atomicXor(T *a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }         \
    static inline T atomicCAS(T *a, T expected, T desired) {                                            \
        __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);   \
        return expected;                                                                                \
    }                                                                                                   \
    static inline T atomicMax(T *a, T v) {                                                              \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                   \
        while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                                               \
        return old;                                                                                     \
    }                                                                                                   \
    static inline T atomicMin(T *a, T v) {                                                              \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                   \
        while (old > v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                                               \
        return old;                                                                                     \
    }
TN_EMU_ATOMIC_INT(int)
TN_EMU_ATOMIC_INT(unsigned int)
TN_EMU_ATOMIC_INT(unsigned long long)
TN_EMU_ATOMIC_INT(long long)
#undef TN_EMU_ATOMIC_INT

/* Float atomics as compare-and-swap loops on the bit pattern (the GPU adds in hardware, in an order the
 * program does not control; kernels that need reproducible sums do not use them). */
template <class F, class U> static inline F tn_emu_atomic_fadd(F *a, F v) {
    static_assert(sizeof(F) == sizeof(U), "");
    U *p = reinterpret_cast<U *>(a);
    U old = __atomic_load_n(p, __ATOMIC_RELAXED), want;
    do {
        F f;
        std::memcpy(&f, &old, sizeof f);
        f += v;
        std::memcpy(&want, &f, sizeof f);
    } while (!__atomic_compare_exchange_n(p, &old, want, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    F r;
    std::memcpy(&r, &old, sizeof r);
    return r;
}
static inline float atomicAdd(float *a, float v) { return tn_emu_atomic_fadd<float, uint32_t>(a, v); }
static inline double atomicAdd(double *a, double v) { return tn_emu_atomic_fadd<double, uint64_t>(a, v); }
static inline float atomicExch(float *a, float v) {
    uint32_t b, o;
    std::memcpy(&b, &v, 4);
    o = __atomic_exchange_n(reinterpret_cast<uint32_t *>(a), b, __ATOMIC_RELAXED);
    float r;
    std::memcpy(&r, &o, 4);
    return r;
}

/* ---- integer and SIMD-in-a-word intrinsics ---------------------------------------------------------- */

static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
/* Four signed (or unsigned) bytes of a times those of b, summed, plus c. */
static inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 4; i++) c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}
/* Per-byte a - b modulo 256 (no borrow between bytes), and a + b likewise. */
static inline unsigned __vsub4(unsigned a, unsigned b) {
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xffu) << (8 * i);
    return r;
}
static inline unsigned __vadd4(unsigned a, unsigned b) {
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (((a >> (8 * i)) + (b >> (8 * i))) & 0xffu) << (8 * i);
    return r;
}

/* ---- float intrinsics (the device's fast versions are allowed to be less exact; these are exact) ------- */

/* glibc declares __expf and friends as its own internal names, hence macros rather than functions. */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline int __float_as_int(float x) { int r; std::memcpy(&r, &x, 4); return r; }
static inline unsigned __float_as_uint(float x) { unsigned r; std::memcpy(&r, &x, 4); return r; }
static inline float __int_as_float(int x) { float r; std::memcpy(&r, &x, 4); return r; }
static inline float __uint_as_float(unsigned x) { float r; std::memcpy(&r, &x, 4); return r; }
static inline long long __double_as_longlong(double x) { long long r; std::memcpy(&r, &x, 8); return r; }
static inline double __longlong_as_double(long long x) { double r; std::memcpy(&r, &x, 8); return r; }
template <class T> static inline T __ldg(const T *p) { return *p; }

/* CUDA's device min/max overloads, for the argument pairs kernels here use. */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* ---- runtime API -----------------------------------------------------------------------------------
 * The declarations are the toolkit's (cuda_runtime_api.h); cuda_emu.cpp defines the subset trinity calls:
 * cudaGetDeviceCount, cudaSetDevice, cudaGetDevice, cudaGetDeviceProperties, cudaDriverGetVersion,
 * cudaRuntimeGetVersion, cudaDeviceGetAttribute, cudaMalloc, cudaFree, cudaMemcpy(Async), cudaMemset(Async), cudaMemGetInfo,
 * cudaDeviceSynchronize, cudaStreamSynchronize, cudaDeviceReset, cudaGetLastError, cudaPeekAtLastError,
 * cudaGetErrorString, cudaGetErrorName, cudaFuncGetAttributes, cudaFuncSetAttribute and the cudaEvent
 * calls (cudaEventQuery included). Anything else fails to link, which is the point. Below: the C++ overloads of cuda_runtime.h. */
template <class T> static inline cudaError_t cudaMalloc(T **ptr, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(ptr), bytes);
}
template <class T> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, T *func) {
    return cudaFuncGetAttributes(attr, (const void *)func);
}
template <class T> static inline cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute((const void *)func, attr, value);
}

#endif
