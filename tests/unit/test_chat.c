/* Chat templates (data/chat.h) and the chat template carried by the tokenizer:
 *   - recognition of every family from real template texts, and its errors;
 *   - rendering against transformers' apply_chat_template: the committed fixture
 *     tests/fixtures/chat/chat_templates.json (tests/reference/make_chat_fixture.py), every conversation's
 *     ids equal (needs ../shared/data for the vocabularies);
 *   - SFT masks, continuation of a conversation in place, control-token spellings in messages, bad input;
 *   - the template's way through the tokenizer: tokenizer_config.json (string and named list),
 *     chat_template.jinja, GGUF, serialize (blob version 2) with an unchanged fingerprint, version 1 read. */
#include "tn_test.h"

#include "core/error.h"
#include "core/fileio.h"
#include "data/chat.h"
#include "data/tok_internal.h"
#include "data/unicode.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_chatXXXXXX";

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k = 0;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static void write_text(const char *path, const char *s) {
    CHECK_OK(tn_write_file_atomic(path, s, strlen(s)));
}

/* ---- a small byte-level vocabulary written as a Hugging Face tokenizer.json --------------------------
 * 256 byte tokens (no merges), then <|im_start|> 256, <|im_end|> 257, <|endoftext|> 258 (special) and
 * <think> 259 (added, not special), so that nothing needs ../shared/data. */
static void write_tokenizer_json(const char *path) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        char u[4];
        int k = tn_utf8_encode(tn_tok_byte_to_cp((uint8_t)b), u);
        n += (size_t)snprintf(s + n, cap - n, "%s\"", b ? ", " : "");
        if (u[0] == '"' || u[0] == '\\') s[n++] = '\\';
        memcpy(s + n, u, (size_t)k);
        n += (size_t)k;
        n += (size_t)snprintf(s + n, cap - n, "\": %d", b);
    }
    n += (size_t)snprintf(s + n, cap - n,
                          "}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
                          " \"added_tokens\": [{\"id\": 256, \"content\": \"<|im_start|>\", \"special\": true},"
                          " {\"id\": 257, \"content\": \"<|im_end|>\", \"special\": true},"
                          " {\"id\": 258, \"content\": \"<|endoftext|>\", \"special\": true},"
                          " {\"id\": 259, \"content\": \"<think>\", \"special\": false}]}");
    CHECK_OK(tn_write_file_atomic(path, s, n));
    free(s);
}

static const char *SMOL =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

/* ids of "<|im_start|>" etc. in the small vocabulary; bytes are their own ids */
enum { IMS = 256, IME = 257, EOT = 258 };

static int ids_equal_bytes(const tn_tokens *t, size_t from, const char *s) {
    size_t n = strlen(s);
    if (t->n < from + n) return 0;
    for (size_t i = 0; i < n; i++)
        if (t->ids[from + i] != (uint8_t)s[i]) return 0;
    return 1;
}

