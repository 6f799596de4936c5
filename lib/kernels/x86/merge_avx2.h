/*
 * merge_avx2.h - what the fp32 and float64 AVX2 merge kernels share:
 * loading W, the scale, the NaN rule, narrowing and storing, the float64
 * sums of squares, and the table of compiled variants. Included only by
 * files built with the AVX2 flags. Not installed.
 *
 * A column tail (< 8) uses vmaskmov for fp32 data and a small stack copy
 * for 16-bit data, which AVX2 cannot mask.
 */
#ifndef LORA_KERNELS_MERGE_AVX2_H
#define LORA_KERNELS_MERGE_AVX2_H

#include <immintrin.h>
#include "../merge_kernels.h"
#include "../ref/merge_scalar.h"

/* See merge_avx512.h: the scaled paths must not be contracted into FMA. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__STRICT_ANSI__)
#  error "build with -std=c11 (or -ffp-contract=off): the merge arithmetic must not be contracted"
#endif

#define MK_INLINE static inline __attribute__((always_inline))
#define MK_UNROLL _Pragma("GCC unroll 16")

enum { MK_W_NONE = 3 };
enum { MK_STORE = 0, MK_ROWSQ = 1, MK_COLSQ = 2 };
enum { MK_ROWS = 4 };

/* The job's fields copied into a local (see merge_avx512.h). */
typedef struct {
    const void *w;
    void *out;
    const float *bs, *a, *scale;
    const double *bs64;
    size_t r, cols, w_stride, out_stride, bs_stride, a_stride;
    int subtract, scaled, per_row, first;
    double *sumsq;
} mk_ctx;

/* A column segment of up to 8: all lanes (masked == 0) or the first n. */
typedef struct {
    __m256i m; /* lanes below n all ones */
    size_t n;
} mk_tail;

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

static inline mk_tail mk_tail_of(size_t n)
{
    mk_tail t = {_mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), n};
    return t;
}

MK_INLINE __m256 mk_load_f32(const float *p, mk_tail t, int masked)
{
    return masked ? _mm256_maskload_ps(p, t.m) : _mm256_loadu_ps(p);
}

MK_INLINE __m256 mk_widen16(__m128i h, int wd)
{
    if (wd == LORA_MK_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* 8 elements of W widened to fp32 (lanes past the tail read as +0). */
MK_INLINE __m256 mk_load_w(const mk_ctx *c, size_t i, size_t j, int wd, mk_tail t, int masked)
{
    size_t at = i * c->w_stride + j;
    if (wd == LORA_MK_F32) return mk_load_f32((const float *)c->w + at, t, masked);
    const uint16_t *p = (const uint16_t *)c->w + at;
    if (!masked) return mk_widen16(_mm_loadu_si128((const __m128i *)(const void *)p), wd);
    uint16_t tmp[8] = {0};
    memcpy(tmp, p, t.n * sizeof *p);
    return mk_widen16(_mm_loadu_si128((const __m128i *)(void *)tmp), wd);
}

MK_INLINE __m256 mk_load_scale(const mk_ctx *c, size_t i, size_t j, mk_tail t, int masked)
{
    return c->per_row ? _mm256_set1_ps(c->scale[i]) : mk_load_f32(c->scale + j, t, masked);
}

/* RNE to bf16, NaN quieted (ref/fp_scalar.h), packed to 8 x 16 bits. */
MK_INLINE __m128i mk_bf16_round8(__m256 v)
{
    __m256i x = _mm256_castps_si256(v);
    __m256i a = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    __m256i is_nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    r = _mm256_srli_epi32(_mm256_blendv_epi8(r, _mm256_or_si256(x, _mm256_set1_epi32(0x400000)), is_nan), 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

/* NaN rule of merge_kernels.h: W's quieted NaN, else the canonical one. */
MK_INLINE __m256 mk_fix_nan(__m256 v, __m256 w, int wd)
{
    __m256 bad = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    if (__builtin_expect(_mm256_movemask_ps(bad) == 0, 1)) return v;
    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32((int)LORA_MK_QNAN_F32)), bad);
    if (wd == MK_W_NONE) return v;
    __m256 wq = _mm256_or_ps(w, _mm256_castsi256_ps(_mm256_set1_epi32((int)LORA_MK_QUIET_F32)));
    return _mm256_blendv_ps(v, wq, _mm256_cmp_ps(w, w, _CMP_UNORD_Q));
}

/* 8 squares into 8 float64 sums (masked lanes untouched). */
MK_INLINE void mk_add_squares(double *acc, __m256 v, mk_tail t, int masked)
{
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    /* The products are exact in float64, so fmadd rounds only the add. */
    if (!masked) {
        _mm256_storeu_pd(acc, _mm256_fmadd_pd(lo, lo, _mm256_loadu_pd(acc)));
        _mm256_storeu_pd(acc + 4, _mm256_fmadd_pd(hi, hi, _mm256_loadu_pd(acc + 4)));
        return;
    }
    /* Each 32-bit lane mask widened to the 64-bit lane it governs. */
    __m256i mlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(t.m));
    __m256i mhi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(t.m, 1));
    _mm256_maskstore_pd(acc, mlo, _mm256_fmadd_pd(lo, lo, _mm256_maskload_pd(acc, mlo)));
    _mm256_maskstore_pd(acc + 4, mhi, _mm256_fmadd_pd(hi, hi, _mm256_maskload_pd(acc + 4, mhi)));
}

