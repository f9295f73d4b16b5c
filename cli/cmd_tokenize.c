/* PLACEHOLDER: replaced by the module that implements 'tokenize'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("tokenize: not built yet");
    return tn_cli_fail();
}
