/* Shared by the libFuzzer targets in tests/fuzz/ (header-only: every target is one .c file).
 *
 *   fuzz_tmp_file   for readers that only take a path: the input is written to one temp file per process
 *                   (rewritten each run, removed at exit), so libFuzzer's in-process loop stays cheap.
 *   fuzz_failed     the contract of every reader on refusal: no object handed out and one message.
 *   fuzz_copy       the input in a block of exactly its size, so that ASan sees any over-read.
 *   fuzz_tok_load   run a tokenizer loader: refused (fuzz_failed) or accepted and used (fuzz_use_tok).
 *   fuzz_use_tok    an accepted tokenizer must work: encode/decode fixed texts, every id's piece, and a
 *                   serialize -> deserialize round trip that gives the same fingerprint. */
#ifndef TN_FUZZ_COMMON_H
#define TN_FUZZ_COMMON_H

#include "core/error.h"
#include "core/log.h"
#include "data/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Once per process: the readers' warnings about hostile input ("tokenizer not understood", ...) would be
 * printed for every run and bury libFuzzer's own output. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tn_log_set_level(TN_LOG_QUIET);
    return 0;
}

static char fuzz_tmp_path[256];

static inline void fuzz_tmp_remove(void) {
    if (fuzz_tmp_path[0]) unlink(fuzz_tmp_path);
}

/* Write data to this process's temp file (name ends with suffix) and return its path. */
static inline const char *fuzz_tmp_file(const uint8_t *data, size_t size, const char *suffix) {
    if (!fuzz_tmp_path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(fuzz_tmp_path, sizeof fuzz_tmp_path, "%s/tn-fuzz-%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(),
                 suffix);
        atexit(fuzz_tmp_remove);
    }
    FILE *f = fopen(fuzz_tmp_path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(fuzz_tmp_path);
        abort();
    }
    return fuzz_tmp_path;
}

/* A refusal must hand out nothing and leave a message. */
static inline void fuzz_failed(const void *obj) {
    if (obj != NULL || tn_errmsg()[0] == '\0') __builtin_trap();
}

static inline void fuzz_use_tok(const tn_tokenizer *t) {
    static const char *const texts[] = {
        "Hello world", "  two  spaces\n\ttab and newline\n", "digits 1234567 and 3.14", "<s> </s> <unk> <|endoftext|>",
        "\xC3\xBC\x6E\xC3\xAF \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 \xE2\x96\x81x", "\xFF\xFE\xC3 broken utf-8 \xE2\x96",
        "a", ""};
    int64_t n_vocab = tn_tokenizer_vocab_size(t);
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        tn_tokens toks = {0};
        tn_err_clear();
        if (tn_tokenizer_encode(t, texts[k], strlen(texts[k]), 1, &toks) == 0) {
            for (size_t i = 0; i < toks.n; i++)
                if (toks.ids[i] < 0 || toks.ids[i] >= n_vocab) __builtin_trap(); /* encode made an id outside */
            char *text = NULL;
            size_t len = 0;
            /* ids from encode are in the vocabulary, so decode must succeed */
            if (tn_tokenizer_decode(t, toks.ids, toks.n, &text, &len) != 0) __builtin_trap();
            free(text);
        } else if (tn_errmsg()[0] == '\0') {
            __builtin_trap();
        }
        tn_tokens_free(&toks);
    }
    for (int32_t id = 0; id < n_vocab && id < 4096; id++) {
        size_t len;
        if (!tn_tokenizer_piece(t, id ? id - 1 : -1, id, &len)) __builtin_trap();
    }
    uint8_t *blob;
    size_t blen;
    if (tn_tokenizer_serialize(t, &blob, &blen) != 0) __builtin_trap();
    tn_tokenizer *u = NULL;
    /* what a loader accepted must survive its own serialized form, unchanged */
    if (tn_tokenizer_deserialize(blob, blen, &u) != 0) {
        fprintf(stderr, "round trip refused: %s\n", tn_errmsg());
        __builtin_trap();
    }
    if (strcmp(tn_tokenizer_sha256(t), tn_tokenizer_sha256(u)) != 0) __builtin_trap();
    tn_tokenizer_free(u);
    free(blob);
}

/* The input in a heap block of exactly its size (libFuzzer's own buffer may be larger, which would hide
 * an over-read from ASan), or NULL when out of memory. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (buf && size) memcpy(buf, data, size);
    return buf;
}

/* One tokenizer loader on buf: accepted and usable, or refused with a message. */
typedef int (*fuzz_tok_loader)(const uint8_t *data, size_t size, tn_tokenizer **out);
static inline void fuzz_tok_load(fuzz_tok_loader load, const uint8_t *buf, size_t size) {
    tn_tokenizer *t = NULL;
    tn_err_clear();
    if (load(buf, size, &t) == 0) {
        fuzz_use_tok(t);
        tn_tokenizer_free(t);
    } else {
        fuzz_failed(t);
    }
}

#endif
