/*
 * test_merge_kernels.c - the fused LoRA merge kernels (merge_kernels.h).
 *
 *   1. ref against independent oracles: hand-computed bytes, and a float64
 *      merge rounded once to the output type (the acceptance: F32
 *      within 1e-6 relative, F16/BF16 at most 1 ulp and >= 99.9% exact),
 *      NaN/Inf rules, unmerge(merge(W)) bounds, DoRA against float64.
 *   2. every ISA this machine runs against ref, bit for bit, on random
 *      shapes (odd tails, strides, unaligned starts, every dtype pair, every
 *      scale mode, NaN/Inf/subnormal inputs), with exact-size buffers so
 *      ASan sees any access past an operand, and stride padding checked.
 *   3. properties the orchestrator relies on: any row/column split gives
 *      the same bytes (thread independence), fan_in_fan_out through the
 *      same kernel is exactly the transpose, a bias is a rank-1 job, and in
 *      place equals out of place.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/merge_kernels.h"
#include "support.h"

/* ---- helpers ------------------------------------------------------------ */

static double rng_unit(uint64_t *s) { return (double)(ts_rng_next(s) >> 11) / 9007199254740992.0; }

static size_t rng_range(uint64_t *s, size_t lo, size_t hi) { return lo + (size_t)(ts_rng_next(s) % (hi - lo + 1)); }

static double rng_normal(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static size_t dsize(lora_mk_dtype t) { return t == LORA_MK_F32 ? 4 : 2; }

static const char *dname(int t)
{
    return t == LORA_MK_F32 ? "f32" : t == LORA_MK_F16 ? "f16" : t == LORA_MK_BF16 ? "bf16" : "none";
}

/* ISA tables other than ref that run here. */
static size_t isa_tables(const lora_merge_kernels **out)
{
    size_t n = 0;
    for (int i = LORA_ISA_REF + 1; i < LORA_ISA_COUNT_; i++) {
        const lora_merge_kernels *t = lora_merge_kernels_for_isa((lora_isa)i);
        if (t) out[n++] = t;
    }
    return n;
}

/* All tables, ref first. */
static size_t all_tables(const lora_merge_kernels *out[LORA_ISA_COUNT_])
{
    out[0] = &lora_merge_kernels_ref;
    return 1 + isa_tables(out + 1);
}

/* f32 -> 16-bit through the ref conversions (input generation only). */
static uint16_t to_f16(float f)
{
    uint16_t h;
    lora_kernels_ref.f32_to_f16(&f, &h, 1);
    return h;
}

static uint16_t to_bf16(float f)
{
    uint16_t h;
    lora_kernels_ref.f32_to_bf16(&f, &h, 1);
    return h;
}

/* ---- float64 oracles ------------------------------------------------------ */

static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : (e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25));
    return (h & 0x8000) ? -v : v;
}

static double bf16_value(uint16_t b)
{
    int e = (b >> 7) & 255, m = b & 0x7f;
    double v = e == 0 ? ldexp(m, -133) : (e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134));
    return (b & 0x8000) ? -v : v;
}

static double elem_value(const void *p, size_t at, lora_mk_dtype t)
{
    switch (t) {
    case LORA_MK_F32: return ((const float *)p)[at];
    case LORA_MK_F16: return f16_value(((const uint16_t *)p)[at]);
    case LORA_MK_BF16: return bf16_value(((const uint16_t *)p)[at]);
    }
    return NAN;
}

/* Format parameters: stored mantissa bits, minimum normal exponent. */
static void fmt_params(lora_mk_dtype t, int *mbits, int *emin, double *maxf)
{
    *mbits = 0, *emin = 0, *maxf = 0;
    switch (t) {
    case LORA_MK_F32: *mbits = 23, *emin = -126, *maxf = 3.4028234663852886e38; return;
    case LORA_MK_F16: *mbits = 10, *emin = -14, *maxf = 65504.0; return;
    case LORA_MK_BF16: *mbits = 7, *emin = -126, *maxf = 3.3895313892515355e38; return;
    }
}

/* The spacing of format t at magnitude x. */
static double ulp_at(double x, lora_mk_dtype t)
{
    int mbits, emin, e;
    double maxf;
    fmt_params(t, &mbits, &emin, &maxf);
    (void)frexp(fabs(x), &e);
    e -= 1;
    if (e < emin || x == 0) e = emin;
    return ldexp(1.0, e - mbits);
}

/* Round finite x once to format t, ties to even (nearbyint in float64). */
static double round_once(double x, lora_mk_dtype t)
{
    int mbits, emin;
    double maxf;
    fmt_params(t, &mbits, &emin, &maxf);
    if (x == 0 || !isfinite(x)) return x;
    double u = ulp_at(x, t);
    double v = nearbyint(fabs(x) / u) * u;
    if (v > maxf) v = INFINITY;
    return copysign(v, x);
}

/* ---- a random job with exact-size buffers ----------------------------------- */

typedef struct {
    lora_mk_job job;
    void *w_base, *out_base;
    void *w; /* job.w, writable */
    float *bs_base, *a_base, *scale_base;
    double *bs64_base;
    size_t out_bytes;
    int wd; /* -1: no base */
} mk_case;

/* Pointer `off` elements into a fresh block of off + n elements: exact end. */
static void *exact_block(void **base, size_t off, size_t n, size_t esize)
{
    *base = ts_xmalloc((off + n) * esize);
    return (uint8_t *)*base + off * esize;
}

static size_t span(size_t rows, size_t stride, size_t cols) { return rows ? (rows - 1) * stride + cols : 0; }

static float special_f32(uint64_t *s)
{
    static const uint32_t k[] = {0x7fc00000, 0xffc00001, 0x7f800001, 0x7fa5a5a5, 0x7f800000, 0xff800000, 0x00000000,
                                 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x477fe000, 0x477ff000};
    return ts_bitsf(k[ts_rng_next(s) % (sizeof k / sizeof k[0])]);
}

/* Plausible values, with specials at rate `sp` (0..1). */
static float gen_value(uint64_t *s, double sigma, double sp)
{
    if (sp > 0 && rng_unit(s) < sp) return special_f32(s);
    return (float)(sigma * rng_normal(s));
}

static void fill_base(mk_case *c, uint64_t *s, double sp)
{
    const lora_mk_job *j = &c->job;
    size_t n = span(j->rows, j->w_stride, j->cols);
    for (size_t i = 0; i < n; i++) {
        float f = gen_value(s, 0.5, sp);
        switch (j->w_dtype) {
        case LORA_MK_F32: ((float *)c->w)[i] = f; break;
        case LORA_MK_F16: ((uint16_t *)c->w)[i] = sp > 0 && rng_unit(s) < sp ? (uint16_t)ts_rng_next(s) : to_f16(f); break;
        case LORA_MK_BF16:
            ((uint16_t *)c->w)[i] = sp > 0 && rng_unit(s) < sp ? (uint16_t)ts_rng_next(s) : to_bf16(f);
            break;
        }
    }
}

