/* tokenizer.json loading. ../shared has no tokenizer.json, so /usr/bin/python3 writes six in the layout
 * the `tokenizers` library saves: GPT-2 (ByteLevel), StarCoder (Digits + ByteLevel), and Llama-3, Qwen2 and
 * Qwen3.5 (Split regex + ByteLevel without its regex; Llama-3 with ignore_merges and a post-processor
 * Sequence holding TemplateProcessing, the Qwens with NFC) from the llama.cpp vocab GGUFs, and a Llama one
 * (Prepend/Replace normalizers, byte_fallback, merges ordered by piece score, TemplateProcessing with <s>)
 * from tokenizer.model via python3-sentencepiece. Each must pass llama.cpp's vectors and give the same ids
 * as its GGUF / .model source on 400 WikiText lines. Plus: a small hand-written Llama-3 style file whose
 * ids show the splits, the tokenizer_config.json sibling, broken JSON naming the byte offset, unsupported
 * kinds (an unknown Split regex among them). */
#include "tn_test.h"

#include "core/error.h"
#include "core/fileio.h"
#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_hfjsonXXXXXX";

#define SEP "\n__ggml_vocab_test__\n"

static const char *GEN =
    "import json, struct, sys\n"
    "def gguf(path):\n"
    "    d = open(path, 'rb').read(); p = [8]\n"
    "    def rd(fmt):\n"
    "        v = struct.unpack_from('<' + fmt, d, p[0]); p[0] += struct.calcsize('<' + fmt); return v[0]\n"
    "    def rs():\n"
    "        n = rd('Q'); s = d[p[0]:p[0] + n].decode('utf-8', 'surrogateescape'); p[0] += n; return s\n"
    "    F = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}\n"
    "    def val(t):\n"
    "        if t == 8: return rs()\n"
    "        if t == 9:\n"
    "            et = rd('I'); n = rd('Q'); return [val(et) for _ in range(n)]\n"
    "        return rd(F[t])\n"
    "    rd('Q'); nkv = rd('Q'); kv = {}\n"
    "    for _ in range(nkv):\n"
    "        k = rs(); kv[k] = val(rd('I'))\n"
    "    return kv\n"
    "def bytelevel(src, out, digits, regex=None, llama3=False):\n"
    "    kv = gguf(src); toks = kv['tokenizer.ggml.tokens']; types = kv['tokenizer.ggml.token_type']\n"
    "    added = [{'id': i, 'content': t, 'special': types[i] == 3, 'single_word': False, 'lstrip': False,\n"
    "              'rstrip': False, 'normalized': False} for i, t in enumerate(toks) if types[i] in (3, 4)]\n"
    "    bl = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': regex is None}\n"
    "    pre = {'type': 'Sequence', 'pretokenizers': [{'type': 'Digits', 'individual_digits': True}, bl]} if digits else bl\n"
    "    post = None\n"
    "    if regex:\n"
    "        split = {'type': 'Split', 'pattern': {'Regex': regex}, 'behavior': 'Isolated', 'invert': False}\n"
    "        pre = {'type': 'Sequence', 'pretokenizers': [split, bl]}; post = bl\n"
    "    if llama3:\n"
    "        post = {'type': 'Sequence', 'processors': [bl, {'type': 'TemplateProcessing', 'pair': [], 'special_tokens': {},\n"
    "                'single': [{'SpecialToken': {'id': '<|begin_of_text|>', 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}]}]}\n"
    "    vocab = {t: i for i, t in enumerate(toks) if types[i] not in (3, 4)}\n"
    "    j = {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,\n"
    "         'normalizer': {'type': 'NFC'} if regex and not llama3 else None,\n"
    "         'pre_tokenizer': pre, 'post_processor': post, 'decoder': {'type': 'ByteLevel'},\n"
    "         'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'byte_fallback': False, 'ignore_merges': llama3,\n"
    "                   'vocab': vocab, 'merges': kv['tokenizer.ggml.merges']}}\n"
    "    if digits: j['model']['merges'] = [m.split(' ', 1) for m in j['model']['merges']]\n"
    "    json.dump(j, open(out, 'w', encoding='utf-8'), ensure_ascii=False)\n"
    "def llama(src, out):\n"
    "    import sentencepiece as spm\n"
    "    sp = spm.SentencePieceProcessor(model_file=src)\n"
    "    n = sp.get_piece_size(); pieces = [sp.id_to_piece(i) for i in range(n)]\n"
    "    vocab = {p: i for i, p in enumerate(pieces)}\n"
    "    merges = []\n"
    "    for i, p in enumerate(pieces):\n"
    "        if not sp.is_control(i) and not sp.is_unknown(i) and not sp.is_byte(i):\n"
    "            for k in range(1, len(p)):\n"
    "                if p[:k] in vocab and p[k:] in vocab: merges.append((-sp.get_score(i), vocab[p[:k]], p[:k], p[k:]))\n"
    "    merges.sort()\n"
    "    sp_tok = lambda s: {'id': vocab[s], 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,\n"
    "                        'normalized': False, 'special': True}\n"
    "    j = {'version': '1.0', 'added_tokens': [sp_tok('<unk>'), sp_tok('<s>'), sp_tok('</s>')],\n"
    "         'normalizer': {'type': 'Sequence', 'normalizers': [{'type': 'Prepend', 'prepend': '\\u2581'},\n"
    "                        {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '\\u2581'}]},\n"
    "         'pre_tokenizer': None,\n"
    "         'post_processor': {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},\n"
    "                            {'Sequence': {'id': 'A', 'type_id': 0}}], 'pair': [], 'special_tokens': {}},\n"
    "         'decoder': None,\n"
    "         'model': {'type': 'BPE', 'unk_token': '<unk>', 'fuse_unk': True, 'byte_fallback': True,\n"
    "                   'vocab': vocab, 'merges': [a + ' ' + b for _, _, a, b in merges]}}\n"
    "    json.dump(j, open(out, 'w', encoding='utf-8'), ensure_ascii=False)\n"
    "v = sys.argv[1]; o = sys.argv[2]\n"
    "bytelevel(v + '/llama-cpp-vocab/ggml-vocab-gpt-2.gguf', o + '/gpt2/tokenizer.json', False)\n"
    "bytelevel(v + '/llama-cpp-vocab/ggml-vocab-starcoder.gguf', o + '/starcoder.json', True)\n"
    "L3 = r\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+\"\n"
    "Q2 = L3.replace(r'\\p{N}{1,3}', r'\\p{N}')\n"
    "Q35 = Q2.replace(r']?\\p{L}+', r']?[\\p{L}\\p{M}]+').replace(r'[^\\s\\p{L}\\p{N}]', r'[^\\s\\p{L}\\p{M}\\p{N}]')\n"
    "bytelevel(v + '/llama-cpp-vocab/ggml-vocab-llama-bpe.gguf', o + '/llama3.json', False, L3, True)\n"
    "bytelevel(v + '/llama-cpp-vocab/ggml-vocab-qwen2.gguf', o + '/qwen2.json', False, Q2)\n"
    "bytelevel(v + '/llama-cpp-vocab/ggml-vocab-qwen35.gguf', o + '/qwen35.json', False, Q35)\n"
    "llama(v + '/llama-tokenizer/tokenizer.model', o + '/llama.json')\n";

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k = 0;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* Same ids from both tokenizers on llama.cpp's strings and on the first 400 WikiText lines. */
static void compare(const char *name, const char *json_path, const char *ref_path, const char *inp_name) {
    tn_tokenizer *a, *b;
    if (tn_tokenizer_load(json_path, &a) != 0) {
        CHECKF(0, "%s: %s", name, tn_errmsg());
        return;
    }
    CHECK_OK(tn_tokenizer_load(ref_path, &b));
    char *inp, *wiki;
    size_t ni, nw;
    char inp_path[256];
    snprintf(inp_path, sizeof inp_path, "llama-cpp-vocab/ggml-vocab-%s.gguf.inp", inp_name);
    CHECK_OK(tn_read_file(tn_test_shared(inp_path), &inp, &ni));
    CHECK_OK(tn_read_file(tn_test_shared("wikitext2/wiki.test.raw"), &wiki, &nw));
    int diff = 0, cases = 0;
    const char *srcs[2] = {inp, wiki};
    size_t sizes[2] = {ni, nw};
    for (int s = 0; s < 2; s++) {
        const char *text = srcs[s];
        int lines = 0;
        /* llama.cpp's vector strings (separated by SEP), then WikiText lines */
        const char *sep = s == 0 ? SEP : "\n";
        for (size_t i = 0; i < sizes[s] && lines < 400; lines++) {
            const char *nl = strstr(text + i, sep);
            size_t len = nl ? (size_t)(nl - (text + i)) : sizes[s] - i;
            tn_tokens x = {0}, y = {0};
            CHECK_OK(tn_tokenizer_encode(a, text + i, len, 0, &x));
            CHECK_OK(tn_tokenizer_encode(b, text + i, len, 0, &y));
            if (x.n != y.n || (x.n && memcmp(x.ids, y.ids, x.n * sizeof *x.ids) != 0)) {
                if (diff++ < 3) fprintf(stderr, "%s: differs on \"%.60s\"\n", name, text + i);
            }
            tn_tokens_free(&x);
            tn_tokens_free(&y);
            cases++;
            i += len + strlen(sep);
        }
    }
    printf("%-10s %d lines, %d differ; kind %s, vocab %lld, bos %lld, eos %lld, adds bos %d\n", name, cases, diff,
           tn_tokenizer_kind_name(a), (long long)tn_tokenizer_vocab_size(a), (long long)tn_tokenizer_bos_id(a),
           (long long)tn_tokenizer_eos_id(a), tn_tokenizer_uses_bos(a));
    CHECK(diff == 0);
    CHECK(tn_tokenizer_vocab_size(a) == tn_tokenizer_vocab_size(b));
    CHECK(tn_tokenizer_eos_id(a) == tn_tokenizer_eos_id(b));
    CHECK(tn_tokenizer_uses_bos(a) == tn_tokenizer_uses_bos(b));
    if (tn_tokenizer_uses_bos(a)) CHECK(tn_tokenizer_bos_id(a) == tn_tokenizer_bos_id(b));
    free(inp);
    free(wiki);
    tn_tokenizer_free(a);
    tn_tokenizer_free(b);
}

