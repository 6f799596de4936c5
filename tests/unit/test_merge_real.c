/*
 * test_merge_real.c - the real adapters of ../shared/fixtures/real merged
 * into bases of matching shape that the test generates, and the real tiny
 * GPT-2 base merged with a generated adapter.
 *
 * The adapters go in as they are (PEFT and MLX directories: lora_merge
 * imports them on the fly). The oracle reads the adapter's own safetensors
 * file, not the import, and recomputes sampled elements in float64:
 *   PEFT  delta[o][i] = s * sum_k B[o][k] A[k][i]     (A [r,in], B [out,r]),
 *         stored transposed for fan_in_fan_out (GPT-2 Conv1D, base [in,out]);
 *   MLX   delta[o][i] = scale * sum_k b[k][o] a[i][k] (a [in,r], b [r,out]).
 * Scales are those of each adapter_config.json. Fixtures missing: skip, or
 * fail when $CI is set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "lora_ops.h"
#include "merge_support.h"

#define SAMPLES 48 /* elements checked per module */

typedef struct {
    char name[160];             /* module */
    uint64_t out, in, r;
    const uint8_t *a, *b;       /* F32 bytes in the adapter file (maybe unaligned) */
    int mlx;
} rmod;

static double f32_at(const uint8_t *p, uint64_t i) { return ms_load(MS_F32, p + 4 * i); }

static double rdelta(const rmod *m, uint64_t o, uint64_t i)
{
    double d = 0;
    for (uint64_t k = 0; k < m->r; k++)
        d += m->mlx ? f32_at(m->b, k * m->out + o) * f32_at(m->a, i * m->r + k)
                    : f32_at(m->b, o * m->r + k) * f32_at(m->a, k * m->in + i);
    return d;
}

static int ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k || strcmp(s + n - k, suffix) != 0) return 0;
    *stem = n - k;
    return 1;
}

