/* The inference engine: a Llama model loaded from a .trin file (packed weights used in place) or from an
 * HDF5 checkpoint (dense fp32, quantized layers snapped), a KV cache, a batched prompt step and a one-token
 * decode step. Read runner/infer.c top to bottom: it is the whole forward pass.
 *
 *   x = embed[token]
 *   for each layer:  h = rmsnorm(x)·w_attn;  q,k,v = h·Wq,Wk,Wv;  RoPE(q,k);  append k,v to the cache
 *                    x += attention(q, cache)·Wo
 *                    h = rmsnorm(x)·w_mlp;   x += (silu(h·Wg) * (h·Wu))·Wd
 *   logits = rmsnorm(x)·w_final · head      (a quantized head with exact rows: its best candidates
 *                                           re-scored from them, runner/rescore.h)
 *
 * Conventions are Hugging Face LlamaForCausalLM's, as in the training model (model/llama.h).
 *
 * Two kernel modes for quantized (T2 / L4 / L8, and the Q8 / Q4 tables of TRIN version 3) tensors:
 *   TN_INFER_FAST   T2: activations quantized to int8 per token (absmax) and multiplied by the packed
 *                   ternary weights with integer dot products; L4/L8: lookup-table kernels on float
 *                   activations; Q8/Q4 (LM head, embeddings): int16 activations, integer dot products.
 *                   Logits differ slightly from the fp32 training model (int8 rounding of
 *                   activations; ~1e-2 relative on random models), greedy tokens normally agree.
 *   TN_INFER_EXACT  every quantized tensor is dequantized once at load (s · value, exactly what the
 *                   training model's snapped forward uses) and multiplied in fp32: logits match the
 *                   training model to float rounding (1e-4 relative is tested). Costs fp32 memory.
 * F16 / F32 tensors always use float products.
 *
 * Devices: the forward pass is written once over a packed-ops table (runner/infer_ops.h) with a CPU and a
 * CUDA implementation. On CUDA every weight is uploaded once as the file stores it (packed), the KV cache
 * and activations live on the device, and only token ids go up and logits come down per step. */
#ifndef TN_RUNNER_INFER_H
#define TN_RUNNER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "export/trin.h"
#include "model/config.h"

typedef enum { TN_INFER_FAST = 0, TN_INFER_EXACT = 1 } tn_infer_mode;
/* How a .trin file reaches memory. MAP: memory-mapped from the page cache. COPY: read into private memory
 * advised for 2 MiB transparent huge pages (core/fileio.h tn_load_file_huge): the CPU streams every weight
 * per token, and 4 KiB pages cost it a TLB miss every 4 KiB and stop the hardware prefetchers at each page
 * boundary (docs/TRIN.md "Loading"). AUTO: COPY for the CPU engine, MAP for a device (which uploads the
 * weights once). A COPY without the memory for it maps the file instead, with a warning. */
typedef enum { TN_LOAD_AUTO = 0, TN_LOAD_MAP = 1, TN_LOAD_COPY = 2 } tn_infer_load;

typedef struct {
    tn_infer_mode mode;
    int ctx;     /* KV cache length in tokens; 0 = the model's max_seq_len */
    int threads; /* 0 = OpenMP default */
    const char *device; /* "cpu" (default), "cuda" or "cuda:N": where the forward pass runs (docs/CUDA.md) */
    int graph;   /* CUDA: capture the decode step as a CUDA graph (default 1; 0 runs it op by op) */
    tn_infer_load load; /* a .trin: mapped or copied into huge pages (default AUTO) */
    int rescore; /* a file with exact head rows (TRIN 4): the quantized head's best `rescore` logits are
                  * recomputed from them (runner/rescore.h); 0 = the quantized head alone. 0..TN_RESCORE_MAX,
                  * default TN_RESCORE_DEFAULT */
} tn_infer_opts;

typedef struct tn_infer tn_infer;

void tn_infer_opts_default(tn_infer_opts *o);

/* Parse "auto", "map" or "copy" (the --load option). */
int tn_infer_load_parse(const char *s, tn_infer_load *out);
/* Open a .trin file or an HDF5 checkpoint (told apart by their first bytes). */
int tn_infer_open(const char *path, const tn_infer_opts *o, tn_infer **out);
/* Use an open .trin (taken over: closed by tn_infer_free, also on failure). */
int tn_infer_from_trin(tn_trin *t, const tn_infer_opts *o, tn_infer **out);
void tn_infer_free(tn_infer *m);

const tn_llama_config *tn_infer_config(const tn_infer *m);
/* The model's tokenizer, or NULL when the file carries none (or one this build cannot read; the
 * reason is then in tn_infer_tokenizer_error). Owned by the engine. */
const tn_tokenizer *tn_infer_tokenizer(const tn_infer *m);
const char *tn_infer_tokenizer_error(const tn_infer *m);
/* KV cache capacity and the number of positions already in it. */
int tn_infer_ctx(const tn_infer *m);
int tn_infer_pos(const tn_infer *m);
/* Forget the cache (next token is position 0). */
void tn_infer_reset(tn_infer *m);
/* The device the engine runs on: "cpu" or "cuda:N". */
const char *tn_infer_device(const tn_infer *m);
/* The device in words ("CPU (2 threads)", "NVIDIA H100 80GB HBM3, sm_90, ...", the emulator's name). */
const char *tn_infer_device_name(const tn_infer *m);
/* 1 once decode steps replay a captured CUDA graph. */
int tn_infer_graph_active(const tn_infer *m);
/* Read bandwidth of the engine's device memory, bytes/s (CPU: `threads` threads; best of `reps`). */
double tn_infer_read_bandwidth(const tn_infer *m, size_t bytes, int threads, int reps);
/* Bytes the engine allocated in its device's memory: on a GPU the uploaded weights, the KV cache and the
 * scratch; on the CPU the KV cache and scratch (the weights stay where the file was loaded: opts.load). */
int64_t tn_infer_device_bytes(const tn_infer *m);
/* Bytes the engine reads per decoded token: every weight matrix (the embedding row aside) plus norms,
 * plus the exact head rows it re-scores. The numerator of the bandwidth bound. */
int64_t tn_infer_weight_bytes(const tn_infer *m);
/* Weights multiplied through the int8 kernels (T2 matrices, fast mode) per token: the multiply-adds a
 * token costs there. And the tokens a batched product reads the weights once for (a prompt chunk). */
int64_t tn_infer_int8_weights(const tn_infer *m);
int tn_infer_chunk_tokens(void);
/* "T2 + F16 head" style summary of the dtypes in use (static buffer per engine). */
const char *tn_infer_describe(const tn_infer *m);

/* Feed n tokens at positions pos .. pos+n-1 (processed as a batch, in chunks), appending to the cache.
 * logits: [n, vocab] when all_logits, else [vocab] for the last token only; may be NULL.
 * Fails if a token is outside the vocabulary or the cache would overflow. */
int tn_infer_forward(tn_infer *m, const int32_t *tokens, int n, float *logits, int all_logits);
/* One token: returns the logits [vocab] (owned by the engine, valid until the next call), NULL on error. */
const float *tn_infer_step(tn_infer *m, int32_t token);

#endif
