/* trinity tokenize: text -> ids or ids -> text with any tokenizer trinity loads. Flags only; the work
 * is data/tokenizer.h. */
#include "cli/commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/timer.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "runner/model_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: trinity tokenize --tokenizer T (--text S | --in FILE) [--decode] [--bos]\n"
           "       trinity tokenize --tokenizer T --info\n\n"
           "Encode text to token ids (printed space-separated; with --in, one line of ids per input line,\n"
           "the line break itself not encoded, CRLF accepted), or with --decode turn ids back into text\n"
           "(--text \"1 2 3\", or --in FILE with one line of ids per output line). --in - reads stdin.\n\n"
           "  --tokenizer T  tokenizer.model (SentencePiece), tokenizer.json or a directory holding one,\n"
           "                 a .gguf file, llama2.c tokenizer.bin, a serialized tokenizer blob, 'bytes', or a\n"
           "                 checkpoint or .trin file (the tokenizer embedded in it)\n"
           "  --bos          put BOS in front of every encoded line\n"
           "  --info         print kind, vocabulary size, BOS/EOS ids, the tokenizer's sha256 and its chat\n"
           "                 template (the recognised family, 'unrecognised' or 'none'; docs/CHAT.md)\n"
           "  --time         report the token count and the seconds spent encoding/decoding on stderr\n");
}

static double work_s;     /* time inside encode/decode, for --time */
static size_t work_tokens;

/* Encode one line and print its ids. */
static int encode_line(const tn_tokenizer *tok, const char *s, size_t n, int bos, tn_tokens *ids) {
    ids->n = 0;
    double t0 = tn_time_s();
    TN_CHECK(tn_tokenizer_encode(tok, s, n, bos, ids));
    work_s += tn_time_s() - t0;
    work_tokens += ids->n;
    for (size_t i = 0; i < ids->n; i++) printf(i ? " %d" : "%d", ids->ids[i]);
    putchar('\n');
    return 0;
}

/* Parse "1 2 3" (spaces or tabs) and print the decoded text followed by a newline. */
static int decode_line(const tn_tokenizer *tok, const char *s, size_t n, size_t line, tn_tokens *ids) {
    ids->n = 0;
    char buf[32];
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
        if (i == n) break;
        size_t k = 0;
        while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && k < sizeof buf - 1) buf[k++] = s[i++];
        buf[k] = '\0';
        char *end;
        errno = 0;
        long v = strtol(buf, &end, 10);
        if (*end || errno || v < 0 || v >= tn_tokenizer_vocab_size(tok) || (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\r'))
            return tn_err("line %zu: '%s' is not a token id of this tokenizer (0..%lld)", line, buf,
                          (long long)tn_tokenizer_vocab_size(tok) - 1);
        TN_CHECK(tn_tokens_push(ids, (int32_t)v));
    }
    char *text;
    size_t len;
    double t0 = tn_time_s();
    TN_CHECK(tn_tokenizer_decode(tok, ids->ids, ids->n, &text, &len));
    work_s += tn_time_s() - t0;
    work_tokens += ids->n;
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    return 0;
}

/* All of stdin (for --in -). */
static int read_stdin(char **data, size_t *size) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return tn_err("out of memory");
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                return tn_err("out of memory");
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n, stdin);
        n += k;
        if (k == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return tn_err("reading stdin failed");
    }
    *data = buf;
    *size = n;
    return 0;
}

int tn_cmd_tokenize(int argc, char **argv) {
    const char *tpath = NULL, *text = NULL, *in = NULL;
    int decode = 0, bos = 0, info = 0, timing = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tn_cli_is_help(a)) {
            help();
            return TN_EXIT_OK;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--bos")) {
            bos = 1;
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else if (!strcmp(a, "--time")) {
            timing = 1;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "--text") || !strcmp(a, "--in")) {
            if (i + 1 >= argc) return tn_cli_usage_error("tokenize", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--tokenizer")) tpath = v;
            else if (!strcmp(a, "--text")) text = v;
            else in = v;
        } else {
            return tn_cli_usage_error("tokenize", "unknown argument '%s'", a);
        }
    }
    if (!tpath) return tn_cli_usage_error("tokenize", "missing --tokenizer");
    if (!info && !text == !in) return tn_cli_usage_error("tokenize", "give exactly one of --text and --in");
    if (decode && bos) return tn_cli_usage_error("tokenize", "--bos applies to encoding, not --decode");

    tn_tokenizer *tok;
    if (tn_model_tokenizer_load(tpath, &tok) != 0) return tn_cli_fail();
    int rc = 0;
    tn_tokens ids = {0};
    if (info) {
        printf("kind %s\nvocab_size %lld\nbos_id %lld\neos_id %lld\nadds_bos %d\nsha256 %s\n", tn_tokenizer_kind_name(tok),
               (long long)tn_tokenizer_vocab_size(tok), (long long)tn_tokenizer_bos_id(tok),
               (long long)tn_tokenizer_eos_id(tok), tn_tokenizer_uses_bos(tok), tn_tokenizer_sha256(tok));
        const char *ct = tn_tokenizer_chat_template(tok);
        tn_chat_family fam;
        printf("chat_template %s\n", !ct ? "none" : tn_chat_recognise(ct, &fam) == 0 ? tn_chat_family_name(fam) : "unrecognised");
    } else if (text) {
        rc = decode ? decode_line(tok, text, strlen(text), 1, &ids) : encode_line(tok, text, strlen(text), bos, &ids);
    } else {
        char *data;
        size_t size;
        rc = strcmp(in, "-") == 0 ? read_stdin(&data, &size) : tn_read_file(in, &data, &size);
        if (rc == 0) {
            size_t line = 1;
            for (size_t i = 0; i < size && rc == 0; line++) {
                const char *nl = memchr(data + i, '\n', size - i);
                size_t len = nl ? (size_t)(nl - (data + i)) : size - i;
                size_t n = len && data[i + len - 1] == '\r' ? len - 1 : len;
                rc = decode ? decode_line(tok, data + i, n, line, &ids) : encode_line(tok, data + i, n, bos, &ids);
                i += len + 1;
            }
            if (rc != 0) tn_err_prefix("%s", in);
            free(data);
        }
    }
    tn_tokens_free(&ids);
    tn_tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == 0) rc = tn_err("writing output failed");
    if (timing && rc == 0)
        fprintf(stderr, "%s %zu tokens in %.4f s\n", decode ? "decoded" : "encoded", work_tokens, work_s);
    return rc ? tn_cli_fail() : TN_EXIT_OK;
}
