/*
 * lora-info: show what a .lora adapter holds - header, metadata, modules,
 * replacement tensors and totals - as aligned text, JSON or YAML.
 *
 * Opening validates the structure and the header checksum; blob checksums
 * are lora-verify's job, so this stays fast on large adapters.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lora.h"
#include "common/cli.h"
#include "common/doc.h"
#include "common/table.h"
#include "common/text.h"

#define PROG "lora-info"
#define SYNOPSIS "lora-info FILE [--json | --yaml]"

/* Text mode shows this many columns of a metadata string, then its length. */
#define META_VALUE_WIDTH 60
#define NAME_COLUMN_MAX 60
#define KEY_COLUMN_MAX 40

typedef enum { OUT_TEXT, OUT_JSON, OUT_YAML } out_mode;

typedef struct {
    const lora_reader *r;
    const char *file;
    lora_file_info fi;
    int failed; /* a query failed after open (reported once) */
} info_ctx;

typedef struct {
    uint64_t params, module_params, stored, raw;
} totals;

static void print_help(void)
{
    printf("Usage: %s\n"
           "Show the header, metadata, modules, replacement tensors and totals of a .lora\n"
           "adapter. Opening checks the structure and the header checksum; use\n"
           "lora-verify to check every blob.\n"
           "\n"
           "Options:\n"
           "  --json          print one JSON object (keys are listed in lora-info(1))\n"
           "  --yaml          print the same structure as YAML\n"
           "  -h, --help      show this help and exit\n"
           "  -V, --version   show the version and exit\n"
           "  --              end of options (for file names starting with '-')\n"
           "\n"
           "Standard input is not read: FILE must be a regular file (name a file called\n"
           "'-' as ./-).\n"
           "\n"
           "Exit status:\n"
           "  0  the file was shown\n"
           "  1  the file is not a valid .lora file (corrupt, malformed or unsupported)\n"
           "  2  usage error, or the file could not be read (missing, unreadable, not a\n"
           "     regular file, out of memory, write error)\n",
           SYNOPSIS);
}

/* Returns -1 to go on, or the exit code when the arguments decide the run. */
static int parse_args(int argc, char **argv, out_mode *mode, const char **file)
{
    cli_args a;
    cli_arg arg;
    *mode = OUT_TEXT;
    *file = NULL;
    cli_args_init(&a, argc, argv);
    while (cli_next(&a, &arg) != CLI_END) {
        out_mode want = OUT_TEXT;
        if (arg.kind == CLI_OPERAND) {
            if (*file) return cli_usage_error(PROG, SYNOPSIS, "only one FILE is accepted; extra operand", arg.text);
            *file = arg.text;
            continue;
        }
        if ((arg.kind == CLI_SHORT && arg.letter == 'h') || (arg.kind == CLI_LONG && !strcmp(arg.text, "--help"))) {
            print_help();
            return cli_finish_stdout(PROG, EXIT_OK);
        }
        if ((arg.kind == CLI_SHORT && arg.letter == 'V') ||
            (arg.kind == CLI_LONG && !strcmp(arg.text, "--version"))) {
            cli_print_version(PROG);
            return cli_finish_stdout(PROG, EXIT_OK);
        }
        if (arg.kind == CLI_LONG && !strcmp(arg.text, "--json")) want = OUT_JSON;
        else if (arg.kind == CLI_LONG && !strcmp(arg.text, "--yaml")) want = OUT_YAML;
        if (want == OUT_TEXT) {
            char opt[3] = {'-', arg.letter, '\0'};
            return cli_usage_error(PROG, SYNOPSIS, "unknown option", arg.kind == CLI_LONG ? arg.text : opt);
        }
        if (*mode != OUT_TEXT && *mode != want)
            return cli_usage_error(PROG, SYNOPSIS, "--json and --yaml cannot be combined", NULL);
        *mode = want;
    }
    if (!*file) return cli_usage_error(PROG, SYNOPSIS, "missing FILE", NULL);
    if (cli_reject_stdin(PROG, *file)) return EXIT_USAGE;
    return -1;
}

/* ---- queries ----------------------------------------------------------------
 * The reader validated every index at open, so these cannot fail on a file;
 * if one does anyway, say so once and make the run fail. */

