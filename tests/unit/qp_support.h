/*
 * qp_support.h - shared by test_quantize.c and test_prune.c: seeded
 * adapters written with the public writer, deltas formed explicitly in
 * double (the independent reference), temp directories and the real fixture.
 */
#ifndef TESTS_QP_SUPPORT_H
#define TESTS_QP_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include "lora.h"

typedef struct {
    uint64_t s;
} qp_rng;

double qp_gauss(qp_rng *r);

/* One module of a synthetic adapter. A is [rank, a_dims...], B [b0, rank, 1...]
 * as lora.h requires for `kind`; values N(0, 1) * 0.05, B's column j scaled by
 * decay^j (so the spectrum falls off like a trained adapter's); `true_rank`
 * > 0 makes B = B1 C with B1 [b0, true_rank]: a delta of lower rank than r. */
typedef struct {
    const char *name;
    lora_kind kind;
    lora_scaling scaling;
    uint32_t flags, rank;
    float alpha, scale;
    uint32_t base_ndim;
    uint64_t base_shape[LORA_MAX_DIMS];
    lora_dtype dtype_a, dtype_b;
    double decay;
    uint32_t true_rank;
    int magnitude, bias;
} qp_module;

/* Write an adapter of these modules (plus one metadata entry and one BF16
 * replacement tensor) to `path`. Asserts on failure. */
void qp_write_adapter(const char *path, const qp_module *mods, size_t n, uint64_t seed);

/* delta W of module `index`: s * B @ A as an M x K row-major double array
 * (malloc'd), from the decoded f32 values, by plain loops. */
double *qp_delta(const lora_reader *r, uint32_t index, uint64_t *M, uint64_t *K);
/* Singular values (descending) of an M x K matrix, LAPACKE_dgesvd on a copy;
 * returns min(M, K) values (malloc'd). */
double *qp_singular_values(const double *a, uint64_t M, uint64_t K);
double qp_norm(const double *a, size_t n);
double qp_diff_norm(const double *a, const double *b, size_t n);
double qp_max_abs_diff(const double *a, const double *b, size_t n);

/* A fresh temp directory; qp_path joins a name to it (static buffer per
 * call slot: up to 8 live paths); qp_cleanup removes the files named there. */
const char *qp_tmpdir(void);
const char *qp_path(const char *name);
void qp_cleanup(void);
int qp_exists(const char *path);
/* File contents (malloc'd) and size. */
uint8_t *qp_slurp(const char *path, size_t *size);

/* The real fixture peft-gemma3-gqa imported to a .lora at `path` with
 * lora_import. 0 if the fixture is missing (the caller skips, or fails when
 * the environment variable CI is set), 1 when written. */
int qp_import_fixture(const char *path);

#endif /* TESTS_QP_SUPPORT_H */
