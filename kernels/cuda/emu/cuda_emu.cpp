/* The CUDA emulator's run time (kernels/cuda/emu/cuda_emu.h has the rules): the block scheduler with one
 * fiber per CUDA thread, barriers and warp collectives, the device-memory arena, and the runtime API
 * subset. Environment:
 *   TN_CUDA_EMU_ORDER=forward|reverse   order in which a block's threads (and a grid's blocks) are run
 *   TN_CUDA_EMU_MEM=<bytes>[K|M|G]      device memory (default 8G); allocations beyond it fail
 *   TN_CUDA_EMU_CC=<major><minor>       compute capability reported and whose limits apply (default 61)
 *   TN_CUDA_EMU_FAULT=<n>               the n-th kernel launch faults: it does not run, and every later
 *                                       call returns cudaErrorIllegalAddress (a sticky error, as on a card)
 *   TN_CUDA_EMU_FIBERS=boost|ucontext   how CUDA threads switch (kernels/cuda/emu/fiber.h; default boost)
 *   TN_CUDA_EMU_STATS=1                 print the number of kernel launches and the peak device memory at exit */
#include "kernels/cuda/emu/fiber.h"

#include <omp.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/emu/cuda_emu.h"
/* This file is the emulator itself, not a kernel: the built-in names are plain identifiers here. */
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#undef warpSize

#if defined(__SANITIZE_ADDRESS__)
#define TN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TN_EMU_ASAN 1
#endif
#endif
#ifdef TN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace tn_emu {

/* ---- configuration ---------------------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cuda-emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static thread_local const uint3 *cur_tid = nullptr;
static thread_local const block_info *cur_block = nullptr;

const uint3 &thread_index(void) {
    if (!cur_tid) die("threadIdx read outside a kernel");
    return *cur_tid;
}

const block_info &block(void) {
    if (!cur_block) die("blockIdx, blockDim or gridDim read outside a kernel");
    return *cur_block;
}

struct config {
    int reverse = 0;
    fiber_kind fibers = fiber_kind::boost;
    size_t mem = (size_t)8 << 30;
    int cc = 61;
    long long fault_at = 0;
};

static size_t parse_bytes(const char *s, const char *var) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    size_t mul = 1;
    if (*end == 'K' || *end == 'k') mul = (size_t)1 << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = (size_t)1 << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = (size_t)1 << 30, end++;
    if (errno || end == s || *end != '\0' || v == 0 || v > ((size_t)1 << 46) / mul)
        die("%s=%s: expected a byte count such as 1073741824, 512M or 8G", var, s);
    return (size_t)v * mul;
}

static void print_stats(void);

static const config &cfg(void) {
    static config c;
    static std::once_flag once;
    std::call_once(once, [] {
        const char *o = getenv("TN_CUDA_EMU_ORDER");
        if (o && *o) {
            if (!strcmp(o, "reverse")) c.reverse = 1;
            else if (strcmp(o, "forward") != 0) die("TN_CUDA_EMU_ORDER=%s: expected forward or reverse", o);
        }
        const char *fb = getenv("TN_CUDA_EMU_FIBERS");
        if (fb && *fb) {
            if (!strcmp(fb, "ucontext")) c.fibers = fiber_kind::ucontext;
            else if (strcmp(fb, "boost") != 0) die("TN_CUDA_EMU_FIBERS=%s: expected boost or ucontext", fb);
        }
        const char *m = getenv("TN_CUDA_EMU_MEM");
        if (m && *m) c.mem = parse_bytes(m, "TN_CUDA_EMU_MEM");
        const char *cc = getenv("TN_CUDA_EMU_CC");
        if (cc && *cc) {
            char *end;
            long v = strtol(cc, &end, 10);
            if (*end || v < 50 || v > 120) die("TN_CUDA_EMU_CC=%s: expected a compute capability such as 61 or 90", cc);
            c.cc = (int)v;
        }
        const char *f = getenv("TN_CUDA_EMU_FAULT");
        if (f && *f) c.fault_at = atoll(f);
        const char *st = getenv("TN_CUDA_EMU_STATS");
        if (st && *st && strcmp(st, "0") != 0) atexit(print_stats);
    });
    return c;
}

/* Largest dynamic shared memory a kernel may opt in to, by compute capability (CUDA C Programming Guide,
 * "Technical Specifications per Compute Capability"). */
