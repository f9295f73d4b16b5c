/* Exact head rows (TRIN version 4, `trinity export --head q8|q4 --exact-head`; runner/rescore.h):
 *   - tn_top_indices against a full sort (ties in index order, NaNs last, k beyond n);
 *   - the export: version 4, the F16 rows of the dense head, refused without a quantized head;
 *   - the engine: every logit the quantized scan did not pick is the Q8-head model's, bit for bit; the picked
 *     ones are the F16-head model's (1e-6 of the row's scale), so the argmax is the F16 head's everywhere;
 *     --rescore 0 is the Q8-head model exactly; decode = prefill; a tied model embeds from the exact rows;
 *     the bytes per token count the re-scored rows; out-of-range counts are refused;
 *   - a LoRA base read from such a file takes the exact rows as its frozen head (and tied embeddings);
 *   - the reader: the rows in a version-3 file, with act_bits unlike the head's, under an unknown name; the
 *     writer (the same checks): beside an F32 head, as F32 rows.
 * The CUDA engine's use of the rows: tests/unit/test_cuda_rescore.c. */
#include "tn_test.h"
#include "trin_image.h"

#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "export/export_trin.h"
#include "export/trin.h"
#include "runner/infer.h"
#include "runner/f16.h"
#include "runner/rescore.h"
#include "tiny_ckpt.h"
#include "train/lora_base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_rescoreXXXXXX";
static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* ---- selection ---- */

