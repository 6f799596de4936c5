/*
 * bench_kernels.c - throughput of every conversion kernel on every ISA this
 * machine runs, as a ratio to the ref kernel and to memcpy of the output
 * size, measured in the same process; then the quantizers and
 * dequantizers in GB/s of f32 (the float side: input of a quantizer,
 * output of a dequantizer) against the 2 GB/s per thread target.
 *
 * Build (from the project root, after `make lib`):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Ilib -Iformat bench/bench_kernels.c build/liblora.a -lm -lpthread -o build/bench_kernels
 * Usage: bench_kernels [elements]   (default 4M, rounded to 4096)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "lora.h"

enum {
    F16_F32, BF16_F32, F32_F16, F32_BF16, Q8_F32, Q4_F32, NF4_F32, NF4K_F32, F32_Q8, F32_Q4, F32_NF4, F32_NF4K,
    NONFINITE, N_CASES
};

static const char *const k_names[N_CASES] = {"f16->f32",  "bf16->f32", "f32->f16",     "f32->bf16",
                                             "q8_0->f32", "q4_0->f32", "nf4->f32",     "nf4/4096->f32",
                                             "f32->q8_0", "f32->q4_0", "f32->nf4",     "f32->nf4/4096",
                                             "nonfinite"};

static int is_quant_case(int c) { return c >= Q8_F32 && c <= F32_NF4K; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t g_sink; /* defeats dead-code elimination of count_nonfinite */

typedef struct {
    const float *f32;                      /* finite values */
    const uint16_t *f16;                   /* the same, as f16 (and read as bf16) */
    const uint8_t *q8, *q4, *nf4, *nf4k;   /* the same, quantized by ref */
} inputs;

static void run(const lora_kernels *k, int kind, const inputs *in, void *out, size_t n)
{
    switch (kind) {
    case F16_F32: k->f16_to_f32(in->f16, out, n); break;
    case BF16_F32: k->bf16_to_f32(in->f16, out, n); break;
    case F32_F16: k->f32_to_f16(in->f32, out, n); break;
    case F32_BF16: k->f32_to_bf16(in->f32, out, n); break;
    case Q8_F32: k->q8_0_to_f32(in->q8, out, n / 32); break;
    case Q4_F32: k->q4_0_to_f32(in->q4, out, n / 32); break;
    case NF4_F32: k->nf4_to_f32(in->nf4, out, n / 64, 64); break;
    case NF4K_F32: k->nf4_to_f32(in->nf4k, out, n / 4096, 4096); break;
    case F32_Q8: k->f32_to_q8_0(in->f32, out, n / 32); break;
    case F32_Q4: k->f32_to_q4_0(in->f32, out, n / 32); break;
    case F32_NF4: k->f32_to_nf4(in->f32, out, n / 64, 64); break;
    case F32_NF4K: k->f32_to_nf4(in->f32, out, n / 4096, 4096); break;
    default: g_sink += k->count_nonfinite_f32(in->f32, n); break;
    }
}

/* Best of 7 runs, in seconds. */
static double best_time(const lora_kernels *k, int kind, const inputs *in, void *out, size_t n)
{
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        if (k) run(k, kind, in, out, n);
        else memcpy(out, in->f32, n * 4);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : (size_t)4 << 20;
    n = (n + 4095) / 4096 * 4096;
    float *f = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    uint8_t *q8 = malloc(n / 32 * 34), *q4 = malloc(n / 32 * 18), *nf4 = malloc(n / 64 * 36);
    uint8_t *nf4k = malloc(n / 4096 * 2052), *out = malloc(n * 4);
    if (!f || !h || !q8 || !q4 || !nf4 || !nf4k || !out) return 2;
    /* Finite, moderate floats with blocks of varied magnitude; the block
     * inputs are these values quantized by ref, as a reader meets them. */
    for (size_t i = 0; i < n; i++)
        f[i] = (float)((int)(i * 2654435761u % 2001) - 1000) / 250.0f * (float)(1 + (i / 64) % 7);
    const lora_kernels *ref = &lora_kernels_ref;
    ref->f32_to_f16(f, h, n);
    ref->f32_to_q8_0(f, q8, n / 32);
    ref->f32_to_q4_0(f, q4, n / 32);
    ref->f32_to_nf4(f, nf4, n / 64, 64);
    ref->f32_to_nf4(f, nf4k, n / 4096, 4096);
    inputs in = {f, h, q8, q4, nf4, nf4k};

    double tcopy = best_time(NULL, 0, &in, out, n);
    printf("liblora kernels: %zu elements, selected ISA %s, %ld online CPU(s), 1 thread\n", n, lora_isa_name(),
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("memcpy of %zu bytes: %.3f ms (%.2f GB/s)\n\n%-14s", n * 4, tcopy * 1e3, (double)n * 4 / tcopy / 1e9,
           "kernel");
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (lora_kernels_for_isa((lora_isa)i)) printf(" %18s", lora_kernels_for_isa((lora_isa)i)->name);
    printf("\n%-14s", "");
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (lora_kernels_for_isa((lora_isa)i)) printf(" %18s", "Melem/s (x ref)");
    printf("\n");
    double gbs[N_CASES][LORA_ISA_COUNT_] = {{0}};
    for (int c = 0; c < N_CASES; c++) {
        printf("%-14s", k_names[c]);
        double tref = 0;
        for (int i = 0; i < LORA_ISA_COUNT_; i++) {
            const lora_kernels *k = lora_kernels_for_isa((lora_isa)i);
            if (!k) continue;
            double t = best_time(k, c, &in, out, n);
            if (i == LORA_ISA_REF) tref = t;
            gbs[c][i] = (double)n * 4 / t / 1e9;
            printf(" %9.0f (%5.1fx)", (double)n / t / 1e6, tref / t);
        }
        printf("\n");
    }
    printf("\n(memcpy moves %.0f Melem/s of f32)\n", (double)n / tcopy / 1e6);

    printf("\nquantize / dequantize, GB/s of f32 per thread (target: >= 2 GB/s on avx512)\n%-14s", "kernel");
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (lora_kernels_for_isa((lora_isa)i)) printf(" %9s", lora_kernels_for_isa((lora_isa)i)->name);
    printf("\n");
    int missed = 0, have512 = lora_kernels_for_isa(LORA_ISA_AVX512) != NULL;
    for (int c = 0; c < N_CASES; c++) {
        if (!is_quant_case(c)) continue;
        printf("%-14s", k_names[c]);
        for (int i = 0; i < LORA_ISA_COUNT_; i++)
            if (lora_kernels_for_isa((lora_isa)i)) printf(" %9.2f", gbs[c][i]);
        if (have512 && gbs[c][LORA_ISA_AVX512] < 2.0) {
            printf("  below target");
            missed++;
        }
        printf("\n");
    }
    if (!have512) printf("(no AVX-512 on this machine: target not checked)\n");
    else
        printf("%s\n", missed ? "some kernels are below the 2 GB/s target"
                              : "every quantize/dequantize kernel meets 2 GB/s on avx512");
    free(f);
    free(h);
    free(q8);
    free(q4);
    free(nf4);
    free(nf4k);
    free(out);
    return g_sink == (size_t)-1;
}
