/* See data_producer.h. */
#include <math.h>
#include <string.h>
#include "data_producer.h"

void fp_init(fuzz_producer *p, const uint8_t *data, size_t size)
{
    p->data = data;
    p->size = size;
}

size_t fp_remaining(const fuzz_producer *p) { return p->size; }

uint64_t fp_range(fuzz_producer *p, uint64_t lo, uint64_t hi)
{
    uint64_t span = hi - lo, v = 0;
    /* Consume one byte per 8 bits the span needs, last byte first. */
    for (uint64_t left = span; left != 0 && p->size > 0; left >>= 8) {
        v = (v << 8) | p->data[p->size - 1];
        p->size--;
    }
    if (span == UINT64_MAX) return v;
    return lo + v % (span + 1);
}

uint32_t fp_u32(fuzz_producer *p, uint32_t lo, uint32_t hi) { return (uint32_t)fp_range(p, lo, hi); }

int fp_bool(fuzz_producer *p) { return (int)fp_range(p, 0, 1); }

float fp_float_bits(fuzz_producer *p)
{
    uint32_t u = (uint32_t)fp_range(p, 0, UINT32_MAX);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

double fp_double_bits(fuzz_producer *p)
{
    uint64_t u = fp_range(p, 0, UINT64_MAX);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

float fp_float_finite(fuzz_producer *p)
{
    float f = fp_float_bits(p);
    if (!isfinite(f)) return 0.0f;
    /* Bring huge magnitudes into a range where alpha / rank and the
     * quantizers stay finite, keeping sign and mantissa bits. */
    while (fabsf(f) >= 1048576.0f) f *= 0x1p-24f;
    return f;
}

size_t fp_bytes(fuzz_producer *p, void *dst, size_t n)
{
    size_t got = n < p->size ? n : p->size;
    if (got) memcpy(dst, p->data, got);
    if (got < n) memset((uint8_t *)dst + got, 0, n - got);
    p->data += got;
    p->size -= got;
    return got;
}
