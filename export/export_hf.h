/* `trinity export --format hf`: an HDF5 checkpoint to a Hugging Face model directory that transformers
 * loads with AutoModelForCausalLM / AutoTokenizer (docs/EXPORT.md, "Hugging Face directory"):
 *
 *   config.json            the family's config from tn_llama_config: qk_norm -> Qwen3ForCausalLM (qwen3),
 *                          qkv_bias -> Qwen2ForCausalLM (qwen2), else LlamaForCausalLM (llama); read back by
 *                          `trinity import` (export/import_hf.c) it gives the same tn_llama_config
 *   model.safetensors      every tensor of the layout under its HF name (tied models write no lm_head.weight),
 *                          F32 or BF16 (round to nearest even); a quantized tensor (export/export_source.h)
 *                          dequantized as trinity computes its weights, the float product scale · grid[idx],
 *                          so an F32 export holds exactly the weights `trinity eval` runs
 *   tokenizer.json         from the checkpoint's tokenizer (data/tokenizer.h tn_tokenizer_to_hf_json), with
 *   tokenizer_config.json  BOS/EOS/UNK, add_bos_token and the chat template; skipped with a warning when the
 *                          tokenizer has no exact tokenizer.json form (or the checkpoint has none)
 *
 * The directory is written atomically: everything goes into DIR.tmp-<pid>-<n> beside it, which is fsynced and
 * renamed to DIR, so a failed export leaves nothing behind. DIR must not exist or be an empty directory: a
 * non-empty one is refused (never overwritten or deleted; remove it first).
 *
 * A model trained with 8-bit activations (STE act_bits = 8) is exported with its snapped weights, but
 * transformers runs float activations: the export says so in one warning line and in the report. */
#ifndef TN_EXPORT_EXPORT_HF_H
#define TN_EXPORT_EXPORT_HF_H

#include <stdint.h>

#include "model/config.h"

typedef enum { TN_HF_BF16 = 0, TN_HF_F32 = 1 } tn_hf_dtype;

typedef struct {
    const char *quantize; /* NULL, or "ternary" (dense checkpoints only; export/export_source.h) */
    tn_hf_dtype dtype;    /* tensor dtype in model.safetensors (default BF16) */
} tn_export_hf_opts;

typedef struct {
    char kind[16];        /* "dense", "ste", "primal", "synthetic" */
    char grid[32];        /* grid name of the quantized tensors, "" if none */
    char arch[32];        /* "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM" */
    char dtype[8];        /* "F32" or "BF16" */
    char tokenizer[128];  /* what was written: "bpe (qwen2), 151936 tokens, chat template", or "none (why)" */
    int n_tensors;        /* tensors in model.safetensors */
    int n_quantized;      /* of which dequantized from grid indices */
    int n_act8;           /* quantized tensors whose inputs the run quantized to int8 (transformers will not) */
    int64_t n_params;
    int64_t safetensors_bytes;
} tn_export_hf_report;

void tn_export_hf_opts_default(tn_export_hf_opts *o);
/* "f32" / "bf16"; anything else fails with a message naming the choices. */
int tn_export_hf_parse_dtype(const char *s, tn_hf_dtype *d);
int tn_export_hf(const char *ckpt_path, const char *out_dir, const tn_export_hf_opts *o, tn_export_hf_report *rep);

/* config.json for c (malloc'd JSON text), or -1 with a message when no transformers class expresses c
 * (q/k norms together with q/k/v biases; an explicit head_dim with q/k/v biases, which Qwen2ForCausalLM
 * ignores). dtype gives "torch_dtype". arch (may be NULL) receives the architecture name. */
int tn_export_hf_config_json(const tn_llama_config *c, tn_hf_dtype dtype, char **json, const char **arch);

/* IEEE binary32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN of the same sign. */
uint16_t tn_f32_to_bf16(float f);

#endif
