/* Tiny random checkpoints for the tests that export or import one (test_export_gguf, test_export_hf). */
#ifndef TN_TINY_CKPT_H
#define TN_TINY_CKPT_H

#include <stdint.h>

#include "train/checkpoint.h"

/* A model of cfg in ck (zeroed first; free with tn_ckpt_free): matrices N(0, 0.08²) (tn_llama_init_random),
 * every vector (norms, biases, q/k norms) then moved by N(0, 0.1²) so none is trivial, and the bytes
 * tokenizer serialized as "trinity-tokenizer". Deterministic in seed. */
int tn_test_random_ckpt(tn_checkpoint *ck, const tn_llama_config *cfg, uint64_t seed);

#endif
