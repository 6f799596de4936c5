/*
 * lowrank.h - what lora_quantize and lora_prune share: a module's factors as
 * matrices, bit-exact copies of everything they do not rewrite, and the
 * error of a delta in double. Internal to liblora-ops.
 *
 * Matrix view of a module (spec 14.2): A is r x K and B is M x r, row-major
 * f32, where K = numel(A) / r (in, num or cin * k1 * ...) and M =
 * numel(B) / r (out or dim). delta W is s * B @ A up to a reshape or a
 * transpose, which no norm used here depends on.
 */
#ifndef LORA_OPS_LOWRANK_H
#define LORA_OPS_LOWRANK_H

#include "../common/internal.h"
#include "../lora_ops.h"

typedef struct {
    uint32_t r;
    uint64_t K, M;
    float *a, *b; /* r*K and M*r floats, owned (allocator of the load call) */
} lora_lr_factors;

/* Decode A and B of module `m` (checksums verified). LORA_E_NONFINITE,
 * naming the module, if `finite` and a value is NaN or infinite. */
lora_status lora_lr_load(const lora_reader *r, const lora_allocator *al, const lora_module *m, int finite,
                         lora_lr_factors *f, lora_error *err);
void lora_lr_free(const lora_allocator *al, lora_lr_factors *f);

/* ---- copying ---- */

/* Every metadata entry of r, in order, with its type. */
lora_status lora_lr_copy_meta(const lora_reader *r, lora_writer *w, lora_error *err);
/* Blob `index` of r, bit for bit: raw bytes, dtype, NF4 block, compression. */
lora_status lora_lr_copy_blob(const lora_reader *r, const lora_allocator *al, lora_writer *w, uint32_t index,
                              uint32_t *out, lora_error *err);
/* Every replacement tensor, bit for bit. */
lora_status lora_lr_copy_tensors(const lora_reader *r, const lora_allocator *al, lora_writer *w, lora_error *err);
/* Blob `index` of r (LORA_NO_BLOB passes through) copied, for magnitude
 * and bias references. */
lora_status lora_lr_copy_optional(const lora_reader *r, const lora_allocator *al, lora_writer *w, uint32_t index,
                                  uint32_t *out, lora_error *err);
/* Add f32 values as a blob of `dtype`/`block` with the shape `shape` (ndim
 * dims), compressed like source blob `like` of r. */
lora_status lora_lr_add_f32(const lora_reader *r, uint32_t like, lora_writer *w, lora_dtype dtype, uint32_t block,
                            uint32_t ndim, const uint64_t *shape, const float *v, uint64_t n, uint32_t *out,
                            lora_error *err);
/* A module record like `m` with new blobs and, when `rank` differs from
 * m->rank, scaling EXPLICIT with m->scale kept bit for bit. */
lora_status lora_lr_add_module(lora_writer *w, const lora_module *m, uint32_t rank, uint32_t a, uint32_t b,
                               uint32_t mag, uint32_t bias, lora_error *err);
/* Write w to `output` crash-safely, refusing to overwrite `input`; the
 * serialized size in *size. */
lora_status lora_lr_write(lora_writer *w, const char *input, const char *output, uint64_t *size, lora_error *err);

/* Whether n elements of `dtype` fill whole blocks of `block` (0 = default). */
int lora_lr_fits_blocks(lora_dtype dtype, uint32_t block, uint64_t n);

/* ---- errors of a delta ---- */

/* ||d1 - d0||_F, max |d1 - d0| and ||d0||_F for d_i = s_i * B_i @ A_i, all
 * in double, for two factorizations of the same M x K delta (ranks may
 * differ). Both deltas are formed in bands of rows by dgemm, so the memory
 * is O(K (r0 + r1)) plus two bands; identical inputs give exactly 0. */
lora_status lora_lr_delta_error(const lora_lr_factors *f0, double s0, const lora_lr_factors *f1, double s1,
                                const lora_allocator *al, double *norm0, double *err_fro, double *err_max);

/* ---- reports ---- */

/* Copy n NUL-terminated names into one allocation (for a report). */
char *lora_lr_names(const lora_allocator *al, const char *const *names, size_t n, const char **out);

#endif /* LORA_OPS_LOWRANK_H */
