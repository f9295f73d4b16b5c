/* Model families against Hugging Face transformers itself: the committed fixtures of
 * tests/fixtures/hf-families (tests/reference/make_hf_families.py: tiny random models saved by
 * save_pretrained, with transformers' float64 logits and gradients on one batch).
 *
 * Cases: plain Llama, Mistral, Llama 3 (llama3 and linear RoPE scaling, both config layouts), Qwen2, Qwen3.
 * For each case: `trinity import` of the directory; the config it reads (the family's own settings);
 * forward logits and masked loss within 1e-5 and every parameter gradient within 1e-4 relative (max abs error
 * / max abs reference, per tensor); the same through a checkpoint round trip and a .trin file run by the
 * inference engine; and the test's power: the same
 * weights with the family's feature removed (the RoPE scaling rule, Qwen2's q/k/v biases, Qwen3's per-head q/k
 * norms) no longer match. */
#include "tn_test.h"
#include "fixture_llama.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "export/export_trin.h"
#include "export/import.h"
#include "model/llama.h"
#include "model/rope.h"
#include "runner/infer.h"
#include "train/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL_LOGITS 1e-5
#define TOL_GRAD 1e-4
#define TOL_ENGINE 1e-4 /* the inference engine's own products (blocked sums) */
#define MIN_MISMATCH 1e-3 /* without the family's feature the logits must be at least this far off */

/* The feature a case shows the model needs: without it the logits must no longer match. */
typedef enum { FEATURE_NONE, FEATURE_ROPE_SCALING, FEATURE_QKV_BIAS, FEATURE_QK_NORM } feature;

typedef struct {
    const char *name;
    feature feat;
    int rope_type;
    float factor;
    int qkv_bias;
    int qk_norm, head_dim;
} family_case;

static const family_case CASES[] = {
    {"llama2", FEATURE_NONE, TN_ROPE_DEFAULT, 1.0f, 0, 0, 0},  /* LlamaForCausalLM, plain RoPE */
    {"mistral", FEATURE_NONE, TN_ROPE_DEFAULT, 1.0f, 0, 0, 0}, /* MistralForCausalLM, no sliding window */
    {"llama3-rope", FEATURE_ROPE_SCALING, TN_ROPE_LLAMA3, 8.0f, 0, 0, 0},
    {"linear-rope", FEATURE_ROPE_SCALING, TN_ROPE_LINEAR, 4.0f, 0, 0, 0},
    {"llama3-rope-v5", FEATURE_ROPE_SCALING, TN_ROPE_LLAMA3, 8.0f, 0, 0, 0}, /* transformers 5.x config layout */
    {"qwen2-bias", FEATURE_QKV_BIAS, TN_ROPE_DEFAULT, 1.0f, 1, 0, 0},         /* Qwen2ForCausalLM */
    {"qwen3-qknorm", FEATURE_QK_NORM, TN_ROPE_DEFAULT, 1.0f, 0, 1, 16},       /* Qwen3ForCausalLM, head_dim 16 */
};

typedef struct {
    int B, T, V;
    int32_t *inputs, *targets;
    uint8_t *mask;
    float *logits, loss, *grads;
} reference;

static int read_reference(const char *path, const tn_llama_layout *l, reference *r) {
    hid_t f;
    TN_CHECK(tn_h5_open(path, &f));
    int rank;
    int64_t shp[TN_H5_MAX_RANK];
    int rc = tn_h5_shape(f, "inputs", &rank, shp);
    if (rc == 0 && rank != 2) rc = tn_err("inputs: rank %d", rank);
    if (rc == 0) {
        r->B = (int)shp[0], r->T = (int)shp[1], r->V = l->cfg.vocab_size;
        size_t BT = (size_t)r->B * r->T;
        int64_t s2[2] = {r->B, r->T}, s3[3] = {r->B, r->T, r->V}, s1[1] = {1};
        r->inputs = tn_alloc(BT, sizeof(int32_t));
        r->targets = tn_alloc(BT, sizeof(int32_t));
        r->mask = tn_alloc(BT, 1);
        r->logits = tn_alloc(BT * (size_t)r->V, sizeof(float));
        r->grads = tn_alloc(l->numel, sizeof(float));
        if (!r->inputs || !r->targets || !r->mask || !r->logits || !r->grads) rc = tn_err("out of memory");
        if (rc == 0) rc = tn_h5_read(f, "inputs", TN_H5_I32, 2, s2, r->inputs);
        if (rc == 0) rc = tn_h5_read(f, "targets", TN_H5_I32, 2, s2, r->targets);
        if (rc == 0) rc = tn_h5_read(f, "mask", TN_H5_U8, 2, s2, r->mask);
        if (rc == 0) rc = tn_h5_read(f, "logits", TN_H5_F32, 3, s3, r->logits);
        if (rc == 0) rc = tn_h5_read(f, "loss", TN_H5_F32, 1, s1, &r->loss);
        if (rc == 0) rc = tn_fixture_read_tensors(f, "grads", l, r->grads);
    }
    tn_h5_close(f);
    return rc;
}

