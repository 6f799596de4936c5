/*
 * test_quant_kernels.c - the quantizers (f32 -> Q8_0, Q4_0, NF4) and the
 * NF4 kernels at every block size.
 *
 *   1. every ISA table this machine runs against ref, byte for byte, on
 *      millions of seeded blocks drawn from generators aimed at the places
 *      where a vector version could drift: exact rounding ties, values on NF4
 *      midpoints and one ulp either side, signed zeros, ties of the largest
 *      magnitude (Q4_0 keeps the first), NaN and infinities, subnormal block
 *      maxima whose reciprocal overflows, raw random bit patterns;
 *   2. hand-computed bytes for a few of those edge blocks (the ISA tables
 *      then have to match them too);
 *   3. NF4 at each block size 32..4096 against a float64 oracle (the nearest
 *      code, the exact absmax), dequantization ISA vs ref, and tails: exact
 *      size buffers at odd addresses, so ASan sees any access past the end.
 * (A sweep of all 2^32 float bit patterns through every quantizer was run
 * while writing the kernels; these tests keep the cases that matter.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "lora.h"
#include "support.h"

enum { Q8 = 0, Q4 = 1, NF4 = 2 };

static double rng_unit(uint64_t *s) { return (double)(ts_rng_next(s) >> 11) / 9007199254740992.0; }

static size_t isa_tables(const lora_kernels *out[LORA_ISA_COUNT_])
{
    size_t k = 0;
    for (int i = LORA_ISA_REF + 1; i < LORA_ISA_COUNT_; i++) {
        const lora_kernels *t = lora_kernels_for_isa((lora_isa)i);
        if (t) out[k++] = t;
    }
    return k;
}

static size_t block_elems(int q, size_t nf4_block) { return q == NF4 ? nf4_block : 32; }
static size_t block_bytes(int q, size_t nf4_block) { return q == Q8 ? 34 : q == Q4 ? 18 : 4 + nf4_block / 2; }

static void quantize(const lora_kernels *k, int q, const float *x, uint8_t *out, size_t nb, size_t nf4_block)
{
    switch (q) {
    case Q8: k->f32_to_q8_0(x, out, nb); break;
    case Q4: k->f32_to_q4_0(x, out, nb); break;
    default: k->f32_to_nf4(x, out, nb, nf4_block); break;
    }
}

static float nf4_mid(int k) { return (lora_nf4_code[k] + lora_nf4_code[k + 1]) / 2.0f; }

/* ---- block generators --------------------------------------------------------- */

/* A finite value of magnitude about 2^e. */
static float mag_value(uint64_t *s, int e)
{
    double v = ldexp(rng_unit(s) * 2.0 - 1.0, e);
    return (float)v;
}

