#include "runner/eval_trin.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "data/shard.h"

#include <math.h>
#include <string.h>

/* -log softmax(logits)[target], in double. */
static double nll_of(const float *logits, int V, int target) {
    double mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return mx + log(sum) - (double)logits[target];
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* One engine on the eval's terms: its own KV cache of one window. */
static int open_engine(const char *path, int seq_len, const tn_infer_opts *io, tn_infer **m) {
    tn_infer_opts o = *io;
    o.ctx = seq_len > 0 ? seq_len : 512; /* one window is all the cache ever holds */
    return tn_infer_open(path, &o, m);
}

int tn_trin_eval_compare(const char *model, const char *ref, const char *shard_path, int seq_len, int64_t max_windows,
                         const tn_infer_opts *io, tn_eval_compare *out) {
    memset(out, 0, sizeof *out);
    tn_shard s;
    TN_CHECK(tn_shard_load(shard_path, &s));
    tn_infer *m = NULL, *r = NULL;
    float *logits = NULL, *rlogits = NULL;
    int32_t *in = NULL;
    int rc = 0;
    const tn_llama_config *c = NULL;
    if (s.n_tokens < 2) rc = tn_err("%s: fewer than 2 tokens", shard_path);
    if (rc == 0) rc = open_engine(model, seq_len, io, &m);
    if (rc == 0 && ref && open_engine(ref, seq_len, io, &r) != 0) rc = tn_err_prefix("reference %s", ref);
    if (rc == 0) {
        c = tn_infer_config(m);
        if (seq_len <= 0) seq_len = c->max_seq_len < 512 ? c->max_seq_len : 512;
        if (s.vocab_size > c->vocab_size)
            rc = tn_err("%s: vocab_size %lld is larger than the model's %d", shard_path, (long long)s.vocab_size,
                        c->vocab_size);
        else if (seq_len > tn_infer_ctx(m))
            rc = tn_err("--seq-len %d exceeds the model's context of %d", seq_len, tn_infer_ctx(m));
        else if (r && tn_infer_config(r)->vocab_size != c->vocab_size)
            rc = tn_err("reference %s: vocabulary of %d tokens, the model's has %d", ref, tn_infer_config(r)->vocab_size,
                        c->vocab_size);
        else if (r && seq_len > tn_infer_ctx(r))
            rc = tn_err("--seq-len %d exceeds the reference's context of %d", seq_len, tn_infer_ctx(r));
    }
    if (rc == 0) {
        logits = tn_alloc((size_t)seq_len * (size_t)c->vocab_size, sizeof *logits);
        rlogits = r ? tn_alloc((size_t)seq_len * (size_t)c->vocab_size, sizeof *rlogits) : NULL;
        in = tn_alloc((size_t)seq_len, sizeof *in);
        if (!logits || !in || (r && !rlogits)) rc = -1;
    }
    int64_t nw = rc == 0 ? (s.n_tokens - 2) / seq_len + 1 : 0;
    if (max_windows > 0 && max_windows < nw) nw = max_windows;
    double sum = 0, rsum = 0;
    tn_progress bar;
    tn_progress_begin(&bar, "eval", nw);
    for (int64_t w = 0; w < nw && rc == 0; w++) {
        const int64_t start = w * seq_len;
        int64_t len = s.n_tokens - start;
        if (len > seq_len + 1) len = seq_len + 1;
        const int n = (int)(len - 1);
        for (int t = 0; t < n; t++) in[t] = (int32_t)s.tokens[start + t];
        tn_infer_reset(m);
        rc = tn_infer_forward(m, in, n, logits, 1);
        if (rc == 0 && r) {
            tn_infer_reset(r);
            rc = tn_infer_forward(r, in, n, rlogits, 1);
        }
        for (int t = 0; rc == 0 && t < n; t++) {
            if (!s.loss_mask[start + t + 1]) continue;
            const float *lt = logits + (int64_t)t * c->vocab_size;
            sum += nll_of(lt, c->vocab_size, (int)s.tokens[start + t + 1]);
            if (r) {
                const float *rt = rlogits + (int64_t)t * c->vocab_size;
                rsum += nll_of(rt, c->vocab_size, (int)s.tokens[start + t + 1]);
                out->top1_agree += argmax(lt, c->vocab_size) == argmax(rt, c->vocab_size);
            }
            out->tokens++;
        }
        tn_progress_update(&bar, w + 1);
    }
    tn_progress_end(&bar);
    tn_free(logits);
    tn_free(rlogits);
    tn_free(in);
    tn_infer_free(m);
    tn_infer_free(r);
    tn_shard_free(&s);
    if (rc != 0) return tn_err_prefix("eval %s", model);
    out->loss = out->tokens ? sum / (double)out->tokens : 0.0;
    out->ref_loss = out->tokens && r ? rsum / (double)out->tokens : 0.0;
    return 0;
}

int tn_trin_eval(const char *model, const char *shard_path, int seq_len, int batch, int64_t max_windows,
                 tn_infer_mode mode, const char *device, double *loss, int64_t *tokens) {
    (void)batch;
    tn_eval_compare e;
    tn_infer_opts io;
    tn_infer_opts_default(&io);
    io.mode = mode;
    io.device = device;
    TN_CHECK(tn_trin_eval_compare(model, NULL, shard_path, seq_len, max_windows, &io, &e));
    *loss = e.loss;
    *tokens = e.tokens;
    return 0;
}
