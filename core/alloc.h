#ifndef TN_CORE_ALLOC_H
#define TN_CORE_ALLOC_H

#include <stddef.h>

/* 64-byte aligned, zero-filled allocation (cache line / AVX-512 width). NULL + message on failure,
 * including size overflow of n * elem. Free with tn_free. */
void *tn_alloc(size_t n, size_t elem);
void tn_free(void *p);

#endif