static void case_free(mk_case *c)
{
    free(c->w_base), free(c->out_base), free(c->bs_base), free(c->a_base), free(c->scale_base), free(c->bs64_base);
    memset(c, 0, sizeof *c);
}

/* A random job: shape within the limits, random strides and offsets;
 * `sp` is the rate of special values in every operand. */
static void case_random(mk_case *c, uint64_t *s, size_t max_rows, size_t min_cols, size_t max_cols, size_t max_r,
                        double sp)
{
    memset(c, 0, sizeof *c);
    lora_mk_job *j = &c->job;
    j->rows = rng_range(s, 1, max_rows);
    j->cols = rng_range(s, min_cols, max_cols);
    j->r = rng_range(s, 0, max_r);
    c->wd = (int)(ts_rng_next(s) % 4) - 1;
    j->out_dtype = (lora_mk_dtype)(ts_rng_next(s) % 3);
    j->scale_mode = (lora_mk_scale)(ts_rng_next(s) % 5);
    if (c->wd < 0 && (j->scale_mode == LORA_MK_SCALE_ROW_FIRST || j->scale_mode == LORA_MK_SCALE_COL_FIRST))
        j->scale_mode = LORA_MK_SCALE_ROW;
    j->subtract = (int)(ts_rng_next(s) & 1);
    int pad = ts_rng_next(s) & 1;
    j->w_stride = j->cols + (pad ? rng_range(s, 0, 9) : 0);
    j->out_stride = j->cols + (pad ? rng_range(s, 0, 9) : 0);
    j->a_stride = j->cols + (pad ? rng_range(s, 0, 5) : 0);
    j->bs_stride = j->r + (pad ? rng_range(s, 0, 5) : 0);
    if (c->wd >= 0) {
        j->w_dtype = (lora_mk_dtype)c->wd;
        c->w = exact_block(&c->w_base, rng_range(s, 0, 15), span(j->rows, j->w_stride, j->cols), dsize(j->w_dtype));
        j->w = c->w;
        fill_base(c, s, sp);
    }
    size_t on = span(j->rows, j->out_stride, j->cols);
    c->out_bytes = on * dsize(j->out_dtype);
    j->out = exact_block(&c->out_base, rng_range(s, 0, 15), on, dsize(j->out_dtype));
    size_t bn = span(j->rows, j->bs_stride, j->r), an = span(j->r, j->a_stride, j->cols);
    float *a = exact_block((void **)&c->a_base, rng_range(s, 0, 15), an, 4);
    for (size_t i = 0; i < an; i++) a[i] = gen_value(s, 0.3, sp / 16);
    j->a = a;
    if (ts_rng_next(s) & 1) { /* float64 accumulation; bs stays NULL, so it must not be read */
        double *bs64 = exact_block((void **)&c->bs64_base, rng_range(s, 0, 15), bn, 8);
        for (size_t i = 0; i < bn; i++) bs64[i] = gen_value(s, 0.3, sp / 16) * (1.0 + rng_unit(s) * 0x1p-30);
        j->bs64 = bs64;
    } else {
        float *bs = exact_block((void **)&c->bs_base, rng_range(s, 0, 15), bn, 4);
        for (size_t i = 0; i < bn; i++) bs[i] = gen_value(s, 0.3, sp / 16);
        j->bs = bs;
    }
    if (j->scale_mode != LORA_MK_SCALE_NONE) {
        int per_row = j->scale_mode == LORA_MK_SCALE_ROW || j->scale_mode == LORA_MK_SCALE_ROW_FIRST;
        size_t n = per_row ? j->rows : j->cols;
        float *sc = exact_block((void **)&c->scale_base, rng_range(s, 0, 15), n, 4);
        for (size_t i = 0; i < n; i++) sc[i] = sp > 0 && rng_unit(s) < sp ? special_f32(s) : (float)(0.5 + rng_unit(s));
        j->scale = sc;
    }
    assert_true(lora_mk_job_valid(j));
}

/* ---- 1. ref against oracles ----------------------------------------------- */

static void test_hand_example(void **state)
{
    (void)state;
    /* W (f16) = [[1, -2, 0.5], [3, 0, -0]]; BS = [[1, 2], [-1, 0.5]];
     * A = [[0.25, 1, -1], [0.5, 0, 2]]. D = BS @ A = [[1.25, 1, 3],
     * [0, -1, 2]]; W + D = [[2.25, -1, 3.5], [3, -1, 2]]; all exact. */
    const uint16_t w[6] = {0x3c00, 0xc000, 0x3800, 0x4200, 0x0000, 0x8000};
    const float bs[4] = {1, 2, -1, 0.5f}, a[6] = {0.25f, 1, -1, 0.5f, 0, 2};
    const uint16_t want_f16[6] = {0x4080, 0xbc00, 0x4300, 0x4200, 0xbc00, 0x4000};
    const uint16_t want_bf16[6] = {0x4010, 0xbf80, 0x4060, 0x4040, 0xbf80, 0x4000};
    const float want_f32[6] = {2.25f, -1, 3.5f, 3, -1, 2};
    /* unmerge: W - D = [[-0.25, -3, -2.5], [3, 1, -2]] */
    const uint16_t want_sub[6] = {0xb400, 0xc200, 0xc100, 0x4200, 0x3c00, 0xc000};
    const double bs64[4] = {1, 2, -1, 0.5};
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (size_t k = 0; k < 2 * nt; k++) {
        uint16_t o16[6];
        float o32[6];
        lora_mk_job j = {.w = w, .out = o16, .bs = bs, .a = a, .rows = 2, .cols = 3, .r = 2, .w_stride = 3,
                         .out_stride = 3, .bs_stride = 2, .a_stride = 3, .w_dtype = LORA_MK_F16,
                         .out_dtype = LORA_MK_F16};
        if (k >= nt) j.bs = NULL, j.bs64 = bs64; /* the same, accumulated in float64 */
        const lora_merge_kernels *m = t[k % nt];
        m->apply(&j);
        assert_memory_equal(o16, want_f16, sizeof o16);
        j.out_dtype = LORA_MK_BF16;
        m->apply(&j);
        assert_memory_equal(o16, want_bf16, sizeof o16);
        j.out = o32, j.out_dtype = LORA_MK_F32;
        m->apply(&j);
        assert_memory_equal(o32, want_f32, sizeof o32);
        j.out = o16, j.out_dtype = LORA_MK_F16, j.subtract = 1;
        m->apply(&j);
        assert_memory_equal(o16, want_sub, sizeof o16);
        /* Row sums of squares of W + D: 2.25^2+1+3.5^2 = 18.3125; 9+1+4 = 14. */
        double ss[2];
        j.subtract = 0;
        m->row_sumsq(&j, ss);
        assert_true(ss[0] == 18.3125 && ss[1] == 14.0);
        double cs[3] = {1, 0, 0};
        m->col_sumsq(&j, cs);
        assert_true(cs[0] == 1 + 2.25 * 2.25 + 9 && cs[1] == 2 && cs[2] == 3.5 * 3.5 + 4);
    }
}

