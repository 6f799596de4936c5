/*
 * lora-merge: merge LoRA adapters into a base model (safetensors, sharded
 * safetensors, GGUF), streaming, crash-safe, the same bytes for any thread
 * count. --check only checks that every module finds its base tensor.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lora_ops.h"
#include "common/cli.h"
#include "common/text.h"

#define PROG "lora-merge"
#define SYNOPSIS "lora-merge --base MODEL --adapter A[:WEIGHT] [--adapter B[:WEIGHT] ...] -o OUT " \
                 "[--dtype keep|f32|f16|bf16] [--threads N] [--unmerge] [--check] [-q] [-v]"

static void print_help(void)
{
    printf("Usage: %s\n"
           "Merge LoRA adapters into a base model: W' = W + WEIGHT * s * (B @ A) per module\n"
           "(DoRA, LoRA biases and replacement tensors included), accumulated in float64 and\n"
           "rounded once. Every other tensor is copied bit for bit. The output is the same,\n"
           "byte for byte, whatever --threads is.\n"
           "\n"
           "MODEL is a .safetensors file, a directory with model.safetensors.index.json and\n"
           "its shards (OUT is then a directory, sharded the same way), or a GGUF model\n"
           "(F32/F16/BF16; Q8_0 and Q4_0 tensors are dequantized, merged and requantized).\n"
           "Adapters are .lora files or anything lora-convert reads.\n"
           "\n"
           "Options:\n"
           "  --base MODEL           the base model\n"
           "  --adapter A[:WEIGHT]   an adapter and its weight (default 1); repeat for more\n"
           "  -o, --output OUT       where to write (crash-safely; never over an input)\n"
           "  --dtype T              keep (default), f32, f16 or bf16: dtype of the float tensors\n"
           "  --threads N            compute threads (default: the online CPUs)\n"
           "  --unmerge              subtract the adapters instead (not for DoRA or replacements)\n"
           "  --accumulate f64|f32   sum B @ A in float64 (default) or in fp32 as PEFT does\n"
           "  --check                only check that every module finds its base tensor with\n"
           "                         the expected shape; write nothing\n"
           "  --map-prefix FROM=TO   read module names starting with FROM as starting with TO\n"
           "                         (repeatable; the first that applies is used)\n"
           "  --arch NAME, --base-config FILE\n"
           "                         passed to the import of non-.lora adapters (see lora-convert)\n"
           "  -q, --quiet            no progress bar, no summary\n"
           "  -v, --verbose          also print the peak resident memory on standard error\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and exit\n"
           "\n"
           "A progress bar is drawn on standard error when it is a terminal. The summary goes\n"
           "to standard output: tensors merged, bytes written, seconds, GB/s.\n"
           "\n"
           "Exit status:\n"
           "  0  merged (or, with --check, every module matches)\n"
           "  1  an input is invalid, or does not fit the base (missing tensor, shape)\n"
           "  2  usage error, or an I/O error (missing input, output not writable, disk full)\n",
           SYNOPSIS);
}

typedef struct {
    lora_merge_options mo;
    lora_convert_options co;
    lora_merge_adapter *adapters;
    lora_merge_rename *renames;
    char **owned;               /* strings split off the arguments */
    size_t nowned;
    int quiet, check, verbose;
} merge_args;

/* ---- arguments ------------------------------------------------------------------- */

/* "PATH:WEIGHT" when what follows the last ':' is a finite number.
 * Returns 0 when out of memory. */
static int parse_adapter(merge_args *m, const char *v, lora_merge_adapter *out)
{
    out->path = v;
    out->weight = 1.0f;
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || !colon[1]) return 1;
    char *end;
    errno = 0;
    float w = strtof(colon + 1, &end);
    if (*end || errno || !isfinite(w)) return 1;
    size_t n = (size_t)(colon - v);
    char *p = malloc(n + 1);
    if (!p) return 0;
    memcpy(p, v, n);
    p[n] = '\0';
    m->owned[m->nowned++] = p;
    out->path = p;
    out->weight = w;
    return 1;
}

