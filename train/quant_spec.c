#include "train/quant_spec.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/h5.h"
#include "quant/snap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tn_quant_parse_groups(const char *list, unsigned *groups) {
    char buf[256];
    if (strlen(list) >= sizeof buf) return tn_err("layer list too long");
    strcpy(buf, list);
    *groups = 0;
    for (char *tok = strtok(buf, ", \t"); tok; tok = strtok(NULL, ", \t")) {
        if (!strcmp(tok, "attn")) *groups |= 1u << TN_GROUP_ATTN;
        else if (!strcmp(tok, "mlp")) *groups |= 1u << TN_GROUP_MLP;
        else if (!strcmp(tok, "head")) *groups |= 1u << TN_GROUP_HEAD;
        else return tn_err("layer group '%s' is not attn, mlp or head", tok);
    }
    if (!*groups) return tn_err("empty layer list");
    return 0;
}

static int groups_to_text(unsigned g, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s%s%s%s", (g & (1u << TN_GROUP_ATTN)) ? "attn" : "",
             (g & (1u << TN_GROUP_ATTN)) && (g & ~(1u << TN_GROUP_ATTN)) ? "," : "",
             (g & (1u << TN_GROUP_MLP)) ? "mlp" : "", (g & (1u << TN_GROUP_MLP)) && (g & (1u << TN_GROUP_HEAD)) ? "," : "",
             (g & (1u << TN_GROUP_HEAD)) ? "head" : "");
    return 0;
}

int tn_quant_spec_from_config(tn_config *c, tn_quant_spec *q) {
    memset(q, 0, sizeof *q);
    const char *grid;
    TN_CHECK(tn_config_str_req(c, "quant", "grid", &grid));
    if (tn_grid_resolve(grid, &q->grid) != 0) return tn_err_prefix("[quant] grid");
    /* BitNet pairs the ternary grid with absmean; the prime grids (Trinity) with std. */
    const char *rule = tn_config_str(c, "quant", "scale", !strcmp(q->grid.name, "ternary") ? "absmean" : "std");
    if (tn_scale_rule_parse(rule, &q->rule) != 0) return tn_err_prefix("[quant] scale");
    TN_CHECK(tn_config_bool(c, "quant", "scale_per_row", 0, &q->per_row));
    if (tn_quant_parse_groups(tn_config_str(c, "quant", "layers", "attn,mlp"), &q->groups) != 0)
        return tn_err_prefix("[quant] layers");
    TN_CHECK(tn_config_int(c, "quant", "lambda_warmup_steps", 0, &q->lambda_warmup_steps));
    int64_t bits;
    TN_CHECK(tn_config_int(c, "quant", "act_bits", 0, &bits));
    if (bits != 0 && bits != 8) return tn_err("[quant] act_bits must be 0 (off) or 8");
    if (q->lambda_warmup_steps < 0) return tn_err("[quant] lambda_warmup_steps must be >= 0");
    q->act_bits = (int)bits;
    return 0;
}

int tn_quant_selects(const tn_quant_spec *q, const tn_tensor_info *t) {
    return t->rank == 2 && t->group != TN_GROUP_EMBED && (q->groups & (1u << t->group));
}

int tn_quant_spec_save(const tn_quant_spec *q, hid_t g) {
    char layers[64];
    groups_to_text(q->groups, layers, sizeof layers);
    int64_t n = q->grid.n;
    TN_CHECK(tn_h5_write(g, "grid", TN_H5_F32, 1, &n, q->grid.v, 0));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "format", "trinity-quant"));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "version", 1));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "grid_name", q->grid.name));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "scale", tn_scale_rule_name(q->rule)));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "scale_per_row", q->per_row));
    TN_CHECK(tn_h5_attr_set_str(g, ".", "layers", layers));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "lambda_warmup_steps", q->lambda_warmup_steps));
    TN_CHECK(tn_h5_attr_set_i64(g, ".", "act_bits", q->act_bits));
    return 0;
}

int tn_quant_spec_load(tn_quant_spec *q, hid_t g) {
    memset(q, 0, sizeof *q);
    char name[TN_GRID_NAME_MAX], rule[32], layers[64];
    int64_t per_row, warm, bits, rank_shape[TN_H5_MAX_RANK];
    int rank;
    TN_CHECK(tn_h5_attr_get_str(g, ".", "grid_name", name, sizeof name));
    TN_CHECK(tn_h5_attr_get_str(g, ".", "scale", rule, sizeof rule));
    TN_CHECK(tn_h5_attr_get_str(g, ".", "layers", layers, sizeof layers));
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "scale_per_row", &per_row));
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "lambda_warmup_steps", &warm));
    TN_CHECK(tn_h5_attr_get_i64(g, ".", "act_bits", &bits));
    TN_CHECK(tn_h5_shape(g, "grid", &rank, rank_shape));
    if (rank != 1 || rank_shape[0] < 1 || rank_shape[0] > TN_GRID_MAX) return tn_err("quant/grid: bad shape");
    float v[TN_GRID_MAX];
    TN_CHECK(tn_h5_read(g, "grid", TN_H5_F32, 1, rank_shape, v));
    TN_CHECK(tn_grid_from_values(name, v, (int)rank_shape[0], &q->grid));
    TN_CHECK(tn_scale_rule_parse(rule, &q->rule));
    TN_CHECK(tn_quant_parse_groups(layers, &q->groups));
    if (bits != 0 && bits != 8) return tn_err("quant: act_bits %lld", (long long)bits);
    q->per_row = per_row != 0;
    q->lambda_warmup_steps = warm;
    q->act_bits = (int)bits;
    return 0;
}

int tn_quant_snap_params(const tn_quant_spec *q, const tn_llama_layout *l, float *params) {
    int64_t max_rows = 1;
    for (int i = 0; i < l->n_tensors; i++)
        if (l->tensors[i].shape[0] > max_rows) max_rows = l->tensors[i].shape[0];
    float *scales = tn_alloc((size_t)max_rows, sizeof(float));
    if (!scales) return -1;
    int rc = 0;
    for (int i = 0; i < l->n_tensors && rc == 0; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        if (!tn_quant_selects(q, t) || t->external) continue;
        float *W = params + t->offset;
        rc = tn_quantize_tensor(W, t->shape[0], t->shape[1], &q->grid, q->rule, q->per_row, W, NULL, scales);
        if (rc) tn_err_prefix("%s", t->name);
    }
    tn_free(scales);
    return rc;
}
