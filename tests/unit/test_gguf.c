/* GGUF reader: a hand-built file with every value type (checked field by field), the shared llama.cpp
 * vocab files and tiny random Llama, and hostile inputs: every truncation of a valid file, random byte
 * corruption, and crafted bad headers must fail cleanly (run under ASan/UBSan too). */
#include "core/error.h"
#include "core/gguf.h"
#include "tn_test.h"
#include "byte_writer.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- a tiny GGUF writer into a growable buffer ---------------------------------------------------- */

static void pad_to(buf *b, size_t align) {
    while (b->n % align) u8(b, 0);
}

#define N_KV 16
#define N_TENSORS 3

/* A valid file: 16 KVs of every type (incl. nested arrays, alignment 64), 3 tensors (F32 [3,2], Q8_0
 * [64], F16 [4]) with data. */
static buf build_valid(void) {
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, N_TENSORS);
    u64(&b, N_KV);
    gstr(&b, "a.u8"), u32(&b, TN_GGUF_UINT8), u8(&b, 200);
    gstr(&b, "a.i8"), u32(&b, TN_GGUF_INT8), u8(&b, 0xFE); /* -2 */
    gstr(&b, "a.u16"), u32(&b, TN_GGUF_UINT16), u8(&b, 0x34), u8(&b, 0x12);
    gstr(&b, "a.i16"), u32(&b, TN_GGUF_INT16), u8(&b, 0xFF), u8(&b, 0xFF);
    gstr(&b, "a.u32"), u32(&b, TN_GGUF_UINT32), u32(&b, 4000000000u);
    gstr(&b, "a.i32"), u32(&b, TN_GGUF_INT32), u32(&b, (uint32_t)-7);
    gstr(&b, "a.f32"), u32(&b, TN_GGUF_FLOAT32), f32(&b, 1e-5f);
    gstr(&b, "a.bool"), u32(&b, TN_GGUF_BOOL), u8(&b, 1);
    gstr(&b, "a.str"), u32(&b, TN_GGUF_STRING), gstr(&b, "llama");
    gstr(&b, "a.u64"), u32(&b, TN_GGUF_UINT64), u64(&b, 1ull << 40);
    gstr(&b, "a.i64"), u32(&b, TN_GGUF_INT64), u64(&b, (uint64_t)-5);
    gstr(&b, "a.f64"), u32(&b, TN_GGUF_FLOAT64);
    double d = 10000.0;
    put(&b, &d, 8);
    gstr(&b, "a.strs"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_STRING), u64(&b, 3);
    gstr(&b, "<s>"), gstr(&b, ""), gstr(&b, "hello world");
    gstr(&b, "a.f32s"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_FLOAT32), u64(&b, 2);
    f32(&b, -1.5f), f32(&b, 2.25f);
    /* array of arrays: [[1, 2], [], [3]] as int32 */
    gstr(&b, "a.nested"), u32(&b, TN_GGUF_ARRAY), u32(&b, TN_GGUF_ARRAY), u64(&b, 3);
    u32(&b, TN_GGUF_INT32), u64(&b, 2), u32(&b, 1), u32(&b, 2);
    u32(&b, TN_GGUF_INT32), u64(&b, 0);
    u32(&b, TN_GGUF_INT32), u64(&b, 1), u32(&b, 3);
    gstr(&b, "general.alignment"), u32(&b, TN_GGUF_UINT32), u32(&b, 64);
    /* tensors */
    gstr(&b, "w"), u32(&b, 2), u64(&b, 3), u64(&b, 2), u32(&b, TN_GGML_F32), u64(&b, 0);
    gstr(&b, "q"), u32(&b, 1), u64(&b, 64), u32(&b, TN_GGML_Q8_0), u64(&b, 64);
    gstr(&b, "h"), u32(&b, 1), u64(&b, 4), u32(&b, TN_GGML_F16), u64(&b, 192);
    pad_to(&b, 64);
    for (int i = 0; i < 6; i++) f32(&b, (float)i);
    pad_to(&b, 64);
    for (int i = 0; i < 68; i++) u8(&b, (uint8_t)i);
    pad_to(&b, 64);
    for (int i = 0; i < 8; i++) u8(&b, 0x3C * (i & 1)); /* f16 1.0 = 0x3C00 */
    return b;
}

