/* Import a pretrained Llama-family model into a trinity checkpoint (fp32 parameters under Hugging Face
 * names, the model config, and the tokenizer when the source has one). Sources (docs/IMPORT.md):
 *
 *   hf       a Hugging Face model directory: config.json + model.safetensors, or sharded model-*.safetensors
 *            with model.safetensors.index.json; F32 / F16 / BF16 tensors. Tokenizer: tokenizer.model
 *            (stored as "sentencepiece-model") or else tokenizer.json ("hf-tokenizer-json"), raw bytes.
 *   gguf     a llama.cpp GGUF v2/v3 file of architecture "llama"; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K
 *            dequantized to fp32; llama.cpp's Q/K row permutation undone. Tokenizer: the file's
 *            tokenizer.* metadata, stored as a tensor-less GGUF ("gguf-vocab").
 *   llama2c  a llama2.c .bin checkpoint, legacy v0 (7 int32 header) or v1 (magic "ak42"); fp32; its
 *            interleaved-RoPE Q/K layout converted to HF's. No tokenizer inside (see opts.tokenizer_path).
 *
 * Every source is validated before use: shapes, counts and offsets against the file, every tensor of
 * the layout present exactly once with its shape, no unknown tensors, no NaN/Inf in the result. */
#ifndef TN_EXPORT_IMPORT_H
#define TN_EXPORT_IMPORT_H

#include <stdint.h>

#include "train/checkpoint.h"

typedef enum { TN_IMPORT_AUTO = 0, TN_IMPORT_HF, TN_IMPORT_GGUF, TN_IMPORT_LLAMA2C } tn_import_format;

typedef struct {
    tn_import_format format;    /* TN_IMPORT_AUTO: a directory is hf, "GGUF" magic is gguf, else llama2c */
    const char *tokenizer_path; /* optional tokenizer file to store instead of the source's own:
                                   *.model -> sentencepiece-model, *.json -> hf-tokenizer-json,
                                   *.gguf -> gguf-vocab, anything else (llama2.c tokenizer.bin) ->
                                   llama2c-tokenizer */
} tn_import_opts;

typedef struct {
    tn_import_format format;
    char source_dtypes[96];     /* dtypes seen in the source, "+"-joined: "BF16", "F16+F32", "Q4_K+Q6_K+F32" */
    int n_tensors;              /* tensors read from the source */
    int64_t n_params;           /* tn_llama_config_n_params of the result */
    char tokenizer_format[32];  /* "" when no tokenizer was stored */
    char tokenizer_problem[256]; /* why the source's tokenizer could not be read ("" when it was): the
                                    per-format importers then store its raw bytes, and tn_import refuses
                                    the import unless opts.tokenizer_path supplies another */
} tn_import_info;

const char *tn_import_format_name(tn_import_format f); /* "hf", "gguf", "llama2c", "auto" */
/* Parse "hf" / "gguf" / "llama2c"; -1 with a message otherwise. */
int tn_import_parse_format(const char *s, tn_import_format *f);
/* Detect the source format of a path (directory, GGUF magic, llama2.c header). */
int tn_import_detect(const char *src, tn_import_format *f);

/* Import into ck (zeroed by the call; free with tn_ckpt_free). opts and info may be NULL. */
int tn_import(const char *src, const tn_import_opts *opts, tn_checkpoint *ck, tn_import_info *info);
int tn_import_hf(const char *dir, tn_checkpoint *ck, tn_import_info *info);
int tn_import_gguf(const char *path, tn_checkpoint *ck, tn_import_info *info);
int tn_import_llama2c(const char *path, tn_checkpoint *ck, tn_import_info *info);

/* Undo the interleaved-RoPE row order of a Q or K projection in place (rows = n_heads * head_dim,
 * cols = row length). llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute) and llama2.c's export.py
 * (permute_reverse) both reorder the rows of each head as
 *     file[h*hd + 2*j + i] = hf[h*hd + i*hd/2 + j],   i in {0, 1}, j in [0, hd/2)
 * (reshape (n_head, 2, hd/2, cols) -> swap axes 1, 2), so that RoPE rotates adjacent pairs (2j, 2j+1)
 * instead of HF's halves (j, j + hd/2). This applies the inverse:
 *     hf[h*hd + i*hd/2 + j] = file[h*hd + 2*j + i].
 * For K, n_heads is the number of KV heads. */
int tn_import_unpermute_qk(float *w, int n_heads, int head_dim, int64_t cols);

#endif
