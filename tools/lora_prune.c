/*
 * lora-prune: reduce the rank of every module of a .lora file by an exact
 * SVD of its delta (lora_prune), and report what each module keeps.
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

#define PROG "lora-prune"
#define SYNOPSIS "lora-prune IN -o OUT (--rank K | --energy F | --budget N) [--dtype T [--block N]] [--refactor]\n" \
                 "                  [--allow-dora] [--dry-run] [--json] [-q]"

typedef struct {
    const char *input, *output;
    int json, quiet, modes;
    lora_prune_options po;
} prune_args;

static void print_help(void)
{
    printf("Usage: %s\n"
           "Reduce the rank of every module of a .lora file by an exact SVD of its delta\n"
           "(QR of B and A^T in double, SVD of the r x r core) and keep the best low-rank\n"
           "approximation (Eckart-Young).\n"
           "\n"
           "Rank selection (exactly one):\n"
           "  --rank K       keep min(K, r) singular values per module (K >= 1)\n"
           "  --energy F     per module, the smallest rank keeping a fraction F of the sum of\n"
           "                 sigma^2 (0 < F <= 1)\n"
           "  --budget N     the N largest singular values over all modules (sigma of delta W,\n"
           "                 scale included); a module none of whose values is kept is dropped\n"
           "\n"
           "Options:\n"
           "  -o, --output OUT  the .lora file to write (never the input)\n"
           "  --dtype T         dtype of every A and B written (f32, f16, bf16, q8_0, q4_0, nf4);\n"
           "                    default: each factor keeps its own\n"
           "  --block N         NF4 block with --dtype nf4 (32..4096, a power of two; default 64)\n"
           "  --refactor        also rewrite the modules whose rank stays, in the SVD form\n"
           "  --allow-dora      prune DoRA modules too (their magnitude is kept as is)\n"
           "  --dry-run         print the plan only; write nothing (-o not needed)\n"
           "  --json            print the report as JSON on stdout\n"
           "  -q, --quiet       print no report\n"
           "  -h, --help        show this help and exit\n"
           "  -V, --version     show the version and exit\n"
           "\n"
           "A module whose rank changes is written with scaling 'explicit' and its scale\n"
           "unchanged (alpha kept, informative), so delta W keeps its magnitude whatever\n"
           "the rule was. The reported error is that of the truncation, sqrt(dropped\n"
           "sigma^2 / all sigma^2); storing the new factors in their dtype adds its rounding.\n"
           "\n"
           "Exit status: 0 done; 1 the input is invalid, corrupt or unsupported (DoRA module\n"
           "without --allow-dora, NaN/Inf in a factor); 2 usage error or environment failure.\n",
           SYNOPSIS);
}

static int parse_mode(prune_args *p, const char *name, const char *v)
{
    uint64_t n = 0;
    double f = 0;
    p->modes++;
    if (!strcmp(name, "--energy")) {
        if (!optval_real(v, &f) || !(f > 0.0 && f <= 1.0))
            return cli_usage_error(PROG, SYNOPSIS, "--energy must be a number in (0, 1], not", v ? v : "nothing");
        p->po.mode = LORA_PRUNE_ENERGY;
        p->po.energy = f;
    } else if (!optval_u64(v, &n) || n == 0 || (!strcmp(name, "--rank") && n > UINT32_MAX)) {
        return cli_usage_error(PROG, SYNOPSIS, !strcmp(name, "--rank") ? "--rank must be an integer >= 1, not"
                                                                       : "--budget must be an integer >= 1, not",
                               v ? v : "nothing");
    } else if (!strcmp(name, "--rank")) {
        p->po.mode = LORA_PRUNE_RANK;
        p->po.rank = (uint32_t)n;
    } else {
        p->po.mode = LORA_PRUNE_BUDGET;
        p->po.budget = n;
    }
    return -1;
}

static int parse_dtype(prune_args *p, const char *v)
{
    lora_dtype d;
    if (!v || lora_dtype_from_name(v, &d) != LORA_OK)
        return cli_usage_error(PROG, SYNOPSIS, "--dtype must be f32, f16, bf16, q8_0, q4_0 or nf4, not",
                               v ? v : "nothing");
    p->po.dtype = (int32_t)d;
    return -1;
}

static int parse_block(prune_args *p, const char *v)
{
    uint64_t n;
    if (!optval_u64(v, &n) || n < LORA_NF4_BLOCK_MIN || n > LORA_NF4_BLOCK_MAX || (n & (n - 1)) != 0)
        return cli_usage_error(PROG, SYNOPSIS, "--block must be a power of two from 32 to 4096, not",
                               v ? v : "nothing");
    p->po.block = (uint32_t)n;
    return -1;
}

static int flag(const cli_arg *arg, const char *name) { return arg->kind == CLI_LONG && !strcmp(arg->text, name); }

static int check_args(prune_args *p)
{
    if (!p->input) return cli_usage_error(PROG, SYNOPSIS, "missing IN", NULL);
    if (p->modes == 0) return cli_usage_error(PROG, SYNOPSIS, "one of --rank, --energy or --budget is needed", NULL);
    if (p->modes > 1)
        return cli_usage_error(PROG, SYNOPSIS, "only one of --rank, --energy, --budget may be given", NULL);
    int dry = (p->po.flags & LORA_PRUNE_DRY_RUN) != 0;
    if (!p->output && !dry) return cli_usage_error(PROG, SYNOPSIS, "missing -o OUT", NULL);
    if (p->output && !strcmp(p->output, "-"))
        return cli_usage_error(PROG, SYNOPSIS, "OUT must be a file name, not", "-");
    if (p->po.block && p->po.dtype != LORA_DTYPE_NF4)
        return cli_usage_error(PROG, SYNOPSIS, "--block applies to --dtype nf4 only", NULL);
    if (cli_reject_stdin(PROG, p->input)) return EXIT_USAGE;
    return -1;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, prune_args *p)
{
    cli_args a;
    cli_arg arg;
    int code = -1;
    cli_args_init(&a, argc, argv);
    while (code < 0 && cli_next(&a, &arg) != CLI_END) {
        const char *v = NULL, *t = arg.text;
        if (arg.kind == CLI_OPERAND) {
            if (p->input) return cli_usage_error(PROG, SYNOPSIS, "more than one input:", t);
            p->input = t;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'h') || flag(&arg, "--help")) {
            print_help();
            return cli_finish_stdout(PROG, EXIT_OK);
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'V') || flag(&arg, "--version")) {
            cli_print_version(PROG);
            return cli_finish_stdout(PROG, EXIT_OK);
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'q') || flag(&arg, "--quiet")) {
            p->quiet = 1;
        } else if (flag(&arg, "--json")) {
            p->json = 1;
        } else if (flag(&arg, "--dry-run")) {
            p->po.flags |= LORA_PRUNE_DRY_RUN;
        } else if (flag(&arg, "--refactor")) {
            p->po.flags |= LORA_PRUNE_REFACTOR;
        } else if (flag(&arg, "--allow-dora")) {
            p->po.flags |= LORA_PRUNE_ALLOW_DORA;
        } else if ((arg.kind == CLI_SHORT && arg.letter == 'o') || optval_long(&a, &arg, "--output", &v)) {
            if (arg.kind == CLI_SHORT) v = cli_value(&a);
            if (!v) return cli_usage_error(PROG, SYNOPSIS, "option needs a value:", "-o");
            p->output = v;
        } else if (optval_long(&a, &arg, "--rank", &v)) {
            code = parse_mode(p, "--rank", v);
        } else if (optval_long(&a, &arg, "--energy", &v)) {
            code = parse_mode(p, "--energy", v);
        } else if (optval_long(&a, &arg, "--budget", &v)) {
            code = parse_mode(p, "--budget", v);
        } else if (optval_long(&a, &arg, "--dtype", &v)) {
            code = parse_dtype(p, v);
        } else if (optval_long(&a, &arg, "--block", &v)) {
            code = parse_block(p, v);
        } else {
            char letter[3] = {'-', arg.letter, '\0'};
            return cli_usage_error(PROG, SYNOPSIS, "unknown option:", arg.kind == CLI_SHORT ? letter : t);
        }
    }
    return code >= 0 ? code : check_args(p);
}

/* ---- reports ------------------------------------------------------------------ */

