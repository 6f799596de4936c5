/*
 * merge_block.c - one block of output bytes: a run of rows through the
 * fused merge kernel, or a run of elements converted to the output dtype.
 * Blocks are independent, so any thread may compute any of them.
 *
 * The kernels read their operands through typed pointers, so base bytes
 * that are not aligned to their element size (a safetensors header need
 * not be padded) are copied to the aligned staging half of the scratch
 * first.
 */
#include <string.h>
#include "merge.h"

void mconv_to_f32(const lora_kernels *k, mt_type t, const uint8_t *src, float *dst, uint64_t n)
{
    switch (t) {
    case MT_F32: memcpy(dst, src, (size_t)n * 4); break;
    case MT_F16: k->f16_to_f32((const uint16_t *)(const void *)src, dst, (size_t)n); break;
    case MT_BF16: k->bf16_to_f32((const uint16_t *)(const void *)src, dst, (size_t)n); break;
    case MT_Q8_0: k->q8_0_to_f32(src, dst, (size_t)(n / 32)); break;
    case MT_Q4_0: k->q4_0_to_f32(src, dst, (size_t)(n / 32)); break;
    case MT_OTHER: break;
    }
}

void mconv_from_f32(const lora_kernels *k, mt_type t, const float *src, uint8_t *dst, uint64_t n)
{
    switch (t) {
    case MT_F32: memcpy(dst, src, (size_t)n * 4); break;
    case MT_F16: k->f32_to_f16(src, (uint16_t *)(void *)dst, (size_t)n); break;
    case MT_BF16: k->f32_to_bf16(src, (uint16_t *)(void *)dst, (size_t)n); break;
    case MT_Q8_0: k->f32_to_q8_0(src, dst, (size_t)(n / 32)); break;
    case MT_Q4_0: k->f32_to_q4_0(src, dst, (size_t)(n / 32)); break;
    case MT_OTHER: break;
    }
}

static size_t align_of(mt_type t) { return t == MT_F32 ? 4 : mt_is_float(t) ? 2 : 1; }

/* `src` itself, or its bytes copied to `stage` when misaligned. */
static const uint8_t *aligned(const uint8_t *src, mt_type t, uint64_t n, float *stage)
{
    if ((uintptr_t)src % align_of(t) == 0) return src;
    memcpy(stage, src, (size_t)mt_bytes(t, n));
    return (const uint8_t *)stage;
}

/* n elements from type `from` to `to`: bit copies stay bit copies, widening
 * and narrowing go through f32 (exact, then one rounding). */
static void convert(const lora_kernels *k, mt_type from, const uint8_t *src, mt_type to, uint8_t *dst, uint64_t n,
                    float *f32)
{
    if (from == to) {
        memcpy(dst, src, (size_t)mt_bytes(from, n));
    } else if (from == MT_F32) {
        mconv_from_f32(k, to, (const float *)(const void *)src, dst, n);
    } else if (to == MT_F32) {
        mconv_to_f32(k, from, src, (float *)(void *)dst, n);
    } else {
        mconv_to_f32(k, from, src, f32, n);
        mconv_from_f32(k, to, f32, dst, n);
    }
}

static void merge_rows(const mctx *m, const mp_tensor *t, const mbase_tensor *bt, const mprep *p, uint64_t first,
                       uint64_t n, float *stage, float *f32, uint8_t *out)
{
    lora_mk_job job;
    memset(&job, 0, sizeof job);
    const uint8_t *w = bt->data + first * mt_bytes(bt->type, t->cols);
    if (p->bs64) job.bs64 = p->bs64 + first * p->r;
    else job.bs = p->bs + first * p->r;
    job.a = p->a;
    job.rows = n;
    job.cols = t->cols;
    job.r = p->r;
    job.w_stride = job.out_stride = job.a_stride = t->cols;
    job.bs_stride = p->r;
    job.subtract = m->subtract;
    if (p->scale) {
        job.scale = p->mode == LORA_MK_SCALE_ROW ? p->scale + first : p->scale;
        job.scale_mode = p->mode;
    }
    if (mt_is_quant(bt->type)) {
        /* Dequantize, merge in place in f32, requantize. */
        mconv_to_f32(m->k, bt->type, w, f32, n * t->cols);
        job.w = job.out = f32;
        job.w_dtype = job.out_dtype = LORA_MK_F32;
        m->mk->apply(&job);
        mconv_from_f32(m->k, t->out_type, f32, out, n * t->cols);
        return;
    }
    job.w = aligned(w, bt->type, n * t->cols, stage);
    job.w_dtype = (lora_mk_dtype)bt->type;
    job.out = out;
    job.out_dtype = (lora_mk_dtype)t->out_type;
    m->mk->apply(&job);
}

lora_status mblock_run(const mctx *m, uint32_t tensor, uint64_t b, const mprep *p, float *scratch, uint8_t *out,
                       size_t *len, lora_error *err)
{
    (void)err;
    const mp_tensor *t = &m->plan->t[tensor];
    const mbase_tensor *bt = &m->base->tensors[tensor];
    float *stage = scratch, *f32 = scratch + m->plan->max_scratch;
    uint64_t first, n;
    mp_block_range(t, b, &first, &n);
    switch (t->action) {
    case MP_MERGE:
        merge_rows(m, t, bt, p, first, n, stage, f32, out);
        *len = (size_t)mt_bytes(t->out_type, n * t->cols);
        return LORA_OK;
    case MP_CONVERT: {
        const uint8_t *src = aligned(bt->data + mt_bytes(bt->type, first), bt->type, n, stage);
        convert(m->k, bt->type, src, t->out_type, out, n, f32);
        break;
    }
    case MP_REPLACE:
        if (p->src_f32) convert(m->k, MT_F32, (const uint8_t *)(p->src_f32 + first), t->out_type, out, n, f32);
        else convert(m->k, p->src_type, p->src + mt_bytes(p->src_type, first), t->out_type, out, n, f32);
        break;
    case MP_COPY: break;
    }
    *len = (size_t)mt_bytes(t->out_type, n);
    return LORA_OK;
}
