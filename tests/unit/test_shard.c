/* data/shard: write/load round trip, chunked + deflate layout, h5py interoperability both ways, and
 * every corruption the loader must refuse with a clear message. */
#include "tn_test.h"

#include "core/error.h"
#include "core/h5.h"
#include "data/shard.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/tn_test_shardXXXXXX";

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k = 0;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

/* A small valid shard: 3 documents of lengths 5, 0, 15 (an empty document is legal). */
static void make_shard(tn_shard *s) {
    memset(s, 0, sizeof *s);
    strcpy(s->kind, "sft");
    strcpy(s->template_name, "trinity");
    s->vocab_size = 32000;
    s->bos_id = 1;
    s->eos_id = 2;
    strcpy(s->tokenizer_sha256, "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347");
    CHECK_OK(tn_shard_alloc(s, 20, 3));
    for (int i = 0; i < 20; i++) {
        s->tokens[i] = (uint32_t)(i * 1597 % 32000);
        s->loss_mask[i] = (uint8_t)(i % 3 == 0);
    }
    s->doc_offsets[0] = 0;
    s->doc_offsets[1] = 5;
    s->doc_offsets[2] = 5;
    s->doc_offsets[3] = 20;
}

static void test_round_trip(void) {
    tn_shard a, b;
    make_shard(&a);
    CHECK_OK(tn_shard_write(tmp("a.h5"), &a));
    CHECK_OK(tn_shard_load(tmp("a.h5"), &b));
    CHECK(strcmp(b.kind, "sft") == 0);
    CHECK(strcmp(b.template_name, "trinity") == 0);
    CHECK(b.vocab_size == 32000 && b.bos_id == 1 && b.eos_id == 2);
    CHECK(strcmp(b.tokenizer_sha256, a.tokenizer_sha256) == 0);
    CHECK(b.n_tokens == 20 && b.n_docs == 3);
    CHECK(memcmp(a.tokens, b.tokens, 20 * 4) == 0);
    CHECK(memcmp(a.loss_mask, b.loss_mask, 20) == 0);
    CHECK(memcmp(a.doc_offsets, b.doc_offsets, 4 * 8) == 0);
    tn_shard_free(&b);

    /* Layout: chunked with deflate, as DESIGN.md promises. */
    hid_t f;
    CHECK_OK(tn_h5_open(tmp("a.h5"), &f));
    hid_t ds = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(ds);
    CHECK(H5Pget_layout(dcpl) == H5D_CHUNKED);
    int has_deflate = 0;
    for (int i = 0; i < H5Pget_nfilters(dcpl); i++) {
        unsigned flags;
        size_t nel = 0;
        unsigned cd[4];
        char name[32];
        unsigned cfg;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &nel, cd, sizeof name, name, &cfg) == H5Z_FILTER_DEFLATE)
            has_deflate = 1;
    }
    CHECK(has_deflate);
    H5Pclose(dcpl);
    H5Dclose(ds);
    tn_h5_close(f);

    /* Empty text shard: legal (the loader is the one that needs tokens). */
    tn_shard e;
    memset(&e, 0, sizeof e);
    strcpy(e.kind, "text");
    e.vocab_size = 259;
    e.bos_id = e.eos_id = -1;
    CHECK_OK(tn_shard_alloc(&e, 0, 0));
    CHECK_OK(tn_shard_write(tmp("empty.h5"), &e));
    tn_shard_free(&e);
    CHECK_OK(tn_shard_load(tmp("empty.h5"), &e));
    CHECK(e.n_tokens == 0 && e.n_docs == 0 && e.bos_id == -1 && e.template_name[0] == 0);
    tn_shard_free(&e);

    /* Writing an invalid shard fails and leaves no file. */
    a.tokens[17] = 40000;
    CHECK(tn_shard_write(tmp("bad.h5"), &a) != 0);
    CHECK(strstr(tn_errmsg(), "token id 40000 at position 17 >= vocab_size 32000") != NULL);
    CHECK(access(tmp("bad.h5"), F_OK) != 0);
    a.tokens[17] = 5;
    /* Unwritable destination: error, nothing left behind. */
    CHECK(tn_shard_write("/nonexistent-dir/x.h5", &a) != 0);
    tn_shard_free(&a);
}

