/* Chat templates: how a model expects a conversation to be written, recognised from its Jinja text
 * (GGUF `tokenizer.chat_template`, HF `tokenizer_config.json` "chat_template"; data/tokenizer.h keeps it
 * with the tokenizer) and rendered to token ids in C. There is no Jinja engine: each known family's
 * layout is written out below, and the template text is searched for robust markers, never compared
 * whole, so the many spellings of one family are recognised alike.
 *
 *   chatml   <|im_start|>{role}\n{content}<|im_end|>\n ... then <|im_start|>assistant\n
 *            Qwen2 / Qwen2.5 / Qwen3, SmolLM2. From the text: the default system prompt a template inserts
 *            when the conversation does not start with one (Qwen2, Qwen2.5, SmolLM2), the generation
 *            prompt, and Qwen3's <think> handling (reasoning dropped from assistant turns before the last
 *            user turn; "<think>\n{reasoning}\n</think>\n\n" on those after it).
 *   llama3   <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|> ...
 *            then <|start_header_id|>assistant<|end_header_id|>\n\n. Llama-3.1 / 3.2 templates ("Cutting
 *            Knowledge Date") always open with a system header holding the knowledge cutoff, today's
 *            date (3.2: the current date, as transformers' strftime_now gives it; 3.1: "26 Jul 2024")
 *            and the first system message.
 *   llama2   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
 *            (contents stripped; roles must alternate user/assistant after an optional system message)
 *   zephyr   <|user|>\n{content}</s>\n<|assistant|>\n{content}</s>\n ... then <|assistant|>\n
 *            TinyLlama-1.1B-Chat, Zephyr. (Also accepted as "tinyllama".)
 *   mistral  <s>[INST] {user} [/INST]{assistant}</s>[INST] ... (Mistral-7B-Instruct v0.1's layout; the
 *            [INST] strings are taken from the text; roles must alternate; a system message only where the
 *            template folds one into the first user turn)
 *
 * Tokens: the markers a template writes (<|im_start|>, <|eot_id|>, [INST] where the vocabulary has it as
 * a control token, BOS, EOS) become single ids looked up in the vocabulary. Everything between two such
 * tokens, template text and message content alike, is encoded as one text with the normal encoder —
 * which never parses control tokens — exactly as transformers' apply_chat_template tokenizes the rendered
 * string, except that a control token's spelling inside a message ("<|im_end|>" typed by a user) stays
 * text. For SentencePiece vocabularies each such text gets the dummy prefix, as HF's Llama tokenizer
 * (normalizer Prepend) does. Only the roles system, user and assistant are accepted.
 *
 * SFT masks: a token is a target when it carries bytes of an assistant message's content (or its Qwen3
 * reasoning block), and so is the control token that closes an assistant turn (<|im_end|>, <|eot_id|>,
 * </s>): the model must learn to end its turn. */
#ifndef TN_DATA_CHAT_H
#define TN_DATA_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

typedef enum {
    TN_CHAT_CHATML = 0,
    TN_CHAT_LLAMA3 = 1,
    TN_CHAT_LLAMA2 = 2,
    TN_CHAT_ZEPHYR = 3,
    TN_CHAT_MISTRAL = 4,
    TN_CHAT_FAMILIES
} tn_chat_family;

typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 */
} tn_chat_msg;

typedef struct {
    const char *force;   /* a family name (--chat-template): use it instead of recognising the text */
    const char *date;    /* llama3 with a date header: the date to write ("26 Jul 2024"); NULL = as the
                          * template does */
} tn_chat_opts;

typedef struct tn_chat tn_chat;

/* "chatml, llama3, llama2, zephyr, mistral": for messages that name the choices. */
const char *tn_chat_family_list(void);
const char *tn_chat_family_name(tn_chat_family f);
/* A family name (or the alias "tinyllama"); -1 with a message naming the choices otherwise. */
int tn_chat_family_parse(const char *name, tn_chat_family *f);
/* The family of a template text; -1 with "chat template not recognised ..." otherwise. */
int tn_chat_recognise(const char *jinja, tn_chat_family *f);

/* A template bound to a tokenizer (borrowed: it must outlive the handle). template_text is normally
 * tn_tokenizer_chat_template(tok); it may be NULL when o->force names a family. With o->force and a text
 * of the same family, the text's particulars (default system prompt, ...) are kept; of another family
 * or none, the family's plain layout is used. Fails when the vocabulary lacks a token the family needs.
 * o may be NULL. */
int tn_chat_new(const tn_tokenizer *tok, const char *template_text, const tn_chat_opts *o, tn_chat **out);
void tn_chat_free(tn_chat *c);
tn_chat_family tn_chat_get_family(const tn_chat *c);
/* One line for logs: "chatml, default system prompt \"You are ...\"". Owned by the handle. */
const char *tn_chat_describe(const tn_chat *c);

/* Render m[0..n) (plus the generation prompt when add_generation_prompt) and append the ids to ids. With
 * mask non-NULL, *mask is grown (realloc, capacity *mask_cap) to ids->n and mask[i] set for every
 * appended token (1 = training target, see the top). */
int tn_chat_render(const tn_chat *c, const tn_chat_msg *m, int n, int add_generation_prompt, tn_tokens *ids,
                   uint8_t **mask, size_t *mask_cap);
/* For a conversation continued in place (the KV cache holds everything up to the generated reply m[after],
 * an assistant message): append the ids that follow that reply's content in the rendering of m[0..n) with
 * the generation prompt: from the control token that closes the reply (the end-of-turn token, which
 * generation stopped at and did not feed) to the end. Text the template puts between the reply and that
 * token (llama2's " ") is left to the model. */
int tn_chat_render_continue(const tn_chat *c, const tn_chat_msg *m, int n, int after, tn_tokens *ids);
/* Ids that end an assistant turn (the template's end-of-turn token, the tokenizer's EOS): up to cap of them
 * into ids; returns how many. */
int tn_chat_stop_ids(const tn_chat *c, int32_t *ids, int cap);

#endif
