/* trinity prepare: Alpaca JSON, conversations or plain text -> HDF5 shard. Flags only; the work is
 * data/prepare.h. */
#include "cli/commands.h"
#include "core/error.h"
#include "data/chat.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "runner/model_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity prepare alpaca --tokenizer T --in DATA.json -o OUT.h5 [--template trinity|alpaca]\n"
           "                              [--max-len N [--drop-long]] [--val-fraction F --val-out VAL.h5] [--seed S]\n"
           "       trinity prepare chat --tokenizer T --in DATA.jsonl -o OUT.h5 [--chat-template NAME]\n"
           "                            [--max-len N [--drop-long]] [--val-fraction F --val-out VAL.h5] [--seed S]\n"
           "       trinity prepare text --tokenizer T --in FILE [FILE...] -o OUT.h5\n"
           "                            [--doc-split blank-line|heading|none]\n\n"
           "alpaca: instruction records ({\"instruction\", \"input\", \"output\"}; a JSON array or JSON lines)\n"
           "  become SFT examples: [BOS] prompt response EOS, loss mask 1 exactly on the response and EOS.\n"
           "  --template trinity  \"Instruction: {instruction}\\nInput: {input}\\nResponse: \" (default)\n"
           "  --template alpaca   the Stanford Alpaca prompt (with or without input)\n"
           "  Prompt and response are tokenized as one text; a token straddling the join belongs to the\n"
           "  response (it carries response bytes). --max-len N keeps the first N tokens of a longer example\n"
           "  (its EOS is lost), or drops it with --drop-long; an example whose prompt alone fills N tokens is\n"
           "  dropped; counts are reported. --val-fraction F puts a seeded random share of the records\n"
           "  (--seed, default 0) into --val-out. Records are numbered from 0 in error messages.\n"
           "chat: conversations ({\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": ...}, ...]};\n"
           "  JSON lines or a JSON array) written with the model's chat template (the tokenizer's: a GGUF, a\n"
           "  tokenizer.json directory with tokenizer_config.json, a checkpoint or a .trin), loss mask 1 on the\n"
           "  assistant turns (their content and the token closing each) only. --chat-template NAME forces\n"
           "  chatml, llama3, llama2, zephyr or mistral. --max-len, --drop-long, --val-* as for alpaca.\n"
           "text: plain UTF-8 text (CRLF accepted) becomes documents [BOS] text [EOS]. --doc-split: at blank\n"
           "  lines (default), at WikiText article headings (\" = Title = \"), or one document per file.\n\n"
           "  --tokenizer T  tokenizer.model, tokenizer.json (or its directory), .gguf, llama2.c .bin, blob, 'bytes',\n"
           "                 or a checkpoint / .trin file (its embedded tokenizer)\n"
           "Bad input (malformed JSON, a record without instruction/output, invalid UTF-8, an empty file)\n"
           "stops with one error line and leaves no output file.\n");
}

static int parse_i64(const char *s, long long lo, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo) return -1;
    *out = v;
    return 0;
}

