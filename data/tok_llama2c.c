/* Tokenizer from a llama2.c tokenizer.bin (karpathy/llama2.c export of a SentencePiece model), so that
 * models imported from llama2.c carry a real tokenizer. Layout, little-endian:
 *   i32 max_token_length, then per token: f32 score, i32 len, len bytes
 * The token count is not stored: the file ends after the last token. The export replaced "▁" with ' '
 * and wrapped BOS/EOS as "\n<s>\n" / "\n</s>\n"; both are undone here, so the definition (and its
 * fingerprint) equals that of the tokenizer.model it came from. */
#include "core/error.h"
#include "data/tok_internal.h"

#include <stdlib.h>
#include <string.h>

static int32_t rd_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

int tn_tok_load_llama2c(const uint8_t *data, size_t size, tn_tokenizer **out) {
    *out = NULL;
    if (size < 4) return tn_err("llama2.c tokenizer: too short");
    int32_t max_len = rd_i32(data);
    if (max_len < 1 || max_len > 4096) return tn_err("llama2.c tokenizer: max_token_length %d is implausible", max_len);
    /* First pass: the entries must tile the file exactly. */
    size_t p = 4, n = 0;
    while (p < size) {
        if (size - p < 8) return tn_err("llama2.c tokenizer: truncated at byte %zu", p);
        int32_t len = rd_i32(data + p + 4);
        if (len < 0 || len > max_len + 2 || (size_t)len > size - p - 8)
            return tn_err("llama2.c tokenizer: token %zu has length %d", n, len);
        p += 8 + (size_t)len;
        n++;
    }
    if (n < 3) return tn_err("llama2.c tokenizer: only %zu tokens", n);
    tn_tokenizer *t = tn_tok_new(TN_TOK_SPM);
    if (!t) return -1;
    char *buf = malloc(3 * (size_t)max_len + 16);
    if (!buf) {
        tn_tokenizer_free(t);
        return tn_err("out of memory");
    }
    int has_bytes = 0, rc = 0;
    p = 4;
    for (size_t i = 0; i < n && rc == 0; i++) {
        float score;
        memcpy(&score, data + p, 4); /* little-endian host assumed, as llama2.c itself does */
        size_t len = (size_t)rd_i32(data + p + 4);
        const char *s = (const char *)data + p + 8;
        p += 8 + len;
        int type = TN_TOKTYPE_NORMAL;
        size_t k = 0;
        if ((len == 5 && !memcmp(s, "\n<s>\n", 5)) || (len == 6 && !memcmp(s, "\n</s>\n", 6))) {
            memcpy(buf, s + 1, len - 2);
            k = len - 2;
            type = TN_TOKTYPE_CONTROL;
        } else if (len == 5 && !memcmp(s, "<unk>", 5)) {
            memcpy(buf, s, 5);
            k = 5;
            type = TN_TOKTYPE_UNKNOWN;
        } else {
            for (size_t j = 0; j < len; j++) {
                if (s[j] == ' ') memcpy(buf + k, "\xE2\x96\x81", 3), k += 3;
                else buf[k++] = s[j];
            }
            if (len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') type = TN_TOKTYPE_BYTE, has_bytes = 1;
        }
        rc = tn_tok_add(t, buf, k, score, type);
    }
    free(buf);
    if (rc == 0) rc = tn_tok_index(t);
    if (rc == 0) {
        t->unk = tn_tok_lookup(t, "<unk>", 5);
        t->bos = tn_tok_lookup(t, "<s>", 3);
        t->eos = tn_tok_lookup(t, "</s>", 4);
        t->flags = TN_TOKF_DUMMY_PREFIX | (has_bytes ? TN_TOKF_BYTE_FALLBACK : 0) | (t->bos >= 0 ? TN_TOKF_ADD_BOS : 0);
        rc = tn_tok_finish(t);
    }
    if (rc != 0) {
        tn_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}