static void test_small_vocab(void) {
    write_tokenizer_json(tmp("tokenizer.json"));
    /* a tokenizer_config.json whose chat_template is a list: the "default" entry is the one */
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "eos_token", "<|im_end|>");
    cJSON *list = cJSON_AddArrayToObject(cfg, "chat_template");
    cJSON *e1 = cJSON_CreateObject(), *e2 = cJSON_CreateObject();
    cJSON_AddStringToObject(e1, "name", "tool_use");
    cJSON_AddStringToObject(e1, "template", "{{ '[TOOLS]' }}");
    cJSON_AddStringToObject(e2, "name", "default");
    cJSON_AddStringToObject(e2, "template", SMOL);
    cJSON_AddItemToArray(list, e1);
    cJSON_AddItemToArray(list, e2);
    char *js = cJSON_PrintUnformatted(cfg);
    write_text(tmp("tokenizer_config.json"), js);
    free(js);
    cJSON_Delete(cfg);

    tn_tokenizer *tok;
    if (tn_tokenizer_load(dir, &tok) != 0) {
        CHECKF(0, "%s", tn_errmsg());
        return;
    }
    CHECK(tn_tokenizer_chat_template(tok) && strcmp(tn_tokenizer_chat_template(tok), SMOL) == 0);
    CHECK(tn_tokenizer_eos_id(tok) == IME);

    /* serialize: version 2 with the template, same fingerprint as without it; read back */
    uint8_t *blob;
    size_t len;
    CHECK_OK(tn_tokenizer_serialize(tok, &blob, &len));
    CHECK(len > 8 && blob[4] == 2);
    tn_tokenizer *back = NULL;
    CHECK_OK(tn_tokenizer_deserialize(blob, len, &back));
    CHECK(back && tn_tokenizer_chat_template(back) && strcmp(tn_tokenizer_chat_template(back), SMOL) == 0);
    CHECK(back && strcmp(tn_tokenizer_sha256(back), tn_tokenizer_sha256(tok)) == 0);
    /* a corrupted version-2 blob is refused (template length past the end), CRC fixed up */
    size_t tl_at = len - 4 - strlen(SMOL) - 4;
    uint8_t *bad = malloc(len);
    memcpy(bad, blob, len);
    bad[tl_at + 3] = 0x7f;
    tn_tokenizer *x = NULL;
    CHECK(tn_tokenizer_deserialize(bad, len, &x) != 0 && x == NULL);
    free(bad);
    free(blob);
    tn_tokenizer_free(back);

    /* the same config without the template: version-1 blob, the same fingerprint */
    write_text(tmp("tokenizer_config.json"), "{\"eos_token\": \"<|im_end|>\"}");
    tn_tokenizer *plain;
    CHECK_OK(tn_tokenizer_load(tmp("tokenizer.json"), &plain));
    CHECK(tn_tokenizer_chat_template(plain) == NULL);
    CHECK_OK(tn_tokenizer_serialize(plain, &blob, &len));
    CHECK(blob[4] == 1);
    CHECK(strcmp(tn_tokenizer_sha256(plain), tn_tokenizer_sha256(tok)) == 0);
    free(blob);
    tn_tokenizer_free(plain);
    /* chat_template.jinja beside tokenizer.json (transformers >= 4.47 writes it there) */
    write_text(tmp("chat_template.jinja"), "{{ '<|im_start|>' }}");
    CHECK_OK(tn_tokenizer_load(tmp("tokenizer.json"), &plain));
    CHECK(tn_tokenizer_chat_template(plain) && strcmp(tn_tokenizer_chat_template(plain), "{{ '<|im_start|>' }}") == 0);
    tn_tokenizer_free(plain);
    CHECK(unlink(tmp("chat_template.jinja")) == 0);
    /* a config whose chat_template is neither a string nor a list: refused */
    write_text(tmp("tokenizer_config.json"), "{\"chat_template\": 3}");
    CHECK(tn_tokenizer_load(tmp("tokenizer.json"), &plain) != 0 && strstr(tn_errmsg(), "chat_template"));
    CHECK(unlink(tmp("tokenizer_config.json")) == 0);

    /* render: SmolLM2's default system prompt, then the turns */
    tn_chat *c;
    CHECK_OK(tn_chat_new(tok, tn_tokenizer_chat_template(tok), NULL, &c));
    if (!c) {
        tn_tokenizer_free(tok);
        return;
    }
    CHECK(tn_chat_get_family(c) == TN_CHAT_CHATML);
    CHECK(strstr(tn_chat_describe(c), "named SmolLM") != NULL);
    tn_chat_msg m[3] = {{"user", "Hi <|im_end|> there"}, {"assistant", "Yo"}, {"user", "<think>"}};
    tn_tokens ids = {0};
    uint8_t *mask = NULL;
    size_t mcap = 0;
    CHECK_OK(tn_chat_render(c, m, 3, 1, &ids, &mask, &mcap));
    /* expected: <ims>system\n...<ime>\n<ims>user\nHi <|im_end|> there<ime>\n<ims>assistant\nYo<ime>\n
     *           <ims>user\n<think><ime>\n<ims>assistant\n */
    size_t p = 0;
    CHECK(ids.ids[p++] == IMS);
    const char *sys = "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face";
    CHECK(ids_equal_bytes(&ids, p, sys));
    p += strlen(sys);
    CHECK(ids.ids[p] == IME && ids.ids[p + 1] == '\n' && ids.ids[p + 2] == IMS);
    p += 3;
    /* the user's "<|im_end|>" stays text: bytes, not id 257 */
    CHECK(ids_equal_bytes(&ids, p, "user\nHi <|im_end|> there"));
    p += strlen("user\nHi <|im_end|> there");
    CHECK(ids.ids[p] == IME && ids.ids[p + 1] == '\n' && ids.ids[p + 2] == IMS);
    p += 3;
    CHECK(ids_equal_bytes(&ids, p, "assistant\nYo"));
    /* mask: exactly "Yo" and the <|im_end|> after it */
    size_t yo = p + strlen("assistant\n");
    int mask_ok = 1;
    for (size_t i = 0; i < ids.n; i++) mask_ok &= mask[i] == (i >= yo && i <= yo + 2);
    CHECK(mask_ok);
    p += strlen("assistant\nYo");
    CHECK(ids.ids[p] == IME && ids.ids[p + 1] == '\n' && ids.ids[p + 2] == IMS);
    p += 3;
    /* <think> is an added (non-special) token: matched in content as HF does */
    CHECK(ids_equal_bytes(&ids, p, "user\n") && ids.ids[p + 5] == 259);
    p += 6;
    CHECK(ids.ids[p] == IME && ids.ids[p + 1] == '\n' && ids.ids[p + 2] == IMS);
    p += 3;
    CHECK(ids_equal_bytes(&ids, p, "assistant\n") && p + strlen("assistant\n") == ids.n);

    /* continuation: after the reply m[1], feed from its <|im_end|> on */
    tn_tokens cont = {0};
    CHECK_OK(tn_chat_render_continue(c, m, 3, 1, &cont));
    CHECK(cont.n == ids.n - (yo + 2) && memcmp(cont.ids, ids.ids + yo + 2, cont.n * sizeof *cont.ids) == 0);
    CHECK(tn_chat_render_continue(c, m, 3, 0, &cont) != 0); /* m[0] is not an assistant reply */

    int32_t stop[4];
    int ns = tn_chat_stop_ids(c, stop, 4);
    CHECK(ns == 1 && stop[0] == IME); /* <|im_end|> is also EOS here */

    /* bad messages */
    tn_chat_msg tool[1] = {{"tool", "x"}};
    CHECK(tn_chat_render(c, tool, 1, 1, &ids, NULL, NULL) != 0 && strstr(tn_errmsg(), "role 'tool'"));
    tn_chat_free(c);

    /* forcing: chatml on this vocabulary works (no default system without the text); llama3 cannot */
    tn_chat_opts o = {"chatml", NULL};
    CHECK_OK(tn_chat_new(tok, NULL, &o, &c));
    ids.n = 0;
    CHECK_OK(tn_chat_render(c, m, 1, 0, &ids, NULL, NULL));
    CHECK(ids.ids[0] == IMS && ids_equal_bytes(&ids, 1, "user\n"));
    tn_chat_free(c);
    o.force = "llama3";
    CHECK(tn_chat_new(tok, SMOL, &o, &c) != 0 && strstr(tn_errmsg(), "<|start_header_id|>"));
    o.force = "vicuna";
    CHECK(tn_chat_new(tok, SMOL, &o, &c) != 0 && strstr(tn_errmsg(), "chatml, llama3, llama2, zephyr, mistral"));
    CHECK(tn_chat_new(tok, NULL, NULL, &c) != 0 && strstr(tn_errmsg(), "--chat-template"));
    CHECK(tn_chat_new(tok, "{{ messages }}", NULL, &c) != 0 && strstr(tn_errmsg(), "not recognised"));

    tn_tokens_free(&ids);
    tn_tokens_free(&cont);
    free(mask);
    tn_tokenizer_free(tok);
    CHECK(unlink(tmp("tokenizer.json")) == 0);
}

