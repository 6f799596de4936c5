/*
 * lora-quantize: convert the A and/or B factors of a .lora file to another
 * dtype (lora_quantize) and report, per module, what that did to delta W.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_ops.h"
#include "common/cli.h"
#include "common/doc.h"
#include "common/optval.h"
#include "common/table.h"
#include "common/text.h"

#define PROG "lora-quantize"
#define SYNOPSIS "lora-quantize IN -o OUT --type f32|f16|bf16|q8_0|q4_0|nf4 [--block N] [--only A|B] [--json] [-q]"

typedef struct {
    const char *input, *output;
    int json, quiet;
    lora_quantize_options qo;
} quant_args;

static void print_help(void)
{
    printf("Usage: %s\n"
           "Convert the LoRA factors (A and B) of a .lora file to another dtype and report,\n"
           "per module, the error that makes in delta W = scale * B @ A.\n"
           "\n"
           "Options:\n"
           "  -o, --output OUT   the .lora file to write (never the input)\n"
           "  --type T           f32, f16, bf16 (round to nearest even), q8_0, q4_0 (ggml\n"
           "                     blocks of 32) or nf4 (bitsandbytes code book)\n"
           "  --block N          NF4 block: a power of two from 32 to 4096 (default 64)\n"
           "  --only A|B         convert only that factor (default: both)\n"
           "  --json             print the report as JSON on stdout\n"
           "  -q, --quiet        print no report (errors still go to stderr)\n"
           "  -h, --help         show this help and exit\n"
           "  -V, --version      show the version and exit\n"
           "\n"
           "DoRA magnitudes, LoRA biases and replacement tensors are copied bit for bit,\n"
           "and so is a factor whose element count is not a whole number of the target's\n"
           "blocks (it keeps its dtype; the report marks it). The report gives, per module,\n"
           "||dW' - dW||_F / ||dW||_F and max |dW' - dW| in double from the decoded values\n"
           "of both files, and the sizes before and after.\n"
           "\n"
           "Exit status: 0 written; 1 the input is invalid, corrupt or unsupported (or has\n"
           "NaN/Inf in a factor to convert); 2 usage error or environment failure.\n",
           SYNOPSIS);
}

static int parse_type(const char *v, quant_args *q)
{
    lora_dtype d;
    if (!v || lora_dtype_from_name(v, &d) != LORA_OK)
        return cli_usage_error(PROG, SYNOPSIS, "--type must be f32, f16, bf16, q8_0, q4_0 or nf4, not",
                               v ? v : "nothing");
    q->qo.dtype = d;
    return -1;
}

static int parse_block(const char *v, quant_args *q)
{
    uint64_t n;
    if (!optval_u64(v, &n) || n < LORA_NF4_BLOCK_MIN || n > LORA_NF4_BLOCK_MAX || (n & (n - 1)) != 0)
        return cli_usage_error(PROG, SYNOPSIS, "--block must be a power of two from 32 to 4096, not",
                               v ? v : "nothing");
    q->qo.block = (uint32_t)n;
    return -1;
}

static int parse_only(const char *v, quant_args *q)
{
    if (v && (!strcmp(v, "A") || !strcmp(v, "a"))) q->qo.factors = LORA_QUANTIZE_A;
    else if (v && (!strcmp(v, "B") || !strcmp(v, "b"))) q->qo.factors = LORA_QUANTIZE_B;
    else return cli_usage_error(PROG, SYNOPSIS, "--only must be A or B, not", v ? v : "nothing");
    return -1;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, quant_args *q)
{
    cli_args a;
    cli_arg arg;
    int have_type = 0, code = -1;
    cli_args_init(&a, argc, argv);
    while (code < 0 && cli_next(&a, &arg) != CLI_END) {
        const char *v = NULL, *t = arg.text;
        if (arg.kind == CLI_OPERAND) {
            if (q->input) return cli_usage_error(PROG, SYNOPSIS, "more than one input:", t);
            q->input = t;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'h') || (arg.kind == CLI_LONG && !strcmp(t, "--help"))) {
            print_help();
            return cli_finish_stdout(PROG, EXIT_OK);
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'V') || (arg.kind == CLI_LONG && !strcmp(t, "--version"))) {
            cli_print_version(PROG);
            return cli_finish_stdout(PROG, EXIT_OK);
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'q') || (arg.kind == CLI_LONG && !strcmp(t, "--quiet"))) {
            q->quiet = 1;
        } else if (arg.kind == CLI_LONG && !strcmp(t, "--json")) {
            q->json = 1;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'o') || optval_long(&a, &arg, "--output", &v)) {
            if (arg.kind == CLI_SHORT) v = cli_value(&a);
            if (!v) return cli_usage_error(PROG, SYNOPSIS, "option needs a value:", "-o");
            q->output = v;
        } else if (optval_long(&a, &arg, "--type", &v)) {
            code = parse_type(v, q);
            have_type = 1;
        } else if (optval_long(&a, &arg, "--block", &v)) {
            code = parse_block(v, q);
        } else if (optval_long(&a, &arg, "--only", &v)) {
            code = parse_only(v, q);
        } else {
            char letter[3] = {'-', arg.letter, '\0'};
            return cli_usage_error(PROG, SYNOPSIS, "unknown option:", arg.kind == CLI_SHORT ? letter : t);
        }
    }
    if (code >= 0) return code;
    if (!q->input) return cli_usage_error(PROG, SYNOPSIS, "missing IN", NULL);
    if (!q->output) return cli_usage_error(PROG, SYNOPSIS, "missing -o OUT", NULL);
    if (!have_type) return cli_usage_error(PROG, SYNOPSIS, "missing --type", NULL);
    if (q->qo.block && q->qo.dtype != LORA_DTYPE_NF4)
        return cli_usage_error(PROG, SYNOPSIS, "--block applies to --type nf4 only (Q8_0/Q4_0 blocks are 32), not",
                               lora_dtype_name(q->qo.dtype));
    if (!strcmp(q->output, "-")) return cli_usage_error(PROG, SYNOPSIS, "OUT must be a file name, not", "-");
    if (cli_reject_stdin(PROG, q->input)) return EXIT_USAGE;
    return -1;
}

/* ---- reports ------------------------------------------------------------------ */

