/* CPU implementations of kernels/ops.h. */
#include "kernels/cpu/ops_cpu.h"
#include "kernels/cpu/vec_clones.h"
#include "kernels/dropout_math.h"
#include "kernels/vexp.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* ---- vector helpers (kernels/cpu/vec_clones.h says how they are dispatched) ------------------------- */

TN_VEC_CLONES static double vec_sum_exp(const float *x, int64_t n, float shift) {
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) sum += (double)tn_expf(x[j] - shift);
    return sum;
}

/* x[j] = exp(x[j] - shift) in place; returns Σ x[j] in double (the cross-entropy backward: a double sum
 * rounds to the same float whatever order the CUDA backend adds in) */
TN_VEC_CLONES static double vec_exp_sum_d(float *x, int64_t n, float shift) {
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        x[j] = tn_expf(x[j] - shift);
        sum += (double)x[j];
    }
    return sum;
}

/* x[j] = exp(x[j] - shift) in place; returns Σ x[j] (float) */
TN_VEC_CLONES static float vec_exp_sum(float *x, int64_t n, float shift) {
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        x[j] = tn_expf(x[j] - shift);
        sum += x[j];
    }
    return sum;
}

TN_VEC_CLONES static void vec_scale(float *x, int64_t n, float k) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) x[j] *= k;
}

/* a = silu(g) · u over [0, n) */
TN_VEC_CLONES static void swiglu_span(float *a, const float *g, const float *u, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + tn_expf(-g[i]));
        a[i] = g[i] * s * u[i];
    }
}

/* d silu(g)/dg = σ(g) (1 + g (1 − σ(g))) */
TN_VEC_CLONES static void swiglu_backward_span(float *dg, float *du, const float *da, const float *g,
                                               const float *u, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + tn_expf(-g[i]));
        float silu = g[i] * s;
        float d = da[i];
        du[i] = d * silu;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

/* Σ x[i]² in double */
TN_VEC_CLONES static double sumsq_span(const float *x, int64_t n) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* Elementwise work is split into chunks of this many elements (a multiple of every vector width). */
#define SPAN 4096

/* ---- matrix products ---------------------------------------------------------------------------- */

void tn_op_linear(float *y, const float *x, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)out, (blasint)in, 1.0f, x,
                (blasint)in, W, (blasint)in, beta, y, (blasint)out);
}

void tn_op_linear_dx(float *dx, const float *dy, const float *W, int64_t N, int64_t in, int64_t out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)in, (blasint)out, 1.0f, dy,
                (blasint)out, W, (blasint)in, beta, dx, (blasint)in);
}

void tn_op_linear_dw(float *dW, const float *dy, const float *x, int64_t N, int64_t in, int64_t out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)out, (blasint)in, (blasint)N, 1.0f, dy,
                (blasint)out, x, (blasint)in, beta, dW, (blasint)in);
}

/* ---- RMSNorm ------------------------------------------------------------------------------------- */

void tn_op_rmsnorm(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * D;
        float *yr = y + n * D;
        double ss = 0; /* double accumulation: D up to thousands, keeps the 1e-5 match with PyTorch */
        for (int64_t d = 0; d < D; d++) ss += (double)xr[d] * xr[d];
        float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
        rstd[n] = r;
        for (int64_t d = 0; d < D; d++) yr[d] = xr[d] * r * w[d];
    }
}

/* With xh = x·r and y = w·xh:  dx = r · (dy·w − xh · mean(dy·w·xh)),  dw = Σ_n dy·xh. */
void tn_op_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                            const float *rstd, int64_t N, int64_t D) {
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * D, *dyr = dy + n * D;
            float *dxr = dx + n * D;
            float r = rstd[n];
            double dot = 0;
            for (int64_t d = 0; d < D; d++) dot += (double)dyr[d] * w[d] * xr[d];
            float m = (float)(dot / (double)D) * r * r;
            for (int64_t d = 0; d < D; d++) dxr[d] += r * (dyr[d] * w[d] - xr[d] * m);
        }
        /* dw: columns split across threads, so no two threads write the same element. */
#pragma omp for schedule(static)
        for (int64_t d = 0; d < D; d++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += (double)dy[n * D + d] * x[n * D + d] * rstd[n];
            dw[d] += (float)s;
        }
    }
}

