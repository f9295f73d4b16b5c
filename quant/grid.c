#include "quant/grid.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const builtin_names[] = {"ternary", "prime7", "prime81", "primal15", "primal25"};
#define N_BUILTIN ((int)(sizeof builtin_names / sizeof builtin_names[0]))

int tn_grid_builtin_count(void) { return N_BUILTIN; }

const char *tn_grid_builtin_name(int i) { return i >= 0 && i < N_BUILTIN ? builtin_names[i] : NULL; }

/* Sign of 2x - (a + b), computed exactly (x, a, b floats). Knuth's TwoSum gives a + b = s + e exactly in
 * double. d = fl(2x - s) is exact when 2x and s are within a factor 2 of each other (Sterbenz), and then
 * comparing d with e is the exact comparison; otherwise |2x - s| > |s|/2 >> |e| (|e| <= 2^-53 |s|), so
 * d and 2x - s - e have the same sign and comparing d with e still gives it. No long double, no
 * assumption about how far apart the grid values are. */
static int cmp_twice_vs_sum(float x, float a, float b) {
    double s = (double)a + (double)b;
    double bv = s - (double)a;
    double e = ((double)a - (s - bv)) + ((double)b - bv);
    double d = 2.0 * (double)x - s;
    return (d > e) - (d < e);
}

/* Does x snap to the upper of two neighbours a < b? Nearest wins; at an exact tie the smaller magnitude
 * wins: the midpoint m = (a+b)/2 > 0 means |a| < |b| (go down), m < 0 means |b| < |a| (go up), and m = 0
 * (a = -b, equal magnitudes) goes up, to the positive value. */
static int snaps_up(float x, float a, float b) {
    int c = cmp_twice_vs_sum(x, a, b);
    if (c != 0) return c > 0;
    return (double)a + (double)b <= 0.0;
}

/* Smallest float that snaps to b rather than a. Start at the float nearest the midpoint and walk by single
 * ulps; snaps_up is monotone in x, so this takes one or two steps. b itself always snaps up. */
static float boundary(float a, float b) {
    float x = (float)(0.5 * ((double)a + (double)b));
    while (!snaps_up(x, a, b)) x = nextafterf(x, INFINITY);
    for (;;) {
        float prev = nextafterf(x, -INFINITY);
        if (!snaps_up(prev, a, b)) break;
        x = prev;
    }
    return x == 0.0f ? 0.0f : x; /* no -0 thresholds: x >= 0 already covers -0 */
}

