/* State of one training run, shared by the loop (train.c) and the per-method parts (dense AdamW,
 * STE evolution, PRIMAL). Internal to train/. */
#ifndef TN_TRAIN_RUN_H
#define TN_TRAIN_RUN_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "core/config.h"
#include "comm/comm.h"
#include "core/rng.h"
#include "data/loader.h"
#include "data/shard.h"
#include "device/device.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "train/adam_state.h"
#include "train/checkpoint.h"

typedef struct tn_run tn_run;

/* Knowledge distillation from a frozen dense teacher ([distill], train/teacher.h): the step's objective is
 * (1 − α)·CE + α·τ²·KL(p_teacher,τ ‖ p_student,τ) + hidden_weight·MSE(hidden states), every term a mean over
 * the counted positions. */
#define TN_DISTILL_MAX_HIDDEN 64
struct tn_teacher;
typedef struct {
    const char *teacher_path; /* NULL: no distillation */
    double alpha, tau, hidden_weight;
    int n_hidden, hidden_layers[TN_DISTILL_MAX_HIDDEN]; /* the student's layers */
    int teacher_layers[TN_DISTILL_MAX_HIDDEN];          /* the teacher's at the same relative depth */
    struct tn_teacher *teacher;
    float *kl;                 /* [B·T] per-position KL (table memory) */
    int64_t bytes;             /* planned */
    double loss_ce, loss_kd, loss_hidden; /* the last step's terms (means over counted tokens) */
} tn_distill;

/* A training method: how the forward gets its weights, how the optimizer steps, what it logs and
 * saves. Dense AdamW is the method with every hook NULL. */
typedef struct {
    const char *name;
    void *ctx;
    /* Before each optimizer step's micro-batches (e.g. STE: materialise W_q, PRIMAL: nothing). */
    int (*begin_step)(tn_run *r, void *ctx);
    /* Σ g² of gradients the method keeps outside r->grads (bf16 STE shadows), for the global norm. */
    int (*grad_sumsq)(tn_run *r, void *ctx, double *ss);
    /* The optimizer step (replaces dense AdamW when set); gradients outside r->grads are to be multiplied
     * by r->grad_scale, the clip factor (r->grads are already clipped). */
    int (*optimizer_step)(tn_run *r, void *ctx, double lr);
    /* Add method telemetry to a step's log object. */
    void (*log_step)(tn_run *r, void *ctx, cJSON *obj);
    /* Before an evaluation: make the model's weights the deployed ones (STE: fully snapped, λ = 1). */
    int (*prepare_eval)(tn_run *r, void *ctx);
    tn_ckpt_hook hook; /* group name NULL when the method saves nothing */
    /* After a resume has read the checkpoint (and the hook its group, when present): refuse what cannot
     * continue (a bf16 STE run needs its shadows from /quant). NULL: nothing to check. */
    int (*after_resume)(tn_run *r, void *ctx, const char *path);
    /* After the micro-batches of a step on a data-parallel run (r->comm, comm/comm.h): sum over the ranks the
     * gradients and votes the method keeps outside r->grads (PRIMAL: votes and scale gradients; bf16 STE:
     * the shadows' gradients), with tn_comm_sum, and its telemetry. NULL: nothing outside r->grads. */
    int (*reduce)(tn_run *r, void *ctx);
    /* Values of tensors external in the run's layout that the method holds (bf16 shadows), saved as
     * /params like any other (train/checkpoint.h external_values); NULL when none. */
    int (*external_values)(void *ctx, int tensor, float *host_out);
    void (*destroy)(void *ctx);
    /* Bytes the method allocates in the device's memory beyond the float parameters, gradients and
     * moments (PRIMAL: indices, votes, scales and their moments; STE: the quantized weights and indices;
     * bf16 STE: the bf16 shadows, their gradients and moments and the indices instead), known before anything
     * is allocated. */
    int64_t state_bytes;
    /* Float gradients the method keeps outside r->grads and steps with its own AdamW (PRIMAL: its scales';
     * LoRA: the adapters'): float_grad_count values, known at init, in table memory at the address
     * float_grads returns once the method is attached. Grokfast filters them with r->grads
     * (train/run_grokfast.c). 0 / NULL: none. */
    int64_t float_grad_count;
    float *(*float_grads)(void *ctx);
    /* 1: the run's float parameters are frozen (LoRA): they get no AdamW state, their gradients are not in the
     * norm, and the method's optimizer_step is the only update. */
    int frozen_params;
} tn_method;

struct tn_run {
    tn_config *ini;
    char *config_text;
    char out_dir[1024];
    int64_t seed, batch, seq_len, accum, steps, log_every, eval_every, eval_batches, ckpt_every, keep_ckpts;
    int64_t sample_every, sample_tokens;
    const char *sample_prompt;
    const char *device_spec, *precision; /* [train] device and precision */
    tn_schedule sched;
    tn_adamw_hparams adam;
    double grad_clip;