static int query_failed(info_ctx *c, lora_status st, const char *what, uint32_t index)
{
    if (!c->failed) {
        lora_error err;
        memset(&err, 0, sizeof err);
        err.status = st;
        err.offset = LORA_NO_OFFSET;
        snprintf(err.detail, sizeof err.detail, "cannot read %s %" PRIu32, what, index);
        cli_print_error(PROG, c->file, &err);
    }
    c->failed = 1;
    return 0;
}

static int get_blob(info_ctx *c, uint32_t i, lora_blob *b)
{
    lora_status st = lora_reader_blob(c->r, i, b);
    return st == LORA_OK ? 1 : query_failed(c, st, "blob", i);
}

static int get_module(info_ctx *c, uint32_t i, lora_module *m)
{
    lora_status st = lora_reader_module(c->r, i, m);
    return st == LORA_OK ? 1 : query_failed(c, st, "module", i);
}

static int get_tensor(info_ctx *c, uint32_t i, lora_tensor *t)
{
    lora_status st = lora_reader_tensor(c->r, i, t);
    return st == LORA_OK ? 1 : query_failed(c, st, "tensor", i);
}

static int get_meta(info_ctx *c, uint32_t i, lora_meta *m)
{
    lora_status st = lora_reader_meta(c->r, i, m);
    return st == LORA_OK ? 1 : query_failed(c, st, "metadata entry", i);
}

static const char *meta_type_name(lora_meta_type t)
{
    switch (t) {
    case LORA_META_STRING: return "string";
    case LORA_META_INT: return "int";
    case LORA_META_FLOAT: return "float";
    case LORA_META_BOOL: return "bool";
    }
    return "unknown";
}

static const char *compression_name(lora_compression z) { return z == LORA_COMPRESSION_ZLIB ? "zlib" : "none"; }

static const char *dtype_name(lora_dtype d)
{
    const char *n = lora_dtype_name(d);
    return n ? n : "?";
}

static const char *kind_name(lora_kind k)
{
    const char *n = lora_kind_name(k);
    return n ? n : "?";
}

static const char *scaling_name(lora_scaling s)
{
    const char *n = lora_scaling_name(s);
    return n ? n : "?";
}

static void add_blob(info_ctx *c, uint32_t index, totals *t, int in_module)
{
    lora_blob b;
    if (index == LORA_NO_BLOB || !get_blob(c, index, &b)) return;
    t->params += b.numel;
    if (in_module) t->module_params += b.numel;
    t->stored += b.stored_size;
    t->raw += b.raw_size;
}

static void add_module_blobs(info_ctx *c, const lora_module *m, totals *t)
{
    add_blob(c, m->blob_a, t, 1);
    add_blob(c, m->blob_b, t, 1);
    add_blob(c, m->blob_magnitude, t, 1);
    add_blob(c, m->blob_bias, t, 1);
}

static totals compute_totals(info_ctx *c)
{
    totals t = {0, 0, 0, 0};
    for (uint32_t i = 0; i < c->fi.module_count && !c->failed; i++) {
        lora_module m;
        if (get_module(c, i, &m)) add_module_blobs(c, &m, &t);
    }
    for (uint32_t i = 0; i < c->fi.tensor_count && !c->failed; i++) {
        lora_tensor tn;
        if (get_tensor(c, i, &tn)) add_blob(c, tn.blob, &t, 0);
    }
    return t;
}

/* ---- text output ----------------------------------------------------------- */

static const char *plural(uint64_t n, const char *one, const char *many) { return n == 1 ? one : many; }

static void text_file_line(const info_ctx *c)
{
    char size[TEXT_U64_SIZE], shown[CLI_DISPLAY_MAX];
    printf("file      %s  (format %u.%u, %s %s, header checksum 0x%016" PRIx64 ")\n",
           cli_display(shown, c->file), (unsigned)c->fi.format_major, (unsigned)c->fi.format_minor,
           text_u64_grouped(size, c->fi.file_size), plural(c->fi.file_size, "byte", "bytes"),
           c->fi.header_checksum);
}

