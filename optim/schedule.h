/* Learning-rate schedule: linear warm-up from 0 over warmup_steps, then decay to min_lr by total_steps
 * (cosine or linear), or constant. step is the 1-based optimizer step being taken. */
#ifndef TN_OPTIM_SCHEDULE_H
#define TN_OPTIM_SCHEDULE_H

#include <stdint.h>

typedef enum { TN_SCHED_COSINE = 0, TN_SCHED_LINEAR, TN_SCHED_CONSTANT } tn_sched_kind;

typedef struct {
    tn_sched_kind kind;
    double lr, min_lr;
    int64_t warmup_steps, total_steps;
} tn_schedule;

/* Parse "cosine" | "linear" | "constant". */
int tn_schedule_kind_parse(const char *s, tn_sched_kind *out);
double tn_schedule_lr(const tn_schedule *s, int64_t step);
/* λ ramp for STE blending: 0 → 1 linearly over warmup steps (1 from the start when warmup == 0). */
double tn_lambda_ramp(int64_t step, int64_t warmup);

#endif