/* Each step is ONE rounding (fma), not a product rounding then a sum
 * rounding: r = 2 chosen so the two differ. Step 2 adds p = BS1 * A1, just
 * above half an ulp of D1 = 1 + 2^-11, while the rounded product is exactly
 * half an ulp (a tie that goes back to even). Every column the same, 19 of
 * them, through the vector body and the tail. */
static void test_fused_steps(void **state)
{
    (void)state;
    enum { N = 19 };
    float a[2 * N], out32[N];
    uint16_t zero16[N] = {0}, out16[N];
    for (int c = 0; c < N; c++) a[c] = 1.0f, a[N + c] = 1.0f + 0x1p-23f;
    /* fp32: p = (2^-24 - 2^-48)(1 + 2^-23) = 2^-24 + 2^-48 - 2^-71 > 2^-24. */
    const float bs[2] = {1.0f + 0x1p-11f, 0x1.fffffep-25f};
    /* float64: p = 0x1.fffffc0000080p-54 * (1 + 2^-23) > 2^-53 by 1.7e-21. */
    const double bs64[2] = {1.0 + 0x1p-11, 0x1.fffffc0000080p-54};
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (size_t k = 0; k < nt; k++) {
        lora_mk_job j = {.out = out32, .bs = bs, .a = a, .rows = 1, .cols = N, .r = 2, .out_stride = N, .bs_stride = 2,
                         .a_stride = N, .out_dtype = LORA_MK_F32};
        t[k]->apply(&j);
        for (int c = 0; c < N; c++) assert_int_equal(ts_fbits(out32[c]), ts_fbits(1.0f + 0x1p-11f + 0x1p-23f));
        /* float64 into f16 over a +0 base: D = 1 + 2^-11 + 2^-52, just above
         * the f16 midpoint 1 + 2^-11, so it rounds up (to odd, then RNE). */
        lora_mk_job j64 = {.w = zero16, .out = out16, .bs64 = bs64, .a = a, .rows = 1, .cols = N, .r = 2, .w_stride = N,
                           .out_stride = N, .bs_stride = 2, .a_stride = N, .w_dtype = LORA_MK_F16,
                           .out_dtype = LORA_MK_F16};
        t[k]->apply(&j64);
        for (int c = 0; c < N; c++) assert_int_equal(out16[c], 0x3c01);
        j64.out = out32, j64.out_dtype = LORA_MK_F32; /* one RNE to fp32: 1 + 2^-11 */
        t[k]->apply(&j64);
        for (int c = 0; c < N; c++) assert_int_equal(ts_fbits(out32[c]), ts_fbits(1.0f + 0x1p-11f));
    }
}

/* Statistics of one output type against the float64 oracle. */
typedef struct {
    size_t n, exact, over1ulp, rel_bad;
    size_t unexplained; /* > 1 ulp and beyond 1 ulp + 1e-6 (|W| + sum |BS*A|) */
    double max_ulps, max_rel, max_cw; /* cw: error / (|W| + sum |terms|) */
    double max_norm;                  /* max error / max |exact| of one job */
} mk_stats;

/* Compare out (ref or ISA) with round_once(W + sum BS*A) in float64, where
 * bs64 are the exact (unrounded) BS values the caller meant. */
static void oracle_compare(const lora_mk_job *j, const double *bs64, mk_stats *st)
{
    double max_err = 0, max_abs = 0;
    for (size_t i = 0; i < j->rows; i++)
        for (size_t c = 0; c < j->cols; c++) {
            double w = elem_value(j->w, i * j->w_stride + c, j->w_dtype), d = 0, mag = fabs(w);
            for (size_t k = 0; k < j->r; k++) {
                double p = bs64[i * j->r + k] * (double)j->a[k * j->a_stride + c];
                d += p, mag += fabs(p);
            }
            double exact = w + d, want = round_once(exact, j->out_dtype);
            double got = elem_value(j->out, i * j->out_stride + c, j->out_dtype);
            st->n++;
            if (j->out_dtype == LORA_MK_F32) {
                double err = fabs(got - exact), rel = exact != 0 ? err / fabs(exact) : (err ? INFINITY : 0);
                double cw = mag > 0 ? err / mag : 0;
                st->rel_bad += rel > 1e-6;
                max_err = fmax(max_err, err), max_abs = fmax(max_abs, fabs(exact));
                if (rel > st->max_rel) st->max_rel = rel;
                if (cw > st->max_cw) st->max_cw = cw;
            }
            if (got == want) {
                st->exact++;
                continue;
            }
            double u = ulp_at(fmin(fabs(got), fabs(want)), j->out_dtype);
            double ulps = fabs(got - want) / u;
            if (ulps > st->max_ulps) st->max_ulps = ulps;
            st->over1ulp += ulps > 1.0;
            st->unexplained += ulps > 1.0 && fabs(got - exact) > u + 1e-6 * mag;
        }
    if (max_abs > 0 && max_err / max_abs > st->max_norm) st->max_norm = max_err / max_abs;
}

/* A realistic module: W ~ N(0, sw) in the base type, A kaiming-uniform,
 * B ~ N(0, sb), weight * scale = ws; BS formed in fp32 as an orchestrator
 * would (fl(ws) * B), while the oracle keeps ws * B exact in bs64. */
static void realistic_job(lora_mk_job *j, uint64_t *s, void *w, float *bs, float *a, double *bs64, size_t rows,
                          size_t cols, size_t r, double sw, double sb, double ws, lora_mk_dtype wd)
{
    double bound = 1.0 / sqrt((double)cols);
    for (size_t i = 0; i < r * cols; i++) a[i] = (float)(bound * (2 * rng_unit(s) - 1));
    for (size_t i = 0; i < rows * r; i++) {
        float b = (float)(sb * rng_normal(s));
        bs[i] = (float)ws * b;
        bs64[i] = ws * (double)b;
    }
    for (size_t i = 0; i < rows * cols; i++) {
        float f = (float)(sw * rng_normal(s));
        if (wd == LORA_MK_F32) ((float *)w)[i] = f;
        else ((uint16_t *)w)[i] = wd == LORA_MK_F16 ? to_f16(f) : to_bf16(f);
    }
    j->w = w, j->bs = bs, j->a = a, j->w_dtype = wd;
    j->rows = rows, j->cols = cols, j->r = r, j->w_stride = j->out_stride = j->a_stride = cols, j->bs_stride = r;
}

static void print_stats(const char *acc, int od, const mk_stats *st, size_t nt)
{
    print_message("    %s acc, %-4s out: %zu elements x %zu ISA(s): %.5f%% exact, max %.3g ulp", acc, dname(od),
                  st->n / nt, nt, 100.0 * (double)st->exact / (double)st->n, st->max_ulps);
    if (od != LORA_MK_F32 && st->over1ulp)
        print_message(" (%zu > 1 ulp, all within 1 ulp + 1e-6 (|W| + sum|BS*A|))", st->over1ulp / nt);
    if (od == LORA_MK_F32)
        print_message("\n         max error/|W+D| %.3g (> 1e-6 on %.3f%%); max error/(|W|+sum|BS*A|) %.3g; "
                      "max error/max|W+D| %.3g",
                      st->max_rel, 100.0 * (double)st->rel_bad / (double)st->n, st->max_cw, st->max_norm);
    print_message("\n");
}

