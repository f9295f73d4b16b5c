/* libFuzzer target for the GGUF reader (core/gguf.c) and the tokenizer built from GGUF metadata
 * (data/tok_gguf.c): any byte string must be refused with an error or accepted as a file whose every
 * tensor range, string and array lies inside the buffer; never a crash, hang or out-of-bounds read. What
 * is accepted also goes through the GGUF writer (a copy that must read back the same) and the tokenizer's
 * way back to GGUF keys (data/tok_gguf_write.c). */
#include "core/gguf.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size);
    if (!buf) return 0;
    tn_gguf g;
    tn_err_clear();
    if (tn_gguf_open_buffer(buf, size, &g) != 0) {
        if (g.kv || g.tensors || tn_errmsg()[0] == '\0') __builtin_trap();
        free(buf);
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const tn_gguf_kv *kv = &g.kv[i];
        if (tn_gguf_find(&g, kv->key) != kv) __builtin_trap();
        if (kv->type == TN_GGUF_STRING && kv->str_len) sink ^= (uint8_t)kv->str[kv->str_len - 1];
        uint64_t n = tn_gguf_arr_len(kv);
        for (uint64_t j = 0; j < n && j < 64; j++) {
            const char *s;
            size_t len;
            if (tn_gguf_arr_str(kv, j, &s, &len) == 0 && len) sink ^= (uint8_t)s[len - 1];
            sink ^= (uint8_t)(tn_gguf_arr_f32(kv, j) > 0);
            sink ^= (uint8_t)tn_gguf_arr_i32(kv, j);
            (void)tn_gguf_arr_item(kv, j);
        }
        if (n) (void)tn_gguf_arr_f32(kv, n - 1), (void)tn_gguf_arr_i32(kv, n - 1);
        uint32_t u;
        int64_t i64;
        float f;
        int b;
        (void)tn_gguf_get_u32(&g, kv->key, &u);
        (void)tn_gguf_get_i64(&g, kv->key, &i64);
        (void)tn_gguf_get_f32(&g, kv->key, &f);
        (void)tn_gguf_get_bool(&g, kv->key, &b);
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const tn_gguf_tensor *t = &g.tensors[i];
        if (tn_gguf_find_tensor(&g, t->name) != t) __builtin_trap();
        const uint8_t *d;
        size_t n;
        if (tn_gguf_tensor_data(t, &d, &n) == 0 && n) sink ^= d[0] ^ d[n - 1];
    }
    (void)sink;
    /* The metadata re-serialized as a vocab-only file must open again with the same pairs. */
    static const char *const prefixes[] = {"tokenizer.", "general."};
    uint8_t *meta;
    size_t mlen;
    if (tn_gguf_write_meta(&g, prefixes, 2, &meta, &mlen) == 0) {
        tn_gguf h;
        if (tn_gguf_open_buffer(meta, mlen, &h) != 0) {
            fprintf(stderr, "write_meta output refused: %s\n", tn_errmsg());
            __builtin_trap();
        }
        tn_gguf_close(&h);
        free(meta);
    }
    /* The GGUF writer (core/gguf.h): every pair and every tensor of a known type copied must give a file
     * that opens again with the same counts and tensor bytes. */
    tn_gguf_writer *w = tn_gguf_writer_new();
    int copied = w != NULL;
    uint64_t n_kv = 0;
    for (uint64_t i = 0; copied && i < g.n_kv; i++) {
        if (strcmp(g.kv[i].key, "general.alignment") == 0) continue; /* the writer's own: 32 */
        copied = tn_gguf_writer_copy(w, &g.kv[i]) == 0;
        n_kv++;
    }
    uint64_t n_copied = 0;
    for (uint64_t i = 0; copied && i < g.n_tensors; i++) {
        const tn_gguf_tensor *t = &g.tensors[i];
        if (!t->data || t->n_elements == 0 || strlen(t->name) > 63 || t->n_dims == 0) continue;
        if (tn_gguf_writer_tensor(w, t->name, t->n_dims, t->ne, t->type, (void *)t->data, (size_t)t->n_bytes, 0) == 0) n_copied++;
    }
    uint8_t *img;
    size_t ilen;
    if (copied && tn_gguf_writer_to_memory(w, &img, &ilen) == 0) {
        tn_gguf h;
        if (tn_gguf_open_buffer(img, ilen, &h) != 0) {
            fprintf(stderr, "writer output refused: %s\n", tn_errmsg());
            __builtin_trap();
        }
        if (h.n_kv != n_kv || h.n_tensors != n_copied) __builtin_trap();
        for (uint64_t i = 0; i < h.n_tensors; i++) {
            const tn_gguf_tensor *a = &h.tensors[i], *b = tn_gguf_find_tensor(&g, a->name);
            if (!b || a->n_bytes != b->n_bytes || memcmp(a->data, b->data, (size_t)a->n_bytes) != 0) __builtin_trap();
        }
        tn_gguf_close(&h);
        free(img);
    }
    tn_gguf_writer_free(w);
    tn_tokenizer *tok = NULL;
    if (tn_tokenizer_from_gguf(&g, &tok) == 0) {
        fuzz_use_tok(tok);
        /* and back to GGUF keys (data/tok_gguf_write.c), which must read again */
        tn_gguf_writer *tw = tn_gguf_writer_new();
        if (tw && tn_tokenizer_to_gguf(tok, tn_tokenizer_vocab_size(tok) + 3, tw) == 0 && tn_gguf_writer_to_memory(tw, &img, &ilen) == 0) {
            tn_gguf h;
            if (tn_gguf_open_buffer(img, ilen, &h) != 0) __builtin_trap();
            tn_tokenizer *back = NULL;
            if (tn_tokenizer_from_gguf(&h, &back) == 0) fuzz_use_tok(back);
            tn_tokenizer_free(back);
            tn_gguf_close(&h);
            free(img);
        }
        tn_gguf_writer_free(tw);
        tn_tokenizer_free(tok);
    } else {
        fuzz_failed(tok);
    }
    tn_gguf_close(&g);
    free(buf);
    return 0;
}
