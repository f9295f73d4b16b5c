/* The packed-ops table of the inference engine: every array operation of the forward pass in
 * runner/infer.c, behind function pointers, with a CPU implementation (runner/infer_ops_cpu.c) and a CUDA
 * one (kernels/cuda/infer_ops.cu). The layer sequence exists once, in runner/infer.c; a device changes where the
 * weights, the KV cache and the activations live and which table computes. docs/RUNNER.md, docs/CUDA.md.
 *
 * How one forward pass runs on each:
 *   CPU   inside ONE OpenMP parallel region; every thread calls the products on its own slice of rows
 *         (tid, nth) and meets the others at barrier(). The ops run on the calling thread.
 *   CUDA  on one host thread (tid 0 of 1): each op queues kernels on the stream, barrier() is nothing (the
 *         stream orders them), and a decode step can be captured once as a CUDA graph and replayed.
 *
 * Arrays are in the table's memory: host memory for the CPU, device memory for CUDA (allocated with
 * alloc, filled with upload). Ops return 0, or -1 with tn_err (the CPU ones cannot fail). */
#ifndef TN_KERNELS_INFER_OPS_H
#define TN_KERNELS_INFER_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/packed.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A weight matrix W [rows, cols] as the products see it. For quantized storage a weight is s · v with
 * s = tensor_scale · (row_scale ? row_scale[r] : 1). Pointers in the table's memory. */
typedef struct {
    tn_packed_dtype dtype;  /* F32, F16, T2, L4, L8, Q8, Q4 (kernels/packed.h) */
    int64_t rows, cols;
    const void *w;          /* float*, uint16_t* or packed bytes */
    size_t row_bytes;       /* bytes per row */
    const float *row_scale; /* [rows] or NULL (Q8: always, its per-row scales) */
    float tensor_scale;
    const float *grid;      /* L4/L8: zero-padded 16 / 256 floats */
    int64_t bytes;          /* weight + scale bytes one product reads */
    int act8;               /* the model quantizes this product's input to int8 (BitNet b1.58) */
} tn_imat;

/* The attention step of one layer for n new tokens at positions pos .. pos+n-1 (rotate-half RoPE on q
 * and k, the chunk's k and v into the cache, causal GQA softmax attention over the cache). */
typedef struct {
    float *q;              /* [n, H·hd]: roped in place */
    float *k_new;          /* [n, KV·hd]: the chunk's k (roped in place) ... */
    const float *v_new;    /* ... and v. CPU: the cache rows pos..pos+n-1 themselves; CUDA: a staging
                            * buffer the op copies into the cache (so that a captured graph replays at
                            * any position) */
    float *k_cache, *v_cache; /* this layer's [ctx, KV·hd] */
    int pos;               /* host copy of the first position (CPU) */
    const int32_t *pos_dev;/* device copy (CUDA) */
    const float *cos_t, *sin_t; /* [ctx, hd/2]: tn_op_rope_table over positions 0 .. ctx-1 */
    int n, H, KV, hd, ctx;
    float *out;            /* [n, H·hd] */
    float *scratch;        /* CPU: this thread's [H/KV, ctx]; CUDA: attention_scratch_floats of them */
} tn_infer_attn;