/* TinyLlama-like rows (2048 and 5632 columns), rank 8 to 64, typical and
 * strong adapters, every base type into every output type, both
 * accumulations, every ISA. */
static void test_ref_vs_float64(void **state)
{
    (void)state;
    static const struct {
        size_t rows, cols, r;
        double sb;
    } shapes[] = {{48, 2048, 16, 0.01}, {24, 5632, 16, 0.02}, {32, 2048, 64, 0.05}, {40, 1000, 8, 0.3}};
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (int acc64 = 0; acc64 < 2; acc64++)
        for (int od = 0; od < 3; od++) {
            mk_stats st = {0};
            uint64_t s = 0x6d657267;
            for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
                for (int wd = 0; wd < 3; wd++) {
                    size_t rows = shapes[sh].rows, cols = shapes[sh].cols, r = shapes[sh].r;
                    lora_mk_job j = {0};
                    void *w = ts_xmalloc(rows * cols * 4), *out = ts_xmalloc(rows * cols * 4);
                    float *bs = ts_xmalloc(rows * r * 4), *a = ts_xmalloc(r * cols * 4);
                    double *bs64 = ts_xmalloc(rows * r * sizeof(double));
                    realistic_job(&j, &s, w, bs, a, bs64, rows, cols, r, 0.02, shapes[sh].sb, 1.7, (lora_mk_dtype)wd);
                    j.out = out, j.out_dtype = (lora_mk_dtype)od;
                    if (acc64) j.bs = NULL, j.bs64 = bs64;
                    for (size_t k = 0; k < nt; k++) {
                        memset(out, 0, rows * cols * 4);
                        t[k]->apply(&j);
                        oracle_compare(&j, bs64, &st);
                    }
                    free(w), free(out), free(bs), free(a), free(bs64);
                }
            print_stats(acc64 ? "f64" : "f32", od, &st, nt);
            if (acc64) {
                /* float64 accumulation: the reference rounded once, within
                 * float64 noise; pointwise in every element. */
                assert_true(st.max_rel <= 0x1p-24 * (1 + 1e-9));
                assert_true(st.over1ulp == 0);
                assert_true((double)st.exact >= 0.99999 * (double)st.n);
            } else if (od == LORA_MK_F32) {
                /* fp32: "within 1e-6 relative" holds componentwise: each
                 * error is below 1e-6 (|W| + sum |BS*A|). Relative to |W + D|
                 * alone it fails where W and D nearly cancel (reported). */
                assert_true(st.max_cw <= 1e-6);
                assert_true(st.max_norm <= 1e-6);
            } else {
                assert_true(st.unexplained == 0);
                assert_true((double)st.exact >= 0.999 * (double)st.n);
            }
        }
}

static void test_nan_inf_rules(void **state)
{
    (void)state;
    /* Row of 20 (so SIMD covers a full vector and a masked tail). Column
     * cases: 0 W sNaN f16 0x7d01 + finite -> quieted 0x7f01; 1 W -qNaN;
     * 2 W +Inf + finite; 3 W -Inf; 4 finite + A NaN -> canonical;
     * 5 finite + A Inf -> Inf; 6 W +Inf + D -Inf -> canonical; 7 overflow
     * 65504 + 16 -> Inf in f16 (RNE at 65520); 8 65504 + 15 stays 65504;
     * 9 W NaN + A NaN -> W's payload; others plain. */
    enum { N = 20 };
    uint16_t w[N];
    float a[N], bs[1] = {1.0f};
    for (int c = 0; c < N; c++) w[c] = to_f16((float)c), a[c] = 0.5f;
    w[0] = 0x7d01, w[1] = 0xfe0f, w[2] = 0x7c00, w[3] = 0xfc00, w[6] = 0x7c00;
    w[7] = 0x7bff, w[8] = 0x7bff, w[9] = 0x7c07;
    a[4] = ts_bitsf(0xff812345), a[5] = INFINITY, a[6] = -INFINITY, a[7] = 16.0f, a[8] = 15.0f, a[9] = NAN;
    uint16_t want[N];
    for (int c = 0; c < N; c++) want[c] = to_f16((float)c + 0.5f);
    want[0] = 0x7f01, want[1] = 0xfe0f, want[2] = 0x7c00, want[3] = 0xfc00, want[4] = 0x7e00, want[5] = 0x7c00;
    want[6] = 0x7e00, want[7] = 0x7c00, want[8] = 0x7bff, want[9] = 0x7e07;
    const double bs64[1] = {1.0};
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (size_t q = 0; q < 2 * nt; q++) {
        const lora_merge_kernels *m = t[q % nt];
        uint16_t out[N];
        float o32[N];
        lora_mk_job j = {.w = w, .out = out, .bs = bs, .a = a, .rows = 1, .cols = N, .r = 1, .w_stride = N,
                         .out_stride = N, .bs_stride = 1, .a_stride = N, .w_dtype = LORA_MK_F16,
                         .out_dtype = LORA_MK_F16};
        if (q >= nt) j.bs = NULL, j.bs64 = bs64;
        m->apply(&j);
        for (int c = 0; c < N; c++)
            if (out[c] != want[c])
                fail_msg("[%s] %s acc column %d: got 0x%04x want 0x%04x", m->name, q >= nt ? "f64" : "f32", c, out[c],
                         want[c]);
        /* The same into f32: canonical NaN is 0x7fc00000; W's NaN keeps its
         * (widened, quieted) payload. */
        j.out = o32, j.out_dtype = LORA_MK_F32;
        m->apply(&j);
        assert_int_equal(ts_fbits(o32[0]), 0x7fe02000u);
        assert_int_equal(ts_fbits(o32[4]), 0x7fc00000u);
        assert_int_equal(ts_fbits(o32[6]), 0x7fc00000u);
        assert_int_equal(ts_fbits(o32[7]), ts_fbits(65520.0f));
        /* A NaN scale: canonical, except where W is NaN. */
        float sc = NAN;
        j.scale = &sc, j.scale_mode = LORA_MK_SCALE_ROW;
        m->apply(&j);
        assert_int_equal(ts_fbits(o32[0]), 0x7fe02000u);
        assert_int_equal(ts_fbits(o32[12]), 0x7fc00000u);
        /* BF16 overflow: max finite + a big delta rounds to Inf; a signalling
         * NaN payload is quieted. */
        uint16_t wb[2] = {0x7f7f, 0xff81}, ob[2];
        float ab[2] = {1e36f, 1.0f}; /* 3.39e38 + 1e36 is finite in f32, past bf16's rounding edge */
        lora_mk_job jb = {.w = wb, .out = ob, .bs = bs, .a = ab, .rows = 1, .cols = 2, .r = 1, .w_stride = 2,
                          .out_stride = 2, .bs_stride = 1, .a_stride = 2, .w_dtype = LORA_MK_BF16,
                          .out_dtype = LORA_MK_BF16};
        if (q >= nt) jb.bs = NULL, jb.bs64 = bs64;
        m->apply(&jb);
        assert_int_equal(ob[0], 0x7f80);
        assert_int_equal(ob[1], 0xffc1);
    }
}

