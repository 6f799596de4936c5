/*
 * delta_error.c - how far one factorization of a delta is from another,
 * measured on every element, in double.
 *
 * d0 = s0 B0 A0 and d1 = s1 B1 A1 are formed a band of rows at a time by
 * dgemm, so an 11008 x 4096 delta needs a few MB rather than its 360 MB,
 * and the Frobenius norms and the largest difference come from the same
 * explicit entries. Each entry is an r-term dot product in double (rounding
 * ~1e-16 of the delta, far below any f32 storage error being measured), and
 * the two products are formed the same way, so identical factors give a
 * difference of exactly zero rather than round-off.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include "lowrank.h"

/* Rows per band: about 2 MB of doubles. */
static size_t band_rows(uint64_t K)
{
    uint64_t t = ((uint64_t)1 << 18) / (K ? K : 1);
    return t < 1 ? 1 : (size_t)t;
}

/* d = s * B @ A for rows [i0, i0 + rows): y holds s * A as doubles. */
static void band(const lora_lr_factors *f, const double *y, double *bd, size_t i0, size_t rows, double *out)
{
    size_t r = f->r, K = (size_t)f->K;
    for (size_t i = 0; i < rows * r; i++) bd[i] = f->b[i0 * r + i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)K, (int)r, 1.0, bd, (int)r, y, (int)K, 0.0,
                out, (int)K);
}

lora_status lora_lr_delta_error(const lora_lr_factors *f0, double s0, const lora_lr_factors *f1, double s1,
                                const lora_allocator *al, double *norm0, double *err_fro, double *err_max)
{
    if (f0->M != f1->M || f0->K != f1->K) return LORA_E_INVALID_ARGUMENT;
    /* BLAS takes int dimensions. */
    if (f0->M > INT_MAX || f0->K > INT_MAX || f0->r > INT_MAX || f1->r > INT_MAX) return LORA_E_LIMIT_EXCEEDED;
    size_t M = (size_t)f0->M, K = (size_t)f0->K, r0 = f0->r, r1 = f1->r, rm = r0 > r1 ? r0 : r1;
    size_t T = band_rows(K);
    if (T > M) T = M;
    /* s A of both, a band of B, two bands of d: bounded by blobs already in memory. */
    size_t n = (r0 + r1) * K + T * rm + 2 * T * K;
    double *y0 = lora_mem_calloc(al, n, sizeof(double));
    if (!y0) return LORA_E_OUT_OF_MEMORY;
    double *y1 = y0 + r0 * K, *bd = y1 + r1 * K, *d0 = bd + T * rm, *d1 = d0 + T * K;
    for (size_t i = 0; i < r0 * K; i++) y0[i] = s0 * f0->a[i];
    for (size_t i = 0; i < r1 * K; i++) y1[i] = s1 * f1->a[i];

    double sum = 0, sum0 = 0, mx = 0;
    for (size_t i0 = 0; i0 < M; i0 += T) {
        size_t rows = M - i0 < T ? M - i0 : T;
        band(f0, y0, bd, i0, rows, d0);
        band(f1, y1, bd, i0, rows, d1);
        for (size_t e = 0; e < rows * K; e++) {
            double v = fabs(d1[e] - d0[e]);
            sum += v * v;
            sum0 += d0[e] * d0[e];
            if (v > mx || v != v) mx = v; /* a NaN must not vanish from the maximum */
        }
    }
    *norm0 = sqrt(sum0);
    *err_fro = sqrt(sum);
    *err_max = mx;
    lora_mem_free(al, y0);
    return LORA_OK;
}
