/* Muon and Grokfast on the GPU (kernels/cuda/muon.cu): the CUDA side of optim/muon.h and optim/grokfast.h,
 * same arguments and meaning. A plain C header (callers need no CUDA headers). Arrays are DEVICE memory.
 * Work is queued on the default stream; tn_cuda_muon_orthogonalize waits once (the Frobenius norm goes
 * through the host, as tn_cuda_sumsq does). Errors: 0, or -1 with the message in tn_errmsg().
 *
 * Agreement with the CPU (tests/unit/test_cuda_muon.c): the elementwise ops (momentum, apply, Grokfast) bit
 * for bit (the CPU's float expressions with __fmul_rn / __fadd_rn, never contracted); the orthogonalisation
 * to float rounding: its products are the cuBLAS wrapper's (kernels/cuda/cuda_ops.h tn_cuda_gemm; OpenBLAS
 * under the emulator), the norm's double sum in another order, 1e-5 relative stated for the result. */
#ifndef TN_KERNELS_CUDA_MUON_H
#define TN_KERNELS_CUDA_MUON_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* tn_muon_momentum: buf[n] ← β·buf + (1−β)·g; u[n] = nesterov ? β·buf + (1−β)·g : buf. u may alias g. */
int tn_cuda_muon_momentum(float *buf, float *u, const float *g, int64_t n, float beta, int nesterov);
/* tn_muon_orthogonalize: X[rows, cols] in place, scratch of tn_muon_scratch_floats(rows, cols) floats. */
int tn_cuda_muon_orthogonalize(float *X, int64_t rows, int64_t cols, int steps, float *scratch);
/* tn_muon_apply: p[n] ← p·decay − lr·(scale·o). */
int tn_cuda_muon_apply(float *p, const float *o, int64_t n, float scale, float lr, float decay);
/* tn_grokfast_apply: ema[n] = first ? g : ema·α + g·(1−α); g ← g + ema·λ. */
int tn_cuda_grokfast(float *g, float *ema, int64_t n, float alpha, float lambda, int first);

#ifdef __cplusplus
}
#endif

#endif
