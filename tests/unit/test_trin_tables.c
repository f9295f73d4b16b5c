/* Quantized LM heads and embedding tables (TRIN version 3, dtypes Q8 and Q4): the quantizers' values,
 * `trinity export --head / --embed` to TRIN and GGUF (dtypes, versions, the tied-embedding rule), the reader
 * refusing what is inconsistent (a Q8 or Q4 tensor in a version-2 file, an unknown dtype, Q8 without
 * per-row scales, a wrong size, a non-finite Q4 block scale), and the engine running them: exact mode
 * equal to a dense model holding the dequantized tables, fast mode (int16 activations) within 1e-3 of
 * exact, decode equal to prefill, and the CUDA engine refusing them with one message. */
#include "tn_test.h"
#include "trin_image.h"

#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/gguf.h"
#include "core/rng.h"
#include "export/export_gguf.h"
#include "export/export_trin.h"
#include "export/table_quant.h"
#include "export/trin.h"
#include "kernels/packed.h"
#include "runner/infer.h"
#include "tiny_ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_trin_tablesXXXXXX";
static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static tn_llama_config test_config(int tied) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 96; /* rows of 96: Q4's blocks of 32, Q8's padding to 128 */
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 160;
    c.vocab_size = 300; /* the bytes tokenizer's 259 ids fit */
    c.max_seq_len = 64;
    c.tied_embeddings = tied;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

/* Quantizers: Q8 per-row absmax within half a step of every value, Q4 ggml's rule (the extreme to code 0 =
 * −8·d, so values of the other sign clip at +7·d: within one step), and Q8_0 blocks. */
static void test_quantizers(void) {
    tn_rng g;
    tn_rng_seed(&g, 1);
    const int64_t rows = 5, cols = 77;
    float w[5 * 77], back[77];
    for (int i = 0; i < rows * cols; i++) w[i] = tn_rng_normal(&g);
    for (int i = 0; i < cols; i++) w[2 * cols + i] = 0; /* a zero row */
    uint8_t q8[5 * 128], q4[5 * 3 * 18];
    float s[5];
    CHECK(tn_q8_packed_size(rows, cols) == sizeof q8 && tn_q4_packed_size(rows, cols) == sizeof q4);
    CHECK_OK(tn_q8_quantize(w, rows, cols, q8, s));
    CHECK_OK(tn_q4_quantize(w, rows, cols, q4));
    int ok8 = 1, ok4 = 1;
    for (int64_t r = 0; r < rows; r++) {
        const int8_t *q = (const int8_t *)(q8 + r * 128);
        float amax = 0;
        for (int64_t c = 0; c < cols; c++) amax = fabsf(w[r * cols + c]) > amax ? fabsf(w[r * cols + c]) : amax;
        for (int64_t c = 0; c < cols; c++) ok8 &= fabsf(s[r] * q[c] - w[r * cols + c]) <= 0.5001f * s[r];
        for (int64_t c = cols; c < 128; c++) ok8 &= q[c] == 0;
        tn_q4_row_to_f32(q4, r, cols, back);
        for (int64_t c0 = 0; c0 < cols; c0 += 32) {
            float bmax = 0;
            for (int64_t c = c0; c < c0 + 32 && c < cols; c++) bmax = fabsf(w[r * cols + c]) > bmax ? fabsf(w[r * cols + c]) : bmax;
            const float step = bmax / 8;
            for (int64_t c = c0; c < c0 + 32 && c < cols; c++) ok4 &= fabsf(back[c] - w[r * cols + c]) <= 1.01f * step; /* +7 of -8: a step at the far side */
        }
    }
    CHECK(ok8);
    CHECK(ok4);
    CHECK(s[2] == 0.0f && q8[2 * 128] == 0);
    /* the last block's padding (columns 77..95) has code 8 */
    const uint8_t *last = q4 + 2 * 18; /* row 0, block 2: columns 64..76 real */
    CHECK((last[2 + 15] & 15) == 8 && (last[2 + 15] >> 4) == 8);
    uint8_t b8[34];
    float row[32];
    for (int i = 0; i < 32; i++) row[i] = (float)(i - 16) / 8.0f;
    CHECK_OK(tn_q8_0_quantize_row(row, 32, b8));
    CHECK((int8_t)b8[2] == -127 && (int8_t)b8[2 + 16] == 0);
    float huge[32] = {1e9f};
    CHECK(tn_q8_0_quantize_row(huge, 32, b8) != 0);
    w[7] = NAN; /* refused, not converted to an integer */
    CHECK(tn_q8_quantize(w, rows, cols, q8, s) != 0 && tn_q4_quantize(w, rows, cols, q4) != 0);
}