/* The value column of a metadata line; long strings are cut with their length. */
static void meta_value_text(strbuf *sb, const lora_meta *m)
{
    char buf[TEXT_REAL_SIZE > TEXT_U64_SIZE ? TEXT_REAL_SIZE : TEXT_U64_SIZE] = "";
    switch (m->type) {
    case LORA_META_STRING:
        if (text_escape(sb, m->string, m->string_length, 1, META_VALUE_WIDTH)) {
            sb_puts(sb, "...  (");
            sb_puts(sb, text_u64_grouped(buf, m->string_length));
            sb_puts(sb, " bytes)");
        }
        return;
    case LORA_META_INT: snprintf(buf, sizeof buf, "%" PRId64, m->integer); break;
    case LORA_META_FLOAT: text_real(buf, m->number, 0); break;
    case LORA_META_BOOL: snprintf(buf, sizeof buf, "%s", m->integer ? "true" : "false"); break;
    }
    sb_puts(sb, buf);
}

static void text_metadata(info_ctx *c)
{
    table_col cols[] = {{"", 0, 0, KEY_COLUMN_MAX, 0, 0}, {"", 0, 0, 0, 0, 0}, {"", 0, 0, 0, 0, 0}};
    strbuf key = {0}, value = {0};
    printf("metadata  %" PRIu32 " %s\n", c->fi.metadata_count, plural(c->fi.metadata_count, "entry", "entries"));
    table_start(cols, 3);
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < c->fi.metadata_count && !c->failed; i++) {
            lora_meta m;
            if (!get_meta(c, i, &m)) break;
            sb_clear(&key);
            sb_clear(&value);
            text_escape(&key, m.key, strlen(m.key), 0, 0);
            if (pass == 1) meta_value_text(&value, &m);
            const char *cells[3] = {sb_str(&key), meta_type_name(m.type), sb_str(&value)};
            if (pass == 0) table_measure(cols, 3, cells);
            else table_print_row(stdout, "  ", cols, 3, cells);
        }
    }
    sb_free(&key);
    sb_free(&value);
}

enum { MC_NAME, MC_KIND, MC_BASE, MC_RANK, MC_ALPHA, MC_SCALE, MC_RULE, MC_AB, MC_BYTES, MC_NOTES, MC_COUNT };

typedef struct {
    strbuf name, notes;
    char base[TEXT_SHAPE_SIZE], rank[16], alpha[TEXT_REAL_SIZE], scale[TEXT_REAL_SIZE], ab[32],
        bytes[TEXT_U64_SIZE];
    const char *cells[MC_COUNT];
} module_row;

static void add_note(strbuf *notes, const char *a, const char *b)
{
    if (notes->len) sb_puts(notes, ", ");
    sb_puts(notes, a);
    if (b) {
        sb_putc(notes, ' ');
        sb_puts(notes, b);
    }
}

/* Notes for the optional blobs and flags; also sums the stored bytes. */
static void module_extras(info_ctx *c, const lora_module *m, module_row *row, uint64_t *stored)
{
    const uint32_t blobs[4] = {m->blob_a, m->blob_b, m->blob_magnitude, m->blob_bias};
    int zlib = 0;
    *stored = 0;
    if (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) add_note(&row->notes, "fan_in_fan_out", NULL);
    for (int k = 0; k < 4; k++) {
        lora_blob b;
        if (blobs[k] == LORA_NO_BLOB || !get_blob(c, blobs[k], &b)) continue;
        *stored += b.stored_size;
        zlib |= b.compression == LORA_COMPRESSION_ZLIB;
        if (k == 0) snprintf(row->ab, sizeof row->ab, "%s", dtype_name(b.dtype));
        if (k == 1) snprintf(row->ab + strlen(row->ab), sizeof row->ab - strlen(row->ab), "/%s", dtype_name(b.dtype));
        if (k == 2) add_note(&row->notes, "magnitude", dtype_name(b.dtype));
        if (k == 3) add_note(&row->notes, "bias", dtype_name(b.dtype));
    }
    if (zlib) add_note(&row->notes, "zlib", NULL);
}

static int module_row_fill(info_ctx *c, uint32_t i, module_row *row)
{
    lora_module m;
    uint64_t stored;
    sb_clear(&row->name);
    sb_clear(&row->notes);
    row->ab[0] = '\0';
    if (!get_module(c, i, &m)) return 0;
    text_escape(&row->name, m.name, strlen(m.name), 0, 0);
    module_extras(c, &m, row, &stored);
    text_shape(row->base, m.base_shape, m.base_ndim);
    snprintf(row->rank, sizeof row->rank, "%" PRIu32, m.rank);
    text_real(row->alpha, m.alpha, 1);
    text_real(row->scale, m.scale, 1);
    text_u64_grouped(row->bytes, stored);
    const char *cells[MC_COUNT] = {sb_str(&row->name), kind_name(m.kind), row->base, row->rank, row->alpha,
                                   row->scale, scaling_name(m.scaling), row->ab, row->bytes, sb_str(&row->notes)};
    memcpy(row->cells, cells, sizeof cells);
    return 1;
}

