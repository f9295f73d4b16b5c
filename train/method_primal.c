/* PRIMAL pre-training in the loop: ghost tensors have no fp32 copy (they are external in the layout);
 * the weight source materialises one at a time into the model's scratch, and their gradients go to the
 * ops table's PRIMAL entries as votes and scale gradients, never into a float buffer. The float
 * parameters (embeddings, norms, non-ghost layers) and the ghost scales are trained by AdamW. The rule
 * itself is in optim/primal.h. Indices, votes and scales live in the device's memory (ops table); the
 * host draws the flip keys (one tn_rng_u64 per tensor per step, in layout order) and checks the scales. */
#include "train/quant_spec.h"
#include "train/run.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/json.h"
#include "core/log.h"
#include "optim/adamw8.h"
#include "optim/primal.h"
#include "quant/pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

typedef struct {
    tn_run *r;
    const tn_ops *ops;
    tn_primal_opts o;
    tn_flip_rule rule;
    tn_grid coarse, fine;
    unsigned ghost_groups, fine_groups;
    uint8_t *fine_layer;      /* [n_layers] 1 = this layer's ghost tensors use the fine grid */
    int n_g;
    int *tensor;              /* [n_g] layout index */
    int *lookup;              /* [n_tensors] ghost slot or -1 */
    tn_primal_tensor *t;      /* [n_g]: shape and grid; idx, vote and scale point into table memory */
    int64_t *scale_off;       /* [n_g] offset into the scale arrays */
    int64_t n_scales, n_weights, idx_bytes, vote_bytes;
    float *scale, *scale_grad, *scale_m, *scale_v; /* [n_scales] each, table memory */
    float *host_scale;        /* [n_scales] host copy for the finiteness check and telemetry */
    int64_t voters, flipped, voted; /* telemetry of the last step */
} primal_ctx;

static int64_t idx_bytes_of(const primal_ctx *c, int64_t n) {
    return c->o.packed_indices ? (int64_t)tn_pack4_bytes(n) : n;
}

static const float *pr_weight(void *vctx, int layer, tn_linear_kind kind, float *scratch) {
    primal_ctx *c = vctx;
    int i = tn_llama_layout_index(&c->r->layout, layer, (int)kind);
    int g = c->lookup[i];
    if (g < 0) return c->r->params + c->r->layout.tensors[i].offset;
    const tn_ghost_view v = tn_primal_view(&c->t[g]);
    if (c->ops->primal_materialize(&v, scratch) != 0) {
        tn_err_prefix("%s", c->r->layout.tensors[i].name);
        return NULL;
    }
    return scratch;
}

static int pr_weight_grad(void *vctx, int layer, tn_linear_kind kind, const float *G) {
    primal_ctx *c = vctx;
    int i = tn_llama_layout_index(&c->r->layout, layer, (int)kind);
    int g = c->lookup[i];
    const tn_tensor_info *ti = &c->r->layout.tensors[i];
    if (g < 0) /* a float matrix: accumulate as dense training would */
        return c->ops->add(c->r->grads + ti->offset, G, (int64_t)ti->numel);
    int64_t voters = 0;
    const tn_ghost_view v = tn_primal_view(&c->t[g]);
    if (c->ops->primal_accumulate(&v, G, c->o.z, c->scale_grad + c->scale_off[g], &voters) != 0)
        return tn_err_prefix("%s", ti->name);
    c->voters += voters;
    return 0;
}

static int pr_is_ghost(void *vctx, int layer, tn_linear_kind kind) {
    primal_ctx *c = vctx;
    return c->lookup[tn_llama_layout_index(&c->r->layout, layer, (int)kind)] >= 0;
}

static int pr_begin_step(tn_run *r, void *vctx) {
    primal_ctx *c = vctx;
    c->voters = 0;
    /* Data parallel: the votes kept from the last step (vote_decay > 0; identical on every rank) are counted
     * once, on rank 0; the other ranks start the step from zero, so that the sum over ranks is
     * kept + this step's votes, as in one process (docs/SCALE.md). */
    if (r->comm->rank != 0)
        for (int g = 0; g < c->n_g; g++) TN_CHECK(c->ops->zero(c->t[g].vote, (size_t)c->t[g].n));
    return c->ops->zero(c->scale_grad, (size_t)c->n_scales * sizeof *c->scale_grad);
}

/* Data parallel: every rank's votes summed as integers and saturated to ±127 once, the scale gradients
 * summed, and the voter count (telemetry) made the step's. */