/* ---- RoPE ---------------------------------------------------------------------------------------- */

/* Column i of the tables: the angles (pos0 + t) · inv_freq, computed in double, stored float. */
static void rope_column(float *cos_t, float *sin_t, int64_t T, int64_t half, int64_t i, float inv_freq, int64_t pos0) {
    for (int64_t t = 0; t < T; t++) {
        double a = (double)(pos0 + t) * (double)inv_freq;
        cos_t[t * half + i] = (float)cos(a);
        sin_t[t * half + i] = (float)sin(a);
    }
}

void tn_op_rope_table_freq(float *cos_t, float *sin_t, int64_t T, int64_t hd, const float *inv_freq, int64_t pos0) {
    for (int64_t i = 0; i < hd / 2; i++) rope_column(cos_t, sin_t, T, hd / 2, i, inv_freq[i], pos0);
}

void tn_op_rope_table(float *cos_t, float *sin_t, int64_t T, int64_t hd, double theta, int64_t pos0) {
    /* HF computes inv_freq in float32: 1 / theta^(2i/hd). Match that rounding, then angle in double. */
    for (int64_t i = 0; i < hd / 2; i++)
        rope_column(cos_t, sin_t, T, hd / 2, i, (float)(1.0 / pow(theta, (double)(2 * i) / (double)hd)), pos0);
}

void tn_op_rope(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t T, int64_t n_heads,
                int64_t hd, int inverse) {
    int64_t half = hd / 2;
    float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++) {
            const float *c = cos_t + t * half, *s = sin_t + t * half;
            for (int64_t h = 0; h < n_heads; h++) {
                float *v = x + ((b * T + t) * n_heads + h) * hd;
                for (int64_t i = 0; i < half; i++) {
                    float a = v[i], bb = v[i + half], si = sgn * s[i];
                    v[i] = a * c[i] - bb * si;
                    v[i + half] = bb * c[i] + a * si;
                }
            }
        }
    }
}

/* ---- attention ----------------------------------------------------------------------------------- */

/* Causal attention touches only the lower triangle of the T x T score matrix. Rows are taken in blocks
 * of causal_block(T); block [r0, r1) needs only key positions 0 .. r1-1, so every product below runs over
 * r1 columns instead of T: (1 + 2 + ... + nb) / nb² of the full work, 56% for 8 blocks. Entries of a block
 * above the diagonal are computed and then overwritten with 0, so products over [0, r1) see exact zeros. */
static int64_t causal_block(int64_t T) { return T <= 256 ? 32 : 64; }

/* Rows [r0, r1) of the causal softmax of S[T, T] in place; entries above the diagonal become 0. */
static void causal_softmax_rows(float *S, int64_t T, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++) {
        float *row = S + i * T;
        const float mx = tn_vec_max(row, i + 1);
        const float sum = vec_exp_sum(row, i + 1, mx);
        vec_scale(row, i + 1, 1.0f / sum);
        for (int64_t j = i + 1; j < T; j++) row[j] = 0.0f;
    }
}

void tn_op_attention(float *out, float *probs, const float *q, const float *k, const float *v, int64_t B,
                     int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int64_t qs = H * hd, ks = KV * hd, group = H / KV, blk = causal_block(T);
    const float scale = 1.0f / sqrtf((float)hd);
    /* One (batch, head) pair per task; sgemm runs single-threaded inside the parallel region. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const int64_t kh = h / group;
            const float *qb = q + b * T * qs + h * hd;
            const float *kb = k + b * T * ks + kh * hd;
            const float *vb = v + b * T * ks + kh * hd;
            float *P = probs + (b * H + h) * T * T;
            float *ob = out + b * T * qs + h * hd;
            for (int64_t r0 = 0; r0 < T; r0 += blk) {
                const int64_t r1 = r0 + blk < T ? r0 + blk : T, nr = r1 - r0;
                /* S[r0:r1, 0:r1] = scale · Q[r0:r1] K[0:r1]ᵀ */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nr, (blasint)r1, (blasint)hd, scale,
                            qb + r0 * qs, (blasint)qs, kb, (blasint)ks, 0.0f, P + r0 * T, (blasint)T);
                causal_softmax_rows(P, T, r0, r1);
                /* O[r0:r1] = P[r0:r1, 0:r1] V[0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nr, (blasint)hd, (blasint)r1, 1.0f,
                            P + r0 * T, (blasint)T, vb, (blasint)ks, 0.0f, ob + r0 * qs, (blasint)qs);
            }
        }
    }
}

int64_t tn_op_attention_scratch_floats(int64_t T) { return (int64_t)omp_get_max_threads() * T * T; }

/* Per (b, kv head): every q head of the group adds into the same dk, dv rows, so the group is one task.
 *   dP = dO Vᵀ;  dV += Pᵀ dO;  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale;  dQ = dS K;  dK += dSᵀ Q
 * in causal row blocks as the forward: block [r0, r1) of dP and dS spans columns [0, r1). */
