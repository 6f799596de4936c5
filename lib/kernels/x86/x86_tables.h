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
#endif

#endif /* LORA_KERNELS_X86_TABLES_H */
