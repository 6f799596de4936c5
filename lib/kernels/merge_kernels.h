/*
 * merge_kernels.h - fused LoRA merge kernels with run-time ISA dispatch.
 * Not installed. Dispatched like kernels.h (same ISAs, same detection, same
 * LORA_ISA override), through a table of its own.
 *
 * ONE JOB = a block of rows of one base tensor, stored row-major [rows][cols]:
 *
 *   D[i][j]   = sum over k = 0 .. r-1 of BS[i][k] * A[k][j]
 *   V[i][j]   = W[i][j] + D[i][j]       (or W - D; see scale_mode)
 *   out[i][j] = V[i][j] rounded once to out_dtype, round-to-nearest-even
 *
 * BS is the block's rows of B already multiplied by the adapter's weight and
 * scaling. Several adapters on one module are ONE job with their ranks
 * concatenated (BS = [B1' | B2'], A = [A1; A2]): the base is then read once
 * and rounded once.
 *
 * TWO ACCUMULATIONS, chosen by which BS pointer the job sets:
 *
 * fp32 (bs set; the "accumulate in fp32", PEFT's arithmetic). The
 * caller forms BS = fl(weight * s) * B in fp32. Exactly:
 *   d = +0.0f;  for k = 0, 1, .., r-1:  d = fmaf(BS[i][k], A[k][j], d);
 *   if (subtract) d = -d;
 *   V = w + d                      (w = W[i][j] widened to fp32, exactly)
 *   out = V narrowed as lora_kernels.f32_to_{f16,bf16} do.
 * Accuracy (measured): |error| <= 2.5e-7 (|W| + sum |BS*A|) per element;
 * F16 out >= 99.98% exact, all within 1 ulp. But where W and D nearly cancel, the
 * fp32 sum's absolute error (~2^-24 sum |BS*A|) is large next to |W + D|:
 * with realistic adapters (r = 16, bf16 base) 0.2-0.4% of F32 outputs are
 * more than 1e-6 off relative to |W + D|, and about 5 BF16 outputs in 10^7
 * are more than 1 ulp off (up to 35 ulp seen), near zero. No fp32
 * accumulation avoids this; the float64 one does.
 *
 * float64 (bs64 set; bs ignored). The caller forms BS = weight * s * B in
 * float64 (no fp32 rounding of the scaled factor). Exactly:
 *   d = +0.0;   for k = 0, 1, .., r-1:  d = fma(BS[i][k], (double)A[k][j], d);
 *   if (subtract) d = -d;
 *   V = (double)w + d              (scale_mode arithmetic also in float64)
 *   out F32: V rounded once (RNE). out F16/BF16: V rounded to fp32 by
 *   round-to-odd, then RNE to 16 bits, which equals rounding V once.
 * Accuracy: the float64 reference rounded once (every output, every type,
 * in all tests), unless V lies within ~r 2^-53 (|W| + sum |BS*A|) of a
 * rounding boundary. Costs twice the FMA work of fp32.
 *
 * Both: k ascending, one fused multiply-add per step, from +0 (so D is never
 * -0 and W = -0 with a zero delta gives +0, as PEFT's W += dW does). NaN: if
 * V is NaN, out is W quieted when W is NaN (payload kept), else the positive
 * quiet NaN 0x7fc00000, so payloads do not depend on operand order or on an
 * ISA's default NaN; narrowing keeps payloads as ref/fp_scalar.h says.
 * Overflow goes to +-Inf; subnormals are kept. The result is bit-identical
 * on every ISA and for any split of the tensor into jobs, so the merged file
 * does not depend on --threads. Requires the default FP environment (no
 * FTZ/DAZ, round-to-nearest).
 *
 * ORIENTATIONS (all through the same kernel, bit-identical to each other):
 *   - nn.Linear W[out][in]:       BS = fl(w*s) * B  [out][r],  A = A [r][in].
 *   - fan_in_fan_out W[in][out] (GPT-2 Conv1D) and embeddings W[vocab][dim]:
 *     pass BS = A^T [in][r] and A = (fl(w*s) * B)^T [r][out]. Each element
 *     then sums the very same products in the same k order, so the result is
 *     exactly the transpose of the Linear merge. (float64: BS = w*s * A^T in
 *     float64 and A = B^T; equal to the Linear merge within float64 rounding.)
 *   - a LoRA bias (bias += s * lora_B.bias): rows = 1, r = 1, BS = {s},
 *     A = lora_B.bias.
 *   - quantized bases (Q8_0, Q4_0): dequantize rows to fp32 with
 *     lora_kernels, run the job in place (w = out, F32 -> F32), quantize back.
 *
 * DoRA (two passes over the block; the base is read twice, written once):
 *   1. row_sumsq (or col_sumsq for fan_in_fan_out and embeddings, where the
 *      magnitude is per column) gives sum of V^2 in float64;
 *   2. scale[i] = lora_mk_dora_factor(m[i], sumsq[i]); apply with
 *      scale_mode = LORA_MK_SCALE_ROW (COL), i.e. out = round(scale * V).
 *      A row with ||V|| = 0 gets factor Inf and NaN outputs, as in PEFT; the
 *      caller checks the sums first if it wants another rule.
 *   DoRA unmerge (W = W' / factor - D): scale = 1 / factor with
 *   LORA_MK_SCALE_ROW_FIRST (COL_FIRST) and subtract = 1. The factor is the
 *   merge-time one (PEFT caches it); it cannot be recomputed from W'.
 *   The sums of squares take a compact, slower code path (DoRA only).
 *
 * Threads: jobs on disjoint row blocks may run concurrently. out may equal w
 * (same pointer, same stride, element sizes equal); no other overlap.
 * Pointers need no alignment. The kernels do not check the job (see
 * lora_mk_job_valid) and never read or write outside the rows x cols
 * elements of each operand (stride padding is left untouched).
 */
