/*
 * merge_ref.c - the reference merge kernels: the definition of the merge
 * arithmetic (merge_kernels.h) written as plainly as possible. The test
 * oracle of every ISA table.
 *
 * fmaf() and fma() are the single-rounding steps the SIMD paths do with
 * vfmadd; this file is built without -mfma, so the compiler cannot fuse any
 * other multiply and add behind our back.
 */
#include <math.h>
#include "../merge_kernels.h"
#include "fp_scalar.h"
#include "merge_scalar.h"

/* Columns per pass: the delta of a row segment lives on the stack, and A is
 * then read row by row (sequentially) rather than down its columns. */
enum { MK_REF_CHUNK = 256 };

static float load_w(const lora_mk_job *job, size_t i, size_t j)
{
    size_t at = i * job->w_stride + j;
    switch (job->w_dtype) {
    case LORA_MK_F32: return ((const float *)job->w)[at];
    case LORA_MK_F16: return lora_bits_to_f32(lora_f16_bits_to_f32_bits(((const uint16_t *)job->w)[at]));
    case LORA_MK_BF16: return lora_bits_to_f32(lora_bf16_bits_to_f32_bits(((const uint16_t *)job->w)[at]));
    }
    return 0.0f;
}

static void store_out(const lora_mk_job *job, size_t i, size_t j, float v)
{
    size_t at = i * job->out_stride + j;
    switch (job->out_dtype) {
    case LORA_MK_F32: ((float *)job->out)[at] = v; break;
    case LORA_MK_F16: ((uint16_t *)job->out)[at] = lora_f32_bits_to_f16_bits(lora_f32_to_bits(v)); break;
    case LORA_MK_BF16: ((uint16_t *)job->out)[at] = lora_f32_bits_to_bf16_bits(lora_f32_to_bits(v)); break;
    }
}

static float scale_of(const lora_mk_job *job, size_t i, size_t j)
{
    switch (job->scale_mode) {
    case LORA_MK_SCALE_NONE: break;
    case LORA_MK_SCALE_ROW:
    case LORA_MK_SCALE_ROW_FIRST: return job->scale[i];
    case LORA_MK_SCALE_COL:
    case LORA_MK_SCALE_COL_FIRST: return job->scale[j];
    }
    return 1.0f;
}

static int scale_first(const lora_mk_job *job)
{
    return job->scale_mode == LORA_MK_SCALE_ROW_FIRST || job->scale_mode == LORA_MK_SCALE_COL_FIRST;
}

static int scale_after(const lora_mk_job *job)
{
    return job->scale_mode == LORA_MK_SCALE_ROW || job->scale_mode == LORA_MK_SCALE_COL;
}

/* W's own NaN wins, quieted; a NaN made by the delta or the scale gets one
 * canonical pattern. */
static float nan_rule(const lora_mk_job *job, float w)
{
    return lora_bits_to_f32(job->w && isnan(w) ? lora_f32_to_bits(w) | LORA_MK_QUIET_F32 : LORA_MK_QNAN_F32);
}

/* V from the finished fp32 delta d of element (i, j). */
static float mk_value(const lora_mk_job *job, size_t i, size_t j, float d)
{
    if (job->subtract) d = -d;
    float s = scale_of(job, i, j);
    float w = job->w ? load_w(job, i, j) : 0.0f;
    float v = d;
    if (job->w) v = scale_first(job) ? s * w + d : w + d;
    if (scale_after(job)) v = s * v;
    return isnan(v) ? nan_rule(job, w) : v;
}

/* x rounded to fp32 toward zero, then the last bit set if that was inexact
 * ("round to odd"): a later RNE to a format with at most 22 bits of
 * precision then equals one rounding of x. */
static float f64_to_f32_odd(double x)
{
    float t = (float)x;
    if ((double)t == x) return t;
    uint32_t b = lora_f32_to_bits(t);
    if (fabs((double)t) > fabs(x)) b--; /* RNE went away from zero (Inf included): step back */
    return lora_bits_to_f32(b | 1u);
}

/* V from the finished float64 delta d, rounded once to fp32 (odd == 0) or
 * to odd for a 16-bit output. */
