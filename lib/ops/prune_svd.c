/*
 * prune_svd.c - the SVD of B @ A (M x r times r x K) without forming it.
 *
 *   B = Q_B R_B,  A^T = Q_A R_A       Householder QR (dgeqrf); only R is kept
 *   B A = Q_B (R_B R_A^T) Q_A^T       core C = R_B R_A^T, rb x ra (<= r x r)
 *   C = U S V^T                       dgesdd (dgesvd if it fails to converge)
 *   B A = (Q_B U) S (Q_A V)^T         an SVD of B A: Q_B U and Q_A V are orthonormal
 * so the best rank-k approximation is B' A' with B' = Q_B U_k sqrt(S_k) and
 * A' = sqrt(S_k) V_k^T Q_A^T. Q is never needed: C V = U S gives
 * Q_B U_k S_k = Q_B R_B R_A^T V_k = B R_A^T V_k, so
 *   B' = B (R_A^T V_k S_k^-1/2)       and likewise  A' = (S_k^-1/2 U_k^T R_B) A,
 * two small r x k matrices and one dgemm per factor (level 3), instead of
 * applying the Householder reflectors (dormqr, level-2 bound for small r).
 * Only kept values are divided by: sqrt(sigma_j) for j < k, and a value at
 * the round-off level of sigma_max (<= 1e-13 of it, zero included) gets a
 * zero column, which changes B'A' by no more than that value.
 *
 * Why double: the factors come as f32, but the singular values of B A span
 * many orders of magnitude and the trailing ones are the very ones pruning
 * decides on. In f32 the QR and the core product would lose about 7 digits
 * relative to sigma_max: a sigma 1e-4 below the largest would keep a
 * single correct digit, the energy sums that --energy and --budget compare
 * would be off in their last places, and a delta rebuilt at full rank would
 * differ from the original by ~1e-7 before it is even stored. In double the
 * whole computation is exact to ~1e-16 relative, so the only error left in
 * the output is the truncation itself (the Eckart-Young optimum) plus the
 * final rounding to the stored dtype. The cost is twice the flops of f32
 * on data that is small (r columns) anyway.
 */
#include <cblas.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include "prune_svd.h"

void lora_svd_free(const lora_allocator *al, lora_svd *s)
{
    if (!s) return;
    lora_mem_free(al, s->mem);
    memset(s, 0, sizeof *s);
}

/* info: < 0 a bad argument (a bug), > 0 no convergence, INT_MIN our
 * allocation failed. */
static lora_status lapack_fail(lora_error *err, const char *what, lapack_int info)
{
    if (info == INT_MIN) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "%s: out of memory", what);
    return lora_error_set(err, info < 0 ? LORA_E_INVALID_ARGUMENT : LORA_E_NONFINITE, LORA_NO_OFFSET,
                          "%s failed (LAPACK info %d)", what, (int)info);
}

/* LAPACK wants a workspace whose size it tells on a query (lwork = -1).
 * The _work entry points are used rather than the LAPACKE wrappers so that
 * the workspace comes from the caller's allocator and no NaN scan of the
 * inputs runs (the factors were checked finite when decoded). */
static double *workspace(const lora_allocator *al, double query, lapack_int *lwork)
{
    double n = query < 1 ? 1 : query;
    if (n > (double)INT_MAX) return NULL;
    *lwork = (lapack_int)n;
    return lora_mem_alloc(al, (size_t)*lwork * sizeof(double));
}

static lapack_int geqrf(const lora_allocator *al, size_t m, size_t n, double *a, double *tau)
{
    double q;
    lapack_int lw;
    lapack_int info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n, a, (lapack_int)m, tau, &q, -1);
    if (info) return info;
    double *w = workspace(al, q, &lw);
    if (!w) return INT_MIN;
    info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n, a, (lapack_int)m, tau, w, lw);
    lora_mem_free(al, w);
    return info;
}

