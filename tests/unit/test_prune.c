/*
 * test_prune.c - lora_prune.
 *
 * The reference never goes through the QR path: every delta is formed
 * explicitly in double from the decoded factors (qp_delta) and its singular
 * values come from LAPACKE_dgesvd on that matrix. Checked against it:
 *   - --rank K: ||dW' - dW|| / ||dW|| of the written file equals the
 *     Eckart-Young optimum sqrt(sum_{i>=K} sigma_i^2) / ||dW|| within 1e-4
 *     (and the report's figure equals it within 1e-6);
 *   - --energy F: the rank is the smallest keeping F of sum sigma^2, and
 *     --energy 1.0 (refactored) reproduces dW within 1e-5;
 *   - --budget N: never more than N values, and exactly the N largest
 *     sigma of all deltas (scale included);
 *   - scale kept bit for bit (scaling EXPLICIT where the rank changed),
 *     everything else copied, dry runs write nothing, DoRA refused unless
 *     allowed, quantized inputs, bad options.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_ops.h"
#include "qp_support.h"

static const qp_module k_mods[] = {
    {"model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 12, 24.0f, 0, 2,
     {96, 80, 0, 0, 0}, LORA_DTYPE_F32, LORA_DTYPE_F32, 0.8, 0, 0, 0},
    {"model.layers.0.self_attn.v_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 8, 8.0f, 0, 2,
     {40, 80, 0, 0, 0}, LORA_DTYPE_F32, LORA_DTYPE_F16, 0.7, 0, 0, 1},
    {"transformer.h.0.attn.c_attn", LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT, LORA_MODULE_FAN_IN_FAN_OUT, 6, 1.0f,
     0.5f, 2, {64, 192, 0, 0, 0}, LORA_DTYPE_F32, LORA_DTYPE_F32, 0.9, 0, 0, 0},
    {"unet.conv_in", LORA_KIND_CONV2D, LORA_SCALING_ALPHA_OVER_RANK, 0, 6, 3.0f, 0, 4, {16, 8, 3, 3},
     LORA_DTYPE_F32, LORA_DTYPE_F32, 0.85, 0, 0, 0},
    {"model.embed_tokens", LORA_KIND_EMBEDDING, LORA_SCALING_ALPHA_OVER_RANK, 0, 5, 10.0f, 0, 2, {50, 24, 0, 0, 0},
     LORA_DTYPE_F32, LORA_DTYPE_F32, 0.6, 0, 0, 0},
    /* rank 10 stored, true rank 3 */
    {"model.layers.1.mlp.up_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 10, 20.0f, 0, 2,
     {72, 48, 0, 0, 0}, LORA_DTYPE_F32, LORA_DTYPE_F32, 1.0, 3, 0, 0},
};
#define N_MODS (sizeof k_mods / sizeof k_mods[0])

static int teardown(void **state)
{
    (void)state;
    qp_cleanup();
    return 0;
}

static lora_prune_options opts(lora_prune_mode mode)
{
    lora_prune_options o = LORA_PRUNE_OPTIONS_INIT;
    o.mode = mode;
    return o;
}

static void prune_ok(const char *in, const char *out, const lora_prune_options *o, lora_prune_report *rep)
{
    lora_error err;
    lora_status st = lora_prune(in, out, o, rep, &err);
    if (st != LORA_OK) fail_msg("lora_prune: %s %s", lora_status_name(st), err.detail);
}

/* Per module of `in`: delta and reference singular values; compared with
 * module i of `out` (the same names, in order, unless dropped). */
typedef struct {
    double *d;
    double *sigma;
    uint64_t M, K;
    size_t p;
    double norm;
} ref_module;

static ref_module *reference(const char *in, uint32_t *n)
{
    lora_reader *r;
    lora_error err;
    assert_int_equal(lora_reader_open_file(in, NULL, &r, &err), LORA_OK);
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    ref_module *v = calloc(fi.module_count, sizeof *v);
    assert_non_null(v);
    for (uint32_t i = 0; i < fi.module_count; i++) {
        v[i].d = qp_delta(r, i, &v[i].M, &v[i].K);
        v[i].sigma = qp_singular_values(v[i].d, v[i].M, v[i].K);
        v[i].p = v[i].M < v[i].K ? v[i].M : v[i].K;
        v[i].norm = qp_norm(v[i].d, v[i].M * v[i].K);
    }
    *n = fi.module_count;
    lora_reader_free(r);
    return v;
}

