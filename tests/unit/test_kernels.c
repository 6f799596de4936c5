/*
 * test_kernels.c - the conversion kernels.
 *
 * Two layers:
 *   1. ref against independent oracles: float64 formulas for the float
 *      formats, nearbyint() in float64 for RNE narrowing, hand-computed
 *      block bytes, and the error bound of each quantization scheme.
 *   2. every ISA table this machine can run against ref, bit for bit
 *      (NaN payloads included: the ISA kernels are specified to produce the
 *      same payload, see lib/kernels/ref/fp_scalar.h), on exhaustive or
 *      large seeded inputs, with odd tails and unaligned pointers.
 * Dispatch (LORA_ISA, one-time detection from several threads) is probed in
 * forked children before this process touches the kernels.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "lora.h"
#include "support.h"

/* ---- helpers ------------------------------------------------------------ */

static float rng_uniform(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(ts_rng_next(s) >> 11) / 9007199254740992.0);
}

/* A heap copy of exactly `size` bytes, so ASan sees any read past the end. */
static void *dup_exact(const void *src, size_t size)
{
    void *p = ts_xmalloc(size);
    if (size) memcpy(p, src, size);
    return p;
}

/* The ISA tables (ref excluded) this machine runs; counted for the report. */
static size_t isa_tables(const lora_kernels *out[LORA_ISA_COUNT_])
{
    size_t k = 0;
    for (int i = LORA_ISA_REF + 1; i < LORA_ISA_COUNT_; i++) {
        const lora_kernels *t = lora_kernels_for_isa((lora_isa)i);
        if (t) out[k++] = t;
    }
    return k;
}

static void expect_same_u32(const char *what, const char *isa, const uint32_t *want, const uint32_t *got, size_t n,
                            const void *inputs, size_t in_size)
{
    for (size_t i = 0; i < n; i++) {
        if (want[i] == got[i]) continue;
        unsigned long long in = 0;
        if (inputs) memcpy(&in, (const uint8_t *)inputs + i * in_size, in_size);
        fail_msg("%s [%s] element %zu (input 0x%llx): ref 0x%08x, got 0x%08x", what, isa, i, in, (unsigned)want[i],
                 (unsigned)got[i]);
    }
}

static void expect_same_u16(const char *what, const char *isa, const uint16_t *want, const uint16_t *got, size_t n,
                            const float *inputs)
{
    for (size_t i = 0; i < n; i++)
        if (want[i] != got[i])
            fail_msg("%s [%s] element %zu (input 0x%08x): ref 0x%04x, got 0x%04x", what, isa, i,
                     inputs ? (unsigned)ts_fbits(inputs[i]) : 0u, want[i], got[i]);
}

/* ---- float64 oracles ------------------------------------------------------ */

/* binary16 value by formula; NaN handled by the caller. */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : (e == 31 ? INFINITY : ldexp(1024 + m, e - 25));
    return (h & 0x8000) ? -v : v;
}

static double bf16_value(uint16_t b)
{
    int e = (b >> 7) & 255, m = b & 0x7f;
    double v = e == 0 ? ldexp(m, -133) : (e == 255 ? INFINITY : ldexp(128 + m, e - 134));
    return (b & 0x8000) ? -v : v;
}

/* Round finite x to a format with `mbits` stored mantissa bits, minimum
 * normal exponent emin and largest finite value maxf; nearbyint() rounds
 * ties to even in the default FP environment, and every step is exact in
 * float64. */
static double rne_oracle(double x, int mbits, int emin, double maxf)
{
    if (x == 0) return x;
    int e;
    (void)frexp(fabs(x), &e);
    e -= 1; /* |x| in [2^e, 2^(e+1)) */
    if (e < emin) e = emin;
    double ulp = ldexp(1.0, e - mbits);
    double v = nearbyint(fabs(x) / ulp) * ulp;
    if (v > maxf) v = INFINITY;
    return copysign(v, x);
}

#define F16_MAX 65504.0
#define BF16_MAX 3.3895313892515355e38 /* (2 - 2^-7) * 2^127 */

static void check_f16_narrow_oracle(float f, uint16_t h)
{
    uint32_t u = ts_fbits(f);
    if (isnan(f)) {
        uint16_t want = (uint16_t)(((u >> 16) & 0x8000) | 0x7e00 | ((u >> 13) & 0x3ff));
        if (h != want) fail_msg("f32->f16 NaN 0x%08x: got 0x%04x want 0x%04x", (unsigned)u, h, want);
        return;
    }
    double want = rne_oracle(f, 10, -14, F16_MAX), got = f16_value(h);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) fail_msg("f32->f16 0x%08x: NaN out of a number", (unsigned)u);
    if (got != want || !signbit(got) != !signbit(want))
        fail_msg("f32->f16 0x%08x: got 0x%04x (%.17g) want %.17g", (unsigned)u, h, got, want);
}

static void check_bf16_narrow_oracle(float f, uint16_t b)
{
    uint32_t u = ts_fbits(f);
    if (isnan(f)) {
        uint16_t want = (uint16_t)((u >> 16) | 0x40);
        if (b != want) fail_msg("f32->bf16 NaN 0x%08x: got 0x%04x want 0x%04x", (unsigned)u, b, want);
        return;
    }
    double want = rne_oracle(f, 7, -126, BF16_MAX), got = bf16_value(b);
    if ((b & 0x7f80) == 0x7f80 && (b & 0x7f)) fail_msg("f32->bf16 0x%08x: NaN out of a number", (unsigned)u);
    if (got != want || !signbit(got) != !signbit(want))
        fail_msg("f32->bf16 0x%08x: got 0x%04x (%.17g) want %.17g", (unsigned)u, b, got, want);
}

