/* Quantized (STE) training in model/llama.c against the PyTorch reference (tests/reference/gen_llama_ste.py).
 *
 * A tn_weight_source quantizes the shadow weights of the selected linears (tn_quantize_tensor with the
 * fixture's grid / scale rule / per-row option) and blends W_f = W + λ (W_q - W) (tn_ste_blend); weight_grad
 * is NULL, so the model accumulates dL/dW_f into the shadow gradients (straight-through). act_bits and
 * is_quantized come from the fixture; the head goes through the source when "head" is among the layers.
 *
 * Per fixture:
 *   - the quantizer alone: grid indices, scales and W_f equal the reference's bit for bit;
 *   - forward: logits, per-position NLL and loss within 1e-5, backward: every shadow gradient within 1e-4
 *     (relative: max abs error / max abs reference, per tensor);
 *   - the source filling the model's scratch on every call gives bit-identical logits and gradients to the
 *     source that caches one W_f per tensor per forward, and the weight_grad-callback path gives the same
 *     gradients as weight_grad = NULL;
 *   - sensitivity: the dense model (no source), and for act_bits 8 the same source without activation
 *     quantization, miss the reference by far more than the tolerance, so the test does see both. */
#include "tn_test.h"
#include "fixture_llama.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "model/llama.h"
#include "optim/ste.h"
#include "quant/grid.h"
#include "quant/scale.h"
#include "quant/snap.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define TOL_LOGITS 1e-5
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-4
#define SENSITIVITY 100.0 /* a variant that should differ must miss by this many tolerances */

enum { G_ATTN = 1, G_MLP = 2, G_HEAD = 4 };

/* ---- the weight source ---------------------------------------------------------------------------- */

typedef struct {
    const tn_llama_layout *layout;
    const float *params; /* shadow weights */
    tn_grid grid;
    tn_scale_rule rule;
    int per_row;
    float lambda;
    int groups;      /* G_* bits */
    int use_scratch; /* 1: quantize into the model's scratch on every call; 0: once per tensor per forward */
    float **cache;   /* [n_tensors] W_f, allocated on first use */
    int *valid;      /* [n_tensors] cache[i] holds W_f of the current params */
    long quantizations;
    int failed;
    float *grad_sink; /* weight_grad callback: dW accumulates here (layout offsets) */
} ste_source;

static int kind_group(int layer, tn_linear_kind kind) {
    if (layer < 0 || kind == TN_W_COUNT) return G_HEAD;
    return kind <= TN_W_O ? G_ATTN : G_MLP;
}

static int src_is_quantized(void *ctx, int layer, tn_linear_kind kind) {
    const ste_source *s = ctx;
    return (s->groups & kind_group(layer, kind)) != 0;
}

static const tn_tensor_info *src_tensor(const ste_source *s, int layer, tn_linear_kind kind) {
    int ti = tn_llama_layout_index(s->layout, layer, (int)kind);
    if (ti < 0) {
        fprintf(stderr, "weight source: no tensor for layer %d kind %d\n", layer, (int)kind);
        exit(1);
    }
    return &s->layout->tensors[ti];
}

static const float *src_weight(void *ctx, int layer, tn_linear_kind kind, float *scratch) {
    ste_source *s = ctx;
    const tn_tensor_info *t = src_tensor(s, layer, kind);
    const float *W = s->params + t->offset;
    if (!src_is_quantized(ctx, layer, kind)) return W;
    const size_t ti = (size_t)(t - s->layout->tensors);
    float *dst = scratch;
    if (!s->use_scratch) {
        if (!s->cache[ti] && !(s->cache[ti] = tn_alloc(t->numel, sizeof(float)))) {
            s->failed = 1;
            return W;
        }
        dst = s->cache[ti];
        if (s->valid[ti]) return dst;
    }
    if (tn_quantize_tensor(W, t->shape[0], t->shape[1], &s->grid, s->rule, s->per_row, dst, NULL, NULL) != 0) {
        fprintf(stderr, "quantize %s: %s\n", t->name, tn_errmsg());
        s->failed = 1;
        return W;
    }
    tn_ste_blend(W, dst, (int64_t)t->numel, s->lambda, dst);
    s->quantizations++;
    if (!s->use_scratch) s->valid[ti] = 1;
    return dst;
}

static int src_weight_grad(void *ctx, int layer, tn_linear_kind kind, const float *grad) {
    ste_source *s = ctx;
    const tn_tensor_info *t = src_tensor(s, layer, kind);
    for (size_t i = 0; i < t->numel; i++) s->grad_sink[t->offset + i] += grad[i];
    return 0;
}

