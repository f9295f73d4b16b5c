/* Reading the reference fixtures written by tests/reference/gen_llama*.py (HDF5): the model config kept
 * as root attributes, and one float32 dataset per parameter under a group (params, grads, ...). */
#ifndef TN_TEST_FIXTURE_LLAMA_H
#define TN_TEST_FIXTURE_LLAMA_H

#include "core/h5.h"
#include "model/llama.h"

/* Root attribute `key` (int64 in the file) as an int. */
int tn_fixture_get_int(hid_t f, const char *key, int *out);
/* The Llama config from the root attributes (dim, n_layers, ..., rope_theta, norm_eps). */
int tn_fixture_read_config(hid_t f, tn_llama_config *c);
/* /<group>/<HF name> for every tensor of the layout into buf, laid out like the parameters. */
int tn_fixture_read_tensors(hid_t f, const char *group, const tn_llama_layout *l, float *buf);
/* Number of links (datasets) in /<group>, or -1 if it cannot be read. */
long tn_fixture_n_links(hid_t f, const char *group);

#endif
