#include "optim/schedule.h"
#include "core/error.h"

#include <math.h>
#include <string.h>

int tn_schedule_kind_parse(const char *s, tn_sched_kind *out) {
    if (!strcmp(s, "cosine")) *out = TN_SCHED_COSINE;
    else if (!strcmp(s, "linear")) *out = TN_SCHED_LINEAR;
    else if (!strcmp(s, "constant")) *out = TN_SCHED_CONSTANT;
    else return tn_err("unknown lr schedule '%s' (cosine, linear or constant)", s);
    return 0;
}

double tn_schedule_lr(const tn_schedule *s, int64_t step) {
    if (s->warmup_steps > 0 && step <= s->warmup_steps) return s->lr * (double)step / (double)s->warmup_steps;
    if (s->kind == TN_SCHED_CONSTANT) return s->lr;
    int64_t span = s->total_steps - s->warmup_steps;
    if (span <= 0) return s->lr;
    double frac = (double)(step - s->warmup_steps) / (double)span;
    if (frac > 1) frac = 1;
    if (frac < 0) frac = 0;
    double w = s->kind == TN_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * frac)) : 1.0 - frac;
    return s->min_lr + (s->lr - s->min_lr) * w;
}

double tn_lambda_ramp(int64_t step, int64_t warmup) {
    if (warmup <= 0) return 1.0;
    double l = (double)step / (double)warmup;
    return l > 1 ? 1 : (l < 0 ? 0 : l);
}
