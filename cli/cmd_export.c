/* trinity export CKPT.h5 -o MODEL.trin | MODEL.gguf | DIR: flags only; the work is export/export_trin.c,
 * export/export_gguf.c and export/export_hf.c. */
#include "cli/commands.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/json.h"
#include "core/timer.h"
#include "export/export_gguf.h"
#include "export/export_hf.h"
#include "export/export_trin.h"
#include "export/trin.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: trinity export CKPT.h5 -o OUT [--format trin|gguf|hf] [--dtype auto|f32|f16] [--quantize ternary]\n"
            "                      [--head f32|f16|q8|q4 [--exact-head]] [--embed f32|f16|q8|q4]\n"
            "                      [--gguf-ternary tq2_0|tq1_0|q4_0|q8_0|f16] [--strict] [--tokenizer FILE]\n"
            "                      [--hf-dtype bf16|f32] [--json]\n"
            "\n"
            "Pack a checkpoint into a self-contained .trin file (docs/TRIN.md) or a GGUF file for llama.cpp\n"
            "(docs/EXPORT.md): config, tokenizer, tensors.\n"
            "\n"
            "  dense checkpoint    tensors dense: TRIN F32 (or F16 with --dtype f16), GGUF F16 (or F32); norms F32\n"
            "  STE checkpoint      quantized layers snapped with the run's grid and scale rule: TRIN indices T2\n"
            "                      (ternary), L4 (grids of <= 16 values) or L8; GGUF see below; the rest dense\n"
            "  PRIMAL checkpoint   ghost layers' grid indices and scales as they are; the rest dense\n"
            "\n"
            "GGUF types: ternary layers TQ2_0 where a row is a multiple of 256 weights, else Q4_0 (the row scale as\n"
            "the fp16 block scale; codes exact); a grid of integer multiples of one step Q4_0 or Q8_0 (prime7: Q8_0);\n"
            "any other grid in the dense type with a warning; biases and norms F32. Q/K rows are permuted for\n"
            "llama.cpp's `llama` architecture; tied embeddings write no output.weight.\n"
            "\n"
            "--format hf writes a Hugging Face directory OUT (config.json, model.safetensors, tokenizer.json,\n"
            "tokenizer_config.json) that transformers loads: quantized layers dequantized to scale x grid value.\n"
            "OUT must not exist or be empty; it appears complete or not at all.\n"
            "\n"
            "options:\n"
            "  -o, --output FILE   the file to write (atomically)\n"
            "  --format F          trin, gguf or hf (default: gguf when FILE ends in .gguf, else trin)\n"
            "  --dtype D           dtype of the tensors that stay dense: auto (TRIN f32, GGUF f16), f32 or f16\n"
            "  --quantize ternary  snap a dense checkpoint's attention and MLP matrices to ternary (absmean\n"
            "                      per tensor, as BitNet b1.58): a synthetic quantized model for benchmarks\n"
            "  --head T            the LM head: f32, f16, q8 (int8, a scale per row; TRIN Q8, GGUF Q8_0) or q4\n"
            "                      (4-bit blocks of 32; TRIN Q4, GGUF Q4_0). With tied embeddings, the one table.\n"
            "                      Default: as --dtype. docs/TRIN.md gives what each costs in perplexity\n"
            "  --exact-head        with --head q8|q4 (TRIN): also store the head's F16 rows; the runner re-scores\n"
            "                      the quantized head's top candidates from them (the F16 head's argmax, at the\n"
            "                      quantized head's reads per token; the file grows by 2 bytes per head weight).\n"
            "                      A tied model also embeds from them\n"
            "  --embed T           the embedding table of a model that does not tie it to the head (as --head)\n"
            "  --gguf-ternary T    ternary layers: tq2_0 (default) or tq1_0 where rows are a multiple of 256\n"
            "                      (others Q4_0); q4_0 or q8_0 for every ternary layer; f16 (±fp16(scale):\n"
            "                      llama.cpp then keeps activations in float, for comparisons)\n"
            "  --strict            GGUF: a quantized tensor that no GGUF block type holds exactly is an error\n"
            "                      (default: stored as F16 with a warning)\n"
            "  --tokenizer FILE    GGUF: write this tokenizer (tokenizer.model, tokenizer.json, .gguf) instead of\n"
            "                      the checkpoint's\n"
            "  --hf-dtype D        hf: tensors in bf16 (default; round to nearest even) or f32 (trinity's weights exactly)\n"
            "  --json              print the summary as one JSON object on stdout\n"
            "  -h, --help          this help\n");
}

