/*
 * convert_avx512.c - AVX-512 F/BW/VL/DQ kernels (built with those -m flags
 * plus AVX2/FMA/F16C; run only after dispatch.c has checked CPUID and XCR0).
 *
 * Same exactness argument as convert_avx2.c: F16C-style conversions with
 * imm 0 (RNE, NaN quieted with payload kept), integer bf16 rounding (not
 * vcvtneps2bf16, which flushes subnormals), one vmulps per dequantized
 * element. Tails use masked loads and stores, which do not touch (or fault
 * on) the lanes that are masked off.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include "../kernels.h"
#include "../ref/fp_scalar.h"
#include "lora_format.h"
#include "x86_tables.h"

static __mmask16 tail_mask(size_t rem) { return (__mmask16)((1u << rem) - 1u); }

static void avx512_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

static void avx512_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(dst + i, m, h);
    }
}

static __m512 bf16x16_to_f32(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

static void avx512_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(const void *)(src + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

/* 16 floats -> 16 bf16 in the low half of each 32-bit lane. */
static __m512i bf16_round16(__m512i x)
{
    __m512i a = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    __mmask16 is_nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    r = _mm512_mask_or_epi32(r, is_nan, x, _mm512_set1_epi32(0x400000));
    return _mm512_srli_epi32(r, 16);
}

static void avx512_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    /* packus + a qword permute beats vpmovdw (two shuffle uops per 16). */
    const __m512i order = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i a = bf16_round16(_mm512_loadu_si512(src + i));
        __m512i b = bf16_round16(_mm512_loadu_si512(src + i + 16));
        _mm512_storeu_si512(dst + i, _mm512_permutexvar_epi64(order, _mm512_packus_epi32(a, b)));
    }
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtepi32_epi16(bf16_round16(_mm512_loadu_si512(src + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_cvtepi32_storeu_epi16(dst + i, m, bf16_round16(_mm512_maskz_loadu_epi32(m, src + i)));
    }
}

static __m512 i8x16_to_f32(__m128i q) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)); }

static void avx512_q8_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, blocks += LORA_FMT_Q8_0_BYTES, dst += LORA_FMT_Q8_0_BLOCK) {
        __m512 d = _mm512_set1_ps(lora_f16_to_f32_scalar(lora_fmt_rd16(blocks)));
        __m128i q0 = _mm_loadu_si128((const __m128i *)(const void *)(blocks + 2));
        __m128i q1 = _mm_loadu_si128((const __m128i *)(const void *)(blocks + 18));
        _mm512_storeu_ps(dst, _mm512_mul_ps(i8x16_to_f32(q0), d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(i8x16_to_f32(q1), d));
    }
}

static void avx512_q4_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks)
{
    const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    for (size_t b = 0; b < nblocks; b++, blocks += LORA_FMT_Q4_0_BYTES, dst += LORA_FMT_Q4_0_BLOCK) {
        __m512 d = _mm512_set1_ps(lora_f16_to_f32_scalar(lora_fmt_rd16(blocks)));
        __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blocks + 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
        _mm512_storeu_ps(dst, _mm512_mul_ps(i8x16_to_f32(lo), d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(i8x16_to_f32(hi), d));
    }
}

static void avx512_nf4_to_f32(const uint8_t *blocks, float *dst, size_t nblocks, size_t block)
{
    const __m128i m4 = _mm_set1_epi8(15);
    const __m512 code = _mm512_loadu_ps(lora_nf4_code);
    for (size_t b = 0; b < nblocks; b++, blocks += 4 + block / 2, dst += block) {
        /* code[k] * absmax for the 16 codes: the very products ref forms. */
        __m512 t = _mm512_mul_ps(code, _mm512_set1_ps(lora_bits_to_f32(lora_fmt_rd32(blocks))));
        for (size_t i = 0; i < block / 2; i += 16) { /* block >= 32: whole steps of 16 bytes */
            __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blocks + 4 + i));
            __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4), lo = _mm_and_si128(q, m4);
            __m512i ia = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo)); /* high nibble first */
            __m512i ib = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo));
            _mm512_storeu_ps(dst + 2 * i, _mm512_permutexvar_ps(ia, t));
            _mm512_storeu_ps(dst + 2 * i + 16, _mm512_permutexvar_ps(ib, t));
        }
    }
}

static size_t avx512_count_nonfinite_f32(const float *src, size_t n)
{
    const __m512i e = _mm512_set1_epi32(0x7f800000);
    size_t i = 0, count = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i x = _mm512_loadu_si512(src + i);
        count += (size_t)__builtin_popcount(_mm512_cmpeq_epi32_mask(_mm512_and_si512(x, e), e));
    }
    if (i < n) {
        /* Masked-off lanes load as 0, which is finite. */
        __m512i x = _mm512_maskz_loadu_epi32(tail_mask(n - i), src + i);
        count += (size_t)__builtin_popcount(_mm512_cmpeq_epi32_mask(_mm512_and_si512(x, e), e));
    }
    return count;
}

const lora_kernels lora_kernels_avx512 = {
    .name = "avx512",
    .f16_to_f32 = avx512_f16_to_f32,
    .bf16_to_f32 = avx512_bf16_to_f32,
    .f32_to_f16 = avx512_f32_to_f16,
    .f32_to_bf16 = avx512_f32_to_bf16,
    .q8_0_to_f32 = avx512_q8_0_to_f32,
    .q4_0_to_f32 = avx512_q4_0_to_f32,
    .nf4_to_f32 = avx512_nf4_to_f32,
    .f32_to_q8_0 = lora_avx512_f32_to_q8_0,
    .f32_to_q4_0 = lora_avx512_f32_to_q4_0,
    .f32_to_nf4 = lora_avx512_f32_to_nf4,
    .count_nonfinite_f32 = avx512_count_nonfinite_f32,
};

#else
typedef int lora_kernels_avx512_unused_; /* keep the translation unit non-empty */
#endif
