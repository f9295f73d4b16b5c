/* `trinity prepare`: tokenize instruction data (Alpaca JSON), conversations (chat JSON lines) or plain text
 * into shards (data/shard.h).
 *
 * SFT examples. Templates (the prompt; the response follows it directly, then EOS; BOS first when the
 * tokenizer conventionally uses one):
 *   trinity   "Instruction: {instruction}\nInput: {input}\nResponse: "
 *   alpaca    Stanford Alpaca's two prompts, with and without an input:
 *             "Below is an instruction that describes a task, paired with an input that provides further
 *             context. Write a response that appropriately completes the request.\n\n### Instruction:\n
 *             {instruction}\n\n### Input:\n{input}\n\n### Response:\n"   (no line breaks inside the sentences)
 *             "Below is an instruction that describes a task. Write a response that appropriately completes
 *             the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
 * The loss mask is 1 exactly on the response tokens and the final EOS. Prompt and response are tokenized
 * together, as one text, and the boundary is found on that tokenization: token i covering bytes
 * [s_i, e_i) of the text is a response token iff e_i > B, B = the prompt's length. So a token that
 * straddles the join (in practice "▁The" or " The", the template's trailing space merged with the
 * response's first word) is a response token: it carries response bytes, and the model must emit it to
 * produce the response. Only the template's trailing whitespace can ride along in it.
 *
 * Conversations: {"messages": [{"role", "content"}, ...]} per record, rendered by the model's chat template
 * (data/chat.h, without the generation prompt); the loss mask is 1 on the assistant turns' content and on
 * the token that closes each of them, 0 on everything else (system and user turns, the template's
 * markers). The shard's template attribute is "chat:<family>".
 *
 * Text documents: [BOS] text [EOS] per document, loss mask 1 on every token but BOS. */
#ifndef TN_DATA_PREPARE_H
#define TN_DATA_PREPARE_H

#include <stdint.h>

#include "data/chat.h"
#include "data/tokenizer.h"

typedef struct {
    const char *template_name; /* "trinity" (default when NULL) or "alpaca" */
    int64_t max_len;           /* tokens per example incl. BOS/EOS; 0 = no limit */
    int drop_long;             /* 1: drop longer examples; 0: truncate them to max_len */
    double val_fraction;       /* share of examples written to the validation shard (0 = none) */
    uint64_t seed;             /* which examples go to validation */
} tn_prepare_sft_opts;

typedef enum { TN_DOCSPLIT_BLANK_LINE = 0, TN_DOCSPLIT_HEADING = 1, TN_DOCSPLIT_NONE = 2 } tn_doc_split;

typedef struct {
    int64_t n_records;                /* read from the input */
    int64_t n_train, n_val;           /* examples / documents written */
    int64_t n_truncated, n_dropped;   /* over --max-len; dropped also counts prompts that fill max_len */
    int64_t tokens_train, tokens_val;
    int64_t masked_train;             /* tokens with loss_mask 1 */
} tn_prepare_stats;

/* The prompt of an example (malloc'd). */
int tn_prepare_prompt(const char *template_name, const char *instruction, const char *input, char **prompt);

/* One example -> ids and mask appended to ids/mask (mask grows with ids; *mask is realloc'd). */
int tn_prepare_example(const tn_tokenizer *tok, const char *template_name, const char *instruction,
                       const char *input, const char *output, tn_tokens *ids, uint8_t **mask, size_t *mask_cap);

/* Alpaca JSON (an array of {"instruction", "input", "output"} records, or JSON lines) -> SFT shard(s).
 * val_path may be NULL when val_fraction is 0. Nothing is left at out_path/val_path on failure. */
int tn_prepare_alpaca(const tn_tokenizer *tok, const char *in_path, const char *out_path, const char *val_path,
                      const tn_prepare_sft_opts *o, tn_prepare_stats *st);

/* Conversations (a JSON array of records, or JSON lines) -> SFT shard(s) through `chat`; the options as for
 * Alpaca but the template name, which is the chat template's. A record without an assistant message, with a
 * message that is not {"role": string, "content": string}, or that the template refuses (roles that do not
 * alternate, ...) stops with an error naming it. */
int tn_prepare_chat(const tn_tokenizer *tok, const tn_chat *chat, const char *in_path, const char *out_path,
                    const char *val_path, const tn_prepare_sft_opts *o, tn_prepare_stats *st);

/* Plain text files -> one text shard. */
int tn_prepare_text(const tn_tokenizer *tok, const char *const *in_paths, int n_in, const char *out_path,
                    tn_doc_split split, tn_prepare_stats *st);

#endif