static void test_recognise(void) {
    static const struct {
        const char *text;
        tn_chat_family f;
    } cases[] = {
        {"{{ '<|im_start|>' + m.role + '\\n' }}{{ '<|im_end|>' }}", TN_CHAT_CHATML},
        {"{{ '<|start_header_id|>' }}x{{ '<|end_header_id|>\\n\\n' }}{{ '<|eot_id|>' }}", TN_CHAT_LLAMA3},
        {"{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}", TN_CHAT_LLAMA2},
        {"{{ bos_token }}{{ '[INST] ' + c + ' [/INST]' }}", TN_CHAT_MISTRAL},
        {"{{ '<|user|>\n' + c + eos_token }}{{ '<|assistant|>' }}", TN_CHAT_ZEPHYR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tn_chat_family f = TN_CHAT_FAMILIES;
        CHECK_OK(tn_chat_recognise(cases[i].text, &f));
        CHECKF(f == cases[i].f, "case %zu: %s", i, tn_chat_family_name(f));
    }
    tn_chat_family f;
    /* Phi-3: <|user|> but <|end|>-terminated turns; Gemma: its own markers */
    CHECK(tn_chat_recognise("{{ '<|user|>' + '\\n' + c + '<|end|>' + '\\n' + '<|assistant|>' }}", &f) != 0);
    CHECK(tn_chat_recognise("{{ '<start_of_turn>' + role + '\\n' + c + '<end_of_turn>\\n' }}", &f) != 0);
    CHECK(strstr(tn_errmsg(), "chatml, llama3, llama2, zephyr, mistral") != NULL);
    CHECK_OK(tn_chat_family_parse("tinyllama", &f));
    CHECK(f == TN_CHAT_ZEPHYR);
}

/* ---- the fixture: every family against transformers ------------------------------------------------- */

typedef struct {
    char *path;
    tn_tokenizer *tok;
} vocab_cache;

static void test_fixture(void) {
    const char *src = getenv("TN_SOURCE_DIR");
    if (!src) {
        printf("TN_SOURCE_DIR not set: fixture test skipped\n");
        return;
    }
    char fpath[1024];
    snprintf(fpath, sizeof fpath, "%s/tests/fixtures/chat/chat_templates.json", src);
    char *data;
    size_t size;
    CHECK_OK(tn_read_file(fpath, &data, &size));
    cJSON *doc = cJSON_ParseWithLength(data, size);
    free(data);
    CHECK(doc != NULL);
    vocab_cache cache[8];
    int n_cache = 0, n_conv = 0, n_ids = 0;
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItem(doc, "cases")) {
        const char *name = cJSON_GetObjectItem(cs, "name")->valuestring;
        const char *family = cJSON_GetObjectItem(cs, "family")->valuestring;
        const char *vocab = cJSON_GetObjectItem(cs, "vocab")->valuestring;
        const char *tpl = cJSON_GetObjectItem(cs, "template")->valuestring;
        const cJSON *date = cJSON_GetObjectItem(cs, "date");
        tn_chat_family want, got = TN_CHAT_FAMILIES;
        CHECK_OK(tn_chat_family_parse(family, &want));
        CHECK_OK(tn_chat_recognise(tpl, &got));
        CHECKF(got == want, "%s: recognised as %s, not %s", name, tn_chat_family_name(got), family);
        const char *vp = tn_test_shared(vocab);
        if (!vp) continue;
        tn_tokenizer *tok = NULL;
        for (int i = 0; i < n_cache; i++)
            if (strcmp(cache[i].path, vp) == 0) tok = cache[i].tok;
        if (!tok) {
            if (tn_tokenizer_load(vp, &tok) != 0) {
                CHECKF(0, "%s: %s", vocab, tn_errmsg());
                continue;
            }
            if (n_cache == 8) {
                tn_tokenizer_free(cache[--n_cache].tok);
                free(cache[n_cache].path);
            }
            cache[n_cache].path = strdup(vp);
            cache[n_cache++].tok = tok;
        }
        tn_chat_opts o = {NULL, cJSON_IsString(date) ? date->valuestring : NULL};
        tn_chat *c;
        if (tn_chat_new(tok, tpl, &o, &c) != 0) {
            CHECKF(0, "%s: %s", name, tn_errmsg());
            continue;
        }
        printf("%-10s %s\n", name, tn_chat_describe(c));
        int k = 0;
        const cJSON *conv;
        cJSON_ArrayForEach(conv, cJSON_GetObjectItem(cs, "conversations")) {
            const cJSON *msgs = cJSON_GetObjectItem(conv, "messages"), *want_ids = cJSON_GetObjectItem(conv, "ids");
            int n = cJSON_GetArraySize(msgs), gen = cJSON_IsTrue(cJSON_GetObjectItem(conv, "add_generation_prompt"));
            tn_chat_msg m[16];
            for (int i = 0; i < n && i < 16; i++) {
                const cJSON *mi = cJSON_GetArrayItem(msgs, i);
                m[i].role = cJSON_GetObjectItem(mi, "role")->valuestring;
                m[i].content = cJSON_GetObjectItem(mi, "content")->valuestring;
            }
            tn_tokens ids = {0};
            uint8_t *mask = NULL;
            size_t mcap = 0;
            if (tn_chat_render(c, m, n, gen, &ids, &mask, &mcap) != 0) {
                CHECKF(0, "%s conversation %d: %s", name, k, tn_errmsg());
            } else {
                int nw = cJSON_GetArraySize(want_ids), first_diff = -1;
                for (int i = 0; i < nw && first_diff < 0; i++)
                    if ((size_t)i >= ids.n || ids.ids[i] != cJSON_GetArrayItem(want_ids, i)->valueint) first_diff = i;
                if (first_diff < 0 && ids.n != (size_t)nw) first_diff = nw;
                CHECKF(first_diff < 0, "%s conversation %d: %zu ids, transformers %d; first difference at %d (ours %d, theirs %d)",
                       name, k, ids.n, nw, first_diff, first_diff < (int)ids.n ? ids.ids[first_diff] : -1,
                       first_diff < nw ? cJSON_GetArrayItem(want_ids, first_diff)->valueint : -1);
                /* the mask's tokens decode to the assistant contents (and their closing tokens, which
                 * decode to nothing): every assistant message's visible answer is in the masked text */
                tn_tokens sel = {0};
                for (size_t i = 0; i < ids.n; i++)
                    if (mask[i]) tn_tokens_push(&sel, ids.ids[i]);
                char *text = NULL;
                size_t tl;
                if (sel.n && tn_tokenizer_decode(tok, sel.ids, sel.n, &text, &tl) == 0) {
                    for (int i = 0; i < n; i++) {
                        if (strcmp(m[i].role, "assistant") != 0) continue;
                        const char *ans = strstr(m[i].content, "</think>");
                        ans = ans ? ans + 8 : m[i].content;
                        while (*ans == ' ' || *ans == '\n') ans++;
                        char part[64];
                        snprintf(part, sizeof part, "%.12s", ans);
                        CHECKF(strstr(text, part) != NULL, "%s conversation %d: \"%s\" not in the masked text", name, k, part);
                    }
                }
                free(text);
                tn_tokens_free(&sel);
                n_ids += (int)ids.n;
            }
            tn_tokens_free(&ids);
            free(mask);
            k++;
            n_conv++;
        }
        tn_chat_free(c);
    }
    printf("fixture: %d conversations, %d ids compared\n", n_conv, n_ids);
    for (int i = 0; i < n_cache; i++) {
        tn_tokenizer_free(cache[i].tok);
        free(cache[i].path);
    }
    cJSON_Delete(doc);
}

