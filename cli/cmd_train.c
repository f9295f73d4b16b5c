#include "cli/commands.h"
#include "core/error.h"
#include "train/train.h"

#include <stdio.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity train CONFIG.ini [section.key=value ...] [--device cpu|cuda|cuda:N]\n"
           "                     [--resume | --resume-from CKPT.h5]\n\n"
           "Train a model as the config says (dense AdamW, STE evolution with [quant], or PRIMAL with\n"
           "[optim] method = primal). Keys: docs/CONFIG.md. Overrides replace config values.\n\n"
           "  --device D          where to train (same as train.device=D; default [train] device, cpu)\n"
           "  --plan              print the run's memory plan on its device as JSON and stop (the model is not\n"
           "                      allocated, the shards are not read and unknown keys are not checked); exit 1\n"
           "                      when it does not fit\n"
           "  --resume            continue from the newest ckpt-*.h5 in [train] out_dir\n"
           "  --resume-from PATH  continue from a given checkpoint\n\n"
           "The run directory gets config.ini, log.jsonl (one JSON object per step and per evaluation)\n"
           "and ckpt-NNNNNN.h5 checkpoints.\n");
}

int tn_cmd_train(int argc, char **argv) {
    const char *config = NULL, *resume = NULL;
    int plan = 0;
    char *overrides[257]; /* 256 section.key=value, and the --device one */
    char device_override[64];
    int n_over = 0, have_device = 0;
    for (int i = 1; i < argc; i++) {
        if (tn_cli_is_help(argv[i])) {
            help();
            return TN_EXIT_OK;
        } else if (!strcmp(argv[i], "--resume")) {
            resume = "";
        } else if (!strcmp(argv[i], "--plan")) {
            plan = 1;
        } else if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= argc) return tn_cli_usage_error("train", "--device needs cpu, cuda or cuda:N");
            if (strlen(argv[i + 1]) >= sizeof device_override - 16)
                return tn_cli_usage_error("train", "--device: '%s' is too long", argv[i + 1]);
            snprintf(device_override, sizeof device_override, "train.device=%s", argv[++i]);
            have_device = 1; /* applied after the section.key=value overrides; the last --device wins */
        } else if (!strcmp(argv[i], "--resume-from")) {
            if (i + 1 >= argc) return tn_cli_usage_error("train", "--resume-from needs a path");
            resume = argv[++i];
        } else if (argv[i][0] == '-') {
            return tn_cli_usage_error("train", "unknown option '%s'", argv[i]);
        } else if (!config) {
            config = argv[i];
        } else if (strchr(argv[i], '=')) {
            if (n_over == 256) return tn_cli_usage_error("train", "too many overrides");
            overrides[n_over++] = argv[i];
        } else {
            return tn_cli_usage_error("train", "unexpected argument '%s' (overrides look like section.key=value)", argv[i]);
        }
    }
    if (!config) return tn_cli_usage_error("train", "missing CONFIG.ini");
    if (have_device) overrides[n_over++] = device_override;
    if (plan) {
        if (resume) return tn_cli_usage_error("train", "--plan and --resume do not go together");
        return tn_train_plan(config, overrides, n_over) != 0 ? tn_cli_fail() : TN_EXIT_OK;
    }
    if (tn_train_run(config, overrides, n_over, resume) != 0) return tn_cli_fail();
    return TN_EXIT_OK;
}
