/* PLACEHOLDER: replaced by the module that implements 'run'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("run: not built yet");
    return tn_cli_fail();
}