/* ---- the narrowing input set --------------------------------------------- */

/* Hand-picked edges, every f16 and bf16 rounding midpoint (and its two
 * neighbours, both signs), a strided sweep of all 2^32 patterns, and 1M
 * seeded random patterns (half of them with exponents near the f16 range).
 * Built once; shared by the oracle and the ISA tests. */
static float *g_narrow;
static size_t g_narrow_n;

static const uint32_t k_edges[] = {
    0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x00800001, 0x7f7fffff, 0xff7fffff,
    0x7f800000, 0xff800000, 0x7f7f7fff, 0x7f7f8000, 0x7f7f8001, 0x7f7fc000, 0x7f7ec000, 0x33000000, 0x33000001,
    0x32ffffff, 0xb3000000, 0xb3000001, 0x33800000, 0x33c00000, 0x34200000, 0x387fc000, 0x387fe000, 0x387fdfff,
    0x387fe001, 0x38800000, 0x38800001, 0x387fffff, 0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001, 0x47800000,
    0xc77ff000, 0xc77fefff, 0x3f801000, 0x3f803000, 0x3f800fff, 0x3f801001, 0x3f808000, 0x3f818000, 0x3f807fff,
    0x7f800001, 0xff800001, 0x7fc00000, 0xffc00000, 0x7fffffff, 0xffffffff, 0x7fbfffff, 0x7f802000, 0x7f801fff,
    0xff812345, 0x7f8000ff, 0x7fa00000, 0x7f810000, 0x7f80ffff,
};

static void narrow_push(size_t *k, float f)
{
    g_narrow[(*k)++] = f;
}

static void push_mid3(size_t *k, double mid)
{
    float m = (float)mid; /* exact: a midpoint has one more bit than the format */
    for (int s = 0; s < 2; s++) {
        float v = s ? -m : m;
        narrow_push(k, v);
        narrow_push(k, nextafterf(v, INFINITY));
        narrow_push(k, nextafterf(v, -INFINITY));
    }
}

static void build_narrow_inputs(void)
{
    const size_t nrand = 1u << 20, stride = 4099;
    size_t cap = sizeof k_edges / 4 + 6 * 0x7c00 + 6 * 0x7f80 + (0x100000000ull / stride + 1) + nrand;
    g_narrow = ts_xmalloc(cap * sizeof(float));
    size_t k = 0;
    for (size_t i = 0; i < sizeof k_edges / 4; i++) narrow_push(&k, ts_bitsf(k_edges[i]));
    for (uint32_t h = 0; h < 0x7c00; h++) { /* midpoint to the next f16 (65520 after 65504) */
        int e = (int)(h >> 10);
        push_mid3(&k, f16_value((uint16_t)h) + ldexp(1.0, (e ? e : 1) - 26));
    }
    for (uint32_t b = 0; b < 0x7f80; b++) {
        int e = (int)(b >> 7);
        push_mid3(&k, bf16_value((uint16_t)b) + ldexp(1.0, (e ? e : 1) - 135));
    }
    for (uint64_t u = 0; u < 0x100000000ull; u += stride) narrow_push(&k, ts_bitsf((uint32_t)u));
    uint64_t s = 0x5eed0001;
    for (size_t i = 0; i < nrand; i++) {
        uint32_t u = (uint32_t)ts_rng_next(&s);
        if (i & 1) u = (u & 0x807fffffu) | ((100u + (u >> 8) % 48u) << 23); /* 2^-27 .. 2^20 */
        narrow_push(&k, ts_bitsf(u));
    }
    assert_true(k <= cap);
    g_narrow_n = k;
}

/* ---- 1. ref against oracles ---------------------------------------------- */

static void test_ref_f16_widen_oracle(void **state)
{
    (void)state;
    uint16_t *in = ts_xmalloc(65536 * 2);
    float *out = ts_xmalloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++) in[i] = (uint16_t)i;
    lora_kernels_ref.f16_to_f32(in, out, 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t u = ts_fbits(out[h]);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) { /* NaN: quieted, payload shifted up, sign kept */
            uint32_t want = ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13);
            if (u != want) fail_msg("f16 0x%04x: got 0x%08x want 0x%08x", h, (unsigned)u, (unsigned)want);
            continue;
        }
        double want = f16_value((uint16_t)h);
        if ((double)out[h] != want || !signbit(out[h]) != !signbit(want))
            fail_msg("f16 0x%04x: got %.17g want %.17g", h, (double)out[h], want);
    }
    free(in);
    free(out);
}

static void test_ref_bf16_widen_oracle(void **state)
{
    (void)state;
    uint16_t *in = ts_xmalloc(65536 * 2);
    float *out = ts_xmalloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++) in[i] = (uint16_t)i;
    lora_kernels_ref.bf16_to_f32(in, out, 65536);
    for (uint32_t b = 0; b < 65536; b++) {
        uint32_t u = ts_fbits(out[b]);
        if ((b & 0x7f80) == 0x7f80 && (b & 0x7f)) { /* NaN: the bits move up unchanged */
            if (u != b << 16) fail_msg("bf16 0x%04x: got 0x%08x", b, (unsigned)u);
            continue;
        }
        double want = bf16_value((uint16_t)b);
        if ((double)out[b] != want || !signbit(out[b]) != !signbit(want))
            fail_msg("bf16 0x%04x: got %.17g want %.17g", b, (double)out[b], want);
    }
    free(in);
    free(out);
}