typedef enum { FMT_AUTO = 0, FMT_TRIN, FMT_GGUF, FMT_HF } out_format;

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int run_gguf(const char *src, const char *out, const tn_export_gguf_opts *o, int json) {
    double t0 = tn_time_s();
    tn_export_gguf_report rep;
    if (tn_export_gguf(src, out, o, &rep) != 0) return tn_cli_fail();
    double secs = tn_time_s() - t0;
    char dt[256] = "";
    size_t w = 0;
    for (int k = 0; k < 64; k++)
        if (rep.n_by_type[k] && w < sizeof dt)
            w += (size_t)snprintf(dt + w, sizeof dt - w, "%s%s x%d", w ? ", " : "", tn_ggml_type_name((uint32_t)k), rep.n_by_type[k]);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddStringToObject(j, "format", "gguf");
        cJSON_AddStringToObject(j, "kind", rep.kind);
        cJSON_AddStringToObject(j, "grid", rep.grid);
        cJSON_AddStringToObject(j, "architecture", rep.arch);
        cJSON_AddNumberToObject(j, "tensors", rep.n_tensors);
        cJSON *d = cJSON_AddObjectToObject(j, "types");
        for (int k = 0; k < 64; k++)
            if (rep.n_by_type[k]) cJSON_AddNumberToObject(d, tn_ggml_type_name((uint32_t)k), rep.n_by_type[k]);
        cJSON *kinds = cJSON_AddObjectToObject(j, "tensor_types");
        for (int k = 0; k < rep.n_kinds; k++) cJSON_AddStringToObject(kinds, rep.kinds[k], rep.kind_types[k]);
        cJSON_AddNumberToObject(j, "fallback_tensors", rep.n_fallback);
        tn_json_add_num(j, "max_scale_rel_err", rep.max_scale_rel_err);
        cJSON_AddStringToObject(j, "tokenizer", rep.tokenizer);
        cJSON_AddNumberToObject(j, "params", (double)rep.n_params);
        cJSON_AddNumberToObject(j, "bytes", (double)rep.file_bytes);
        tn_json_add_num(j, "seconds", secs);
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
        return TN_EXIT_OK;
    }
    printf("exported %s (%s%s%s) -> %s: GGUF %s, %d tensors (%s), %.1f MB, %.1fs\n", src, rep.kind, rep.grid[0] ? ", " : "",
           rep.grid, out, rep.arch, rep.n_tensors, dt, (double)rep.file_bytes / 1e6, secs);
    for (int k = 0; k < rep.n_kinds; k++) printf("  %-22s %s\n", rep.kinds[k], rep.kind_types[k]);
    printf("  tokenizer: %s\n", rep.tokenizer);
    if (rep.max_scale_rel_err > 0)
        printf("  block scales rounded to fp16: largest relative error %.2g\n", rep.max_scale_rel_err);
    return TN_EXIT_OK;
}

