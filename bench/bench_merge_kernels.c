/*
 * bench_merge_kernels.c - throughput of the fused merge kernel (base bytes
 * processed per second) on every ISA this machine runs, against the ref
 * kernel and against memcpy of the same base bytes, one thread, on
 * TinyLlama-1.1B shapes (hidden 2048, FFN 5632) with a rank-16 adapter.
 *
 * Usage: bench_merge_kernels [rank]   (default 16)
 * Each row: memcpy of the base bytes, then per ISA the fp32-accumulation
 * kernel and the float64-accumulation kernel (job->bs64), in GB/s of base
 * read, with the ratio to ref (fp32) and to memcpy. Base and output are
 * separate buffers, as in a streaming merge. A last line per shape runs the
 * selected ISA on 2 threads (two row halves), against memcpy on 2 threads.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/merge_kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_float(uint64_t *s, float scale)
{
    return scale * ((float)(rng_next(s) >> 40) / 16777216.0f - 0.5f);
}

/* Best of `reps` runs of one job (k == NULL: memcpy of the base bytes). */
static double best_time(const lora_merge_kernels *k, const lora_mk_job *job, size_t bytes, int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (k) k->apply(job);
        else memcpy(job->out, job->w, bytes);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* One half of the job (or of the copy) on its own thread. */
typedef struct {
    const lora_merge_kernels *k;
    lora_mk_job job;
    size_t bytes;
} half_arg;

static void *run_half(void *p)
{
    half_arg *h = p;
    if (h->k) h->k->apply(&h->job);
    else memcpy(h->job.out, h->job.w, h->bytes);
    return NULL;
}

/* Best of 9 runs on two threads, rows split at a multiple of 8. */
static double best_time2(const lora_merge_kernels *k, const lora_mk_job *job, size_t wsz, size_t osz)
{
    size_t mid = job->rows / 2 / 8 * 8;
    half_arg h[2] = {{k, *job, mid * job->cols * wsz}, {k, *job, (job->rows - mid) * job->cols * wsz}};
    h[0].job.rows = mid;
    h[1].job.rows = job->rows - mid;
    h[1].job.w = (const uint8_t *)job->w + mid * job->w_stride * wsz;
    h[1].job.out = (uint8_t *)job->out + mid * job->out_stride * (k ? osz : wsz);
    if (job->bs) h[1].job.bs = job->bs + mid * job->bs_stride;
    if (job->bs64) h[1].job.bs64 = job->bs64 + mid * job->bs_stride;
    double best = 1e30;
    for (int r = 0; r < 9; r++) {
        pthread_t th;
        double t0 = now();
        if (pthread_create(&th, NULL, run_half, &h[1]) != 0) return 1e30;
        run_half(&h[0]);
        pthread_join(th, NULL);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    const char *name;
    size_t rows, cols;
    lora_mk_dtype wd, od;
} bench_shape;

static int run_shape(const bench_shape *sh, size_t r, uint64_t *seed)
{
    size_t n = sh->rows * sh->cols, wsz = sh->wd == LORA_MK_F32 ? 4 : 2, osz = sh->od == LORA_MK_F32 ? 4 : 2;
    void *w = malloc(n * wsz), *out = malloc(n * (osz > wsz ? osz : wsz));
    float *bs = malloc(sh->rows * r * sizeof(float)), *a = malloc(r * sh->cols * sizeof(float));
    double *bs64 = malloc(sh->rows * r * sizeof(double));
    if (!w || !out || !bs || !a || !bs64) return 2;
    float *tmp = malloc(sh->cols * sizeof(float));
    if (!tmp) return 2;
    for (size_t i = 0; i < sh->rows; i++) {
        for (size_t j = 0; j < sh->cols; j++) tmp[j] = rng_float(seed, 0.08f);
        if (sh->wd == LORA_MK_F32) memcpy((float *)w + i * sh->cols, tmp, sh->cols * 4);
        else if (sh->wd == LORA_MK_F16) lora_kernels_ref.f32_to_f16(tmp, (uint16_t *)w + i * sh->cols, sh->cols);
        else lora_kernels_ref.f32_to_bf16(tmp, (uint16_t *)w + i * sh->cols, sh->cols);
    }
    free(tmp);
    for (size_t i = 0; i < sh->rows * r; i++) bs64[i] = bs[i] = rng_float(seed, 0.02f);
    for (size_t i = 0; i < r * sh->cols; i++) a[i] = rng_float(seed, 0.04f);
    lora_mk_job job = {.w = w, .out = out, .bs = bs, .a = a, .rows = sh->rows, .cols = sh->cols, .r = r,
                       .w_stride = sh->cols, .out_stride = sh->cols, .bs_stride = r, .a_stride = sh->cols,
                       .w_dtype = sh->wd, .out_dtype = sh->od};
    size_t bytes = n * wsz;
    memset(out, 0, n * (osz > wsz ? osz : wsz)); /* fault the pages in before timing */
    double tcopy = best_time(NULL, &job, bytes, 9);
    printf("%-18s %4zu x %-4zu %5.1f MB  memcpy %5.1f GB/s\n", sh->name, sh->rows, sh->cols, (double)bytes / 1e6,
           (double)bytes / tcopy / 1e9);
    double tref = 0;
    for (int i = 0; i < LORA_ISA_COUNT_; i++) {
        const lora_merge_kernels *k = lora_merge_kernels_for_isa((lora_isa)i);
        if (!k) continue;
        printf("    %-7s", k->name);
        for (int acc64 = 0; acc64 < 2; acc64++) {
            job.bs = acc64 ? NULL : bs, job.bs64 = acc64 ? bs64 : NULL;
            double t = best_time(k, &job, bytes, i == LORA_ISA_REF ? 1 : 9);
            if (i == LORA_ISA_REF && !acc64) tref = t;
            printf("  %s acc %6.2f GB/s (%5.0fx ref, %4.2fx memcpy)", acc64 ? "f64" : "f32", (double)bytes / t / 1e9,
                   tref / t, tcopy / t);
        }
        printf("\n");
    }
    const lora_merge_kernels *sel = lora_merge_kernels_get();
    double tc2 = best_time2(NULL, &job, wsz, osz);
    printf("    2 threads: memcpy %5.1f GB/s;", (double)bytes / tc2 / 1e9);
    for (int acc64 = 0; acc64 < 2; acc64++) {
        job.bs = acc64 ? NULL : bs, job.bs64 = acc64 ? bs64 : NULL;
        double t2 = best_time2(sel, &job, wsz, osz);
        printf("  %s %s acc %6.2f GB/s (%4.2fx memcpy)", sel->name, acc64 ? "f64" : "f32", (double)bytes / t2 / 1e9,
               tc2 / t2);
    }
    printf("\n");
    free(w), free(out), free(bs), free(bs64), free(a);
    return 0;
}

int main(int argc, char **argv)
{
    size_t r = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 16;
    static const bench_shape shapes[] = {
        {"q_proj f16->f16", 2048, 2048, LORA_MK_F16, LORA_MK_F16},
        {"gate/up f16->f16", 5632, 2048, LORA_MK_F16, LORA_MK_F16},
        {"down f16->f16", 2048, 5632, LORA_MK_F16, LORA_MK_F16},
        {"gate/up bf16->bf16", 5632, 2048, LORA_MK_BF16, LORA_MK_BF16},
        {"gate/up f32->f32", 5632, 2048, LORA_MK_F32, LORA_MK_F32},
    };
    uint64_t seed = 0xbe7c4;
    printf("liblora merge kernels: rank %zu, selected ISA %s, %ld online CPU(s), 1 thread\n", r,
           lora_merge_kernels_get()->name, sysconf(_SC_NPROCESSORS_ONLN));
    printf("GB/s = base bytes read per second (each base byte read once, each output byte written once)\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (run_shape(&shapes[i], r, &seed)) return 2;
    return 0;
}
