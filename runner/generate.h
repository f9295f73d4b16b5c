/* Text generation for `trinity run`: tokenize the prompt (optionally through a template), feed it as one
 * batch, then sample and stream tokens until EOS, the token limit or a full context. Output is written
 * as UTF-8: a character split across tokens (byte-fallback tokens) is held back until it is complete.
 * Chat (o->chat, data/chat.h): the turns are written with the model's chat template, generation stops at
 * the template's end-of-turn token, and a conversation goes on in the KV cache: each turn feeds only its
 * new tokens. */
#ifndef TN_RUNNER_GENERATE_H
#define TN_RUNNER_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "runner/infer.h"
#include "runner/sampler.h"

typedef struct {
    int max_new;                /* tokens to generate per prompt (-n)                          [256] */
    tn_sampler_opts sampling;
    const char *template_name;  /* NULL (raw prompt), "trinity" or "alpaca" */
    int stop_at_eos;            /* [1]; with chat also the end-of-turn token */
    const tn_chat *chat;        /* tn_generate_chat: the chat template (required there) */
    const char *system;         /* tn_generate_chat: a system message opening every conversation, or NULL */
} tn_generate_opts;

typedef struct {
    int64_t prompt_tokens, gen_tokens;
    double prompt_seconds, gen_seconds;
    int hit_eos, ctx_full;
} tn_generate_stats;

void tn_generate_opts_default(tn_generate_opts *o);
/* Known template names ("trinity", "alpaca"); NULL is the raw prompt. */
int tn_generate_template_check(const char *name);
/* The text the model sees for a user prompt (malloc'd): the prompt of `trinity prepare` (data/prepare.h)
 * with the prompt as the instruction and an empty input; trinity gives
 * "Instruction: {prompt}\nInput: \nResponse: ". */
char *tn_generate_apply_template(const char *name, const char *prompt);

/* One prompt -> streamed continuation on `out`. The context continues from what the engine holds (call
 * tn_infer_reset for a fresh one). Statistics are added to *st. */
int tn_generate(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, const char *prompt, const tn_generate_opts *o,
                FILE *out, tn_generate_stats *st);
/* Interactive loop: each line of `in` is a prompt, answered in the same conversation (the context is
 * kept; when it is full it starts over). EOF ends. A "> " prompt goes to stderr when `in` is a terminal. */
int tn_generate_interactive(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, FILE *in, const tn_generate_opts *o,
                            FILE *out, tn_generate_stats *st);
/* A conversation through o->chat: the first user turn is `prompt` (may be NULL), then, when `in` is not
 * NULL, every non-empty line of it (a "> " prompt on stderr when it is a terminal), until EOF. Each reply
 * is streamed and ends with a newline. The first turn feeds the whole rendering ([system,] user,
 * generation prompt); a later one only the tokens after the previous reply (tn_chat_render_continue: its
 * end-of-turn token, the new user turn, the generation prompt), the cache holding the rest. When a turn
 * and its reply would not fit, the conversation starts over ("[context full: ...]" on stderr). */
int tn_generate_chat(tn_infer *m, const tn_tokenizer *tok, tn_sampler *s, const char *prompt, FILE *in,
                     const tn_generate_opts *o, FILE *out, tn_generate_stats *st);

#endif
