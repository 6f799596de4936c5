/*
 * test_merge.c - lora_merge into safetensors bases (single file, sharded).
 *
 * Oracle: every merged element is recomputed here in float64 from the
 * seeded base and adapter values (merge_support.c, which rounds binary64 to
 * F32/F16/BF16 from the IEEE definitions, not with the library's kernels)
 * and compared with the acceptance: F32 within 1e-6 relative,
 * F16/BF16 at most 1 ulp off and bit-exact on >= 99.9%. Tensors that are
 * not targets must be byte-identical. Every ISA the machine runs, and 1, 2
 * and 3 threads, must give the same file. Failures must leave no file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "kernels/merge_kernels.h"
#include "lora_ops.h"
#include "merge_support.h"
#include "ops/merge.h"
#include "write/io.h"

#define SMALL_BLOCK 64 /* elements per block: every tensor splits into many */

/* ---- a base model ------------------------------------------------------------------ */

typedef struct {
    char name[128];
    lora_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[4];
    uint64_t numel;
    uint8_t *bytes;
    size_t size;
} btensor;

static ms_type ms_of(lora_st_dtype d) { return d == LORA_ST_F32 ? MS_F32 : d == LORA_ST_F16 ? MS_F16 : MS_BF16; }
static int is_float(lora_st_dtype d) { return d == LORA_ST_F32 || d == LORA_ST_F16 || d == LORA_ST_BF16; }

static void bt_init(btensor *b, const char *name, lora_st_dtype dtype, uint32_t ndim, const uint64_t *shape,
                    uint64_t seed)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->dtype = dtype;
    b->ndim = ndim;
    b->numel = 1;
    for (uint32_t d = 0; d < ndim; d++) b->shape[d] = shape[d], b->numel *= shape[d];
    size_t es = is_float(dtype) ? ms_size(ms_of(dtype)) : 8;
    b->size = (size_t)b->numel * es;
    b->bytes = malloc(b->size ? b->size : 1);
    assert_non_null(b->bytes);
    uint64_t s = seed;
    for (uint64_t i = 0; i < b->numel; i++) {
        if (is_float(dtype)) ms_store(ms_of(dtype), ms_uniform(&s, 1.0), b->bytes + i * es);
        else for (size_t k = 0; k < es; k++) b->bytes[i * es + k] = (uint8_t)ms_rng(&s);
    }
}

static void bt_free(btensor *b, size_t n)
{
    for (size_t i = 0; i < n; i++) free(b[i].bytes);
}

static void write_st(const char *path, const btensor *t, size_t n)
{
    lora_st_entry e[16];
    const void *data[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = t[i].name;
        e[i].dtype = t[i].dtype;
        e[i].ndim = t[i].ndim;
        memcpy(e[i].shape, t[i].shape, sizeof t[i].shape);
        e[i].size = t[i].size;
        data[i] = t[i].bytes;
    }
    lora_st_pair meta = {"format", "pt"};
    lora_error err;
    assert_int_equal(lora_st_write_file(NULL, path, NULL, e, (uint32_t)n, &meta, 1, data, &err), LORA_OK);
}

/* ---- running a merge ------------------------------------------------------------------ */

typedef struct {
    const char *base, *out;
    lora_merge_adapter ads[4];
    size_t nad;
    int32_t dtype;
    uint32_t threads, flags;
    const lora_merge_kernels *k;
    const lora_io *io;
    int (*fail_write)(void *);
    void *fail_ctx;
    uint64_t block;
    lora_merge_report rep;
    lora_error err;
} mrun;

static void mrun_init(mrun *r, const char *base, const char *out)
{
    memset(r, 0, sizeof *r);
    r->base = base;
    r->out = out;
    r->dtype = -1;
    r->threads = 2;
    r->block = SMALL_BLOCK;
}

static void mrun_adapter(mrun *r, const char *path, float weight)
{
    r->ads[r->nad].path = path;
    r->ads[r->nad++].weight = weight;
}

static lora_status mrun_go(mrun *r, int check_only)
{
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    o.base = r->base;
    o.output = r->out;
    o.adapters = r->ads;
    o.adapter_count = r->nad;
    o.dtype = r->dtype;
    o.threads = r->threads;
    o.flags = r->flags;
    lora_merge_hooks h = {r->k, NULL, r->io, r->block, r->fail_write, r->fail_ctx};
    return lora_merge_run(&o, check_only, &h, &r->rep, &r->err);
}

/* The merged file's tensor, which must have `dtype` and `size` bytes. */
static const lora_st_tensor *out_tensor(const lora_st_file *f, const char *name, lora_st_dtype dtype, size_t size)
{
    uint32_t i = lora_st_find(f, name, strlen(name));
    assert_int_not_equal(i, UINT32_MAX);
    assert_int_equal(f->tensors[i].dtype, dtype);
    assert_int_equal(f->tensors[i].size, size);
    return &f->tensors[i];
}

/* One contribution to a target: a module with its weight. */
typedef struct {
    const ms_module *m;
    double weight;
} contrib;

/* W' = W + sum of weight * s * delta (sign -1 for unmerge), checked per element. */
static void check_target(const lora_st_file *f, const btensor *base, lora_st_dtype out_dtype, const contrib *c,
                         size_t nc, double sign)
{
    ms_type bt = ms_of(base->dtype), ot = ms_of(out_dtype);
    const lora_st_tensor *t = out_tensor(f, base->name, out_dtype, (size_t)base->numel * ms_size(ot));
    uint64_t rows = base->shape[0], cols = base->numel / rows;
    ms_tally tally = {0, 0, 0, 0, 0};
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) {
            double v = ms_load(bt, base->bytes + (i * cols + j) * ms_size(bt));
            for (size_t k = 0; k < nc; k++) v += sign * c[k].weight * c[k].m->scale * ms_delta(c[k].m, i, j, cols);
            ms_compare(ot, v, t->data + (i * cols + j) * ms_size(ot), &tally);
        }
    assert_true(ms_tally_ok(ot, &tally, base->name));
}

