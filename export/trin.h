/* TRIN: the self-contained file a trained model ships as (docs/TRIN.md is the byte-level reference).
 *
 *   header   magic "TRIN", version, sizes, model config, tokenizer descriptor, metadata text,
 *            tensor directory (name, dtype, shape, scale layout, grid table, offsets, sizes, CRC32s),
 *            header CRC32
 *   data     64-byte aligned: tokenizer blob, then per tensor its packed weights and its F32 scales
 *
 * The reader maps the file read-only and trusts nothing: every count, offset and size is checked against
 * the file (overflow-checked), every region's CRC32 is verified, packed codes and grid indices are
 * range-checked, and the tensor set must match the model config exactly. Only then is a tn_trin
 * returned; tensor data pointers point into the map and are used in place by the kernels. */
#ifndef TN_EXPORT_TRIN_H
#define TN_EXPORT_TRIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/fileio.h"
#include "model/config.h"

#define TN_TRIN_MAGIC "TRIN"
#define TN_TRIN_VERSION 4          /* the newest: written when the file holds exact head rows, 3 when a
                                    * tensor is Q8 or Q4, else 2 (so that older readers still read every
                                    * file they can run); versions 1 (no RoPE scaling fields) to 4 are read */
#define TN_TRIN_N_DTYPES 7
#define TN_TRIN_ALIGN 64
#define TN_TRIN_MAX_RANK 4
#define TN_TRIN_MAX_NAME 95          /* bytes, without the terminating NUL */
#define TN_TRIN_MAX_GRID 256
#define TN_TRIN_MAX_HEADER ((uint64_t)64 << 20) /* a header above 64 MiB is refused as corrupt */

/* The optional exact rows of a quantized LM head (version 4, `trinity export --head q8|q4 --exact-head`):
 * [vocab, dim] F16, the head before quantization. The runner scans the quantized head and re-scores its
 * top candidates from these rows (runner/rescore.h); a tied model also embeds from them. */
#define TN_TRIN_EXACT_HEAD "lm_head.exact"

/* Q8 and Q4 (version 3) are for the LM head and the embedding table (trinity export --head / --embed). */
typedef enum {
    TN_TRIN_F32 = 0,
    TN_TRIN_F16 = 1,
    TN_TRIN_T2 = 2,
    TN_TRIN_L4 = 3,
    TN_TRIN_L8 = 4,
    TN_TRIN_Q8 = 5, /* int8 + a per-row f32 scale (scale layout "row") */
    TN_TRIN_Q4 = 6  /* 4-bit blocks of 32 with an fp16 scale inside each block (GGML's Q4_0 bytes) */
} tn_trin_dtype;
typedef enum { TN_TRIN_SCALE_NONE = 0, TN_TRIN_SCALE_TENSOR = 1, TN_TRIN_SCALE_ROW = 2 } tn_trin_scale_layout;

/* One tensor. Weight (r, c) = s · v where v is the stored value (F32/F16, Q8's int8), the ternary value
 * (T2), grid[index] (L4/L8) or d · (code − 8) (Q4), and s = 1 (none), scales[0] (per-tensor) or scales[r]
 * (per-row). */
typedef struct {
    char name[TN_TRIN_MAX_NAME + 1];
    tn_trin_dtype dtype;
    int rank;
    int64_t shape[TN_TRIN_MAX_RANK]; /* [rows(out), cols(in)] for matrices */
    tn_trin_scale_layout scale_layout;
    int grid_len;                     /* L4: 1..16, L8: 1..256, otherwise 0 */
    float grid[TN_TRIN_MAX_GRID];     /* grid_len values, zero-padded to 256 (safe LUT for any index) */
    int act_bits;                     /* 8: the model quantizes this matrix's input to int8 per token
                                       * (absmax, BitNet b1.58) before the product; 0: float input */
    /* Filled by the reader (ignored by the writer): */
    uint64_t offset, size;            /* absolute file offset and byte size of the weights */
    uint32_t crc;
    uint64_t scale_offset;            /* 0 when scale_layout is none */
    int64_t n_scales;                 /* 0, 1 or shape[0] */
    uint32_t scale_crc;
    const uint8_t *data;              /* into the map */
    const float *scales;              /* into the map, NULL when none */
} tn_trin_tensor;