    tn_device dev;            /* where the run's buffers live; ops = dev.ops */
    const char *comm_kind;    /* [train] comm: auto, single, mpi or nccl */
    double comm_timeout_s;    /* [train] comm_timeout_s */
    tn_comm *comm;            /* the ranks of a data-parallel run (tn_comm_single() for one process) */
    int64_t mb_begin, mb_end; /* this rank's micro-batches of every step: [mb_begin, mb_end) of [0, accum) */
    double comm_s;            /* the last step's seconds in reductions */
    const tn_ops *ops;
    tn_llama_layout layout;
    float *params, *grads;    /* [layout.numel] each, in the device's memory */
    tn_adam_state opt;        /* the AdamW moments of params ([optim] state_bits) */
    int state_bits;
    double grad_scale;        /* the last step's clip factor (1 when not clipped) */
    float *host_init;         /* initial parameters (host), in dense_layout when it is set, else in layout */
    tn_llama_layout dense_layout; /* the layout before a method made tensors external, when host_init needs it
                                     (the bf16 STE reads its shadows' initial values there); n_tensors 0 if unused */
    tn_llama *model;
    tn_llama_opts model_opts, sampler_opts; /* [train] recompute; the sampler is forward only */
    int64_t planned_bytes;    /* the memory plan printed at start */
    int64_t free_at_start, min_free; /* device memory free before allocating, and the least seen since */

    tn_loader *loader;
    tn_shard val;
    int has_val;
    int32_t *inputs, *targets;
    uint8_t *mask;

    struct tn_tokenizer *tok; /* for the salad test; NULL when the run has no tokenizer */
    tn_llama *sampler;        /* batch-1 model sharing the weight source, built on first use */
    char tokenizer_format[32];
    uint8_t *tokenizer;
    size_t tokenizer_len;

    tn_distill distill;
    tn_rng rng;
    int bench;          /* a benchmark: synthetic tokens, no run directory (tn_train_bench) */
    int plan_only;      /* print the memory plan and stop (tn_train_plan) */
    tn_rng bench_rng;
    int64_t step;
    FILE *log;
    struct tn_tb *tb;     /* [train] tensorboard: the event file (train/tensorboard.h), else NULL */
    int tensorboard;
    cJSON *pending_log_line; /* a line a method produced before log.jsonl was opened */
    double t_start;
    tn_method method;
    struct tn_run_muon *muon;         /* [optim] method = muon (train/run_muon.c), else NULL */
    struct tn_run_grokfast *grokfast; /* [optim] grokfast_lambda > 0 (train/run_grokfast.c), else NULL */
};

/* Dense AdamW over every parameter (decay on matrices only). Also used by the other methods for the
 * parameters they leave in float. skip_group_mask: bit (1 << tn_param_group) set = tensor skipped. */
int tn_run_adamw_params(tn_run *r, double lr, unsigned skip_group_mask);

/* Method constructors (each reads its own config section). PRIMAL runs before the parameter buffers
 * exist (it makes ghost tensors external, so they get no fp32 storage) and attaches to the model in
 * tn_method_primal_attach. STE plans before anything is allocated (with bf16 shadows it makes the quantized
 * tensors external), initialises once the parameters exist and the host copy of the initial values is
 * still there (r->host_init), and attaches to the model once it exists. */
int tn_method_ste_plan(tn_run *r, tn_method *m); /* state_bytes, before anything is allocated */
int tn_method_ste_init(tn_run *r, tn_method *m);   /* before the model exists */
int tn_method_ste_attach(tn_run *r, tn_method *m);  /* the rest of its state; the model's weight source */
int tn_method_primal_init(tn_run *r, tn_method *m);
int tn_method_primal_attach(tn_run *r, tn_method *m);
/* LoRA on a frozen quantized base (train/method_lora.c): wanted when the config has a [lora] section; init
 * loads the base from [model] init in place of build_layout's load (layout, float parameters, tokenizer) and
 * plans; attach sets the model's weight source once the model exists. */
int tn_method_lora_wanted(tn_config *c);
int tn_method_lora_init(tn_run *r, tn_method *m);
int tn_method_lora_attach(tn_run *r, tn_method *m);

/* Muon ([optim] method = muon, train/run_muon.c): the [muon] keys (on = 0: refuse them), the planned bytes
 * (momentum and scratch), the state once the parameters exist, the optimizer step that replaces dense AdamW,
 * its checkpoint hook (returns the hooks written: 0 or 1), the check after a resume, and the release. */
int tn_run_muon_config(tn_run *r, int on);
int tn_run_muon_plan(tn_run *r, int64_t *bytes);
int tn_run_muon_alloc(tn_run *r);
void tn_run_muon_log(const tn_run *r); /* one info line, once the run is set up */
int tn_run_muon_step(tn_run *r, double lr);
int tn_run_muon_hooks(tn_run *r, tn_ckpt_hook *hooks);
int tn_run_muon_after_resume(tn_run *r, const char *path);
void tn_run_muon_free(tn_run *r);

/* Grokfast ([optim] grokfast_alpha, grokfast_lambda; train/run_grokfast.c): the same life cycle; the filter
 * runs on r->grads once per step, before clipping (a no-op when off). */
int tn_run_grokfast_config(tn_run *r);
int64_t tn_run_grokfast_plan_bytes(const tn_run *r);
int tn_run_grokfast_alloc(tn_run *r);
void tn_run_grokfast_log(const tn_run *r);
int tn_run_grokfast_filter(tn_run *r);
int tn_run_grokfast_hooks(tn_run *r, tn_ckpt_hook *hooks);
int tn_run_grokfast_after_resume(tn_run *r, const char *path);
void tn_run_grokfast_free(tn_run *r);

#endif