/* DoRA: m / ||W + sBA|| * (W + sBA), per row, or per column when transposed. */
static void check_dora(const lora_st_file *f, const btensor *base, const ms_module *m)
{
    ms_type bt = ms_of(base->dtype);
    const lora_st_tensor *t = out_tensor(f, base->name, base->dtype, base->size);
    uint64_t rows = base->shape[0], cols = base->numel / rows;
    int percol = ms_module_transposed(m);
    double *v = malloc((size_t)base->numel * sizeof *v), *norm = calloc((size_t)(percol ? cols : rows), sizeof *norm);
    assert_non_null(v);
    assert_non_null(norm);
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) {
            double x = ms_load(bt, base->bytes + (i * cols + j) * ms_size(bt)) + m->scale * ms_delta(m, i, j, cols);
            v[i * cols + j] = x;
            norm[percol ? j : i] += x * x;
        }
    ms_tally tally = {0, 0, 0, 0, 0};
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) {
            uint64_t g = percol ? j : i;
            double want = (double)m->mag[g] / sqrt(norm[g]) * v[i * cols + j];
            ms_compare(bt, want, t->data + (i * cols + j) * ms_size(bt), &tally);
        }
    /* The factor is rounded to fp32 before it multiplies (merge_kernels.h): allow that. */
    if (bt == MS_F32) assert_true(tally.max_rel <= 2e-7);
    else assert_true(ms_tally_ok(bt, &tally, base->name));
    free(v);
    free(norm);
}

static void check_same_bytes(const lora_st_file *f, const btensor *b)
{
    const lora_st_tensor *t = out_tensor(f, b->name, b->dtype, b->size);
    assert_memory_equal(t->data, b->bytes, b->size);
}

static lora_st_file *open_out(const char *path)
{
    lora_st_file *f = NULL;
    lora_error err;
    assert_int_equal(lora_st_open(path, NULL, &f, &err), LORA_OK);
    return f;
}

/* ---- a fixture: base + adapter on disk -------------------------------------------------- */

enum { FX_Q, FX_K, FX_V, FX_NORM, FX_IDS, FX_N };

typedef struct {
    char dir[512], base[600], adapter[600], out[600];
    btensor t[FX_N];
    ms_module m[3];
} fixture;

static void fixture_init(fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    ms_tmpdir(fx->dir, sizeof fx->dir);
    const uint64_t q[2] = {48, 40}, kv[2] = {24, 40}, norm[1] = {40}, ids[2] = {1, 7};
    bt_init(&fx->t[FX_Q], "model.layers.0.self_attn.q_proj.weight", LORA_ST_F16, 2, q, 1);
    bt_init(&fx->t[FX_K], "model.layers.0.self_attn.k_proj.weight", LORA_ST_F32, 2, kv, 2);
    bt_init(&fx->t[FX_V], "model.layers.0.self_attn.v_proj.weight", LORA_ST_BF16, 2, kv, 3);
    bt_init(&fx->t[FX_NORM], "model.layers.0.input_layernorm.weight", LORA_ST_F16, 1, norm, 4);
    bt_init(&fx->t[FX_IDS], "position_ids", LORA_ST_I64, 2, ids, 5);
    ms_path(fx->base, sizeof fx->base, fx->dir, "model.safetensors");
    write_st(fx->base, fx->t, FX_N);
    ms_module_init(&fx->m[0], "model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, 0, 4, 8.0f, 2, q, 0, 0, 11);
    ms_module_init(&fx->m[1], "model.layers.0.self_attn.k_proj", LORA_KIND_LINEAR, 0, 4, 8.0f, 2, kv, 0, 0, 12);
    ms_module_init(&fx->m[2], "model.layers.0.self_attn.v_proj", LORA_KIND_LINEAR, 0, 3, 6.0f, 2, kv, 0, 0, 13);
    ms_path(fx->adapter, sizeof fx->adapter, fx->dir, "adapter.lora");
    assert_int_equal(ms_write_adapter(fx->adapter, fx->m, 3, NULL, 0), LORA_OK);
    ms_path(fx->out, sizeof fx->out, fx->dir, "merged.safetensors");
}

static void fixture_free(fixture *fx)
{
    bt_free(fx->t, FX_N);
    for (int i = 0; i < 3; i++) ms_module_free(&fx->m[i]);
    ms_rmtree(fx->dir);
}

static void check_fixture_output(const fixture *fx, const char *path, double weight, double sign)
{
    lora_st_file *f = open_out(path);
    for (int i = 0; i < 3; i++) {
        contrib c = {&fx->m[i], weight};
        check_target(f, &fx->t[i], fx->t[i].dtype, &c, 1, sign);
    }
    check_same_bytes(f, &fx->t[FX_NORM]);
    check_same_bytes(f, &fx->t[FX_IDS]);
    assert_int_equal(f->meta_count, 1);
    lora_st_free(f);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_every_isa_and_thread_count(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    char first[700] = "";
    for (int isa = LORA_ISA_REF; isa < LORA_ISA_COUNT_; isa++) {
        const lora_merge_kernels *k = lora_merge_kernels_for_isa((lora_isa)isa);
        if (!k) continue;
        for (uint32_t th = 1; th <= 3; th++) {
            char out[700];
            snprintf(out, sizeof out, "%s/m-%s-%u.safetensors", fx.dir, k->name, th);
            mrun r;
            mrun_init(&r, fx.base, out);
            mrun_adapter(&r, fx.adapter, 1.0f);
            r.k = k;
            r.threads = th;
            assert_int_equal(mrun_go(&r, 0), LORA_OK);
            assert_string_equal(r.rep.isa, k->name);
            assert_int_equal(r.rep.merged, 3);
            assert_int_equal(r.rep.copied, 2);
            assert_int_equal(r.rep.modules, 3);
            if (!first[0]) {
                check_fixture_output(&fx, out, 1.0, 1.0);
                snprintf(first, sizeof first, "%s", out);
            } else {
                assert_true(ms_file_equal(first, out));
            }
        }
    }
    fixture_free(&fx);
}

/* fp32 accumulation (PEFT's arithmetic): the same bytes on every ISA and
 * thread count; F16/BF16 within 1 ulp of the float64 reference, and F32
 * within fp32's own bound, 2^-22 (|W| + sum |s B A|) per element
 * (merge_kernels.h: where W and the delta cancel, no fp32 sum does better). */
static void check_f32_bound(const lora_st_file *f, const btensor *base, const ms_module *m)
{
    const lora_st_tensor *t = out_tensor(f, base->name, LORA_ST_F32, base->size);
    uint64_t rows = base->shape[0], cols = base->numel / rows;
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) {
            double w = ms_load(MS_F32, base->bytes + 4 * (i * cols + j)), mag = fabs(w), d = 0;
            for (uint32_t k = 0; k < m->rank; k++) {
                double p = (double)m->scale * m->b[i * m->rank + k] * m->a[k * m->inner + j];
                d += p;
                mag += fabs(p);
            }
            double got = ms_load(MS_F32, t->data + 4 * (i * cols + j));
            assert_true(fabs(got - (w + d)) <= ldexp(mag, -22));
        }
}

static void test_fp32_accumulation(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    char first[700] = "";
    for (int isa = LORA_ISA_REF; isa < LORA_ISA_COUNT_; isa++) {
        const lora_merge_kernels *k = lora_merge_kernels_for_isa((lora_isa)isa);
        if (!k) continue;
        for (uint32_t th = 1; th <= 3; th += 2) {
            char out[700];
            snprintf(out, sizeof out, "%s/f32-%s-%u.safetensors", fx.dir, k->name, th);
            mrun r;
            mrun_init(&r, fx.base, out);
            mrun_adapter(&r, fx.adapter, 1.0f);
            r.k = k;
            r.threads = th;
            r.flags = LORA_MERGE_ACCUMULATE_F32;
            assert_int_equal(mrun_go(&r, 0), LORA_OK);
            if (first[0]) {
                assert_true(ms_file_equal(first, out));
                continue;
            }
            snprintf(first, sizeof first, "%s", out);
            lora_st_file *f = open_out(out);
            contrib cq = {&fx.m[FX_Q], 1.0}, cv = {&fx.m[FX_V], 1.0};
            check_target(f, &fx.t[FX_Q], LORA_ST_F16, &cq, 1, 1.0);
            check_target(f, &fx.t[FX_V], LORA_ST_BF16, &cv, 1, 1.0);
            check_f32_bound(f, &fx.t[FX_K], &fx.m[FX_K]);
            check_same_bytes(f, &fx.t[FX_NORM]);
            lora_st_free(f);
        }
    }
    fixture_free(&fx);
}

static void test_weight_and_unmerge(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    mrun r;
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, fx.adapter, -0.75f);
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    check_fixture_output(&fx, fx.out, -0.75, 1.0);
    /* Unmerge subtracts: W - 2 * s * delta. */
    char un[700];
    snprintf(un, sizeof un, "%s/unmerged.safetensors", fx.dir);
    mrun_init(&r, fx.base, un);
    mrun_adapter(&r, fx.adapter, 2.0f);
    r.flags = LORA_MERGE_UNMERGE;
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    check_fixture_output(&fx, un, 2.0, -1.0);
    fixture_free(&fx);
}

