#ifndef TN_RUNNER_BENCH_TRAIN_H
#define TN_RUNNER_BENCH_TRAIN_H

/* trinity bench train --preset NAME [--batch B] [--seq-len T] [--steps N] [--quant GRID] [--json]
 * Times forward + backward + optimizer steps of a preset shape with random weights and, in the same
 * run, OpenBLAS sgemm on 2048³; prints tokens/s, achieved GFLOP/s and the ratio to sgemm. With
 * --quant it also times the STE step (same shape) and prints the STE/dense step-time ratio. */
int tn_bench_train(int argc, char **argv);

#endif
