/* LoRA adapters in Hugging Face PEFT's layout (peft.LoraConfig / save_pretrained), so that trinity's adapters
 * load with PeftModel.from_pretrained and PEFT's adapters load here:
 *
 *   DIR/adapter_config.json          {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout", "target_modules",
 *                                     "layers_to_transform", "bias": "none", "task_type": "CAUSAL_LM", ...}
 *   DIR/adapter_model.safetensors    F32 (read: F32, F16 or BF16)
 *     base_model.model.model.layers.<l>.self_attn.<q|k|v|o>_proj.lora_A.weight    [r, in]
 *     base_model.model.model.layers.<l>.self_attn.<q|k|v|o>_proj.lora_B.weight    [out, r]
 *     base_model.model.model.layers.<l>.mlp.<gate|up|down>_proj.lora_{A,B}.weight
 *
 * Reading accepts what trinity can run: scaling alpha / r (no rsLoRA, no DoRA), no bias training, no
 * fan_in_fan_out; target_modules a list of the seven Llama module names (or "all-linear"); layers_to_transform
 * null or a list. Every expected tensor must be present with the base's shape, and no other: a mismatch is one
 * error naming the tensor. Both files are written atomically (the directory is created when missing). */
#ifndef TN_EXPORT_PEFT_H
#define TN_EXPORT_PEFT_H

#include "model/config.h"
#include "model/lora.h"

/* base: base_model_name_or_path (may be NULL). l may be on any table (its values are downloaded). */
int tn_peft_save(const char *dir, const tn_lora *l, const char *base);
/* A new tn_lora (tn_lora_create: on the CPU table) for the model cfg, with the adapter's parameters. */
int tn_peft_load(const char *dir, const tn_llama_config *cfg, tn_lora *l);

#endif
