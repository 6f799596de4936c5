/*
 * test_fault_outputs.c - every output path of liblora-ops through a failing
 * I/O table (lib/write/io.h): a safetensors file (lora_st_write_file_io),
 * the .lora, GGUF, PEFT and MLX outputs of lora_convert_io, and lora-merge's
 * output (lora_merge_run with hooks.io: positional writes and
 * copy_file_range go through the table too), single-file and sharded.
 *
 * For each path and each fault - EINTR, a short write, EIO or ENOSPC at the
 * N-th call, or a full disk (ENOSPC on every write from the N-th call on) -
 * N runs 1, 2, ... until a run no longer reaches call N:
 *   - EINTR and short writes: success, output byte-identical to a clean run;
 *   - EIO / ENOSPC: LORA_E_IO / LORA_E_NO_SPACE, returned and in err;
 *     every target file as it was before the call (each N is run twice:
 *     over old files, and with none), and nothing else in the directory:
 *     no temp file;
 *   - once a rename has published one file, a later fault (the directory
 *     fsync, or a later file of a multi-file output) cannot take it back:
 *     then each target must be whole, old or new, never partial. Such runs
 *     are counted, and those where old and new files are mixed are printed;
 *   - a fault on the close of the directory after the last rename has no
 *     one left to report to: success, new output.
 * Cross-checks: the clean run through the table is byte-identical to a run
 * on libc (NULL table), and a merge whose copy_file_range always says EXDEV
 * (the read-and-write fallback) gives the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "lora_ops.h"
#include "merge_support.h"
#include "ops/convert.h"
#include "ops/merge.h"
#include "write/io.h"

#define MAX_AT 4000
#define MAX_TARGETS 4

/* ---- the failing table ---------------------------------------------------------------- */

typedef enum { F_EINTR, F_SHORT, F_EIO, F_ENOSPC, F_FULL, F_COUNT } fault;
static const char *const fault_names[] = {"EINTR", "short write", "EIO", "ENOSPC", "full disk"};

typedef enum { C_OPEN, C_WRITE, C_PWRITE, C_COPY, C_FCHMOD, C_FSYNC, C_CLOSE, C_CLOSE_DIR, C_RENAME, C_UNLINK } call;
static const char *const call_names[] = {"openat", "write",  "pwrite",        "copy_file_range", "fchmod",
                                         "fsync",  "close",  "close (a dir)", "renameat",        "unlinkat"};

typedef struct {
    fault kind;
    int at;                /* 1-based call that fails; for F_FULL the first data call that may */
    int no_copy_range;     /* copy_file_range always fails with EXDEV (the fallback path) */
    int off;               /* pass everything through */
    atomic_int calls;
    atomic_int renames;    /* successful renames so far */
    atomic_int fired;      /* faults delivered */
    atomic_int hit_kind;   /* the call the first fault hit */
    atomic_int renames_before;
} injector;

/* 1 if this call is to fail (a short write still fails "softly"). Merge
 * threads call concurrently: only atomics here. */
static int hit(injector *j, call k, int data_call)
{
    if (j->off) return 0;
    int n = atomic_fetch_add(&j->calls, 1) + 1;
    int fail = j->kind == F_FULL ? data_call && n >= j->at : n == j->at;
    if (fail && atomic_fetch_add(&j->fired, 1) == 0) {
        atomic_store(&j->hit_kind, (int)k);
        atomic_store(&j->renames_before, atomic_load(&j->renames));
    }
    return fail;
}

static int fault_errno(const injector *j) { return j->kind == F_EINTR ? EINTR : j->kind == F_EIO ? EIO : ENOSPC; }

/* Calls without a byte count: a short write means nothing to them. */
static int fails_hard(injector *j, call k)
{
    if (!hit(j, k, 0) || j->kind == F_SHORT) return 0;
    errno = fault_errno(j);
    return 1;
}

static int j_openat(void *c, int dirfd, const char *p, int flags, unsigned mode)
{
    return fails_hard(c, C_OPEN) ? -1 : openat(dirfd, p, flags, (mode_t)mode);
}

