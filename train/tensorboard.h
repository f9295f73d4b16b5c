/* TensorBoard event files: every numeric key of a log.jsonl line as a scalar summary, so that a run can be
 * watched with `tensorboard --logdir RUN_DIR` ([train] tensorboard = true; docs/CONFIG.md).
 *
 * Format (TensorFlow's TFRecord framing of Event protocol buffers, as tensorboard's EventFileLoader reads it):
 *   record   u64 length (LE) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data
 *            masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8  (tensorflow/core/lib/hash/crc32c.h)
 *   Event    1 wall_time double, 2 step int64, 3 file_version string ("brain.Event:2", the first record),
 *            5 summary Summary                                       (tensorflow/core/util/event.proto)
 *   Summary  repeated 1 value { 1 tag string, 2 simple_value float }  (tensorflow/core/framework/summary.proto)
 * CRC-32C (Castagnoli) comes from ISA-L (crc32_iscsi). The file is events.out.tfevents.<seconds>.<host>.<pid>
 * in the run directory; a resumed run starts a new file (TensorBoard reads all of them in name order). Each
 * record is flushed as written, so a killed run leaves a readable file up to its last record. */
#ifndef TN_TRAIN_TENSORBOARD_H
#define TN_TRAIN_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct tn_tb tn_tb;

/* Create the event file in dir and write its version record. */
int tn_tb_open(const char *dir, tn_tb **out);
/* One event at `step`, stamped with the wall clock, with a scalar per numeric member of o (nested objects:
 * "outer/inner" tags); a member named "step" is the step, not a scalar. Nothing numeric: nothing written. */
int tn_tb_write_json(tn_tb *tb, const cJSON *o, int64_t step);
void tn_tb_close(tn_tb *tb);
const char *tn_tb_path(const tn_tb *tb);

/* The masked CRC-32C of TFRecord framing (exposed for the tests). */
uint32_t tn_tb_masked_crc(const void *data, size_t len);

#endif
