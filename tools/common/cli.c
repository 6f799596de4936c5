#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "text.h"

void cli_args_init(cli_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->next = 1;
}

cli_kind cli_next(cli_args *a, cli_arg *out)
{
    memset(out, 0, sizeof *out);
    if (a->bundle && *a->bundle) {
        out->kind = CLI_SHORT;
        out->letter = *a->bundle++;
        return out->kind;
    }
    a->bundle = NULL;
    while (a->next < a->argc) {
        const char *arg = a->argv[a->next++];
        if (a->only_operands || arg[0] != '-' || arg[1] == '\0') {
            out->kind = CLI_OPERAND;
            out->text = arg;
            return out->kind;
        }
        if (arg[1] == '-') {
            if (arg[2] == '\0') {
                a->only_operands = 1;
                continue;
            }
            out->kind = CLI_LONG;
            out->text = arg;
            return out->kind;
        }
        out->kind = CLI_SHORT;
        out->letter = arg[1];
        a->bundle = arg + 2;
        return out->kind;
    }
    out->kind = CLI_END;
    return out->kind;
}

const char *cli_value(cli_args *a)
{
    if (a->bundle && *a->bundle) {
        const char *v = a->bundle;
        a->bundle = NULL;
        return v;
    }
    a->bundle = NULL;
    return a->next < a->argc ? a->argv[a->next++] : NULL;
}

int cli_long_value(const char *text, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(text, name, n) != 0 || text[n] != '=') return 0;
    *value = text + n + 1;
    return 1;
}

const char *cli_display(char buf[CLI_DISPLAY_MAX], const char *s)
{
    strbuf sb = {0};
    int cut = text_escape(&sb, s, strlen(s), 0, CLI_DISPLAY_MAX - 8);
    snprintf(buf, CLI_DISPLAY_MAX, "%s%s", sb.failed ? "?" : sb_str(&sb), cut ? "..." : "");
    sb_free(&sb);
    return buf;
}

void cli_print_version(const char *prog)
{
    printf("%s (liblora) %s\n", prog, lora_version_string());
}

int cli_usage_error(const char *prog, const char *synopsis, const char *message, const char *arg)
{
    char shown[CLI_DISPLAY_MAX];
    if (arg) fprintf(stderr, "%s: %s '%s'\n", prog, message, cli_display(shown, arg));
    else fprintf(stderr, "%s: %s\n", prog, message);
    fprintf(stderr, "Usage: %s\nTry '%s --help' for more information.\n", synopsis, prog);
    return EXIT_USAGE;
}

void cli_print_error(const char *prog, const char *file, const lora_error *err)
{
    char shown[CLI_DISPLAY_MAX], detail[CLI_DISPLAY_MAX];
    const char *text = err->detail[0] ? err->detail : lora_status_message(err->status);
    fprintf(stderr, "%s: %s: %s: %s", prog, cli_display(shown, file), lora_status_name(err->status),
            cli_display(detail, text));
    if (err->offset != LORA_NO_OFFSET) fprintf(stderr, " (offset %" PRIu64 ")", err->offset);
    fputc('\n', stderr);
}

void cli_print_warning(const char *prog, const char *file, const char *message)
{
    char shown[CLI_DISPLAY_MAX], msg[CLI_DISPLAY_MAX];
    fprintf(stderr, "%s: %s: warning: %s\n", prog, cli_display(shown, file), cli_display(msg, message));
}

int cli_exit_code(lora_status s)
{
    /* int: -Wswitch-enum would demand every status here. */
    switch ((int)s) {
    case LORA_OK: return EXIT_OK;
    case LORA_E_IO:
    case LORA_E_NO_SPACE:
    case LORA_E_SAME_FILE:
    case LORA_E_NOT_REGULAR_FILE:
    case LORA_E_OUT_OF_MEMORY:
    case LORA_E_INVALID_ARGUMENT:
        return EXIT_USAGE;
    default:
        return EXIT_INVALID;
    }
}

void cli_stdin_error(lora_error *err)
{
    err->status = LORA_E_IO;
    err->offset = LORA_NO_OFFSET;
    snprintf(err->detail, sizeof err->detail, "%s",
             "reading standard input is not supported (use ./- for a file named '-')");
}

int cli_reject_stdin(const char *prog, const char *operand)
{
    lora_error err;
    if (strcmp(operand, "-") != 0) return 0;
    cli_stdin_error(&err);
    cli_print_error(prog, operand, &err);
    return 1;
}

int cli_finish_stdout(const char *prog, int code)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return code;
    /* errno is only meaningful when this flush was the failing write. */
    if (errno) fprintf(stderr, "%s: error writing standard output: %s\n", prog, strerror(errno));
    else fprintf(stderr, "%s: error writing standard output\n", prog);
    return EXIT_USAGE;
}
