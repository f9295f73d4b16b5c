/* GGUF reader and writer. Format: ggml docs/gguf.md (GGUF v2/v3); ggml type block layouts: ggml-common.h
 * (block_q4_0 ... block_iq4_xs) and ggml.c type_traits. See gguf.h for what is checked. */
#include "core/gguf.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_ARRAY_DEPTH 8

/* ---- ggml types ---------------------------------------------------------------------------------- */

static const struct {
    uint32_t type;
    const char *name;
    uint32_t block_elems, block_bytes;
} ggml_types[] = {
    {TN_GGML_F32, "F32", 1, 4},
    {TN_GGML_F16, "F16", 1, 2},
    {TN_GGML_Q4_0, "Q4_0", 32, 18},      /* f16 d, 16 B nibbles */
    {TN_GGML_Q4_1, "Q4_1", 32, 20},      /* f16 d, f16 m, 16 B */
    {TN_GGML_Q5_0, "Q5_0", 32, 22},      /* f16 d, 4 B high bits, 16 B */
    {TN_GGML_Q5_1, "Q5_1", 32, 24},
    {TN_GGML_Q8_0, "Q8_0", 32, 34},      /* f16 d, 32 x int8 */
    {TN_GGML_Q8_1, "Q8_1", 32, 36},
    {TN_GGML_Q2_K, "Q2_K", 256, 84},
    {TN_GGML_Q3_K, "Q3_K", 256, 110},
    {TN_GGML_Q4_K, "Q4_K", 256, 144},    /* f16 d, f16 dmin, 12 B scales, 128 B nibbles */
    {TN_GGML_Q5_K, "Q5_K", 256, 176},
    {TN_GGML_Q6_K, "Q6_K", 256, 210},    /* 128 B ql, 64 B qh, 16 x int8 scales, f16 d */
    {TN_GGML_Q8_K, "Q8_K", 256, 292},
    {TN_GGML_IQ2_XXS, "IQ2_XXS", 256, 66},
    {TN_GGML_IQ2_XS, "IQ2_XS", 256, 74},
    {TN_GGML_IQ3_XXS, "IQ3_XXS", 256, 98},
    {TN_GGML_IQ1_S, "IQ1_S", 256, 50},
    {TN_GGML_IQ4_NL, "IQ4_NL", 32, 18},
    {TN_GGML_IQ3_S, "IQ3_S", 256, 110},
    {TN_GGML_IQ2_S, "IQ2_S", 256, 82},
    {TN_GGML_IQ4_XS, "IQ4_XS", 256, 136},
    {TN_GGML_I8, "I8", 1, 1},
    {TN_GGML_I16, "I16", 1, 2},
    {TN_GGML_I32, "I32", 1, 4},
    {TN_GGML_I64, "I64", 1, 8},
    {TN_GGML_F64, "F64", 1, 8},
    {TN_GGML_IQ1_M, "IQ1_M", 256, 56},
    {TN_GGML_BF16, "BF16", 1, 2},
    {TN_GGML_TQ1_0, "TQ1_0", 256, 54},
    {TN_GGML_TQ2_0, "TQ2_0", 256, 66},
    {TN_GGML_MXFP4, "MXFP4", 32, 17},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

int tn_ggml_type_layout(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes) {
    for (size_t i = 0; i < N_GGML_TYPES; i++)
        if (ggml_types[i].type == type) {
            if (block_elems) *block_elems = ggml_types[i].block_elems;
            if (block_bytes) *block_bytes = ggml_types[i].block_bytes;
            return 0;
        }
    return -1;
}

const char *tn_ggml_type_name(uint32_t type) {
    for (size_t i = 0; i < N_GGML_TYPES; i++)
        if (ggml_types[i].type == type) return ggml_types[i].name;
    return "unknown";
}

static const char *const gguf_type_names[TN_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

const char *tn_gguf_type_name(uint32_t type) {
    return type < TN_GGUF_TYPE_COUNT ? gguf_type_names[type] : "unknown";
}

/* Size of a fixed-size value type, 0 for STRING / ARRAY / unknown. */
static size_t value_size(uint32_t type) {
    switch (type) {
    case TN_GGUF_UINT8: case TN_GGUF_INT8: case TN_GGUF_BOOL: return 1;
    case TN_GGUF_UINT16: case TN_GGUF_INT16: return 2;
    case TN_GGUF_UINT32: case TN_GGUF_INT32: case TN_GGUF_FLOAT32: return 4;
    case TN_GGUF_UINT64: case TN_GGUF_INT64: case TN_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- a bounds-checked cursor over the map -------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
} cursor;

static size_t left(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, size_t n, const char *what) {
    if (n > left(c))
        return tn_err("truncated at byte %zu reading %s (need %zu bytes, %zu left)", c->pos, what, n, left(c));
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    TN_CHECK(need(c, 4, what));
    const uint8_t *b = c->p + c->pos;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    c->pos += 4;
    return 0;
}

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    TN_CHECK(need(c, 8, what));
    *v = le64(c->p + c->pos);
    c->pos += 8;
    return 0;
}

static int rd_str(cursor *c, const char **s, size_t *len, const char *what) {
    uint64_t n;
    TN_CHECK(rd_u64(c, &n, what));
    if (n > left(c))
        return tn_err("%s at byte %zu: string length %llu runs past the end of the file", what, c->pos - 8,
                      (unsigned long long)n);
    *s = (const char *)c->p + c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return 0;
}

static char *dup_str(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) {
        tn_err("out of memory (%zu bytes)", n + 1);
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Read a fixed-size scalar of `type` from b into kv->num. */
static void decode_scalar(uint32_t type, const uint8_t *b, tn_gguf_kv *kv) {
    uint64_t raw = 0;
    size_t n = value_size(type);
    for (size_t i = 0; i < n; i++) raw |= (uint64_t)b[i] << (8 * i);
    switch (type) {
    case TN_GGUF_UINT8: case TN_GGUF_UINT16: case TN_GGUF_UINT32: case TN_GGUF_UINT64: kv->num.u = raw; break;
    case TN_GGUF_BOOL: kv->num.u = raw != 0; break;
    case TN_GGUF_INT8: kv->num.i = (int8_t)raw; break;
    case TN_GGUF_INT16: kv->num.i = (int16_t)raw; break;
    case TN_GGUF_INT32: kv->num.i = (int32_t)(uint32_t)raw; break;
    case TN_GGUF_INT64: kv->num.i = (int64_t)raw; break;
    case TN_GGUF_FLOAT32: {
        uint32_t u = (uint32_t)raw;
        float f;
        memcpy(&f, &u, 4);
        kv->num.f = f;
        break;
    }
    case TN_GGUF_FLOAT64: memcpy(&kv->num.f, &raw, 8); break;
    default: break;
    }
}

static void free_value(tn_gguf_kv *kv) {
    if (kv->items) {
        for (uint64_t i = 0; i < kv->arr_len; i++) free_value(&kv->items[i]);
        free(kv->items);
        kv->items = NULL;
    }
}

/* Parse a value of `type` at the cursor into kv (whose key is already set). */
static int parse_value(cursor *c, uint32_t type, tn_gguf_kv *kv, int depth) {
    kv->type = type;
    size_t vs = value_size(type);
    if (vs) {
        TN_CHECK(need(c, vs, "a value"));
        decode_scalar(type, c->p + c->pos, kv);
        if (type == TN_GGUF_BOOL && c->p[c->pos] > 1)
            return tn_err("bool value at byte %zu is %u (must be 0 or 1)", c->pos, c->p[c->pos]);
        c->pos += vs;
        return 0;
    }
    if (type == TN_GGUF_STRING) return rd_str(c, &kv->str, &kv->str_len, "a string value");
    if (type != TN_GGUF_ARRAY) return tn_err("value type %u at byte %zu is not a GGUF type", type, c->pos - 4);

    if (depth >= GGUF_MAX_ARRAY_DEPTH) return tn_err("arrays nested deeper than %d", GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    TN_CHECK(rd_u32(c, &et, "an array element type"));
    TN_CHECK(rd_u64(c, &n, "an array length"));
    kv->arr_type = et;
    size_t es = value_size(et);
    if (es) {
        if (n > left(c) / es)
            return tn_err("array of %llu %s at byte %zu runs past the end of the file", (unsigned long long)n,
                          tn_gguf_type_name(et), c->pos);
        kv->arr_len = n;
        kv->arr_data = c->p + c->pos;
        if (et == TN_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (kv->arr_data[i] > 1) return tn_err("bool array element %llu is not 0 or 1", (unsigned long long)i);
        c->pos += (size_t)(n * es);
        return 0;
    }
    if (et != TN_GGUF_STRING && et != TN_GGUF_ARRAY)
        return tn_err("array element type %u at byte %zu is not a GGUF type", et, c->pos - 12);
    /* every string element needs >= 8 bytes, every nested array >= 12 */
    size_t min_elem = et == TN_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min_elem)
        return tn_err("array of %llu %s at byte %zu runs past the end of the file", (unsigned long long)n,
                      tn_gguf_type_name(et), c->pos);
    kv->items = calloc(n ? (size_t)n : 1, sizeof *kv->items);
    if (!kv->items) return tn_err("out of memory (array of %llu)", (unsigned long long)n);
    kv->arr_len = n;
    for (uint64_t i = 0; i < n; i++) {
        if (parse_value(c, et, &kv->items[i], depth + 1) != 0)
            return tn_err_prefix("array element %llu", (unsigned long long)i);
    }
    return 0;
}

/* ---- open / close -------------------------------------------------------------------------------- */

void tn_gguf_close(tn_gguf *g) {
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free_value(&g->kv[i]);
        }
        free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
        free(g->tensors);
    }
    if (g->path) tn_unmap_file(&g->map); /* only tn_gguf_open maps (and sets path) */
    free(g->path);
    memset(g, 0, sizeof *g);
    g->map.fd = -1;
}

/* qsort has no context argument in C11: sort (offset, index) pairs instead. */
typedef struct {
    uint64_t off, end, idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse(tn_gguf *g, const uint8_t *data, size_t size) {
    cursor c = {data, size, 0};
    if (size < 4 || memcmp(data, GGUF_MAGIC, 4) != 0) return tn_err("not a GGUF file (bad magic)");
    c.pos = 4;
    TN_CHECK(rd_u32(&c, &g->version, "the version"));
    if (g->version == 1) return tn_err("GGUF version 1 is not supported (convert it with a newer llama.cpp)");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xFFFF) == 0) return tn_err("big-endian GGUF is not supported");
        return tn_err("unsupported GGUF version %u", g->version);
    }
    uint64_t n_tensors, n_kv;
    TN_CHECK(rd_u64(&c, &n_tensors, "the tensor count"));
    TN_CHECK(rd_u64(&c, &n_kv, "the metadata count"));
    /* A key/value pair takes >= 13 bytes, a tensor info >= 24: bound the counts before allocating. */
    if (n_kv > left(&c) / 13) return tn_err("metadata count %llu is larger than the file", (unsigned long long)n_kv);
    if (n_tensors > left(&c) / 24)
        return tn_err("tensor count %llu is larger than the file", (unsigned long long)n_tensors);

    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    if (!g->kv) return tn_err("out of memory");
    g->alignment = TN_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        tn_gguf_kv *kv = &g->kv[i];
        const char *k;
        size_t klen;
        uint32_t type;
        if (rd_str(&c, &k, &klen, "a metadata key") != 0)
            return tn_err_prefix("metadata %llu", (unsigned long long)i);
        if (!(kv->key = dup_str(k, klen))) return -1;
        g->n_kv = i + 1;
        if (klen == 0 || memchr(k, 0, klen)) return tn_err("metadata %llu: empty key or key with a NUL byte", (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key, kv->key) == 0) return tn_err("duplicate metadata key '%s'", kv->key);
        if (rd_u32(&c, &type, "a value type") != 0 || parse_value(&c, type, kv, 0) != 0)
            return tn_err_prefix("metadata '%s'", kv->key);
    }
    const tn_gguf_kv *al = tn_gguf_find(g, "general.alignment");
    if (al) {
        uint32_t a;
        if (tn_gguf_get_u32(g, "general.alignment", &a) != 0) return -1;
        if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 24))
            return tn_err("general.alignment %u is not a power of two in [1, 2^24]", a);
        g->alignment = a;
    }

    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) return tn_err("out of memory");
    for (uint64_t i = 0; i < n_tensors; i++) {
        tn_gguf_tensor *t = &g->tensors[i];
        const char *nm;
        size_t nlen;
        if (rd_str(&c, &nm, &nlen, "a tensor name") != 0) return tn_err_prefix("tensor %llu", (unsigned long long)i);
        if (!(t->name = dup_str(nm, nlen))) return -1;
        g->n_tensors = i + 1;
        if (nlen == 0 || memchr(nm, 0, nlen)) return tn_err("tensor %llu: empty name or name with a NUL byte", (unsigned long long)i);
        if (rd_u32(&c, &t->n_dims, "n_dims") != 0) return tn_err_prefix("tensor '%s'", t->name);
        if (t->n_dims > TN_GGUF_MAX_DIMS)
            return tn_err("tensor '%s': %u dimensions (at most %d)", t->name, t->n_dims, TN_GGUF_MAX_DIMS);
        uint64_t n = 1;
        for (int d = 0; d < TN_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd_u64(&c, &t->ne[d], "a dimension") != 0) return tn_err_prefix("tensor '%s'", t->name);
            if (t->ne[d] > (uint64_t)INT64_MAX) return tn_err("tensor '%s': dimension %u is negative", t->name, d);
            if (t->ne[d] != 0 && n > (uint64_t)INT64_MAX / t->ne[d])
                return tn_err("tensor '%s': element count overflows", t->name);
            n *= t->ne[d];
        }
        t->n_elements = n;
        if (rd_u32(&c, &t->type, "the type") != 0 || rd_u64(&c, &t->offset, "the offset") != 0)
            return tn_err_prefix("tensor '%s'", t->name);
        if (t->offset % g->alignment)
            return tn_err("tensor '%s': offset %llu is not a multiple of the alignment %u", t->name,
                          (unsigned long long)t->offset, g->alignment);
    }
    /* Duplicate names: sort pointers would be faster; files have at most a few thousand tensors. */
    for (uint64_t i = 1; i < n_tensors; i++)
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->tensors[i].name, g->tensors[j].name) == 0)
                return tn_err("duplicate tensor name '%s'", g->tensors[i].name);

    /* Data section: the tensor-info end rounded up to the alignment. A file without tensors may end
     * before the padding. */
    size_t end = c.pos;
    size_t pad = (g->alignment - end % g->alignment) % g->alignment;
    if (pad > size - end) {
        if (n_tensors) return tn_err("truncated: the file ends inside the padding before the data section");
        pad = size - end;
    }
    g->data_offset = end + pad;
    size_t data_size = size - g->data_offset;

    span *sp = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *sp);
    if (!sp) return tn_err("out of memory");
    size_t n_sp = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        tn_gguf_tensor *t = &g->tensors[i];
        uint32_t be, bb;
        if (t->offset > data_size) {
            free(sp);
            return tn_err("tensor '%s': offset %llu is past the end of the file", t->name,
                          (unsigned long long)t->offset);
        }
        if (tn_ggml_type_layout(t->type, &be, &bb) != 0) continue; /* reported when its data is asked for */
        if (t->ne[0] % be) {
            free(sp);
            return tn_err("tensor '%s': row length %llu is not a multiple of the %s block size %u", t->name,
                          (unsigned long long)t->ne[0], tn_ggml_type_name(t->type), be);
        }
        uint64_t blocks = t->n_elements / be;
        if (blocks > (uint64_t)INT64_MAX / bb || blocks * bb > data_size - t->offset) {
            free(sp);
            return tn_err("tensor '%s': %llu elements of %s run past the end of the file", t->name,
                          (unsigned long long)t->n_elements, tn_ggml_type_name(t->type));
        }
        t->n_bytes = blocks * bb;
        t->data = data + g->data_offset + t->offset;
        sp[n_sp++] = (span){t->offset, t->offset + t->n_bytes, i};
    }
    qsort(sp, n_sp, sizeof *sp, cmp_span);
    /* sorted by start: a tensor overlaps an earlier one iff it starts before the furthest end so far */
    size_t far = 0;
    for (size_t i = 1; i < n_sp; i++) {
        if (sp[i].end > sp[i].off && sp[i].off < sp[far].end) {
            const char *a = g->tensors[sp[far].idx].name, *b = g->tensors[sp[i].idx].name;
            free(sp);
            return tn_err("tensors '%s' and '%s' overlap", a, b);
        }
        if (sp[i].end > sp[far].end) far = i;
    }
    free(sp);
    return 0;
}