static int run_hf(const char *src, const char *out, const tn_export_hf_opts *o, int json) {
    double t0 = tn_time_s();
    tn_export_hf_report rep;
    if (tn_export_hf(src, out, o, &rep) != 0) return tn_cli_fail();
    double secs = tn_time_s() - t0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddStringToObject(j, "format", "hf");
        cJSON_AddStringToObject(j, "kind", rep.kind);
        cJSON_AddStringToObject(j, "grid", rep.grid);
        cJSON_AddStringToObject(j, "architecture", rep.arch);
        cJSON_AddStringToObject(j, "dtype", rep.dtype);
        cJSON_AddNumberToObject(j, "tensors", rep.n_tensors);
        cJSON_AddNumberToObject(j, "quantized_tensors", rep.n_quantized);
        cJSON_AddNumberToObject(j, "act8_tensors", rep.n_act8);
        cJSON_AddStringToObject(j, "tokenizer", rep.tokenizer);
        cJSON_AddNumberToObject(j, "params", (double)rep.n_params);
        cJSON_AddNumberToObject(j, "bytes", (double)rep.safetensors_bytes);
        tn_json_add_num(j, "seconds", secs);
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
        return TN_EXIT_OK;
    }
    printf("exported %s (%s%s%s) -> %s/: %s, %d tensors %s (%d dequantized), %.1f MB, %.1fs\n", src, rep.kind,
           rep.grid[0] ? ", " : "", rep.grid, out, rep.arch, rep.n_tensors, rep.dtype, rep.n_quantized,
           (double)rep.safetensors_bytes / 1e6, secs);
    printf("  tokenizer: %s\n", rep.tokenizer);
    if (rep.n_act8) printf("  %d layers were trained with int8 activations: transformers runs them in float\n", rep.n_act8);
    return TN_EXIT_OK;
}