static size_t smem_optin_limit(int cc) {
    if (cc >= 90) return 227 * 1024;
    if (cc == 80 || cc == 87) return 163 * 1024;
    if (cc >= 86) return 99 * 1024;
    if (cc >= 75) return 64 * 1024;
    if (cc >= 70) return 96 * 1024;
    return 48 * 1024;
}
static const size_t SMEM_DEFAULT = 48 * 1024;

/* ---- errors --------------------------------------------------------------------------------------- */

static std::mutex g_err_mu;
static cudaError_t g_last = cudaSuccess;   /* returned (and cleared) by cudaGetLastError */
static cudaError_t g_sticky = cudaSuccess; /* a fault: every later call fails */

static cudaError_t set_error(cudaError_t e) {
    std::lock_guard<std::mutex> l(g_err_mu);
    if (g_last == cudaSuccess) g_last = e;
    return e;
}
static cudaError_t sticky(void) {
    std::lock_guard<std::mutex> l(g_err_mu);
    return g_sticky;
}

/* ---- device memory: one arena, PROT_NONE while host code runs ----------------------------------------- */

static const size_t ALIGN = 256, REDZONE = 256;

struct arena_t {
    std::mutex mu;
    char *base = nullptr;
    size_t cap = 0, high = 0, mapped_hi = 0; /* bytes in use up to high; protection toggled over [0, mapped_hi) */
    std::map<size_t, size_t> live;           /* offset -> requested bytes */
    std::map<size_t, size_t> holes;          /* offset -> bytes, free ranges below high */
    size_t in_use = 0, peak = 0;
    int open_depth = 0;
};
static arena_t g_arena;

static void install_segv_handler(void);

static void arena_init_locked(void) {
    if (g_arena.base) return;
    g_arena.cap = cfg().mem;
    void *p = mmap(nullptr, g_arena.cap, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die("cannot reserve %zu bytes of address space for device memory", g_arena.cap);
    g_arena.base = static_cast<char *>(p);
    install_segv_handler();
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static void protect_locked(int prot) {
    if (g_arena.mapped_hi == 0) return;
    if (mprotect(g_arena.base, g_arena.mapped_hi, prot) != 0) die("mprotect of the device arena failed");
}

void arena_open(void) {
    std::lock_guard<std::mutex> l(g_arena.mu);
    if (g_arena.open_depth++ == 0) protect_locked(PROT_READ | PROT_WRITE);
}

void arena_close(void) {
    std::lock_guard<std::mutex> l(g_arena.mu);
    if (--g_arena.open_depth == 0) protect_locked(PROT_NONE);
}

/* The allocation containing [p, p + n), n >= 0: returns its offset, or SIZE_MAX. */
static size_t find_live_locked(const void *p, size_t n) {
    if (!g_arena.base) return SIZE_MAX;
    const char *c = static_cast<const char *>(p);
    if (c < g_arena.base || c >= g_arena.base + g_arena.cap) return SIZE_MAX;
    size_t off = (size_t)(c - g_arena.base);
    auto it = g_arena.live.upper_bound(off);
    if (it == g_arena.live.begin()) return SIZE_MAX;
    --it;
    if (off + n > it->first + it->second) return SIZE_MAX;
    return it->first;
}

int is_device_ptr(const void *p) {
    if (!p) return 1;
    std::lock_guard<std::mutex> l(g_arena.mu);
    const char *c = static_cast<const char *>(p);
    if (!g_arena.base || c < g_arena.base || c >= g_arena.base + g_arena.cap) return 0;
    size_t off = (size_t)(c - g_arena.base);
    auto it = g_arena.live.upper_bound(off);
    if (it == g_arena.live.begin()) return 0;
    --it;
    return off <= it->first + it->second; /* one past the end is a valid pointer value */
}

void mem_stats(size_t *in_use, size_t *peak) {
    std::lock_guard<std::mutex> l(g_arena.mu);
    if (in_use) *in_use = g_arena.in_use;
    if (peak) *peak = g_arena.peak;
}

/* A fault inside the arena is host code reading device memory: say so, then let the handler that was there
 * before (AddressSanitizer's, or the default) report and end the process. On the thread that installed it
 * (the one that first allocated device memory) it runs on an alternate stack, so that a fault of a fiber
 * that overran its stack into the guard page is reported too. */
static struct sigaction g_prev_segv;

static void segv_handler(int sig, siginfo_t *si, void *uc) {
    const char *a = static_cast<const char *>(si->si_addr);
    if (g_arena.base && a >= g_arena.base && a < g_arena.base + g_arena.cap) {
        char msg[256];
        int n = snprintf(msg, sizeof msg,
                         "cuda-emu: host code accessed device memory at %p (arena offset %zu) outside a kernel or a "
                         "copy; on a GPU this pointer is not readable by the host\n",
                         (const void *)a, (size_t)(a - g_arena.base));
        if (n > 0) {
            ssize_t w = write(2, msg, (size_t)n);
            (void)w;
        }
    }
    sigaction(sig, &g_prev_segv, nullptr); /* the fault repeats under the previous handler */
    if ((g_prev_segv.sa_flags & SA_SIGINFO) && g_prev_segv.sa_sigaction)
        g_prev_segv.sa_sigaction(sig, si, uc);
    else if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN && g_prev_segv.sa_handler)
        g_prev_segv.sa_handler(sig);
}

static void install_segv_handler(void) {
    static char alt[64 * 1024];
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_prev_segv);
}

