/* PLACEHOLDER: replaced by the module that implements 'train'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("train: not built yet");
    return tn_cli_fail();
}
