/* CUDA backend, T2 and activations (kernels/cuda/cuda_ops.h, kernels/t2_math.h).
 *
 * CPU part (every build): the shared math of kernels/t2_math.h, which the CUDA kernels run, against the
 * CPU library: per-byte decode and column addressing against tn_t2_pack / tn_t2_unpack (all 256 byte
 * values, code 3 refused by both), the 4-byte word decode and dot, the warp-lane row dot product
 * (tn_t2_lane_dot, lanes 1 / 7 / 32, unaligned activation rows) summed and put through the shared epilogue
 * against tn_t2_gemm bit for bit, no read past the row or the activations (guard pages), and the activation formula against tn_act_quant_i8 (scalar and SIMD,
 * ties to even) bit for bit.
 * GPU part (TN_HAVE_CUDA and a device): tn_cuda_t2_gemv / gemm, tn_cuda_act_quant_i8 and a quantize ->
 * gemv chain equal to the CPU bit for bit on odd shapes; tn_cuda_sgemm against tn_op_linear. Without a
 * device the test exits 77 (skipped) after the CPU part passed; a failing CPU part always fails. */
#include "cuda_test.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops_cpu.h"
#include "kernels/packed.h"
#include "kernels/t2_math.h"


#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const int64_t SHAPES[][2] = {{1, 1},   {1, 255},  {3, 256},    {5, 257},   {7, 513},   {4, 7},  {9, 64},
                                    {2, 1000}, {67, 1000}, {1029, 64}, {3, 5000}, {130, 2085}, {13, 768}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
#define N_TOK 3

static void rand_ternary(tn_rng *g, int8_t *w, int64_t n) {
    for (int64_t i = 0; i < n; i++) w[i] = (int8_t)((int)tn_rng_below(g, 3) - 1);
}

static void rand_floats(tn_rng *g, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = tn_rng_normal(g) * (i % 17 == 0 ? 4.0f : 1.0f);
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* ---- CPU: shared math against the CPU library ----------------------------------------------------------- */

static void test_byte_decode(void) {
    uint8_t row[TN_T2_BLOCK_BYTES];
    int8_t w[TN_T2_BLOCK];
    int bad_decode = 0, bad_unpack = 0, bad_addr = 0;
    for (int b = 0; b < 256; b++) {
        int j = b % 64, has3 = 0;
        for (int k = 0; k < 4; k++) has3 |= ((b >> (2 * k)) & 3) == 3;
        int8_t d[4];
        if (tn_t2_decode_byte((uint8_t)b, d) != (has3 ? -1 : 0)) bad_decode++;
        memset(row, 0x55, sizeof row);
        row[j] = (uint8_t)b;
        for (int k = 0; k < 4; k++) {
            int64_t col = 64 * k + j;
            if ((size_t)j != tn_t2_col_byte(col) ||
                ((row[tn_t2_col_byte(col)] >> tn_t2_col_shift(col)) & 3) != tn_t2_code((uint8_t)b, k))
                bad_addr++;
        }
        int rc = tn_t2_unpack(row, 1, TN_T2_BLOCK, w);
        if (has3) {
            if (rc == 0) bad_unpack++;
            continue;
        }
        if (rc != 0) {
            bad_unpack++;
            continue;
        }
        for (int c = 0; c < TN_T2_BLOCK; c++) {
            int want = c % 64 == j ? d[c / 64] : 0;
            if (w[c] != want) bad_unpack++;
        }
    }
    tn_err_clear();
    CHECKF(bad_decode == 0, "%d bytes decoded wrongly", bad_decode);
    CHECKF(bad_unpack == 0, "%d disagreements with tn_t2_unpack", bad_unpack);
    CHECKF(bad_addr == 0, "%d column addressing errors", bad_addr);

    /* Word decode and the 4-way dot against the byte decode. */
    tn_rng g;
    tn_rng_seed(&g, 7);
    int bad_word = 0, bad_dot = 0;
    for (int it = 0; it < 4000; it++) {
        uint32_t v = (uint32_t)tn_rng_u64(&g), x4 = (uint32_t)tn_rng_u64(&g);
        if (it == 0) x4 = 0x81818181u; /* -127 x 4 */
        if (it == 1) x4 = 0x7f7f7f7fu;
        for (int k = 0; k < 4; k++) {
            uint32_t codes = tn_t2_word_codes(v, k);
            int32_t ref = 0;
            for (int i = 0; i < 4; i++) {
                int c = tn_t2_code((uint8_t)(v >> (8 * i)), k);
                if ((int)((codes >> (8 * i)) & 0xffu) != c) bad_word++;
                ref += (c - 1) * (int8_t)(uint8_t)(x4 >> (8 * i));
            }
            if (tn_t2_dot4(codes, x4) != ref) bad_dot++;
        }
    }
    CHECKF(bad_word == 0, "%d word-decode errors", bad_word);
    CHECKF(bad_dot == 0, "%d dot4 errors", bad_dot);
}

static void test_col_addressing(void) {
    tn_rng g;
    tn_rng_seed(&g, 11);
    for (size_t s = 0; s < N_SHAPES; s++) {
        int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        int8_t *w = tn_alloc((size_t)(rows * cols), 1);
        uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
        rand_ternary(&g, w, rows * cols);
        CHECK_OK(tn_t2_pack(w, rows, cols, p));
        size_t rb = tn_t2_row_bytes(cols);
        int64_t bad = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                uint8_t byte = p[(size_t)r * rb + tn_t2_col_byte(c)];
                if (((byte >> tn_t2_col_shift(c)) & 3) != w[r * cols + c] + 1) bad++;
            }
        CHECKF(bad == 0, "%lldx%lld: %lld columns misaddressed", (long long)rows, (long long)cols, (long long)bad);
        tn_free(w);
        tn_free(p);
    }
}

