/*
 * lora-verify: check .lora files completely - structure and header checksum
 * (at open), every blob checksum and zlib stream (lora_reader_verify), then
 * NaN/Inf in every blob; with --base MODEL, also that every module finds its
 * base tensor with the expected shape (lora_merge_check, nothing merged).
 * One verdict per file; a bad file does not stop the run, and the exit code
 * is the worst seen.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_ops.h"
#include "common/cli.h"
#include "common/doc.h"
#include "common/text.h"

#define PROG "lora-verify"
#define SYNOPSIS "lora-verify FILE... [--json] [-q|--quiet] [--strict] [--base MODEL [--map-prefix FROM=TO]...]"

typedef struct {
    int json, quiet, strict;
    const char *base;             /* --base: check the modules against this model */
    lora_merge_rename *renames;   /* --map-prefix (sized argc) */
    size_t rename_count;
    char **owned;                 /* the FROM strings split off the arguments */
} verify_opts;

/* Which reference of its owner a blob is. */
typedef enum { ROLE_A, ROLE_B, ROLE_MAGNITUDE, ROLE_BIAS, ROLE_TENSOR } blob_role;

typedef struct {
    uint32_t blob;
    uint32_t owner; /* module or tensor index */
    blob_role role;
    uint64_t count;
} nonfinite_warning;

typedef struct {
    const char *file;
    lora_reader *r;    /* open once the structure was accepted */
    lora_file_info fi;
    lora_error err;    /* status LORA_OK while the file passes */
    const char *err_file; /* the file err is about when it is not `file` (the base) */
    int base_checked;  /* --base: the modules were matched against the base */
    lora_merge_report base_report;
    nonfinite_warning *warnings;
    size_t warning_count, warning_cap;
} file_check;

static void print_help(void)
{
    printf("Usage: %s\n"
           "Check .lora files completely: structure and header checksum, every blob\n"
           "checksum and compressed stream, then every blob for NaN and infinity.\n"
           "\n"
           "Options:\n"
           "  --json          print a JSON array with one object per file on stdout\n"
           "                  (keys are listed in lora-verify(1))\n"
           "  -q, --quiet     print nothing for valid files and no warnings; errors\n"
           "                  are still printed on stderr\n"
           "  --strict        NaN or infinity in a blob fails the file (LORA_E_NONFINITE)\n"
           "                  instead of giving a warning\n"
           "  --base MODEL    also check, without merging, that every module finds its tensor\n"
           "                  in the base model (safetensors file, sharded directory or GGUF)\n"
           "                  with the shape the module expects, as lora-merge would\n"
           "  --map-prefix FROM=TO\n"
           "                  with --base: read module names starting with FROM as starting\n"
           "                  with TO (repeatable)\n"
           "  -h, --help      show this help and exit\n"
           "  -V, --version   show the version and exit\n"
           "  --              end of options (for file names starting with '-')\n"
           "\n"
           "A valid file prints on stdout\n"
           "  FILE: OK (N modules, M blobs, B bytes verified)\n"
           "and with --base a second line\n"
           "  FILE: OK against MODEL (FORMAT): N modules match their base tensors; ...\n"
           "a failing one prints on stderr, and the next file is checked:\n"
           "  lora-verify: FILE: LORA_E_NAME: detail (offset N)\n"
           "Standard input is not read (name a file called '-' as ./-).\n"
           "\n"
           "Exit status (the highest over all files):\n"
           "  0  every file is valid\n"
           "  1  a file is invalid, corrupt or unsupported (or has NaN/Inf with --strict)\n"
           "  2  usage error, or a file could not be read (missing, unreadable, not a\n"
           "     regular file, out of memory, write error)\n",
           SYNOPSIS);
}

static int is_long(const cli_arg *a, const char *name) { return a->kind == CLI_LONG && !strcmp(a->text, name); }
static int is_short(const cli_arg *a, char letter) { return a->kind == CLI_SHORT && a->letter == letter; }

