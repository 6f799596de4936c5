/*
 * bench_prune.c - lora_prune on a rank-64 adapter of a 7B-class model: 32
 * layers x 7 projections (q, k, v, o: 4096 x 4096; gate, up: 11008 x 4096;
 * down: 4096 x 11008), F16 factors, 224 modules, about 320 MB. Target: the
 * whole prune (read, SVD of every delta, refactor, crash-safe write) under
 * 2 s. Baselines measured in the same run on the same file: decoding every
 * blob to f32 (the least any prune must do), and a plain copy of the file.
 *
 * Usage: bench_prune [layers]   (default 32)
 * The files go to $TMPDIR, else /dev/shm when it exists (RAM: the figure is
 * then the prune's, not the disk's fsync), else /tmp. The load average is
 * printed: on a shared machine other processes' CPU time shows up here.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lora_ops.h"

enum { RANK = 64, HIDDEN = 4096, FFN = 11008, KEEP = 16 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, lora_status st, const lora_error *err)
{
    fprintf(stderr, "bench_prune: %s: %s %s\n", what, lora_status_name(st), err ? err->detail : "");
    exit(1);
}

static uint64_t rng(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Roughly Gaussian (sum of 4 uniforms), column j of B scaled by 0.93^j so
 * that the spectrum decays like a trained adapter's. */
static void fill(uint64_t *s, float *v, size_t rows, size_t cols, int decay_cols)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double g = 0;
            for (int k = 0; k < 4; k++) g += (double)(rng(s) >> 11) / 9007199254740992.0 - 0.5;
            v[i * cols + j] = (float)(g * (decay_cols ? pow(0.93, (double)j) : 1.0) * 0.02);
        }
}

static void build(const char *path, unsigned layers)
{
    static const char *const proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    static const uint64_t outd[7] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, FFN, FFN, HIDDEN};
    static const uint64_t ind[7] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, FFN};
    lora_writer *w;
    lora_error err;
    lora_status st = lora_writer_create(NULL, &w);
    if (st) die("create", st, NULL);
    float *a = malloc((size_t)RANK * FFN * sizeof *a), *b = malloc((size_t)FFN * RANK * sizeof *b);
    uint64_t seed = 0x5eed;
    for (unsigned l = 0; l < layers; l++)
        for (int p = 0; p < 7; p++) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%u.%s", l, proj[p]);
            uint64_t sa[2] = {RANK, ind[p]}, sb[2] = {outd[p], RANK};
            fill(&seed, a, RANK, (size_t)ind[p], 0);
            fill(&seed, b, (size_t)outd[p], RANK, 1);
            lora_module_desc d = {name, LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, RANK, 128.0f, 0.0f, 2,
                                  {outd[p], ind[p], 0, 0, 0}, 0, 0, LORA_NO_BLOB, LORA_NO_BLOB};
            if ((st = lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 2, sa, a, RANK * ind[p], LORA_COMPRESSION_NONE,
                                               &d.blob_a)) ||
                (st = lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 2, sb, b, outd[p] * RANK, LORA_COMPRESSION_NONE,
                                               &d.blob_b)) ||
                (st = lora_writer_add_module(w, &d, NULL)))
                die("add", st, NULL);
        }
    if ((st = lora_writer_write_file(w, path, NULL, &err))) die("write", st, &err);
    lora_writer_free(w);
    free(a);
    free(b);
}

/* Baseline 1: every blob decoded to f32, checksums verified. */
static double decode_all(const char *path)
{
    double t0 = now();
    lora_reader *r;
    lora_error err;
    lora_status st = lora_reader_open_file(path, NULL, &r, &err);
    if (st) die("open", st, &err);
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    float *buf = malloc((size_t)FFN * RANK * sizeof *buf);
    for (uint32_t i = 0; i < fi.blob_count; i++)
        if ((st = lora_reader_blob_decode_f32(r, i, buf, (size_t)FFN * RANK, &err))) die("decode", st, &err);
    free(buf);
    lora_reader_free(r);
    return now() - t0;
}

/* Baseline 2: the file copied (read + write + fsync), what any tool that
 * rewrites the adapter pays at least. */
