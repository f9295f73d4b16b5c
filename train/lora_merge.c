/* `trinity merge` (train/lora_merge.h). */
#include "train/lora_merge.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/h5.h"
#include "export/export_trin.h"
#include "export/peft.h"
#include "model/lora.h"
#include "optim/primal.h"
#include "quant/snap.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/lora_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tn_merge_opts_default(tn_merge_opts *o) {
    memset(o, 0, sizeof *o);
    o->strength = 1.0;
}

/* The re-quantized matrices, saved as PRIMAL ghost tensors (no votes: zeros). */
typedef struct {
    const tn_qbase *b;
} ghost_ctx;

static int save_ghosts(void *vctx, hid_t g) {
    const ghost_ctx *c = vctx;
    TN_CHECK(tn_h5_attr_set_str(g, ".", "format", "trinity-merge"));
    for (int k = 0; k < c->b->n_q; k++) {
        const tn_qtensor *q = &c->b->q[k];
        const char *name = c->b->layout.tensors[q->tensor].name;
        int8_t *vote = tn_alloc((size_t)(q->rows * q->cols), 1);
        if (!vote) return -1;
        memset(vote, 0, (size_t)(q->rows * q->cols));
        tn_primal_tensor t = {q->rows, q->cols, q->rows * q->cols, &q->grid, 0, q->n_scales != 1, q->n_scales,
                              q->idx, vote, q->scales, 0};
        hid_t sub = -1;
        int rc = tn_h5_group(g, name, &sub);
        if (rc == 0) rc = tn_primal_save(&t, sub);
        if (sub >= 0) H5Gclose(sub);
        tn_free(vote);
        if (rc) return tn_err_prefix("%s", name);
    }
    return 0;
}

static int save_spec(void *vctx, hid_t g) { return tn_quant_spec_save(vctx, g); }

/* Dense parameters of the whole model (dense layout dl) from the base: floats and dequantized matrices. */
static int densify(const tn_qbase *b, const tn_llama_layout *dl, float *P) {
    for (int i = 0; i < dl->n_tensors; i++) {
        const tn_tensor_info *t = &dl->tensors[i], *bt = &b->layout.tensors[i];
        if (b->lookup[i] >= 0) tn_qbase_dequant(b, b->lookup[i], P + t->offset);
        else memcpy(P + t->offset, b->floats + bt->offset, t->numel * sizeof(float));
    }
    return 0;
}