/* Open a patched copy of img; expect failure with `want` in the message. */
static void expect_refused(const uint8_t *img, size_t size, void (*patch)(uint8_t *, size_t), const char *want,
                           const char *what) {
    uint8_t *c = malloc(size);
    memcpy(c, img, size);
    patch(c, size);
    tn_trin *t = NULL;
    const int rc = tn_trin_open_memory(c, size, &t);
    CHECKF(rc != 0 && strstr(tn_errmsg(), want) != NULL, "%s: rc %d, message '%s'", what, rc, rc ? tn_errmsg() : "");
    if (rc == 0) tn_trin_close(t);
    free(c);
}

static size_t g_head_entry, g_embed_entry; /* set by test_export_trin for the patches */

static void patch_version2(uint8_t *img, size_t size) {
    (void)size;
    img[4] = 2;
    tn_test_trin_fix_header_crc(img);
}
static void patch_unknown_dtype(uint8_t *img, size_t size) {
    (void)size;
    img[g_head_entry + 2 + strlen("lm_head.weight")] = 7;
    tn_test_trin_fix_header_crc(img);
}
static void patch_q8_no_scales(uint8_t *img, size_t size) {
    (void)size;
    img[g_head_entry + 2 + strlen("lm_head.weight") + 2] = TN_TRIN_SCALE_NONE;
    tn_test_trin_fix_header_crc(img);
}
/* the size field: after name, 8 bytes of dtype..reserved, 2 shapes, the offset */
static void patch_size(uint8_t *img, size_t size) {
    (void)size;
    uint8_t *f = img + g_embed_entry + 2 + strlen("model.embed_tokens.weight") + 8 + 16 + 8;
    const uint64_t v = tn_test_rd64(f) - 18;
    memcpy(f, &v, 8);
    tn_test_trin_fix_header_crc(img);
}
/* a Q4 block scale of +inf (fp16 0x7C00), the tensor's CRC recomputed: only the value check catches it */
static void patch_q4_inf(uint8_t *img, size_t size) {
    (void)size;
    uint8_t *e = img + g_embed_entry + 2 + strlen("model.embed_tokens.weight") + 8 + 16;
    const uint64_t off = tn_test_rd64(e), n = tn_test_rd64(e + 8);
    img[off + 18 * 5] = 0x00;
    img[off + 18 * 5 + 1] = 0x7C;
    const uint32_t c = tn_crc32(0, img + off, (size_t)n);
    memcpy(e + 16, &c, 4);
    tn_test_trin_fix_header_crc(img);
}

static void run_logits(const char *path, tn_infer_mode mode, const int32_t *tok, int n, float *out) {
    tn_infer_opts o;
    tn_infer_opts_default(&o);
    o.mode = mode;
    tn_infer *m = NULL;
    CHECK_OK(tn_infer_open(path, &o, &m));
    if (!m) return;
    CHECK_OK(tn_infer_forward(m, tok, n, out, 1));
    tn_infer_free(m);
}

