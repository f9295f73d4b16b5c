/* Thin, checked helpers over the HDF5 C API, shared by shards (data/) and checkpoints (train/).
 * Datasets are written chunked and deflate-compressed when asked; strings are variable-length UTF-8 so
 * h5py reads them as str. HDF5's own error stack printing is switched off: failures come back as one
 * trinity error line. Every read checks the stored type class and shape against what the caller wants. */
#ifndef TN_CORE_H5_H
#define TN_CORE_H5_H

#include <hdf5.h>
#include <stdint.h>

typedef enum { TN_H5_F32, TN_H5_U8, TN_H5_I8, TN_H5_U16, TN_H5_U32, TN_H5_I32, TN_H5_U64, TN_H5_I64 } tn_h5_type;

#define TN_H5_MAX_RANK 4

/* Create (truncating) or open read-only. Open checks the HDF5 signature first, so "not an HDF5 file"
 * is the error rather than an HDF5 stack trace. */
int tn_h5_create(const char *path, hid_t *file);
int tn_h5_open(const char *path, hid_t *file);
void tn_h5_close(hid_t file);

/* Create group `name` (intermediate groups too) or open it if it exists. Close with H5Gclose. */
int tn_h5_group(hid_t loc, const char *name, hid_t *group);
int tn_h5_exists(hid_t loc, const char *path);

/* Write an n-dimensional dataset. compress: 0 = contiguous, else deflate level (chunked). */
int tn_h5_write(hid_t loc, const char *name, tn_h5_type t, int rank, const int64_t *shape, const void *data,
                int compress);
/* Shape of a dataset. */
int tn_h5_shape(hid_t loc, const char *name, int *rank, int64_t shape[TN_H5_MAX_RANK]);
/* Read a whole dataset whose shape must equal `shape` (rank dims) into caller memory, converting to t. */
int tn_h5_read(hid_t loc, const char *name, tn_h5_type t, int rank, const int64_t *shape, void *out);
/* Read a 1-D slice [start, start+count) of a 1-D dataset. */
int tn_h5_read_range(hid_t loc, const char *name, tn_h5_type t, int64_t start, int64_t count, void *out);
/* Read a whole dataset of any shape into a new tn_alloc buffer. */
int tn_h5_read_alloc(hid_t loc, const char *name, tn_h5_type t, int *rank, int64_t shape[TN_H5_MAX_RANK],
                     void **out);

/* Attributes on object `obj` ("." for loc itself). */
int tn_h5_attr_set_str(hid_t loc, const char *obj, const char *key, const char *value);
int tn_h5_attr_set_i64(hid_t loc, const char *obj, const char *key, int64_t value);
int tn_h5_attr_set_f64(hid_t loc, const char *obj, const char *key, double value);
int tn_h5_attr_has(hid_t loc, const char *obj, const char *key);
/* Reads a string attribute into buf (truncation is an error). */
int tn_h5_attr_get_str(hid_t loc, const char *obj, const char *key, char *buf, size_t cap);
int tn_h5_attr_get_i64(hid_t loc, const char *obj, const char *key, int64_t *value);
int tn_h5_attr_get_f64(hid_t loc, const char *obj, const char *key, double *value);

#endif