static void test_ref_narrow_oracle(void **state)
{
    (void)state;
    uint16_t *h = ts_xmalloc(g_narrow_n * 2), *b = ts_xmalloc(g_narrow_n * 2);
    lora_kernels_ref.f32_to_f16(g_narrow, h, g_narrow_n);
    lora_kernels_ref.f32_to_bf16(g_narrow, b, g_narrow_n);
    for (size_t i = 0; i < g_narrow_n; i++) {
        check_f16_narrow_oracle(g_narrow[i], h[i]);
        check_bf16_narrow_oracle(g_narrow[i], b[i]);
    }
    print_message("    f32->f16/bf16 oracle: %zu inputs each\n", g_narrow_n);
    free(h);
    free(b);
}

/* Spot values a reader can check by hand against the f16 / bf16 tables. */
static void test_ref_narrow_known(void **state)
{
    (void)state;
    static const struct { uint32_t in; uint16_t f16, bf16; } k[] = {
        {0x3f800000, 0x3c00, 0x3f80}, /* 1.0 */
        {0x3f801000, 0x3c00, 0x3f80}, /* 1 + 2^-11: f16 tie, to even (down) */
        {0x3f803000, 0x3c02, 0x3f80}, /* 1 + 3*2^-11: f16 tie, to even (up) */
        {0x3f808000, 0x3c04, 0x3f80}, /* 1 + 2^-8: bf16 tie, to even (down) */
        {0x3f818000, 0x3c0c, 0x3f82}, /* 1 + 3*2^-8: bf16 tie, to even (up) */
        {0x477fe000, 0x7bff, 0x4780}, /* 65504 */
        {0x477fefff, 0x7bff, 0x4780}, /* just under 65520 */
        {0x477ff000, 0x7c00, 0x4780}, /* 65520 -> Inf */
        {0x33000000, 0x0000, 0x3300}, /* 2^-25: tie between 0 and 2^-24, to 0 */
        {0x33000001, 0x0001, 0x3300},
        {0x33c00000, 0x0002, 0x33c0}, /* 1.5 * 2^-24 -> 2 units */
        {0x387fe000, 0x0400, 0x3880}, /* tie between largest subnormal and 2^-14 */
        {0x80000000, 0x8000, 0x8000}, /* -0 */
        {0x7f7fffff, 0x7c00, 0x7f80}, /* FLT_MAX */
        {0x7f7f7fff, 0x7c00, 0x7f7f},
        {0x00000001, 0x0000, 0x0000}, /* f32 subnormal */
        {0x0040c000, 0x0000, 0x0041}, /* bf16 subnormal, rounds up */
        {0x7f800001, 0x7e00, 0x7fc0}, /* sNaN, payload only in low bits: stays NaN */
        {0xff812345, 0xfe09, 0xffc1}, /* negative sNaN */
        {0x7fc00000, 0x7e00, 0x7fc0},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        float f = ts_bitsf(k[i].in);
        uint16_t h, b;
        lora_kernels_ref.f32_to_f16(&f, &h, 1);
        lora_kernels_ref.f32_to_bf16(&f, &b, 1);
        if (h != k[i].f16 || b != k[i].bf16)
            fail_msg("0x%08x: f16 0x%04x (want 0x%04x), bf16 0x%04x (want 0x%04x)", (unsigned)k[i].in, h, k[i].f16, b,
                     k[i].bf16);
    }
}

static void test_nf4_code_book(void **state)
{
    (void)state;
    /* design.md's float32 values, typed again here rather than shared. */
    static const float want[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                   -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                   0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                   0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                   0.7229568362236023f, 1.0f};
    for (int i = 0; i < 16; i++) assert_int_equal(ts_fbits(lora_nf4_code[i]), ts_fbits(want[i]));
}