static void test_valid(void) {
    buf b = build_valid();
    tn_gguf g;
    CHECK_OK(tn_gguf_open_buffer(b.p, b.n, &g));
    CHECK(g.version == 3 && g.n_kv == N_KV && g.n_tensors == N_TENSORS && g.alignment == 64);
    uint32_t u;
    int64_t i;
    float f;
    int bo;
    const char *s;
    size_t len;
    CHECK_OK(tn_gguf_get_u32(&g, "a.u8", &u)); CHECK(u == 200);
    CHECK_OK(tn_gguf_get_i64(&g, "a.i8", &i)); CHECK(i == -2);
    CHECK_OK(tn_gguf_get_u32(&g, "a.u16", &u)); CHECK(u == 0x1234);
    CHECK_OK(tn_gguf_get_i64(&g, "a.i16", &i)); CHECK(i == -1);
    CHECK_OK(tn_gguf_get_u32(&g, "a.u32", &u)); CHECK(u == 4000000000u);
    CHECK_OK(tn_gguf_get_i64(&g, "a.i32", &i)); CHECK(i == -7);
    CHECK(tn_gguf_get_u32(&g, "a.i32", &u) != 0 && strstr(tn_errmsg(), "does not fit"));
    CHECK(tn_gguf_get_u32(&g, "a.u64", &u) != 0);
    CHECK_OK(tn_gguf_get_i64(&g, "a.u64", &i)); CHECK(i == 1ll << 40);
    CHECK_OK(tn_gguf_get_i64(&g, "a.i64", &i)); CHECK(i == -5);
    CHECK_OK(tn_gguf_get_f32(&g, "a.f32", &f)); CHECK(f == 1e-5f);
    CHECK_OK(tn_gguf_get_f32(&g, "a.f64", &f)); CHECK(f == 10000.0f);
    CHECK_OK(tn_gguf_get_bool(&g, "a.bool", &bo)); CHECK(bo == 1);
    CHECK_OK(tn_gguf_get_str(&g, "a.str", &s, &len)); CHECK(len == 5 && memcmp(s, "llama", 5) == 0);
    CHECK(tn_gguf_get_u32(&g, "a.str", &u) != 0);
    CHECKF(strcmp(tn_errmsg(), "gguf: key a.str: expected u32, found string") == 0, "%s", tn_errmsg());
    CHECK(tn_gguf_get_u32(&g, "nope", &u) != 0);
    CHECKF(strcmp(tn_errmsg(), "gguf: key nope: missing") == 0, "%s", tn_errmsg());
    CHECK(tn_gguf_find(&g, "nope") == NULL);

    const tn_gguf_kv *a;
    CHECK_OK(tn_gguf_get_arr(&g, "a.strs", TN_GGUF_STRING, &a));
    CHECK(tn_gguf_arr_len(a) == 3);
    CHECK_OK(tn_gguf_arr_str(a, 0, &s, &len)); CHECK(len == 3 && memcmp(s, "<s>", 3) == 0);
    CHECK_OK(tn_gguf_arr_str(a, 1, &s, &len)); CHECK(len == 0);
    CHECK_OK(tn_gguf_arr_str(a, 2, &s, &len)); CHECK(len == 11 && memcmp(s, "hello world", 11) == 0);
    CHECK(tn_gguf_arr_str(a, 3, &s, &len) != 0);
    CHECK(tn_gguf_get_arr(&g, "a.strs", TN_GGUF_INT32, &a) != 0);
    CHECK_OK(tn_gguf_get_arr(&g, "a.f32s", -1, &a));
    CHECK(tn_gguf_arr_f32(a, 0) == -1.5f && tn_gguf_arr_f32(a, 1) == 2.25f);
    CHECK(tn_gguf_arr_str(a, 0, &s, &len) != 0);
    CHECK_OK(tn_gguf_get_arr(&g, "a.nested", TN_GGUF_ARRAY, &a));
    CHECK(tn_gguf_arr_len(a) == 3);
    const tn_gguf_kv *e0 = tn_gguf_arr_item(a, 0), *e1 = tn_gguf_arr_item(a, 1), *e2 = tn_gguf_arr_item(a, 2);
    CHECK(e0 && e1 && e2 && tn_gguf_arr_item(a, 3) == NULL);
    if (e0 && e1 && e2) {
        CHECK(tn_gguf_arr_len(e0) == 2 && tn_gguf_arr_i32(e0, 0) == 1 && tn_gguf_arr_i32(e0, 1) == 2);
        CHECK(tn_gguf_arr_len(e1) == 0 && tn_gguf_arr_len(e2) == 1 && tn_gguf_arr_i32(e2, 0) == 3);
    }

    const tn_gguf_tensor *w = tn_gguf_find_tensor(&g, "w"), *q = tn_gguf_find_tensor(&g, "q"),
                         *h = tn_gguf_find_tensor(&g, "h");
    CHECK(w && q && h && tn_gguf_find_tensor(&g, "x") == NULL);
    if (w && q && h) {
        CHECK(w->n_dims == 2 && w->ne[0] == 3 && w->ne[1] == 2 && w->n_elements == 6 && w->n_bytes == 24);
        CHECK(q->n_bytes == 68 && h->n_bytes == 8 && g.data_offset % 64 == 0);
        const uint8_t *d;
        size_t n;
        CHECK_OK(tn_gguf_tensor_data(w, &d, &n));
        float v5;
        memcpy(&v5, d + 20, 4);
        CHECK(n == 24 && v5 == 5.0f);
        CHECK(d == b.p + g.data_offset);
        CHECK(q->data == b.p + g.data_offset + 64 && q->data[67] == 67);
    }
    tn_gguf_close(&g);
    tn_gguf_close(&g); /* idempotent */
    free(b.p);
}

