/* trinity: one binary, subcommands. Dispatch only. */
#include "cli/commands.h"
#include "core/error.h"
#include "device/device.h"
#ifdef TN_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"import", tn_cmd_import, "convert a Hugging Face dir, GGUF or llama2.c model into an HDF5 checkpoint"},
    {"prepare", tn_cmd_prepare, "tokenize Alpaca JSON or plain text into an HDF5 shard"},
    {"tokenize", tn_cmd_tokenize, "encode text to token ids, or decode ids to text"},
    {"train", tn_cmd_train, "train from an INI config (dense, STE or PRIMAL)"},
    {"export", tn_cmd_export, "pack a checkpoint into a .trin file"},
    {"merge", tn_cmd_merge, "fold a LoRA adapter into a quantized base (re-quantized or dense)"},
    {"run", tn_cmd_run, "generate text from a .trin or .h5 model"},
    {"eval", tn_cmd_eval, "masked loss and perplexity of a model on a shard"},
    {"bench", tn_cmd_bench, "benchmarks (train, gemv, decode, prefill)"},
    {"info", tn_cmd_info, "describe a .trin, .h5, .gguf or shard file"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

int tn_cli_fail(void) {
    fprintf(stderr, "trinity: error: %s\n", tn_errmsg());
    return TN_EXIT_FAIL;
}

int tn_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trinity %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'trinity %s --help')\n", cmd);
    va_end(ap);
    return TN_EXIT_USAGE;
}

int tn_cli_operand(const char *cmd, const char *arg, const char **slot) {
    if (arg[0] == '-' && arg[1] != '\0') return tn_cli_usage_error(cmd, "unknown option '%s'", arg);
    if (*slot) return tn_cli_usage_error(cmd, "unexpected argument '%s'", arg);
    *slot = arg;
    return 0;
}

int tn_cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

static void usage(FILE *f) {
    fprintf(f, "usage: trinity <command> [options]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'trinity <command> --help' describes a command.\n");
}

int main(int argc, char **argv) {
#ifdef TN_HAVE_CUDA
    tn_device_register_cuda(tn_cuda_backend_get()); /* `device = cuda` (real, or the emulator of a test build) */
#endif
    if (argc < 2) {
        usage(stderr);
        return TN_EXIT_USAGE;
    }
    if (tn_cli_is_help(argv[1])) {
        usage(stdout);
        return TN_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("trinity 0.1.0\n");
        return TN_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "trinity: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return TN_EXIT_USAGE;
}
