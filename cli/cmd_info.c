/* trinity info FILE [--json]: flags only; the work is runner/info.c. */
#include "cli/commands.h"
#include "core/error.h"
#include "runner/info.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: trinity info FILE [--json]\n"
            "\n"
            "Describe a .trin model (header, config, tokenizer, metadata, tensor table; every CRC is checked),\n"
            "an HDF5 checkpoint (config, quantizer, datasets), a shard (kind, token counts, vocabulary) or a\n"
            "GGUF file (metadata, tensors).\n"
            "\n"
            "  --json       one JSON object on one line\n"
            "  -h, --help   this help\n");
}

int tn_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            usage(stdout);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            const int rc = tn_cli_operand("info", a, &path);
            if (rc != 0) return rc;
        }
    }
    if (!path) return tn_cli_usage_error("info", "missing FILE");
    return tn_info(path, json, stdout) == 0 ? TN_EXIT_OK : tn_cli_fail();
}
