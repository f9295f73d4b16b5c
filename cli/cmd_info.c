/* PLACEHOLDER: replaced by the module that implements 'info'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("info: not built yet");
    return tn_cli_fail();
}