static cudaError_t arena_alloc(void **out, size_t bytes) {
    std::lock_guard<std::mutex> l(g_arena.mu);
    arena_init_locked();
    const size_t need = round_up(bytes ? bytes : 1, ALIGN) + REDZONE;
    size_t off = SIZE_MAX;
    for (auto it = g_arena.holes.begin(); it != g_arena.holes.end(); ++it)
        if (it->second >= need) { /* first fit */
            off = it->first;
            size_t rest = it->second - need;
            g_arena.holes.erase(it);
            if (rest) g_arena.holes[off + need] = rest;
            break;
        }
    if (off == SIZE_MAX) {
        if (g_arena.high + need > g_arena.cap) return cudaErrorMemoryAllocation;
        off = g_arena.high;
        g_arena.high += need;
    }
    size_t hi = round_up(g_arena.high, (size_t)sysconf(_SC_PAGESIZE));
    if (hi > g_arena.mapped_hi) {
        g_arena.mapped_hi = hi;
        protect_locked(g_arena.open_depth ? PROT_READ | PROT_WRITE : PROT_NONE);
    }
    char *p = g_arena.base + off;
    UNPOISON(p, bytes);
    POISON(p + bytes, need - bytes); /* alignment tail and red zone: a kernel that overruns is reported */
    /* Fresh device memory holds garbage on a card: 0xFF bytes (NaN floats) make a missing initialisation
     * visible in a test. */
    if (!g_arena.open_depth) protect_locked(PROT_READ | PROT_WRITE);
    memset(p, 0xff, bytes);
    if (!g_arena.open_depth) protect_locked(PROT_NONE);
    g_arena.live[off] = bytes;
    g_arena.in_use += round_up(bytes ? bytes : 1, ALIGN);
    if (g_arena.in_use > g_arena.peak) g_arena.peak = g_arena.in_use;
    *out = p;
    return cudaSuccess;
}

