/* train/tensorboard.c without the tensorboard package (tests/cli/test_train_tensorboard.sh reads the files
 * with it): the masked CRC-32C on the standard check string, the framing of every record (length, CRCs of
 * length and data), the exact protocol-buffer bytes of one scalar event, nested tags, and an event without
 * numbers writing nothing. */
#include "tn_test.h"

#include "core/error.h"
#include "core/fileio.h"
#include "train/tensorboard.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int main(void) {
    /* CRC-32C("123456789") = 0xE3069283 (RFC 3720 B.4 check value), masked as TFRecord does */
    const uint32_t c = 0xE3069283u, masked = ((c >> 15) | (c << 17)) + 0xa282ead8u;
    CHECK(tn_tb_masked_crc("123456789", 9) == masked);

    char dir[] = "/tmp/tn_test_tbXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    tn_tb *tb;
    CHECK_OK(tn_tb_open(dir, &tb));
    cJSON *o = cJSON_Parse("{\"step\": 7, \"loss\": 1.5, \"note\": \"text\", \"memory\": {\"bytes\": 64}}");
    CHECK_OK(tn_tb_write_json(tb, o, 7));
    cJSON_Delete(o);
    o = cJSON_Parse("{\"prompt\": \"only text\"}");
    CHECK_OK(tn_tb_write_json(tb, o, 8)); /* nothing numeric: no record */
    cJSON_Delete(o);
    char path[1300];
    snprintf(path, sizeof path, "%s", tn_tb_path(tb));
    tn_tb_close(tb);

    char *data;
    size_t size;
    CHECK_OK(tn_read_file(path, &data, &size));
    const uint8_t *p = (const uint8_t *)data;
    int records = 0;
    const uint8_t *ev[2] = {NULL, NULL};
    size_t ev_len[2] = {0, 0};
    for (size_t off = 0; off + 16 <= size; records++) {
        uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)p[off + i] << (8 * i);
        CHECK(rd32(p + off + 8) == tn_tb_masked_crc(p + off, 8));
        CHECK(off + 16 + len <= size);
        if (off + 16 + len > size) break;
        CHECK(rd32(p + off + 12 + len) == tn_tb_masked_crc(p + off + 12, (size_t)len));
        if (records < 2) ev[records] = p + off + 12, ev_len[records] = (size_t)len;
        off += 16 + len;
    }
    CHECK(records == 2);
    /* record 0: wall_time (tag 0x09 + 8 bytes), file_version (tag 0x1a, length 13, "brain.Event:2") */
    CHECK(ev_len[0] == 9 + 2 + 13 && ev[0][0] == 0x09 && ev[0][9] == 0x1a && ev[0][10] == 13 &&
          memcmp(ev[0] + 11, "brain.Event:2", 13) == 0);
    /* record 1: wall_time, step 7 (0x10 0x07), summary (0x2a len) { value (0x0a len) { tag, simple_value } x2 } */
    static const uint8_t value1[] = {0x0a, 0x04, 'l', 'o', 's', 's', 0x15, 0x00, 0x00, 0xc0, 0x3f}; /* 1.5f */
    static const uint8_t value2[] = {0x0a, 0x0c, 'm', 'e', 'm', 'o', 'r', 'y', '/', 'b', 'y', 't', 'e', 's',
                                     0x15, 0x00, 0x00, 0x80, 0x42}; /* 64.0f */
    const uint8_t *e = ev[1];
    CHECK(e[0] == 0x09 && e[9] == 0x10 && e[10] == 0x07 && e[11] == 0x2a);
    const size_t sum_len = 2 + sizeof value1 + 2 + sizeof value2;
    CHECK(e[12] == sum_len && ev_len[1] == 13 + sum_len);
    CHECK(e[13] == 0x0a && e[14] == sizeof value1 && memcmp(e + 15, value1, sizeof value1) == 0);
    const uint8_t *v2 = e + 15 + sizeof value1;
    CHECK(v2[0] == 0x0a && v2[1] == sizeof value2 && memcmp(v2 + 2, value2, sizeof value2) == 0);
    free(data);
    unlink(path);
    rmdir(dir);
    return tn_test_finish();
}