static void test_ref_dequant_hand(void **state)
{
    (void)state;
    /* Q8_0, three blocks: d = 0.5; d = 2^-24 (subnormal); d = -Inf. */
    uint8_t q8[3 * 34] = {0};
    const uint8_t b0[] = {0x00, 0x38, 0x01, 0xff, 0x7f, 0x80, 0x00, 0x03};
    memcpy(q8, b0, sizeof b0);
    q8[34] = 0x01, q8[35] = 0x00, q8[36] = 0x03, q8[37] = 0x80;
    q8[68] = 0x00, q8[69] = 0xfc, q8[70] = 0x00, q8[71] = 0x01, q8[72] = 0xff;
    float x[3 * 64];
    lora_kernels_ref.q8_0_to_f32(q8, x, 3);
    const float w8[] = {0.5f, -0.5f, 63.5f, -64.0f, 0.0f, 1.5f};
    for (int i = 0; i < 6; i++) assert_int_equal(ts_fbits(x[i]), ts_fbits(w8[i]));
    for (int i = 6; i < 32; i++) assert_int_equal(ts_fbits(x[i]), 0);
    assert_int_equal(ts_fbits(x[32]), ts_fbits(ldexpf(3.0f, -24)));
    assert_int_equal(ts_fbits(x[33]), ts_fbits(-ldexpf(1.0f, -17)));
    assert_true(isnan(x[64]));      /* 0 * -Inf */
    assert_true(isinf(x[65]) && x[65] < 0);
    assert_true(isinf(x[66]) && x[66] > 0);

    /* Q4_0, two blocks: low nibbles are elements 0..15, high nibbles 16..31. */
    uint8_t q4[2 * 18];
    memset(q4, 0x88, sizeof q4);
    q4[0] = 0x00, q4[1] = 0x40, q4[2] = 0x1f, q4[3] = 0x80; /* d = 2 */
    q4[18] = 0x00, q4[19] = 0xc0, q4[20] = 0x0f;            /* d = -2 */
    lora_kernels_ref.q4_0_to_f32(q4, x, 2);
    assert_true(x[0] == 14.0f && x[16] == -14.0f && x[1] == -16.0f && x[17] == 0.0f);
    assert_true(x[32] == -14.0f && x[48] == 16.0f);
    for (int i = 2; i < 16; i++) assert_true(x[i] == 0.0f && x[16 + i] == 0.0f);
    for (int i = 33; i < 64; i++)
        if (i != 48) assert_true(x[i] == 0.0f);

    /* NF4, one block: absmax 0.5, HIGH nibble first. */
    uint8_t nf[36];
    memset(nf, 0x77, sizeof nf);
    nf[0] = 0x00, nf[1] = 0x00, nf[2] = 0x00, nf[3] = 0x3f;
    nf[4] = 0xf0, nf[5] = 0x7f, nf[6] = 0x8e;
    lora_kernels_ref.nf4_to_f32(nf, x, 1, 64);
    assert_true(x[0] == 0.5f && x[1] == -0.5f && x[2] == 0.0f && x[3] == 0.5f);
    assert_int_equal(ts_fbits(x[4]), ts_fbits(ldexpf(0.07958029955625534f, -1)));
    assert_int_equal(ts_fbits(x[5]), ts_fbits(ldexpf(0.7229568362236023f, -1)));
    for (int i = 6; i < 64; i++) assert_int_equal(ts_fbits(x[i]), 0);
}

static void test_ref_quant_hand(void **state)
{
    (void)state;
    /* Q8_0. A: amax 127 -> d = 1, q = roundf(x), halves away from zero.
     * B: all zero -> d = 0. C: amax 1 -> d = 1/127 = 0x2008 in f16. */
    float x[3 * 32] = {127, -127, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 0.49f, 126.5f};
    x[64] = 1.0f, x[65] = -1.0f, x[66] = 0.25f, x[67] = -0.1f;
    uint8_t q8[3 * 34];
    lora_kernels_ref.f32_to_q8_0(x, q8, 3);
    uint8_t w8[3 * 34] = {0x00, 0x3c, 0x7f, 0x81, 0x01, 0xff, 0x02, 0x03, 0xfd, 0x00, 0x7f};
    w8[68] = 0x08, w8[69] = 0x20, w8[70] = 0x7f, w8[71] = 0x81, w8[72] = 0x20, w8[73] = 0xf3;
    assert_memory_equal(q8, w8, sizeof w8);

    /* Q4_0. A: max = -8 -> d = 1; q = min(15, trunc(x + 8.5)).
     * B: |8| == |-8|, the first (8) wins -> d = -1; -8 clamps to 15. */
    float y[2 * 32] = {-8, 7, 7.5f, 0.49f, 0.5f, -0.5f, -0.51f, -7.5f};
    y[16] = 3, y[17] = -3;
    y[32] = 8, y[33] = 4, y[37] = -8, y[48] = 1;
    uint8_t q4[2 * 18];
    lora_kernels_ref.f32_to_q4_0(y, q4, 2);
    uint8_t w4[2 * 18];
    memset(w4, 0x88, sizeof w4);
    const uint8_t a4[] = {0x00, 0x3c, 0xb0, 0x5f, 0x8f, 0x88, 0x89, 0x88, 0x87, 0x81};
    const uint8_t b4[] = {0x00, 0xbc, 0x70, 0x84, 0x88, 0x88, 0x88, 0x8f};
    memcpy(w4, a4, sizeof a4);
    memcpy(w4 + 18, b4, sizeof b4);
    assert_memory_equal(q4, w4, sizeof w4);

    /* NF4. A: absmax 2; n = 1, -1, 0, code[9], 0.5 (just under the 12/13
     * midpoint 0.5017), -0.3 (between midpoints -0.3397 and -0.2346).
     * B: all zero -> absmax 0, every index 7 (the 0.0 code).
     * C: absmax 1; exactly on the 7/8 midpoint code[8]/2 stays at 7 (the
     * rule is n > mid), one ulp above goes to 8; minus it is still 7. */
    float z[3 * 64] = {2, -2, 0, 2 * 0.16093020141124725f, 1.0f, -0.6f};
    const float mid78 = 0.03979014977812767f; /* 0.07958029955625534f / 2, exact */
    z[128] = 1.0f, z[129] = mid78, z[130] = nextafterf(mid78, 1.0f), z[131] = -mid78;
    uint8_t nf[3 * 36];
    lora_kernels_ref.f32_to_nf4(z, nf, 3, 64);
    uint8_t wn[3 * 36];
    memset(wn, 0x77, sizeof wn);
    const uint8_t an[] = {0x00, 0x00, 0x00, 0x40, 0xf0, 0x79, 0xc4};
    const uint8_t cn[] = {0x00, 0x00, 0x80, 0x3f, 0xf7, 0x87};
    memcpy(wn, an, sizeof an);
    memset(wn + 36, 0, 4);
    memcpy(wn + 72, cn, sizeof cn);
    assert_memory_equal(nf, wn, sizeof wn);
}

