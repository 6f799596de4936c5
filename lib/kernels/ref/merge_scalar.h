/*
 * merge_scalar.h - the scalar pieces every merge kernel shares, so that the
 * parts of the arithmetic SIMD does not vectorize are literally the same
 * code on every ISA. Not installed.
 */
#ifndef LORA_KERNELS_MERGE_SCALAR_H
#define LORA_KERNELS_MERGE_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define LORA_MK_QNAN_F32 0x7fc00000u
#define LORA_MK_QUIET_F32 0x00400000u
#define LORA_MK_QNAN_F64 0x7ff8000000000000ull

/* The row sum of squares from its 16 lanes: the tree merge_kernels.h
 * defines (l + 8, l + 4, l + 2, l + 1), with a NaN made canonical because
 * the SIMD adds may carry another payload than ref's. */
static inline double lora_mk_lanes_total(const double lane[16])
{
    double t[16];
    for (int l = 0; l < 16; l++) t[l] = lane[l];
    for (int half = 8; half >= 1; half /= 2)
        for (int l = 0; l < half; l++) t[l] = t[l] + t[l + half];
    if (isnan(t[0])) {
        uint64_t q = LORA_MK_QNAN_F64;
        memcpy(&t[0], &q, sizeof q);
    }
    return t[0];
}

#endif /* LORA_KERNELS_MERGE_SCALAR_H */
