/* `trinity bench decode`: generation speed of a random-weight T2 model of a real model's shape, next to the
 * memory read bandwidth measured in the same run, so the result says how close decode gets to the
 * bandwidth bound (every weight byte is read once per token):
 *
 *   bound tok/s = bandwidth / bytes read per token,   ratio = measured tok/s / bound tok/s
 *
 * The model is built in memory as a TRIN image and opened through the normal reader and engine (the code
 * path of `trinity run`): attention and MLP matrices T2 with a per-tensor scale, token embeddings and LM
 * head F16 (untied), norms F32. Bytes per token count every matrix, the head and the norms (the embedding
 * row is negligible). Bandwidth: tn_bench_read_bandwidth (runner/bench_gemv.h) over a buffer at least as
 * large as the model, with the same threads, before and after decoding; the higher value sets the bound
 * (conservative: a disturbance can only lower the ratio). The model image is put in transparent huge pages
 * when the kernel allows (TN_BENCH_NO_HUGEPAGES=1 keeps 4 KiB pages). */
#ifndef TN_RUNNER_BENCH_DECODE_H
#define TN_RUNNER_BENCH_DECODE_H

/* argv[0] is "decode". Options: --preset tinyllama-1.1b|tiny, --device D, --no-graph, --threads N,
 * --tokens N, --json. On a CUDA device the bandwidth is the device memory's (a read kernel). */
int tn_bench_decode(int argc, char **argv);
/* `trinity bench prefill` (argv[0] "prefill"): the same model, a random prompt of --prompt N tokens (default
 * 512) processed as one batch; tokens/s, best and median of 5 runs. Options as decode, --prompt for --tokens. */
int tn_bench_prefill(int argc, char **argv);

#endif
