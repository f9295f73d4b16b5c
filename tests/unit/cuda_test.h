/* Shared set-up of the CUDA tests (tests/unit/test_cuda_*.c): the same binary runs through the emulator in
 * a TN_CUDA_EMU build, on the card in a TN_CUDA build, and skips (exit 77) elsewhere. */
#ifndef TN_TESTS_CUDA_TEST_H
#define TN_TESTS_CUDA_TEST_H

#include "tn_test.h"

#include <stdio.h>

#ifdef TN_HAVE_CUDA
#include "core/error.h"
#include "kernels/cuda/cuda_ops.h"

/* A device copy of `bytes` of host memory (NULL, with a failed CHECK naming the error, on failure). */
static inline void *tn_test_dev_copy(const void *host, size_t bytes) {
    void *d = tn_cuda_alloc(bytes);
    if (d && tn_cuda_upload(d, host, bytes) != 0) {
        tn_cuda_free(d);
        d = NULL;
    }
    CHECKF(d != NULL, "device copy of %zu bytes: %s", bytes, tn_errmsg());
    return d;
}

/* Skip unless a device (or the emulator) can run this build's kernels; print which it is. */
#define TN_CUDA_TEST_REQUIRE()                                                                         \
    do {                                                                                               \
        const char *tn_why_ = NULL;                                                                    \
        if (!tn_cuda_available(&tn_why_)) TN_SKIP("%s", tn_why_);                                      \
        printf("CUDA device: %s%s\n", tn_why_, tn_cuda_is_emulated() ? " (the CPU emulator)" : "");    \
    } while (0)
#else
#define TN_CUDA_TEST_REQUIRE() TN_SKIP("built without CUDA or its emulator (-DTN_CUDA_EMU=ON)")
#endif

#endif