/* --map-prefix FROM=TO (FROM not empty). */
static int add_rename(verify_opts *o, const char *v)
{
    const char *eq = v ? strchr(v, '=') : NULL;
    if (!eq || eq == v) return 0;
    char *from = malloc((size_t)(eq - v) + 1);
    if (!from) return 0;
    memcpy(from, v, (size_t)(eq - v));
    from[eq - v] = '\0';
    o->owned[o->rename_count] = from;
    o->renames[o->rename_count].from = from;
    o->renames[o->rename_count++].to = eq + 1;
    return 1;
}

static void free_opts(verify_opts *o)
{
    for (size_t i = 0; o->owned && i < o->rename_count; i++) free(o->owned[i]);
    free(o->owned);
    free(o->renames);
}

/* Collects operands into files[] (sized argc). Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, verify_opts *o, const char **files, size_t *nfiles)
{
    cli_args a;
    cli_arg arg;
    memset(o, 0, sizeof *o);
    *nfiles = 0;
    o->renames = calloc((size_t)(argc > 0 ? argc : 1), sizeof *o->renames);
    o->owned = calloc((size_t)(argc > 0 ? argc : 1), sizeof *o->owned);
    if (!o->renames || !o->owned) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return EXIT_USAGE;
    }
    cli_args_init(&a, argc, argv);
    while (cli_next(&a, &arg) != CLI_END) {
        const char *v = NULL;
        if (arg.kind == CLI_OPERAND) {
            files[(*nfiles)++] = arg.text;
        } else if (is_short(&arg, 'h') || is_long(&arg, "--help")) {
            print_help();
            return cli_finish_stdout(PROG, EXIT_OK);
        } else if (is_short(&arg, 'V') || is_long(&arg, "--version")) {
            cli_print_version(PROG);
            return cli_finish_stdout(PROG, EXIT_OK);
        } else if (is_long(&arg, "--json")) {
            o->json = 1;
        } else if (is_short(&arg, 'q') || is_long(&arg, "--quiet")) {
            o->quiet = 1;
        } else if (is_long(&arg, "--strict")) {
            o->strict = 1;
        } else if (is_long(&arg, "--base") || (arg.kind == CLI_LONG && cli_long_value(arg.text, "--base", &v))) {
            if (!v && !(v = cli_value(&a))) return cli_usage_error(PROG, SYNOPSIS, "option needs a value:", "--base");
            o->base = v;
        } else if (is_long(&arg, "--map-prefix") ||
                   (arg.kind == CLI_LONG && cli_long_value(arg.text, "--map-prefix", &v))) {
            if (!v) v = cli_value(&a);
            if (!add_rename(o, v)) return cli_usage_error(PROG, SYNOPSIS, "--map-prefix needs FROM=TO, not", v ? v : "");
        } else {
            char opt[3] = {'-', arg.letter, '\0'};
            return cli_usage_error(PROG, SYNOPSIS, "unknown option", arg.kind == CLI_LONG ? arg.text : opt);
        }
    }
    if (*nfiles == 0) return cli_usage_error(PROG, SYNOPSIS, "missing FILE", NULL);
    if (o->rename_count && !o->base) return cli_usage_error(PROG, SYNOPSIS, "--map-prefix needs --base", NULL);
    return -1;
}

/* ---- checks ------------------------------------------------------------------ */

static void fail(file_check *fc, lora_status st)
{
    /* The library fills err; keep a status even if a call did not. */
    if (fc->err.status == LORA_OK) fc->err.status = st;
}

static void fail_with(file_check *fc, lora_status st, uint64_t offset, const char *detail)
{
    fc->err.status = st;
    fc->err.offset = offset;
    snprintf(fc->err.detail, sizeof fc->err.detail, "%s", detail);
}

static int add_warning(file_check *fc, const nonfinite_warning *w)
{
    if (fc->warning_count == fc->warning_cap) {
        size_t cap = fc->warning_cap ? fc->warning_cap * 2 : 8;
        nonfinite_warning *p = realloc(fc->warnings, cap * sizeof *p);
        if (!p) {
            fail_with(fc, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "recording NaN/Inf warnings");
            return 0;
        }
        fc->warnings = p;
        fc->warning_cap = cap;
    }
    fc->warnings[fc->warning_count++] = *w;
    return 1;
}