static cudaError_t arena_free(void *ptr) {
    if (!ptr) return cudaSuccess;
    std::lock_guard<std::mutex> l(g_arena.mu);
    const char *c = static_cast<const char *>(ptr);
    if (!g_arena.base || c < g_arena.base || c >= g_arena.base + g_arena.cap) return cudaErrorInvalidValue;
    size_t off = (size_t)(c - g_arena.base);
    auto it = g_arena.live.find(off);
    if (it == g_arena.live.end()) return cudaErrorInvalidValue; /* not the start of a live allocation */
    size_t bytes = it->second, span = round_up(bytes ? bytes : 1, ALIGN) + REDZONE;
    g_arena.live.erase(it);
    g_arena.in_use -= round_up(bytes ? bytes : 1, ALIGN);
    POISON(g_arena.base + off, span);
    /* Give whole pages back to the system; the range stays reserved. */
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t a = round_up(off, pg), b = (off + span) / pg * pg;
    if (b > a) madvise(g_arena.base + a, b - a, MADV_DONTNEED);
    /* Coalesce with neighbouring holes. */
    auto next = g_arena.holes.lower_bound(off);
    if (next != g_arena.holes.end() && next->first == off + span) {
        span += next->second;
        g_arena.holes.erase(next);
    }
    auto prev = g_arena.holes.lower_bound(off);
    if (prev != g_arena.holes.begin()) {
        --prev;
        if (prev->first + prev->second == off) {
            off = prev->first;
            span += prev->second;
            g_arena.holes.erase(prev);
        }
    }
    if (off + span == g_arena.high) g_arena.high = off;
    else g_arena.holes[off] = span;
    return cudaSuccess;
}

/* ---- the block scheduler ------------------------------------------------------------------------------ */

enum class st { ready, at_barrier, at_warp, done };

struct block_run;

struct cuda_thread {
    fiber f;
    block_run *block = nullptr;
    uint3 tid;
    int linear = 0;
    st state = st::ready;
    const char *bar_file = nullptr;
    int bar_line = 0;
};

struct warp_state {
    int first = 0, lanes = 0, arrived = 0, exited = 0;
    warp_op op = warp_op::sync;
    int width = 32;
    unsigned mask = 0;
    uint64_t in[32], out[32];
    int arg[32];
};

struct block_run {
    block_info info;
    const char *kernel = nullptr;
    void (*body)(void *) = nullptr;
    void *ctx = nullptr;
    std::vector<cuda_thread> threads;
    std::vector<warp_state> warps;
    int alive = 0, exited = 0, at_barrier = 0;
    bar_op barrier_op = bar_op::sync;
    int barrier_acc = 0, barrier_result = 0;
    const char *barrier_file = nullptr;
    int barrier_line = 0;
    unsigned char *dyn = nullptr;
};

static thread_local block_run *t_block = nullptr;
static thread_local cuda_thread *t_self = nullptr;

unsigned char *dynamic_shared(void) {
    if (!t_block) die("dynamic shared memory used outside a kernel");
    return t_block->dyn;
}

/* Switch from the running CUDA thread back to the scheduler; returns when the scheduler resumes it. */
static void suspend(void) { t_self->f.yield(); }

static const char *where(const block_run *b) {
    static thread_local char buf[160];
    snprintf(buf, sizeof buf, "%s, block (%u, %u, %u)", b->kernel, b->info.idx.x, b->info.idx.y,
             b->info.idx.z);
    return buf;
}

static void release_barrier(block_run *b) {
    int r = 0;
    switch (b->barrier_op) {
    case bar_op::sync: r = 0; break;
    case bar_op::count: r = b->barrier_acc; break;
    case bar_op::all: r = b->barrier_acc == b->alive; break;
    case bar_op::any: r = b->barrier_acc > 0; break;
    }
    b->barrier_result = r;
    for (auto &t : b->threads)
        if (t.state == st::at_barrier) t.state = st::ready;
    b->at_barrier = 0;
    b->barrier_acc = 0;
}

