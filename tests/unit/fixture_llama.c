#include "fixture_llama.h"
#include "core/error.h"

#include <stdio.h>

int tn_fixture_get_int(hid_t f, const char *key, int *out) {
    int64_t v;
    TN_CHECK(tn_h5_attr_get_i64(f, ".", key, &v));
    *out = (int)v;
    return 0;
}

int tn_fixture_read_config(hid_t f, tn_llama_config *c) {
    tn_llama_config_defaults(c);
    double theta, eps;
    TN_CHECK(tn_fixture_get_int(f, "dim", &c->dim));
    TN_CHECK(tn_fixture_get_int(f, "n_layers", &c->n_layers));
    TN_CHECK(tn_fixture_get_int(f, "n_heads", &c->n_heads));
    TN_CHECK(tn_fixture_get_int(f, "n_kv_heads", &c->n_kv_heads));
    TN_CHECK(tn_fixture_get_int(f, "ffn_dim", &c->ffn_dim));
    TN_CHECK(tn_fixture_get_int(f, "vocab_size", &c->vocab_size));
    TN_CHECK(tn_fixture_get_int(f, "max_seq_len", &c->max_seq_len));
    TN_CHECK(tn_fixture_get_int(f, "tied_embeddings", &c->tied_embeddings));
    TN_CHECK(tn_h5_attr_get_f64(f, ".", "rope_theta", &theta));
    TN_CHECK(tn_h5_attr_get_f64(f, ".", "norm_eps", &eps));
    c->rope_theta = (float)theta;
    c->norm_eps = (float)eps;
    return 0;
}

int tn_fixture_read_tensors(hid_t f, const char *group, const tn_llama_layout *l, float *buf) {
    char path[160];
    for (int i = 0; i < l->n_tensors; i++) {
        const tn_tensor_info *t = &l->tensors[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        if (tn_h5_read(f, path, TN_H5_F32, t->rank, t->shape, buf + t->offset) != 0)
            return tn_err_prefix("%s", path);
    }
    return 0;
}

long tn_fixture_n_links(hid_t f, const char *group) {
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    if (g < 0) return -1;
    H5G_info_t info;
    herr_t r = H5Gget_info(g, &info);
    H5Gclose(g);
    return r < 0 ? -1 : (long)info.nlinks;
}