static void test_dtype_conversion(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    static const lora_st_dtype to[] = {LORA_ST_F32, LORA_ST_BF16, LORA_ST_F16};
    static const int32_t opt[] = {LORA_DTYPE_F32, LORA_DTYPE_BF16, LORA_DTYPE_F16};
    for (int d = 0; d < 3; d++) {
        mrun r;
        mrun_init(&r, fx.base, fx.out);
        mrun_adapter(&r, fx.adapter, 1.0f);
        r.dtype = opt[d];
        assert_int_equal(mrun_go(&r, 0), LORA_OK);
        lora_st_file *f = open_out(fx.out);
        for (int i = 0; i < 3; i++) {
            contrib c = {&fx.m[i], 1.0};
            check_target(f, &fx.t[i], to[d], &c, 1, 1.0);
        }
        /* The norm is converted (one rounding of its exact value), ids are copied. */
        const btensor *n = &fx.t[FX_NORM];
        ms_type ot = ms_of(to[d]);
        const lora_st_tensor *t = out_tensor(f, n->name, to[d], (size_t)n->numel * ms_size(ot));
        for (uint64_t i = 0; i < n->numel; i++) {
            uint8_t want[4];
            ms_store(ot, ms_load(MS_F16, n->bytes + 2 * i), want);
            assert_memory_equal(t->data + i * ms_size(ot), want, ms_size(ot));
        }
        check_same_bytes(f, &fx.t[FX_IDS]);
        assert_int_equal(r.rep.converted, to[d] == LORA_ST_F16 ? 0 : 1);
        lora_st_free(f);
    }
    fixture_free(&fx);
}

/* fan_in_fan_out (GPT-2 Conv1D), an embedding and a conv2d, with DoRA on
 * some and a LoRA bias, through 1, 2 and 3 threads. */
