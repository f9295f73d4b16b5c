/* Errors: a function that can fail returns int (0 = ok, -1 = failed) or a pointer (NULL = failed) and
 * leaves a one-line message "what: why" in a thread-local buffer. Callers add context with
 * tn_err_prefix so the final line reads outer-to-inner: "loading model.h5: tensor x: shape mismatch".
 * The CLI prints it once as "trinity: error: <message>" and exits 1. */
#ifndef TN_CORE_ERROR_H
#define TN_CORE_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define TN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TN_PRINTF(a, b)
#endif

/* Set the message (replaces any previous one). Always returns -1 so "return tn_err(...)" works. */
int tn_err(const char *fmt, ...) TN_PRINTF(1, 2);
/* Prepend "context: " to the current message. Returns -1. */
int tn_err_prefix(const char *fmt, ...) TN_PRINTF(1, 2);
/* The current message ("unknown error" when none was set). */
const char *tn_errmsg(void);
void tn_err_clear(void);

#define TN_CHECK(expr)                                                                                 \
    do {                                                                                               \
        if ((expr) != 0) return -1;                                                                    \
    } while (0)

#endif
