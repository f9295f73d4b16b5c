/* Rotary position embedding: the per-frequency inverse wavelengths and the cos/sin tables every backend
 * reads, for each frequency-scaling type trinity implements. Formulas follow Hugging Face transformers'
 * rope initialisation functions (src/transformers/modeling_rope_utils.py), evaluated in float32 like them:
 *
 *   default  inv_freq[i] = 1 / theta^(2i / hd),                     i in [0, hd/2)
 *   linear   inv_freq[i] = default[i] / factor                      (positions effectively divided by factor)
 *   llama3   with wavelen = 2 pi / default[i], lo = orig / low_freq_factor, hi = orig / high_freq_factor:
 *              wavelen < hi          default[i]                     (high frequencies kept)
 *              wavelen > lo          default[i] / factor            (low frequencies slowed)
 *              otherwise             (1 - s) default[i] / factor + s default[i],
 *                                    s = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
 *            (orig = original_max_position_embeddings). The attention scale stays 1 for all three.
 *
 * llama.cpp stores the llama3 rule as a tensor rope_freqs.weight of per-frequency divisors
 * (default[i] / rope_freqs[i]); tn_rope_fit_llama3 recovers the parameters from such a tensor. */
#ifndef TN_MODEL_ROPE_H
#define TN_MODEL_ROPE_H

#include <stdint.h>

#include "model/config.h"

struct tn_config;

/* "default", "linear", "llama3". */
const char *tn_rope_type_name(int type);
/* Parse a type name; an unknown one fails with a message that names the supported types. */
int tn_rope_parse_type(const char *name, int *type);
/* The rope fields of c are consistent (type known; factor, frequency factors, original length positive
 * and finite; high_freq_factor > low_freq_factor for llama3). */
int tn_rope_validate(const tn_llama_config *c);
/* [model] rope_scaling, rope_factor, rope_low_freq_factor, rope_high_freq_factor,
 * rope_original_max_position_embeddings (docs/CONFIG.md). */
int tn_rope_config_from_ini(struct tn_config *ini, tn_llama_config *c);

/* inv_freq[hd/2] for the head dimension hd of c. */
void tn_rope_inv_freq(const tn_llama_config *c, int hd, float *inv_freq);
/* cos_t, sin_t [T, hd/2]: row t holds the angles of position pos0 + t. */
int tn_rope_tables(const tn_llama_config *c, int hd, int64_t T, int64_t pos0, float *cos_t, float *sin_t);

/* Recover llama3 parameters from llama.cpp's per-frequency divisors f[hd/2] (default[i] / f[i] is the
 * scaled frequency) for theta = c->rope_theta, writing them into c (rope_type = llama3) when the rule
 * reproduces every f[i] to 1e-5 relative, and failing with a message otherwise. All ones leave c as
 * default. Only orig/low and orig/high are determined by f: orig is set to the integer nearest orig/low,
 * and the two factors follow from it (Llama 3.1 / 3.2 files give back 8192, 1, 4 exactly). */
int tn_rope_fit_llama3(tn_llama_config *c, int hd, const float *f);

#endif