/* Non-finite input is outside the quantizers' contract, but must still be
 * well defined (UBSan catches an undefined float->int cast). */
static void test_ref_quant_nonfinite_defined(void **state)
{
    (void)state;
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i - 20.0f;
    x[3] = NAN, x[9] = INFINITY, x[40] = -INFINITY;
    uint8_t out[2 * 34];
    lora_kernels_ref.f32_to_q8_0(x, out, 2);
    lora_kernels_ref.f32_to_q4_0(x, out, 2);
    lora_kernels_ref.f32_to_nf4(x, out, 1, 64);
    uint8_t again[64];
    lora_kernels_ref.f32_to_nf4(x, again, 1, 64);
    assert_memory_equal(out, again, 36);
}

/* Random blocks of a few magnitudes (values in [-s, s], some exact zeros). */
static void fill_quant_input(uint64_t *s, float *x, size_t n, size_t block)
{
    static const float scales[] = {1e-3f, 0.37f, 1.0f, 55.0f, 3000.0f};
    for (size_t b = 0; b < n / block; b++) {
        float sc = scales[ts_rng_next(s) % 5];
        for (size_t j = 0; j < block; j++) {
            uint64_t r = ts_rng_next(s);
            x[b * block + j] = (r & 15) == 0 ? 0.0f : rng_uniform(s, -sc, sc);
        }
    }
}

/* Bounds (e = |x - dequant(quant(x))| per element, d the unrounded f32 scale,
 * d16 the scale after its f16 rounding; "slack" = 1e-6 * amax covers the f32
 * rounding of d, 1/d and x*id):
 *   Q8_0: d = amax/127, |q| <= 127:  e <= d/2 + 127*|d - d16| + slack.
 *   Q4_0: d = max/-8, |q-8| <= 8:    e <= |d|/2 + 8*|d - d16| + slack, and
 *         e <= |d| + ... for the one side clamped at q = 15 (x/d > 7.5).
 *   NF4:  absmax exact in f32; n = x/absmax goes to the nearest code, so
 *         e <= absmax * (largest half gap, (code[1]-code[0])/2 < 0.152)
 *         + slack; and the chosen code is the nearest one. */
static void test_ref_quant_roundtrip_bounds(void **state)
{
    (void)state;
    const size_t nb = 4000;
    uint64_t s = 0x5eed0002;
    float *x = ts_xmalloc(nb * 64 * 4), *y = ts_xmalloc(nb * 64 * 4);
    uint8_t *q = ts_xmalloc(nb * 36);

    fill_quant_input(&s, x, nb * 32, 32);
    lora_kernels_ref.f32_to_q8_0(x, q, nb);
    lora_kernels_ref.q8_0_to_f32(q, y, nb);
    for (size_t b = 0; b < nb; b++) {
        double amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(x[b * 32 + j]));
        double d = amax / 127, d16 = f16_value((uint16_t)(q[b * 34] | q[b * 34 + 1] << 8));
        double bound = d / 2 + 127 * fabs(d - d16) + 1e-6 * amax;
        for (int j = 0; j < 32; j++)
            if (fabs((double)x[b * 32 + j] - y[b * 32 + j]) > bound)
                fail_msg("Q8_0 block %zu elem %d: %g -> %g (bound %g)", b, j, x[b * 32 + j], y[b * 32 + j], bound);
    }

    fill_quant_input(&s, x, nb * 32, 32);
    lora_kernels_ref.f32_to_q4_0(x, q, nb);
    lora_kernels_ref.q4_0_to_f32(q, y, nb);
    for (size_t b = 0; b < nb; b++) {
        double amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabs(x[b * 32 + j]) > amax) amax = fabs(x[b * 32 + j]), max = x[b * 32 + j];
        double d = max / -8, d16 = f16_value((uint16_t)(q[b * 18] | q[b * 18 + 1] << 8));
        for (int j = 0; j < 32; j++) {
            double t = d != 0 ? x[b * 32 + j] / d : 0;
            double bound = (t > 7.5 ? 1.0 : 0.5) * fabs(d) + 8 * fabs(d - d16) + 1e-6 * amax;
            if (fabs((double)x[b * 32 + j] - y[b * 32 + j]) > bound)
                fail_msg("Q4_0 block %zu elem %d: %g -> %g (bound %g)", b, j, x[b * 32 + j], y[b * 32 + j], bound);
        }
    }

    fill_quant_input(&s, x, nb * 64, 64);
    lora_kernels_ref.f32_to_nf4(x, q, nb, 64);
    lora_kernels_ref.nf4_to_f32(q, y, nb, 64);
    for (size_t b = 0; b < nb; b++) {
        float absmax = 0;
        for (int j = 0; j < 64; j++) absmax = fmaxf(absmax, fabsf(x[b * 64 + j]));
        assert_int_equal(ts_fbits(absmax), (uint32_t)q[b * 36] | (uint32_t)q[b * 36 + 1] << 8 |
                                            (uint32_t)q[b * 36 + 2] << 16 | (uint32_t)q[b * 36 + 3] << 24);
        for (int j = 0; j < 64; j++) {
            double xv = x[b * 64 + j], e = fabs(xv - y[b * 64 + j]);
            if (e > 0.152 * absmax + 1e-6 * absmax)
                fail_msg("NF4 block %zu elem %d: %g -> %g", b, j, xv, y[b * 64 + j]);
            uint8_t byte = q[b * 36 + 4 + j / 2];
            int idx = (j & 1) ? (byte & 15) : (byte >> 4);
            double n = absmax != 0 ? xv / absmax : 0;
            for (int k = 0; k < 16; k++)
                if (fabs(n - lora_nf4_code[idx]) > fabs(n - lora_nf4_code[k]) + 1e-6)
                    fail_msg("NF4 block %zu elem %d: n=%g got code %d, code %d is nearer", b, j, n, idx, k);
        }
    }
    free(x);
    free(y);
    free(q);
}

