/* The sampler (runner/sampler.h). Probabilities are computed in float over the candidates only; top-p
 * without top-k first drops tokens that cannot be in any nucleus (probability below (1 - p) / (V - 1),
 * the cut-off llama2.c uses), so the sort is over a short list. */
#include "runner/sampler.h"

#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float p;
    int32_t id;
} cand;

struct tn_sampler {
    tn_sampler_opts o;
    int V;
    tn_rng rng;
    float *logits; /* [V] working copy */
    cand *c;       /* [V] */
    uint8_t *seen; /* [V] repeat-penalty marks */
};

void tn_sampler_opts_default(tn_sampler_opts *o) {
    o->temperature = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->repeat_penalty = 1.1f;
    o->repeat_last_n = 64;
    o->seed = 0;
}

int tn_sampler_opts_check(const tn_sampler_opts *o) {
    if (!(o->temperature >= 0) || !isfinite(o->temperature)) return tn_err("temperature must be >= 0");
    if (o->top_k < 0) return tn_err("top-k must be >= 0");
    if (!(o->top_p > 0 && o->top_p <= 1)) return tn_err("top-p must be in (0, 1]");
    if (!(o->repeat_penalty > 0) || !isfinite(o->repeat_penalty)) return tn_err("repeat penalty must be > 0");
    if (o->repeat_last_n < 0) return tn_err("repeat window must be >= 0");
    return 0;
}

int tn_sampler_new(const tn_sampler_opts *o, int vocab_size, tn_sampler **out) {
    *out = NULL;
    TN_CHECK(tn_sampler_opts_check(o));
    if (vocab_size <= 0) return tn_err("sampler: vocabulary size %d", vocab_size);
    tn_sampler *s = calloc(1, sizeof *s);
    if (!s) return tn_err("out of memory");
    s->o = *o;
    s->V = vocab_size;
    tn_rng_seed(&s->rng, o->seed);
    s->logits = malloc((size_t)vocab_size * sizeof *s->logits);
    s->c = malloc((size_t)vocab_size * sizeof *s->c);
    s->seen = calloc((size_t)vocab_size, 1);
    if (!s->logits || !s->c || !s->seen) {
        tn_sampler_free(s);
        return tn_err("out of memory");
    }
    *out = s;
    return 0;
}

void tn_sampler_free(tn_sampler *s) {
    if (!s) return;
    free(s->logits);
    free(s->c);
    free(s->seen);
    free(s);
}

static int by_prob_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* deterministic order on ties */
}

/* Move the k most likely of c[0..n) to the front, sorted descending. A min-heap of the best k seen so far
 * makes it O(n log k): for top-k = 40 over a 32000-token vocabulary, a few hundred microseconds less
 * than sorting everything, on every token. */
static int worse(const cand *a, const cand *b) { return by_prob_desc(a, b) > 0; }

static void sift_down(cand *h, int k, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && worse(&h[l], &h[m])) m = l;
        if (r < k && worse(&h[r], &h[m])) m = r;
        if (m == i) return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int keep_top(cand *c, int n, int k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, by_prob_desc);
        return n;
    }
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i); /* heap of the first k, worst on top */
    for (int i = k; i < n; i++)
        if (worse(&c[0], &c[i])) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof *c, by_prob_desc);
    return k;
}

int32_t tn_sampler_sample(tn_sampler *s, const float *logits, const int32_t *history, int n_history) {
    const int V = s->V;
    float *l = s->logits;
    memcpy(l, logits, (size_t)V * sizeof *l);

    if (s->o.repeat_penalty != 1.0f && n_history > 0) {
        int from = n_history > s->o.repeat_last_n ? n_history - s->o.repeat_last_n : 0;
        for (int i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V || s->seen[t]) continue;
            s->seen[t] = 1;
            l[t] = l[t] > 0 ? l[t] / s->o.repeat_penalty : l[t] * s->o.repeat_penalty;
        }
        for (int i = from; i < n_history; i++)
            if (history[i] >= 0 && history[i] < V) s->seen[history[i]] = 0;
    }

    if (s->o.temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        return best;
    }

    /* softmax(l / T) */
    float mx = l[0];
    for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    const float invT = 1.0f / s->o.temperature;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += (l[i] = expf((l[i] - mx) * invT));
    const float inv = (float)(1.0 / sum);

    /* candidates */
    int n = 0;
    const float cutoff = s->o.top_k == 0 && s->o.top_p < 1.0f && V > 1 ? (1.0f - s->o.top_p) / (float)(V - 1) : 0.0f;
    for (int i = 0; i < V; i++) {
        float p = l[i] * inv;
        if (p >= cutoff) s->c[n++] = (cand){p, i};
    }
    if (n == 0) { /* cannot happen (the most likely token always passes); be safe */
        s->c[0] = (cand){1.0f, 0};
        n = 1;
    }
    if (s->o.top_k > 0 || s->o.top_p < 1.0f) {
        n = keep_top(s->c, n, s->o.top_k > 0 ? s->o.top_k : n);
        if (s->o.top_p < 1.0f) {
            /* The nucleus is taken of the top-k set when there is one, else of the whole distribution
             * (mass 1: the cut-off above removed only tokens that cannot be in it). */
            double total = s->o.top_k > 0 ? 0 : 1.0, cum = 0;
            for (int i = 0; s->o.top_k > 0 && i < n; i++) total += s->c[i].p;
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += s->c[i].p;
                if (cum >= s->o.top_p * total) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->c[i].p;
    double r = tn_rng_uniform_d(&s->rng) * total, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->c[i].p;
        if (r < cum) return s->c[i].id;
    }
    return s->c[n - 1].id; /* rounding at the very top */
}
