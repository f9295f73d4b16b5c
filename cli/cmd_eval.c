#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "runner/eval_trin.h"
#include "runner/rescore.h"
#include "train/evaluate_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity eval MODEL --data SHARD.h5 [--seq-len N] [--batch B] [--max-windows W] [--fast]\n"
           "                  [--reference REF.trin] [--rescore K] [--load copy|map] [--device cpu|cuda|cuda:N]\n"
           "                  [--json]\n\n"
           "Mean masked negative log-likelihood and perplexity of MODEL (.h5 checkpoint or .trin) over the\n"
           "shard, in non-overlapping windows of N tokens (default min(512, max_seq_len)). Quantized\n"
           "checkpoints are evaluated with their snapped weights. A .trin runs through the inference engine:\n"
           "exactly (float activations, the checkpoint's loss) by default, or with --fast through the int8 /\n"
           "lookup kernels that `trinity run` uses.\n"
           "--device runs the evaluation on that device (default cpu; docs/CUDA.md): a .h5 checkpoint through\n"
           "the training model, a .trin through the inference engine with its packed weights on the device.\n"
           "--reference REF runs a second model (a .trin with the same vocabulary, e.g. the same export with an\n"
           "F16 head) over the same windows and reports its perplexity and how often the two models' top-1\n"
           "predictions agree: what a quantized head or embedding table costs (docs/TRIN.md).\n"
           "--rescore K: a .trin with exact head rows (`export --exact-head`) re-scores the quantized head's\n"
           "best K logits from them (default 32; 0 = the quantized head alone; docs/TRIN.md).\n"
           "--load: a .trin read into huge pages (copy, the CPU's default) or memory-mapped (map; docs/TRIN.md).\n"
           "--json prints {\"loss\": L, \"ppl\": P, \"tokens\": T} on one line (with --reference also\n"
           "\"ref_loss\", \"ref_ppl\", \"top1_agree\": the agreeing fraction).\n");
}

/* An integer in [min, max]; -1 otherwise. */
static int parse_range(const char *s, long long min, long long max, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int tn_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *device = "cpu", *ref = NULL;
    long long seq = 0, batch = 4, maxw = 0;
    int json = 0, fast = 0;
    long long rescore = -1;
    tn_infer_load load = TN_LOAD_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            help();
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--fast")) {
            fast = 1;
        } else if (!strcmp(a, "--data") || !strcmp(a, "--seq-len") || !strcmp(a, "--batch") ||
                   !strcmp(a, "--max-windows") || !strcmp(a, "--device") || !strcmp(a, "--reference") ||
                   !strcmp(a, "--rescore") || !strcmp(a, "--load")) {
            if (i + 1 >= argc) return tn_cli_usage_error("eval", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--data")) data = v;
            else if (!strcmp(a, "--reference")) ref = v;
            else if (!strcmp(a, "--device")) device = v;
            else if (!strcmp(a, "--seq-len") && parse_range(v, 1, 1 << 20, &seq) != 0)
                return tn_cli_usage_error("eval", "--seq-len: '%s' is not a positive integer", v);
            else if (!strcmp(a, "--batch") && parse_range(v, 1, 4096, &batch) != 0)
                return tn_cli_usage_error("eval", "--batch: '%s' is not a positive integer", v);
            else if (!strcmp(a, "--max-windows") && parse_range(v, 1, 1LL << 40, &maxw) != 0)
                return tn_cli_usage_error("eval", "--max-windows: '%s' is not a positive integer", v);
            else if (!strcmp(a, "--rescore") && parse_range(v, 0, TN_RESCORE_MAX, &rescore) != 0)
                return tn_cli_usage_error("eval", "--rescore: '%s' is not a count 0..%d", v, TN_RESCORE_MAX);
            else if (!strcmp(a, "--load") && tn_infer_load_parse(v, &load) != 0)
                return tn_cli_usage_error("eval", "--load: %s", tn_errmsg());
        } else if (a[0] == '-') {
            return tn_cli_usage_error("eval", "unknown option '%s'", a);
        } else if (!model) {
            model = a;
        } else {
            return tn_cli_usage_error("eval", "unexpected argument '%s'", a);
        }
    }
    if (!model) return tn_cli_usage_error("eval", "missing MODEL");
    if (!data) return tn_cli_usage_error("eval", "missing --data SHARD.h5");
    double loss;
    int64_t counted;
    size_t ml = strlen(model);
    int rc;
    tn_eval_compare cmp = {0};
    if (ml > 5 && !strcmp(model + ml - 5, ".trin")) {
        tn_infer_opts io;
        tn_infer_opts_default(&io);
        io.mode = fast ? TN_INFER_FAST : TN_INFER_EXACT;
        io.device = device;
        io.load = load;
        if (rescore >= 0) io.rescore = (int)rescore;
        rc = tn_trin_eval_compare(model, ref, data, (int)seq, maxw, &io, &cmp);
        loss = cmp.loss;
        counted = cmp.tokens;
    } else {
        if (fast) return tn_cli_usage_error("eval", "--fast applies to .trin models");
        if (ref) return tn_cli_usage_error("eval", "--reference applies to .trin models");
        if (rescore >= 0 || load != TN_LOAD_AUTO)
            return tn_cli_usage_error("eval", "--rescore and --load apply to .trin models");
        rc = tn_eval_checkpoint(model, data, (int)seq, (int)batch, maxw, device, &loss, &counted);
    }
    if (rc != 0) return tn_cli_fail();
    const double agree = counted ? (double)cmp.top1_agree / (double)counted : 0.0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        tn_json_add_num(o, "loss", loss);
        tn_json_add_num(o, "ppl", exp(loss));
        cJSON_AddNumberToObject(o, "tokens", (double)counted);
        if (ref) {
            tn_json_add_num(o, "ref_loss", cmp.ref_loss);
            tn_json_add_num(o, "ref_ppl", exp(cmp.ref_loss));
            tn_json_add_num(o, "top1_agree", agree);
        }
        tn_json_print_line(stdout, o);
        cJSON_Delete(o);
    } else {
        printf("loss %.6f  ppl %.4f  tokens %lld\n", loss, exp(loss), (long long)counted);
        if (ref)
            printf("reference loss %.6f  ppl %.4f  (ppl %+.3f%%)  top-1 agreement %.4f (%lld of %lld)\n", cmp.ref_loss,
                   exp(cmp.ref_loss), 100.0 * (exp(loss - cmp.ref_loss) - 1.0), agree, (long long)cmp.top1_agree,
                   (long long)counted);
    }
    return TN_EXIT_OK;
}