/* Patch a u64 or u32 at byte `at` of a copy and expect failure with `want` in the message. */
static void expect_fail(const buf *b, size_t at, int width, uint64_t value, const char *want) {
    uint8_t *c = malloc(b->n);
    memcpy(c, b->p, b->n);
    for (int i = 0; i < width; i++) c[at + i] = (uint8_t)(value >> (8 * i));
    tn_gguf g;
    int rc = tn_gguf_open_buffer(c, b->n, &g);
    CHECKF(rc != 0 && strstr(tn_errmsg(), want), "patch at %zu: want '%s', got rc=%d '%s'", at, want, rc,
           rc ? tn_errmsg() : "");
    if (rc == 0) tn_gguf_close(&g);
    free(c);
}

static size_t find_bytes(const buf *b, const char *s, size_t n) {
    for (size_t i = 0; i + n <= b->n; i++)
        if (memcmp(b->p + i, s, n) == 0) return i;
    return (size_t)-1;
}

static void test_hostile(void) {
    buf b = build_valid();
    tn_gguf g;
    /* every truncation fails cleanly, except those that only drop trailing tensor data are caught too */
    int ok = 1;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *c = malloc(n ? n : 1); /* exact-size copy so ASan sees any over-read */
        memcpy(c, b.p, n);
        if (tn_gguf_open_buffer(c, n, &g) == 0) {
            ok = 0;
            fprintf(stderr, "truncation at %zu accepted\n", n);
            tn_gguf_close(&g);
        }
        free(c);
    }
    CHECK(ok);
    /* crafted headers */
    expect_fail(&b, 0, 1, 'X', "bad magic");
    expect_fail(&b, 4, 4, 1, "version 1");
    expect_fail(&b, 4, 4, 0x03000000, "big-endian");
    expect_fail(&b, 8, 8, UINT64_MAX, "tensor count");
    expect_fail(&b, 16, 8, 1ull << 40, "metadata count");
    expect_fail(&b, 24, 8, UINT64_MAX, "runs past the end"); /* first key length */
    size_t k = find_bytes(&b, "a.strs", sizeof "a.strs" - 1);
    expect_fail(&b, k + 6 + 4 + 4, 8, UINT64_MAX / 4, "runs past the end"); /* string array length */
    k = find_bytes(&b, "a.f32s", sizeof "a.f32s" - 1);
    expect_fail(&b, k + 6 + 4 + 4, 8, UINT64_MAX / 2, "runs past the end");
    expect_fail(&b, k + 6, 4, 77, "not a GGUF type");
    k = find_bytes(&b, "a.bool", sizeof "a.bool" - 1);
    expect_fail(&b, k + 6 + 4, 1, 2, "must be 0 or 1");
    k = find_bytes(&b, "general.alignment", sizeof "general.alignment" - 1);
    expect_fail(&b, k + 17 + 4, 4, 48, "power of two");
    expect_fail(&b, k + 17 + 4, 4, 0, "power of two");
    expect_fail(&b, k + 17, 4, TN_GGUF_FLOAT32, "expected u32, found f32");
    k = find_bytes(&b, "a.u16", sizeof "a.u16" - 1);
    expect_fail(&b, k + 3, 2, '3' | '2' << 8, "duplicate metadata key"); /* "a.u16" -> "a.u32" */
    /* tensor infos: "w" name at the first tensor: 8-byte len 1, 'w', n_dims, ne0, ne1, type, offset */
    size_t t = find_bytes(&b, "\x01\0\0\0\0\0\0\0w", sizeof "\x01\0\0\0\0\0\0\0w" - 1) + 9;
    expect_fail(&b, t, 4, 5, "dimensions");
    expect_fail(&b, t + 4, 8, UINT64_MAX, "negative");
    expect_fail(&b, t + 4, 8, 1ull << 62, "overflows");
    expect_fail(&b, t + 4, 8, 1000, "run past the end");
    expect_fail(&b, t + 20, 4, TN_GGML_Q4_0, "block size");
    expect_fail(&b, t + 24, 8, 7, "alignment");
    expect_fail(&b, t + 24, 8, 64, "overlap");
    expect_fail(&b, t + 24, 8, 1ull << 50, "past the end");
    expect_fail(&b, t - 1, 1, 'q', "duplicate tensor name");
    /* arrays nested too deep */
    {
        buf d = {0};
        put(&d, "GGUF", 4), u32(&d, 3), u64(&d, 0), u64(&d, 1);
        gstr(&d, "deep"), u32(&d, TN_GGUF_ARRAY);
        for (int i = 0; i < 20; i++) u32(&d, TN_GGUF_ARRAY), u64(&d, 1);
        u32(&d, TN_GGUF_INT32), u64(&d, 0);
        CHECK(tn_gguf_open_buffer(d.p, d.n, &g) != 0 && strstr(tn_errmsg(), "nested"));
        free(d.p);
    }
    /* unknown tensor type: accepted at open, reported when the data is requested */
    {
        uint8_t *c = malloc(b.n);
        memcpy(c, b.p, b.n);
        c[t + 20] = 200;
        CHECK_OK(tn_gguf_open_buffer(c, b.n, &g));
        const tn_gguf_tensor *w = tn_gguf_find_tensor(&g, "w");
        const uint8_t *dd;
        size_t nn;
        CHECK(w && tn_gguf_tensor_data(w, &dd, &nn) != 0 && strstr(tn_errmsg(), "type 200"));
        tn_gguf_close(&g);
        free(c);
    }
    /* random corruption: must never crash; result may be either */
    uint64_t s = 12345;
    for (int it = 0; it < 20000; it++) {
        uint8_t *c = malloc(b.n);
        memcpy(c, b.p, b.n);
        int flips = 1 + it % 4;
        for (int f = 0; f < flips; f++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(s >> 33) % b.n;
            c[at] = (uint8_t)(s >> 17);
        }
        if (tn_gguf_open_buffer(c, b.n, &g) == 0) {
            for (uint64_t i = 0; i < g.n_tensors; i++) {
                const uint8_t *dd;
                size_t nn;
                if (tn_gguf_tensor_data(&g.tensors[i], &dd, &nn) == 0 && nn)
                    CHECK(dd >= c && dd + nn <= c + b.n);
            }
            tn_gguf_close(&g);
        }
        free(c);
    }
    free(b.p);
}

