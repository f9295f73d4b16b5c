/* LoRA on a quantized base (model/lora.h, train/lora_base.h, export/peft.h) against the PyTorch reference
 * (tests/reference/gen_lora.py):
 *   - the adapters read from the reference's own PEFT directory equal the fixture's arrays bit for bit;
 *   - the weight source's dequantization (the ops table's primal_materialize) equals tn_qbase_dequant bit for bit;
 *   - forward through the frozen base (indices + scales dequantized one matrix at a time) plus the adapters:
 *     logits, NLL and loss within 1e-5 (relative); backward: every dL/dA, dL/dB within 1e-4; the same with
 *     recompute = layer, bit for bit; the base alone misses the reference by far more (sensitivity);
 *   - the base's indices, scales and float tensors are bit-identical after backward passes and AdamW steps;
 *   - the merged dense model (W + (alpha/r) B A, tn_lora_merge_into) gives the adapted model's logits;
 *   - dropout: its mask is the same in the forward and the backward (finite differences of the loss agree
 *     with the gradients), the same for the same (step, forward), different for another forward;
 *   - PEFT save / load round trip; bad input: rank 0, a layer the model lacks, a head target, an adapter whose
 *     shapes do not match the base. */
#include "tn_test.h"
#include "fixture_llama.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "export/peft.h"
#include "model/lora.h"
#include "optim/adamw.h"
#include "train/lora_base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL_LOGITS 1e-5
#define TOL_GRAD 1e-4

/* The base from the fixture: base/{idx,scale,grid}/<name> for quantized matrices, params/<name> otherwise. */
static void load_base(hid_t f, const tn_llama_config *cfg, tn_qbase *b) {
    memset(b, 0, sizeof *b);
    snprintf(b->kind, sizeof b->kind, "primal");
    CHECK_OK(tn_llama_layout_init(&b->layout, cfg));
    const int n = b->layout.n_tensors;
    uint8_t *ext = calloc((size_t)n, 1);
    b->lookup = malloc((size_t)n * sizeof *b->lookup);
    b->q = calloc((size_t)n, sizeof *b->q);
    for (int i = 0; i < n; i++) {
        const tn_tensor_info *t = &b->layout.tensors[i];
        char path[200];
        snprintf(path, sizeof path, "base/idx/%s", t->name);
        b->lookup[i] = -1;
        if (!tn_h5_exists(f, path)) continue;
        tn_qtensor *q = &b->q[b->n_q];
        b->lookup[i] = b->n_q++;
        ext[i] = 1;
        q->tensor = i;
        q->rows = t->shape[0];
        q->cols = t->shape[1];
        q->idx = tn_alloc(t->numel, 1);
        CHECK_OK(tn_h5_read(f, path, TN_H5_U8, 2, t->shape, q->idx));
        int rank;
        int64_t shape[TN_H5_MAX_RANK];
        float *v;
        snprintf(path, sizeof path, "base/scale/%s", t->name);
        CHECK_OK(tn_h5_read_alloc(f, path, TN_H5_F32, &rank, shape, (void **)&q->scales));
        q->n_scales = shape[0];
        snprintf(path, sizeof path, "base/grid/%s", t->name);
        CHECK_OK(tn_h5_read_alloc(f, path, TN_H5_F32, &rank, shape, (void **)&v));
        CHECK_OK(tn_grid_from_values("fixture", v, (int)shape[0], &q->grid));
        tn_free(v);
    }
    CHECK_OK(tn_llama_layout_set_external(&b->layout, ext));
    free(ext);
    b->floats = tn_alloc(b->layout.numel, sizeof(float));
    for (int i = 0; i < n; i++) {
        const tn_tensor_info *t = &b->layout.tensors[i];
        if (t->external) continue;
        char path[200];
        snprintf(path, sizeof path, "params/%s", t->name);
        CHECK_OK(tn_h5_read(f, path, TN_H5_F32, t->rank, t->shape, b->floats + t->offset));
    }
    b->crc = tn_qbase_crc(b);
}

/* "base_model.model.model.layers.<l>.<sub>.<module>.lora_<A|B>.weight" of slot s */
static void peft_name(const tn_lora *l, int s, char ab, char *buf, size_t cap) {
    snprintf(buf, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l->slot_layer[s],
             l->slot_kind[s] <= TN_W_O ? "self_attn" : "mlp", tn_lora_kind_name(l->slot_kind[s]), ab);
}

typedef struct {
    tn_llama *m;
    tn_qbase_source src;
} adapted_model;