static int cmp_float(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

int tn_grid_from_values(const char *name, const float *values, int n, tn_grid *out) {
    if (n < 2) return tn_err("grid %s: needs at least 2 values, got %d", name, n);
    if (n > TN_GRID_MAX) return tn_err("grid %s: %d values, at most %d allowed", name, n, TN_GRID_MAX);
    tn_grid g;
    memset(&g, 0, sizeof g);
    size_t len = strlen(name);
    if (len == 0 || len >= TN_GRID_NAME_MAX) return tn_err("grid name '%s': must be 1..%d characters", name,
                                                           TN_GRID_NAME_MAX - 1);
    memcpy(g.name, name, len + 1);
    for (int i = 0; i < n; i++) {
        if (!isfinite(values[i])) return tn_err("grid %s: value %d is not finite", name, i);
        g.v[i] = values[i] == 0.0f ? 0.0f : values[i]; /* -0 and +0 are one value */
    }
    qsort(g.v, (size_t)n, sizeof(float), cmp_float);
    for (int i = 1; i < n; i++)
        if (!(g.v[i - 1] < g.v[i])) return tn_err("grid %s: value %.9g appears twice", name, (double)g.v[i]);
    g.n = n;
    for (int j = 0; j < TN_GRID_MAX; j++) g.up[j] = j < n - 1 ? boundary(g.v[j], g.v[j + 1]) : INFINITY;
    g.search_size = 1;
    while (g.search_size < n) g.search_size *= 2;
    if (g.search_size >= 16) {
        const int bs = g.search_size / 8;
        for (int b = 0; b < 8; b++)
            for (int m = 0; m < bs; m++) g.up_t[m * 8 + b] = g.up[b * bs + m];
    }
    /* The index 0.0 snaps to: the smallest magnitude, the positive one on a tie (same rule as snapping). */
    int z = 0;
    while (z < n - 1 && 0.0f >= g.up[z]) z++;
    g.zero_idx = z;
    *out = g;
    return 0;
}

/* Primes up to `max` by a sieve, ascending. Returns the count. */
static int primes_upto(int max, int *out, int cap) {
    char composite[256] = {0};
    int k = 0;
    for (int i = 2; i <= max && i < 256; i++) {
        if (composite[i]) continue;
        if (k < cap) out[k] = i;
        k++;
        for (int j = i * i; j <= max && j < 256; j += i) composite[j] = 1;
    }
    return k;
}

/* Append ±x (both signs) to v. */
static void pm(float *v, int *n, float x) {
    v[(*n)++] = x;
    v[(*n)++] = -x;
}

int tn_grid_by_name(const char *name, tn_grid *out) {
    float v[TN_GRID_MAX];
    int n = 0;
    if (!name) return tn_err("grid: no name given");
    if (strcmp(name, "ternary") == 0) {
        v[n++] = 0.0f;
        pm(v, &n, 1.0f);
    } else if (strcmp(name, "prime7") == 0) {
        v[n++] = 0.0f;
        pm(v, &n, 1.0f / 2.0f);
        pm(v, &n, 1.0f / 3.0f);
        pm(v, &n, 1.0f / 5.0f);
    } else if (strcmp(name, "prime81") == 0) {
        int p[64];
        int np = primes_upto(151, p, 64); /* 2, 3, 5, ..., 149, 151: 36 primes */
        v[n++] = 0.0f;
        for (int i = 0; i < np; i++) pm(v, &n, 1.0f / (float)p[i]);
        pm(v, &n, 1.0f);
        pm(v, &n, 3.0f / 2.0f);
        pm(v, &n, 2.0f);
        pm(v, &n, 3.0f);
    } else if (strcmp(name, "primal15") == 0 || strcmp(name, "primal25") == 0) {
        static const int den15[] = {1, 2, 3, 5, 7, 11, 13};
        v[n++] = 0.0f;
        for (int i = 0; i < 7; i++) pm(v, &n, 1.0f / (float)den15[i]);
        if (name[6] == '2') {
            /* The fine grid adds the "harmonic bridge" 2/3 between 1/2 and 1, and composite reciprocals. */
            static const int den25[] = {4, 6, 8, 12};
            pm(v, &n, 2.0f / 3.0f);
            for (int i = 0; i < 4; i++) pm(v, &n, 1.0f / (float)den25[i]);
        }
    } else {
        return tn_err("unknown grid '%s' (known: ternary, prime7, prime81, primal15, primal25, or a list "
                      "of values such as \"-1, -1/3, 0, 1/3, 1\")",
                      name);
    }
    return tn_grid_from_values(name, v, n, out);
}

/* Parse one item "a" or "a/b" from [s, end). */
static int parse_item(const char *s, const char *end, int pos, float *out) {
    char buf[128];
    while (s < end && isspace((unsigned char)*s)) s++;
    while (end > s && isspace((unsigned char)end[-1])) end--;
    size_t len = (size_t)(end - s);
    if (len == 0) return tn_err("grid list: item %d is empty", pos + 1);
    if (len >= sizeof buf) return tn_err("grid list: item %d is too long", pos + 1);
    memcpy(buf, s, len);
    buf[len] = 0;
    char *p = buf, *q;
    errno = 0;
    double num = strtod(p, &q), den = 1.0;
    if (q == p) return tn_err("grid list: item %d '%s' is not a number", pos + 1, buf);
    p = q;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '/') {
        p++;
        den = strtod(p, &q);
        if (q == p) return tn_err("grid list: item %d '%s' has no denominator", pos + 1, buf);
        p = q;
        while (isspace((unsigned char)*p)) p++;
        if (den == 0.0) return tn_err("grid list: item %d '%s' divides by zero", pos + 1, buf);
    }
    if (*p) return tn_err("grid list: item %d '%s' has trailing characters", pos + 1, buf);
    if (!isfinite(num) || !isfinite(den)) return tn_err("grid list: item %d '%s' is not finite", pos + 1, buf);
    float f;
    /* When numerator and denominator are floats exactly (the usual "1/3"), divide in float: the result is
     * the correctly rounded quotient, bit-identical to the built-in grids' 1.0f / p. */
    if ((double)(float)num == num && (double)(float)den == den)
        f = (float)num / (float)den;
    else
        f = (float)(num / den);
    if (!isfinite(f)) return tn_err("grid list: item %d '%s' is out of float range", pos + 1, buf);
    *out = f;
    return 0;
}

int tn_grid_parse(const char *spec, tn_grid *out) {
    if (!spec) return tn_err("grid list: empty");
    float v[TN_GRID_MAX];
    int n = 0;
    const char *s = spec;
    for (;;) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        if (n == TN_GRID_MAX) return tn_err("grid list: more than %d values", TN_GRID_MAX);
        if (parse_item(s, end, n, &v[n]) != 0) return -1;
        n++;
        if (!comma) break;
        s = comma + 1;
    }
    return tn_grid_from_values("custom", v, n, out);
}

int tn_grid_resolve(const char *spec, tn_grid *out) {
    if (!spec) return tn_err("grid: no value given");
    const char *s = spec;
    while (isspace((unsigned char)*s)) s++;
    for (int i = 0; i < N_BUILTIN; i++)
        if (strcmp(s, builtin_names[i]) == 0) return tn_grid_by_name(s, out);
    /* Anything that starts like a number is a list; anything else is a misspelt name. */
    if (*s == '-' || *s == '+' || *s == '.' || isdigit((unsigned char)*s)) return tn_grid_parse(s, out);
    return tn_grid_by_name(s, out);
}

int tn_grid_find(const tn_grid *g, float x) {
    int lo = 0, hi = g->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (g->v[mid] < x) lo = mid + 1;
        else if (g->v[mid] > x) hi = mid - 1;
        else return mid;
    }
    return -1;
}

int tn_grid_equal(const tn_grid *a, const tn_grid *b) {
    return a->n == b->n && memcmp(a->v, b->v, (size_t)a->n * sizeof(float)) == 0;
}