static void free_reference(reference *r) {
    tn_free(r->inputs);
    tn_free(r->targets);
    tn_free(r->mask);
    tn_free(r->logits);
    tn_free(r->grads);
}

/* Forward (+ backward when grads) on the CPU; returns the logits' relative error against the reference. */
static double run_model(const tn_llama_layout *l, const float *params, const reference *r, float *loss, float *grads) {
    tn_llama *m = NULL;
    if (tn_llama_create(&m, l, r->B, r->T, NULL) != 0) {
        CHECKF(0, "create: %s", tn_errmsg());
        return INFINITY;
    }
    CHECK_OK(tn_llama_forward(m, params, r->inputs, r->targets, r->mask, loss, NULL));
    double e = tn_test_rel_err(tn_llama_logits(m), r->logits, (size_t)r->B * r->T * r->V);
    if (grads) {
        memset(grads, 0, l->numel * sizeof(float));
        CHECK_OK(tn_llama_backward(m, params, grads, 1.0f));
    }
    tn_llama_free(m);
    return e;
}

/* The inference engine on a .trin export of ck: the logits of every position of batch row 0. */
static void check_engine(const char *dir_tmp, const tn_checkpoint *ck, const reference *r, const char *device) {
    /* ck was saved to dir_tmp/model.h5 by the caller */
    char ck_path[1024], trin_path[1024];
    snprintf(ck_path, sizeof ck_path, "%s/model.h5", dir_tmp);
    snprintf(trin_path, sizeof trin_path, "%s/model.trin", dir_tmp);
    tn_export_opts eo;
    tn_export_opts_default(&eo);
    eo.dense = TN_EXPORT_DENSE_F32;
    tn_export_report rep;
    CHECK_OK(tn_export_trin(ck_path, trin_path, &eo, &rep));
    tn_infer_opts io;
    tn_infer_opts_default(&io);
    io.device = device;
    tn_infer *m = NULL;
    if (tn_infer_open(trin_path, &io, &m) != 0) {
        CHECKF(0, "engine on %s: %s", device, tn_errmsg());
        return;
    }
    CHECK(tn_infer_config(m)->rope_type == ck->layout.cfg.rope_type);
    float *logits = tn_alloc((size_t)r->T * r->V, sizeof(float));
    CHECK_OK(tn_infer_forward(m, r->inputs, r->T, logits, 1));
    double e = tn_test_rel_err(logits, r->logits, (size_t)r->T * r->V);
    printf("  engine (%s, .trin F32): logits rel err %.3e\n", device, e);
    CHECKF(e <= TOL_ENGINE, "engine on %s: logits rel err %.3e", device, e);
    tn_free(logits);
    tn_infer_free(m);
}