typedef struct tn_infer_ops {
    const char *name;  /* "cpu" or "cuda" */
    int device_memory; /* 1: arrays are device memory; the forward runs on one host thread */
    int max_head_dim;  /* the attention's largest head dimension; 0 = any */

    /* memory */
    void *(*alloc)(size_t bytes); /* zeroed */
    void (*free)(void *p);
    int (*upload)(void *dst, const void *src, size_t bytes);
    int (*download)(void *dst, const void *src, size_t bytes); /* waits for queued work */

    /* Y [n, R] = X [n, C] · Wᵀ for one storage type, arguments and results as kernels/packed.h (T2 takes
     * the int8 activations of act_quant_i8; the others float activations). */
    int (*gemm_f32)(const float *W, int64_t R, int64_t C, int64_t n, const float *X, float *Y);
    int (*gemm_f16)(const uint16_t *W, int64_t R, int64_t C, int64_t n, const float *X, float *Y);
    int (*gemm_t2)(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t R, int64_t C, int64_t n,
                   const int8_t *Xq, const float *xscales, float *Y);
    int (*gemm_l4)(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t R,
                   int64_t C, int64_t n, const float *X, float *Y);
    int (*gemm_l8)(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t R,
                   int64_t C, int64_t n, const float *X, float *Y);
    /* Q8 (per-row scales) and Q4 (scales in its blocks) with the int16 activations of act_quant_i16. NULL
     * in a table that has no kernels for them (CUDA): the engine then refuses such a model at load. */
    int (*gemm_q8)(const uint8_t *W, const float *row_scale, int64_t R, int64_t C, int64_t n, const int16_t *Xq,
                   const float *xscales, float *Y);
    int (*gemm_q4)(const uint8_t *W, int64_t R, int64_t C, int64_t n, const int16_t *Xq, const float *xscales,
                   float *Y);
    /* X [n, C] -> per-token absmax int16 (15-bit) Q [n, C] and scales [n] (tn_act_quant_i16_rows) */
    int (*act_quant_i16)(const float *X, int64_t n, int64_t C, int16_t *Q, float *scales);
    /* X [n, C] -> per-token absmax int8 Q [n, C] and scales [n] (kernels/packed.h tn_act_quant_i8_rows) */
    int (*act_quant_i8)(const float *X, int64_t n, int64_t C, int8_t *Q, float *scales);
    /* the float input a model trained with int8 activations feeds its float products (quant/act.h) */
    int (*act_fake_quant)(const float *X, int64_t n, int64_t C, float *out);

    /* X[t, :] = row tokens[t] of E as floats (tokens in the table's memory, each in range) */
    int (*embed)(const tn_imat *E, const int32_t *tokens, int64_t n, float *X);
    /* y [n, D] = x · rsqrt(mean(x²) + eps) · w; rstd [n] scratch the op may write (CUDA: its kernel's 1/rms) */
    int (*rmsnorm)(float *y, float *rstd, const float *x, const float *w, int64_t n, int64_t D, float eps);
    /* columns [c0, c1) of g [n, F] = silu(g) · u */
    int (*swiglu)(float *g, const float *u, int64_t n, int64_t F, int64_t c0, int64_t c1);
    /* columns [c0, c1) of x [n, D] += y */
    int (*add)(float *x, const float *y, int64_t n, int64_t D, int64_t c0, int64_t c1);
    /* columns [c0, c1) of x [n, D] += b [D] on every row (a projection's bias) */
    int (*add_bias)(float *x, const float *b, int64_t n, int64_t D, int64_t c0, int64_t c1);
    /* the kv heads [kh0, kh1) of the attention step (CUDA: all of them) */
    int (*attention)(const tn_infer_attn *a, int kh0, int kh1);
    /* floats of tn_infer_attn.scratch for n tokens (CPU: per thread) */
    int64_t (*attention_scratch_floats)(int64_t n, int64_t H, int64_t KV, int64_t hd, int64_t ctx);
    /* every thread of the forward pass waits here (CPU: an OpenMP barrier; CUDA: nothing) */
    void (*barrier)(void);

    /* CUDA graphs (NULL where the table has none, e.g. the CPU and the CUDA emulator): capture the ops
     * issued between graph_begin and graph_end instead of running them; graph_launch replays them. */
    int (*graph_begin)(void);
    int (*graph_end)(void **graph); /* ends the capture in any case; *graph NULL on failure */
    int (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);

    /* Read bandwidth of the table's memory in bytes/s over a buffer of `bytes` (best of `reps`), for the
     * decode benchmark's bound; 0 on failure. threads: CPU threads (ignored by CUDA). */
    double (*read_bandwidth)(size_t bytes, int threads, int reps);
} tn_infer_ops;

/* The CPU table. */
const tn_infer_ops *tn_infer_ops_cpu(void);

/* Row r of W (host memory) as floats: out[cols] (F32 copy, F16 widened, T2 s·w, L4/L8 s·grid[idx], Q8 s·q,
 * Q4 d·(code − 8)). The
 * quantized codes were range-checked when the file was opened. */
void tn_imat_row(const tn_imat *W, int64_t r, float *out);

#ifdef __cplusplus
}
#endif

#endif
