/* PLACEHOLDER: replaced by the module that implements 'import'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_import(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("import: not built yet");
    return tn_cli_fail();
}
