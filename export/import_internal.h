/* Helpers shared by the importers (not a public API). */
#ifndef TN_EXPORT_IMPORT_INTERNAL_H
#define TN_EXPORT_IMPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "export/import.h"

/* Zero ck, validate cfg, build the layout and allocate zeroed params. */
int tn_import_begin(tn_checkpoint *ck, const tn_llama_config *cfg);
/* Fail "tensor NAME: NaN or Inf at index i" on the first non-finite value. */
int tn_import_check_finite(const char *name, const float *p, size_t n);
/* Copy bytes into ck->tokenizer (tn_alloc) with a format name. */
int tn_import_set_tokenizer(tn_checkpoint *ck, const char *format, const void *bytes, size_t len);
/* Read a tokenizer file and store it with the format its name implies (see tn_import_opts). */
int tn_import_tokenizer_file(tn_checkpoint *ck, const char *path);
/* Store a tokenizer: load `load_path` (a file or directory data/tokenizer.h understands) and store its
 * serialized form as "trinity-tokenizer"; when the tokenizer module cannot load it, store the raw bytes given
 * (raw_format / raw, or the file raw_file when raw is NULL) instead and say why in info->tokenizer_problem
 * (info NULL: a warning line). A tokenizer with more tokens than the model's vocabulary is an error either
 * way. */
int tn_import_take_tokenizer(tn_checkpoint *ck, const char *load_path, const char *raw_format, const void *raw,
                             size_t raw_len, const char *raw_file, tn_import_info *info);
/* A Hugging Face config.json (its text) to a model config: the families, both RoPE layouts, every refusal
 * of docs/IMPORT.md. On success c passes tn_llama_config_validate. (A function of its own for the fuzzer.) */
int tn_import_hf_config(const char *json, size_t len, tn_llama_config *c);
/* Add a dtype name to a "+"-joined set (no duplicates, silently truncated if full). */
void tn_import_note_dtype(char *set, size_t cap, const char *name);

#endif
