/* libFuzzer target for the Hugging Face tokenizer.json loader, data/tok_hfjson.c. The input is
 * tokenizer.json, optionally followed by a NUL byte and the text of tokenizer_config.json (also read for
 * its chat template). */
#include "data/tok_internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = size ? memchr(data, 0, size) : NULL;
    size_t jlen = nul ? (size_t)(nul - data) : size;
    char *json = malloc(jlen ? jlen : 1); /* exactly jlen bytes: no terminator to lean on */
    char *cfg = NULL;
    if (!json) return 0;
    if (jlen) memcpy(json, data, jlen);
    if (nul) {
        size_t clen = size - jlen - 1;
        cfg = malloc(clen + 1);
        if (!cfg) {
            free(json);
            return 0;
        }
        memcpy(cfg, nul + 1, clen);
        cfg[clen] = '\0';
    }
    tn_tokenizer *t = NULL;
    tn_err_clear();
    if (tn_tok_load_hf_json(json, jlen, cfg, &t) == 0) {
        tn_err_clear();
        if (cfg && tn_tok_chat_template_from_config(t, cfg, strlen(cfg)) != 0 && tn_errmsg()[0] == '\0') __builtin_trap();
        fuzz_use_tok(t);
        tn_tokenizer_free(t);
    } else {
        fuzz_failed(t);
    }
    free(json);
    free(cfg);
    return 0;
}
