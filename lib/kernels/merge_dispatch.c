/*
 * merge_dispatch.c - the merge kernel table for an ISA, and the job check.
 * Compiled at baseline flags. The CPU and OS checks are the ones dispatch.c
 * already made once: an ISA runs here exactly when lora_kernels_for_isa()
 * returns its table, so this file keeps no state of its own.
 */
#include <stdint.h>
#include "lora.h"
#include "merge_kernels.h"
#include "x86/merge_x86.h"

_Static_assert(LORA_MK_F32 == (int)LORA_DTYPE_F32 && LORA_MK_F16 == (int)LORA_DTYPE_F16 &&
                   LORA_MK_BF16 == (int)LORA_DTYPE_BF16,
               "lora_mk_dtype numbers follow lora_dtype");

const lora_merge_kernels *lora_merge_kernels_for_isa(lora_isa isa)
{
    if (!lora_kernels_for_isa(isa)) return NULL;
    switch (isa) {
    case LORA_ISA_REF: return &lora_merge_kernels_ref;
#if defined(__x86_64__) || defined(__i386__)
    case LORA_ISA_AVX2: return &lora_merge_kernels_avx2;
    case LORA_ISA_AVX512: return &lora_merge_kernels_avx512;
#else
    case LORA_ISA_AVX2:
    case LORA_ISA_AVX512: return NULL;
#endif
    case LORA_ISA_COUNT_: return NULL;
    }
    return NULL;
}

const lora_merge_kernels *lora_merge_kernels_get(void)
{
    const lora_merge_kernels *k = lora_merge_kernels_for_isa(lora_kernels_selected_isa());
    return k ? k : &lora_merge_kernels_ref;
}

static size_t elem_size(lora_mk_dtype t) { return t == LORA_MK_F32 ? 4 : 2; }

static int dtype_known(lora_mk_dtype t) { return t == LORA_MK_F32 || t == LORA_MK_F16 || t == LORA_MK_BF16; }

/* rows x stride elements of `size` bytes fit in the address space, and the
 * stride covers a row. A zero-row operand is always fine. */
static int span_ok(size_t rows, size_t stride, size_t len, size_t size)
{
    if (rows == 0 || len == 0) return 1;
    if (stride < len) return 0;
    return stride <= SIZE_MAX / size / rows;
}

int lora_mk_job_valid(const lora_mk_job *job)
{
    if (!job) return 0;
    if (job->out && !dtype_known(job->out_dtype)) return 0;
    if (job->rows && job->r && !job->bs && !job->bs64) return 0;
    if (job->cols && job->r && !job->a) return 0;
    if (job->r && job->bs_stride < job->r) return 0;
    if (!span_ok(job->rows, job->bs_stride, job->r, job->bs64 ? sizeof(double) : sizeof(float))) return 0;
    if (!span_ok(job->r, job->a_stride, job->cols, sizeof(float))) return 0;
    if (job->out && !span_ok(job->rows, job->out_stride, job->cols, elem_size(job->out_dtype))) return 0;
    if (job->w && !dtype_known(job->w_dtype)) return 0;
    if (job->w && !span_ok(job->rows, job->w_stride, job->cols, elem_size(job->w_dtype))) return 0;
    switch (job->scale_mode) {
    case LORA_MK_SCALE_NONE: return 1;
    case LORA_MK_SCALE_ROW:
    case LORA_MK_SCALE_COL: return job->scale != NULL;
    case LORA_MK_SCALE_ROW_FIRST:
    case LORA_MK_SCALE_COL_FIRST: return job->scale != NULL && job->w != NULL;
    }
    return 0;
}
