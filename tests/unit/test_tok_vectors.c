/* Tokenizers against llama.cpp's test vectors (../shared/data/llama-cpp-vocab): for every vocab GGUF,
 * <name>.gguf.inp holds test strings separated by "\n__ggml_vocab_test__\n" and <name>.gguf.out one line
 * of expected ids per string (llama.cpp tests/test-tokenizer-0: no BOS, special tokens not parsed).
 * Vocabularies of a supported kind must pass every case; the others must be refused with a clear
 * message at load. Also: tokenizer.model and the llama-spm GGUF give identical ids (vectors and every
 * WikiText line) and fingerprints, and llama2.c's tokenizer.bin has that fingerprint too. */
#include "tn_test.h"

#include "core/error.h"
#include "core/fileio.h"
#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define SEP "\n__ggml_vocab_test__\n"

static const char *supported[] = {"llama-spm", "phi-3",  "gpt-2",     "mpt",   "starcoder",
                                  "refact",    "falcon", "llama-bpe", "qwen2", "qwen35"};
static const char *unsupported[] = {"bert-bge", "deepseek-coder", "deepseek-llm"};

/* Encode every case; returns the number of failing cases (printing the first few). */
static int run_vectors(const tn_tokenizer *tok, const char *name, const char *inp_path, const char *out_path) {
    char *inp, *outp;
    size_t ni, no;
    if (tn_read_file(inp_path, &inp, &ni) != 0 || tn_read_file(out_path, &outp, &no) != 0) {
        fprintf(stderr, "%s: %s\n", name, tn_errmsg());
        return 1000;
    }
    int fails = 0, cases = 0;
    char *p = inp, *line = outp;
    for (;;) {
        char *sep = strstr(p, SEP);
        if (!sep) break;
        char *eol = strchr(line, '\n');
        if (!eol) {
            fails++;
            break;
        }
        *eol = '\0';
        tn_tokens ids = {0};
        int rc = tn_tokenizer_encode(tok, p, (size_t)(sep - p), 0, &ids);
        /* expected ids */
        int ok = rc == 0;
        char *q = line;
        size_t k = 0;
        while (ok) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            ok = k < ids.n && ids.ids[k] == v;
            k++;
            q = end;
        }
        ok = ok && k == ids.n;
        if (!ok) {
            fails++;
            if (fails <= 3) {
                fprintf(stderr, "%s case %d \"%.*s\"\n  want:%s\n  got: ", name, cases, (int)(sep - p > 60 ? 60 : sep - p), p,
                        line);
                for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.ids[i]);
                fprintf(stderr, "\n");
            }
        }
        tn_tokens_free(&ids);
        cases++;
        p = sep + strlen(SEP);
        line = eol + 1;
    }
    printf("%-16s %d cases, %d failed\n", name, cases, fails);
    if (cases < 40) fails += 1000;
    free(inp);
    free(outp);
    return fails;
}

int main(void) {
    if (!tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-spm.gguf")) TN_SKIP("../shared/data/llama-cpp-vocab absent");
    char path[3][1024];
    for (size_t i = 0; i < sizeof supported / sizeof supported[0]; i++) {
        snprintf(path[0], sizeof path[0], "llama-cpp-vocab/ggml-vocab-%s.gguf", supported[i]);
        snprintf(path[1], sizeof path[1], "%s.inp", tn_test_shared(path[0]));
        snprintf(path[2], sizeof path[2], "%s.out", tn_test_shared(path[0]));
        tn_tokenizer *tok;
        int rc = tn_tokenizer_load(tn_test_shared(path[0]), &tok);
        CHECKF(rc == 0, "%s: %s", supported[i], tn_errmsg());
        if (rc) continue;
        int fails = run_vectors(tok, supported[i], path[1], path[2]);
        CHECKF(fails == 0, "%s: %d failing cases", supported[i], fails);
        tn_tokenizer_free(tok);
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        snprintf(path[0], sizeof path[0], "llama-cpp-vocab/ggml-vocab-%s.gguf", unsupported[i]);
        tn_tokenizer *tok;
        int rc = tn_tokenizer_load(tn_test_shared(path[0]), &tok);
        CHECKF(rc != 0 && strstr(tn_errmsg(), "not supported"), "%s: expected a clear refusal, got %s", unsupported[i],
               rc ? tn_errmsg() : "success");
        printf("%-16s refused: %s\n", unsupported[i], tn_errmsg());
        if (rc == 0) tn_tokenizer_free(tok);
    }

    /* tokenizer.model vs the llama-spm GGUF: same ids on every vector string, same fingerprint. */
    const char *model = tn_test_shared("llama-tokenizer/tokenizer.model");
    if (model) {
        tn_tokenizer *a, *b;
        CHECK_OK(tn_tokenizer_load(model, &a));
        CHECK_OK(tn_tokenizer_load(tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-spm.gguf"), &b));
        int fails = run_vectors(a, "tokenizer.model", tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-spm.gguf.inp"),
                                tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-spm.gguf.out"));
        CHECK(fails == 0);
        CHECKF(strcmp(tn_tokenizer_sha256(a), tn_tokenizer_sha256(b)) == 0, "sha %s vs %s", tn_tokenizer_sha256(a),
               tn_tokenizer_sha256(b));
        CHECK(tn_tokenizer_vocab_size(a) == 32000 && tn_tokenizer_bos_id(a) == 1 && tn_tokenizer_eos_id(a) == 2);
        CHECK(tn_tokenizer_uses_bos(a) && tn_tokenizer_uses_bos(b));
        /* llama2.c's export of the same model (tokenizer.bin) is the same definition */
        const char *bin = tn_test_shared("llama-tokenizer/tokenizer.bin");
        tn_tokenizer *c;
        if (bin && tn_tokenizer_load(bin, &c) == 0) {
            CHECKF(strcmp(tn_tokenizer_sha256(a), tn_tokenizer_sha256(c)) == 0, "tokenizer.bin sha %s", tn_tokenizer_sha256(c));
            tn_tokenizer_free(c);
        } else if (bin) {
            CHECKF(0, "tokenizer.bin: %s", tn_errmsg());
        }
        /* and every line of WikiText-2 test */
        char *wiki;
        size_t size;
        const char *wpath = tn_test_shared("wikitext2/wiki.test.raw");
        if (wpath && tn_read_file(wpath, &wiki, &size) == 0) {
            int differ = 0, lines = 0;
            for (size_t i = 0; i < size; lines++) {
                const char *nl = memchr(wiki + i, '\n', size - i);
                size_t len = nl ? (size_t)(nl - (wiki + i)) : size - i;
                tn_tokens x = {0}, y = {0};
                CHECK_OK(tn_tokenizer_encode(a, wiki + i, len, 1, &x));
                CHECK_OK(tn_tokenizer_encode(b, wiki + i, len, 1, &y));
                differ += x.n != y.n || memcmp(x.ids, y.ids, x.n * sizeof *x.ids) != 0;
                tn_tokens_free(&x);
                tn_tokens_free(&y);
                i += len + 1;
            }
            printf("tokenizer.model vs GGUF on %d WikiText lines: %d differ\n", lines, differ);
            CHECK(differ == 0 && lines > 2000);
            free(wiki);
        }
        tn_tokenizer_free(a);
        tn_tokenizer_free(b);
    }
    return tn_test_finish();
}
