/* TRIN format: write/read round trip over every dtype and scale layout; the writer refuses bad input;
 * corruption (every header byte flipped, samples through the data, truncation at many lengths, trailing
 * bytes) and crafted headers with a valid CRC each fail with one clear error, never a crash. */
#include "tn_test.h"
#include "trin_image.h"

#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "export/trin.h"
#include "kernels/packed.h"
#include "model/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tn_llama_config tiny_config(void) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 300; /* > one T2 block, not a multiple of any block */
    c.vocab_size = 40;
    c.max_seq_len = 64;
    c.tied_embeddings = 0;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

/* Pick a dtype per tensor so that every dtype and scale layout appears. */
static void choose(const tn_tensor_info *ti, int i, tn_trin_tensor *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", ti->name);
    d->rank = ti->rank;
    d->shape[0] = ti->shape[0];
    d->shape[1] = ti->rank == 2 ? ti->shape[1] : 0;
    if (ti->rank == 1) {
        d->dtype = i % 2 ? TN_TRIN_F16 : TN_TRIN_F32;
        return;
    }
    switch (i % 6) {
    case 0: d->dtype = TN_TRIN_T2; d->scale_layout = TN_TRIN_SCALE_ROW; d->act_bits = 8; break;
    case 1: d->dtype = TN_TRIN_T2; d->scale_layout = TN_TRIN_SCALE_TENSOR; break;
    case 2: d->dtype = TN_TRIN_L4; d->scale_layout = TN_TRIN_SCALE_ROW; d->grid_len = 7; break;
    case 3: d->dtype = TN_TRIN_L8; d->scale_layout = TN_TRIN_SCALE_TENSOR; d->grid_len = 81; break;
    case 4: d->dtype = TN_TRIN_F16; break;
    default: d->dtype = TN_TRIN_F32; break;
    }
    for (int g = 0; g < d->grid_len; g++) d->grid[g] = (float)(g - d->grid_len / 2) / (float)d->grid_len;
}

/* Random valid data for a descriptor (malloc'd). */
static void fill(const tn_trin_tensor *d, tn_rng *r, void **data, float **scales) {
    uint64_t size;
    tn_trin_data_size(d->dtype, d->rank, d->shape, &size);
    int64_t n = tn_trin_numel(d->rank, d->shape), rows = d->shape[0], cols = d->rank == 2 ? d->shape[1] : 1;
    uint8_t *out = malloc(size);
    if (d->dtype == TN_TRIN_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)out)[i] = tn_rng_normal(r);
    } else if (d->dtype == TN_TRIN_F16) {
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = (uint16_t)(tn_rng_below(r, 0x7c00)); /* finite */
    } else if (d->dtype == TN_TRIN_T2) {
        int8_t *w = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) w[i] = (int8_t)((int)tn_rng_below(r, 3) - 1);
        tn_t2_pack(w, rows, cols, out);
        free(w);
    } else {
        uint8_t *idx = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) idx[i] = (uint8_t)tn_rng_below(r, (uint64_t)d->grid_len);
        if (d->dtype == TN_TRIN_L4) tn_l4_pack(idx, rows, cols, d->grid_len, out);
        else tn_l8_pack(idx, rows, cols, d->grid_len, out);
        free(idx);
    }
    int64_t ns = d->scale_layout == TN_TRIN_SCALE_ROW ? rows : d->scale_layout == TN_TRIN_SCALE_TENSOR ? 1 : 0;
    *scales = NULL;
    if (ns) {
        *scales = malloc((size_t)ns * sizeof(float));
        for (int64_t i = 0; i < ns; i++) (*scales)[i] = 0.01f + tn_rng_uniform(r);
    }
    *data = out;
}

