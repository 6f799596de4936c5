/*
 * kernels.h - conversion kernels with run-time ISA dispatch. Not installed.
 *
 * Every entry has a portable reference implementation (ref/), which is the
 * test oracle. ISA tables (x86/) override the entries they accelerate;
 * entries they leave NULL are filled from ref when the table is built, so a
 * caller never sees NULL. Every kernel must give results bit-identical to
 * ref (the conversions are exact or round-to-nearest-even; dequantization is
 * one fp32 multiply per element).
 *
 * Pointers need no alignment. Block kernels take the number of blocks; the
 * NF4 kernels also take the elements per block (`block`: a power of two,
 * 32..4096, spec section 11.4; bytes per block 4 + block / 2).
 */
#ifndef LORA_KERNELS_H
#define LORA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LORA_ISA_REF = 0, LORA_ISA_AVX2 = 1, LORA_ISA_AVX512 = 2, LORA_ISA_COUNT_ = 3 } lora_isa;

typedef struct {
    const char *name; /* "ref", "avx2", "avx512" */
    /* float conversions: exact to f32; from f32 round-to-nearest-even, NaN stays NaN (quiet) */
    void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
    void (*bf16_to_f32)(const uint16_t *src, float *dst, size_t n);
    void (*f32_to_f16)(const float *src, uint16_t *dst, size_t n);
    void (*f32_to_bf16)(const float *src, uint16_t *dst, size_t n);
    /* dequantization: dst gets nblocks * block_elems floats */
    void (*q8_0_to_f32)(const uint8_t *blocks, float *dst, size_t nblocks);
    void (*q4_0_to_f32)(const uint8_t *blocks, float *dst, size_t nblocks);
    void (*nf4_to_f32)(const uint8_t *blocks, float *dst, size_t nblocks, size_t block);
    /* quantization (reference quantizers, see spec): src has nblocks * block_elems
     * floats. Defined for every input, NaN and infinities included: the ISA
     * versions give the same bytes as ref for any bit pattern. */
    void (*f32_to_q8_0)(const float *src, uint8_t *blocks, size_t nblocks);
    void (*f32_to_q4_0)(const float *src, uint8_t *blocks, size_t nblocks);
    void (*f32_to_nf4)(const float *src, uint8_t *blocks, size_t nblocks, size_t block);
    /* number of NaN or +-Inf values */
    size_t (*count_nonfinite_f32)(const float *src, size_t n);
} lora_kernels;

/* The table for the best ISA this CPU and OS support (or LORA_ISA forces).
 * Detection runs once; safe to call from several threads. */
const lora_kernels *lora_kernels_get(void);
/* The table of one ISA, or NULL if this CPU/OS cannot run it. For tests and
 * benchmarks. */
const lora_kernels *lora_kernels_for_isa(lora_isa isa);
/* The ISA lora_kernels_get() picked. */
lora_isa lora_kernels_selected_isa(void);

/* The reference table (always available). */
extern const lora_kernels lora_kernels_ref;

/* NF4 code book (bitsandbytes), index 0..15. */
extern const float lora_nf4_code[16];

#endif /* LORA_KERNELS_H */