/* W -> merge -> unmerge, all in the same type: within one rounding of each
 * step (f32: |W'' - W| <= ulp(W') ; 16-bit: <= 1 ulp of max(|W|, |W'|)),
 * and exactly W when D == 0. */
static void test_unmerge_roundtrip(void **state)
{
    (void)state;
    const size_t rows = 37, cols = 333, r = 16;
    uint64_t s = 0x756e6d;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (int wa = 0; wa < 6; wa++) {
        int wd = wa % 3, acc64 = wa >= 3;
        void *w = ts_xmalloc(rows * cols * 4), *m = ts_xmalloc(rows * cols * 4), *u = ts_xmalloc(rows * cols * 4);
        float *bs = ts_xmalloc(rows * r * 4), *a = ts_xmalloc(r * cols * 4);
        double *bs64 = ts_xmalloc(rows * r * 8), worst = 0;
        lora_mk_job j = {0};
        realistic_job(&j, &s, w, bs, a, bs64, rows, cols, r, 0.02, 0.02, 2.0, (lora_mk_dtype)wd);
        j.out_dtype = (lora_mk_dtype)wd;
        if (acc64) j.bs = NULL, j.bs64 = bs64;
        for (size_t k = 0; k < nt; k++) {
            j.w = w, j.out = m, j.subtract = 0;
            t[k]->apply(&j);
            j.w = m, j.out = u, j.subtract = 1;
            t[k]->apply(&j);
            for (size_t e = 0; e < rows * cols; e++) {
                double w0 = elem_value(w, e, j.w_dtype), w1 = elem_value(m, e, j.w_dtype);
                double w2 = elem_value(u, e, j.w_dtype);
                double bound = ulp_at(fmax(fmax(fabs(w0), fabs(w1)), fabs(w2)), j.w_dtype);
                double err = fabs(w2 - w0) / bound;
                if (err > worst) worst = err;
                /* Two roundings to the type of at most half an ulp each, plus
                 * the fp32 roundings, far below 2^-12 of an ulp of 16 bits. */
                if (err > 1.0 + 1.0 / 4096)
                    fail_msg("%s [%s] element %zu: %.9g -> %.9g -> %.9g", dname(wd), t[k]->name, e, w0, w1, w2);
            }
        }
        print_message("    unmerge(merge(W)) %s, %s acc: max |W'' - W| = %.3g ulp\n", dname(wd), acc64 ? "f64" : "f32",
                      worst);
        /* Zero delta: W comes back bit for bit (after making -0 +0, which
         * W + (+0) does by IEEE rules). */
        memset(bs, 0, rows * r * 4);
        memset(bs64, 0, rows * r * 8);
        for (size_t e = 0; e < rows * cols; e++)
            if (elem_value(w, e, j.w_dtype) == 0) memset((uint8_t *)w + e * dsize(j.w_dtype), 0, dsize(j.w_dtype));
        j.w = w, j.out = m, j.subtract = 0;
        lora_merge_kernels_get()->apply(&j);
        j.w = m, j.out = u, j.subtract = 1;
        lora_merge_kernels_get()->apply(&j);
        assert_memory_equal(w, u, rows * cols * dsize(j.w_dtype));
        free(w), free(m), free(u), free(bs), free(a), free(bs64);
    }
}

/* DoRA: row norms against float64 on the kernel's own V, the full scaled
 * merge against m / ||W + D|| * (W + D) in float64, and the unmerge
 * W = W' / factor - D back to within the roundings. */
static void test_dora(void **state)
{
    (void)state;
    const size_t rows = 29, cols = 517, r = 8;
    uint64_t s = 0xd02a;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    uint16_t *w = ts_xmalloc(rows * cols * 2), *out = ts_xmalloc(rows * cols * 2), *back = ts_xmalloc(rows * cols * 2);
    float *v = ts_xmalloc(rows * cols * 4), *bs = ts_xmalloc(rows * r * 4), *a = ts_xmalloc(r * cols * 4);
    float *mag = ts_xmalloc(rows * 4), *factor = ts_xmalloc(rows * 4), *inv = ts_xmalloc(rows * 4);
    double *bs64 = ts_xmalloc(rows * r * 8), *ss = ts_xmalloc(rows * 8);
    lora_mk_job j = {0};
    realistic_job(&j, &s, w, bs, a, bs64, rows, cols, r, 0.02, 0.05, 1.0, LORA_MK_BF16);
    j.out = out;
    for (size_t i = 0; i < rows; i++) mag[i] = (float)(0.5 + rng_unit(&s));
    size_t exact = 0, n = 0;
    double worst_back = 0;
    for (size_t q = 0; q < 2 * nt; q++) {
        size_t k = q % nt;
        j.bs = q < nt ? bs : NULL, j.bs64 = q < nt ? NULL : bs64;
        /* V itself, in f32, to check the sums exactly. */
        lora_mk_job jv = j;
        jv.out = v, jv.out_dtype = LORA_MK_F32;
        t[k]->apply(&jv);
        t[k]->row_sumsq(&j, ss);
        for (size_t i = 0; i < rows; i++) {
            double want = 0;
            for (size_t c = 0; c < cols; c++) want += (double)v[i * cols + c] * v[i * cols + c];
            /* Both are float64 sums of the same exact squares in different
             * orders: each within cols * 2^-53 relative. */
            assert_true(fabs(ss[i] - want) <= 1e-12 * want);
            factor[i] = lora_mk_dora_factor(mag[i], ss[i]);
            inv[i] = (float)(sqrt(ss[i]) / mag[i]);
        }
        j.out_dtype = LORA_MK_BF16, j.scale = factor, j.scale_mode = LORA_MK_SCALE_ROW;
        t[k]->apply(&j);
        lora_mk_job ju = j;
        ju.w = out, ju.out = back, ju.scale = inv, ju.scale_mode = LORA_MK_SCALE_ROW_FIRST, ju.subtract = 1;
        t[k]->apply(&ju);
        j.scale = NULL, j.scale_mode = LORA_MK_SCALE_NONE;
        for (size_t i = 0; i < rows; i++) {
            double norm = 0;
            double *row = ts_xmalloc(cols * 8);
            for (size_t c = 0; c < cols; c++) {
                double d = bf16_value(w[i * cols + c]);
                for (size_t kk = 0; kk < r; kk++) d += bs64[i * r + kk] * (double)a[kk * cols + c];
                row[c] = d, norm += d * d;
            }
            norm = sqrt(norm);
            for (size_t c = 0; c < cols; c++) {
                double want = round_once(mag[i] / norm * row[c], LORA_MK_BF16), got = bf16_value(out[i * cols + c]);
                n++;
                if (got == want) {
                    exact++;
                    continue;
                }
                if (fabs(got - want) > ulp_at(fmin(fabs(got), fabs(want)), LORA_MK_BF16))
                    fail_msg("[%s] DoRA row %zu col %zu: got %.9g want %.9g", t[k]->name, i, c, got, want);
            }
            /* Unmerge: W' / factor - D carries W''s rounding (half an ulp of
             * V) and its own: within 2 ulp of the larger of W and V. */
            for (size_t c = 0; c < cols; c++) {
                double w0 = bf16_value(w[i * cols + c]), w2 = bf16_value(back[i * cols + c]);
                double e = fabs(w2 - w0) / ulp_at(fmax(fabs(w0), fabs(row[c])), LORA_MK_BF16);
                if (e > worst_back) worst_back = e;
                if (e > 2.0) fail_msg("[%s] DoRA unmerge row %zu col %zu: %.9g -> %.9g", t[k]->name, i, c, w0, w2);
            }
            free(row);
        }
    }
    print_message("    DoRA bf16 (both accumulations): %.4f%% exact vs float64, rest within 1 ulp; "
                  "unmerge within %.2g ulp\n",
                  100.0 * (double)exact / (double)n, worst_back);
    assert_true((double)exact >= 0.999 * (double)n);
    free(w), free(out), free(back), free(v), free(bs), free(a);
    free(mag), free(factor), free(inv), free(bs64), free(ss);
}

