/* INI configuration (parsed by libinih). Sections and keys are case-sensitive. Values given on the
 * command line as "section.key=value" override the file. Every key that is read is marked used, and
 * tn_config_check_unused reports a key nobody read, so a typo in a config fails loudly instead of
 * silently training with a default. Keys are documented in docs/CONFIG.md. */
#ifndef TN_CORE_CONFIG_H
#define TN_CORE_CONFIG_H

#include <stdint.h>

typedef struct tn_config tn_config;

tn_config *tn_config_new(void);
void tn_config_free(tn_config *c);
/* Load an INI file; keys already present are overwritten. */
int tn_config_load(tn_config *c, const char *path);
/* Apply an override "section.key=value". */
int tn_config_set(tn_config *c, const char *assignment);
/* Set one value directly. */
int tn_config_put(tn_config *c, const char *section, const char *key, const char *value);
int tn_config_has(const tn_config *c, const char *section, const char *key);

/* Getters: with a default, an absent key yields the default; the _req forms fail with
 * "missing config key [section] key". A value that does not parse fails with its key named. */
const char *tn_config_str(tn_config *c, const char *section, const char *key, const char *def);
int tn_config_str_req(tn_config *c, const char *section, const char *key, const char **out);
int tn_config_int(tn_config *c, const char *section, const char *key, int64_t def, int64_t *out);
int tn_config_int_req(tn_config *c, const char *section, const char *key, int64_t *out);
int tn_config_float(tn_config *c, const char *section, const char *key, double def, double *out);
int tn_config_float_req(tn_config *c, const char *section, const char *key, double *out);
int tn_config_bool(tn_config *c, const char *section, const char *key, int def, int *out);

/* Fail naming the first key that was set but never read. */
int tn_config_check_unused(const tn_config *c);

/* Iterate: number of entries and the i-th (section, key, value). */
int tn_config_count(const tn_config *c);
void tn_config_entry(const tn_config *c, int i, const char **section, const char **key, const char **value);

#endif