static int parse_rename(merge_args *m, const char *v, lora_merge_rename *out)
{
    const char *eq = v ? strchr(v, '=') : NULL;
    if (!eq || eq == v) return 0;
    size_t n = (size_t)(eq - v);
    char *from = malloc(n + 1);
    if (!from) return 0;
    memcpy(from, v, n);
    from[n] = '\0';
    m->owned[m->nowned++] = from;
    out->from = from;
    out->to = eq + 1;
    return 1;
}

static int is_opt(const cli_arg *arg, char letter, const char *name, const char **v)
{
    if (letter && arg->kind == CLI_SHORT && arg->letter == letter) return 1;
    if (arg->kind != CLI_LONG) return 0;
    return !strcmp(arg->text, name) || (v && cli_long_value(arg->text, name, v));
}

static int parse_dtype(const char *v, int32_t *out)
{
    lora_dtype d;
    if (v && !strcmp(v, "keep")) {
        *out = -1;
        return 1;
    }
    if (!v || lora_dtype_from_name(v, &d) != LORA_OK || d > LORA_DTYPE_BF16) return 0;
    *out = (int32_t)d;
    return 1;
}

static int parse_threads(const char *v, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || n > 256 || v[0] == '-') return 0;
    *out = (uint32_t)n;
    return 1;
}

/* One option with a value; returns 0 if handled, -1 if not this option, or an exit code. */
static int value_option(merge_args *m, cli_args *a, const cli_arg *arg)
{
    const char *v = NULL;
    if (is_opt(arg, 'o', "--output", &v)) {
        if (!v && !(v = cli_value(a))) return cli_usage_error(PROG, SYNOPSIS, "error: option needs a value:", "-o");
        m->mo.output = v;
    } else if (is_opt(arg, 0, "--base", &v)) {
        if (!v && !(v = cli_value(a))) return cli_usage_error(PROG, SYNOPSIS, "error: option needs a value:", "--base");
        m->mo.base = v;
    } else if (is_opt(arg, 0, "--adapter", &v)) {
        if (!v && !(v = cli_value(a)))
            return cli_usage_error(PROG, SYNOPSIS, "error: option needs a value:", "--adapter");
        if (!parse_adapter(m, v, &m->adapters[m->mo.adapter_count++]))
            return cli_usage_error(PROG, SYNOPSIS, "error: out of memory", NULL);
    } else if (is_opt(arg, 0, "--dtype", &v)) {
        if (!v) v = cli_value(a);
        if (!parse_dtype(v, &m->mo.dtype))
            return cli_usage_error(PROG, SYNOPSIS, "error: --dtype must be keep, f32, f16 or bf16, not", v ? v : "");
    } else if (is_opt(arg, 0, "--threads", &v)) {
        if (!v) v = cli_value(a);
        if (!parse_threads(v, &m->mo.threads))
            return cli_usage_error(PROG, SYNOPSIS, "error: --threads must be 0 (all CPUs) to 256, not", v ? v : "");
    } else if (is_opt(arg, 0, "--map-prefix", &v)) {
        if (!v) v = cli_value(a);
        if (!parse_rename(m, v, &m->renames[m->mo.rename_count]))
            return cli_usage_error(PROG, SYNOPSIS, "error: --map-prefix needs FROM=TO with FROM not empty, not",
                                   v ? v : "");
        m->mo.rename_count++;
    } else if (is_opt(arg, 0, "--accumulate", &v)) {
        if (!v) v = cli_value(a);
        if (!v || (strcmp(v, "f32") && strcmp(v, "f64")))
            return cli_usage_error(PROG, SYNOPSIS, "error: --accumulate must be f32 or f64, not", v ? v : "");
        if (!strcmp(v, "f32")) m->mo.flags |= LORA_MERGE_ACCUMULATE_F32;
        else m->mo.flags &= ~LORA_MERGE_ACCUMULATE_F32;
    } else if (is_opt(arg, 0, "--arch", &v)) {
        if (!v && !(v = cli_value(a))) return cli_usage_error(PROG, SYNOPSIS, "error: option needs a value:", "--arch");
        m->co.arch = v;
    } else if (is_opt(arg, 0, "--base-config", &v)) {
        if (!v && !(v = cli_value(a)))
            return cli_usage_error(PROG, SYNOPSIS, "error: option needs a value:", "--base-config");
        m->co.base_config = v;
    } else {
        return -1;
    }
    return 0;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, merge_args *m)
{
    cli_args a;
    cli_arg arg;
    cli_args_init(&a, argc, argv);
    while (cli_next(&a, &arg) != CLI_END) {
        int rc = value_option(m, &a, &arg);
        if (rc > 0) return rc;
        if (rc == 0) continue;
        if (arg.kind == CLI_OPERAND) {
            return cli_usage_error(PROG, SYNOPSIS, "error: unexpected operand (adapters go after --adapter):",
                                   arg.text);
        } else if (is_opt(&arg, 'h', "--help", NULL)) {
            print_help();
            return EXIT_OK;
        } else if (is_opt(&arg, 'V', "--version", NULL)) {
            cli_print_version(PROG);
            return EXIT_OK;
        } else if (is_opt(&arg, 'q', "--quiet", NULL)) {
            m->quiet = 1;
        } else if (is_opt(&arg, 'v', "--verbose", NULL)) {
            m->verbose = 1;
        } else if (is_opt(&arg, 0, "--unmerge", NULL)) {
            m->mo.flags |= LORA_MERGE_UNMERGE;
        } else if (is_opt(&arg, 0, "--check", NULL)) {
            m->check = 1;
        } else {
            char letter[3] = {'-', arg.letter, '\0'};
            return cli_usage_error(PROG, SYNOPSIS, "error: unknown option:", arg.kind == CLI_SHORT ? letter : arg.text);
        }
    }
    if (!m->mo.base) return cli_usage_error(PROG, SYNOPSIS, "error: missing --base MODEL", NULL);
    if (!m->mo.adapter_count) return cli_usage_error(PROG, SYNOPSIS, "error: missing --adapter", NULL);
    if (!m->check && !m->mo.output) return cli_usage_error(PROG, SYNOPSIS, "error: missing -o OUT", NULL);
    if (!strcmp(m->mo.base, "-")) return cli_reject_stdin(PROG, m->mo.base) ? EXIT_USAGE : EXIT_USAGE;
    return -1;
}

