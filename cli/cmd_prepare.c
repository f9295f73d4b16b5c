/* PLACEHOLDER: replaced by the module that implements 'prepare'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_prepare(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("prepare: not built yet");
    return tn_cli_fail();
}
