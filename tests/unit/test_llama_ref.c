/* model/llama.c against the PyTorch reference (tests/reference/gen_llama.py, llama_ref.py).
 *
 * For each fixture: load the config and parameters, run forward on the stored batch, and compare logits,
 * per-position NLL and the masked mean loss (1e-5 relative: max abs error / max abs reference); run backward
 * and compare every parameter's gradient (1e-4 relative, per tensor). The reference was computed in float64
 * from the same float32 parameters, so the errors printed are the C model's float32 error alone.
 * Also: logits-only and mask-free forwards, gradient accumulation with a scale, out-of-range token ids. */
#include "tn_test.h"
#include "fixture_llama.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "model/llama.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define TOL_LOGITS 1e-5
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-4

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1.0); }

static void run_fixture(const char *file) {
    const char *path = tn_test_fixture(file);
    if (!path || access(path, R_OK) != 0) TN_SKIP("fixture %s missing (run tests/reference/gen_llama.py)", file);
    printf("== %s\n", file);

    hid_t f;
    CHECK_OK(tn_h5_open(path, &f));
    tn_llama_config cfg;
    CHECK_OK(tn_fixture_read_config(f, &cfg));
    tn_llama_layout layout;
    CHECK_OK(tn_llama_layout_init(&layout, &cfg));
    CHECKF(tn_fixture_n_links(f, "params") == layout.n_tensors, "fixture has %ld tensors, layout %d", tn_fixture_n_links(f, "params"),
           layout.n_tensors);

    int rank;
    int64_t shp[TN_H5_MAX_RANK];
    CHECK_OK(tn_h5_shape(f, "inputs", &rank, shp));
    CHECK(rank == 2);
    const int B = (int)shp[0], T = (int)shp[1], V = cfg.vocab_size;
    const size_t BT = (size_t)B * T, BTV = BT * (size_t)V;
    int64_t s2[2] = {B, T}, s3[3] = {B, T, V}, s1[1] = {1};

    float *params = tn_alloc(layout.numel, sizeof(float));
    float *grads = tn_alloc(layout.numel, sizeof(float));
    float *gref = tn_alloc(layout.numel, sizeof(float));
    int32_t *inputs = tn_alloc(BT, sizeof(int32_t)), *targets = tn_alloc(BT, sizeof(int32_t));
    uint8_t *mask = tn_alloc(BT, 1);
    float *logits_ref = tn_alloc(BTV, sizeof(float)), *nll_ref = tn_alloc(BT, sizeof(float)), loss_ref = 0;
    if (!params || !grads || !gref || !inputs || !targets || !mask || !logits_ref || !nll_ref) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    CHECK_OK(tn_fixture_read_tensors(f, "params", &layout, params));
    CHECK_OK(tn_fixture_read_tensors(f, "grads", &layout, gref));
    CHECK_OK(tn_h5_read(f, "inputs", TN_H5_I32, 2, s2, inputs));
    CHECK_OK(tn_h5_read(f, "targets", TN_H5_I32, 2, s2, targets));
    CHECK_OK(tn_h5_read(f, "mask", TN_H5_U8, 2, s2, mask));
    CHECK_OK(tn_h5_read(f, "logits", TN_H5_F32, 3, s3, logits_ref));
    CHECK_OK(tn_h5_read(f, "nll", TN_H5_F32, 2, s2, nll_ref));
    CHECK_OK(tn_h5_read(f, "loss", TN_H5_F32, 1, s1, &loss_ref));
    tn_h5_close(f);
    int64_t n_mask = 0;
    for (size_t i = 0; i < BT; i++) n_mask += mask[i];

    tn_llama *m = NULL;
    CHECK_OK(tn_llama_create(&m, &layout, B, T, NULL));
    if (!m) exit(tn_test_finish());
    CHECK(tn_llama_batch(m) == B && tn_llama_seq_len(m) == T);

    /* Forward with targets and mask. */
    float loss = NAN;
    int64_t counted = -1;
    CHECK_OK(tn_llama_forward(m, params, inputs, targets, mask, &loss, &counted));
    double e_logits = tn_test_rel_err(tn_llama_logits(m), logits_ref, BTV);
    double e_nll = tn_test_rel_err(tn_llama_nll(m), nll_ref, BT);
    double e_loss = rel(loss, loss_ref);
    printf("logits rel err %.3e   nll rel err %.3e   loss %.7f vs %.7f rel err %.3e   counted %lld\n", e_logits,
           e_nll, loss, loss_ref, e_loss, (long long)counted);
    CHECKF(e_logits <= TOL_LOGITS, "logits rel err %.3e", e_logits);
    CHECKF(e_nll <= TOL_LOGITS, "nll rel err %.3e", e_nll);
    CHECKF(e_loss <= TOL_LOSS, "loss rel err %.3e", e_loss);
    CHECKF(counted == n_mask, "n_counted %lld, mask has %lld ones", (long long)counted, (long long)n_mask);

    /* Backward into zeroed gradients: every tensor within TOL_GRAD. */
    memset(grads, 0, layout.numel * sizeof(float));
    CHECK_OK(tn_llama_backward(m, params, grads, 1.0f));
    double worst = -1;
    const char *worst_name = "";
    for (int i = 0; i < layout.n_tensors; i++) {
        const tn_tensor_info *t = &layout.tensors[i];
        double e = tn_test_rel_err(grads + t->offset, gref + t->offset, t->numel);
        CHECKF(e <= TOL_GRAD, "grad %s rel err %.3e", t->name, e);
        if (!(e <= worst)) { /* NaN counts as worst */
            worst = e;
            worst_name = t->name;
        }
    }
    printf("worst gradient rel err %.3e (%s)\n", worst, worst_name);

    /* Gradient accumulation: a second forward + backward with scale 0.5 adds half of the gradient again. */
    CHECK_OK(tn_llama_forward(m, params, inputs, targets, mask, &loss, NULL));
    CHECK_OK(tn_llama_backward(m, params, grads, 0.5f));
    double e_acc = 0;
    for (int i = 0; i < layout.n_tensors; i++) {
        const tn_tensor_info *t = &layout.tensors[i];
        for (size_t j = 0; j < t->numel; j++) gref[t->offset + j] *= 1.5f;
        double e = tn_test_rel_err(grads + t->offset, gref + t->offset, t->numel);
        if (!(e <= e_acc)) e_acc = e;
    }
    CHECKF(e_acc <= TOL_GRAD, "accumulated (1 + 0.5) gradient rel err %.3e", e_acc);

    /* Logits only (no targets). */
    CHECK_OK(tn_llama_forward(m, params, inputs, NULL, NULL, NULL, NULL));
    e_logits = tn_test_rel_err(tn_llama_logits(m), logits_ref, BTV);
    CHECKF(e_logits <= TOL_LOGITS, "logits-only forward: rel err %.3e", e_logits);

    /* No mask: every position counts; the loss is the plain mean of the reference NLL. */
    double mean_nll = 0;
    for (size_t i = 0; i < BT; i++) mean_nll += nll_ref[i];
    mean_nll /= (double)BT;
    CHECK_OK(tn_llama_forward(m, params, inputs, targets, NULL, &loss, &counted));
    CHECKF(rel(loss, mean_nll) <= TOL_LOSS, "mask-free loss %.7f vs %.7f", loss, mean_nll);
    CHECK(counted == (int64_t)BT);

    /* All-zero mask: loss 0, nothing counted. */
    uint8_t *zero = tn_alloc(BT, 1);
    CHECK_OK(tn_llama_forward(m, params, inputs, targets, zero, &loss, &counted));
    CHECK(loss == 0.0f && counted == 0);
    tn_free(zero);

    /* Token ids outside [0, vocab) are rejected, in inputs and in targets. */
    int32_t keep = inputs[BT - 1];
    inputs[BT - 1] = V;
    CHECK(tn_llama_forward(m, params, inputs, targets, mask, &loss, NULL) != 0);
    inputs[BT - 1] = -1;
    CHECK(tn_llama_forward(m, params, inputs, targets, mask, &loss, NULL) != 0);
    inputs[BT - 1] = keep;
    keep = targets[0];
    targets[0] = V;
    CHECK(tn_llama_forward(m, params, inputs, targets, mask, &loss, NULL) != 0);
    targets[0] = keep;

    tn_llama_free(m);
    tn_free(params);
    tn_free(grads);
    tn_free(gref);
    tn_free(inputs);
    tn_free(targets);
    tn_free(mask);
    tn_free(logits_ref);
    tn_free(nll_ref);
    tn_llama_layout_free(&layout);
}

int main(void) {
    run_fixture("llama_gqa_untied.h5");
    run_fixture("llama_tied.h5");
    return tn_test_finish();
}
