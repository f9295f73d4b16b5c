/* core/: config parsing and overrides, RNG determinism and distribution, CRC32 known value, atomic
 * writes, HDF5 round trip with shape checks, a file read into huge-page memory (the same bytes as its map,
 * on a 2 MiB boundary; a sparse 1 TiB file, mapped instead; an empty file; a missing one). */
#include "tn_test.h"

#include "core/config.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/h5.h"
#include "core/rng.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_config(void) {
    char path[] = "/tmp/tn_test_cfgXXXXXX";
    int fd = mkstemp(path);
    const char *text = "[train]\nsteps = 100\nlr = 3e-4\nname = hello\n[model]\ndim=64\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    tn_config *c = tn_config_new();
    CHECK_OK(tn_config_load(c, path));
    CHECK_OK(tn_config_set(c, "train.steps=200"));
    CHECK(tn_config_set(c, "nodot=1") != 0);
    int64_t steps = 0, dim = 0, missing = 0;
    double lr = 0;
    CHECK_OK(tn_config_int(c, "train", "steps", 0, &steps));
    CHECK(steps == 200);
    CHECK_OK(tn_config_float(c, "train", "lr", 0, &lr));
    CHECK(fabs(lr - 3e-4) < 1e-12);
    CHECK_OK(tn_config_int(c, "train", "absent", 7, &missing));
    CHECK(missing == 7);
    CHECK(tn_config_int_req(c, "train", "absent", &missing) != 0);
    CHECK(strstr(tn_errmsg(), "missing config key [train] absent") != NULL);
    CHECK(tn_config_int(c, "train", "name", 0, &missing) != 0);
    CHECK(tn_config_check_unused(c) != 0); /* [model] dim never read */
    CHECK(strstr(tn_errmsg(), "[model] dim") != NULL);
    CHECK_OK(tn_config_int(c, "model", "dim", 0, &dim));
    CHECK_OK(tn_config_check_unused(c));
    tn_config_free(c);
    unlink(path);
}

static void test_rng(void) {
    tn_rng a, b;
    tn_rng_seed(&a, 42);
    tn_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= tn_rng_u64(&a) == tn_rng_u64(&b);
    CHECK(same);
    double sum = 0, sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = tn_rng_normal(&a);
        sum += x;
        sq += x * x;
    }
    CHECKF(fabs(sum / n) < 0.01, "mean %g", sum / n);
    CHECKF(fabs(sq / n - 1) < 0.02, "var %g", sq / n);
    int hist[10] = {0};
    for (int i = 0; i < n; i++) hist[tn_rng_below(&a, 10)]++;
    int flat = 1;
    for (int i = 0; i < 10; i++) flat &= abs(hist[i] - n / 10) < n / 100;
    CHECK(flat);
}

static void test_crc(void) {
    CHECK(tn_crc32(0, "123456789", 9) == 0xCBF43926u); /* the standard check value */
    uint32_t c = tn_crc32(0, "1234", 4);
    CHECK(tn_crc32(c, "56789", 5) == 0xCBF43926u);
}

static void test_h5(void) {
    const char *path = "/tmp/tn_test_core.h5";
    hid_t f;
    CHECK_OK(tn_h5_create(path, &f));
    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    CHECK_OK(tn_h5_write(f, "a/b/x", TN_H5_F32, 2, shape, data, 4));
    CHECK_OK(tn_h5_attr_set_str(f, ".", "format", "trinity-test"));
    CHECK_OK(tn_h5_attr_set_i64(f, "a/b/x", "n", 6));
    tn_h5_close(f);
    CHECK_OK(tn_h5_open(path, &f));
    float back[6] = {0};
    CHECK_OK(tn_h5_read(f, "a/b/x", TN_H5_F32, 2, shape, back));
    CHECK(memcmp(back, data, sizeof data) == 0);
    int64_t wrong[2] = {3, 2};
    CHECK(tn_h5_read(f, "a/b/x", TN_H5_F32, 2, wrong, back) != 0);
    CHECK(strstr(tn_errmsg(), "shape 2x3, expected 3x2") != NULL);
    CHECK(tn_h5_read(f, "a/b/nope", TN_H5_F32, 2, shape, back) != 0);
    char s[64];
    int64_t n = 0;
    CHECK_OK(tn_h5_attr_get_str(f, ".", "format", s, sizeof s));
    CHECK(strcmp(s, "trinity-test") == 0);
    CHECK_OK(tn_h5_attr_get_i64(f, "a/b/x", "n", &n));
    CHECK(n == 6);
    tn_h5_close(f);
    unlink(path);
    /* Not an HDF5 file: one clear error. */
    CHECK_OK(tn_write_file_atomic(path, "garbage", 7));
    CHECK(tn_h5_open(path, &f) != 0);
    CHECK(strstr(tn_errmsg(), "not an HDF5 file") != NULL);
    unlink(path);
}

static void test_load_huge(void) {
    char path[] = "/tmp/tn_test_hugeXXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0);
    const size_t n = ((size_t)3 << 20) + 12345; /* beyond one huge page, not a multiple of one */
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK(write(fd, buf, n) == (ssize_t)n);
    close(fd);
    tn_mapped_file a, b;
    CHECK_OK(tn_load_file_huge(path, &a));
    CHECK_OK(tn_map_file(path, &b));
    CHECK(a.size == n && b.size == n && a.data && memcmp(a.data, buf, n) == 0 && memcmp(b.data, buf, n) == 0);
    CHECK(((uintptr_t)a.data & (((uintptr_t)2 << 20) - 1)) == 0 && a.region && a.fd < 0);
    CHECK(a.region && (uint8_t *)a.region <= a.data && a.data + n <= (uint8_t *)a.region + a.region_size);
    tn_unmap_file(&a);
    tn_unmap_file(&b);
    CHECK(a.data == NULL && a.region == NULL && b.data == NULL);
    /* a sparse file beyond the memory available: mapped instead (a warning), readable all the same */
    const off_t big = (off_t)1 << 40;
    CHECK(truncate(path, big) == 0);
    CHECK_OK(tn_load_file_huge(path, &a));
    CHECK(a.region == NULL && a.data != NULL && a.size == (size_t)big && a.data[n] == 0 && a.data[big - 1] == 0);
    tn_unmap_file(&a);
    CHECK(truncate(path, 0) == 0);
    CHECK_OK(tn_load_file_huge(path, &a));
    CHECK(a.data == NULL && a.size == 0);
    tn_unmap_file(&a);
    unlink(path);
    CHECK(tn_load_file_huge(path, &a) != 0 && strstr(tn_errmsg(), "No such file") != NULL);
    free(buf);
}

int main(void) {
    test_load_huge();
    test_config();
    test_rng();
    test_crc();
    test_h5();
    return tn_test_finish();
}