static void free_reference(ref_module *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(v[i].d);
        free(v[i].sigma);
    }
    free(v);
}

static double tail_energy(const ref_module *m, size_t k)
{
    double s = 0;
    for (size_t i = k; i < m->p; i++) s += m->sigma[i] * m->sigma[i];
    return s;
}

/* The measured error of out's module `j` against reference module i. */
static double measured_error(const lora_reader *ro, uint32_t j, const ref_module *m)
{
    uint64_t M, K;
    double *d = qp_delta(ro, j, &M, &K);
    assert_true(M == m->M && K == m->K);
    double e = qp_diff_norm(d, m->d, M * K) / m->norm;
    free(d);
    return e;
}

static void test_rank_eckart_young(void **state)
{
    (void)state;
    const char *in = qp_path("in.lora"), *out = qp_path("out.lora");
    qp_write_adapter(in, k_mods, N_MODS, 201);
    uint32_t n;
    ref_module *ref = reference(in, &n);
    for (uint32_t K = 1; K <= 7; K += 3) {
        lora_prune_options o = opts(LORA_PRUNE_RANK);
        o.rank = K;
        lora_prune_report rep;
        prune_ok(in, out, &o, &rep);
        lora_reader *ri, *ro;
        lora_error err;
        assert_int_equal(lora_reader_open_file(in, NULL, &ri, &err), LORA_OK);
        assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
        assert_int_equal(lora_reader_verify(ro, &err), LORA_OK);
        for (uint32_t i = 0; i < n; i++) {
            lora_module mi, mo;
            assert_int_equal(lora_reader_module(ri, i, &mi), LORA_OK);
            assert_int_equal(lora_reader_module(ro, i, &mo), LORA_OK);
            assert_string_equal(mi.name, mo.name);
            uint32_t want = K < mi.rank ? K : mi.rank;
            assert_int_equal(mo.rank, want);
            assert_int_equal(rep.modules[i].new_rank, want);
            /* The resolved scale is kept to the bit; the rule only where the rank stayed. */
            assert_memory_equal(&mo.scale, &mi.scale, sizeof mi.scale);
            assert_true(mo.alpha == mi.alpha);
            assert_int_equal(mo.scaling, want == mi.rank ? mi.scaling : LORA_SCALING_EXPLICIT);
            double opt = sqrt(tail_energy(&ref[i], want)) / ref[i].norm;
            double got = measured_error(ro, i, &ref[i]);
            if (fabs(got - opt) > 1e-4)
                fail_msg("rank %u module %s: error %.8f, Eckart-Young optimum %.8f", K, mi.name, got, opt);
            assert_true(fabs(rep.modules[i].rel_error - opt) <= 1e-6);
            double energy = ref[i].norm * ref[i].norm;
            assert_true(fabs(rep.modules[i].energy - energy) <= 1e-9 * energy);
            assert_true(fabs(rep.modules[i].sigma_max - ref[i].sigma[0]) <= 1e-9 * ref[i].sigma[0]);
        }
        lora_reader_free(ri);
        lora_reader_free(ro);
        lora_prune_report_free(&rep);
    }
    free_reference(ref, n);
}

static void test_energy_rank_choice(void **state)
{
    (void)state;
    const char *in = qp_path("in.lora"), *out = qp_path("out.lora");
    qp_write_adapter(in, k_mods, N_MODS, 202);
    uint32_t n;
    ref_module *ref = reference(in, &n);
    static const double fractions[] = {0.5, 0.9, 0.99};
    for (size_t f = 0; f < 3; f++) {
        lora_prune_options o = opts(LORA_PRUNE_ENERGY);
        o.energy = fractions[f];
        lora_prune_report rep;
        prune_ok(in, out, &o, &rep);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = rep.modules[i].new_rank;
            double total = ref[i].norm * ref[i].norm;
            double kept = total - tail_energy(&ref[i], k), before = total - tail_energy(&ref[i], k - 1);
            /* Smallest: k keeps the fraction, k - 1 does not (1e-12 of slack for the two summations). */
            assert_true(kept >= fractions[f] * total * (1 - 1e-12));
            assert_true(k == 1 || before < fractions[f] * total * (1 + 1e-12));
            assert_true(fabs(rep.modules[i].energy_kept - kept / total) <= 1e-9);
        }
        lora_prune_report_free(&rep);
    }
    free_reference(ref, n);
}

