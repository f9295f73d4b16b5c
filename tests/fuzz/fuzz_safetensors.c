/* libFuzzer target for the safetensors reader (export/safetensors.c), which the Hugging Face importer
 * uses. tn_st_open only takes a path: the input goes through a temp file. Accepted files must describe
 * tensors inside the data section, convertible (F32/F16/BF16) or refused by name. */
#include "export/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_tmp_file(data, size, ".safetensors");
    tn_safetensors st;
    tn_err_clear();
    if (tn_st_open(path, &st) != 0) {
        if (st.tensors || tn_errmsg()[0] == '\0') __builtin_trap();
        return 0;
    }
    for (int i = 0; i < st.n_tensors; i++) {
        const tn_st_tensor *t = &st.tensors[i];
        if (tn_st_find(&st, t->name) != t) __builtin_trap();
        if (t->n_bytes != (size_t)t->numel * tn_st_dtype_size(t->dtype)) __builtin_trap();
        if (t->numel > (1 << 20)) continue;
        float *dst = malloc((size_t)t->numel * sizeof *dst + 1);
        if (!dst) continue;
        tn_err_clear();
        if (tn_st_to_f32(t, dst) != 0 && tn_errmsg()[0] == '\0') __builtin_trap();
        free(dst);
    }
    tn_st_close(&st);
    return 0;
}