static ssize_t j_write(void *c, int fd, const void *b, size_t n)
{
    injector *j = c;
    if (!hit(j, C_WRITE, 1)) return write(fd, b, n);
    if (j->kind == F_SHORT) return write(fd, b, n > 1 ? n / 2 : n);
    errno = fault_errno(j);
    return -1;
}

static ssize_t j_pwrite(void *c, int fd, const void *b, size_t n, uint64_t off)
{
    injector *j = c;
    if (!hit(j, C_PWRITE, 1)) return pwrite(fd, b, n, (off_t)off);
    if (j->kind == F_SHORT) return pwrite(fd, b, n > 1 ? n / 2 : n, (off_t)off);
    errno = fault_errno(j);
    return -1;
}

static ssize_t j_copy(void *c, int in_fd, uint64_t *in_off, int out_fd, uint64_t *out_off, size_t n)
{
    injector *j = c;
    if (j->no_copy_range) {
        errno = EXDEV;
        return -1;
    }
    size_t len = n;
    if (hit(j, C_COPY, 1)) {
        if (j->kind != F_SHORT) {
            errno = fault_errno(j);
            return -1;
        }
        if (n > 1) len = n / 2;
    }
    loff_t a = (loff_t)*in_off, b = (loff_t)*out_off;
    ssize_t r = copy_file_range(in_fd, &a, out_fd, &b, len, 0);
    *in_off = (uint64_t)a;
    *out_off = (uint64_t)b;
    return r;
}

static int j_fchmod(void *c, int fd, unsigned mode) { return fails_hard(c, C_FCHMOD) ? -1 : fchmod(fd, (mode_t)mode); }
static int j_fsync(void *c, int fd) { return fails_hard(c, C_FSYNC) ? -1 : fsync(fd); }

static int j_close(void *c, int fd)
{
    struct stat st;
    int dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    int fail = fails_hard(c, dir ? C_CLOSE_DIR : C_CLOSE);
    int e = errno;
    int r = close(fd); /* Linux releases the descriptor whatever close reports */
    if (!fail) return r;
    errno = e;
    return -1;
}

static int j_renameat(void *c, int a, const char *from, int b, const char *to)
{
    injector *j = c;
    if (fails_hard(j, C_RENAME)) return -1;
    int r = renameat(a, from, b, to);
    if (r == 0) atomic_fetch_add(&j->renames, 1);
    return r;
}

static int j_unlinkat(void *c, int dirfd, const char *p, int flags)
{
    return fails_hard(c, C_UNLINK) ? -1 : unlinkat(dirfd, p, flags);
}

static lora_io table_for(injector *j)
{
    lora_io io = {j_openat, j_write, j_fchmod, j_fsync, j_close, j_renameat, j_unlinkat, j, j_pwrite, j_copy};
    return io;
}

/* ---- files ---------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n;
    int exists;
} bytes;

static bytes slurp(const char *path)
{
    bytes b = {NULL, 0, 0};
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    size_t cap = 1 << 16;
    b.p = malloc(cap);
    assert_non_null(b.p);
    size_t k;
    while ((k = fread(b.p + b.n, 1, cap - b.n, f)) > 0) {
        b.n += k;
        if (b.n == cap) {
            cap *= 2;
            b.p = realloc(b.p, cap);
            assert_non_null(b.p);
        }
    }
    fclose(f);
    b.exists = 1;
    return b;
}

static int same(const bytes *a, const bytes *b)
{
    return a->exists == b->exists && a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

static void put_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Entries of `dir` other than the targets' names; temp files counted apart. */
static void strays(const char *dir, char *const *names, size_t n, int *temps, int *others)
{
    *temps = *others = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int known = 0;
        for (size_t i = 0; i < n; i++) known |= strcmp(e->d_name, names[i]) == 0;
        size_t l = strlen(e->d_name);
        if (known) continue;
        if (e->d_name[0] == '.' && l > 4 && !strcmp(e->d_name + l - 4, ".tmp")) (*temps)++;
        else (*others)++;
    }
    closedir(d);
}