/* --energy 1.0: without REFACTOR every module keeps its rank and is copied
 * (error exactly 0); refactored into the SVD form and stored as F32, dW is
 * reproduced within 1e-5 (an F16 factor would add its own 2^-11 rounding).
 * The rank-deficient module (true rank 3 stored at 10) keeps at most its
 * numerical rank at 1 - 1e-12. */
static void test_energy_one(void **state)
{
    (void)state;
    const char *in = qp_path("in.lora"), *out = qp_path("out.lora");
    qp_write_adapter(in, k_mods, N_MODS, 203);
    uint32_t n;
    ref_module *ref = reference(in, &n);
    lora_prune_options o = opts(LORA_PRUNE_ENERGY);
    o.energy = 1.0;
    lora_prune_report rep;
    lora_reader *ro;
    lora_error err;
    prune_ok(in, out, &o, &rep);
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    for (uint32_t i = 0; i < n; i++)
        if (!rep.modules[i].rewritten) assert_true(measured_error(ro, i, &ref[i]) == 0.0);
    lora_reader_free(ro);
    lora_prune_report_free(&rep);

    o.flags = LORA_PRUNE_REFACTOR;
    o.dtype = LORA_DTYPE_F32;
    prune_ok(in, out, &o, &rep);
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    for (uint32_t i = 0; i < n; i++) {
        assert_true(rep.modules[i].rewritten);
        double e = measured_error(ro, i, &ref[i]);
        if (e > 1e-5) fail_msg("module %s: --energy 1.0 error %.3e", rep.modules[i].name, e);
    }
    lora_reader_free(ro);
    lora_prune_report_free(&rep);
    o.dtype = -1;

    /* 1 - 1e-12 drops only the round-off directions of the rank-3 module. */
    o.energy = 1.0 - 1e-12;
    o.flags = 0;
    prune_ok(in, out, &o, &rep);
    assert_true(rep.modules[5].new_rank <= 3);
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    assert_true(measured_error(ro, 5, &ref[5]) < 1e-5);
    lora_reader *ri;
    assert_int_equal(lora_reader_open_file(in, NULL, &ri, &err), LORA_OK);
    for (uint32_t i = 0; i < n; i++) {
        if (rep.modules[i].rewritten) continue;
        lora_module mi, mo;
        assert_int_equal(lora_reader_module(ri, i, &mi), LORA_OK);
        assert_int_equal(lora_reader_module(ro, i, &mo), LORA_OK);
        const void *x, *y;
        size_t nx, ny;
        assert_int_equal(lora_reader_blob_view(ri, mi.blob_b, &x, &nx), LORA_OK);
        assert_int_equal(lora_reader_blob_view(ro, mo.blob_b, &y, &ny), LORA_OK);
        assert_true(nx == ny && memcmp(x, y, nx) == 0);
    }
    lora_reader_free(ri);
    lora_reader_free(ro);
    lora_prune_report_free(&rep);
    free_reference(ref, n);
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static void test_budget(void **state)
{
    (void)state;
    const char *in = qp_path("in.lora"), *out = qp_path("out.lora");
    qp_write_adapter(in, k_mods, N_MODS, 204);
    uint32_t n;
    ref_module *ref = reference(in, &n);
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += ref[i].p < k_mods[i].rank ? ref[i].p : k_mods[i].rank;
    double *all = malloc(total * sizeof *all);
    size_t t = 0;
    for (uint32_t i = 0; i < n; i++)
        for (size_t j = 0; j < ref[i].p && j < k_mods[i].rank; j++) all[t++] = ref[i].sigma[j];
    qsort(all, total, sizeof *all, cmp_desc);
    static const uint64_t budgets[] = {1, 4, 11, 25, 1000};
    for (size_t b = 0; b < 5; b++) {
        lora_prune_options o = opts(LORA_PRUNE_BUDGET);
        o.budget = budgets[b];
        lora_prune_report rep;
        prune_ok(in, out, &o, &rep);
        uint64_t kept = 0;
        double smallest_kept = INFINITY, largest_dropped = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = rep.modules[i].new_rank;
            kept += k;
            if (k) smallest_kept = fmin(smallest_kept, ref[i].sigma[k - 1]);
            if (k < ref[i].p && k < k_mods[i].rank) largest_dropped = fmax(largest_dropped, ref[i].sigma[k]);
        }
        uint64_t want = budgets[b] < total ? budgets[b] : total;
        assert_true(kept <= budgets[b]);
        assert_int_equal(kept, want);
        assert_int_equal(rep.rank_out, kept);
        /* Exactly the largest ones (allowing for the two SVDs' rounding). */
        assert_true(smallest_kept >= largest_dropped * (1 - 1e-9));
        assert_true(fabs(smallest_kept - all[want - 1]) <= 1e-9 * all[0]);
        /* Dropped modules are gone from the file, except one with a bias (kept at rank 1, zero delta). */
        lora_reader *ro;
        lora_error err;
        assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
        lora_file_info fi;
        lora_reader_file_info(ro, &fi);
        uint32_t present = 0;
        for (uint32_t i = 0; i < n; i++) present += rep.modules[i].new_rank > 0 || k_mods[i].bias;
        assert_int_equal(fi.module_count, present);
        assert_int_equal(rep.dropped_count, n - present);
        uint32_t idx;
        if (rep.modules[1].new_rank == 0) { /* v_proj has a bias */
            assert_int_equal(lora_reader_module_find(ro, k_mods[1].name, &idx), LORA_OK);
            uint64_t M, K;
            double *d = qp_delta(ro, idx, &M, &K);
            assert_true(qp_norm(d, M * K) == 0.0);
            free(d);
        }
        lora_reader_free(ro);
        lora_prune_report_free(&rep);
    }
    free(all);
    free_reference(ref, n);
}

