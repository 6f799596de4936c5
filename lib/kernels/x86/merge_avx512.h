/*
 * merge_avx512.h - what the fp32 and float64 AVX-512 merge kernels share:
 * loading W, the scale, the NaN rule, narrowing and storing, the float64
 * sums of squares, and the table of compiled variants. Included only by
 * files built with the AVX-512 flags. Not installed.
 */
#ifndef LORA_KERNELS_MERGE_AVX512_H
#define LORA_KERNELS_MERGE_AVX512_H

#include <immintrin.h>
#include "../merge_kernels.h"
#include "../ref/merge_scalar.h"

/* GCC fuses a vector multiply and add into an FMA unless fp contraction is
 * off, which ISO mode (-std=c11) implies; the scaled paths need two
 * roundings. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__STRICT_ANSI__)
#  error "build with -std=c11 (or -ffp-contract=off): the merge arithmetic must not be contracted"
#endif

#define MK_INLINE static inline __attribute__((always_inline))
#define MK_UNROLL _Pragma("GCC unroll 16")

enum { MK_W_NONE = 3 };                             /* job->w == NULL, as a fourth input type */
enum { MK_STORE = 0, MK_ROWSQ = 1, MK_COLSQ = 2 }; /* what happens to V */
enum { MK_ROWS = 8 };                               /* rows per register block */

/* The job's fields copied into a local: stores through the (may_alias)
 * vector pointers could otherwise alias *job and force a reload of every
 * field after each store. */
typedef struct {
    const void *w;
    void *out;
    const float *bs, *a, *scale;
    const double *bs64;
    size_t r, cols, w_stride, out_stride, bs_stride, a_stride;
    int subtract, scaled, per_row, first;
    double *sumsq;
} mk_ctx;

MK_INLINE mk_ctx mk_ctx_make(const lora_mk_job *job, double *sumsq)
{
    mk_ctx c = {
        .w = job->w, .out = job->out, .bs = job->bs, .a = job->a, .scale = job->scale, .bs64 = job->bs64,
        .r = job->r, .cols = job->cols, .w_stride = job->w_stride, .out_stride = job->out_stride,
        .bs_stride = job->bs_stride, .a_stride = job->a_stride, .subtract = job->subtract,
        .scaled = job->scale_mode != LORA_MK_SCALE_NONE,
        .per_row = job->scale_mode == LORA_MK_SCALE_ROW || job->scale_mode == LORA_MK_SCALE_ROW_FIRST,
        .first = job->scale_mode == LORA_MK_SCALE_ROW_FIRST || job->scale_mode == LORA_MK_SCALE_COL_FIRST,
        .sumsq = sumsq,
    };
    return c;
}

static inline __mmask16 mk_tail_mask(size_t n) { return (__mmask16)((1u << n) - 1u); }

MK_INLINE __m512 mk_load_f32(const float *p, __mmask16 m, int masked)
{
    return masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
}