/* SVD of the rb x ra core c (destroyed); dgesdd, and dgesvd on a copy if
 * dgesdd does not converge. */
static lapack_int core_svd(const lora_allocator *al, char job, lora_svd *s, double *c, double *copy)
{
    lapack_int m = (lapack_int)s->rb, n = (lapack_int)s->ra, p = (lapack_int)s->p, lw;
    memcpy(copy, c, s->rb * s->ra * sizeof *c);
    lapack_int *iw = lora_mem_alloc(al, 8 * (size_t)p * sizeof *iw);
    if (!iw) return INT_MIN;
    double q;
    lapack_int info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, job, m, n, c, m, s->sigma, s->u, m, s->vt, p, &q, -1, iw);
    double *w = info ? NULL : workspace(al, q, &lw);
    if (!info) info = w ? LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, job, m, n, c, m, s->sigma, s->u, m, s->vt, p, w, lw, iw)
                        : INT_MIN;
    lora_mem_free(al, w);
    lora_mem_free(al, iw);
    if (info <= 0) return info;
    info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, job, job, m, n, copy, m, s->sigma, s->u, m, s->vt, p, &q, -1);
    w = info ? NULL : workspace(al, q, &lw);
    if (!info)
        info = w ? LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, job, job, m, n, copy, m, s->sigma, s->u, m, s->vt, p, w, lw)
                 : INT_MIN;
    lora_mem_free(al, w);
    return info;
}

/* B row-major M x r into column-major, 16 rows at a time: a plain loop
 * would store with a stride of M doubles and miss the TLB on every element. */
static void transpose_b(const float *b, size_t M, size_t r, double *qb)
{
    for (size_t i0 = 0; i0 < M; i0 += 16) {
        size_t i1 = M - i0 < 16 ? M : i0 + 16;
        for (size_t j = 0; j < r; j++)
            for (size_t i = i0; i < i1; i++) qb[i + j * M] = b[i * r + j];
    }
}

/* R (upper trapezoid, rows x n) out of a dgeqrf result with leading dimension ld. */
static void take_r(const double *qr, size_t ld, size_t rows, size_t n, double *rm)
{
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < rows; i++) rm[i + j * rows] = i <= j ? qr[i + j * ld] : 0.0;
}

static lora_status compute(const lora_lr_factors *f, const lora_allocator *al, int vectors, lora_svd *s,
                           lora_error *err)
{
    if (f->M > INT_MAX || f->K > INT_MAX || f->r > INT_MAX / 2)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "matrix too large for LAPACK");
    size_t M = (size_t)f->M, K = (size_t)f->K, r = f->r;
    size_t rb = M < r ? M : r, ra = K < r ? K : r, p = rb < ra ? rb : ra;
    /* kept: R_B rb*r, R_A ra*r, sigma p, U rb*p, V^T p*ra; scratch: C and its copy rb*ra each */
    size_t n = rb * r + ra * r + p + rb * p + p * ra + 2 * rb * ra;
    double *mem = lora_mem_alloc(al, n * sizeof *mem);
    /* The QR works on a double copy of one factor at a time, with tau. */
    size_t nq = (M > K ? M : K) * r + r;
    double *q = lora_mem_alloc(al, nq * sizeof *q);
    if (!mem || !q) {
        lora_mem_free(al, mem);
        lora_mem_free(al, q);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "SVD workspace of %zu doubles", n + nq);
    }
    s->mem = mem;
    s->M = M, s->K = K, s->r = r, s->rb = rb, s->ra = ra, s->p = p;
    s->rbm = mem, mem += rb * r;
    s->ram = mem, mem += ra * r;
    s->sigma = mem, mem += p;
    s->u = mem, mem += rb * p;
    s->vt = mem, mem += p * ra;
    double *c = mem, *copy = mem + rb * ra, *tau = q + (M > K ? M : K) * r;

    transpose_b(f->b, M, r, q);
    lapack_int info = geqrf(al, M, r, q, tau);
    if (!info) take_r(q, M, rb, r, s->rbm);
    /* A row-major r x K is A^T column-major as it is. */
    for (size_t i = 0; !info && i < r * K; i++) q[i] = f->a[i];
    if (!info && !(info = geqrf(al, K, r, q, tau))) take_r(q, K, ra, r, s->ram);
    lora_mem_free(al, q);
    if (info) return lapack_fail(err, "QR (dgeqrf)", info);

    /* C = R_B R_A^T (rb x ra): a few r^3 flops, plain loops are enough. */
    for (size_t l = 0; l < ra; l++)
        for (size_t i = 0; i < rb; i++) {
            double acc = 0;
            size_t j0 = i > l ? i : l; /* both triangles are zero below their diagonal */
            for (size_t j = j0; j < r; j++) acc += s->rbm[i + j * rb] * s->ram[l + j * ra];
            c[i + l * rb] = acc;
        }
    info = core_svd(al, vectors ? 'S' : 'N', s, c, copy);
    if (info) return lapack_fail(err, "SVD of the core (dgesdd, dgesvd)", info);
    return LORA_OK;
}

