#include "train/snapshot.h"
#include "train/quant_spec.h"

#include "core/error.h"
#include "core/h5.h"

int tn_snapshot_apply(const char *path, tn_checkpoint *ck, tn_quant_spec *spec, int *is_ste) {
    hid_t f, g;
    if (is_ste) *is_ste = 0;
    TN_CHECK(tn_h5_open(path, &f));
    if (!tn_h5_exists(f, "quant")) { /* dense, or PRIMAL (already materialised by tn_ckpt_load) */
        tn_h5_close(f);
        return 0;
    }
    tn_quant_spec q;
    int rc = tn_h5_group(f, "quant", &g);
    if (rc == 0) {
        rc = tn_quant_spec_load(&q, g);
        H5Gclose(g);
    }
    tn_h5_close(f);
    if (rc == 0) rc = tn_quant_snap_params(&q, &ck->layout, ck->params);
    if (rc == 0 && spec) *spec = q;
    if (rc == 0 && is_ste) *is_ste = 1;
    return rc ? tn_err_prefix("%s: quant", path) : 0;
}
