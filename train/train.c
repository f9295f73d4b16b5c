/* The training loop. One optimizer step = `accum` micro-batches of batch × seq_len tokens, each forward +
 * backward, the loss and its gradient being the mean over every counted token of the step (train_step),
 * then global-norm clipping and the method's optimizer step. Determinism: with the same thread count, a
 * run resumed from a checkpoint reproduces the uninterrupted run's losses exactly (params, AdamW moments,
 * step, RNG, loader cursor and method state are all checkpointed). */
#include "train/train.h"
#include "train/eval.h"
#include "train/run.h"
#include "train/sample.h"
#include "train/teacher.h"
#include "train/tensorboard.h"
#include "data/tokenizer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timer.h"
#include "kernels/cpu/ops_cpu.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- configuration ---------------------------------------------------------------------------------- */

/* The effective config as INI text, sections in order of first appearance. */
static char *config_to_text(const tn_config *c) {
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = '\0';
    int n = tn_config_count(c);
    char *done = calloc((size_t)n + 1, 1);
    if (!done) {
        free(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        const char *sec, *key, *val;
        tn_config_entry(c, i, &sec, &key, &val);
        for (int j = i; j < n; j++) {
            const char *s2, *k2, *v2;
            tn_config_entry(c, j, &s2, &k2, &v2);
            if (strcmp(s2, sec) != 0) continue;
            done[j] = 1;
            size_t need = strlen(s2) + strlen(k2) + strlen(v2) + 16;
            if (len + need >= cap) {
                cap = 2 * (len + need);
                char *nb = realloc(out, cap);
                if (!nb) {
                    free(out);
                    free(done);
                    return NULL;
                }
                out = nb;
            }
            if (j == i) len += (size_t)sprintf(out + len, "%s[%s]\n", len ? "\n" : "", sec);
            len += (size_t)sprintf(out + len, "%s = %s\n", k2, v2);
        }
    }
    free(done);
    return out;
}

/* Split a comma-separated list in place; returns the count (at most cap). */
static int split_list(char *s, char **items, int cap) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < cap; tok = strtok(NULL, ",")) {
        while (*tok == ' ' || *tok == '\t') tok++;
        char *e = tok + strlen(tok);
        while (e > tok && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
        if (*tok) items[n++] = tok;
    }
    return n;
}

static int read_train_config(tn_run *r) {
    tn_config *c = r->ini;
    const char *out_dir, *sched;
    TN_CHECK(tn_config_str_req(c, "train", "out_dir", &out_dir));
    if (strlen(out_dir) >= sizeof r->out_dir) return tn_err("[train] out_dir: path too long");
    strcpy(r->out_dir, out_dir);
    TN_CHECK(tn_config_int(c, "train", "seed", 1234, &r->seed));
    TN_CHECK(tn_config_int_req(c, "train", "batch", &r->batch));
    TN_CHECK(tn_config_int_req(c, "train", "seq_len", &r->seq_len));
    TN_CHECK(tn_config_int(c, "train", "accum", 1, &r->accum));
    TN_CHECK(tn_config_int_req(c, "train", "steps", &r->steps));
    TN_CHECK(tn_config_int(c, "train", "log_every", 1, &r->log_every));
    TN_CHECK(tn_config_int(c, "train", "eval_every", 0, &r->eval_every));
    TN_CHECK(tn_config_int(c, "train", "eval_batches", 8, &r->eval_batches));
    TN_CHECK(tn_config_int(c, "train", "ckpt_every", 0, &r->ckpt_every));
    TN_CHECK(tn_config_bool(c, "train", "tensorboard", 0, &r->tensorboard));
    TN_CHECK(tn_config_int(c, "train", "keep_ckpts", 3, &r->keep_ckpts));
    TN_CHECK(tn_config_int(c, "train", "sample_every", 0, &r->sample_every));
    TN_CHECK(tn_config_int(c, "train", "sample_tokens", 32, &r->sample_tokens));
    r->sample_prompt = tn_config_str(c, "train", "sample_prompt", "The ");
    r->device_spec = tn_config_str(c, "train", "device", "cpu");
    r->comm_kind = tn_config_str(c, "train", "comm", "auto");
    TN_CHECK(tn_config_float(c, "train", "comm_timeout_s", 300, &r->comm_timeout_s));
    if (!(r->comm_timeout_s > 0) || r->comm_timeout_s > 1e6) return tn_err("[train] comm_timeout_s must be in (0, 1e6]");
    const char *recompute = tn_config_str(c, "train", "recompute", "none");
    if (!strcmp(recompute, "layer")) r->model_opts.recompute = 1;
    else if (strcmp(recompute, "none") != 0) return tn_err("[train] recompute: '%s' is not none or layer", recompute);
    r->sampler_opts.forward_only = 1; /* the salad test only runs forwards */
    r->precision = tn_config_str(c, "train", "precision", "fp32");
    int64_t threads;
    TN_CHECK(tn_config_int(c, "train", "threads", 0, &threads));
    if (threads > 0) {
        omp_set_num_threads((int)threads);
        openblas_set_num_threads((int)threads);
    }
    if (r->batch < 1 || r->batch > 65536) return tn_err("[train] batch must be in [1, 65536]");
    if (r->seq_len < 1 || r->seq_len > (1 << 20)) return tn_err("[train] seq_len must be in [1, 1048576]");
    if (r->accum < 1) return tn_err("[train] accum must be >= 1");
    if (r->steps < 1) return tn_err("[train] steps must be >= 1");
    if (r->log_every < 1) return tn_err("[train] log_every must be >= 1");
    if (r->eval_every < 0 || r->ckpt_every < 0 || r->eval_batches < 0 || r->keep_ckpts < 1)
        return tn_err("[train] eval_every, ckpt_every, eval_batches must be >= 0 and keep_ckpts >= 1");

    double v;
    /* PRIMAL's float parameters (scales, embeddings, norms) use the original scripts' AdamW defaults. */
    int primal = !strcmp(tn_config_str(c, "optim", "method", "adamw"), "primal");
    TN_CHECK(tn_config_float(c, "optim", "lr", primal ? 1.5e-4 : 3e-4, &v));
    r->sched.lr = v;
    TN_CHECK(tn_config_float(c, "optim", "min_lr", 0.1 * r->sched.lr, &v));
    r->sched.min_lr = v;
    TN_CHECK(tn_config_int(c, "optim", "warmup_steps", 0, &r->sched.warmup_steps));
    r->sched.total_steps = r->steps;
    sched = tn_config_str(c, "optim", "schedule", "cosine");
    TN_CHECK(tn_schedule_kind_parse(sched, &r->sched.kind));
    TN_CHECK(tn_config_float(c, "optim", "weight_decay", primal ? 0.01 : 0.1, &v));
    r->adam.weight_decay = (float)v;
    TN_CHECK(tn_config_float(c, "optim", "beta1", 0.9, &v));
    r->adam.beta1 = (float)v;
    TN_CHECK(tn_config_float(c, "optim", "beta2", 0.95, &v));
    r->adam.beta2 = (float)v;
    TN_CHECK(tn_config_float(c, "optim", "eps", 1e-8, &v));
    r->adam.eps = (float)v;
    TN_CHECK(tn_config_float(c, "optim", "grad_clip", 1.0, &r->grad_clip));
    TN_CHECK(tn_adam_state_bits_from_config(c, &r->state_bits));
    if (!(r->sched.lr > 0) || r->sched.min_lr < 0) return tn_err("[optim] lr must be > 0 and min_lr >= 0");
    if (!(r->adam.beta1 >= 0 && r->adam.beta1 < 1 && r->adam.beta2 >= 0 && r->adam.beta2 < 1))
        return tn_err("[optim] beta1 and beta2 must be in [0, 1)");
    return 0;
}

/* ---- distillation ------------------------------------------------------------------------------------ */

