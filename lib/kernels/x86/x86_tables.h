/*
 * x86_tables.h - the x86 kernel tables, for dispatch.c. Not installed.
 * Entries left NULL fall back to ref when dispatch builds the final table.
 * Defined only when compiling for x86.
 */
#ifndef LORA_KERNELS_X86_TABLES_H
#define LORA_KERNELS_X86_TABLES_H

#include "../kernels.h"

#if defined(__x86_64__) || defined(__i386__)
extern const lora_kernels lora_kernels_avx2;   /* needs AVX2 + FMA + F16C + OS YMM state */
extern const lora_kernels lora_kernels_avx512; /* needs AVX-512 F/BW/VL/DQ + OS ZMM state */

/* The quantizers live in quant_avx2.c / quant_avx512.c; the tables above
 * point at them. */
void lora_avx2_f32_to_q8_0(const float *src, uint8_t *blocks, size_t nblocks);
void lora_avx2_f32_to_q4_0(const float *src, uint8_t *blocks, size_t nblocks);
void lora_avx2_f32_to_nf4(const float *src, uint8_t *blocks, size_t nblocks, size_t block);
void lora_avx512_f32_to_q8_0(const float *src, uint8_t *blocks, size_t nblocks);
void lora_avx512_f32_to_q4_0(const float *src, uint8_t *blocks, size_t nblocks);
void lora_avx512_f32_to_nf4(const float *src, uint8_t *blocks, size_t nblocks, size_t block);
#endif

#endif /* LORA_KERNELS_X86_TABLES_H */