static void run_case(const char *root, const family_case *fc, const char *tmp) {
    char dir[1024], ref_path[1100];
    snprintf(dir, sizeof dir, "%s/%s", root, fc->name);
    snprintf(ref_path, sizeof ref_path, "%s/reference.h5", dir);
    printf("== %s\n", fc->name);
    tn_checkpoint ck;
    tn_import_info info;
    if (tn_import(dir, NULL, &ck, &info) != 0) {
        CHECKF(0, "%s: import: %s", fc->name, tn_errmsg());
        return;
    }
    const tn_llama_config *c = &ck.layout.cfg;
    CHECKF(c->rope_type == fc->rope_type && c->rope_factor == fc->factor && c->qkv_bias == fc->qkv_bias &&
               c->qk_norm == fc->qk_norm && c->head_dim == fc->head_dim,
           "%s: rope %s factor %g, qkv_bias %d, qk_norm %d, head_dim %d", fc->name, tn_rope_type_name(c->rope_type),
           (double)c->rope_factor, c->qkv_bias, c->qk_norm, c->head_dim);
    reference r = {0};
    if (read_reference(ref_path, &ck.layout, &r) != 0) {
        CHECKF(0, "%s: %s", ref_path, tn_errmsg());
        tn_ckpt_free(&ck);
        return;
    }

    /* forward and backward against transformers */
    float loss = NAN;
    float *grads = tn_alloc(ck.layout.numel, sizeof(float));
    double e_logits = run_model(&ck.layout, ck.params, &r, &loss, grads);
    double e_loss = fabs(loss - r.loss) / fabs(r.loss);
    double worst = 0;
    for (int i = 0; i < ck.layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck.layout.tensors[i];
        double e = tn_test_rel_err(grads + t->offset, r.grads + t->offset, t->numel);
        CHECKF(e <= TOL_GRAD, "%s: grad %s rel err %.3e", fc->name, t->name, e);
        if (!(e <= worst)) worst = e;
    }
    printf("  logits rel err %.3e, loss %.7f vs %.7f (rel %.2e), worst gradient rel err %.3e\n", e_logits, loss,
           r.loss, e_loss, worst);
    CHECKF(e_logits <= TOL_LOGITS && e_loss <= TOL_LOGITS, "%s: logits %.3e loss %.3e", fc->name, e_logits, e_loss);

    /* power: the same weights without the family's feature do not match */
    double e_plain = INFINITY;
    if (fc->feat == FEATURE_NONE) {
        /* the plain architecture: nothing to remove */
    } else if (fc->feat == FEATURE_ROPE_SCALING) {
        tn_llama_config plain = *c;
        plain.rope_type = TN_ROPE_DEFAULT;
        tn_llama_layout pl;
        CHECK_OK(tn_llama_layout_init(&pl, &plain));
        e_plain = run_model(&pl, ck.params, &r, &loss, NULL);
        tn_llama_layout_free(&pl);
    } else if (fc->feat == FEATURE_QK_NORM) { /* the same tensors but the q/k norms, copied by name */
        tn_llama_config plain = *c;
        plain.qk_norm = 0;
        tn_llama_layout pl;
        CHECK_OK(tn_llama_layout_init(&pl, &plain));
        float *p2 = tn_alloc(pl.numel, sizeof(float));
        for (int i = 0; i < pl.n_tensors; i++) {
            const tn_tensor_info *t = &pl.tensors[i], *u = tn_llama_layout_find(&ck.layout, t->name);
            memcpy(p2 + t->offset, ck.params + u->offset, t->numel * sizeof(float));
        }
        e_plain = run_model(&pl, p2, &r, &loss, NULL);
        tn_free(p2);
        tn_llama_layout_free(&pl);
    } else {
        float *nobias = tn_alloc(ck.layout.numel, sizeof(float));
        memcpy(nobias, ck.params, ck.layout.numel * sizeof(float));
        for (int i = 0; i < ck.layout.n_tensors; i++)
            if (ck.layout.tensors[i].group == TN_GROUP_BIAS)
                memset(nobias + ck.layout.tensors[i].offset, 0, ck.layout.tensors[i].numel * sizeof(float));
        e_plain = run_model(&ck.layout, nobias, &r, &loss, NULL);
        tn_free(nobias);
    }
    static const char *const feature_name[] = {"", "RoPE scaling", "q/k/v biases", "q/k norms"};
    if (fc->feat != FEATURE_NONE) printf("  without the %s: logits rel err %.3e\n", feature_name[fc->feat], e_plain);
    CHECKF(e_plain > MIN_MISMATCH, "%s: the feature made no difference (%.3e)", fc->name, e_plain);

    /* checkpoint round trip keeps the rule; the engine runs it (CPU, and CUDA where built) */
    char ck_path[1024];
    snprintf(ck_path, sizeof ck_path, "%s/model.h5", tmp);
    CHECK_OK(tn_ckpt_save(ck_path, &ck, NULL, 0));
    tn_llama_config back;
    CHECK_OK(tn_ckpt_read_config(ck_path, &back));
    CHECK(memcmp(&back, c, sizeof back) == 0);
    check_engine(tmp, &ck, &r, "cpu"); /* the CUDA engine against this one: test_cuda_infer (llama3 model) */
    tn_free(grads);
    free_reference(&r);
    tn_ckpt_free(&ck);
}

int main(void) {
    const char *src = getenv("TN_SOURCE_DIR");
    if (!src) TN_SKIP("TN_SOURCE_DIR not set (run through ctest)");
    char root[512], tmp[] = "/tmp/tn_test_hf_familiesXXXXXX";
    snprintf(root, sizeof root, "%s/tests/fixtures/hf-families", src);
    if (!mkdtemp(tmp)) TN_SKIP("mkdtemp failed");
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(root, &CASES[i], tmp);
    char path[600];
    snprintf(path, sizeof path, "%s/model.h5", tmp);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.trin", tmp);
    unlink(path);
    rmdir(tmp);
    return tn_test_finish();
}