/* Llama-3's Split regex as tokenizer.json spells it (JSON-escaped), and a vocabulary whose merges would
 * cross the pre-token boundaries if nothing split the text: "3 4" is the first merge, so "12345" unsplit
 * gives 12 34 5, split as "123" "45" it gives 123 45, and split into digits 1 2 3 4 5; "ĠĠ" would swallow
 * the two spaces of "  a" that the regex splits " " + " a"; GPT-2's regex would cut "!" from "\r\n".
 * Ġ, Ċ, č are the byte-level space, \n, \r. */
#define LLAMA3_RE                                                                                                          \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|" \
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define SMALL_JSON(re)                                                                                                     \
    "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["                              \
    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"" re "\"}, \"behavior\": \"Isolated\", \"invert\": false},"          \
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},"              \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"1\": 0, \"2\": 1, \"3\": 2, \"4\": 3, \"5\": 4, \"12\": 5, \"123\": 6, " \
    "\"34\": 7, \"45\": 8, \"\\u0120\": 9, \"\\u010a\": 10, \"\\u010d\": 11, \"\\u010d\\u010a\": 12, "                     \
    "\"\\u0120\\u010d\\u010a\": 13, \"a\": 14, \"\\u0120a\": 15, \"\\u0120\\u0120\": 16, \"!\": 17, "                      \
    "\"!\\u010d\\u010a\": 18}, \"merges\": [\"3 4\", \"1 2\", \"12 3\", \"4 5\", \"\\u010d \\u010a\", "                    \
    "\"\\u0120 \\u010d\\u010a\", \"\\u0120 a\", \"\\u0120 \\u0120\", \"! \\u010d\\u010a\"]}}"

