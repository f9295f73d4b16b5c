/* Tokenizer from a GGUF file's metadata. Keys (llama.cpp's gguf-py constants / llama-vocab.cpp):
 *   tokenizer.ggml.model        "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE); others rejected
 *   tokenizer.ggml.pre          byte-level pre-tokenizer name ("gpt-2", "llama-bpe", "qwen2", ...)
 *   tokenizer.ggml.tokens       [string]  the vocabulary
 *   tokenizer.ggml.scores       [f32]     optional (spm merge priorities)
 *   tokenizer.ggml.token_type   [i32]     optional, SentencePiece numbering (1 normal ... 6 byte)
 *   tokenizer.ggml.merges       [string]  "a b" pairs, rank = index (gpt2)
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id  u32, optional
 *   tokenizer.ggml.add_bos_token, tokenizer.ggml.add_space_prefix  bool, optional
 *   tokenizer.chat_template     string, optional: the Jinja chat template, kept with the tokenizer */
#include "core/error.h"
#include "core/gguf.h"
#include "data/tok_internal.h"

#include <string.h>

/* llama.cpp's names for pre-tokenizers (src/llama-vocab.cpp, llama_vocab::impl::load), mapped to the ones
 * trinity implements: a name is listed only when llama.cpp gives it exactly one of these patterns. `llama3`
 * marks llama.cpp's LLAMA3 group, which also sets ignore_merges and adds BOS unless the file says
 * otherwise (dbrx, smaug-bpe and glm4 share the regex but not those). Other names (deepseek-*, gpt-4o,
 * tekken, ...) are refused rather than tokenized differently. */
static const struct {
    const char *name;
    int pretok, llama3;
} pre_names[] = {
    {"gpt-2", TN_PRETOK_GPT2, 0},
    {"mpt", TN_PRETOK_GPT2, 0},
    {"olmo", TN_PRETOK_GPT2, 0},
    {"jais", TN_PRETOK_GPT2, 0},
    {"starcoder", TN_PRETOK_GPT2_DIGITS, 0},
    {"refact", TN_PRETOK_GPT2_DIGITS, 0},
    {"smollm", TN_PRETOK_GPT2_DIGITS, 0},
    {"command-r", TN_PRETOK_GPT2_DIGITS, 0},
    {"codeshell", TN_PRETOK_GPT2_DIGITS, 0},
    {"falcon", TN_PRETOK_FALCON, 0},
    /* LLAMA3 */
    {"llama-bpe", TN_PRETOK_LLAMA3, 1},
    {"llama3", TN_PRETOK_LLAMA3, 1},
    {"llama-v3", TN_PRETOK_LLAMA3, 1},
    {"falcon3", TN_PRETOK_LLAMA3, 1},
    {"falcon-h1", TN_PRETOK_LLAMA3, 1},
    {"pixtral", TN_PRETOK_LLAMA3, 1},
    {"midm-2.0", TN_PRETOK_LLAMA3, 1},
    {"lfm2", TN_PRETOK_LLAMA3, 1},
    {"jina-v5-nano", TN_PRETOK_LLAMA3, 1},
    /* DBRX, SMAUG, CHATGLM4: Llama-3's regex, merges always run */
    {"dbrx", TN_PRETOK_LLAMA3, 0},
    {"smaug-bpe", TN_PRETOK_LLAMA3, 0},
    {"glm4", TN_PRETOK_LLAMA3, 0},
    {"chatglm-bpe", TN_PRETOK_LLAMA3, 0},
    /* QWEN2, STABLELM2, HUNYUAN, SOLAR_OPEN, GROK_2: the same regex string */
    {"qwen2", TN_PRETOK_QWEN2, 0},
    {"deepseek-r1-qwen", TN_PRETOK_QWEN2, 0},
    {"kormo", TN_PRETOK_QWEN2, 0},
    {"f2llmv2", TN_PRETOK_QWEN2, 0},
    {"megrez", TN_PRETOK_QWEN2, 0},
    {"stablelm2", TN_PRETOK_QWEN2, 0},
    {"hunyuan", TN_PRETOK_QWEN2, 0},
    {"solar-open", TN_PRETOK_QWEN2, 0},
    {"grok-2", TN_PRETOK_QWEN2, 0},
    /* QWEN35 */
    {"qwen35", TN_PRETOK_QWEN35, 0},
};

static int opt_id(const tn_gguf *g, const char *key, int32_t *id) {
    if (!tn_gguf_find(g, key)) return 0;
    int64_t v;
    TN_CHECK(tn_gguf_get_i64(g, key, &v));
    *id = (v >= 0 && v < INT32_MAX) ? (int32_t)v : -1;
    return 0;
}

static int opt_bool(const tn_gguf *g, const char *key, int *v) {
    if (!tn_gguf_find(g, key)) return 0;
    return tn_gguf_get_bool(g, key, v);
}

