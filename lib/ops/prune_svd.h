/*
 * prune_svd.h - singular values and truncated refactoring of B @ A, in
 * double, from the QR factors of B and A^T (prune_svd.c). Internal to
 * liblora-ops.
 */
#ifndef LORA_OPS_PRUNE_SVD_H
#define LORA_OPS_PRUNE_SVD_H

#include "lowrank.h"

typedef struct {
    size_t M, K, r, rb, ra, p; /* rb = min(M, r), ra = min(K, r), p = min(rb, ra) */
    double *sigma;             /* p singular values of B @ A (scale not included), descending */
    double *rbm, *ram;         /* R of B (rb x r) and of A^T (ra x r), upper trapezoids, column-major */
    double *u, *vt;            /* core SVD: U rb x p, V^T p x ra (column-major); with `vectors` only */
    double *mem;               /* one allocation holding all of the above */
} lora_svd;

/* sigma always; the factors for lora_svd_factors only with `vectors`.
 * LAPACK failures: LORA_E_NONFINITE (no convergence) or
 * LORA_E_INVALID_ARGUMENT (a bug), with a detail. */
lora_status lora_svd_compute(const lora_lr_factors *f, const lora_allocator *al, int vectors, lora_svd *s,
                             lora_error *err);
/* The rank-k factors (1 <= k <= p) of the same `f`: a_out k x K and b_out
 * M x k, row-major f32, B' = Q_B U_k sqrt(S_k), A' = sqrt(S_k) V_k^T Q_A^T
 * (computed as B R_A^T V_k S_k^-1/2 and S_k^-1/2 U_k^T R_B A). */
lora_status lora_svd_factors(const lora_svd *s, const lora_lr_factors *f, uint32_t k, const lora_allocator *al,
                             float *a_out, float *b_out, lora_error *err);
void lora_svd_free(const lora_allocator *al, lora_svd *s);

#endif /* LORA_OPS_PRUNE_SVD_H */
