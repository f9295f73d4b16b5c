/* GGUF reader: a validated, memory-mapped view of a GGUF v2/v3 file (the llama.cpp / ggml model format,
 * spec: github.com/ggml-org/ggml docs/gguf.md).
 *
 * Layout (little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv   x { string key, u32 value_type, value }
 *   n_tens x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to `general.alignment` (default 32), then the data section; every tensor's offset is relative
 *   to the data section and a multiple of the alignment.
 *   string = u64 length + bytes (no NUL); array = u32 element type + u64 count + elements.
 *
 * tn_gguf_open parses and checks everything before returning: every length and count against the bytes
 * left in the file, duplicate keys and tensor names, the alignment, tensor ranks (<= 4), dimension
 * products against 63-bit overflow, and, for every ggml type whose block layout is known, that the
 * tensor's byte range lies inside the file and overlaps no other tensor. A tensor of a type this reader
 * does not know is accepted at open and reported (by name and number) only when its data is requested,
 * so a vocab-only or partly exotic file can still be read.
 *
 * Strings point into the map and are NOT NUL-terminated: they come as (pointer, length). Keys and tensor
 * names are copied and NUL-terminated. Everything borrowed is valid until tn_gguf_close. */
#ifndef TN_CORE_GGUF_H
#define TN_CORE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/fileio.h"

/* Metadata value types (GGUF spec). */
typedef enum {
    TN_GGUF_UINT8 = 0,
    TN_GGUF_INT8 = 1,
    TN_GGUF_UINT16 = 2,
    TN_GGUF_INT16 = 3,
    TN_GGUF_UINT32 = 4,
    TN_GGUF_INT32 = 5,
    TN_GGUF_FLOAT32 = 6,
    TN_GGUF_BOOL = 7,
    TN_GGUF_STRING = 8,
    TN_GGUF_ARRAY = 9,
    TN_GGUF_UINT64 = 10,
    TN_GGUF_INT64 = 11,
    TN_GGUF_FLOAT64 = 12,
    TN_GGUF_TYPE_COUNT
} tn_gguf_type;

/* ggml tensor types (ggml.h enum ggml_type); numbers are part of the file format. */
typedef enum {
    TN_GGML_F32 = 0,
    TN_GGML_F16 = 1,
    TN_GGML_Q4_0 = 2,
    TN_GGML_Q4_1 = 3,
    TN_GGML_Q5_0 = 6,
    TN_GGML_Q5_1 = 7,
    TN_GGML_Q8_0 = 8,
    TN_GGML_Q8_1 = 9,
    TN_GGML_Q2_K = 10,
    TN_GGML_Q3_K = 11,
    TN_GGML_Q4_K = 12,
    TN_GGML_Q5_K = 13,
    TN_GGML_Q6_K = 14,
    TN_GGML_Q8_K = 15,
    TN_GGML_IQ2_XXS = 16,
    TN_GGML_IQ2_XS = 17,
    TN_GGML_IQ3_XXS = 18,
    TN_GGML_IQ1_S = 19,
    TN_GGML_IQ4_NL = 20,
    TN_GGML_IQ3_S = 21,
    TN_GGML_IQ2_S = 22,
    TN_GGML_IQ4_XS = 23,
    TN_GGML_I8 = 24,
    TN_GGML_I16 = 25,
    TN_GGML_I32 = 26,
    TN_GGML_I64 = 27,
    TN_GGML_F64 = 28,
    TN_GGML_IQ1_M = 29,
    TN_GGML_BF16 = 30,
    TN_GGML_TQ1_0 = 34,
    TN_GGML_TQ2_0 = 35,
    TN_GGML_MXFP4 = 39,
} tn_ggml_type;

#define TN_GGUF_MAX_DIMS 4
#define TN_GGUF_DEFAULT_ALIGNMENT 32

/* One metadata value. A key/value pair at the top level has `key` set; the elements of an array of
 * strings or of arrays are tn_gguf_kv too, with key == NULL. */
