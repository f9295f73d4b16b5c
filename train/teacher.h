/* A frozen dense teacher for knowledge distillation ([distill], docs/EVOLVE.md): a checkpoint whose matrices
 * (the embedding and every linear layer) are kept in 16-bit IEEE half precision, widened to float one
 * matrix at a time as the forward needs it, and whose forward keeps no activations for a backward
 * (model/llama.h forward_only): it costs 2 bytes per parameter plus the residual stream, one layer's
 * activations and the logits. Everything lives in the ops table's memory, so the teacher runs on the student's device.
 *
 * The teacher must have the student's vocabulary (and, when both checkpoints carry one, the same tokenizer
 * bytes); it may be larger or smaller otherwise, and must have the student's width only when its hidden
 * states are compared (need_width). */
#ifndef TN_TRAIN_TEACHER_H
#define TN_TRAIN_TEACHER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/llama.h"

typedef struct tn_teacher tn_teacher;

/* The bytes tn_teacher_open allocates in table memory for a batch of B × T (reads only the config). */
int tn_teacher_plan_bytes(const char *path, int B, int T, const tn_ops *ops, int64_t *bytes);

int tn_teacher_open(tn_teacher **out, const char *path, const tn_llama_config *student, const uint8_t *student_tok,
                    size_t student_tok_len, int need_width, int B, int T, const tn_ops *ops);
void tn_teacher_free(tn_teacher *t);
/* The teacher's forward over B·T token ids (host array): its logits and hidden states until the next call. */
int tn_teacher_forward(tn_teacher *t, const int32_t *inputs);
/* Its logits [B·T, V] (table memory; the caller may overwrite them, e.g. with the distillation gradient). */
float *tn_teacher_logits(tn_teacher *t);
/* Its residual stream after layer l, [B·T, D] (table memory). */
const float *tn_teacher_hidden(const tn_teacher *t, int l);
const tn_llama_config *tn_teacher_cfg(const tn_teacher *t);

#endif
