#include "tiny_ckpt.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tn_test_random_ckpt(tn_checkpoint *ck, const tn_llama_config *cfg, uint64_t seed) {
    memset(ck, 0, sizeof *ck);
    TN_CHECK(tn_llama_layout_init(&ck->layout, cfg));
    ck->params = tn_alloc(ck->layout.numel, sizeof(float));
    if (!ck->params) return -1;
    tn_rng r;
    tn_rng_seed(&r, seed);
    tn_llama_init_random(&ck->layout, ck->params, &r, 0.08f);
    for (int i = 0; i < ck->layout.n_tensors; i++) {
        const tn_tensor_info *t = &ck->layout.tensors[i];
        if (t->rank == 1)
            for (size_t k = 0; k < t->numel; k++) ck->params[t->offset + k] += 0.1f * tn_rng_normal(&r);
    }
    tn_tokenizer *tok;
    TN_CHECK(tn_tokenizer_load("bytes", &tok));
    uint8_t *blob;
    size_t len;
    int rc = tn_tokenizer_serialize(tok, &blob, &len);
    tn_tokenizer_free(tok);
    TN_CHECK(rc);
    ck->tokenizer = tn_alloc(len, 1);
    if (ck->tokenizer) memcpy(ck->tokenizer, blob, len);
    free(blob);
    if (!ck->tokenizer) return -1;
    ck->tokenizer_len = len;
    snprintf(ck->tokenizer_format, sizeof ck->tokenizer_format, "trinity-tokenizer");
    return 0;
}
