/* trinity run MODEL -p PROMPT: flags only; the work is runner/generate.c and runner/infer.c. */
#include "cli/commands.h"
#include "core/error.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "runner/generate.h"
#include "runner/infer.h"
#include "runner/model_tokenizer.h"
#include "runner/rescore.h"
#include "runner/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: trinity run MODEL [-p PROMPT] [-i] [--chat [--chat-template NAME] [--system TEXT]] [options]\n"
            "\n"
            "Generate text from a .trin file or an HDF5 checkpoint, streaming tokens to stdout. The prompt is\n"
            "processed as one batch; prompt and generation speed go to stderr at the end.\n"
            "\n"
            "options:\n"
            "  -p, --prompt TEXT       the prompt (with -i: the first turn)\n"
            "  -i, --interactive       then read prompts from stdin, one per line, in one conversation; EOF ends\n"
            "  --chat                  talk to an instruct model through its own chat template (the one its GGUF\n"
            "                          or tokenizer_config.json carried into the checkpoint or .trin): each prompt\n"
            "                          is a user turn, generation stops at the end of the reply; with -i the\n"
            "                          conversation goes on, each turn feeding only its new tokens (docs/CHAT.md)\n"
            "  --chat-template NAME    use this template instead of the model's: chatml, llama3, llama2,\n"
            "                          zephyr (tinyllama) or mistral (implies --chat)\n"
            "  --system TEXT           with --chat: a system message opening the conversation\n"
            "  -n, --tokens N          tokens to generate per prompt (default 256)\n"
            "  --temp T                temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K               keep the K most likely tokens; 0 = off (default 40)\n"
            "  --top-p P               nucleus sampling threshold in (0, 1]; 1 = off (default 0.95)\n"
            "  --repeat-penalty R      penalty on the last 64 tokens; 1 = off (default 1.1)\n"
            "  --seed S                sampling seed (default 0)\n"
            "  --template NAME         wrap prompts in the SFT template of `trinity prepare`: trinity\n"
            "                          (\"Instruction: ...\\nInput: \\nResponse: \") or alpaca; not with --chat\n"
            "  --ctx N                 context length (default min(max_seq_len, 4096))\n"
            "  --threads N             threads (default: all cores)\n"
            "  --device D              cpu (default), cuda or cuda:N: run the whole forward pass there, packed\n"
            "                          weights uploaded once (docs/CUDA.md)\n"
            "  --no-graph              CUDA: run each decode step kernel by kernel, not as a CUDA graph\n"
            "  --exact                 fp32 products on dequantized weights (slow; matches the training model)\n"
            "  --load L                a .trin: copy (default on the CPU: read into huge pages, the fastest decode)\n"
            "                          or map (memory-mapped, no copy; the default on a GPU); docs/TRIN.md\n"
            "  --rescore K             a model exported with --exact-head: re-score the quantized head's best K\n"
            "                          logits from the exact rows (default 32; 0 = the quantized head alone)\n"
            "  --tokenizer T           use this tokenizer instead of the model's (file, dir, model file or 'bytes')\n"
            "  --no-stop               do not stop at the end-of-sequence token\n"
            "  -h, --help              this help\n");
}