/* [distill] teacher, alpha, temperature, hidden_weight, hidden_layers (read before the model exists). */
static int read_distill_config(tn_run *r) {
    tn_distill *d = &r->distill;
    const char *teacher = tn_config_str(r->ini, "distill", "teacher", NULL);
    if (!teacher || !*teacher) {
        static const char *const keys[] = {"alpha", "temperature", "hidden_weight", "hidden_layers"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (tn_config_has(r->ini, "distill", keys[i]))
                return tn_err("[distill] %s needs a teacher (a checkpoint, e.g. the dense model the student started "
                              "from)",
                              keys[i]);
        return 0;
    }
    d->teacher_path = teacher;
    TN_CHECK(tn_config_float(r->ini, "distill", "alpha", 0.5, &d->alpha));
    TN_CHECK(tn_config_float(r->ini, "distill", "temperature", 2.0, &d->tau));
    TN_CHECK(tn_config_float(r->ini, "distill", "hidden_weight", 0.0, &d->hidden_weight));
    if (!(d->alpha >= 0 && d->alpha <= 1)) return tn_err("[distill] alpha = %g: must be in [0, 1]", d->alpha);
    if (!(d->tau > 0) || d->tau > 100) return tn_err("[distill] temperature = %g: must be in (0, 100]", d->tau);
    if (!(d->hidden_weight >= 0)) return tn_err("[distill] hidden_weight = %g: must be >= 0", d->hidden_weight);
    const char *layers = tn_config_str(r->ini, "distill", "hidden_layers", "-1");
    if (d->hidden_weight == 0) {
        if (tn_config_has(r->ini, "distill", "hidden_layers"))
            return tn_err("[distill] hidden_layers without hidden_weight: set hidden_weight > 0 to compare hidden "
                          "states");
        return 0;
    }
    char buf[512];
    if (strlen(layers) >= sizeof buf) return tn_err("[distill] hidden_layers: too long");
    strcpy(buf, layers);
    for (char *tok = strtok(buf, ", \t"); tok; tok = strtok(NULL, ", \t")) {
        char *end;
        errno = 0;
        long v = strtol(tok, &end, 10);
        if (*end || errno || v < -65536 || v > 65536)
            return tn_err("[distill] hidden_layers: '%s' is not a layer index (negative counts from the end)", tok);
        if (d->n_hidden == TN_DISTILL_MAX_HIDDEN)
            return tn_err("[distill] hidden_layers: more than %d layers", TN_DISTILL_MAX_HIDDEN);
        d->hidden_layers[d->n_hidden++] = (int)v; /* checked against the depth once the model is known */
    }
    if (d->n_hidden == 0) return tn_err("[distill] hidden_layers: no layer given");
    return 0;
}

/* The teacher's plan, and the student's hidden layers resolved against both depths. */
static int plan_distill(tn_run *r) {
    tn_distill *d = &r->distill;
    if (!d->teacher_path) return 0;
    TN_CHECK(tn_teacher_plan_bytes(d->teacher_path, (int)r->batch, (int)r->seq_len, r->ops, &d->bytes));
    d->bytes += tn_ops_span(r->batch * r->seq_len * (int64_t)sizeof(float));
    tn_llama_config tc;
    TN_CHECK(tn_ckpt_read_config(d->teacher_path, &tc));
    const int Ls = r->layout.cfg.n_layers, Lt = tc.n_layers;
    for (int i = 0; i < d->n_hidden; i++) {
        int l = d->hidden_layers[i] < 0 ? d->hidden_layers[i] + Ls : d->hidden_layers[i];
        if (l < 0 || l >= Ls) return tn_err("[distill] hidden_layers: %d is not a layer of the %d-layer student", d->hidden_layers[i], Ls);
        d->hidden_layers[i] = l;
        /* the teacher's layer at the same relative depth: round((l + 1) · Lt / Ls) − 1 */
        d->teacher_layers[i] = (int)(((int64_t)(l + 1) * Lt + Ls / 2) / Ls) - 1;
        if (d->teacher_layers[i] < 0) d->teacher_layers[i] = 0;
    }
    return 0;
}

static int open_distill(tn_run *r) {
    tn_distill *d = &r->distill;
    if (!d->teacher_path) return 0;
    TN_CHECK(tn_teacher_open(&d->teacher, d->teacher_path, &r->layout.cfg, r->tokenizer, r->tokenizer_len,
                             d->hidden_weight > 0, (int)r->batch, (int)r->seq_len, r->ops));
    d->kl = r->ops->alloc((size_t)(r->batch * r->seq_len) * sizeof(float));
    return d->kl ? 0 : -1;
}

static void free_distill(tn_run *r) {
    tn_teacher_free(r->distill.teacher);
    if (r->ops) r->ops->free(r->distill.kl);
}

/* One micro-batch's forward and backward with the teacher's terms; *ce = its mean CE, *kd = its mean
 * τ²·KL, *hid = its hidden term (means over its counted positions). w = the micro-batch's weight. */
static int distill_micro_batch(tn_run *r, const int32_t *in, const int32_t *tg, const uint8_t *mk, double w,
                               float *ce, double *kd, double *hid, int64_t *counted) {
    tn_distill *d = &r->distill;
    const int64_t N = r->batch * r->seq_len, V = r->layout.cfg.vocab_size;
    TN_CHECK(tn_teacher_forward(d->teacher, in));
    TN_CHECK(tn_llama_forward(r->model, r->params, in, tg, mk, ce, counted));
    *kd = *hid = 0;
    if (*counted == 0) return 0;
    float *tl = tn_teacher_logits(d->teacher); /* becomes the distillation gradient of the student's logits */
    const float g = (float)(w * d->alpha / (double)*counted);
    TN_CHECK(r->ops->kd(d->kl, tl, tn_llama_logits(r->model), tl, tn_llama_mask(r->model), N, V, (float)d->tau, g));
    double kl_sum = 0;
    TN_CHECK(r->ops->masked_sum(d->kl, tn_llama_mask(r->model), N, &kl_sum));
    *kd = d->tau * d->tau * kl_sum / (double)*counted;
    const float *tx[TN_DISTILL_MAX_HIDDEN];
    for (int i = 0; i < d->n_hidden; i++) tx[i] = tn_teacher_hidden(d->teacher, d->teacher_layers[i]);
    tn_llama_extra_grad e = {tl, d->hidden_weight > 0 ? d->n_hidden : 0, d->hidden_layers, tx,
                             (float)d->hidden_weight, (float)w};
    return tn_llama_backward_extra(r->model, r->params, r->grads, (float)(w * (1 - d->alpha)), &e, hid);
}

/* ---- data --------------------------------------------------------------------------------------------- */

static int open_data(tn_run *r) {
    const char *train_list, *mode;
    TN_CHECK(tn_config_str_req(r->ini, "data", "train", &train_list));
    char *buf = strdup(train_list);
    if (!buf) return tn_err("out of memory");
    char *paths[64];
    int n = split_list(buf, paths, 64);
    if (n == 0) {
        free(buf);
        return tn_err("[data] train: no shard listed");
    }
    /* Mode: explicit, or from the first shard's kind. */
    mode = tn_config_str(r->ini, "data", "mode", "auto");
    int sft;
    if (!strcmp(mode, "auto")) {
        tn_shard s;
        if (tn_shard_load(paths[0], &s) != 0) {
            free(buf);
            return -1;
        }
        sft = !strcmp(s.kind, "sft");
        tn_shard_free(&s);
    } else if (!strcmp(mode, "text") || !strcmp(mode, "sft")) {
        sft = !strcmp(mode, "sft");
    } else {
        free(buf);
        return tn_err("[data] mode: '%s' is not auto, text or sft", mode);
    }
    int pack;
    if (tn_config_bool(r->ini, "data", "sft_pack", 1, &pack) != 0) {
        free(buf);
        return -1;
    }
    tn_loader_opts o = {.batch = (int)r->batch, .seq_len = (int)r->seq_len, .seed = (uint64_t)r->seed,
                        .sft_mode = sft, .sft_pack = pack, .sequential = 0};
    int rc = tn_loader_open(&r->loader, (const char *const *)paths, n, &o);
    free(buf);
    TN_CHECK(rc);
    const char *val = tn_config_str(r->ini, "data", "val", NULL);
    if (val && *val) {
        TN_CHECK(tn_shard_load(val, &r->val));
        r->has_val = 1;
    }
    /* every micro-batch of a step is read before the first forward (see train_step) */
    size_t nb = (size_t)(r->batch * r->seq_len * r->accum);
    r->inputs = tn_alloc(nb, sizeof(int32_t));
    r->targets = tn_alloc(nb, sizeof(int32_t));
    r->mask = tn_alloc(nb, 1);
    if (!r->inputs || !r->targets || !r->mask) return -1;
    return 0;
}

/* ---- model ---------------------------------------------------------------------------------------------- */

/* The model's shape: from [model] init (a checkpoint) or the [model] keys. */
static int build_layout(tn_run *r) {
    const char *init = tn_config_str(r->ini, "model", "init", NULL);
    int64_t data_vocab = r->loader ? tn_loader_vocab_size(r->loader) : 0;
    if (tn_method_lora_wanted(r->ini)) {
        TN_CHECK(tn_method_lora_init(r, &r->method)); /* the frozen quantized base of [model] init */
    } else if (init && *init) {
        tn_checkpoint ck;
        TN_CHECK(tn_ckpt_load(init, &ck, NULL, 0));
        r->layout = ck.layout;
        r->host_init = ck.params; /* dense, full layout; uploaded by alloc_params */
        if (ck.tokenizer) {
            r->tokenizer = ck.tokenizer;
            r->tokenizer_len = ck.tokenizer_len;
            memcpy(r->tokenizer_format, ck.tokenizer_format, sizeof r->tokenizer_format);
        }
        tn_free(ck.adam_m);
        tn_free(ck.adam_v);
        tn_free(ck.loader_state);
        free(ck.config_text);
    } else {
        tn_llama_config cfg;
        TN_CHECK(tn_llama_config_from_ini(r->ini, &cfg));
        if (cfg.vocab_size == 0) cfg.vocab_size = (int)data_vocab;
        if (!tn_config_has(r->ini, "model", "max_seq_len")) cfg.max_seq_len = (int)r->seq_len;
        TN_CHECK(tn_llama_layout_init(&r->layout, &cfg));
    }
    if (data_vocab > r->layout.cfg.vocab_size)
        return tn_err("training shards use vocab_size %lld but the model has %d", (long long)data_vocab,
                      r->layout.cfg.vocab_size);
    if (r->seq_len > r->layout.cfg.max_seq_len)
        return tn_err("[train] seq_len %lld exceeds the model's max_seq_len %d", (long long)r->seq_len,
                      r->layout.cfg.max_seq_len);
    return 0;
}

/* ---- memory ---------------------------------------------------------------------------------------------- */

static void add_mem(cJSON *mem, const char *key, int64_t bytes) { cJSON_AddNumberToObject(mem, key, (double)bytes); }

/* The float parameters as arrays of the AdamW state: every tensor at its offset, external ones empty. */
static int adam_arrays(const tn_run *r, int64_t **len, int64_t **off) {
    const int n = r->layout.n_tensors;
    *len = malloc((size_t)n * sizeof **len);
    *off = malloc((size_t)n * sizeof **off);
    if (!*len || !*off) {
        free(*len);
        free(*off);
        return tn_err("out of memory");
    }
    for (int i = 0; i < n; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        const int none = t->external || r->method.frozen_params; /* frozen (LoRA's base): no moments */
        (*len)[i] = none ? 0 : (int64_t)t->numel;
        (*off)[i] = none ? 0 : (int64_t)t->offset;
    }
    return 0;
}

static int adam_plan_bytes(const tn_run *r, int64_t *bytes) {
    int64_t *len, *off;
    TN_CHECK(adam_arrays(r, &len, &off));
    *bytes = tn_adam_state_plan_bytes(r->state_bits, len, off, r->layout.n_tensors);
    free(len);
    free(off);
    return 0;
}

static int alloc_adam(tn_run *r) {
    int64_t *len, *off;
    TN_CHECK(adam_arrays(r, &len, &off));
    int rc = tn_adam_state_init(&r->opt, r->state_bits, len, off, r->layout.n_tensors, r->ops);
    free(len);
    free(off);
    return rc;
}

/* What the run will allocate on its device, component by component, known before anything is allocated;
 * printed, written as the first line of log.jsonl, and checked against the device's free memory. */
static int plan_memory(tn_run *r) {
    const int64_t fb = tn_ops_span((int64_t)r->layout.numel * (int64_t)sizeof(float));
    const int64_t act = tn_llama_plan_bytes(&r->layout, (int)r->batch, (int)r->seq_len, r->ops, &r->model_opts);
    const int64_t sampler =
        r->sample_every > 0 ? tn_llama_plan_bytes(&r->layout, 1, (int)r->seq_len, r->ops, &r->sampler_opts) : 0;
    int64_t in_use = 0;
    r->ops->mem_usage(&in_use, NULL); /* the CUDA backend's cuBLAS workspace and op scratch, from its opening */
    TN_CHECK(plan_distill(r));
    int64_t adam;
    TN_CHECK(adam_plan_bytes(r, &adam));
    int64_t muon = 0;
    TN_CHECK(tn_run_muon_plan(r, &muon));
    const int64_t grokfast = tn_run_grokfast_plan_bytes(r);
    r->planned_bytes = 2 * fb + adam + act + sampler + r->method.state_bytes + r->distill.bytes + muon + grokfast;
    TN_CHECK(tn_device_mem_info(&r->dev, &r->free_at_start, &(int64_t){0}));
    r->min_free = r->free_at_start;

    cJSON *o = cJSON_CreateObject(), *mem = r->pending_log_line ? cJSON_DetachItemFromObject(r->pending_log_line, "memory")
                                                                 : NULL;
    if (!mem) mem = cJSON_CreateObject();
    cJSON_AddStringToObject(mem, "device", r->dev.spec);
    cJSON_AddStringToObject(mem, "device_name", r->dev.name);
    add_mem(mem, "params_bytes", fb);
    add_mem(mem, "grads_bytes", fb);
    add_mem(mem, "adam_bytes", adam);
    cJSON_AddNumberToObject(mem, "state_bits", r->state_bits);
    add_mem(mem, "activation_bytes", act);
    if (sampler) add_mem(mem, "sampler_bytes", sampler);
    if (r->distill.bytes) add_mem(mem, "teacher_bytes", r->distill.bytes);
    add_mem(mem, "method_state_bytes", r->method.state_bytes);
    if (r->muon) add_mem(mem, "muon_bytes", muon);
    if (r->grokfast) add_mem(mem, "grokfast_bytes", grokfast);
    add_mem(mem, "workspace_bytes", in_use);
    add_mem(mem, "planned_bytes", r->planned_bytes + in_use);
    add_mem(mem, "device_free_bytes", r->free_at_start);
    cJSON_AddItemToObject(o, "memory", mem);
    cJSON_Delete(r->pending_log_line);
    r->pending_log_line = o; /* written once log.jsonl is open */

    return tn_device_check_fit(&r->dev, r->planned_bytes);
}

/* The plan, one line per component, printed once the run is set up (an error before that is one line). */
static void log_memory(const tn_run *r) {
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(r->pending_log_line, "memory");
    const double M = 1 << 20;
    double v[9];
    const char *keys[9] = {"params_bytes",       "grads_bytes",     "adam_bytes",    "activation_bytes", "sampler_bytes",
                           "method_state_bytes", "workspace_bytes", "planned_bytes", "teacher_bytes"};
    for (int i = 0; i < 9; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(mem, keys[i]);
        v[i] = cJSON_IsNumber(it) ? it->valuedouble / M : 0;
    }
    char teacher[64] = "";
    if (v[8] > 0) snprintf(teacher, sizeof teacher, ", teacher %.1f MiB", v[8]);
    tn_log_info("memory on %s: params %.1f MiB, grads %.1f MiB, AdamW moments %.1f MiB, activations %.1f MiB, "
                "sampler %.1f MiB, %s state %.1f MiB%s, workspace %.1f MiB; total %.1f MiB of %.1f MiB free",
                r->dev.spec, v[0], v[1], v[2], v[3], v[4], r->method.name, v[5], teacher, v[6], v[7],
                (double)r->free_at_start / M);
    const cJSON *gw = cJSON_GetObjectItemCaseSensitive(mem, "ghost_weights"),
                *bpw = cJSON_GetObjectItemCaseSensitive(mem, "ghost_bytes_per_weight");
    if (cJSON_IsNumber(gw) && cJSON_IsNumber(bpw))
        tn_log_info("primal state: %.0f ghost weights, %g bytes each (index + vote)", gw->valuedouble, bpw->valuedouble);
}

static float *dev_floats(tn_run *r, size_t n) { return r->ops->alloc(n * sizeof(float)); }

/* The parameter buffer for the layout's float tensors (in the device's memory), initialised on the host
 * (random, or [model] init) and uploaded tensor by tensor; the host copy stays for the method (a bf16 STE
 * takes its shadows' initial values from it) until free_host_init. */
static int alloc_params(tn_run *r) {
    const tn_llama_layout *src = r->dense_layout.n_tensors ? &r->dense_layout : &r->layout; /* host_init's */
    if (!r->host_init) {
        double std;
        TN_CHECK(tn_config_float(r->ini, "model", "init_std", 0.02, &std));
        if (!(r->host_init = tn_alloc(src->numel, sizeof(float)))) return -1;
        tn_rng init_rng;
        tn_rng_seed(&init_rng, (uint64_t)r->seed ^ 0x5eedULL);
        tn_llama_init_random(src, r->host_init, &init_rng, (float)std);
    }
    if (!(r->params = dev_floats(r, r->layout.numel))) return -1;
    if (src == &r->layout) return r->ops->upload(r->params, r->host_init, r->layout.numel * sizeof(float));
    for (int i = 0; i < r->layout.n_tensors; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        if (!t->external)
            TN_CHECK(r->ops->upload(r->params + t->offset, r->host_init + src->tensors[i].offset, t->numel * sizeof(float)));
    }
    return 0;
}

static void free_host_init(tn_run *r) {
    tn_free(r->host_init);
    r->host_init = NULL;
}

/* Gradients, AdamW state and the model, after the host parameters are freed: the peak stays at the plan. */
static int alloc_training_state(tn_run *r) {
    if (!(r->grads = dev_floats(r, r->layout.numel))) return -1;
    TN_CHECK(alloc_adam(r));
    TN_CHECK(tn_run_muon_alloc(r));
    TN_CHECK(tn_run_grokfast_alloc(r));
    return tn_llama_create_opts(&r->model, &r->layout, (int)r->batch, (int)r->seq_len, r->ops, &r->model_opts);
}

int tn_run_adamw_params(tn_run *r, double lr, unsigned skip_group_mask) {
    tn_adamw_hparams h = r->adam;
    h.lr = (float)lr;
    for (int i = 0; i < r->layout.n_tensors; i++) {
        const tn_tensor_info *t = &r->layout.tensors[i];
        if (t->external || (skip_group_mask & (1u << t->group))) continue;
        /* Decay matrices only: norms and embeddings are not decayed (GPT-2/llm.c practice). */
        int decay = t->rank == 2 && t->group != TN_GROUP_EMBED;
        const tn_adamw_step st = tn_adamw_step_of(&h, r->step, decay);
        TN_CHECK(tn_adam_state_step(&r->opt, i, r->params + t->offset, r->grads + t->offset, &st));
    }
    return 0;
}

/* ---- checkpoints -------------------------------------------------------------------------------------- */

static void ckpt_path(const tn_run *r, int64_t step, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/ckpt-%06lld.h5", r->out_dir, (long long)step);
}

/* Newest ckpt-NNNNNN.h5 in dir, or -1 if none. */
static int64_t newest_ckpt(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail[8];
        if (sscanf(e->d_name, "ckpt-%lld.h5%7s", &s, tail) == 1 && s > best) best = s;
    }
    closedir(d);
    return best;
}