/* A writer holding a complete tiny model (data owned by the writer). */
static tn_trin_writer *tiny_writer(const tn_llama_config *cfg, uint64_t seed) {
    tn_llama_layout l;
    if (tn_llama_layout_init(&l, cfg) != 0) return NULL;
    tn_trin_writer *w = tn_trin_writer_new(cfg);
    tn_rng r;
    tn_rng_seed(&r, seed);
    const char tok[] = "opaque tokenizer bytes \x01\x02\x03";
    tn_trin_writer_set_tokenizer(w, "test-tok", tok, sizeof tok);
    tn_trin_writer_meta(w, "source", "test_trin.c");
    for (int i = 0; i < l.n_tensors; i++) {
        tn_trin_tensor d;
        choose(&l.tensors[i], i, &d);
        void *data;
        float *scales;
        fill(&d, &r, &data, &scales);
        if (tn_trin_writer_add(w, &d, data, scales, 1) != 0) {
            fprintf(stderr, "add %s: %s\n", d.name, tn_errmsg());
            tn_trin_writer_free(w);
            w = NULL;
            break;
        }
    }
    tn_llama_layout_free(&l);
    return w;
}

static void test_round_trip(const char *path) {
    tn_llama_config cfg = tiny_config();
    tn_trin_writer *w = tiny_writer(&cfg, 7);
    CHECK(w != NULL);
    if (!w) return;
    CHECK_OK(tn_trin_writer_write(w, path));
    uint8_t *img;
    size_t img_size;
    CHECK_OK(tn_trin_writer_to_memory(w, &img, &img_size));
    tn_trin_writer_free(w);

    size_t fsize;
    char *fbytes;
    CHECK_OK(tn_read_file(path, &fbytes, &fsize));
    CHECK(fsize == img_size && memcmp(fbytes, img, fsize) == 0); /* file and memory images agree */
    free(fbytes);

    tn_trin *t;
    CHECK_OK(tn_trin_open(path, &t));
    if (!t) return;
    CHECK(t->version == 2); /* no Q8 / Q4 tensor: the oldest version that holds the file (docs/TRIN.md) */
    CHECK(memcmp(&t->cfg, &cfg, sizeof cfg) == 0);
    CHECK(strcmp(t->tokenizer_format, "test-tok") == 0);
    CHECK(t->tokenizer_len == sizeof "opaque tokenizer bytes \x01\x02\x03");
    CHECK(t->tokenizer && memcmp(t->tokenizer, "opaque", 6) == 0);
    char buf[64];
    CHECK(tn_trin_meta_get(t, "source", buf, sizeof buf) == 0 && strcmp(buf, "test_trin.c") == 0);
    CHECK(tn_trin_meta_get(t, "absent", buf, sizeof buf) != 0);

    /* Regenerate the same data with the same seed and compare every tensor byte for byte. */
    tn_llama_layout l;
    tn_llama_layout_init(&l, &cfg);
    CHECK(t->n_tensors == l.n_tensors);
    tn_rng r;
    tn_rng_seed(&r, 7);
    int all_same = 1, aligned = 1;
    for (int i = 0; i < l.n_tensors; i++) {
        tn_trin_tensor d;
        choose(&l.tensors[i], i, &d);
        void *data;
        float *scales;
        fill(&d, &r, &data, &scales);
        const tn_trin_tensor *e = tn_trin_find(t, d.name);
        if (!e) {
            all_same = 0;
            continue;
        }
        uint64_t size;
        tn_trin_data_size(d.dtype, d.rank, d.shape, &size);
        all_same &= e->dtype == d.dtype && e->rank == d.rank && e->shape[0] == d.shape[0] &&
                    e->scale_layout == d.scale_layout && e->grid_len == d.grid_len && e->size == size &&
                    e->act_bits == d.act_bits &&
                    memcmp(e->data, data, size) == 0;
        all_same &= memcmp(e->grid, d.grid, (size_t)d.grid_len * 4) == 0;
        for (int g = e->grid_len; g < TN_TRIN_MAX_GRID; g++) all_same &= e->grid[g] == 0.0f;
        if (scales) all_same &= e->scales && memcmp(e->scales, scales, (size_t)e->n_scales * 4) == 0;
        else all_same &= e->scales == NULL && e->n_scales == 0;
        aligned &= e->offset % 64 == 0 && ((uintptr_t)e->data % 64) == 0;
        free(data);
        free(scales);
    }
    CHECK(all_same);
    CHECK(aligned);
    CHECK(tn_trin_find(t, "no.such.tensor") == NULL);
    tn_llama_layout_free(&l);
    tn_trin_close(t);

    /* The in-memory reader accepts the same image. */
    CHECK_OK(tn_trin_open_memory(img, img_size, &t));
    tn_trin_close(t);
    tn_free(img);
}

