/* One CUDA thread's execution context for the emulator (cuda_emu.cpp only): start it, resume it from the
 * block scheduler until it yields or returns, yield from inside it. Two implementations, chosen per
 * process (TN_CUDA_EMU_FIBERS=boost|ucontext):
 *   - boost (default): boost::context::fiber over Boost.Context's assembly switch, ~40 ns a switch;
 *   - ucontext: POSIX getcontext/makecontext/swapcontext, ~700 ns (swapcontext also saves and restores the
 *     signal mask with a system call); the fallback for platforms without Boost.Context's assembly.
 * Under AddressSanitizer both announce every stack switch (__sanitizer_start_switch_fiber before,
 * __sanitizer_finish_switch_fiber after), without which ASan reports false stack errors and loses track of
 * which stack is live. Stacks come from a per-OS-thread pool of mmap'd stacks with a guard page below each. */
#ifndef TN_CUDA_EMU_FIBER_H
#define TN_CUDA_EMU_FIBER_H

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>

#if defined(__SANITIZE_ADDRESS__)
#define TN_EMU_FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TN_EMU_FIBER_ASAN 1
#endif
#endif
#ifdef TN_EMU_FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace tn_emu {

#ifdef TN_EMU_FIBER_ASAN
static const size_t FIBER_STACK_BYTES = 512 * 1024; /* instrumented frames are larger */
#else
static const size_t FIBER_STACK_BYTES = 256 * 1024;
#endif

/* ---- stacks --------------------------------------------------------------------------------------------- */

struct stack_pool {
    std::vector<char *> free_stacks; /* lowest usable address of each */
    ~stack_pool() {
        const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        for (char *s : free_stacks) munmap(s - pg, FIBER_STACK_BYTES + pg);
    }
    char *get(void) {
        if (!free_stacks.empty()) {
            char *s = free_stacks.back();
            free_stacks.pop_back();
            return s;
        }
        const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        void *m = mmap(nullptr, FIBER_STACK_BYTES + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "cuda-emu: cannot map a %zu-byte fiber stack\n", FIBER_STACK_BYTES);
            abort();
        }
        mprotect(m, pg, PROT_NONE); /* guard page: a kernel thread that overflows its stack faults */
        return static_cast<char *>(m) + pg;
    }
    void put(char *s) { free_stacks.push_back(s); }
};

/* Per OS thread: the stack pool, and the scheduler's side of every switch. */
struct thread_fibers {
    stack_pool pool;
    ucontext_t sched_uc;                /* the scheduler, for the ucontext implementation */
    const void *sched_bottom = nullptr; /* the scheduler's stack as ASan knows it (learned at a switch) */
    size_t sched_size = 0;
    void *sched_fake = nullptr;
};
inline thread_fibers &this_thread(void) {
    static thread_local thread_fibers t;
    return t;
}

/* ASan's view of a switch: `save` keeps the leaving stack's fake frames (NULL: the leaving fiber ends). */
static inline void asan_leave(void **save, const void *to_bottom, size_t to_size) {
#ifdef TN_EMU_FIBER_ASAN
    __sanitizer_start_switch_fiber(save, to_bottom, to_size);
#else
    (void)save, (void)to_bottom, (void)to_size;
#endif
}
static inline void asan_arrive(void *saved, const void **from_bottom, size_t *from_size) {
#ifdef TN_EMU_FIBER_ASAN
    __sanitizer_finish_switch_fiber(saved, from_bottom, from_size);
#else
    (void)saved, (void)from_bottom, (void)from_size;
#endif
}

enum class fiber_kind { boost, ucontext };

class fiber {
  public:
    typedef void (*entry)(void *);

    void start(fiber_kind kind, entry fn, void *arg) {
        kind_ = kind;
        fn_ = fn;
        arg_ = arg;
        done_ = false;
        if (kind == fiber_kind::boost) {
            f_ = boost::context::fiber(std::allocator_arg, pooled_stack{this},
                                       [this](boost::context::fiber &&s) {
                                           back_ = std::move(s);
                                           body();
                                           return std::move(back_);
                                       });
            return;
        }
        stack_ = this_thread().pool.get();
        getcontext(&uc_);
        uc_.uc_stack.ss_sp = stack_;
        uc_.uc_stack.ss_size = FIBER_STACK_BYTES;
        uc_.uc_link = nullptr;
        const uintptr_t self = (uintptr_t)this;
        makecontext(&uc_, (void (*)(void))uc_entry, 2, (unsigned)(self >> 32), (unsigned)(self & 0xffffffffu));
    }

    /* From the scheduler: run until the fiber yields (false) or returns (true). */
    bool resume(void) {
        thread_fibers &t = this_thread();
        asan_leave(&t.sched_fake, stack_, FIBER_STACK_BYTES);
        if (kind_ == fiber_kind::boost) f_ = std::move(f_).resume();
        else swapcontext(&t.sched_uc, &uc_);
        asan_arrive(t.sched_fake, nullptr, nullptr);
        if (done_ && kind_ == fiber_kind::ucontext) {
            t.pool.put(stack_);
            stack_ = nullptr;
        }
        return done_;
    }

    /* From inside the fiber: back to the scheduler until it resumes this fiber. */
    void yield(void) {
        thread_fibers &t = this_thread();
        asan_leave(&fake_, t.sched_bottom, t.sched_size);
        if (kind_ == fiber_kind::boost) back_ = std::move(back_).resume();
        else swapcontext(&uc_, &t.sched_uc);
        asan_arrive(fake_, &t.sched_bottom, &t.sched_size);
    }

  private:
    /* Runs on the fiber's own stack. */
    void body(void) {
        thread_fibers &t = this_thread();
        asan_arrive(nullptr, &t.sched_bottom, &t.sched_size);
        fn_(arg_);
        done_ = true;
        asan_leave(nullptr, t.sched_bottom, t.sched_size); /* this stack is finished */
    }

    static void uc_entry(unsigned hi, unsigned lo) {
        fiber *f = reinterpret_cast<fiber *>(((uintptr_t)hi << 32) | lo);
        f->body();
        setcontext(&this_thread().sched_uc);
    }

    /* Boost.Context stack allocator over the pool; records the stack for the ASan annotations. */
    struct pooled_stack {
        fiber *owner;
        boost::context::stack_context allocate() {
            owner->stack_ = this_thread().pool.get();
            boost::context::stack_context sc;
            sc.size = FIBER_STACK_BYTES;
            sc.sp = owner->stack_ + FIBER_STACK_BYTES;
            return sc;
        }
        void deallocate(boost::context::stack_context &sc) {
            this_thread().pool.put(static_cast<char *>(sc.sp) - sc.size);
        }
    };

    fiber_kind kind_ = fiber_kind::boost;
    entry fn_ = nullptr;
    void *arg_ = nullptr;
    bool done_ = false;
    char *stack_ = nullptr; /* lowest address of this fiber's stack */
    void *fake_ = nullptr;  /* ASan's fake frames of this fiber while it is suspended */
    boost::context::fiber f_, back_;
    ucontext_t uc_;
};

} /* namespace tn_emu */

#endif