static float mk_value64(const lora_mk_job *job, size_t i, size_t j, double d, int odd)
{
    if (job->subtract) d = -d;
    double s = scale_of(job, i, j);
    float w = job->w ? load_w(job, i, j) : 0.0f;
    double v = d;
    if (job->w) v = scale_first(job) ? s * w + d : (double)w + d;
    if (scale_after(job)) v = s * v;
    if (isnan(v)) return nan_rule(job, w);
    return odd ? f64_to_f32_odd(v) : (float)v;
}

/* d[c] = D[i][j0 + c] for c < n, in the defined k order. */
static void mk_delta(const lora_mk_job *job, size_t i, size_t j0, size_t n, float *d)
{
    for (size_t c = 0; c < n; c++) d[c] = 0.0f;
    const float *bs = job->bs + i * job->bs_stride;
    for (size_t k = 0; k < job->r; k++) {
        const float *a = job->a + k * job->a_stride + j0;
        float b = bs[k];
        for (size_t c = 0; c < n; c++) d[c] = fmaf(b, a[c], d[c]);
    }
}

static void mk_delta64(const lora_mk_job *job, size_t i, size_t j0, size_t n, double *d)
{
    for (size_t c = 0; c < n; c++) d[c] = 0.0;
    const double *bs = job->bs64 + i * job->bs_stride;
    for (size_t k = 0; k < job->r; k++) {
        const float *a = job->a + k * job->a_stride + j0;
        double b = bs[k];
        for (size_t c = 0; c < n; c++) d[c] = fma(b, (double)a[c], d[c]);
    }
}

/* Calls sink(job, i, j, V, ctx) for every element, row by row; V is the
 * fp32 value (rounded to odd when `odd` and accumulating in float64). */
typedef void (*mk_sink)(const lora_mk_job *job, size_t i, size_t j, float v, void *ctx);

static void mk_walk(const lora_mk_job *job, mk_sink sink, void *ctx, int odd)
{
    float d[MK_REF_CHUNK];
    double d64[MK_REF_CHUNK];
    for (size_t i = 0; i < job->rows; i++)
        for (size_t j0 = 0; j0 < job->cols; j0 += MK_REF_CHUNK) {
            size_t n = job->cols - j0 < MK_REF_CHUNK ? job->cols - j0 : MK_REF_CHUNK;
            if (job->bs64) {
                mk_delta64(job, i, j0, n, d64);
                for (size_t c = 0; c < n; c++) sink(job, i, j0 + c, mk_value64(job, i, j0 + c, d64[c], odd), ctx);
            } else {
                mk_delta(job, i, j0, n, d);
                for (size_t c = 0; c < n; c++) sink(job, i, j0 + c, mk_value(job, i, j0 + c, d[c]), ctx);
            }
        }
}

static void sink_store(const lora_mk_job *job, size_t i, size_t j, float v, void *ctx)
{
    (void)ctx;
    store_out(job, i, j, v);
}

static void ref_apply(const lora_mk_job *job) { mk_walk(job, sink_store, NULL, job->out_dtype != LORA_MK_F32); }

/* Per-row lanes, as merge_kernels.h defines the row sum order. */
typedef struct {
    double lane[16];
    double *sumsq;
} mk_row_acc;

static void sink_row(const lora_mk_job *job, size_t i, size_t j, float v, void *ctx)
{
    mk_row_acc *acc = ctx;
    double x = v;
    acc->lane[j % 16] += x * x;
    if (j + 1 == job->cols) {
        acc->sumsq[i] = lora_mk_lanes_total(acc->lane);
        for (int l = 0; l < 16; l++) acc->lane[l] = 0.0;
    }
}

static void ref_row_sumsq(const lora_mk_job *job, double *sumsq)
{
    mk_row_acc acc = {.sumsq = sumsq};
    for (int l = 0; l < 16; l++) acc.lane[l] = 0.0;
    if (job->cols == 0)
        for (size_t i = 0; i < job->rows; i++) sumsq[i] = 0.0;
    mk_walk(job, sink_row, &acc, 0);
}

static void sink_col(const lora_mk_job *job, size_t i, size_t j, float v, void *ctx)
{
    (void)job;
    (void)i;
    double x = v;
    ((double *)ctx)[j] += x * x;
}

static void ref_col_sumsq(const lora_mk_job *job, double *sumsq) { mk_walk(job, sink_col, sumsq, 0); }

const lora_merge_kernels lora_merge_kernels_ref = {
    .name = "ref",
    .apply = ref_apply,
    .row_sumsq = ref_row_sumsq,
    .col_sumsq = ref_col_sumsq,
};