/* ---- the outputs under test ----------------------------------------------------------- */

typedef struct scenario scenario;
struct scenario {
    const char *name;
    lora_status (*run)(const scenario *s, const lora_io *io, lora_error *err);
    char *dir;                        /* holds the targets and nothing else */
    char *target_names[MAX_TARGETS];  /* inside dir */
    size_t ntargets;
    char *out;                        /* what the call is given as its output */
    char *in;                         /* its input (adapter or base) */
    char *adapter;                    /* merge: the adapter */
    lora_format to;
    int no_copy_range;
};

typedef struct {
    char root[512];
    char *in_dir, *adapter, *base, *sharded;
} world;

static world W;

static lora_status run_st(const scenario *s, const lora_io *io, lora_error *err)
{
    static const uint64_t big_shape[2] = {128, 160}, small_shape[2] = {3, 5}, tiny_shape[1] = {7};
    static float big[128 * 160];
    static uint16_t small[15], tiny[7];
    uint64_t seed = 7;
    for (size_t i = 0; i < 128 * 160; i++) big[i] = (float)ms_uniform(&seed, 1.0);
    for (size_t i = 0; i < 15; i++) small[i] = (uint16_t)ms_rng(&seed);
    for (size_t i = 0; i < 7; i++) tiny[i] = (uint16_t)ms_rng(&seed);
    lora_st_entry e[3];
    memset(e, 0, sizeof e);
    e[0].name = "big", e[0].dtype = LORA_ST_F32, e[0].ndim = 2, e[0].size = sizeof big;
    memcpy(e[0].shape, big_shape, sizeof big_shape);
    e[1].name = "small", e[1].dtype = LORA_ST_F16, e[1].ndim = 2, e[1].size = sizeof small;
    memcpy(e[1].shape, small_shape, sizeof small_shape);
    e[2].name = "tiny", e[2].dtype = LORA_ST_BF16, e[2].ndim = 1, e[2].size = sizeof tiny;
    memcpy(e[2].shape, tiny_shape, sizeof tiny_shape);
    const lora_st_pair meta = {"format", "pt"};
    const void *const data[3] = {big, small, tiny};
    return lora_st_write_file_io(NULL, io, s->out, NULL, e, 3, &meta, 1, data, err);
}

static lora_status run_convert(const scenario *s, const lora_io *io, lora_error *err)
{
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.to = s->to;
    o.arch = "llama";
    return lora_convert_io(s->in, s->out, &o, io, err);
}

static lora_status run_merge(const scenario *s, const lora_io *io, lora_error *err)
{
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(s->adapter);
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    o.base = s->in;
    o.adapters = &a;
    o.adapter_count = 1;
    o.output = s->out;
    o.threads = 2;
    /* small blocks: many positional writes from both threads */
    lora_merge_hooks h = {NULL, NULL, io, 4096, NULL, NULL};
    lora_merge_report rep;
    return lora_merge_run(&o, 0, &h, &rep, err);
}

/* ---- inputs ---------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint64_t out, in;
    uint32_t rank;
} modules[] = {
    {"model.layers.0.self_attn.v_proj", 128, 640, 32}, /* A is 80 KiB: past the 64 KiB write stage */
    {"model.layers.0.mlp.down_proj", 256, 96, 32},     /* one rank for all: MLX has only one */
    {"model.layers.1.self_attn.o_proj", 128, 128, 32},
};
#define NMOD (sizeof modules / sizeof modules[0])

static void make_adapter(const char *path)
{
    ms_module m[NMOD];
    for (size_t i = 0; i < NMOD; i++) {
        uint64_t shape[2] = {modules[i].out, modules[i].in};
        ms_module_init(&m[i], modules[i].name, LORA_KIND_LINEAR, 0, modules[i].rank, 2.0f * (float)modules[i].rank,
                       2, shape, 0, 0, 100 + i);
    }
    assert_int_equal(ms_write_adapter(path, m, NMOD, NULL, 0), LORA_OK);
    for (size_t i = 0; i < NMOD; i++) ms_module_free(&m[i]);
}

