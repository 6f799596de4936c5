/*
 * convert_ref.c - reference float conversions, the NF4 code book and the
 * reference kernel table. The test oracle for every ISA table.
 */
#include "../kernels.h"
#include "fp_scalar.h"
#include "ref.h"

/* bitsandbytes NF4: quantiles of N(0,1) scaled to [-1, 1], as float32. */
const float lora_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

static void ref_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = lora_bits_to_f32(lora_f16_bits_to_f32_bits(src[i]));
}

static void ref_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = lora_bits_to_f32(lora_bf16_bits_to_f32_bits(src[i]));
}

static void ref_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = lora_f32_bits_to_f16_bits(lora_f32_to_bits(src[i]));
}

static void ref_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = lora_f32_bits_to_bf16_bits(lora_f32_to_bits(src[i]));
}

static size_t ref_count_nonfinite_f32(const float *src, size_t n)
{
    size_t count = 0;
    /* On the bits, so -ffast-math or a DAZ FP environment cannot hide a NaN. */
    for (size_t i = 0; i < n; i++) count += (lora_f32_to_bits(src[i]) & 0x7f800000u) == 0x7f800000u;
    return count;
}

const lora_kernels lora_kernels_ref = {
    .name = "ref",
    .f16_to_f32 = ref_f16_to_f32,
    .bf16_to_f32 = ref_bf16_to_f32,
    .f32_to_f16 = ref_f32_to_f16,
    .f32_to_bf16 = ref_f32_to_bf16,
    .q8_0_to_f32 = lora_ref_q8_0_to_f32,
    .q4_0_to_f32 = lora_ref_q4_0_to_f32,
    .nf4_to_f32 = lora_ref_nf4_to_f32,
    .f32_to_q8_0 = lora_ref_f32_to_q8_0,
    .f32_to_q4_0 = lora_ref_f32_to_q4_0,
    .f32_to_nf4 = lora_ref_f32_to_nf4,
    .count_nonfinite_f32 = ref_count_nonfinite_f32,
};