int tn_gguf_open_buffer(const void *data, size_t size, tn_gguf *g) {
    memset(g, 0, sizeof *g);
    g->map.fd = -1;
    if (parse(g, data, size) != 0) {
        tn_gguf_close(g);
        return -1;
    }
    return 0;
}

int tn_gguf_open(const char *path, tn_gguf *g) {
    memset(g, 0, sizeof *g);
    g->map.fd = -1;
    char *p = dup_str(path, strlen(path));
    if (!p) return -1;
    if (tn_map_file(path, &g->map) != 0) {
        free(p);
        memset(g, 0, sizeof *g);
        g->map.fd = -1;
        return -1;
    }
    g->path = p;
    if (parse(g, g->map.data, g->map.size) != 0) {
        tn_gguf_close(g);
        return tn_err_prefix("%s", path);
    }
    return 0;
}

/* ---- lookups --------------------------------------------------------------------------------------- */

const tn_gguf_kv *tn_gguf_find(const tn_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const tn_gguf_tensor *tn_gguf_find_tensor(const tn_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

int tn_gguf_tensor_data(const tn_gguf_tensor *t, const uint8_t **data, size_t *n_bytes) {
    if (!t->data) return tn_err("tensor '%s': ggml type %u (%s) is not supported", t->name, t->type, tn_ggml_type_name(t->type));
    *data = t->data;
    *n_bytes = (size_t)t->n_bytes;
    return 0;
}

static int is_uint(uint32_t t) {
    return t == TN_GGUF_UINT8 || t == TN_GGUF_UINT16 || t == TN_GGUF_UINT32 || t == TN_GGUF_UINT64;
}
static int is_sint(uint32_t t) {
    return t == TN_GGUF_INT8 || t == TN_GGUF_INT16 || t == TN_GGUF_INT32 || t == TN_GGUF_INT64;
}

static const tn_gguf_kv *need_key(const tn_gguf *g, const char *key) {
    const tn_gguf_kv *kv = tn_gguf_find(g, key);
    if (!kv) tn_err("gguf: key %s: missing", key);
    return kv;
}

static int wrong_type(const char *key, const char *want, uint32_t got) {
    return tn_err("gguf: key %s: expected %s, found %s", key, want, tn_gguf_type_name(got));
}

/* Integer value of kv as a signed range check: ok when in [lo, hi]. */
static int int_value(const tn_gguf_kv *kv, const char *key, const char *want, int64_t lo, uint64_t hi, int64_t *out) {
    if (is_uint(kv->type)) {
        if (kv->num.u > hi) return tn_err("gguf: key %s: value %llu does not fit in %s", key, (unsigned long long)kv->num.u, want);
        *out = (int64_t)kv->num.u;
        return 0;
    }
    if (is_sint(kv->type)) {
        if (kv->num.i < lo || (kv->num.i > 0 && (uint64_t)kv->num.i > hi))
            return tn_err("gguf: key %s: value %lld does not fit in %s", key, (long long)kv->num.i, want);
        *out = kv->num.i;
        return 0;
    }
    return wrong_type(key, want, kv->type);
}

int tn_gguf_get_u32(const tn_gguf *g, const char *key, uint32_t *out) {
    const tn_gguf_kv *kv = need_key(g, key);
    int64_t v = 0;
    if (!kv || int_value(kv, key, "u32", 0, UINT32_MAX, &v) != 0) return -1;
    *out = (uint32_t)v;
    return 0;
}

int tn_gguf_get_i64(const tn_gguf *g, const char *key, int64_t *out) {
    const tn_gguf_kv *kv = need_key(g, key);
    if (!kv) return -1;
    return int_value(kv, key, "i64", INT64_MIN, INT64_MAX, out);
}

int tn_gguf_get_f32(const tn_gguf *g, const char *key, float *out) {
    const tn_gguf_kv *kv = need_key(g, key);
    if (!kv) return -1;
    if (kv->type == TN_GGUF_FLOAT32 || kv->type == TN_GGUF_FLOAT64) *out = (float)kv->num.f;
    else if (is_uint(kv->type)) *out = (float)kv->num.u;
    else if (is_sint(kv->type)) *out = (float)kv->num.i;
    else return wrong_type(key, "f32", kv->type);
    return 0;
}

int tn_gguf_get_bool(const tn_gguf *g, const char *key, int *out) {
    const tn_gguf_kv *kv = need_key(g, key);
    if (!kv) return -1;
    if (kv->type != TN_GGUF_BOOL) return wrong_type(key, "bool", kv->type);
    *out = kv->num.u != 0;
    return 0;
}

int tn_gguf_get_str(const tn_gguf *g, const char *key, const char **s, size_t *len) {
    const tn_gguf_kv *kv = need_key(g, key);
    if (!kv) return -1;
    if (kv->type != TN_GGUF_STRING) return wrong_type(key, "string", kv->type);
    *s = kv->str;
    *len = kv->str_len;
    return 0;
}

int tn_gguf_get_arr(const tn_gguf *g, const char *key, int elem_type, const tn_gguf_kv **arr) {
    const tn_gguf_kv *kv = need_key(g, key);
    if (!kv) return -1;
    if (kv->type != TN_GGUF_ARRAY) return wrong_type(key, "array", kv->type);
    if (elem_type >= 0 && kv->arr_type != (uint32_t)elem_type)
        return tn_err("gguf: key %s: expected an array of %s, found an array of %s", key,
                      tn_gguf_type_name((uint32_t)elem_type), tn_gguf_type_name(kv->arr_type));
    *arr = kv;
    return 0;
}

uint64_t tn_gguf_arr_len(const tn_gguf_kv *kv) { return kv && kv->type == TN_GGUF_ARRAY ? kv->arr_len : 0; }

static const char *kv_name(const tn_gguf_kv *kv) { return kv->key ? kv->key : "(array element)"; }

static int check_index(const tn_gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != TN_GGUF_ARRAY) return tn_err("gguf: not an array");
    if (i >= kv->arr_len)
        return tn_err("gguf: key %s: index %llu out of range (length %llu)", kv_name(kv), (unsigned long long)i,
                      (unsigned long long)kv->arr_len);
    return 0;
}

int tn_gguf_arr_str(const tn_gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    TN_CHECK(check_index(kv, i));
    if (kv->arr_type != TN_GGUF_STRING)
        return tn_err("gguf: key %s: expected an array of string, found an array of %s", kv_name(kv),
                      tn_gguf_type_name(kv->arr_type));
    *s = kv->items[i].str;
    *len = kv->items[i].str_len;
    return 0;
}

const tn_gguf_kv *tn_gguf_arr_item(const tn_gguf_kv *kv, uint64_t i) {
    if (check_index(kv, i) != 0) return NULL;
    if (!kv->items) {
        tn_err("gguf: key %s: elements of type %s are not items", kv_name(kv), tn_gguf_type_name(kv->arr_type));
        return NULL;
    }
    return &kv->items[i];
}

static int arr_elem(const tn_gguf_kv *kv, uint64_t i, tn_gguf_kv *out) {
    TN_CHECK(check_index(kv, i));
    size_t es = value_size(kv->arr_type);
    if (!es) return tn_err("gguf: key %s: array of %s has no numbers", kv_name(kv), tn_gguf_type_name(kv->arr_type));
    memset(out, 0, sizeof *out);
    out->type = kv->arr_type;
    decode_scalar(kv->arr_type, kv->arr_data + i * es, out);
    return 0;
}

float tn_gguf_arr_f32(const tn_gguf_kv *kv, uint64_t i) {
    tn_gguf_kv e = {0};
    if (arr_elem(kv, i, &e) != 0) return 0.0f;
    if (e.type == TN_GGUF_FLOAT32 || e.type == TN_GGUF_FLOAT64) return (float)e.num.f;
    if (is_uint(e.type)) return (float)e.num.u;
    if (is_sint(e.type)) return (float)e.num.i;
    tn_err("gguf: key %s: expected numbers, found %s", kv_name(kv), tn_gguf_type_name(e.type));
    return 0.0f;
}

int32_t tn_gguf_arr_i32(const tn_gguf_kv *kv, uint64_t i) {
    tn_gguf_kv e = {0};
    int64_t v = 0;
    if (arr_elem(kv, i, &e) != 0) return 0;
    if (int_value(&e, kv_name(kv), "i32", INT32_MIN, INT32_MAX, &v) != 0) return 0;
    return (int32_t)v;
}

/* ---- writing metadata back out ----------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void w_put(wbuf *b, const void *d, size_t n) {
    if (b->oom || n == 0) return; /* d may be NULL then (an empty buffer) */
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void w_u32(wbuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    w_put(b, x, 4);
}

static void w_u64(wbuf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    w_put(b, x, 8);
}

static void w_str(wbuf *b, const char *s, size_t n) {
    w_u64(b, n);
    w_put(b, s, n);
}

/* The value only (its type word is written by the caller). */
static void w_value(wbuf *b, const tn_gguf_kv *kv) {
    size_t vs = value_size(kv->type);
    if (vs) {
        uint8_t x[8];
        uint64_t raw = 0;
        if (kv->type == TN_GGUF_FLOAT32) {
            float f = (float)kv->num.f;
            uint32_t u;
            memcpy(&u, &f, 4);
            raw = u;
        } else if (kv->type == TN_GGUF_FLOAT64) {
            memcpy(&raw, &kv->num.f, 8);
        } else if (is_sint(kv->type)) {
            raw = (uint64_t)kv->num.i;
        } else {
            raw = kv->num.u;
        }
        for (size_t i = 0; i < vs; i++) x[i] = (uint8_t)(raw >> (8 * i));
        w_put(b, x, vs);
    } else if (kv->type == TN_GGUF_STRING) {
        w_str(b, kv->str, kv->str_len);
    } else if (kv->type == TN_GGUF_ARRAY) {
        w_u32(b, kv->arr_type);
        w_u64(b, kv->arr_len);
        size_t es = value_size(kv->arr_type);
        if (es) w_put(b, kv->arr_data, (size_t)kv->arr_len * es);
        else /* strings and nested arrays: each item carries its own type (set by parse_value) */
            for (uint64_t i = 0; i < kv->arr_len; i++) w_value(b, &kv->items[i]);
    }
}

int tn_gguf_write_meta(const tn_gguf *g, const char *const *prefixes, int n_prefixes, uint8_t **out, size_t *len) {
    wbuf b = {0};
    uint64_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            w_put(&b, GGUF_MAGIC, 4);
            w_u32(&b, 3);
            w_u64(&b, 0); /* tensors */
            w_u64(&b, n);
        }
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const tn_gguf_kv *kv = &g->kv[i];
            int match = 0;
            for (int k = 0; k < n_prefixes && !match; k++)
                match = strncmp(kv->key, prefixes[k], strlen(prefixes[k])) == 0;
            if (!match) continue;
            if (pass == 0) {
                n++;
                continue;
            }
            w_str(&b, kv->key, strlen(kv->key));
            w_u32(&b, kv->type);
            w_value(&b, kv);
        }
    }
    if (b.oom) {
        free(b.p);
        return tn_err("gguf: out of memory writing metadata");
    }
    *out = b.p;
    *len = b.n;
    return 0;
}

