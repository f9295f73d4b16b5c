/* TRIN reader and writer. The byte layout is docs/TRIN.md; this file is its executable form.
 *
 * Reading is in three stages, each trusting only what the previous one proved:
 *   1. the fixed preamble (magic, version, sizes) against the real file size, then the header CRC;
 *   2. the parse of the header through a bounds-checked cursor, every field range-checked, every data
 *      region checked for alignment, bounds (overflow-safe) and overlap;
 *   3. the data: CRC32 of every region and the values themselves (T2 codes, grid indices, finite floats),
 *      in parallel chunks; then the tensor set against the model config.
 * The writer runs the same checks on what it is given, so it cannot produce a file the reader refuses. */
#include "export/trin.h"

#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "kernels/packed.h"
#include "model/params.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* A tensor's dtype is the packed kernels' storage type as is (kernels/packed.h). */
_Static_assert(TN_TRIN_F32 == (int)TN_PACKED_F32 && TN_TRIN_F16 == (int)TN_PACKED_F16 && TN_TRIN_T2 == (int)TN_PACKED_T2 &&
                   TN_TRIN_L4 == (int)TN_PACKED_L4 && TN_TRIN_L8 == (int)TN_PACKED_L8 && TN_TRIN_Q8 == (int)TN_PACKED_Q8 &&
                   TN_TRIN_Q4 == (int)TN_PACKED_Q4,
               "TRIN dtype codes are the packed storage types");

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "TRIN data is little-endian and used in place: this build needs a little-endian host"
#endif

/* Fixed part of the header: preamble, config, tokenizer descriptor, meta size (docs/TRIN.md). */
#define PREAMBLE_SIZE 32
#define FIXED_SIZE_V1 144 /* version 1: no RoPE scaling fields */
#define FIXED_SIZE 176    /* version 2: + rope type, factor, low / high frequency factors, original length, qkv_bias,
                             head_dim, qk_norm */
#define CONFIG_OFFSET 40
#define TOKENIZER_OFFSET 88
#define META_SIZE_OFFSET 140
#define MAX_TENSORS (1 << 20)
#define CHUNK ((uint64_t)8 << 20) /* verification work unit: 8 MiB, a multiple of every element size */

static uint64_t align_up(uint64_t x) { return (x + (TN_TRIN_ALIGN - 1)) & ~(uint64_t)(TN_TRIN_ALIGN - 1); }

const char *tn_trin_dtype_name(tn_trin_dtype d) {
    switch (d) {
    case TN_TRIN_F32: return "F32";
    case TN_TRIN_F16: return "F16";
    case TN_TRIN_T2: return "T2";
    case TN_TRIN_L4: return "L4";
    case TN_TRIN_L8: return "L8";
    case TN_TRIN_Q8: return "Q8";
    case TN_TRIN_Q4: return "Q4";
    }
    return "?";
}

int tn_trin_dtype_parse(const char *s, tn_trin_dtype *d) {
    static const char *names[TN_TRIN_N_DTYPES] = {"F32", "F16", "T2", "L4", "L8", "Q8", "Q4"};
    for (int i = 0; i < TN_TRIN_N_DTYPES; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *d = (tn_trin_dtype)i;
            return 0;
        }
    return tn_err("unknown TRIN dtype '%s' (expected F32, F16, T2, L4, L8, Q8 or Q4)", s);
}

const char *tn_trin_scale_layout_name(tn_trin_scale_layout s) {
    switch (s) {
    case TN_TRIN_SCALE_NONE: return "none";
    case TN_TRIN_SCALE_TENSOR: return "tensor";
    case TN_TRIN_SCALE_ROW: return "row";
    }
    return "?";
}

int64_t tn_trin_numel(int rank, const int64_t *shape) {
    if (rank < 1 || rank > TN_TRIN_MAX_RANK) return -1;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] <= 0 || shape[i] > ((int64_t)1 << 40)) return -1;
        if (n > ((int64_t)1 << 40) / shape[i]) return -1; /* 2^40 elements: far above any model */
        n *= shape[i];
    }
    return n;
}

/* Dtypes that may carry f32 scales (Q4's are inside its blocks). */
static int is_quantized(tn_trin_dtype d) { return d == TN_TRIN_T2 || d == TN_TRIN_L4 || d == TN_TRIN_L8 || d == TN_TRIN_Q8; }

/* The oldest version a dtype may appear in. */
static uint32_t dtype_version(tn_trin_dtype d) { return d == TN_TRIN_Q8 || d == TN_TRIN_Q4 ? 3 : 1; }

int tn_trin_data_size(tn_trin_dtype dtype, int rank, const int64_t *shape, uint64_t *size) {
    int64_t n = tn_trin_numel(rank, shape);
    if (n < 0) return tn_err("shape out of range");
    switch (dtype) {
    case TN_TRIN_F32: *size = (uint64_t)n * 4; return 0;
    case TN_TRIN_F16: *size = (uint64_t)n * 2; return 0;
    case TN_TRIN_T2:
    case TN_TRIN_L4:
    case TN_TRIN_L8:
    case TN_TRIN_Q8:
    case TN_TRIN_Q4: {
        if (rank != 2) return tn_err("%s needs a matrix (rank 2), got rank %d", tn_trin_dtype_name(dtype), rank);
        const int64_t max_cols = dtype == TN_TRIN_Q8 ? TN_Q8_MAX_COLS : TN_PACKED_MAX_COLS;
        if (shape[1] > max_cols)
            return tn_err("%s: %lld columns exceed the kernels' limit %lld", tn_trin_dtype_name(dtype),
                          (long long)shape[1], (long long)max_cols);
        /* rows * row_bytes: row_bytes <= 64 + cols (Q4: 18/32 cols + 18), rows * cols <= 2^40 and
         * rows <= 2^40: no overflow */
        *size = dtype == TN_TRIN_T2   ? tn_t2_packed_size(shape[0], shape[1])
                : dtype == TN_TRIN_L4 ? tn_l4_packed_size(shape[0], shape[1])
                : dtype == TN_TRIN_L8 ? tn_l8_packed_size(shape[0], shape[1])
                : dtype == TN_TRIN_Q8 ? tn_q8_packed_size(shape[0], shape[1])
                                      : tn_q4_packed_size(shape[0], shape[1]);
        return 0;
    }
    }
    return tn_err("unknown dtype %d", (int)dtype);
}

/* ---- descriptor and value checks shared by reader and writer ------------------------------------ */