/* ---- 2. every ISA against ref ---------------------------------------------- */

static void expect_same_case(const mk_case *c, const char *isa, const void *want, const void *got, const char *what)
{
    if (memcmp(want, got, c->out_bytes) == 0) return;
    const lora_mk_job *j = &c->job;
    size_t es = dsize(j->out_dtype), at = 0;
    while (memcmp((const uint8_t *)want + at * es, (const uint8_t *)got + at * es, es) == 0) at++;
    uint32_t x = 0, y = 0;
    memcpy(&x, (const uint8_t *)want + at * es, es), memcpy(&y, (const uint8_t *)got + at * es, es);
    fail_msg("%s [%s] %s acc, rows %zu cols %zu r %zu %s->%s mode %d sub %d: element %zu (row %zu col %zu): ref 0x%x "
             "got 0x%x",
             what, isa, j->bs64 ? "f64" : "f32", j->rows, j->cols, j->r, dname(c->wd), dname(j->out_dtype),
             (int)j->scale_mode, j->subtract, at, at / j->out_stride, at % j->out_stride, (unsigned)x, (unsigned)y);
}

static int same_f64(double x, double y) { return (isnan(x) && isnan(y)) || memcmp(&x, &y, 8) == 0; }

static void check_isa_case(mk_case *c, const lora_merge_kernels *const *t, size_t nt)
{
    lora_mk_job *j = &c->job;
    uint8_t *want = ts_xmalloc(c->out_bytes);
    memset(j->out, 0xa5, c->out_bytes);
    lora_merge_kernels_ref.apply(j);
    memcpy(want, j->out, c->out_bytes);
    /* Stride padding untouched (0xa5 everywhere outside the elements). */
    size_t es = dsize(j->out_dtype);
    for (size_t i = 0; i + 1 < j->rows; i++)
        for (size_t p = (i * j->out_stride + j->cols) * es; p < (i + 1) * j->out_stride * es; p++)
            assert_int_equal(want[p], 0xa5);
    size_t nr = j->rows, ncol = j->cols;
    double *rs_ref = ts_xmalloc(nr * 8), *rs = ts_xmalloc(nr * 8), *cs_ref = ts_xmalloc(ncol * 8), *cs = ts_xmalloc(ncol * 8);
    lora_merge_kernels_ref.row_sumsq(j, rs_ref);
    for (size_t q = 0; q < ncol; q++) cs_ref[q] = (double)q * 0.125;
    lora_merge_kernels_ref.col_sumsq(j, cs_ref);
    for (size_t k = 0; k < nt; k++) {
        memset(j->out, 0xa5, c->out_bytes);
        t[k]->apply(j);
        expect_same_case(c, t[k]->name, want, j->out, "apply");
        t[k]->row_sumsq(j, rs);
        for (size_t i = 0; i < nr; i++)
            if (memcmp(&rs[i], &rs_ref[i], 8) != 0)
                fail_msg("row_sumsq [%s] rows %zu cols %zu r %zu row %zu: ref %.17g got %.17g", t[k]->name, nr, ncol,
                         j->r, i, rs_ref[i], rs[i]);
        for (size_t q = 0; q < ncol; q++) cs[q] = (double)q * 0.125;
        t[k]->col_sumsq(j, cs);
        for (size_t q = 0; q < ncol; q++)
            if (!same_f64(cs[q], cs_ref[q]))
                fail_msg("col_sumsq [%s] rows %zu cols %zu r %zu col %zu: ref %.17g got %.17g", t[k]->name, nr, ncol,
                         j->r, q, cs_ref[q], cs[q]);
    }
    free(want), free(rs_ref), free(rs), free(cs_ref), free(cs);
}

static void test_isa_vs_ref_random(void **state)
{
    (void)state;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
    if (nt == 0) {
        print_message("    no ISA table on this machine\n");
        return;
    }
    uint64_t s = 0x15a0;
    size_t ncase = 0;
    /* Every type pair, mode and flag comes up many times over 600 cases;
     * half of them carry NaN/Inf/subnormal/huge inputs. */
    for (int rep = 0; rep < 600; rep++, ncase++) {
        mk_case c;
        case_random(&c, &s, 70, 1, 300, 70, (rep & 1) ? 0.05 : 0.0);
        check_isa_case(&c, t, nt);
        case_free(&c);
    }
    /* Every column count through two vector widths of tail, thin rows. */
    for (size_t cols = 1; cols <= 70; cols++, ncase++) {
        mk_case c;
        case_random(&c, &s, 11, cols, cols, 20, 0.02);
        check_isa_case(&c, t, nt);
        case_free(&c);
    }
    print_message("    %zu random jobs, every ISA bit-identical to ref (apply, row and column sums)\n", ncase);
}

/* The random generator above picks cols in [1, max]; pin wide rows too. */
static void test_isa_vs_ref_wide(void **state)
{
    (void)state;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = isa_tables(t);
    uint64_t s = 0x771de;
    for (int rep = 0; rep < 6 && nt; rep++) {
        mk_case c;
        case_random(&c, &s, 19, 1900, 2100, 33, rep & 1 ? 0.01 : 0.0);
        check_isa_case(&c, t, nt);
        case_free(&c);
    }
}

/* ---- 3. properties for the orchestrator ------------------------------------ */

/* One job == the same job cut into arbitrary row blocks and column blocks
 * (the thread split), byte for byte; row sums by row blocks; column sums
 * by row blocks fed in order. */
