#include "core/h5.h"
#include "core/alloc.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(void) {
    static int done = 0;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

static hid_t mem_type(tn_h5_type t) {
    switch (t) {
    case TN_H5_F32: return H5T_NATIVE_FLOAT;
    case TN_H5_U8: return H5T_NATIVE_UINT8;
    case TN_H5_I8: return H5T_NATIVE_INT8;
    case TN_H5_U16: return H5T_NATIVE_UINT16;
    case TN_H5_U32: return H5T_NATIVE_UINT32;
    case TN_H5_I32: return H5T_NATIVE_INT32;
    case TN_H5_U64: return H5T_NATIVE_UINT64;
    case TN_H5_I64: return H5T_NATIVE_INT64;
    }
    return H5T_NATIVE_FLOAT;
}

/* Little-endian file types so files are identical across hosts. */
static hid_t file_type(tn_h5_type t) {
    switch (t) {
    case TN_H5_F32: return H5T_IEEE_F32LE;
    case TN_H5_U8: return H5T_STD_U8LE;
    case TN_H5_I8: return H5T_STD_I8LE;
    case TN_H5_U16: return H5T_STD_U16LE;
    case TN_H5_U32: return H5T_STD_U32LE;
    case TN_H5_I32: return H5T_STD_I32LE;
    case TN_H5_U64: return H5T_STD_U64LE;
    case TN_H5_I64: return H5T_STD_I64LE;
    }
    return H5T_IEEE_F32LE;
}

static size_t type_size(tn_h5_type t) {
    switch (t) {
    case TN_H5_U8:
    case TN_H5_I8: return 1;
    case TN_H5_U16: return 2;
    case TN_H5_F32:
    case TN_H5_U32:
    case TN_H5_I32: return 4;
    case TN_H5_U64:
    case TN_H5_I64: return 8;
    }
    return 4;
}

int tn_h5_create(const char *path, hid_t *file) {
    quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return tn_err("%s: cannot create HDF5 file", path);
    *file = f;
    return 0;
}

int tn_h5_open(const char *path, hid_t *file) {
    quiet();
    FILE *fp = fopen(path, "rb");
    if (!fp) return tn_err("%s: cannot open", path);
    fclose(fp);
    if (H5Fis_hdf5(path) <= 0) return tn_err("%s: not an HDF5 file (or truncated)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return tn_err("%s: cannot open HDF5 file (corrupted?)", path);
    *file = f;
    return 0;
}

void tn_h5_close(hid_t file) {
    if (file >= 0) H5Fclose(file);
}

int tn_h5_exists(hid_t loc, const char *path) {
    /* H5Lexists needs every intermediate link to exist; walk the path. */
    char buf[512];
    if (strlen(path) >= sizeof buf) return 0;
    strcpy(buf, path);
    for (char *p = buf; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (buf[0] && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            if (!c) return 1;
            *p = c;
        }
    }
}

int tn_h5_group(hid_t loc, const char *name, hid_t *group) {
    quiet();
    hid_t g;
    if (tn_h5_exists(loc, name)) {
        g = H5Gopen2(loc, name, H5P_DEFAULT);
    } else {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        g = H5Gcreate2(loc, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
    }
    if (g < 0) return tn_err("HDF5 group %s: cannot create or open", name);
    *group = g;
    return 0;
}

int tn_h5_write(hid_t loc, const char *name, tn_h5_type t, int rank, const int64_t *shape, const void *data,
                int compress) {
    quiet();
    if (rank < 1 || rank > TN_H5_MAX_RANK) return tn_err("HDF5 dataset %s: bad rank %d", name, rank);
    hsize_t dims[TN_H5_MAX_RANK], chunk[TN_H5_MAX_RANK];
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = (hsize_t)shape[i];
        numel *= shape[i];
    }
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (compress && numel > 0) {
        /* Chunks of about 1 MiB along the first axis. */
        int64_t row = 1;
        for (int i = 1; i < rank; i++) {
            chunk[i] = dims[i];
            row *= shape[i];
        }
        int64_t rows = (int64_t)(1 << 20) / (int64_t)type_size(t) / (row > 0 ? row : 1);
        if (rows < 1) rows = 1;
        if (rows > shape[0]) rows = shape[0];
        chunk[0] = (hsize_t)rows;
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, (unsigned)compress);
    }
    hid_t ds = H5Dcreate2(loc, name, file_type(t), space, lcpl, dcpl, H5P_DEFAULT);
    herr_t rc = -1;
    if (ds >= 0) rc = numel ? H5Dwrite(ds, mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (ds < 0) return tn_err("HDF5 dataset %s: cannot create", name);
    if (rc < 0) return tn_err("HDF5 dataset %s: write failed", name);
    return 0;
}

/* Open dataset and check that its stored class is compatible with t (int vs float). */
static hid_t open_ds(hid_t loc, const char *name, tn_h5_type t) {
    quiet();
    if (!tn_h5_exists(loc, name)) {
        tn_err("missing dataset %s", name);
        return -1;
    }
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) {
        tn_err("dataset %s: cannot open", name);
        return -1;
    }
    hid_t ft = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ft);
    H5Tclose(ft);
    int want_float = (t == TN_H5_F32);
    if ((want_float && cls != H5T_FLOAT && cls != H5T_INTEGER) || (!want_float && cls != H5T_INTEGER)) {
        H5Dclose(ds);
        tn_err("dataset %s: wrong element type (expected %s)", name, want_float ? "float" : "integer");
        return -1;
    }
    return ds;
}