/* ---- the writer (gguf.h) ------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    uint32_t n_dims, type;
    uint64_t ne[TN_GGUF_MAX_DIMS];
    uint8_t *data;
    size_t n_bytes;
    int own;
} wtensor;

struct tn_gguf_writer {
    wbuf meta;         /* the serialized pairs, in the order added */
    char **keys;       /* [n_kv] */
    uint64_t n_kv, cap_keys;
    wtensor *t;        /* [n_t] */
    uint64_t n_t, cap_t;
};

tn_gguf_writer *tn_gguf_writer_new(void) {
    tn_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) tn_err("gguf writer: out of memory");
    return w;
}

void tn_gguf_writer_free(tn_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        if (w->t[i].own) free(w->t[i].data);
    }
    free(w->t);
    free(w->meta.p);
    free(w);
}

int tn_gguf_writer_has(const tn_gguf_writer *w, const char *key) {
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return 1;
    return 0;
}

uint64_t tn_gguf_writer_n_tensors(const tn_gguf_writer *w) { return w->n_t; }

/* Start a pair: check the key, reserve its slot, write key and type. The caller writes the value and
 * calls end_kv, which keeps the pair or (on out of memory) rolls the buffer back. */
static int begin_kv(tn_gguf_writer *w, const char *key, uint32_t type, size_t *mark) {
    size_t klen = strlen(key);
    if (klen == 0) return tn_err("gguf writer: empty key");
    if (strcmp(key, "general.alignment") == 0) /* the layout is the writer's: always the default 32 */
        return tn_err("gguf writer: general.alignment is not written (the writer aligns to %d)", TN_GGUF_DEFAULT_ALIGNMENT);
    if (tn_gguf_writer_has(w, key)) return tn_err("gguf writer: duplicate key '%s'", key);
    if (w->n_kv == w->cap_keys) {
        uint64_t cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (!k) return tn_err("gguf writer: out of memory");
        w->keys = k;
        w->cap_keys = cap;
    }
    *mark = w->meta.n;
    w_str(&w->meta, key, klen);
    w_u32(&w->meta, type);
    return 0;
}

