/* `trinity export --format gguf`: an HDF5 checkpoint to a GGUF v3 file that llama.cpp loads
 * (docs/EXPORT.md). The tensors are decided as for TRIN (export/export_source.h); this module only chooses
 * a ggml type for each and encodes it:
 *
 *   quantized, grid {-1, 0, 1}, row % 256 == 0   TQ2_0 (or TQ1_0): the trits as they are, the row (or tensor)
 *                                                 scale as every block's fp16 d
 *   quantized, row % 32 == 0, the grid an integer  Q4_0 when every k·g fits in [-8, 7] (ternary: k = 1),
 *     multiple k·g of one step (k <= 127)           else Q8_0 (|k·g| <= 127; prime7: k = 30), d = scale / k:
 *                                                 the codes exact, only d rounded to fp16
 *   any other quantized tensor                    the dense type below, with a warning (an error under
 *                                                 strict when that type is F16, which rounds each value)
 *   dense matrices                                F16 (F32 with dense = f32)
 *   the LM head / embedding table with head /     F32, F16, Q8_0 (q8) or Q4_0 (q4: the bytes of TRIN's Q4);
 *     embed set (export/table_quant.h)              Q8_0 / Q4_0 need rows of a multiple of 32
 *   rank-1 tensors (norms, biases)                F32
 *
 * Names and keys per llama.cpp architecture (gguf-py/gguf/constants.py, src/llama-arch.cpp): `llama` (Q and
 * K rows permuted to llama.cpp's interleaved-RoPE order, the inverse of tn_import_unpermute_qk), `qwen2`
 * (q/k/v biases, rotate-half RoPE, no permutation) and `qwen3` (per-head q/k norms, explicit head dim as
 * attention.key_length, no permutation). Tied embeddings write no output.weight. The tokenizer
 * is carried as tokenizer.ggml.* keys (data/tokenizer.h tn_tokenizer_to_gguf), or copied from a stored
 * GGUF vocabulary with its chat template. The file is written atomically: nothing is left on failure. */
#ifndef TN_EXPORT_EXPORT_GGUF_H
#define TN_EXPORT_EXPORT_GGUF_H

#include <stdint.h>

#include "export/export_trin.h"

typedef struct {
    const char *quantize;       /* NULL, or "ternary" (dense checkpoints only) */
    tn_export_dense dense;      /* type of dense matrices: auto (= F16), f16 or f32 */
    uint32_t ternary_type;      /* TN_GGML_TQ2_0 (default) or TQ1_0 for rows of 256k; TN_GGML_Q4_0 or Q8_0 for all;
                                 * TN_GGML_F16: ternary layers as F16 (±fp16(scale), as exact as the block types;
                                 * llama.cpp then runs them without quantizing activations) */
    int strict;                 /* a tensor GGUF cannot hold exactly is an error instead of a warning */
    const char *tokenizer_path; /* NULL: the checkpoint's tokenizer; else a file data/tokenizer.h loads */
    tn_table_type head, embed;  /* as tn_export_opts (export/export_trin.h) */
} tn_export_gguf_opts;

#define TN_EXPORT_GGUF_MAX_KINDS 24

typedef struct {
    char kind[16];              /* "dense", "ste", "primal", "synthetic" */
    char grid[32];
    char arch[16];              /* general.architecture */
    char tokenizer[96];         /* what was written: "gpt2 (smollm), 49152 tokens", "copied GGUF vocabulary", "none" */
    int n_tensors;
    int n_by_type[64];          /* tensors per ggml type */
    int n_fallback;             /* quantized tensors stored in the dense type */
    int n_kinds;                /* tensor kinds: GGUF name without "blk.N.", and their types ("+"-joined) */
    char kinds[TN_EXPORT_GGUF_MAX_KINDS][32];
    char kind_types[TN_EXPORT_GGUF_MAX_KINDS][32];
    double max_scale_rel_err;   /* largest |fp16(d)·k - s| / |s| over the block scales written */
    int64_t file_bytes, n_params;
} tn_export_gguf_report;

void tn_export_gguf_opts_default(tn_export_gguf_opts *o);
int tn_export_gguf(const char *ckpt_path, const char *out_path, const tn_export_gguf_opts *o, tn_export_gguf_report *rep);

/* Reorder the rows of a Q or K projection from Hugging Face's rotate-half order to llama.cpp's
 * interleaved-RoPE order (llama architecture): file row h*hd + 2j + i = source row h*hd + i*hd/2 + j.
 * The inverse of tn_import_unpermute_qk (export/import.h). Returns the source row of file row r. */
int64_t tn_export_gguf_qk_source_row(int64_t r, int head_dim);

#endif