/* One open of a damaged image: must fail with a message; returns 1 when it did. */
static int refused(const uint8_t *img, size_t size, const char *must_contain) {
    tn_trin *t = NULL;
    tn_err_clear();
    int rc = tn_trin_open_memory(img, size, &t);
    if (rc == 0) {
        tn_trin_close(t);
        return 0;
    }
    if (t != NULL || strlen(tn_errmsg()) == 0) return 0;
    if (getenv("TN_TEST_VERBOSE")) fprintf(stderr, "  refused: %s\n", tn_errmsg());
    if (must_contain && !strstr(tn_errmsg(), must_contain)) {
        fprintf(stderr, "  expected '%s' in: %s\n", must_contain, tn_errmsg());
        return 0;
    }
    return 1;
}

static void test_corruption(void) {
    tn_llama_config cfg = tiny_config();
    tn_trin_writer *w = tiny_writer(&cfg, 11);
    uint8_t *img;
    size_t size;
    CHECK_OK(tn_trin_writer_to_memory(w, &img, &size));
    tn_trin_writer_free(w);
    uint64_t hs = tn_test_rd64(img + 8);
    uint8_t *bad = malloc(size);

    /* Every header byte, two different flips each. */
    int ok = 1;
    for (uint64_t i = 0; i < hs; i++)
        for (int f = 0; f < 2; f++) {
            memcpy(bad, img, size);
            bad[i] ^= f ? 0xff : 0x01;
            if (!refused(bad, size, NULL)) {
                fprintf(stderr, "header byte %llu flip %d accepted: %s\n", (unsigned long long)i, f, tn_errmsg());
                ok = 0;
            }
        }
    CHECK(ok);
    /* Samples through the rest (padding, tokenizer, weights, scales): every 7th byte, plus the last. */
    ok = 1;
    int n_data = 0;
    for (uint64_t i = hs; i < size; i += (i + 7 < size ? 7 : (size - i > 1 ? size - i - 1 : 1))) {
        memcpy(bad, img, size);
        bad[i] ^= 0x10;
        n_data++;
        if (!refused(bad, size, NULL)) {
            fprintf(stderr, "data byte %llu flip accepted\n", (unsigned long long)i);
            ok = 0;
        }
    }
    CHECK(ok);
    CHECKF(n_data > 100, "%d data samples", n_data);
    /* A data flip is reported as a CRC mismatch (not as something vaguer). */
    memcpy(bad, img, size);
    bad[size - 1] ^= 0x04;
    CHECK(refused(bad, size, "CRC mismatch"));

    /* Truncation at every length in the header and every 13th length after, and extension. */
    ok = 1;
    for (size_t len = 0; len < size; len += len < hs + 64 ? 1 : 13)
        if (!refused(img, len, NULL)) ok = 0, fprintf(stderr, "truncated to %zu accepted\n", len);
    CHECK(ok);
    CHECK(refused(img, 3, "truncated"));
    CHECK(refused(img, size - 1, "truncated"));
    uint8_t *longer = calloc(1, size + 5);
    memcpy(longer, img, size);
    CHECK(refused(longer, size + 5, "trailing"));
    free(longer);
    memcpy(bad, img, size);
    bad[0] = 'X';
    CHECK(refused(bad, size, "bad magic"));
    free(bad);
    tn_free(img);
}

/* Crafted headers: change a field, then fix the header CRC so the parse itself must catch it. */