int block_barrier(bar_op op, int pred, const char *file, int line) {
    block_run *b = t_block;
    cuda_thread *self = t_self;
    if (!b || !self) die("__syncthreads() outside a kernel");
    if (b->exited)
        die("%s: __syncthreads() at %s:%d after %d thread(s) of the block returned; every thread must reach it",
            where(b), file, line, b->exited);
    if (b->at_barrier == 0) {
        b->barrier_op = op;
        b->barrier_file = file;
        b->barrier_line = line;
    } else if (b->barrier_line != line || strcmp(b->barrier_file, file) != 0 || b->barrier_op != op) {
        die("%s: divergent __syncthreads(): thread %d at %s:%d while others wait at %s:%d", where(b), self->linear,
            file, line, b->barrier_file, b->barrier_line);
    }
    b->barrier_acc += pred;
    if (++b->at_barrier == b->alive) { /* the last to arrive releases everyone and goes on */
        release_barrier(b);
        return b->barrier_result;
    }
    self->state = st::at_barrier;
    self->bar_file = file;
    self->bar_line = line;
    suspend();
    return b->barrier_result;
}

static unsigned lanes_mask(int lanes) { return lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u; }

static void finish_warp(block_run *b, warp_state *w) {
    const int n = w->lanes;
    switch (w->op) {
    case warp_op::sync: break;
    case warp_op::ballot:
    case warp_op::any:
    case warp_op::all: {
        uint64_t bits = 0;
        for (int l = 0; l < n; l++) bits |= (w->in[l] != 0 ? 1ull : 0ull) << l;
        uint64_t r = w->op == warp_op::ballot ? bits : w->op == warp_op::any ? (bits != 0) : (bits == lanes_mask(n));
        for (int l = 0; l < n; l++) w->out[l] = r;
        break;
    }
    default:
        for (int l = 0; l < n; l++) {
            const int width = w->width, seg = l / width * width, a = w->arg[l];
            int src = l;
            switch (w->op) {
            case warp_op::shfl: src = seg + ((a % width) + width) % width; break;
            case warp_op::shfl_up: src = l % width >= a ? l - a : l; break;
            case warp_op::shfl_down: src = l % width + a < width ? l + a : l; break;
            case warp_op::shfl_xor: src = l ^ a; if (src >= seg + width) src = l; break;
            default: break;
            }
            if (src < 0 || src >= n) src = l; /* a lane past a partial warp's end: own value */
            w->out[l] = w->in[src];
        }
    }
    w->arrived = 0;
    for (int l = 0; l < n; l++) {
        cuda_thread &t = b->threads[(size_t)(w->first + l)];
        if (t.state == st::at_warp) t.state = st::ready;
    }
}

static const char *op_name(warp_op op) {
    switch (op) {
    case warp_op::sync: return "__syncwarp";
    case warp_op::shfl: return "__shfl_sync";
    case warp_op::shfl_up: return "__shfl_up_sync";
    case warp_op::shfl_down: return "__shfl_down_sync";
    case warp_op::shfl_xor: return "__shfl_xor_sync";
    case warp_op::ballot: return "__ballot_sync";
    case warp_op::any: return "__any_sync";
    case warp_op::all: return "__all_sync";
    }
    return "?";
}

uint64_t warp_collective(warp_op op, unsigned mask, uint64_t value, int arg, int width) {
    block_run *b = t_block;
    cuda_thread *self = t_self;
    if (!b || !self) die("%s outside a kernel", op_name(op));
    warp_state *w = &b->warps[(size_t)(self->linear / 32)];
    const int lane = self->linear % 32;
    if (mask != lanes_mask(w->lanes))
        die("%s: %s with mask 0x%08x in warp %d of %d lanes; trinity's kernels use the full mask (0x%08x)", where(b),
            op_name(op), mask, self->linear / 32, w->lanes, lanes_mask(w->lanes));
    if (width < 1 || width > 32 || (width & (width - 1)))
        die("%s: %s with width %d (a power of two <= 32 is required)", where(b), op_name(op), width);
    if (w->exited)
        die("%s: %s in warp %d after %d of its lanes returned (they are in the mask)", where(b), op_name(op),
            self->linear / 32, w->exited);
    if (w->arrived == 0) {
        w->op = op;
        w->width = width;
    } else if (w->op != op || w->width != width) {
        die("%s: divergent warp collectives in warp %d: lane %d at %s while others wait at %s", where(b),
            self->linear / 32, lane, op_name(op), op_name(w->op));
    }
    w->in[lane] = value;
    w->arg[lane] = arg;
    if (++w->arrived == w->lanes) {
        finish_warp(b, w);
        return w->out[lane];
    }
    self->state = st::at_warp;
    suspend();
    return w->out[lane];
}