static void test_orientations_dora_bias(void **state)
{
    (void)state;
    char dir[512], base[600], ad[600], out[700], first[700] = "";
    ms_tmpdir(dir, sizeof dir);
    const uint64_t fan[2] = {16, 48}, emb[2] = {40, 16}, conv[4] = {8, 4, 3, 3}, lin[2] = {20, 12}, bias[1] = {20},
                   fan2[2] = {12, 32};
    btensor t[7];
    bt_init(&t[0], "h.0.attn.c_attn.weight", LORA_ST_F32, 2, fan, 21);
    bt_init(&t[1], "wte.weight", LORA_ST_BF16, 2, emb, 22);
    bt_init(&t[2], "conv.weight", LORA_ST_F16, 4, conv, 23);
    bt_init(&t[3], "dora.weight", LORA_ST_F32, 2, lin, 24);
    bt_init(&t[4], "dora.bias", LORA_ST_F16, 1, bias, 25);
    bt_init(&t[5], "wte2.weight", LORA_ST_F32, 2, emb, 26);
    bt_init(&t[6], "h.1.mlp.c_fc.weight", LORA_ST_F16, 2, fan2, 27);
    write_st(ms_path(base, sizeof base, dir, "model.safetensors"), t, 7);
    ms_module m[6];
    ms_module_init(&m[0], "h.0.attn.c_attn", LORA_KIND_LINEAR, LORA_MODULE_FAN_IN_FAN_OUT, 4, 16.0f, 2, fan, 0, 0, 31);
    ms_module_init(&m[1], "wte", LORA_KIND_EMBEDDING, 0, 3, 3.0f, 2, emb, 0, 0, 32);
    ms_module_init(&m[2], "conv", LORA_KIND_CONV2D, 0, 2, 4.0f, 4, conv, 0, 0, 33);
    ms_module_init(&m[3], "dora", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, lin, 1, 1, 34);
    ms_module_init(&m[4], "wte2", LORA_KIND_EMBEDDING, 0, 2, 2.0f, 2, emb, 0, 1, 35);
    ms_module_init(&m[5], "h.1.mlp.c_fc", LORA_KIND_LINEAR, LORA_MODULE_FAN_IN_FAN_OUT, 2, 2.0f, 2, fan2, 0, 1, 36);
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), m, 6, NULL, 0), LORA_OK);
    for (uint32_t th = 1; th <= 3; th++) {
        snprintf(out, sizeof out, "%s/out-%u.safetensors", dir, th);
        mrun r;
        mrun_init(&r, base, out);
        mrun_adapter(&r, ad, 1.0f);
        r.threads = th;
        assert_int_equal(mrun_go(&r, 0), LORA_OK);
        assert_int_equal(r.rep.merged, 7);
        if (first[0]) {
            assert_true(ms_file_equal(first, out));
            continue;
        }
        snprintf(first, sizeof first, "%s", out);
        lora_st_file *f = open_out(out);
        for (int i = 0; i < 3; i++) {
            contrib c = {&m[i], 1.0};
            check_target(f, &t[i], t[i].dtype, &c, 1, 1.0);
        }
        check_dora(f, &t[3], &m[3]);
        check_dora(f, &t[5], &m[4]);
        check_dora(f, &t[6], &m[5]);
        /* bias' = bias + s * lora_bias */
        const lora_st_tensor *b = out_tensor(f, "dora.bias", LORA_ST_F16, t[4].size);
        ms_tally tally = {0, 0, 0, 0, 0};
        for (uint64_t j = 0; j < 20; j++)
            ms_compare(MS_F16, ms_load(MS_F16, t[4].bytes + 2 * j) + m[3].scale * (double)m[3].bias[j], b->data + 2 * j,
                       &tally);
        assert_true(ms_tally_ok(MS_F16, &tally, "bias"));
        lora_st_free(f);
    }
    bt_free(t, 7);
    for (int i = 0; i < 6; i++) ms_module_free(&m[i]);
    ms_rmtree(dir);
}

/* Two adapters, overlapping on k: one pass, ranks side by side. A
 * replacement tensor of a third replaces its tensor (F32 into F16: one
 * rounding) and one of the same dtype is copied bit for bit. */
static void test_several_adapters_and_replacements(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    const uint64_t kv[2] = {24, 40}, q[2] = {48, 40};
    ms_module m2[2];
    ms_module_init(&m2[0], "model.layers.0.self_attn.k_proj", LORA_KIND_LINEAR, 0, 2, 4.0f, 2, kv, 0, 0, 41);
    ms_module_init(&m2[1], "model.layers.0.self_attn.v_proj", LORA_KIND_LINEAR, 0, 5, 5.0f, 2, kv, 0, 0, 42);
    char a2[700], a3[700];
    assert_int_equal(ms_write_adapter(ms_path(a2, sizeof a2, fx.dir, "second.lora"), m2, 2, NULL, 0), LORA_OK);
    /* Replacements: q as F32 values, the norm as F16 bytes. */
    btensor rq, rn;
    bt_init(&rq, "model.layers.0.self_attn.q_proj.weight", LORA_ST_F32, 2, q, 77);
    bt_init(&rn, "model.layers.0.input_layernorm.weight", LORA_ST_F16, 1, fx.t[FX_NORM].shape, 78);
    ms_replacement rep[2] = {{rq.name, MS_F32, 2, {48, 40, 0, 0}, rq.bytes}, {rn.name, MS_F16, 1, {40, 0, 0, 0}, rn.bytes}};
    ms_module none;
    memset(&none, 0, sizeof none);
    assert_int_equal(ms_write_adapter(ms_path(a3, sizeof a3, fx.dir, "third.lora"), &none, 0, rep, 2), LORA_OK);
    /* The first adapter without q: write one with k and v only. */
    char a1[700];
    assert_int_equal(ms_write_adapter(ms_path(a1, sizeof a1, fx.dir, "first.lora"), &fx.m[1], 2, NULL, 0), LORA_OK);
    mrun r;
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, a1, 0.5f);
    mrun_adapter(&r, a2, -1.25f);
    mrun_adapter(&r, a3, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    assert_int_equal(r.rep.merged, 2);
    assert_int_equal(r.rep.replaced, 2);
    assert_int_equal(r.rep.modules, 4);
    lora_st_file *f = open_out(fx.out);
    contrib ck[2] = {{&fx.m[1], 0.5}, {&m2[0], -1.25}}, cv[2] = {{&fx.m[2], 0.5}, {&m2[1], -1.25}};
    check_target(f, &fx.t[FX_K], LORA_ST_F32, ck, 2, 1.0);
    check_target(f, &fx.t[FX_V], LORA_ST_BF16, cv, 2, 1.0);
    const lora_st_tensor *tq = out_tensor(f, rq.name, LORA_ST_F16, fx.t[FX_Q].size);
    for (uint64_t i = 0; i < rq.numel; i++) {
        uint8_t want[2];
        ms_store(MS_F16, ms_load(MS_F32, rq.bytes + 4 * i), want);
        assert_memory_equal(tq->data + 2 * i, want, 2);
    }
    check_same_bytes(f, &rn);
    check_same_bytes(f, &fx.t[FX_IDS]);
    lora_st_free(f);
    /* A replacement cannot be unmerged; a tensor cannot be both replaced and merged. */
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, a3, 1.0f);
    r.flags = LORA_MERGE_UNMERGE;
    assert_int_equal(mrun_go(&r, 0), LORA_E_UNSUPPORTED_ADAPTER);
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, fx.adapter, 1.0f);
    mrun_adapter(&r, a3, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(r.err.detail, "q_proj"));
    bt_free(&rq, 1);
    bt_free(&rn, 1);
    for (int i = 0; i < 2; i++) ms_module_free(&m2[i]);
    fixture_free(&fx);
}

