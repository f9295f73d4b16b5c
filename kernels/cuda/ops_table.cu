/* The CUDA ops table (kernels/ops.h): device memory, the row-major linear products as column-major cuBLAS
 * calls, and the kernels of model.cu, attention.cu, quant.cu, primal.cu, kd.cu, convert.cu, adam8.cu and
 * muon.cu. */
#include "kernels/cuda/adam8.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/kd.h"
#include "kernels/cuda/muon.h"

#include <stdlib.h>
#include <string.h>

/* ---- memory ------------------------------------------------------------------------------------------ */

static int dev_upload(void *dst, const void *src, size_t n) { return tn_cuda_upload(dst, src, n); }
static int dev_download(void *dst, const void *src, size_t n) { return tn_cuda_download(dst, src, n); }

static int dev_copy(void *dst, const void *src, size_t n) {
    if (n) TN_CU(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "CUDA copy");
    return 0;
}

static int dev_zero(void *p, size_t n) { return tn_cuda_memset0(p, n); }

/* ---- the linear layers, row-major, as cuBLAS's column-major GEMM ------------------------------------------
 * A row-major [r, c] buffer read column-major is the [c, r] transpose, so every product below is the
 * transposed identity of its row-major form:
 *   y[N,out]  = x[N,in] · W[out,in]ᵀ   ⇔  yᵀ[out,N] = W·xᵀ      : gemm(T, N, out, N, in;  W ld in,  x ld in,   y ld out)
 *   dx[N,in]  = dy[N,out] · W[out,in] ⇔  dxᵀ[in,N] = Wᵀ·dyᵀ    : gemm(N, N, in, N, out;  W ld in,  dy ld out, dx ld in)
 *   dW[out,in] = dy[N,out]ᵀ · x[N,in]  ⇔  dWᵀ[in,out] = xᵀ·dy   : gemm(N, T, in, out, N;  x ld in,  dy ld out, dW ld in) */
static int dev_linear(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    return tn_cuda_gemm(1, 0, out, N, in, 1.0f, W, in, x, in, beta, y, out);
}

static int dev_linear_dx(float *dx, const float *dy, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    return tn_cuda_gemm(0, 0, in, N, out, 1.0f, W, in, dy, out, beta, dx, in);
}

static int dev_linear_dw(float *dW, const float *dy, const float *x, int64_t N, int64_t in, int64_t out, float beta) {
    return tn_cuda_gemm(0, 1, in, out, N, 1.0f, x, in, dy, out, beta, dW, in);
}

/* ---- entries whose arguments differ from the CUDA functions' -------------------------------------------------- */

static int dev_embed_backward(float *dE, const float *dx, const int32_t *tokens, const tn_token_groups *groups,
                              int64_t N, int64_t D) {
    (void)tokens; /* the groups carry the same positions, sorted for a deterministic sum */
    if (!groups || !groups->pos) return tn_err("embedding backward on CUDA needs the token groups of the forward");
    return tn_cuda_embed_backward(dE, dx, groups, N, D);
}

#ifdef TN_CUDA_EMU
/* Emulator only, for isolating differences: TN_CUDA_EMU_CPU_ATTENTION=1 makes the CUDA table call the CPU
 * attention (emulated device memory is host memory inside an arena scope). The tiled CUDA attention rounds
 * differently from the CPU's (it is tested on its own, test_cuda_attention); with it swapped out, every
 * other op of a training step equals the CPU's bit for bit, which tests/cli/test_cuda_train.sh checks on
 * STE with int8 activations, where a one-ulp difference flips an activation's rounding. */
extern "C" {
#include "kernels/cpu/ops_cpu.h"
}

static int64_t cpu_att_saved(int64_t B, int64_t T, int64_t H) { return B * H * T * T; }

static int64_t cpu_att_scratch(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    (void)B, (void)H, (void)KV, (void)hd;
    return tn_op_attention_scratch_floats(T);
}

static int cpu_att(float *out, float *saved, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                   int64_t H, int64_t KV, int64_t hd) {
    tn_emu::arena_scope open;
    tn_op_attention(out, saved, q, k, v, B, T, H, KV, hd);
    return 0;
}

