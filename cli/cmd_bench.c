#include "cli/commands.h"
#include "runner/bench_decode.h"
#include "runner/bench_gemv.h"
#include "runner/bench_train.h"

#include <stdio.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity bench <train|gemv|decode> [options]   ('trinity bench <what> --help')\n");
}

int tn_cmd_bench(int argc, char **argv) {
    if (argc < 2) return tn_cli_usage_error("bench", "missing what to benchmark");
    if (tn_cli_is_help(argv[1])) {
        help();
        return TN_EXIT_OK;
    }
    if (!strcmp(argv[1], "train")) return tn_bench_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gemv")) return tn_bench_gemv(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode")) return tn_bench_decode(argc - 1, argv + 1);
    return tn_cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