/* Export, read back, refuse patched copies, run. */
static void test_export_trin(void) {
    tn_llama_config cfg = test_config(0);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 5));
    const char *h5 = tmp("untied.h5");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_export_opts o;
    tn_export_opts_default(&o);
    tn_export_report rep;
    o.head = TN_TABLE_Q8;
    o.embed = TN_TABLE_Q4;
    const char *qt = tmp("tables.trin"), *ft = tmp("dense.trin");
    CHECK_OK(tn_export_trin(h5, qt, &o, &rep));
    CHECK(rep.n_by_dtype[TN_TRIN_Q8] == 1 && rep.n_by_dtype[TN_TRIN_Q4] == 1);
    tn_export_opts_default(&o);
    CHECK_OK(tn_export_trin(h5, ft, &o, &rep));

    tn_trin *t = NULL;
    CHECK_OK(tn_trin_open(qt, &t));
    if (t) {
        const tn_trin_tensor *th = tn_trin_find(t, "lm_head.weight"), *te = tn_trin_find(t, "model.embed_tokens.weight");
        CHECK(t->version == 3 && th->dtype == TN_TRIN_Q8 && th->scale_layout == TN_TRIN_SCALE_ROW && th->n_scales == 300);
        CHECK(te->dtype == TN_TRIN_Q4 && te->scale_layout == TN_TRIN_SCALE_NONE && te->size == 300 * 3 * 18);
        CHECK(strcmp(tn_trin_dtype_name(TN_TRIN_Q8), "Q8") == 0 && strcmp(tn_trin_dtype_name(TN_TRIN_Q4), "Q4") == 0);
        tn_trin_close(t);
    }
    CHECK_OK(tn_trin_open(ft, &t));
    if (t) {
        CHECK(t->version == 2); /* nothing of version 3 in it: version-2 readers keep reading it */
        tn_trin_close(t);
    }

    /* bad files, each refused with its reason */
    char *img;
    size_t size;
    CHECK_OK(tn_read_file(qt, &img, &size));
    const uint8_t *u = (const uint8_t *)img;
    g_head_entry = tn_test_trin_entry(u, (size_t)tn_test_rd64(u + 8), "lm_head.weight");
    g_embed_entry = tn_test_trin_entry(u, (size_t)tn_test_rd64(u + 8), "model.embed_tokens.weight");
    CHECK(g_head_entry && g_embed_entry);
    expect_refused(u, size, patch_version2, "needs TRIN version 3", "Q8 in a version-2 file");
    expect_refused(u, size, patch_unknown_dtype, "unknown dtype 7", "unknown dtype");
    expect_refused(u, size, patch_q8_no_scales, "Q8 tensors need per-row scales", "Q8 without scales");
    expect_refused(u, size, patch_size, "its dtype and shape need", "inconsistent size");
    expect_refused(u, size, patch_q4_inf, "non-finite block scale", "Q4 inf scale");
    free(img);

    /* the engine: exact mode = the dense model with the dequantized tables; fast within 1e-3 of exact */
    const int n = 9;
    const int32_t tok[9] = {1, 72, 101, 108, 108, 111, 44, 32, 299};
    const int64_t V = cfg.vocab_size;
    float *lq = tn_alloc((size_t)(n * V), sizeof *lq), *lf = tn_alloc((size_t)(n * V), sizeof *lf),
          *ld = tn_alloc((size_t)(n * V), sizeof *ld);
    run_logits(qt, TN_INFER_EXACT, tok, n, lq);
    run_logits(qt, TN_INFER_FAST, tok, n, lf);
    /* the dense model with the tables replaced by their dequantized values */
    tn_trin *tq = NULL;
    CHECK_OK(tn_trin_open(qt, &tq));
    const tn_trin_tensor *th = tq ? tn_trin_find(tq, "lm_head.weight") : NULL, *te = tq ? tn_trin_find(tq, "model.embed_tokens.weight") : NULL;
    if (th && te) {
        for (int64_t r = 0; r < V; r++) {
            float *hrow = ck.params + tn_llama_layout_find(&ck.layout, "lm_head.weight")->offset + r * cfg.dim;
            float *erow = ck.params + tn_llama_layout_find(&ck.layout, "model.embed_tokens.weight")->offset + r * cfg.dim;
            const int8_t *q = (const int8_t *)(th->data + r * tn_q8_row_bytes(cfg.dim));
            for (int c = 0; c < cfg.dim; c++) hrow[c] = th->scales[r] * (float)q[c];
            tn_q4_row_to_f32(te->data, r, cfg.dim, erow);
        }
        const char *h5d = tmp("dequant.h5"), *td = tmp("dequant.trin");
        CHECK_OK(tn_ckpt_save(h5d, &ck, NULL, 0));
        CHECK_OK(tn_export_trin(h5d, td, &o, &rep));
        run_logits(td, TN_INFER_EXACT, tok, n, ld);
        CHECKF(tn_test_rel_err(lq, ld, (size_t)(n * V)) < 1e-5, "exact Q8/Q4 vs dequantized dense: %g",
               tn_test_rel_err(lq, ld, (size_t)(n * V)));
    }
    tn_trin_close(tq);
    CHECKF(tn_test_rel_err(lf, lq, (size_t)(n * V)) < 1e-3, "fast vs exact: %g", tn_test_rel_err(lf, lq, (size_t)(n * V)));

    /* decode step by step == prefill (fast) */
    tn_infer *m = NULL;
    tn_infer_opts io;
    tn_infer_opts_default(&io);
    CHECK_OK(tn_infer_open(qt, &io, &m));
    double md = 0;
    for (int i = 0; m && i < n; i++) {
        const float *l = tn_infer_step(m, tok[i]);
        for (int64_t v = 0; l && v < V; v++) md = fmax(md, fabs((double)l[v] - lf[i * V + v]));
    }
    CHECKF(md < 1e-4, "decode vs prefill: %g", md);
    CHECK(m && strstr(tn_infer_describe(m), "embed Q4, head Q8") != NULL);
    tn_infer_free(m);

    /* the CUDA engine has no Q8 / Q4 kernels: one clear refusal (or no CUDA in this build at all) */
    io.device = "cuda";
    const int rc = tn_infer_open(qt, &io, &m);
    CHECK(rc != 0 && m == NULL);
    CHECKF(strstr(tn_errmsg(), "no Q") != NULL || strstr(tn_errmsg(), "CUDA") != NULL || strstr(tn_errmsg(), "cuda") != NULL,
           "cuda refusal: %s", tn_errmsg());
    if (strstr(tn_errmsg(), "no Q")) printf("cuda: %s\n", tn_errmsg());
    tn_free(lq);
    tn_free(lf);
    tn_free(ld);
    tn_ckpt_free(&ck);
}