/* The kernel's per-lane arithmetic, run on the CPU lane by lane, against tn_t2_gemm. */
static void test_lane_dot(void) {
    tn_rng g;
    tn_rng_seed(&g, 3);
    static const int lanes[] = {1, 7, 32};
    for (size_t s = 0; s < N_SHAPES; s++) {
        int64_t rows = SHAPES[s][0], cols = SHAPES[s][1];
        int8_t *w = tn_alloc((size_t)(rows * cols), 1);
        uint8_t *p = tn_alloc(tn_t2_packed_size(rows, cols), 1);
        float *X = tn_alloc((size_t)(N_TOK * cols), sizeof(float)), *rs = tn_alloc((size_t)rows, sizeof(float));
        float *Y = tn_alloc((size_t)(N_TOK * rows), sizeof(float)), xs[N_TOK];
        int8_t *qbuf = tn_alloc((size_t)(N_TOK * cols + 1), 1), *Xq = qbuf + 1; /* odd base: unaligned loads */
        rand_ternary(&g, w, rows * cols);
        CHECK_OK(tn_t2_pack(w, rows, cols, p));
        rand_floats(&g, X, N_TOK * cols);
        for (int64_t r = 0; r < rows; r++) rs[r] = 0.5f + tn_rng_uniform(&g);
        tn_act_quant_i8_rows(X, N_TOK, cols, Xq, xs);
        const float ts = 0.7f;
        for (int use_rs = 0; use_rs < 2; use_rs++) {
            const float *rsp = use_rs ? rs : NULL;
            tn_t2_gemm(p, rsp, ts, rows, cols, N_TOK, Xq, xs, Y);
            size_t rb = tn_t2_row_bytes(cols);
            int64_t bad_sum = 0, bad_y = 0;
            for (int64_t t = 0; t < N_TOK; t++)
                for (int64_t r = 0; r < rows; r++) {
                    const int8_t *xq = Xq + t * cols;
                    int32_t ref = 0;
                    for (int64_t c = 0; c < cols; c++) ref += w[r * cols + c] * xq[c];
                    for (size_t li = 0; li < sizeof lanes / sizeof lanes[0]; li++) {
                        int32_t isum = 0;
                        for (int lane = 0; lane < lanes[li]; lane++)
                            isum += tn_t2_lane_dot(p + (size_t)r * rb, cols, xq, lane, lanes[li]);
                        if (isum != ref) bad_sum++;
                        float y = tn_t2_out(isum, xs[t], tn_t2_row_s(ts, rsp, r));
                        if (!same_bits(&y, &Y[t * rows + r], 1)) bad_y++;
                    }
                }
            CHECKF(bad_sum == 0 && bad_y == 0, "%lldx%lld rs=%d: %lld wrong sums, %lld outputs differ from tn_t2_gemm",
                   (long long)rows, (long long)cols, use_rs, (long long)bad_sum, (long long)bad_y);
        }
        tn_free(w);
        tn_free(p);
        tn_free(X);
        tn_free(rs);
        tn_free(Y);
        tn_free(qbuf);
    }
}