/* Write a shard by hand with the raw helpers so that each rule can be broken on purpose. */
typedef struct {
    const char *format;
    int64_t version, vocab;
    const char *kind;
    uint32_t tok17;
    uint8_t mask3;
    uint64_t off1, off_last;
    int64_t n_mask;
    int drop_offsets;
} raw_spec;

static void write_raw(const char *path, const raw_spec *r) {
    uint32_t tokens[20];
    uint8_t mask[20] = {0};
    uint64_t off[3] = {0, r->off1, r->off_last};
    for (int i = 0; i < 20; i++) tokens[i] = (uint32_t)i;
    tokens[17] = r->tok17;
    mask[3] = r->mask3;
    hid_t f;
    CHECK_OK(tn_h5_create(path, &f));
    CHECK_OK(tn_h5_attr_set_str(f, ".", "format", r->format));
    CHECK_OK(tn_h5_attr_set_i64(f, ".", "version", r->version));
    CHECK_OK(tn_h5_attr_set_i64(f, ".", "vocab_size", r->vocab));
    CHECK_OK(tn_h5_attr_set_i64(f, ".", "bos_id", 1));
    CHECK_OK(tn_h5_attr_set_i64(f, ".", "eos_id", 2));
    CHECK_OK(tn_h5_attr_set_str(f, ".", "kind", r->kind));
    CHECK_OK(tn_h5_attr_set_str(f, ".", "template", ""));
    CHECK_OK(tn_h5_attr_set_str(f, ".", "tokenizer_sha256", ""));
    int64_t n[1] = {20}, nm[1] = {r->n_mask}, d[1] = {3};
    CHECK_OK(tn_h5_write(f, "tokens", TN_H5_U32, 1, n, tokens, 0));
    CHECK_OK(tn_h5_write(f, "loss_mask", TN_H5_U8, 1, nm, mask, 0));
    if (!r->drop_offsets) CHECK_OK(tn_h5_write(f, "doc_offsets", TN_H5_U64, 1, d, off, 0));
    tn_h5_close(f);
}

static void expect_refused(const raw_spec *r, const char *msg) {
    tn_shard s;
    write_raw(tmp("raw.h5"), r);
    int rc = tn_shard_load(tmp("raw.h5"), &s);
    CHECKF(rc != 0 && strstr(tn_errmsg(), msg) != NULL, "expected \"%s\", got \"%s\"", msg,
           rc ? tn_errmsg() : "(loaded)");
    CHECK(s.tokens == NULL); /* freed on failure */
}

static void test_corruption(void) {
    const raw_spec ok = {"trinity-shard", 1, 32000, "text", 17, 1, 10, 20, 20, 0};
    tn_shard s;
    write_raw(tmp("raw.h5"), &ok);
    CHECK_OK(tn_shard_load(tmp("raw.h5"), &s));
    tn_shard_free(&s);

    raw_spec r = ok;
    r.tok17 = 40000;
    expect_refused(&r, "token id 40000 at position 17 >= vocab_size 32000");
    r = ok, r.format = "something-else";
    expect_refused(&r, "not a trinity shard");
    r = ok, r.version = 2;
    expect_refused(&r, "shard version 2 not supported");
    r = ok, r.kind = "image";
    expect_refused(&r, "kind \"image\"");
    r = ok, r.vocab = 0;
    expect_refused(&r, "vocab_size 0");
    r = ok, r.mask3 = 2;
    expect_refused(&r, "loss_mask value 2 at position 3");
    r = ok, r.off1 = 25;
    expect_refused(&r, "doc_offsets decrease at index 2");
    r = ok, r.off_last = 19;
    expect_refused(&r, "doc_offsets ends at 19, but there are 20 tokens");
    r = ok, r.n_mask = 19;
    expect_refused(&r, "loss_mask has 19 entries but tokens has 20");
    r = ok, r.drop_offsets = 1;
    expect_refused(&r, "missing dataset doc_offsets");

    /* Not HDF5 at all, and a truncated real shard. */
    FILE *f = fopen(tmp("junk.h5"), "wb");
    fputs("this is not a shard\n", f);
    fclose(f);
    CHECK(tn_shard_load(tmp("junk.h5"), &s) != 0);
    CHECK(strstr(tn_errmsg(), "not an HDF5 file") != NULL);
    CHECK(tn_shard_load(tmp("missing.h5"), &s) != 0);

    tn_shard a;
    make_shard(&a);
    CHECK_OK(tn_shard_write(tmp("trunc.h5"), &a));
    tn_shard_free(&a);
    CHECK(truncate(tmp("trunc.h5"), 1200) == 0);
    CHECK(tn_shard_load(tmp("trunc.h5"), &s) != 0);
    CHECK(s.tokens == NULL);
}

