/* TEMPORARY until STE/PRIMAL land. */
#include "train/run.h"
#include "core/error.h"
int tn_method_ste_init(tn_run *r, tn_method *m) { (void)r; (void)m; return tn_err("[quant]: STE training not built yet"); }
int tn_method_primal_init(tn_run *r, tn_method *m) { (void)r; (void)m; return tn_err("[optim] method = primal: not built yet"); }
