/*
 * fp_scalar.h - scalar binary16/bfloat16 <-> binary32 conversions on bit
 * patterns. Not installed.
 *
 * These are the definition of the conversions: the ref kernels loop over
 * them and the ISA kernels use them for block scales, so a scale decodes to
 * the same float on every path. Integer arithmetic only, so the result does
 * not depend on compiler support for _Float16 or on the FP environment.
 *
 * NaN rules (chosen to equal what F16C does, so SIMD can use it unchanged):
 *   f16 -> f32: payload kept (shifted up), quiet bit set.
 *   f32 -> f16: top 10 payload bits kept, quiet bit set, sign kept.
 *   bf16 -> f32: a plain 16-bit shift (signalling NaNs stay signalling;
 *                no hardware converts bf16 up, so nothing to match).
 *   f32 -> bf16: top 7 payload bits kept, quiet bit set, sign kept.
 */
#ifndef LORA_KERNELS_FP_SCALAR_H
#define LORA_KERNELS_FP_SCALAR_H

#include <stdint.h>
#include <string.h>

static inline float lora_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t lora_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline uint32_t lora_f16_bits_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (exp == 31) return sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
    if (exp == 0) {
        if (man == 0) return sign;
        /* Subnormal half: every one is a normal float; shift the leading 1
         * into the implicit position, lowering the exponent as we go. */
        exp = 1;
        while (!(man & 0x400u)) {
            man <<= 1;
            exp--;
        }
        man &= 0x3ffu;
    }
    /* exp may be 0 or "negative" (wrapped) here; +112 in uint32 brings it
     * back to the binary32 biased exponent either way. */
    return sign | ((exp + 112u) << 23) | (man << 13);
}

static inline uint16_t lora_f32_bits_to_f16_bits(uint32_t x)
{
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;

    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    /* 65520 = 65504 + half an ulp; the tie goes to the even neighbour, 2^16. */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* >= 2^-14: normal half */
        uint32_t r = a - 0x38000000u; /* rebias 127 -> 15 */
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    uint32_t e = a >> 23;
    if (e < 102) return sign; /* below 2^-25: rounds to zero */
    /* Subnormal half: count units of 2^-24, rounding the dropped bits. */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t s = 126 - e; /* 14..24 */
    uint32_t q = m >> s;
    uint32_t rem = m & ((1u << s) - 1);
    uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline uint32_t lora_bf16_bits_to_f32_bits(uint16_t b) { return (uint32_t)b << 16; }

static inline uint16_t lora_f32_bits_to_bf16_bits(uint32_t x)
{
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    /* Adding just under half an ulp, plus the kept lsb, is RNE; a carry out
     * of the mantissa bumps the exponent, and FLT_MAX-ish values reach Inf. */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline float lora_f16_to_f32_scalar(uint16_t h) { return lora_bits_to_f32(lora_f16_bits_to_f32_bits(h)); }

#endif /* LORA_KERNELS_FP_SCALAR_H */
