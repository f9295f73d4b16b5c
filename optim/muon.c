#include "optim/muon.h"
#include "kernels/cpu/ops_cpu.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void tn_muon_momentum(float *buf, float *u, const float *g, int64_t n, float beta, int nesterov) {
    const float keep = beta, take = 1.0f - beta;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], b = keep * buf[i] + take * gi;
        buf[i] = b;
        u[i] = nesterov ? keep * b + take * gi : b;
    }
}

int64_t tn_muon_scratch_floats(int64_t rows, int64_t cols) {
    const int64_t m = rows < cols ? rows : cols;
    return 2 * (2 * rows * cols + 2 * m * m); /* the CPU's doubles; the CUDA op uses the first R·C + 2·m² floats */
}

float tn_muon_shape_scale(int64_t rows, int64_t cols) {
    const double r = (double)rows / (double)cols;
    return (float)sqrt(r > 1 ? r : 1);
}

/* Row-major C[M, N] = alpha·op(A)·op(B) + beta·C in double; op = ᵀ when the flag is set. */
static void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda,
                 const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

/* X [R, C] row-major, m = min(R, C). The iteration runs in double on a copy (the float result is then within
 * float rounding of the exact iteration; fp32 products would leave ~1e-6 after five steps). Wide (R <= C):
 * the reference's X itself; tall: its transpose, so
 *   wide:  A[m,m] = X·Xᵀ;  B = c·A·A + b·A;  Y = B·X + a·X
 *   tall:  A[m,m] = Xᵀ·X;  B = c·A·A + b·A;  Y = X·Bᵀ + a·X       ((B·Xᵀ)ᵀ, the same products)
 * B and Y start as copies of A and X so that one dgemm with beta adds the linear term; X and Y alternate.
 * Scratch (tn_muon_scratch_floats): the doubles X [R·C], Y [R·C], A [m·m], B [m·m]. */
void tn_muon_orthogonalize(float *X, int64_t R, int64_t C, int steps, float *scratch) {
    const int64_t n = R * C, m = R < C ? R : C;
    const int tall = R > C;
    double *cur = (double *)(void *)scratch, *nxt = cur + n, *A = nxt + n, *B = A + m * m;
    const double den = sqrt(tn_op_sumsq(X, n)) + (double)TN_MUON_NS_EPS;
    for (int64_t i = 0; i < n; i++) cur[i] = (double)X[i] / den;
    for (int s = 0; s < steps; s++) {
        if (tall) gemm(1, 0, m, m, R, 1.0, cur, C, cur, C, 0.0, A, m);
        else gemm(0, 1, m, m, C, 1.0, cur, C, cur, C, 0.0, A, m);
        memcpy(B, A, (size_t)(m * m) * sizeof(double));
        gemm(0, 0, m, m, m, TN_MUON_NS_C, A, m, A, m, TN_MUON_NS_B, B, m);
        memcpy(nxt, cur, (size_t)n * sizeof(double));
        if (tall) gemm(0, 1, R, C, C, 1.0, cur, C, B, m, TN_MUON_NS_A, nxt, C);
        else gemm(0, 0, R, C, R, 1.0, B, m, cur, C, TN_MUON_NS_A, nxt, C);
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    for (int64_t i = 0; i < n; i++) X[i] = (float)cur[i];
}

void tn_muon_apply(float *p, const float *o, int64_t n, float scale, float lr, float decay) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float u = scale * o[i];
        p[i] = p[i] * decay - lr * u;
    }
}