/* ---- real vocabularies: GGUF template, layouts' errors, llama2's mask, continuation ------------------ */

static void test_real(void) {
    const char *smol = tn_test_shared("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (smol) {
        tn_tokenizer *t;
        CHECK_OK(tn_tokenizer_load(smol, &t));
        if (t) {
            CHECK(tn_tokenizer_chat_template(t) && strstr(tn_tokenizer_chat_template(t), "SmolLM") != NULL);
            tn_chat *c;
            CHECK_OK(tn_chat_new(t, tn_tokenizer_chat_template(t), NULL, &c));
            if (c) {
                CHECK(tn_chat_get_family(c) == TN_CHAT_CHATML);
                tn_chat_free(c);
            }
            tn_tokenizer_free(t);
        }
    }
    const char *spm = tn_test_shared("llama-cpp-vocab/ggml-vocab-llama-spm.gguf");
    if (!spm) return;
    tn_tokenizer *t;
    CHECK_OK(tn_tokenizer_load(spm, &t));
    if (!t) return;
    CHECK(tn_tokenizer_chat_template(t) == NULL);
    tn_chat_opts o = {"llama2", NULL};
    tn_chat *c;
    CHECK_OK(tn_chat_new(t, NULL, &o, &c));
    tn_tokens ids = {0};
    tn_chat_msg bad[2] = {{"user", "a"}, {"user", "b"}};
    CHECK(tn_chat_render(c, bad, 2, 1, &ids, NULL, NULL) != 0 && strstr(tn_errmsg(), "alternate"));
    /* llama2's mask: " Paris" (the template's space rides in "▁Paris") and </s>, nothing of the prompt */
    tn_chat_msg m[4] = {{"user", "Capital of France?"}, {"assistant", "Paris"}, {"user", "Thanks"}, {"assistant", "  "}};
    uint8_t *mask = NULL;
    size_t mcap = 0;
    CHECK_OK(tn_chat_render(c, m, 2, 0, &ids, &mask, &mcap));
    tn_tokens sel = {0};
    for (size_t i = 0; i < ids.n; i++)
        if (mask[i]) tn_tokens_push(&sel, ids.ids[i]);
    char *text = NULL;
    size_t tl;
    CHECK(sel.n >= 2 && sel.ids[sel.n - 1] == 2 && tn_tokenizer_decode(t, sel.ids, sel.n, &text, &tl) == 0);
    CHECKF(text && strcmp(text, "Paris") == 0, "masked text '%s'", text ? text : "");
    free(text);
    /* an empty (whitespace) reply still renders; continuing after m[1]: </s><s>[INST] Thanks [/INST] */
    ids.n = 0;
    CHECK_OK(tn_chat_render(c, m, 4, 0, &ids, NULL, NULL));
    tn_tokens cont = {0};
    CHECK_OK(tn_chat_render_continue(c, m, 3, 1, &cont));
    CHECK(cont.n > 3 && cont.ids[0] == 2 && cont.ids[1] == 1);
    tn_chat_free(c);
    /* mistral v0.1 refuses a system message */
    o.force = "mistral";
    CHECK_OK(tn_chat_new(t, NULL, &o, &c));
    tn_chat_msg sys[2] = {{"system", "s"}, {"user", "u"}};
    CHECK(tn_chat_render(c, sys, 2, 1, &ids, NULL, NULL) != 0 && strstr(tn_errmsg(), "system"));
    tn_chat_free(c);
    tn_tokens_free(&ids);
    tn_tokens_free(&cont);
    tn_tokens_free(&sel);
    free(mask);
    tn_tokenizer_free(t);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_recognise();
    test_small_vocab();
    test_fixture();
    test_real();
    rmdir(dir);
    return tn_test_finish();
}
