/* LoRA on a frozen quantized base ([lora], docs/LORA.md). The base comes from [model] init (an STE or
 * PRIMAL checkpoint, train/lora_base.h): its quantized matrices are external in the run's layout and live
 * only as grid indices + scales, dequantized one matrix at a time into the model's weight scratch; its float
 * tensors (embedding, norms) are the run's parameters, frozen (no AdamW state, not in the gradient norm).
 * Only the fp32 adapters A, B train, by AdamW at [optim] lr. The adapters are written in PEFT's layout to
 * <out_dir>/adapter/ at every checkpoint; the checkpoint's /lora group holds them with their moments, the
 * base's CRC32 and path, so a resume continues bit for bit and refuses a base that changed.
 *
 * Devices: everything numeric goes through the run's ops table (r->ops), so the same code trains on the CPU
 * and on CUDA. The adapters are made on the host (PEFT init or PEFT's random init) and moved to the table
 * at attach (tn_lora_move), with their moments and scratch; the base's indices and scales are uploaded once
 * (tn_qbase_source_open) and dequantized by the table's primal_materialize per matrix and call. The host
 * sees adapter values only through downloads: checkpoints, the PEFT directory, the |B| log (sumsq). */
#include "train/lora_base.h"
#include "train/run.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "core/json.h"
#include "core/log.h"
#include "export/peft.h"
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LORA_FORMAT "trinity-lora"

typedef struct {
    tn_run *r;
    tn_qbase base;
    tn_qbase_source bsrc;
    tn_lora lora;
    float *m, *v;          /* [lora.numel] AdamW moments, on the adapters' table (lora.ops) */
    const char *base_path;
    char layers[256];      /* [lora] layers as given (for the checkpoint) */
    int loaded;            /* a resume read the /lora group */
} lora_ctx;

int tn_method_lora_wanted(tn_config *c) {
    for (int i = 0; i < tn_config_count(c); i++) {
        const char *sec, *key, *val;
        tn_config_entry(c, i, &sec, &key, &val);
        if (!strcmp(sec, "lora")) return 1;
    }
    return 0;
}

static int lo_begin_step(tn_run *r, void *vctx) {
    lora_ctx *c = vctx;
    c->lora.training = 1;
    tn_lora_set_step(&c->lora, (uint64_t)r->step);
    /* the dropout masks follow the step's global micro-batch index: a data-parallel rank starts at its first */
    c->lora.micro = (uint64_t)r->mb_begin;
    return r->ops->zero(c->lora.grads, (size_t)c->lora.numel * sizeof(float));
}

/* Data-parallel: the adapters' gradients summed over the ranks, in the run device's memory (host buffers for
 * MPI on the CPU, device buffers for NCCL on CUDA: tn_comm_sum takes the run's memory). */
static int lo_reduce(tn_run *r, void *vctx) {
    lora_ctx *c = vctx;
    return tn_comm_sum(r->comm, c->lora.grads, c->lora.numel, TN_COMM_F32);
}

static float *lo_float_grads(void *vctx) { return ((lora_ctx *)vctx)->lora.grads; }

static int lo_grad_sumsq(tn_run *r, void *vctx, double *ss) {
    const lora_ctx *c = vctx;
    return r->ops->sumsq(c->lora.grads, c->lora.numel, ss);
}

/* AdamW on A and B (decayed as matrices); the gradients scaled by the step's clip factor first. A
 * non-finite value anywhere in the new adapters makes Σ p² non-finite (a double sum of float squares does
 * not overflow): one reduction, no host loop over the table's memory. */
static int lo_step(tn_run *r, void *vctx, double lr) {
    lora_ctx *c = vctx;
    const tn_ops *o = r->ops;
    if (r->grad_scale != 1.0) TN_CHECK(o->scale(c->lora.grads, (float)r->grad_scale, c->lora.numel));
    tn_adamw_hparams h = r->adam;
    h.lr = (float)lr;
    const tn_adamw_step st = tn_adamw_step_of(&h, r->step, 1);
    TN_CHECK(o->adamw(c->lora.params, c->lora.grads, c->m, c->v, c->lora.numel, &st));
    double ss;
    TN_CHECK(o->sumsq(c->lora.params, c->lora.numel, &ss));
    if (!isfinite(ss)) return tn_err("LoRA adapters diverged (non-finite value)");
    return 0;
}

static int lo_prepare_eval(tn_run *r, void *vctx) {
    (void)r;
    ((lora_ctx *)vctx)->lora.training = 0; /* no dropout; the next step turns it back on */
    return 0;
}

