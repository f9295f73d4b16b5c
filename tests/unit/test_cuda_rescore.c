/* The CUDA engine and exact head rows (TRIN version 4, `trinity export --head q8 --exact-head`): it has no Q8 /
 * Q4 kernels, so it runs the exact F16 rows as the head (and, tied, as the embedding table): its logits are
 * then the CPU's for the same model exported with an F16 head (fast mode within 1e-3 and exact mode within
 * 1e-5 relative, the bounds of test_cuda_infer), with the same argmax everywhere; --rescore 0 (the Q8 head
 * alone) and an untied Q8 embedding table are refused with one message each. Runs through the emulator in a TN_CUDA_EMU build, on the card in a
 * TN_CUDA build, and skips elsewhere. */
#include "cuda_test.h"

#ifdef TN_HAVE_CUDA
#include "core/alloc.h"
#include "core/error.h"
#include "device/device.h"
#include "export/export_trin.h"
#include "runner/infer.h"
#include "tiny_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_cuda_rescoreXXXXXX";

enum { NTOK = 9 };
static const int32_t TOK[NTOK] = {1, 72, 101, 108, 108, 111, 44, 32, 299};

static int export_as(const char *h5, const char *out, tn_table_type head, tn_table_type embed, int exact) {
    tn_export_opts o;
    tn_export_opts_default(&o);
    tn_export_report rep;
    o.head = head;
    o.embed = embed;
    o.exact_head = exact;
    const int rc = tn_export_trin(h5, out, &o, &rep);
    CHECKF(rc == 0, "export %s: %s", out, tn_errmsg());
    return rc;
}

static tn_infer *open_on(const char *path, const char *device, tn_infer_mode mode) {
    tn_infer_opts o;
    tn_infer_opts_default(&o);
    o.device = device;
    o.mode = mode;
    tn_infer *m = NULL;
    return tn_infer_open(path, &o, &m) == 0 ? m : NULL;
}

static int argmax(const float *x, int64_t n) {
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int)i;
    return b;
}

static void run_case(int tied) {
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
    tn_checkpoint ck;
    CHECK_OK(tn_test_random_ckpt(&ck, &c, tied ? 21 : 22));
    char h5[600], px[600], pf[600], pe[600];
    snprintf(h5, sizeof h5, "%s/m%d.h5", dir, tied);
    snprintf(px, sizeof px, "%s/q8x%d.trin", dir, tied);
    snprintf(pf, sizeof pf, "%s/f16%d.trin", dir, tied);
    snprintf(pe, sizeof pe, "%s/q8e%d.trin", dir, tied);
    CHECK_OK(tn_ckpt_save(h5, &ck, NULL, 0));
    tn_ckpt_free(&ck);
    if (export_as(h5, px, TN_TABLE_Q8, TN_TABLE_AUTO, 1) || export_as(h5, pf, TN_TABLE_F16, TN_TABLE_AUTO, 0))
        return;
    const int64_t NV = (int64_t)NTOK * c.vocab_size;
    float *ld = tn_alloc((size_t)NV, sizeof *ld), *lc = tn_alloc((size_t)NV, sizeof *lc);
    for (int mode = 0; mode < 2; mode++) {
        const tn_infer_mode im = mode ? TN_INFER_EXACT : TN_INFER_FAST;
        tn_infer *md = open_on(px, "cuda", im), *mc = open_on(pf, "cpu", im);
        CHECKF(md && mc, "%s: opening: %s", tied ? "tied" : "untied", tn_errmsg());
        if (md && mc) {
            CHECK_OK(tn_infer_forward(md, TOK, NTOK, ld, 1));
            CHECK_OK(tn_infer_forward(mc, TOK, NTOK, lc, 1));
            const double e = tn_test_rel_err(ld, lc, (size_t)NV);
            int arg_bad = 0;
            for (int t = 0; t < NTOK; t++)
                arg_bad += argmax(ld + t * c.vocab_size, c.vocab_size) != argmax(lc + t * c.vocab_size, c.vocab_size);
            printf("%s %s: CUDA on the exact rows (%s) vs the CPU's F16 head: %.2g, argmax differs at %d of %d\n",
                   tied ? "tied" : "untied", mode ? "exact" : "fast", tn_infer_describe(md), e, arg_bad, NTOK);
            CHECKF(e <= (mode ? 1e-5 : 1e-3), "CUDA logits %.3g relative from the CPU F16 head's", e);
            CHECK(arg_bad == 0);
            CHECK(strstr(tn_infer_describe(md), "head F16") != NULL);
        }
        tn_infer_free(md);
        tn_infer_free(mc);
    }
    { /* --rescore 0 keeps the Q8 head alone, which the engine cannot run: refused, saying why */
        tn_infer_opts o;
        tn_infer_opts_default(&o);
        o.device = "cuda";
        o.rescore = 0;
        tn_infer *m0 = NULL;
        CHECK(tn_infer_open(px, &o, &m0) != 0 && m0 == NULL && strstr(tn_errmsg(), "re-scoring 0 candidates") != NULL);
    }
    if (!tied && export_as(h5, pe, TN_TABLE_Q8, TN_TABLE_Q8, 1) == 0) { /* the Q8 embedding table has no rows */
        tn_infer *md = open_on(pe, "cuda", TN_INFER_FAST);
        CHECK(md == NULL && strstr(tn_errmsg(), "embedding table is Q8") != NULL);
        tn_infer_free(md);
    }
    tn_free(ld);
    tn_free(lc);
}
#endif /* TN_HAVE_CUDA */

int main(void) {
    TN_CUDA_TEST_REQUIRE();
#ifdef TN_HAVE_CUDA
    tn_device_register_cuda(tn_cuda_backend_get());
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    run_case(0);
    run_case(1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
#endif
    return tn_test_finish();
}