/* Everything about a tensor that does not need its data. Sets *size and *n_scales. */
static int check_desc(const tn_trin_tensor *t, uint64_t *size, int64_t *n_scales) {
    size_t nl = strnlen(t->name, sizeof t->name);
    if (nl == 0 || nl > TN_TRIN_MAX_NAME) return tn_err("tensor name empty or too long");
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char)t->name[i] < 0x21 || (unsigned char)t->name[i] > 0x7e)
            return tn_err("tensor name has a non-printable character");
    if ((unsigned)t->dtype >= TN_TRIN_N_DTYPES) return tn_err("tensor '%s': unknown dtype %d", t->name, (int)t->dtype);
    if (t->rank < 1 || t->rank > TN_TRIN_MAX_RANK)
        return tn_err("tensor '%s': rank %d out of range 1..%d", t->name, t->rank, TN_TRIN_MAX_RANK);
    if (tn_trin_numel(t->rank, t->shape) < 0) return tn_err("tensor '%s': shape out of range", t->name);
    if (tn_trin_data_size(t->dtype, t->rank, t->shape, size) != 0) return tn_err_prefix("tensor '%s'", t->name);
    switch (t->scale_layout) {
    case TN_TRIN_SCALE_NONE: *n_scales = 0; break;
    case TN_TRIN_SCALE_TENSOR: *n_scales = 1; break;
    case TN_TRIN_SCALE_ROW: *n_scales = t->shape[0]; break;
    default: return tn_err("tensor '%s': unknown scale layout %d", t->name, (int)t->scale_layout);
    }
    if (!is_quantized(t->dtype) && t->scale_layout != TN_TRIN_SCALE_NONE)
        return tn_err("tensor '%s': %s tensors carry no scales", t->name, tn_trin_dtype_name(t->dtype));
    if (t->dtype == TN_TRIN_Q8 && t->scale_layout != TN_TRIN_SCALE_ROW)
        return tn_err("tensor '%s': Q8 tensors need per-row scales (scale layout %s)", t->name,
                      tn_trin_scale_layout_name(t->scale_layout));
    int max_grid = t->dtype == TN_TRIN_L4 ? 16 : t->dtype == TN_TRIN_L8 ? 256 : 0;
    if (max_grid == 0 && t->grid_len != 0)
        return tn_err("tensor '%s': %s tensors have no grid", t->name, tn_trin_dtype_name(t->dtype));
    if (max_grid && (t->grid_len < 1 || t->grid_len > max_grid))
        return tn_err("tensor '%s': grid of %d values (%s allows 1..%d)", t->name, t->grid_len,
                      tn_trin_dtype_name(t->dtype), max_grid);
    for (int i = 0; i < t->grid_len; i++)
        if (!isfinite(t->grid[i])) return tn_err("tensor '%s': grid value %d is not finite", t->name, i);
    if (t->act_bits != 0 && t->act_bits != 8) return tn_err("tensor '%s': act_bits %d (0 or 8)", t->name, t->act_bits);
    if (t->act_bits && t->rank != 2) return tn_err("tensor '%s': act_bits on a tensor that is not a matrix", t->name);
    return 0;
}

/* Values in [off, off+len) of a tensor's weights, p pointing at byte off: T2 code 3 is reserved, grid
 * indices must be below grid_len, floats (Q4's block scales too) must be finite. off and len are multiples
 * of 8 except at the end of the data. Q8: every byte is an int8 weight. */
static int values_ok(tn_trin_dtype dtype, int grid_len, const uint8_t *p, uint64_t off, uint64_t len) {
    switch (dtype) {
    case TN_TRIN_Q8: return 1;
    case TN_TRIN_Q4: {
        /* byte 1 of each 18-byte block is the high byte of its fp16 scale: exponent bits 0x7C all set is
         * inf or NaN */
        uint64_t i = (TN_Q4_BLOCK_BYTES + 1 - off % TN_Q4_BLOCK_BYTES) % TN_Q4_BLOCK_BYTES;
        for (; i < len; i += TN_Q4_BLOCK_BYTES)
            if ((p[i] & 0x7C) == 0x7C) return 0;
        return 1;
    }
    case TN_TRIN_F32:
        for (uint64_t i = 0; i + 4 <= len; i += 4) {
            uint32_t u;
            memcpy(&u, p + i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u) return 0;
        }
        return 1;
    case TN_TRIN_F16:
        for (uint64_t i = 0; i + 2 <= len; i += 2) {
            uint16_t u;
            memcpy(&u, p + i, 2);
            if ((u & 0x7c00u) == 0x7c00u) return 0;
        }
        return 1;
    case TN_TRIN_T2: {
        uint64_t acc = 0, i = 0;
        for (; i + 8 <= len; i += 8) {
            uint64_t u;
            memcpy(&u, p + i, 8);
            acc |= u & (u >> 1) & 0x5555555555555555ull; /* a 2-bit field equal to 3 */
        }
        for (; i < len; i++) acc |= (uint64_t)(p[i] & (p[i] >> 1) & 0x55);
        return acc == 0;
    }
    case TN_TRIN_L4:
        if (grid_len >= 16) return 1;
        for (uint64_t i = 0; i < len; i++)
            if ((p[i] & 15) >= grid_len || (p[i] >> 4) >= grid_len) return 0;
        return 1;
    case TN_TRIN_L8:
        if (grid_len >= 256) return 1;
        for (uint64_t i = 0; i < len; i++)
            if (p[i] >= grid_len) return 0;
        return 1;
    }
    return 0;
}

static const char *value_rule(tn_trin_dtype d) {
    switch (d) {
    case TN_TRIN_T2: return "a reserved ternary code (3)";
    case TN_TRIN_L4:
    case TN_TRIN_L8: return "a grid index beyond the grid";
    case TN_TRIN_Q4: return "a non-finite block scale";
    default: return "a non-finite value";
    }
}

/* Tensor names sorted for lookup: (name, index) pairs. */
typedef struct {
    const char *name;
    int idx;
} name_idx;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

static int find_sorted(const name_idx *sorted, int n, const char *name) {
    name_idx key = {name, -1};
    const name_idx *hit = bsearch(&key, sorted, (size_t)n, sizeof key, cmp_name);
    return hit ? hit->idx : -1;
}

/* Sort tensor names and refuse duplicates. */
static int sort_names(const tn_trin_tensor *ts, int n, name_idx **out) {
    name_idx *s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    if (!s) return tn_err("out of memory");
    for (int i = 0; i < n; i++) s[i] = (name_idx){ts[i].name, i};
    qsort(s, (size_t)n, sizeof *s, cmp_name);
    for (int i = 1; i < n; i++)
        if (strcmp(s[i - 1].name, s[i].name) == 0) {
            tn_err("tensor '%s' appears twice", s[i].name);
            free(s);
            return -1;
        }
    *out = s;
    return 0;
}