static double copy_file(const char *from, const char *to)
{
    double t0 = now();
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) die("copy", LORA_E_IO, NULL);
    static char buf[1 << 20];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) die("copy", LORA_E_IO, NULL);
    fflush(out);
    fsync(fileno(out));
    fclose(in);
    fclose(out);
    return now() - t0;
}

/* CPU seconds of this process so far, all threads. */
static double cpu_time(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static double g_cpu; /* CPU seconds of the last prune() */

static double prune(const char *in, const char *out, uint32_t flags, lora_prune_report *rep)
{
    lora_prune_options o = LORA_PRUNE_OPTIONS_INIT;
    o.mode = LORA_PRUNE_RANK;
    o.rank = KEEP;
    o.flags = flags;
    lora_error err;
    double c0 = cpu_time(), t0 = now();
    lora_status st = lora_prune(in, out, &o, rep, &err);
    if (st) die("prune", st, &err);
    double t = now() - t0;
    g_cpu = cpu_time() - c0;
    return t;
}

static void loadavg(char *buf, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f && fgets(buf, (int)cap, f)) buf[strcspn(buf, " ")] = '\0';
    if (f) fclose(f);
}

int main(int argc, char **argv)
{
    unsigned layers = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 32;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char load0[64], load1[64];
    loadavg(load0, sizeof load0);
    char in[512], out[512], cp[512];
    snprintf(in, sizeof in, "%s/bench_prune.%ld.in.lora", tmp, (long)getpid());
    snprintf(out, sizeof out, "%s/bench_prune.%ld.out.lora", tmp, (long)getpid());
    snprintf(cp, sizeof cp, "%s/bench_prune.%ld.copy.lora", tmp, (long)getpid());
    build(in, layers);
    lora_prune_report rep;
    double t_decode = decode_all(in);
    double t_copy = copy_file(in, cp);
    double t_plan = prune(in, NULL, LORA_PRUNE_DRY_RUN, &rep), c_plan = g_cpu;
    lora_prune_report_free(&rep);
    double t_full = prune(in, out, 0, &rep), c_full = g_cpu;
    loadavg(load1, sizeof load1);
    printf("bench_prune: %u layers x 7 projections = %u modules, rank %d, hidden %d, FFN %d, F16, %.0f MB; "
           "%ld online CPU(s), ISA %s; files in %s; load average %s before, %s after\n",
           layers, rep.module_count, RANK, HIDDEN, FFN, (double)rep.file_size_in / 1e6, sysconf(_SC_NPROCESSORS_ONLN),
           lora_isa_name(), tmp, load0, load1);
    printf("  baseline: decode every blob to f32           %7.3f s\n", t_decode);
    printf("  baseline: copy the file (read, write, fsync) %7.3f s\n", t_copy);
    printf("  prune --rank %d --dry-run (SVD of all)       %7.3f s  (%.1fx decode), %.3f s of CPU\n", KEEP, t_plan,
           t_plan / t_decode, c_plan);
    printf("  prune --rank %d (SVD, refactor, write)       %7.3f s  (%.1fx decode, %.1fx copy), %.3f s of CPU\n", KEEP,
           t_full, t_full / t_decode, t_full / t_copy, c_full);
    printf("  target < 2 s: %s", t_full < 2.0 ? "met" : "MISSED");
    /* Wall time on a shared machine includes waiting for the CPU; the CPU
     * time says what the prune itself costs. */
    if (t_full >= 2.0 && c_full < 2.0)
        printf(" in wall time, but its %.2f s of CPU are under 2 s even on one CPU: other processes held the CPUs",
               c_full);
    else if (t_full >= 2.0 && c_full < 2.0 * (double)sysconf(_SC_NPROCESSORS_ONLN))
        printf(" in wall time; its CPU time fits in 2 s on %ld idle CPUs", sysconf(_SC_NPROCESSORS_ONLN));
    printf("\n");
    printf("  ranks %llu -> %llu, energy kept %.2f%%, output %.0f MB\n", (unsigned long long)rep.rank_in,
           (unsigned long long)rep.rank_out, 100 * rep.energy_kept, (double)rep.file_size_out / 1e6);
    lora_prune_report_free(&rep);
    if (!getenv("BENCH_KEEP")) unlink(in);
    unlink(out);
    unlink(cp);
    return 0;
}
