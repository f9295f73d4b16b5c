/* LoRA adapters: the math is in model/lora.h. Every product, scaling and mask is one op of the adapters'
 * table (l->ops), so the same code runs on the CPU and on CUDA. */
#include "model/lora.h"

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/dropout_math.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[TN_W_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};

const char *tn_lora_kind_name(int kind) { return kind >= 0 && kind < TN_W_COUNT ? kind_names[kind] : "?"; }

int tn_lora_spec_parse(tn_lora_spec *s, const char *layers, int n_layers) {
    char buf[512];
    int any_layer = 0;
    s->kinds = 0;
    s->n_layers = n_layers;
    if (strlen(layers) >= sizeof buf) return tn_err("[lora] layers: too long");
    if (!(s->layer_on = calloc((size_t)(n_layers > 0 ? n_layers : 1), 1))) return tn_err("out of memory");
    strcpy(buf, layers);
    for (char *tok = strtok(buf, ", \t"); tok; tok = strtok(NULL, ", \t")) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end == '\0') {
            const long l = v < 0 ? v + n_layers : v;
            if (l < 0 || l >= n_layers)
                return tn_err("[lora] layers: layer %s does not exist (the model has %d layers)", tok, n_layers);
            s->layer_on[l] = 1;
            any_layer = 1;
        } else if (!strcmp(tok, "attn")) {
            s->kinds |= 1u << TN_W_Q | 1u << TN_W_K | 1u << TN_W_V | 1u << TN_W_O;
        } else if (!strcmp(tok, "mlp")) {
            s->kinds |= 1u << TN_W_GATE | 1u << TN_W_UP | 1u << TN_W_DOWN;
        } else {
            int k = 0;
            while (k < TN_W_COUNT && strcmp(tok, kind_names[k]) != 0) k++;
            if (k == TN_W_COUNT)
                return tn_err("[lora] layers: '%s' is not attn, mlp, a module name (q_proj, k_proj, v_proj, o_proj, "
                              "gate_proj, up_proj, down_proj) or a layer index",
                              tok);
            s->kinds |= 1u << k;
        }
    }
    if (!s->kinds) s->kinds = (1u << TN_W_COUNT) - 1;
    if (!any_layer) memset(s->layer_on, 1, (size_t)n_layers);
    return 0;
}

void tn_lora_spec_free(tn_lora_spec *s) {
    free(s->layer_on);
    s->layer_on = NULL;
}

/* The shape [out, in] of matrix `kind` of a layer. */
static void kind_shape(const tn_llama_config *c, int kind, int64_t *rows, int64_t *cols) {
    const int64_t D = c->dim, hd = tn_llama_head_dim(c), Hq = (int64_t)c->n_heads * hd,
                  KVd = (int64_t)c->n_kv_heads * hd, F = c->ffn_dim;
    static const int out_is[TN_W_COUNT] = {1, 2, 2, 0, 3, 3, 0}, in_is[TN_W_COUNT] = {0, 0, 0, 1, 0, 0, 3};
    const int64_t dims[4] = {D, Hq, KVd, F};
    *rows = dims[out_is[kind]];
    *cols = dims[in_is[kind]];
}