/* ---- 2. every ISA against ref --------------------------------------------- */

static void test_isa_tables_complete(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t n = isa_tables(t);
    static const char *const names[] = {"ref", "avx2", "avx512"};
    for (int i = 0; i < LORA_ISA_COUNT_; i++) {
        const lora_kernels *k = lora_kernels_for_isa((lora_isa)i);
        if (!k) continue;
        assert_string_equal(k->name, names[i]);
        assert_non_null(k->f16_to_f32), assert_non_null(k->bf16_to_f32), assert_non_null(k->f32_to_f16);
        assert_non_null(k->f32_to_bf16), assert_non_null(k->q8_0_to_f32), assert_non_null(k->q4_0_to_f32);
        assert_non_null(k->nf4_to_f32), assert_non_null(k->f32_to_q8_0), assert_non_null(k->f32_to_q4_0);
        assert_non_null(k->f32_to_nf4), assert_non_null(k->count_nonfinite_f32);
    }
    assert_non_null(lora_kernels_for_isa(LORA_ISA_REF));
    assert_ptr_equal(lora_kernels_for_isa(LORA_ISA_COUNT_), NULL);
    assert_ptr_equal(lora_kernels_for_isa((lora_isa)-1), NULL);
#if defined(__x86_64__)
    /* The acceleration must actually be in the tables, not the ref fallback. */
    for (size_t i = 0; i < n; i++) {
        assert_true(t[i]->f16_to_f32 != lora_kernels_ref.f16_to_f32);
        assert_true(t[i]->f32_to_bf16 != lora_kernels_ref.f32_to_bf16);
        assert_true(t[i]->nf4_to_f32 != lora_kernels_ref.nf4_to_f32);
        assert_true(t[i]->count_nonfinite_f32 != lora_kernels_ref.count_nonfinite_f32);
    }
#endif
    print_message("    ISA tables tested against ref:");
    for (size_t i = 0; i < n; i++) print_message(" %s", t[i]->name);
    print_message("%s\n", n ? "" : " (none on this machine)");
}

static void test_isa_widen_exhaustive(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
    uint16_t *in = ts_xmalloc(65536 * 2 + 8);
    uint32_t *want = ts_xmalloc(65536 * 4 + 16), *got = ts_xmalloc(65536 * 4 + 16);
    for (uint32_t i = 0; i < 65536; i++) in[i] = (uint16_t)i;
    for (int which = 0; which < 2; which++) {
        void (*ref)(const uint16_t *, float *, size_t) = which ? lora_kernels_ref.bf16_to_f32 : lora_kernels_ref.f16_to_f32;
        const char *what = which ? "bf16->f32" : "f16->f32";
        ref(in, (float *)(void *)want, 65536);
        for (size_t k = 0; k < nt; k++) {
            (which ? t[k]->bf16_to_f32 : t[k]->f16_to_f32)(in, (float *)(void *)got, 65536);
            expect_same_u32(what, t[k]->name, want, got, 65536, in, 2);
            /* Every short length at odd offsets: tails, and no write past n. */
            for (size_t off = 0; off < 3; off++)
                for (size_t n = 0; n <= 70; n++) {
                    size_t base = 0x3bf0 + 997 * off; /* normals, subnormals, NaNs around here */
                    for (size_t i = 0; i < n + 4; i++) got[i] = 0xdeadbeef;
                    uint16_t *src = dup_exact(in + base + off, n * 2);
                    (which ? t[k]->bf16_to_f32 : t[k]->f16_to_f32)(src, (float *)(void *)got, n);
                    expect_same_u32(what, t[k]->name, want + base + off, got, n, src, 2);
                    free(src);
                    for (size_t i = n; i < n + 4; i++) assert_int_equal(got[i], 0xdeadbeef);
                }
        }
    }
    free(in);
    free(want);
    free(got);
}

static void test_isa_narrow(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t), n = g_narrow_n;
    uint16_t *want = ts_xmalloc(n * 2 + 16), *got = ts_xmalloc(n * 2 + 16);
    for (int which = 0; which < 2; which++) {
        const char *what = which ? "f32->bf16" : "f32->f16";
        (which ? lora_kernels_ref.f32_to_bf16 : lora_kernels_ref.f32_to_f16)(g_narrow, want, n);
        for (size_t k = 0; k < nt; k++) {
            void (*fn)(const float *, uint16_t *, size_t) = which ? t[k]->f32_to_bf16 : t[k]->f32_to_f16;
            fn(g_narrow, got, n);
            expect_same_u16(what, t[k]->name, want, got, n, g_narrow);
            for (size_t off = 0; off < 3; off++)
                for (size_t len = 0; len <= 70; len++) {
                    for (size_t i = 0; i < len + 4; i++) got[i] = 0xbeef;
                    float *src = dup_exact(g_narrow + off, len * 4); /* the edge cases sit at the front */
                    fn(src, got, len);
                    expect_same_u16(what, t[k]->name, want + off, got, len, src);
                    free(src);
                    for (size_t i = len; i < len + 4; i++) assert_int_equal(got[i], 0xbeef);
                }
        }
    }
    print_message("    f32->f16/bf16 ISA vs ref: %zu inputs each, %zu ISA(s)\n", n, nt);
    free(want);
    free(got);
}