static int fill(tn_tokenizer *t, const tn_gguf *g, int spm) {
    const tn_gguf_kv *tokens, *scores = NULL, *types = NULL, *merges = NULL;
    TN_CHECK(tn_gguf_get_arr(g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &tokens));
    uint64_t n = tn_gguf_arr_len(tokens);
    if (n == 0 || n > TN_TOK_MAX_VOCAB) return tn_err("tokenizer.ggml.tokens: %llu tokens", (unsigned long long)n);
    if (tn_gguf_find(g, "tokenizer.ggml.scores")) {
        TN_CHECK(tn_gguf_get_arr(g, "tokenizer.ggml.scores", -1, &scores));
        if (tn_gguf_arr_len(scores) != n) return tn_err("tokenizer.ggml.scores: length differs from tokens");
    }
    if (tn_gguf_find(g, "tokenizer.ggml.token_type")) {
        TN_CHECK(tn_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &types));
        if (tn_gguf_arr_len(types) != n) return tn_err("tokenizer.ggml.token_type: length differs from tokens");
    }
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        TN_CHECK(tn_gguf_arr_str(tokens, i, &s, &len));
        float sc = scores ? tn_gguf_arr_f32(scores, i) : 0.0f;
        int ty = types ? (int)tn_gguf_arr_i32(types, i) : TN_TOKTYPE_NORMAL;
        if (ty < TN_TOKTYPE_NORMAL || ty > TN_TOKTYPE_BYTE) return tn_err("token %llu: unknown type %d", (unsigned long long)i, ty);
        TN_CHECK(tn_tok_add(t, s, len, sc, ty));
    }
    if (!spm) {
        TN_CHECK(tn_gguf_get_arr(g, "tokenizer.ggml.merges", TN_GGUF_STRING, &merges));
        TN_CHECK(tn_tok_index(t));
        uint64_t m = tn_gguf_arr_len(merges);
        for (uint64_t r = 0; r < m; r++) {
            const char *s;
            size_t len;
            TN_CHECK(tn_gguf_arr_str(merges, r, &s, &len));
            /* Byte-level tokens never contain a raw space (it is mapped to "Ġ"), so the first space splits. */
            const char *sp = memchr(s, ' ', len);
            if (!sp) return tn_err("tokenizer.ggml.merges[%llu]: no space in \"%.*s\"", (unsigned long long)r, (int)(len > 40 ? 40 : len), s);
            int32_t a = tn_tok_lookup(t, s, (size_t)(sp - s)), b = tn_tok_lookup(t, sp + 1, len - (size_t)(sp - s) - 1);
            if (a < 0 || b < 0) continue; /* refers to a string outside the vocabulary: can never apply */
            TN_CHECK(tn_tok_add_merge(t, a, b));
        }
    }
    return 0;
}

int tn_tokenizer_from_gguf(const tn_gguf *g, tn_tokenizer **out) {
    *out = NULL;
    const char *model;
    size_t mlen;
    if (!tn_gguf_find(g, "tokenizer.ggml.model")) return tn_err("GGUF file has no tokenizer (tokenizer.ggml.model missing)");
    TN_CHECK(tn_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen));
    int spm;
    if (mlen == 5 && memcmp(model, "llama", 5) == 0) spm = 1;
    else if (mlen == 4 && memcmp(model, "gpt2", 4) == 0) spm = 0;
    else return tn_err("GGUF tokenizer model '%.*s' is not supported (only 'llama' and 'gpt2')", (int)mlen, model);
    int pretok = TN_PRETOK_NONE, llama3 = 0;
    if (!spm) {
        const char *pre = "gpt-2";
        size_t plen = 5;
        if (tn_gguf_find(g, "tokenizer.ggml.pre")) TN_CHECK(tn_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &plen));
        pretok = -1;
        for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
            if (strlen(pre_names[i].name) == plen && memcmp(pre_names[i].name, pre, plen) == 0)
                pretok = pre_names[i].pretok, llama3 = pre_names[i].llama3;
        if (pretok < 0) return tn_err("GGUF pre-tokenizer '%.*s' is not supported", (int)plen, pre);
    }
    tn_tokenizer *t = tn_tok_new(spm ? TN_TOK_SPM : TN_TOK_BPE);
    if (!t) return -1;
    t->pretok = pretok;
    if (spm) t->unk = 0, t->bos = 1, t->eos = 2; /* llama.cpp's defaults for SentencePiece vocabularies */
    int add_bos = spm || llama3, add_space = 1;
    if (fill(t, g, spm) != 0 || opt_id(g, "tokenizer.ggml.bos_token_id", &t->bos) != 0 ||
        opt_id(g, "tokenizer.ggml.eos_token_id", &t->eos) != 0 ||
        opt_id(g, "tokenizer.ggml.unknown_token_id", &t->unk) != 0 ||
        opt_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) != 0 ||
        opt_bool(g, "tokenizer.ggml.add_space_prefix", &add_space) != 0)
        goto fail;
    if (t->bos >= t->n_vocab) t->bos = -1;
    if (t->eos >= t->n_vocab) t->eos = -1;
    if (t->unk >= t->n_vocab) t->unk = -1;
    if (spm) {
        /* GGUF has no byte_fallback flag; llama.cpp falls back whenever the <0xNN> tokens exist. */
        int has_bytes = 0;
        for (int32_t i = 0; i < t->n_vocab && !has_bytes; i++) has_bytes = t->type[i] == TN_TOKTYPE_BYTE;
        t->flags = (add_space ? TN_TOKF_DUMMY_PREFIX : 0) | (has_bytes ? TN_TOKF_BYTE_FALLBACK : 0);
    }
    if (add_bos && t->bos >= 0) t->flags |= TN_TOKF_ADD_BOS;
    if (llama3) t->flags |= TN_TOKF_IGNORE_MERGES;
    if (tn_gguf_find(g, "tokenizer.chat_template")) {
        const char *ct;
        size_t cl;
        if (tn_gguf_get_str(g, "tokenizer.chat_template", &ct, &cl) != 0 || tn_tok_set_chat_template(t, ct, cl) != 0)
            goto fail;
    }
    if (tn_tok_finish(t) != 0) goto fail;
    *out = t;
    return 0;
fail:
    tn_tokenizer_free(t);
    return tn_err_prefix("GGUF tokenizer");
}