typedef struct {
    char name[96];
    lora_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[2];
} btensor;

/* The base: the three targets plus untouched tensors (copied file to file). */
static size_t base_tensors(btensor *t)
{
    size_t n = 0;
    for (size_t i = 0; i < NMOD; i++, n++) {
        snprintf(t[n].name, sizeof t[n].name, "%s.weight", modules[i].name);
        t[n].dtype = i == 2 ? LORA_ST_BF16 : LORA_ST_F16;
        t[n].ndim = 2, t[n].shape[0] = modules[i].out, t[n].shape[1] = modules[i].in;
    }
    snprintf(t[n].name, sizeof t[n].name, "model.embed_tokens.weight");
    t[n].dtype = LORA_ST_F16, t[n].ndim = 2, t[n].shape[0] = 512, t[n].shape[1] = 64;
    n++;
    snprintf(t[n].name, sizeof t[n].name, "model.norm.weight");
    t[n].dtype = LORA_ST_F32, t[n].ndim = 1, t[n].shape[0] = 128, t[n].shape[1] = 0;
    return n + 1;
}

/* Tensors [first, first + count) of the base as one safetensors file. */
static void write_base(const char *path, const btensor *t, size_t first, size_t count, uint64_t seed)
{
    lora_st_entry e[8];
    void *data[8] = {0};
    memset(e, 0, sizeof e);
    for (size_t i = 0; i < count; i++) {
        const btensor *b = &t[first + i];
        uint64_t numel = b->shape[0] * (b->ndim == 2 ? b->shape[1] : 1);
        size_t esz = b->dtype == LORA_ST_F32 ? 4 : 2;
        e[i].name = b->name, e[i].dtype = b->dtype, e[i].ndim = b->ndim, e[i].size = numel * esz;
        memcpy(e[i].shape, b->shape, sizeof b->shape);
        uint8_t *p = malloc((size_t)e[i].size);
        assert_non_null(p);
        for (uint64_t k = 0; k < numel; k++) {
            double v = ms_uniform(&seed, 0.5);
            ms_store(b->dtype == LORA_ST_F32 ? MS_F32 : b->dtype == LORA_ST_F16 ? MS_F16 : MS_BF16, v, p + k * esz);
        }
        data[i] = p;
    }
    lora_error err;
    assert_int_equal(lora_st_write_file(NULL, path, NULL, e, (uint32_t)count, NULL, 0, (const void *const *)data,
                                        &err), LORA_OK);
    for (size_t i = 0; i < count; i++) free(data[i]);
}

static void make_inputs(void)
{
    ms_tmpdir(W.root, sizeof W.root);
    W.in_dir = join(W.root, "in");
    assert_int_equal(mkdir(W.in_dir, 0777), 0);
    W.adapter = join(W.in_dir, "adapter.lora");
    make_adapter(W.adapter);
    btensor t[8];
    size_t n = base_tensors(t);
    W.base = join(W.in_dir, "model.safetensors");
    write_base(W.base, t, 0, n, 1);
    /* the same tensors in two shards with an index */
    W.sharded = join(W.in_dir, "sharded");
    assert_int_equal(mkdir(W.sharded, 0777), 0);
    char *s1 = join(W.sharded, "model-00001-of-00002.safetensors"), *s2 = join(W.sharded, "model-00002-of-00002.safetensors");
    write_base(s1, t, 0, 2, 1);
    write_base(s2, t, 2, n - 2, 2);
    char index[2048];
    int len = snprintf(index, sizeof index, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (size_t i = 0; i < n; i++)
        len += snprintf(index + len, sizeof index - (size_t)len, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                        i ? ", " : "", t[i].name, i < 2 ? 1 : 2);
    len += snprintf(index + len, sizeof index - (size_t)len, "}}\n");
    char *ip = join(W.sharded, "model.safetensors.index.json");
    put_file(ip, index, (size_t)len);
    free(ip);
    free(s1);
    free(s2);
}

static void scenario_init(scenario *s, const char *name, const char *subdir)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    s->dir = join(W.root, subdir);
    assert_int_equal(mkdir(s->dir, 0777), 0);
}

