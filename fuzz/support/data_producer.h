/*
 * data_producer.h - turn fuzz bytes into choices for property harnesses.
 *
 * Choices (integers, booleans) are taken from the END of the input and
 * payloads (byte strings) from the FRONT, as LLVM's FuzzedDataProvider does:
 * a mutation of the payload then leaves the choices, hence the structure of
 * the test case, unchanged, and the other way round. An exhausted producer
 * keeps answering with the smallest value, so every input is a test case.
 */
#ifndef FUZZ_DATA_PRODUCER_H
#define FUZZ_DATA_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *data;
    size_t size;          /* bytes not yet consumed: [data, data + size) */
} fuzz_producer;

void fp_init(fuzz_producer *p, const uint8_t *data, size_t size);
size_t fp_remaining(const fuzz_producer *p);
/* A value in [lo, hi] (lo <= hi), from as few bytes as the range needs. */
uint64_t fp_range(fuzz_producer *p, uint64_t lo, uint64_t hi);
uint32_t fp_u32(fuzz_producer *p, uint32_t lo, uint32_t hi);
int fp_bool(fuzz_producer *p);
/* Any 32/64-bit pattern, NaNs and infinities included. */
float fp_float_bits(fuzz_producer *p);
double fp_double_bits(fuzz_producer *p);
/* A float that is finite and "reasonable" (|x| < 2^20 or zero/denormal
 * sometimes): for values a conversion must keep. */
float fp_float_finite(fuzz_producer *p);
/* Up to `n` payload bytes from the front into dst (zero-filled when the
 * input runs out); returns how many came from the input. */
size_t fp_bytes(fuzz_producer *p, void *dst, size_t n);

#endif /* FUZZ_DATA_PRODUCER_H */
