/*
 * merge_support.h - what the merge tests share (test_merge.c,
 * test_merge_gguf.c): seeded values, an independent float64 reference and
 * its rounding to F32/F16/BF16, test adapters written with the public
 * writer, temporary directories. Names start with ms_.
 */
#ifndef TESTS_MERGE_SUPPORT_H
#define TESTS_MERGE_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include "lora.h"

/* ---- numbers --------------------------------------------------------------------- */

uint64_t ms_rng(uint64_t *s);                   /* splitmix64 */
double ms_uniform(uint64_t *s, double scale);   /* in [-scale, scale) */

typedef enum { MS_F32 = 0, MS_F16 = 1, MS_BF16 = 2 } ms_type;

size_t ms_size(ms_type t);
/* x rounded once to t (round to nearest even, from binary64 directly). */
void ms_store(ms_type t, double x, uint8_t *dst);
double ms_load(ms_type t, const uint8_t *src);
/* Distance in representable values between two stored values (0 equal). */
int64_t ms_ulps(ms_type t, const uint8_t *a, const uint8_t *b);

/* ---- a comparison tally ------------------------------------------------------------ */

typedef struct {
    uint64_t elems, exact, one_ulp, worse;
    double max_rel;             /* F32: largest |got - want| / max(|want|, 1e-30) */
} ms_tally;

void ms_compare(ms_type t, double want, const uint8_t *got, ms_tally *c);
/* The acceptance of issue 4: F32 within 1e-6 relative; F16/BF16 at most 1
 * ulp and bit-exact on >= 99.9%. Prints the tally when it fails. */
int ms_tally_ok(ms_type t, const ms_tally *c, const char *what);

/* ---- adapters ------------------------------------------------------------------------- */

typedef struct {
    char name[160];
    lora_kind kind;
    uint32_t flags;             /* LORA_MODULE_FAN_IN_FAN_OUT */
    uint32_t rank;
    float alpha, scale;         /* scale = alpha / rank (binary32) */
    uint32_t ndim;
    uint64_t shape[5];          /* base shape as stored */
    float *a, *b;               /* A [r][inner], B [outer][r], row-major */
    float *bias;                /* [outer] or NULL */
    float *mag;                 /* DoRA magnitude [outer] or NULL */
    uint64_t outer, inner;      /* B rows; A columns (flattened) */
} ms_module;

/* Seeded A, B (and bias, magnitude when asked). */
void ms_module_init(ms_module *m, const char *name, lora_kind kind, uint32_t flags, uint32_t rank, float alpha,
                    uint32_t ndim, const uint64_t *shape, int bias, int mag, uint64_t seed);
void ms_module_free(ms_module *m);

typedef struct {
    const char *name;
    ms_type type;
    uint32_t ndim;
    uint64_t shape[4];
    const uint8_t *bytes;
} ms_replacement;

/* Write a .lora with these modules (F32 factors) and replacement tensors. */
lora_status ms_write_adapter(const char *path, const ms_module *m, size_t n, const ms_replacement *t, size_t nt);

/* Delta of module m at element (i, j) of its base tensor as stored, in
 * float64 (rows x cols = the stored tensor viewed as 2-D): s * (B @ A),
 * transposed for fan_in_fan_out and embeddings. Without the scale. */
double ms_delta(const ms_module *m, uint64_t i, uint64_t j, uint64_t cols);
int ms_module_transposed(const ms_module *m);

/* ---- files ------------------------------------------------------------------------------ */

/* A fresh directory under $TMPDIR (or /tmp); ms_rmtree removes it. */
void ms_tmpdir(char *out, size_t cap);
void ms_rmtree(const char *dir);
/* Entries in `dir` other than . and .. (temp files included). */
int ms_count_entries(const char *dir);
/* "<dir>/<name>" into out. */
const char *ms_path(char *out, size_t cap, const char *dir, const char *name);
/* The real fixtures directory, or NULL (then the test skips, or fails when
 * the environment variable CI is set). $LORA_FIXTURES_DIR overrides. */
const char *ms_fixtures(void);
int ms_file_equal(const char *a, const char *b);

#endif /* TESTS_MERGE_SUPPORT_H */
