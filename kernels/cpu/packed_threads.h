/* How the packed products (packed_t2.c, packed_lut.c) split their rows among threads. Internal to
 * kernels/cpu/; the public thread count is tn_packed_threads() in kernels/packed.h. */
#ifndef TN_KERNELS_CPU_PACKED_THREADS_H
#define TN_KERNELS_CPU_PACKED_THREADS_H

#include <stdint.h>

/* Threads for a product of `rows` rows and `work` units of work: at most tn_packed_threads(), at least
 * `work_per_thread` units and 4 rows per thread, at least 1. */
int tn_packed_split_threads(int64_t rows, int64_t work, int64_t work_per_thread);
/* Rows [r0, r1) of thread tid out of n, in multiples of 4 rows (empty for the last threads if need be). */
void tn_packed_row_range(int64_t rows, int tid, int n, int64_t *r0, int64_t *r1);

#endif