static int scan_blob(file_check *fc, uint32_t blob, uint32_t owner, blob_role role)
{
    uint64_t count = 0;
    if (blob == LORA_NO_BLOB) return 1;
    lora_status st = lora_reader_blob_count_nonfinite(fc->r, blob, &count, &fc->err);
    if (st != LORA_OK) {
        fail(fc, st);
        return 0;
    }
    nonfinite_warning w = {blob, owner, role, count};
    return count == 0 || add_warning(fc, &w);
}

/* By owner rather than by blob index: every blob belongs to exactly one module
 * or tensor, and a warning should name it. */
static int scan_nonfinite(file_check *fc)
{
    for (uint32_t i = 0; i < fc->fi.module_count; i++) {
        lora_module m;
        lora_status st = lora_reader_module(fc->r, i, &m);
        if (st != LORA_OK) {
            fail_with(fc, st, LORA_NO_OFFSET, "cannot read a module record");
            return 0;
        }
        if (!scan_blob(fc, m.blob_a, i, ROLE_A) || !scan_blob(fc, m.blob_b, i, ROLE_B) ||
            !scan_blob(fc, m.blob_magnitude, i, ROLE_MAGNITUDE) || !scan_blob(fc, m.blob_bias, i, ROLE_BIAS))
            return 0;
    }
    for (uint32_t i = 0; i < fc->fi.tensor_count; i++) {
        lora_tensor t;
        lora_status st = lora_reader_tensor(fc->r, i, &t);
        if (st != LORA_OK) {
            fail_with(fc, st, LORA_NO_OFFSET, "cannot read a tensor record");
            return 0;
        }
        if (!scan_blob(fc, t.blob, i, ROLE_TENSOR)) return 0;
    }
    return 1;
}

static const char *role_name(blob_role role)
{
    switch (role) {
    case ROLE_A: return "A";
    case ROLE_B: return "B";
    case ROLE_MAGNITUDE: return "magnitude";
    case ROLE_BIAS: return "bias";
    case ROLE_TENSOR: return "tensor";
    }
    return "?";
}

static const char *owner_name(const file_check *fc, const nonfinite_warning *w)
{
    lora_module m;
    lora_tensor t;
    if (w->role == ROLE_TENSOR) return lora_reader_tensor(fc->r, w->owner, &t) == LORA_OK ? t.name : "?";
    return lora_reader_module(fc->r, w->owner, &m) == LORA_OK ? m.name : "?";
}

/* "blob 3 (module 'x' B): 5 NaN/Inf values" */
static void warning_text(const file_check *fc, const nonfinite_warning *w, strbuf *sb)
{
    char line[96];
    snprintf(line, sizeof line, "blob %" PRIu32 " (%s '", w->blob, w->role == ROLE_TENSOR ? "tensor" : "module");
    sb_puts(sb, line);
    sb_puts(sb, owner_name(fc, w));
    if (w->role == ROLE_TENSOR) snprintf(line, sizeof line, "'): ");
    else snprintf(line, sizeof line, "' %s): ", role_name(w->role));
    sb_puts(sb, line);
    snprintf(line, sizeof line, "%" PRIu64 " NaN/Inf %s", w->count, w->count == 1 ? "value" : "values");
    sb_puts(sb, line);
}

/* --strict: the first affected blob becomes the file's error. */
static void strict_failure(file_check *fc)
{
    strbuf sb = {0};
    lora_blob b;
    uint64_t offset = LORA_NO_OFFSET;
    const nonfinite_warning *w = &fc->warnings[0];
    if (lora_reader_blob(fc->r, w->blob, &b) == LORA_OK) offset = b.offset;
    warning_text(fc, w, &sb);
    if (fc->warning_count > 1) {
        char more[64];
        snprintf(more, sizeof more, "; %zu more %s", fc->warning_count - 1,
                 fc->warning_count == 2 ? "blob has NaN/Inf" : "blobs have NaN/Inf");
        sb_puts(&sb, more);
    }
    fail_with(fc, LORA_E_NONFINITE, offset, sb.failed ? "NaN or infinity in a blob" : sb_str(&sb));
    sb_free(&sb);
}