/* The exact rows of a quantized head (TN_TRIN_EXACT_HEAD): F16 [vocab, dim] without scales, beside a head
 * (lm_head.weight, or the tied embedding table) that is Q8 or Q4, with the head's act_bits. */
static int check_exact_head(const tn_llama_config *cfg, const tn_trin_tensor *ts, const name_idx *sorted, int n,
                            const tn_trin_tensor *x) {
    const int hk = find_sorted(sorted, n, tn_llama_head_name(cfg));
    if (x->dtype != TN_TRIN_F16 || x->rank != 2 || x->scale_layout != TN_TRIN_SCALE_NONE)
        return tn_err("tensor '%s': exact head rows must be F16 [vocab, dim] without scales", x->name);
    if (x->shape[0] != cfg->vocab_size || x->shape[1] != cfg->dim)
        return tn_err("tensor '%s': shape does not match the config (expected [%d, %d])", x->name, cfg->vocab_size,
                      cfg->dim);
    if (hk < 0) return 0; /* the head's own absence is reported by the set check */
    const tn_trin_tensor *h = &ts[hk];
    if (h->dtype != TN_TRIN_Q8 && h->dtype != TN_TRIN_Q4)
        return tn_err("tensor '%s': exact head rows beside a %s head (they re-score a Q8 or Q4 head)", x->name,
                      tn_trin_dtype_name(h->dtype));
    if (x->act_bits != h->act_bits)
        return tn_err("tensor '%s': act_bits %d, the head's are %d", x->name, x->act_bits, h->act_bits);
    return 0;
}

/* The tensor set must be exactly the model's: every tensor of the layout with its shape, nothing else
 * but the optional exact head rows. */
static int check_llama(const tn_llama_config *cfg, const tn_trin_tensor *ts, const name_idx *sorted, int n) {
    tn_llama_layout l;
    if (tn_llama_layout_init(&l, cfg) != 0) return -1;
    int rc = 0;
    const int xk = find_sorted(sorted, n, TN_TRIN_EXACT_HEAD);
    if (xk >= 0) rc = check_exact_head(cfg, ts, sorted, n, &ts[xk]);
    const int n_model = n - (xk >= 0);
    if (rc == 0 && n_model != l.n_tensors) {
        /* report the first missing or unexpected name, which says more than the counts */
        for (int i = 0; i < l.n_tensors && rc == 0; i++)
            if (find_sorted(sorted, n, l.tensors[i].name) < 0)
                rc = tn_err("tensor '%s' is missing (the config needs %d tensors, the file has %d)", l.tensors[i].name,
                            l.n_tensors, n);
        for (int i = 0; i < n && rc == 0; i++)
            if (i != xk && !tn_llama_layout_find(&l, ts[i].name))
                rc = tn_err("unexpected tensor '%s' (not part of a model with this config)", ts[i].name);
        if (rc == 0) rc = tn_err("%d tensors, the config needs %d", n_model, l.n_tensors);
    }
    for (int i = 0; i < l.n_tensors && rc == 0; i++) {
        const tn_tensor_info *e = &l.tensors[i];
        int k = find_sorted(sorted, n, e->name);
        if (k < 0) {
            rc = tn_err("tensor '%s' is missing", e->name);
            break;
        }
        const tn_trin_tensor *t = &ts[k];
        int ok = t->rank == e->rank && t->shape[0] == e->shape[0] && (e->rank == 1 || t->shape[1] == e->shape[1]);
        if (!ok && e->rank == 1)
            rc = tn_err("tensor '%s': shape does not match the config (expected [%lld])", e->name,
                        (long long)e->shape[0]);
        else if (!ok)
            rc = tn_err("tensor '%s': shape does not match the config (expected [%lld, %lld])", e->name,
                        (long long)e->shape[0], (long long)e->shape[1]);
    }
    tn_llama_layout_free(&l);
    return rc;
}

/* ---- reader ------------------------------------------------------------------------------------ */

/* A bounds-checked little-endian cursor over the header. Reads past the end set `bad` and yield 0. */
typedef struct {
    const uint8_t *p;
    uint64_t pos, end;
    int bad;
} cursor;