/* Mean loss of the dense model P (with adapter l at its current scale when l != NULL) over the shard. */
static int shard_loss(const tn_llama_layout *dl, const float *P, tn_lora *l, const tn_shard *s, const tn_merge_opts *o,
                      double *loss, int64_t *counted) {
    const tn_llama_config *c = &dl->cfg;
    const int T = o->seq_len > 0 ? o->seq_len : (c->max_seq_len < 512 ? c->max_seq_len : 512);
    if (T > c->max_seq_len) return tn_err("--seq-len %d exceeds the model's max_seq_len %d", T, c->max_seq_len);
    tn_llama *m;
    tn_llama_opts mo = {0, 1};
    TN_CHECK(tn_llama_create_opts(&m, dl, 4, T, NULL, &mo));
    if (l) {
        tn_llama_adapter ad;
        tn_lora_hook(l, &ad);
        tn_llama_set_adapter(m, &ad);
    }
    int rc = tn_eval_shard(m, P, s, o->max_windows, loss, counted);
    tn_llama_free(m);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int merge(tn_qbase *b, tn_lora *l, const char *base, const char *adapter, const char *out, const tn_merge_opts *o,
                 tn_merge_report *rep) {
    const tn_llama_config *cfg = &b->layout.cfg;
    tn_llama_layout dl;
    memset(&dl, 0, sizeof dl);
    float *P0 = NULL, *P1 = NULL, *W = NULL;
    uint8_t *idx = NULL;
    tn_shard shard;
    tn_checkpoint sh; /* an STE base's shadow weights (dense layout), when the merge re-snaps them */
    memset(&sh, 0, sizeof sh);
    int have_shard = 0, rc = 0;
    const double coef = o->strength * l->spec.alpha / l->spec.rank;
    rep->shadows = !o->dense && !o->keep_scale && b->is_ste;
    if (rep->shadows) rc = tn_ckpt_load(base, &sh, NULL, 0);
    if (o->data) {
        rc = tn_shard_load(o->data, &shard);
        have_shard = rc == 0;
        if (rc == 0 && shard.vocab_size > cfg->vocab_size)
            rc = tn_err("%s: vocab_size %lld is larger than the model's %d", o->data, (long long)shard.vocab_size,
                        cfg->vocab_size);
    }
    if (rc == 0) rc = tn_llama_layout_init(&dl, cfg);
    if (rc == 0 && (o->data || o->dense)) { /* the dense base, and room for the merged model */
        P0 = tn_alloc(dl.numel, sizeof(float));
        P1 = tn_alloc(dl.numel, sizeof(float));
        rc = P0 && P1 ? densify(b, &dl, P0) : -1;
    }
    if (rc == 0 && o->data) {
        rc = shard_loss(&dl, P0, NULL, &shard, o, &rep->loss_base, &rep->tokens);
        l->scale = (float)coef; /* the adapter at the merge's strength: what the merge approximates */
        l->training = 0;
        if (rc == 0) rc = shard_loss(&dl, P0, l, &shard, o, &rep->loss_adapter, &rep->tokens);
    }

    /* W' per adapted matrix, then its new indices (or its dense values) */
    int64_t largest = 0;
    for (int s = 0; s < l->n_slots; s++)
        if (l->rows[s] * l->cols[s] > largest) largest = l->rows[s] * l->cols[s];
    if (rc == 0 && (!(W = tn_alloc((size_t)largest, sizeof(float))) || !(idx = tn_alloc((size_t)largest, 1)))) rc = -1;
    for (int s = 0; rc == 0 && s < l->n_slots; s++) {
        const int i = tn_llama_layout_index(&b->layout, l->slot_layer[s], l->slot_kind[s]);
        const int k = b->lookup[i];
        const tn_tensor_info *t = &b->layout.tensors[i];
        const int64_t rows = l->rows[s], cols = l->cols[s];
        rep->n_adapted++;
        /* W' = W + coef · B A, W the shadow weight (re-snapped by the run's rule) or the base's weight */
        float *Wm = rep->shadows ? sh.params + sh.layout.tensors[i].offset : W;
        if (!rep->shadows && k < 0) memcpy(W, b->floats + t->offset, (size_t)(rows * cols) * sizeof(float));
        else if (!rep->shadows) tn_qbase_dequant(b, k, W);
        tn_lora_merge_into(Wm, l->params + l->off_a[s], l->params + l->off_b[s], rows, cols, l->spec.rank, coef);
        if (o->dense || k < 0) { /* fp32: into the dense parameters, or the base's float tensor */
            if (o->dense) memcpy(P0 + dl.tensors[i].offset, Wm, (size_t)(rows * cols) * sizeof(float));
            else memcpy(b->floats + t->offset, Wm, (size_t)(rows * cols) * sizeof(float));
            continue;
        }
        tn_qtensor *q = &b->q[k];
        if (rep->shadows) { /* as the STE run snaps: the scale by its rule, then the nearest grid points */
            rc = tn_quantize_tensor(Wm, rows, cols, &b->spec.grid, b->spec.rule, b->spec.per_row, NULL, idx, q->scales);
            if (rc) {
                tn_err_prefix("%s", t->name);
                break;
            }
        } else { /* the base's scales, kept */
            for (int64_t r = 0; r < rows; r++)
                tn_grid_snap(&q->grid, Wm + r * cols, cols, q->scales[q->n_scales == 1 ? 0 : r], idx + r * cols);
        }
        for (int64_t j = 0; j < rows * cols; j++) rep->n_changed += idx[j] != q->idx[j];
        memcpy(q->idx, idx, (size_t)(rows * cols));
        rep->n_requantized++;
        rep->n_weights += rows * cols;
    }
    if (rc == 0 && o->data) {
        if (!o->dense) rc = densify(b, &dl, P1); /* the re-quantized model as eval will run it */
        if (rc == 0) rc = shard_loss(&dl, o->dense ? P0 : P1, NULL, &shard, o, &rep->loss_merged, &rep->tokens);
        rep->has_loss = rc == 0;
    }

    /* the checkpoint (for a .trin, a temporary one beside OUT, exported, then removed) */
    char *tmp = NULL;
    const int trin = ends_with(out, ".trin");
    if (rc == 0 && trin) {
        const size_t n = strlen(out) + 64;
        if (!(tmp = malloc(n))) rc = tn_err("out of memory");
        else snprintf(tmp, n, "%s.merge-%ld.h5", out, (long)getpid());
    }
    char provenance[3000];
    snprintf(provenance, sizeof provenance, "# trinity merge %s %s --strength %g%s%s\n", base, adapter, o->strength,
             o->dense ? " --dense" : "", o->keep_scale ? " --keep-scale" : "");
    /* dense: every tensor fp32; an STE base re-snapped: its shadow weights and /quant, an STE checkpoint again;
     * otherwise the re-quantized matrices as /primal groups */
    tn_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    ck.layout = o->dense ? dl : rep->shadows ? sh.layout : b->layout;
    ck.params = o->dense ? P0 : rep->shadows ? sh.params : b->floats;
    ck.config_text = provenance;
    ck.tokenizer = b->tokenizer;
    ck.tokenizer_len = b->tokenizer_len;
    memcpy(ck.tokenizer_format, b->tokenizer_format, sizeof ck.tokenizer_format);
    ghost_ctx gc = {b};
    tn_ckpt_hook hook = rep->shadows ? (tn_ckpt_hook){"quant", save_spec, NULL, &b->spec}
                                      : (tn_ckpt_hook){"primal", save_ghosts, NULL, &gc};
    if (rc == 0) rc = tn_ckpt_save(trin ? tmp : out, &ck, &hook, o->dense ? 0 : 1);
    if (rc == 0 && trin) {
        tn_export_opts eo;
        tn_export_report er;
        tn_export_opts_default(&eo);
        rc = tn_export_trin(tmp, out, &eo, &er);
    }
    if (tmp) unlink(tmp);
    free(tmp);
    tn_free(W);
    tn_free(idx);
    tn_ckpt_free(&sh);
    tn_free(P0);
    tn_free(P1);
    tn_llama_layout_free(&dl);
    if (have_shard) tn_shard_free(&shard);
    return rc;
}

int tn_lora_merge(const char *base, const char *adapter, const char *out, const tn_merge_opts *o, tn_merge_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!(o->strength >= 0 && o->strength <= 1000)) return tn_err("--strength %g: must be in [0, 1000]", o->strength);
    tn_qbase b;
    TN_CHECK(tn_qbase_load(&b, base));
    snprintf(rep->base_kind, sizeof rep->base_kind, "%s", b.kind);
    tn_lora l;
    int rc = tn_peft_load(adapter, &b.layout.cfg, &l);
    if (rc == 0) {
        rc = merge(&b, &l, base, adapter, out, o, rep);
        tn_lora_free(&l);
    }
    tn_qbase_free(&b);
    return rc;
}
