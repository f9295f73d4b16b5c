/* decode(encode(x)) == x for every line of WikiText-2 test (../shared/data/wikitext2/wiki.test.raw, CRLF
 * line ends, so every line ends in '\r' too), with the Llama SentencePiece model, GPT-2's byte-level BPE,
 * the Llama-3 / Qwen2 / Qwen3.5 byte-level BPEs and `bytes`; streaming decode (piece by piece) equals whole
 * decode; encoding is not quadratic (a long line costs about as much per byte as short ones). The
 * serialized blob keeps the new pre-tokenizers and the ignore-merges flag, and refuses a pre-tokenizer
 * code past the last. */
#include "tn_test.h"

#include "core/crc32.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/timer.h"
#include "data/tok_internal.h" /* TN_PRETOK_COUNT */
#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static void roundtrip(const char *name, const char *tok_path, const char *text, size_t size) {
    tn_tokenizer *tok;
    if (tn_tokenizer_load(tok_path, &tok) != 0) {
        CHECKF(0, "%s: %s", name, tn_errmsg());
        return;
    }
    size_t lines = 0, bad = 0, bad_stream = 0, n_tokens = 0;
    double t0 = tn_time_s();
    tn_tokens ids = {0};
    for (size_t i = 0; i < size;) {
        const char *nl = memchr(text + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (text + i)) : size - i;
        ids.n = 0;
        int rc = tn_tokenizer_encode(tok, text + i, len, lines % 2, &ids); /* with and without BOS */
        char *dec = NULL;
        size_t dlen = 0;
        if (rc == 0) rc = tn_tokenizer_decode(tok, ids.ids, ids.n, &dec, &dlen);
        if (rc != 0 || dlen != len || memcmp(dec, text + i, len) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "%s line %zu: \"%.60s\" -> \"%.60s\"\n", name, lines, text + i, rc ? tn_errmsg() : dec);
        }
        /* streaming: piece by piece */
        size_t k = 0;
        int same = rc == 0;
        for (size_t j = 0; same && j < ids.n; j++) {
            size_t pl;
            const char *p = tn_tokenizer_piece(tok, j ? ids.ids[j - 1] : -1, ids.ids[j], &pl);
            same = p && k + pl <= dlen && memcmp(dec + k, p, pl) == 0;
            k += pl;
        }
        if (!same || k != dlen) bad_stream++;
        free(dec);
        n_tokens += ids.n;
        lines++;
        i += len + 1;
    }
    double dt = tn_time_s() - t0;
    printf("%-8s %zu lines, %zu tokens, round trip + decode %.2f s, %zu mismatches\n", name, lines, n_tokens, dt, bad);
    CHECKF(bad == 0, "%s: %zu lines do not round-trip", name, bad);
    CHECKF(bad_stream == 0, "%s: %zu lines differ in streaming decode", name, bad_stream);
    CHECK(lines > 2000);
    tn_tokens_free(&ids);
    tn_tokenizer_free(tok);
}

/* Time for one 200 kB line vs 100 lines of 2 kB of the same text: a quadratic encoder is ~100x slower,
 * an O(n log n) one about 2-3x (cache effects); 10x leaves room for a loaded machine. */
static void not_quadratic(const char *tok_path, const char *text, size_t size) {
    tn_tokenizer *tok;
    if (tn_tokenizer_load(tok_path, &tok) != 0) return;
    size_t n = size < 200000 ? size : 200000;
    char *flat = malloc(n);
    for (size_t i = 0; i < n; i++) flat[i] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
    tn_tokens ids = {0};
    double t0 = tn_time_s();
    for (size_t i = 0; i + 2000 <= n; i += 2000) tn_tokenizer_encode(tok, flat + i, 2000, 0, &ids);
    double t_short = tn_time_s() - t0;
    ids.n = 0;
    t0 = tn_time_s();
    CHECK_OK(tn_tokenizer_encode(tok, flat, n, 0, &ids));
    double t_long = tn_time_s() - t0;
    printf("%s: 2 kB lines %.3f s, one %zu-byte line %.3f s\n", tok_path, t_short, n, t_long);
    CHECKF(t_long < 10 * t_short + 0.1, "long line %.3f s vs short lines %.3f s", t_long, t_short);
    tn_tokens_free(&ids);
    free(flat);
    tn_tokenizer_free(tok);
}

/* serialize -> deserialize: the same fingerprint, flags and ids on `text` (whose first word, for Llama-3,
 * is one token only because of ignore_merges); then the blob with its pre-tokenizer field (offset 12) set
 * to TN_PRETOK_COUNT, CRC fixed, is refused. */