static void expect_ids(const tn_tokenizer *t, const char *text, const int32_t *want, size_t n) {
    tn_tokens ids = {0};
    CHECK_OK(tn_tokenizer_encode(t, text, strlen(text), 0, &ids));
    int same = ids.n == n && memcmp(ids.ids, want, n * sizeof *want) == 0;
    CHECKF(same, "\"%s\": %zu ids, first %d", text, ids.n, ids.n ? ids.ids[0] : -1);
    tn_tokens_free(&ids);
}

static void split_file(void) {
    tn_tokenizer *t;
    write_text(tmp("small3.json"), SMALL_JSON(LLAMA3_RE));
    if (tn_tokenizer_load(tmp("small3.json"), &t) != 0) {
        CHECKF(0, "small3.json: %s", tn_errmsg());
        return;
    }
    expect_ids(t, "12345", (const int32_t[]){6, 8}, 2);                   /* \p{N}{1,3} */
    expect_ids(t, " \r\n  a", (const int32_t[]){13, 9, 15}, 3);           /* \s*[\r\n]+, \s+(?!\S), a word */
    expect_ids(t, "a!\r\n", (const int32_t[]){14, 18}, 2);                  /* ?[^\s\p{L}\p{N}]+[\r\n]* */
    expect_ids(t, "123 45", (const int32_t[]){6, 9, 8}, 3);                /* no " ?" in front of numbers */
    tn_tokenizer_free(t);
    /* The same file with Qwen2's single digits, and with a pattern that differs by one character. */
    char json[8192], *q;
    snprintf(json, sizeof json, "%s", SMALL_JSON(LLAMA3_RE));
    q = strstr(json, "{1,3}");
    memmove(q, q + 5, strlen(q + 5) + 1);
    write_text(tmp("small2.json"), json);
    CHECK_OK(tn_tokenizer_load(tmp("small2.json"), &t));
    if (t) {
        expect_ids(t, "12345", (const int32_t[]){0, 1, 2, 3, 4}, 5);
        tn_tokenizer_free(t);
    }
    /* llama.cpp's spelling of the contractions is accepted as the same pattern */
    const char *ci = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    q = strstr(SMALL_JSON(LLAMA3_RE), ci);
    snprintf(json, sizeof json, "%.*s(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])%s",
             (int)(q - SMALL_JSON(LLAMA3_RE)), SMALL_JSON(LLAMA3_RE), q + strlen(ci));
    write_text(tmp("small3cpp.json"), json);
    CHECK_OK(tn_tokenizer_load(tmp("small3cpp.json"), &t));
    if (t) {
        expect_ids(t, "12345", (const int32_t[]){6, 8}, 2);
        tn_tokenizer_free(t);
    }
    snprintf(json, sizeof json, "%s", SMALL_JSON(LLAMA3_RE));
    q = strstr(json, "{1,3}");
    q[3] = '4';
    write_text(tmp("small4.json"), json);
    CHECK(tn_tokenizer_load(tmp("small4.json"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "Split regex \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^") && strstr(tn_errmsg(), "is not supported"),
           "%s", tn_errmsg());
}

int main(void) {
    const char *shared = getenv("TN_SHARED_DATA");
    const char *py = getenv("TN_PYTHON");
    if (!tn_test_shared("llama-cpp-vocab/ggml-vocab-gpt-2.gguf") || !tn_test_shared("llama-tokenizer/tokenizer.model"))
        TN_SKIP("../shared/data absent");
    if (!py || access(py, X_OK) != 0) TN_SKIP("TN_PYTHON not set (needs /usr/bin/python3 with sentencepiece)");
    if (!mkdtemp(dir)) return 1;
    char cmd[16384];
    if (snprintf(cmd, sizeof cmd, "mkdir -p '%s/gpt2' && '%s' - '%s' '%s' <<'EOF'\n%sEOF", dir, py, shared, dir, GEN) >=
        (int)sizeof cmd)
        return 1;
    int rc = system(cmd);
    if (rc != 0) TN_SKIP("python could not write the tokenizer.json fixtures (%d)", rc);

    /* A directory with tokenizer.json is accepted too. */
    compare("gpt-2", tmp("gpt2"), tn_test_shared("llama-cpp-vocab/ggml-vocab-gpt-2.gguf"), "gpt-2");
    compare("starcoder", tmp("starcoder.json"), tn_test_shared("llama-cpp-vocab/ggml-vocab-starcoder.gguf"), "gpt-2");
    compare("llama", tmp("llama.json"), tn_test_shared("llama-tokenizer/tokenizer.model"), "gpt-2");
    compare("llama3", tmp("llama3.json"), tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-bpe.gguf"), "llama-bpe");
    compare("qwen2", tmp("qwen2.json"), tn_test_shared("llama-cpp-vocab/ggml-vocab-qwen2.gguf"), "qwen2");
    compare("qwen35", tmp("qwen35.json"), tn_test_shared("llama-cpp-vocab/ggml-vocab-qwen35.gguf"), "qwen35");
    split_file();
    /* model.ignore_merges: " việc" is one Llama-3 token although its merges lead to 3355 26298 66 */
    tn_tokenizer *t;
    if (tn_tokenizer_load(tmp("llama3.json"), &t) == 0) {
        expect_ids(t, " vi\xE1\xBB\x87" "c", (const int32_t[]){100769}, 1);
        tn_tokenizer_free(t);
    }

    /* tokenizer_config.json next to tokenizer.json names BOS/EOS and whether BOS is added. */
    write_text(tmp("gpt2/tokenizer_config.json"),
               "{\"bos_token\": {\"content\": \"<|endoftext|>\"}, \"eos_token\": \"<|endoftext|>\", \"add_bos_token\": true}");
    CHECK_OK(tn_tokenizer_load(tmp("gpt2/tokenizer.json"), &t));
    if (t) {
        CHECK(tn_tokenizer_bos_id(t) == 50256 && tn_tokenizer_uses_bos(t));
        tn_tokenizer_free(t);
    }

    /* Broken and unsupported files: one clear message. */
    write_text(tmp("broken.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,, }}}");
    CHECK(tn_tokenizer_load(tmp("broken.json"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "malformed JSON at byte 4") != NULL, "%s", tn_errmsg());
    write_text(tmp("wp.json"), "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
    CHECK(tn_tokenizer_load(tmp("wp.json"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "WordPiece' is not supported") != NULL, "%s", tn_errmsg());
    write_text(tmp("split.json"),
               "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"x\"}}, \"model\": {\"type\": \"BPE\", "
               "\"vocab\": {\"a\": 0}, \"merges\": []}}");
    CHECK(tn_tokenizer_load(tmp("split.json"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "Split regex \"x\" is not supported") != NULL, "%s", tn_errmsg());
    write_text(tmp("gap.json"),
               "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}}}");
    CHECK(tn_tokenizer_load(tmp("gap.json"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "no token has id 1") != NULL, "%s", tn_errmsg());
    write_text(tmp("other.json"), "{\"hello\": 1}");
    CHECK(tn_tokenizer_load(tmp("other.json"), &t) != 0);
    CHECKF(strstr(tn_errmsg(), "no \"model\" object") != NULL, "%s", tn_errmsg());

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
