/* Subcommands of the `trinity` binary. Each parses its own flags and calls into the library; no
 * numeric or file-format logic lives in cli/. Return value is the process exit code:
 * 0 success, 1 bad input or failed job, 2 usage error. */
#ifndef TN_CLI_COMMANDS_H
#define TN_CLI_COMMANDS_H

#define TN_EXIT_OK 0
#define TN_EXIT_FAIL 1
#define TN_EXIT_USAGE 2

int tn_cmd_import(int argc, char **argv);
int tn_cmd_prepare(int argc, char **argv);
int tn_cmd_tokenize(int argc, char **argv);
int tn_cmd_train(int argc, char **argv);
int tn_cmd_export(int argc, char **argv);
int tn_cmd_run(int argc, char **argv);
int tn_cmd_eval(int argc, char **argv);
int tn_cmd_bench(int argc, char **argv);
int tn_cmd_info(int argc, char **argv);
int tn_cmd_merge(int argc, char **argv);

/* Print "trinity: error: <tn_errmsg()>" and return TN_EXIT_FAIL. */
int tn_cli_fail(void);
/* Print "trinity <cmd>: <msg>" usage error and return TN_EXIT_USAGE. */
int tn_cli_usage_error(const char *cmd, const char *fmt, ...);
/* An argument that matched none of cmd's options: "-x" is an unknown option, the first operand is stored
 * in *slot ("-" alone is an operand), another one is unexpected. Returns 0 when stored, else the usage
 * error's exit code (TN_EXIT_USAGE) with the message printed. */
int tn_cli_operand(const char *cmd, const char *arg, const char **slot);
/* 1 if argv[i] is -h or --help. */
int tn_cli_is_help(const char *arg);

#endif
