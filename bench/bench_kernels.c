/*
 * bench_kernels.c - throughput of every conversion kernel on every ISA this
 * machine runs, as a ratio to the ref kernel and to memcpy of the output
 * size, measured in the same process.
 *
 * Build (from the project root, after `make lib`):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Ilib -Iformat bench/bench_kernels.c build/liblora.a -lm -lpthread -o build/bench_kernels
 * Usage: bench_kernels [elements]   (default 4M, rounded to 64)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "lora.h"

enum { F16_F32, BF16_F32, F32_F16, F32_BF16, Q8_F32, Q4_F32, NF4_F32, F32_Q8, F32_Q4, F32_NF4, NONFINITE, N_CASES };

static const char *const k_names[N_CASES] = {"f16->f32",  "bf16->f32", "f32->f16",  "f32->bf16",
                                             "q8_0->f32", "q4_0->f32", "nf4->f32",  "f32->q8_0",
                                             "f32->q4_0", "f32->nf4",  "nonfinite"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t g_sink; /* defeats dead-code elimination of count_nonfinite */

static void run(const lora_kernels *k, int kind, const void *in, void *out, size_t n)
{
    switch (kind) {
    case F16_F32: k->f16_to_f32(in, out, n); break;
    case BF16_F32: k->bf16_to_f32(in, out, n); break;
    case F32_F16: k->f32_to_f16(in, out, n); break;
    case F32_BF16: k->f32_to_bf16(in, out, n); break;
    case Q8_F32: k->q8_0_to_f32(in, out, n / 32); break;
    case Q4_F32: k->q4_0_to_f32(in, out, n / 32); break;
    case NF4_F32: k->nf4_to_f32(in, out, n / 64); break;
    case F32_Q8: k->f32_to_q8_0(in, out, n / 32); break;
    case F32_Q4: k->f32_to_q4_0(in, out, n / 32); break;
    case F32_NF4: k->f32_to_nf4(in, out, n / 64); break;
    default: g_sink += k->count_nonfinite_f32(in, n); break;
    }
}

/* Best of 7 runs, in seconds. */
static double best_time(const lora_kernels *k, int kind, const void *in, void *out, size_t n)
{
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        if (k) run(k, kind, in, out, n);
        else memcpy(out, in, n * 4);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : (size_t)4 << 20;
    n = (n + 63) / 64 * 64;
    uint8_t *in = malloc(n * 4), *out = malloc(n * 4);
    if (!in || !out) return 2;
    /* Finite, moderate floats; the same bytes read as f16/bf16/blocks are
     * arbitrary but plausible. */
    for (size_t i = 0; i < n; i++) {
        float f = (float)((int)(i * 2654435761u % 2001) - 1000) / 250.0f;
        memcpy(in + 4 * i, &f, 4);
    }
    for (size_t b = 0; b < n * 4 / 36; b++) in[b * 36 + 3] = 0x3f; /* NF4 absmax ~ 0.5..1 */

    double tcopy = best_time(NULL, 0, in, out, n);
    printf("liblora kernels: %zu elements, selected ISA %s, %ld online CPU(s), 1 thread\n", n, lora_isa_name(),
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("memcpy of %zu bytes: %.3f ms\n\n%-10s", n * 4, tcopy * 1e3, "kernel");
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (lora_kernels_for_isa((lora_isa)i)) printf(" %18s", lora_kernels_for_isa((lora_isa)i)->name);
    printf("\n%-10s", "");
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (lora_kernels_for_isa((lora_isa)i)) printf(" %18s", "Melem/s (x ref)");
    printf("\n");
    for (int c = 0; c < N_CASES; c++) {
        printf("%-10s", k_names[c]);
        double tref = 0;
        for (int i = 0; i < LORA_ISA_COUNT_; i++) {
            const lora_kernels *k = lora_kernels_for_isa((lora_isa)i);
            if (!k) continue;
            double t = best_time(k, c, in, out, n);
            if (i == LORA_ISA_REF) tref = t;
            printf(" %9.0f (%5.1fx)", (double)n / t / 1e6, tref / t);
        }
        printf("\n");
    }
    printf("\n(memcpy moves %.0f Melem/s of f32)\n", (double)n / tcopy / 1e6);
    free(in);
    free(out);
    return g_sink == (size_t)-1;
}