/* tn_t2_lane_dot never reads past the packed row or past xq[cols - 1]: both end at a PROT_NONE page. */
static uint8_t *guarded(size_t bytes, void **map, size_t *map_len) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), span = (bytes + pg - 1) / pg * pg;
    *map_len = span + pg;
    uint8_t *m = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    mprotect(m + span, pg, PROT_NONE);
    *map = m;
    return m + span - bytes;
}

static void test_no_overread(void) {
    tn_rng g;
    tn_rng_seed(&g, 13);
    static const int64_t cols_list[] = {1, 2, 3, 5, 63, 255, 257, 1001, 4099};
    for (size_t s = 0; s < sizeof cols_list / sizeof cols_list[0]; s++) {
        int64_t cols = cols_list[s];
        size_t rb = tn_t2_row_bytes(cols), wlen, xlen;
        void *wmap = NULL, *xmap = NULL;
        uint8_t *row = guarded(rb, &wmap, &wlen);
        int8_t *xq = (int8_t *)guarded((size_t)cols, &xmap, &xlen);
        int8_t *w = tn_alloc((size_t)cols, 1);
        if (!row || !xq || !w) {
            CHECK(0);
            continue;
        }
        rand_ternary(&g, w, cols);
        CHECK_OK(tn_t2_pack(w, 1, cols, row));
        for (int64_t c = 0; c < cols; c++) xq[c] = (int8_t)((int)tn_rng_below(&g, 255) - 127);
        int32_t ref = 0, isum = 0;
        for (int64_t c = 0; c < cols; c++) ref += w[c] * xq[c];
        for (int lane = 0; lane < 32; lane++) isum += tn_t2_lane_dot(row, cols, xq, lane, 32);
        CHECKF(isum == ref, "guarded row of %lld columns", (long long)cols);
        munmap(wmap, wlen);
        munmap(xmap, xlen);
        tn_free(w);
    }
}

/* amax, inv and q_i of kernels/t2_math.h against tn_act_quant_i8 (as the kernel computes them). */
static int check_act_one(const float *x, int64_t n) {
    int8_t *q = tn_alloc((size_t)n + 1, 1);
    float scale;
    tn_act_quant_i8(x, n, q, &scale);
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    int bad = 0;
    if (!(amax > 0.0f)) {
        bad += scale != 0.0f;
        for (int64_t i = 0; i < n; i++) bad += q[i] != 0;
    } else {
        float inv = tn_act_inv(amax), sc = tn_act_scale(amax);
        bad += !same_bits(&sc, &scale, 1);
        for (int64_t i = 0; i < n; i++) bad += q[i] != tn_act_q(x[i], inv);
    }
    tn_free(q);
    return bad;
}

static void test_act(void) {
    /* amax = 127 gives inv = 1 exactly: halves round to even, never to -128. */
    const float ties[] = {127.0f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.5f, 126.5f, -127.0f};
    const int8_t want[] = {127, 2, -2, 4, 0, 0, 2, 126, -127};
    int8_t q[9];
    float scale;
    tn_isa best = tn_cpu_best_isa();
    for (int lvl = 0; lvl < 2; lvl++) {
        tn_kernels_set_isa(lvl == 0 ? TN_ISA_SCALAR : best);
        tn_act_quant_i8(ties, 9, q, &scale);
        CHECK(memcmp(q, want, sizeof want) == 0);
        CHECK(scale == tn_act_scale(127.0f) && scale == 1.0f);
        for (int i = 0; i < 9; i++) CHECK(tn_act_q(ties[i], tn_act_inv(127.0f)) == want[i]);
        CHECK(check_act_one(ties, 9) == 0);
        CHECK(tn_act_q(1000.0f, 1.0f) == 127 && tn_act_q(-1000.0f, 1.0f) == -127); /* the clamp */

        tn_rng g;
        tn_rng_seed(&g, 5);
        static const int64_t lens[] = {1, 7, 31, 32, 33, 1000, 4097};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            float *x = tn_alloc((size_t)lens[li], sizeof(float));
            CHECKF(check_act_one(x, lens[li]) == 0, "zeros, n=%lld", (long long)lens[li]);
            rand_floats(&g, x, lens[li]);
            CHECKF(check_act_one(x, lens[li]) == 0, "%s, n=%lld", tn_isa_name(tn_kernels_isa()), (long long)lens[li]);
            for (int64_t i = 0; i < lens[li]; i++) x[i] *= 1e-30f; /* tiny: inv is huge */
            CHECKF(check_act_one(x, lens[li]) == 0, "tiny, n=%lld", (long long)lens[li]);
            tn_free(x);
        }
    }
    tn_kernels_set_isa(best);
}

