/*
 * merge64_avx512.c - the AVX-512 merge kernels with float64 accumulation
 * (job->bs64 set). Run only after dispatch has checked CPUID and XCR0.
 *
 * 8 rows x 16 columns of the delta in 16 zmm accumulators of 8 doubles.
 * Per k: 16 floats of A widened to two float64 vectors (vcvtps2pd from
 * memory), 8 BS[i][k] broadcast from memory into the FMAs: 16 FMAs for 2
 * conversions, twice the FMA work of the fp32 kernel per element.
 *
 * Bit-identical to ref: vfmadd231pd per k ascending from +0; V in float64;
 * then vcvtpd2ps with round-to-nearest (F32 out and the sums of squares) or
 * with round-toward-zero plus the sticky bit ("round to odd", 16-bit out),
 * the very rounding ref's f64_to_f32_odd() builds from RNE.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "merge_avx512.h"

/* 8 + 8 doubles -> 16 floats, rounded to nearest or to odd. */
MK_INLINE __m512 narrow16(__m512d v0, __m512d v1, int odd)
{
    __m256 t0, t1;
    if (!odd) {
        t0 = _mm512_cvtpd_ps(v0), t1 = _mm512_cvtpd_ps(v1);
    } else {
        const __m256i one = _mm256_set1_epi32(1);
        t0 = _mm512_cvt_roundpd_ps(v0, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        t1 = _mm512_cvt_roundpd_ps(v1, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        /* Inexact (NaN included, fixed later by the NaN rule): set the lsb. */
        __mmask8 x0 = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t0), v0, _CMP_NEQ_UQ);
        __mmask8 x1 = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t1), v1, _CMP_NEQ_UQ);
        t0 = _mm256_castsi256_ps(_mm256_mask_or_epi32(_mm256_castps_si256(t0), x0, _mm256_castps_si256(t0), one));
        t1 = _mm256_castsi256_ps(_mm256_mask_or_epi32(_mm256_castps_si256(t1), x1, _mm256_castps_si256(t1), one));
    }
    return _mm512_insertf32x8(_mm512_castps256_ps512(t0), t1, 1);
}

MK_INLINE __m512d lo_pd(__m512 x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }

MK_INLINE __m512d hi_pd(__m512 x)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
}

/* V of 16 elements from their finished float64 delta (d0: columns j..j+7,
 * d1: j+8..j+15), narrowed to fp32 (to odd when `odd`). */
MK_INLINE __m512 value16(const mk_ctx *c, size_t i, size_t j, __m512d d0, __m512d d1, __mmask16 m, int masked, int wd,
                         int odd)
{
    if (c->subtract) {
        const __m512i sign = _mm512_set1_epi64(INT64_MIN);
        d0 = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(d0), sign));
        d1 = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(d1), sign));
    }
    __m512 w = wd == MK_W_NONE ? _mm512_setzero_ps() : mk_load_w(c, i, j, wd, m, masked);
    __m512d w0 = lo_pd(w), w1 = hi_pd(w);
    __m512d v0 = wd == MK_W_NONE ? d0 : _mm512_add_pd(w0, d0);
    __m512d v1 = wd == MK_W_NONE ? d1 : _mm512_add_pd(w1, d1);
    if (c->scaled) {
        __m512 s = mk_load_scale(c, i, j, m, masked);
        __m512d s0 = lo_pd(s), s1 = hi_pd(s);
        if (c->first) {
            v0 = _mm512_add_pd(_mm512_mul_pd(s0, w0), d0);
            v1 = _mm512_add_pd(_mm512_mul_pd(s1, w1), d1);
        } else {
            v0 = _mm512_mul_pd(s0, v0);
            v1 = _mm512_mul_pd(s1, v1);
        }
    }
    return mk_fix_nan(narrow16(v0, v1, odd), w, wd);
}

MK_INLINE void tile(const mk_ctx *c, size_t i0, size_t j, int R, __mmask16 m, int masked, int wd, int od, int sink,
                    double lanes[MK_ROWS][16])
{
    const double *bs = c->bs64 + i0 * c->bs_stride;
    const size_t bss = c->bs_stride;
    const __mmask8 mlo = (__mmask8)(m & 0xff), mhi = (__mmask8)(m >> 8);
    __m512d acc[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) {
        acc[i][0] = _mm512_setzero_pd();
        acc[i][1] = _mm512_setzero_pd();
    }
    const float *a = c->a + j;
    for (size_t k = 0; k < c->r; k++, a += c->a_stride) {
        __m512d a0 = _mm512_cvtps_pd(masked ? _mm256_maskz_loadu_ps(mlo, a) : _mm256_loadu_ps(a));
        __m512d a1 = _mm512_cvtps_pd(masked ? _mm256_maskz_loadu_ps(mhi, a + 8) : _mm256_loadu_ps(a + 8));
        MK_UNROLL
        for (int i = 0; i < R; i++) {
            __m512d b = _mm512_set1_pd(bs[(size_t)i * bss + k]);
            acc[i][0] = _mm512_fmadd_pd(b, a0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_pd(b, a1, acc[i][1]);
        }
    }
    /* Round to odd only where a second rounding (to 16 bits) follows. */
    const int odd = sink == MK_STORE && od != LORA_MK_F32;
    if (!mk_compact(wd, sink) && R == MK_ROWS && !masked) {
        MK_UNROLL
        for (int i = 0; i < R; i++) {
            size_t row = i0 + (size_t)i;
            mk_sink16(c, row, j, value16(c, row, j, acc[i][0], acc[i][1], m, masked, wd, odd), m, masked, od, sink,
                      lanes[i]);
        }
        return;
    }
    __m512d dt[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) dt[i][0] = acc[i][0], dt[i][1] = acc[i][1];
    _Pragma("GCC unroll 1") for (int i = 0; i < R; i++)
    {
        size_t row = i0 + (size_t)i;
        mk_sink16(c, row, j, value16(c, row, j, dt[i][0], dt[i][1], m, masked, wd, odd), m, masked, od, sink, lanes[i]);
    }
}

MK_INLINE void row_block(const mk_ctx *c, size_t i0, int R, int wd, int od, int sink)
{
    double lanes[MK_ROWS][16];
    if (sink == MK_ROWSQ) mk_lanes_zero(lanes, R);
    size_t j = 0;
    for (; j + 16 <= c->cols; j += 16) tile(c, i0, j, R, 0xffff, 0, wd, od, sink, lanes);
    if (j < c->cols) tile(c, i0, j, R, mk_tail_mask(c->cols - j), 1, wd, od, sink, lanes);
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

MK_DEFINE_TABLE(lora_mk_avx512_f64_fns, run, mk64);

#else
typedef int lora_merge64_avx512_unused_; /* keep the translation unit non-empty */
#endif
