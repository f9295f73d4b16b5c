/* Grids: the value tables discrete weights live on (math and every value in docs/QUANT.md).
 *
 * A grid is a sorted (ascending), duplicate-free table of at most 256 finite floats with a name. A weight is
 * stored as an index into the table; index order is value order, so "one index up" always means "a larger
 * value" (PRIMAL relies on this). Built-in grids are computed from their definitions (1.0f / p, never typed
 * decimal literals), so prime reciprocals are the correctly rounded floats:
 *
 *   ternary   {-1, 0, 1}                                                    3 values   (BitNet b1.58)
 *   prime7    {0, ±1/2, ±1/3, ±1/5}                                         7          (Trinity paper)
 *   prime81   {0, ±1/p for the 36 primes 2..151, ±1, ±3/2, ±2, ±3}          81         (Trinity code)
 *   primal15  {0, ±1, ±1/2, ±1/3, ±1/5, ±1/7, ±1/11, ±1/13}                 15         (PRIMAL)
 *   primal25  primal15 ∪ {±2/3, ±1/4, ±1/6, ±1/8, ±1/12}                     25         (PRIMAL fine layers)
 *
 * A tn_grid is a plain value (about 2 KB, no heap): copy it, embed it, pass a pointer. Besides the values it
 * carries the snapping thresholds derived from them (see quant/snap.h for the rule). */
#ifndef TN_QUANT_GRID_H
#define TN_QUANT_GRID_H

#include <stdint.h>

#define TN_GRID_MAX 256
#define TN_GRID_NAME_MAX 32

typedef struct {
    char name[TN_GRID_NAME_MAX]; /* "ternary", ..., or "custom" for a parsed list */
    int n;                       /* number of values, 1..256 */
    int zero_idx;                /* index of the value of smallest magnitude (the 0 when present) */
    int search_size;             /* power of two >= n used by the branchless search */
    float v[TN_GRID_MAX];        /* values, strictly ascending */
    /* up[j] for j < n-1: the smallest float x that snaps to index j+1 rather than j (nearest value, ties to
     * the smaller magnitude). Snapping is then exactly idx(x) = #{ j : x >= up[j] }. Entries n-1.. are
     * +inf padding for the search. Computed once, exactly, at construction (quant/grid.c). */
    float up[TN_GRID_MAX];
    /* up[] regrouped for the AVX2 kernel of grids with more than 8 values (search_size = P >= 16): 8
     * blocks of bs = P/8 thresholds, up_t[m * 8 + b] = up[b * bs + m], so one in-register permute fetches
     * threshold m of each lane's block. Derived data, like up[]. */
    float up_t[TN_GRID_MAX];
} tn_grid;

/* The built-in grid `name` (one of the five above). Unknown names fail with the list of known ones. */
int tn_grid_by_name(const char *name, tn_grid *out);

/* A custom grid from a config string: comma-separated values, each a decimal number or a fraction "a/b"
 * ("-1, -1/3, 0, 1/3, 1", "0.5, 2/3"). Whitespace is ignored; order does not matter (values are sorted).
 * Fails on: an empty list, an unparsable item, a zero denominator, a non-finite value, two equal values
 * (including 0 and -0), more than 256 values. The grid is named "custom". */
int tn_grid_parse(const char *spec, tn_grid *out);

/* What a config `grid = ...` value means: a built-in name, else a list for tn_grid_parse. */
int tn_grid_resolve(const char *spec, tn_grid *out);

/* Build a grid from n arbitrary values (sorted here; same validation as tn_grid_parse). */
int tn_grid_from_values(const char *name, const float *values, int n, tn_grid *out);

/* Number and names of the built-in grids (for --help texts and tests). */
int tn_grid_builtin_count(void);
const char *tn_grid_builtin_name(int i);

/* Index of value `x` if x is exactly a grid value, else -1. */
int tn_grid_find(const tn_grid *g, float x);

/* 1 when both grids have the same size and bit-identical values. */
int tn_grid_equal(const tn_grid *a, const tn_grid *b);

#endif
