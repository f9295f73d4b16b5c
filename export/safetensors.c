/* safetensors reader; see safetensors.h for the format and the checks. */
#include "export/safetensors.h"
#include "core/error.h"
#include "export/gguf_dequant.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[TN_ST_DTYPE_COUNT] = {
    [TN_ST_F32] = {"F32", 4},  [TN_ST_F16] = {"F16", 2},   [TN_ST_BF16] = {"BF16", 2},
    [TN_ST_F64] = {"F64", 8},  [TN_ST_I64] = {"I64", 8},   [TN_ST_I32] = {"I32", 4},
    [TN_ST_I16] = {"I16", 2},  [TN_ST_I8] = {"I8", 1},     [TN_ST_U64] = {"U64", 8},
    [TN_ST_U32] = {"U32", 4},  [TN_ST_U16] = {"U16", 2},   [TN_ST_U8] = {"U8", 1},
    [TN_ST_BOOL] = {"BOOL", 1}, [TN_ST_F8_E4M3] = {"F8_E4M3", 1}, [TN_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *tn_st_dtype_name(tn_st_dtype d) { return (unsigned)d < TN_ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
size_t tn_st_dtype_size(tn_st_dtype d) { return (unsigned)d < TN_ST_DTYPE_COUNT ? dtypes[d].size : 0; }

void tn_st_close(tn_safetensors *st) {
    if (st->tensors) {
        for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
        free(st->tensors);
    }
    if (st->path) tn_unmap_file(&st->map);
    free(st->path);
    memset(st, 0, sizeof *st);
    st->map.fd = -1;
}

const tn_st_tensor *tn_st_find(const tn_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_tensor(const cJSON *e, const uint8_t *data, uint64_t data_size, tn_st_tensor *t) {
    if (!cJSON_IsObject(e)) return tn_err("tensor '%s': entry is not a JSON object", t->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return tn_err("tensor '%s': missing or non-string \"dtype\"", t->name);
    int d = -1;
    for (int k = 0; k < TN_ST_DTYPE_COUNT; k++)
        if (strcmp(dt->valuestring, dtypes[k].name) == 0) d = k;
    if (d < 0) return tn_err("tensor '%s': unknown dtype \"%.32s\"", t->name, dt->valuestring);
    t->dtype = (tn_st_dtype)d;
    if (!cJSON_IsArray(sh)) return tn_err("tensor '%s': missing or non-array \"shape\"", t->name);
    int rank = cJSON_GetArraySize(sh);
    if (rank > TN_ST_MAX_RANK) return tn_err("tensor '%s': rank %d (at most %d)", t->name, rank, TN_ST_MAX_RANK);
    t->rank = rank;
    uint64_t numel = 1;
    int k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, sh) {
        uint64_t v;
        if (json_uint(x, &v) != 0) return tn_err("tensor '%s': shape[%d] is not a non-negative integer", t->name, k);
        if (v && numel > (uint64_t)INT64_MAX / v) return tn_err("tensor '%s': element count overflows", t->name);
        numel *= v;
        t->shape[k++] = (int64_t)v;
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return tn_err("tensor '%s': \"data_offsets\" must be [begin, end]", t->name);
    uint64_t b, en;
    if (json_uint(cJSON_GetArrayItem(off, 0), &b) != 0 || json_uint(cJSON_GetArrayItem(off, 1), &en) != 0)
        return tn_err("tensor '%s': data_offsets are not non-negative integers", t->name);
    if (b > en) return tn_err("tensor '%s': data_offsets [%llu, %llu] are reversed", t->name, (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return tn_err("tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%llu bytes)", t->name,
                      (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    size_t es = dtypes[d].size;
    if (numel > UINT64_MAX / es || numel * es != en - b)
        return tn_err("tensor '%s': shape holds %llu x %s = %llu bytes but data_offsets give %llu", t->name,
                      (unsigned long long)numel, dtypes[d].name,
                      numel > UINT64_MAX / es ? 0ull : (unsigned long long)(numel * es), (unsigned long long)(en - b));
    t->data = data + b;
    t->n_bytes = (size_t)(en - b);
    return 0;
}

static int parse(tn_safetensors *st) {
    const uint8_t *p = st->map.data;
    size_t size = st->map.size;
    if (size < 8) return tn_err("file of %zu bytes is too short for a safetensors header", size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | p[i];
    if (n > size - 8)
        return tn_err("header length %llu runs past the end of the file (size %zu)", (unsigned long long)n, size);
    if (n > TN_ST_MAX_HEADER) return tn_err("header length %llu is over the 100 MB limit", (unsigned long long)n);
    if (n < 2 || p[8] != '{') return tn_err("header is not a JSON object");
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)n);
    if (!root) return tn_err("header is not valid JSON");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tn_err("header is not a JSON object");
    }
    const uint8_t *data = p + 8 + n;
    uint64_t data_size = size - 8 - n;
    int count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!e->string) {
            cJSON_Delete(root);
            return tn_err("header entry without a name");
        }
        if (strcmp(e->string, "__metadata__") != 0) count++;
    }
    st->tensors = calloc(count ? (size_t)count : 1, sizeof *st->tensors);
    span *sp = calloc(count ? (size_t)count : 1, sizeof *sp);
    if (!st->tensors || !sp) {
        free(sp);
        cJSON_Delete(root);
        return tn_err("out of memory");
    }
    int rc = 0;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e) && !cJSON_IsNull(e)) {
                rc = tn_err("\"__metadata__\" is not an object");
                break;
            }
            continue;
        }
        tn_st_tensor *t = &st->tensors[st->n_tensors];
        size_t len = strlen(e->string);
        t->name = malloc(len + 1);
        if (!t->name) {
            rc = tn_err("out of memory");
            break;
        }
        memcpy(t->name, e->string, len + 1);
        st->n_tensors++;
        if ((rc = parse_tensor(e, data, data_size, t)) != 0) break;
        sp[st->n_tensors - 1] = (span){(uint64_t)(t->data - data), (uint64_t)(t->data - data) + t->n_bytes, st->n_tensors - 1};
    }
    cJSON_Delete(root);
    if (rc == 0) {
        /* names: JSON allows repeated keys; the format does not */
        for (int i = 1; i < st->n_tensors && rc == 0; i++)
            for (int j = 0; j < i; j++)
                if (strcmp(st->tensors[i].name, st->tensors[j].name) == 0) {
                    rc = tn_err("tensor '%s' appears twice in the header", st->tensors[i].name);
                    break;
                }
    }
    if (rc == 0) {
        qsort(sp, (size_t)st->n_tensors, sizeof *sp, cmp_span);
        int far = 0;
        for (int i = 1; i < st->n_tensors; i++) {
            if (sp[i].end > sp[i].begin && sp[i].begin < sp[far].end) {
                rc = tn_err("tensors '%s' and '%s' overlap in the data section", st->tensors[sp[far].idx].name,
                            st->tensors[sp[i].idx].name);
                break;
            }
            if (sp[i].end > sp[far].end) far = i;
        }
    }
    free(sp);
    return rc;
}

