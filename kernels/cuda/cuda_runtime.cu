/* Device discovery and device memory (kernels/cuda/cuda_ops.h). */
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

#include <map>
#include <mutex>
#include <unordered_map>

#include "kernels/cuda/cuda_internal.h"

#ifndef TN_CUDA_ARCHS
#define TN_CUDA_ARCHS "?"
#endif

/* Does nothing; cudaFuncGetAttributes on it tells whether this build has code the device can run. */
__global__ void tn_cuda_probe_kernel(int *p) {
    if (p) *p = 0;
}

/* 0 when this build has code the current device can run. */
extern "C" int tn_cuda_probe(void) {
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, tn_cuda_probe_kernel);
    cudaGetLastError();
    return e == cudaSuccess ? 0 : -1;
}

#ifndef TN_CUDA_EMU
cudaStream_t tn_cuda_launch_stream = 0;
#endif

static int g_avail = -1; /* -1 unknown, 0 no, 1 yes */
static char g_reason[512];

extern "C" int tn_cuda_available(const char **reason) {
    if (g_avail < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        cudaDeviceProp p;
        cudaFuncAttributes fa;
        if (e != cudaSuccess) {
            snprintf(g_reason, sizeof g_reason, "no CUDA device: %s", cudaGetErrorString(e));
            g_avail = 0;
        } else if (n < 1) {
            snprintf(g_reason, sizeof g_reason, "no CUDA device: none found");
            g_avail = 0;
        } else if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) {
            snprintf(g_reason, sizeof g_reason, "no CUDA device: device 0: %s", cudaGetErrorString(e));
            g_avail = 0;
        } else if ((e = cudaFuncGetAttributes(&fa, tn_cuda_probe_kernel)) != cudaSuccess) {
            snprintf(g_reason, sizeof g_reason,
                     "no kernel image for sm_%d%d (%s) in this build (CMAKE_CUDA_ARCHITECTURES=%s): %s",
                     p.major, p.minor, p.name, TN_CUDA_ARCHS, cudaGetErrorString(e));
            g_avail = 0;
        } else {
            snprintf(g_reason, sizeof g_reason, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
                     (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
            g_avail = 1;
        }
        cudaGetLastError(); /* clear a non-sticky error left by the probing */
    }
    if (reason) *reason = g_reason;
    return g_avail;
}

/* ---- memory ---------------------------------------------------------------------------------------- */

/* Every allocation's size, for the in-use / peak accounting the memory report and the plan check use.
 * in_use counts device memory held: the reservation as a whole, and the allocations outside it. */
static std::mutex g_mem_mu;
static std::unordered_map<void *, size_t> g_sizes; /* allocation -> bytes (outside) or span (inside the pool) */
static int64_t g_in_use = 0, g_peak = 0;

/* The reservation (tn_cuda_reserve): one block, carved first-fit in TN_OPS_ALIGN spans. */
static char *g_pool = NULL;
static size_t g_pool_size = 0, g_pool_live = 0; /* bytes, and the number of live carvings */
static std::map<size_t, size_t> g_holes;          /* offset -> bytes free */

static int in_pool(const void *p) {
    const char *c = static_cast<const char *>(p);
    return g_pool && c >= g_pool && c < g_pool + g_pool_size;
}

/* A span from the reservation, or NULL when none is left (caller holds g_mem_mu). */
static void *carve(size_t span) {
    for (auto it = g_holes.begin(); it != g_holes.end(); ++it)
        if (it->second >= span) {
            const size_t off = it->first, rest = it->second - span;
            g_holes.erase(it);
            if (rest) g_holes[off + span] = rest;
            g_pool_live++;
            return g_pool + off;
        }
    return NULL;
}

static void give_back(void *p, size_t span) {
    size_t off = (size_t)(static_cast<char *>(p) - g_pool);
    auto next = g_holes.lower_bound(off);
    if (next != g_holes.end() && next->first == off + span) {
        span += next->second;
        g_holes.erase(next);
    }
    auto prev = g_holes.lower_bound(off);
    if (prev != g_holes.begin()) {
        --prev;
        if (prev->first + prev->second == off) {
            off = prev->first;
            span += prev->second;
            g_holes.erase(prev);
        }
    }
    g_holes[off] = span;
    g_pool_live--;
}

static void *device_malloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky */
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            tn_err("cudaMalloc(%zu bytes): %s (%.1f MiB of %.1f MiB free)", bytes, cudaGetErrorString(e),
                   (double)free_b / (1 << 20), (double)total_b / (1 << 20));
        else
            tn_err("cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void *tn_cuda_alloc(size_t bytes) {
    const size_t span = (size_t)tn_ops_span((int64_t)(bytes ? bytes : 1));
    {
        std::lock_guard<std::mutex> l(g_mem_mu);
        void *p = g_pool ? carve(span) : NULL;
        if (p) {
            g_sizes[p] = span;
            return p;
        }
    }
    void *p = device_malloc(bytes);
    if (!p) return NULL;
    std::lock_guard<std::mutex> l(g_mem_mu);
    g_sizes[p] = bytes;
    g_in_use += (int64_t)bytes;
    if (g_in_use > g_peak) g_peak = g_in_use;
    return p;
}

extern "C" void tn_cuda_free(void *dev) {
    if (!dev) return;
    {
        std::lock_guard<std::mutex> l(g_mem_mu);
        auto it = g_sizes.find(dev);
        if (it == g_sizes.end()) return; /* not ours */
        const size_t n = it->second;
        g_sizes.erase(it);
        if (in_pool(dev)) {
            give_back(dev, n);
            return;
        }
        g_in_use -= (int64_t)n;
    }
    cudaFree(dev);
}

extern "C" int tn_cuda_reserve(size_t bytes) {
#ifdef TN_CUDA_EMU
    /* The emulator keeps a red zone around every allocation instead (an overrun is reported), unless a test
     * asks for the reservation itself (TN_CUDA_EMU_POOL=1). */
    const char *pool = getenv("TN_CUDA_EMU_POOL");
    if (!(pool && !strcmp(pool, "1"))) return 0;
#endif
    std::lock_guard<std::mutex> l(g_mem_mu);
    if (g_pool && g_pool_live)
        return tn_err("tn_cuda_reserve: the reservation of %zu bytes still holds %zu allocations", g_pool_size,
                      g_pool_live);
    if (g_pool) {
        cudaFree(g_pool);
        g_in_use -= (int64_t)g_pool_size;
        g_pool = NULL;
        g_pool_size = 0;
        g_holes.clear();
    }
    if (bytes == 0) return 0;
    bytes = (size_t)tn_ops_span((int64_t)bytes);
    void *p = device_malloc(bytes);
    if (!p) return tn_err_prefix("reserving the run's device memory");
    g_pool = static_cast<char *>(p);
    g_pool_size = bytes;
    g_holes[0] = bytes;
    g_in_use += (int64_t)bytes;
    if (g_in_use > g_peak) g_peak = g_in_use;
    return 0;
}

extern "C" void tn_cuda_mem_usage(int64_t *in_use, int64_t *peak) {
    std::lock_guard<std::mutex> l(g_mem_mu);
    if (in_use) *in_use = g_in_use;
    if (peak) *peak = g_peak;
}

extern "C" void tn_cuda_mem_reset_peak(void) {
    std::lock_guard<std::mutex> l(g_mem_mu);
    g_peak = g_in_use;
}

static void *g_scratch = NULL;
static size_t g_scratch_bytes = 0;

extern "C" void *tn_cuda_scratch(size_t bytes) {
    if (bytes <= g_scratch_bytes && g_scratch) return g_scratch;
    tn_cuda_free(g_scratch); /* cudaFree waits for kernels still using the old buffer */
    g_scratch = NULL;
    g_scratch_bytes = 0;
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes; /* at least 1 MiB: few regrowths */
    g_scratch = tn_cuda_alloc(want);
    if (!g_scratch) return NULL;
    g_scratch_bytes = want;
    return g_scratch;
}

extern "C" int tn_cuda_upload(void *dev_dst, const void *host_src, size_t bytes) {
    if (bytes) TN_CU(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice), "CUDA upload");
    return 0;
}

extern "C" int tn_cuda_download(void *host_dst, const void *dev_src, size_t bytes) {
    if (bytes) TN_CU(cudaMemcpy(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost), "CUDA download");
    else TN_CU(cudaDeviceSynchronize(), "CUDA download");
    return 0;
}

extern "C" int tn_cuda_memset0(void *dev, size_t bytes) {
    if (bytes) TN_CU(cudaMemset(dev, 0, bytes), "CUDA memset");
    return 0;
}

extern "C" int tn_cuda_sync(void) {
    TN_CU(cudaDeviceSynchronize(), "CUDA sync");
    return 0;
}

extern "C" int tn_cuda_is_emulated(void) {
#ifdef TN_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

extern "C" void tn_cuda_shutdown(void) {
    tn_cuda_free(g_scratch);
    g_scratch = NULL;
    g_scratch_bytes = 0;
    tn_cuda_blas_shutdown();
    tn_cuda_reserve(0); /* fails, changing nothing, while carvings are live */
}