typedef struct tn_gguf_kv {
    char *key;      /* NUL-terminated copy; NULL for array elements */
    uint32_t type;  /* tn_gguf_type */
    union {
        uint64_t u; /* UINT8..UINT64 and BOOL (0/1) */
        int64_t i;  /* INT8..INT64 */
        double f;   /* FLOAT32, FLOAT64 */
    } num;
    /* STRING: bytes in the map, not NUL-terminated. */
    const char *str;
    size_t str_len;
    /* ARRAY: element type and count. Fixed-size elements are read from `arr_data` (in the map,
     * unaligned); STRING and ARRAY elements are parsed into `items[arr_len]`. */
    uint32_t arr_type;
    uint64_t arr_len;
    const uint8_t *arr_data;
    struct tn_gguf_kv *items;
} tn_gguf_kv;

typedef struct {
    char *name;                       /* NUL-terminated copy */
    uint32_t n_dims;
    uint64_t ne[TN_GGUF_MAX_DIMS];    /* ggml order: ne[0] varies fastest (= row length); unused = 1 */
    uint32_t type;                    /* tn_ggml_type (may be a number this reader does not know) */
    uint64_t offset;                  /* from the start of the data section */
    uint64_t n_elements;
    uint64_t n_bytes;                 /* 0 when the type is unknown */
    const uint8_t *data;              /* in the map; NULL when the type is unknown */
} tn_gguf_tensor;

typedef struct {
    tn_mapped_file map;
    char *path;
    uint32_t version;
    uint64_t n_kv;
    tn_gguf_kv *kv;
    uint64_t n_tensors;
    tn_gguf_tensor *tensors;
    uint32_t alignment;
    size_t data_offset;               /* start of the data section in the file */
} tn_gguf;

/* Open, parse and validate. On failure *g is left closed (tn_gguf_close is still safe) and the message
 * starts with the path. */
int tn_gguf_open(const char *path, tn_gguf *g);
/* Same for a buffer the caller keeps alive until tn_gguf_close (used by tests and fuzzers). */
int tn_gguf_open_buffer(const void *data, size_t size, tn_gguf *g);
void tn_gguf_close(tn_gguf *g);

/* Metadata lookup; NULL (without touching the error message) when absent. */
const tn_gguf_kv *tn_gguf_find(const tn_gguf *g, const char *key);

/* Typed getters. Fail with "gguf: key K: missing" or "gguf: key K: expected u32, found string".
 * Integer getters accept any integer type whose value fits; f32 accepts FLOAT32 and FLOAT64 (and
 * integers); bool accepts BOOL only. */
int tn_gguf_get_u32(const tn_gguf *g, const char *key, uint32_t *out);
int tn_gguf_get_i64(const tn_gguf *g, const char *key, int64_t *out);
int tn_gguf_get_f32(const tn_gguf *g, const char *key, float *out);
int tn_gguf_get_bool(const tn_gguf *g, const char *key, int *out);
int tn_gguf_get_str(const tn_gguf *g, const char *key, const char **s, size_t *len);
/* An array whose elements have type elem_type (or any type when elem_type < 0). */
int tn_gguf_get_arr(const tn_gguf *g, const char *key, int elem_type, const tn_gguf_kv **arr);

/* Array access. arr_len is 0 for a non-array. The element getters fail (-1 / 0 with a message) on an
 * index out of range or an element type they cannot convert: arr_str needs STRING; arr_f32 takes
 * FLOAT32/FLOAT64/integers; arr_i32 takes any integer type whose value fits in int32. */
uint64_t tn_gguf_arr_len(const tn_gguf_kv *kv);
int tn_gguf_arr_str(const tn_gguf_kv *kv, uint64_t i, const char **s, size_t *len);
float tn_gguf_arr_f32(const tn_gguf_kv *kv, uint64_t i);
int32_t tn_gguf_arr_i32(const tn_gguf_kv *kv, uint64_t i);
/* The i-th element of an array of arrays or strings (NULL otherwise). */
const tn_gguf_kv *tn_gguf_arr_item(const tn_gguf_kv *kv, uint64_t i);

