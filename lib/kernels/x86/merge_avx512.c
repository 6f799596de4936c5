/*
 * merge_avx512.c - the fused merge kernels for AVX-512 F/BW/VL/DQ (+F16C,
 * FMA), fp32 accumulation, and the AVX-512 table. Run only after dispatch
 * has checked CPUID and XCR0. (float64 accumulation: merge64_avx512.c.)
 *
 * Register blocking: 8 rows x 32 columns of the delta live in 16 zmm
 * accumulators. Per k, two loads of A feed 16 FMAs whose other operand is
 * BS[i][k] broadcast from memory, so A (r x cols, in L2) is read once per 8
 * rows and the FMA ports, not the loads, set the pace. The finished tile is
 * added to the base and narrowed while still in registers: D never goes to
 * memory, W is read once and out written once.
 *
 * Bit-identical to ref (merge_kernels.h): vfmadd per k in ascending order
 * from +0, then the same add, multiplies, NaN rule and RNE narrowing
 * (vcvtps2ph imm 0; bf16 by integer add-and-shift).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "merge_avx512.h"
#include "merge_x86.h"

/* V of 16 elements from their finished fp32 delta d. */
MK_INLINE __m512 value16(const mk_ctx *c, size_t i, size_t j, __m512 d, __mmask16 m, int masked, int wd)
{
    if (c->subtract) d = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(d), _mm512_set1_epi32(INT32_MIN)));
    __m512 w = wd == MK_W_NONE ? _mm512_setzero_ps() : mk_load_w(c, i, j, wd, m, masked);
    __m512 v = wd == MK_W_NONE ? d : _mm512_add_ps(w, d);
    if (c->scaled) {
        __m512 s = mk_load_scale(c, i, j, m, masked);
        if (c->first) v = _mm512_add_ps(_mm512_mul_ps(s, w), d);
        else v = _mm512_mul_ps(s, v);
    }
    return mk_fix_nan(v, w, wd);
}

/* Rows i0 .. i0+R-1, columns j .. j+16V-1 (the only vector masked by m when
 * masked, then V == 1). */
MK_INLINE void tile(const mk_ctx *c, size_t i0, size_t j, int R, int V, __mmask16 m, int masked, int wd, int od,
                    int sink, double lanes[MK_ROWS][16])
{
    const float *bs = c->bs + i0 * c->bs_stride;
    const size_t bss = c->bs_stride;
    /* Fully unrolled, so that SRA keeps acc in registers. */
    __m512 acc[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
    }
    const float *a = c->a + j;
    for (size_t k = 0; k < c->r; k++, a += c->a_stride) {
        __m512 a0 = mk_load_f32(a, m, masked);
        __m512 a1 = V == 2 ? _mm512_loadu_ps(a + 16) : a0;
        MK_UNROLL
        for (int i = 0; i < R; i++) {
            __m512 b = _mm512_set1_ps(bs[(size_t)i * bss + k]);
            acc[i][0] = _mm512_fmadd_ps(b, a0, acc[i][0]);
            if (V == 2) acc[i][1] = _mm512_fmadd_ps(b, a1, acc[i][1]);
        }
    }
    if (!mk_compact(wd, sink) && R == MK_ROWS && !masked) {
        MK_UNROLL
        for (int i = 0; i < R; i++)
            MK_UNROLL
            for (int v = 0; v < V; v++) {
                size_t row = i0 + (size_t)i, col = j + 16 * (size_t)v;
                mk_sink16(c, row, col, value16(c, row, col, acc[i][v], m, masked, wd), m, masked, od, sink, lanes[i]);
            }
        return;
    }
    __m512 dt[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) dt[i][0] = acc[i][0], dt[i][1] = acc[i][1];
    _Pragma("GCC unroll 1") for (int i = 0; i < R; i++)
    {
        MK_UNROLL
        for (int v = 0; v < V; v++) {
            size_t row = i0 + (size_t)i, col = j + 16 * (size_t)v;
            mk_sink16(c, row, col, value16(c, row, col, dt[i][v], m, masked, wd), m, masked, od, sink, lanes[i]);
        }
    }
}

MK_INLINE void row_block(const mk_ctx *c, size_t i0, int R, int wd, int od, int sink)
{
    double lanes[MK_ROWS][16];
    if (sink == MK_ROWSQ) mk_lanes_zero(lanes, R);
    size_t j = 0;
    for (; j + 32 <= c->cols; j += 32) tile(c, i0, j, R, 2, 0xffff, 0, wd, od, sink, lanes);
    for (; j < c->cols; j += 16) {
        size_t n = c->cols - j < 16 ? c->cols - j : 16;
        tile(c, i0, j, R, 1, mk_tail_mask(n), 1, wd, od, sink, lanes);
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

MK_DEFINE_TABLE(lora_mk_avx512_f32_fns, run, mk32);

static mk_fn pick(const lora_mk_job *job, int what)
{
    int wd = job->w ? (int)job->w_dtype : MK_W_NONE;
    return (job->bs64 ? lora_mk_avx512_f64_fns : lora_mk_avx512_f32_fns)[wd][what];
}

static void avx512_apply(const lora_mk_job *job) { pick(job, (int)job->out_dtype)(job, NULL); }
static void avx512_row_sumsq(const lora_mk_job *job, double *sumsq) { pick(job, MK_WHAT_ROWSQ)(job, sumsq); }
static void avx512_col_sumsq(const lora_mk_job *job, double *sumsq) { pick(job, MK_WHAT_COLSQ)(job, sumsq); }

const lora_merge_kernels lora_merge_kernels_avx512 = {
    .name = "avx512",
    .apply = avx512_apply,
    .row_sumsq = avx512_row_sumsq,
    .col_sumsq = avx512_col_sumsq,
};

#else
typedef int lora_merge_avx512_unused_; /* keep the translation unit non-empty */
#endif