static int end_kv(tn_gguf_writer *w, const char *key, size_t mark) {
    char *k = w->meta.oom ? NULL : dup_str(key, strlen(key));
    if (!k) {
        w->meta.n = mark;
        w->meta.oom = 0;
        return tn_err("gguf writer: out of memory adding '%s'", key);
    }
    w->keys[w->n_kv++] = k;
    return 0;
}

/* One fixed-size value of `type` from host memory, little-endian. */
static void w_scalar(wbuf *b, uint32_t type, const void *v) {
    size_t n = value_size(type);
    uint64_t raw = 0;
    switch (n) {
    case 1: { uint8_t x; memcpy(&x, v, 1); raw = x; break; }
    case 2: { uint16_t x; memcpy(&x, v, 2); raw = x; break; }
    case 4: { uint32_t x; memcpy(&x, v, 4); raw = x; break; }
    default: memcpy(&raw, v, 8); break;
    }
    uint8_t x[8];
    for (size_t i = 0; i < n; i++) x[i] = (uint8_t)(raw >> (8 * i));
    w_put(b, x, n);
}

static int put_scalar(tn_gguf_writer *w, const char *key, uint32_t type, const void *v) {
    size_t mark;
    TN_CHECK(begin_kv(w, key, type, &mark));
    w_scalar(&w->meta, type, v);
    return end_kv(w, key, mark);
}

