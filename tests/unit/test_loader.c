/* data/loader: text windows (coverage per epoch, reshuffle, shard boundaries), SFT rows padded and
 * packed (every example whole and once per epoch, masks), determinism, save/restore continuing the
 * same batch sequence, and the errors (too little data, mixed tokenizers, bad cursor blobs). */
#include "tn_test.h"

#include "core/error.h"
#include "data/loader.h"
#include "data/shard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char dir[] = "/tmp/tn_test_loaderXXXXXX";

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static const char *SHA_A = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *SHA_B = "2222222222222222222222222222222222222222222222222222222222222222";

/* Text shard whose tokens are first, first+1, ..., so a window is recognisable by its first token. */
static void write_text(const char *path, int64_t first, int64_t n, const char *sha) {
    tn_shard s;
    memset(&s, 0, sizeof s);
    strcpy(s.kind, "text");
    s.vocab_size = 100000;
    s.bos_id = -1;
    s.eos_id = 2;
    strcpy(s.tokenizer_sha256, sha);
    CHECK_OK(tn_shard_alloc(&s, n, 1));
    for (int64_t i = 0; i < n; i++) {
        s.tokens[i] = (uint32_t)(first + i);
        s.loss_mask[i] = 1;
    }
    s.doc_offsets[1] = (uint64_t)n;
    CHECK_OK(tn_shard_write(path, &s));
    tn_shard_free(&s);
}

enum { T = 16, NEX = 12 };
static const int ex_len[NEX] = {5, 30, 1, 8, 17, 3, 2, 9, 17, 40, 6, 11};

/* SFT shard: example i has tokens 100*(i+1) + j, j = 0..len-1; loss_mask = (j >= 2). */
static void write_sft(const char *path) {
    tn_shard s;
    memset(&s, 0, sizeof s);
    strcpy(s.kind, "sft");
    strcpy(s.template_name, "trinity");
    s.vocab_size = 2000;
    s.bos_id = 1;
    s.eos_id = 2;
    strcpy(s.tokenizer_sha256, SHA_A);
    int64_t n = 0;
    for (int i = 0; i < NEX; i++) n += ex_len[i];
    CHECK_OK(tn_shard_alloc(&s, n, NEX));
    int64_t k = 0;
    for (int i = 0; i < NEX; i++) {
        for (int j = 0; j < ex_len[i]; j++, k++) {
            s.tokens[k] = (uint32_t)(100 * (i + 1) + j);
            s.loss_mask[k] = j >= 2;
        }
        s.doc_offsets[i + 1] = (uint64_t)k;
    }
    CHECK_OK(tn_shard_write(path, &s));
    tn_shard_free(&s);
}

static void test_text(void) {
    const char *p = tmp("text.h5");
    write_text(p, 0, 1000, SHA_A);
    tn_loader_opts o = {.batch = 4, .seq_len = T, .seed = 7};
    tn_loader *l;
    CHECK_OK(tn_loader_open(&l, &p, 1, &o));
    int64_t nw = tn_loader_items(l);
    CHECK(nw == 999 / T); /* 62 */
    CHECK(tn_loader_vocab_size(l) == 100000);
    int32_t in[4 * T], tg[4 * T];
    uint8_t m[4 * T];
    /* 2 epochs + a bit: every window exactly once per epoch, rows well-formed, orders differ. */
    int64_t seen_rows = 0, order[2][64];
    int count[2][64];
    memset(count, 0, sizeof count);
    int ok_rows = 1;
    while (seen_rows < 2 * nw) {
        CHECK_OK(tn_loader_next(l, in, tg, m));
        for (int b = 0; b < 4 && seen_rows < 2 * nw; b++, seen_rows++) {
            int32_t *ib = in + b * T, *tb = tg + b * T;
            int ok = ib[0] % T == 0;
            for (int t = 0; t < T; t++) ok &= tb[t] == ib[t] + 1 && (t == 0 || ib[t] == ib[t - 1] + 1) && m[b * T + t] == 1;
            ok_rows &= ok;
            int e = (int)(seen_rows / nw);
            order[e][seen_rows % nw] = ib[0] / T;
            count[e][ib[0] / T]++;
        }
    }
    CHECK(ok_rows);
    int once = 1;
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < nw; k++) once &= count[e][k] == 1;
    CHECK(once);
    CHECK(memcmp(order[0], order[1], (size_t)nw * sizeof order[0][0]) != 0);
    CHECK(tn_loader_epoch(l) == 2 || tn_loader_epoch(l) == 1);
    tn_loader_close(l);

    /* Same seed, same batches; different seed, different batches. */
    tn_loader *a, *b, *c;
    tn_loader_opts o2 = o;
    o2.seed = 8;
    CHECK_OK(tn_loader_open(&a, &p, 1, &o));
    CHECK_OK(tn_loader_open(&b, &p, 1, &o));
    CHECK_OK(tn_loader_open(&c, &p, 1, &o2));
    int32_t ia[4 * T], ta[4 * T], ib2[4 * T], tb2[4 * T], ic[4 * T], tc[4 * T];
    uint8_t ma[4 * T], mb[4 * T], mc[4 * T];
    int same = 1, differ = 0;
    for (int i = 0; i < 40; i++) {
        tn_loader_next(a, ia, ta, ma);
        tn_loader_next(b, ib2, tb2, mb);
        tn_loader_next(c, ic, tc, mc);
        same &= memcmp(ia, ib2, sizeof ia) == 0 && memcmp(ta, tb2, sizeof ta) == 0 && memcmp(ma, mb, sizeof ma) == 0;
        differ |= memcmp(ia, ic, sizeof ia) != 0;
    }
    CHECK(same);
    CHECK(differ);
    tn_loader_close(a);
    tn_loader_close(b);
    tn_loader_close(c);

    /* Sequential: windows in order. */
    o.sequential = 1;
    CHECK_OK(tn_loader_open(&a, &p, 1, &o));
    tn_loader_next(a, in, tg, m);
    CHECK(in[0] == 0 && in[T] == T && in[3 * T] == 3 * T);
    tn_loader_close(a);
}