static int pr_reduce(tn_run *r, void *vctx) {
    primal_ctx *c = vctx;
    for (int g = 0; g < c->n_g; g++) TN_CHECK(tn_comm_sum(r->comm, c->t[g].vote, c->t[g].n, TN_COMM_VOTES));
    TN_CHECK(tn_comm_sum(r->comm, c->scale_grad, c->n_scales, TN_COMM_F32));
    double voters = (double)c->voters;
    TN_CHECK(tn_comm_sum_host(r->comm, &voters, 1));
    c->voters = (int64_t)voters;
    return 0;
}

static float *pr_float_grads(void *vctx) { return ((primal_ctx *)vctx)->scale_grad; }

/* AdamW on the float parameters and the scales, then the flip rule on every ghost tensor in layout
 * order (one RNG draw each, on the host), which clears the votes. */
static int pr_step(tn_run *r, void *vctx, double lr) {
    primal_ctx *c = vctx;
    TN_CHECK(tn_run_adamw_params(r, lr, 0));
    tn_adamw_hparams h = r->adam;
    h.lr = (float)lr;
    /* The scale gradients are the step's token mean: backward weighs micro-batch a by counted_a / total. */
    const tn_adamw_step st = tn_adamw_step_of(&h, r->step, 0);
    TN_CHECK(c->ops->adamw(c->scale, c->scale_grad, c->scale_m, c->scale_v, c->n_scales, &st));
    TN_CHECK(c->ops->download(c->host_scale, c->scale, (size_t)c->n_scales * sizeof(float)));
    c->flipped = c->voted = 0;
    for (int g = 0; g < c->n_g; g++) {
        const char *name = r->layout.tensors[c->tensor[g]].name;
        if (tn_primal_check_scales(c->host_scale + c->scale_off[g], c->t[g].n_scales) != 0)
            return tn_err_prefix("%s", name);
        const uint64_t key = tn_rng_u64(&r->rng); /* the tensor's one draw */
        int64_t voted = 0, flipped = 0;
        const tn_ghost_view v = tn_primal_view(&c->t[g]);
        if (c->ops->primal_flip(&v, key, &c->rule, &voted, &flipped) != 0) return tn_err_prefix("%s", name);
        c->voted += voted;
        c->flipped += flipped;
    }
    return 0;
}

/* Mean |scale| over the ghost tensors of a group (host copy of the scales after the last step). */
static double mean_abs_scale(const primal_ctx *c, tn_param_group grp, int *any) {
    double s = 0;
    int64_t n = 0;
    for (int g = 0; g < c->n_g; g++) {
        if (c->r->layout.tensors[c->tensor[g]].group != grp) continue;
        for (int64_t k = 0; k < c->t[g].n_scales; k++) s += fabsf(c->host_scale[c->scale_off[g] + k]);
        n += c->t[g].n_scales;
    }
    *any = n > 0;
    return n ? s / (double)n : 0;
}

static void pr_log(tn_run *r, void *vctx, cJSON *o) {
    (void)r;
    primal_ctx *c = vctx;
    tn_json_add_num(o, "flip_rate", (double)c->flipped / (double)c->n_weights);
    tn_json_add_num(o, "vote_rate", (double)c->voted / (double)c->n_weights);
    int any;
    double s = mean_abs_scale(c, TN_GROUP_ATTN, &any);
    if (any) tn_json_add_num(o, "scale_attn", s);
    s = mean_abs_scale(c, TN_GROUP_MLP, &any);
    if (any) tn_json_add_num(o, "scale_mlp", s);
    s = mean_abs_scale(c, TN_GROUP_HEAD, &any);
    if (any) tn_json_add_num(o, "scale_head", s);
}

/* A host tensor with the same shape and grid as ghost g (for checkpoint I/O); its arrays are tn_alloc'd. */
static int host_twin(const primal_ctx *c, int g, tn_primal_tensor *h) {
    *h = c->t[g];
    h->idx = tn_alloc((size_t)idx_bytes_of(c, h->n), 1);
    h->vote = tn_alloc((size_t)h->n, 1);
    h->scale = tn_alloc((size_t)h->n_scales, sizeof(float));
    h->owns_scale = 1;
    if (!h->idx || !h->vote || !h->scale) {
        tn_primal_tensor_free(h);
        return -1;
    }
    return 0;
}

static int download_state(const primal_ctx *c, int g, tn_primal_tensor *h) {
    const tn_primal_tensor *d = &c->t[g];
    TN_CHECK(c->ops->download(h->idx, d->idx, (size_t)idx_bytes_of(c, d->n)));
    TN_CHECK(c->ops->download(h->vote, d->vote, (size_t)d->n));
    return c->ops->download(h->scale, d->scale, (size_t)d->n_scales * sizeof(float));
}