static void test_crafted(void) {
    tn_llama_config cfg = tiny_config();
    tn_trin_writer *w = tiny_writer(&cfg, 13);
    uint8_t *img;
    size_t size;
    CHECK_OK(tn_trin_writer_to_memory(w, &img, &size));
    tn_trin_writer_free(w);
    uint8_t *b = malloc(size);
    uint64_t meta_size;
    uint32_t m32;
    memcpy(&m32, img + 172, 4);
    meta_size = m32;
    uint64_t first = 176 + meta_size; /* first directory entry: embed_tokens */
    uint16_t nl;
    memcpy(&nl, img + first, 2);
    uint64_t fields = first + 2 + nl; /* dtype, rank, layout, res, grid_len(2), res(2), shape... */

#define CRAFT(stmt, expect)                                                                            \
    do {                                                                                               \
        memcpy(b, img, size);                                                                          \
        stmt;                                                                                          \
        tn_test_trin_fix_header_crc(b);                                                                \
        CHECK(refused(b, size, expect));                                                               \
    } while (0)
    uint32_t v32;
    uint64_t v64;
    int32_t i32;
    CRAFT((v32 = TN_TRIN_VERSION + 1, memcpy(b + 4, &v32, 4)), "version");
    CRAFT((v32 = 0, memcpy(b + 4, &v32, 4)), "version");
    CRAFT((v32 = 1u << 30, memcpy(b + 32, &v32, 4)), "tensor count");
    CRAFT((v32 = 3, memcpy(b + 32, &v32, 4)), NULL);
    CRAFT((v32 = 1, memcpy(b + 36, &v32, 4)), "flags");
    CRAFT((i32 = 33, memcpy(b + 40, &i32, 4)), "model config");
    CRAFT((i32 = 2, memcpy(b + 76, &i32, 4)), "tied_embeddings");
    CRAFT((i32 = 1, memcpy(b + 76, &i32, 4)), "unexpected tensor 'lm_head.weight'");
    CRAFT((i32 = 3, memcpy(b + 44, &i32, 4)), "missing");
    /* version 2's RoPE fields at 88: type, factor, low, high, original length */
    CRAFT((i32 = 7, memcpy(b + 88, &i32, 4)), "RoPE scaling type");
    CRAFT((i32 = -1, memcpy(b + 88, &i32, 4)), "RoPE scaling type");
    float f32 = -2.0f;
    CRAFT((i32 = TN_ROPE_LINEAR, memcpy(b + 88, &i32, 4), memcpy(b + 92, &f32, 4)), "rope_factor");
    CRAFT((i32 = TN_ROPE_LLAMA3, memcpy(b + 88, &i32, 4), f32 = 8.0f, memcpy(b + 92, &f32, 4), f32 = 9.0f,
           memcpy(b + 96, &f32, 4)), "rope_low_freq_factor < rope_high_freq_factor");
    CRAFT((i32 = TN_ROPE_LLAMA3, memcpy(b + 88, &i32, 4), i32 = 0, memcpy(b + 104, &i32, 4)), "original");
    CRAFT((i32 = 2, memcpy(b + 108, &i32, 4)), "qkv_bias");
    CRAFT((i32 = 1, memcpy(b + 108, &i32, 4)), "q_proj.bias' is missing"); /* the biases are then expected */
    CRAFT((i32 = 2, memcpy(b + 116, &i32, 4)), "qk_norm");
    CRAFT((i32 = 1, memcpy(b + 116, &i32, 4)), "q_norm.weight' is missing");
    CRAFT((i32 = -8, memcpy(b + 112, &i32, 4)), "head_dim");
    CRAFT((i32 = 7, memcpy(b + 112, &i32, 4)), "even");
    CRAFT((i32 = 16, memcpy(b + 112, &i32, 4)), "shape"); /* head_dim 16 with 4 heads: q_proj would be [64, 32] */
    CRAFT((v32 = 0xffffff, memcpy(b + 172, &v32, 4)), "metadata");
    CRAFT(b[176] = 0, "NUL");
    CRAFT(b[120] = 0x07, "non-printable");
    CRAFT((v64 = 0, memcpy(b + 160, &v64, 8)), "tokenizer");
    CRAFT((v64 = 1ull << 62, memcpy(b + 160, &v64, 8)), "outside the data section");
    CRAFT((v64 = tn_test_rd64(b + 152) + 1, memcpy(b + 152, &v64, 8)), "aligned");
    CRAFT(b[fields] = 9, "unknown dtype");
    CRAFT(b[fields + 1] = 0, "rank");
    CRAFT(b[fields + 1] = 5, "rank");
    CRAFT(b[fields + 2] = 3, NULL);
    CRAFT(b[fields + 3] = 1, "act_bits");
    CRAFT(b[fields + 6] = 1, "reserved");
    CRAFT((v64 = 41, memcpy(b + fields + 8, &v64, 8)), NULL);              /* rows: size mismatch */
    CRAFT((v64 = 1ull << 63, memcpy(b + fields + 8, &v64, 8)), "shape");   /* negative as int64 */
    CRAFT((v64 = 1ull << 39, memcpy(b + fields + 8, &v64, 8)), NULL);       /* overflow of rows x cols */
    CRAFT(memcpy(b + first + 2, "model.embed_tokens.weighX", 25), "missing");
    CRAFT(b[first + 3] = ' ', "non-printable");
    CRAFT((v64 = tn_test_rd64(b + fields + 24) + 64, memcpy(b + fields + 24, &v64, 8)), NULL); /* offset moved */
    CRAFT((v64 = 64, memcpy(b + fields + 24, &v64, 8)), "outside the data section");
    CRAFT((v64 = 0xffffffffffffffc0ull, memcpy(b + fields + 24, &v64, 8)), "outside");
    CRAFT((v64 = 0xffffffffffffff00ull, memcpy(b + fields + 32, &v64, 8)), NULL);
    /* header_size / data_offset / file_size with a consistent CRC are caught too */
    CRAFT((v64 = size + 64, memcpy(b + 16, &v64, 8)), "data offset");
#undef CRAFT
    memcpy(b, img, size);
    v64 = 7;
    memcpy(b + 8, &v64, 8);
    CHECK(refused(b, size, "header size"));

    /* Two tensors pointing at the same bytes: overlap. Entry 1 follows entry 0 (embed F32, rank 2). */
    memcpy(b, img, size);
    uint64_t e0_off = fields + 8 + 16; /* after fixed 8 bytes and 2 shape words: offset of embed */
    uint64_t e1 = e0_off + 8 + 8 + 4 + 4 + 8;
    uint16_t nl1;
    memcpy(&nl1, b + e1, 2);
    uint64_t e1_fields = e1 + 2 + nl1;
    /* entry 1 is layer 0 input_layernorm (rank 1, F16 by choose(): 64 bytes) */
    uint64_t e1_off = e1_fields + 8 + 8;
    memcpy(b + e1_off, b + e0_off, 8);
    tn_test_trin_fix_header_crc(b);
    CHECK(refused(b, size, "overlap"));
    free(b);
    tn_free(img);
}

