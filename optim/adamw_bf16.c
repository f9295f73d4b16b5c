/* AdamW on bf16 parameters: the scheme is in optim/adamw_bf16.h. */
#include "optim/adamw_bf16.h"
#include "kernels/bf16.h"
#include "optim/adamw.h"
#include "optim/adamw8.h"

#include <string.h>

void tn_adamw_bf16_apply(uint16_t *p, const uint16_t *g, float g_scale, const tn_adam_moments *s, int64_t n,
                         const tn_adamw_step *h, uint64_t seed, uint64_t counter) {
    const int64_t nb = tn_adam8_blocks(n);
    const tn_adam8_table *tm = tn_adam8_table_m(), *tv = tn_adam8_table_v();
    /* tn_adamw_apply's own `omp parallel` nests inside this one and runs on the calling thread. */
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        float pf[TN_ADAM8_BLOCK], gf[TN_ADAM8_BLOCK], mf[TN_ADAM8_BLOCK], vf[TN_ADAM8_BLOCK];
        const int64_t off = b * TN_ADAM8_BLOCK, len = n - off < TN_ADAM8_BLOCK ? n - off : TN_ADAM8_BLOCK;
        for (int64_t i = 0; i < len; i++) {
            pf[i] = tn_bf16_widen(p[off + i]);
            gf[i] = tn_bf16_widen(g[off + i]) * g_scale;
        }
        if (s->bits == 8) {
            tn_adam8_dequantize(s->m8 + off, s->m_absmax[b], len, tm, mf);
            tn_adam8_dequantize(s->v8 + off, s->v_absmax[b], len, tv, vf);
        } else {
            memcpy(mf, s->m + off, (size_t)len * sizeof(float));
            memcpy(vf, s->v + off, (size_t)len * sizeof(float));
        }
        tn_adamw_apply(pf, gf, mf, vf, len, h);
        if (s->bits == 8) {
            tn_adam8_quantize(mf, len, tm, s->m8 + off, &s->m_absmax[b]);
            tn_adam8_quantize(vf, len, tv, s->v8 + off, &s->v_absmax[b]);
        } else {
            memcpy(s->m + off, mf, (size_t)len * sizeof(float));
            memcpy(s->v + off, vf, (size_t)len * sizeof(float));
        }
        for (int64_t i = 0; i < len; i++) p[off + i] = tn_bf16_round_stochastic(pf[i], seed, counter + (uint64_t)(off + i));
    }
}