static int upload_state(const primal_ctx *c, int g, const tn_primal_tensor *h) {
    const tn_primal_tensor *d = &c->t[g];
    TN_CHECK(c->ops->upload(d->idx, h->idx, (size_t)idx_bytes_of(c, d->n)));
    TN_CHECK(c->ops->upload(d->vote, h->vote, (size_t)d->n));
    return c->ops->upload(d->scale, h->scale, (size_t)d->n_scales * sizeof(float));
}

/* Checkpoint: /primal/<tensor name>/{idx, vote, scale, grid, scale_adam_m, scale_adam_v}, through the host
 * one tensor at a time. */
static int pr_save(void *vctx, hid_t group) {
    primal_ctx *c = vctx;
    TN_CHECK(tn_h5_attr_set_str(group, ".", "format", "trinity-primal-run"));
    for (int g = 0; g < c->n_g; g++) {
        const char *name = c->r->layout.tensors[c->tensor[g]].name;
        int64_t n = c->t[g].n_scales;
        tn_primal_tensor h;
        TN_CHECK(host_twin(c, g, &h));
        float *mv = tn_alloc((size_t)(2 * n), sizeof(float));
        hid_t sub = -1;
        int rc = mv ? download_state(c, g, &h) : -1;
        if (rc == 0) rc = c->ops->download(mv, c->scale_m + c->scale_off[g], (size_t)n * sizeof(float));
        if (rc == 0) rc = c->ops->download(mv + n, c->scale_v + c->scale_off[g], (size_t)n * sizeof(float));
        if (rc == 0) rc = tn_h5_group(group, name, &sub);
        if (rc == 0) rc = tn_primal_save(&h, sub);
        if (rc == 0) rc = tn_h5_write(sub, "scale_adam_m", TN_H5_F32, 1, &n, mv, 0);
        if (rc == 0) rc = tn_h5_write(sub, "scale_adam_v", TN_H5_F32, 1, &n, mv + n, 0);
        if (sub >= 0) H5Gclose(sub);
        tn_primal_tensor_free(&h);
        tn_free(mv);
        if (rc) return tn_err_prefix("%s", name);
    }
    return 0;
}

static int pr_load(void *vctx, hid_t group) {
    primal_ctx *c = vctx;
    for (int g = 0; g < c->n_g; g++) {
        const char *name = c->r->layout.tensors[c->tensor[g]].name;
        if (!tn_h5_exists(group, name)) return tn_err("missing ghost tensor %s", name);
        int64_t n = c->t[g].n_scales;
        tn_primal_tensor h;
        TN_CHECK(host_twin(c, g, &h));
        float *mv = tn_alloc((size_t)(2 * n), sizeof(float));
        hid_t sub = -1;
        int rc = mv ? tn_h5_group(group, name, &sub) : -1;
        if (rc == 0) rc = tn_primal_load(&h, sub);
        if (rc == 0) rc = tn_h5_read(sub, "scale_adam_m", TN_H5_F32, 1, &n, mv);
        if (rc == 0) rc = tn_h5_read(sub, "scale_adam_v", TN_H5_F32, 1, &n, mv + n);
        if (rc == 0) rc = upload_state(c, g, &h);
        if (rc == 0) rc = c->ops->upload(c->scale_m + c->scale_off[g], mv, (size_t)n * sizeof(float));
        if (rc == 0) rc = c->ops->upload(c->scale_v + c->scale_off[g], mv + n, (size_t)n * sizeof(float));
        if (rc == 0) memcpy(c->host_scale + c->scale_off[g], h.scale, (size_t)n * sizeof(float));
        if (sub >= 0) H5Gclose(sub);
        tn_primal_tensor_free(&h);
        tn_free(mv);
        if (rc) return tn_err_prefix("%s", name);
    }
    return 0;
}

static void pr_destroy(void *vctx) {
    primal_ctx *c = vctx;
    if (!c) return;
    for (int g = 0; c->t && g < c->n_g; g++) {
        if (c->ops) {
            c->ops->free(c->t[g].idx);
            c->ops->free(c->t[g].vote);
        }
    }
    if (c->ops) {
        c->ops->free(c->scale);
        c->ops->free(c->scale_grad);
        c->ops->free(c->scale_m);
        c->ops->free(c->scale_v);
    }
    tn_free(c->host_scale);
    free(c->t);
    free(c->tensor);
    free(c->lookup);
    free(c->scale_off);
    free(c->fine_layer);
    free(c);
}

