/* Logging to stderr and a progress bar for long work. The bar draws only when stderr is a terminal;
 * otherwise it is silent so that CI logs and redirected output stay clean. */
#ifndef TN_CORE_LOG_H
#define TN_CORE_LOG_H

#include <stdint.h>
#include "core/error.h"

/* QUIET: nothing but errors (no info, no warnings; the fuzz targets use it). INFO, the default: info and
 * warnings. DEBUG: everything. */
typedef enum { TN_LOG_QUIET = 0, TN_LOG_INFO = 1, TN_LOG_DEBUG = 2 } tn_log_level;

void tn_log_set_level(tn_log_level level);
tn_log_level tn_log_get_level(void);
void tn_log_info(const char *fmt, ...) TN_PRINTF(1, 2);
void tn_log_debug(const char *fmt, ...) TN_PRINTF(1, 2);
void tn_log_warn(const char *fmt, ...) TN_PRINTF(1, 2);

typedef struct {
    const char *label;
    int64_t total, done;
    double t_start, t_last_draw;
    int enabled;
} tn_progress;

void tn_progress_begin(tn_progress *p, const char *label, int64_t total);
void tn_progress_update(tn_progress *p, int64_t done);
void tn_progress_end(tn_progress *p);

#endif
