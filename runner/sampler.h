/* Choosing the next token from logits: repeat penalty, then greedy (temperature 0) or temperature,
 * top-k, top-p (nucleus) and a seeded draw (core/rng.h), so a run with the same seed repeats exactly.
 *
 *   repeat penalty   each distinct token among the last repeat_last_n: logit / r if positive, logit · r
 *                    otherwise (CTRL, Keskar et al. 2019, as llama.cpp applies it); r = 1 is off
 *   greedy           temperature 0: the highest logit (the lowest id on a tie)
 *   temperature      p ∝ exp(logit / T)
 *   top-k            keep the k most likely (0 = off)
 *   top-p            keep the smallest set of most likely tokens whose probability reaches p (1 = off)
 * then draw from what is kept, renormalised. */
#ifndef TN_RUNNER_SAMPLER_H
#define TN_RUNNER_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature;    /* >= 0; 0 = greedy                          [0.8] */
    int top_k;            /* >= 0; 0 = off                             [40] */
    float top_p;          /* (0, 1]; 1 = off                           [0.95] */
    float repeat_penalty; /* > 0; 1 = off                              [1.1] */
    int repeat_last_n;    /* tokens the penalty looks back over        [64] */
    uint64_t seed;        /*                                           [0] */
} tn_sampler_opts;

typedef struct tn_sampler tn_sampler;

void tn_sampler_opts_default(tn_sampler_opts *o);
/* Checks the ranges above (message names the option). */
int tn_sampler_opts_check(const tn_sampler_opts *o);
int tn_sampler_new(const tn_sampler_opts *o, int vocab_size, tn_sampler **out);
void tn_sampler_free(tn_sampler *s);
/* The next token. logits [vocab] are not modified. history: the context so far (the last
 * repeat_last_n entries are used), n_history may be 0. */
int32_t tn_sampler_sample(tn_sampler *s, const float *logits, const int32_t *history, int n_history);

#endif
