/* The "salad test": a greedy continuation of a prompt with the model as it trains, logged every
 * sample_every steps, so a run whose text turns to word salad is seen early. */
#ifndef TN_TRAIN_SAMPLE_H
#define TN_TRAIN_SAMPLE_H

#include "data/tokenizer.h"
#include "model/llama.h"

/* Greedy decode of n_new tokens after `prompt` with model m (batch row 0 is used; the context slides
 * when it exceeds the model's seq_len). Stops early at EOS. *text is malloc'd (the continuation only). */
int tn_sample_greedy(tn_llama *m, const float *params, const tn_tokenizer *tok, const char *prompt, int n_new,
                     char **text);

#endif