int tn_lora_create(tn_lora *l, tn_lora_spec *spec, const tn_llama_config *cfg, uint64_t seed) {
    memset(l, 0, sizeof *l);
    l->ops = tn_ops_cpu();
    l->spec = *spec;
    spec->layer_on = NULL;
    const int r = l->spec.rank, L = cfg->n_layers;
    if (r < 1 || r > TN_LORA_MAX_RANK) return tn_err("[lora] rank = %d: must be in [1, %d]", r, TN_LORA_MAX_RANK);
    if (!(l->spec.alpha > 0) || !isfinite(l->spec.alpha)) return tn_err("[lora] alpha = %g: must be > 0", l->spec.alpha);
    if (!(l->spec.dropout >= 0 && l->spec.dropout < 1)) return tn_err("[lora] dropout = %g: must be in [0, 1)", l->spec.dropout);
    l->scale = (float)(l->spec.alpha / r);
    l->seed = seed;
    const size_t ns = (size_t)L * TN_W_COUNT;
    l->slot = malloc(ns * sizeof *l->slot);
    l->slot_layer = malloc(ns * sizeof *l->slot_layer);
    l->slot_kind = malloc(ns * sizeof *l->slot_kind);
    l->rows = malloc(ns * sizeof *l->rows);
    l->cols = malloc(ns * sizeof *l->cols);
    l->off_a = malloc(ns * sizeof *l->off_a);
    l->off_b = malloc(ns * sizeof *l->off_b);
    if (!l->slot || !l->slot_layer || !l->slot_kind || !l->rows || !l->cols || !l->off_a || !l->off_b)
        return tn_err("out of memory");
    for (int layer = 0; layer < L; layer++) {
        for (int k = 0; k < TN_W_COUNT; k++) {
            const int at = layer * TN_W_COUNT + k;
            l->slot[at] = -1;
            if (!l->spec.layer_on[layer] || !(l->spec.kinds & (1u << k))) continue;
            const int s = l->n_slots++;
            l->slot[at] = s;
            l->slot_layer[s] = layer;
            l->slot_kind[s] = k;
            kind_shape(cfg, k, &l->rows[s], &l->cols[s]);
            l->off_a[s] = l->numel;
            l->off_b[s] = l->numel + r * l->cols[s];
            l->numel += r * (l->cols[s] + l->rows[s]);
            if (l->cols[s] > l->max_cols) l->max_cols = l->cols[s];
        }
    }
    if (!l->n_slots) return tn_err("[lora] layers selects no matrix");
    const size_t bytes = (size_t)l->numel * sizeof(float);
    if (!(l->params = l->ops->alloc(bytes)) || !(l->grads = l->ops->alloc(bytes))) return -1;
    TN_CHECK(l->ops->zero(l->params, bytes));
    return l->ops->zero(l->grads, bytes);
}

/* The scratch back to nothing (it grows again on demand). */
static void drop_scratch(tn_lora *l) {
    l->ops->free(l->u);
    l->ops->free(l->v);
    l->ops->free(l->xd);
    l->u = l->v = l->xd = NULL;
    l->cap_u = l->cap_x = 0;
}

void tn_lora_free(tn_lora *l) {
    if (!l) return;
    tn_lora_spec_free(&l->spec);
    free(l->slot);
    free(l->slot_layer);
    free(l->slot_kind);
    free(l->rows);
    free(l->cols);
    free(l->off_a);
    free(l->off_b);
    if (l->ops) { /* NULL: a create that failed before anything was allocated */
        l->ops->free(l->params);
        l->ops->free(l->grads);
        drop_scratch(l);
    }
    memset(l, 0, sizeof *l);
}

int tn_lora_get_params(const tn_lora *l, float *host) {
    return l->ops->download(host, l->params, (size_t)l->numel * sizeof(float));
}

int tn_lora_set_params(tn_lora *l, const float *host) {
    return l->ops->upload(l->params, host, (size_t)l->numel * sizeof(float));
}

int tn_lora_move(tn_lora *l, const tn_ops *ops) {
    if (ops == l->ops) return 0;
    const size_t bytes = (size_t)l->numel * sizeof(float);
    float *host = tn_alloc((size_t)l->numel, sizeof(float)), *p = NULL, *g = NULL;
    int rc = host ? tn_lora_get_params(l, host) : -1;
    if (rc == 0 && (!(p = ops->alloc(bytes)) || !(g = ops->alloc(bytes)))) rc = -1;
    if (rc == 0) rc = ops->upload(p, host, bytes);
    if (rc == 0) rc = ops->zero(g, bytes);
    tn_free(host);
    if (rc) {
        ops->free(p);
        ops->free(g);
        return tn_err_prefix("LoRA adapters to %s", ops->name);
    }
    drop_scratch(l);
    l->ops->free(l->params);
    l->ops->free(l->grads);
    l->ops = ops;
    l->params = p;
    l->grads = g;
    return 0;
}

