/* libFuzzer target for the Hugging Face config.json reader (export/import_hf.c tn_import_hf_config): the
 * families (Llama, Mistral, Qwen2, Qwen3), rope_scaling / rope_parameters in both layouts, head_dim, every
 * refusal. A config it accepts must be one the model can be built from: it passes validation and its layout
 * (built without allocating parameters) has the tensor count the flags imply. */
#include "export/import_internal.h"
#include "fuzz_common.h"
#include "model/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tn_llama_config c;
    tn_err_clear();
    uint8_t *copy = fuzz_copy(data, size); /* exactly `size` bytes: ASan sees any read past the text */
    int rc = tn_import_hf_config((const char *)copy, size, &c);
    free(copy);
    if (rc != 0) {
        if (tn_errmsg()[0] == '\0') __builtin_trap(); /* a refusal always says why */
        return 0;
    }
    if (tn_llama_config_validate(&c) != 0) __builtin_trap();
    tn_llama_layout l;
    if (tn_llama_layout_init(&l, &c) != 0) __builtin_trap();
    const int per_layer = 9 + 3 * c.qkv_bias + 2 * c.qk_norm;
    if (l.n_tensors != 2 + per_layer * c.n_layers + !c.tied_embeddings) __builtin_trap();
    tn_llama_layout_free(&l);
    return 0;
}