static const float *g_x;
static int by_rank(const void *a, const void *b) { /* larger first, NaN last, then the lower index */
    const int i = *(const int32_t *)a, j = *(const int32_t *)b;
    const float x = g_x[i], y = g_x[j];
    if (isnan(x) != isnan(y)) return isnan(x) ? 1 : -1;
    if (!isnan(x) && x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

static void test_top_indices(void) {
    tn_rng g;
    tn_rng_seed(&g, 3);
    static const int64_t ns[] = {1, 2, 7, 33, 1000, 49152};
    static const int ks[] = {1, 2, 5, 32, 40, 1100};
    int bad = 0, cases = 0;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (int levels = 0; levels < 3; levels++) {
            const int64_t n = ns[a];
            float *x = malloc((size_t)n * sizeof *x);
            int32_t *ref = malloc((size_t)n * sizeof *ref), got[1100];
            for (int64_t i = 0; i < n; i++) {
                const float u = tn_rng_normal(&g);
                /* levels 1: few distinct values (many ties); 2: a few NaNs among them */
                x[i] = levels == 0 ? u : floorf(u * 2.0f);
                if (levels == 2 && i % 97 == 5) x[i] = NAN;
                ref[i] = (int32_t)i;
            }
            g_x = x;
            qsort(ref, (size_t)n, sizeof *ref, by_rank);
            for (size_t b = 0; b < sizeof ks / sizeof *ks; b++) {
                const int k = ks[b], want = k < n ? k : (int)n;
                const int m = tn_top_indices(x, n, k, got);
                cases++;
                if (m != want || memcmp(got, ref, (size_t)want * sizeof *got) != 0) {
                    if (bad++ < 5) printf("  top %d of %lld (levels %d): count %d, first %d vs %d\n", k, (long long)n,
                                          levels, m, got[0], ref[0]);
                }
            }
            free(x);
            free(ref);
        }
    CHECKF(bad == 0, "%d of %d selections differ from the sort", bad, cases);
    float one = 1.0f;
    int32_t i0 = -1;
    CHECK(tn_top_indices(&one, 1, 0, &i0) == 0 && i0 == -1);
    CHECK(tn_top_indices(&one, 0, 4, &i0) == 0);
}

/* ---- export, engine, reader ---- */

static tn_llama_config test_config(int tied) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 96;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 160;
    c.vocab_size = 300;
    c.max_seq_len = 64;
    c.tied_embeddings = tied;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

enum { NTOK = 9 };
static const int32_t TOK[NTOK] = {1, 72, 101, 108, 108, 111, 44, 32, 299};

static tn_infer *open_model(const char *path, tn_infer_mode mode, int rescore) {
    tn_infer_opts o;
    tn_infer_opts_default(&o);
    o.mode = mode;
    if (rescore >= 0) o.rescore = rescore;
    tn_infer *m = NULL;
    if (tn_infer_open(path, &o, &m) != 0) return NULL;
    return m;
}

static void logits_of(const char *path, tn_infer_mode mode, int rescore, float *out) {
    tn_infer *m = open_model(path, mode, rescore);
    CHECKF(m != NULL, "open %s: %s", path, tn_errmsg());
    if (!m) return;
    CHECK_OK(tn_infer_forward(m, TOK, NTOK, out, 1));
    tn_infer_free(m);
}

static int argmax(const float *x, int64_t n) {
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int)i;
    return b;
}

/* lx (re-scored) against lq (the Q8-head model: the scan) and lf (the F16-head model): at each position the
 * scan's best k are lf's, the rest lq's bit for bit, and the argmax is lf's. q_exact: lq is the scan
 * itself (untied: same embeddings); a tied lq embeds from Q8 rows, so only the candidates are compared. */
static void compare(const char *what, const float *lx, const float *lq, const float *lf, int64_t V, int k,
                    const float *scan, int check_rest) {
    int32_t cand[TN_RESCORE_MAX];
    double worst = 0;
    int rest_bad = 0, arg_bad = 0;
    for (int t = 0; t < NTOK; t++) {
        const float *x = lx + t * V, *q = lq + t * V, *f = lf + t * V;
        const int m = tn_top_indices(scan + t * V, V, k, cand);
        char picked[TN_RESCORE_MAX + 300] = {0};
        double scale = 0;
        for (int64_t v = 0; v < V; v++) scale = fmax(scale, fabs(f[v]));
        for (int j = 0; j < m; j++) {
            picked[cand[j]] = 1;
            worst = fmax(worst, fabs((double)x[cand[j]] - f[cand[j]]) / scale);
        }
        for (int64_t v = 0; check_rest && v < V; v++)
            if (!picked[v] && memcmp(&x[v], &q[v], sizeof *x) != 0) rest_bad++;
        if (argmax(x, V) != argmax(f, V)) arg_bad++;
    }
    CHECKF(worst < 1e-6, "%s: re-scored logits vs the F16 head's: %g of the row's scale", what, worst);
    CHECKF(rest_bad == 0, "%s: %d logits the scan did not pick differ from the Q8 head's", what, rest_bad);
    CHECKF(arg_bad == 0, "%s: argmax differs from the F16 head's at %d of %d positions", what, arg_bad, NTOK);
    printf("%s: candidates within %.2g of the F16 head's, argmax equal at %d positions\n", what, worst, NTOK);
}

static void export_as(const char *h5, const char *out, tn_table_type head, int exact, int tied) {
    tn_export_opts o;
    tn_export_opts_default(&o);
    tn_export_report rep;
    o.head = head;
    o.exact_head = exact;
    CHECKF(tn_export_trin(h5, out, &o, &rep) == 0, "export %s: %s", out, tn_errmsg());
    /* embeddings, 2 layers of 9, the final norm, an untied head, the exact rows */
    if (exact) CHECK(rep.n_tensors == 1 + 18 + 1 + !tied + 1 && rep.n_by_dtype[TN_TRIN_F16] == 1);
}

static void test_engine(int tied) {
    const char *kind = tied ? "tied" : "untied";
    tn_llama_config cfg = test_config(tied);
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &cfg, tied ? 11 : 12));
    char h5[64], fx[64], fq[64], ff[64], f4[64];
    snprintf(h5, sizeof h5, "%s.h5", kind);
    snprintf(fx, sizeof fx, "%s-q8x.trin", kind);
    snprintf(fq, sizeof fq, "%s-q8.trin", kind);
    snprintf(ff, sizeof ff, "%s-f16.trin", kind);
    snprintf(f4, sizeof f4, "%s-q4x.trin", kind);
    const char *ph5 = tmp(h5);
    CHECK_OK(tn_ckpt_save(ph5, &ck, NULL, 0));
    char px[512], pq[512], pf[512], p4[512];
    snprintf(px, sizeof px, "%s", tmp(fx));
    snprintf(pq, sizeof pq, "%s", tmp(fq));
    snprintf(pf, sizeof pf, "%s", tmp(ff));
    snprintf(p4, sizeof p4, "%s", tmp(f4));
    export_as(ph5, px, TN_TABLE_Q8, 1, tied);
    export_as(ph5, pq, TN_TABLE_Q8, 0, tied);
    export_as(ph5, pf, TN_TABLE_F16, 0, tied);
    export_as(ph5, p4, TN_TABLE_Q4, 1, tied);

    /* the file: version 4, the head's F16 rows */
    tn_trin *t = NULL;
    CHECK_OK(tn_trin_open(px, &t));
    if (t) {
        const tn_trin_tensor *x = tn_trin_find(t, TN_TRIN_EXACT_HEAD), *f = NULL;
        tn_trin *tf = NULL;
        CHECK_OK(tn_trin_open(pf, &tf));
        if (tf) f = tn_trin_find(tf, tied ? "model.embed_tokens.weight" : "lm_head.weight");
        CHECK(t->version == 4 && x && x->dtype == TN_TRIN_F16 && x->shape[0] == 300 && x->shape[1] == 96);
        CHECK(x && f && f->dtype == TN_TRIN_F16 && x->size == f->size && memcmp(x->data, f->data, x->size) == 0);
        tn_trin_close(tf);
        tn_trin_close(t);
    }

    const int64_t V = cfg.vocab_size, NV = NTOK * V;
    float *lx = tn_alloc((size_t)NV, sizeof *lx), *lq = tn_alloc((size_t)NV, sizeof *lq),
          *lf = tn_alloc((size_t)NV, sizeof *lf), *l0 = tn_alloc((size_t)NV, sizeof *l0),
          *scan = tn_alloc((size_t)NV, sizeof *scan);
    for (int mode = 0; mode < 2; mode++) {
        const tn_infer_mode im = mode ? TN_INFER_EXACT : TN_INFER_FAST;
        logits_of(px, im, -1, lx);
        logits_of(px, im, 0, l0);
        logits_of(pq, im, -1, lq);
        logits_of(pf, im, -1, lf);
        char what[64];
        snprintf(what, sizeof what, "%s Q8 + exact rows, %s", kind, mode ? "exact mode" : "fast mode");
        /* the scan is the file's own Q8 head with rescore 0 (tied: it embeds from the exact rows too) */
        compare(what, lx, l0, lf, V, TN_RESCORE_DEFAULT, l0, 1);
        if (!tied) { /* untied: rescore 0 is the Q8-head model, bit for bit */
            CHECK(memcmp(l0, lq, (size_t)NV * sizeof *l0) == 0);
        }
        logits_of(p4, im, 300, scan); /* every row re-scored: the F16 head everywhere */
        snprintf(what, sizeof what, "%s Q4 + exact rows, all 300 re-scored, %s", kind, mode ? "exact" : "fast");
        compare(what, scan, lq, lf, V, 300, lf, 0);
    }

    /* decode one token at a time = prefill; the description; the bytes per token */
    tn_infer *m = open_model(px, TN_INFER_FAST, -1), *mq = open_model(pq, TN_INFER_FAST, -1);
    logits_of(px, TN_INFER_FAST, -1, lx);
    double md = 0;
    for (int i = 0; m && i < NTOK; i++) {
        const float *l = tn_infer_step(m, TOK[i]);
        for (int64_t v = 0; l && v < V; v++) md = fmax(md, fabs((double)l[v] - lx[i * V + v]));
    }
    CHECKF(md < 1e-4, "%s: decode vs prefill: %g", kind, md);
    CHECKF(m && strstr(tn_infer_describe(m), "head Q8") && strstr(tn_infer_describe(m), "best 32 re-scored from F16"),
           "description: %s", m ? tn_infer_describe(m) : "");
    if (m && mq)
        CHECKF(tn_infer_weight_bytes(m) == tn_infer_weight_bytes(mq) + 32 * 96 * 2, "bytes per token %lld vs %lld",
               (long long)tn_infer_weight_bytes(m), (long long)tn_infer_weight_bytes(mq));
    tn_infer_free(m);
    tn_infer_free(mq);
    CHECK(open_model(px, TN_INFER_FAST, TN_RESCORE_MAX + 1) == NULL && strstr(tn_errmsg(), "0..1024"));

    tn_free(lx);
    tn_free(lq);
    tn_free(lf);
    tn_free(l0);
    tn_free(scan);

    /* a LoRA base (ternary body) from a file with exact rows: the frozen head is those rows */
    {
        tn_export_opts o;
        tn_export_opts_default(&o);
        tn_export_report rep;
        o.quantize = "ternary";
        o.head = TN_TABLE_Q8;
        o.exact_head = 1;
        const char *pt = tmp(tied ? "lora-tied.trin" : "lora-untied.trin");
        CHECK_OK(tn_export_trin(ph5, pt, &o, &rep));
        tn_qbase b;
        memset(&b, 0, sizeof b);
        tn_trin *t = NULL;
        CHECK_OK(tn_trin_open(pt, &t));
        if (tn_qbase_load(&b, pt) == 0 && t) {
            const tn_trin_tensor *x = tn_trin_find(t, TN_TRIN_EXACT_HEAD);
            const tn_tensor_info *hi = tn_llama_layout_find(&b.layout, tied ? "model.embed_tokens.weight" : "lm_head.weight");
            const int64_t n = cfg.vocab_size * cfg.dim;
            float *want = tn_alloc((size_t)n, sizeof *want);
            tn_f16_to_f32_row((const uint16_t *)(const void *)x->data, n, want);
            CHECK(hi && memcmp(b.floats + hi->offset, want, (size_t)n * sizeof *want) == 0);
            tn_free(want);
        } else {
            CHECKF(0, "LoRA base from %s: %s", pt, tn_errmsg());
        }
        tn_qbase_free(&b);
        tn_trin_close(t);
    }

    /* the exporter: exact rows need a quantized head */
    tn_export_opts o;
    tn_export_opts_default(&o);
    tn_export_report rep;
    o.head = TN_TABLE_F16;
    o.exact_head = 1;
    CHECK(tn_export_trin(ph5, tmp("refused.trin"), &o, &rep) != 0 && strstr(tn_errmsg(), "Q8 or Q4 head"));
    CHECK(access(tmp("refused.trin"), F_OK) != 0);
    tn_ckpt_free(&ck);
}