static void text_modules(info_ctx *c)
{
    table_col cols[MC_COUNT] = {
        {"NAME", 0, 0, NAME_COLUMN_MAX, 0, 0}, {"KIND", 0, 0, 0, 0, 0},  {"BASE", 0, 0, 0, 0, 0},
        {"RANK", 1, 0, 0, 0, 0},               {"ALPHA", 1, 0, 0, 0, 0}, {"SCALE", 1, 0, 0, 0, 0},
        {"RULE", 0, 0, 0, 0, 0},               {"A/B", 0, 0, 0, 0, 0},   {"BYTES", 1, 0, 0, 0, 0},
        {"NOTES", 0, 1, 0, 0, 0},
    };
    module_row row;
    memset(&row, 0, sizeof row);
    printf("modules   %" PRIu32 "\n", c->fi.module_count);
    table_start(cols, MC_COUNT);
    for (uint32_t i = 0; i < c->fi.module_count && !c->failed; i++)
        if (module_row_fill(c, i, &row)) table_measure(cols, MC_COUNT, row.cells);
    if (c->fi.module_count && !c->failed) table_print_header(stdout, "  ", cols, MC_COUNT);
    for (uint32_t i = 0; i < c->fi.module_count && !c->failed; i++)
        if (module_row_fill(c, i, &row)) table_print_row(stdout, "  ", cols, MC_COUNT, row.cells);
    sb_free(&row.name);
    sb_free(&row.notes);
}

enum { TC_NAME, TC_DTYPE, TC_SHAPE, TC_BYTES, TC_NOTES, TC_COUNT };

static int tensor_row_fill(info_ctx *c, uint32_t i, strbuf *name, char shape[TEXT_SHAPE_SIZE],
                           char bytes[TEXT_U64_SIZE], const char **cells)
{
    lora_tensor t;
    lora_blob b;
    sb_clear(name);
    if (!get_tensor(c, i, &t) || !get_blob(c, t.blob, &b)) return 0;
    text_escape(name, t.name, strlen(t.name), 0, 0);
    cells[TC_NAME] = sb_str(name);
    cells[TC_DTYPE] = dtype_name(b.dtype);
    cells[TC_SHAPE] = text_shape(shape, b.shape, b.ndim);
    cells[TC_BYTES] = text_u64_grouped(bytes, b.stored_size);
    cells[TC_NOTES] = b.compression == LORA_COMPRESSION_ZLIB ? "zlib" : "";
    return 1;
}

static void text_tensors(info_ctx *c)
{
    table_col cols[TC_COUNT] = {{"NAME", 0, 0, NAME_COLUMN_MAX, 0, 0},
                                {"DTYPE", 0, 0, 0, 0, 0},
                                {"SHAPE", 0, 0, 0, 0, 0},
                                {"BYTES", 1, 0, 0, 0, 0},
                                {"NOTES", 0, 1, 0, 0, 0}};
    strbuf name = {0};
    char shape[TEXT_SHAPE_SIZE], bytes[TEXT_U64_SIZE];
    const char *cells[TC_COUNT];
    printf("tensors   %" PRIu32 "\n", c->fi.tensor_count);
    table_start(cols, TC_COUNT);
    for (uint32_t i = 0; i < c->fi.tensor_count && !c->failed; i++)
        if (tensor_row_fill(c, i, &name, shape, bytes, cells)) table_measure(cols, TC_COUNT, cells);
    if (c->fi.tensor_count && !c->failed) table_print_header(stdout, "  ", cols, TC_COUNT);
    for (uint32_t i = 0; i < c->fi.tensor_count && !c->failed; i++)
        if (tensor_row_fill(c, i, &name, shape, bytes, cells)) table_print_row(stdout, "  ", cols, TC_COUNT, cells);
    sb_free(&name);
}

