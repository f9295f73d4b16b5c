#include "train/sample.h"

#include "core/alloc.h"
#include "core/error.h"
#include "data/unicode.h"

#include <stdlib.h>
#include <string.h>

/* A model can emit byte tokens that do not form UTF-8; the log must stay valid JSON, so every invalid
 * sequence becomes U+FFFD. Returns a new malloc'd string. */
static char *utf8_sanitize(const char *s, size_t n) {
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = tn_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == 0xFFFFFFFFu) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(o, s + i, (size_t)len);
            o += len;
        }
        i += (size_t)len;
    }
    *o = '\0';
    return out;
}

int tn_sample_greedy(tn_llama *m, const float *params, const tn_tokenizer *tok, const char *prompt, int n_new,
                     char **text) {
    const int T = tn_llama_seq_len(m), B = tn_llama_batch(m);
    const int64_t Vm = tn_llama_cfg(m)->vocab_size, Vt = tn_tokenizer_vocab_size(tok);
    const int64_t V = Vt < Vm ? Vt : Vm, eos = tn_tokenizer_eos_id(tok);
    tn_tokens ids = {0};
    TN_CHECK(tn_tokenizer_encode(tok, prompt, strlen(prompt), tn_tokenizer_uses_bos(tok), &ids));
    const size_t n_prompt = ids.n;
    int32_t *in = tn_alloc((size_t)B * T, sizeof *in);
    float *lg = tn_alloc((size_t)Vm, sizeof *lg);
    int rc = in && lg ? 0 : -1;
    for (int k = 0; k < n_new && rc == 0 && ids.n > 0; k++) {
        size_t start = ids.n > (size_t)T ? ids.n - (size_t)T : 0, len = ids.n - start;
        memset(in, 0, (size_t)B * T * sizeof *in);
        memcpy(in, ids.ids + start, len * sizeof *in); /* row 0 holds the context; the rest is ignored */
        rc = tn_llama_forward(m, params, in, NULL, NULL, NULL, NULL);
        if (rc == 0) rc = tn_llama_logits_row(m, (int64_t)(len - 1), lg); /* host copy of the one row used */
        if (rc) break;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        if (best == eos) break;
        rc = tn_tokens_push(&ids, (int32_t)best);
    }
    size_t out_len;
    char *raw = NULL;
    if (rc == 0) rc = tn_tokenizer_decode(tok, ids.ids + n_prompt, ids.n - n_prompt, &raw, &out_len);
    if (rc == 0 && !(*text = utf8_sanitize(raw, out_len))) rc = tn_err("out of memory");
    free(raw);
    tn_free(in);
    tn_free(lg);
    tn_tokens_free(&ids);
    return rc;
}
