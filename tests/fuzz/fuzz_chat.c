/* libFuzzer target for the chat templates, data/chat.c. The input is a template text, then (after a NUL
 * byte) up to 16 messages as "role\0content\0role\0content...". Over a small byte-level vocabulary holding
 * every marker the families write (<|im_start|>, <|im_end|>, the Llama-3 header tokens, <s>, </s>, a
 * control [INST], a user-defined <think>), the text is recognised, then bound as it is and forced to each
 * family in turn: every handle renders with and without the generation prompt (with the mask, which must
 * cover every id), continues after each assistant message, and names its stop ids. A refusal hands out
 * nothing and leaves a message. */
#include "data/chat.h"
#include "data/tok_internal.h"
#include "data/unicode.h"
#include "fuzz_common.h"

static tn_tokenizer *vocab(void) {
    static tn_tokenizer *t;
    if (t) return t;
    t = tn_tok_new(TN_TOK_BPE);
    if (!t) abort();
    t->pretok = TN_PRETOK_GPT2;
    for (int b = 0; b < 256; b++) {
        char u[4];
        int k = tn_utf8_encode(tn_tok_byte_to_cp((uint8_t)b), u);
        if (tn_tok_add(t, u, (size_t)k, 0, TN_TOKTYPE_NORMAL) != 0) abort();
    }
    static const char *const control[] = {"<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>",
                                          "<|eot_id|>", "<s>", "</s>", "[INST]", "<|end_of_text|>"};
    for (size_t i = 0; i < sizeof control / sizeof control[0]; i++)
        if (tn_tok_add(t, control[i], strlen(control[i]), 0, TN_TOKTYPE_CONTROL) != 0) abort();
    if (tn_tok_add(t, "<think>", 7, 0, TN_TOKTYPE_USER) != 0) abort();
    t->bos = 256 + 5;
    t->eos = 256 + 6;
    if (tn_tok_finish(t) != 0) abort();
    return t;
}

static void use(const tn_chat *c, const tn_chat_msg *m, int n) {
    for (int gen = 0; gen < 2; gen++) {
        tn_tokens ids = {0};
        uint8_t *mask = NULL;
        size_t cap = 0;
        tn_err_clear();
        if (tn_chat_render(c, m, n, gen, &ids, &mask, &cap) == 0) {
            if (ids.n && (!mask || cap < ids.n)) __builtin_trap();
            for (size_t i = 0; i < ids.n; i++)
                if (ids.ids[i] < 0 || ids.ids[i] >= tn_tokenizer_vocab_size(vocab()) || mask[i] > 1) __builtin_trap();
        } else if (tn_errmsg()[0] == '\0') {
            __builtin_trap();
        }
        tn_tokens_free(&ids);
        free(mask);
    }
    for (int a = 0; a < n; a++) {
        if (strcmp(m[a].role, "assistant") != 0) continue;
        tn_tokens ids = {0};
        tn_err_clear();
        if (tn_chat_render_continue(c, m, n, a, &ids) != 0 && tn_errmsg()[0] == '\0') __builtin_trap();
        tn_tokens_free(&ids);
    }
    int32_t stop[4];
    int ns = tn_chat_stop_ids(c, stop, 4);
    if (ns < 1 || ns > 4) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* one NUL-terminated copy: the template, then the message strings */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    buf[size] = '\0';
    tn_chat_msg m[16];
    int n = 0;
    size_t tl = strlen(buf);
    for (size_t p = tl + 1; p < size && n < 16;) {
        const char *role = buf + p;
        p += strlen(role) + 1;
        if (p > size) break;
        const char *content = buf + p;
        p += strlen(content) + 1;
        m[n++] = (tn_chat_msg){role, content};
    }
    tn_chat_family f;
    tn_err_clear();
    if (tn_chat_recognise(buf, &f) != 0 && tn_errmsg()[0] == '\0') __builtin_trap();
    static const char *const force[] = {NULL, "chatml", "llama3", "llama2", "zephyr", "mistral"};
    for (size_t k = 0; k < sizeof force / sizeof force[0]; k++) {
        tn_chat_opts o = {force[k], k == 2 ? "1 Jan 2000" : NULL};
        tn_chat *c = NULL;
        tn_err_clear();
        if (tn_chat_new(vocab(), buf, &o, &c) == 0) {
            use(c, m, n);
            tn_chat_free(c);
        } else {
            fuzz_failed(c);
        }
    }
    free(buf);
    return 0;
}