static void blob(const char *name, const char *tok_path, const char *text, int32_t first_id) {
    tn_tokenizer *a, *b;
    if (tn_tokenizer_load(tok_path, &a) != 0) {
        CHECKF(0, "%s: %s", name, tn_errmsg());
        return;
    }
    uint8_t *bl;
    size_t len;
    CHECK_OK(tn_tokenizer_serialize(a, &bl, &len));
    if (tn_tokenizer_deserialize(bl, len, &b) != 0) {
        CHECKF(0, "%s: %s", name, tn_errmsg());
        free(bl);
        tn_tokenizer_free(a);
        return;
    }
    CHECK(strcmp(tn_tokenizer_sha256(a), tn_tokenizer_sha256(b)) == 0);
    CHECK(tn_tokenizer_uses_bos(a) == tn_tokenizer_uses_bos(b));
    tn_tokens x = {0}, y = {0};
    CHECK_OK(tn_tokenizer_encode(a, text, strlen(text), 0, &x));
    CHECK_OK(tn_tokenizer_encode(b, text, strlen(text), 0, &y));
    CHECK(x.n == y.n && x.n > 0 && memcmp(x.ids, y.ids, x.n * sizeof *x.ids) == 0);
    CHECKF(first_id < 0 || (x.n > 0 && x.ids[0] == first_id), "%s: first id %d, want %d", name, x.n ? x.ids[0] : -1,
           first_id);
    uint32_t code = (uint32_t)bl[12] | (uint32_t)bl[13] << 8 | (uint32_t)bl[14] << 16 | (uint32_t)bl[15] << 24;
    printf("%-9s blob of %zu bytes, pre-tokenizer %u, %zu ids\n", name, len, code, x.n);
    uint32_t codes[2] = {code, TN_PRETOK_COUNT};
    for (int j = 0; j < 2; j++) {
        uint32_t k = codes[j];
        bl[12] = (uint8_t)k;
        uint32_t crc = tn_crc32(0, bl, len - 4);
        for (int i = 0; i < 4; i++) bl[len - 4 + i] = (uint8_t)(crc >> (8 * i));
        tn_tokenizer *c = NULL;
        int rc = tn_tokenizer_deserialize(bl, len, &c);
        if (j == 0) CHECK_OK(rc);
        else
            CHECKF(rc != 0 && strstr(tn_errmsg(), "unknown pre-tokenizer"), "%s: code %u: %s", name, k,
                   rc ? tn_errmsg() : "loaded");
        tn_tokenizer_free(c);
    }
    tn_tokens_free(&x);
    tn_tokens_free(&y);
    free(bl);
    tn_tokenizer_free(a);
    tn_tokenizer_free(b);
}

int main(void) {
    const char *wiki = tn_test_shared("wikitext2/wiki.test.raw");
    if (!wiki) TN_SKIP("../shared/data/wikitext2 absent");
    char *text;
    size_t size;
    if (tn_read_file(wiki, &text, &size) != 0) return 1;
    const char *spm = tn_test_shared("llama-tokenizer/tokenizer.model");
    const char *gpt2 = tn_test_shared("llama-cpp-vocab/ggml-vocab-gpt-2.gguf");
    const char *llama3 = tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-bpe.gguf");
    const char *qwen2 = tn_test_shared("llama-cpp-vocab/ggml-vocab-qwen2.gguf");
    const char *qwen35 = tn_test_shared("llama-cpp-vocab/ggml-vocab-qwen35.gguf");
    if (spm) roundtrip("spm", spm, text, size);
    if (gpt2) roundtrip("gpt-2", gpt2, text, size);
    if (llama3) roundtrip("llama3", llama3, text, size);
    if (qwen2) roundtrip("qwen2", qwen2, text, size);
    if (qwen35) roundtrip("qwen35", qwen35, text, size);
    roundtrip("bytes", "bytes", text, size);
    if (spm) not_quadratic(spm, text, size);
    if (gpt2) not_quadratic(gpt2, text, size);
    if (llama3) not_quadratic(llama3, text, size);
    if (qwen35) not_quadratic(qwen35, text, size);
    /* " việc" is one Llama-3 token (100769); merging its bytes gives 3355 26298 66 */
    const char *sample = " vi\xE1\xBB\x87" "c 12345 it's\r\n\n  x\xCC\x81y \xF0\x9F\x98\x81!!\n";
    if (llama3) blob("llama3", llama3, sample, 100769);
    if (qwen2) blob("qwen2", qwen2, sample, -1);
    if (qwen35) blob("qwen35", qwen35, sample, -1);
    free(text);
    return tn_test_finish();
}