static void lo_log(tn_run *r, void *vctx, cJSON *o) {
    const lora_ctx *c = vctx;
    double sb = 0; /* |B|: how far the adapters have moved the model from its base (B starts at 0) */
    for (int s = 0; s < c->lora.n_slots; s++) {
        double ss;
        if (r->ops->sumsq(c->lora.params + c->lora.off_b[s], c->lora.rows[s] * c->lora.spec.rank, &ss) != 0) {
            tn_log_warn("lora_b_norm: %s", tn_errmsg()); /* telemetry: the step's next op reports a device fault */
            return;
        }
        sb += ss;
    }
    tn_json_add_num(o, "lora_b_norm", sqrt(sb));
}

/* Write / read one [numel] array of the table's memory through a host copy. */
static int save_array(const tn_ops *o, hid_t g, const char *name, const float *x, int64_t n, float *host) {
    TN_CHECK(o->download(host, x, (size_t)n * sizeof(float)));
    return tn_h5_write(g, name, TN_H5_F32, 1, &n, host, 0);
}

static int load_array(const tn_ops *o, hid_t g, const char *name, float *x, int64_t n, float *host) {
    TN_CHECK(tn_h5_read(g, name, TN_H5_F32, 1, &n, host));
    return o->upload(x, host, (size_t)n * sizeof(float));
}

/* /lora: attrs (format, rank, alpha, dropout, layers, base, base_crc32), params, adam_m, adam_v [numel]; and
 * the PEFT adapter in <out_dir>/adapter/. The base is checked unchanged (it never is written to). */
static int lo_save(void *vctx, hid_t g) {
    lora_ctx *c = vctx;
    uint32_t crc;
    TN_CHECK(tn_qbase_source_crc(&c->bsrc, &crc));
    if (crc != c->base.crc) return tn_err("the frozen base changed during training (internal)");
    const tn_ops *o = c->r->ops;
    const int64_t n = c->lora.numel;
    TN_CHECK(tn_h5_attr_set_str(g, ".", "format", LORA_FORMAT));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "version", 1));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "rank", c->lora.spec.rank));
    TN_CHECK(tn_h5_attr_set_f64(g, ".", "alpha", c->lora.spec.alpha));
    TN_CHECK(tn_h5_attr_set_f64(g, ".", "dropout", c->lora.spec.dropout));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "layers", c->layers));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "base", c->base_path));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "base_crc32", c->base.crc));
    float *host = tn_alloc((size_t)n, sizeof(float));
    if (!host) return -1;
    int rc = save_array(o, g, "params", c->lora.params, n, host);
    if (rc == 0) rc = save_array(o, g, "adam_m", c->m, n, host);
    if (rc == 0) rc = save_array(o, g, "adam_v", c->v, n, host);
    tn_free(host);
    TN_CHECK(rc);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/adapter", c->r->out_dir);
    TN_CHECK(tn_peft_save(dir, &c->lora, c->base_path));
    return 0;
}

static int lo_load(void *vctx, hid_t g) {
    lora_ctx *c = vctx;
    char fmt[32];
    int64_t rank, crc, shape[TN_H5_MAX_RANK];
    int nd;
    TN_CHECK(tn_h5_attr_get_str(g, ".", "format", fmt, sizeof fmt));
    if (strcmp(fmt, LORA_FORMAT) != 0) return tn_err("format '%s', expected '%s'", fmt, LORA_FORMAT);
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "rank", &rank));
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "base_crc32", &crc));
    TN_CHECK(tn_h5_shape(g, "params", &nd, shape));
    if (rank != c->lora.spec.rank || nd != 1 || shape[0] != c->lora.numel)
        return tn_err("adapters of rank %lld with %lld values; the run has rank %d with %lld", (long long)rank,
                      (long long)shape[0], c->lora.spec.rank, (long long)c->lora.numel);
    if ((uint32_t)crc != c->base.crc)
        return tn_err("the base %s is not the one this run started from (CRC32 %08x, the checkpoint's %08x)",
                      c->base_path, c->base.crc, (uint32_t)crc);
    const tn_ops *o = c->r->ops;
    const int64_t n = c->lora.numel;
    float *host = tn_alloc((size_t)n, sizeof(float));
    if (!host) return -1;
    int rc = load_array(o, g, "params", c->lora.params, n, host);
    if (rc == 0) rc = load_array(o, g, "adam_m", c->m, n, host);
    if (rc == 0) rc = load_array(o, g, "adam_v", c->v, n, host);
    tn_free(host);
    TN_CHECK(rc);
    c->loaded = 1;
    return 0;
}

