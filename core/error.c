#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TN_ERR_CAP 1024
static _Thread_local char err_buf[TN_ERR_CAP];

int tn_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int tn_err_prefix(const char *fmt, ...) {
    char prefix[TN_ERR_CAP], old[TN_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", err_buf[0] ? err_buf : "unknown error");
    /* Truncation is acceptable here: the message is for a human, cut at the buffer size. */
    size_t lp = strnlen(prefix, TN_ERR_CAP - 3);
    memcpy(err_buf, prefix, lp);
    memcpy(err_buf + lp, ": ", 2);
    size_t room = TN_ERR_CAP - lp - 3;
    size_t lo = strnlen(old, room);
    memcpy(err_buf + lp + 2, old, lo);
    err_buf[lp + 2 + lo] = '\0';
    return -1;
}

const char *tn_errmsg(void) { return err_buf[0] ? err_buf : "unknown error"; }

void tn_err_clear(void) { err_buf[0] = '\0'; }
