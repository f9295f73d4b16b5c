/* trinity bench gemv: packed-kernel matrix-vector timings with baselines measured in the same run
 * (see bench_gemv.h). */
#include "runner/bench_gemv.h"

#include "cli/commands.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/timer.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/packed.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* llama.cpp TQ2_0 on this machine class, 2 threads (issue 6), for the printed comparison. */
static const struct {
    int64_t rows, cols;
    double tq2_0_us;
} SHAPES[] = {{2048, 2048, 45.9}, {5632, 2048, 117.0}, {2048, 5632, 110.0}};
#define N_SHAPES 3

#define STREAM_POOL_BYTES ((size_t)1 << 30)
#define GEMM_TOKENS 32

/* ---- bandwidth ------------------------------------------------------------------------------------ */


/* ---- timing helpers ------------------------------------------------------------------------------- */

typedef enum { K_T2, K_L4, K_L8, K_SGEMV } kind;

typedef struct {
    int64_t rows, cols;
    const uint8_t *w;    /* T2 / L4 / L8 packed weights */
    const float *wf;     /* fp32 weights for sgemv */
    const float *grid;   /* L4: 16, L8: 256 floats */
    const float *x;
    const int8_t *xq;
    float xs;
    float *y;
} job;

static inline void run_once(kind k, const job *j, const uint8_t *w) {
    switch (k) {
    case K_T2: tn_t2_gemv(w, NULL, 1.0f, j->rows, j->cols, j->xq, j->xs, j->y); break;
    case K_L4: tn_l4_gemv(w, j->grid, NULL, 1.0f, j->rows, j->cols, j->x, j->y); break;
    case K_L8: tn_l8_gemv(w, j->grid, NULL, 1.0f, j->rows, j->cols, j->x, j->y); break;
    case K_SGEMV:
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)j->rows, (int)j->cols, 1.0f, j->wf, (int)j->cols, j->x, 1,
                    0.0f, j->y, 1);
        break;
    }
}

/* Median and minimum seconds per call over `iters` calls after `warm` calls. With a pool of n_copies
 * weight copies (stride bytes apart), each call uses the next copy, so the weights come from memory. */
static void time_kernel(kind k, const job *j, const uint8_t *pool, size_t stride, int n_copies, int warm, int iters,
                        double *t_med, double *t_min) {
    double *t = malloc((size_t)iters * sizeof(double));
    if (!t) {
        *t_med = *t_min = 0;
        return;
    }
    int c = 0;
    for (int i = 0; i < warm; i++) {
        run_once(k, j, pool ? pool + (size_t)c * stride : j->w);
        if (++c == n_copies) c = 0;
    }
    for (int i = 0; i < iters; i++) {
        const uint8_t *w = pool ? pool + (size_t)c * stride : j->w;
        if (++c == n_copies) c = 0;
        double t0 = tn_time_s();
        run_once(k, j, w);
        t[i] = tn_time_s() - t0;
    }
    double mn = t[0];
    for (int i = 1; i < iters; i++)
        if (t[i] < mn) mn = t[i];
    *t_min = mn;
    *t_med = tn_median(t, iters);
    free(t);
}

static void help(void) {
    printf("usage: trinity bench gemv [--threads N] [--iters N] [--json]\n\n"
           "Times the packed T2 matrix-vector product (int8 activations) for 2048x2048, 5632x2048 and\n"
           "2048x5632 (out x in), 2 threads by default: median of N calls (default 2000) with hot weights,\n"
           "and streaming the weights from memory. In the same run: the scalar reference path, OpenBLAS\n"
           "sgemv on fp32 weights, the L4 and L8 lookup-table products, and the memory read bandwidth with\n"
           "the bandwidth-bound time for each shape's bytes. TN_KERNELS=scalar|avx2|avxvnni|avx512 caps\n"
           "the kernel level. --json prints one object per shape per line.\n");
}

