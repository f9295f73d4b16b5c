/* What the CPU can do at best, the denominators of the runner benchmarks' ratios (runner/bench_decode.h,
 * runner/bench_gemv.h): memory read bandwidth (decode) and the int8 dot-product rate (prefill). */
#ifndef TN_RUNNER_BANDWIDTH_H
#define TN_RUNNER_BANDWIDTH_H

#include <stddef.h>

/* Memory read bandwidth in bytes/s: `passes` streaming sums over a `bytes` buffer (>= 256 MiB to defeat
 * caches), each 16 MiB piece split over `threads` OpenMP threads and timed on its own; the rate of the
 * 10th-percentile time is returned (robust against other processes on the machine). 0 on allocation failure. */
double tn_bench_read_bandwidth(size_t bytes, int threads, int passes);

/* int8 dot-product peak in operations/s (a multiply-add = 2) of `threads` threads running the kernels'
 * int8 instruction (vpdpbusd, or vpmaddubsw + vpmaddwd on AVX2) on registers; the best of `reps` runs of a
 * few milliseconds each. The ceiling of the T2 prompt kernels. At the scalar level it is only a reference
 * (dependent C multiply-adds; the scalar T2 kernels, which add and subtract, may run faster). */
double tn_bench_int8_peak(int threads, int reps);

#endif