static void text_totals(const info_ctx *c, const totals *t)
{
    char a[TEXT_U64_SIZE], b[TEXT_U64_SIZE];
    printf("totals    %" PRIu32 " %s, %" PRIu32 " %s, %" PRIu32 " %s, %s %s", c->fi.module_count,
           plural(c->fi.module_count, "module", "modules"), c->fi.tensor_count,
           plural(c->fi.tensor_count, "tensor", "tensors"), c->fi.blob_count, plural(c->fi.blob_count, "blob", "blobs"),
           text_u64_grouped(a, t->params), plural(t->params, "parameter", "parameters"));
    /* Only worth saying when replacement tensors make the two differ. */
    if (t->module_params != t->params) printf(" (%s in modules)", text_u64_grouped(a, t->module_params));
    printf(", %s bytes stored, %s bytes raw\n", text_u64_grouped(a, t->stored), text_u64_grouped(b, t->raw));
}

static void print_text(info_ctx *c)
{
    totals t = compute_totals(c);
    if (c->failed) return;
    text_file_line(c);
    text_metadata(c);
    text_modules(c);
    text_tensors(c);
    if (!c->failed) text_totals(c, &t);
}

/* ---- JSON / YAML ----------------------------------------------------------- */

static void doc_shape(doc *d, const uint64_t *dims, uint32_t ndim)
{
    doc_seq_begin(d, 1);
    for (uint32_t i = 0; i < ndim && i < LORA_MAX_DIMS; i++) doc_u64(d, dims[i]);
    doc_seq_end(d);
}

static void doc_blob(info_ctx *c, doc *d, const char *key, uint32_t index)
{
    lora_blob b;
    doc_key(d, key);
    if (index == LORA_NO_BLOB || !get_blob(c, index, &b)) {
        doc_null(d);
        return;
    }
    doc_map_begin(d, 0);
    doc_kv_u64(d, "index", index);
    doc_kv_cstr(d, "dtype", dtype_name(b.dtype));
    doc_kv_cstr(d, "compression", compression_name(b.compression));
    doc_key(d, "shape");
    doc_shape(d, b.shape, b.ndim);
    doc_kv_u64(d, "numel", b.numel);
    doc_kv_u64(d, "offset", b.offset);
    doc_kv_u64(d, "stored_bytes", b.stored_size);
    doc_kv_u64(d, "raw_bytes", b.raw_size);
    doc_key(d, "checksum");
    doc_hex64(d, b.checksum);
    doc_map_end(d);
}

static void doc_meta_entry(doc *d, const lora_meta *m)
{
    doc_map_begin(d, 0);
    doc_kv_cstr(d, "key", m->key);
    doc_kv_cstr(d, "type", meta_type_name(m->type));
    switch (m->type) {
    case LORA_META_STRING:
        doc_kv_u64(d, "length", m->string_length);
        doc_key(d, "value");
        doc_str(d, m->string, m->string_length);
        break;
    case LORA_META_INT: doc_key(d, "value"); doc_i64(d, m->integer); break;
    case LORA_META_FLOAT: doc_key(d, "value"); doc_real(d, m->number, 0); break;
    case LORA_META_BOOL: doc_kv_bool(d, "value", m->integer != 0); break;
    }
    doc_map_end(d);
}

static void doc_module(info_ctx *c, doc *d, const lora_module *m)
{
    totals t = {0, 0, 0, 0};
    add_module_blobs(c, m, &t);
    doc_map_begin(d, 0);
    doc_kv_cstr(d, "name", m->name);
    doc_kv_cstr(d, "kind", kind_name(m->kind));
    doc_key(d, "base_shape");
    doc_shape(d, m->base_shape, m->base_ndim);
    doc_kv_u64(d, "rank", m->rank);
    doc_key(d, "alpha");
    doc_real(d, m->alpha, 1);
    doc_key(d, "scale");
    doc_real(d, m->scale, 1);
    doc_kv_cstr(d, "scaling", scaling_name(m->scaling));
    doc_key(d, "flags");
    doc_seq_begin(d, 1);
    if (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) doc_cstr(d, "fan_in_fan_out");
    doc_seq_end(d);
    doc_blob(c, d, "a", m->blob_a);
    doc_blob(c, d, "b", m->blob_b);
    doc_blob(c, d, "magnitude", m->blob_magnitude);
    doc_blob(c, d, "bias", m->blob_bias);
    doc_kv_u64(d, "parameters", t.params);
    doc_kv_u64(d, "stored_bytes", t.stored);
    doc_kv_u64(d, "raw_bytes", t.raw);
    doc_map_end(d);
}