static void add_target(scenario *s, const char *name)
{
    assert_true(s->ntargets < MAX_TARGETS);
    s->target_names[s->ntargets++] = strdup(name);
}

static void scenario_free(scenario *s)
{
    for (size_t i = 0; i < s->ntargets; i++) free(s->target_names[i]);
    free(s->dir);
    free(s->out);
}

/* ---- the loop --------------------------------------------------------------------------------- */

typedef struct {
    int runs, failed, after_rename, mixed, silent;
} tally;

static void reset_targets(const scenario *s, int with_old)
{
    for (size_t i = 0; i < s->ntargets; i++) {
        char *p = join(s->dir, s->target_names[i]);
        (void)unlink(p);
        if (with_old) {
            char old[128];
            int n = snprintf(old, sizeof old, "previous %s of %s\n", s->target_names[i], s->name);
            put_file(p, old, (size_t)n);
            (void)chmod(p, 0640);
        }
        free(p);
    }
}

static void snapshot(const scenario *s, bytes *b)
{
    for (size_t i = 0; i < s->ntargets; i++) {
        char *p = join(s->dir, s->target_names[i]);
        b[i] = slurp(p);
        free(p);
    }
}

static void free_snap(bytes *b, size_t n)
{
    for (size_t i = 0; i < n; i++) free(b[i].p);
}

static void check_dir_clean(const scenario *s, const char *what)
{
    int temps, others;
    strays(s->dir, s->target_names, s->ntargets, &temps, &others);
    if (temps || others) fail_msg("%s: %s: %d temp files and %d other files left", s->name, what, temps, others);
}

/* The output of a clean run, through the table and through libc: equal. */
static void reference(const scenario *s, bytes *ref)
{
    reset_targets(s, 0);
    lora_error err;
    lora_status st = s->run(s, NULL, &err);
    if (st != LORA_OK) fail_msg("%s: clean run: %s: %s", s->name, lora_status_name(st), err.detail);
    snapshot(s, ref);
    for (size_t i = 0; i < s->ntargets; i++) assert_true(ref[i].exists && ref[i].n > 0);
    injector j;
    memset(&j, 0, sizeof j);
    j.off = 1;
    j.no_copy_range = s->no_copy_range;
    lora_io io = table_for(&j);
    reset_targets(s, 1);
    st = s->run(s, &io, &err);
    if (st != LORA_OK) fail_msg("%s: clean run through the table: %s: %s", s->name, lora_status_name(st), err.detail);
    bytes again[MAX_TARGETS];
    snapshot(s, again);
    for (size_t i = 0; i < s->ntargets; i++)
        if (!same(&again[i], &ref[i])) fail_msg("%s: %s differs between libc and the table", s->name, s->target_names[i]);
    free_snap(again, s->ntargets);
    check_dir_clean(s, "clean run");
}