static void test_files(void) {
    const char *dir = tn_test_shared("llama-cpp-vocab");
    if (!dir) {
        printf("skipping shared vocab files (no shared data)\n");
        return;
    }
    DIR *dd = opendir(dir);
    struct dirent *de;
    int n_files = 0;
    while (dd && (de = readdir(dd))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".gguf") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        tn_gguf g;
        CHECKF(tn_gguf_open(path, &g) == 0, "%s", tn_errmsg());
        n_files++;
        const tn_gguf_kv *toks;
        CHECKF(tn_gguf_get_arr(&g, "tokenizer.ggml.tokens", TN_GGUF_STRING, &toks) == 0, "%s: %s", path, tn_errmsg());
        const char *model;
        size_t ml;
        CHECK_OK(tn_gguf_get_str(&g, "tokenizer.ggml.model", &model, &ml));
        if (strcmp(de->d_name, "ggml-vocab-llama-spm.gguf") == 0) {
            CHECK(tn_gguf_arr_len(toks) == 32000);
            const char *s;
            size_t len;
            CHECK_OK(tn_gguf_arr_str(toks, 1, &s, &len));
            CHECK(len == 3 && memcmp(s, "<s>", 3) == 0);
            CHECK(ml == 5 && memcmp(model, "llama", 5) == 0);
            const tn_gguf_kv *sc;
            CHECK_OK(tn_gguf_get_arr(&g, "tokenizer.ggml.scores", TN_GGUF_FLOAT32, &sc));
            CHECK(tn_gguf_arr_len(sc) == 32000);
            const tn_gguf_kv *tt;
            CHECK_OK(tn_gguf_get_arr(&g, "tokenizer.ggml.token_type", TN_GGUF_INT32, &tt));
            CHECK(tn_gguf_arr_i32(tt, 1) == 3); /* control */
            uint32_t bos;
            CHECK_OK(tn_gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &bos));
            CHECK(bos == 1);
        }
        if (strcmp(de->d_name, "ggml-vocab-gpt-2.gguf") == 0) {
            const tn_gguf_kv *m;
            CHECK_OK(tn_gguf_get_arr(&g, "tokenizer.ggml.merges", TN_GGUF_STRING, &m));
            CHECK(tn_gguf_arr_len(m) > 1000);
        }
        tn_gguf_close(&g);
    }
    if (dd) closedir(dd);
    CHECK(n_files >= 10);

    const char *p = tn_test_shared("tiny-random-llama-gguf/llama-2-tiny-random.gguf");
    if (!p) return;
    tn_gguf g;
    CHECK_OK(tn_gguf_open(p, &g));
    CHECK(g.n_tensors == 12);
    uint32_t u;
    CHECK_OK(tn_gguf_get_u32(&g, "llama.embedding_length", &u)); CHECK(u == 8);
    CHECK_OK(tn_gguf_get_u32(&g, "llama.block_count", &u)); CHECK(u == 1);
    const tn_gguf_tensor *t = tn_gguf_find_tensor(&g, "token_embd.weight");
    CHECK(t && t->type == TN_GGML_F16 && t->ne[0] == 8 && t->ne[1] == 32000 && t->n_bytes == 8 * 32000 * 2);
    t = tn_gguf_find_tensor(&g, "output_norm.weight");
    CHECK(t && t->type == TN_GGML_F32 && t->n_dims == 1 && t->ne[0] == 8);
    tn_gguf_close(&g);

    /* a real file truncated at many points never opens (or crashes) */
    tn_mapped_file m;
    if (tn_map_file(p, &m) == 0) {
        for (size_t n = 0; n < m.size; n = n < 4096 ? n + 1 : n + 997) {
            uint8_t *c = malloc(n ? n : 1);
            memcpy(c, m.data, n);
            int rc = tn_gguf_open_buffer(c, n, &g);
            if (rc == 0) tn_gguf_close(&g);
            CHECKF(rc != 0, "truncated to %zu accepted", n);
            free(c);
        }
        tn_unmap_file(&m);
    }
    CHECK(tn_gguf_open("/nonexistent.gguf", &g) != 0 && strstr(tn_errmsg(), "/nonexistent.gguf"));
    tn_gguf_close(&g);
}

int main(void) {
    test_valid();
    test_hostile();
    test_files();
    return tn_test_finish();
}
