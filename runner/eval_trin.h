/* Perplexity of a model through the inference engine (`trinity eval MODEL.trin --data SHARD`).
 * Windows are exactly train/eval.h's: window w feeds tokens [w·T, w·T + T) and predicts the next token at
 * every position; a target counts when its loss_mask is 1; the last window may be shorter. So the loss of
 * an exported model is comparable, to float rounding, with the checkpoint's (tn_eval_checkpoint). */
#ifndef TN_RUNNER_EVAL_TRIN_H
#define TN_RUNNER_EVAL_TRIN_H

#include <stdint.h>

#include "runner/infer.h"

/* model: a .trin file (or an .h5 checkpoint, through the engine). seq_len 0 = min(512, max_seq_len).
 * batch is accepted for symmetry with tn_eval_checkpoint and unused (the engine runs one window at a
 * time, each as one batched prompt). max_windows 0 = all. mode: TN_INFER_EXACT gives the checkpoint's
 * loss; TN_INFER_FAST uses the int8 / lookup kernels. device: "cpu" (or NULL), "cuda", "cuda:N". *loss = masked mean NLL, *tokens = targets counted. */
int tn_trin_eval(const char *model, const char *shard, int seq_len, int batch, int64_t max_windows,
                 tn_infer_mode mode, const char *device, double *loss, int64_t *tokens);

/* What a quantized variant costs against a reference model with the same tokenizer and vocabulary (a
 * quantized LM head against the F16 one, `trinity eval --reference`): both run over the same windows
 * (teacher-forced, the same mode and device), and at every counted target their top-1 predictions are
 * compared (ties broken toward the lower token id, as greedy sampling does). */
typedef struct {
    double loss, ref_loss;     /* masked mean NLL of the model and of the reference */
    int64_t tokens;            /* targets counted */
    int64_t top1_agree;        /* targets where both models' argmax agree */
} tn_eval_compare;

/* As tn_trin_eval with ref (a .trin or .h5) run alongside; ref NULL fills only loss and tokens. io: the
 * engines' options (mode, device, rescore, load; the context is set to one window). */
int tn_trin_eval_compare(const char *model, const char *ref, const char *shard, int seq_len, int64_t max_windows,
                         const tn_infer_opts *io, tn_eval_compare *out);

#endif