/* 8-bit AdamW state of the float parameters: /optim8/<tensor name>/{m, v, m_absmax, v_absmax}. */
typedef struct {
    tn_run *r;
    int present, loaded; /* the checkpoint has the group; it was read into r->opt */
} optim8_ctx;

static const char **tensor_names(const tn_llama_layout *l) {
    const char **names = malloc((size_t)l->n_tensors * sizeof *names);
    if (!names) return NULL;
    for (int i = 0; i < l->n_tensors; i++) names[i] = l->tensors[i].name;
    return names;
}

static int optim8_save(void *vctx, hid_t g) {
    optim8_ctx *c = vctx;
    const char **names = tensor_names(&c->r->layout);
    int rc = names ? tn_adam_state_save8(&c->r->opt, g, names) : tn_err("out of memory");
    free(names);
    return rc;
}

static int optim8_load(void *vctx, hid_t g) {
    optim8_ctx *c = vctx;
    c->present = 1;
    if (c->r->state_bits != 8) return 0; /* a mismatch the caller reports */
    const char **names = tensor_names(&c->r->layout);
    int rc = names ? tn_adam_state_load8(&c->r->opt, g, names) : tn_err("out of memory");
    free(names);
    c->loaded = rc == 0;
    return rc;
}

/* The checkpoint hooks of the run: the method's, the 8-bit optimizer state's (saved when the run has
 * one; looked for on every load, to name a mismatch), Muon's and Grokfast's (when the run has them). */
