/* The tokenizer of a model file (runner/model_tokenizer.h). */
#include "runner/model_tokenizer.h"

#include "core/error.h"
#include "export/trin.h"
#include "train/checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int from_blob(const char *path, const char *format, const uint8_t *blob, size_t len, tn_tokenizer **out) {
    if (!blob || !len) return tn_err("%s: the model file has no tokenizer", path);
    if (strcmp(format, "trinity-tokenizer") != 0)
        return tn_err("%s: the model's tokenizer is stored as '%s', which this build cannot read", path, format);
    if (tn_tokenizer_deserialize(blob, len, out) != 0) return tn_err_prefix("%s", path);
    return 0;
}

int tn_model_tokenizer_load(const char *path, tn_tokenizer **out) {
    *out = NULL;
    unsigned char m[8] = {0};
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        FILE *f = fopen(path, "rb");
        if (f) {
            if (fread(m, 1, sizeof m, f) != sizeof m) memset(m, 0, sizeof m);
            fclose(f);
        }
    }
    if (memcmp(m, TN_TRIN_MAGIC, 4) == 0) {
        tn_trin *t;
        TN_CHECK(tn_trin_open(path, &t));
        int rc = from_blob(path, t->tokenizer_format, t->tokenizer, t->tokenizer_len, out);
        tn_trin_close(t);
        return rc;
    }
    if (memcmp(m, "\x89HDF\r\n\x1a\n", 8) == 0) {
        tn_ckpt_reader r;
        TN_CHECK(tn_ckpt_reader_open(&r, path));
        int rc = from_blob(path, r.tokenizer_format, r.tokenizer, r.tokenizer_len, out);
        tn_ckpt_reader_close(&r);
        return rc;
    }
    return tn_tokenizer_load(path, out);
}