static int lo_after_resume(tn_run *r, void *vctx, const char *path) {
    (void)r;
    if (!((lora_ctx *)vctx)->loaded) return tn_err("%s: not a LoRA checkpoint (no /lora group)", path);
    return 0;
}

static void lo_destroy(void *vctx) {
    lora_ctx *c = vctx;
    if (!c) return;
    if (c->bsrc.b) tn_qbase_source_close(&c->bsrc);
    tn_qbase_free(&c->base);
    if (c->lora.ops) { /* m and v are allocated after the adapters moved to the run's table */
        c->lora.ops->free(c->m);
        c->lora.ops->free(c->v);
    }
    tn_lora_free(&c->lora);
    free(c);
}

/* The adapters: from [lora] init (a PEFT directory), or new from [lora] rank, alpha, layers. */
static int make_adapters(lora_ctx *c, tn_run *r) {
    tn_config *ini = r->ini;
    const tn_llama_config *cfg = &r->layout.cfg;
    double dropout;
    TN_CHECK(tn_config_float(ini, "lora", "dropout", 0.0, &dropout));
    const char *init = tn_config_str(ini, "lora", "init", NULL);
    if (init && *init) {
        static const char *const fixed[] = {"rank", "alpha", "layers"};
        for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
            if (tn_config_has(ini, "lora", fixed[k]))
                return tn_err("[lora] %s: set by the adapter in [lora] init; remove it", fixed[k]);
        TN_CHECK(tn_peft_load(init, cfg, &c->lora));
        c->lora.spec.dropout = dropout;
        c->lora.seed = (uint64_t)r->seed ^ 0xd20bULL;
        if (!(dropout >= 0 && dropout < 1)) return tn_err("[lora] dropout = %g: must be in [0, 1)", dropout);
        snprintf(c->layers, sizeof c->layers, "(from %s)", init);
        return 0;
    }
    int64_t rank;
    double alpha;
    TN_CHECK(tn_config_int(ini, "lora", "rank", 16, &rank));
    if (rank < 1 || rank > TN_LORA_MAX_RANK) return tn_err("[lora] rank = %lld: must be in [1, %d]", (long long)rank, TN_LORA_MAX_RANK);
    TN_CHECK(tn_config_float(ini, "lora", "alpha", 2.0 * (double)rank, &alpha));
    const char *layers = tn_config_str(ini, "lora", "layers", "attn,mlp");
    snprintf(c->layers, sizeof c->layers, "%s", layers);
    tn_lora_spec spec;
    memset(&spec, 0, sizeof spec);
    int rc = tn_lora_spec_parse(&spec, layers, cfg->n_layers);
    spec.rank = (int)rank;
    spec.alpha = alpha;
    spec.dropout = dropout;
    if (rc == 0) rc = tn_lora_create(&c->lora, &spec, cfg, (uint64_t)r->seed ^ 0xd20bULL);
    tn_lora_spec_free(&spec);
    TN_CHECK(rc);
    tn_rng rng;
    tn_rng_seed(&rng, (uint64_t)r->seed ^ 0x10a0ULL);
    return tn_lora_init_params(&c->lora, &rng);
}