static int run_hooks(tn_run *r, optim8_ctx *o8, tn_ckpt_hook *hooks, int loading) {
    int n = 0;
    if (r->method.hook.group) hooks[n++] = r->method.hook;
    o8->r = r;
    o8->present = o8->loaded = 0;
    if (r->state_bits == 8 || loading) hooks[n++] = (tn_ckpt_hook){"optim8", optim8_save, optim8_load, o8};
    n += tn_run_muon_hooks(r, hooks + n);
    n += tn_run_grokfast_hooks(r, hooks + n);
    return n;
}

static int save_checkpoint(tn_run *r) {
    if (r->comm->rank != 0) return 0; /* every rank holds the same state; rank 0 writes it */
    char path[1100];
    ckpt_path(r, r->step, path, sizeof path);
    tn_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    ck.layout = r->layout;
    ck.params = r->params;
    ck.adam_m = r->method.frozen_params ? NULL : r->opt.m; /* fp32 state (NULL when 8-bit: saved by the optim8 hook) */
    ck.adam_v = r->method.frozen_params ? NULL : r->opt.v;
    ck.external_values = r->method.external_values;
    ck.external_ctx = r->method.hook.ctx;
    ck.ops = r->ops; /* the arrays are in the device's memory: saved tensor by tensor through the host */
    ck.step = r->step;
    ck.rng = r->rng;
    ck.has_rng = 1;
    ck.world_size = r->comm->size;
    ck.config_text = r->config_text;
    ck.tokenizer = r->tokenizer;
    ck.tokenizer_len = r->tokenizer_len;
    memcpy(ck.tokenizer_format, r->tokenizer_format, sizeof ck.tokenizer_format);
    TN_CHECK(tn_loader_save_state(r->loader, &ck.loader_state, &ck.loader_state_len));
    tn_ckpt_hook hooks[4];
    optim8_ctx o8;
    const int n_hooks = run_hooks(r, &o8, hooks, 0);
    int rc = tn_ckpt_save(path, &ck, hooks, n_hooks);
    free(ck.loader_state);
    TN_CHECK(rc);
    tn_log_info("saved %s", path);
    /* latest.h5 -> the newest checkpoint, replaced atomically (symlink to a temporary name, rename). */
    char link[1100], tmp[1150], target[64];
    snprintf(link, sizeof link, "%s/latest.h5", r->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", link, (long)getpid());
    snprintf(target, sizeof target, "ckpt-%06lld.h5", (long long)r->step);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        unlink(tmp);
        tn_log_warn("could not update %s", link);
    }
    /* Keep the newest keep_ckpts checkpoints. */
    int64_t kept = 0;
    for (int64_t s = r->step; s >= 0 && r->ckpt_every > 0; s--) {
        char p[1100];
        ckpt_path(r, s, p, sizeof p);
        if (!tn_file_exists(p)) continue;
        if (++kept > r->keep_ckpts) unlink(p);
    }
    return 0;
}