static void test_split_invariance(void **state)
{
    (void)state;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    uint64_t s = 0x5b117;
    for (int rep = 0; rep < 40; rep++) {
        mk_case c;
        case_random(&c, &s, 60, 1, 200, 24, rep & 1 ? 0.02 : 0.0);
        lora_mk_job *j = &c.job;
        size_t es = dsize(j->out_dtype), wes = c.wd >= 0 ? dsize(j->w_dtype) : 0;
        int per_row = j->scale_mode == LORA_MK_SCALE_ROW || j->scale_mode == LORA_MK_SCALE_ROW_FIRST;
        uint8_t *whole = ts_xmalloc(c.out_bytes);
        double *rs_whole = ts_xmalloc(j->rows * 8), *rs = ts_xmalloc(j->rows * 8);
        double *cs_whole = ts_xmalloc(j->cols * 8), *cs = ts_xmalloc(j->cols * 8);
        for (size_t k = 0; k < nt; k++) {
            memset(j->out, 0, c.out_bytes);
            t[k]->apply(j);
            memcpy(whole, j->out, c.out_bytes);
            t[k]->row_sumsq(j, rs_whole);
            memset(cs_whole, 0, j->cols * 8);
            t[k]->col_sumsq(j, cs_whole);
            memset(j->out, 0, c.out_bytes);
            memset(cs, 0, j->cols * 8);
            for (size_t i0 = 0; i0 < j->rows;) {
                size_t nr = rng_range(&s, 1, 9);
                if (nr > j->rows - i0) nr = j->rows - i0;
                lora_mk_job rb = *j;
                rb.rows = nr;
                if (j->bs) rb.bs = j->bs + i0 * j->bs_stride;
                if (j->bs64) rb.bs64 = j->bs64 + i0 * j->bs_stride;
                rb.out = (uint8_t *)j->out + i0 * j->out_stride * es;
                if (j->w) rb.w = (const uint8_t *)j->w + i0 * j->w_stride * wes;
                if (j->scale && per_row) rb.scale = j->scale + i0;
                t[k]->row_sumsq(&rb, rs + i0);
                t[k]->col_sumsq(&rb, cs);
                for (size_t c0 = 0; c0 < j->cols;) {
                    size_t ncl = rng_range(&s, 1, 40);
                    if (ncl > j->cols - c0) ncl = j->cols - c0;
                    lora_mk_job cb = rb;
                    cb.cols = ncl, cb.a = rb.a + c0, cb.out = (uint8_t *)rb.out + c0 * es;
                    if (rb.w) cb.w = (const uint8_t *)rb.w + c0 * wes;
                    if (rb.scale && !per_row) cb.scale = rb.scale + c0;
                    t[k]->apply(&cb);
                    c0 += ncl;
                }
                i0 += nr;
            }
            expect_same_case(&c, t[k]->name, whole, j->out, "split apply");
            assert_memory_equal(rs_whole, rs, j->rows * 8);
            for (size_t q = 0; q < j->cols; q++) assert_true(same_f64(cs_whole[q], cs[q]));
        }
        free(whole), free(rs_whole), free(rs), free(cs_whole), free(cs);
        case_free(&c);
    }
}

/* fan_in_fan_out: W^T [in][out] with BS' = A^T and A' = BS^T gives exactly
 * the transpose of the Linear merge of W. */
static void test_fan_in_fan_out_transpose(void **state)
{
    (void)state;
    const size_t out_f = 45, in_f = 77, r = 12;
    uint64_t s = 0xfa11;
    uint16_t *w = ts_xmalloc(out_f * in_f * 2), *wt = ts_xmalloc(out_f * in_f * 2);
    uint16_t *o = ts_xmalloc(out_f * in_f * 2), *ot = ts_xmalloc(out_f * in_f * 2);
    float *bs = ts_xmalloc(out_f * r * 4), *a = ts_xmalloc(r * in_f * 4);
    float *bst = ts_xmalloc(out_f * r * 4), *at = ts_xmalloc(r * in_f * 4);
    for (size_t i = 0; i < out_f * in_f; i++) w[i] = to_f16((float)(0.05 * rng_normal(&s)));
    for (size_t i = 0; i < out_f * r; i++) bs[i] = (float)(0.1 * rng_normal(&s));
    for (size_t i = 0; i < r * in_f; i++) a[i] = (float)(0.1 * rng_normal(&s));
    for (size_t i = 0; i < out_f; i++)
        for (size_t c = 0; c < in_f; c++) wt[c * out_f + i] = w[i * in_f + c];
    for (size_t i = 0; i < out_f; i++)
        for (size_t k = 0; k < r; k++) bst[k * out_f + i] = bs[i * r + k]; /* A' = BS^T [r][out] */
    for (size_t k = 0; k < r; k++)
        for (size_t c = 0; c < in_f; c++) at[c * r + k] = a[k * in_f + c]; /* BS' = A^T [in][r] */
    /* float64: the products of two floats are exact, so the identity holds
     * there too when no scale is folded in. */
    double *bs64 = ts_xmalloc(out_f * r * 8), *at64 = ts_xmalloc(in_f * r * 8);
    for (size_t i = 0; i < out_f * r; i++) bs64[i] = bs[i];
    for (size_t i = 0; i < r * in_f; i++) at64[i] = at[i];
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (size_t q = 0; q < 2 * nt; q++) {
        size_t k = q % nt;
        lora_mk_job j = {.w = w, .out = o, .bs = bs, .a = a, .rows = out_f, .cols = in_f, .r = r, .w_stride = in_f,
                         .out_stride = in_f, .bs_stride = r, .a_stride = in_f, .w_dtype = LORA_MK_F16,
                         .out_dtype = LORA_MK_F16};
        lora_mk_job jt = {.w = wt, .out = ot, .bs = at, .a = bst, .rows = in_f, .cols = out_f, .r = r,
                          .w_stride = out_f, .out_stride = out_f, .bs_stride = r, .a_stride = out_f,
                          .w_dtype = LORA_MK_F16, .out_dtype = LORA_MK_F16};
        if (q >= nt) j.bs = NULL, j.bs64 = bs64, jt.bs = NULL, jt.bs64 = at64;
        t[k]->apply(&j);
        t[k]->apply(&jt);
        for (size_t i = 0; i < out_f; i++)
            for (size_t c = 0; c < in_f; c++) assert_int_equal(o[i * in_f + c], ot[c * out_f + i]);
    }
    free(w), free(wt), free(o), free(ot), free(bs), free(a), free(bst), free(at), free(bs64), free(at64);
}

/* bias += s * lora_B.bias as a rank-1, one-row job; and r = 0 leaves W
 * as it is (only -0 becomes +0 and NaNs are quieted). */
