/* Muon (MomentUm Orthogonalized by Newton–Schulz; K. Jordan et al., 2024) for 2-D weight matrices, the CPU
 * reference of the ops table's muon_* entries (kernels/ops.h). The update follows the public reference
 * implementation, github.com/KellerJordan/Muon, muon.py (muon_update and zeropower_via_newtonschulz5):
 *
 *   momentum   M ← β·M + (1−β)·G                     (torch: momentum.lerp_(grad, 1 − β))
 *   update     U = β·M + (1−β)·G with Nesterov, else M (torch: grad.lerp_(momentum, β))
 *   orthogonalise U ≈ U′ = polar factor of U, by `steps` quintic Newton–Schulz iterations on X, the [m, n]
 *              view of U with m = min(rows, cols) (Uᵀ when rows > cols):
 *                X ← X / (‖X‖_F + 1e−7)
 *                A = X·Xᵀ;  B = b·A + c·A·A;  X ← a·X + B·X        (a, b, c) = (3.4445, −4.7750, 2.0315)
 *   scale      s = sqrt(max(1, rows / cols))          (the reference's non-square update scale)
 *   parameter  W ← W·(1 − lr·wd) − lr·(s·U′)          (decoupled weight decay, as the reference's step)
 *
 * The coefficients maximise the slope at zero; the iteration does not converge to the exact polar factor
 * but to U·S′·Vᵀ with S′ roughly in [0.5, 1.5] (the reference's docstring). Differences from the reference:
 * the reference runs the iteration in bf16; here the CPU runs it in double (the float result is then the
 * exact iteration's, rounded) and the CUDA op in fp32 through cuBLAS (within 1e-5 of the CPU); momentum and
 * parameters are fp32. The rows > cols case is computed without a transposed copy: A = XᵀX,
 * X ← a·X + X·Bᵀ on the [rows, cols] matrix, the transpose of the reference's products term by term.
 * docs/OPTIMIZERS.md has the math and the defaults. */
#ifndef TN_OPTIM_MUON_H
#define TN_OPTIM_MUON_H

#include <stdint.h>

/* The quintic Newton–Schulz coefficients of the reference implementation. */
#define TN_MUON_NS_A 3.4445
#define TN_MUON_NS_B (-4.7750)
#define TN_MUON_NS_C 2.0315
#define TN_MUON_NS_EPS 1e-7 /* added to ‖X‖_F before the division */

/* buf[n] ← β·buf + (1−β)·g; u[n] = nesterov ? β·buf + (1−β)·g : buf (each product and sum rounded to
 * float in that order). u may alias g. */
void tn_muon_momentum(float *buf, float *u, const float *g, int64_t n, float beta, int nesterov);

/* Floats of scratch the ops' muon_orthogonalize needs for a [rows, cols] matrix, m = min(rows, cols): the
 * CPU's double arrays, 2·(2·rows·cols + 2·m²) floats (the CUDA op uses the first rows·cols + 2·m²). */
int64_t tn_muon_scratch_floats(int64_t rows, int64_t cols);

/* X[rows, cols] (row-major) ← its Newton–Schulz orthogonalisation after `steps` iterations (in place), with
 * scratch of tn_muon_scratch_floats(rows, cols) floats (8-byte aligned). OpenBLAS dgemm for the products. */
void tn_muon_orthogonalize(float *X, int64_t rows, int64_t cols, int steps, float *scratch);

/* The reference's update scale sqrt(max(1, rows / cols)), in float. */
float tn_muon_shape_scale(int64_t rows, int64_t cols);

/* p[n] ← p·decay − lr·(scale·o): decay = 1 − lr·wd (the caller's float), each operation rounded to float. */
void tn_muon_apply(float *p, const float *o, int64_t n, float scale, float lr, float decay);

#endif