/* One run with the fault at call `at`: 1 when the fault was never reached. */
static int one_run(const scenario *s, fault kind, int at, int with_old, const bytes *ref, tally *t)
{
    reset_targets(s, with_old);
    bytes before[MAX_TARGETS], after[MAX_TARGETS];
    snapshot(s, before);
    injector j;
    memset(&j, 0, sizeof j);
    j.kind = kind;
    j.at = at;
    j.no_copy_range = s->no_copy_range;
    lora_io io = table_for(&j);
    lora_error err;
    memset(&err, 0, sizeof err);
    lora_status st = s->run(s, &io, &err);
    snapshot(s, after);
    char what[160];
    snprintf(what, sizeof what, "%s at call %d (%s)", fault_names[kind], at, with_old ? "old files" : "no files");
    check_dir_clean(s, what);
    int fired = atomic_load(&j.fired) > 0, hit_kind = atomic_load(&j.hit_kind);
    int renamed = atomic_load(&j.renames_before);
    t->runs++;
    int all_new = 1, all_old = 1;
    for (size_t i = 0; i < s->ntargets; i++) {
        all_new &= same(&after[i], &ref[i]);
        all_old &= same(&after[i], &before[i]);
    }
    if (st == LORA_OK) {
        /* Reaching no fault, a soft one, or the close of the directory at the very end. */
        if (fired && kind != F_EINTR && kind != F_SHORT && hit_kind != C_CLOSE_DIR)
            fail_msg("%s: %s: succeeded although its %s failed", s->name, what, call_names[hit_kind]);
        if (fired && kind != F_EINTR && kind != F_SHORT) t->silent++;
        if (!all_new) fail_msg("%s: %s: succeeded but the output differs from a clean run", s->name, what);
    } else {
        if (!fired || kind == F_EINTR || kind == F_SHORT)
            fail_msg("%s: %s: %s: %s", s->name, what, lora_status_name(st), err.detail);
        lora_status want = kind == F_EIO ? LORA_E_IO : LORA_E_NO_SPACE;
        if (st != want || err.status != st)
            fail_msg("%s: %s: got %s (err %s: %s), want %s", s->name, what, lora_status_name(st),
                     lora_status_name(err.status), err.detail, lora_status_name(want));
        t->failed++;
        if (renamed == 0) {
            if (!all_old) fail_msg("%s: %s: a target changed although nothing was renamed", s->name, what);
        } else {
            /* Published files stay published: each whole, old or new. Every
             * file was fsynced before the first rename (lora_afile_seal), so
             * only a rename or a directory fsync can fail by now. */
            t->after_rename++;
            if (hit_kind != C_RENAME && hit_kind != C_FSYNC)
                fail_msg("%s: %s: %s failed after a file was renamed into place", s->name, what, call_names[hit_kind]);
            for (size_t i = 0; i < s->ntargets; i++)
                if (!same(&after[i], &ref[i]) && !same(&after[i], &before[i]))
                    fail_msg("%s: %s: %s is neither the old nor the new file", s->name, what, s->target_names[i]);
            /* and a failing directory fsync does not stop the renames */
            if (!all_new && !all_old && hit_kind != C_RENAME)
                fail_msg("%s: %s: a %s failure left old and new files mixed", s->name, what, call_names[hit_kind]);
            if (!all_new && !all_old && ++t->mixed == 1) /* the first of each kind, as an example */
                print_message("    %s: %s, a %s: %s after a rename left old and new files mixed\n", s->name, what,
                              call_names[hit_kind], lora_status_name(st));
        }
    }
    free_snap(before, s->ntargets);
    free_snap(after, s->ntargets);
    return !fired;
}

static void run_all_faults(scenario *s)
{
    bytes ref[MAX_TARGETS];
    reference(s, ref);
    for (int k = 0; k < F_COUNT; k++) {
        tally t = {0, 0, 0, 0, 0};
        int at = 1;
        /* each N twice: over old files (fchmod to their mode) and over none */
        while (at < MAX_AT && !(one_run(s, (fault)k, at, 1, ref, &t) & one_run(s, (fault)k, at, 0, ref, &t))) at++;
        if (at >= MAX_AT) fail_msg("%s: %s: still failing at call %d", s->name, fault_names[k], at);
        assert_true(at > 5); /* every path makes more calls than that: the table is really used */
        print_message("  %-16s %-11s N = 1..%-4d %4d errors (%d after a rename, %d mixed), %d unreported\n", s->name,
                      fault_names[k], at, t.failed, t.after_rename, t.mixed, t.silent);
    }
    free_snap(ref, s->ntargets);
}

/* ---- tests ----------------------------------------------------------------------------------------- */

static void test_safetensors_file(void **state)
{
    (void)state;
    scenario s;
    scenario_init(&s, "safetensors", "st");
    add_target(&s, "t.safetensors");
    s.out = join(s.dir, "t.safetensors");
    s.run = run_st;
    run_all_faults(&s);
    scenario_free(&s);
}