static int resume_from(tn_run *r, const char *resume) {
    char path[1100];
    if (resume[0]) {
        snprintf(path, sizeof path, "%s", resume);
    } else {
        int64_t s = newest_ckpt(r->out_dir);
        if (s < 0) return tn_err("--resume: no ckpt-*.h5 in %s", r->out_dir);
        ckpt_path(r, s, path, sizeof path);
    }
    tn_checkpoint ck;
    tn_ckpt_hook hooks[4];
    optim8_ctx o8;
    const int n_hooks = run_hooks(r, &o8, hooks, 1);
    TN_CHECK(tn_ckpt_load_into(path, &r->layout, &ck, hooks, n_hooks));
    int rc = 0;
    const int has_opt = r->method.frozen_params || (r->state_bits == 8 ? o8.loaded : ck.adam_m != NULL);
    if (!has_opt && (ck.adam_m || o8.present))
        rc = tn_err("%s: its AdamW state is %d-bit, the run's [optim] state_bits = %d", path,
                    r->state_bits == 8 ? 32 : 8, r->state_bits);
    else if (!has_opt || !ck.has_rng || !ck.loader_state)
        rc = tn_err("%s: not a training checkpoint (no optimizer, RNG or loader state)", path);
    const size_t bytes = r->layout.numel * sizeof(float), moments = (size_t)r->opt.total * sizeof(float);
    if (rc == 0) rc = r->ops->upload(r->params, ck.params, bytes);
    if (rc == 0 && r->state_bits == 32 && moments) rc = r->ops->upload(r->opt.m, ck.adam_m, moments);
    if (rc == 0 && r->state_bits == 32 && moments) rc = r->ops->upload(r->opt.v, ck.adam_v, moments);
    if (rc == 0 && r->method.after_resume) rc = r->method.after_resume(r, r->method.ctx, path);
    if (rc == 0) rc = tn_run_muon_after_resume(r, path);
    if (rc == 0) rc = tn_run_grokfast_after_resume(r, path);
    if (rc == 0 && ck.world_size != r->comm->size)
        tn_log_info("%s was written by a run of %lld rank(s), this one has %d: every step still sees the same "
                    "global batch (docs/SCALE.md); float sums change order, so the losses match to rounding",
                    path, (long long)ck.world_size, r->comm->size);
    if (rc == 0) {
        r->step = ck.step;
        r->rng = ck.rng;
        rc = tn_loader_restore_state(r->loader, ck.loader_state, ck.loader_state_len);
    }
    tn_ckpt_free(&ck);
    if (rc == 0) tn_log_info("resumed from %s at step %lld", path, (long long)r->step);
    return rc ? tn_err_prefix("resume") : 0;
}

/* ---- tokenizer (salad test, and carried into checkpoints so export is self-contained) ---------------- */

static int setup_tokenizer(tn_run *r) {
    const char *spec = tn_config_str(r->ini, "data", "tokenizer", NULL);
    if (spec && *spec) {
        TN_CHECK(tn_tokenizer_load(spec, &r->tok));
        const char *want = tn_loader_tokenizer_sha256(r->loader);
        if (want && *want && strcmp(want, tn_tokenizer_sha256(r->tok)) != 0)
            return tn_err("[data] tokenizer %s is not the tokenizer the shards were made with (sha256 differs)", spec);
        if (tn_tokenizer_vocab_size(r->tok) > r->layout.cfg.vocab_size)
            return tn_err("[data] tokenizer has %lld tokens, the model only %d",
                          (long long)tn_tokenizer_vocab_size(r->tok), r->layout.cfg.vocab_size);
        tn_free(r->tokenizer);
        uint8_t *blob;
        size_t len;
        TN_CHECK(tn_tokenizer_serialize(r->tok, &blob, &len));
        r->tokenizer = tn_alloc(len, 1);
        if (!r->tokenizer) {
            free(blob);
            return -1;
        }
        memcpy(r->tokenizer, blob, len);
        free(blob);
        r->tokenizer_len = len;
        snprintf(r->tokenizer_format, sizeof r->tokenizer_format, "trinity-tokenizer");
    } else if (r->tokenizer && !strcmp(r->tokenizer_format, "trinity-tokenizer")) {
        TN_CHECK(tn_tokenizer_deserialize(r->tokenizer, r->tokenizer_len, &r->tok));
    }
    /* A model trained from scratch takes its special ids from its tokenizer, so runners stop at EOS. */
    if (r->tok && r->layout.cfg.bos_id < 0 && r->layout.cfg.eos_id < 0) {
        r->layout.cfg.bos_id = (int)tn_tokenizer_bos_id(r->tok);
        r->layout.cfg.eos_id = (int)tn_tokenizer_eos_id(r->tok);
    }
    if (r->sample_every > 0 && !r->tok)
        return tn_err("[train] sample_every needs a tokenizer: set [data] tokenizer or start from a model that has one");
    return 0;
}

/* One line of log.jsonl, and with [train] tensorboard its numeric members as scalars of one event at the
 * line's "step" (train/tensorboard.h). */
static int log_line(tn_run *r, const cJSON *o) {
    if (!r->log) return 0; /* ranks other than 0 of a data-parallel run */
    TN_CHECK(tn_json_print_line(r->log, o));
    if (!r->tb) return 0;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    const int64_t step = cJSON_IsNumber(st) ? (int64_t)st->valuedouble : r->step;
    return tn_tb_write_json(r->tb, o, step);
}

static int salad_test(tn_run *r) {
    if (!r->sampler) {
        TN_CHECK(tn_llama_create_opts(&r->sampler, &r->layout, 1, (int)r->seq_len, r->ops, &r->sampler_opts));
        tn_weight_source src;
        int head;
        if (tn_llama_get_weight_source(r->model, &src, &head)) tn_llama_set_weight_source(r->sampler, &src);
        tn_llama_set_head_via_source(r->sampler, head);
        tn_llama_adapter ad; /* LoRA: the sampler runs the adapted model */
        if (tn_llama_get_adapter(r->model, &ad)) tn_llama_set_adapter(r->sampler, &ad);
    }
    if (r->method.prepare_eval) TN_CHECK(r->method.prepare_eval(r, r->method.ctx));
    char *text = NULL;
    TN_CHECK(tn_sample_greedy(r->sampler, r->params, r->tok, r->sample_prompt, (int)r->sample_tokens, &text));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)r->step);
    cJSON_AddStringToObject(o, "prompt", r->sample_prompt);
    cJSON_AddStringToObject(o, "sample", text);
    int rc = log_line(r, o);
    cJSON_Delete(o);
    tn_log_info("step %lld sample: %s%s", (long long)r->step, r->sample_prompt, text);
    free(text);
    return rc;
}

