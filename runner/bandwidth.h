/* Memory read bandwidth of the CPU, the denominator of the decode benchmarks' bandwidth bound
 * (runner/bench_decode.h, runner/bench_gemv.h). */
#ifndef TN_RUNNER_BANDWIDTH_H
#define TN_RUNNER_BANDWIDTH_H

#include <stddef.h>

/* Memory read bandwidth in bytes/s: `passes` streaming sums over a `bytes` buffer (>= 256 MiB to defeat
 * caches), each 16 MiB piece split over `threads` OpenMP threads and timed on its own; the rate of the
 * 10th-percentile time is returned (robust against other processes on the machine). 0 on allocation failure. */
double tn_bench_read_bandwidth(size_t bytes, int threads, int passes);

#endif