static void test_dry_run_writes_nothing(void **state)
{
    (void)state;
    const char *in = qp_path("in.lora"), *out = qp_path("never.lora");
    qp_write_adapter(in, k_mods, N_MODS, 205);
    size_t n0, n1;
    uint8_t *before = qp_slurp(in, &n0);
    lora_prune_options o = opts(LORA_PRUNE_BUDGET);
    o.budget = 9;
    o.flags = LORA_PRUNE_DRY_RUN;
    lora_prune_report dry, real;
    prune_ok(in, out, &o, &dry);
    assert_false(qp_exists(out));
    assert_int_equal(dry.file_size_out, 0);
    lora_prune_report_free(&dry);
    prune_ok(in, NULL, &o, &dry); /* no output needed */
    uint8_t *after = qp_slurp(in, &n1);
    assert_true(n0 == n1 && memcmp(before, after, n0) == 0);
    o.flags = 0;
    prune_ok(in, out, &o, &real);
    for (uint32_t i = 0; i < dry.module_count; i++) {
        assert_int_equal(dry.modules[i].new_rank, real.modules[i].new_rank);
        assert_true(dry.modules[i].rel_error == real.modules[i].rel_error);
    }
    assert_int_equal(dry.rank_out, real.rank_out);
    lora_prune_report_free(&dry);
    lora_prune_report_free(&real);
    free(before);
    free(after);
}

typedef struct {
    int count;
    char last[512];
} warnings;