/* fine_layers: group names (attn, mlp, head) and/or layer indices (negative counts from the end). */
static int parse_fine(primal_ctx *c, const char *list, int n_layers) {
    char buf[512];
    if (strlen(list) >= sizeof buf) return tn_err("[primal] fine_layers: too long");
    strcpy(buf, list);
    for (char *tok = strtok(buf, ", \t"); tok; tok = strtok(NULL, ", \t")) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end == '\0') {
            if (v < 0) v += n_layers;
            if (v < 0 || v >= n_layers) return tn_err("[primal] fine_layers: layer %s out of range", tok);
            c->fine_layer[v] = 1;
        } else {
            unsigned g;
            if (tn_quant_parse_groups(tok, &g) != 0) return tn_err_prefix("[primal] fine_layers");
            c->fine_groups |= g;
        }
    }
    return 0;
}

int tn_method_primal_init(tn_run *r, tn_method *m) {
    primal_ctx *c = calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    memset(m, 0, sizeof *m);
    m->ctx = c;
    m->destroy = pr_destroy;
    m->name = "primal";
    c->r = r;
    tn_llama_layout *l = &r->layout;
    if (r->host_init) return tn_err("[optim] method = primal trains from scratch; remove [model] init");
    TN_CHECK(tn_primal_opts_from_config(r->ini, &c->o));
    c->rule = tn_primal_rule(&c->o);
    if (tn_grid_resolve(tn_config_str(r->ini, "primal", "grid", "primal15"), &c->coarse) != 0)
        return tn_err_prefix("[primal] grid");
    if (tn_grid_resolve(tn_config_str(r->ini, "primal", "fine_grid", "primal25"), &c->fine) != 0)
        return tn_err_prefix("[primal] fine_grid");
    if (tn_quant_parse_groups(tn_config_str(r->ini, "primal", "ghost_layers", "attn,mlp"), &c->ghost_groups) != 0)
        return tn_err_prefix("[primal] ghost_layers");
    if (!(c->fine_layer = calloc((size_t)l->cfg.n_layers, 1))) return tn_err("out of memory");
    TN_CHECK(parse_fine(c, tn_config_str(r->ini, "primal", "fine_layers", ""), l->cfg.n_layers));
    if ((c->ghost_groups & (1u << TN_GROUP_HEAD)) && l->cfg.tied_embeddings)
        return tn_err("[primal] ghost_layers: a tied head is the embedding, which stays fp32; untie the model "
                      "([model] tied_embeddings = false) or drop 'head'");

    uint8_t *ext = calloc((size_t)l->n_tensors, 1);
    c->tensor = calloc((size_t)l->n_tensors, sizeof *c->tensor);
    c->lookup = calloc((size_t)l->n_tensors, sizeof *c->lookup);
    c->scale_off = calloc((size_t)l->n_tensors, sizeof *c->scale_off);
    c->t = calloc((size_t)l->n_tensors, sizeof *c->t);
    if (!ext || !c->tensor || !c->lookup || !c->scale_off || !c->t) {
        free(ext);
        return tn_err("out of memory");
    }
    int64_t largest = 0;
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        c->lookup[i] = -1;
        if (t->rank != 2 || t->group == TN_GROUP_EMBED || !(c->ghost_groups & (1u << t->group))) continue;
        ext[i] = 1;
        c->lookup[i] = c->n_g;
        c->tensor[c->n_g] = i;
        c->scale_off[c->n_g] = c->n_scales;
        c->n_scales += c->o.scale_per_row ? t->shape[0] : 1;
        c->n_weights += (int64_t)t->numel;
        c->idx_bytes += idx_bytes_of(c, (int64_t)t->numel);
        c->vote_bytes += (int64_t)t->numel;
        if ((int64_t)t->numel > largest) largest = (int64_t)t->numel;
        c->n_g++;
    }
    int rc = c->n_g ? tn_llama_layout_set_external(l, ext) : tn_err("[primal] ghost_layers selects no tensor");
    free(ext);
    TN_CHECK(rc);
    /* idx and vote per weight (two allocations per tensor); scale, its gradient and two AdamW moments */
    m->state_bytes = 4 * tn_ops_span(c->n_scales * (int64_t)sizeof(float));
    m->float_grad_count = c->n_scales; /* the scales' gradients: Grokfast filters them too */
    for (int g = 0; g < c->n_g; g++) {
        const int64_t n = (int64_t)l->tensors[c->tensor[g]].numel;
        m->state_bytes += tn_ops_span(idx_bytes_of(c, n)) + tn_ops_span(n);
    }

    /* What the promise "<= 2 bytes per ghost weight" is measured against (the device report adds to it). */
    /* params, grads, m, v: 16 B per float parameter, or 10 B with 8-bit moments plus two absmax floats per
     * block of each tensor */
    int64_t float_b = c->n_scales * 4 * 3;
    for (int i = 0; i < l->n_tensors; i++) {
        if (c->lookup[i] >= 0) continue;
        const int64_t n = (int64_t)l->tensors[i].numel;
        float_b += r->state_bits == 8 ? n * 10 + tn_adam8_blocks(n) * 8 : n * 16;
    }
    cJSON *o = cJSON_CreateObject(), *mem = cJSON_CreateObject();
    cJSON_AddNumberToObject(mem, "ghost_weights", (double)c->n_weights);
    cJSON_AddNumberToObject(mem, "ghost_idx_bytes", (double)c->idx_bytes);
    cJSON_AddNumberToObject(mem, "ghost_vote_bytes", (double)c->vote_bytes);
    cJSON_AddNumberToObject(mem, "ghost_scale_bytes", (double)(c->n_scales * (int64_t)sizeof(float)));
    tn_json_add_num(mem, "ghost_bytes_per_weight", (double)(c->idx_bytes + c->vote_bytes) / (double)c->n_weights);
    cJSON_AddNumberToObject(mem, "float_state_bytes", (double)float_b);
    cJSON_AddNumberToObject(mem, "scratch_bytes", (double)(2 * largest * 4));
    cJSON_AddItemToObject(o, "memory", mem);
    cJSON_Delete(r->pending_log_line);
    r->pending_log_line = o; /* completed by the memory plan, written to log.jsonl once it is open */
    return 0;
}

