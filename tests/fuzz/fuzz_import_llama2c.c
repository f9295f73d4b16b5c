/* libFuzzer target for the llama2.c checkpoint importer (export/import_llama2c.c): v0 / v1 headers and the
 * exact weight count they imply. The importer takes a path: the input goes through a temp file. */
#include "export/import.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_tmp_file(data, size, ".bin");
    tn_checkpoint ck;
    tn_import_info info;
    memset(&info, 0, sizeof info);
    tn_err_clear();
    if (tn_import_llama2c(path, &ck, &info) != 0) {
        if (ck.params || tn_errmsg()[0] == '\0') __builtin_trap();
        return 0;
    }
    tn_ckpt_free(&ck);
    return 0;
}