/* --base: every module against the model, as lora-merge would, nothing merged. */
static void check_base(file_check *fc, const verify_opts *o)
{
    lora_merge_adapter ad = LORA_MERGE_ADAPTER_INIT(fc->file);
    lora_merge_options mo = LORA_MERGE_OPTIONS_INIT;
    mo.base = o->base;
    mo.adapters = &ad;
    mo.adapter_count = 1;
    mo.renames = o->renames;
    mo.rename_count = o->rename_count;
    lora_status st = lora_merge_check(&mo, &fc->base_report, &fc->err);
    if (st != LORA_OK) {
        fail(fc, st);
        /* A problem of the base itself is reported under the base's name. */
        if (fc->base_report.error_path && strcmp(fc->base_report.error_path, fc->file) != 0)
            fc->err_file = fc->base_report.error_path;
        return;
    }
    fc->base_checked = 1;
}

static void run_checks(file_check *fc, const verify_opts *o)
{
    if (!strcmp(fc->file, "-")) {
        cli_stdin_error(&fc->err);
        return;
    }
    lora_status st = lora_reader_open_file(fc->file, NULL, &fc->r, &fc->err);
    if (st != LORA_OK) {
        fc->r = NULL;
        fail(fc, st);
        return;
    }
    lora_reader_file_info(fc->r, &fc->fi);
    st = lora_reader_verify(fc->r, &fc->err);
    if (st != LORA_OK) {
        fail(fc, st);
        return;
    }
    if (scan_nonfinite(fc) && o->strict && fc->warning_count) strict_failure(fc);
    if (o->base && fc->err.status == LORA_OK) check_base(fc, o);
}

/* ---- reports ------------------------------------------------------------------ */

static void report_text(const file_check *fc, const verify_opts *o)
{
    char shown[CLI_DISPLAY_MAX], bytes[TEXT_U64_SIZE];
    if (fc->err.status != LORA_OK) {
        cli_print_error(PROG, fc->err_file ? fc->err_file : fc->file, &fc->err);
        return;
    }
    if (o->quiet) return;
    for (size_t i = 0; i < fc->warning_count; i++) {
        strbuf sb = {0};
        warning_text(fc, &fc->warnings[i], &sb);
        cli_print_warning(PROG, fc->file, sb.failed ? "NaN or infinity in a blob" : sb_str(&sb));
        sb_free(&sb);
    }
    if (o->json) return;
    printf("%s: OK (%" PRIu32 " %s, %" PRIu32 " %s, %s bytes verified", cli_display(shown, fc->file),
           fc->fi.module_count, fc->fi.module_count == 1 ? "module" : "modules", fc->fi.blob_count,
           fc->fi.blob_count == 1 ? "blob" : "blobs", text_u64_grouped(bytes, fc->fi.file_size));
    if (fc->warning_count) printf(", %zu %s", fc->warning_count, fc->warning_count == 1 ? "warning" : "warnings");
    printf(")\n");
    if (fc->base_checked) {
        const lora_merge_report *r = &fc->base_report;
        char model[CLI_DISPLAY_MAX];
        printf("%s: OK against %s (%s): %u %s match their base tensors; %u to merge, %u to replace",
               cli_display(shown, fc->file), cli_display(model, o->base), r->base_format, r->modules,
               r->modules == 1 ? "module" : "modules", r->merged, r->replaced);
        if (r->requantized) printf(", %u requantized", r->requantized);
        printf("\n");
    }
}