/* One block of n values of the kind `kind` picks; q steers the ties. */
static void gen_block(uint64_t *s, int q, float *x, size_t n)
{
    unsigned kind = (unsigned)(ts_rng_next(s) % 12);
    int e = (int)(ts_rng_next(s) % 270) - 150; /* 2^-150 (zero) .. 2^119 */
    switch (kind) {
    case 0: /* raw bit patterns: NaN, Inf, subnormals, anything */
        for (size_t j = 0; j < n; j++) x[j] = ts_bitsf((uint32_t)ts_rng_next(s));
        break;
    case 1: /* Q8_0 ties: d = 1 exactly, so x * id = x; halves everywhere */
        for (size_t j = 0; j < n; j++) x[j] = (float)((int)(ts_rng_next(s) % 255) - 127) / 2.0f;
        x[ts_rng_next(s) % n] = (ts_rng_next(s) & 1) ? 127.0f : -127.0f;
        break;
    case 2: /* Q4_0: max -8 (d = 1) or 8 (d = -1): x * id + 8.5 lands on integers and halves */
        for (size_t j = 0; j < n; j++) x[j] = (float)((int)(ts_rng_next(s) % 33) - 16) / 2.0f;
        x[ts_rng_next(s) % n] = (ts_rng_next(s) & 1) ? 8.0f : -8.0f;
        break;
    case 3: /* NF4: absmax 1, values on midpoints and one ulp either side */
        for (size_t j = 0; j < n; j++) {
            float m = nf4_mid((int)(ts_rng_next(s) % 15));
            unsigned w = (unsigned)(ts_rng_next(s) % 3);
            x[j] = w == 0 ? m : w == 1 ? nextafterf(m, 2.0f) : nextafterf(m, -2.0f);
        }
        x[ts_rng_next(s) % n] = (ts_rng_next(s) & 1) ? 1.0f : -1.0f;
        break;
    case 4: /* signed zeros only, or zeros with one tiny value */
        for (size_t j = 0; j < n; j++) x[j] = (ts_rng_next(s) & 1) ? -0.0f : 0.0f;
        if (ts_rng_next(s) & 1) x[ts_rng_next(s) % n] = ts_bitsf((uint32_t)(ts_rng_next(s) % 8) | ((ts_rng_next(s) & 1) << 31));
        break;
    case 5: /* the largest magnitude twice, with both signs, at random places */
        for (size_t j = 0; j < n; j++) x[j] = mag_value(s, e - 1);
        x[ts_rng_next(s) % n] = ldexpf(1.0f, e > 127 ? 127 : e < -149 ? -149 : e);
        x[ts_rng_next(s) % n] = -ldexpf(1.0f, e > 127 ? 127 : e < -149 ? -149 : e);
        break;
    case 6: /* NaN and infinities among ordinary values */
        for (size_t j = 0; j < n; j++) x[j] = mag_value(s, e);
        for (int k = 0; k < 3; k++) {
            uint64_t r = ts_rng_next(s);
            x[r % n] = (r >> 32) % 3 == 0 ? NAN : (r >> 32) % 3 == 1 ? INFINITY : -INFINITY;
        }
        break;
    case 7: /* all NaN, or NaN with zeros */
        for (size_t j = 0; j < n; j++)
            x[j] = (ts_rng_next(s) & 3) ? ts_bitsf(0x7fc00000u | (uint32_t)(ts_rng_next(s) & 0x803fffffu)) : 0.0f;
        break;
    case 8: /* subnormal maxima: d underflows or 1/d overflows */
        for (size_t j = 0; j < n; j++) x[j] = ts_bitsf((uint32_t)(ts_rng_next(s) % 0x01000000u) | ((ts_rng_next(s) & 1) << 31));
        break;
    case 9: /* near FLT_MAX */
        for (size_t j = 0; j < n; j++) x[j] = (float)((rng_unit(s) * 2.0 - 1.0) * FLT_MAX);
        break;
    default: /* ordinary values of one magnitude, some exact zeros */
        for (size_t j = 0; j < n; j++) x[j] = (ts_rng_next(s) & 15) ? mag_value(s, e) : 0.0f;
        break;
    }
    (void)q;
}

/* ---- 1. ISA vs ref on many blocks --------------------------------------------- */

static void compare_many(int q, size_t nf4_block, size_t total_blocks, uint64_t seed)
{
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
    const size_t chunk = 4096;
    size_t be = block_elems(q, nf4_block), bb = block_bytes(q, nf4_block);
    float *x = ts_xmalloc(chunk * be * sizeof *x);
    uint8_t *want = ts_xmalloc(chunk * bb), *got = ts_xmalloc(chunk * bb);
    uint64_t s = seed;
    for (size_t done = 0; done < total_blocks; done += chunk) {
        size_t nb = total_blocks - done < chunk ? total_blocks - done : chunk;
        for (size_t b = 0; b < nb; b++) gen_block(&s, q, x + b * be, be);
        quantize(&lora_kernels_ref, q, x, want, nb, nf4_block);
        for (size_t k = 0; k < nt; k++) {
            memset(got, 0xA5, nb * bb);
            quantize(t[k], q, x, got, nb, nf4_block);
            if (memcmp(want, got, nb * bb) == 0) continue;
            for (size_t i = 0; i < nb * bb; i++)
                if (want[i] != got[i]) {
                    size_t b = i / bb;
                    fail_msg("quantizer %d (block %zu) [%s]: block %zu byte %zu: ref 0x%02x got 0x%02x; "
                             "first inputs 0x%08x 0x%08x",
                             q, be, t[k]->name, done + b, i % bb, want[i], got[i], ts_fbits(x[b * be]),
                             ts_fbits(x[b * be + 1]));
                }
        }
    }
    free(x);
    free(want);
    free(got);
}

