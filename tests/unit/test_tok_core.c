/* Tokenizer handle basics: the `bytes` tokenizer, serialize/deserialize (same fingerprint and ids,
 * corruption refused), streaming pieces and SentencePiece's leading-space rule, invalid UTF-8 input,
 * files that are not tokenizers, SHA-256 known answers. */
#include "tn_test.h"

#include "core/error.h"
#include "core/fileio.h"
#include "data/sha256.h"
#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_tokcoreXXXXXX";

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k = 0;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static void test_sha256(void) {
    char hex[65];
    tn_sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    tn_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    tn_sha256_hex(m, strlen(m), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* incremental == one shot over a block boundary */
    char big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (char)(i * 7);
    tn_sha256_ctx c;
    uint8_t d1[32];
    tn_sha256_init(&c);
    tn_sha256_update(&c, big, 63);
    tn_sha256_update(&c, big + 63, 937);
    tn_sha256_final(&c, d1);
    tn_sha256_hex(big, 1000, hex);
    char hex2[65];
    for (int i = 0; i < 32; i++) snprintf(hex2 + 2 * i, 3, "%02x", d1[i]);
    CHECK(strcmp(hex, hex2) == 0);
}

static void test_bytes(void) {
    tn_tokenizer *t;
    CHECK_OK(tn_tokenizer_load("bytes", &t));
    CHECK(tn_tokenizer_vocab_size(t) == 258 && tn_tokenizer_bos_id(t) == 256 && tn_tokenizer_eos_id(t) == 257);
    CHECK(tn_tokenizer_uses_bos(t) && strcmp(tn_tokenizer_kind_name(t), "bytes") == 0);
    tn_tokens ids = {0};
    const char *s = "h\xC3\xA9llo\n";
    CHECK_OK(tn_tokenizer_encode(t, s, strlen(s), 1, &ids));
    CHECK(ids.n == 8 && ids.ids[0] == 256 && ids.ids[1] == 'h' && ids.ids[2] == 0xC3);
    CHECK_OK(tn_tokens_push(&ids, 257));
    char *dec;
    size_t len;
    CHECK_OK(tn_tokenizer_decode(t, ids.ids, ids.n, &dec, &len));
    CHECK(len == strlen(s) && strcmp(dec, s) == 0);
    free(dec);
    int32_t bad = 258;
    CHECK(tn_tokenizer_decode(t, &bad, 1, &dec, &len) != 0);
    CHECK(strstr(tn_errmsg(), "token id 258 at position 0 outside the vocabulary") != NULL);
    tn_tokens_free(&ids);
    tn_tokenizer_free(t);
}

/* serialize -> deserialize (directly and as a file) keeps the fingerprint and the ids. */
static void test_blob(const char *path) {
    tn_tokenizer *a, *b, *c;
    if (tn_tokenizer_load(path, &a) != 0) {
        CHECKF(0, "%s", tn_errmsg());
        return;
    }
    uint8_t *blob;
    size_t len;
    CHECK_OK(tn_tokenizer_serialize(a, &blob, &len));
    CHECK_OK(tn_tokenizer_deserialize(blob, len, &b));
    CHECK_OK(tn_write_file_atomic(tmp("tok.bin"), blob, len));
    CHECK_OK(tn_tokenizer_load(tmp("tok.bin"), &c));
    if (!b || !c) return;
    CHECK(strcmp(tn_tokenizer_sha256(a), tn_tokenizer_sha256(b)) == 0);
    CHECK(strcmp(tn_tokenizer_sha256(a), tn_tokenizer_sha256(c)) == 0);
    CHECK(tn_tokenizer_uses_bos(a) == tn_tokenizer_uses_bos(b) && tn_tokenizer_eos_id(a) == tn_tokenizer_eos_id(b));
    const char *s = " Hello, y'all! 3333 \xF0\x9F\x98\x81 caf\xC3\xA9\n\tend  ";
    tn_tokens x = {0}, y = {0};
    CHECK_OK(tn_tokenizer_encode(a, s, strlen(s), 1, &x));
    CHECK_OK(tn_tokenizer_encode(b, s, strlen(s), 1, &y));
    CHECK(x.n == y.n && memcmp(x.ids, y.ids, x.n * 4) == 0);
    tn_tokens_free(&x);
    tn_tokens_free(&y);
    /* Every single-byte corruption is caught (by the CRC at least). */
    int caught = 1;
    for (size_t i = 0; i < len; i += len / 97 + 1) {
        blob[i] ^= 0x20;
        tn_tokenizer *d;
        if (tn_tokenizer_deserialize(blob, len, &d) == 0) {
            caught = 0;
            tn_tokenizer_free(d);
        }
        blob[i] ^= 0x20;
    }
    CHECK(caught);
    tn_tokenizer *e;
    CHECK(tn_tokenizer_deserialize(blob, len / 2, &e) != 0);
    CHECK(tn_tokenizer_deserialize(blob, 10, &e) != 0 && e == NULL);
    free(blob);
    tn_tokenizer_free(a);
    tn_tokenizer_free(b);
    tn_tokenizer_free(c);
}

static void test_spm_pieces(const char *model) {
    tn_tokenizer *t;
    if (tn_tokenizer_load(model, &t) != 0) return;
    int32_t hello = tn_tokenizer_find(t, "\xE2\x96\x81Hello", 8); /* "▁Hello" = 15043 */
    CHECK(hello == 15043);
    size_t n;
    const char *p = tn_tokenizer_piece(t, -1, hello, &n);
    CHECK(n == 5 && memcmp(p, "Hello", 5) == 0);
    p = tn_tokenizer_piece(t, 1, hello, &n);
    CHECK(n == 5 && memcmp(p, "Hello", 5) == 0);
    p = tn_tokenizer_piece(t, 13, hello, &n);
    CHECK(n == 6 && memcmp(p, " Hello", 6) == 0);
    p = tn_tokenizer_piece(t, -1, 13, &n); /* <0x0A> */
    CHECK(n == 1 && p[0] == '\n');
    p = tn_tokenizer_piece(t, -1, 2, &n); /* </s> */
    CHECK(n == 0);
    CHECK(tn_tokenizer_piece(t, -1, 32000, &n) == NULL);
    /* As SentencePiece's decode: only the first piece loses its space, [▁, ▁, ▁a] -> "" + " " + " a". */
    int32_t ids[3] = {29871, 29871, 263};
    char *dec;
    CHECK_OK(tn_tokenizer_decode(t, ids, 3, &dec, &n));
    CHECK(strcmp(dec, "  a") == 0);
    free(dec);

    /* Invalid UTF-8 goes through byte fallback and round-trips. */
    const char bad[] = "ok \xFF\xC3 x \xE2\x82";
    tn_tokens ids2 = {0};
    CHECK_OK(tn_tokenizer_encode(t, bad, sizeof bad - 1, 0, &ids2));
    CHECK_OK(tn_tokenizer_decode(t, ids2.ids, ids2.n, &dec, &n));
    CHECK(n == sizeof bad - 1 && memcmp(dec, bad, n) == 0);
    free(dec);
    tn_tokens_free(&ids2);
    tn_tokenizer_free(t);
}

static void test_not_tokenizers(void) {
    tn_tokenizer *t;
    FILE *f = fopen(tmp("empty"), "wb");
    fclose(f);
    CHECK(tn_tokenizer_load(tmp("empty"), &t) != 0);
    CHECK(strstr(tn_errmsg(), "empty") != NULL);
    f = fopen(tmp("text.txt"), "wb");
    fputs("just some words, not a tokenizer at all\n", f);
    fclose(f);
    CHECK(tn_tokenizer_load(tmp("text.txt"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "not a tokenizer") != NULL, "%s", tn_errmsg());
    CHECK(tn_tokenizer_load(tmp("missing"), &t) != 0);
    CHECK(strstr(tn_errmsg(), "no such tokenizer") != NULL);
    CHECK(tn_tokenizer_load(dir, &t) != 0); /* a directory without tokenizer files */
    CHECK(strstr(tn_errmsg(), "neither tokenizer.json nor tokenizer.model") != NULL);
    f = fopen(tmp("fake.gguf"), "wb");
    fputs("GGUF\x03\0\0\0garbage", f);
    fclose(f);
    CHECK(tn_tokenizer_load(tmp("fake.gguf"), &t) != 0);
    /* A truncated tokenizer.model */
    const char *model = tn_test_shared("llama-tokenizer/tokenizer.model");
    if (model) {
        char *data;
        size_t size;
        CHECK_OK(tn_read_file(model, &data, &size));
        CHECK_OK(tn_write_file_atomic(tmp("trunc.model"), data, size / 3));
        CHECK(tn_tokenizer_load(tmp("trunc.model"), &t) != 0);
        CHECKF(strstr(tn_errmsg(), "not a tokenizer") != NULL, "%s", tn_errmsg());
        free(data);
    }
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_sha256();
    test_bytes();
    test_blob("bytes");
    test_not_tokenizers();
    const char *model = tn_test_shared("llama-tokenizer/tokenizer.model");
    const char *gpt2 = tn_test_shared("llama-cpp-vocab/ggml-vocab-gpt-2.gguf");
    const char *star = tn_test_shared("llama-cpp-vocab/ggml-vocab-starcoder.gguf");
    if (model) test_blob(model), test_spm_pieces(model);
    if (gpt2) test_blob(gpt2);
    if (star) test_blob(star);
    if (!model) printf("parts needing ../shared/data skipped\n");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