int tn_h5_shape(hid_t loc, const char *name, int *rank, int64_t shape[TN_H5_MAX_RANK]) {
    quiet();
    if (!tn_h5_exists(loc, name)) return tn_err("missing dataset %s", name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return tn_err("dataset %s: cannot open", name);
    hid_t sp = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[TN_H5_MAX_RANK];
    int ok = r >= 0 && r <= TN_H5_MAX_RANK;
    if (ok) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    H5Dclose(ds);
    if (!ok) return tn_err("dataset %s: unsupported rank %d", name, r);
    *rank = r;
    for (int i = 0; i < r; i++) shape[i] = (int64_t)dims[i];
    return 0;
}

static int read_all(hid_t ds, const char *name, tn_h5_type t, void *out) {
    if (H5Dread(ds, mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        return tn_err("dataset %s: read failed (corrupted file?)", name);
    return 0;
}

int tn_h5_read(hid_t loc, const char *name, tn_h5_type t, int rank, const int64_t *shape, void *out) {
    int r;
    int64_t s[TN_H5_MAX_RANK];
    TN_CHECK(tn_h5_shape(loc, name, &r, s));
    int same = (r == rank);
    for (int i = 0; same && i < r; i++) same = (s[i] == shape[i]);
    if (!same) {
        char got[96] = "", want[96] = "";
        for (int i = 0; i < r; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "x" : "", (long long)s[i]);
        for (int i = 0; i < rank; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "x" : "", (long long)shape[i]);
        return tn_err("dataset %s: shape %s, expected %s", name, got, want);
    }
    hid_t ds = open_ds(loc, name, t);
    if (ds < 0) return -1;
    int64_t n = 1;
    for (int i = 0; i < r; i++) n *= s[i];
    int rc = n ? read_all(ds, name, t, out) : 0;
    H5Dclose(ds);
    return rc;
}

int tn_h5_read_range(hid_t loc, const char *name, tn_h5_type t, int64_t start, int64_t count, void *out) {
    int r;
    int64_t s[TN_H5_MAX_RANK];
    TN_CHECK(tn_h5_shape(loc, name, &r, s));
    if (r != 1) return tn_err("dataset %s: expected 1-D", name);
    if (start < 0 || count < 0 || start + count > s[0])
        return tn_err("dataset %s: range [%lld, %lld) outside [0, %lld)", name, (long long)start,
                      (long long)(start + count), (long long)s[0]);
    if (count == 0) return 0;
    hid_t ds = open_ds(loc, name, t);
    if (ds < 0) return -1;
    hid_t fsp = H5Dget_space(ds);
    hsize_t off = (hsize_t)start, cnt = (hsize_t)count;
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
    hid_t msp = H5Screate_simple(1, &cnt, NULL);
    herr_t rc = H5Dread(ds, mem_type(t), msp, fsp, H5P_DEFAULT, out);
    H5Sclose(msp);
    H5Sclose(fsp);
    H5Dclose(ds);
    if (rc < 0) return tn_err("dataset %s: read failed (corrupted file?)", name);
    return 0;
}

int tn_h5_read_alloc(hid_t loc, const char *name, tn_h5_type t, int *rank, int64_t shape[TN_H5_MAX_RANK],
                     void **out) {
    TN_CHECK(tn_h5_shape(loc, name, rank, shape));
    int64_t n = 1;
    for (int i = 0; i < *rank; i++) n *= shape[i];
    void *buf = tn_alloc((size_t)n, type_size(t));
    if (!buf) return tn_err_prefix("dataset %s", name);
    if (tn_h5_read(loc, name, t, *rank, shape, buf) != 0) {
        tn_free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

static hid_t open_obj(hid_t loc, const char *obj) {
    quiet();
    return H5Oopen(loc, obj, H5P_DEFAULT);
}

static int attr_write(hid_t loc, const char *obj, const char *key, hid_t ftype, hid_t mtype, const void *v) {
    hid_t o = open_obj(loc, obj);
    if (o < 0) return tn_err("attribute %s: object %s not found", key, obj);
    if (H5Aexists(o, key) > 0) H5Adelete(o, key);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, key, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, mtype, v) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    if (rc < 0) return tn_err("attribute %s: write failed", key);
    return 0;
}

int tn_h5_attr_set_str(hid_t loc, const char *obj, const char *key, const char *value) {
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    int rc = attr_write(loc, obj, key, st, st, &value);
    H5Tclose(st);
    return rc;
}

int tn_h5_attr_set_i64(hid_t loc, const char *obj, const char *key, int64_t value) {
    return attr_write(loc, obj, key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int tn_h5_attr_set_f64(hid_t loc, const char *obj, const char *key, double value) {
    return attr_write(loc, obj, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

int tn_h5_attr_has(hid_t loc, const char *obj, const char *key) {
    hid_t o = open_obj(loc, obj);
    if (o < 0) return 0;
    int has = H5Aexists(o, key) > 0;
    H5Oclose(o);
    return has;
}

static hid_t attr_open(hid_t loc, const char *obj, const char *key, hid_t *o) {
    *o = open_obj(loc, obj);
    if (*o < 0) {
        tn_err("attribute %s: object %s not found", key, obj);
        return -1;
    }
    if (H5Aexists(*o, key) <= 0) {
        H5Oclose(*o);
        tn_err("missing attribute %s", key);
        return -1;
    }
    hid_t a = H5Aopen(*o, key, H5P_DEFAULT);
    if (a < 0) {
        H5Oclose(*o);
        tn_err("attribute %s: cannot open", key);
    }
    return a;
}

int tn_h5_attr_get_str(hid_t loc, const char *obj, const char *key, char *buf, size_t cap) {
    hid_t o, a = attr_open(loc, obj, key, &o);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING) {
        rc = tn_err("attribute %s: not a string", key);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(ft); /* same size and charset, so no conversion path is needed */
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0 || !s) {
            rc = tn_err("attribute %s: read failed", key);
        } else {
            if (strlen(s) >= cap) rc = tn_err("attribute %s: value too long", key);
            else strcpy(buf, s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(ft);
        if (n >= cap) {
            rc = tn_err("attribute %s: value too long", key);
        } else {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, n + 1);
            if (H5Aread(a, mt, buf) < 0) rc = tn_err("attribute %s: read failed", key);
            buf[n] = '\0';
            H5Tclose(mt);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    H5Oclose(o);
    return rc;
}

static int attr_get_num(hid_t loc, const char *obj, const char *key, hid_t mtype, void *v) {
    hid_t o, a = attr_open(loc, obj, key, &o);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(ft);
    hid_t sp = H5Aget_space(a);
    hssize_t npts = H5Sget_simple_extent_npoints(sp);
    int rc = 0;
    if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || npts != 1) rc = tn_err("attribute %s: not a number", key);
    else if (H5Aread(a, mtype, v) < 0) rc = tn_err("attribute %s: read failed", key);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Aclose(a);
    H5Oclose(o);
    return rc;
}

int tn_h5_attr_get_i64(hid_t loc, const char *obj, const char *key, int64_t *value) {
    return attr_get_num(loc, obj, key, H5T_NATIVE_INT64, value);
}

int tn_h5_attr_get_f64(hid_t loc, const char *obj, const char *key, double *value) {
    return attr_get_num(loc, obj, key, H5T_NATIVE_DOUBLE, value);
}
