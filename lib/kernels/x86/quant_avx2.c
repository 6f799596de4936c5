/*
 * quant_avx2.c - AVX2 quantizers: f32 -> Q8_0, Q4_0, NF4.
 *
 * Byte-identical to ref/quant_ref.c for every input; the argument is the
 * one in quant_avx512.c (NaN never raises a maximum because vmaxps returns
 * its second operand, the accumulator; single binary32 operations, no
 * contraction; roundf as trunc plus a step where |v - trunc(v)| >= 0.5;
 * NaN zeroed and values clamped in float before any conversion to int).
 * AVX2 has no masked add or 16-entry permute, so the NF4 index is ref's
 * count of midpoints below n, accumulated from compare masks (-1 per hit).
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include "../kernels.h"
#include "../ref/fp_scalar.h"
#include "lora_format.h"
#include "x86_tables.h"

static __m256 abs8(__m256 x) { return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }

static float hmax8(__m256 m)
{
    __m128 v = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    v = _mm_max_ss(v, _mm_shuffle_ps(v, v, 1));
    return _mm_cvtss_f32(v);
}

/* roundf() of 8 lanes that are not NaN, after clamping to [lo, hi]. */
static __m256 round_away_clamped(__m256 v, float lo, float hi)
{
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(abs8(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

/* 32 int32 lanes (values in int8 range) -> 32 bytes in element order. */
static __m256i pack_i32x32_i8(__m256i a, __m256i b, __m256i c, __m256i d)
{
    /* packs works per 128-bit lane; the permute restores element order. */
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i p = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void lora_avx2_f32_to_q8_0(const float *src, uint8_t *blocks, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, src += LORA_FMT_Q8_0_BLOCK, blocks += LORA_FMT_Q8_0_BYTES) {
        __m256 x[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            x[i] = _mm256_loadu_ps(src + 8 * i);
            m = _mm256_max_ps(abs8(x[i]), m);
        }
        float amax = hmax8(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        lora_fmt_wr16(blocks, lora_f32_bits_to_f16_bits(lora_f32_to_bits(d)));
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) {
            __m256 v = _mm256_mul_ps(x[i], vid);
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN -> +0 */
            q[i] = _mm256_cvttps_epi32(round_away_clamped(v, -128.0f, 127.0f));
        }
        _mm256_storeu_si256((__m256i *)(void *)(blocks + 2), pack_i32x32_i8(q[0], q[1], q[2], q[3]));
    }
}

void lora_avx2_f32_to_q4_0(const float *src, uint8_t *blocks, size_t nblocks)
{
    const __m256 eight5 = _mm256_set1_ps(8.5f), zero = _mm256_setzero_ps(), fifteen = _mm256_set1_ps(15.0f);
    for (size_t b = 0; b < nblocks; b++, src += LORA_FMT_Q4_0_BLOCK, blocks += LORA_FMT_Q4_0_BYTES) {
        __m256 x[4], a[4], m = zero;
        for (int i = 0; i < 4; i++) {
            x[i] = _mm256_loadu_ps(src + 8 * i);
            a[i] = abs8(x[i]);
            m = _mm256_max_ps(a[i], m);
        }
        float amax = hmax8(m), max = 0.0f;
        if (amax != 0.0f) {
            __m256 va = _mm256_set1_ps(amax);
            uint32_t hit = 0;
            for (int i = 0; i < 4; i++)
                hit |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a[i], va, _CMP_EQ_OQ)) << (8 * i);
            max = src[__builtin_ctz(hit)];
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        lora_fmt_wr16(blocks, lora_f32_bits_to_f16_bits(lora_f32_to_bits(d)));
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(x[i], vid), eight5);
            v = _mm256_min_ps(_mm256_max_ps(v, zero), fifteen); /* NaN -> 0 (second operand) */
            q[i] = _mm256_cvttps_epi32(v);
        }
        __m256i all = pack_i32x32_i8(q[0], q[1], q[2], q[3]); /* elements 0..31, one per byte */
        __m128i lo = _mm256_castsi256_si128(all), hi = _mm256_extracti128_si256(all, 1);
        _mm_storeu_si128((__m128i *)(void *)(blocks + 2), _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
    }
}

void lora_avx2_f32_to_nf4(const float *src, uint8_t *blocks, size_t nblocks, size_t block)
{
    __m256 mid[15];
    for (unsigned k = 0; k < 15; k++) mid[k] = _mm256_set1_ps((lora_nf4_code[k] + lora_nf4_code[k + 1]) / 2.0f);
    for (size_t b = 0; b < nblocks; b++, src += block, blocks += 4 + block / 2) {
        __m256 m = _mm256_setzero_ps();
        for (size_t j = 0; j < block; j += 8) m = _mm256_max_ps(abs8(_mm256_loadu_ps(src + j)), m);
        float absmax = hmax8(m);
        lora_fmt_wr32(blocks, lora_f32_to_bits(absmax));
        __m256 va = _mm256_set1_ps(absmax);
        for (size_t j = 0; j < block; j += 32) {
            __m256i q[4];
            for (int i = 0; i < 4; i++) {
                __m256 n = absmax != 0.0f ? _mm256_div_ps(_mm256_loadu_ps(src + j + 8 * i), va) : _mm256_setzero_ps();
                __m256i c = _mm256_setzero_si256();
                for (int k = 0; k < 15; k++)
                    c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(n, mid[k], _CMP_GT_OQ)));
                q[i] = c;
            }
            /* 32 indices as bytes in order; byte i = q[2i] << 4 | q[2i+1]. */
            __m256i e = pack_i32x32_i8(q[0], q[1], q[2], q[3]);
            __m256i hi = _mm256_slli_epi16(_mm256_and_si256(e, _mm256_set1_epi16(0x00ff)), 4);
            __m256i pairs = _mm256_or_si256(hi, _mm256_srli_epi16(e, 8)); /* one pair per 16-bit lane */
            __m256i bytes = _mm256_packus_epi16(pairs, pairs);             /* per 128-bit lane: 8 bytes twice */
            __m128i out = _mm_unpacklo_epi64(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1));
            _mm_storeu_si128((__m128i *)(void *)(blocks + 4 + j / 2), out);
        }
    }
}

#else
typedef int lora_quant_avx2_unused_; /* keep the translation unit non-empty */
#endif