static void thread_exited(block_run *b, cuda_thread *t) {
    t->state = st::done;
    b->alive--;
    b->exited++;
    b->warps[(size_t)(t->linear / 32)].exited++;
    /* Others waiting for this thread at a barrier would wait forever: reported by the caller's deadlock
     * check (and by block_barrier when a barrier is reached after an exit). */
}

static void run_block(block_run *b, int reverse, fiber_kind kind) {
    const int n = (int)b->threads.size();
    for (int i = 0; i < n; i++) {
        cuda_thread &t = b->threads[(size_t)i];
        t.state = st::ready;
        t.block = b;
        t.f.start(kind, [](void *v) {
            block_run *blk = static_cast<cuda_thread *>(v)->block;
            blk->body(blk->ctx);
        }, &t);
    }
    for (;;) {
        int ran = 0;
        for (int k = 0; k < n; k++) {
            cuda_thread &t = b->threads[(size_t)(reverse ? n - 1 - k : k)];
            if (t.state != st::ready) continue;
            ran = 1;
            t_self = &t;
            cur_tid = &t.tid;
            if (t.f.resume()) thread_exited(b, &t); /* the thread returned from the kernel */
        }
        if (b->alive == 0) break;
        if (!ran) {
            int at_bar = 0, at_warp = 0;
            for (auto &t : b->threads) {
                at_bar += t.state == st::at_barrier;
                at_warp += t.state == st::at_warp;
            }
            die("%s: deadlock: %d thread(s) wait at __syncthreads(), %d at warp collectives, %d returned", where(b),
                at_bar, at_warp, b->exited);
        }
    }
    t_self = nullptr;
    cur_tid = nullptr;
}

static long long g_launches = 0;
static std::mutex g_launch_mu;

static void print_stats(void) {
    size_t peak = 0;
    mem_stats(nullptr, &peak);
    fprintf(stderr, "cuda-emu: %lld kernel launches, peak device memory %zu bytes\n", g_launches, peak);
}
static std::map<const void *, size_t> g_optin; /* kernel -> opted-in dynamic shared memory */

static int limits_ok(const char *name, const void *kernel, dim3 g, dim3 b, size_t smem) {
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    char why[200] = "";
    if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
        snprintf(why, sizeof why, "an empty grid (%u, %u, %u) or block (%u, %u, %u)", g.x, g.y, g.z, b.x, b.y, b.z);
    else if (threads > 1024)
        snprintf(why, sizeof why, "%llu threads per block (the limit is 1024)", threads);
    else if (b.x > 1024 || b.y > 1024 || b.z > 64)
        snprintf(why, sizeof why, "block (%u, %u, %u) exceeds (1024, 1024, 64)", b.x, b.y, b.z);
    else if (g.x > 2147483647u || g.y > 65535u || g.z > 65535u)
        snprintf(why, sizeof why, "grid (%u, %u, %u) exceeds (2^31-1, 65535, 65535)", g.x, g.y, g.z);
    else {
        size_t lim = SMEM_DEFAULT;
        std::lock_guard<std::mutex> l(g_launch_mu);
        auto it = g_optin.find(kernel);
        if (it != g_optin.end()) lim = it->second;
        if (smem > lim)
            snprintf(why, sizeof why, "%zu bytes of dynamic shared memory (the limit for this kernel is %zu%s)", smem,
                     lim, lim == SMEM_DEFAULT ? "; opt in with cudaFuncSetAttribute where the device allows" : "");
    }
    if (!why[0]) return 1;
    fprintf(stderr, "cuda-emu: launch of %s refused: %s\n", name, why);
    set_error(cudaErrorInvalidConfiguration);
    return 0;
}