int tn_cmd_export(int argc, char **argv) {
    const char *src = NULL, *out = NULL;
    tn_export_opts o;
    tn_export_opts_default(&o);
    tn_export_gguf_opts go;
    tn_export_gguf_opts_default(&go);
    out_format fmt = FMT_AUTO;
    int json = 0, gguf_only = 0;
    const char *hf_dtype = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            usage(stdout);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (++i >= argc) return tn_cli_usage_error("export", "%s needs a file name", a);
            out = argv[i];
        } else if (!strcmp(a, "--format")) {
            if (++i >= argc) return tn_cli_usage_error("export", "--format needs trin, gguf or hf");
            if (!strcmp(argv[i], "trin")) fmt = FMT_TRIN;
            else if (!strcmp(argv[i], "gguf")) fmt = FMT_GGUF;
            else if (!strcmp(argv[i], "hf")) fmt = FMT_HF;
            else return tn_cli_usage_error("export", "unknown --format '%s' (trin, gguf, hf)", argv[i]);
        } else if (!strcmp(a, "--hf-dtype")) {
            if (++i >= argc) return tn_cli_usage_error("export", "--hf-dtype needs bf16 or f32");
            hf_dtype = argv[i];
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
        } else if (!strcmp(a, "--head") || !strcmp(a, "--embed")) {
            if (++i >= argc) return tn_cli_usage_error("export", "%s needs f32, f16, q8 or q4", a);
            tn_table_type *dst = !strcmp(a, "--head") ? &o.head : &o.embed;
            if (tn_table_type_parse(argv[i], dst) != 0) return tn_cli_usage_error("export", "%s: %s", a, tn_errmsg());
        } else if (!strcmp(a, "--exact-head")) {
            o.exact_head = 1;
        } else if (!strcmp(a, "--gguf-ternary")) {
            if (++i >= argc) return tn_cli_usage_error("export", "--gguf-ternary needs tq2_0, tq1_0, q4_0, q8_0 or f16");
            const char *t = argv[i];
            if (!strcmp(t, "tq2_0")) go.ternary_type = TN_GGML_TQ2_0;
            else if (!strcmp(t, "tq1_0")) go.ternary_type = TN_GGML_TQ1_0;
            else if (!strcmp(t, "q4_0")) go.ternary_type = TN_GGML_Q4_0;
            else if (!strcmp(t, "q8_0")) go.ternary_type = TN_GGML_Q8_0;
            else if (!strcmp(t, "f16")) go.ternary_type = TN_GGML_F16;
            else return tn_cli_usage_error("export", "unknown --gguf-ternary '%s' (tq2_0, tq1_0, q4_0, q8_0, f16)", t);
            gguf_only = 1;
        } else if (!strcmp(a, "--strict")) {
            go.strict = 1;
            gguf_only = 1;
        } else if (!strcmp(a, "--tokenizer")) {
            if (++i >= argc) return tn_cli_usage_error("export", "--tokenizer needs a file");
            go.tokenizer_path = argv[i];
            gguf_only = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            const int rc = tn_cli_operand("export", a, &src);
            if (rc != 0) return rc;
        }
    }
    if (!src) return tn_cli_usage_error("export", "missing CKPT.h5");
    if (!out) return tn_cli_usage_error("export", "missing -o OUT");
    if (fmt == FMT_AUTO) fmt = ends_with(out, ".gguf") ? FMT_GGUF : FMT_TRIN;
    if (fmt != FMT_GGUF && gguf_only)
        return tn_cli_usage_error("export", "--gguf-ternary, --strict and --tokenizer need --format gguf");
    if (o.exact_head && fmt != FMT_TRIN) return tn_cli_usage_error("export", "--exact-head needs --format trin");
    if (o.exact_head && o.head != TN_TABLE_Q8 && o.head != TN_TABLE_Q4)
        return tn_cli_usage_error("export", "--exact-head needs --head q8 or q4 (it re-scores a quantized head)");
    if (hf_dtype && fmt != FMT_HF)
        return tn_cli_usage_error("export", "--hf-dtype needs --format hf");
    if (fmt == FMT_HF) {
        if (o.dense != TN_EXPORT_DENSE_AUTO) return tn_cli_usage_error("export", "--format hf takes --hf-dtype, not --dtype");
        if (o.head != TN_TABLE_AUTO || o.embed != TN_TABLE_AUTO)
            return tn_cli_usage_error("export", "--head and --embed apply to --format trin and gguf");
        tn_export_hf_opts ho;
        tn_export_hf_opts_default(&ho);
        ho.quantize = o.quantize;
        if (hf_dtype && tn_export_hf_parse_dtype(hf_dtype, &ho.dtype) != 0) return tn_cli_fail();
        return run_hf(src, out, &ho, json);
    }
    if (fmt == FMT_GGUF) {
        go.quantize = o.quantize;
        go.dense = o.dense;
        go.head = o.head;
        go.embed = o.embed;
        return run_gguf(src, out, &go, json);
    }

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
        for (int k = 0; k < TN_TRIN_N_DTYPES; k++)
            if (rep.n_by_dtype[k]) cJSON_AddNumberToObject(d, tn_trin_dtype_name((tn_trin_dtype)k), rep.n_by_dtype[k]);
        cJSON_AddNumberToObject(j, "params", (double)rep.n_params);
        cJSON_AddNumberToObject(j, "bytes", (double)rep.file_bytes);
        tn_json_add_num(j, "seconds", secs);
        tn_json_print_line(stdout, j);
        cJSON_Delete(j);
    } else {
        char dt[96] = "";
        size_t w = 0;
        for (int k = 0; k < TN_TRIN_N_DTYPES; k++)
            if (rep.n_by_dtype[k])
                w += (size_t)snprintf(dt + w, sizeof dt - w, "%s%s x%d", w ? ", " : "", tn_trin_dtype_name((tn_trin_dtype)k),
                                      rep.n_by_dtype[k]);
        printf("exported %s (%s%s%s) -> %s: %d tensors (%s), %.1f MB, %.1fs\n", src, rep.kind, rep.grid[0] ? ", " : "",
               rep.grid, out, rep.n_tensors, dt, (double)rep.file_bytes / 1e6, secs);
    }
    return TN_EXIT_OK;
}
