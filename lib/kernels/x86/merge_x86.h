/*
 * merge_x86.h - the x86 merge kernel tables, for merge_dispatch.c. Not
 * installed. Every entry is filled (no fallback step is needed), and a table
 * may only be used once lora_kernels_for_isa() says its ISA runs here.
 */
#ifndef LORA_KERNELS_MERGE_X86_H
#define LORA_KERNELS_MERGE_X86_H

#include "../merge_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
extern const lora_merge_kernels lora_merge_kernels_avx2;   /* AVX2 + FMA + F16C */
extern const lora_merge_kernels lora_merge_kernels_avx512; /* AVX-512 F/BW/VL/DQ */
#endif

#endif /* LORA_KERNELS_MERGE_X86_H */
