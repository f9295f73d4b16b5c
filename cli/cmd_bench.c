/* PLACEHOLDER: replaced by the module that implements 'bench'. Must not survive to a landing. */
#include "cli/commands.h"
#include "core/error.h"

int tn_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    tn_err("bench: not built yet");
    return tn_cli_fail();
}