typedef struct {
    uint32_t version;                 /* 1 to 4 */
    uint64_t file_size, header_size, data_offset;
    tn_llama_config cfg;
    char tokenizer_format[32];        /* "" when the file has no tokenizer */
    const uint8_t *tokenizer;         /* into the map */
    size_t tokenizer_len;
    uint32_t tokenizer_crc;
    char *meta;                       /* "key=value\n" lines, NUL-terminated (never NULL) */
    int n_tensors;
    tn_trin_tensor *tensors;
    /* private */
    tn_mapped_file map;
    const uint8_t *base;
} tn_trin;

const char *tn_trin_dtype_name(tn_trin_dtype d);
int tn_trin_dtype_parse(const char *s, tn_trin_dtype *d);
const char *tn_trin_scale_layout_name(tn_trin_scale_layout s);
/* Number of elements (product of the shape); -1 on overflow or a non-positive dimension. */
int64_t tn_trin_numel(int rank, const int64_t *shape);
/* Byte size of a tensor's weights for its dtype and shape (the packed layouts are docs/PACKING.md's).
 * Quantized dtypes need rank 2. Returns -1 (tn_err) if unsupported or too large. */
int tn_trin_data_size(tn_trin_dtype dtype, int rank, const int64_t *shape, uint64_t *size);

/* Map and validate a .trin file. On failure *out is NULL and the error names the file. */
int tn_trin_open(const char *path, tn_trin **out);
/* As tn_trin_open, with the file read into memory backed by transparent huge pages instead of mapped
 * (core/fileio.h tn_load_file_huge): for a runner that streams the weights every token. */
int tn_trin_open_huge(const char *path, tn_trin **out);
/* Validate a file image already in memory (borrowed: must outlive the tn_trin). For fuzzing and for
 * models built in memory. */
int tn_trin_open_memory(const void *data, size_t size, tn_trin **out);
void tn_trin_close(tn_trin *t);
const tn_trin_tensor *tn_trin_find(const tn_trin *t, const char *name);
/* Value of "key=..." in the metadata, copied into buf; -1 if absent or truncated (no error set). */
int tn_trin_meta_get(const tn_trin *t, const char *key, char *buf, size_t cap);

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct tn_trin_writer tn_trin_writer;

tn_trin_writer *tn_trin_writer_new(const tn_llama_config *cfg);
void tn_trin_writer_free(tn_trin_writer *w);
/* Tokenizer blob (copied). format: <= 31 printable characters. */
int tn_trin_writer_set_tokenizer(tn_trin_writer *w, const char *format, const void *blob, size_t len);
/* Append a "key=value" metadata line (no '\n', '=' in key, or NUL allowed). */
int tn_trin_writer_meta(tn_trin_writer *w, const char *key, const char *value);
/* Add a tensor: desc gives name, dtype, rank, shape, scale_layout, grid_len, grid (other fields are
 * ignored). data holds tn_trin_data_size bytes; scales holds 0 / 1 / shape[0] floats by scale layout.
 * With own = 1 the writer takes data and scales (malloc or tn_alloc memory) and frees them, even on
 * failure; with own = 0 they must stay valid until the write. Every field is checked as the reader
 * checks it (including packed codes, grid indices and finiteness), and the write checks the tensor set
 * against the config, so the writer never produces a file the reader refuses. */
int tn_trin_writer_add(tn_trin_writer *w, const tn_trin_tensor *desc, const void *data, const float *scales,
                       int own);
/* Write atomically (temporary file, fsync, rename). */
int tn_trin_writer_write(tn_trin_writer *w, const char *path);
/* The same bytes into a new tn_alloc buffer (free with tn_free). */
int tn_trin_writer_to_memory(tn_trin_writer *w, uint8_t **buf, size_t *size);

#endif
