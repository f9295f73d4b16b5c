/* Minimal test harness: CHECK records a failure and continues; tn_test_finish prints
 * "N passed, M failed" and returns the exit code. TN_SKIP exits 77 (ctest: skipped). */
#ifndef TN_TEST_H
#define TN_TEST_H

#include <stdio.h>
#include <stdlib.h>

extern int tn_test_passed, tn_test_failed;

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (cond) tn_test_passed++;                                                                    \
        else {                                                                                         \
            tn_test_failed++;                                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                   \
        }                                                                                              \
    } while (0)

#define CHECKF(cond, ...)                                                                              \
    do {                                                                                               \
        if (cond) tn_test_passed++;                                                                    \
        else {                                                                                         \
            tn_test_failed++;                                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                              \
            fputc('\n', stderr);                                                                       \
        }                                                                                              \
    } while (0)

/* CHECK that a call returning 0 succeeded; prints tn_errmsg() otherwise. */
#define CHECK_OK(expr)                                                                                 \
    do {                                                                                               \
        if ((expr) == 0) tn_test_passed++;                                                             \
        else {                                                                                         \
            tn_test_failed++;                                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, tn_errmsg());         \
        }                                                                                              \
    } while (0)

#define TN_SKIP(...)                                                                                   \
    do {                                                                                               \
        printf("SKIPPED: ");                                                                           \
        printf(__VA_ARGS__);                                                                           \
        printf("\n");                                                                                  \
        exit(77);                                                                                      \
    } while (0)

int tn_test_finish(void);
/* Path under $TN_SHARED_DATA, or NULL (with a skip message printed) if the data is absent. */
const char *tn_test_shared(const char *relpath);
/* Path under $TN_FIXTURES (reference fixtures written by tests/reference/gen_*.py). */
const char *tn_test_fixture(const char *relpath);
/* max|a-b| / max|b| over n values (0 when both are all zero). */
double tn_test_rel_err(const float *a, const float *b, size_t n);

#endif