/* A DoRA module may not share its tensor, nor be unmerged. */
static void test_dora_refusals(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    const uint64_t q[2] = {48, 40};
    ms_module d;
    ms_module_init(&d, "model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, 0, 2, 2.0f, 2, q, 0, 1, 51);
    char ad[700];
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, fx.dir, "dora.lora"), &d, 1, NULL, 0), LORA_OK);
    mrun r;
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, ad, 1.0f);
    mrun_adapter(&r, fx.adapter, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(r.err.detail, "DoRA"));
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, ad, 1.0f);
    r.flags = LORA_MERGE_UNMERGE;
    assert_int_equal(mrun_go(&r, 0), LORA_E_UNSUPPORTED_ADAPTER);
    assert_string_equal(r.rep.error_path, ad);
    assert_int_equal(ms_count_entries(fx.dir), 3); /* base, adapter, dora.lora */
    ms_module_free(&d);
    fixture_free(&fx);
}

/* ---- errors leave nothing behind --------------------------------------------------------------- */

static void test_shape_mismatch(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    const uint64_t wrong[2] = {48, 36};
    ms_module m;
    ms_module_init(&m, "model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, 0, 2, 2.0f, 2, wrong, 0, 0, 61);
    char ad[700];
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, fx.dir, "wrong.lora"), &m, 1, NULL, 0), LORA_OK);
    mrun r;
    mrun_init(&r, fx.base, fx.out);
    mrun_adapter(&r, fx.adapter, 1.0f);
    mrun_adapter(&r, ad, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_BAD_SHAPE);
    assert_non_null(strstr(r.err.detail, "module 'model.layers.0.self_attn.q_proj'"));
    assert_non_null(strstr(r.err.detail, "[48,40]"));
    assert_non_null(strstr(r.err.detail, "[48,36]"));
    assert_string_equal(r.rep.error_path, ad);
    assert_int_equal(ms_count_entries(fx.dir), 3);
    /* The same through the check alone. */
    assert_int_equal(mrun_go(&r, 1), LORA_E_BAD_SHAPE);
    ms_module_free(&m);
    fixture_free(&fx);
}

static void test_missing_tensor_suggests_prefix(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    /* The base of a headless model: no "model." in front. */
    btensor t[2];
    const uint64_t q[2] = {48, 40}, kv[2] = {24, 40};
    bt_init(&t[0], "layers.0.self_attn.q_proj.weight", LORA_ST_F16, 2, q, 1);
    bt_init(&t[1], "layers.0.self_attn.k_proj.weight", LORA_ST_F16, 2, kv, 2);
    char base[700];
    write_st(ms_path(base, sizeof base, fx.dir, "headless.safetensors"), t, 2);
    mrun r;
    mrun_init(&r, base, fx.out);
    mrun_adapter(&r, fx.adapter, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_NOT_FOUND);
    assert_non_null(strstr(r.err.detail, "module 'model.layers.0.self_attn.q_proj': no base tensor"));
    assert_non_null(strstr(r.err.detail, "'model.' -> ''"));
    assert_non_null(strstr(r.err.detail, "2 more modules miss"));
    assert_int_equal(ms_count_entries(fx.dir), 3);
    /* A rename fixes it but for v, which this base lacks. */
    lora_merge_rename ren = {"model.", ""};
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(fx.adapter);
    o.base = base;
    o.adapters = &a;
    o.adapter_count = 1;
    o.renames = &ren;
    o.rename_count = 1;
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(lora_merge_check(&o, &rep, &err), LORA_E_NOT_FOUND);
    assert_non_null(strstr(err.detail, "v_proj"));
    bt_free(t, 2);
    fixture_free(&fx);
}

static void test_unsupported_dtype(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    btensor t;
    const uint64_t q[2] = {48, 40};
    bt_init(&t, "model.layers.0.self_attn.q_proj.weight", LORA_ST_I64, 2, q, 1);
    char base[700];
    write_st(ms_path(base, sizeof base, fx.dir, "ints.safetensors"), &t, 1);
    char ad[700];
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, fx.dir, "q.lora"), &fx.m[0], 1, NULL, 0), LORA_OK);
    mrun r;
    mrun_init(&r, base, fx.out);
    mrun_adapter(&r, ad, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_UNSUPPORTED_DTYPE);
    assert_non_null(strstr(r.err.detail, "I64"));
    assert_int_equal(ms_count_entries(fx.dir), 4);
    bt_free(&t, 1);
    fixture_free(&fx);
}

