/* prepare -> shard, on the real data: an Alpaca shard from alpaca_data_first2000.json in which, for
 * every record, the masked tokens decode to exactly the record's output followed by EOS (Llama
 * tokenizer, both templates; byte-level GPT-2 too, where the straddling token may carry the template's
 * trailing space); WikiText split at article headings decodes back to the file; max-len and val split. */
#include "tn_test.h"

#include "core/error.h"
#include "core/fileio.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_prepareXXXXXX";

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k = 0;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

/* exact = 1: masked tokens decode to output exactly; else they may start with template whitespace. */
static void check_alpaca(const char *tok_path, const char *tpl, int exact, int with_limits) {
    const char *json_path = tn_test_shared("alpaca/alpaca_data_first2000.json");
    tn_tokenizer *tok;
    if (tn_tokenizer_load(tok_path, &tok) != 0) {
        CHECKF(0, "%s", tn_errmsg());
        return;
    }
    tn_prepare_sft_opts o = {tpl, 0, 0, 0, 0};
    tn_prepare_stats st;
    CHECK_OK(tn_prepare_alpaca(tok, json_path, tmp("alpaca.h5"), NULL, &o, &st));
    tn_shard s;
    CHECK_OK(tn_shard_load(tmp("alpaca.h5"), &s));
    char *text;
    size_t size;
    CHECK_OK(tn_read_file(json_path, &text, &size));
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECK(root && cJSON_GetArraySize(root) == 2000 && s.n_docs == 2000 && st.n_train == 2000);
    CHECK(strcmp(s.kind, "sft") == 0 && strcmp(s.template_name, tpl) == 0);
    CHECK(strcmp(s.tokenizer_sha256, tn_tokenizer_sha256(tok)) == 0);
    int bad = 0, bad_shape = 0;
    int32_t eos = (int32_t)tn_tokenizer_eos_id(tok);
    int32_t *m = malloc((size_t)s.n_tokens * sizeof *m);
    for (int64_t d = 0; d < s.n_docs && d < cJSON_GetArraySize(root); d++) {
        const char *output = cJSON_GetObjectItem(cJSON_GetArrayItem(root, (int)d), "output")->valuestring;
        uint64_t a = s.doc_offsets[d], b = s.doc_offsets[d + 1];
        /* masked tokens: one contiguous run at the end, ending with EOS; BOS first and unmasked */
        size_t n = 0;
        int runs = 0;
        for (uint64_t i = a; i < b; i++) {
            if (s.loss_mask[i]) m[n++] = (int32_t)s.tokens[i];
            if (s.loss_mask[i] && (i == a || !s.loss_mask[i - 1])) runs++;
        }
        int shape_ok = runs == 1 && s.loss_mask[b - 1] == 1 && (int32_t)s.tokens[b - 1] == eos && n >= 1;
        if (tn_tokenizer_uses_bos(tok)) shape_ok &= (int64_t)s.tokens[a] == tn_tokenizer_bos_id(tok) && !s.loss_mask[a];
        if (!shape_ok) bad_shape++;
        char *dec;
        size_t len;
        if (n == 0 || tn_tokenizer_decode(tok, m, n - 1, &dec, &len) != 0) {
            bad++;
            continue;
        }
        size_t ol = strlen(output);
        int ok = len == ol && memcmp(dec, output, ol) == 0;
        if (!exact && !ok) /* the straddling token: only template whitespace before the output */
            ok = len == ol + 1 && dec[0] == ' ' && memcmp(dec + 1, output, ol) == 0;
        if (!ok && bad++ < 3) fprintf(stderr, "%s/%s record %lld: masked \"%.50s\" vs output \"%.50s\"\n", tok_path, tpl,
                                      (long long)d, dec, output);
        free(dec);
    }
    printf("%s, template %s: %lld examples, %lld tokens, %lld masked; %d mismatches\n", tok_path, tpl,
           (long long)s.n_docs, (long long)s.n_tokens, (long long)st.masked_train, bad);
    CHECKF(bad == 0, "%s/%s: %d records whose masked tokens are not output+EOS", tok_path, tpl, bad);
    CHECKF(bad_shape == 0, "%s/%s: %d records with a malformed mask", tok_path, tpl, bad_shape);
    free(m);
    cJSON_Delete(root);
    tn_shard_free(&s);

    if (!with_limits) {
        tn_tokenizer_free(tok);
        return;
    }
    /* max-len: truncation and dropping are counted; validation split is disjoint and complete. */
    tn_prepare_sft_opts t = {tpl, 128, 0, 0.25, 7};
    CHECK_OK(tn_prepare_alpaca(tok, json_path, tmp("tr.h5"), tmp("va.h5"), &t, &st));
    CHECK(st.n_truncated > 0 && st.n_train + st.n_val + st.n_dropped == 2000);
    CHECKF(st.n_val + st.n_dropped >= 400 && st.n_val <= 500, "val %lld dropped %lld", (long long)st.n_val, (long long)st.n_dropped);
    tn_shard tr, va;
    CHECK_OK(tn_shard_load(tmp("tr.h5"), &tr));
    CHECK_OK(tn_shard_load(tmp("va.h5"), &va));
    int64_t longest = 0;
    for (int64_t d = 0; d < tr.n_docs; d++) {
        int64_t l = (int64_t)(tr.doc_offsets[d + 1] - tr.doc_offsets[d]);
        if (l > longest) longest = l;
    }
    CHECK(longest <= 128 && (longest == 128 || st.n_truncated == 0) && tr.n_docs == st.n_train && va.n_docs == st.n_val);
    tn_shard_free(&tr);
    tn_shard_free(&va);
    t.drop_long = 1;
    CHECK_OK(tn_prepare_alpaca(tok, json_path, tmp("tr.h5"), tmp("va.h5"), &t, &st));
    CHECK(st.n_truncated == 0 && st.n_dropped > 0 && st.n_train + st.n_val + st.n_dropped == 2000);
    tn_tokenizer_free(tok);
}