/* New shadow weights (or a new forward): drop cached W_f. */
static void src_invalidate(ste_source *s) { memset(s->valid, 0, (size_t)s->layout->n_tensors * sizeof *s->valid); }

static tn_weight_source src_make(ste_source *s, int act_bits, int with_grad_callback) {
    tn_weight_source w = {0};
    w.weight = src_weight;
    w.weight_grad = with_grad_callback ? src_weight_grad : NULL;
    w.act_bits = act_bits;
    w.is_quantized = src_is_quantized;
    w.ctx = s;
    return w;
}

/* ---- fixture reading ------------------------------------------------------------------------------ */

typedef struct {
    char grid[64], scale[16], layers[64];
    int per_row, act_bits, groups;
    double lambda;
} quant_attrs;

static int read_quant(hid_t f, quant_attrs *q) {
    TN_CHECK(tn_h5_attr_get_str(f, ".", "grid", q->grid, sizeof q->grid));
    TN_CHECK(tn_h5_attr_get_str(f, ".", "scale", q->scale, sizeof q->scale));
    TN_CHECK(tn_h5_attr_get_str(f, ".", "layers", q->layers, sizeof q->layers));
    TN_CHECK(tn_fixture_get_int(f, "per_row", &q->per_row));
    TN_CHECK(tn_fixture_get_int(f, "act_bits", &q->act_bits));
    TN_CHECK(tn_h5_attr_get_f64(f, ".", "lambda", &q->lambda));
    char buf[64];
    memcpy(buf, q->layers, sizeof buf);
    q->groups = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "attn") == 0) q->groups |= G_ATTN;
        else if (strcmp(tok, "mlp") == 0) q->groups |= G_MLP;
        else if (strcmp(tok, "head") == 0) q->groups |= G_HEAD;
        else return tn_err("fixture: unknown layer group '%s'", tok);
    }
    return 0;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1.0); }

/* ---- checks --------------------------------------------------------------------------------------- */

/* The quantizer alone: indices, scales and W_f of every quantized linear equal the reference's. Returns the
 * number of quantized tensors. */
static int check_quantizer(hid_t f, const ste_source *s) {
    const tn_llama_layout *l = s->layout;
    int n_quant = 0;
    long idx_bad = 0, wf_bad = 0, sc_bad = 0;
    for (int layer = -1; layer < l->cfg.n_layers; layer++) {
        for (int kind = layer < 0 ? TN_W_COUNT : 0; kind <= (layer < 0 ? TN_W_COUNT : TN_W_DOWN); kind++) {
            if (!src_is_quantized((void *)s, layer, (tn_linear_kind)kind)) continue;
            const tn_tensor_info *t = src_tensor(s, layer, (tn_linear_kind)kind);
            const char *name = layer < 0 ? "lm_head.weight" : t->name; /* the head's own name, also when tied */
            const int64_t rows = t->shape[0], cols = t->shape[1], ns = s->per_row ? rows : 1;
            float *wq = tn_alloc(t->numel, sizeof(float)), *wf_ref = tn_alloc(t->numel, sizeof(float));
            float *sc = tn_alloc((size_t)ns, sizeof(float)), *sc_ref = tn_alloc((size_t)ns, sizeof(float));
            uint8_t *ix = tn_alloc(t->numel, 1), *ix_ref = tn_alloc(t->numel, 1);
            if (!wq || !wf_ref || !sc || !sc_ref || !ix || !ix_ref) {
                fprintf(stderr, "out of memory\n");
                exit(1);
            }
            char path[160];
            snprintf(path, sizeof path, "wf/%s", name);
            CHECK_OK(tn_h5_read(f, path, TN_H5_F32, 2, t->shape, wf_ref));
            snprintf(path, sizeof path, "idx/%s", name);
            CHECK_OK(tn_h5_read(f, path, TN_H5_U8, 2, t->shape, ix_ref));
            snprintf(path, sizeof path, "scales/%s", name);
            CHECK_OK(tn_h5_read(f, path, TN_H5_F32, 1, &ns, sc_ref));
            const float *W = s->params + t->offset;
            CHECK_OK(tn_quantize_tensor(W, rows, cols, &s->grid, s->rule, s->per_row, wq, ix, sc));
            tn_ste_blend(W, wq, (int64_t)t->numel, s->lambda, wq);
            for (size_t i = 0; i < t->numel; i++) {
                idx_bad += ix[i] != ix_ref[i];
                wf_bad += memcmp(&wq[i], &wf_ref[i], sizeof(float)) != 0;
            }
            for (int64_t r = 0; r < ns; r++) sc_bad += memcmp(&sc[r], &sc_ref[r], sizeof(float)) != 0;
            n_quant++;
            tn_free(wq);
            tn_free(wf_ref);
            tn_free(sc);
            tn_free(sc_ref);
            tn_free(ix);
            tn_free(ix_ref);
        }
    }
    printf("quantizer: %d tensors; indices differing %ld, scales differing %ld, W_f differing %ld (bitwise)\n",
           n_quant, idx_bad, sc_bad, wf_bad);
    CHECKF(n_quant == tn_fixture_n_links(f, "wf"), "%d quantized tensors, fixture has %ld", n_quant, tn_fixture_n_links(f, "wf"));
    CHECK(idx_bad == 0);
    CHECK(sc_bad == 0);
    CHECK(wf_bad == 0);
    return n_quant;
}