static int cpu_att_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *saved,
                            const float *q, const float *k, const float *v, int64_t B, int64_t T, int64_t H,
                            int64_t KV, int64_t hd, float *scratch) {
    (void)out;
    tn_emu::arena_scope open;
    tn_op_attention_backward(dq, dk, dv, dout, saved, q, k, v, B, T, H, KV, hd, scratch);
    return 0;
}
#endif

/* Filled field by field: designated initializers are C++20, and this file is C++17 for nvcc. */
static tn_ops make_table(void) {
    tn_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.device_memory = 1;
    o.alloc = tn_cuda_alloc;
    o.reserve = tn_cuda_reserve;
    o.free = tn_cuda_free;
    o.upload = dev_upload;
    o.download = dev_download;
    o.copy = dev_copy;
    o.zero = dev_zero;
    o.sync = tn_cuda_sync;
    o.mem_usage = tn_cuda_mem_usage;
    o.mem_reset_peak = tn_cuda_mem_reset_peak;
    o.linear = dev_linear;
    o.linear_dx = dev_linear_dx;
    o.linear_dw = dev_linear_dw;
    o.rmsnorm = tn_cuda_rmsnorm;
    o.rmsnorm_backward = tn_cuda_rmsnorm_backward;
    o.rope = tn_cuda_rope;
    o.attention_saved_floats = tn_cuda_attention_saved_floats;
    o.attention_scratch_floats = tn_cuda_attention_scratch_floats;
    o.attention = tn_cuda_attention;
    o.attention_backward = tn_cuda_attention_backward;
    o.swiglu = tn_cuda_swiglu;
    o.swiglu_backward = tn_cuda_swiglu_backward;
    o.embed = tn_cuda_embed;
    o.embed_backward = dev_embed_backward;
    o.cross_entropy = tn_cuda_cross_entropy;
    o.cross_entropy_backward = tn_cuda_cross_entropy_backward;
    o.act_fake_quant = tn_cuda_act_fake_quant;
    o.kd = tn_cuda_kd;
    o.hidden_mse = tn_cuda_hidden_mse;
    o.f16_to_f32 = tn_cuda_f16_to_f32;
    o.add = tn_cuda_add;
    o.bias_add = tn_cuda_bias_add;
    o.bias_grad = tn_cuda_bias_grad;
    o.scale = tn_cuda_scale;
    o.dropout = tn_cuda_dropout;
    o.sumsq = tn_cuda_sumsq;
    o.masked_sum = tn_cuda_masked_sum;
    o.count_nonzero_i8 = tn_cuda_count_nonzero_i8;
    o.bf16_from_f32 = tn_cuda_bf16_from_f32;
    o.bf16_to_f32 = tn_cuda_bf16_to_f32;
    o.bf16_round_stochastic = tn_cuda_bf16_round_stochastic;
    o.bf16_accumulate = tn_cuda_bf16_accumulate;
    o.bf16_sumsq = tn_cuda_bf16_sumsq;
    o.adamw = tn_cuda_adamw;
    o.adamw8 = tn_cuda_adamw8;
    o.adamw_bf16 = tn_cuda_adamw_bf16;
    o.muon_momentum = tn_cuda_muon_momentum;
    o.muon_orthogonalize = tn_cuda_muon_orthogonalize;
    o.muon_apply = tn_cuda_muon_apply;
    o.grokfast = tn_cuda_grokfast;
    o.ste_blend = tn_cuda_ste_blend;
    o.quantize = tn_cuda_quantize;
    o.primal_materialize = tn_cuda_primal_materialize;
    o.primal_accumulate = tn_cuda_primal_accumulate;
    o.primal_flip = tn_cuda_primal_flip;
#ifdef TN_CUDA_EMU
    const char *swap = getenv("TN_CUDA_EMU_CPU_ATTENTION");
    if (swap && *swap && strcmp(swap, "0") != 0) {
        o.attention_saved_floats = cpu_att_saved;
        o.attention_scratch_floats = cpu_att_scratch;
        o.attention = cpu_att;
        o.attention_backward = cpu_att_backward;
    }
#endif
    return o;
}

static const tn_ops g_cuda_ops = make_table();

extern "C" const tn_ops *tn_cuda_ops(void) { return &g_cuda_ops; }