int tn_lora_init_params(tn_lora *l, tn_rng *rng) {
    const int r = l->spec.rank;
    float *host = tn_alloc((size_t)l->numel, sizeof(float));
    if (!host) return -1;
    for (int s = 0; s < l->n_slots; s++) {
        const float bound = 1.0f / sqrtf((float)l->cols[s]);
        float *A = host + l->off_a[s];
        for (int64_t i = 0; i < r * l->cols[s]; i++) A[i] = (2.0f * tn_rng_uniform(rng) - 1.0f) * bound;
        memset(host + l->off_b[s], 0, (size_t)(r * l->rows[s]) * sizeof(float));
    }
    const int rc = tn_lora_set_params(l, host);
    tn_free(host);
    return rc;
}

int tn_lora_slot(const tn_lora *l, int layer, int kind) {
    if (layer < 0 || layer >= l->spec.n_layers || kind < 0 || kind >= TN_W_COUNT) return -1;
    return l->slot[layer * TN_W_COUNT + kind];
}

void tn_lora_set_step(tn_lora *l, uint64_t step) {
    l->step = step;
    l->micro = 0;
}

void tn_lora_begin_forward(tn_lora *l) { l->micro++; }

/* ---- dropout and scratch ------------------------------------------------------------------------------- */

/* The mask's key of one slot at the current (step, forward): kernels/dropout_math.h hashes it with the
 * element's index. */
static uint64_t dropout_key(const tn_lora *l, int slot) {
    return tn_dropout_mix64(l->seed ^ tn_dropout_mix64(l->step * 0x9e3779b97f4a7c15ULL ^
                                                       tn_dropout_mix64(l->micro ^ ((uint64_t)slot << 40))));
}

static int dropping(const tn_lora *l) { return l->training && l->spec.dropout > 0; }

/* Grow the scratch to N rows of u, v [N, r] and, when wanted, xd [N, in]. */
static int grow(tn_lora *l, int64_t N, int64_t in, int want_x) {
    const int64_t nu = N * l->spec.rank, nx = want_x ? N * in : 0;
    if (nu > l->cap_u) {
        l->ops->free(l->u);
        l->ops->free(l->v);
        l->u = l->ops->alloc((size_t)nu * sizeof(float));
        l->v = l->ops->alloc((size_t)nu * sizeof(float));
        if (!l->u || !l->v) {
            drop_scratch(l);
            return -1;
        }
        l->cap_u = nu;
    }
    if (nx > l->cap_x) {
        l->ops->free(l->xd);
        if (!(l->xd = l->ops->alloc((size_t)nx * sizeof(float)))) {
            l->cap_x = 0;
            return -1;
        }
        l->cap_x = nx;
    }
    return 0;
}

int tn_lora_reserve(tn_lora *l, int64_t N) { return grow(l, N, l->max_cols, l->spec.dropout > 0); }

int64_t tn_lora_scratch_bytes(const tn_lora *l, int64_t N) {
    const int64_t f = (int64_t)sizeof(float);
    return 2 * tn_ops_span(N * l->spec.rank * f) + (l->spec.dropout > 0 ? tn_ops_span(N * l->max_cols * f) : 0);
}

/* The adapter's input: x itself, or its dropped copy in l->xd [N, in]. */
static int adapter_input(tn_lora *l, int s, const float *x, int64_t N, const float **out) {
    *out = x;
    if (!dropping(l)) return 0;
    TN_CHECK(l->ops->dropout(l->xd, x, N * l->cols[s], dropout_key(l, s), l->spec.dropout));
    *out = l->xd;
    return 0;
}

/* ---- the hooks ----------------------------------------------------------------------------------------- */

/* u[N, r] = s · drop(x)[N, in] Aᵀ;  y[N, out] += u Bᵀ. */
int tn_lora_forward(tn_lora *l, int layer, int kind, float *y, const float *x, int64_t N) {
    const int s = tn_lora_slot(l, layer, kind), r = l->spec.rank;
    if (s < 0) return 0;
    const tn_ops *o = l->ops;
    const int64_t out = l->rows[s], in = l->cols[s];
    const float *xd, *A = l->params + l->off_a[s], *B = l->params + l->off_b[s];
    TN_CHECK(grow(l, N, in, dropping(l)));
    TN_CHECK(adapter_input(l, s, x, N, &xd));
    TN_CHECK(o->linear(l->u, xd, A, N, in, r, 0.0f));
    TN_CHECK(o->scale(l->u, l->scale, N * r));
    return o->linear(y, l->u, B, N, r, out, 1.0f);
}