static void model_make(adapted_model *am, const tn_qbase *b, tn_lora *l, int B, int T, int recompute) {
    tn_llama_opts o = {recompute, 0};
    CHECK_OK(tn_llama_create_opts(&am->m, &b->layout, B, T, NULL, &o));
    CHECK_OK(tn_qbase_source_open(&am->src, b, b->floats, NULL));
    tn_weight_source ws;
    tn_qbase_weight_source(&am->src, &ws);
    tn_llama_set_weight_source(am->m, &ws);
    if (l) {
        tn_llama_adapter ad;
        tn_lora_hook(l, &ad);
        tn_llama_set_adapter(am->m, &ad);
    }
}

/* loss of one forward at (step, forward 1), in double: Σ NLL / counted */
static double loss_at(adapted_model *am, tn_lora *l, const int32_t *in, const int32_t *tg, const uint8_t *mk,
                      uint64_t step) {
    tn_lora_set_step(l, step);
    float loss;
    int64_t counted;
    CHECK_OK(tn_llama_forward(am->m, am->src.params, in, tg, mk, &loss, &counted));
    return tn_llama_nll_sum(am->m) / (double)counted;
}

static void check_dropout(const tn_qbase *b, tn_lora *l, const int32_t *in, const int32_t *tg, const uint8_t *mk, int B,
                          int T) {
    adapted_model am;
    model_make(&am, b, l, B, T, 0);
    float *grads = tn_alloc(b->layout.numel, sizeof(float));
    l->spec.dropout = 0.3;
    l->training = 1;
    const double l0 = loss_at(&am, l, in, tg, mk, 7), l0b = loss_at(&am, l, in, tg, mk, 7);
    CHECKF(l0 == l0b, "same step, same mask: %.9g vs %.9g", l0, l0b);
    float dummy;
    int64_t cnt;
    CHECK_OK(tn_llama_forward(am.m, b->floats, in, tg, mk, &dummy, &cnt)); /* the step's second forward */
    const double l1 = tn_llama_nll_sum(am.m) / (double)cnt;
    CHECKF(l1 != l0, "the second forward of a step draws another mask (%.9g)", l1);
    l->training = 0;
    const double lnd = loss_at(&am, l, in, tg, mk, 7);
    CHECKF(fabs(lnd - l0) > 1e-4, "dropout changes the loss (%.6g vs %.6g)", l0, lnd);
    l->training = 1;
    /* gradients at step 7, then central differences of the loss on the largest entries of A and B of slot 0 */
    (void)loss_at(&am, l, in, tg, mk, 7);
    memset(l->grads, 0, (size_t)l->numel * sizeof(float));
    CHECK_OK(tn_llama_backward(am.m, b->floats, grads, 1.0f));
    double worst = 0;
    for (int ab = 0; ab < 2; ab++) {
        const int64_t off = ab ? l->off_b[0] : l->off_a[0], n = ab ? l->rows[0] * l->spec.rank : l->spec.rank * l->cols[0];
        for (int pick = 0; pick < 3; pick++) {
            int64_t best = -1; /* the pick-th largest |gradient| (picked ones are marked below) */
            for (int64_t i = 0; i < n; i++)
                if (isfinite(l->grads[off + i]) && (best < 0 || fabsf(l->grads[off + i]) > fabsf(l->grads[off + best]))) best = i;
            const float g = l->grads[off + best], p = l->params[off + best], eps = 1e-2f;
            l->params[off + best] = p + eps;
            const double lp = loss_at(&am, l, in, tg, mk, 7);
            l->params[off + best] = p - eps;
            const double lm = loss_at(&am, l, in, tg, mk, 7);
            l->params[off + best] = p;
            const double fd = (lp - lm) / (2.0 * (double)eps), err = fabs(fd - g) / fabs(g);
            if (err > worst) worst = err;
            l->grads[off + best] = NAN; /* not picked again */
        }
    }
    printf("dropout 0.3: loss %.6f (no dropout %.6f); finite differences vs gradients: worst relative error %.2e\n", l0,
           lnd, worst);
    CHECKF(worst < 2e-2, "finite differences disagree with the gradients under dropout: %.3g", worst);
    l->spec.dropout = 0;
    l->training = 0;
    tn_free(grads);
    tn_llama_free(am.m);
    tn_qbase_source_close(&am.src);
}

/* A PEFT directory this test wrote: its two files, then the directory. */
static void remove_adapter_dir(const char *dir) {
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int k = 0; k < 2; k++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", dir, files[k]);
        unlink(p);
    }
    rmdir(dir);
}

