/*
 * quant_avx512.c - AVX-512 F/BW/VL/DQ quantizers: f32 -> Q8_0, Q4_0, NF4.
 *
 * The contract is the bytes of ref/quant_ref.c for every input, NaN,
 * infinities, subnormals and signed zeros included. How each step keeps it:
 *   - block maximum: vmaxps(|x|, acc) returns acc when |x| is NaN, which is
 *     ref's `if (a > amax)` skipping NaN; max is exact and order-free on
 *     the rest, so lanes reduce in any order.
 *   - Q4_0 signed maximum: the first x with |x| == amax (ref's strict `<`
 *     keeps the first); amax == 0 leaves ref's max = +0.
 *   - scale, 1/scale and x / absmax: the same single binary32 operations
 *     (division, not a reciprocal estimate); no FMA contraction (C11 mode
 *     implies -ffp-contract=off, and each step is a separate intrinsic).
 *   - roundf (half away from zero): t = trunc(v), then +-1 where
 *     |v - t| >= 0.5; v - t is exact. NaN lanes are zeroed first, then the
 *     value is clamped in float, so the conversion to int never sees a
 *     value out of range (ref pins those cases the same way).
 *   - NF4 index: the number of midpoints n exceeds, found by a 4-step
 *     binary search over the ascending midpoints (equal to ref's count,
 *     since "n > mid[k]" is true exactly for k below the count); NaN
 *     compares false everywhere and lands on 0 like ref.
 * Block scales are computed in scalar code from the reduced maximum, with
 * the scalar f16 conversion ref uses.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include "../kernels.h"
#include "../ref/fp_scalar.h"
#include "lora_format.h"
#include "x86_tables.h"

static __m512 abs16(__m512 x)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

/* roundf() of 16 lanes that are not NaN and lie within [lo, hi] after the clamp. */
static __m512 round_away_clamped(__m512 v, float lo, float hi)
{
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(abs16(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    /* sign of v onto 1.0: v >= 0 -> +1, v < 0 -> -1 (v == -0 has t == v, no step) */
    __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_mask_add_ps(t, up, t, one);
}

void lora_avx512_f32_to_q8_0(const float *src, uint8_t *blocks, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, src += LORA_FMT_Q8_0_BLOCK, blocks += LORA_FMT_Q8_0_BYTES) {
        __m512 x0 = _mm512_loadu_ps(src), x1 = _mm512_loadu_ps(src + 16);
        __m512 m = _mm512_max_ps(abs16(x1), _mm512_max_ps(abs16(x0), _mm512_setzero_ps()));
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        lora_fmt_wr16(blocks, lora_f32_bits_to_f16_bits(lora_f32_to_bits(d)));
        __m512 vid = _mm512_set1_ps(id);
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_mul_ps(h ? x1 : x0, vid);
            v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); /* NaN -> 0 */
            __m512i q = _mm512_cvttps_epi32(round_away_clamped(v, -128.0f, 127.0f));
            _mm_storeu_si128((__m128i *)(void *)(blocks + 2 + 16 * h), _mm512_cvtsepi32_epi8(q));
        }
    }
}

void lora_avx512_f32_to_q4_0(const float *src, uint8_t *blocks, size_t nblocks)
{
    const __m512 eight5 = _mm512_set1_ps(8.5f), zero = _mm512_setzero_ps(), fifteen = _mm512_set1_ps(15.0f);
    for (size_t b = 0; b < nblocks; b++, src += LORA_FMT_Q4_0_BLOCK, blocks += LORA_FMT_Q4_0_BYTES) {
        __m512 x0 = _mm512_loadu_ps(src), x1 = _mm512_loadu_ps(src + 16);
        __m512 a0 = abs16(x0), a1 = abs16(x1);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(a1, _mm512_max_ps(a0, zero)));
        float max = 0.0f;
        if (amax != 0.0f) {
            __m512 va = _mm512_set1_ps(amax);
            uint32_t hit = (uint32_t)_mm512_cmp_ps_mask(a0, va, _CMP_EQ_OQ) |
                           (uint32_t)_mm512_cmp_ps_mask(a1, va, _CMP_EQ_OQ) << 16;
            max = src[__builtin_ctz(hit)];
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        lora_fmt_wr16(blocks, lora_f32_bits_to_f16_bits(lora_f32_to_bits(d)));
        __m512 vid = _mm512_set1_ps(id);
        __m128i q[2];
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_add_ps(_mm512_mul_ps(h ? x1 : x0, vid), eight5);
            /* max(v, 0) returns 0 for NaN (second operand); then [0, 15]. */
            v = _mm512_min_ps(_mm512_max_ps(v, zero), fifteen);
            q[h] = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v));
        }
        _mm_storeu_si128((__m128i *)(void *)(blocks + 2), _mm_or_si128(q[0], _mm_slli_epi16(q[1], 4)));
    }
}

/* NF4 code indices of 16 normalised values: binary search over the
 * midpoints, padded with +inf to 16 entries (never reached). */
static __m512i nf4_index16(__m512 n, __m512 mid)
{
    __m512i idx = _mm512_setzero_si512();
    for (int step = 8; step >= 1; step >>= 1) {
        __m512i probe = _mm512_add_epi32(idx, _mm512_set1_epi32(step - 1));
        __mmask16 gt = _mm512_cmp_ps_mask(n, _mm512_permutexvar_ps(probe, mid), _CMP_GT_OQ);
        idx = _mm512_mask_add_epi32(idx, gt, idx, _mm512_set1_epi32(step));
    }
    return idx;
}

void lora_avx512_f32_to_nf4(const float *src, uint8_t *blocks, size_t nblocks, size_t block)
{
    float midf[16];
    for (unsigned k = 0; k < 15; k++) midf[k] = (lora_nf4_code[k] + lora_nf4_code[k + 1]) / 2.0f;
    midf[15] = __builtin_inff();
    const __m512 mid = _mm512_loadu_ps(midf);
    for (size_t b = 0; b < nblocks; b++, src += block, blocks += 4 + block / 2) {
        __m512 m = _mm512_setzero_ps();
        for (size_t j = 0; j < block; j += 16) m = _mm512_max_ps(abs16(_mm512_loadu_ps(src + j)), m);
        float absmax = _mm512_reduce_max_ps(m);
        lora_fmt_wr32(blocks, lora_f32_to_bits(absmax));
        __m512 va = _mm512_set1_ps(absmax);
        for (size_t j = 0; j < block; j += 16) {
            __m512 n = absmax != 0.0f ? _mm512_div_ps(_mm512_loadu_ps(src + j), va) : _mm512_setzero_ps();
            /* Pairs of lanes (2i, 2i+1) -> one byte: index 2i in the high nibble. */
            __m512i q = nf4_index16(n, mid);
            __m512i pair = _mm512_or_si512(_mm512_slli_epi64(q, 4), _mm512_srli_epi64(q, 32));
            _mm_storel_epi64((__m128i *)(void *)(blocks + 4 + j / 2), _mm512_cvtepi64_epi8(pair));
        }
    }
}

#else
typedef int lora_quant_avx512_unused_; /* keep the translation unit non-empty */
#endif