void reject_launch(const char *name, int arg_index, const void *p) {
    fprintf(stderr, "cuda-emu: launch of %s refused: argument %d (%p) is neither NULL nor device memory\n", name,
            arg_index, p);
    set_error(cudaErrorInvalidValue);
}

void run_grid(const char *name, const void *kernel, dim3 grid, dim3 block, size_t dyn_smem, void (*body)(void *),
              void *c) {
    const config &conf = cfg();
    if (sticky() != cudaSuccess) return;
    if (!limits_ok(name, kernel, grid, block, dyn_smem)) return;
    {
        std::lock_guard<std::mutex> l(g_launch_mu);
        if (++g_launches == conf.fault_at) {
            fprintf(stderr, "cuda-emu: injected fault at launch %lld (%s), TN_CUDA_EMU_FAULT\n", g_launches, name);
            std::lock_guard<std::mutex> le(g_err_mu);
            g_sticky = cudaErrorIllegalAddress;
            return;
        }
    }
    const long long nblocks = (long long)grid.x * grid.y * grid.z;
    const int nthreads = (int)(block.x * block.y * block.z);
    arena_scope open;
#pragma omp parallel for schedule(dynamic, 1) if (nblocks > 1)
    for (long long k = 0; k < nblocks; k++) {
        const long long i = conf.reverse ? nblocks - 1 - k : k;
        block_run b;
        b.info.idx = uint3{(unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y),
                                (unsigned)(i / ((long long)grid.x * grid.y))};
        b.info.dim = block;
        b.info.grid = grid;
        b.kernel = name;
        b.body = body;
        b.ctx = c;
        b.threads.resize((size_t)nthreads);
        for (int t = 0; t < nthreads; t++) {
            b.threads[(size_t)t].linear = t;
            b.threads[(size_t)t].tid = uint3{(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                                             (unsigned)(t / (block.x * block.y))};
        }
        b.warps.resize((size_t)((nthreads + 31) / 32));
        for (size_t w = 0; w < b.warps.size(); w++) {
            b.warps[w].first = (int)w * 32;
            b.warps[w].lanes = std::min(32, nthreads - (int)w * 32);
        }
        b.alive = nthreads;
        /* Dynamic shared memory: a fresh allocation of exactly the requested size (so AddressSanitizer sees
         * an overrun), poisoned with 0xFF bytes. */
        std::vector<unsigned char> dyn(dyn_smem ? dyn_smem : 1, 0xff);
        b.dyn = dyn_smem ? dyn.data() : nullptr;
        const block_info *saved_block = cur_block;
        block_run *saved_run = t_block;
        cur_block = &b.info;
        t_block = &b;
        run_block(&b, conf.reverse, conf.fibers);
        cur_block = saved_block;
        t_block = saved_run;
    }
}

} /* namespace tn_emu */

using namespace tn_emu;

/* ---- runtime API (declared by the toolkit's cuda_runtime_api.h) ------------------------------------------- */

extern "C" {

static int g_device = 0;

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    g_device = device;
    return sticky();
}

cudaError_t cudaGetDevice(int *device) {
    *device = g_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    const config &c = cfg();
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "trinity CUDA emulator (CPU, sm_%d limits)", c.cc);
    p->totalGlobalMem = c.mem;
    p->sharedMemPerBlock = SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = smem_optin_limit(c.cc);
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->major = c.cc / 10;
    p->minor = c.cc % 10;
    p->multiProcessorCount = omp_get_max_threads();
    p->l2CacheSize = 1 << 20;
    p->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrClockRate: *value = 0; break; /* unknown: no peak FLOP/s for the emulator */
    case cudaDevAttrMultiProcessorCount: *value = omp_get_max_threads(); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)smem_optin_limit(cfg().cc); break;
    case cudaDevAttrComputeCapabilityMajor: *value = cfg().cc / 10; break;
    case cudaDevAttrComputeCapabilityMinor: *value = cfg().cc % 10; break;
    default: *value = 0; break;
    }
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) {
    *v = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = 13000;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    *ptr = nullptr;
    if (cudaError_t e = sticky()) return e;
    cudaError_t e = arena_alloc(ptr, bytes);
    return e == cudaSuccess ? e : set_error(e);
}

