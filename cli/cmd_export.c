/* PLACEHOLDER: replaced by the module that implements 'export'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_export(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("export: not built yet");
    return tn_cli_fail();
}