lora_status lora_svd_compute(const lora_lr_factors *f, const lora_allocator *al, int vectors, lora_svd *s,
                             lora_error *err)
{
    memset(s, 0, sizeof *s);
    lora_status st = compute(f, al, vectors, s, err);
    if (st != LORA_OK) lora_svd_free(al, s);
    return st;
}

/* 1 / sqrt(sigma_j), or 0 for a value at the round-off level of sigma_0. */
static double inv_sqrt_sigma(const lora_svd *s, size_t j)
{
    double v = s->sigma[j];
    return v > 1e-13 * s->sigma[0] && v > 0 ? 1.0 / sqrt(v) : 0.0;
}

lora_status lora_svd_factors(const lora_svd *s, const lora_lr_factors *f, uint32_t k, const lora_allocator *al,
                             float *a_out, float *b_out, lora_error *err)
{
    size_t M = s->M, K = s->K, r = s->r, rb = s->rb, ra = s->ra, p = s->p;
    if (k == 0 || k > p) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "rank %u of %zu", k, p);
    size_t big = M > K ? M : K;
    double *pm = lora_mem_calloc(al, 2 * r * k + big * r + big * k, sizeof *pm);
    if (!pm) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "factors of %zu + %zu rows", M, K);
    double *tm = pm + r * k, *src = tm + k * r, *dst = src + big * r;
    /* P = R_A^T V_k S^-1/2 (r x k, row-major); T = S^-1/2 U_k^T R_B (k x r). */
    for (size_t c = 0; c < k; c++) {
        double h = inv_sqrt_sigma(s, c);
        for (size_t j = 0; j < r; j++) {
            double acc = 0;
            for (size_t l = 0; l < ra && l <= j; l++) acc += s->ram[l + j * ra] * s->vt[c + l * p];
            pm[j * k + c] = acc * h;
            acc = 0;
            for (size_t i = 0; i < rb && i <= j; i++) acc += s->u[i + c * rb] * s->rbm[i + j * rb];
            tm[c * r + j] = acc * h;
        }
    }
    /* B' = B P (M x k) and A' = T A (k x K), in double from the f32 values. */
    for (size_t i = 0; i < M * r; i++) src[i] = f->b[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)k, (int)r, 1.0, src, (int)r, pm, (int)k, 0.0,
                dst, (int)k);
    for (size_t i = 0; i < M * k; i++) b_out[i] = (float)dst[i];
    for (size_t i = 0; i < r * K; i++) src[i] = f->a[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)k, (int)K, (int)r, 1.0, tm, (int)r, src, (int)K, 0.0,
                dst, (int)K);
    for (size_t i = 0; i < k * K; i++) a_out[i] = (float)dst[i];
    lora_mem_free(al, pm);
    return LORA_OK;
}