cudaError_t cudaFree(void *ptr) {
    if (cudaError_t e = sticky()) return e;
    cudaError_t e = arena_free(ptr);
    return e == cudaSuccess ? e : set_error(e);
}

/* A device range must lie inside one live allocation. */
static int dev_range_ok(const void *p, size_t n) {
    std::lock_guard<std::mutex> l(g_arena.mu);
    return find_live_locked(p, n) != SIZE_MAX;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (cudaError_t e = sticky()) return e;
    if (bytes == 0) return cudaSuccess;
    const int dst_dev = dev_range_ok(dst, bytes), src_dev = dev_range_ok(src, bytes);
    int ok;
    switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_dev && !src_dev; break;
    case cudaMemcpyDeviceToHost: ok = src_dev && !dst_dev; break;
    case cudaMemcpyDeviceToDevice: ok = src_dev && dst_dev; break;
    case cudaMemcpyHostToHost: ok = !src_dev && !dst_dev; break;
    default: ok = 1; break; /* cudaMemcpyDefault: either side */
    }
    if (!ok) {
        fprintf(stderr, "cuda-emu: cudaMemcpy of %zu bytes: dst %p is %s, src %p is %s, which kind %d does not allow\n",
                bytes, dst, dst_dev ? "inside one device allocation" : "not inside one device allocation", src,
                src_dev ? "inside one device allocation" : "not inside one device allocation", (int)kind);
        return set_error(cudaErrorInvalidValue);
    }
    arena_scope open;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    (void)s;
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *ptr, int value, size_t bytes) {
    if (cudaError_t e = sticky()) return e;
    if (bytes == 0) return cudaSuccess;
    if (!dev_range_ok(ptr, bytes)) {
        fprintf(stderr, "cuda-emu: cudaMemset of %zu bytes at %p: not inside one device allocation\n", bytes, ptr);
        return set_error(cudaErrorInvalidValue);
    }
    arena_scope open;
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t s) {
    (void)s;
    return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (cudaError_t e = sticky()) return e;
    std::lock_guard<std::mutex> l(g_arena.mu);
    const size_t cap = cfg().mem;
    *total_bytes = cap;
    *free_bytes = cap - std::min(cap, g_arena.in_use);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return sticky(); }

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    return sticky();
}

cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
    std::lock_guard<std::mutex> l(g_err_mu);
    cudaError_t e = g_last != cudaSuccess ? g_last : g_sticky;
    g_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    std::lock_guard<std::mutex> l(g_err_mu);
    return g_last != cudaSuccess ? g_last : g_sticky;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
    }
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, const void *func) {
    if (!func) return set_error(cudaErrorInvalidDeviceFunction);
    memset(attr, 0, sizeof *attr);
    attr->maxThreadsPerBlock = 1024;
    attr->maxDynamicSharedSizeBytes = (int)SMEM_DEFAULT;
    attr->ptxVersion = attr->binaryVersion = cfg().cc;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
    if (!func) return set_error(cudaErrorInvalidDeviceFunction);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > smem_optin_limit(cfg().cc)) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> l(g_launch_mu);
    g_optin[func] = (size_t)value;
    return cudaSuccess;
}

} /* extern "C" */

/* Events: host timestamps (the emulator runs every launch synchronously). */
struct CUevent_st {
    double t;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

extern "C" {

cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new CUevent_st{0};
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    e->t = now_ms();
    return sticky();
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    (void)e;
    return sticky();
}

/* Every launch and copy has completed when it returns, so a recorded event is always complete. */
cudaError_t cudaEventQuery(cudaEvent_t e) {
    (void)e;
    return sticky();
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->t - a->t);
    return sticky();
}

} /* extern "C" */