int tn_method_lora_init(tn_run *r, tn_method *m) {
    lora_ctx *c = calloc(1, sizeof *c);
    if (!c) return tn_err("out of memory");
    memset(m, 0, sizeof *m);
    m->ctx = c;
    m->destroy = lo_destroy;
    m->name = "lora";
    m->frozen_params = 1;
    c->r = r;
    const char *base = tn_config_str(r->ini, "model", "init", NULL);
    if (!base || !*base) return tn_err("[lora] needs a base model: set [model] init to an STE or PRIMAL checkpoint");
    c->base_path = base;
    if (strcmp(tn_config_str(r->ini, "optim", "method", "adamw"), "adamw") != 0)
        return tn_err("[lora] trains its adapters with AdamW: remove [optim] method (the base stays as it is)");
    if (tn_config_has(r->ini, "quant", "grid"))
        return tn_err("[lora] takes the base's quantization from [model] init: remove the [quant] section");
    if (r->state_bits != 32) return tn_err("[lora] keeps 32-bit AdamW state for its adapters: remove [optim] state_bits");
    TN_CHECK(tn_qbase_load(&c->base, base));
    /* the run's layout and initial float parameters are the base's; the quantized matrices stay here */
    TN_CHECK(tn_llama_layout_copy(&r->layout, &c->base.layout));
    r->host_init = c->base.floats;
    c->base.floats = NULL;
    if (c->base.tokenizer) {
        r->tokenizer = c->base.tokenizer;
        r->tokenizer_len = c->base.tokenizer_len;
        memcpy(r->tokenizer_format, c->base.tokenizer_format, sizeof r->tokenizer_format);
        c->base.tokenizer = NULL;
    }
    TN_CHECK(make_adapters(c, r)); /* on the host; moved to the run's table at attach */
    m->float_grad_count = c->lora.numel; /* Grokfast filters the adapters' gradients (train/run_grokfast.c) */

    /* memory on the run's device (allocated at attach, inside the plan's reservation): the base's indices and
     * scales (on the CPU: the loaded arrays themselves), the adapters with their gradients and moments, and
     * the scratch (u and v of [N, r], the dropped input [N, widest adapted input]) */
    const int64_t N = r->batch * r->seq_len, base_b = tn_qbase_source_bytes(&c->base, r->ops),
                  adapter_b = 4 * tn_ops_span(c->lora.numel * (int64_t)sizeof(float)),
                  scratch_b = tn_lora_scratch_bytes(&c->lora, N);
    m->state_bytes = base_b + adapter_b + scratch_b;
    int64_t base_weights = 0;
    for (int k = 0; k < c->base.n_q; k++) base_weights += c->base.q[k].rows * c->base.q[k].cols;
    cJSON *o = cJSON_CreateObject(), *mem = cJSON_CreateObject();
    cJSON_AddStringToObject(mem, "lora_base", c->base.kind);
    cJSON_AddNumberToObject(mem, "lora_base_weights", (double)base_weights);
    cJSON_AddNumberToObject(mem, "lora_base_bytes", (double)base_b);
    cJSON_AddNumberToObject(mem, "lora_params", (double)c->lora.numel);
    cJSON_AddNumberToObject(mem, "lora_adapter_bytes", (double)adapter_b);
    cJSON_AddNumberToObject(mem, "lora_scratch_bytes", (double)scratch_b);
    cJSON_AddItemToObject(o, "memory", mem);
    cJSON_Delete(r->pending_log_line);
    r->pending_log_line = o;
    tn_log_info("lora: rank %d, alpha %g, dropout %g on %d matrices (%lld trainable values) of a frozen %s base "
                "(%lld quantized weights, %.1f MiB as indices and scales)",
                c->lora.spec.rank, c->lora.spec.alpha, c->lora.spec.dropout, c->lora.n_slots, (long long)c->lora.numel,
                c->base.kind, (long long)base_weights, (double)base_b / (1 << 20));
    return 0;
}

int tn_method_lora_attach(tn_run *r, tn_method *m) {
    lora_ctx *c = m->ctx;
    const size_t bytes = (size_t)c->lora.numel * sizeof(float);
    TN_CHECK(tn_lora_move(&c->lora, r->ops));
    TN_CHECK(tn_lora_reserve(&c->lora, r->batch * r->seq_len));
    if (!(c->m = r->ops->alloc(bytes)) || !(c->v = r->ops->alloc(bytes))) return -1;
    TN_CHECK(r->ops->zero(c->m, bytes));
    TN_CHECK(r->ops->zero(c->v, bytes));
    TN_CHECK(tn_qbase_source_open(&c->bsrc, &c->base, r->params, r->ops));
    if (r->ops->device_memory) tn_qbase_drop_host_indices(&c->base); /* the device copy is the base now */
    tn_weight_source src;
    tn_qbase_weight_source(&c->bsrc, &src);
    tn_llama_set_weight_source(r->model, &src);
    tn_llama_adapter ad;
    tn_lora_hook(&c->lora, &ad);
    tn_llama_set_adapter(r->model, &ad);
    tn_llama_set_head_via_source(r->model, c->base.head_quantized);
    m->begin_step = lo_begin_step;
    m->grad_sumsq = lo_grad_sumsq;
    m->float_grads = lo_float_grads;
    m->optimizer_step = lo_step;
    m->prepare_eval = lo_prepare_eval;
    m->log_step = lo_log;
    m->after_resume = lo_after_resume;
    m->reduce = lo_reduce;
    m->hook = (tn_ckpt_hook){"lora", lo_save, lo_load, c};
    return 0;
}