static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int tn_cmd_run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *tok_path = NULL, *chat_name = NULL, *system = NULL;
    int interactive = 0, chat = 0;
    long long ctx = 0, threads = 0;
    tn_generate_opts go;
    tn_generate_opts_default(&go);
    tn_infer_opts io;
    tn_infer_opts_default(&io);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long long iv;
        double fv;
        if (tn_cli_is_help(a)) {
            usage(stdout);
            return TN_EXIT_OK;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--interactive")) {
            interactive = 1;
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else if (!strcmp(a, "--exact")) {
            io.mode = TN_INFER_EXACT;
        } else if (!strcmp(a, "--no-graph")) {
            io.graph = 0;
        } else if (!strcmp(a, "--no-stop")) {
            go.stop_at_eos = 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "-n") || !strcmp(a, "--tokens") ||
                   !strcmp(a, "--temp") || !strcmp(a, "--top-k") || !strcmp(a, "--top-p") ||
                   !strcmp(a, "--repeat-penalty") || !strcmp(a, "--seed") || !strcmp(a, "--template") ||
                   !strcmp(a, "--ctx") || !strcmp(a, "--threads") || !strcmp(a, "--tokenizer") ||
                   !strcmp(a, "--device") || !strcmp(a, "--chat-template") || !strcmp(a, "--system") ||
                   !strcmp(a, "--rescore") || !strcmp(a, "--load")) {
            if (i + 1 >= argc) return tn_cli_usage_error("run", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
            else if (!strcmp(a, "--template")) go.template_name = v;
            else if (!strcmp(a, "--tokenizer")) tok_path = v;
            else if (!strcmp(a, "--device")) io.device = v;
            else if (!strcmp(a, "--chat-template")) chat_name = v, chat = 1;
            else if (!strcmp(a, "--system")) system = v;
            else if (!strcmp(a, "--load")) {
                if (tn_infer_load_parse(v, &io.load) != 0) return tn_cli_usage_error("run", "--load: %s", tn_errmsg());
            } else if (!strcmp(a, "-n") || !strcmp(a, "--tokens")) {
                if (parse_int(v, 0, 1 << 24, &iv)) return tn_cli_usage_error("run", "%s: '%s' is not a count", a, v);
                go.max_new = (int)iv;
            } else if (!strcmp(a, "--top-k")) {
                if (parse_int(v, 0, 1 << 24, &iv)) return tn_cli_usage_error("run", "--top-k: '%s' is not a count", v);
                go.sampling.top_k = (int)iv;
            } else if (!strcmp(a, "--seed")) {
                if (parse_int(v, 0, (long long)1 << 62, &iv)) return tn_cli_usage_error("run", "--seed: '%s' is not a seed", v);
                go.sampling.seed = (uint64_t)iv;
            } else if (!strcmp(a, "--ctx")) {
                if (parse_int(v, 1, 1 << 24, &ctx)) return tn_cli_usage_error("run", "--ctx: '%s' is not a length", v);
            } else if (!strcmp(a, "--threads")) {
                if (parse_int(v, 1, 4096, &threads)) return tn_cli_usage_error("run", "--threads: '%s' is not a count", v);
            } else if (!strcmp(a, "--rescore")) {
                if (parse_int(v, 0, TN_RESCORE_MAX, &iv))
                    return tn_cli_usage_error("run", "--rescore: '%s' is not a count 0..%d", v, TN_RESCORE_MAX);
                io.rescore = (int)iv;
            } else {
                if (parse_float(v, &fv)) return tn_cli_usage_error("run", "%s: '%s' is not a number", a, v);
                if (!strcmp(a, "--temp")) go.sampling.temperature = (float)fv;
                else if (!strcmp(a, "--top-p")) go.sampling.top_p = (float)fv;
                else go.sampling.repeat_penalty = (float)fv;
            }
        } else {
            const int rc = tn_cli_operand("run", a, &model);
            if (rc != 0) return rc;
        }
    }
    if (!model) return tn_cli_usage_error("run", "missing MODEL");
    if (!prompt && !interactive) return tn_cli_usage_error("run", "give a prompt (-p) or -i");
    if (tn_sampler_opts_check(&go.sampling) != 0) return tn_cli_usage_error("run", "%s", tn_errmsg());
    if (tn_generate_template_check(go.template_name) != 0) return tn_cli_usage_error("run", "%s", tn_errmsg());
    if (chat && go.template_name)
        return tn_cli_usage_error("run", "--template (an SFT prompt template) and --chat (the model's chat template) exclude each other");
    if (system && !chat) return tn_cli_usage_error("run", "--system needs --chat");
    tn_chat_family fam;
    if (chat_name && tn_chat_family_parse(chat_name, &fam) != 0) return tn_cli_fail(); /* bad input: exit 1 */

    io.threads = (int)threads;
    io.ctx = (int)ctx;
    tn_infer *m = NULL;
    tn_tokenizer *own_tok = NULL;
    tn_sampler *s = NULL;
    if (ctx == 0) io.ctx = 4096; /* default: the model's context, capped so the KV cache stays modest */
    if (tn_infer_open(model, &io, &m) != 0) return tn_cli_fail();
    const tn_tokenizer *tok = tn_infer_tokenizer(m);
    int rc = 0;
    if (tok_path) {
        rc = tn_model_tokenizer_load(tok_path, &own_tok);
        tok = own_tok;
        if (rc == 0 && tn_tokenizer_vocab_size(own_tok) > tn_infer_config(m)->vocab_size)
            rc = tn_err("tokenizer %s has %lld tokens, the model %d", tok_path, (long long)tn_tokenizer_vocab_size(own_tok),
                        tn_infer_config(m)->vocab_size);
    } else if (!tok) {
        rc = tn_err("%s: %s (give one with --tokenizer)", model, tn_infer_tokenizer_error(m));
    }
    tn_chat *ch = NULL;
    if (rc == 0 && chat) {
        tn_chat_opts co = {chat_name, NULL};
        rc = tn_chat_new(tok, tn_tokenizer_chat_template(tok), &co, &ch);
        if (rc != 0) tn_err_prefix("%s", model);
        go.chat = ch;
        go.system = system;
    }
    if (rc == 0) rc = tn_sampler_new(&go.sampling, tn_infer_config(m)->vocab_size, &s);
    tn_generate_stats st;
    memset(&st, 0, sizeof st);
    if (rc == 0 && chat) {
        rc = tn_generate_chat(m, tok, s, prompt, interactive ? stdin : NULL, &go, stdout, &st);
    } else if (rc == 0 && prompt) {
        rc = tn_generate(m, tok, s, prompt, &go, stdout, &st);
        if (rc == 0) {
            fputc('\n', stdout);
            fflush(stdout);
        }
    }
    if (rc == 0 && interactive && !chat) rc = tn_generate_interactive(m, tok, s, stdin, &go, stdout, &st);
    if (rc == 0) {
        if (ch) fprintf(stderr, "chat template: %s\n", tn_chat_describe(ch));
        if (st.ctx_full) fprintf(stderr, "[stopped: the context of %d tokens is full]\n", tn_infer_ctx(m));
        fprintf(stderr, "prompt: %lld tokens, %.1f tok/s | generation: %lld tokens, %.1f tok/s | %s\n",
                (long long)st.prompt_tokens, st.prompt_seconds > 0 ? (double)st.prompt_tokens / st.prompt_seconds : 0.0,
                (long long)st.gen_tokens, st.gen_seconds > 0 ? (double)st.gen_tokens / st.gen_seconds : 0.0,
                tn_infer_describe(m));
    }
    tn_sampler_free(s);
    tn_chat_free(ch);
    tn_tokenizer_free(own_tok);
    tn_infer_free(m);
    return rc == 0 ? TN_EXIT_OK : tn_cli_fail();
}
