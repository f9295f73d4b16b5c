/* `trinity info FILE`: header, config and tensor table of a .trin file, an HDF5 checkpoint (config,
 * quantizer, dataset list), a shard (kind, counts, vocabulary) or a GGUF file (metadata, tensors).
 * A .trin file is fully validated first (every CRC), so `info` also checks a file's integrity. */
#ifndef TN_RUNNER_INFO_H
#define TN_RUNNER_INFO_H

#include <stdio.h>

/* json: one JSON object on one line; else a human-readable table. */
int tn_info(const char *path, int json, FILE *out);

#endif
