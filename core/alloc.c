#include "core/alloc.h"
#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *tn_alloc(size_t n, size_t elem) {
    if (elem && n > SIZE_MAX / elem) {
        tn_err("allocation of %zu x %zu bytes overflows", n, elem);
        return NULL;
    }
    size_t bytes = n * elem;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) {
        tn_err("out of memory (%zu bytes)", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void tn_free(void *p) { free(p); }