/* The modules of a PEFT or MLX adapter file, from its A tensors. */
static size_t load_modules(const lora_st_file *f, int mlx, rmod *out, size_t cap)
{
    const char *sa = mlx ? ".lora_a" : ".lora_A.weight", *sb = mlx ? ".lora_b" : ".lora_B.weight";
    const char *prefix = mlx ? "" : "base_model.model.";
    size_t n = 0;
    for (uint32_t i = 0; i < f->tensor_count; i++) {
        size_t stem;
        const lora_st_tensor *t = &f->tensors[i];
        if (!ends_with(t->name, sa, &stem)) continue;
        assert_true(n < cap);
        assert_int_equal(t->dtype, LORA_ST_F32);
        rmod *m = &out[n++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%.*s", (int)(stem - strlen(prefix)), t->name + strlen(prefix));
        char bname[256];
        snprintf(bname, sizeof bname, "%.*s%s", (int)stem, t->name, sb);
        uint32_t bi = lora_st_find(f, bname, strlen(bname));
        assert_int_not_equal(bi, UINT32_MAX);
        const lora_st_tensor *b = &f->tensors[bi];
        m->mlx = mlx;
        m->a = t->data;
        m->b = b->data;
        m->r = mlx ? t->shape[1] : t->shape[0];
        m->in = mlx ? t->shape[0] : t->shape[1];
        m->out = mlx ? b->shape[1] : b->shape[0];
    }
    return n;
}

/* A BF16 base with one tensor per module (all reading the same seeded
 * buffer), plus an untouched lm_head. */
typedef struct {
    char dir[512], path[600], out[600];
    uint8_t *buf;
    uint64_t buf_elems;
} rbase;

static void make_base(rbase *b, const rmod *m, size_t n, int fan)
{
    ms_tmpdir(b->dir, sizeof b->dir);
    b->buf_elems = 16;
    for (size_t i = 0; i < n; i++)
        if (m[i].out * m[i].in > b->buf_elems) b->buf_elems = m[i].out * m[i].in;
    b->buf = malloc((size_t)b->buf_elems * 2);
    assert_non_null(b->buf);
    uint64_t s = 99;
    for (uint64_t i = 0; i < b->buf_elems; i++) ms_store(MS_BF16, ms_uniform(&s, 0.1), b->buf + 2 * i);
    lora_st_entry *e = calloc(n + 1, sizeof *e);
    const void **data = calloc(n + 1, sizeof *data);
    char (*names)[192] = calloc(n + 1, sizeof *names);
    assert_non_null(e);
    assert_non_null(data);
    assert_non_null(names);
    for (size_t i = 0; i <= n; i++) {
        if (i < n) snprintf(names[i], sizeof names[i], "%s.weight", m[i].name);
        else snprintf(names[i], sizeof names[i], "lm_head.weight");
        e[i].name = names[i];
        e[i].dtype = LORA_ST_BF16;
        e[i].ndim = 2;
        e[i].shape[0] = i < n ? (fan ? m[i].in : m[i].out) : 4;
        e[i].shape[1] = i < n ? (fan ? m[i].out : m[i].in) : 4;
        e[i].size = e[i].shape[0] * e[i].shape[1] * 2;
        data[i] = b->buf;
    }
    lora_error err;
    ms_path(b->path, sizeof b->path, b->dir, "model.safetensors");
    assert_int_equal(lora_st_write_file(NULL, b->path, NULL, e, (uint32_t)n + 1, NULL, 0, data, &err), LORA_OK);
    ms_path(b->out, sizeof b->out, b->dir, "merged.safetensors");
    free(e);
    free(data);
    free(names);
}

static void free_base(rbase *b)
{
    free(b->buf);
    ms_rmtree(b->dir);
}

static void check_sampled(const rbase *b, const rmod *m, size_t n, int fan, double scale)
{
    lora_st_file *f = NULL;
    lora_error err;
    assert_int_equal(lora_st_open(b->out, NULL, &f, &err), LORA_OK);
    ms_tally tally = {0, 0, 0, 0, 0};
    uint64_t s = 5;
    for (size_t k = 0; k < n; k++) {
        char name[192];
        snprintf(name, sizeof name, "%s.weight", m[k].name);
        uint32_t ti = lora_st_find(f, name, strlen(name));
        assert_int_not_equal(ti, UINT32_MAX);
        const lora_st_tensor *t = &f->tensors[ti];
        assert_int_equal(t->dtype, LORA_ST_BF16);
        uint64_t rows = fan ? m[k].in : m[k].out, cols = fan ? m[k].out : m[k].in;
        assert_int_equal(t->shape[0], rows);
        assert_int_equal(t->shape[1], cols);
        for (int q = 0; q < SAMPLES; q++) {
            uint64_t i = ms_rng(&s) % rows, j = ms_rng(&s) % cols, at = i * cols + j;
            double d = fan ? rdelta(&m[k], j, i) : rdelta(&m[k], i, j);
            ms_compare(MS_BF16, ms_load(MS_BF16, b->buf + 2 * at) + scale * d, t->data + 2 * at, &tally);
        }
    }
    assert_true(ms_tally_ok(MS_BF16, &tally, b->out));
    uint32_t lm = lora_st_find(f, "lm_head.weight", 14);
    assert_int_not_equal(lm, UINT32_MAX);
    assert_memory_equal(f->tensors[lm].data, b->buf, 32);
    lora_st_free(f);
}

static lora_status merge_dir(const rbase *b, const char *adapter, lora_merge_report *rep)
{
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(adapter);
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    o.base = b->path;
    o.adapters = &a;
    o.adapter_count = 1;
    o.output = b->out;
    lora_error err;
    lora_status st = lora_merge(&o, rep, &err);
    if (st != LORA_OK) fprintf(stderr, "merge %s: %s: %s\n", adapter, lora_status_name(st), err.detail);
    return st;
}

static const char *fixture(char *buf, size_t cap, const char *rel)
{
    const char *root = ms_fixtures();
    if (!root) {
        if (getenv("CI")) fail_msg("fixtures missing (CI is set)");
        return NULL;
    }
    snprintf(buf, cap, "%s/%s", root, rel);
    return buf;
}

static void run_real(const char *rel_dir, const char *weights, int mlx, int fan, double scale, size_t want_modules)
{
    char dir[700], file[800];
    if (!fixture(dir, sizeof dir, rel_dir)) {
        skip();
        return;
    }
    snprintf(file, sizeof file, "%s/%s", dir, weights);
    lora_st_file *f = NULL;
    lora_error err;
    assert_int_equal(lora_st_open(file, NULL, &f, &err), LORA_OK);
    rmod *m = calloc(want_modules, sizeof *m);
    assert_non_null(m);
    size_t n = load_modules(f, mlx, m, want_modules);
    assert_int_equal(n, want_modules);
    rbase b;
    make_base(&b, m, n, fan);
    lora_merge_report rep;
    assert_int_equal(merge_dir(&b, dir, &rep), LORA_OK);
    assert_int_equal(rep.merged, n);
    assert_int_equal(rep.copied, 1);
    check_sampled(&b, m, n, fan, scale);
    free_base(&b);
    free(m);
    lora_st_free(f);
}

/* GPT-2 Conv1D: fan_in_fan_out, base [in, out]; r 8, alpha 32: s = 4. */
static void test_peft_gpt2_fan_in_fan_out(void **state)
{
    (void)state;
    run_real("peft-gpt2-tigrinya", "adapter_model.safetensors", 0, 1, 4.0, 36);
}

/* Gemma 3 with grouped-query attention (v_proj out 256); r 4, alpha 4: s = 1. */
static void test_peft_gemma3_gqa(void **state)
{
    (void)state;
    run_real("peft-gemma3-gqa", "adapter_model.safetensors", 0, 0, 1.0, 36);
}

/* MLX (lora_a [in, r], lora_b [r, out]); scale 10 from its config. */
static void test_mlx_qwen(void **state)
{
    (void)state;
    run_real("mlx-qwen2.5", "adapters.safetensors", 1, 0, 10.0, 8);
}

/* The real tiny GPT-2 base (n_embd 2, Conv1D weights [in, out], F32) with a
 * generated fan_in_fan_out adapter, a LoRA bias on c_attn included. */
static void test_real_gpt2_base(void **state)
{
    (void)state;
    char base[700], dir[512], ad[600], out[600];
    if (!fixture(base, sizeof base, "base-tiny-gpt2/model.safetensors")) {
        skip();
        return;
    }
    ms_tmpdir(dir, sizeof dir);
    static const char *const names[] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    const uint64_t shapes[4][2] = {{2, 6}, {2, 2}, {2, 8}, {8, 2}};
    ms_module m[8];
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 4; i++) {
            char name[96];
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, names[i]);
            ms_module_init(&m[4 * l + i], name, LORA_KIND_LINEAR, LORA_MODULE_FAN_IN_FAN_OUT, 2, 4.0f, 2, shapes[i],
                           i == 0, 0, 500 + (uint64_t)(4 * l + i));
        }
    assert_int_equal(ms_write_adapter(ms_path(ad, sizeof ad, dir, "a.lora"), m, 8, NULL, 0), LORA_OK);
    lora_merge_adapter a = LORA_MERGE_ADAPTER_INIT(ad);
    lora_merge_options o = LORA_MERGE_OPTIONS_INIT;
    o.base = base;
    o.adapters = &a;
    o.adapter_count = 1;
    o.output = ms_path(out, sizeof out, dir, "merged.safetensors");
    lora_merge_report rep;
    lora_error err;
    assert_int_equal(lora_merge(&o, &rep, &err), LORA_OK);
    assert_int_equal(rep.merged, 10); /* 8 weights, 2 biases */
    lora_st_file *b = NULL, *f = NULL;
    assert_int_equal(lora_st_open(base, NULL, &b, &err), LORA_OK);
    assert_int_equal(lora_st_open(out, NULL, &f, &err), LORA_OK);
    assert_int_equal(f->tensor_count, b->tensor_count);
    for (uint32_t i = 0; i < b->tensor_count; i++) {
        const lora_st_tensor *x = &b->tensors[i];
        const lora_st_tensor *y = &f->tensors[lora_st_find(f, x->name, x->name_length)];
        int target = -1, bias = 0;
        for (int k = 0; k < 8; k++) {
            size_t n = strlen(m[k].name);
            if (strncmp(x->name, m[k].name, n) == 0 && !strcmp(x->name + n, ".weight")) target = k;
            if (strncmp(x->name, m[k].name, n) == 0 && !strcmp(x->name + n, ".bias") && m[k].bias) target = k, bias = 1;
        }
        if (target < 0) {
            assert_memory_equal(y->data, x->data, (size_t)x->size);
            continue;
        }
        ms_tally tally = {0, 0, 0, 0, 0};
        uint64_t cols = bias ? x->numel : x->shape[1];
        for (uint64_t e = 0; e < x->numel; e++) {
            double d = bias ? (double)m[target].bias[e] : ms_delta(&m[target], e / cols, e % cols, cols);
            ms_compare(MS_F32, f32_at(x->data, e) + m[target].scale * d, y->data + 4 * e, &tally);
        }
        assert_true(ms_tally_ok(MS_F32, &tally, x->name));
    }
    lora_st_free(b);
    lora_st_free(f);
    for (int i = 0; i < 8; i++) ms_module_free(&m[i]);
    ms_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_gpt2_fan_in_fan_out),
        cmocka_unit_test(test_peft_gemma3_gqa),
        cmocka_unit_test(test_mlx_qwen),
        cmocka_unit_test(test_real_gpt2_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