static void check_bad_input(const tn_llama_config *cfg, const tn_lora *l) {
    tn_lora_spec s;
    memset(&s, 0, sizeof s);
    CHECK(tn_lora_spec_parse(&s, "attn,5", cfg->n_layers) != 0);
    printf("bad layer: %s\n", tn_errmsg());
    CHECK(strstr(tn_errmsg(), "does not exist") != NULL);
    tn_lora_spec_free(&s);
    CHECK(tn_lora_spec_parse(&s, "head", cfg->n_layers) != 0);
    tn_lora_spec_free(&s);
    CHECK_OK(tn_lora_spec_parse(&s, "q_proj,-1", cfg->n_layers));
    CHECK(s.kinds == 1u << TN_W_Q && !s.layer_on[0] && s.layer_on[1]);
    s.rank = 0;
    s.alpha = 1;
    tn_lora z;
    CHECK(tn_lora_create(&z, &s, cfg, 0) != 0);
    printf("rank 0: %s\n", tn_errmsg());
    tn_lora_free(&z);
    tn_lora_spec_free(&s);

    /* an adapter for a model with another width does not load onto this base */
    tn_llama_config other = *cfg;
    other.dim = cfg->dim / 2;
    other.n_heads = cfg->n_heads / 2;
    other.n_kv_heads = 1;
    CHECK_OK(tn_lora_spec_parse(&s, "attn,mlp", other.n_layers));
    s.rank = l->spec.rank;
    s.alpha = 8;
    tn_lora w;
    CHECK_OK(tn_lora_create(&w, &s, &other, 0));
    tn_lora_spec_free(&s);
    char dir[] = "/tmp/tn_lora_bad_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_OK(tn_peft_save(dir, &w, NULL));
    tn_lora back;
    CHECK(tn_peft_load(dir, cfg, &back) != 0);
    printf("mismatched adapter: %s\n", tn_errmsg());
    CHECK(strstr(tn_errmsg(), "shape") != NULL);
    remove_adapter_dir(dir);
    tn_lora_free(&w);
}