int tn_st_open(const char *path, tn_safetensors *st) {
    memset(st, 0, sizeof *st);
    st->map.fd = -1;
    size_t len = strlen(path);
    char *p = malloc(len + 1);
    if (!p) return tn_err("out of memory");
    memcpy(p, path, len + 1);
    if (tn_map_file(path, &st->map) != 0) {
        free(p);
        memset(st, 0, sizeof *st);
        st->map.fd = -1;
        return -1;
    }
    st->path = p;
    if (parse(st) != 0) {
        tn_st_close(st);
        return tn_err_prefix("%s", path);
    }
    return 0;
}

int tn_st_to_f32(const tn_st_tensor *t, float *dst) {
    const uint8_t *s = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case TN_ST_F32: memcpy(dst, s, n * 4); return 0;
    case TN_ST_F16:
        for (size_t i = 0; i < n; i++) dst[i] = tn_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    case TN_ST_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = tn_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    default:
        return tn_err("tensor '%s': dtype %s is not supported (F32, F16, BF16)", t->name, tn_st_dtype_name(t->dtype));
    }
}

/* ---- writer ---------------------------------------------------------------------------------------------- */

int tn_st_write_f32(const char *path, const tn_st_out *t, int n, const char *const *meta, int n_meta) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return tn_err("out of memory");
    cJSON *md = cJSON_AddObjectToObject(j, "__metadata__");
    for (int k = 0; k + 1 < 2 * n_meta; k += 2) cJSON_AddStringToObject(md, meta[k], meta[k + 1]);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(j, t[i].name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        int64_t numel = 1;
        for (int d = 0; d < t[i].rank; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
            numel *= t[i].shape[d];
        }
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + (uint64_t)numel * 4)));
        off += (uint64_t)numel * 4;
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return tn_err("out of memory");
    /* the header padded with spaces so that the data section starts 8-byte aligned */
    const size_t hn = strlen(text), hlen = (hn + 7) / 8 * 8, total = 8 + hlen + (size_t)off;
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(text);
        return tn_err("out of memory");
    }
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)hlen >> (8 * b));
    memcpy(buf + 8, text, hn);
    memset(buf + 8 + hn, ' ', hlen - hn);
    free(text);
    size_t at = 8 + hlen;
    for (int i = 0; i < n; i++) {
        size_t nb = 4;
        for (int d = 0; d < t[i].rank; d++) nb *= (size_t)t[i].shape[d];
        memcpy(buf + at, t[i].data, nb); /* little-endian host, as everywhere in trinity */
        at += nb;
    }
    int rc = tn_write_file_atomic(path, buf, total);
    free(buf);
    return rc;
}