static void test_output_never_an_input(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    mrun r;
    mrun_init(&r, fx.base, fx.base);
    mrun_adapter(&r, fx.adapter, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_SAME_FILE);
    assert_string_equal(r.rep.error_path, fx.base);
    mrun_init(&r, fx.base, fx.adapter);
    mrun_adapter(&r, fx.adapter, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_SAME_FILE);
    /* Through a symlink too. */
    char link[700];
    assert_int_equal(symlink(fx.base, ms_path(link, sizeof link, fx.dir, "link.safetensors")), 0);
    mrun_init(&r, fx.base, link);
    mrun_adapter(&r, fx.adapter, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_SAME_FILE);
    assert_int_equal(ms_count_entries(fx.dir), 3);
    /* An existing directory gets a file of the base's name. */
    char sub[700], inside[800];
    assert_int_equal(mkdir(ms_path(sub, sizeof sub, fx.dir, "outdir"), 0777), 0);
    mrun_init(&r, fx.base, sub);
    mrun_adapter(&r, fx.adapter, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    check_fixture_output(&fx, ms_path(inside, sizeof inside, sub, "model.safetensors"), 1.0, 1.0);
    fixture_free(&fx);
}

/* ENOSPC (or EDQUOT, EIO) at the n-th write of output bytes, for every n
 * until the merge gets through, with 3 threads writing: the error is
 * reported and no file is left. Then a failing fsync (through lib/write's
 * I/O table): the same. */
typedef struct {
    atomic_int countdown;
    int err;
} fault;

static int fail_nth(void *ctx)
{
    fault *f = ctx;
    return atomic_fetch_sub(&f->countdown, 1) == 0 ? f->err : 0;
}

static int f_openat(void *c, int dirfd, const char *p, int flags, unsigned mode)
{
    (void)c;
    return lora_io_default()->openat(NULL, dirfd, p, flags, mode);
}
static ssize_t f_write(void *c, int fd, const void *b, size_t n) { (void)c; return lora_io_default()->write(NULL, fd, b, n); }
static int f_fchmod(void *c, int fd, unsigned m) { (void)c; return lora_io_default()->fchmod(NULL, fd, m); }
static int f_fsync(void *c, int fd)
{
    fault *f = c;
    if (atomic_fetch_sub(&f->countdown, 1) == 0) {
        errno = EIO;
        return -1;
    }
    return lora_io_default()->fsync(NULL, fd);
}
static int f_close(void *c, int fd) { (void)c; return lora_io_default()->close(NULL, fd); }
static int f_renameat(void *c, int a, const char *x, int b, const char *y)
{
    (void)c;
    return lora_io_default()->renameat(NULL, a, x, b, y);
}
static int f_unlinkat(void *c, int d, const char *p, int fl) { (void)c; return lora_io_default()->unlinkat(NULL, d, p, fl); }

static void test_disk_full(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    static const int errs[] = {ENOSPC, EDQUOT, EIO};
    fault f;
    int passed = 0;
    for (int n = 0; n < 400 && !passed; n++) {
        atomic_store(&f.countdown, n);
        f.err = errs[n % 3];
        mrun r;
        mrun_init(&r, fx.base, fx.out);
        mrun_adapter(&r, fx.adapter, 1.0f);
        r.fail_write = fail_nth;
        r.fail_ctx = &f;
        r.threads = 3;
        r.block = 16; /* many small writes */
        lora_status st = mrun_go(&r, 0);
        if (st == LORA_OK) {
            passed = n > 20;
            break;
        }
        assert_int_equal(st, f.err == EIO ? LORA_E_IO : LORA_E_NO_SPACE);
        assert_string_equal(r.rep.error_path, fx.out);
        assert_int_equal(ms_count_entries(fx.dir), 2);
    }
    assert_true(passed);
    check_fixture_output(&fx, fx.out, 1.0, 1.0);
    /* fsync fails: nothing is renamed into place. */
    lora_io io = {f_openat, f_write, f_fchmod, f_fsync, f_close, f_renameat, f_unlinkat, &f, NULL, NULL};
    char out2[700];
    mrun r;
    mrun_init(&r, fx.base, ms_path(out2, sizeof out2, fx.dir, "second.safetensors"));
    mrun_adapter(&r, fx.adapter, 1.0f);
    r.io = &io;
    atomic_store(&f.countdown, 0);
    assert_int_equal(mrun_go(&r, 0), LORA_E_IO);
    assert_non_null(strstr(r.err.detail, "fsync"));
    assert_int_equal(ms_count_entries(fx.dir), 3);
    fixture_free(&fx);
}

static void test_bad_options(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    mrun r;
    mrun_init(&r, fx.base, fx.out);
    assert_int_equal(mrun_go(&r, 0), LORA_E_INVALID_ARGUMENT); /* no adapter */
    mrun_adapter(&r, fx.adapter, NAN);
    assert_int_equal(mrun_go(&r, 0), LORA_E_INVALID_ARGUMENT);
    r.ads[0].weight = 1.0f;
    r.dtype = LORA_DTYPE_Q8_0;
    assert_int_equal(mrun_go(&r, 0), LORA_E_INVALID_ARGUMENT);
    r.dtype = -1;
    r.flags = 0x80;
    assert_int_equal(mrun_go(&r, 0), LORA_E_INVALID_ARGUMENT);
    r.flags = 0;
    r.out = NULL;
    assert_int_equal(mrun_go(&r, 0), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(mrun_go(&r, 1), LORA_OK); /* a check needs no output */
    assert_int_equal(lora_merge(NULL, NULL, NULL), LORA_E_INVALID_ARGUMENT);
    /* A missing adapter and a missing base name their file. */
    r.out = fx.out;
    r.ads[0].path = "/nonexistent/adapter.lora";
    assert_int_not_equal(mrun_go(&r, 0), LORA_OK);
    assert_string_equal(r.rep.error_path, "/nonexistent/adapter.lora");
    r.ads[0].path = fx.adapter;
    r.base = "/nonexistent/model.safetensors";
    assert_int_equal(mrun_go(&r, 0), LORA_E_IO);
    assert_string_equal(r.rep.error_path, "/nonexistent/model.safetensors");
    /* A base that is neither safetensors nor GGUF, and a Git LFS pointer. */
    r.base = fx.adapter;
    assert_int_equal(mrun_go(&r, 0), LORA_E_UNKNOWN_FORMAT);
    assert_string_equal(r.rep.error_path, fx.adapter);
    char lfs[700];
    FILE *f = fopen(ms_path(lfs, sizeof lfs, fx.dir, "lfs.safetensors"), "w");
    assert_non_null(f);
    fprintf(f, "version https://git-lfs.github.com/spec/v1\noid sha256:%064d\nsize 2200119632\n", 0);
    fclose(f);
    r.base = lfs;
    assert_int_equal(mrun_go(&r, 0), LORA_E_LFS_POINTER);
    assert_int_equal(unlink(lfs), 0);
    assert_int_equal(ms_count_entries(fx.dir), 2);
    fixture_free(&fx);
}

/* ---- check, progress, kohya, shards ------------------------------------------------------------ */

typedef struct {
    uint64_t last_bytes, total;
    uint32_t calls, last_done, end;
} progress_log;

static void on_progress(void *opaque, const lora_merge_progress *p)
{
    progress_log *l = opaque;
    assert_true(p->bytes_done >= l->last_bytes);
    assert_true(p->tensors_done >= l->last_done);
    assert_true(p->bytes_done <= p->bytes_total);
    l->last_bytes = p->bytes_done;
    l->last_done = p->tensors_done;
    l->total = p->bytes_total;
    l->calls++;
    if (p->tensors_done == p->tensors_total) l->end++;
}

static void test_check_and_progress(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx);
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(fx.adapter);
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    o.base = fx.base;
    o.adapters = &a;
    o.adapter_count = 1;
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(lora_merge_check(&o, &rep, &err), LORA_OK);
    assert_int_equal(rep.modules, 3);
    assert_int_equal(rep.merged, 3);
    assert_int_equal(rep.tensors, FX_N);
    assert_string_equal(rep.base_format, "safetensors");
    assert_int_equal(ms_count_entries(fx.dir), 2);
    progress_log l = {0, 0, 0, 0, 0};
    o.output = fx.out;
    o.progress = on_progress;
    o.progress_opaque = &l;
    o.threads = 1;
    assert_int_equal(lora_merge(&o, &rep, &err), LORA_OK);
    assert_true(l.calls >= 1);
    assert_int_equal(l.end, 1);
    assert_int_equal(l.last_bytes, l.total);
    assert_true(rep.bytes_out > l.total); /* headers too */
    struct stat st;
    assert_int_equal(stat(fx.out, &st), 0);
    assert_int_equal((uint64_t)st.st_size, rep.bytes_out);
    check_fixture_output(&fx, fx.out, 1.0, 1.0);
    fixture_free(&fx);
}

static void test_kohya_names(void **state)
{
    (void)state;
    char dir[512], base[600], ad[600], out[600];
    ms_tmpdir(dir, sizeof dir);
    const uint64_t s[2] = {8, 12}, b[1] = {8};
    btensor t[3];
    bt_init(&t[0], "down_blocks.0.attentions.0.proj_in.weight", LORA_ST_F16, 2, s, 1);
    bt_init(&t[1], "down_blocks.0.attentions.0.proj_in.bias", LORA_ST_F16, 1, b, 2);
    bt_init(&t[2], "mid_block.resnets.0.conv1.weight", LORA_ST_F16, 2, s, 3);
    write_st(ms_path(base, sizeof base, dir, "unet.safetensors"), t, 3);
    ms_module m;
    ms_module_init(&m, "lora_unet_down_blocks_0_attentions_0_proj_in", LORA_KIND_LINEAR, 0, 2, 1.0f, 2, s, 1, 0, 5);
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "k.lora"), &m, 1, NULL, 0), LORA_OK);
    mrun r;
    mrun_init(&r, base, ms_path(out, sizeof out, dir, "out.safetensors"));
    mrun_adapter(&r, ad, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    assert_int_equal(r.rep.merged, 2); /* weight and bias */
    lora_st_file *f = open_out(out);
    contrib c = {&m, 1.0};
    check_target(f, &t[0], LORA_ST_F16, &c, 1, 1.0);
    check_same_bytes(f, &t[2]);
    lora_st_free(f);
    bt_free(t, 3);
    ms_module_free(&m);
    ms_rmtree(dir);
}