/* h5py writes a shard with the other encodings it commonly produces (fixed-length byte strings, int32
 * attributes, int64 doc_offsets, int32 tokens) and reads ours back. */
static void test_h5py(void) {
    const char *py = getenv("TN_PYTHON");
    if (!py || access(py, X_OK) != 0) {
        printf("h5py part skipped: TN_PYTHON not set\n");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s - <<'EOF'\n"
             "import h5py, numpy as np\n"
             "with h5py.File('%s', 'w') as f:\n"
             "    f.attrs['format'] = np.bytes_('trinity-shard')\n"
             "    f.attrs['version'] = np.int32(1)\n"
             "    f.attrs['vocab_size'] = np.uint16(300)\n"
             "    f.attrs['bos_id'] = 256\n"
             "    f.attrs['eos_id'] = np.int8(-1)\n"
             "    f.attrs['tokenizer_sha256'] = ''\n"
             "    f.attrs['kind'] = 'text'\n"
             "    f.attrs['template'] = np.bytes_('')\n"
             "    f['tokens'] = np.arange(10, dtype=np.int32) * 29\n"
             "    f['loss_mask'] = np.ones(10, dtype=np.uint8)\n"
             "    f['doc_offsets'] = np.array([0, 4, 10], dtype=np.int64)\n"
             "f = h5py.File('%s', 'r')\n"
             "assert f.attrs['format'] == 'trinity-shard', f.attrs['format']\n"
             "assert f.attrs['kind'] == 'sft' and f.attrs['template'] == 'trinity'\n"
             "assert int(f.attrs['vocab_size']) == 32000 and int(f.attrs['eos_id']) == 2\n"
             "assert f['tokens'].dtype == np.uint32 and f['loss_mask'].dtype == np.uint8\n"
             "assert f['doc_offsets'].dtype == np.uint64 and list(f['doc_offsets'][:]) == [0, 5, 5, 20]\n"
             "assert int(f['tokens'][7]) == 7 * 1597 %% 32000\n"
             "assert f['tokens'].compression == 'gzip'\n"
             "EOF",
             py, tmp("py.h5"), tmp("a.h5"));
    tn_shard a;
    make_shard(&a);
    CHECK_OK(tn_shard_write(tmp("a.h5"), &a));
    tn_shard_free(&a);
    int rc = system(cmd);
    CHECKF(rc == 0, "h5py script failed (%d)", rc);
    if (rc != 0) return;
    tn_shard s;
    CHECK_OK(tn_shard_load(tmp("py.h5"), &s));
    CHECK(s.vocab_size == 300 && s.bos_id == 256 && s.eos_id == -1);
    CHECK(strcmp(s.kind, "text") == 0 && s.template_name[0] == 0);
    CHECK(s.n_tokens == 10 && s.n_docs == 2 && s.tokens[9] == 261 && s.doc_offsets[1] == 4);
    tn_shard_free(&s);

    /* A negative token written as int64 must not be clamped to 0 by the type conversion. */
    snprintf(cmd, sizeof cmd,
             "%s -c \"import h5py, numpy as np\n"
             "f = h5py.File('%s', 'w'); f.attrs['format'] = 'trinity-shard'; f.attrs['version'] = 1\n"
             "f.attrs['vocab_size'] = 300; f.attrs['kind'] = 'text'\n"
             "f['tokens'] = np.array([3, -1, 4]); f['loss_mask'] = np.ones(3, dtype=np.uint8)\n"
             "f['doc_offsets'] = np.array([0, 3], dtype=np.uint64)\"",
             py, tmp("neg.h5"));
    CHECK(system(cmd) == 0);
    CHECK(tn_shard_load(tmp("neg.h5"), &s) != 0);
    CHECKF(strstr(tn_errmsg(), "negative value -1 at position 1") != NULL, "%s", tn_errmsg());
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_round_trip();
    test_corruption();
    test_h5py();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tn_test_finish();
}
