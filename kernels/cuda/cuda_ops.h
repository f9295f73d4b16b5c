/* CUDA backend (built with -DTN_CUDA=ON; docs/CUDA.md). A plain C header: callers need no CUDA headers.
 * The library defines TN_HAVE_CUDA for every target that links trinity_cuda.
 *
 * Memory: every array argument of the products is DEVICE memory (tn_cuda_alloc / cudaMalloc), including
 * scales, so that quantize -> product chains never return to the host. Work is queued on the default
 * stream and is asynchronous with the host: tn_cuda_download (or tn_cuda_sync) waits for it.
 *
 * Errors: functions return 0 / a pointer, or -1 / NULL with a message in tn_errmsg() (core/error.h).
 * Launch errors are reported by the call that launches; faults inside a kernel by the next synchronising
 * call. Single host thread assumed (one cuBLAS handle, created with its workspace when the device opens,
 * kernels/cuda/backend.cu). */
#ifndef TN_KERNELS_CUDA_OPS_H
#define TN_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "device/device.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if device 0 exists and can run this build's kernels; else 0 and, if reason != NULL, *reason points to
 * a static message ("no CUDA device: ...", "no kernel image for sm_61 in this build (...)"). Cheap after
 * the first call (the answer is cached). */
int tn_cuda_available(const char **reason);

/* Device memory. tn_cuda_alloc(0) returns a valid (unique) pointer; tn_cuda_free(NULL) does nothing. */
void *tn_cuda_alloc(size_t bytes);
void tn_cuda_free(void *dev);
int tn_cuda_upload(void *dev_dst, const void *host_src, size_t bytes);   /* the host buffer may be reused on return */
int tn_cuda_download(void *host_dst, const void *dev_src, size_t bytes); /* waits for queued work */
int tn_cuda_memset0(void *dev, size_t bytes);
int tn_cuda_sync(void);
/* Bytes of device memory held now and at most since start: allocations, and the reservation as a whole. */
void tn_cuda_mem_usage(int64_t *in_use, int64_t *peak);
void tn_cuda_mem_reset_peak(void);
/* Reserve one block of `bytes` that later tn_cuda_alloc calls carve (in TN_OPS_ALIGN spans) before they
 * fall back to cudaMalloc: the memory plan's allocations in one piece (kernels/ops.h reserve). Replaces an
 * earlier reservation that holds nothing; 0 releases it. The emulator keeps separate allocations. */
int tn_cuda_reserve(size_t bytes);

/* ---- int8 activations (kernels/packed.h tn_act_quant_i8_rows, bit-exact) ---------------------------
 * X [n_tok, n] float -> Q [n_tok, n] int8, scales [n_tok]. One thread block per token. */
int tn_cuda_act_quant_i8(const float *X, int64_t n_tok, int64_t n, int8_t *Q, float *scales);

/* ---- T2 products (kernels/packed.h tn_t2_gemv / tn_t2_gemm, bit-exact) ----------------------------
 * W: T2-packed [rows, cols] exactly as on the CPU (row r at r * tn_t2_row_bytes(cols)), 4-byte aligned.
 * row_scale [rows] or NULL; tensor_scale a host float. cols <= TN_PACKED_MAX_COLS.
 * gemv: xq [cols], *xscale (one float, device), y [rows].
 * gemm: Xq [n_tok, cols], xscales [n_tok], Y [n_tok, rows]. Any cols (odd, unaligned rows of Xq are fine).
 * n_tok == 1 runs a warp per row; n_tok > 1 a tiled kernel that reads each weight word once for 8 tokens. */
int tn_cuda_t2_gemv(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                    const int8_t *xq, const float *xscale, float *y);
int tn_cuda_t2_gemm(const uint8_t *W, const float *row_scale, float tensor_scale, int64_t rows, int64_t cols,
                    int64_t n_tok, const int8_t *Xq, const float *xscales, float *Y);

/* ---- float GEMM: the one cuBLAS wrapper (kernels/cuda/blas.cu) -------------------------------------
 * Column-major C[m, n] = alpha · op(A) · op(B) + beta · C exactly as cublasSgemm (trans = 1: op = ᵀ), all
 * float. In the emulated build the same arguments go to OpenBLAS cblas_sgemm(CblasColMajor, ...).
 * Sizes and leading dimensions <= INT32_MAX. Precision: the compute mode below. */
enum { TN_CUDA_FP32 = 0, TN_CUDA_TF32 = 1, TN_CUDA_BF16 = 2 };
int tn_cuda_gemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* FP32 (default, exact FP32 products), TF32 or BF16 (tensor cores round the inputs; needs sm_80). */
int tn_cuda_set_precision(int precision);
int tn_cuda_get_precision(void);
/* Row-major y[N, out] = x[N, in] · W[out, in]ᵀ (+ beta · y) (kernels/ops.h tn_op_linear, to float rounding). */
int tn_cuda_sgemm(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta);