static void test_writer_refuses(void) {
    tn_llama_config cfg = tiny_config();
    tn_trin_writer *w = tn_trin_writer_new(&cfg);
    tn_trin_tensor d;
    memset(&d, 0, sizeof d);
    strcpy(d.name, "model.layers.0.self_attn.q_proj.weight");
    d.dtype = TN_TRIN_T2;
    d.rank = 2;
    d.shape[0] = 32;
    d.shape[1] = 32;
    d.scale_layout = TN_TRIN_SCALE_TENSOR;
    uint8_t *bad = calloc(1, tn_t2_packed_size(32, 32));
    memset(bad, 0xff, tn_t2_packed_size(32, 32)); /* code 3 everywhere */
    float s = 1.0f, nan = NAN;
    CHECK(tn_trin_writer_add(w, &d, bad, &s, 0) != 0);
    CHECK(strstr(tn_errmsg(), "reserved ternary code") != NULL);
    memset(bad, 0x55, tn_t2_packed_size(32, 32)); /* code 1 = 0 */
    CHECK(tn_trin_writer_add(w, &d, bad, &nan, 0) != 0);
    CHECK(tn_trin_writer_add(w, &d, bad, NULL, 0) != 0);
    d.scale_layout = TN_TRIN_SCALE_NONE;
    d.grid_len = 3;
    CHECK(tn_trin_writer_add(w, &d, bad, NULL, 0) != 0); /* T2 has no grid */
    d.grid_len = 0;
    d.dtype = TN_TRIN_F32;
    d.scale_layout = TN_TRIN_SCALE_ROW;
    CHECK(tn_trin_writer_add(w, &d, bad, &s, 0) != 0); /* F32 has no scales */
    d.dtype = TN_TRIN_L4;
    d.scale_layout = TN_TRIN_SCALE_NONE;
    d.grid_len = 17;
    CHECK(tn_trin_writer_add(w, &d, bad, NULL, 0) != 0);
    d.grid_len = 4; /* bytes 0x55 hold index 5 >= 4 */
    CHECK(tn_trin_writer_add(w, &d, bad, NULL, 0) != 0);
    CHECK(strstr(tn_errmsg(), "grid index") != NULL);
    d.grid_len = 6;
    CHECK_OK(tn_trin_writer_add(w, &d, bad, NULL, 0));
    CHECK_OK(tn_trin_writer_add(w, &d, bad, NULL, 0)); /* duplicate: caught at write */
    uint8_t *img;
    size_t size;
    CHECK(tn_trin_writer_to_memory(w, &img, &size) != 0);
    CHECK(strstr(tn_errmsg(), "twice") != NULL);
    tn_trin_writer_free(w);

    w = tn_trin_writer_new(&cfg); /* an incomplete model */
    CHECK_OK(tn_trin_writer_add(w, &d, bad, NULL, 0));
    CHECK(tn_trin_writer_to_memory(w, &img, &size) != 0);
    CHECK(strstr(tn_errmsg(), "missing") != NULL);
    CHECK(tn_trin_writer_write(w, "/nonexistent-dir/x.trin") != 0);
    tn_trin_writer_free(w);
    CHECK(tn_trin_writer_meta(w = tn_trin_writer_new(&cfg), "a=b", "c") != 0);
    CHECK(tn_trin_writer_set_tokenizer(w, "", "x", 1) != 0);
    tn_trin_writer_free(w);
    free(bad);

    tn_trin *t;
    CHECK(tn_trin_open("/nonexistent.trin", &t) != 0 && t == NULL);
    CHECK(strstr(tn_errmsg(), "/nonexistent.trin") != NULL);
}

