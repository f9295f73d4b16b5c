/* PLACEHOLDER: replaced by the module that implements 'eval'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("eval: not built yet");
    return tn_cli_fail();
}