static const uint8_t *cur_take(cursor *c, uint64_t n) {
    if (c->bad || n > c->end - c->pos) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *q = c->p + c->pos;
    c->pos += n;
    return q;
}
static uint8_t get_u8(cursor *c) {
    const uint8_t *q = cur_take(c, 1);
    return q ? q[0] : 0;
}
static uint16_t get_u16(cursor *c) {
    const uint8_t *q = cur_take(c, 2);
    return q ? (uint16_t)(q[0] | q[1] << 8) : 0;
}
static uint32_t get_u32(cursor *c) {
    const uint8_t *q = cur_take(c, 4);
    return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24 : 0;
}
static uint64_t get_u64(cursor *c) {
    uint64_t lo = get_u32(c);
    return lo | (uint64_t)get_u32(c) << 32;
}
static int32_t get_i32(cursor *c) { return (int32_t)get_u32(c); }
static float get_f32(cursor *c) {
    uint32_t u = get_u32(c);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct {
    uint64_t off, size;
    int owner; /* tensor index, or -1 tokenizer */
    int is_scale;
} region;

static int cmp_region(const void *a, const void *b) {
    const region *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void region_name(const tn_trin *t, const region *r, char *buf, size_t cap) {
    if (r->owner < 0) snprintf(buf, cap, "tokenizer");
    else snprintf(buf, cap, "tensor '%s'%s", t->tensors[r->owner].name, r->is_scale ? " scales" : "");
}

/* A data region: aligned, inside [data_offset, file_size), overflow-safe. */
static int check_region(const tn_trin *t, uint64_t off, uint64_t size, const char *what, const char *name) {
    const char *q = strcmp(name, "tokenizer") ? "'" : "";
    const char *kind = strcmp(name, "tokenizer") ? "tensor " : "";
    if (off % TN_TRIN_ALIGN) return tn_err("%s%s%s%s%s: offset %llu is not %d-byte aligned", kind, q, name, q, what,
                                           (unsigned long long)off, TN_TRIN_ALIGN);
    if (off < t->data_offset || off > t->file_size || size > t->file_size - off)
        return tn_err("%s%s%s%s%s: bytes [%llu, +%llu) lie outside the data section [%llu, %llu)", kind, q, name, q, what,
                      (unsigned long long)off, (unsigned long long)size, (unsigned long long)t->data_offset,
                      (unsigned long long)t->file_size);
    return 0;
}

static int parse_header(tn_trin *t) {
    const uint8_t *b = t->base;
    size_t fsize = t->file_size;
    if (fsize == 0) return tn_err("empty file (not a TRIN file)");
    if (memcmp(b, TN_TRIN_MAGIC, fsize < 4 ? fsize : 4) != 0) return tn_err("not a TRIN file (bad magic)");
    if (fsize < PREAMBLE_SIZE)
        return tn_err("truncated: %zu bytes, a TRIN file has at least %d", fsize, FIXED_SIZE_V1 + 4);
    cursor c = {b, 4, PREAMBLE_SIZE, 0};
    t->version = get_u32(&c);
    if (t->version < 1 || t->version > TN_TRIN_VERSION)
        return tn_err("unsupported TRIN version %u (this build reads versions 1 to %d)", t->version, TN_TRIN_VERSION);
    t->header_size = get_u64(&c);
    t->data_offset = get_u64(&c);
    uint64_t stated_size = get_u64(&c);
    if (stated_size != fsize) {
        if (stated_size > fsize)
            return tn_err("truncated: %zu bytes, the header says %llu", fsize, (unsigned long long)stated_size);
        return tn_err("%zu bytes, the header says %llu (trailing bytes)", fsize, (unsigned long long)stated_size);
    }
    if (t->header_size < (t->version == 1 ? FIXED_SIZE_V1 : FIXED_SIZE) + 4 || t->header_size > TN_TRIN_MAX_HEADER)
        return tn_err("header size %llu out of range", (unsigned long long)t->header_size);
    if (t->header_size > fsize)
        return tn_err("truncated: %zu bytes, the header alone needs %llu", fsize, (unsigned long long)t->header_size);
    if (t->data_offset % TN_TRIN_ALIGN || t->data_offset < t->header_size || t->data_offset > fsize)
        return tn_err("data offset %llu is invalid (header %llu bytes, file %zu)", (unsigned long long)t->data_offset,
                      (unsigned long long)t->header_size, fsize);

    /* Header CRC before anything variable is interpreted: random corruption stops here. */
    uint64_t hs = t->header_size;
    uint32_t stored = (uint32_t)b[hs - 4] | (uint32_t)b[hs - 3] << 8 | (uint32_t)b[hs - 2] << 16 |
                      (uint32_t)b[hs - 1] << 24;
    uint32_t crc = tn_crc32(0, b, hs - 4);
    if (crc != stored)
        return tn_err("header CRC mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt", stored, crc);

    /* The parse still checks everything: a header with a valid CRC may be crafted. */
    c = (cursor){b, 32, hs - 4, 0};
    uint32_t n_tensors = get_u32(&c);
    uint32_t flags = get_u32(&c);
    if (flags != 0) return tn_err("unknown flags 0x%x (this build reads version %u files with no flags)", flags,
                                  t->version);
    if (n_tensors == 0 || n_tensors > MAX_TENSORS) return tn_err("tensor count %u out of range", n_tensors);
    tn_llama_config *cfg = &t->cfg;
    cfg->dim = get_i32(&c);
    cfg->n_layers = get_i32(&c);
    cfg->n_heads = get_i32(&c);
    cfg->n_kv_heads = get_i32(&c);
    cfg->ffn_dim = get_i32(&c);
    cfg->vocab_size = get_i32(&c);
    cfg->max_seq_len = get_i32(&c);
    cfg->rope_theta = get_f32(&c);
    cfg->norm_eps = get_f32(&c);
    cfg->tied_embeddings = get_i32(&c);
    cfg->bos_id = get_i32(&c);
    cfg->eos_id = get_i32(&c);
    if (t->version >= 2) {
        cfg->rope_type = get_i32(&c);
        cfg->rope_factor = get_f32(&c);
        cfg->rope_low_freq_factor = get_f32(&c);
        cfg->rope_high_freq_factor = get_f32(&c);
        cfg->rope_orig_max_pos = get_i32(&c);
        cfg->qkv_bias = get_i32(&c);
        cfg->head_dim = get_i32(&c);
        cfg->qk_norm = get_i32(&c);
    } else {
        tn_llama_config d;
        tn_llama_config_defaults(&d);
        cfg->rope_type = d.rope_type;
        cfg->rope_factor = d.rope_factor;
        cfg->rope_low_freq_factor = d.rope_low_freq_factor;
        cfg->rope_high_freq_factor = d.rope_high_freq_factor;
        cfg->rope_orig_max_pos = d.rope_orig_max_pos;
        cfg->qkv_bias = 0;
        cfg->head_dim = 0;
        cfg->qk_norm = 0;
    }
    if (cfg->tied_embeddings != 0 && cfg->tied_embeddings != 1)
        return tn_err("model config: tied_embeddings must be 0 or 1");
    if (cfg->bos_id < -1 || cfg->eos_id < -1) return tn_err("model config: bos_id/eos_id below -1");
    if (tn_llama_config_validate(cfg) != 0) return -1;

    const uint8_t *fmt = cur_take(&c, 32);
    uint64_t tok_off = get_u64(&c), tok_size = get_u64(&c);
    uint32_t tok_crc = get_u32(&c);
    uint32_t meta_size = get_u32(&c);
    if (c.bad) return tn_err("header too short");
    size_t fl = strnlen((const char *)fmt, 32);
    if (fl == 32) return tn_err("tokenizer format name is not NUL-terminated");
    for (size_t i = 0; i < fl; i++)
        if (fmt[i] < 0x21 || fmt[i] > 0x7e) return tn_err("tokenizer format name has a non-printable character");
    for (size_t i = fl; i < 32; i++)
        if (fmt[i] != 0) return tn_err("tokenizer format name is not NUL-padded");
    memcpy(t->tokenizer_format, fmt, 32);
    if ((fl == 0) != (tok_size == 0)) return tn_err("tokenizer: format name and blob must be both present or both absent");
    if (tok_size == 0 && (tok_off != 0 || tok_crc != 0)) return tn_err("tokenizer: absent but has an offset or CRC");
    if (tok_size) TN_CHECK(check_region(t, tok_off, tok_size, "", "tokenizer"));
    t->tokenizer = tok_size ? b + tok_off : NULL;
    t->tokenizer_crc = tok_crc;
    t->tokenizer_len = (size_t)tok_size;

    const uint8_t *meta = cur_take(&c, meta_size);
    if (!meta) return tn_err("metadata (%u bytes) runs past the header", meta_size);
    if (memchr(meta, 0, meta_size)) return tn_err("metadata contains a NUL byte");
    t->meta = malloc((size_t)meta_size + 1);
    if (!t->meta) return tn_err("out of memory");
    memcpy(t->meta, meta, meta_size);
    t->meta[meta_size] = '\0';

    /* Each entry is at least 2+1+4+2+2+8+8+8+4+4+8 bytes: refuse counts the header cannot hold before
     * allocating for them. */
    if ((uint64_t)n_tensors * 51 > c.end - c.pos) return tn_err("tensor count %u does not fit in the header", n_tensors);
    t->tensors = calloc(n_tensors, sizeof *t->tensors);
    if (!t->tensors) return tn_err("out of memory for %u tensors", n_tensors);
    t->n_tensors = (int)n_tensors;
    for (uint32_t i = 0; i < n_tensors; i++) {
        tn_trin_tensor *e = &t->tensors[i];
        uint16_t nl = get_u16(&c);
        if (c.bad) return tn_err("tensor directory entry %u: runs past the header", i);
        if (nl == 0 || nl > TN_TRIN_MAX_NAME) return tn_err("tensor directory entry %u: name length %u out of range", i, nl);
        const uint8_t *name = cur_take(&c, nl);
        if (!name) return tn_err("tensor directory entry %u: runs past the header", i);
        memcpy(e->name, name, nl);
        e->name[nl] = '\0';
        if (strlen(e->name) != nl) return tn_err("tensor directory entry %u: name contains a NUL byte", i);
        e->dtype = (tn_trin_dtype)get_u8(&c);
        e->rank = get_u8(&c);
        e->scale_layout = (tn_trin_scale_layout)get_u8(&c);
        e->act_bits = get_u8(&c);
        e->grid_len = get_u16(&c);
        uint16_t r1 = get_u16(&c);
        if (c.bad) return tn_err("tensor '%s': entry runs past the header", e->name);
        if (r1) return tn_err("tensor '%s': reserved bytes are not zero", e->name);
        if (e->rank < 1 || e->rank > TN_TRIN_MAX_RANK)
            return tn_err("tensor '%s': rank %d out of range 1..%d", e->name, e->rank, TN_TRIN_MAX_RANK);
        for (int k = 0; k < e->rank; k++) e->shape[k] = (int64_t)get_u64(&c);
        if (e->grid_len > TN_TRIN_MAX_GRID) return tn_err("tensor '%s': grid of %d values (at most %d)", e->name,
                                                          e->grid_len, TN_TRIN_MAX_GRID);
        for (int k = 0; k < e->grid_len; k++) e->grid[k] = get_f32(&c);
        e->offset = get_u64(&c);
        e->size = get_u64(&c);
        e->crc = get_u32(&c);
        e->scale_crc = get_u32(&c);
        e->scale_offset = get_u64(&c);
        if (c.bad) return tn_err("tensor '%s': entry runs past the header", e->name);
        uint64_t want;
        TN_CHECK(check_desc(e, &want, &e->n_scales));
        if (dtype_version(e->dtype) > t->version)
            return tn_err("tensor '%s': dtype %s needs TRIN version %u, the file is version %u", e->name,
                          tn_trin_dtype_name(e->dtype), dtype_version(e->dtype), t->version);
        if (e->size != want)
            return tn_err("tensor '%s': %llu bytes, its dtype and shape need %llu", e->name,
                          (unsigned long long)e->size, (unsigned long long)want);
        TN_CHECK(check_region(t, e->offset, e->size, "", e->name));
        e->data = b + e->offset;
        if (e->n_scales) {
            TN_CHECK(check_region(t, e->scale_offset, (uint64_t)e->n_scales * 4, " scales", e->name));
            e->scales = (const float *)(const void *)(b + e->scale_offset);
        } else if (e->scale_offset || e->scale_crc) {
            return tn_err("tensor '%s': no scales but a scale offset or CRC", e->name);
        }
    }
    if (c.pos != c.end)
        return tn_err("header has %llu unexplained bytes after the tensor directory",
                      (unsigned long long)(c.end - c.pos));
    return 0;
}

/* No two data regions may overlap (one would be read as two things). */
static int check_overlap(const tn_trin *t, region *rs, int nr) {
    qsort(rs, (size_t)nr, sizeof *rs, cmp_region);
    for (int i = 1; i < nr; i++)
        if (rs[i].off < rs[i - 1].off + rs[i - 1].size) {
            char a[160], b[160];
            region_name(t, &rs[i - 1], a, sizeof a);
            region_name(t, &rs[i], b, sizeof b);
            return tn_err("%s and %s overlap", a, b);
        }
    return 0;
}

/* Every byte outside the header and the regions is padding and must be zero: with this, each byte of
 * the file is covered by a check (header CRC, region CRC, or this). rs is sorted by offset. */
static int check_padding(const tn_trin *t, const region *rs, int nr) {
    uint64_t pos = t->header_size;
    for (int i = 0; i <= nr; i++) {
        uint64_t end = i < nr ? rs[i].off : t->file_size;
        for (uint64_t p = pos; p < end; p++)
            if (t->base[p] != 0)
                return tn_err("padding byte at offset %llu is not zero: the file is corrupt", (unsigned long long)p);
        if (i < nr) pos = rs[i].off + rs[i].size;
    }
    return 0;
}

/* CRC32 and value checks of every region, in parallel over 8 MiB chunks (CRCs joined with zlib's
 * crc32_combine). */
static int verify_data(tn_trin *t, const region *rs, int nr) {
    int64_t n_chunks = 0;
    uint64_t total = 0;
    for (int i = 0; i < nr; i++) {
        n_chunks += (int64_t)((rs[i].size + CHUNK - 1) / CHUNK);
        total += rs[i].size;
    }
    typedef struct {
        int region;
        uint64_t off, len;
        uint32_t crc;
        int values_ok;
    } chunk;
    chunk *ch = malloc((size_t)(n_chunks > 0 ? n_chunks : 1) * sizeof *ch);
    if (!ch) return tn_err("out of memory");
    int64_t k = 0;
    for (int i = 0; i < nr; i++)
        for (uint64_t o = 0; o < rs[i].size; o += CHUNK) {
            ch[k].region = i;
            ch[k].off = rs[i].off + o;
            ch[k].len = rs[i].size - o < CHUNK ? rs[i].size - o : CHUNK;
            k++;
        }
#pragma omp parallel for schedule(dynamic, 1) if (total > 2 * CHUNK) /* small files: no thread start-up */
    for (int64_t j = 0; j < n_chunks; j++) {
        const region *r = &rs[ch[j].region];
        const uint8_t *p = t->base + ch[j].off;
        ch[j].crc = tn_crc32(0, p, (size_t)ch[j].len);
        if (r->owner < 0) ch[j].values_ok = 1;
        else if (r->is_scale) ch[j].values_ok = values_ok(TN_TRIN_F32, 0, p, 0, ch[j].len);
        else
            ch[j].values_ok = values_ok(t->tensors[r->owner].dtype, t->tensors[r->owner].grid_len, p, ch[j].off - r->off,
                                        ch[j].len);
    }
    int rc = 0;
    k = 0;
    for (int i = 0; i < nr && rc == 0; i++) {
        uint32_t crc = 0;
        int vals = 1;
        for (uint64_t o = 0; o < rs[i].size; o += CHUNK, k++) {
            crc = o == 0 ? ch[k].crc : (uint32_t)crc32_combine(crc, ch[k].crc, (z_off_t)ch[k].len);
            vals &= ch[k].values_ok;
        }
        const region *r = &rs[i];
        uint32_t want = r->owner < 0 ? 0 : r->is_scale ? t->tensors[r->owner].scale_crc : t->tensors[r->owner].crc;
        char name[160];
        region_name(t, r, name, sizeof name);
        if (r->owner < 0) want = t->tokenizer_crc;
        if (crc != want)
            rc = tn_err("%s: CRC mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt", name, want, crc);
        else if (!vals)
            rc = tn_err("%s: contains %s", name,
                        r->is_scale ? "a non-finite scale" : r->owner < 0 ? "bad bytes" : value_rule(t->tensors[r->owner].dtype));
    }
    free(ch);
    return rc;
}

static int open_image(tn_trin *t) {
    TN_CHECK(parse_header(t));
    int nr = 0;
    region *rs = malloc(((size_t)t->n_tensors * 2 + 1) * sizeof *rs);
    if (!rs) return tn_err("out of memory");
    if (t->tokenizer_len) rs[nr++] = (region){(uint64_t)(t->tokenizer - t->base), t->tokenizer_len, -1, 0};
    for (int i = 0; i < t->n_tensors; i++) {
        const tn_trin_tensor *e = &t->tensors[i];
        rs[nr++] = (region){e->offset, e->size, i, 0};
        if (e->n_scales) rs[nr++] = (region){e->scale_offset, (uint64_t)e->n_scales * 4, i, 1};
    }
    int rc = check_overlap(t, rs, nr);
    if (rc == 0) rc = check_padding(t, rs, nr);
    name_idx *sorted = NULL;
    if (rc == 0) rc = sort_names(t->tensors, t->n_tensors, &sorted);
    if (rc == 0) rc = check_llama(&t->cfg, t->tensors, sorted, t->n_tensors);
    if (rc == 0 && t->version < 4 && find_sorted(sorted, t->n_tensors, TN_TRIN_EXACT_HEAD) >= 0)
        rc = tn_err("tensor '%s' needs TRIN version 4, the file is version %u", TN_TRIN_EXACT_HEAD, t->version);
    /* Data last: it is the expensive part, and the cheap checks above name the problem better. The
     * regions were sorted by offset, which also makes the CRC pass read the file front to back. */
    if (rc == 0) rc = verify_data(t, rs, nr);
    free(rs);
    free(sorted);
    if (rc == 0)
        for (int i = 0; i < t->n_tensors; i++) { /* zero-pad grids: safe lookup tables for any index */
            tn_trin_tensor *e = &t->tensors[i];
            for (int g = e->grid_len; g < TN_TRIN_MAX_GRID; g++) e->grid[g] = 0.0f;
        }
    return rc;
}

void tn_trin_close(tn_trin *t) {
    if (!t) return;
    tn_unmap_file(&t->map);
    free(t->tensors);
    free(t->meta);
    free(t);
}

int tn_trin_open_memory(const void *data, size_t size, tn_trin **out) {
    *out = NULL;
    tn_trin *t = calloc(1, sizeof *t);
    if (!t) return tn_err("out of memory");
    t->map.fd = -1;
    t->base = data;
    t->file_size = size;
    if (open_image(t) != 0) {
        tn_trin_close(t);
        return -1;
    }
    *out = t;
    return 0;
}

static int open_file(const char *path, int huge_copy, tn_trin **out) {
    *out = NULL;
    tn_trin *t = calloc(1, sizeof *t);
    if (!t) return tn_err("out of memory");
    t->map.fd = -1;
    if ((huge_copy ? tn_load_file_huge(path, &t->map) : tn_map_file(path, &t->map)) != 0) {
        tn_trin_close(t);
        return -1;
    }
    t->base = t->map.data;
    t->file_size = t->map.size;
    if (open_image(t) != 0) {
        tn_trin_close(t);
        return tn_err_prefix("%s", path);
    }
    *out = t;
    return 0;
}

int tn_trin_open(const char *path, tn_trin **out) { return open_file(path, 0, out); }
int tn_trin_open_huge(const char *path, tn_trin **out) { return open_file(path, 1, out); }

const tn_trin_tensor *tn_trin_find(const tn_trin *t, const char *name) {
    /* Linear: called a few hundred times at load, never on the hot path. */
    for (int i = 0; i < t->n_tensors; i++)
        if (strcmp(t->tensors[i].name, name) == 0) return &t->tensors[i];
    return NULL;
}

int tn_trin_meta_get(const tn_trin *t, const char *key, char *buf, size_t cap) {
    size_t kl = strlen(key);
    for (const char *line = t->meta; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > kl && strncmp(line, key, kl) == 0 && line[kl] == '=') {
            size_t vl = len - kl - 1;
            if (vl + 1 > cap) return -1;
            memcpy(buf, line + kl + 1, vl);
            buf[vl] = '\0';
            return 0;
        }
        line += len + (nl ? 1 : 0);
    }
    return -1;
}

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct {
    tn_trin_tensor d; /* desc + computed size, offsets, crcs */
    const void *data;
    const float *scales;
    int own;
} wentry;

struct tn_trin_writer {
    tn_llama_config cfg;
    char tok_fmt[32];
    uint8_t *tok;
    size_t tok_len;
    char *meta;
    size_t meta_len;
    wentry *e;
    int n, cap;
};

tn_trin_writer *tn_trin_writer_new(const tn_llama_config *cfg) {
    if (tn_llama_config_validate(cfg) != 0) return NULL;
    if (cfg->bos_id < -1 || cfg->eos_id < -1 || (cfg->tied_embeddings != 0 && cfg->tied_embeddings != 1)) {
        tn_err("model config: bos_id/eos_id below -1 or tied_embeddings not 0/1");
        return NULL;
    }
    tn_trin_writer *w = calloc(1, sizeof *w);
    if (!w) {
        tn_err("out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    return w;
}

void tn_trin_writer_free(tn_trin_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++)
        if (w->e[i].own) {
            free((void *)w->e[i].data);
            free((void *)w->e[i].scales);
        }
    free(w->e);
    free(w->tok);
    free(w->meta);
    free(w);
}

int tn_trin_writer_set_tokenizer(tn_trin_writer *w, const char *format, const void *blob, size_t len) {
    size_t fl = strlen(format);
    if (fl == 0 || fl > 31) return tn_err("tokenizer format name must have 1..31 characters");
    for (size_t i = 0; i < fl; i++)
        if ((unsigned char)format[i] < 0x21 || (unsigned char)format[i] > 0x7e)
            return tn_err("tokenizer format name has a non-printable character");
    if (len == 0) return tn_err("tokenizer blob is empty");
    uint8_t *copy = malloc(len);
    if (!copy) return tn_err("out of memory");
    memcpy(copy, blob, len);
    free(w->tok);
    w->tok = copy;
    w->tok_len = len;
    memset(w->tok_fmt, 0, sizeof w->tok_fmt);
    memcpy(w->tok_fmt, format, fl);
    return 0;
}

int tn_trin_writer_meta(tn_trin_writer *w, const char *key, const char *value) {
    if (!*key || strpbrk(key, "=\n") || strchr(value, '\n'))
        return tn_err("metadata '%s': keys must be non-empty without '=' or newlines, values without newlines", key);
    size_t add = strlen(key) + 1 + strlen(value) + 1;
    if (w->meta_len + add > (1u << 20)) return tn_err("metadata larger than 1 MiB");
    char *m = realloc(w->meta, w->meta_len + add + 1);
    if (!m) return tn_err("out of memory");
    snprintf(m + w->meta_len, add + 1, "%s=%s\n", key, value);
    w->meta = m;
    w->meta_len += add;
    return 0;
}

int tn_trin_writer_add(tn_trin_writer *w, const tn_trin_tensor *desc, const void *data, const float *scales,
                       int own) {
    int rc = 0;
    wentry e;
    memset(&e, 0, sizeof e);
    memcpy(e.d.name, desc->name, sizeof e.d.name);
    e.d.name[TN_TRIN_MAX_NAME] = '\0';
    e.d.dtype = desc->dtype;
    e.d.rank = desc->rank;
    for (int i = 0; i < TN_TRIN_MAX_RANK; i++) e.d.shape[i] = i < desc->rank ? desc->shape[i] : 0;
    e.d.scale_layout = desc->scale_layout;
    e.d.grid_len = desc->grid_len;
    e.d.act_bits = desc->act_bits;
    if (desc->grid_len > 0 && desc->grid_len <= TN_TRIN_MAX_GRID)
        memcpy(e.d.grid, desc->grid, (size_t)desc->grid_len * sizeof(float));
    e.data = data;
    e.scales = scales;
    e.own = own;
    if (strnlen(desc->name, sizeof desc->name) > TN_TRIN_MAX_NAME) rc = tn_err("tensor name too long");
    if (rc == 0) rc = check_desc(&e.d, &e.d.size, &e.d.n_scales);
    if (rc == 0 && (!data || (e.d.n_scales && !scales)))
        rc = tn_err("tensor '%s': missing data or scales", e.d.name);
    if (rc == 0 && !values_ok(e.d.dtype, e.d.grid_len, data, 0, e.d.size))
        rc = tn_err("tensor '%s': contains %s", e.d.name, value_rule(e.d.dtype));
    if (rc == 0 && e.d.n_scales && !values_ok(TN_TRIN_F32, 0, (const uint8_t *)scales, 0, (uint64_t)e.d.n_scales * 4))
        rc = tn_err("tensor '%s': a scale is not finite", e.d.name);
    if (rc == 0 && w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 64;
        wentry *ne = realloc(w->e, (size_t)nc * sizeof *ne);
        if (!ne) rc = tn_err("out of memory");
        else {
            w->e = ne;
            w->cap = nc;
        }
    }
    if (rc != 0) {
        if (own) {
            free((void *)data);
            free((void *)scales);
        }
        return -1;
    }
    w->e[w->n++] = e;
    return 0;
}

/* Little-endian serialisation into a growing buffer. */
typedef struct {
    uint8_t *p;
    size_t n;
} outbuf;
static void put(outbuf *o, const void *d, size_t n) {
    memcpy(o->p + o->n, d, n);
    o->n += n;
}
static void put_u8(outbuf *o, uint8_t v) { put(o, &v, 1); }
static void put_u16(outbuf *o, uint16_t v) { put(o, &v, 2); }
static void put_u32(outbuf *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(outbuf *o, uint64_t v) { put(o, &v, 8); }
static void put_i32(outbuf *o, int32_t v) { put(o, &v, 4); }
static void put_f32(outbuf *o, float v) { put(o, &v, 4); }

/* Lay out the file and build the header. *header (malloc) holds header_size bytes; the data regions go
 * at the offsets recorded in the entries. */
static int build(tn_trin_writer *w, uint8_t **header, uint64_t *header_size, uint64_t *data_offset,
                 uint64_t *file_size, uint64_t *tok_off, uint32_t *tok_crc) {
    if (w->n == 0) return tn_err("no tensors to write");
    name_idx *sorted = NULL;
    tn_trin_tensor *descs = malloc((size_t)w->n * sizeof *descs);
    if (!descs) return tn_err("out of memory");
    for (int i = 0; i < w->n; i++) descs[i] = w->e[i].d;
    int rc = sort_names(descs, w->n, &sorted);
    if (rc == 0) rc = check_llama(&w->cfg, descs, sorted, w->n);
    free(descs);
    free(sorted);
    if (rc != 0) return -1;

    uint64_t hs = FIXED_SIZE + w->meta_len + 4;
    for (int i = 0; i < w->n; i++)
        hs += 2 + strlen(w->e[i].d.name) + 8 + 8 * (uint64_t)w->e[i].d.rank + 4 * (uint64_t)w->e[i].d.grid_len + 32;
    if (hs > TN_TRIN_MAX_HEADER) return tn_err("header would be %llu bytes (limit %llu)", (unsigned long long)hs,
                                                (unsigned long long)TN_TRIN_MAX_HEADER);
    uint64_t pos = align_up(hs);
    *data_offset = pos;
    *tok_off = 0;
    *tok_crc = 0;
    if (w->tok_len) {
        *tok_off = pos;
        *tok_crc = tn_crc32(0, w->tok, w->tok_len);
        pos = align_up(pos + w->tok_len);
    }
    uint64_t end = pos;
    for (int i = 0; i < w->n; i++) {
        tn_trin_tensor *d = &w->e[i].d;
        d->offset = pos;
        end = pos + d->size;
        pos = align_up(end);
        if (d->n_scales) {
            d->scale_offset = pos;
            end = pos + (uint64_t)d->n_scales * 4;
            pos = align_up(end);
        }
    }
    *file_size = end;
#pragma omp parallel for schedule(dynamic, 1) if (*file_size > 2 * CHUNK)
    for (int i = 0; i < w->n; i++) {
        tn_trin_tensor *d = &w->e[i].d;
        d->crc = tn_crc32(0, w->e[i].data, (size_t)d->size);
        d->scale_crc = d->n_scales ? tn_crc32(0, w->e[i].scales, (size_t)d->n_scales * 4) : 0;
    }

    outbuf o = {calloc(1, (size_t)hs), 0};
    if (!o.p) return tn_err("out of memory");
    /* The oldest version that holds the file: version-2 readers keep reading files without the Q8 / Q4 of
     * version 3, version-3 readers those without the exact head rows of version 4 (the layout is otherwise
     * the same). */
    uint32_t version = 2;
    for (int i = 0; i < w->n; i++) {
        if (dtype_version(w->e[i].d.dtype) > version) version = dtype_version(w->e[i].d.dtype);
        if (!strcmp(w->e[i].d.name, TN_TRIN_EXACT_HEAD)) version = 4;
    }
    put(&o, TN_TRIN_MAGIC, 4);
    put_u32(&o, version);
    put_u64(&o, hs);
    put_u64(&o, *data_offset);
    put_u64(&o, *file_size);
    put_u32(&o, (uint32_t)w->n);
    put_u32(&o, 0);
    const tn_llama_config *c = &w->cfg;
    put_i32(&o, c->dim);
    put_i32(&o, c->n_layers);
    put_i32(&o, c->n_heads);
    put_i32(&o, c->n_kv_heads);
    put_i32(&o, c->ffn_dim);
    put_i32(&o, c->vocab_size);
    put_i32(&o, c->max_seq_len);
    put_f32(&o, c->rope_theta);
    put_f32(&o, c->norm_eps);
    put_i32(&o, c->tied_embeddings);
    put_i32(&o, c->bos_id);
    put_i32(&o, c->eos_id);
    put_i32(&o, c->rope_type);
    put_f32(&o, c->rope_factor);
    put_f32(&o, c->rope_low_freq_factor);
    put_f32(&o, c->rope_high_freq_factor);
    put_i32(&o, c->rope_orig_max_pos);
    put_i32(&o, c->qkv_bias);
    put_i32(&o, c->head_dim);
    put_i32(&o, c->qk_norm);
    put(&o, w->tok_fmt, 32);
    put_u64(&o, *tok_off);
    put_u64(&o, w->tok_len);
    put_u32(&o, *tok_crc);
    put_u32(&o, (uint32_t)w->meta_len);
    if (w->meta_len) put(&o, w->meta, w->meta_len);
    for (int i = 0; i < w->n; i++) {
        const tn_trin_tensor *d = &w->e[i].d;
        size_t nl = strlen(d->name);
        put_u16(&o, (uint16_t)nl);
        put(&o, d->name, nl);
        put_u8(&o, (uint8_t)d->dtype);
        put_u8(&o, (uint8_t)d->rank);
        put_u8(&o, (uint8_t)d->scale_layout);
        put_u8(&o, (uint8_t)d->act_bits);
        put_u16(&o, (uint16_t)d->grid_len);
        put_u16(&o, 0);
        for (int k = 0; k < d->rank; k++) put_u64(&o, (uint64_t)d->shape[k]);
        for (int k = 0; k < d->grid_len; k++) put_f32(&o, d->grid[k]);
        put_u64(&o, d->offset);
        put_u64(&o, d->size);
        put_u32(&o, d->crc);
        put_u32(&o, d->scale_crc);
        put_u64(&o, d->n_scales ? d->scale_offset : 0);
    }
    put_u32(&o, tn_crc32(0, o.p, o.n));
    if (o.n != hs) {
        free(o.p);
        return tn_err("internal: header size %zu, computed %llu", o.n, (unsigned long long)hs);
    }
    *header = o.p;
    *header_size = hs;
    return 0;
}

/* Destination of the bytes: a FILE or a memory image. */
typedef struct {
    FILE *f;
    uint8_t *mem;
    uint64_t pos;
    int failed;
} sink;

static void emit_at(sink *s, uint64_t at, const void *d, uint64_t n) {
    static const uint8_t zeros[TN_TRIN_ALIGN];
    while (s->pos < at && !s->failed) { /* padding */
        uint64_t k = at - s->pos < sizeof zeros ? at - s->pos : sizeof zeros;
        if (s->f) s->failed |= fwrite(zeros, 1, (size_t)k, s->f) != k;
        else memset(s->mem + s->pos, 0, (size_t)k);
        s->pos += k;
    }
    if (s->failed || n == 0) return;
    if (s->f) s->failed |= fwrite(d, 1, (size_t)n, s->f) != n;
    else memcpy(s->mem + s->pos, d, (size_t)n);
    s->pos += n;
}

static int emit_all(tn_trin_writer *w, sink *s, const uint8_t *hdr, uint64_t hs, uint64_t tok_off) {
    emit_at(s, 0, hdr, hs);
    if (w->tok_len) emit_at(s, tok_off, w->tok, w->tok_len);
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        emit_at(s, e->d.offset, e->data, e->d.size);
        if (e->d.n_scales) emit_at(s, e->d.scale_offset, e->scales, (uint64_t)e->d.n_scales * 4);
    }
    return s->failed ? -1 : 0;
}

int tn_trin_writer_to_memory(tn_trin_writer *w, uint8_t **buf, size_t *size) {
    uint8_t *hdr;
    uint64_t hs, doff, fsize, tok_off;
    uint32_t tok_crc;
    TN_CHECK(build(w, &hdr, &hs, &doff, &fsize, &tok_off, &tok_crc));
    sink s = {NULL, tn_alloc((size_t)fsize, 1), 0, 0};
    if (!s.mem) {
        free(hdr);
        return -1;
    }
    emit_all(w, &s, hdr, hs, tok_off);
    free(hdr);
    *buf = s.mem;
    *size = (size_t)fsize;
    return 0;
}

int tn_trin_writer_write(tn_trin_writer *w, const char *path) {
    uint8_t *hdr;
    uint64_t hs, doff, fsize, tok_off;
    uint32_t tok_crc;
    if (build(w, &hdr, &hs, &doff, &fsize, &tok_off, &tok_crc) != 0) return tn_err_prefix("%s", path);
    char *tmp = tn_tmp_path_for(path);
    if (!tmp) {
        free(hdr);
        return -1;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        tn_err("%s: %s", tmp, strerror(errno));
        free(tmp);
        free(hdr);
        return -1;
    }
    sink s = {f, NULL, 0, 0};
    int rc = emit_all(w, &s, hdr, hs, tok_off);
    free(hdr);
    int e = errno;
    if (fclose(f) != 0 && rc == 0) {
        e = errno;
        rc = -1;
    }
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return tn_err("%s: write failed: %s", path, strerror(e));
    }
    rc = tn_commit_file(tmp, path);
    free(tmp);
    return rc;
}