/* WikiText with --doc-split heading: one document per " = Title = " line, decoding back to the text. */
static void check_text(const char *tok_path) {
    const char *wiki = tn_test_shared("wikitext2/wiki.test.raw");
    tn_tokenizer *tok;
    if (tn_tokenizer_load(tok_path, &tok) != 0) {
        CHECKF(0, "%s", tn_errmsg());
        return;
    }
    tn_prepare_stats st;
    CHECK_OK(tn_prepare_text(tok, &wiki, 1, tmp("wiki.h5"), TN_DOCSPLIT_HEADING, &st));
    tn_shard s;
    CHECK_OK(tn_shard_load(tmp("wiki.h5"), &s));
    char *text;
    size_t size;
    CHECK_OK(tn_read_file(wiki, &text, &size));
    size_t k = 0, headings = 0;
    for (size_t i = 0; i < size; i++)
        if (!(text[i] == '\r' && i + 1 < size && text[i + 1] == '\n')) text[k++] = text[i];
    /* " = Title = " lines (" = = Section = = " and footnotes like " = National record" are not) */
    for (size_t i = 0; i + 3 < k; i++) {
        if ((i > 0 && text[i - 1] != '\n') || memcmp(text + i, " = ", 3) != 0 || text[i + 3] == '=') continue;
        const char *nl = memchr(text + i, '\n', k - i);
        if (nl && nl - (text + i) >= 5 && !memcmp(nl - 3, " = ", 3)) headings++;
    }
    CHECKF((size_t)s.n_docs == headings, "%lld documents, %zu headings", (long long)s.n_docs, headings);
    /* mask: 1 on everything but a document's BOS */
    int mask_ok = 1;
    for (int64_t d = 0; d < s.n_docs; d++)
        for (uint64_t i = s.doc_offsets[d]; i < s.doc_offsets[d + 1]; i++)
            mask_ok &= s.loss_mask[i] == !(i == s.doc_offsets[d] && tn_tokenizer_uses_bos(tok));
    CHECK(mask_ok);
    /* the documents decoded one by one and concatenated == the file with LF line ends (SentencePiece's
     * first-piece rule applies per document) */
    size_t pos = 0;
    int same = 1;
    for (int64_t d = 0; d < s.n_docs; d++) {
        tn_tokens doc = {0};
        for (uint64_t i = s.doc_offsets[d]; i < s.doc_offsets[d + 1]; i++) {
            int32_t id = (int32_t)s.tokens[i];
            if (id != tn_tokenizer_bos_id(tok) && id != tn_tokenizer_eos_id(tok)) tn_tokens_push(&doc, id);
        }
        char *dec;
        size_t len;
        CHECK_OK(tn_tokenizer_decode(tok, doc.ids, doc.n, &dec, &len));
        same &= pos + len <= k && memcmp(dec, text + pos, len) == 0;
        pos += len;
        free(dec);
        tn_tokens_free(&doc);
    }
    CHECK(same && pos == k);
    printf("%s: wiki.test.raw -> %lld documents, %lld tokens\n", tok_path, (long long)s.n_docs, (long long)s.n_tokens);
    free(text);
    tn_shard_free(&s);
    tn_tokenizer_free(tok);
}

int main(void) {
    /* tn_test_shared returns a slot of a small ring of buffers: keep copies. */
    char *model = tn_test_shared("llama-tokenizer/tokenizer.model") ? strdup(tn_test_shared("llama-tokenizer/tokenizer.model")) : NULL;
    char *gpt2 = tn_test_shared("llama-cpp-vocab/ggml-vocab-gpt-2.gguf") ? strdup(tn_test_shared("llama-cpp-vocab/ggml-vocab-gpt-2.gguf")) : NULL;
    if (!model || !gpt2 || !tn_test_shared("alpaca/alpaca_data_first2000.json") ||
        !tn_test_shared("wikitext2/wiki.test.raw"))
        TN_SKIP("../shared/data absent");
    if (!mkdtemp(dir)) return 1;
    check_alpaca(model, "trinity", 1, 1);
    check_alpaca(model, "alpaca", 1, 0);
    check_alpaca(gpt2, "alpaca", 1, 0);
    check_alpaca(gpt2, "trinity", 0, 1);
    check_alpaca("bytes", "trinity", 1, 0);
    check_text(model);
    check_text(gpt2);
    free(model);
    free(gpt2);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