/* ---- progress ------------------------------------------------------------------------ */

typedef struct {
    double last;
    int drawn;
} progress_state;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_cb(void *opaque, const lora_merge_progress *p)
{
    progress_state *s = opaque;
    double t = now();
    int end = p->tensors_done == p->tensors_total;
    if (!end && t - s->last < 0.1) return;
    s->last = t;
    if (end) {
        if (s->drawn) fprintf(stderr, "\r%79s\r", "");
        s->drawn = 0;
        return;
    }
    double f = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 1.0;
    char bar[21];
    int filled = (int)(f * 20.0);
    for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
    bar[20] = '\0';
    strbuf name = {0};
    text_escape(&name, p->tensor, strlen(p->tensor), 0, 24);
    fprintf(stderr, "\r[%s] %3d%% %6.2f/%.2f GB %u/%u %-24s", bar, (int)(f * 100.0), (double)p->bytes_done / 1e9,
            (double)p->bytes_total / 1e9, p->tensors_done, p->tensors_total, name.failed ? "" : sb_str(&name));
    sb_free(&name);
    s->drawn = 1;
}

/* ---- output ------------------------------------------------------------------------------ */

static void print_summary(const merge_args *m, const lora_merge_report *r)
{
    char shown[CLI_DISPLAY_MAX], bytes[TEXT_U64_SIZE];
    if (m->check) {
        printf("%s: OK: %u %s of %zu %s match the base (%s, %u tensors): %u to merge, %u to replace",
               cli_display(shown, m->mo.base), r->modules, r->modules == 1 ? "module" : "modules",
               m->mo.adapter_count, m->mo.adapter_count == 1 ? "adapter" : "adapters", r->base_format, r->tensors,
               r->merged, r->replaced);
        if (r->requantized) printf(", %u to requantize", r->requantized);
        printf("\n");
        return;
    }
    double gbs = r->seconds > 0 ? (double)r->bytes_out / r->seconds / 1e9 : 0.0;
    printf("%s: merged %u %s (%u %s), replaced %u, converted %u, copied %u; %s bytes in %.2f s (%.2f GB/s, %u "
           "%s, %s)\n",
           cli_display(shown, m->mo.output), r->merged, r->merged == 1 ? "tensor" : "tensors", r->modules,
           r->modules == 1 ? "module" : "modules", r->replaced, r->converted, r->copied,
           text_u64_grouped(bytes, r->bytes_out), r->seconds, gbs, r->threads, r->threads == 1 ? "thread" : "threads",
           r->isa);
    if (r->requantized)
        printf("%s: requantized %u %s (Q8_0: %u, Q4_0: %u): dequantized, merged and quantized again, which "
               "rounds them once more\n",
               cli_display(shown, m->mo.output), r->requantized, r->requantized == 1 ? "tensor" : "tensors",
               r->requantized_q8_0, r->requantized_q4_0);
}

