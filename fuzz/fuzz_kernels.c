/*
 * fuzz_kernels - every ISA kernel table against the reference, bit for bit.
 *
 * The input is read at once as f16, bf16 and f32 values and as Q8_0, Q4_0
 * and NF4 blocks (NF4 in a block size of 32..4096 the first byte picks;
 * blocks from a misaligned address too), and every entry of every table
 * this CPU runs (lora_kernels_for_isa) and of the dispatched table is
 * compared with lora_kernels_ref on it: decoded floats, encoded halves,
 * quantized blocks and non-finite counts must be identical bit for bit
 * (kernels.h promises it). Lengths vary with the input size, so the SIMD
 * tails are covered. Independently of any ISA, every non-NaN half survives
 * half -> f32 -> half unchanged and a NaN stays NaN.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "support/fuzz_common.h"
#include "kernels/kernels.h"

typedef struct {
    const uint8_t *bytes;   /* the input at a misaligned address */
    const uint16_t *halves; /* aligned copies */
    const float *floats;
    size_t n_half, n_float;
} views;

static void same(const void *a, const void *b, size_t n) { FUZZ_ASSERT(n == 0 || memcmp(a, b, n) == 0); }

static void cmp_float_conv(const lora_kernels *k, const views *v)
{
    const lora_kernels *r = &lora_kernels_ref;
    size_t nh = v->n_half, nf = v->n_float;
    float *a = calloc(nh + 1, sizeof *a), *b = calloc(nh + 1, sizeof *b);
    uint16_t *ha = calloc(nf + 1, sizeof *ha), *hb = calloc(nf + 1, sizeof *hb);
    FUZZ_ASSERT(a && b && ha && hb);
    k->f16_to_f32(v->halves, a, nh);
    r->f16_to_f32(v->halves, b, nh);
    same(a, b, nh * sizeof *a);
    k->bf16_to_f32(v->halves, a, nh);
    r->bf16_to_f32(v->halves, b, nh);
    same(a, b, nh * sizeof *a);
    k->f32_to_f16(v->floats, ha, nf);
    r->f32_to_f16(v->floats, hb, nf);
    same(ha, hb, nf * sizeof *ha);
    k->f32_to_bf16(v->floats, ha, nf);
    r->f32_to_bf16(v->floats, hb, nf);
    same(ha, hb, nf * sizeof *ha);
    FUZZ_ASSERT(k->count_nonfinite_f32(v->floats, nf) == r->count_nonfinite_f32(v->floats, nf));
    free(a);
    free(b);
    free(ha);
    free(hb);
}

static void cmp_blocks(const lora_kernels *k, const views *v, size_t bytes)
{
    const lora_kernels *r = &lora_kernels_ref;
    struct {
        void (*kf)(const uint8_t *, float *, size_t);
        void (*rf)(const uint8_t *, float *, size_t);
        size_t elems, size;
    } dq[] = {
        {k->q8_0_to_f32, r->q8_0_to_f32, 32, 34},
        {k->q4_0_to_f32, r->q4_0_to_f32, 32, 18},
    };
    for (size_t i = 0; i < 2; i++) {
        size_t nb = bytes / dq[i].size;
        float *a = calloc(nb * dq[i].elems + 1, sizeof *a), *b = calloc(nb * dq[i].elems + 1, sizeof *b);
        FUZZ_ASSERT(a && b);
        dq[i].kf(v->bytes, a, nb);
        dq[i].rf(v->bytes, b, nb);
        same(a, b, nb * dq[i].elems * sizeof *a);
        free(a);
        free(b);
    }
    struct {
        void (*kf)(const float *, uint8_t *, size_t);
        void (*rf)(const float *, uint8_t *, size_t);
        size_t elems, size;
    } q[] = {
        {k->f32_to_q8_0, r->f32_to_q8_0, 32, 34},
        {k->f32_to_q4_0, r->f32_to_q4_0, 32, 18},
    };
    for (size_t i = 0; i < 2; i++) {
        size_t nb = v->n_float / q[i].elems;
        uint8_t *a = calloc(nb * q[i].size + 1, 1), *b = calloc(nb * q[i].size + 1, 1);
        FUZZ_ASSERT(a && b);
        q[i].kf(v->floats, a, nb);
        q[i].rf(v->floats, b, nb);
        same(a, b, nb * q[i].size);
        free(a);
        free(b);
    }
}

/* NF4 in a block size (32..4096 elements) the input picks. */
static void cmp_nf4(const lora_kernels *k, const views *v, size_t bytes, size_t block)
{
    const lora_kernels *r = &lora_kernels_ref;
    size_t bb = 4 + block / 2, nb = bytes / bb;
    float *a = calloc(nb * block + 1, sizeof *a), *b = calloc(nb * block + 1, sizeof *b);
    FUZZ_ASSERT(a && b);
    k->nf4_to_f32(v->bytes, a, nb, block);
    r->nf4_to_f32(v->bytes, b, nb, block);
    same(a, b, nb * block * sizeof *a);
    free(a);
    free(b);
    nb = v->n_float / block;
    uint8_t *qa = calloc(nb * bb + 1, 1), *qb = calloc(nb * bb + 1, 1);
    FUZZ_ASSERT(qa && qb);
    k->f32_to_nf4(v->floats, qa, nb, block);
    r->f32_to_nf4(v->floats, qb, nb, block);
    same(qa, qb, nb * bb);
    free(qa);
    free(qb);
}

static void check_half_roundtrip(const views *v)
{
    const lora_kernels *r = &lora_kernels_ref;
    for (size_t i = 0; i < v->n_half; i++) {
        uint16_t h = v->halves[i], back;
        float f;
        r->f16_to_f32(&h, &f, 1);
        r->f32_to_f16(&f, &back, 1);
        int nan = (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0;
        FUZZ_ASSERT(nan ? (isnan(f) && (back & 0x7C00) == 0x7C00 && (back & 0x03FF) != 0) : back == h);
        r->bf16_to_f32(&h, &f, 1);
        r->f32_to_bf16(&f, &back, 1);
        nan = (h & 0x7F80) == 0x7F80 && (h & 0x007F) != 0;
        FUZZ_ASSERT(nan ? (isnan(f) && (back & 0x7F80) == 0x7F80 && (back & 0x007F) != 0) : back == h);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    /* The first byte picks a misalignment for the block views (low 3 bits)
     * and the NF4 block (next 3). */
    size_t shift = data[0] % 8;
    uint8_t *bytes = malloc(size + shift);
    uint16_t *halves = malloc(size + 2);
    float *floats = malloc(size + 4);
    FUZZ_ASSERT(bytes && halves && floats);
    memcpy(bytes + shift, data, size);
    memcpy(halves, data, size);
    memcpy(floats, data, size);
    views v = {bytes + shift, halves, floats, size / 2, size / 4};

    size_t block = (size_t)32 << ((data[0] >> 3) % 8);
    check_half_roundtrip(&v);
    const lora_kernels *picked = lora_kernels_get();
    int picked_seen = 0;
    for (int isa = 0; isa < LORA_ISA_COUNT_; isa++) {
        const lora_kernels *k = lora_kernels_for_isa((lora_isa)isa);
        if (!k) continue;
        picked_seen |= k == picked;
        cmp_float_conv(k, &v);
        cmp_blocks(k, &v, size);
        cmp_nf4(k, &v, size, block);
    }
    if (!picked_seen) {
        cmp_float_conv(picked, &v);
        cmp_blocks(picked, &v, size);
        cmp_nf4(picked, &v, size, block);
    }
    free(bytes);
    free(halves);
    free(floats);
    return 0;
}