static void run_fixture(const char *file) {
    const char *path = tn_test_fixture(file);
    if (!path || access(path, R_OK) != 0) TN_SKIP("fixture %s missing (run tests/reference/gen_llama_ste.py)", file);

    hid_t f;
    CHECK_OK(tn_h5_open(path, &f));
    tn_llama_config cfg;
    quant_attrs qa;
    CHECK_OK(tn_fixture_read_config(f, &cfg));
    CHECK_OK(read_quant(f, &qa));
    printf("== %s: grid %s, scale %s%s, lambda %g, layers %s, act_bits %d, %s head\n", file, qa.grid, qa.scale,
           qa.per_row ? " per row" : " per tensor", qa.lambda, qa.layers, qa.act_bits,
           cfg.tied_embeddings ? "tied" : "untied");
    tn_llama_layout layout;
    CHECK_OK(tn_llama_layout_init(&layout, &cfg));
    CHECKF(tn_fixture_n_links(f, "params") == layout.n_tensors, "fixture has %ld tensors, layout %d", tn_fixture_n_links(f, "params"),
           layout.n_tensors);

    int rank;
    int64_t shp[TN_H5_MAX_RANK];
    CHECK_OK(tn_h5_shape(f, "inputs", &rank, shp));
    CHECK(rank == 2);
    const int B = (int)shp[0], T = (int)shp[1], V = cfg.vocab_size;
    const size_t BT = (size_t)B * T, BTV = BT * (size_t)V, P = layout.numel;
    int64_t s2[2] = {B, T}, s3[3] = {B, T, V}, s1[1] = {1};

    float *params = tn_alloc(P, sizeof(float)), *gref = tn_alloc(P, sizeof(float));
    float *grads = tn_alloc(P, sizeof(float)), *grads2 = tn_alloc(P, sizeof(float));
    float *sink = tn_alloc(P, sizeof(float));
    int32_t *inputs = tn_alloc(BT, sizeof(int32_t)), *targets = tn_alloc(BT, sizeof(int32_t));
    uint8_t *mask = tn_alloc(BT, 1);
    float *logits_ref = tn_alloc(BTV, sizeof(float)), *nll_ref = tn_alloc(BT, sizeof(float)), loss_ref = 0;
    float *logits1 = tn_alloc(BTV, sizeof(float));
    if (!params || !gref || !grads || !grads2 || !sink || !inputs || !targets || !mask || !logits_ref || !nll_ref ||
        !logits1) {
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

    ste_source src = {0};
    src.layout = &layout;
    src.params = params;
    src.per_row = qa.per_row;
    src.lambda = (float)qa.lambda;
    src.groups = qa.groups;
    src.grad_sink = sink;
    src.cache = calloc((size_t)layout.n_tensors, sizeof *src.cache);
    src.valid = calloc((size_t)layout.n_tensors, sizeof *src.valid);
    if (!src.cache || !src.valid) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    CHECK_OK(tn_grid_resolve(qa.grid, &src.grid));
    CHECK_OK(tn_scale_rule_parse(qa.scale, &src.rule));
    const int n_quant = check_quantizer(f, &src);
    tn_h5_close(f);

    tn_llama *m = NULL;
    CHECK_OK(tn_llama_create(&m, &layout, B, T, NULL));
    if (!m) exit(tn_test_finish());
    tn_weight_source ws = src_make(&src, qa.act_bits, 0);
    tn_llama_set_weight_source(m, &ws);
    tn_llama_set_head_via_source(m, (qa.groups & G_HEAD) != 0);

    /* Forward + backward, W_f cached once per forward. */
    float loss = NAN;
    int64_t counted = -1, n_mask = 0;
    for (size_t i = 0; i < BT; i++) n_mask += mask[i];
    src_invalidate(&src);
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
    memcpy(logits1, tn_llama_logits(m), BTV * sizeof(float));

    memset(grads, 0, P * sizeof(float));
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
    const tn_tensor_info *te = &layout.tensors[tn_llama_layout_index(&layout, -1, TN_W_COUNT)];
    printf("worst shadow-gradient rel err %.3e (%s); %s (head) %.3e\n", worst, worst_name, te->name,
           tn_test_rel_err(grads + te->offset, gref + te->offset, te->numel));
    CHECKF(src.quantizations == n_quant, "%ld quantizations for %d quantized tensors (cache: once per forward)",
           src.quantizations, n_quant);
    CHECK(!src.failed);

    /* The same through the model's scratch, quantizing on every call: bit-identical. */
    src.use_scratch = 1;
    src.quantizations = 0;
    CHECK_OK(tn_llama_forward(m, params, inputs, targets, mask, &loss, NULL));
    CHECK(memcmp(tn_llama_logits(m), logits1, BTV * sizeof(float)) == 0);
    memset(grads2, 0, P * sizeof(float));
    CHECK_OK(tn_llama_backward(m, params, grads2, 1.0f));
    CHECK(memcmp(grads2, grads, P * sizeof(float)) == 0);
    CHECKF(src.quantizations > n_quant, "scratch source quantized %ld times", src.quantizations);
    src.use_scratch = 0;

    /* weight_grad callback: the quantized-linear gradients arrive in the callback (here summed into `sink`),
     * the rest in grads; together the same as with weight_grad = NULL. */
    ws = src_make(&src, qa.act_bits, 1);
    tn_llama_set_weight_source(m, &ws);
    src_invalidate(&src);
    CHECK_OK(tn_llama_forward(m, params, inputs, targets, mask, &loss, NULL));
    memset(grads2, 0, P * sizeof(float));
    memset(sink, 0, P * sizeof(float));
    CHECK_OK(tn_llama_backward(m, params, grads2, 1.0f));
    for (size_t i = 0; i < P; i++) grads2[i] += sink[i];
    double e_cb = 0;
    for (int i = 0; i < layout.n_tensors; i++) {
        const tn_tensor_info *t = &layout.tensors[i];
        double e = tn_test_rel_err(grads2 + t->offset, grads + t->offset, t->numel);
        if (!(e <= e_cb)) e_cb = e;
    }
    CHECKF(e_cb <= 1e-6, "weight_grad callback path vs NULL: rel err %.3e", e_cb);
    ws = src_make(&src, qa.act_bits, 0);
    tn_llama_set_weight_source(m, &ws);

    /* Sensitivity: the dense model misses the reference by far; so does the model without int8 activations. */
    tn_llama_set_weight_source(m, NULL);
    tn_llama_set_head_via_source(m, 0);
    CHECK_OK(tn_llama_forward(m, params, inputs, NULL, NULL, NULL, NULL));
    double e_dense = tn_test_rel_err(tn_llama_logits(m), logits_ref, BTV), e_noact = NAN;
    CHECKF(e_dense > SENSITIVITY * TOL_LOGITS, "dense logits only %.3e from the quantized reference", e_dense);
    if (qa.act_bits == 8) {
        tn_weight_source w0 = src_make(&src, 0, 0);
        tn_llama_set_weight_source(m, &w0);
        tn_llama_set_head_via_source(m, (qa.groups & G_HEAD) != 0);
        src_invalidate(&src);
        CHECK_OK(tn_llama_forward(m, params, inputs, NULL, NULL, NULL, NULL));
        e_noact = tn_test_rel_err(tn_llama_logits(m), logits_ref, BTV);
        CHECKF(e_noact > SENSITIVITY * TOL_LOGITS, "logits without act quant only %.3e from the reference", e_noact);
    }
    printf("sensitivity: dense logits rel diff %.3e, without act quant %.3e\n", e_dense, e_noact);

    tn_llama_free(m);
    for (int i = 0; i < layout.n_tensors; i++) tn_free(src.cache[i]);
    free(src.cache);
    free(src.valid);
    tn_free(params);
    tn_free(gref);
    tn_free(grads);
    tn_free(grads2);
    tn_free(sink);
    tn_free(inputs);
    tn_free(targets);
    tn_free(mask);
    tn_free(logits_ref);
    tn_free(nll_ref);
    tn_free(logits1);
    tn_llama_layout_free(&layout);
}

int main(void) {
    run_fixture("llama_ste_ternary.h5");
    run_fixture("llama_ste_prime7_act.h5");
    run_fixture("llama_ste_tied_head.h5");
    return tn_test_finish();
}
