/*
 * merge64_avx2.c - the AVX2 merge kernels with float64 accumulation
 * (job->bs64 set). Run only after dispatch has checked CPUID and XCR0.
 *
 * 4 rows x 8 columns of the delta in 8 ymm accumulators of 4 doubles; per
 * k, 8 floats of A widened to two float64 vectors and 4 broadcasts of
 * BS[i][k] feed 8 FMAs.
 *
 * Bit-identical to ref: vfmadd231pd per k ascending from +0; V in float64;
 * then vcvtpd2ps (RNE) for F32 out and the sums of squares, or round to
 * odd for 16-bit out, built from RNE exactly as ref's f64_to_f32_odd():
 * step back toward zero where RNE rounded away, then set the lsb where
 * inexact (AVX2 has no per-instruction rounding mode).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "merge_avx2.h"

/* Two vectors of four 64-bit all-ones/zero masks -> eight 32-bit ones. */
MK_INLINE __m256i mask64to32(__m256d a, __m256d b)
{
    __m256 lo = _mm256_shuffle_ps(_mm256_castpd_ps(a), _mm256_castpd_ps(b), 0x88); /* a0 a1 b0 b1 | a2 a3 b2 b3 */
    return _mm256_permute4x64_epi64(_mm256_castps_si256(lo), 0xd8);
}

MK_INLINE __m256 narrow8(__m256d v0, __m256d v1, int odd)
{
    __m128 t0 = _mm256_cvtpd_ps(v0), t1 = _mm256_cvtpd_ps(v1);
    __m256 t = _mm256_set_m128(t1, t0);
    if (!odd) return t;
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
    __m256d b0 = _mm256_cvtps_pd(t0), b1 = _mm256_cvtps_pd(t1);
    __m256i inexact = mask64to32(_mm256_cmp_pd(b0, v0, _CMP_NEQ_UQ), _mm256_cmp_pd(b1, v1, _CMP_NEQ_UQ));
    __m256i away = mask64to32(_mm256_cmp_pd(_mm256_and_pd(b0, absm), _mm256_and_pd(v0, absm), _CMP_GT_OQ),
                              _mm256_cmp_pd(_mm256_and_pd(b1, absm), _mm256_and_pd(v1, absm), _CMP_GT_OQ));
    __m256i r = _mm256_add_epi32(_mm256_castps_si256(t), away); /* -1: one step toward zero */
    return _mm256_castsi256_ps(_mm256_or_si256(r, _mm256_and_si256(inexact, _mm256_set1_epi32(1))));
}

MK_INLINE __m256d lo_pd(__m256 x) { return _mm256_cvtps_pd(_mm256_castps256_ps128(x)); }

MK_INLINE __m256d hi_pd(__m256 x) { return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)); }

MK_INLINE __m256 value8(const mk_ctx *c, size_t i, size_t j, __m256d d0, __m256d d1, mk_tail t, int masked, int wd,
                        int odd)
{
    if (c->subtract) {
        const __m256d sign = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MIN));
        d0 = _mm256_xor_pd(d0, sign), d1 = _mm256_xor_pd(d1, sign);
    }
    __m256 w = wd == MK_W_NONE ? _mm256_setzero_ps() : mk_load_w(c, i, j, wd, t, masked);
    __m256d w0 = lo_pd(w), w1 = hi_pd(w);
    __m256d v0 = wd == MK_W_NONE ? d0 : _mm256_add_pd(w0, d0);
    __m256d v1 = wd == MK_W_NONE ? d1 : _mm256_add_pd(w1, d1);
    if (c->scaled) {
        __m256 s = mk_load_scale(c, i, j, t, masked);
        __m256d s0 = lo_pd(s), s1 = hi_pd(s);
        if (c->first) {
            v0 = _mm256_add_pd(_mm256_mul_pd(s0, w0), d0);
            v1 = _mm256_add_pd(_mm256_mul_pd(s1, w1), d1);
        } else {
            v0 = _mm256_mul_pd(s0, v0);
            v1 = _mm256_mul_pd(s1, v1);
        }
    }
    return mk_fix_nan(narrow8(v0, v1, odd), w, wd);
}

MK_INLINE void tile(const mk_ctx *c, size_t i0, size_t j, int R, mk_tail t, int masked, int wd, int od, int sink,
                    double lanes[MK_ROWS][16])
{
    const double *bs = c->bs64 + i0 * c->bs_stride;
    const size_t bss = c->bs_stride;
    const __m128i mlo = _mm256_castsi256_si128(t.m), mhi = _mm256_extracti128_si256(t.m, 1);
    __m256d acc[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) {
        acc[i][0] = _mm256_setzero_pd();
        acc[i][1] = _mm256_setzero_pd();
    }
    const float *a = c->a + j;
    for (size_t k = 0; k < c->r; k++, a += c->a_stride) {
        __m256d a0 = _mm256_cvtps_pd(masked ? _mm_maskload_ps(a, mlo) : _mm_loadu_ps(a));
        __m256d a1 = _mm256_cvtps_pd(masked ? _mm_maskload_ps(a + 4, mhi) : _mm_loadu_ps(a + 4));
        MK_UNROLL
        for (int i = 0; i < R; i++) {
            __m256d b = _mm256_broadcast_sd(bs + (size_t)i * bss + k);
            acc[i][0] = _mm256_fmadd_pd(b, a0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_pd(b, a1, acc[i][1]);
        }
    }
    const int odd = sink == MK_STORE && od != LORA_MK_F32;
    if (!mk_compact(wd, sink) && R == MK_ROWS && !masked) {
        MK_UNROLL
        for (int i = 0; i < R; i++) {
            size_t row = i0 + (size_t)i;
            mk_sink8(c, row, j, value8(c, row, j, acc[i][0], acc[i][1], t, masked, wd, odd), t, masked, od, sink,
                     lanes[i]);
        }
        return;
    }
    __m256d dt[MK_ROWS][2];
    MK_UNROLL
    for (int i = 0; i < R; i++) dt[i][0] = acc[i][0], dt[i][1] = acc[i][1];
    _Pragma("GCC unroll 1") for (int i = 0; i < R; i++)
    {
        size_t row = i0 + (size_t)i;
        mk_sink8(c, row, j, value8(c, row, j, dt[i][0], dt[i][1], t, masked, wd, odd), t, masked, od, sink, lanes[i]);
    }
}

MK_INLINE void row_block(const mk_ctx *c, size_t i0, int R, int wd, int od, int sink)
{
    double lanes[MK_ROWS][16];
    if (sink == MK_ROWSQ) mk_lanes_zero(lanes, R);
    const mk_tail all = mk_tail_of(8);
    size_t j = 0;
    for (; j + 8 <= c->cols; j += 8) tile(c, i0, j, R, all, 0, wd, od, sink, lanes);
    if (j < c->cols) tile(c, i0, j, R, mk_tail_of(c->cols - j), 1, wd, od, sink, lanes);
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

MK_DEFINE_TABLE(lora_mk_avx2_f64_fns, run, mk64);

#else
typedef int lora_merge64_avx2_unused_; /* keep the translation unit non-empty */
#endif