static void on_warn(void *opaque, const char *msg)
{
    warnings *w = opaque;
    w->count++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

static void test_dora(void **state)
{
    (void)state;
    qp_module m[2] = {{"m.dora", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 6, 6.0f, 0, 2, {48, 40, 0, 0, 0},
                       LORA_DTYPE_F32, LORA_DTYPE_F32, 0.8, 0, 1, 0},
                      {"m.plain", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 6.0f, 0, 2,
                       {48, 40, 0, 0, 0}, LORA_DTYPE_F32, LORA_DTYPE_F32, 0.8, 0, 0, 0}};
    const char *in = qp_path("dora.lora"), *out = qp_path("dora_out.lora");
    qp_write_adapter(in, m, 2, 206);
    lora_prune_options o = opts(LORA_PRUNE_RANK);
    o.rank = 3;
    lora_error err;
    lora_prune_report rep;
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(err.detail, "m.dora"));
    assert_false(qp_exists(out));
    /* A rank that leaves the DoRA module alone is fine. */
    o.rank = 6;
    prune_ok(in, out, &o, &rep);
    lora_prune_report_free(&rep);
    warnings w = {0, ""};
    o.rank = 3;
    o.flags = LORA_PRUNE_ALLOW_DORA;
    o.warn = on_warn;
    o.warn_opaque = &w;
    prune_ok(in, out, &o, &rep);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.last, "m.dora"));
    assert_true(rep.modules[0].dora && rep.modules[0].new_rank == 3);
    lora_prune_report_free(&rep);
    lora_reader *ri, *ro;
    assert_int_equal(lora_reader_open_file(in, NULL, &ri, &err), LORA_OK);
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    lora_module mi, mo;
    assert_int_equal(lora_reader_module(ri, 0, &mi), LORA_OK);
    assert_int_equal(lora_reader_module(ro, 0, &mo), LORA_OK);
    const void *x, *y;
    size_t nx, ny;
    assert_int_equal(lora_reader_blob_view(ri, mi.blob_magnitude, &x, &nx), LORA_OK);
    assert_int_equal(lora_reader_blob_view(ro, mo.blob_magnitude, &y, &ny), LORA_OK);
    assert_true(nx == ny && memcmp(x, y, nx) == 0);
    lora_reader_free(ri);
    lora_reader_free(ro);
}

/* Quantized factors: decoded first; the output keeps Q8_0 where the new
 * size is whole blocks, F32 (with a warning) where it is not; --dtype. */
static void test_quantized_input_and_dtype(void **state)
{
    (void)state;
    /* A [8, 64] Q8_0 -> [4, 64] = 256: whole blocks; B [40, 8] -> [40, 4] = 160 = 5 blocks.
     * Second module: B [36, 8] Q8_0 -> [36, 4] = 144: not whole blocks. */
    qp_module m[2] = {{"m.q8", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 8, 8.0f, 0, 2, {40, 64, 0, 0, 0},
                       LORA_DTYPE_Q8_0, LORA_DTYPE_Q8_0, 0.8, 0, 0, 0},
                      {"m.odd", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 8, 8.0f, 0, 2, {36, 64, 0, 0, 0},
                       LORA_DTYPE_NF4, LORA_DTYPE_Q8_0, 0.8, 0, 0, 0}};
    const char *in = qp_path("q.lora"), *out = qp_path("q_out.lora");
    qp_write_adapter(in, m, 2, 207);
    uint32_t n;
    ref_module *ref = reference(in, &n); /* the dequantized input is the reference */
    warnings w = {0, ""};
    lora_prune_options o = opts(LORA_PRUNE_RANK);
    o.rank = 4;
    o.warn = on_warn;
    o.warn_opaque = &w;
    lora_prune_report rep;
    prune_ok(in, out, &o, &rep);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.last, "m.odd"));
    lora_reader *ro;
    lora_error err;
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    lora_module mo;
    lora_blob a, b;
    assert_int_equal(lora_reader_module(ro, 0, &mo), LORA_OK);
    assert_int_equal(lora_reader_blob(ro, mo.blob_a, &a), LORA_OK);
    assert_int_equal(lora_reader_blob(ro, mo.blob_b, &b), LORA_OK);
    assert_true(a.dtype == LORA_DTYPE_Q8_0 && b.dtype == LORA_DTYPE_Q8_0);
    assert_int_equal(lora_reader_module(ro, 1, &mo), LORA_OK);
    assert_int_equal(lora_reader_blob(ro, mo.blob_a, &a), LORA_OK);
    assert_int_equal(lora_reader_blob(ro, mo.blob_b, &b), LORA_OK);
    assert_true(a.dtype == LORA_DTYPE_NF4 && a.block == 64 && b.dtype == LORA_DTYPE_F32);
    /* Q8_0 storage adds its rounding (< 1%) to the optimum. */
    double opt = sqrt(tail_energy(&ref[0], 4)) / ref[0].norm;
    assert_true(fabs(measured_error(ro, 0, &ref[0]) - opt) < 0.01);
    lora_reader_free(ro);
    lora_prune_report_free(&rep);

    o.dtype = LORA_DTYPE_F16;
    o.warn = NULL;
    prune_ok(in, out, &o, &rep);
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_equal(lora_reader_module(ro, i, &mo), LORA_OK);
        assert_int_equal(lora_reader_blob(ro, mo.blob_a, &a), LORA_OK);
        assert_int_equal(lora_reader_blob(ro, mo.blob_b, &b), LORA_OK);
        assert_true(a.dtype == LORA_DTYPE_F16 && b.dtype == LORA_DTYPE_F16);
        opt = sqrt(tail_energy(&ref[i], 4)) / ref[i].norm;
        assert_true(fabs(measured_error(ro, i, &ref[i]) - opt) < 2e-3);
    }
    lora_reader_free(ro);
    lora_prune_report_free(&rep);
    free_reference(ref, n);
}

