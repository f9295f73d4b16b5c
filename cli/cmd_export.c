/* trinity export CKPT.h5 -o MODEL.trin: flags only; the work is export/export_trin.c. */
#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "core/timer.h"
#include "export/export_trin.h"
#include "export/trin.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: trinity export CKPT.h5 -o MODEL.trin [--dtype auto|f32|f16] [--quantize ternary] [--json]\n"
            "\n"
            "Pack a checkpoint into a self-contained .trin file (docs/TRIN.md): config, tokenizer, tensors.\n"
            "\n"
            "  dense checkpoint    tensors F32 (or F16 with --dtype f16; norms stay F32)\n"
            "  STE checkpoint      quantized layers snapped with the run's grid and scale rule and stored as\n"
            "                      indices: T2 (ternary), L4 (grids of <= 16 values) or L8; the rest dense\n"
            "  PRIMAL checkpoint   ghost layers' grid indices and scales as they are; the rest dense\n"
            "\n"
            "options:\n"
            "  -o, --output FILE   the .trin file to write (atomically)\n"
            "  --dtype D           dtype of the tensors that stay dense: auto (= f32), f32 or f16\n"
            "  --quantize ternary  snap a dense checkpoint's attention and MLP matrices to ternary (absmean\n"
            "                      per tensor, as BitNet b1.58): a synthetic T2 model for benchmarks\n"
            "  --json              print the summary as one JSON object on stdout\n"
            "  -h, --help          this help\n");
}

int tn_cmd_export(int argc, char **argv) {
    const char *src = NULL, *out = NULL;
    tn_export_opts o;
    tn_export_opts_default(&o);
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            usage(stdout);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (++i >= argc) return tn_cli_usage_error("export", "%s needs a file name", a);
            out = argv[i];
        } else if (!strcmp(a, "--dtype")) {
            if (++i >= argc) return tn_cli_usage_error("export", "--dtype needs auto, f32 or f16");
            if (!strcmp(argv[i], "auto")) o.dense = TN_EXPORT_DENSE_AUTO;
            else if (!strcmp(argv[i], "f32")) o.dense = TN_EXPORT_DENSE_F32;
            else if (!strcmp(argv[i], "f16")) o.dense = TN_EXPORT_DENSE_F16;
            else return tn_cli_usage_error("export", "unknown --dtype '%s' (auto, f32, f16)", argv[i]);
        } else if (!strcmp(a, "--quantize")) {
            if (++i >= argc) return tn_cli_usage_error("export", "--quantize needs a grid (ternary)");
            if (strcmp(argv[i], "ternary") != 0)
                return tn_cli_usage_error("export", "unknown --quantize '%s' (only ternary)", argv[i]);
            o.quantize = argv[i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            const int rc = tn_cli_operand("export", a, &src);
            if (rc != 0) return rc;
        }
    }
    if (!src) return tn_cli_usage_error("export", "missing CKPT.h5");
    if (!out) return tn_cli_usage_error("export", "missing -o MODEL.trin");

    double t0 = tn_time_s();
    tn_export_report rep;
    if (tn_export_trin(src, out, &o, &rep) != 0) return tn_cli_fail();
    double secs = tn_time_s() - t0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddStringToObject(j, "kind", rep.kind);
        cJSON_AddStringToObject(j, "grid", rep.grid);
        cJSON_AddNumberToObject(j, "tensors", rep.n_tensors);
        cJSON *d = cJSON_AddObjectToObject(j, "dtypes");
        for (int k = 0; k < 5; k++)
            if (rep.n_by_dtype[k]) cJSON_AddNumberToObject(d, tn_trin_dtype_name((tn_trin_dtype)k), rep.n_by_dtype[k]);
        cJSON_AddNumberToObject(j, "params", (double)rep.n_params);
        cJSON_AddNumberToObject(j, "bytes", (double)rep.file_bytes);
        tn_json_add_num(j, "seconds", secs);
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
    } else {
        char dt[96] = "";
        size_t w = 0;
        for (int k = 0; k < 5; k++)
            if (rep.n_by_dtype[k])
                w += (size_t)snprintf(dt + w, sizeof dt - w, "%s%s x%d", w ? ", " : "", tn_trin_dtype_name((tn_trin_dtype)k),
                                      rep.n_by_dtype[k]);
        printf("exported %s (%s%s%s) -> %s: %d tensors (%s), %.1f MB, %.1fs\n", src, rep.kind, rep.grid[0] ? ", " : "",
               rep.grid, out, rep.n_tensors, dt, (double)rep.file_bytes / 1e6, secs);
    }
    return TN_EXIT_OK;
}
