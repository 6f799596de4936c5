/*
 * quant_ref.c - reference block dequantizers and quantizers (Q8_0, Q4_0,
 * NF4). Layouts and formulas: spec "Dtypes"; the quantizers reproduce ggml's
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref and bitsandbytes' NF4
 * rounding to the nearest code, so files we write match what those tools
 * would have written.
 *
 * Quantizers expect finite input (writers check with count_nonfinite_f32
 * first). A NaN or Inf still yields a defined block, never undefined
 * float-to-int conversion, and the ISA quantizers reproduce those blocks
 * byte for byte (x86/quant_*.c): a NaN never raises a block maximum and
 * gets q = 0 (Q8_0: the value 0; Q4_0: nibble 0, i.e. -8 d; NF4: index 0,
 * i.e. -absmax); an infinite maximum makes id = 0 (Q8_0, Q4_0) and x / absmax = 0 for
 * the finite x (NF4).
 *
 * NF4 blocks are `block` elements (spec 11.4: 32..4096, a power of two).
 */
#include <math.h>
#include "../kernels.h"
#include "fp_scalar.h"
#include "lora_format.h"
#include "ref.h"

/* ---- dequantization: one fp32 multiply per element ---------------------- */

void lora_ref_q8_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, blocks += LORA_FMT_Q8_0_BYTES, dst += LORA_FMT_Q8_0_BLOCK) {
        float d = lora_f16_to_f32_scalar(lora_fmt_rd16(blocks));
        for (unsigned j = 0; j < LORA_FMT_Q8_0_BLOCK; j++) dst[j] = (float)(int8_t)blocks[2 + j] * d;
    }
}

void lora_ref_q4_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, blocks += LORA_FMT_Q4_0_BYTES, dst += LORA_FMT_Q4_0_BLOCK) {
        float d = lora_f16_to_f32_scalar(lora_fmt_rd16(blocks));
        for (unsigned j = 0; j < LORA_FMT_Q4_0_BLOCK / 2; j++) {
            dst[j] = (float)((int)(blocks[2 + j] & 15) - 8) * d;
            dst[j + 16] = (float)((int)(blocks[2 + j] >> 4) - 8) * d;
        }
    }
}

void lora_ref_nf4_to_f32(const uint8_t *blocks, float *dst, size_t nblocks, size_t block)
{
    for (size_t b = 0; b < nblocks; b++, blocks += 4 + block / 2, dst += block) {
        float absmax = lora_bits_to_f32(lora_fmt_rd32(blocks));
        for (size_t i = 0; i < block / 2; i++) {
            dst[2 * i] = lora_nf4_code[blocks[4 + i] >> 4] * absmax;
            dst[2 * i + 1] = lora_nf4_code[blocks[4 + i] & 15] * absmax;
        }
    }
}

/* ---- quantization ------------------------------------------------------- */

/* The C casts ggml uses, with the out-of-range cases (reachable only from
 * non-finite input) pinned instead of undefined. */
static int8_t q8_round(float v)
{
    float r = roundf(v);
    if (isnan(r)) return 0;
    if (r > 127.0f) return 127;
    return r < -128.0f ? -128 : (int8_t)r;
}

static uint8_t q4_trunc(float v)
{
    if (!(v >= 0.0f)) return 0; /* (int8_t) of (-1, 0) is 0 too; NaN -> 0 */
    return v >= 15.0f ? 15 : (uint8_t)v;
}

void lora_ref_f32_to_q8_0(const float *src, uint8_t *blocks, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, src += LORA_FMT_Q8_0_BLOCK, blocks += LORA_FMT_Q8_0_BYTES) {
        float amax = 0.0f;
        for (unsigned j = 0; j < LORA_FMT_Q8_0_BLOCK; j++) {
            float a = fabsf(src[j]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        lora_fmt_wr16(blocks, lora_f32_bits_to_f16_bits(lora_f32_to_bits(d)));
        for (unsigned j = 0; j < LORA_FMT_Q8_0_BLOCK; j++) blocks[2 + j] = (uint8_t)q8_round(src[j] * id);
    }
}

void lora_ref_f32_to_q4_0(const float *src, uint8_t *blocks, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++, src += LORA_FMT_Q4_0_BLOCK, blocks += LORA_FMT_Q4_0_BYTES) {
        float amax = 0.0f, max = 0.0f;
        for (unsigned j = 0; j < LORA_FMT_Q4_0_BLOCK; j++) {
            if (amax < fabsf(src[j])) { /* strict: the first of equal magnitudes wins */
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        /* Signed so that `max` itself lands exactly on code 0 (-8 * d). */
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        lora_fmt_wr16(blocks, lora_f32_bits_to_f16_bits(lora_f32_to_bits(d)));
        for (unsigned j = 0; j < LORA_FMT_Q4_0_BLOCK / 2; j++) {
            uint8_t lo = q4_trunc(src[j] * id + 8.5f);
            uint8_t hi = q4_trunc(src[j + 16] * id + 8.5f);
            blocks[2 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static uint8_t nf4_index(float n, const float mid[15])
{
    uint8_t k = 0;
    while (k < 15 && n > mid[k]) k++; /* mid[] ascends, so counting stops at the first miss */
    return k;
}

void lora_ref_f32_to_nf4(const float *src, uint8_t *blocks, size_t nblocks, size_t block)
{
    float mid[15];
    for (unsigned k = 0; k < 15; k++) mid[k] = (lora_nf4_code[k] + lora_nf4_code[k + 1]) / 2.0f;

    for (size_t b = 0; b < nblocks; b++, src += block, blocks += 4 + block / 2) {
        float absmax = 0.0f;
        for (size_t j = 0; j < block; j++) {
            float a = fabsf(src[j]);
            if (a > absmax) absmax = a;
        }
        lora_fmt_wr32(blocks, lora_f32_to_bits(absmax));
        for (size_t i = 0; i < block / 2; i++) {
            float n0 = absmax != 0.0f ? src[2 * i] / absmax : 0.0f;
            float n1 = absmax != 0.0f ? src[2 * i + 1] / absmax : 0.0f;
            blocks[4 + i] = (uint8_t)((nf4_index(n0, mid) << 4) | nf4_index(n1, mid));
        }
    }
}