/* ---- the training ops (the CUDA side of kernels/ops.h; each is that table entry's CUDA implementation,
 * same arguments and meaning, all arrays device memory unless marked host). One definition per file:
 *   kernels/cuda/model.cu      norms, RoPE, SwiGLU, embedding, cross-entropy, activation fake-quant,
 *                              vectors and reductions, AdamW
 *   kernels/cuda/attention.cu  causal GQA attention, tiled with an online softmax; the backward recomputes
 *                              the probabilities from the saved log-sum-exp [B, H, T]
 *   kernels/cuda/quant.cu      STE quantization (scales, snap) and the λ blend
 *   kernels/cuda/primal.cu     PRIMAL materialise, vote, flip
 * Reductions that return a value to the host are deterministic (a fixed reduction tree, no float
 * atomics), so a run repeats bit for bit on one GPU. ---------------------------------------------- */
int tn_cuda_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps);
int tn_cuda_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                             int64_t N, int64_t D);
int tn_cuda_rope(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t T, int64_t n_heads, int64_t hd,
                 int inverse);
int tn_cuda_swiglu(float *a, const float *g, const float *u, int64_t n);
int tn_cuda_swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n);
int tn_cuda_embed(float *x, const float *E, const int32_t *tokens, int64_t N, int64_t D);
/* groups: host struct, its arrays device memory (kernels/ops.h tn_token_groups). */
int tn_cuda_embed_backward(float *dE, const float *dx, const tn_token_groups *groups, int64_t N, int64_t D);
int tn_cuda_cross_entropy(float *nll, const float *logits, const int32_t *targets, int64_t N, int64_t V);
int tn_cuda_cross_entropy_backward(float *logits, const int32_t *targets, const uint8_t *mask, int64_t N, int64_t V,
                                   float g);
int tn_cuda_act_fake_quant(const float *x, int64_t rows, int64_t cols, float *out);
int tn_cuda_add(float *y, const float *x, int64_t n);
/* y [N, C] += b [C] per row; db [C] += Σ_n dy [N, C] in row order (kernels/ops.h bias_add / bias_grad). */
int tn_cuda_bias_add(float *y, const float *b, int64_t N, int64_t C);
int tn_cuda_bias_grad(float *db, const float *dy, int64_t N, int64_t C);
int tn_cuda_scale(float *x, float s, int64_t n);
/* out [n] = inverted dropout of x [n] under key (kernels/dropout_math.h; bit for bit with tn_op_dropout). */
int tn_cuda_dropout(float *out, const float *x, int64_t n, uint64_t key, double p);
int tn_cuda_sumsq(const float *x, int64_t n, double *host_out);
int tn_cuda_masked_sum(const float *x, const uint8_t *mask, int64_t n, double *host_out);
int tn_cuda_count_nonzero_i8(const int8_t *v, int64_t n, int64_t *host_out);
int tn_cuda_adamw(float *p, const float *g, float *m, float *v, int64_t n, const tn_adamw_step *h);

int64_t tn_cuda_attention_saved_floats(int64_t B, int64_t T, int64_t H);
int64_t tn_cuda_attention_scratch_floats(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd);
int tn_cuda_attention(float *out, float *lse, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                      int64_t H, int64_t KV, int64_t hd);
int tn_cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                               const float *q, const float *k, const float *v, int64_t B, int64_t T, int64_t H,
                               int64_t KV, int64_t hd, float *scratch);

/* g: host struct (passed to the kernels by value). */
int tn_cuda_quantize(const float *W, int64_t rows, int64_t cols, const tn_grid *g, int rule, int per_row, float *Wq,
                     uint8_t *idx, float *scales);
int tn_cuda_ste_blend(const float *W, const float *Wq, int64_t n, float lambda, float *out);

/* t: host struct, its idx/vote/scale arrays device memory; t->grid a host struct. */
int tn_cuda_primal_materialize(const tn_ghost_view *t, float *W);
int tn_cuda_primal_accumulate(const tn_ghost_view *t, const float *G, double z, float *scale_grad,
                              int64_t *host_voters);
int tn_cuda_primal_flip(const tn_ghost_view *t, uint64_t key, const tn_flip_rule *rule, int64_t *host_voted,
                        int64_t *host_flipped);

/* kernels/cuda/convert.cu: out[i] = float(binary16 h[i]) (exact); the bf16 conversions (kernels/bf16.h). */
int tn_cuda_f16_to_f32(const uint16_t *h, int64_t n, float *out);
int tn_cuda_bf16_from_f32(uint16_t *out, const float *x, int64_t n);
int tn_cuda_bf16_to_f32(float *out, const uint16_t *x, int64_t n);
int tn_cuda_bf16_round_stochastic(uint16_t *out, const float *x, int64_t n, uint64_t seed, uint64_t counter);
int tn_cuda_bf16_accumulate(uint16_t *g, const float *d, int64_t n);
/* kernels/cuda/model.cu: Σ float(x[i])² over bf16 x, in double, to the host (waits). */
int tn_cuda_bf16_sumsq(const uint16_t *x, int64_t n, double *host_out);

