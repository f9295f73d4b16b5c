#include "train/evaluate_model.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/snapshot.h"

#include "core/error.h"
#include "core/log.h"

int tn_eval_checkpoint(const char *ckpt, const char *shard_path, int seq_len, int batch, int64_t max_windows,
                       double *loss, int64_t *counted) {
    tn_checkpoint ck;
    TN_CHECK(tn_ckpt_load(ckpt, &ck, NULL, 0));
    tn_shard s;
    int rc = tn_shard_load(shard_path, &s);
    if (rc != 0) {
        tn_ckpt_free(&ck);
        return -1;
    }
    tn_llama *m = NULL;
    const tn_llama_config *c = &ck.layout.cfg;
    if (seq_len <= 0) seq_len = c->max_seq_len < 512 ? c->max_seq_len : 512;
    if (s.vocab_size > c->vocab_size)
        rc = tn_err("%s: vocab_size %lld is larger than the model's %d", shard_path, (long long)s.vocab_size,
                    c->vocab_size);
    else if (seq_len > c->max_seq_len)
        rc = tn_err("--seq-len %d exceeds the model's max_seq_len %d", seq_len, c->max_seq_len);
    if (rc == 0) rc = tn_snapshot_apply(ckpt, &ck);
    if (rc == 0) rc = tn_llama_create(&m, &ck.layout, batch, seq_len);
    if (rc == 0) rc = tn_eval_shard(m, ck.params, &s, max_windows, loss, counted);
    tn_llama_free(m);
    tn_shard_free(&s);
    tn_ckpt_free(&ck);
    return rc;
}
