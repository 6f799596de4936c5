/*
 * cli.h - what every lora-* tool shares on the command line: argument
 * scanning, --version, usage errors, error lines and exit codes.
 *
 * Exit codes (documented in every man page):
 *   0  success: every file is valid / every check passed
 *   1  a file is invalid, corrupt or unsupported, or a check failed
 *   2  usage error, or the environment failed us (missing or unreadable
 *      file, not a regular file, out of memory, write error)
 */
#ifndef TOOLS_CLI_H
#define TOOLS_CLI_H

#include <stdio.h>
#include "lora.h"

enum { EXIT_OK = 0, EXIT_INVALID = 1, EXIT_USAGE = 2 };

/* ---- argument scanning ---------------------------------------------------------
 * Options may appear anywhere before "--"; short flags may be bundled (-qs).
 * "-" alone is an operand (tools reject it: they do not read stdin). */
typedef enum { CLI_END, CLI_OPERAND, CLI_SHORT, CLI_LONG } cli_kind;

typedef struct {
    int argc;
    char **argv;
    int next;            /* index of the next argv element */
    int only_operands;   /* after "--" */
    const char *bundle;  /* rest of a short-option bundle */
} cli_args;

typedef struct {
    cli_kind kind;
    const char *text;    /* operand, or the long option with its dashes ("--json") */
    char letter;         /* short option letter */
} cli_arg;

void cli_args_init(cli_args *a, int argc, char **argv);
cli_kind cli_next(cli_args *a, cli_arg *out);
/* The value of the option just returned: the rest of a short bundle
 * ("-oOUT"), or the next argument ("-o OUT", "--from peft"); "--from=peft"
 * is split by cli_long_value. NULL when nothing is left. */
const char *cli_value(cli_args *a);
/* For "--name=value": 1 and *value set when `text` is "--name=...". */
int cli_long_value(const char *text, const char *name, const char **value);

/* ---- messages ------------------------------------------------------------------ */

/* "lora-info (liblora) 0.1.0" on stdout. */
void cli_print_version(const char *prog);
/* "prog: MESSAGE" + the synopsis + "Try 'prog --help'..." on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *synopsis, const char *message, const char *arg);
/* "prog: FILE: LORA_E_NAME: detail (offset N)" on stderr. The detail is the
 * library's, escaped for the terminal; the status message when it is empty. */
void cli_print_error(const char *prog, const char *file, const lora_error *err);
/* "prog: FILE: warning: message" on stderr (message escaped). */
void cli_print_warning(const char *prog, const char *file, const char *message);

/* Exit code for a failed status: 2 for environment problems (I/O, not a
 * regular file, memory), 1 for anything that says the file is bad. */
int cli_exit_code(lora_status s);

/* The tools take file names only: "-" gets LORA_E_IO "reading standard input
 * is not supported" (an environment problem, exit 2). cli_stdin_error fills
 * err with it; cli_reject_stdin prints it for operand "-" and returns 1. */
void cli_stdin_error(lora_error *err);
int cli_reject_stdin(const char *prog, const char *operand);

/* Flush stdout and report a write error (EPIPE, ENOSPC, /dev/full) on stderr.
 * Returns `code`, or EXIT_USAGE if the output was lost. */
int cli_finish_stdout(const char *prog, int code);

/* Display form of a file name or any text: escaped for the terminal. The
 * result is valid until the next call with the same buffer. */
#define CLI_DISPLAY_MAX 4096
const char *cli_display(char buf[CLI_DISPLAY_MAX], const char *s);

#endif /* TOOLS_CLI_H */