int tn_gguf_writer_u32(tn_gguf_writer *w, const char *key, uint32_t v) { return put_scalar(w, key, TN_GGUF_UINT32, &v); }
int tn_gguf_writer_i32(tn_gguf_writer *w, const char *key, int32_t v) { return put_scalar(w, key, TN_GGUF_INT32, &v); }
int tn_gguf_writer_f32(tn_gguf_writer *w, const char *key, float v) { return put_scalar(w, key, TN_GGUF_FLOAT32, &v); }
int tn_gguf_writer_bool(tn_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return put_scalar(w, key, TN_GGUF_BOOL, &b);
}

int tn_gguf_writer_str(tn_gguf_writer *w, const char *key, const char *s, size_t len) {
    size_t mark;
    TN_CHECK(begin_kv(w, key, TN_GGUF_STRING, &mark));
    w_str(&w->meta, s, len);
    return end_kv(w, key, mark);
}

int tn_gguf_writer_arr(tn_gguf_writer *w, const char *key, uint32_t elem_type, const void *values, uint64_t n) {
    size_t es = value_size(elem_type);
    if (!es) return tn_err("gguf writer: '%s': %s is not a fixed-size type", key, tn_gguf_type_name(elem_type));
    if (elem_type == TN_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)values)[i] > 1) return tn_err("gguf writer: '%s': bool element %llu is not 0 or 1", key, (unsigned long long)i);
    size_t mark;
    TN_CHECK(begin_kv(w, key, TN_GGUF_ARRAY, &mark));
    w_u32(&w->meta, elem_type);
    w_u64(&w->meta, n);
    for (uint64_t i = 0; i < n && !w->meta.oom; i++) w_scalar(&w->meta, elem_type, (const uint8_t *)values + i * es);
    return end_kv(w, key, mark);
}