/* u = s · drop(x) Aᵀ [N, r];  dB[out, r] += dyᵀ u;  v = s · dy B [N, r];  dA[r, in] += vᵀ drop(x). */
int tn_lora_backward_params(tn_lora *l, int layer, int kind, const float *dy, const float *x, int64_t N) {
    const int s = tn_lora_slot(l, layer, kind), r = l->spec.rank;
    if (s < 0) return 0;
    const tn_ops *o = l->ops;
    const int64_t out = l->rows[s], in = l->cols[s];
    const float *xd, *A = l->params + l->off_a[s], *B = l->params + l->off_b[s];
    float *dA = l->grads + l->off_a[s], *dB = l->grads + l->off_b[s];
    TN_CHECK(grow(l, N, in, dropping(l)));
    TN_CHECK(adapter_input(l, s, x, N, &xd));
    TN_CHECK(o->linear(l->u, xd, A, N, in, r, 0.0f));
    TN_CHECK(o->scale(l->u, l->scale, N * r));
    TN_CHECK(o->linear_dw(dB, dy, l->u, N, r, out, 1.0f));
    TN_CHECK(o->linear_dx(l->v, dy, B, N, r, out, 0.0f));
    TN_CHECK(o->scale(l->v, l->scale, N * r));
    return o->linear_dw(dA, l->v, xd, N, in, r, 1.0f);
}

/* v = s · dy B [N, r];  dx[N, in] += m ⊙ (v A). */
int tn_lora_backward_input(tn_lora *l, int layer, int kind, float *dx, const float *dy, int64_t N) {
    const int s = tn_lora_slot(l, layer, kind), r = l->spec.rank;
    if (s < 0) return 0;
    const tn_ops *o = l->ops;
    const int64_t out = l->rows[s], in = l->cols[s];
    const float *A = l->params + l->off_a[s], *B = l->params + l->off_b[s];
    TN_CHECK(grow(l, N, in, dropping(l)));
    TN_CHECK(o->linear_dx(l->v, dy, B, N, r, out, 0.0f));
    TN_CHECK(o->scale(l->v, l->scale, N * r));
    if (!dropping(l)) return o->linear_dx(dx, l->v, A, N, in, r, 1.0f);
    /* the mask applied to v A: t = m ⊙ (v A) in the xd scratch (the forward's xd is not needed any more),
     * then added */
    float *t = l->xd;
    TN_CHECK(o->linear_dx(t, l->v, A, N, in, r, 0.0f));
    TN_CHECK(o->dropout(t, t, N * in, dropout_key(l, s), l->spec.dropout));
    return o->add(dx, t, N * in);
}

static int hook_begin(void *ctx) {
    tn_lora_begin_forward(ctx);
    return 0;
}
static int hook_forward(void *ctx, int layer, tn_linear_kind kind, float *y, const float *x, int64_t N) {
    return tn_lora_forward(ctx, layer, (int)kind, y, x, N);
}
static int hook_grad(void *ctx, int layer, tn_linear_kind kind, const float *dy, const float *x, int64_t N) {
    return tn_lora_backward_params(ctx, layer, (int)kind, dy, x, N);
}
static int hook_dx(void *ctx, int layer, tn_linear_kind kind, float *dx, const float *dy, int64_t N) {
    return tn_lora_backward_input(ctx, layer, (int)kind, dx, dy, N);
}

void tn_lora_hook(tn_lora *l, tn_llama_adapter *a) {
    *a = (tn_llama_adapter){l, hook_begin, hook_forward, hook_grad, hook_dx};
}

void tn_lora_merge_into(float *W, const float *A, const float *B, int64_t rows, int64_t cols, int r, double coef) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < rows; o++)
        for (int64_t i = 0; i < cols; i++) {
            double acc = 0;
            for (int k = 0; k < r; k++) acc += (double)B[o * r + k] * (double)A[(int64_t)k * cols + i];
            W[o * cols + i] = (float)((double)W[o * cols + i] + coef * acc);
        }
}