static void convert_case(const char *name, lora_format to, const char *file, int is_dir)
{
    scenario s;
    scenario_init(&s, name, name);
    s.run = run_convert;
    s.in = W.adapter;
    s.to = to;
    if (!is_dir) {
        add_target(&s, file);
        s.out = join(s.dir, file);
    } else if (to == LORA_FORMAT_PEFT) {
        add_target(&s, "adapter_model.safetensors");
        add_target(&s, "adapter_config.json");
        s.out = strdup(s.dir);
    } else {
        add_target(&s, "adapters.safetensors");
        add_target(&s, "adapter_config.json");
        s.out = strdup(s.dir);
    }
    run_all_faults(&s);
    scenario_free(&s);
}

static void test_lora_output(void **state)
{
    (void)state;
    convert_case("lora", LORA_FORMAT_LORA, "a.lora", 0);
}

static void test_gguf_output(void **state)
{
    (void)state;
    convert_case("gguf", LORA_FORMAT_GGUF, "a.gguf", 0);
}

static void test_peft_dir_output(void **state)
{
    (void)state;
    convert_case("peft-dir", LORA_FORMAT_PEFT, NULL, 1);
}

static void test_mlx_dir_output(void **state)
{
    (void)state;
    convert_case("mlx-dir", LORA_FORMAT_MLX, NULL, 1);
}

static void merge_case(const char *name, int sharded, int no_copy_range)
{
    scenario s;
    scenario_init(&s, name, name);
    s.run = run_merge;
    s.adapter = W.adapter;
    s.no_copy_range = no_copy_range;
    if (sharded) {
        s.in = W.sharded;
        add_target(&s, "model-00001-of-00002.safetensors");
        add_target(&s, "model-00002-of-00002.safetensors");
        add_target(&s, "model.safetensors.index.json");
        s.out = strdup(s.dir);
    } else {
        s.in = W.base;
        add_target(&s, "merged.safetensors");
        s.out = join(s.dir, "merged.safetensors");
    }
    run_all_faults(&s);
    scenario_free(&s);
}

static void test_merge_output(void **state)
{
    (void)state;
    merge_case("merge", 0, 0);
}

static void test_merge_output_without_copy_range(void **state)
{
    (void)state;
    merge_case("merge-no-cfr", 0, 1);
}

static void test_merge_sharded_output(void **state)
{
    (void)state;
    merge_case("merge-sharded", 1, 0);
}

/* The fallback of copy_file_range writes the same bytes. */
static void test_merge_fallback_same_bytes(void **state)
{
    (void)state;
    scenario a, b;
    scenario_init(&a, "cfr", "cfr");
    scenario_init(&b, "no-cfr", "nocfr");
    add_target(&a, "m.safetensors");
    add_target(&b, "m.safetensors");
    a.run = b.run = run_merge;
    a.in = b.in = W.base;
    a.adapter = b.adapter = W.adapter;
    a.out = join(a.dir, "m.safetensors");
    b.out = join(b.dir, "m.safetensors");
    b.no_copy_range = 1;
    bytes ra[1], rb[1];
    reference(&a, ra);
    reference(&b, rb);
    assert_true(same(&ra[0], &rb[0]));
    free_snap(ra, 1);
    free_snap(rb, 1);
    scenario_free(&a);
    scenario_free(&b);
}

static int setup(void **state)
{
    (void)state;
    make_inputs();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ms_rmtree(W.root);
    free(W.in_dir);
    free(W.adapter);
    free(W.base);
    free(W.sharded);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_file),
        cmocka_unit_test(test_lora_output),
        cmocka_unit_test(test_gguf_output),
        cmocka_unit_test(test_peft_dir_output),
        cmocka_unit_test(test_mlx_dir_output),
        cmocka_unit_test(test_merge_output),
        cmocka_unit_test(test_merge_output_without_copy_range),
        cmocka_unit_test(test_merge_sharded_output),
        cmocka_unit_test(test_merge_fallback_same_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
