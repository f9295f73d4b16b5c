#include "train/tensorboard.h"

#include "core/error.h"

#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tn_tb {
    FILE *f;
    char path[1200];
};

static double wall_time_s(void);

/* ---- protocol buffer encoding: only what an Event with scalars needs --------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} pbuf;

static void put(pbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void varint(pbuf *b, uint64_t v) {
    uint8_t t[10];
    int n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    put(b, t, (size_t)n);
}

/* key = field number << 3 | wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit) */
static void key(pbuf *b, int field, int wire) { varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

static void bytes_field(pbuf *b, int field, const void *d, size_t n) {
    key(b, field, 2);
    varint(b, n);
    put(b, d, n);
}

static void le(pbuf *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)n);
}

static void double_field(pbuf *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    key(b, field, 1);
    le(b, u, 8);
}

static void float_field(pbuf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    key(b, field, 5);
    le(b, u, 4);
}

/* ---- TFRecord framing ---------------------------------------------------------------------------------- */

uint32_t tn_tb_masked_crc(const void *data, size_t len) {
    /* CRC-32C with the usual pre- and post-inversion: ISA-L's crc32_iscsi applies the initial value as given
     * and does not invert the result */
    uint32_t c = crc32_iscsi((unsigned char *)(uintptr_t)data, (int)len, 0xffffffffu) ^ 0xffffffffu;
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static int write_record(tn_tb *tb, const pbuf *ev) {
    if (ev->oom) return tn_err("tensorboard: out of memory");
    if (ev->n > (size_t)1 << 30) return tn_err("tensorboard: event of %zu bytes", ev->n);
    uint8_t head[12];
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)ev->n >> (8 * i));
    uint32_t hc = tn_tb_masked_crc(head, 8), dc = tn_tb_masked_crc(ev->p, ev->n);
    for (int i = 0; i < 4; i++) head[8 + i] = (uint8_t)(hc >> (8 * i));
    uint8_t tail[4];
    for (int i = 0; i < 4; i++) tail[i] = (uint8_t)(dc >> (8 * i));
    if (fwrite(head, 1, 12, tb->f) != 12 || fwrite(ev->p, 1, ev->n, tb->f) != ev->n || fwrite(tail, 1, 4, tb->f) != 4 ||
        fflush(tb->f) != 0)
        return tn_err("%s: write failed", tb->path);
    return 0;
}

/* ---- events ---------------------------------------------------------------------------------------------- */

int tn_tb_open(const char *dir, tn_tb **out) {
    *out = NULL;
    tn_tb *tb = calloc(1, sizeof *tb);
    if (!tb) return tn_err("out of memory");
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *h = host; *h; h++)
        if (*h == '/' || *h == ' ') *h = '_';
    snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%lld.%s.%ld", dir, (long long)time(NULL), host,
             (long)getpid());
    if (!(tb->f = fopen(tb->path, "wb"))) {
        int rc = tn_err("%s: cannot create the TensorBoard event file", tb->path);
        free(tb);
        return rc;
    }
    pbuf ev = {0};
    double_field(&ev, 1, wall_time_s());
    bytes_field(&ev, 3, "brain.Event:2", 13);
    int rc = write_record(tb, &ev);
    free(ev.p);
    if (rc != 0) {
        tn_tb_close(tb);
        return rc;
    }
    *out = tb;
    return 0;
}

/* One Summary.Value per number under o, tags prefixed by `prefix/` for nested objects. */
static void add_values(pbuf *sum, const cJSON *o, const char *prefix) {
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        if (!it->string || strcmp(it->string, "step") == 0) continue;
        char tag[256];
        snprintf(tag, sizeof tag, "%s%s%s", prefix, *prefix ? "/" : "", it->string);
        if (cJSON_IsObject(it)) {
            add_values(sum, it, tag);
        } else if (cJSON_IsNumber(it)) {
            pbuf v = {0};
            bytes_field(&v, 1, tag, strlen(tag));
            float_field(&v, 2, (float)it->valuedouble);
            if (v.oom) sum->oom = 1;
            else bytes_field(sum, 1, v.p, v.n);
            free(v.p);
        }
    }
}

static double wall_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tn_tb_write_json(tn_tb *tb, const cJSON *o, int64_t step) {
    pbuf sum = {0}, ev = {0};
    add_values(&sum, o, "");
    if (sum.n == 0 && !sum.oom) return 0; /* nothing numeric */
    double_field(&ev, 1, wall_time_s());
    key(&ev, 2, 0);
    varint(&ev, (uint64_t)step);
    if (sum.oom) ev.oom = 1;
    else bytes_field(&ev, 5, sum.p, sum.n);
    int rc = write_record(tb, &ev);
    free(sum.p);
    free(ev.p);
    return rc;
}

const char *tn_tb_path(const tn_tb *tb) { return tb->path; }

void tn_tb_close(tn_tb *tb) {
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb);
}
