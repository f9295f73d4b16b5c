#include "cli/commands.h"
#include "core/error.h"
#include "runner/bench_decode.h"
#include "runner/bench_gemv.h"
#include "train/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity bench <train|gemv|decode|prefill> [options]   ('trinity bench <what> --help')\n");
}

static void train_help(void) {
    printf("usage: trinity bench train --preset NAME [--device cpu|cuda|cuda:N] [--batch B] [--seq-len T]\n"
           "                           [--steps N] [--threads N] [--quant GRID [--ste-only]] [--json]\n"
           "                           [section.key=value ...]\n\n"
           "Times the training step of `trinity train` (forward, backward, clipping, the method's optimizer) on\n"
           "random tokens: one warm-up step, then the median of N (default 3). Presets: %s\n"
           "(ghost-* train with PRIMAL, the others dense AdamW). Overrides are config keys as for `trinity train`,\n"
           "e.g. train.accum=4 train.precision=tf32 optim.method=primal. Default batch x seq: 4 x 256 on the CPU,\n"
           "16 x 512 on CUDA. Prints tokens/s, achieved TFLOP/s and MFU against the device's peak for the\n"
           "precision (CUDA), or the ratio to OpenBLAS sgemm 2048^3 measured in the same run (CPU), and the\n"
           "memory: the plan's components, the peak allocated, and the process's peak RSS during the run (set-up\n"
           "and steps). With --quant GRID the STE step (attn+mlp on GRID) is timed too, after the dense one\n"
           "(quant.* overrides apply to it alone); --ste-only times the STE step alone (a model whose dense\n"
           "fp32 state would not fit). Memory-lean runs: optim.state_bits=8 train.recompute=layer\n"
           "quant.shadow=bf16 (docs/EVOLVE.md), distill.teacher=CKPT.h5 for distillation.\n",
           tn_bench_train_presets());
}

static int positive(const char *flag, const char *v, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x <= 0 || x > (1 << 20))
        return tn_cli_usage_error("bench train", "%s needs a positive integer, not '%s'", flag, v);
    *out = (int)x;
    return 0;
}

static int bench_train(int argc, char **argv) {
    tn_bench_train_opts o = {"smollm2-135m", "cpu", 0, 0, 3, 0, 0, NULL, 0, NULL, 0};
    char **over = calloc((size_t)argc + 1, sizeof *over);
    if (!over) return TN_EXIT_FAIL;
    int err = 0; /* a usage error's exit code */
    for (int i = 1; i < argc && !err; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            train_help();
            free(over);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--ste-only")) {
            o.ste_only = 1;
        } else if (i + 1 < argc && !strcmp(a, "--preset")) {
            o.preset = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--device")) {
            o.device = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--quant")) {
            o.quant = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--batch")) {
            err = positive(a, argv[++i], &o.batch);
        } else if (i + 1 < argc && !strcmp(a, "--seq-len")) {
            err = positive(a, argv[++i], &o.seq_len);
        } else if (i + 1 < argc && !strcmp(a, "--steps")) {
            err = positive(a, argv[++i], &o.steps);
            if (o.steps > 1000) o.steps = 1000;
        } else if (i + 1 < argc && !strcmp(a, "--threads")) {
            err = positive(a, argv[++i], &o.threads);
        } else if (a[0] != '-' && strchr(a, '=') && strchr(a, '.')) {
            over[o.n_overrides++] = argv[i];
        } else {
            err = tn_cli_usage_error("bench train", "unknown option or argument '%s' (overrides look like section.key=value)",
                                     a);
        }
    }
    if (err) {
        free(over);
        return err;
    }
    o.overrides = over;
    if (o.ste_only && !o.quant) {
        free(over);
        return tn_cli_usage_error("bench train", "--ste-only needs --quant GRID");
    }
    int rc = tn_bench_train_report(&o);
    free(over);
    return rc == 0 ? TN_EXIT_OK : tn_cli_fail();
}

int tn_cmd_bench(int argc, char **argv) {
    if (argc < 2) return tn_cli_usage_error("bench", "missing what to benchmark");
    if (tn_cli_is_help(argv[1])) {
        help();
        return TN_EXIT_OK;
    }
    if (!strcmp(argv[1], "train")) return bench_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gemv")) return tn_bench_gemv(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode")) return tn_bench_decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "prefill")) return tn_bench_prefill(argc - 1, argv + 1);
    return tn_cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
