/* safetensors reader (format: github.com/huggingface/safetensors README, "Format"):
 *   u64 N (little-endian), N bytes of UTF-8 JSON header, then the data section.
 *   header = { "__metadata__": {str: str} (optional),
 *              "<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ... }
 *   offsets are relative to the data section, end exclusive.
 *
 * tn_st_open maps the file and checks, before returning: N <= file size - 8 (and <= 100 MB), the header is
 * a JSON object, every tensor entry has a known dtype string, a shape of non-negative integers (rank <= 8),
 * begin <= end <= data size, (end - begin) == product(shape) * dtype size (overflow-checked), no two tensors
 * overlap, and no name repeats. Data of dtypes other than F32/F16/BF16 is described but not convertible. */
#ifndef TN_EXPORT_SAFETENSORS_H
#define TN_EXPORT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/fileio.h"

#define TN_ST_MAX_RANK 8
#define TN_ST_MAX_HEADER ((uint64_t)100 << 20)

typedef enum {
    TN_ST_F32 = 0,
    TN_ST_F16,
    TN_ST_BF16,
    TN_ST_F64,
    TN_ST_I64,
    TN_ST_I32,
    TN_ST_I16,
    TN_ST_I8,
    TN_ST_U64,
    TN_ST_U32,
    TN_ST_U16,
    TN_ST_U8,
    TN_ST_BOOL,
    TN_ST_F8_E4M3,
    TN_ST_F8_E5M2,
    TN_ST_DTYPE_COUNT
} tn_st_dtype;

typedef struct {
    char *name;
    tn_st_dtype dtype;
    int rank;
    int64_t shape[TN_ST_MAX_RANK];
    int64_t numel;
    const uint8_t *data; /* in the map */
    size_t n_bytes;
} tn_st_tensor;

typedef struct {
    tn_mapped_file map;
    char *path;
    int n_tensors;
    tn_st_tensor *tensors;
} tn_safetensors;

/* Errors start with the path: "x.safetensors: header length 999 runs past the end of the file (size 20)". */
int tn_st_open(const char *path, tn_safetensors *st);
void tn_st_close(tn_safetensors *st);
const tn_st_tensor *tn_st_find(const tn_safetensors *st, const char *name);

const char *tn_st_dtype_name(tn_st_dtype d);
size_t tn_st_dtype_size(tn_st_dtype d);

/* Convert a F32/F16/BF16 tensor to fp32 (dst holds t->numel floats). Other dtypes fail naming the tensor. */
int tn_st_to_f32(const tn_st_tensor *t, float *dst);

/* Writer: F32 tensors, in the order given, packed back to back; the header padded with spaces to 8 bytes;
 * meta: n_meta (key, value) string pairs for "__metadata__". Written atomically (core/fileio.h). */
typedef struct {
    const char *name;
    int rank;
    int64_t shape[2];
    const float *data;
} tn_st_out;
int tn_st_write_f32(const char *path, const tn_st_out *t, int n, const char *const *meta, int n_meta);

#endif
