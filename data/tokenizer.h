/* Tokenizers: one handle for the three kinds trinity models use.
 *
 *   spm    SentencePiece BPE as Llama-2 / TinyLlama use it: the text's spaces become U+2581 "▁", one "▁" is
 *          prepended (the dummy prefix), characters are merged pairwise by the score of the resulting piece
 *          (or by merge rank when the vocabulary came with a merge list), and characters the vocabulary
 *          lacks fall back to their UTF-8 bytes as <0xNN> tokens.
 *   bpe    byte-level BPE as GPT-2 / SmolLM2 use it: the text is split by the pre-tokenizer (GPT-2's regex,
 *          optionally after isolating every digit), each piece's bytes are mapped to printable characters
 *          (GPT-2's byte-to-unicode table) and merged by merge rank.
 *   bytes  256 byte tokens, then BOS = 256 and EOS = 257 (vocab 258): for models trained from scratch.
 *
 * Sources (tn_tokenizer_load auto-detects): a SentencePiece tokenizer.model (protobuf), a Hugging Face
 * tokenizer.json (or a directory holding one, or tokenizer.model), a GGUF file (tokenizer.ggml.* keys), a
 * llama2.c tokenizer.bin, a serialized blob (docs/TOKENIZERS.md), or the literal name "bytes".
 *
 * Encoding is O(n log n) in the length of a piece of text: candidates for merging sit in a priority queue
 * over a linked list of symbols. Special tokens written in the text ("</s>", "<|endoftext|>") are NOT
 * parsed: text is always text, so training data cannot smuggle control tokens in.
 *
 * A tokenizer is immutable after loading; encode/decode may be called from several threads at once. */
#ifndef TN_DATA_TOKENIZER_H
#define TN_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/gguf.h"

typedef enum { TN_TOK_BYTES = 0, TN_TOK_SPM = 1, TN_TOK_BPE = 2 } tn_tokenizer_kind;

/* Token types, numbered as in SentencePiece and GGUF's tokenizer.ggml.token_type. */
enum { TN_TOKTYPE_NORMAL = 1, TN_TOKTYPE_UNKNOWN = 2, TN_TOKTYPE_CONTROL = 3, TN_TOKTYPE_USER = 4,
       TN_TOKTYPE_UNUSED = 5, TN_TOKTYPE_BYTE = 6 };

typedef struct tn_tokenizer tn_tokenizer;

/* A growable id array (encode appends to it). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tn_tokens;
int tn_tokens_push(tn_tokens *t, int32_t id);
void tn_tokens_free(tn_tokens *t);

int tn_tokenizer_load(const char *path_or_name, tn_tokenizer **out);
void tn_tokenizer_free(tn_tokenizer *t);

/* Append the ids of text[0..len) to out, preceded by BOS when add_bos (and the tokenizer has one). */
int tn_tokenizer_encode(const tn_tokenizer *t, const char *text, size_t len, int add_bos, tn_tokens *out);
/* ids -> text (malloc'd, NUL-terminated; *len excludes the NUL). Control tokens decode to nothing, byte
 * tokens to their byte, and for spm the first piece loses the space of the dummy prefix, so that
 * decode(encode(x)) == x. Fails on an id outside the vocabulary. */
int tn_tokenizer_decode(const tn_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len);
/* Bytes of token `id` when it follows `prev` (-1 at the start): the unit of streaming decode.
 * Concatenating pieces gives exactly tn_tokenizer_decode. NULL for an id outside the vocabulary. */
const char *tn_tokenizer_piece(const tn_tokenizer *t, int32_t prev, int32_t id, size_t *len);
/* The raw vocabulary string of a token ("▁the", "Ġthe", "<0x0A>"), or NULL. */
const char *tn_tokenizer_token(const tn_tokenizer *t, int32_t id, size_t *len);
int tn_tokenizer_token_type(const tn_tokenizer *t, int32_t id);
/* Id of a vocabulary string, or -1. */
int32_t tn_tokenizer_find(const tn_tokenizer *t, const char *s, size_t len);

tn_tokenizer_kind tn_tokenizer_get_kind(const tn_tokenizer *t);
const char *tn_tokenizer_kind_name(const tn_tokenizer *t); /* "spm", "bpe", "bytes" */
int64_t tn_tokenizer_vocab_size(const tn_tokenizer *t);
int64_t tn_tokenizer_bos_id(const tn_tokenizer *t); /* -1 when none */
int64_t tn_tokenizer_eos_id(const tn_tokenizer *t);
/* 1 if BOS is conventionally prepended (Llama yes, GPT-2 no): what `prepare` does. */
int tn_tokenizer_uses_bos(const tn_tokenizer *t);
/* 64 hex digits: the SHA-256 of the serialized blob without the chat template (its version-1 form), so
 * the same vocabulary loaded from tokenizer.model, tokenizer.json or GGUF has the same fingerprint
 * whenever the definitions agree. */
const char *tn_tokenizer_sha256(const tn_tokenizer *t);
/* The model's chat template: the Jinja text of GGUF `tokenizer.chat_template`, or of HF
 * `tokenizer_config.json` "chat_template" (its "default" entry when it is a list) or `chat_template.jinja`
 * beside tokenizer.json / tokenizer.model; NULL when the source has none. It travels with the tokenizer
 * (serialized blob version 2), hence into checkpoints and .trin files. data/chat.h recognises it. */
const char *tn_tokenizer_chat_template(const tn_tokenizer *t);

/* Self-contained, versioned binary form (docs/TOKENIZERS.md), embedded in checkpoints and .trin files:
 * version 1, or version 2 when there is a chat template. serialize mallocs *blob; deserialize reads
 * both versions and validates every length, id and the CRC. */
int tn_tokenizer_serialize(const tn_tokenizer *t, uint8_t **blob, size_t *len);
int tn_tokenizer_deserialize(const uint8_t *blob, size_t len, tn_tokenizer **out);

/* From an already opened GGUF file (the importer has one). */
int tn_tokenizer_from_gguf(const tn_gguf *g, tn_tokenizer **out);
/* The inverse: tokenizer.ggml.* pairs for llama.cpp (data/tok_gguf_write.c says which), padded with unused
 * "[PAD<id>]" tokens to n_vocab (the model's embedding rows); fails when the tokenizer has more tokens or
 * llama.cpp has no name for its pre-tokenizer. Conversions that are not exact print a warning. */
int tn_tokenizer_to_gguf(const tn_tokenizer *t, int64_t n_vocab, tn_gguf_writer *w);
/* A Hugging Face tokenizer.json and tokenizer_config.json (malloc'd JSON texts; data/tok_hfjson_write.c says
 * which forms) that transformers and tn_tokenizer_load both read as encoding like t; model_max_length <= 0
 * omits it. Fails (nothing written) when t has no such form; inexact corners print a warning. */
int tn_tokenizer_to_hf_json(const tn_tokenizer *t, int64_t model_max_length, char **tokenizer_json, char **config_json);

#endif