void tn_op_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                              const float *q, const float *k, const float *v, int64_t B, int64_t T,
                              int64_t H, int64_t KV, int64_t hd, float *scratch) {
    const int64_t qs = H * hd, ks = KV * hd, group = H / KV, blk = causal_block(T);
    const float scale = 1.0f / sqrtf((float)hd);
    /* dk, dv are accumulated over the heads of a group: clear them first. */
    memset(dk, 0, (size_t)(B * T * ks) * sizeof *dk);
    memset(dv, 0, (size_t)(B * T * ks) * sizeof *dv);
#pragma omp parallel
    {
        float *dP = scratch + (int64_t)omp_get_thread_num() * T * T;
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            for (int64_t kh = 0; kh < KV; kh++) {
                const float *kb = k + b * T * ks + kh * hd, *vb = v + b * T * ks + kh * hd;
                float *dkb = dk + b * T * ks + kh * hd, *dvb = dv + b * T * ks + kh * hd;
                for (int64_t h = kh * group; h < (kh + 1) * group; h++) {
                    const float *P = probs + (b * H + h) * T * T;
                    const float *dob = dout + b * T * qs + h * hd, *qb = q + b * T * qs + h * hd;
                    float *dqb = dq + b * T * qs + h * hd;
                    for (int64_t r0 = 0; r0 < T; r0 += blk) {
                        const int64_t r1 = r0 + blk < T ? r0 + blk : T, nr = r1 - r0;
                        const float *Pb = P + r0 * T;
                        float *dPb = dP + r0 * T;
                        /* dP[r0:r1, 0:r1] = dO[r0:r1] V[0:r1]ᵀ;  dV[0:r1] += P[r0:r1, 0:r1]ᵀ dO[r0:r1] */
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nr, (blasint)r1, (blasint)hd,
                                    1.0f, dob + r0 * qs, (blasint)qs, vb, (blasint)ks, 0.0f, dPb, (blasint)T);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)r1, (blasint)hd, (blasint)nr,
                                    1.0f, Pb, (blasint)T, dob + r0 * qs, (blasint)qs, 1.0f, dvb, (blasint)ks);
                        for (int64_t i = r0; i < r1; i++) {
                            const float *pr = P + i * T;
                            float *dr = dP + i * T;
                            float dot = 0;
                            for (int64_t j = 0; j <= i; j++) dot += pr[j] * dr[j];
                            for (int64_t j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
                            for (int64_t j = i + 1; j < r1; j++) dr[j] = 0.0f;
                        }
                        /* dQ[r0:r1] = dS[r0:r1, 0:r1] K[0:r1];  dK[0:r1] += dS[r0:r1, 0:r1]ᵀ Q[r0:r1] */
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nr, (blasint)hd, (blasint)r1,
                                    1.0f, dPb, (blasint)T, kb, (blasint)ks, 0.0f, dqb + r0 * qs, (blasint)qs);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)r1, (blasint)hd, (blasint)nr,
                                    1.0f, dPb, (blasint)T, qb + r0 * qs, (blasint)qs, 1.0f, dkb, (blasint)ks);
                    }
                }
            }
        }
    }
}

/* ---- SwiGLU -------------------------------------------------------------------------------------- */

void tn_op_swiglu(float *a, const float *g, const float *u, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += SPAN) swiglu_span(a + i, g + i, u + i, n - i < SPAN ? n - i : SPAN);
}

