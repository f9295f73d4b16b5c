/* Knowledge distillation on the CPU (kernels/cpu/kd.h): the KL term with its gradient, the hidden-state MSE.
 * The exp-heavy row loops are dispatched by vector width at load time (kernels/cpu/vec_clones.h). */
#include "kernels/cpu/kd.h"
#include "kernels/cpu/vec_clones.h"
#include "kernels/vexp.h"

#include <math.h>
#include <string.h>

/* ---- the KL term ------------------------------------------------------------------------------------ */

TN_VEC_CLONES static void kd_row_sums(const float *s, const float *t, int64_t V, float ms, float mt, float inv_tau,
                                      double *Ss, double *St, double *A) {
    double ss = 0, st = 0, a = 0;
#pragma omp simd reduction(+ : ss, st, a)
    for (int64_t j = 0; j < V; j++) {
        const float zs = (s[j] - ms) * inv_tau, zt = (t[j] - mt) * inv_tau;
        const float es = tn_expf(zs), et = tn_expf(zt);
        ss += (double)es;
        st += (double)et;
        a += (double)et * ((double)zt - (double)zs);
    }
    *Ss = ss;
    *St = st;
    *A = a;
}

/* grad[j] = e_s·ks − e_t·kt (ks = gτ / S_s, kt = gτ / S_t). grad may be t (element j is read, then written). */
TN_VEC_CLONES static void kd_row_grad(float *grad, const float *s, const float *t, int64_t V, float ms, float mt,
                                      float inv_tau, float ks, float kt) {
#pragma omp simd
    for (int64_t j = 0; j < V; j++) {
        const float es = tn_expf((s[j] - ms) * inv_tau), et = tn_expf((t[j] - mt) * inv_tau);
        grad[j] = es * ks - et * kt;
    }
}

/* Per row: log p_s = z_s − log S_s and likewise for t, so
 *   KL = Σ p_t (log p_t − log p_s) = Σ e_t (z_t − z_s) / S_t + log(S_s / S_t);
 *   d(g τ² KL)/ds = g τ (p_s − p_t)     (z = s/τ − const: d/ds = (1/τ) d/dz, and dKL/dz_s = p_s − p_t).
 * One OpenMP task per row; the row is read whole (max, sums) before its gradient is written, so grad may
 * be t_logits. */
void tn_op_kd(float *kl, float *grad, const float *s_logits, const float *t_logits, const uint8_t *mask, int64_t N,
              int64_t V, float tau, float g) {
    const float inv_tau = 1.0f / tau, gt = g * tau;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *s = s_logits + n * V, *t = t_logits + n * V;
        const float ms = tn_vec_max(s, V), mt = tn_vec_max(t, V);
        double Ss, St, A;
        kd_row_sums(s, t, V, ms, mt, inv_tau, &Ss, &St, &A);
        kl[n] = (float)(A / St + log(Ss / St));
        float *gr = grad + n * V;
        if (mask && !mask[n]) {
            memset(gr, 0, (size_t)V * sizeof *gr);
            continue;
        }
        kd_row_grad(gr, s, t, V, ms, mt, inv_tau, (float)((double)gt / Ss), (float)((double)gt / St));
    }
}

/* ---- the hidden-state MSE ---------------------------------------------------------------------------- */

/* Σ_d (xs − xt)² in double, element d into lane d % 8, the lanes added in a fixed tree: the same bits
 * whatever the vector width (no reassociation: each lane is a plain chain). */
TN_VEC_CLONES static double row_sqdiff(const float *xs, const float *xt, int64_t D) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= D; j += 8)
        for (int k = 0; k < 8; k++) {
            const double d = (double)xs[j + k] - (double)xt[j + k];
            lane[k] += d * d;
        }
    for (int k = 0; j + k < D; k++) {
        const double d = (double)xs[j + k] - (double)xt[j + k];
        lane[k] += d * d;
    }
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

TN_VEC_CLONES static void row_mse_grad(float *dx, const float *xs, const float *xt, int64_t D, float g2) {
#pragma omp simd
    for (int64_t j = 0; j < D; j++) dx[j] += g2 * (xs[j] - xt[j]);
}

/* d/dxs Σ (xs − xt)² = 2 (xs − xt). A fixed number of row chunks, each summed in row order and then added in
 * chunk order (as tn_op_sumsq), so the sum does not depend on the thread count. */
void tn_op_hidden_mse(double *sum, float *dx, const float *xs, const float *xt, const uint8_t *mask, int64_t N,
                      int64_t D, float g) {
    enum { CHUNKS = 64 };
    double part[CHUNKS];
    const float g2 = 2.0f * g;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < CHUNKS; c++) {
        double s = 0;
        for (int64_t n = N * c / CHUNKS; n < N * (c + 1) / CHUNKS; n++) {
            if (mask && !mask[n]) continue;
            const int64_t o = n * D;
            s += row_sqdiff(xs + o, xt + o, D);
            row_mse_grad(dx + o, xs + o, xt + o, D, g2);
        }
        part[c] = s;
    }
    double s = 0;
    for (int c = 0; c < CHUNKS; c++) s += part[c];
    *sum = s;
}
