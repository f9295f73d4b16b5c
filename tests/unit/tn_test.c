#include "tn_test.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

int tn_test_passed = 0, tn_test_failed = 0;

int tn_test_finish(void) {
    printf("%d passed, %d failed\n", tn_test_passed, tn_test_failed);
    return tn_test_failed ? 1 : 0;
}

static const char *join(const char *env, const char *relpath) {
    static char buf[8][4096];
    static int k = 0;
    const char *root = getenv(env);
    if (!root) return NULL;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", root, relpath);
    return b;
}

const char *tn_test_shared(const char *relpath) {
    const char *p = join("TN_SHARED_DATA", relpath);
    if (!p || access(p, R_OK) != 0) return NULL;
    return p;
}

const char *tn_test_fixture(const char *relpath) { return join("TN_FIXTURES", relpath); }

double tn_test_rel_err(const float *a, const float *b, size_t n) {
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= maxdiff)) maxdiff = d; /* NaN propagates as a failure */
        if (fabs((double)b[i]) > maxref) maxref = fabs((double)b[i]);
    }
    if (maxref == 0) return maxdiff;
    return maxdiff / maxref;
}