/* Two shards form one stream: a window that crosses the boundary is still consecutive. */
static void test_multi(void) {
    const char *p[3] = {tmp("m1.h5"), tmp("m2.h5"), tmp("m3.h5")};
    write_text(p[0], 0, 40, SHA_A);
    write_text(p[1], 40, 50, SHA_A);
    write_text(p[2], 90, 30, SHA_B);
    tn_loader_opts o = {.batch = 1, .seq_len = T, .seed = 1, .sequential = 1};
    tn_loader *l;
    CHECK_OK(tn_loader_open(&l, p, 2, &o));
    CHECK(tn_loader_tokens(l) == 90 && tn_loader_items(l) == 89 / T);
    int32_t in[T], tg[T];
    uint8_t m[T];
    int ok = 1;
    for (int r = 0; r < 5; r++) {
        tn_loader_next(l, in, tg, m);
        for (int t = 0; t < T; t++) ok &= in[t] == r * T + t && tg[t] == r * T + t + 1;
    }
    CHECK(ok); /* row 2 covers tokens 32..48, across the boundary at 40 */
    tn_loader_close(l);

    /* Different tokenizers: refused. */
    CHECK(tn_loader_open(&l, p + 1, 2, &o) != 0);
    CHECK(strstr(tn_errmsg(), "different tokenizers") != NULL);
    /* Too small for one window. */
    o.seq_len = 64;
    CHECK(tn_loader_open(&l, p, 1, &o) != 0);
    CHECKF(strstr(tn_errmsg(), "fewer than one window") != NULL, "%s", tn_errmsg());
    /* Missing file. */
    const char *missing = tmp("nope.h5");
    CHECK(tn_loader_open(&l, &missing, 1, &o) != 0);
}

/* Split a batch of rows back into examples: returns how many were found, writing example ids, and
 * checks every structural rule of the SFT layout on the way. */
static int parse_rows(const int32_t *in, const int32_t *tg, const uint8_t *m, int batch, int pack, int *ids,
                      int *ok) {
    int n = 0;
    for (int b = 0; b < batch; b++) {
        const int32_t *ib = in + b * T, *tb = tg + b * T;
        const uint8_t *mb = m + b * T;
        int32_t w[T + 1];
        int u = 1;
        w[0] = ib[0];
        for (int t = 0; t < T && tb[t] != 2; t++) {
            if (ib[t] != w[t]) *ok = 0;
            w[u++] = tb[t];
            if (mb[t] != ((tb[t] % 100) >= 2)) *ok = 0;
        }
        for (int t = u - 1; t < T; t++)
            if (mb[t] != 0 || tb[t] != 2) *ok = 0;
        int in_row = 0;
        for (int t = 0; t < u; t++) {
            int ex = w[t] / 100 - 1, j = w[t] % 100;
            if (j == 0) {
                ids[n++] = ex;
                in_row++;
                int len = ex_len[ex] < T + 1 ? ex_len[ex] : T + 1;
                if (t + len > u) *ok = 0; /* split or truncated wrongly */
                for (int q = 0; q < len && t + q < u; q++)
                    if (w[t + q] != 100 * (ex + 1) + q) *ok = 0;
                t += len - 1;
            } else {
                *ok = 0;
            }
        }
        if (!pack && in_row != 1) *ok = 0;
    }
    return n;
}