static const char *action_name(lora_factor_action a)
{
    switch (a) {
    case LORA_FACTOR_CONVERTED: return "converted";
    case LORA_FACTOR_UNCHANGED: return "unchanged";
    case LORA_FACTOR_NOT_SELECTED: return "not selected";
    case LORA_FACTOR_NOT_BLOCKS: return "not whole blocks";
    }
    return "?";
}

/* "F16->Q8_0", "NF4/128", "F16 (kept*)" */
static void factor_cell(char *buf, size_t cap, lora_dtype in, lora_dtype out, uint32_t block, lora_factor_action a)
{
    char o[32];
    if (out == LORA_DTYPE_NF4 && block != LORA_NF4_BLOCK_DEFAULT) snprintf(o, sizeof o, "NF4/%u", block);
    else snprintf(o, sizeof o, "%s", lora_dtype_name(out));
    if (a == LORA_FACTOR_CONVERTED) snprintf(buf, cap, "%s->%s", lora_dtype_name(in), o);
    else snprintf(buf, cap, "%s%s", o, a == LORA_FACTOR_NOT_BLOCKS ? " (kept*)" : "");
}

static void percent(char *buf, size_t cap, double v)
{
    if (isnan(v)) snprintf(buf, cap, "nan");
    else if (isinf(v)) snprintf(buf, cap, "inf");
    else snprintf(buf, cap, "%.4f%%", 100.0 * v);
}

enum { C_NAME, C_A, C_B, C_REL, C_MAX, C_COUNT };

static void module_cells(const lora_quantize_module *m, strbuf *name, char c[C_COUNT][48], const char *cells[C_COUNT])
{
    sb_clear(name);
    text_escape(name, m->name, strlen(m->name), 0, 0);
    factor_cell(c[C_A], 48, m->a_dtype_in, m->a_dtype_out, m->a_block_out, m->a_action);
    factor_cell(c[C_B], 48, m->b_dtype_in, m->b_dtype_out, m->b_block_out, m->b_action);
    percent(c[C_REL], 48, m->rel_error);
    snprintf(c[C_MAX], 48, "%.3e", m->max_abs_error);
    cells[C_NAME] = sb_str(name);
    for (int i = 1; i < C_COUNT; i++) cells[i] = c[i];
}

static void report_text(const quant_args *q, const lora_quantize_report *r)
{
    char in[CLI_DISPLAY_MAX], out[CLI_DISPLAY_MAX], g1[TEXT_U64_SIZE], g2[TEXT_U64_SIZE];
    const char *which = q->qo.factors == LORA_QUANTIZE_A ? "A" : q->qo.factors == LORA_QUANTIZE_B ? "B" : "A and B";
    printf("%s -> %s: %s", cli_display(in, q->input), cli_display(out, q->output), lora_dtype_name(q->qo.dtype));
    if (q->qo.dtype == LORA_DTYPE_NF4) printf(" (block %u)", q->qo.block ? q->qo.block : LORA_NF4_BLOCK_DEFAULT);
    printf(", factors %s, %u %s\n", which, r->module_count, r->module_count == 1 ? "module" : "modules");
    table_col cols[C_COUNT] = {{"MODULE", 0, 0, 0, 0, 0}, {"A", 0, 0, 0, 0, 0}, {"B", 0, 0, 0, 0, 0},
                               {"REL. ERROR", 1, 0, 0, 0, 0}, {"MAX ABS ERROR", 1, 0, 0, 0, 0}};
    strbuf name = {0};
    char c[C_COUNT][48];
    const char *cells[C_COUNT];
    table_start(cols, C_COUNT);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && r->module_count) table_print_header(stdout, "  ", cols, C_COUNT);
        for (uint32_t i = 0; i < r->module_count; i++) {
            module_cells(&r->modules[i], &name, c, cells);
            if (pass == 0) table_measure(cols, C_COUNT, cells);
            else table_print_row(stdout, "  ", cols, C_COUNT, cells);
        }
    }
    sb_free(&name);
    double ratio = r->file_size_out ? (double)r->file_size_in / (double)r->file_size_out : 0;
    printf("file size: %s -> %s bytes (%.2fx)\n", text_u64_grouped(g1, r->file_size_in),
           text_u64_grouped(g2, r->file_size_out), ratio);
    printf("factor bytes: %s -> %s\n", text_u64_grouped(g1, r->factor_bytes_in),
           text_u64_grouped(g2, r->factor_bytes_out));
    percent(c[0], 48, r->max_rel_error);
    printf("largest relative error: %s\n", c[0]);
    if (r->not_blocks_count)
        printf("* %u %s kept in its dtype: the element count is not a whole number of %s blocks\n",
               r->not_blocks_count, r->not_blocks_count == 1 ? "factor" : "factors", lora_dtype_name(q->qo.dtype));
}