/* ---- evaluation and logging ------------------------------------------------------------------------- */

static int evaluate(tn_run *r) {
    if (r->method.prepare_eval) TN_CHECK(r->method.prepare_eval(r, r->method.ctx));
    double loss;
    int64_t counted;
    TN_CHECK(tn_eval_shard(r->model, r->params, &r->val, r->eval_batches * r->batch, &loss, &counted));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)r->step);
    tn_json_add_num(o, "val_loss", loss);
    tn_json_add_num(o, "val_ppl", exp(loss));
    cJSON_AddNumberToObject(o, "val_tokens", (double)counted);
    int rc = log_line(r, o);
    cJSON_Delete(o);
    tn_log_info("step %lld: val_loss %.4f val_ppl %.2f", (long long)r->step, loss, exp(loss));
    return rc;
}

/* The global L2 norm of every gradient (r->grads and the method's own: the bf16 STE's), and the clip factor:
 * r->grads are scaled in place, the method applies r->grad_scale to its own in its optimizer step. PRIMAL's
 * ghost gradients are not in the norm: they vote by sign above a threshold relative to their own spread
 * (optim/primal.h), which a common factor does not change. */
static int clip_gradients(tn_run *r, double *norm) {
    double ss = 0, extra = 0;
    if (!r->method.frozen_params) TN_CHECK(r->ops->sumsq(r->grads, (int64_t)r->layout.numel, &ss));
    if (r->method.grad_sumsq) TN_CHECK(r->method.grad_sumsq(r, r->method.ctx, &extra));
    *norm = sqrt(ss + extra);
    r->grad_scale = 1.0;
    if (r->grad_clip > 0 && *norm > r->grad_clip && isfinite(*norm)) {
        r->grad_scale = r->grad_clip / *norm;
        TN_CHECK(r->ops->scale(r->grads, (float)r->grad_scale, (int64_t)r->layout.numel));
    }
    return 0;
}

/* A data-parallel step's sums over the ranks (comm/comm.h), after every rank's micro-batches: the float
 * gradients, the method's own (votes, scale gradients, bf16 shadows' gradients), and the host terms (the
 * loss and its parts, each rank's share already weighted by counted / total). Nothing for one process. */
static int reduce_step(tn_run *r, double *terms) {
    if (!r->comm->dev) return 0;
    if (r->dev.is_cuda) TN_CHECK(r->ops->sync()); /* comm_s: the reductions, not the GPU finishing backward */
    TN_CHECK(tn_comm_sum(r->comm, r->grads, (int64_t)r->layout.numel, TN_COMM_F32));
    if (r->method.reduce) TN_CHECK(r->method.reduce(r, r->method.ctx));
    TN_CHECK(tn_comm_sum_host(r->comm, terms, 4));
    r->comm_s = tn_comm_take_seconds(r->comm);
    return 0;
}

/* One optimizer step; returns the mean loss over every counted (loss_mask = 1) token of the step.
 * The step's gradient is that of the token mean, not the mean of per-micro-batch means: micro-batch a,
 * whose loss is the mean over its own counted_a tokens, is back-propagated with weight counted_a / total.
 * With answer-masked SFT the micro-batches count very different numbers of tokens, and the mean of means
 * would give a short answer's tokens the weight of a long one's (the gradient-accumulation bug that
 * Hugging Face transformers fixed in 4.46). So all micro-batches are read first, to know the total. */
static int train_step(tn_run *r, double lr, double *loss_out, double *norm_out) {
    TN_CHECK(r->ops->zero(r->grads, r->layout.numel * sizeof(float)));
    if (r->method.begin_step) TN_CHECK(r->method.begin_step(r, r->method.ctx));
    const int64_t nb = r->batch * r->seq_len;
    int64_t total = 0;
    for (int64_t a = 0; a < r->accum; a++) {
        if (r->bench) {
            const uint64_t V = (uint64_t)r->layout.cfg.vocab_size;
            for (int64_t i = 0; i < nb; i++) {
                r->inputs[a * nb + i] = (int32_t)tn_rng_below(&r->bench_rng, V);
                r->targets[a * nb + i] = (int32_t)tn_rng_below(&r->bench_rng, V);
                r->mask[a * nb + i] = 1;
            }
        } else {
            TN_CHECK(tn_loader_next(r->loader, r->inputs + a * nb, r->targets + a * nb, r->mask + a * nb));
        }
        for (int64_t i = 0; i < nb; i++) total += r->mask[a * nb + i] != 0;
    }
    double loss = 0, ce = 0, kd = 0, hid = 0;
    /* Every rank read every micro-batch of the step (the loaders stay in step, and `total` is the step's);
     * rank k computes its own share [mb_begin, mb_end) (docs/SCALE.md). */
    for (int64_t a = r->mb_begin; a < r->mb_end && total > 0; a++) {
        const int32_t *in = r->inputs + a * nb, *tg = r->targets + a * nb;
        const uint8_t *mk = r->mask + a * nb;
        float l;
        int64_t counted = 0;
        for (int64_t i = 0; i < nb; i++) counted += mk[i] != 0;
        const double w = (double)counted / (double)total;
        if (r->distill.teacher) {
            double k, h;
            TN_CHECK(distill_micro_batch(r, in, tg, mk, w, &l, &k, &h, &counted));
            const double a_ = r->distill.alpha;
            loss += ((1 - a_) * l + a_ * k + h) * w;
            ce += l * w;
            kd += k * w;
            hid += h * w;
            continue;
        }
        TN_CHECK(tn_llama_forward(r->model, r->params, in, tg, mk, &l, &counted));
        TN_CHECK(tn_llama_backward(r->model, r->params, r->grads, (float)w));
        loss += l * w;
    }
    double terms[4] = {loss, ce, kd, hid};
    TN_CHECK(reduce_step(r, terms));
    loss = terms[0], ce = terms[1], kd = terms[2], hid = terms[3];
    r->distill.loss_ce = ce;
    r->distill.loss_kd = kd;
    r->distill.loss_hidden = hid;
    if (!isfinite(loss)) return tn_err("loss is %f at step %lld: training diverged", loss, (long long)r->step + 1);
    TN_CHECK(tn_run_grokfast_filter(r)); /* g += λ·EMA(g) on the step's gradient, before clipping (no-op when off) */
    TN_CHECK(clip_gradients(r, norm_out));
    r->step++;
    if (r->method.optimizer_step) TN_CHECK(r->method.optimizer_step(r, r->method.ctx, lr));
    else if (r->muon) TN_CHECK(tn_run_muon_step(r, lr));
    else TN_CHECK(tn_run_adamw_params(r, lr, 0));
    *loss_out = loss;
    return 0;
}