static void test_sharded(void **state)
{
    (void)state;
    char dir[512], in[600], outdir[600], p[800];
    ms_tmpdir(dir, sizeof dir);
    ms_path(in, sizeof in, dir, "model");
    assert_int_equal(mkdir(in, 0777), 0);
    const uint64_t q[2] = {32, 24}, n[1] = {24};
    btensor t[4];
    bt_init(&t[0], "model.layers.0.self_attn.q_proj.weight", LORA_ST_BF16, 2, q, 1);
    bt_init(&t[1], "model.layers.0.input_layernorm.weight", LORA_ST_BF16, 1, n, 2);
    bt_init(&t[2], "model.layers.1.self_attn.q_proj.weight", LORA_ST_BF16, 2, q, 3);
    bt_init(&t[3], "model.norm.weight", LORA_ST_BF16, 1, n, 4);
    write_st(ms_path(p, sizeof p, in, "model-00001-of-00002.safetensors"), t, 2);
    write_st(ms_path(p, sizeof p, in, "model-00002-of-00002.safetensors"), t + 2, 2);
    FILE *f = fopen(ms_path(p, sizeof p, in, "model.safetensors.index.json"), "w");
    assert_non_null(f);
    fprintf(f, "{\n  \"metadata\": {\"total_size\": 3168, \"note\": \"kept\"},\n  \"weight_map\": {\n"
               "    \"model.layers.0.input_layernorm.weight\": \"model-00001-of-00002.safetensors\",\n"
               "    \"model.layers.0.self_attn.q_proj.weight\": \"model-00001-of-00002.safetensors\",\n"
               "    \"model.layers.1.self_attn.q_proj.weight\": \"model-00002-of-00002.safetensors\",\n"
               "    \"model.norm.weight\": \"model-00002-of-00002.safetensors\"\n  }\n}\n");
    fclose(f);
    ms_module m[2];
    ms_module_init(&m[0], "model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, q, 0, 0, 7);
    ms_module_init(&m[1], "model.layers.1.self_attn.q_proj", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, q, 0, 0, 8);
    char ad[700];
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), m, 2, NULL, 0), LORA_OK);
    mrun r;
    mrun_init(&r, in, ms_path(outdir, sizeof outdir, dir, "merged"));
    mrun_adapter(&r, ad, 1.0f);
    r.dtype = LORA_DTYPE_F32;
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    assert_int_equal(r.rep.shards, 2);
    assert_string_equal(r.rep.base_format, "safetensors-sharded");
    assert_int_equal(ms_count_entries(outdir), 3);
    for (int s = 0; s < 2; s++) {
        lora_st_file *sf = open_out(ms_path(p, sizeof p, outdir, s ? "model-00002-of-00002.safetensors"
                                                                   : "model-00001-of-00002.safetensors"));
        assert_int_equal(sf->tensor_count, 2);
        contrib c = {&m[s], 1.0};
        check_target(sf, &t[2 * s], LORA_ST_F32, &c, 1, 1.0);
        lora_st_free(sf);
    }
    /* The index: same map, metadata kept, total_size of the F32 output. */
    size_t size = 0;
    FILE *ix = fopen(ms_path(p, sizeof p, outdir, "model.safetensors.index.json"), "r");
    assert_non_null(ix);
    char text[2048];
    size = fread(text, 1, sizeof text - 1, ix);
    text[size] = '\0';
    fclose(ix);
    assert_non_null(strstr(text, "\"total_size\": 6336"));
    assert_non_null(strstr(text, "\"note\": \"kept\""));
    assert_non_null(strstr(text, "\"model.norm.weight\": \"model-00002-of-00002.safetensors\""));
    /* Into the base directory itself: refused before anything is written. */
    mrun_init(&r, in, in);
    mrun_adapter(&r, ad, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_SAME_FILE);
    assert_int_equal(ms_count_entries(in), 3);
    /* An index naming a file outside the directory is refused. */
    f = fopen(ms_path(p, sizeof p, in, "model.safetensors.index.json"), "w");
    assert_non_null(f);
    fprintf(f, "{\"weight_map\": {\"model.norm.weight\": \"../a.lora\"}}");
    fclose(f);
    mrun_init(&r, in, outdir);
    mrun_adapter(&r, ad, 1.0f);
    assert_int_equal(mrun_go(&r, 0), LORA_E_BAD_JSON);
    bt_free(t, 4);
    for (int i = 0; i < 2; i++) ms_module_free(&m[i]);
    ms_rmtree(dir);
}