/* Version 1 files (no RoPE scaling, qkv_bias, head_dim, qk_norm) stay readable: a version-2 image with the 32
 * bytes at 88 taken
 * out of the header (data offsets are absolute and the data section does not move) reads as the same model
 * with the default rule. And a llama3 config survives a round trip. */
static void test_versions(void) {
    tn_llama_config cfg = tiny_config();
    tn_trin_writer *w = tiny_writer(&cfg, 5);
    uint8_t *img;
    size_t size;
    CHECK_OK(tn_trin_writer_to_memory(w, &img, &size));
    tn_trin_writer_free(w);
    uint8_t *v1 = calloc(1, size);
    uint64_t hs = tn_test_rd64(img + 8);
    memcpy(v1, img, 88);
    memcpy(v1 + 88, img + 120, hs - 120);
    memcpy(v1 + hs, img + hs, size - hs);
    uint32_t one = 1;
    uint64_t hs1 = hs - 32;
    memcpy(v1 + 4, &one, 4);
    memcpy(v1 + 8, &hs1, 8);
    tn_test_trin_fix_header_crc(v1);
    tn_trin *t = NULL;
    CHECK_OK(tn_trin_open_memory(v1, size, &t));
    if (t) {
        CHECK(t->version == 1 && memcmp(&t->cfg, &cfg, sizeof cfg) == 0 && t->cfg.rope_type == TN_ROPE_DEFAULT);
        tn_trin_close(t);
    }
    free(v1);
    tn_free(img);

    cfg.rope_type = TN_ROPE_LLAMA3;
    cfg.rope_factor = 8.0f;
    cfg.rope_low_freq_factor = 1.0f;
    cfg.rope_high_freq_factor = 4.0f;
    cfg.rope_orig_max_pos = 16;
    w = tiny_writer(&cfg, 6);
    CHECK_OK(tn_trin_writer_to_memory(w, &img, &size));
    tn_trin_writer_free(w);
    CHECK_OK(tn_trin_open_memory(img, size, &t));
    if (t) {
        CHECK(t->version == 2 && memcmp(&t->cfg, &cfg, sizeof cfg) == 0);
        tn_trin_close(t);
    }
    tn_free(img);
}

int main(void) {
    char path[] = "/tmp/tn_test_trinXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    test_round_trip(path);
    test_corruption();
    test_crafted();
    test_versions();
    test_writer_refuses();
    unlink(path);
    return tn_test_finish();
}
