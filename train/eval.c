#include "train/eval.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"

#include <string.h>

int64_t tn_eval_windows(const tn_shard *s, int seq_len) {
    if (s->n_tokens < 2) return 0;
    return (s->n_tokens - 2) / seq_len + 1;
}

int tn_eval_shard(tn_llama *m, const float *params, const tn_shard *s, int64_t max_windows, double *loss,
                  int64_t *counted) {
    const int B = tn_llama_batch(m), T = tn_llama_seq_len(m);
    int64_t nw = tn_eval_windows(s, T);
    if (max_windows > 0 && max_windows < nw) nw = max_windows;
    if (nw == 0) return tn_err("eval: shard has fewer than 2 tokens");
    int32_t *in = tn_alloc((size_t)B * T, sizeof *in), *tg = tn_alloc((size_t)B * T, sizeof *tg);
    uint8_t *mk = tn_alloc((size_t)B * T, 1);
    if (!in || !tg || !mk) {
        tn_free(in);
        tn_free(tg);
        tn_free(mk);
        return -1;
    }
    double sum = 0;
    int64_t total = 0;
    int rc = 0;
    tn_progress bar;
    tn_progress_begin(&bar, "eval", nw);
    for (int64_t w0 = 0; w0 < nw && rc == 0; w0 += B) {
        memset(in, 0, (size_t)B * T * sizeof *in);
        memset(tg, 0, (size_t)B * T * sizeof *tg);
        memset(mk, 0, (size_t)B * T);
        for (int b = 0; b < B && w0 + b < nw; b++) {
            int64_t start = (w0 + b) * T;
            int64_t len = s->n_tokens - start; /* tokens available from start */
            if (len > T + 1) len = T + 1;
            for (int64_t t = 0; t + 1 < len; t++) {
                in[(int64_t)b * T + t] = (int32_t)s->tokens[start + t];
                tg[(int64_t)b * T + t] = (int32_t)s->tokens[start + t + 1];
                mk[(int64_t)b * T + t] = s->loss_mask[start + t + 1] ? 1 : 0;
            }
        }
        float l;
        int64_t n;
        rc = tn_llama_forward(m, params, in, tg, mk, &l, &n);
        if (rc == 0) {
            sum += tn_llama_nll_sum(m);
            total += n;
        }
        tn_progress_update(&bar, w0 + B < nw ? w0 + B : nw);
    }
    tn_progress_end(&bar);
    tn_free(in);
    tn_free(tg);
    tn_free(mk);
    if (rc != 0) return -1;
    *loss = total ? sum / (double)total : 0.0;
    *counted = total;
    return 0;
}