int tn_bench_gemv(int argc, char **argv) {
    int threads = 2, iters = 2000, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            help();
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (i + 1 < argc && (!strcmp(a, "--threads") || !strcmp(a, "--iters"))) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v <= 0 || v > 1000000) return tn_cli_usage_error("bench gemv", "%s needs a positive integer", a);
            if (!strcmp(a, "--threads")) threads = (int)v;
            else iters = (int)v;
        } else {
            return tn_cli_usage_error("bench gemv", "unknown option '%s'", a);
        }
    }
    omp_set_num_threads(threads);
    tn_packed_set_threads(threads);
    openblas_set_num_threads(threads);
    tn_isa isa = tn_kernels_isa();
    int warm = iters / 10 > 50 ? iters / 10 : 50;

    double bw = tn_bench_read_bandwidth((size_t)1 << 30, threads, 3);
    if (bw <= 0) return tn_err("bench gemv: out of memory for the bandwidth buffer"), tn_cli_fail();
    if (!json)
        printf("bench gemv: %d threads, kernels %s (best %s), read bandwidth %.1f GB/s (1 GiB stream)\n", threads,
               tn_isa_name(isa), tn_isa_name(tn_cpu_best_isa()), bw / 1e9);

    tn_rng rng;
    tn_rng_seed(&rng, 1234);
    float grid16[16], grid256[256];
    for (int i = 0; i < 16; i++) grid16[i] = (float)(i - 7) / 7.0f;
    /* L8 with an 81-value grid, the size of prime81 (the AVX-512 path picks by grid size; see PACKING.md). */
    for (int i = 0; i < 256; i++) grid256[i] = i < 81 ? (float)(i - 40) / 40.0f : 0.0f;

    int rc = 0;
    for (int s = 0; s < N_SHAPES && rc == 0; s++) {
        int64_t rows = SHAPES[s].rows, cols = SHAPES[s].cols, n = rows * cols;
        size_t t2b = tn_t2_packed_size(rows, cols), l4b = tn_l4_packed_size(rows, cols),
               l8b = tn_l8_packed_size(rows, cols);
        int8_t *wt = tn_alloc((size_t)n, 1);
        uint8_t *idx = tn_alloc((size_t)n, 1);
        uint8_t *t2 = tn_alloc(t2b, 1), *l4 = tn_alloc(l4b, 1), *l8 = tn_alloc(l8b, 1);
        float *wf = tn_alloc((size_t)n, sizeof(float)), *x = tn_alloc((size_t)cols, sizeof(float));
        int8_t *xq = tn_alloc((size_t)cols, 1);
        float *y = tn_alloc((size_t)rows, sizeof(float));
        int8_t *Xq = tn_alloc((size_t)(GEMM_TOKENS * cols), 1);
        float *Y = tn_alloc((size_t)(GEMM_TOKENS * rows), sizeof(float));
        int n_copies = (int)((STREAM_POOL_BYTES + t2b - 1) / t2b);
        uint8_t *pool = tn_alloc((size_t)n_copies * t2b, 1);
        if (!wt || !idx || !t2 || !l4 || !l8 || !wf || !x || !xq || !y || !pool || !Xq || !Y) {
            rc = -1;
        } else {
            for (int64_t i = 0; i < n; i++) {
                wt[i] = (int8_t)((int)tn_rng_below(&rng, 3) - 1);
                idx[i] = (uint8_t)tn_rng_below(&rng, 16);
                wf[i] = (float)wt[i] * 0.02f;
            }
            for (int64_t i = 0; i < cols; i++) x[i] = tn_rng_normal(&rng);
            rc = tn_t2_pack(wt, rows, cols, t2);
            if (rc == 0) rc = tn_l4_pack(idx, rows, cols, 16, l4);
            for (int64_t i = 0; i < n; i++) idx[i] = (uint8_t)tn_rng_below(&rng, 81);
            if (rc == 0) rc = tn_l8_pack(idx, rows, cols, 81, l8);
            for (int c = 0; c < n_copies; c++) memcpy(pool + (size_t)c * t2b, t2, t2b);
        }
        if (rc == 0) {
            float xs;
            tn_act_quant_i8(x, cols, xq, &xs);
            job j = {rows, cols, t2, wf, NULL, x, xq, xs, y};
            double t2_med, t2_min, st_med, st_min, sc_med, sc_min, bl_med, bl_min, l4_med, l4_min, l8_med, l8_min;
            double q_med, gemm_us, gemm_min_us;
            /* activation quantization, for the record */
            {
                double tq[201], tg[21];
                for (int i = 0; i < 201; i++) {
                    double t0 = tn_time_s();
                    tn_act_quant_i8(x, cols, xq, &xs);
                    tq[i] = tn_time_s() - t0;
                }
                q_med = tn_median(tq, 201);
                /* batched product (prompt processing): 32 tokens, per token */
                float xss[GEMM_TOKENS];
                for (int t = 0; t < GEMM_TOKENS; t++) {
                    memcpy(Xq + (size_t)t * cols, xq, (size_t)cols);
                    xss[t] = xs;
                }
                tn_t2_gemm(t2, NULL, 1.0f, rows, cols, GEMM_TOKENS, Xq, xss, Y);
                for (int i = 0; i < 21; i++) {
                    double t0 = tn_time_s();
                    tn_t2_gemm(t2, NULL, 1.0f, rows, cols, GEMM_TOKENS, Xq, xss, Y);
                    tg[i] = tn_time_s() - t0;
                }
                gemm_min_us = tg[0];
                for (int i = 1; i < 21; i++)
                    if (tg[i] < gemm_min_us) gemm_min_us = tg[i];
                gemm_min_us *= 1e6 / GEMM_TOKENS;
                gemm_us = tn_median(tg, 21) / GEMM_TOKENS * 1e6;
            }
            time_kernel(K_T2, &j, NULL, 0, 1, warm, iters, &t2_med, &t2_min);
            time_kernel(K_T2, &j, pool, t2b, n_copies, n_copies < warm ? n_copies : warm, iters, &st_med, &st_min);
            tn_kernels_set_isa(TN_ISA_SCALAR);
            int sc_iters = iters / 100 > 5 ? iters / 100 : 5;
            time_kernel(K_T2, &j, NULL, 0, 1, 2, sc_iters, &sc_med, &sc_min);
            tn_kernels_reset_isa();
            int bl_iters = iters / 10 > 20 ? iters / 10 : 20;
            time_kernel(K_SGEMV, &j, NULL, 0, 1, 10, bl_iters, &bl_med, &bl_min);
            j.w = l4;
            j.grid = grid16;
            time_kernel(K_L4, &j, NULL, 0, 1, warm, iters / 4 > 20 ? iters / 4 : 20, &l4_med, &l4_min);
            j.w = l8;
            j.grid = grid256;
            time_kernel(K_L8, &j, NULL, 0, 1, warm / 4, iters / 10 > 20 ? iters / 10 : 20, &l8_med, &l8_min);

            double t2_bytes = (double)t2b + (double)cols + 4.0 * rows;
            double bound_us = t2_bytes / bw * 1e6;
            double us = 1e6;
            if (json) {
                cJSON *o = cJSON_CreateObject();
                char shape[64];
                snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)cols);
                cJSON_AddStringToObject(o, "bench", "gemv");
                cJSON_AddStringToObject(o, "shape", shape);
                cJSON_AddNumberToObject(o, "rows", (double)rows);
                cJSON_AddNumberToObject(o, "cols", (double)cols);
                cJSON_AddNumberToObject(o, "threads", threads);
                cJSON_AddStringToObject(o, "kernels", tn_isa_name(isa));
                cJSON_AddNumberToObject(o, "iters", iters);
                tn_json_add_num(o, "t2_us", t2_med * us);
                tn_json_add_num(o, "t2_min_us", t2_min * us);
                tn_json_add_num(o, "t2_stream_us", st_med * us);
                tn_json_add_num(o, "act_quant_us", q_med * us);
                tn_json_add_num(o, "scalar_us", sc_med * us);
                tn_json_add_num(o, "speedup_vs_scalar", sc_med / t2_med);
                tn_json_add_num(o, "sgemv_f32_us", bl_med * us);
                tn_json_add_num(o, "speedup_vs_sgemv", bl_med / t2_med);
                tn_json_add_num(o, "t2_gemm32_us_per_token", gemm_us);
                tn_json_add_num(o, "t2_gemm32_min_us_per_token", gemm_min_us);
                tn_json_add_num(o, "l4_us", l4_med * us);
                tn_json_add_num(o, "l4_min_us", l4_min * us);
                tn_json_add_num(o, "l8_grid", 81);
                tn_json_add_num(o, "l8_us", l8_med * us);
                tn_json_add_num(o, "l8_min_us", l8_min * us);
                tn_json_add_num(o, "scalar_min_us", sc_min * us);
                tn_json_add_num(o, "sgemv_f32_min_us", bl_min * us);
                tn_json_add_num(o, "t2_stream_min_us", st_min * us);
                tn_json_add_num(o, "t2_bytes", t2_bytes);
                tn_json_add_num(o, "read_bw_gbs", bw / 1e9);
                tn_json_add_num(o, "t2_bw_bound_us", bound_us);
                tn_json_add_num(o, "l4_bw_bound_us", ((double)l4b + 4.0 * cols) / bw * us);
                tn_json_add_num(o, "l8_bw_bound_us", ((double)l8b + 4.0 * cols) / bw * us);
                tn_json_add_num(o, "sgemv_bw_bound_us", 4.0 * (double)n / bw * us);
                tn_json_add_num(o, "ref_llamacpp_tq2_0_us", SHAPES[s].tq2_0_us);
                tn_json_print_line(stdout, o);
                cJSON_Delete(o);
            } else {
                printf("\n%lld x %lld (out x in), T2 %.2f MiB\n", (long long)rows, (long long)cols, t2b / 1048576.0);
                printf("  T2 gemv (hot)       %8.1f us  (min %.1f)   llama.cpp TQ2_0 ref %.1f us\n", t2_med * us,
                       t2_min * us, SHAPES[s].tq2_0_us);
                printf("  T2 gemv (streamed)  %8.1f us  (min %.1f)  bandwidth bound %.1f us (%.0f%% of bound)\n",
                       st_med * us, st_min * us, bound_us, 100.0 * bound_us / st_med / us);
                printf("  act quant int8      %8.2f us\n", q_med * us);
                printf("  T2 gemm 32 tokens   %8.1f us per token  (min %.1f)\n", gemm_us, gemm_min_us);
                printf("  scalar reference    %8.1f us  (min %.1f)  x%.1f\n", sc_med * us, sc_min * us, sc_med / t2_med);
                printf("  OpenBLAS sgemv f32  %8.1f us  (min %.1f)  x%.1f  bandwidth bound %.1f us\n", bl_med * us,
                       bl_min * us, bl_med / t2_med, 4.0 * (double)n / bw * us);
                printf("  L4 gemv (hot)       %8.1f us  (min %.1f)  bandwidth bound %.1f us\n", l4_med * us,
                       l4_min * us, ((double)l4b + 4.0 * cols) / bw * us);
                printf("  L8 gemv (hot, 81)   %8.1f us  (min %.1f)  bandwidth bound %.1f us\n", l8_med * us,
                       l8_min * us, ((double)l8b + 4.0 * cols) / bw * us);
            }
        }
        tn_free(wt);
        tn_free(idx);
        tn_free(t2);
        tn_free(l4);
        tn_free(l8);
        tn_free(wf);
        tn_free(x);
        tn_free(xq);
        tn_free(y);
        tn_free(pool);
        tn_free(Xq);
        tn_free(Y);
    }
    return rc == 0 ? TN_EXIT_OK : tn_cli_fail();
}