/* The finished fp32 V of 8 elements (j a multiple of 8) goes to its sink. */
MK_INLINE void mk_sink8(const mk_ctx *c, size_t i, size_t j, __m256 v, mk_tail t, int masked, int od, int sink,
                        double *lane)
{
    if (sink == MK_ROWSQ) {
        /* Lanes (j mod 16) .. +7 of the row; lanes past the end count +0. */
        mk_add_squares(lane + (j & 8), masked ? _mm256_and_ps(v, _mm256_castsi256_ps(t.m)) : v, t, 0);
        return;
    }
    if (sink == MK_COLSQ) {
        mk_add_squares(c->sumsq + j, v, t, masked);
        return;
    }
    size_t at = i * c->out_stride + j;
    if (od == LORA_MK_F32) {
        float *p = (float *)c->out + at;
        if (masked) _mm256_maskstore_ps(p, t.m, v);
        else _mm256_storeu_ps(p, v);
        return;
    }
    uint16_t *p = (uint16_t *)c->out + at;
    __m128i h = od == LORA_MK_F16 ? _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT) : mk_bf16_round8(v);
    if (!masked) {
        _mm_storeu_si128((__m128i *)(void *)p, h);
        return;
    }
    uint16_t tmp[8];
    _mm_storeu_si128((__m128i *)(void *)tmp, h);
    memcpy(p, tmp, t.n * sizeof *p);
}

/* Unrolled finish only on the hot path (see merge_avx512.h). */
static inline int mk_compact(int wd, int sink) { return sink != MK_STORE || wd == MK_W_NONE; }

MK_INLINE void mk_lanes_zero(double lanes[MK_ROWS][16], int R)
{
    for (int i = 0; i < R; i++)
        for (int l = 0; l < 16; l++) lanes[i][l] = 0.0;
}

/* One compiled variant per (base type, what), as in merge_avx512.h. */
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
#define MK_DEFINE_TABLE(table, run, pre)                                                                               \
    MK_FN_W_(run, pre, LORA_MK_F32)                                                                                    \
    MK_FN_W_(run, pre, LORA_MK_F16)                                                                                    \
    MK_FN_W_(run, pre, LORA_MK_BF16)                                                                                   \
    MK_FN_W_(run, pre, MK_W_NONE)                                                                                      \
    const mk_fn table[4][5] = {MK_ROW_(pre, LORA_MK_F32), MK_ROW_(pre, LORA_MK_F16), MK_ROW_(pre, LORA_MK_BF16),     \
                               MK_ROW_(pre, MK_W_NONE)}

extern const mk_fn lora_mk_avx2_f32_fns[4][5];
extern const mk_fn lora_mk_avx2_f64_fns[4][5];

#endif /* LORA_KERNELS_MERGE_AVX2_H */