static void json_factor(doc *d, const char *key, lora_dtype in, lora_dtype out, uint32_t block, lora_factor_action a)
{
    doc_key(d, key);
    doc_map_begin(d, 1);
    doc_kv_cstr(d, "dtype_in", lora_dtype_name(in));
    doc_kv_cstr(d, "dtype_out", lora_dtype_name(out));
    doc_kv_u64(d, "block", block);
    doc_kv_cstr(d, "action", action_name(a));
    doc_map_end(d);
}

static int report_json(const quant_args *q, const lora_quantize_report *r)
{
    doc *d = doc_open(stdout, DOC_JSON);
    if (!d) return -1;
    doc_map_begin(d, 0);
    doc_kv_cstr(d, "input", q->input);
    doc_kv_cstr(d, "output", q->output);
    doc_kv_cstr(d, "dtype", lora_dtype_name(q->qo.dtype));
    doc_kv_u64(d, "block", q->qo.dtype == LORA_DTYPE_NF4 ? (q->qo.block ? q->qo.block : LORA_NF4_BLOCK_DEFAULT)
                                                          : q->qo.dtype <= LORA_DTYPE_BF16 ? 1 : 32);
    doc_key(d, "factors");
    doc_seq_begin(d, 1);
    if (q->qo.factors != LORA_QUANTIZE_B) doc_cstr(d, "A");
    if (q->qo.factors != LORA_QUANTIZE_A) doc_cstr(d, "B");
    doc_seq_end(d);
    doc_kv_u64(d, "file_size_in", r->file_size_in);
    doc_kv_u64(d, "file_size_out", r->file_size_out);
    doc_kv_u64(d, "factor_bytes_in", r->factor_bytes_in);
    doc_kv_u64(d, "factor_bytes_out", r->factor_bytes_out);
    doc_key(d, "max_rel_error");
    doc_real(d, r->max_rel_error, 0);
    doc_kv_u64(d, "not_whole_blocks", r->not_blocks_count);
    doc_key(d, "modules");
    doc_seq_begin(d, 0);
    for (uint32_t i = 0; i < r->module_count; i++) {
        const lora_quantize_module *m = &r->modules[i];
        doc_map_begin(d, 0);
        doc_kv_cstr(d, "name", m->name);
        json_factor(d, "a", m->a_dtype_in, m->a_dtype_out, m->a_block_out, m->a_action);
        json_factor(d, "b", m->b_dtype_in, m->b_dtype_out, m->b_block_out, m->b_action);
        doc_kv_u64(d, "bytes_in", m->bytes_in);
        doc_kv_u64(d, "bytes_out", m->bytes_out);
        doc_key(d, "delta_norm");
        doc_real(d, m->delta_norm, 0);
        doc_key(d, "rel_error");
        doc_real(d, m->rel_error, 0);
        doc_key(d, "max_abs_error");
        doc_real(d, m->max_abs_error, 0);
        doc_map_end(d);
    }
    doc_seq_end(d);
    doc_map_end(d);
    return doc_finish(d);
}

int main(int argc, char **argv)
{
    quant_args q;
    memset(&q, 0, sizeof q);
    q.qo = (lora_quantize_options)LORA_QUANTIZE_OPTIONS_INIT;
    int code = parse_args(argc, argv, &q);
    if (code >= 0) return code;

    lora_quantize_report rep;
    lora_error err;
    lora_status st = lora_quantize(q.input, q.output, &q.qo, &rep, &err);
    if (st != LORA_OK) {
        cli_print_error(PROG, q.input, &err);
        return cli_exit_code(st);
    }
    code = EXIT_OK;
    if (q.json) {
        if (report_json(&q, &rep) != 0 && !ferror(stdout)) {
            fprintf(stderr, "%s: cannot produce the JSON output\n", PROG);
            code = EXIT_USAGE;
        }
    } else if (!q.quiet) {
        report_text(&q, &rep);
    }
    lora_quantize_report_free(&rep);
    return cli_finish_stdout(PROG, code);
}
