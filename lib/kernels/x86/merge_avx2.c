/*
 * merge_avx2.c - the fused merge kernels for AVX2 + FMA + F16C, fp32
 * accumulation, and the AVX2 table. Run only after dispatch has checked
 * CPUID and XCR0. (float64 accumulation: merge64_avx2.c.)
 *
 * Same structure as merge_avx512.c with 16 ymm registers: 4 rows x 16
 * columns of the delta in 8 accumulators, two A vectors and one broadcast,
 * so nothing spills. Per k: 2 loads of A and 4 broadcasts for 8 FMAs.
 *
 * Bit-identical to ref: vfmadd per k ascending from +0, the same add,
 * multiplies and NaN rule, vcvtps2ph imm 0 and the integer bf16 rounding.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "merge_avx2.h"
#include "merge_x86.h"

MK_INLINE __m256 value8(const mk_ctx *c, size_t i, size_t j, __m256 d, mk_tail t, int masked, int wd)
{
    if (c->subtract) d = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(d), _mm256_set1_epi32(INT32_MIN)));
    __m256 w = wd == MK_W_NONE ? _mm256_setzero_ps() : mk_load_w(c, i, j, wd, t, masked);
    __m256 v = wd == MK_W_NONE ? d : _mm256_add_ps(w, d);
    if (c->scaled) {
        __m256 s = mk_load_scale(c, i, j, t, masked);
        if (c->first) v = _mm256_add_ps(_mm256_mul_ps(s, w), d);
        else v = _mm256_mul_ps(s, v);
    }
    return mk_fix_nan(v, w, wd);
}

MK_INLINE void tile(const mk_ctx *c, size_t i0, size_t j, int R, int V, mk_tail t, int masked, int wd, int od, int sink,
                    double lanes[MK_ROWS][16])
{
    const float *bs = c->bs + i0 * c->bs_stride;
    const size_t bss = c->bs_stride;
    __m256 acc[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
    const float *a = c->a + j;
    for (size_t k = 0; k < c->r; k++, a += c->a_stride) {
        __m256 a0 = mk_load_f32(a, t, masked);
        __m256 a1 = V == 2 ? _mm256_loadu_ps(a + 8) : a0;
        MK_UNROLL
        for (int i = 0; i < R; i++) {
            __m256 b = _mm256_broadcast_ss(bs + (size_t)i * bss + k);
            acc[i][0] = _mm256_fmadd_ps(b, a0, acc[i][0]);
            if (V == 2) acc[i][1] = _mm256_fmadd_ps(b, a1, acc[i][1]);
        }
    }
    if (!mk_compact(wd, sink) && R == MK_ROWS && !masked) {
        MK_UNROLL
        for (int i = 0; i < R; i++)
            MK_UNROLL
            for (int v = 0; v < V; v++) {
                size_t row = i0 + (size_t)i, col = j + 8 * (size_t)v;
                mk_sink8(c, row, col, value8(c, row, col, acc[i][v], t, masked, wd), t, masked, od, sink, lanes[i]);
            }
        return;
    }
    __m256 dt[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) dt[i][0] = acc[i][0], dt[i][1] = acc[i][1];
    _Pragma("GCC unroll 1") for (int i = 0; i < R; i++)
    {
        MK_UNROLL
        for (int v = 0; v < V; v++) {
            size_t row = i0 + (size_t)i, col = j + 8 * (size_t)v;
            mk_sink8(c, row, col, value8(c, row, col, dt[i][v], t, masked, wd), t, masked, od, sink, lanes[i]);
        }
    }
}

MK_INLINE void row_block(const mk_ctx *c, size_t i0, int R, int wd, int od, int sink)
{
    double lanes[MK_ROWS][16];
    if (sink == MK_ROWSQ) mk_lanes_zero(lanes, R);
    const mk_tail all = mk_tail_of(8);
    size_t j = 0;
    for (; j + 16 <= c->cols; j += 16) tile(c, i0, j, R, 2, all, 0, wd, od, sink, lanes);
    for (; j < c->cols; j += 8) {
        size_t n = c->cols - j < 8 ? c->cols - j : 8;
        tile(c, i0, j, R, 1, mk_tail_of(n), 1, wd, od, sink, lanes);
    }
    if (sink == MK_ROWSQ)
        for (int i = 0; i < R; i++) c->sumsq[i0 + (size_t)i] = lora_mk_lanes_total(lanes[i]);
}

MK_INLINE void run(const lora_mk_job *job, double *sumsq, int wd, int od, int sink)
{
    const mk_ctx c = mk_ctx_make(job, sumsq);
    size_t i = 0;
    for (; i + MK_ROWS <= job->rows; i += MK_ROWS) row_block(&c, i, MK_ROWS, wd, od, sink);
    for (; i < job->rows; i++) row_block(&c, i, 1, wd, od, sink);
}

MK_DEFINE_TABLE(lora_mk_avx2_f32_fns, run, mk32);

static mk_fn pick(const lora_mk_job *job, int what)
{
    int wd = job->w ? (int)job->w_dtype : MK_W_NONE;
    return (job->bs64 ? lora_mk_avx2_f64_fns : lora_mk_avx2_f32_fns)[wd][what];
}

static void avx2_apply(const lora_mk_job *job) { pick(job, (int)job->out_dtype)(job, NULL); }
static void avx2_row_sumsq(const lora_mk_job *job, double *sumsq) { pick(job, MK_WHAT_ROWSQ)(job, sumsq); }
static void avx2_col_sumsq(const lora_mk_job *job, double *sumsq) { pick(job, MK_WHAT_COLSQ)(job, sumsq); }

const lora_merge_kernels lora_merge_kernels_avx2 = {
    .name = "avx2",
    .apply = avx2_apply,
    .row_sumsq = avx2_row_sumsq,
    .col_sumsq = avx2_col_sumsq,
};

#else
typedef int lora_merge_avx2_unused_; /* keep the translation unit non-empty */
#endif