static void test_q8_0_isa_vs_ref(void **state)
{
    (void)state;
    compare_many(Q8, 0, 2000000, 0x5eed0101);
}

static void test_q4_0_isa_vs_ref(void **state)
{
    (void)state;
    compare_many(Q4, 0, 2000000, 0x5eed0102);
}

static void test_nf4_isa_vs_ref(void **state)
{
    (void)state;
    compare_many(NF4, 64, 1000000, 0x5eed0103);
    for (size_t b = 32, i = 0; b <= 4096; b *= 2, i++) compare_many(NF4, b, 2000000 / b * 32 / 8 + 8, 0x5eed0200 + i);
}

/* ---- 2. hand-computed blocks -------------------------------------------------- */

/* Every table, ref first, must give exactly `want`. */
static void expect_all(int q, size_t nf4_block, const float *x, const uint8_t *want, size_t nbytes)
{
    const lora_kernels *t[LORA_ISA_COUNT_ + 1] = {&lora_kernels_ref};
    size_t nt = 1 + isa_tables(t + 1);
    uint8_t got[4 + 4096 / 2];
    for (size_t k = 0; k < nt; k++) {
        memset(got, 0xA5, sizeof got);
        quantize(t[k], q, x, got, 1, nf4_block);
        for (size_t i = 0; i < nbytes; i++)
            if (got[i] != want[i])
                fail_msg("quantizer %d [%s] byte %zu: want 0x%02x got 0x%02x", q, t[k]->name, i, want[i], got[i]);
    }
}

static void test_edge_blocks_hand(void **state)
{
    (void)state;
    float x[64];
    uint8_t w[64];

    /* Q8_0: NaN with an infinite maximum. d = Inf (f16 0x7c00), id = 0:
     * finite x -> 0 * x = 0; Inf * 0 = NaN -> 0; NaN -> 0. */
    for (int i = 0; i < 32; i++) x[i] = (float)i;
    x[3] = NAN, x[7] = INFINITY, x[8] = -INFINITY;
    memset(w, 0, 34);
    w[0] = 0x00, w[1] = 0x7c;
    expect_all(Q8, 0, x, w, 34);

    /* Q8_0: amax 2^-140 (subnormal): d = 2^-140 / 127 is subnormal, 1/d
     * overflows to Inf; x * Inf = +-Inf -> 127 / -128, 0 * Inf = NaN -> 0.
     * d rounds to f16 zero. */
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[0] = ldexpf(1.0f, -140), x[1] = -ldexpf(1.0f, -140), x[2] = -0.0f;
    memset(w, 0, 34);
    w[2] = 0x7f, w[3] = 0x80;
    expect_all(Q8, 0, x, w, 34);

    /* Q4_0: |max| tie with opposite signs, the first (-8) wins: d = 1;
     * 8 -> 16.5 clamps to 15; all -0: max stays +0, d = -0 (f16 0x8000),
     * every nibble (0 * 0 + 8.5) -> 8. */
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[5] = -8.0f, x[20] = 8.0f, x[6] = NAN;
    memset(w + 2, 0x88, 16);
    w[0] = 0x00, w[1] = 0x3c;
    w[2 + 5] = 0x80; /* element 5: -8 -> 0 (low nibble); element 21 (high): 8 */
    w[2 + 6] = 0x80; /* element 6 NaN -> 0 */
    w[2 + 4] = 0xf8; /* element 20 (high nibble of byte 4): 8 -> 15 */
    expect_all(Q4, 0, x, w, 18);
    for (int i = 0; i < 32; i++) x[i] = -0.0f;
    memset(w + 2, 0x88, 16);
    w[0] = 0x00, w[1] = 0x80;
    expect_all(Q4, 0, x, w, 18);

    /* NF4 block 32: absmax 1; exactly on the 7/8 midpoint stays 7, one ulp
     * above is 8; NaN -> 0; -0 -> 7; the largest -1 -> 0, 1 -> 15. */
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[0] = 1.0f, x[1] = -1.0f, x[2] = nf4_mid(7), x[3] = nextafterf(nf4_mid(7), 1.0f), x[4] = NAN, x[5] = -0.0f;
    memset(w + 4, 0x77, 16);
    w[0] = 0x00, w[1] = 0x00, w[2] = 0x80, w[3] = 0x3f;
    w[4] = 0xf0, w[5] = 0x78, w[6] = 0x07;
    expect_all(NF4, 32, x, w, 20);
}