static void test_bad_options(void **state)
{
    (void)state;
    const char *in = qp_path("in.lora"), *out = qp_path("bad.lora");
    qp_write_adapter(in, k_mods, 2, 208);
    lora_error err;
    lora_prune_report rep;
    lora_prune_options o = opts(LORA_PRUNE_RANK);
    o.rank = 0;
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o = opts(LORA_PRUNE_ENERGY);
    static const double bad_energy[] = {0.0, -0.5, 1.0000001, 2.0, NAN};
    for (int i = 0; i < 5; i++) {
        o.energy = bad_energy[i];
        assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    }
    o = opts(LORA_PRUNE_BUDGET);
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o = opts((lora_prune_mode)9);
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o = opts(LORA_PRUNE_RANK);
    o.rank = 2;
    o.dtype = 77;
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o.dtype = LORA_DTYPE_Q8_0, o.block = 64;
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o.dtype = LORA_DTYPE_NF4, o.block = 100;
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o.dtype = -1, o.block = 0, o.flags = 0x80;
    assert_int_equal(lora_prune(in, out, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    o.flags = 0;
    assert_int_equal(lora_prune(in, NULL, &o, &rep, &err), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_prune(in, in, &o, &rep, &err), LORA_E_SAME_FILE);
    assert_false(qp_exists(out));
}

static void test_real_fixture(void **state)
{
    (void)state;
    const char *in = qp_path("gemma3.lora"), *out = qp_path("gemma3_pruned.lora");
    if (!qp_import_fixture(in)) {
        print_message("    fixture peft-gemma3-gqa missing: skipped\n");
        skip();
    }
    uint32_t n;
    ref_module *ref = reference(in, &n);
    lora_prune_options o = opts(LORA_PRUNE_RANK);
    o.rank = 2;
    lora_prune_report rep;
    prune_ok(in, out, &o, &rep);
    lora_reader *ro;
    lora_error err;
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    double worst = 0;
    for (uint32_t i = 0; i < n; i++) {
        double opt = sqrt(tail_energy(&ref[i], 2)) / ref[i].norm, got = measured_error(ro, i, &ref[i]);
        assert_true(fabs(got - opt) <= 1e-4);
        worst = fmax(worst, fabs(got - opt));
    }
    print_message("    gemma3 fixture, %u modules at rank 2: |error - optimum| <= %.2e\n", n, worst);
    lora_reader_free(ro);
    lora_prune_report_free(&rep);
    o = opts(LORA_PRUNE_ENERGY);
    o.energy = 1.0;
    o.flags = LORA_PRUNE_REFACTOR;
    prune_ok(in, out, &o, &rep);
    assert_int_equal(lora_reader_open_file(out, NULL, &ro, &err), LORA_OK);
    for (uint32_t i = 0; i < n; i++) assert_true(measured_error(ro, i, &ref[i]) < 1e-5);
    lora_reader_free(ro);
    lora_prune_report_free(&rep);
    free_reference(ref, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_rank_eckart_young, teardown),
        cmocka_unit_test_teardown(test_energy_rank_choice, teardown),
        cmocka_unit_test_teardown(test_energy_one, teardown),
        cmocka_unit_test_teardown(test_budget, teardown),
        cmocka_unit_test_teardown(test_dry_run_writes_nothing, teardown),
        cmocka_unit_test_teardown(test_dora, teardown),
        cmocka_unit_test_teardown(test_quantized_input_and_dtype, teardown),
        cmocka_unit_test_teardown(test_bad_options, teardown),
        cmocka_unit_test_teardown(test_real_fixture, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