static void mode_text(const lora_prune_options *o, char *buf, size_t cap)
{
    switch (o->mode) {
    case LORA_PRUNE_RANK: snprintf(buf, cap, "rank %u", o->rank); break;
    case LORA_PRUNE_ENERGY: snprintf(buf, cap, "energy %g", o->energy); break;
    case LORA_PRUNE_BUDGET: snprintf(buf, cap, "budget %" PRIu64, o->budget); break;
    }
}

enum { C_NAME, C_OLD, C_NEW, C_KEPT, C_ERR, C_NOTE, C_COUNT };

static void module_cells(const lora_prune_module *m, strbuf *name, char c[C_COUNT][40], const char *cells[C_COUNT])
{
    sb_clear(name);
    text_escape(name, m->name, strlen(m->name), 0, 0);
    snprintf(c[C_OLD], 40, "%u", m->old_rank);
    if (m->new_rank) snprintf(c[C_NEW], 40, "%u", m->new_rank);
    else snprintf(c[C_NEW], 40, "dropped");
    snprintf(c[C_KEPT], 40, "%.4f%%", 100.0 * m->energy_kept);
    snprintf(c[C_ERR], 40, "%.3e", m->rel_error);
    snprintf(c[C_NOTE], 40, "%s%s", m->rewritten ? "" : "unchanged", m->dora ? (m->rewritten ? "DoRA" : ", DoRA") : "");
    cells[C_NAME] = sb_str(name);
    for (int i = 1; i < C_COUNT; i++) cells[i] = c[i];
}