/* ---- GPU: against the CPU backend --------------------------------------------------------------------- */

#ifdef TN_HAVE_CUDA
static void gpu_t2(void) {
    tn_rng g;
    tn_rng_seed(&g, 21);
    static const int64_t more[][2] = {{256, 2048}, {4097, 96}, {2, 65536 + 13}};
    for (size_t s = 0; s < N_SHAPES + 3; s++) {
        int64_t rows = s < N_SHAPES ? SHAPES[s][0] : more[s - N_SHAPES][0];
        int64_t cols = s < N_SHAPES ? SHAPES[s][1] : more[s - N_SHAPES][1];
        size_t psize = tn_t2_packed_size(rows, cols);
        int8_t *w = tn_alloc((size_t)(rows * cols), 1);
        uint8_t *p = tn_alloc(psize, 1);
        float *X = tn_alloc((size_t)(N_TOK * cols), sizeof(float)), *rs = tn_alloc((size_t)rows, sizeof(float));
        float *Y = tn_alloc((size_t)(N_TOK * rows), sizeof(float)), *Yg = tn_alloc((size_t)(N_TOK * rows), sizeof(float));
        int8_t *Xq = tn_alloc((size_t)(N_TOK * cols) + 1, 1), *Xqg = tn_alloc((size_t)(N_TOK * cols) + 1, 1);
        float xs[N_TOK], xsg[N_TOK];
        rand_ternary(&g, w, rows * cols);
        CHECK_OK(tn_t2_pack(w, rows, cols, p));
        rand_floats(&g, X, N_TOK * cols);
        for (int64_t r = 0; r < rows; r++) rs[r] = 0.5f + tn_rng_uniform(&g);
        tn_act_quant_i8_rows(X, N_TOK, cols, Xq, xs);

        uint8_t *dW = tn_test_dev_copy(p, psize);
        float *drs = tn_test_dev_copy(rs, (size_t)rows * sizeof(float)), *dX = tn_test_dev_copy(X, (size_t)(N_TOK * cols) * sizeof(float));
        float *dxs = tn_cuda_alloc(N_TOK * sizeof(float)), *dY = tn_cuda_alloc((size_t)(N_TOK * rows) * sizeof(float));
        int8_t *dq = tn_cuda_alloc((size_t)(N_TOK * cols) + 1);
        if (!dW || !drs || !dX || !dxs || !dY || !dq) {
            CHECKF(0, "device allocation: %s", tn_errmsg());
            break;
        }
        /* Activations on the GPU, into an odd device address (unaligned rows). */
        CHECK_OK(tn_cuda_act_quant_i8(dX, N_TOK, cols, dq + 1, dxs));
        CHECK_OK(tn_cuda_download(Xqg, dq + 1, (size_t)(N_TOK * cols)));
        CHECK_OK(tn_cuda_download(xsg, dxs, sizeof xsg));
        CHECKF(memcmp(Xq, Xqg, (size_t)(N_TOK * cols)) == 0 && same_bits(xs, xsg, N_TOK), "act quant %lldx%lld",
               (long long)N_TOK, (long long)cols);

        for (int use_rs = 0; use_rs < 2; use_rs++) {
            const float *rsp = use_rs ? rs : NULL;
            const float *drsp = use_rs ? drs : NULL;
            /* gemm on the GPU-quantized activations (equal to the CPU ones, checked above) */
            tn_t2_gemm(p, rsp, 0.7f, rows, cols, N_TOK, Xq, xs, Y);
            CHECK_OK(tn_cuda_t2_gemm(dW, drsp, 0.7f, rows, cols, N_TOK, dq + 1, dxs, dY));
            CHECK_OK(tn_cuda_download(Yg, dY, (size_t)(N_TOK * rows) * sizeof(float)));
            CHECKF(same_bits(Y, Yg, (size_t)(N_TOK * rows)), "t2 gemm %lldx%lld x %d tokens, rs=%d", (long long)rows,
                   (long long)cols, N_TOK, use_rs);
            /* gemv, token 1 (unaligned when cols is odd) */
            tn_t2_gemv(p, rsp, 0.7f, rows, cols, Xq + cols, xs[1], Y);
            CHECK_OK(tn_cuda_t2_gemv(dW, drsp, 0.7f, rows, cols, dq + 1 + cols, dxs + 1, dY));
            CHECK_OK(tn_cuda_download(Yg, dY, (size_t)rows * sizeof(float)));
            CHECKF(same_bits(Y, Yg, (size_t)rows), "t2 gemv %lldx%lld, rs=%d", (long long)rows, (long long)cols, use_rs);
        }
        tn_cuda_free(dW);
        tn_cuda_free(drs);
        tn_cuda_free(dX);
        tn_cuda_free(dxs);
        tn_cuda_free(dY);
        tn_cuda_free(dq);
        tn_free(w);
        tn_free(p);
        tn_free(X);
        tn_free(rs);
        tn_free(Y);
        tn_free(Yg);
        tn_free(Xq);
        tn_free(Xqg);
    }
    /* A zero activation row: scale 0, q 0 on both. */
    float z[300] = {0};
    int8_t qz[300];
    float sz = 1.0f;
    float *dz = tn_test_dev_copy(z, sizeof z), *ds = tn_cuda_alloc(sizeof(float));
    int8_t *dqz = tn_cuda_alloc(sizeof qz);
    if (dz && ds && dqz) {
        memset(qz, 1, sizeof qz);
        CHECK_OK(tn_cuda_act_quant_i8(dz, 1, 300, dqz, ds));
        CHECK_OK(tn_cuda_download(qz, dqz, sizeof qz));
        CHECK_OK(tn_cuda_download(&sz, ds, sizeof sz));
        int nz = 0;
        for (int i = 0; i < 300; i++) nz += qz[i] != 0;
        CHECK(nz == 0 && sz == 0.0f);
    }
    tn_cuda_free(dz);
    tn_cuda_free(ds);
    tn_cuda_free(dqz);
}

