/* Sampler: greedy is argmax; seeded draws repeat; frequencies follow softmax(l / T); top-k and top-p keep
 * exactly the tokens they should; the repeat penalty lowers recent tokens; bad options are refused. */
#include "tn_test.h"

#include "core/error.h"
#include "runner/sampler.h"

#include <math.h>
#include <string.h>

static tn_sampler *make(float temp, int k, float p, float rp, uint64_t seed, int V) {
    tn_sampler_opts o;
    tn_sampler_opts_default(&o);
    o.temperature = temp, o.top_k = k, o.top_p = p, o.repeat_penalty = rp, o.seed = seed;
    tn_sampler *s = NULL;
    if (tn_sampler_new(&o, V, &s) != 0) fprintf(stderr, "sampler: %s\n", tn_errmsg());
    return s;
}

int main(void) {
    float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
    const int V = 6;
    /* greedy: the highest logit, lowest id on a tie */
    tn_sampler *s = make(0, 0, 1, 1, 1, V);
    CHECK(tn_sampler_sample(s, l, NULL, 0) == 1);
    /* the logits are not modified */
    CHECK(l[1] == 2.0f && l[3] == 2.0f);
    /* repeat penalty: token 1 recently seen -> 2.0 / 1.5 < 2.0, so 3 wins; negative logits are multiplied */
    tn_sampler_free(s);
    s = make(0, 0, 1, 1.5f, 1, V);
    int32_t hist[] = {1, 1, 4};
    CHECK(tn_sampler_sample(s, l, hist, 3) == 3);
    float neg[6] = {-1.0f, -1.2f, -3.0f, -5.0f, -5.0f, -5.0f};
    CHECK(tn_sampler_sample(s, neg, (int32_t[]){0}, 1) == 1); /* -1 * 1.5 = -1.5 < -1.2 */
    tn_sampler_free(s);

    /* seeded: same seed, same sequence; another seed, another sequence */
    int32_t a[200], b[200], c[200];
    tn_sampler *s1 = make(1.0f, 0, 1, 1, 42, V), *s2 = make(1.0f, 0, 1, 1, 42, V), *s3 = make(1.0f, 0, 1, 1, 43, V);
    for (int i = 0; i < 200; i++) {
        a[i] = tn_sampler_sample(s1, l, NULL, 0);
        b[i] = tn_sampler_sample(s2, l, NULL, 0);
        c[i] = tn_sampler_sample(s3, l, NULL, 0);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    tn_sampler_free(s1), tn_sampler_free(s2), tn_sampler_free(s3);

    /* frequencies ~ softmax(l / T) at T = 0.7 */
    const int N = 200000;
    const float T = 0.7f;
    int count[6] = {0};
    s = make(T, 0, 1, 1, 7, V);
    for (int i = 0; i < N; i++) count[tn_sampler_sample(s, l, NULL, 0)]++;
    tn_sampler_free(s);
    double z = 0, p[6];
    for (int i = 0; i < V; i++) z += exp(l[i] / T);
    int ok = 1;
    for (int i = 0; i < V; i++) {
        p[i] = exp(l[i] / T) / z;
        double sd = sqrt(N * p[i] * (1 - p[i]));
        if (fabs(count[i] - N * p[i]) > 5 * sd + 1) ok = 0, fprintf(stderr, "token %d: %d vs %.0f\n", i, count[i], N * p[i]);
    }
    CHECK(ok);

    /* top-k = 2: only tokens 1 and 3 (the two largest), about equally often */
    memset(count, 0, sizeof count);
    s = make(1.0f, 2, 1, 1, 8, V);
    for (int i = 0; i < 20000; i++) count[tn_sampler_sample(s, l, NULL, 0)]++;
    tn_sampler_free(s);
    CHECK(count[1] + count[3] == 20000 && count[1] > 9000 && count[3] > 9000);
    /* top-k = 1 is greedy */
    s = make(5.0f, 1, 1, 1, 9, V);
    ok = 1;
    for (int i = 0; i < 100; i++) ok &= tn_sampler_sample(s, l, NULL, 0) == 1;
    CHECK(ok);
    tn_sampler_free(s);

    /* top-p: at T = 1, p(1) = p(3) ~ 0.35 each, p(4) ~ 0.13. p = 0.6 keeps {1, 3}; p = 0.75 adds 4. */
    memset(count, 0, sizeof count);
    s = make(1.0f, 0, 0.6f, 1, 10, V);
    for (int i = 0; i < 20000; i++) count[tn_sampler_sample(s, l, NULL, 0)]++;
    tn_sampler_free(s);
    CHECK(count[1] + count[3] == 20000);
    memset(count, 0, sizeof count);
    s = make(1.0f, 0, 0.75f, 1, 11, V);
    for (int i = 0; i < 20000; i++) count[tn_sampler_sample(s, l, NULL, 0)]++;
    tn_sampler_free(s);
    CHECKF(count[1] + count[3] + count[4] == 20000 && count[4] > 1000, "%d %d %d %d %d %d", count[0], count[1],
           count[2], count[3], count[4], count[5]);
    /* a tiny p keeps only the most likely token */
    s = make(1.0f, 0, 0.01f, 1, 12, V);
    ok = 1;
    for (int i = 0; i < 100; i++) {
        int32_t t = tn_sampler_sample(s, l, NULL, 0);
        ok &= t == 1 || t == 3;
    }
    CHECK(ok);
    tn_sampler_free(s);

    /* a large vocabulary with the llama2.c cut-off path */
    static float big[32000];
    for (int i = 0; i < 32000; i++) big[i] = (float)(i % 97) * 0.05f;
    s = make(0.8f, 0, 0.9f, 1.1f, 13, 32000);
    int32_t hb[64];
    for (int i = 0; i < 64; i++) hb[i] = 96 + 97 * i;
    ok = 1;
    for (int i = 0; i < 200; i++) {
        int32_t t = tn_sampler_sample(s, big, hb, 64);
        ok &= t >= 0 && t < 32000;
    }
    CHECK(ok);
    tn_sampler_free(s);

    /* bad options */
    tn_sampler_opts o;
    tn_sampler_opts_default(&o);
    o.temperature = -1;
    CHECK(tn_sampler_opts_check(&o) != 0);
    tn_sampler_opts_default(&o);
    o.top_p = 0;
    CHECK(tn_sampler_opts_check(&o) != 0);
    o.top_p = 1.5f;
    CHECK(tn_sampler_opts_check(&o) != 0);
    tn_sampler_opts_default(&o);
    o.repeat_penalty = 0;
    CHECK(tn_sampler_opts_check(&o) != 0);
    tn_sampler_opts_default(&o);
    o.top_k = -3;
    CHECK(tn_sampler_opts_check(&o) != 0);
    CHECK(tn_sampler_new(&o, 10, &s) != 0 && s == NULL);
    tn_sampler_opts_default(&o);
    CHECK(tn_sampler_new(&o, 0, &s) != 0);
    return tn_test_finish();
}