/* ---- inference: the packed products and the KV-cache attention of the runner's CUDA table ---------
 * (kernels/infer_ops.h; kernels/cuda/packed_infer.cu and kernels/cuda/kv_attention.cu). All arrays device
 * memory. Products: Y [n_tok, rows] = X [n_tok, cols] · Wᵀ with W as the CPU stores it (kernels/packed.h,
 * docs/PACKING.md), grid the zero-padded 16 (L4) / 256 (L8) floats, row_scale [rows] or NULL. n_tok == 1
 * runs a gemv kernel (a warp per row); n_tok > 1 a tiled kernel that reads each weight tile once for a
 * block of tokens. Float results agree with the CPU kernels within float summation-order rounding. */
int tn_cuda_l4_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                    int64_t cols, int64_t n_tok, const float *X, float *Y);
int tn_cuda_l8_gemm(const uint8_t *W, const float *grid, const float *row_scale, float tensor_scale, int64_t rows,
                    int64_t cols, int64_t n_tok, const float *X, float *Y);
/* W binary16 [rows, cols] (runner/f16.h tn_f16_gemm). */
int tn_cuda_f16_gemm(const uint16_t *W, int64_t rows, int64_t cols, int64_t n_tok, const float *X, float *Y);
/* Embedding rows: X[t, :] = row tokens[t] of W as floats, exactly as the CPU dequantizes one row
 * (F32 copy, F16 widened, T2: s·w, L4/L8: s·grid[idx], s = tensor_scale · (row_scale ? row_scale[r] : 1)).
 * dtype: tn_packed_dtype (kernels/packed.h; the TRIN dtype codes). tokens [n_tok] device int32, each in [0, rows) (checked by the
 * caller). Bit-exact with the CPU. */
int tn_cuda_embed_rows(int dtype, const void *W, const float *grid, const float *row_scale, float tensor_scale,
                       int64_t rows, int64_t cols, const int32_t *tokens, int64_t n_tok, float *X);

/* KV-cache attention for n new tokens at positions p0 .. p0+n-1, p0 = *pos (a device int32, so that a
 * captured CUDA graph replays at any position). Per token t and head h (kv head h / (H/KV)):
 *   RoPE (rotate-half, HF Llama) on q [n, H·hd] in place and on k_new [n, KV·hd] in place, with the
 *   tables cos_t / sin_t [ctx, hd/2] (tn_op_rope_table over positions 0..ctx-1, row p = position p);
 *   rows p0+t of k_cache / v_cache [ctx, KV·hd] (this layer's) = roped k_new row t / v_new row t;
 *   out [n, H·hd] = softmax(q·kⱼ / sqrt(hd), j = 0 .. p0+t) · v, scores in fp32, expf, as the CPU engine.
 * Head dims: even, 2 .. 128 (else an error). scratch: device floats, tn_cuda_kv_attention_scratch_floats(n, H,
 * hd, ctx) of them (per (token, head) the running max, sum and partial output of each 256-position chunk). The
 * caller guarantees 0 <= p0 and p0 + n <= ctx; a position outside writes nothing to q, k_new or the cache
 * and fills out with NaN, so the mistake shows in the logits. */
int64_t tn_cuda_kv_attention_scratch_floats(int64_t n, int64_t H, int64_t hd, int64_t ctx);
int tn_cuda_kv_attention(float *q, float *k_new, const float *v_new, float *k_cache, float *v_cache,
                         const int32_t *pos, const float *cos_t, const float *sin_t, int64_t n, int64_t H,
                         int64_t KV, int64_t hd, int64_t ctx, float *out, float *scratch);

/* Device scratch shared by the ops above for their temporaries (partial sums, row statistics): a
 * grow-only buffer of at least `bytes`, valid until the next call. Ops on the one stream run in order, so
 * one op's kernels finish with it before the next op's start. NULL + message on failure. */
void *tn_cuda_scratch(size_t bytes);

/* The CUDA ops table (kernels/cuda/ops_table.cu), and the backend the device layer opens devices through
 * (kernels/cuda/backend.cu; a `const tn_cuda_backend *` of device/device.h, for tn_device_register_cuda). */
const tn_ops *tn_cuda_ops(void);
const tn_cuda_backend *tn_cuda_backend_get(void);
/* The inference engine's CUDA table (kernels/cuda/infer_ops.cu; kernels/infer_ops.h). */
const struct tn_infer_ops *tn_cuda_infer_ops(void);

/* NCCL (kernels/cuda/comm_nccl.cu; comm/comm.h): the API, NULL in an nvcc build without NCCL; and its vote
 * kernels, exposed for the tests: wide [n] int32 = v [n] int8, and v [n] = clamp(wide [n], -127, 127). */
const struct tn_nccl_api *tn_cuda_nccl_api(void);
int tn_cuda_votes_widen(const int8_t *v, int64_t n, int32_t *wide);
int tn_cuda_votes_saturate(const int32_t *wide, int64_t n, int8_t *v);

/* 1 when this build runs kernels on the CPU emulator (-DTN_CUDA_EMU=ON), 0 for a real CUDA build. */
int tn_cuda_is_emulated(void);
/* Release the cuBLAS handle (optional, e.g. before exit under a leak checker). */
void tn_cuda_shutdown(void);

#ifdef __cplusplus
}
#endif

#endif