/* Tensors. */
const tn_gguf_tensor *tn_gguf_find_tensor(const tn_gguf *g, const char *name);
/* The tensor's bytes; fails for a type whose layout this reader does not know. */
int tn_gguf_tensor_data(const tn_gguf_tensor *t, const uint8_t **data, size_t *n_bytes);

/* Serialize the metadata pairs whose key starts with one of `prefixes` as a tensor-less GGUF v3 file
 * (e.g. {"tokenizer."} gives a vocab-only GGUF like llama.cpp's ggml-vocab-*.gguf). *out is malloc'd. */
int tn_gguf_write_meta(const tn_gguf *g, const char *const *prefixes, int n_prefixes, uint8_t **out, size_t *len);

/* ---- writing a GGUF v3 file ------------------------------------------------------------------------
 *
 * A writer collects metadata pairs and tensors in memory, then writes the file in one pass: header,
 * pairs in the order added, tensor infos in the order added, padding to the alignment (32, the GGUF
 * default: a general.alignment key is refused), then each tensor's bytes at the next multiple of the
 * alignment. Every add is checked (non-empty unique keys and names, tensor names of at most 63 bytes as
 * ggml's GGML_MAX_NAME allows, 1..4 dimensions, a known ggml type whose block divides the row length, and
 * a byte count that matches the shape); a failed add leaves the writer as it was. Fixed-size values are
 * written little-endian whatever the host. tn_gguf_writer_write goes through a temporary file and a
 * rename (core/fileio.h): on any failure nothing is left at `path`. */
typedef struct tn_gguf_writer tn_gguf_writer;

tn_gguf_writer *tn_gguf_writer_new(void);
void tn_gguf_writer_free(tn_gguf_writer *w);
/* 1 if a pair with this key was added. */
int tn_gguf_writer_has(const tn_gguf_writer *w, const char *key);
int tn_gguf_writer_str(tn_gguf_writer *w, const char *key, const char *s, size_t len);
int tn_gguf_writer_u32(tn_gguf_writer *w, const char *key, uint32_t v);
int tn_gguf_writer_i32(tn_gguf_writer *w, const char *key, int32_t v);
int tn_gguf_writer_f32(tn_gguf_writer *w, const char *key, float v);
int tn_gguf_writer_bool(tn_gguf_writer *w, const char *key, int v);
/* An array of n fixed-size values of elem_type (u8 ... f64, bool), read from host memory. */
int tn_gguf_writer_arr(tn_gguf_writer *w, const char *key, uint32_t elem_type, const void *values, uint64_t n);
/* An array of n strings (s[i], len[i]). */
int tn_gguf_writer_arr_str(tn_gguf_writer *w, const char *key, const char *const *s, const size_t *len, uint64_t n);
/* A copy of a pair read by tn_gguf_open (its key and value, arrays included). */
int tn_gguf_writer_copy(tn_gguf_writer *w, const tn_gguf_kv *kv);
/* A tensor: ne in ggml order (ne[0] = row length), `data` holds n_bytes of the type's blocks. With
 * own = 1 the writer takes `data` (malloc'd) and frees it, also when the call fails; with own = 0 the
 * caller keeps it alive until the writer is freed. */
int tn_gguf_writer_tensor(tn_gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                          void *data, size_t n_bytes, int own);
uint64_t tn_gguf_writer_n_tensors(const tn_gguf_writer *w);
/* The whole file in memory (malloc'd), for tests and fuzzers. */
int tn_gguf_writer_to_memory(const tn_gguf_writer *w, uint8_t **out, size_t *len);
/* Write atomically; the message names the path on failure. */
int tn_gguf_writer_write(const tn_gguf_writer *w, const char *path);

/* ggml type properties. Returns 0 and block size (elements) + block bytes for known types, -1 (no
 * message) otherwise. */
int tn_ggml_type_layout(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);
/* "F16", "Q4_K", ... or "unknown". */
const char *tn_ggml_type_name(uint32_t type);
/* "u32", "string", "array", ... */
const char *tn_gguf_type_name(uint32_t type);

#endif