#ifndef LORA_MERGE_KERNELS_H
#define LORA_MERGE_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "kernels.h"

/* Element types of W and out; the numbers equal LORA_DTYPE_F32/F16/BF16. */
typedef enum { LORA_MK_F32 = 0, LORA_MK_F16 = 1, LORA_MK_BF16 = 2 } lora_mk_dtype;

/* Optional fp32 multiplier s (one rounding per multiply):
 *   NONE       V = W + D
 *   ROW        V = s[i] * (W + D)        DoRA merge, magnitude per row
 *   COL        V = s[j] * (W + D)        DoRA merge, magnitude per column
 *   ROW_FIRST  V = (s[i] * W) + D        DoRA unmerge (s = 1 / factor)
 *   COL_FIRST  V = (s[j] * W) + D
 * (with subtract, "+ D" reads "- D"). i and j count from the job's first
 * row and column: scale points at the job's own part of the vector. */
typedef enum {
    LORA_MK_SCALE_NONE = 0,
    LORA_MK_SCALE_ROW = 1,
    LORA_MK_SCALE_COL = 2,
    LORA_MK_SCALE_ROW_FIRST = 3,
    LORA_MK_SCALE_COL_FIRST = 4
} lora_mk_scale;

/* Strides are in elements. Zero-initialise, then fill in. */
typedef struct {
    const void *w;      /* base [rows][cols] in w_dtype, stride w_stride; NULL: no base, V = +-D (scaled) */
    void *out;          /* [rows][cols] in out_dtype, stride out_stride (unused by the sumsq kernels) */
    const float *bs;    /* [rows][r], stride bs_stride (>= r): fl(weight * s) * B for these rows */
    const double *bs64; /* or, for float64 accumulation, weight * s * B in float64 (then bs is ignored) */
    const float *a;     /* [r][cols], stride a_stride (>= cols) */
    const float *scale; /* [rows] or [cols] per scale_mode; NULL with LORA_MK_SCALE_NONE */
    size_t rows, cols, r;
    size_t w_stride, out_stride, bs_stride, a_stride;
    lora_mk_dtype w_dtype, out_dtype;
    lora_mk_scale scale_mode;
    int subtract; /* 1: D is subtracted (unmerge) */
} lora_mk_job;

typedef struct {
    const char *name; /* "ref", "avx2", "avx512" */
    /* out = round(V) for every element of the job. */
    void (*apply)(const lora_mk_job *job);
    /* The sums square V as an fp32 value (float64 accumulation: V rounded
     * once to fp32, RNE).
     * sumsq[i] = sum over j of (double)V[i][j]^2, for i < rows. The order is
     * fixed: lane l = j mod 16 sums its columns in ascending j, then lanes
     * combine as l + 8, then l + 4, l + 2, l + 1 (a tree), in float64; squares
     * are exact. A NaN sum is stored as the canonical quiet NaN. A row must
     * lie in one job (column 0 of the job is lane 0). */
    void (*row_sumsq)(const lora_mk_job *job, double *sumsq);
    /* sumsq[j] += (double)V[i][j]^2 for i ascending, for j < cols: it
     * accumulates, so the caller zeroes it first and, to stay independent of
     * the thread count, feeds a FIXED row partition in a fixed order (e.g.
     * per-block partial arrays summed in block order). NaN is not made
     * canonical here (the caller's running sums would hide it anyway). */
    void (*col_sumsq)(const lora_mk_job *job, double *sumsq);
} lora_merge_kernels;

/* The table for lora_kernels_selected_isa(). Never NULL; no entry is NULL. */
const lora_merge_kernels *lora_merge_kernels_get(void);
/* The table of one ISA, or NULL when this CPU/OS cannot run it. */
const lora_merge_kernels *lora_merge_kernels_for_isa(lora_isa isa);
extern const lora_merge_kernels lora_merge_kernels_ref;

/* 1 if the job is well formed: pointers present for what it uses, strides
 * at least the row lengths, dtypes and scale_mode known, no FIRST mode
 * without a base, and every row x stride product within SIZE_MAX bytes.
 * out may be NULL (then it is not checked) for a job only the sumsq kernels
 * will see; apply needs it. */
int lora_mk_job_valid(const lora_mk_job *job);

/* DoRA factor m / ||V||: in float64, rounded once to fp32. */
static inline float lora_mk_dora_factor(float magnitude, double sumsq)
{
    return (float)((double)magnitude / sqrt(sumsq));
}

#endif /* LORA_MERGE_KERNELS_H */