static int train_loop(tn_run *r) {
    const int64_t tokens_per_step = r->batch * r->seq_len * r->accum;
    tn_progress bar;
    tn_progress_begin(&bar, "train", r->steps);
    while (r->step < r->steps) {
        double lr = tn_schedule_lr(&r->sched, r->step + 1);
        double t0 = tn_time_s(), loss = 0, norm = 0;
        const long long this_step = (long long)r->step + 1;
        tn_comm_test_fault(r->comm, this_step);
        if (train_step(r, lr, &loss, &norm) != 0 || r->ops->sync() != 0) /* the step's time includes its device work */
            return tn_err_prefix("step %lld", this_step);
        double dt = tn_time_s() - t0;
        if (r->dev.is_cuda) {
            int64_t free_b, total_b;
            if (tn_device_mem_info(&r->dev, &free_b, &total_b) == 0 && free_b < r->min_free) r->min_free = free_b;
        }
        if (r->step % r->log_every == 0 || r->step == r->steps) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "step", (double)r->step);
            tn_json_add_num(o, "loss", loss);
            tn_json_add_num(o, "lr", lr);
            tn_json_add_num(o, "grad_norm", norm);
            tn_json_add_num(o, "tokens_per_s", (double)tokens_per_step / dt);
            tn_json_add_num(o, "elapsed_s", tn_time_s() - r->t_start);
            if (r->comm->dev) tn_json_add_num(o, "comm_s", r->comm_s);
            if (r->distill.teacher) {
                tn_json_add_num(o, "loss_ce", r->distill.loss_ce);
                tn_json_add_num(o, "loss_kd", r->distill.loss_kd);
                if (r->distill.hidden_weight > 0) tn_json_add_num(o, "loss_hidden", r->distill.loss_hidden);
            }
            if (r->method.log_step) r->method.log_step(r, r->method.ctx, o);
            int rc = log_line(r, o);
            cJSON_Delete(o);
            TN_CHECK(rc);
            if (!bar.enabled)
                tn_log_info("step %lld/%lld loss %.4f lr %.3g grad_norm %.3f %.0f tok/s", (long long)r->step,
                            (long long)r->steps, loss, lr, norm, (double)tokens_per_step / dt);
        }
        tn_progress_update(&bar, r->step);
        if (r->has_val && r->eval_every > 0 && (r->step % r->eval_every == 0 || r->step == r->steps))
            TN_CHECK(evaluate(r));
        if (r->sample_every > 0 && (r->step % r->sample_every == 0 || r->step == r->steps)) TN_CHECK(salad_test(r));
        if (r->ckpt_every > 0 && r->step % r->ckpt_every == 0 && r->step != r->steps) TN_CHECK(save_checkpoint(r));
    }
    tn_progress_end(&bar);
    return save_checkpoint(r);
}

/* ---- entry point --------------------------------------------------------------------------------------- */

static void run_free(tn_run *r) {
    free_distill(r);
    if (r->method.destroy) r->method.destroy(r->method.ctx);
    tn_llama_free(r->model);
    tn_llama_free(r->sampler);
    if (r->tok) tn_tokenizer_free(r->tok);
    if (r->ops) {
        r->ops->free(r->params);
        r->ops->free(r->grads);
    }
    tn_adam_state_free(&r->opt);
    tn_run_muon_free(r);
    tn_run_grokfast_free(r);
    tn_free(r->host_init);
    tn_llama_layout_free(&r->layout);
    tn_llama_layout_free(&r->dense_layout);
    if (r->loader) tn_loader_close(r->loader);
    if (r->has_val) tn_shard_free(&r->val);
    tn_free(r->inputs);
    tn_free(r->targets);
    tn_free(r->mask);
    tn_free(r->tokenizer);
    if (r->log) fclose(r->log);
    tn_tb_close(r->tb);
    cJSON_Delete(r->pending_log_line);
    free(r->config_text);
    tn_config_free(r->ini);
}

/* [train] device and precision; an emulated CUDA device says so (kernels run on the CPU). */
static int open_device(tn_run *r) {
    /* Launched by mpirun with device = cuda: one GPU per rank, cuda:<the rank's index on its node>. */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK"), *spec = r->device_spec;
    char per_rank[32];
    if (!strcmp(spec, "cuda") && local && *local && !r->bench && !r->plan_only) {
        snprintf(per_rank, sizeof per_rank, "cuda:%d", atoi(local));
        spec = per_rank;
    }
    if (tn_device_open(spec, &r->dev) != 0) return tn_err_prefix("[train] device");
    r->ops = r->dev.ops;
    if (tn_device_set_precision(&r->dev, r->precision) != 0) return tn_err_prefix("[train] precision");
    return 0;
}

/* [train] comm: the ranks of a data-parallel run (comm/comm.h; docs/SCALE.md). Rank k computes micro-batches
 * [k·accum/N, (k+1)·accum/N) of every step, so the data of an optimizer step is that of one process with the
 * same global batch. Benchmarks and plans are one process. Ranks other than 0 print errors only. */
static int open_comm(tn_run *r) {
    r->comm = tn_comm_single();
    if (!r->bench && !r->plan_only) {
        tn_comm *c;
        TN_CHECK(tn_comm_open(r->comm_kind, &r->dev, r->comm_timeout_s, &c));
        r->comm = c;
    }
    const int64_t n = r->comm->size, k = r->comm->rank;
    if (r->accum % n != 0)
        return tn_err("[train] accum = %lld is not divisible by the %lld ranks (each rank takes accum / N of every "
                      "step's micro-batches)", (long long)r->accum, (long long)n);
    r->mb_begin = r->accum * k / n;
    r->mb_end = r->accum * (k + 1) / n;
    if (k != 0) tn_log_set_level(TN_LOG_QUIET);
    if (r->comm->dev) /* every communicator but the one-process one */
        tn_log_info("data parallel: %lld rank(s) over %s, %lld micro-batch(es) of %lld x %lld tokens per rank per step",
                    (long long)n, r->comm->name, (long long)(r->mb_end - r->mb_begin), (long long)r->batch,
                    (long long)r->seq_len);
    return 0;
}

/* Benchmark runs have no shards: every micro-batch is uniform random tokens, all counted. */
static int open_synthetic_data(tn_run *r) {
    size_t nb = (size_t)(r->batch * r->seq_len * r->accum);
    r->inputs = tn_alloc(nb, sizeof(int32_t));
    r->targets = tn_alloc(nb, sizeof(int32_t));
    r->mask = tn_alloc(nb, 1);
    if (!r->inputs || !r->targets || !r->mask) return -1;
    tn_rng_seed(&r->bench_rng, (uint64_t)r->seed ^ 0xbe7cULL);
    return 0;
}