static void test_bias_and_rank0(void **state)
{
    (void)state;
    float bias[5] = {1, -2, 0.5f, 0, 1e-3f}, lb[5] = {0.5f, 0.25f, -1, 3, 1e-3f}, s = 2.0f, out[5];
    const double s64 = 2.0;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    for (size_t q = 0; q < 2 * nt; q++) {
        size_t k = q % nt;
        lora_mk_job j = {.w = bias, .out = out, .bs = &s, .a = lb, .rows = 1, .cols = 5, .r = 1, .w_stride = 5,
                         .out_stride = 5, .bs_stride = 1, .a_stride = 5, .w_dtype = LORA_MK_F32,
                         .out_dtype = LORA_MK_F32};
        if (q >= nt) j.bs = NULL, j.bs64 = &s64;
        t[k]->apply(&j);
        for (int c = 0; c < 5; c++) assert_true(out[c] == bias[c] + s * lb[c]);
        uint16_t w16[3] = {0x8000, 0x3c01, 0x7d55}, o16[3];
        lora_mk_job z = {.w = w16, .out = o16, .rows = 1, .cols = 3, .r = 0, .w_stride = 3, .out_stride = 3,
                         .a_stride = 3, .w_dtype = LORA_MK_F16, .out_dtype = LORA_MK_F16};
        t[k]->apply(&z);
        assert_int_equal(o16[0], 0x0000);
        assert_int_equal(o16[1], 0x3c01);
        assert_int_equal(o16[2], 0x7f55);
    }
}

/* out == w (same size types) gives what a separate output gives. */
static void test_in_place(void **state)
{
    (void)state;
    const lora_merge_kernels *t[LORA_ISA_COUNT_];
    size_t nt = all_tables(t);
    uint64_t s = 0x1a91ace;
    static const int pairs[4][2] = {{LORA_MK_F32, LORA_MK_F32}, {LORA_MK_F16, LORA_MK_F16}, {LORA_MK_BF16, LORA_MK_F16},
                                    {LORA_MK_F16, LORA_MK_BF16}};
    for (size_t k = 0; k < nt; k++)
        for (int p = 0; p < 4; p++) {
            mk_case c = {0};
            do {
                case_free(&c);
                case_random(&c, &s, 30, 1, 100, 20, 0.01);
            } while (c.wd < 0);
            lora_mk_job *j = &c.job;
            j->w_dtype = (lora_mk_dtype)pairs[p][0], j->out_dtype = (lora_mk_dtype)pairs[p][1];
            j->out_stride = j->w_stride;
            size_t bytes = span(j->rows, j->w_stride, j->cols) * dsize(j->w_dtype);
            uint8_t *sep = ts_xmalloc(bytes), *inplace = ts_xmalloc(bytes);
            for (size_t b = 0; b < bytes; b++) inplace[b] = (uint8_t)ts_rng_next(&s);
            memcpy(sep, inplace, bytes);
            j->w = inplace, j->out = sep;
            t[k]->apply(j);
            j->out = inplace;
            t[k]->apply(j);
            assert_memory_equal(sep, inplace, bytes);
            free(sep), free(inplace);
            case_free(&c);
        }
}

static void test_job_valid(void **state)
{
    (void)state;
    float bs[4] = {0}, a[6] = {0}, sc[3] = {1, 1, 1}, out[6];
    uint16_t w[6] = {0};
    lora_mk_job ok = {.w = w, .out = out, .bs = bs, .a = a, .rows = 2, .cols = 3, .r = 2, .w_stride = 3,
                      .out_stride = 3, .bs_stride = 2, .a_stride = 3, .w_dtype = LORA_MK_F16, .out_dtype = LORA_MK_F32};
    assert_true(lora_mk_job_valid(&ok));
    assert_false(lora_mk_job_valid(NULL));
    lora_mk_job j = ok;
    j.w_stride = 2;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.out_stride = 2;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.a_stride = 2;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.bs_stride = 1;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.bs = NULL;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.a = NULL;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.w_dtype = (lora_mk_dtype)3;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.out_dtype = (lora_mk_dtype)7;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.scale_mode = LORA_MK_SCALE_ROW;
    assert_false(lora_mk_job_valid(&j)); /* no scale vector */
    j.scale = sc;
    assert_true(lora_mk_job_valid(&j));
    j.scale_mode = LORA_MK_SCALE_COL_FIRST, j.w = NULL;
    assert_false(lora_mk_job_valid(&j)); /* nothing to scale first */
    j = ok, j.scale_mode = (lora_mk_scale)5, j.scale = sc;
    assert_false(lora_mk_job_valid(&j));
    j = ok, j.rows = SIZE_MAX / 8, j.w_stride = 3;
    assert_false(lora_mk_job_valid(&j)); /* rows x stride overflows */
    j = ok, j.r = 0, j.bs = NULL, j.a = NULL, j.bs_stride = 0;
    assert_true(lora_mk_job_valid(&j)); /* rank 0: nothing to read */
    j = ok, j.out = NULL;
    assert_true(lora_mk_job_valid(&j)); /* sums only */
    double bs64[4] = {0};
    j = ok, j.bs = NULL, j.bs64 = bs64;
    assert_true(lora_mk_job_valid(&j)); /* float64 accumulation */
    j.rows = SIZE_MAX / 12, j.out = NULL, j.w = NULL;
    assert_false(lora_mk_job_valid(&j)); /* rows x 2 doubles overflows; as floats it would not */
    j.bs64 = NULL, j.bs = bs;
    assert_true(lora_mk_job_valid(&j));
    j = ok, j.w = NULL, j.w_dtype = (lora_mk_dtype)9;
    assert_true(lora_mk_job_valid(&j)); /* no base: its type is ignored */
}

static void test_dispatch(void **state)
{
    (void)state;
    static const char *const names[] = {"ref", "avx2", "avx512"};
    for (int i = 0; i < LORA_ISA_COUNT_; i++) {
        const lora_merge_kernels *m = lora_merge_kernels_for_isa((lora_isa)i);
        assert_true((m != NULL) == (lora_kernels_for_isa((lora_isa)i) != NULL));
        if (!m) continue;
        assert_string_equal(m->name, names[i]);
        assert_non_null(m->apply), assert_non_null(m->row_sumsq), assert_non_null(m->col_sumsq);
        if (i != LORA_ISA_REF) assert_true(m->apply != lora_merge_kernels_ref.apply);
    }
    assert_null(lora_merge_kernels_for_isa(LORA_ISA_COUNT_));
    assert_null(lora_merge_kernels_for_isa((lora_isa)-1));
    assert_ptr_equal(lora_merge_kernels_get(), lora_merge_kernels_for_isa(lora_kernels_selected_isa()));
    assert_string_equal(lora_merge_kernels_get()->name, lora_kernels_get()->name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_fused_steps),
        cmocka_unit_test(test_ref_vs_float64),
        cmocka_unit_test(test_nan_inf_rules),
        cmocka_unit_test(test_unmerge_roundtrip),
        cmocka_unit_test(test_dora),
        cmocka_unit_test(test_isa_vs_ref_random),
        cmocka_unit_test(test_isa_vs_ref_wide),
        cmocka_unit_test(test_split_invariance),
        cmocka_unit_test(test_fan_in_fan_out_transpose),
        cmocka_unit_test(test_bias_and_rank0),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_job_valid),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests_name("merge_kernels", tests, NULL, NULL);
}