/* Peak resident set: getrusage's ru_maxrss and the kernel's VmHWM (both
 * count the mapped file pages the merge touched). */
static void print_memory(void)
{
    struct rusage ru;
    double maxrss = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : -1.0, hwm = -1.0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) hwm = strtod(line + 6, NULL) / 1024.0;
    if (f) fclose(f);
    fprintf(stderr, "%s: peak resident memory %.1f MiB (ru_maxrss), %.1f MiB (VmHWM)\n", PROG, maxrss, hwm);
}

static void free_args(merge_args *m)
{
    for (size_t i = 0; i < m->nowned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->adapters);
    free(m->renames);
}

int main(int argc, char **argv)
{
    merge_args m;
    memset(&m, 0, sizeof m);
    lora_merge_options mo = LORA_MERGE_OPTIONS_INIT;
    lora_convert_options co = LORA_CONVERT_OPTIONS_INIT;
    m.mo = mo;
    m.co = co;
    size_t n = (size_t)(argc > 0 ? argc : 1);
    m.adapters = calloc(n, sizeof *m.adapters);
    m.renames = calloc(n, sizeof *m.renames);
    m.owned = calloc(2 * n, sizeof *m.owned);
    if (!m.adapters || !m.renames || !m.owned) {
        fprintf(stderr, "%s: error: out of memory\n", PROG);
        return EXIT_USAGE;
    }
    int rc = parse_args(argc, argv, &m);
    if (rc >= 0) {
        free_args(&m);
        return cli_finish_stdout(PROG, rc);
    }
    m.mo.adapters = m.adapters;
    m.mo.renames = m.renames;
    m.mo.convert = &m.co;
    progress_state ps = {0.0, 0};
    if (!m.quiet && !m.check && isatty(STDERR_FILENO)) {
        m.mo.progress = progress_cb;
        m.mo.progress_opaque = &ps;
    }
    lora_merge_report r;
    lora_error err;
    lora_status st = m.check ? lora_merge_check(&m.mo, &r, &err) : lora_merge(&m.mo, &r, &err);
    if (ps.drawn) fprintf(stderr, "\r%79s\r", "");
    if (st != LORA_OK) {
        cli_print_error(PROG, r.error_path ? r.error_path : m.mo.base, &err);
        free_args(&m);
        return cli_exit_code(st);
    }
    if (!m.quiet) print_summary(&m, &r);
    if (m.verbose) print_memory();
    free_args(&m);
    return cli_finish_stdout(PROG, EXIT_OK);
}