int tn_method_primal_attach(tn_run *r, tn_method *m) {
    primal_ctx *c = m->ctx;
    const tn_llama_layout *l = &r->layout;
    c->ops = r->ops;
    const size_t sb = (size_t)c->n_scales * sizeof(float);
    c->scale = c->ops->alloc(sb);
    c->scale_grad = c->ops->alloc(sb);
    c->scale_m = c->ops->alloc(sb);
    c->scale_v = c->ops->alloc(sb);
    c->host_scale = tn_alloc((size_t)c->n_scales, sizeof(float));
    if (!c->scale || !c->scale_grad || !c->scale_m || !c->scale_v || !c->host_scale) return -1;
    TN_CHECK(c->ops->zero(c->scale_m, sb));
    TN_CHECK(c->ops->zero(c->scale_v, sb));
    /* Initial indices from their own RNG stream, in layout order, so they depend only on the seed: drawn
     * into a host tensor, then moved to the device's memory. */
    tn_rng init_rng;
    tn_rng_seed(&init_rng, (uint64_t)r->seed ^ 0x9a1ULL);
    for (int g = 0; g < c->n_g; g++) {
        const tn_tensor_info *t = &l->tensors[c->tensor[g]];
        int fine = (c->fine_groups & (1u << t->group)) || (t->layer >= 0 && c->fine_layer[t->layer]);
        tn_primal_tensor h;
        if (tn_primal_tensor_init(&h, t->shape[0], t->shape[1], fine ? &c->fine : &c->coarse, &c->o, NULL,
                                  &init_rng) != 0)
            return tn_err_prefix("%s", t->name);
        c->t[g] = h; /* shape, grid, flags; the arrays are replaced below */
        c->t[g].idx = c->ops->alloc((size_t)idx_bytes_of(c, h.n));
        c->t[g].vote = c->ops->alloc((size_t)h.n);
        c->t[g].scale = c->scale + c->scale_off[g];
        c->t[g].owns_scale = 0;
        int rc = c->t[g].idx && c->t[g].vote ? upload_state(c, g, &h) : -1;
        if (rc == 0) memcpy(c->host_scale + c->scale_off[g], h.scale, (size_t)h.n_scales * sizeof(float));
        tn_primal_tensor_free(&h);
        if (rc) return tn_err_prefix("%s", t->name);
    }
    m->begin_step = pr_begin_step;
    m->float_grads = pr_float_grads;
    m->reduce = pr_reduce;
    m->optimizer_step = pr_step;
    m->log_step = pr_log;
    m->hook = (tn_ckpt_hook){"primal", pr_save, pr_load, c};
    tn_weight_source src = {pr_weight, pr_weight_grad, 0, pr_is_ghost, c, NULL};
    tn_llama_set_weight_source(r->model, &src);
    tn_llama_set_head_via_source(r->model, (c->ghost_groups & (1u << TN_GROUP_HEAD)) != 0);
    return 0;
}