/* config_path NULL: the configuration is the overrides alone (benchmarks). */
static int setup(tn_run *r, const char *config_path, char *const *overrides, int n_overrides, const char *resume) {
    if (!(r->ini = tn_config_new())) return -1;
    if (config_path) TN_CHECK(tn_config_load(r->ini, config_path));
    for (int i = 0; i < n_overrides; i++) TN_CHECK(tn_config_set(r->ini, overrides[i]));
    if (!(r->config_text = config_to_text(r->ini))) return tn_err("out of memory");
    TN_CHECK(read_train_config(r));
    TN_CHECK(read_distill_config(r));
    TN_CHECK(open_device(r));
    TN_CHECK(open_comm(r));
    if (r->bench) r->ops->mem_reset_peak(); /* this run's peak, after an earlier one's (bench train --quant) */
    /* A plan needs the shards only for the vocabulary size, when neither [model] nor an init model gives it. */
    const int need_shards = !r->bench && !(r->plan_only && (tn_config_has(r->ini, "model", "vocab_size") ||
                                                             tn_config_has(r->ini, "model", "init")));
    TN_CHECK(need_shards ? open_data(r) : open_synthetic_data(r));
    TN_CHECK(build_layout(r));
    const char *method = tn_config_str(r->ini, "optim", "method", "adamw");
    int primal = !strcmp(method, "primal"), muon = !strcmp(method, "muon");
    if (!primal && !muon && strcmp(method, "adamw") != 0)
        return tn_err("[optim] method: '%s' is not adamw, muon or primal", method);
    TN_CHECK(tn_run_muon_config(r, muon)); /* Muon steps the float parameters: dense, or STE's fp32 shadows */
    TN_CHECK(tn_run_grokfast_config(r));
    int ste = !primal && tn_config_has(r->ini, "quant", "grid");
    if (primal) TN_CHECK(tn_method_primal_init(r, &r->method));
    else if (ste) TN_CHECK(tn_method_ste_plan(r, &r->method));
    else if (!r->method.name) r->method.name = "dense"; /* LoRA named itself in build_layout */
    if (r->plan_only) {
        const int fits = plan_memory(r) == 0;
        cJSON *mem = cJSON_GetObjectItemCaseSensitive(r->pending_log_line, "memory");
        cJSON_AddBoolToObject(mem, "fits", fits);
        TN_CHECK(tn_json_print_line(stdout, r->pending_log_line));
        return fits ? 0 : -1;
    }
    TN_CHECK(plan_memory(r));
    TN_CHECK(r->ops->reserve((size_t)r->planned_bytes)); /* the plan in one piece; refused here if it fails */
    TN_CHECK(alloc_params(r));
    if (ste) TN_CHECK(tn_method_ste_init(r, &r->method)); /* a bf16 STE takes its shadows from the host copy */
    free_host_init(r);
    TN_CHECK(alloc_training_state(r));
    if (primal) TN_CHECK(tn_method_primal_attach(r, &r->method));
    else if (ste) TN_CHECK(tn_method_ste_attach(r, &r->method));
    else if (r->method.frozen_params) TN_CHECK(tn_method_lora_attach(r, &r->method));
    if (r->bench) {
        tn_rng_seed(&r->rng, (uint64_t)r->seed);
        TN_CHECK(open_distill(r));
        return tn_config_check_unused(r->ini);
    }
    TN_CHECK(setup_tokenizer(r));
    TN_CHECK(open_distill(r));
    TN_CHECK(tn_config_check_unused(r->ini));
    tn_rng_seed(&r->rng, (uint64_t)r->seed);
    if (resume) TN_CHECK(resume_from(r, resume));
    const char *init = tn_config_str(r->ini, "model", "init", NULL);
    tn_log_info("model: %s, %lld parameters", init && *init ? init : "from scratch",
                (long long)tn_llama_config_n_params(&r->layout.cfg));
    if (r->comm->rank == 0) { /* the run directory is rank 0's */
        TN_CHECK(tn_mkdir_p(r->out_dir));
        char path[1100];
        snprintf(path, sizeof path, "%s/config.ini", r->out_dir);
        TN_CHECK(tn_write_file_atomic(path, r->config_text, strlen(r->config_text)));
        snprintf(path, sizeof path, "%s/log.jsonl", r->out_dir);
        if (!(r->log = fopen(path, resume ? "a" : "w"))) return tn_err("%s: cannot open for writing", path);
        if (r->tensorboard) {
            TN_CHECK(tn_tb_open(r->out_dir, &r->tb));
            tn_log_info("tensorboard: %s", tn_tb_path(r->tb));
        }
    }
    tn_log_info("device %s: %s, precision %s", r->dev.spec, r->dev.name, tn_precision_name(r->dev.precision));
    if (r->dev.emulated)
        tn_log_info("device %s is the CUDA emulator of a test build (-DTN_CUDA_EMU=ON): every kernel runs on the CPU",
                    r->dev.spec);
    log_memory(r);
    if (r->pending_log_line) {
        TN_CHECK(log_line(r, r->pending_log_line));
        cJSON_Delete(r->pending_log_line);
        r->pending_log_line = NULL;
    }
    tn_log_info("training: method %s, %lld steps of %lld x %lld tokens x %lld accum, activations %.1f MiB",
                r->method.name, (long long)r->steps, (long long)r->batch, (long long)r->seq_len,
                (long long)r->accum, (double)tn_llama_activation_bytes(r->model) / (1 << 20));
    tn_run_muon_log(r);
    tn_run_grokfast_log(r);
    return 0;
}

int tn_train_plan(const char *config_path, char *const *overrides, int n_overrides) {
    tn_run r;
    memset(&r, 0, sizeof r);
    r.comm = tn_comm_single();
    r.plan_only = 1;
    int rc = setup(&r, config_path, overrides, n_overrides, NULL);
    run_free(&r);
    return rc;
}

int tn_train_run(const char *config_path, char *const *overrides, int n_overrides, const char *resume) {
    tn_run r;
    memset(&r, 0, sizeof r);
    r.comm = tn_comm_single();
    r.t_start = tn_time_s();
    int rc = setup(&r, config_path, overrides, n_overrides, resume);
    if (rc == 0) rc = train_loop(&r);
    if (rc == 0) {
        cJSON *o = cJSON_CreateObject();
        int64_t dev_peak = 0;
        r.ops->mem_usage(NULL, &dev_peak);
        cJSON_AddNumberToObject(o, "step", (double)r.step);
        cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)tn_peak_rss_bytes());
        if (r.dev.is_cuda) {
            /* allocated: the backend's own count; measured: the drop of the device's free memory */
            cJSON_AddNumberToObject(o, "peak_device_allocated_bytes", (double)dev_peak);
            cJSON_AddNumberToObject(o, "peak_device_measured_bytes", (double)(r.free_at_start - r.min_free));
        }
        log_line(&r, o);
        cJSON_Delete(o);
        tn_log_info("done: %lld steps, peak RSS %.1f MiB", (long long)r.step, (double)tn_peak_rss_bytes() / (1 << 20));
        if (r.dev.is_cuda)
            tn_log_info("peak device memory on %s: %.1f MiB allocated, %.1f MiB measured (free memory drop)",
                        r.dev.spec, (double)dev_peak / (1 << 20), (double)(r.free_at_start - r.min_free) / (1 << 20));
    }
    tn_comm *comm = r.comm;
    run_free(&r);
    if (rc != 0 && comm->size > 1) {
        /* The other ranks wait in a reduction that will not come: say why here, then end the job. */
        fprintf(stderr, "trinity: error: rank %d: %s\n", comm->rank, tn_errmsg());
        fflush(stderr);
    }
    tn_comm_close(comm, rc != 0);
    return rc;
}

/* ---- benchmark ----------------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int tn_train_bench(char *const *assignments, int n, int steps, tn_train_bench_result *res) {
    tn_run r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    r.comm = tn_comm_single();
    r.bench = 1;
    r.t_start = tn_time_s();
    if (steps < 1 || steps > 1000) return tn_err("bench: steps must be in [1, 1000]");
    res->peak_rss_reset = tn_peak_rss_reset() == 0; /* this run's peak, not an earlier one's */
    double *times = malloc((size_t)steps * sizeof *times);
    int rc = times ? setup(&r, NULL, assignments, n, NULL) : tn_err("out of memory");
    for (int s = 0; rc == 0 && s <= steps; s++) { /* step 0 warms up (cuBLAS heuristics, caches, pages) */
        double loss = 0, norm = 0;
        const double lr = tn_schedule_lr(&r.sched, r.step + 1), t0 = tn_time_s();
        rc = train_step(&r, lr, &loss, &norm);
        if (rc == 0) rc = r.ops->sync();
        if (rc == 0 && s > 0) times[s - 1] = tn_time_s() - t0;
        if (rc == 0 && s == 0) res->loss_first = loss;
        if (rc == 0) res->loss_last = loss;
        int64_t free_b, total_b;
        if (rc == 0 && r.dev.is_cuda && tn_device_mem_info(&r.dev, &free_b, &total_b) == 0 && free_b < r.min_free)
            r.min_free = free_b;
    }
    if (rc == 0) {
        qsort(times, (size_t)steps, sizeof *times, cmp_double);
        res->step_s = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        res->tokens_per_step = r.batch * r.seq_len * r.accum;
        res->batch = r.batch;
        res->seq_len = r.seq_len;
        res->accum = r.accum;
        res->cfg = r.layout.cfg;
        res->dev = r.dev;
        snprintf(res->method, sizeof res->method, "%s", r.method.name ? r.method.name : "dense");
        int64_t in_use = 0;
        r.ops->mem_usage(&in_use, &res->peak_allocated_bytes);
        res->planned_bytes = r.planned_bytes;
        res->peak_measured_bytes = r.dev.is_cuda ? r.free_at_start - r.min_free : 0;
        res->peak_rss_bytes = tn_peak_rss_bytes();
        cJSON *mem = cJSON_GetObjectItemCaseSensitive(r.pending_log_line, "memory");
        res->memory = mem ? cJSON_Duplicate(mem, 1) : NULL;
    }
    free(times);
    run_free(&r);
    return rc;
}