static void gpu_sgemm(void) {
    tn_rng g;
    tn_rng_seed(&g, 9);
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 67, 33}, {64, 256, 128}, {5, 1000, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = tn_alloc((size_t)(N * in), sizeof(float)), *W = tn_alloc((size_t)(out * in), sizeof(float));
        float *y = tn_alloc((size_t)(N * out), sizeof(float)), *yg = tn_alloc((size_t)(N * out), sizeof(float));
        rand_floats(&g, x, N * in);
        rand_floats(&g, W, out * in);
        rand_floats(&g, y, N * out);
        float *dx = tn_test_dev_copy(x, (size_t)(N * in) * sizeof(float)), *dW = tn_test_dev_copy(W, (size_t)(out * in) * sizeof(float));
        float *dy = tn_test_dev_copy(y, (size_t)(N * out) * sizeof(float));
        if (dx && dW && dy) {
            for (int b = 0; b < 2; b++) {
                float beta = b ? 0.5f : 0.0f;
                tn_op_linear(y, x, W, N, in, out, beta);
                CHECK_OK(tn_cuda_sgemm(dy, dx, dW, N, in, out, beta));
                CHECK_OK(tn_cuda_download(yg, dy, (size_t)(N * out) * sizeof(float)));
                double e = tn_test_rel_err(yg, y, (size_t)(N * out));
                CHECKF(e < 1e-5, "sgemm %lldx%lldx%lld beta=%g: rel err %g", (long long)N, (long long)in,
                       (long long)out, beta, e);
            }
        }
        tn_cuda_free(dx);
        tn_cuda_free(dW);
        tn_cuda_free(dy);
        tn_free(x);
        tn_free(W);
        tn_free(y);
        tn_free(yg);
    }
}
#endif

int main(void) {
    test_byte_decode();
    test_col_addressing();
    test_lane_dot();
    test_no_overread();
    test_act();
    if (tn_test_failed) return tn_test_finish(); /* a CPU failure is never hidden behind a skip */
#ifdef TN_HAVE_CUDA
    const char *why = NULL;
    if (!tn_cuda_available(&why))
        TN_SKIP("%s (GPU comparisons not run; the %d CPU checks of kernels/t2_math.h passed)", why, tn_test_passed);
    printf("CUDA device: %s\n", why);
    gpu_t2();
    gpu_sgemm();
    tn_cuda_shutdown();
#else
    printf("built without TN_CUDA: kernels/t2_math.h checked on the CPU only\n");
#endif
    return tn_test_finish();
}