static void report_json_warnings(const file_check *fc, doc *d)
{
    static const char *const roles[] = {"a", "b", "magnitude", "bias", "tensor"};
    doc_key(d, "warnings");
    doc_seq_begin(d, 0);
    for (size_t i = 0; i < fc->warning_count; i++) {
        const nonfinite_warning *w = &fc->warnings[i];
        strbuf sb = {0};
        warning_text(fc, w, &sb);
        doc_map_begin(d, 0);
        doc_kv_u64(d, "blob", w->blob);
        doc_kv_cstr(d, "owner", owner_name(fc, w));
        doc_kv_cstr(d, "role", roles[w->role]);
        doc_kv_u64(d, "nonfinite", w->count);
        doc_kv_cstr(d, "message", sb.failed ? "NaN or infinity in a blob" : sb_str(&sb));
        doc_map_end(d);
        sb_free(&sb);
    }
    doc_seq_end(d);
}

static void report_json(const file_check *fc, const verify_opts *o, doc *d)
{
    int ok = fc->err.status == LORA_OK;
    doc_map_begin(d, 0);
    doc_kv_cstr(d, "file", fc->file);
    doc_kv_bool(d, "ok", ok);
    doc_kv_cstr(d, "status", lora_status_name(fc->err.status));
    doc_key(d, "detail");
    if (ok) doc_null(d);
    else doc_cstr(d, fc->err.detail[0] ? fc->err.detail : lora_status_message(fc->err.status));
    doc_key(d, "offset");
    if (fc->err.offset == LORA_NO_OFFSET || ok) doc_null(d);
    else doc_u64(d, fc->err.offset);
    doc_key(d, "modules");
    if (fc->r) doc_u64(d, fc->fi.module_count);
    else doc_null(d);
    doc_key(d, "blobs");
    if (fc->r) doc_u64(d, fc->fi.blob_count);
    else doc_null(d);
    doc_key(d, "bytes");
    if (ok) doc_u64(d, fc->fi.file_size);
    else doc_null(d);
    report_json_warnings(fc, d);
    if (o->base) {
        doc_key(d, "base");
        doc_map_begin(d, 0);
        doc_kv_cstr(d, "model", o->base);
        doc_kv_bool(d, "checked", fc->base_checked);
        doc_key(d, "modules");
        if (fc->base_checked) doc_u64(d, fc->base_report.modules);
        else doc_null(d);
        doc_key(d, "merged");
        if (fc->base_checked) doc_u64(d, fc->base_report.merged);
        else doc_null(d);
        doc_key(d, "replaced");
        if (fc->base_checked) doc_u64(d, fc->base_report.replaced);
        else doc_null(d);
        doc_map_end(d);
    }
    doc_map_end(d);
}

static int check_file(const char *file, const verify_opts *o, doc *d)
{
    file_check fc;
    memset(&fc, 0, sizeof fc);
    fc.file = file;
    fc.err.offset = LORA_NO_OFFSET;
    run_checks(&fc, o);
    report_text(&fc, o);
    if (d) report_json(&fc, o, d);
    lora_reader_free(fc.r);
    free(fc.warnings);
    return cli_exit_code(fc.err.status);
}

int main(int argc, char **argv)
{
    verify_opts o;
    size_t nfiles;
    const char **files = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *files);
    if (!files) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return EXIT_USAGE;
    }
    int code = parse_args(argc, argv, &o, files, &nfiles);
    if (code >= 0) {
        free(files);
        free_opts(&o);
        return code;
    }

    doc *d = NULL;
    if (o.json && !(d = doc_open(stdout, DOC_JSON))) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        free(files);
        free_opts(&o);
        return EXIT_USAGE;
    }
    if (d) doc_seq_begin(d, 0);
    code = EXIT_OK;
    for (size_t i = 0; i < nfiles; i++) {
        int c = check_file(files[i], &o, d);
        if (c > code) code = c;
    }
    free(files);
    free_opts(&o);
    if (d) {
        doc_seq_end(d);
        if (doc_finish(d) != 0) {
            /* A write error is reported once, by cli_finish_stdout. */
            if (!ferror(stdout)) fprintf(stderr, "%s: cannot produce the JSON output\n", PROG);
            code = EXIT_USAGE;
        }
    }
    return cli_finish_stdout(PROG, code);
}
