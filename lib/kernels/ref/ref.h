/*
 * ref.h - the portable reference kernels, shared between the ref/ files.
 * Not installed. Everything else reaches them through lora_kernels_ref.
 */
#ifndef LORA_KERNELS_REF_H
#define LORA_KERNELS_REF_H

#include <stddef.h>
#include <stdint.h>

void lora_ref_q8_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks);
void lora_ref_q4_0_to_f32(const uint8_t *blocks, float *dst, size_t nblocks);
void lora_ref_nf4_to_f32(const uint8_t *blocks, float *dst, size_t nblocks, size_t block);
void lora_ref_f32_to_q8_0(const float *src, uint8_t *blocks, size_t nblocks);
void lora_ref_f32_to_q4_0(const float *src, uint8_t *blocks, size_t nblocks);
void lora_ref_f32_to_nf4(const float *src, uint8_t *blocks, size_t nblocks, size_t block);

#endif /* LORA_KERNELS_REF_H */
