/* Regression inputs found by the libFuzzer targets in tests/fuzz/ (scripts/fuzz.sh). Each case feeds
 * the hostile bytes to the reader that crashed on them and expects a clean result: accepted and usable,
 * or refused with a message. Under the sanitized build (TN_SANITIZE=ON) these are also memory checks. */
#include "tn_test.h"

#include "core/error.h"
#include "core/gguf.h"
#include "data/tok_internal.h"
#include "export/import.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    uint8_t p[4096];
    size_t n;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > sizeof b->p) abort();
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void u64(buf *b, uint64_t v) { u32(b, (uint32_t)v), u32(b, (uint32_t)(v >> 32)); }
static void gstr(buf *b, const char *s) { u64(b, strlen(s)), put(b, s, strlen(s)); }

/* A loaded tokenizer must encode (or refuse with a message), decode and round-trip. */
static void use(tn_tokenizer *t, const char *what) {
    tn_tokens ids = {0};
    tn_err_clear();
    if (tn_tokenizer_encode(t, "a b", 3, 1, &ids) != 0) CHECKF(tn_errmsg()[0] != '\0', "%s: encode failed silently", what);
    tn_tokens_free(&ids);
    uint8_t *blob;
    size_t len;
    tn_tokenizer *u = NULL;
    CHECK_OK(tn_tokenizer_serialize(t, &blob, &len));
    CHECK_OK(tn_tokenizer_deserialize(blob, len, &u));
    if (u) CHECK(strcmp(tn_tokenizer_sha256(t), tn_tokenizer_sha256(u)) == 0);
    tn_tokenizer_free(u);
    free(blob);
}

/* data/tokenizer.c: a vocabulary of only empty strings left the string pool NULL, and SentencePiece pair
 * building read s[0] of an empty piece (NULL dereference; past the pool when it was full). Reached from
 * a llama2.c tokenizer.bin of three zero-length tokens, a GGUF token list of empty strings, or a
 * tokenizer.model with an empty piece. */
static void test_empty_tokens(void) {
    buf b = {.n = 0};
    u32(&b, 8);
    for (int i = 0; i < 3; i++) u32(&b, 0), u32(&b, 0); /* score 0, length 0 */
    tn_tokenizer *t = NULL;
    CHECK_OK(tn_tok_load_llama2c(b.p, b.n, &t));
    if (t) use(t, "llama2.c"), tn_tokenizer_free(t);

    b.n = 0;
    put(&b, "GGUF", 4), u32(&b, 3), u64(&b, 0), u64(&b, 2);
    gstr(&b, "tokenizer.ggml.model"), u32(&b, TN_GGUF_STRING), gstr(&b, "llama");
    gstr(&b, "tokenizer.ggml.tokens"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_STRING), u64(&b, 2), gstr(&b, ""), gstr(&b, "");
    tn_gguf g;
    CHECK_OK(tn_gguf_open_buffer(b.p, b.n, &g));
    t = NULL;
    CHECK_OK(tn_tokenizer_from_gguf(&g, &t));
    if (t) use(t, "gguf"), tn_tokenizer_free(t);
    tn_gguf_close(&g);

    /* tokenizer.model: one empty piece, trainer_spec {model_type: BPE}, normalizer_spec {name: identity,
     * remove_extra_whitespaces: false} */
    static const uint8_t spm[] = {0x0A, 0x02, 0x0A, 0x00, 0x12, 0x02, 0x18, 0x02,
                                  0x1A, 0x0C, 0x0A, 0x08, 'i', 'd', 'e', 'n', 't', 'i', 't', 'y', 0x20, 0x00};
    t = NULL;
    CHECK_OK(tn_tok_load_spm_model(spm, sizeof spm, &t));
    if (t) use(t, "spm"), tn_tokenizer_free(t);
}

/* export/import_gguf.c: the parameters were allocated (and zeroed) from the metadata's config before any
 * tensor was checked, so a tensor-less file of a few hundred bytes describing a ~1e12-parameter model
 * asked for terabytes (allocator abort under ASan; gigabytes zeroed when it fits). The tensors are now
 * placed and checked first: the file is refused for its missing tensors. */
static void test_gguf_import_huge_config(void) {
    static const struct {
        const char *key;
        uint32_t v;
    } kv[] = {{"llama.embedding_length", 1u << 16}, {"llama.block_count", 32}, {"llama.attention.head_count", 64},
              {"llama.feed_forward_length", 1u << 16}, {"llama.vocab_size", 32000}};
    buf b = {.n = 0};
    put(&b, "GGUF", 4), u32(&b, 3), u64(&b, 0), u64(&b, 6);
    gstr(&b, "general.architecture"), u32(&b, TN_GGUF_STRING), gstr(&b, "llama");
    for (int i = 0; i < 5; i++) gstr(&b, kv[i].key), u32(&b, TN_GGUF_UINT32), u32(&b, kv[i].v);
    char path[] = "/tmp/tn_test_fuzz_regressXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, b.p, b.n) == (ssize_t)b.n);
    close(fd);
    tn_checkpoint ck;
    int rc = tn_import_gguf(path, &ck, NULL);
    CHECK(rc != 0);
    CHECKF(strstr(tn_errmsg(), "missing tensor") != NULL, "%s", tn_errmsg());
    if (rc == 0) tn_ckpt_free(&ck);
    unlink(path);
}

int main(void) {
    test_empty_tokens();
    test_gguf_import_huge_config();
    return tn_test_finish();
}