int tn_cmd_prepare(int argc, char **argv) {
    if (argc < 2) return tn_cli_usage_error("prepare", "missing 'alpaca', 'chat' or 'text'");
    if (tn_cli_is_help(argv[1])) {
        help();
        return TN_EXIT_OK;
    }
    const char *mode = argv[1];
    int chat = !strcmp(mode, "chat");
    int alpaca = !strcmp(mode, "alpaca") || chat; /* chat takes alpaca's SFT options */
    if (!alpaca && strcmp(mode, "text") != 0)
        return tn_cli_usage_error("prepare", "unknown input kind '%s' (alpaca, chat or text)", mode);
    const char *tpath = NULL, *out = NULL, *val_out = NULL, *tpl = "trinity", *chat_name = NULL;
    int have_tpl = 0;
    const char **ins = calloc((size_t)argc, sizeof *ins);
    if (!ins) {
        tn_err("out of memory");
        return tn_cli_fail();
    }
    int n_in = 0, drop = 0, rc = TN_EXIT_OK, have_max = 0;
    long long max_len = 0, seed = 0;
    double val_frac = 0;
    tn_doc_split split = TN_DOCSPLIT_BLANK_LINE;
    for (int i = 2; i < argc && rc == TN_EXIT_OK; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            help();
            free(ins);
            return TN_EXIT_OK;
        }
        if (!strcmp(a, "--drop-long")) {
            drop = 1;
            continue;
        }
        if (!strcmp(a, "--in")) {
            /* --in takes every following argument up to the next option */
            if (i + 1 >= argc || argv[i + 1][0] == '-') rc = tn_cli_usage_error("prepare", "--in needs a file");
            while (i + 1 < argc && argv[i + 1][0] != '-') ins[n_in++] = argv[++i];
            continue;
        }
        int known = !strcmp(a, "--tokenizer") || !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--template") ||
                    !strcmp(a, "--max-len") || !strcmp(a, "--val-fraction") || !strcmp(a, "--val-out") ||
                    !strcmp(a, "--seed") || !strcmp(a, "--doc-split") || !strcmp(a, "--chat-template");
        if (!known) {
            rc = tn_cli_usage_error("prepare", "unknown argument '%s'", a);
            break;
        }
        if (i + 1 >= argc) {
            rc = tn_cli_usage_error("prepare", "%s needs a value", a);
            break;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--tokenizer")) tpath = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--val-out")) val_out = v;
        else if (!strcmp(a, "--template")) {
            if (strcmp(v, "trinity") && strcmp(v, "alpaca")) rc = tn_cli_usage_error("prepare", "--template: '%s' is not trinity or alpaca", v);
            tpl = v;
            have_tpl = 1;
        } else if (!strcmp(a, "--chat-template")) {
            chat_name = v;
        } else if (!strcmp(a, "--max-len")) {
            if (parse_i64(v, 1, &max_len)) rc = tn_cli_usage_error("prepare", "--max-len: '%s' is not a positive integer", v);
            have_max = 1;
        } else if (!strcmp(a, "--seed")) {
            if (parse_i64(v, 0, &seed)) rc = tn_cli_usage_error("prepare", "--seed: '%s' is not a non-negative integer", v);
        } else if (!strcmp(a, "--val-fraction")) {
            char *end;
            val_frac = strtod(v, &end);
            if (!*v || *end || !(val_frac >= 0 && val_frac < 1))
                rc = tn_cli_usage_error("prepare", "--val-fraction: '%s' is not a number in [0, 1)", v);
        } else if (!strcmp(a, "--doc-split")) {
            if (!strcmp(v, "blank-line")) split = TN_DOCSPLIT_BLANK_LINE;
            else if (!strcmp(v, "heading")) split = TN_DOCSPLIT_HEADING;
            else if (!strcmp(v, "none")) split = TN_DOCSPLIT_NONE;
            else rc = tn_cli_usage_error("prepare", "--doc-split: '%s' is not blank-line, heading or none", v);
        }
    }
    if (rc == TN_EXIT_OK) {
        if (!tpath) rc = tn_cli_usage_error("prepare", "missing --tokenizer");
        else if (n_in == 0) rc = tn_cli_usage_error("prepare", "missing --in");
        else if (!out) rc = tn_cli_usage_error("prepare", "missing -o OUT.h5");
        else if (alpaca && n_in > 1) rc = tn_cli_usage_error("prepare", "%s takes one --in file", mode);
        else if (chat && have_tpl)
            rc = tn_cli_usage_error("prepare", "--template is alpaca's prompt template; chat uses the model's chat template (--chat-template NAME)");
        else if (!chat && chat_name) rc = tn_cli_usage_error("prepare", "--chat-template applies to chat only");
        else if (alpaca && val_frac > 0 && !val_out) rc = tn_cli_usage_error("prepare", "--val-fraction needs --val-out");
        else if (alpaca && val_out && val_frac == 0) rc = tn_cli_usage_error("prepare", "--val-out needs --val-fraction");
        else if (alpaca && drop && !have_max) rc = tn_cli_usage_error("prepare", "--drop-long needs --max-len");
        else if (!alpaca && (have_max || val_out || val_frac > 0 || drop || strcmp(tpl, "trinity")))
            rc = tn_cli_usage_error("prepare", "--template/--max-len/--drop-long/--val-* apply to alpaca and chat only");
        else if (alpaca && split != TN_DOCSPLIT_BLANK_LINE)
            rc = tn_cli_usage_error("prepare", "--doc-split applies to text only");
    }
    if (rc != TN_EXIT_OK) {
        free(ins);
        return rc;
    }

    tn_chat_family fam;
    if (chat_name && tn_chat_family_parse(chat_name, &fam) != 0) { /* bad input (exit 1), before any work */
        free(ins);
        return tn_cli_fail();
    }
    tn_tokenizer *tok;
    if (tn_model_tokenizer_load(tpath, &tok) != 0) {
        free(ins);
        return tn_cli_fail();
    }
    tn_prepare_stats st;
    int err;
    if (chat) {
        tn_chat_opts co = {chat_name, NULL};
        tn_chat *ch = NULL;
        err = tn_chat_new(tok, tn_tokenizer_chat_template(tok), &co, &ch);
        if (err) tn_err_prefix("%s", tpath);
        tn_prepare_sft_opts o = {NULL, max_len, drop, val_frac, (uint64_t)seed};
        if (!err) err = tn_prepare_chat(tok, ch, ins[0], out, val_out, &o, &st);
        if (!err) printf("chat template: %s\n", tn_chat_describe(ch));
        tn_chat_free(ch);
    } else if (alpaca) {
        tn_prepare_sft_opts o = {tpl, max_len, drop, val_frac, (uint64_t)seed};
        err = tn_prepare_alpaca(tok, ins[0], out, val_out, &o, &st);
    } else {
        err = tn_prepare_text(tok, ins, n_in, out, split, &st);
    }
    tn_tokenizer_free(tok);
    free(ins);
    if (err) return tn_cli_fail();
    if (alpaca) {
        printf("%s: %lld examples, %lld tokens (%lld masked as targets)", out, (long long)st.n_train,
               (long long)st.tokens_train, (long long)st.masked_train);
        if (val_out) printf("; %s: %lld examples, %lld tokens", val_out, (long long)st.n_val, (long long)st.tokens_val);
        printf("; %lld records read, %lld truncated, %lld dropped\n", (long long)st.n_records, (long long)st.n_truncated,
               (long long)st.n_dropped);
    } else {
        printf("%s: %lld documents, %lld tokens\n", out, (long long)st.n_train, (long long)st.tokens_train);
    }
    return TN_EXIT_OK;
}