int tn_gguf_writer_arr_str(tn_gguf_writer *w, const char *key, const char *const *s, const size_t *len, uint64_t n) {
    size_t mark;
    TN_CHECK(begin_kv(w, key, TN_GGUF_ARRAY, &mark));
    w_u32(&w->meta, TN_GGUF_STRING);
    w_u64(&w->meta, n);
    for (uint64_t i = 0; i < n && !w->meta.oom; i++) w_str(&w->meta, s[i], len[i]);
    return end_kv(w, key, mark);
}

int tn_gguf_writer_copy(tn_gguf_writer *w, const tn_gguf_kv *kv) {
    if (!kv->key) return tn_err("gguf writer: an array element has no key");
    size_t mark;
    TN_CHECK(begin_kv(w, kv->key, kv->type, &mark));
    w_value(&w->meta, kv);
    return end_kv(w, kv->key, mark);
}

int tn_gguf_writer_tensor(tn_gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                          void *data, size_t n_bytes, int own) {
    int rc = 0;
    uint32_t be = 0, bb = 0;
    uint64_t n = 1;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 63) rc = tn_err("gguf writer: tensor name '%s' is empty or longer than 63 bytes", name);
    for (uint64_t i = 0; rc == 0 && i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) rc = tn_err("gguf writer: duplicate tensor '%s'", name);
    if (rc == 0 && (n_dims < 1 || n_dims > TN_GGUF_MAX_DIMS))
        rc = tn_err("gguf writer: tensor '%s': %u dimensions (1 to %d)", name, n_dims, TN_GGUF_MAX_DIMS);
    if (rc == 0 && tn_ggml_type_layout(type, &be, &bb) != 0) rc = tn_err("gguf writer: tensor '%s': unknown ggml type %u", name, type);
    for (uint32_t d = 0; rc == 0 && d < n_dims; d++) {
        if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX / n) rc = tn_err("gguf writer: tensor '%s': bad dimension %u", name, d);
        else n *= ne[d];
    }
    if (rc == 0 && ne[0] % be)
        rc = tn_err("gguf writer: tensor '%s': row length %llu is not a multiple of the %s block size %u", name,
                    (unsigned long long)ne[0], tn_ggml_type_name(type), be);
    if (rc == 0 && (n / be > SIZE_MAX / bb || n / be * bb != n_bytes))
        rc = tn_err("gguf writer: tensor '%s': %zu bytes for %llu values of %s", name, n_bytes, (unsigned long long)n,
                    tn_ggml_type_name(type));
    if (rc == 0 && w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) rc = tn_err("gguf writer: out of memory");
        else w->t = t, w->cap_t = cap;
    }
    char *nm = rc == 0 ? dup_str(name, nlen) : NULL;
    if (!nm) {
        if (own) free(data);
        return -1;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->n_dims = n_dims;
    for (int d = 0; d < TN_GGUF_MAX_DIMS; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->type = type;
    t->data = data;
    t->n_bytes = n_bytes;
    t->own = own;
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Header, pairs and tensor infos (without the padding after them). */
static int build_header(const tn_gguf_writer *w, wbuf *h) {
    memset(h, 0, sizeof *h);
    w_put(h, GGUF_MAGIC, 4);
    w_u32(h, 3);
    w_u64(h, w->n_t);
    w_u64(h, w->n_kv);
    w_put(h, w->meta.p, w->meta.n);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        w_str(h, t->name, strlen(t->name));
        w_u32(h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) w_u64(h, t->ne[d]);
        w_u32(h, t->type);
        w_u64(h, off);
        off = align_up(off + t->n_bytes, TN_GGUF_DEFAULT_ALIGNMENT);
    }
    if (h->oom) {
        free(h->p);
        return tn_err("gguf writer: out of memory");
    }
    return 0;
}

typedef int (*sink_fn)(void *ctx, const void *p, size_t n);

static int emit(const tn_gguf_writer *w, sink_fn put, void *ctx) {
    static const uint8_t zeros[TN_GGUF_DEFAULT_ALIGNMENT];
    wbuf h;
    TN_CHECK(build_header(w, &h));
    uint64_t pos = h.n;
    int rc = put(ctx, h.p, h.n);
    free(h.p);
    /* each tensor at the next multiple of the alignment; the data section starts at the first one (a
     * tensor-less file ends right after its pairs, as tn_gguf_open accepts) */
    for (uint64_t i = 0; rc == 0 && i < w->n_t; i++) {
        uint64_t pad = align_up(pos, TN_GGUF_DEFAULT_ALIGNMENT) - pos;
        if (pad) rc = put(ctx, zeros, (size_t)pad);
        pos += pad;
        if (rc == 0 && w->t[i].n_bytes) rc = put(ctx, w->t[i].data, w->t[i].n_bytes);
        pos += w->t[i].n_bytes;
    }
    return rc;
}

static int put_mem(void *ctx, const void *p, size_t n) {
    wbuf *b = ctx;
    w_put(b, p, n);
    return b->oom ? tn_err("gguf writer: out of memory") : 0;
}

static int put_file(void *ctx, const void *p, size_t n) {
    return fwrite(p, 1, n, (FILE *)ctx) == n ? 0 : tn_err("write failed: %s", strerror(errno));
}

int tn_gguf_writer_to_memory(const tn_gguf_writer *w, uint8_t **out, size_t *len) {
    wbuf b = {0};
    if (emit(w, put_mem, &b) != 0) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.n;
    return 0;
}

int tn_gguf_writer_write(const tn_gguf_writer *w, const char *path) {
    char *tmp = tn_tmp_path_for(path);
    if (!tmp) return tn_err_prefix("%s", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        tn_err("%s: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = emit(w, put_file, f);
    int e = errno;
    if (fclose(f) != 0 && rc == 0) {
        e = errno;
        rc = tn_err("write failed: %s", strerror(e));
    }
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return tn_err_prefix("%s", path);
    }
    rc = tn_commit_file(tmp, path);
    free(tmp);
    return rc;
}
