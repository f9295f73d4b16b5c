/* trinity import SRC -o OUT.h5: a Hugging Face dir, GGUF file or llama2.c .bin to an fp32 checkpoint. */
#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "export/import.h"
#include "train/checkpoint.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: trinity import SRC -o OUT.h5 [--format hf|gguf|llama2c] [--tokenizer FILE] [--json]\n"
            "\n"
            "Convert a pretrained Llama-family model into a trinity HDF5 checkpoint (fp32).\n"
            "\n"
            "SRC is one of (detected from the path unless --format is given):\n"
            "  hf       a Hugging Face directory: config.json + model.safetensors (or sharded with\n"
            "           model.safetensors.index.json); F32/F16/BF16. tokenizer.model or tokenizer.json is kept.\n"
            "  gguf     a llama.cpp .gguf (llama architecture); F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K are\n"
            "           dequantized; the file's tokenizer is kept.\n"
            "  llama2c  a llama2.c .bin checkpoint (v0 legacy or v1 \"ak42\"); it carries no tokenizer.\n"
            "\n"
            "options:\n"
            "  -o, --output OUT.h5   checkpoint to write (required)\n"
            "  --format F            force the source format\n"
            "  --tokenizer FILE      store this tokenizer instead (tokenizer.model, tokenizer.json, .gguf vocab\n"
            "                        or a llama2.c tokenizer.bin)\n"
            "  --json                print the summary as one JSON object on stdout\n"
            "  -h, --help            this help\n"
            "\n"
            "See docs/IMPORT.md for what is checked and how Q/K rows are reordered.\n");
}

static void fmt_count(char *buf, size_t cap, int64_t n) {
    if (n >= 1000000000) snprintf(buf, cap, "%.2fB", (double)n / 1e9);
    else if (n >= 1000000) snprintf(buf, cap, "%.2fM", (double)n / 1e6);
    else if (n >= 1000) snprintf(buf, cap, "%.1fK", (double)n / 1e3);
    else snprintf(buf, cap, "%lld", (long long)n);
}

int tn_cmd_import(int argc, char **argv) {
    const char *src = NULL, *out = NULL;
    tn_import_opts opts = {TN_IMPORT_AUTO, NULL};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            usage(stdout);
            return TN_EXIT_OK;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc) return tn_cli_usage_error("import", "%s needs a file name", a);
            out = argv[i];
        } else if (strcmp(a, "--format") == 0) {
            if (++i >= argc) return tn_cli_usage_error("import", "--format needs hf, gguf or llama2c");
            if (tn_import_parse_format(argv[i], &opts.format) != 0)
                return tn_cli_usage_error("import", "unknown --format '%s' (hf, gguf, llama2c)", argv[i]);
        } else if (strcmp(a, "--tokenizer") == 0) {
            if (++i >= argc) return tn_cli_usage_error("import", "--tokenizer needs a file name");
            opts.tokenizer_path = argv[i];
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else {
            const int rc = tn_cli_operand("import", a, &src);
            if (rc != 0) return rc;
        }
    }
    if (!src) return tn_cli_usage_error("import", "missing SRC");
    if (!out) return tn_cli_usage_error("import", "missing -o OUT.h5");

    tn_checkpoint ck;
    tn_import_info info;
    if (tn_import(src, &opts, &ck, &info) != 0) return tn_cli_fail();
    int rc = tn_ckpt_save(out, &ck, NULL, 0);
    const tn_llama_config c = ck.layout.cfg;
    tn_ckpt_free(&ck);
    if (rc != 0) return tn_cli_fail();

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "source", src);
        cJSON_AddStringToObject(o, "format", tn_import_format_name(info.format));
        cJSON_AddStringToObject(o, "output", out);
        cJSON_AddNumberToObject(o, "params", (double)info.n_params);
        cJSON_AddNumberToObject(o, "tensors", info.n_tensors);
        cJSON_AddStringToObject(o, "source_dtype", info.source_dtypes);
        cJSON_AddStringToObject(o, "tokenizer", info.tokenizer_format);
        cJSON_AddNumberToObject(o, "dim", c.dim);
        cJSON_AddNumberToObject(o, "n_layers", c.n_layers);
        cJSON_AddNumberToObject(o, "n_heads", c.n_heads);
        cJSON_AddNumberToObject(o, "n_kv_heads", c.n_kv_heads);
        cJSON_AddNumberToObject(o, "ffn_dim", c.ffn_dim);
        cJSON_AddNumberToObject(o, "vocab_size", c.vocab_size);
        cJSON_AddBoolToObject(o, "tied_embeddings", c.tied_embeddings);
        rc = tn_json_print_line(stdout, o);
        cJSON_Delete(o);
        return rc == 0 ? TN_EXIT_OK : TN_EXIT_FAIL;
    }
    char n[32];
    fmt_count(n, sizeof n, info.n_params);
    printf("imported %s (%s, %s): %s params, %d tensors, %d layers, dim %d, vocab %d, %s head, tokenizer %s -> %s\n",
           src, tn_import_format_name(info.format), info.source_dtypes, n, info.n_tensors, c.n_layers, c.dim,
           c.vocab_size, c.tied_embeddings ? "tied" : "untied", info.tokenizer_format[0] ? info.tokenizer_format : "none",
           out);
    return TN_EXIT_OK;
}