/* Tied embeddings: --head sets the one table, --embed is refused; GGUF gets Q8_0 / Q4_0. */
static void test_tied_and_gguf(void) {
    tn_llama_config cfg = test_config(1);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 6));
    const char *h5 = tmp("tied.h5");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_export_opts o;
    tn_export_opts_default(&o);
    tn_export_report rep;
    o.head = TN_TABLE_Q4;
    CHECK_OK(tn_export_trin(h5, tmp("tied.trin"), &o, &rep));
    CHECK(rep.n_by_dtype[TN_TRIN_Q4] == 1);
    o.embed = TN_TABLE_Q8;
    CHECK(tn_export_trin(h5, tmp("tied2.trin"), &o, &rep) != 0 && strstr(tn_errmsg(), "ties its embeddings") != NULL);
    CHECK(access(tmp("tied2.trin"), F_OK) != 0);

    tn_export_gguf_opts go;
    tn_export_gguf_opts_default(&go);
    tn_export_gguf_report gr;
    go.head = TN_TABLE_Q8;
    CHECK_OK(tn_export_gguf(h5, tmp("tied.gguf"), &go, &gr));
    tn_gguf g;
    CHECK_OK(tn_gguf_open(tmp("tied.gguf"), &g));
    const tn_gguf_tensor *e = tn_gguf_find_tensor(&g, "token_embd.weight");
    CHECK(e && e->type == TN_GGML_Q8_0 && tn_gguf_find_tensor(&g, "output.weight") == NULL);
    tn_gguf_close(&g);
    tn_ckpt_free(&ck);

    cfg = test_config(0);
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, 7));
    h5 = tmp("untied2.h5");
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    go.head = TN_TABLE_Q4;
    go.embed = TN_TABLE_F32;
    CHECK_OK(tn_export_gguf(h5, tmp("untied.gguf"), &go, &gr));
    CHECK_OK(tn_gguf_open(tmp("untied.gguf"), &g));
    const tn_gguf_tensor *h = tn_gguf_find_tensor(&g, "output.weight");
    e = tn_gguf_find_tensor(&g, "token_embd.weight");
    CHECK(h && h->type == TN_GGML_Q4_0 && e && e->type == TN_GGML_F32);
    /* Q4_0 rows are TRIN's Q4 rows */
    uint8_t *q4 = tn_alloc(tn_q4_packed_size(cfg.vocab_size, cfg.dim), 1);
    CHECK_OK(tn_q4_quantize(ck.params + tn_llama_layout_find(&ck.layout, "lm_head.weight")->offset,
                            cfg.vocab_size, cfg.dim, q4));
    CHECK(h && h->n_bytes == tn_q4_packed_size(cfg.vocab_size, cfg.dim) && memcmp(h->data, q4, h->n_bytes) == 0);
    tn_free(q4);
    tn_gguf_close(&g);
    tn_ckpt_free(&ck);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_quantizers();
    test_export_trin();
    test_tied_and_gguf();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
