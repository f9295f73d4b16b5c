/* Writes small valid .trin files into a directory: the seed corpus for fuzz_trin (every dtype and
 * scale layout, with and without a tokenizer, tied and untied embeddings; variants 4 and 5 hold the
 * embedding table and LM head as Q8 and Q4, version 3, and variant 5 also the head's exact F16 rows,
 * version 4). */
#include "core/error.h"
#include "core/rng.h"
#include "export/trin.h"
#include "kernels/packed.h"
#include "model/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int seed_file(const char *dir, int variant) {
    tn_llama_config c;
    tn_llama_config_defaults(&c);
    c.dim = 8;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.ffn_dim = 12;
    c.vocab_size = 10;
    c.max_seq_len = 16;
    c.tied_embeddings = variant & 1;
    tn_llama_layout l;
    if (tn_llama_layout_init(&l, &c) != 0) return -1;
    tn_trin_writer *w = tn_trin_writer_new(&c);
    tn_rng r;
    tn_rng_seed(&r, (uint64_t)variant);
    if (variant & 2) tn_trin_writer_set_tokenizer(w, "seed", "tok", 3);
    tn_trin_writer_meta(w, "source", "fuzz seed");
    int rc = 0;
    for (int i = 0; i < l.n_tensors && rc == 0; i++) {
        const tn_tensor_info *ti = &l.tensors[i];
        tn_trin_tensor d;
        memset(&d, 0, sizeof d);
        snprintf(d.name, sizeof d.name, "%s", ti->name);
        d.rank = ti->rank;
        d.shape[0] = ti->shape[0];
        d.shape[1] = ti->shape[1];
        int64_t rows = ti->shape[0], cols = ti->rank == 2 ? ti->shape[1] : 1, n = rows * cols;
        int kind = ti->rank == 1 ? 0 : (i + variant) % 5;
        const int table = variant >= 4 && (ti->group == TN_GROUP_EMBED || ti->group == TN_GROUP_HEAD);
        if (table) kind = variant == 4 ? 5 : 6;
        d.dtype = kind == 0 ? TN_TRIN_F32 : kind == 1 ? TN_TRIN_F16 : kind == 2 ? TN_TRIN_T2 : kind == 3 ? TN_TRIN_L4
                : kind == 4 ? TN_TRIN_L8 : kind == 5 ? TN_TRIN_Q8 : TN_TRIN_Q4;
        if (kind >= 2 && kind <= 4) d.scale_layout = (i & 1) ? TN_TRIN_SCALE_ROW : TN_TRIN_SCALE_TENSOR;
        if (kind == 5) d.scale_layout = TN_TRIN_SCALE_ROW;
        if (kind == 3 || kind == 4) d.grid_len = kind == 3 ? 7 : 25;
        for (int g = 0; g < d.grid_len; g++) d.grid[g] = (float)g / 8.0f - 1.0f;
        uint64_t size;
        rc = tn_trin_data_size(d.dtype, d.rank, d.shape, &size);
        uint8_t *buf = calloc(1, size);
        uint8_t *tmp = malloc((size_t)n);
        if (kind == 0) for (int64_t k = 0; k < n; k++) ((float *)buf)[k] = tn_rng_normal(&r);
        if (kind == 1) for (int64_t k = 0; k < n; k++) ((uint16_t *)buf)[k] = (uint16_t)tn_rng_below(&r, 0x7c00);
        if (kind == 2) {
            for (int64_t k = 0; k < n; k++) tmp[k] = (uint8_t)(tn_rng_below(&r, 3) - 1);
            rc = tn_t2_pack((const int8_t *)tmp, rows, cols, buf);
        }
        if (kind >= 5) /* Q8: any bytes; Q4: any codes, block scales 0.5 (fp16 0x3800) */
            for (uint64_t k = 0; k < size; k++)
                buf[k] = kind == 6 && k % TN_Q4_BLOCK_BYTES < 2 ? (k % TN_Q4_BLOCK_BYTES ? 0x38 : 0) : (uint8_t)tn_rng_below(&r, 256);
        if (kind == 3 || kind == 4) {
            for (int64_t k = 0; k < n; k++) tmp[k] = (uint8_t)tn_rng_below(&r, (uint64_t)d.grid_len);
            rc = kind == 3 ? tn_l4_pack(tmp, rows, cols, d.grid_len, buf) : tn_l8_pack(tmp, rows, cols, d.grid_len, buf);
        }
        free(tmp);
        float *scales = NULL;
        if (d.scale_layout) {
            int64_t ns = d.scale_layout == TN_TRIN_SCALE_ROW ? rows : 1;
            scales = malloc((size_t)ns * sizeof *scales);
            for (int64_t k = 0; k < ns; k++) scales[k] = 0.5f;
        }
        if (rc == 0) rc = tn_trin_writer_add(w, &d, buf, scales, 1);
    }
    if (rc == 0 && variant == 5) { /* the exact rows of its Q4 head (TN_TRIN_EXACT_HEAD) */
        tn_trin_tensor d;
        memset(&d, 0, sizeof d);
        snprintf(d.name, sizeof d.name, "%s", TN_TRIN_EXACT_HEAD);
        d.dtype = TN_TRIN_F16;
        d.rank = 2;
        d.shape[0] = c.vocab_size;
        d.shape[1] = c.dim;
        uint16_t *h = malloc((size_t)(c.vocab_size * c.dim) * sizeof *h);
        for (int64_t k = 0; k < (int64_t)c.vocab_size * c.dim; k++) h[k] = (uint16_t)tn_rng_below(&r, 0x7c00);
        rc = tn_trin_writer_add(w, &d, h, NULL, 1);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/seed%d.trin", dir, variant);
    if (rc == 0) rc = tn_trin_writer_write(w, path);
    tn_trin_writer_free(w);
    tn_llama_layout_free(&l);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_trin_seed DIR\n");
        return 2;
    }
    for (int v = 0; v < 6; v++)
        if (seed_file(argv[1], v) != 0) {
            fprintf(stderr, "fuzz_trin_seed: %s\n", tn_errmsg());
            return 1;
        }
    return 0;
}