static void test_sft(int pack) {
    const char *p = tmp("sft.h5");
    write_sft(p);
    tn_loader_opts o = {.batch = 3, .seq_len = T, .seed = 3, .sft_mode = 1, .sft_pack = pack};
    tn_loader *l;
    CHECK_OK(tn_loader_open(&l, &p, 1, &o));
    CHECK(tn_loader_items(l) == NEX - 1); /* the 1-token example has no target */
    int32_t in[3 * T], tg[3 * T];
    uint8_t m[3 * T];
    int ids[400], n = 0, ok = 1, multi = 0;
    while (n < 3 * (NEX - 1)) {
        CHECK_OK(tn_loader_next(l, in, tg, m));
        int k = parse_rows(in, tg, m, 3, pack, ids + n, &ok);
        multi |= k > 3;
        n += k;
    }
    CHECKF(ok, "pack=%d: malformed SFT rows", pack);
    if (pack) CHECK(multi);
    for (int e = 0; e < 3; e++) {
        int cnt[NEX] = {0};
        for (int i = 0; i < NEX - 1; i++) cnt[ids[e * (NEX - 1) + i]]++;
        int once = cnt[2] == 0;
        for (int i = 0; i < NEX; i++) once &= i == 2 || cnt[i] == 1;
        CHECKF(once, "pack=%d epoch %d: not every example exactly once", pack, e);
    }
    CHECK(memcmp(ids, ids + NEX - 1, (NEX - 1) * sizeof ids[0]) != 0);
    tn_loader_close(l);
}

/* Save after k batches, then a fresh loader restored from the blob produces the same next batches,
 * across epoch boundaries. */
static void test_resume(int sft, int pack) {
    const char *p = sft ? tmp("sft.h5") : tmp("text.h5");
    tn_loader_opts o = {.batch = 5, .seq_len = T, .seed = 11, .sft_mode = sft, .sft_pack = pack};
    tn_loader *a, *b;
    CHECK_OK(tn_loader_open(&a, &p, 1, &o));
    int32_t in[5 * T], tg[5 * T], in2[5 * T], tg2[5 * T];
    uint8_t m[5 * T], m2[5 * T];
    for (int i = 0; i < 7; i++) tn_loader_next(a, in, tg, m);
    uint8_t *blob;
    size_t len;
    CHECK_OK(tn_loader_save_state(a, &blob, &len));
    tn_loader_opts o2 = o;
    o2.seed = 999; /* the cursor carries the seed */
    CHECK_OK(tn_loader_open(&b, &p, 1, &o2));
    tn_loader_next(b, in2, tg2, m2); /* move it somewhere else first */
    CHECK_OK(tn_loader_restore_state(b, blob, len));
    CHECK(tn_loader_epoch(a) == tn_loader_epoch(b));
    int same = 1;
    for (int i = 0; i < 40; i++) {
        tn_loader_next(a, in, tg, m);
        tn_loader_next(b, in2, tg2, m2);
        same &= memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0 && memcmp(m, m2, sizeof m) == 0;
    }
    CHECKF(same, "resume sft=%d pack=%d diverged", sft, pack);
    CHECK(tn_loader_epoch(a) > 1);

    /* Damaged or mismatched cursors are refused. */
    blob[41] ^= 1;
    CHECK(tn_loader_restore_state(b, blob, len) != 0);
    CHECK(strstr(tn_errmsg(), "checksum") != NULL);
    blob[41] ^= 1;
    CHECK(tn_loader_restore_state(b, blob, len - 1) != 0);
    tn_loader *c;
    o.seq_len = T / 2;
    CHECK_OK(tn_loader_open(&c, &p, 1, &o));
    CHECK(tn_loader_restore_state(c, blob, len) != 0);
    CHECK(strstr(tn_errmsg(), "seq_len") != NULL);
    tn_loader_close(c);
    free(blob);
    tn_loader_close(a);
    tn_loader_close(b);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_text();
    test_multi();
    test_sft(0);
    test_sft(1);
    test_resume(0, 0);
    test_resume(1, 0);
    test_resume(1, 1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