int main(void) {
    const char *path = tn_test_fixture("lora_ref.h5"), *peft = tn_test_fixture("lora_ref_adapter");
    if (!path || access(path, R_OK) != 0) TN_SKIP("fixture lora_ref.h5 missing (run tests/reference/gen_lora.py)");
    hid_t f;
    CHECK_OK(tn_h5_open(path, &f));
    tn_llama_config cfg;
    CHECK_OK(tn_fixture_read_config(f, &cfg));
    tn_qbase b;
    load_base(f, &cfg, &b);
    printf("base: %d quantized matrices, %lld float values\n", b.n_q, (long long)b.layout.numel);
    { /* the weight source's dequantization (the table's primal_materialize) is tn_qbase_dequant, bit for bit */
        tn_qbase_source src;
        CHECK_OK(tn_qbase_source_open(&src, &b, b.floats, NULL));
        long differ = 0;
        for (int k = 0; k < b.n_q; k++) {
            const int64_t n = b.q[k].rows * b.q[k].cols;
            float *w1 = tn_alloc((size_t)n, sizeof(float)), *w2 = tn_alloc((size_t)n, sizeof(float));
            tn_qbase_dequant(&b, k, w1);
            CHECK_OK(tn_ops_cpu()->primal_materialize(&src.views[k], w2));
            differ += memcmp(w1, w2, (size_t)n * sizeof(float)) != 0;
            tn_free(w1);
            tn_free(w2);
        }
        uint32_t crc;
        CHECK_OK(tn_qbase_source_crc(&src, &crc));
        CHECKF(differ == 0 && crc == b.crc, "%ld matrices differ from tn_qbase_dequant; CRC32 %08x vs %08x", differ, crc, b.crc);
        tn_qbase_source_close(&src);
    }

    /* adapters from the reference's PEFT directory, checked against the fixture's arrays */
    tn_lora l;
    CHECK_OK(tn_peft_load(peft, &cfg, &l));
    int rank;
    CHECK_OK(tn_fixture_get_int(f, "rank", &rank));
    CHECK(l.spec.rank == rank && l.n_slots == 2 * 5 && fabsf(l.scale - 2.0f) == 0);
    long diff = 0;
    for (int s = 0; s < l.n_slots; s++)
        for (int ab = 0; ab < 2; ab++) {
            char name[160], p[200];
            peft_name(&l, s, ab ? 'B' : 'A', name, sizeof name);
            const int64_t n = ab ? l.rows[s] * rank : rank * l.cols[s], shape[2] = {ab ? l.rows[s] : rank, ab ? rank : l.cols[s]};
            float *ref = tn_alloc((size_t)n, sizeof(float));
            snprintf(p, sizeof p, "adapter/%s", name);
            CHECK_OK(tn_h5_read(f, p, TN_H5_F32, 2, shape, ref));
            diff += memcmp(ref, l.params + (ab ? l.off_b[s] : l.off_a[s]), (size_t)n * sizeof(float)) != 0;
            tn_free(ref);
        }
    CHECKF(diff == 0, "%ld adapter tensors differ from the fixture", diff);

    int64_t shape[TN_H5_MAX_RANK];
    int nd;
    CHECK_OK(tn_h5_shape(f, "inputs", &nd, shape));
    const int B = (int)shape[0], T = (int)shape[1], V = cfg.vocab_size;
    const int64_t N = (int64_t)B * T;
    int32_t *in = tn_alloc((size_t)N, 4), *tg = tn_alloc((size_t)N, 4);
    uint8_t *mk = tn_alloc((size_t)N, 1);
    float *logits_ref = tn_alloc((size_t)(N * V), 4), *nll_ref = tn_alloc((size_t)N, 4), loss_ref;
    CHECK_OK(tn_h5_read(f, "inputs", TN_H5_I32, 2, shape, in));
    CHECK_OK(tn_h5_read(f, "targets", TN_H5_I32, 2, shape, tg));
    CHECK_OK(tn_h5_read(f, "mask", TN_H5_U8, 2, shape, mk));
    const int64_t lshape[3] = {B, T, V}, one = 1;
    CHECK_OK(tn_h5_read(f, "logits", TN_H5_F32, 3, lshape, logits_ref));
    CHECK_OK(tn_h5_read(f, "nll", TN_H5_F32, 2, shape, nll_ref));
    CHECK_OK(tn_h5_read(f, "loss", TN_H5_F32, 1, &one, &loss_ref));
    float *floats0 = tn_alloc(b.layout.numel, sizeof(float));
    memcpy(floats0, b.floats, b.layout.numel * sizeof(float));

    /* forward and backward, kept and recomputed activations */
    float *grads = tn_alloc(b.layout.numel, sizeof(float)), *g0 = tn_alloc((size_t)l.numel, sizeof(float));
    for (int recompute = 0; recompute < 2; recompute++) {
        adapted_model am;
        model_make(&am, &b, &l, B, T, recompute);
        float loss;
        int64_t counted;
        CHECK_OK(tn_llama_forward(am.m, b.floats, in, tg, mk, &loss, &counted));
        const double el = tn_test_rel_err(tn_llama_logits(am.m), logits_ref, (size_t)(N * V)),
                     en = tn_test_rel_err(tn_llama_nll(am.m), nll_ref, (size_t)N);
        memset(grads, 0, b.layout.numel * sizeof(float));
        memset(l.grads, 0, (size_t)l.numel * sizeof(float));
        CHECK_OK(tn_llama_backward(am.m, b.floats, grads, 1.0f));
        double eg = 0;
        for (int s = 0; s < l.n_slots; s++)
            for (int ab = 0; ab < 2; ab++) {
                char name[160], p[200];
                peft_name(&l, s, ab ? 'B' : 'A', name, sizeof name);
                const int64_t n = ab ? l.rows[s] * rank : rank * l.cols[s],
                              sh[2] = {ab ? l.rows[s] : rank, ab ? rank : l.cols[s]};
                float *ref = tn_alloc((size_t)n, sizeof(float));
                snprintf(p, sizeof p, "grads/%s", name);
                CHECK_OK(tn_h5_read(f, p, TN_H5_F32, 2, sh, ref));
                const double e = tn_test_rel_err(l.grads + (ab ? l.off_b[s] : l.off_a[s]), ref, (size_t)n);
                CHECKF(e < TOL_GRAD, "%s: gradient relative error %.3g", name, e);
                if (e > eg) eg = e;
                tn_free(ref);
            }
        printf("recompute %d: loss %.7f (reference %.7f); logits %.2e, nll %.2e, adapter gradients %.2e (relative)\n",
               recompute, loss, loss_ref, el, en, eg);
        CHECK(el < TOL_LOGITS && en < TOL_LOGITS && fabs(loss - loss_ref) <= TOL_LOGITS * fabs(loss_ref));
        if (recompute == 0) memcpy(g0, l.grads, (size_t)l.numel * sizeof(float));
        else CHECKF(!memcmp(g0, l.grads, (size_t)l.numel * sizeof(float)), "recompute = layer changes the gradients");
        tn_llama_free(am.m);
        tn_qbase_source_close(&am.src);
    }

    /* sensitivity, then three AdamW steps on the adapters: the base does not move */
    {
        adapted_model am;
        model_make(&am, &b, NULL, B, T, 0);
        float loss;
        int64_t counted;
        CHECK_OK(tn_llama_forward(am.m, b.floats, in, tg, mk, &loss, &counted));
        const double e = tn_test_rel_err(tn_llama_logits(am.m), logits_ref, (size_t)(N * V));
        printf("the base without its adapters misses the reference logits by %.2e\n", e);
        CHECK(e > 100 * TOL_LOGITS);
        tn_llama_free(am.m);
        tn_qbase_source_close(&am.src);
        model_make(&am, &b, &l, B, T, 0);
        float *m = tn_alloc((size_t)l.numel, 4), *v = tn_alloc((size_t)l.numel, 4), *p0 = tn_alloc((size_t)l.numel, 4);
        memset(m, 0, (size_t)l.numel * 4);
        memset(v, 0, (size_t)l.numel * 4);
        memcpy(p0, l.params, (size_t)l.numel * 4);
        tn_adamw_hparams h = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f};
        float first = 0, last = 0;
        for (int step = 1; step <= 3; step++) {
            memset(l.grads, 0, (size_t)l.numel * 4);
            CHECK_OK(tn_llama_forward(am.m, b.floats, in, tg, mk, &loss, &counted));
            CHECK_OK(tn_llama_backward(am.m, b.floats, grads, 1.0f));
            tn_adamw_update(l.params, l.grads, m, v, l.numel, &h, step, 1);
            if (step == 1) first = loss;
            last = loss;
        }
        printf("three AdamW steps on the adapters: loss %.5f -> %.5f; base CRC32 %08x -> %08x\n", first, last, b.crc,
               tn_qbase_crc(&b));
        CHECK(last < first);
        CHECK(tn_qbase_crc(&b) == b.crc);
        CHECK(!memcmp(floats0, b.floats, b.layout.numel * sizeof(float)));
        memcpy(l.params, p0, (size_t)l.numel * 4);
        tn_free(m);
        tn_free(v);
        tn_free(p0);
        tn_llama_free(am.m);
        tn_qbase_source_close(&am.src);
    }

    /* the merged dense model equals the adapted one */
    {
        tn_llama_layout dl;
        CHECK_OK(tn_llama_layout_init(&dl, &cfg));
        float *P = tn_alloc(dl.numel, sizeof(float));
        for (int i = 0; i < dl.n_tensors; i++) {
            const tn_tensor_info *t = &dl.tensors[i];
            if (b.lookup[i] >= 0) tn_qbase_dequant(&b, b.lookup[i], P + t->offset);
            else memcpy(P + t->offset, b.floats + b.layout.tensors[i].offset, t->numel * sizeof(float));
            const int s = t->layer >= 0 && t->kind >= 0 ? tn_lora_slot(&l, t->layer, t->kind) : -1;
            if (s >= 0)
                tn_lora_merge_into(P + t->offset, l.params + l.off_a[s], l.params + l.off_b[s], l.rows[s], l.cols[s],
                                   l.spec.rank, l.spec.alpha / l.spec.rank);
        }
        tn_llama *m;
        CHECK_OK(tn_llama_create(&m, &dl, B, T, NULL));
        float loss;
        int64_t counted;
        CHECK_OK(tn_llama_forward(m, P, in, tg, mk, &loss, &counted));
        const double e = tn_test_rel_err(tn_llama_logits(m), logits_ref, (size_t)(N * V));
        printf("merged dense model: loss %.7f, logits %.2e from the reference\n", loss, e);
        CHECK(e < TOL_LOGITS);
        tn_llama_free(m);
        tn_free(P);
        tn_llama_layout_free(&dl);
    }

    check_dropout(&b, &l, in, tg, mk, B, T);

    /* PEFT round trip */
    {
        char dir[] = "/tmp/tn_lora_peft_XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        CHECK_OK(tn_peft_save(dir, &l, "base.h5"));
        tn_lora back;
        CHECK_OK(tn_peft_load(dir, &cfg, &back));
        CHECK(back.numel == l.numel && back.spec.kinds == l.spec.kinds && back.spec.rank == l.spec.rank &&
              back.spec.alpha == l.spec.alpha && !memcmp(back.params, l.params, (size_t)l.numel * sizeof(float)));
        tn_lora_free(&back);
        remove_adapter_dir(dir);
    }
    check_bad_input(&cfg, &l);

    tn_free(in);
    tn_free(tg);
    tn_free(mk);
    tn_free(logits_ref);
    tn_free(nll_ref);
    tn_free(grads);
    tn_free(g0);
    tn_free(floats0);
    tn_lora_free(&l);
    tn_qbase_free(&b);
    tn_h5_close(f);
    return tn_test_finish();
}
