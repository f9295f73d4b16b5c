#include "train/evaluate_model.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/snapshot.h"

#include "core/error.h"
#include "core/log.h"
#include "device/device.h"

/* The deployed STE model quantizes the inputs of its quantized layers too (act_bits = 8): evaluate
 * through a weight source that supplies the snapped params and flags those layers. */
typedef struct {
    const tn_quant_spec *spec;
    const tn_llama_layout *layout;
    const float *params;
} act_ctx;

static const float *act_weight(void *vctx, int layer, tn_linear_kind kind, float *scratch) {
    act_ctx *c = vctx;
    (void)scratch;
    return c->params + c->layout->tensors[tn_llama_layout_index(c->layout, layer, (int)kind)].offset;
}

static int act_selected(void *vctx, int layer, tn_linear_kind kind) {
    act_ctx *c = vctx;
    return tn_quant_selects(c->spec, &c->layout->tensors[tn_llama_layout_index(c->layout, layer, (int)kind)]);
}

int tn_eval_checkpoint(const char *ckpt, const char *shard_path, int seq_len, int batch, int64_t max_windows,
                       const char *device, double *loss, int64_t *counted) {
    tn_device dev;
    TN_CHECK(tn_device_open(device, &dev));
    if (dev.emulated)
        tn_log_info("device %s is the CUDA emulator of a test build: every kernel runs on the CPU", dev.spec);
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
    tn_quant_spec spec;
    int ste = 0;
    if (rc == 0) rc = tn_snapshot_apply(ckpt, &ck, &spec, &ste);
    /* The (snapped) parameters in the device's memory. */
    float *params = ck.params;
    if (rc == 0 && dev.ops->device_memory) {
        const size_t bytes = ck.layout.numel * sizeof(float);
        params = dev.ops->alloc(bytes);
        rc = params ? dev.ops->upload(params, ck.params, bytes) : -1;
    }
    if (rc == 0) rc = tn_llama_create(&m, &ck.layout, batch, seq_len, dev.ops);
    act_ctx actx = {&spec, &ck.layout, params};
    if (rc == 0 && ste && spec.act_bits == 8) {
        tn_weight_source src = {act_weight, NULL, 8, act_selected, &actx, NULL};
        tn_llama_set_weight_source(m, &src);
        tn_llama_set_head_via_source(m, (spec.groups & (1u << TN_GROUP_HEAD)) != 0);
    }
    if (rc == 0) rc = tn_eval_shard(m, params, &s, max_windows, loss, counted);
    tn_llama_free(m);
    if (params != ck.params) dev.ops->free(params);
    tn_shard_free(&s);
    tn_ckpt_free(&ck);
    return rc;
}