/* ---- 3. NF4 block sizes ------------------------------------------------------- */

/* ref at every block size against float64: absmax is the exact maximum of
 * |x| (NaN-free input), every index is a nearest code, and dequantization
 * gives code[index] * absmax. */
static void test_nf4_block_sizes_oracle(void **state)
{
    (void)state;
    uint64_t s = 0x5eed0301;
    for (size_t B = 32; B <= 4096; B *= 2) {
        const size_t nb = 64;
        float *x = ts_xmalloc(nb * B * sizeof *x), *y = ts_xmalloc(nb * B * sizeof *y);
        uint8_t *q = ts_xmalloc(nb * (4 + B / 2));
        for (size_t i = 0; i < nb * B; i++) x[i] = (float)((rng_unit(&s) * 2 - 1) * (1 + (double)(i / B)));
        lora_kernels_ref.f32_to_nf4(x, q, nb, B);
        lora_kernels_ref.nf4_to_f32(q, y, nb, B);
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = q + b * (4 + B / 2);
            double amax = 0;
            for (size_t j = 0; j < B; j++) amax = fmax(amax, fabs((double)x[b * B + j]));
            uint32_t stored =
                (uint32_t)blk[0] | (uint32_t)blk[1] << 8 | (uint32_t)blk[2] << 16 | (uint32_t)blk[3] << 24;
            assert_int_equal(stored, ts_fbits((float)amax));
            for (size_t j = 0; j < B; j++) {
                int idx = (j & 1) ? (blk[4 + j / 2] & 15) : (blk[4 + j / 2] >> 4);
                double n = (double)x[b * B + j] / amax;
                for (int k = 0; k < 16; k++)
                    if (fabs(n - lora_nf4_code[idx]) > fabs(n - lora_nf4_code[k]) + 1e-6)
                        fail_msg("B=%zu block %zu elem %zu: code %d, %d is nearer", B, b, j, idx, k);
                assert_int_equal(ts_fbits(y[b * B + j]), ts_fbits(lora_nf4_code[idx] * (float)amax));
            }
        }
        free(x);
        free(y);
        free(q);
    }
}

