#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "train/lora_merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity merge BASE ADAPTER -o OUT [--strength S] [--dense] [--keep-scale]\n"
           "                   [--data SHARD.h5] [--seq-len N] [--max-windows W] [--json]\n\n"
           "Fold a LoRA adapter into a quantized base: W' = dequant(W) + S * (alpha / r) * B A for every matrix\n"
           "the adapter touches, then re-quantized on the base's grid (docs/LORA.md).\n"
           "BASE is an STE or PRIMAL checkpoint (or an earlier merge's .h5), ADAPTER a PEFT directory\n"
           "(adapter_config.json + adapter_model.safetensors; `trinity train` with [lora] writes RUN/adapter).\n"
           "OUT ending in .trin is exported (docs/TRIN.md); else it is a checkpoint. Written atomically.\n"
           "--strength S    the adapter's weight (default 1; 0.5 = a half-bake: repeat with OUT as the next BASE)\n"
           "--dense         keep W' in fp32 (no re-quantization)\n"
           "--keep-scale    hold the base's scales fixed (PRIMAL and .trin bases always do); by default an STE\n"
           "                base's shadow weights take the update and are snapped again by the run's rule\n"
           "--data SHARD    report the loss of the base, of base + adapter in fp32, and of OUT on the shard\n"
           "--json          one JSON object on stdout\n"
           "Prints how many weights of the re-quantized matrices moved to another grid point.\n");
}

static int parse_pos(const char *s, long long max, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0 || v > max) return -1;
    *out = v;
    return 0;
}

int tn_cmd_merge(int argc, char **argv) {
    const char *base = NULL, *adapter = NULL, *out = NULL;
    tn_merge_opts o;
    tn_merge_opts_default(&o);
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            help();
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--dense")) {
            o.dense = 1;
        } else if (!strcmp(a, "--keep-scale")) {
            o.keep_scale = 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--strength") || !strcmp(a, "--data") ||
                   !strcmp(a, "--seq-len") || !strcmp(a, "--max-windows")) {
            if (i + 1 >= argc) return tn_cli_usage_error("merge", "%s needs a value", a);
            const char *v = argv[++i];
            long long n;
            if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
                out = v;
            } else if (!strcmp(a, "--data")) {
                o.data = v;
            } else if (!strcmp(a, "--strength")) {
                char *end;
                o.strength = strtod(v, &end);
                if (*v == '\0' || *end != '\0') return tn_cli_usage_error("merge", "--strength: '%s' is not a number", v);
            } else if (parse_pos(v, !strcmp(a, "--seq-len") ? 1 << 20 : 1LL << 40, &n) != 0) {
                return tn_cli_usage_error("merge", "%s: '%s' is not a positive integer", a, v);
            } else if (!strcmp(a, "--seq-len")) {
                o.seq_len = (int)n;
            } else {
                o.max_windows = n;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            return tn_cli_usage_error("merge", "unknown option '%s'", a);
        } else if (!base) {
            base = a;
        } else if (!adapter) {
            adapter = a;
        } else {
            return tn_cli_usage_error("merge", "unexpected argument '%s'", a);
        }
    }
    if (!base || !adapter) return tn_cli_usage_error("merge", "missing BASE or ADAPTER");
    if (!out) return tn_cli_usage_error("merge", "missing -o OUT");
    tn_merge_report rep;
    if (tn_lora_merge(base, adapter, out, &o, &rep) != 0) return tn_cli_fail();
    const double frac = rep.n_weights ? (double)rep.n_changed / (double)rep.n_weights : 0.0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddStringToObject(j, "base_kind", rep.base_kind);
        tn_json_add_num(j, "strength", o.strength);
        cJSON_AddBoolToObject(j, "dense", o.dense);
        cJSON_AddBoolToObject(j, "shadows", rep.shadows);
        cJSON_AddNumberToObject(j, "adapted_matrices", rep.n_adapted);
        cJSON_AddNumberToObject(j, "requantized_matrices", rep.n_requantized);
        cJSON_AddNumberToObject(j, "weights", (double)rep.n_weights);
        cJSON_AddNumberToObject(j, "changed", (double)rep.n_changed);
        tn_json_add_num(j, "changed_fraction", frac);
        if (rep.has_loss) {
            tn_json_add_num(j, "loss_base", rep.loss_base);
            tn_json_add_num(j, "loss_adapter", rep.loss_adapter);
            tn_json_add_num(j, "loss_merged", rep.loss_merged);
            cJSON_AddNumberToObject(j, "tokens", (double)rep.tokens);
        }
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
        return TN_EXIT_OK;
    }
    printf("merged %d matrices of a %s base at strength %g into %s%s\n", rep.n_adapted, rep.base_kind, o.strength, out,
           o.dense ? " (dense fp32)" : "");
    if (!o.dense)
        printf("re-quantized %d matrices (%s): %lld of %lld weights changed grid point (%.4f%%)\n", rep.n_requantized,
               rep.shadows ? "the STE shadows re-snapped by the run's rule" : "the base's scales kept", (long long)rep.n_changed,
               (long long)rep.n_weights, 100.0 * frac);
    if (rep.has_loss)
        printf("loss on %s (%lld tokens): base %.6f, base + adapter (fp32) %.6f, merged %.6f\n", o.data,
               (long long)rep.tokens, rep.loss_base, rep.loss_adapter, rep.loss_merged);
    return TN_EXIT_OK;
}