void tn_op_swiglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += SPAN)
        swiglu_backward_span(dg + i, du + i, da + i, g + i, u + i, n - i < SPAN ? n - i : SPAN);
}

/* ---- embedding ----------------------------------------------------------------------------------- */

void tn_op_embed(float *x, const float *E, const int32_t *tokens, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) memcpy(x + n * D, E + (int64_t)tokens[n] * D, (size_t)D * sizeof *x);
}

void tn_op_embed_backward(float *dE, const float *dx, const int32_t *tokens, int64_t N, int64_t D) {
    /* Columns split across threads: tokens repeat, so splitting over n would race. */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
        int64_t d0 = D * it / nt, d1 = D * (it + 1) / nt;
        for (int64_t n = 0; n < N; n++) {
            float *row = dE + (int64_t)tokens[n] * D;
            const float *src = dx + n * D;
            for (int64_t d = d0; d < d1; d++) row[d] += src[d];
        }
    }
}

/* ---- cross-entropy ------------------------------------------------------------------------------- */

int64_t tn_op_cross_entropy(float *nll, const float *logits, const int32_t *targets, const uint8_t *mask,
                            int64_t N, int64_t V) {
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count)
    for (int64_t n = 0; n < N; n++) {
        const float *row = logits + n * V;
        const float mx = tn_vec_max(row, V);
        const double sum = vec_sum_exp(row, V, mx);
        nll[n] = (float)((double)mx + log(sum) - (double)row[targets[n]]);
        if (!mask || mask[n]) count++;
    }
    return count;
}

void tn_op_cross_entropy_backward(float *logits, const int32_t *targets, const uint8_t *mask, int64_t N,
                                  int64_t V, float g) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *row = logits + n * V;
        if (mask && !mask[n]) {
            memset(row, 0, (size_t)V * sizeof *row);
            continue;
        }
        const float mx = tn_vec_max(row, V);
        const float sum = (float)vec_exp_sum_d(row, V, mx);
        vec_scale(row, V, g / sum);
        row[targets[n]] -= g;
    }
}

/* ---- vectors ------------------------------------------------------------------------------------- */

void tn_op_add(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void tn_op_bias_add(float *y, const float *b, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *row = y + n * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) row[c] += b[c];
    }
}

/* Columns in blocks of 64 per thread; inside a block the rows are walked in order, so each column's sum is
 * the same sequence of float additions whatever the thread count (and as the CUDA kernel's). */
void tn_op_bias_grad(float *db, const float *dy, int64_t N, int64_t C) {
    enum { BLOCK = 64 };
    const int64_t nb = (C + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nb; blk++) {
        const int64_t c0 = blk * BLOCK, c1 = c0 + BLOCK < C ? c0 + BLOCK : C;
        float acc[BLOCK] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *row = dy + n * C;
#pragma omp simd
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int64_t c = c0; c < c1; c++) db[c] += acc[c - c0];
    }
}

/* A fixed number of chunks, summed in chunk order: an OpenMP reduction would combine the threads' partial
 * sums in the order they finish, and with 3 or more threads the gradient norm (and so the clipping) could
 * change from run to run, breaking exact resume. */
double tn_op_sumsq(const float *x, int64_t n) {
    enum { CHUNKS = 64 };
    double part[CHUNKS];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < CHUNKS; c++) {
        const int64_t i0 = n * c / CHUNKS, i1 = n * (c + 1) / CHUNKS;
        part[c] = sumsq_span(x + i0, i1 - i0);
    }
    double s = 0;
    for (int c = 0; c < CHUNKS; c++) s += part[c];
    return s;
}

void tn_op_scale(float *x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

/* out[n] = drop(x): element i kept (times 1/(1−p)) when mix64(key + i·φ) ≥ ⌊p·2⁶⁴⌋, else 0
 * (kernels/dropout_math.h). out may equal x. One parallel chunk of elements per thread. */
void tn_op_dropout(float *out, const float *x, int64_t n, uint64_t key, double p) {
    const uint64_t thr = tn_dropout_threshold(p);
    const float keep = tn_dropout_keep_scale(p);
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
    for (int64_t i = 0; i < n; i++) out[i] = tn_dropout_keeps(key, (uint64_t)i, thr) ? x[i] * keep : 0.0f;
}

int tn_op_all_finite(const float *x, int64_t n) {
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}
