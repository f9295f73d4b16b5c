#ifndef TN_RUNNER_BENCH_GEMV_H
#define TN_RUNNER_BENCH_GEMV_H

#include <stddef.h>

#include "runner/bandwidth.h"

/* trinity bench gemv [--threads N] [--iters N] [--json]
 * Times the packed T2 matrix-vector product (kernels/packed.h) for the TinyLlama shapes 2048x2048,
 * 5632x2048 and 2048x5632 (rows x cols = out x in), with 2 threads unless told otherwise: the median
 * of --iters calls (default 2000) after a warm-up, with the weights hot in cache, and again streaming
 * from memory (rotating over >= 1 GiB of weight copies). In the same run: the scalar reference path,
 * OpenBLAS cblas_sgemv on fp32 weights of the same shape, L4 and L8 products, and the read bandwidth
 * (tn_bench_read_bandwidth), from which the bandwidth-bound time of each shape's bytes follows.
 * --json: one JSON object per shape per line on stdout. Returns a process exit code. */
int tn_bench_gemv(int argc, char **argv);

#endif