static void report_text(const prune_args *p, const lora_prune_report *r)
{
    char in[CLI_DISPLAY_MAX], out[CLI_DISPLAY_MAX], mode[64], g1[TEXT_U64_SIZE], g2[TEXT_U64_SIZE];
    int dry = (p->po.flags & LORA_PRUNE_DRY_RUN) != 0;
    mode_text(&p->po, mode, sizeof mode);
    if (dry) printf("%s: plan for %s (dry run: nothing written)\n", cli_display(in, p->input), mode);
    else printf("%s -> %s: %s\n", cli_display(in, p->input), cli_display(out, p->output), mode);
    table_col cols[C_COUNT] = {{"MODULE", 0, 0, 0, 0, 0},        {"RANK", 1, 0, 0, 0, 0},
                               {"NEW", 1, 0, 0, 0, 0},           {"ENERGY KEPT", 1, 0, 0, 0, 0},
                               {"REL. ERROR", 1, 0, 0, 0, 0},    {"NOTE", 0, 1, 0, 0, 0}};
    strbuf name = {0};
    char c[C_COUNT][40];
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
    printf("total rank: %s -> %s", text_u64_grouped(g1, r->rank_in), text_u64_grouped(g2, r->rank_out));
    if (r->dropped_count) printf(" (%u %s dropped)", r->dropped_count, r->dropped_count == 1 ? "module" : "modules");
    printf("; energy kept %.4f%%\n", 100.0 * r->energy_kept);
    if (!dry)
        printf("file size: %s -> %s bytes\n", text_u64_grouped(g1, r->file_size_in),
               text_u64_grouped(g2, r->file_size_out));
}

static void kv_real(doc *d, const char *key, double v)
{
    doc_key(d, key);
    doc_real(d, v, 0);
}

static int report_json(const prune_args *p, const lora_prune_report *r)
{
    static const char *const modes[] = {"", "rank", "energy", "budget"};
    int dry = (p->po.flags & LORA_PRUNE_DRY_RUN) != 0;
    doc *d = doc_open(stdout, DOC_JSON);
    if (!d) return -1;
    doc_map_begin(d, 0);
    doc_kv_cstr(d, "input", p->input);
    doc_kv_cstr(d, "output", dry ? NULL : p->output);
    doc_kv_bool(d, "dry_run", dry);
    doc_kv_cstr(d, "mode", modes[p->po.mode]);
    doc_key(d, "value");
    if (p->po.mode == LORA_PRUNE_ENERGY) doc_real(d, p->po.energy, 0);
    else doc_u64(d, p->po.mode == LORA_PRUNE_RANK ? p->po.rank : p->po.budget);
    doc_kv_u64(d, "rank_in", r->rank_in);
    doc_kv_u64(d, "rank_out", r->rank_out);
    doc_kv_u64(d, "dropped", r->dropped_count);
    kv_real(d, "energy", r->energy);
    kv_real(d, "energy_kept", r->energy_kept);
    doc_kv_u64(d, "file_size_in", r->file_size_in);
    doc_key(d, "file_size_out");
    if (dry) doc_null(d);
    else doc_u64(d, r->file_size_out);
    doc_key(d, "modules");
    doc_seq_begin(d, 0);
    for (uint32_t i = 0; i < r->module_count; i++) {
        const lora_prune_module *m = &r->modules[i];
        doc_map_begin(d, 0);
        doc_kv_cstr(d, "name", m->name);
        doc_kv_u64(d, "old_rank", m->old_rank);
        doc_kv_u64(d, "new_rank", m->new_rank);
        doc_kv_bool(d, "rewritten", m->rewritten);
        doc_kv_bool(d, "dora", m->dora);
        kv_real(d, "energy", m->energy);
        kv_real(d, "energy_kept", m->energy_kept);
        kv_real(d, "rel_error", m->rel_error);
        kv_real(d, "sigma_max", m->sigma_max);
        kv_real(d, "sigma_last_kept", m->sigma_last_kept);
        doc_map_end(d);
    }
    doc_seq_end(d);
    doc_map_end(d);
    return doc_finish(d);
}

static void on_warning(void *opaque, const char *message)
{
    const prune_args *p = opaque;
    if (!p->quiet) cli_print_warning(PROG, p->input, message);
}

int main(int argc, char **argv)
{
    prune_args p;
    memset(&p, 0, sizeof p);
    p.po = (lora_prune_options)LORA_PRUNE_OPTIONS_INIT;
    int code = parse_args(argc, argv, &p);
    if (code >= 0) return code;
    p.po.warn = on_warning;
    p.po.warn_opaque = &p;

    lora_prune_report rep;
    lora_error err;
    lora_status st = lora_prune(p.input, p.output, &p.po, &rep, &err);
    if (st != LORA_OK) {
        cli_print_error(PROG, p.input, &err);
        return cli_exit_code(st);
    }
    code = EXIT_OK;
    if (p.json) {
        if (report_json(&p, &rep) != 0 && !ferror(stdout)) {
            fprintf(stderr, "%s: cannot produce the JSON output\n", PROG);
            code = EXIT_USAGE;
        }
    } else if (!p.quiet) {
        report_text(&p, &rep);
    }
    lora_prune_report_free(&rep);
    return cli_finish_stdout(PROG, code);
}