typedef void (*dequant_fn)(const uint8_t *, float *, size_t);

/* Random block bytes; scales either arbitrary bit patterns (Inf, NaN,
 * subnormal included) or ordinary magnitudes. */
static void fill_blocks(uint64_t *s, uint8_t *p, size_t nblocks, size_t bytes, int nf4)
{
    for (size_t i = 0; i < nblocks * bytes; i++) p[i] = (uint8_t)ts_rng_next(s);
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = p + b * bytes;
        uint64_t r = ts_rng_next(s);
        if (r % 3 == 0) continue; /* keep the random scale bits */
        if (nf4) {
            uint32_t u = (r % 7 == 1) ? 0 : ts_fbits(rng_uniform(s, 0.0f, 100.0f));
            blk[0] = (uint8_t)u, blk[1] = (uint8_t)(u >> 8), blk[2] = (uint8_t)(u >> 16), blk[3] = (uint8_t)(u >> 24);
        } else {
            uint16_t h = (uint16_t)(0x1000 + (r >> 8) % 0x3000); /* about 2^-11 .. 2^4, either sign */
            if (r & 0x10000) h |= 0x8000;
            blk[0] = (uint8_t)h, blk[1] = (uint8_t)(h >> 8);
        }
    }
}

static void test_isa_dequant(void **state)
{
    (void)state;
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t), cases = 0;
    const size_t maxb = 67;
    uint8_t *raw = ts_xmalloc(maxb * 36 + 1);
    uint32_t *want = ts_xmalloc(maxb * 64 * 4), *got = ts_xmalloc((maxb * 64 + 4) * 4);
    uint64_t s = 0x5eed0003;
    /* NF4 (every block size) is covered in test_quant_kernels.c. */
    for (int dt = 0; dt < 2; dt++) {
        static const size_t bytes[] = {34, 18}, elems[] = {32, 32};
        static const char *const names[] = {"Q8_0", "Q4_0"};
        for (size_t nb = 1; nb <= maxb; nb++)
            for (int rep = 0; rep < 4; rep++) {
                uint8_t *blocks = raw + (rep & 1); /* unaligned half the time */
                fill_blocks(&s, blocks, nb, bytes[dt], 0);
                dequant_fn ref = dt == 0 ? lora_kernels_ref.q8_0_to_f32 : lora_kernels_ref.q4_0_to_f32;
                ref(blocks, (float *)(void *)want, nb);
                for (size_t k = 0; k < nt; k++) {
                    dequant_fn fn = dt == 0 ? t[k]->q8_0_to_f32 : t[k]->q4_0_to_f32;
                    size_t n = nb * elems[dt];
                    for (size_t i = 0; i < n + 4; i++) got[i] = 0xdeadbeef;
                    uint8_t *exact = dup_exact(blocks, nb * bytes[dt]);
                    fn(exact, (float *)(void *)got, nb);
                    free(exact);
                    expect_same_u32(names[dt], t[k]->name, want, got, n, NULL, 0);
                    for (size_t i = n; i < n + 4; i++) assert_int_equal(got[i], 0xdeadbeef);
                    cases++;
                }
            }
    }
    print_message("    dequant ISA vs ref: %zu runs of 1..%zu blocks\n", cases, maxb);
    free(raw);
    free(want);
    free(got);
}

static void test_count_nonfinite(void **state)
{
    (void)state;
    static const uint32_t specials[] = {0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xffffffff};
    static const uint32_t finite[] = {0x00000000, 0x80000000, 0x00000001, 0x7f7fffff, 0xff7fffff, 0x3f800000,
                                      0x007fffff, 0x7effffff};
    const lora_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
    const lora_kernels *all[LORA_ISA_COUNT_ + 1] = {&lora_kernels_ref};
    for (size_t k = 0; k < nt; k++) all[k + 1] = t[k];
    float buf[80];
    size_t cases = 0;
    for (size_t n = 1; n <= 70; n++)
        for (size_t pos = 0; pos < n; pos++)
            for (size_t sp = 0; sp < sizeof specials / 4; sp++) {
                for (size_t i = 0; i < n; i++) buf[1 + i] = ts_bitsf(finite[(i + pos + sp) % 8]);
                buf[0] = buf[1 + n] = ts_bitsf(0x7f800000); /* just outside: must not count */
                buf[1 + pos] = ts_bitsf(specials[sp]);
                float *exact = dup_exact(buf + 1, n * 4);
                for (size_t k = 0; k <= nt; k++) {
                    assert_int_equal(all[k]->count_nonfinite_f32(exact, n), 1);
                    assert_int_equal(all[k]->count_nonfinite_f32(buf + 1, n), 1);
                    if (n > 1) { /* a second one at the far end (or start) */
                        size_t other = pos == n - 1 ? 0 : n - 1;
                        float keep = buf[1 + other];
                        buf[1 + other] = ts_bitsf(specials[(sp + 1) % 6]);
                        assert_int_equal(all[k]->count_nonfinite_f32(buf + 1, n), 2);
                        buf[1 + other] = keep;
                    }
                    cases++;
                }
                free(exact);
            }
    /* Long random arrays, about 1% non-finite, against a plain isfinite() count. */
    uint64_t s = 0x5eed0004;
    size_t big = 100003;
    float *x = ts_xmalloc(big * 4);
    for (int rep = 0; rep < 4; rep++) {
        for (size_t i = 0; i < big; i++) {
            uint64_t r = ts_rng_next(&s);
            uint32_t u = (r % 97 == 0) ? specials[(r >> 32) % 6] | (uint32_t)(r >> 40 & 0x3ff) : (uint32_t)r & 0x7f7fffff;
            x[i] = ts_bitsf(u);
        }
        size_t expect = 0; /* over x[rep..big), so the vector loop starts unaligned */
        for (size_t i = rep; i < big; i++) expect += !isfinite(x[i]);
        for (size_t k = 0; k <= nt; k++) assert_int_equal(all[k]->count_nonfinite_f32(x + rep, big - rep), expect);
    }
    free(x);
    print_message("    count_nonfinite: %zu single/double-position cases over %zu tables\n", cases, nt + 1);
}