/* 16 elements of W widened to fp32 (masked-off lanes read as +0). */
MK_INLINE __m512 mk_load_w(const mk_ctx *c, size_t i, size_t j, int wd, __mmask16 m, int masked)
{
    size_t at = i * c->w_stride + j;
    if (wd == LORA_MK_F32) return mk_load_f32((const float *)c->w + at, m, masked);
    const uint16_t *p = (const uint16_t *)c->w + at;
    __m256i h = masked ? _mm256_maskz_loadu_epi16(m, p) : _mm256_loadu_si256((const __m256i *)(const void *)p);
    if (wd == LORA_MK_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The scale factors of 16 elements of row i (fp32). */
MK_INLINE __m512 mk_load_scale(const mk_ctx *c, size_t i, size_t j, __mmask16 m, int masked)
{
    return c->per_row ? _mm512_set1_ps(c->scale[i]) : mk_load_f32(c->scale + j, m, masked);
}

/* RNE to bf16 in the low half of each lane; NaN quieted (ref/fp_scalar.h).
 * Integer arithmetic, not vcvtneps2bf16, which flushes subnormals. */
MK_INLINE __m512i mk_bf16_round16(__m512i x)
{
    __m512i a = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    __mmask16 is_nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    r = _mm512_mask_or_epi32(r, is_nan, x, _mm512_set1_epi32(0x400000));
    return _mm512_srli_epi32(r, 16);
}

/* NaN rule of merge_kernels.h: W's quieted NaN, else the canonical one. */
MK_INLINE __m512 mk_fix_nan(__m512 v, __m512 w, int wd)
{
    __mmask16 bad = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    if (__builtin_expect(bad == 0, 1)) return v;
    v = _mm512_mask_mov_ps(v, bad, _mm512_castsi512_ps(_mm512_set1_epi32((int)LORA_MK_QNAN_F32)));
    if (wd == MK_W_NONE) return v;
    __mmask16 wn = _mm512_cmp_ps_mask(w, w, _CMP_UNORD_Q);
    return _mm512_mask_or_ps(v, wn, w, _mm512_castsi512_ps(_mm512_set1_epi32((int)LORA_MK_QUIET_F32)));
}

/* 16 more squares into float64 sums (masked lanes untouched). */
MK_INLINE void mk_add_squares(double *acc, __m512 v, __mmask16 m, int masked)
{
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __mmask8 mlo = (__mmask8)(m & 0xff), mhi = (__mmask8)(m >> 8);
    /* The products are exact in float64, so fmadd rounds only the add. */
    if (masked) {
        _mm512_mask_storeu_pd(acc, mlo, _mm512_fmadd_pd(lo, lo, _mm512_maskz_loadu_pd(mlo, acc)));
        _mm512_mask_storeu_pd(acc + 8, mhi, _mm512_fmadd_pd(hi, hi, _mm512_maskz_loadu_pd(mhi, acc + 8)));
    } else {
        _mm512_storeu_pd(acc, _mm512_fmadd_pd(lo, lo, _mm512_loadu_pd(acc)));
        _mm512_storeu_pd(acc + 8, _mm512_fmadd_pd(hi, hi, _mm512_loadu_pd(acc + 8)));
    }
}

/* The finished fp32 V of 16 elements goes to its sink: out (narrowed RNE),
 * the row's 16 lanes, or the column sums. */
MK_INLINE void mk_sink16(const mk_ctx *c, size_t i, size_t j, __m512 v, __mmask16 m, int masked, int od, int sink,
                         double *lane)
{
    if (sink == MK_ROWSQ) {
        /* Lanes past the row end count +0, which leaves a sum unchanged. */
        mk_add_squares(lane, masked ? _mm512_maskz_mov_ps(m, v) : v, 0xffff, 0);
        return;
    }
    if (sink == MK_COLSQ) {
        mk_add_squares(c->sumsq + j, v, m, masked);
        return;
    }
    size_t at = i * c->out_stride + j;
    if (od == LORA_MK_F32) {
        float *p = (float *)c->out + at;
        if (masked) _mm512_mask_storeu_ps(p, m, v);
        else _mm512_storeu_ps(p, v);
        return;
    }
    uint16_t *p = (uint16_t *)c->out + at;
    __m256i h = od == LORA_MK_F16 ? _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)
                                  : _mm512_cvtepi32_epi16(mk_bf16_round16(_mm512_castps_si512(v)));
    if (masked) _mm256_mask_storeu_epi16(p, m, h);
    else _mm256_storeu_si256((__m256i *)(void *)p, h);
}

/* The hot path (a base into an output, full 8-row tiles without a column
 * tail) gets its finish unrolled over the whole register tile, which is
 * twice as fast; everything else (row and column tails, the sums of squares
 * of DoRA's first pass, the base-less delta) loops over rows instead, which
 * keeps the code small. */
static inline int mk_compact(int wd, int sink) { return sink != MK_STORE || wd == MK_W_NONE; }

MK_INLINE void mk_lanes_zero(double lanes[MK_ROWS][16], int R)
{
    for (int i = 0; i < R; i++)
        for (int l = 0; l < 16; l++) lanes[i][l] = 0.0;
}

/* One compiled variant per (base type, what): out F32, F16, BF16, row
 * sums, column sums. The scale mode and subtraction are run-time flags. */
typedef void (*mk_fn)(const lora_mk_job *job, double *sumsq);
enum { MK_WHAT_ROWSQ = 3, MK_WHAT_COLSQ = 4 };

#define MK_FN_(run, pre, wd, od, sink)                                                                                \
    static void pre##_##wd##_##od##_##sink(const lora_mk_job *job, double *sumsq) { run(job, sumsq, wd, od, sink); }
#define MK_FN_W_(run, pre, wd)                                                                                         \
    MK_FN_(run, pre, wd, LORA_MK_F32, MK_STORE)                                                                        \
    MK_FN_(run, pre, wd, LORA_MK_F16, MK_STORE)                                                                        \
    MK_FN_(run, pre, wd, LORA_MK_BF16, MK_STORE)                                                                       \
    MK_FN_(run, pre, wd, LORA_MK_F32, MK_ROWSQ)                                                                        \
    MK_FN_(run, pre, wd, LORA_MK_F32, MK_COLSQ)
#define MK_ROW_(pre, wd)                                                                                               \
    {pre##_##wd##_LORA_MK_F32_MK_STORE, pre##_##wd##_LORA_MK_F16_MK_STORE, pre##_##wd##_LORA_MK_BF16_MK_STORE,       \
     pre##_##wd##_LORA_MK_F32_MK_ROWSQ, pre##_##wd##_LORA_MK_F32_MK_COLSQ}
/* Defines the 20 variants of run() and the table [base type][what]. */
#define MK_DEFINE_TABLE(table, run, pre)                                                                               \
    MK_FN_W_(run, pre, LORA_MK_F32)                                                                                    \
    MK_FN_W_(run, pre, LORA_MK_F16)                                                                                    \
    MK_FN_W_(run, pre, LORA_MK_BF16)                                                                                   \
    MK_FN_W_(run, pre, MK_W_NONE)                                                                                      \
    const mk_fn table[4][5] = {MK_ROW_(pre, LORA_MK_F32), MK_ROW_(pre, LORA_MK_F16), MK_ROW_(pre, LORA_MK_BF16),     \
                               MK_ROW_(pre, MK_W_NONE)}

extern const mk_fn lora_mk_avx512_f32_fns[4][5];
extern const mk_fn lora_mk_avx512_f64_fns[4][5];

#endif /* LORA_KERNELS_MERGE_AVX512_H */
