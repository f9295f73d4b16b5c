/* The tokenizer of a model file: `--tokenizer` of `trinity tokenize` and `trinity prepare` (and `run`)
 * accepts a .trin file or an HDF5 checkpoint, whose embedded tokenizer (with its chat template) is used,
 * besides every source data/tokenizer.h loads. Lives in runner/ because it reads both model formats. */
#ifndef TN_RUNNER_MODEL_TOKENIZER_H
#define TN_RUNNER_MODEL_TOKENIZER_H

#include "data/tokenizer.h"

/* A .trin file (magic "TRIN") or a trinity checkpoint (HDF5 signature): its tokenizer; anything else:
 * tn_tokenizer_load. A model file without a tokenizer, or with one stored raw (a format only the importer
 * knew), is an error that says so. */
int tn_model_tokenizer_load(const char *path, tn_tokenizer **out);

#endif