/* Resident memory while merging a 96 MiB base stays at a few MiB: the
 * mapping's pages are released behind the threads (VmHWM, reset first
 * through /proc/self/clear_refs). */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = strtol(line + strlen(key), NULL, 10);
    if (f) fclose(f);
    return v;
}

static void test_memory_bounded(void **state)
{
    (void)state;
    char dir[512], base[600], ad[600], out[600];
    ms_tmpdir(dir, sizeof dir);
    btensor t[2];
    memset(t, 0, sizeof t);
    const uint64_t big[2] = {4096, 8192}, copy[2] = {2048, 8192};
    for (int i = 0; i < 2; i++) {
        snprintf(t[i].name, sizeof t[i].name, i ? "lm_head.weight" : "model.layers.0.mlp.up_proj.weight");
        t[i].dtype = LORA_ST_F16;
        t[i].ndim = 2;
        memcpy(t[i].shape, i ? copy : big, sizeof big);
        t[i].numel = t[i].shape[0] * t[i].shape[1];
        t[i].size = (size_t)t[i].numel * 2;
        t[i].bytes = malloc(t[i].size);
        assert_non_null(t[i].bytes);
        for (size_t k = 0; k < t[i].size; k += 2) t[i].bytes[k] = (uint8_t)k, t[i].bytes[k + 1] = 0x3c;
    }
    write_st(ms_path(base, sizeof base, dir, "model.safetensors"), t, 2);
    bt_free(t, 2);
    ms_module m;
    ms_module_init(&m, "model.layers.0.mlp.up_proj", LORA_KIND_LINEAR, 0, 4, 4.0f, 2, big, 0, 0, 9);
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), &m, 1, NULL, 0), LORA_OK);
    ms_module_free(&m);
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (!cr || fputs("5", cr) < 0 || fclose(cr) != 0) {
        ms_rmtree(dir);
        skip(); /* no way to reset the peak here */
        return;
    }
    long before = status_kib("VmRSS:");
    mrun r;
    mrun_init(&r, base, ms_path(out, sizeof out, dir, "out.safetensors"));
    mrun_adapter(&r, ad, 1.0f);
    r.block = 0; /* the default blocks */
    assert_int_equal(mrun_go(&r, 0), LORA_OK);
    long grew = status_kib("VmHWM:") - before;
    fprintf(stderr, "# merge of a 96 MiB base: resident memory grew by %ld KiB\n", grew);
    assert_true(grew < 24 * 1024);
    ms_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_isa_and_thread_count),
        cmocka_unit_test(test_fp32_accumulation),
        cmocka_unit_test(test_weight_and_unmerge),
        cmocka_unit_test(test_dtype_conversion),
        cmocka_unit_test(test_orientations_dora_bias),
        cmocka_unit_test(test_several_adapters_and_replacements),
        cmocka_unit_test(test_dora_refusals),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_missing_tensor_suggests_prefix),
        cmocka_unit_test(test_unsupported_dtype),
        cmocka_unit_test(test_output_never_an_input),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_check_and_progress),
        cmocka_unit_test(test_kohya_names),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_memory_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