static void test_nf4_dequant_block_sizes_isa(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t), runs = 0;
    uint64_t s = 0x5eed0302;
    for (size_t B = 32; B <= 4096; B *= 2) {
        size_t bb = 4 + B / 2;
        for (size_t nb = 0; nb <= 5; nb++)
            for (int rep = 0; rep < 3; rep++) {
                uint8_t *blocks = ts_xmalloc(nb * bb);
                for (size_t i = 0; i < nb * bb; i++) blocks[i] = (uint8_t)ts_rng_next(&s);
                for (size_t b = 0; b < nb && rep > 0; b++) { /* ordinary scales; rep 0 keeps random bits */
                    uint32_t u = ts_fbits((float)(rng_unit(&s) * 100));
                    memcpy(blocks + b * bb, &u, 4);
                }
                float *want = ts_xmalloc(nb * B * sizeof(float));
                lora_kernels_ref.nf4_to_f32(blocks, want, nb, B);
                for (size_t k = 0; k < nt; k++) {
                    float *got = ts_xmalloc(nb * B * sizeof(float)); /* exact size: ASan sees overruns */
                    t[k]->nf4_to_f32(blocks, got, nb, B);
                    for (size_t i = 0; i < nb * B; i++)
                        if (ts_fbits(want[i]) != ts_fbits(got[i]))
                            fail_msg("nf4->f32 B=%zu [%s] elem %zu: ref 0x%08x got 0x%08x", B, t[k]->name, i,
                                     ts_fbits(want[i]), ts_fbits(got[i]));
                    free(got);
                    runs++;
                }
                free(want);
                free(blocks);
            }
    }
    print_message("    nf4->f32 ISA vs ref: %zu runs, blocks 32..4096\n", runs);
}

/* Exact-size input and output at odd addresses, 0..40 blocks. */
static void test_quant_tails_unaligned(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_ + 1] = {&lora_kernels_ref};
    size_t nt = 1 + isa_tables(t + 1);
    uint64_t s = 0x5eed0303;
    for (int q = Q8; q <= NF4; q++)
        for (size_t nb = 0; nb <= 40; nb++) {
            size_t B = q == NF4 ? (size_t)32 << (nb % 3) : 0, be = block_elems(q, B), bb = block_bytes(q, B);
            float *x = ts_xmalloc(nb * be * sizeof *x + sizeof(float));
            float *xs = x + (nb & 1); /* 4-byte aligned, not 8/32/64 */
            for (size_t b = 0; b < nb; b++) gen_block(&s, q, xs + b * be, be);
            float *exact = ts_xmalloc(nb * be * sizeof *x);
            memcpy(exact, xs, nb * be * sizeof *x);
            uint8_t *want = ts_xmalloc(nb * bb);
            quantize(&lora_kernels_ref, q, exact, want, nb, B);
            for (size_t k = 0; k < nt; k++) {
                uint8_t *raw = ts_xmalloc(nb * bb + 1), *got = raw + 1; /* odd address */
                quantize(t[k], q, xs, got, nb, B);
                if (nb) assert_memory_equal(want, got, nb * bb);
                uint8_t *tight = ts_xmalloc(nb * bb);
                quantize(t[k], q, exact, tight, nb, B);
                if (nb) assert_memory_equal(want, tight, nb * bb);
                free(tight);
                free(raw);
            }
            free(want);
            free(exact);
            free(x);
        }
}

/* The ISA tables carry their own quantizers, not the ref fallback. */
static void test_tables_have_quantizers(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
#if defined(__x86_64__)
    for (size_t i = 0; i < nt; i++) {
        assert_true(t[i]->f32_to_q8_0 != lora_kernels_ref.f32_to_q8_0);
        assert_true(t[i]->f32_to_q4_0 != lora_kernels_ref.f32_to_q4_0);
        assert_true(t[i]->f32_to_nf4 != lora_kernels_ref.f32_to_nf4);
    }
#else
    (void)nt;
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_have_quantizers),
        cmocka_unit_test(test_edge_blocks_hand),
        cmocka_unit_test(test_nf4_block_sizes_oracle),
        cmocka_unit_test(test_nf4_dequant_block_sizes_isa),
        cmocka_unit_test(test_quant_tails_unaligned),
        cmocka_unit_test(test_q8_0_isa_vs_ref),
        cmocka_unit_test(test_q4_0_isa_vs_ref),
        cmocka_unit_test(test_nf4_isa_vs_ref),
    };
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
    print_message("quantizer tests: %zu ISA table(s) besides ref:", nt);
    for (size_t i = 0; i < nt; i++) print_message(" %s", t[i]->name);
    print_message("\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