static void doc_header(const info_ctx *c, doc *d)
{
    doc_kv_cstr(d, "file", c->file);
    doc_kv_u64(d, "format_major", c->fi.format_major);
    doc_kv_u64(d, "format_minor", c->fi.format_minor);
    doc_kv_u64(d, "file_size", c->fi.file_size);
    doc_kv_u64(d, "data_offset", c->fi.data_offset);
    doc_key(d, "header_checksum");
    doc_hex64(d, c->fi.header_checksum);
    doc_key(d, "counts");
    doc_map_begin(d, 0);
    doc_kv_u64(d, "metadata", c->fi.metadata_count);
    doc_kv_u64(d, "modules", c->fi.module_count);
    doc_kv_u64(d, "tensors", c->fi.tensor_count);
    doc_kv_u64(d, "blobs", c->fi.blob_count);
    doc_map_end(d);
}

static void doc_totals(const info_ctx *c, doc *d, const totals *t)
{
    doc_key(d, "totals");
    doc_map_begin(d, 0);
    doc_kv_u64(d, "modules", c->fi.module_count);
    doc_kv_u64(d, "tensors", c->fi.tensor_count);
    doc_kv_u64(d, "blobs", c->fi.blob_count);
    doc_kv_u64(d, "parameters", t->params);
    doc_kv_u64(d, "module_parameters", t->module_params);
    doc_kv_u64(d, "stored_bytes", t->stored);
    doc_kv_u64(d, "raw_bytes", t->raw);
    doc_map_end(d);
}

static void doc_body(info_ctx *c, doc *d, const totals *t)
{
    doc_map_begin(d, 0);
    doc_header(c, d);
    doc_key(d, "metadata");
    doc_seq_begin(d, 0);
    for (uint32_t i = 0; i < c->fi.metadata_count && !c->failed; i++) {
        lora_meta m;
        if (get_meta(c, i, &m)) doc_meta_entry(d, &m);
    }
    doc_seq_end(d);
    doc_key(d, "modules");
    doc_seq_begin(d, 0);
    for (uint32_t i = 0; i < c->fi.module_count && !c->failed; i++) {
        lora_module m;
        if (get_module(c, i, &m)) doc_module(c, d, &m);
    }
    doc_seq_end(d);
    doc_key(d, "tensors");
    doc_seq_begin(d, 0);
    for (uint32_t i = 0; i < c->fi.tensor_count && !c->failed; i++) {
        lora_tensor tn;
        if (!get_tensor(c, i, &tn)) break;
        doc_map_begin(d, 0);
        doc_kv_cstr(d, "name", tn.name);
        doc_blob(c, d, "blob", tn.blob);
        doc_map_end(d);
    }
    doc_seq_end(d);
    doc_totals(c, d, t);
    doc_map_end(d);
}

/* Returns 0, or the exit code of a failure it has reported. */
static int print_doc(info_ctx *c, doc_format format)
{
    totals t = compute_totals(c);
    if (c->failed) return EXIT_INVALID;
    doc *d = doc_open(stdout, format);
    if (!d) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return EXIT_USAGE;
    }
    doc_body(c, d, &t);
    if (doc_finish(d) != 0) {
        /* A write error is reported once, by cli_finish_stdout. */
        if (!ferror(stdout))
            fprintf(stderr, "%s: cannot produce the %s output\n", PROG, format == DOC_JSON ? "JSON" : "YAML");
        return EXIT_USAGE;
    }
    return c->failed ? EXIT_INVALID : EXIT_OK;
}

int main(int argc, char **argv)
{
    out_mode mode;
    const char *file;
    int code = parse_args(argc, argv, &mode, &file);
    if (code >= 0) return code;

    lora_reader *r = NULL;
    lora_error err;
    memset(&err, 0, sizeof err);
    err.offset = LORA_NO_OFFSET;
    lora_status st = lora_reader_open_file(file, NULL, &r, &err);
    if (st != LORA_OK) {
        if (err.status == LORA_OK) err.status = st;
        cli_print_error(PROG, file, &err);
        return cli_exit_code(st);
    }

    info_ctx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.file = file;
    lora_reader_file_info(r, &c.fi);
    if (mode == OUT_TEXT) {
        print_text(&c);
        code = c.failed ? EXIT_INVALID : EXIT_OK;
    } else {
        code = print_doc(&c, mode == OUT_JSON ? DOC_JSON : DOC_YAML);
    }
    lora_reader_free(r);
    return cli_finish_stdout(PROG, code);
}