/* ---- the reader ---- */

static size_t g_exact; /* the exact rows' directory entry */
static void patch_version3(uint8_t *img) { img[4] = 3; }
static void patch_act_bits(uint8_t *img) { img[g_exact + 2 + strlen(TN_TRIN_EXACT_HEAD) + 3] = 8; }
static void patch_name(uint8_t *img) { img[g_exact + 2 + strlen(TN_TRIN_EXACT_HEAD) - 1] = 'x'; }

static void expect_refused(const uint8_t *img, size_t size, void (*patch)(uint8_t *), const char *want) {
    uint8_t *c = malloc(size);
    memcpy(c, img, size);
    patch(c);
    tn_test_trin_fix_header_crc(c);
    tn_trin *t = NULL;
    const int rc = tn_trin_open_memory(c, size, &t);
    CHECKF(rc != 0 && strstr(tn_errmsg(), want) != NULL, "want '%s': rc %d, message '%s'", want, rc,
           rc ? tn_errmsg() : "");
    if (rc == 0) tn_trin_close(t);
    free(c);
}

/* The writer applies the reader's checks: exact rows beside an F32 head, or stored as F32, are refused. */
static void writer_refuses(tn_trin_dtype head_dtype, tn_trin_dtype rows_dtype, const char *want) {
    tn_llama_config cfg = test_config(0);
    tn_llama_layout l;
    CHECK_OK(tn_llama_layout_init(&l, &cfg));
    tn_trin_writer *w = tn_trin_writer_new(&cfg);
    int rc = 0;
    for (int i = 0; rc == 0 && i <= l.n_tensors; i++) {
        const int extra = i == l.n_tensors; /* the exact rows last */
        tn_trin_tensor d;
        memset(&d, 0, sizeof d);
        snprintf(d.name, sizeof d.name, "%s", extra ? TN_TRIN_EXACT_HEAD : l.tensors[i].name);
        d.rank = extra ? 2 : l.tensors[i].rank;
        d.shape[0] = extra ? cfg.vocab_size : l.tensors[i].shape[0];
        d.shape[1] = extra ? cfg.dim : l.tensors[i].shape[1];
        d.dtype = extra ? rows_dtype : !strcmp(d.name, "lm_head.weight") ? head_dtype : TN_TRIN_F32;
        d.scale_layout = d.dtype == TN_TRIN_Q8 ? TN_TRIN_SCALE_ROW : TN_TRIN_SCALE_NONE;
        uint64_t size;
        CHECK_OK(tn_trin_data_size(d.dtype, d.rank, d.shape, &size));
        uint8_t *buf = calloc(1, size);
        float *scales = d.scale_layout ? calloc((size_t)d.shape[0], sizeof *scales) : NULL;
        for (int64_t r = 0; scales && r < d.shape[0]; r++) scales[r] = 1.0f;
        rc = tn_trin_writer_add(w, &d, buf, scales, 1);
    }
    CHECK(rc == 0);
    CHECKF(tn_trin_writer_write(w, tmp("crafted.trin")) != 0 && strstr(tn_errmsg(), want), "want '%s', got '%s'", want,
           tn_errmsg());
    CHECK(access(tmp("crafted.trin"), F_OK) != 0);
    tn_trin_writer_free(w);
    tn_llama_layout_free(&l);
}

static void test_reader(void) {
    char *img;
    size_t size;
    CHECK_OK(tn_read_file(tmp("untied-q8x.trin"), &img, &size));
    if (!img) return;
    const uint8_t *u = (const uint8_t *)img;
    g_exact = tn_test_trin_entry(u, (size_t)tn_test_rd64(u + 8), TN_TRIN_EXACT_HEAD);
    CHECK(g_exact != 0);
    expect_refused(u, size, patch_version3, "needs TRIN version 4");
    expect_refused(u, size, patch_act_bits, "act_bits 8, the head's are 0");
    expect_refused(u, size, patch_name, "unexpected tensor 'lm_head.exacx'");
    free(img);
    writer_refuses(TN_TRIN_F32, TN_TRIN_F16, "beside a F32 head");
    writer_refuses(TN_TRIN_Q8, TN_TRIN_F32, "must be F16 [vocab, dim]");
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_top_indices();
    test_engine(0);
    test_engine(1);
    test_reader();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