/* ---- dispatch --------------------------------------------------------------- */

/* LORA_ISA values probed in children; -2 = child failed, -1 = threads disagreed. */
static const char *const k_env[] = {NULL, "ref", "avx2", "avx512", "AVX2", "neon", ""};
#define N_ENV (sizeof k_env / sizeof k_env[0])
static int g_env_result[N_ENV];

static void *thread_get(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)lora_kernels_get();
}

/* In a fresh child the one-time detection has not run: race it from four
 * threads and report what it chose. */
static int probe_child(const char *env)
{
    if (env) setenv("LORA_ISA", env, 1); else unsetenv("LORA_ISA");
    pthread_t th[4];
    void *r[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&th[i], NULL, thread_get, NULL)) return -2;
    for (int i = 0; i < 4; i++) pthread_join(th[i], &r[i]);
    for (int i = 1; i < 4; i++)
        if (r[i] != r[0]) return -1;
    lora_isa sel = lora_kernels_selected_isa();
    if (r[0] != (void *)(uintptr_t)lora_kernels_get() || strcmp(lora_isa_name(), lora_kernels_get()->name)) return -1;
    return (int)sel;
}

static void probe_dispatch_in_children(void)
{
    for (size_t i = 0; i < N_ENV; i++) {
        int fd[2];
        g_env_result[i] = -2;
        if (pipe(fd)) continue;
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            int v = probe_child(k_env[i]);
            ssize_t w = write(fd[1], &v, sizeof v);
            _exit(w == (ssize_t)sizeof v ? 0 : 1);
        }
        close(fd[1]);
        int v;
        if (pid > 0 && read(fd[0], &v, sizeof v) == (ssize_t)sizeof v) g_env_result[i] = v;
        close(fd[0]);
        if (pid > 0) waitpid(pid, NULL, 0);
    }
}

static void test_dispatch(void **state)
{
    (void)state;
    lora_isa best = LORA_ISA_REF;
    for (int i = 0; i < LORA_ISA_COUNT_; i++)
        if (lora_kernels_for_isa((lora_isa)i)) best = (lora_isa)i;
    /* Expected choice per LORA_ISA value: only lowers; unknown ignored;
     * names are exact (case-sensitive). */
    const lora_isa want[N_ENV] = {best, LORA_ISA_REF, best < LORA_ISA_AVX2 ? best : LORA_ISA_AVX2, best, best, best, best};
    for (size_t i = 0; i < N_ENV; i++) {
        if (g_env_result[i] != (int)want[i])
            fail_msg("LORA_ISA=%s: child chose %d, want %d", k_env[i] ? k_env[i] : "(unset)", g_env_result[i],
                     (int)want[i]);
    }
    /* This process: whatever the environment said, the pick is consistent. */
    const lora_kernels *k = lora_kernels_get();
    assert_ptr_equal(k, lora_kernels_for_isa(lora_kernels_selected_isa()));
    assert_string_equal(lora_isa_name(), k->name);
    print_message("    dispatch: best ISA here is %s; LORA_ISA probed with %zu values\n",
                  lora_kernels_for_isa(best)->name, N_ENV);
}

int main(void)
{
    probe_dispatch_in_children(); /* before anything here runs the detection */
    build_narrow_inputs();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_f16_widen_oracle),
        cmocka_unit_test(test_ref_bf16_widen_oracle),
        cmocka_unit_test(test_ref_narrow_oracle),
        cmocka_unit_test(test_ref_narrow_known),
        cmocka_unit_test(test_nf4_code_book),
        cmocka_unit_test(test_ref_dequant_hand),
        cmocka_unit_test(test_ref_quant_hand),
        cmocka_unit_test(test_ref_quant_nonfinite_defined),
        cmocka_unit_test(test_ref_quant_roundtrip_bounds),
        cmocka_unit_test(test_isa_tables_complete),
        cmocka_unit_test(test_isa_widen_exhaustive),
        cmocka_unit_test(test_isa_narrow),
        cmocka_unit_test(test_isa_dequant),
        cmocka_unit_test(test_count_nonfinite),
        cmocka_unit_test(test_dispatch),
    };
    int rc = cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
    free(g_narrow);
    return rc;
}
