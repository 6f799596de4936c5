/*
 * bench_verify.c - how close lora_reader_verify() runs to raw XXH3, and how
 * fast blobs decode to f32, as ratios against baselines measured in the same
 * process on the same bytes: XXH3-64 over the blob region, and memcpy.
 *
 * Usage: bench_verify [MiB]   (default 256 MiB of F16 blobs; median of 7 runs)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "lora.h"

enum { RUNS = 7, RANK = 16, DIM = 4096 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof *v, cmp_double);
    return v[RUNS / 2];
}

static void die(const char *what, lora_status st, const lora_error *err)
{
    fprintf(stderr, "bench_verify: %s: %s %s\n", what, lora_status_name(st), err ? err->detail : "");
    exit(1);
}

/* An adapter of `modules` linear DIMxDIM modules, rank RANK, F16 A and B. */
static void *build(uint32_t modules, size_t *size)
{
    lora_writer *w;
    lora_error err;
    lora_status st = lora_writer_create(NULL, &w);
    if (st) die("create", st, NULL);
    size_t n = (size_t)RANK * DIM;
    uint16_t *half = malloc(n * sizeof *half);
    for (size_t i = 0; i < n; i++) half[i] = (uint16_t)(0x3000 + (i * 2654435761u >> 20) % 0x0c00);
    for (uint32_t m = 0; m < modules; m++) {
        char name[64];
        snprintf(name, sizeof name, "model.layers.%u.mlp.up_proj", m);
        uint64_t sa[2] = {RANK, DIM}, sb[2] = {DIM, RANK};
        lora_module_desc d = {name, LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, RANK, 32.0f, 0.0f, 2,
                              {DIM, DIM, 0, 0, 0}, 0, 0, LORA_NO_BLOB, LORA_NO_BLOB};
        half[m % n] ^= 1; /* distinct contents, so nothing can be cached */
        if ((st = lora_writer_add_blob(w, LORA_DTYPE_F16, 2, sa, half, n * 2, LORA_COMPRESSION_NONE, &d.blob_a)) ||
            (st = lora_writer_add_blob(w, LORA_DTYPE_F16, 2, sb, half, n * 2, LORA_COMPRESSION_NONE, &d.blob_b)) ||
            (st = lora_writer_add_module(w, &d, NULL)))
            die("add", st, NULL);
    }
    free(half);
    uint64_t total;
    if ((st = lora_writer_size(w, &total, &err))) die("size", st, &err);
    void *buf = malloc((size_t)total);
    if ((st = lora_writer_write_buffer(w, buf, (size_t)total, size, &err))) die("write", st, &err);
    lora_writer_free(w);
    return buf;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
    uint32_t modules = (uint32_t)((mib << 20) / ((size_t)RANK * DIM * 2 * 2));
    if (modules == 0) modules = 1;
    size_t size;
    uint8_t *file = build(modules, &size);
    lora_reader *r;
    lora_error err;
    lora_status st = lora_reader_open_buffer(file, size, NULL, &r, &err);
    if (st) die("open", st, &err);
    lora_file_info info;
    lora_reader_file_info(r, &info);
    size_t data = size - (size_t)info.data_offset;
    uint8_t *copy = malloc(size);
    float *f32 = malloc((size_t)RANK * DIM * sizeof *f32);
    double t_verify[RUNS], t_xxh[RUNS], t_copy[RUNS], t_open[RUNS], t_decode[RUNS];
    volatile uint64_t sink = 0;
    for (int run = 0; run < RUNS; run++) { /* alternate the commands so drift hits all alike */
        double t0 = now();
        sink += XXH3_64bits(file + info.data_offset, data);
        double t1 = now();
        if ((st = lora_reader_verify(r, &err))) die("verify", st, &err);
        double t2 = now();
        memcpy(copy, file, size);
        sink += copy[size / 2];
        double t3 = now();
        lora_reader *r2;
        if ((st = lora_reader_open_buffer(file, size, NULL, &r2, &err))) die("open", st, &err);
        lora_reader_free(r2);
        double t4 = now();
        for (uint32_t b = 0; b < info.blob_count; b++)
            if ((st = lora_reader_blob_decode_f32(r, b, f32, (size_t)RANK * DIM, &err))) die("decode", st, &err);
        double t5 = now();
        t_xxh[run] = t1 - t0; t_verify[run] = t2 - t1; t_copy[run] = t3 - t2; t_open[run] = t4 - t3; t_decode[run] = t5 - t4;
    }
    double gb = (double)data / 1e9;
    double xxh = median(t_xxh), ver = median(t_verify), cpy = median(t_copy), opn = median(t_open), dec = median(t_decode);
    printf("adapter: %u modules, %u blobs, %.1f MiB; ISA %s; median of %d runs\n", info.module_count,
           info.blob_count, (double)size / 1048576.0, lora_isa_name(), RUNS);
    printf("  XXH3-64 over blob bytes   %7.2f GB/s  (baseline)\n", gb / xxh);
    printf("  lora_reader_verify        %7.2f GB/s  ratio verify/XXH3 = %.2f\n", gb / ver, ver / xxh);
    printf("  memcpy of the file        %7.2f GB/s\n", (double)size / 1e9 / cpy);
    printf("  open (structure+header)   %7.3f ms for %u modules\n", opn * 1e3, info.module_count);
    printf("  decode F16 -> f32         %7.2f GB/s of blob bytes  (ratio decode/memcpy-time-per-byte = %.2f)\n",
           gb / dec, (dec / (double)data) / (cpy / (double)size));
    lora_reader_free(r);
    free(f32);
    free(copy);
    free(file);
    return sink == 42 ? 3 : 0;
}
