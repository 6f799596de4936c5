/*
 * lora-convert: convert LoRA adapters between .lora, PEFT, MLX, kohya,
 * diffusers (input only) and llama.cpp GGUF, exactly or not at all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_ops.h"
#include "common/cli.h"

#define PROG "lora-convert"
#define SYNOPSIS "lora-convert INPUT -o OUTPUT [--from FMT] [--to FMT] [--dtype f32|f16|bf16] [--arch NAME] " \
                 "[--base-config CONFIG.json] [--drop-unsupported] [-q]"

static void print_help(void)
{
    printf("Usage: %s\n"
           "Convert a LoRA adapter. Every conversion goes through the .lora model, which keeps\n"
           "per-module rank, alpha, scaling rule (rsLoRA) and scale, DoRA magnitudes, LoRA\n"
           "biases, replacement tensors (modules_to_save) and the source config verbatim.\n"
           "What a target format cannot represent is refused with the reason, never dropped\n"
           "silently.\n"
           "\n"
           "Formats (FMT): lora, peft, mlx, kohya, diffusers (input only), gguf.\n"
           "  The input format is detected from the content: a PEFT directory or\n"
           "  adapter_model.safetensors with adapter_config.json beside it, an MLX\n"
           "  adapters.safetensors, kohya keys (lora_unet_*, lora_te*_), diffusers keys,\n"
           "  a GGUF adapter, a .lora file.\n"
           "  The output format comes from --to, or from the name: NAME.lora, NAME.gguf,\n"
           "  or a directory (PEFT).\n"
           "\n"
           "Options:\n"
           "  -o, --output OUTPUT    where to write (written crash-safely; never over an input)\n"
           "  --from FMT             input format (default: detect)\n"
           "  --to FMT               output format (default: from the output name)\n"
           "  --dtype f32|f16|bf16   convert float tensors (default: keep each tensor's dtype, bit exact)\n"
           "  --arch NAME            architecture for GGUF (llama, mistral, qwen2, gemma, gemma2, gemma3,\n"
           "                         phi3, gpt2, gptneox) when the adapter does not say\n"
           "  --base-config FILE     the base model's config.json (head counts for the Q/K row\n"
           "                         permutation llama.cpp applies; the architecture)\n"
           "  --drop-unsupported     drop what the output cannot represent, with a warning per tensor\n"
           "  -q, --quiet            no summary line\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and exit\n"
           "\n"
           "Exit status:\n"
           "  0  converted\n"
           "  1  the input is invalid, or uses something the output cannot represent\n"
           "  2  usage error, or an I/O error (missing input, output not writable, disk full)\n",
           SYNOPSIS);
}

typedef struct {
    const char *input, *output;
    int quiet;
    lora_convert_options co;
} convert_args;

static void warn_cb(void *opaque, const char *message)
{
    cli_print_warning(PROG, (const char *)opaque, message);
}

static int parse_format(const char *v, lora_format *out)
{
    if (!v || lora_format_from_name(v, out) != LORA_OK || *out == LORA_FORMAT_AUTO) {
        cli_usage_error(PROG, SYNOPSIS, "unknown format (use lora, peft, mlx, kohya, diffusers or gguf):", v ? v : "");
        return 0;
    }
    return 1;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, convert_args *c)
{
    cli_args a;
    cli_arg arg;
    cli_args_init(&a, argc, argv);
    while (cli_next(&a, &arg) != CLI_END) {
        const char *v = NULL;
        const char *t = arg.text;
        if (arg.kind == CLI_OPERAND) {
            if (c->input) return cli_usage_error(PROG, SYNOPSIS, "more than one INPUT:", t);
            c->input = t;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'h') || (arg.kind == CLI_LONG && !strcmp(t, "--help"))) {
            print_help();
            return EXIT_OK;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'V') || (arg.kind == CLI_LONG && !strcmp(t, "--version"))) {
            cli_print_version(PROG);
            return EXIT_OK;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'q') || (arg.kind == CLI_LONG && !strcmp(t, "--quiet"))) {
            c->quiet = 1;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'o') || (arg.kind == CLI_LONG && !strcmp(t, "--output")) ||
                   (arg.kind == CLI_LONG && cli_long_value(t, "--output", &v))) {
            if (!v) v = cli_value(&a);
            if (!v) return cli_usage_error(PROG, SYNOPSIS, "option needs a value:", "-o");
            c->output = v;
        } else if (arg.kind == CLI_LONG && (!strcmp(t, "--from") || cli_long_value(t, "--from", &v))) {
            if (!v) v = cli_value(&a);
            if (!parse_format(v, &c->co.from)) return EXIT_USAGE;
        } else if (arg.kind == CLI_LONG && (!strcmp(t, "--to") || cli_long_value(t, "--to", &v))) {
            if (!v) v = cli_value(&a);
            if (!parse_format(v, &c->co.to)) return EXIT_USAGE;
        } else if (arg.kind == CLI_LONG && (!strcmp(t, "--dtype") || cli_long_value(t, "--dtype", &v))) {
            if (!v) v = cli_value(&a);
            lora_dtype d;
            if (!v || lora_dtype_from_name(v, &d) != LORA_OK || d > LORA_DTYPE_BF16)
                return cli_usage_error(PROG, SYNOPSIS, "--dtype must be f32, f16 or bf16, not", v ? v : "nothing");
            c->co.dtype = (int32_t)d;
        } else if (arg.kind == CLI_LONG && (!strcmp(t, "--arch") || cli_long_value(t, "--arch", &v))) {
            if (!v) v = cli_value(&a);
            if (!v) return cli_usage_error(PROG, SYNOPSIS, "option needs a value:", "--arch");
            c->co.arch = v;
        } else if (arg.kind == CLI_LONG && (!strcmp(t, "--base-config") || cli_long_value(t, "--base-config", &v))) {
            if (!v) v = cli_value(&a);
            if (!v) return cli_usage_error(PROG, SYNOPSIS, "option needs a value:", "--base-config");
            c->co.base_config = v;
        } else if (arg.kind == CLI_LONG && !strcmp(t, "--drop-unsupported")) {
            c->co.flags |= LORA_CONVERT_DROP_UNSUPPORTED;
        } else {
            char letter[3] = {'-', arg.letter, '\0'};
            return cli_usage_error(PROG, SYNOPSIS, "unknown option:", arg.kind == CLI_SHORT ? letter : t);
        }
    }
    if (!c->input) return cli_usage_error(PROG, SYNOPSIS, "missing INPUT", NULL);
    if (!c->output) return cli_usage_error(PROG, SYNOPSIS, "missing -o OUTPUT", NULL);
    if (!strcmp(c->input, "-")) return cli_reject_stdin(PROG, c->input) ? EXIT_USAGE : EXIT_USAGE;
    return -1;
}

int main(int argc, char **argv)
{
    convert_args c;
    memset(&c, 0, sizeof c);
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    c.co = defaults;
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) return cli_finish_stdout(PROG, rc);
    c.co.warn = warn_cb;
    c.co.warn_opaque = (void *)(uintptr_t)c.input;
    lora_format from = c.co.from;
    lora_error err;
    if (from == LORA_FORMAT_AUTO && lora_detect_format(c.input, &from, &err) != LORA_OK) {
        cli_print_error(PROG, c.input, &err);
        return cli_exit_code(err.status);
    }
    c.co.from = from;
    lora_status st = lora_convert(c.input, c.output, &c.co, &err);
    if (st != LORA_OK) {
        cli_print_error(PROG, c.input, &err);
        return cli_exit_code(st);
    }
    if (!c.quiet) {
        char d1[CLI_DISPLAY_MAX], d2[CLI_DISPLAY_MAX];
        printf("%s (%s) -> %s\n", cli_display(d1, c.input), lora_format_name(from), cli_display(d2, c.output));
    }
    return cli_finish_stdout(PROG, EXIT_OK);
}
