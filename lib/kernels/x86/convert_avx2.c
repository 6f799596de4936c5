/*
 * convert_avx2.c - AVX2 + FMA + F16C kernels (built with those -m flags; run
 * only after dispatch.c has checked CPUID and XCR0).
 *
 * Bit-identical to ref, NaN payloads included:
 *   - vcvtph2ps / vcvtps2ph (imm 0 = RNE, MXCSR ignored) quiet NaNs and keep
 *     the payload exactly as fp_scalar.h specifies; half subnormals are
 *     handled in hardware regardless of MXCSR.DAZ/FTZ.
 *   - bf16 narrowing is the same integer add-and-shift as ref: vcvtneps2bf16
 *     would flush subnormals, so it is not used.
 *   - dequantization is one vmulps per element with the same operands as
 *     ref (no FMA), and scales go through the scalar ref decoder.
 * Tails shorter than a vector are handed to the ref kernel.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include "../kernels.h"
#include "../ref/fp_scalar.h"
#include "lora_format.h"
#include "x86_tables.h"

static void avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + i))));
    lora_kernels_ref.f16_to_f32(src + i, dst + i, n - i);
}

static void avx2_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    lora_kernels_ref.f32_to_f16(src + i, dst + i, n - i);
}

static void avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + i)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    lora_kernels_ref.bf16_to_f32(src + i, dst + i, n - i);
}

/* 8 floats -> 8 bf16 in the low 16 bits of each 32-bit lane. */
static __m256i bf16_round8(__m256i x)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), _mm256_set1_epi32(0x7f800000));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    __m256i quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x400000));
    return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
}

static void avx2_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = bf16_round8(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
        __m256i b = bf16_round8(_mm256_loadu_si256((const __m256i *)(const void *)(src + i + 8)));
        /* packus works per 128-bit lane: fix the order of the 64-bit quarters. */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), p);
    }
    lora_kernels_ref.f32_to_bf16(src + i, dst + i, n - i);
}

static __m256 load8_i8_as_f32(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}

static void avx2_q8_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, blocks += LORA_FMT_Q8_0_BYTES, dst += LORA_FMT_Q8_0_BLOCK) {
        __m256 d = _mm256_set1_ps(lora_f16_to_f32_scalar(lora_fmt_rd16(blocks)));
        for (unsigned j = 0; j < 32; j += 8) _mm256_storeu_ps(dst + j, _mm256_mul_ps(load8_i8_as_f32(blocks + 2 + j), d));
    }
}

static void avx2_q4_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks)
{
    const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    for (size_t b = 0; b < nblocks; b++, blocks += LORA_FMT_Q4_0_BYTES, dst += LORA_FMT_Q4_0_BLOCK) {
        __m256 d = _mm256_set1_ps(lora_f16_to_f32_scalar(lora_fmt_rd16(blocks)));
        __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blocks + 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight); /* elements 0..15, now -8..7 */
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight); /* 16..31 */
        __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (unsigned k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k])), d));
    }
}

/* 16 nibble indices (bytes) -> 8 lookups in each half of a 16-entry table. */
static __m256 lookup16(__m256 tlo, __m256 thi, __m128i idx8)
{
    __m256i idx = _mm256_cvtepu8_epi32(idx8);
    __m256 a = _mm256_permutevar8x32_ps(tlo, idx); /* uses idx & 7 */
    __m256 c = _mm256_permutevar8x32_ps(thi, idx);
    /* bit 3 of the index moved to the sign bit selects the upper table. */
    return _mm256_blendv_ps(a, c, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

static void avx2_nf4_to_f32(const uint8_t *blocks, float *dst, size_t nblocks, size_t block)
{
    const __m128i m4 = _mm_set1_epi8(15);
    const __m256 clo = _mm256_loadu_ps(lora_nf4_code), chi = _mm256_loadu_ps(lora_nf4_code + 8);
    for (size_t b = 0; b < nblocks; b++, blocks += 4 + block / 2, dst += block) {
        /* code[k] * absmax for the 16 codes: the very products ref forms. */
        __m256 s = _mm256_set1_ps(lora_bits_to_f32(lora_fmt_rd32(blocks)));
        __m256 tlo = _mm256_mul_ps(clo, s), thi = _mm256_mul_ps(chi, s);
        for (size_t i = 0; i < block / 2; i += 8) { /* block >= 32: whole steps of 8 bytes */
            __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(blocks + 4 + i));
            __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
            __m128i idx = _mm_unpacklo_epi8(hi, _mm_and_si128(q, m4)); /* high nibble first */
            _mm256_storeu_ps(dst + 2 * i, lookup16(tlo, thi, idx));
            _mm256_storeu_ps(dst + 2 * i + 8, lookup16(tlo, thi, _mm_srli_si128(idx, 8)));
        }
    }
}

static size_t avx2_count_nonfinite_f32(const float *src, size_t n)
{
    const __m256i e = _mm256_set1_epi32(0x7f800000);
    size_t i = 0, count = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        __m256i hit = _mm256_cmpeq_epi32(_mm256_and_si256(x, e), e);
        count += (size_t)__builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(hit)));
    }
    return count + lora_kernels_ref.count_nonfinite_f32(src + i, n - i);
}

const lora_kernels lora_kernels_avx2 = {
    .name = "avx2",
    .f16_to_f32 = avx2_f16_to_f32,
    .bf16_to_f32 = avx2_bf16_to_f32,
    .f32_to_f16 = avx2_f32_to_f16,
    .f32_to_bf16 = avx2_f32_to_bf16,
    .q8_0_to_f32 = avx2_q8_0_to_f32,
    .q4_0_to_f32 = avx2_q4_0_to_f32,
    .nf4_to_f32 = avx2_nf4_to_f32,
    .f32_to_q8_0 = lora_avx2_f32_to_q8_0,
    .f32_to_q4_0 = lora_avx2_f32_to_q4_0,
    .f32_to_nf4 = lora_avx2_f32_to_nf4,
    .count_nonfinite_f32 = avx2_count_nonfinite_f32,
};

#else
typedef int lora_kernels_avx2_unused_; /* keep the translation unit non-empty */
#endif
