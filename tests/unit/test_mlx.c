/*
 * test_mlx.c - mlx-lm adapters: import (lib/ops/mlx_import.c) and export
 * (mlx_export.c).
 *
 * Oracles independent of the code under test:
 *   - the real MLX fixtures: every module's A and B blobs are compared bit
 *     for bit with the transposed source tensors, and delta W = scale * B @ A
 *     is compared with a float64 computation done here straight from the
 *     source safetensors bytes (lora_b^T @ lora_a^T * scale);
 *   - MLX -> .lora -> MLX gives back every tensor bit for bit and the
 *     config byte for byte; PEFT -> .lora -> MLX -> .lora keeps every
 *     factor's bytes and the binary32 scale;
 *   - synthetic adapters and .lora files built here with a seeded
 *     generator for DoRA and for each refusal, with exact statuses.
 * Fixtures missing: the fixture tests fail when $CI is set, else skip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "lora_ops.h"
#include "ops/convert.h"
#include "support.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */


static float f32_at(const lora_st_tensor *t, uint64_t i)
{
    float f;
    memcpy(&f, t->data + 4 * i, 4); /* MLX headers are not 8-aligned: data may be unaligned */
    return f;
}

/* ------------------------------------------------------------------------ */
/* real MLX fixtures                                                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *dir;
    uint32_t modules, rank;
    float scale, alpha;
} mlx_fixture;

static const mlx_fixture mlx_fixtures[] = {
    {"mlx-llama3-discollama", 4, 8, 2.0f, 16.0f},
    {"mlx-qwen2.5", 8, 8, 10.0f, 16.0f},
};

/* delta W of one module two ways, in float64:
 *   from the source: scale * sum_k lora_a[i][k] * lora_b[k][o]
 *   from the .lora:  scale * sum_k B[o][k] * A[k][i]
 * Tolerance: the factors were compared bit for bit first, so both sums
 * multiply the same binary32 values exactly (a product of two binary32 is
 * exact in binary64) and add r = 8 terms; any summation order then differs
 * by at most about r * 2^-53 * sum_k |a b| ~ 1e-15 of that magnitude. The
 * bound 1e-12 * scale * sum_k |a b| leaves three orders of margin and is
 * still far below one binary32 ulp of the delta. */
static void check_delta(const lora_st_tensor *la, const lora_st_tensor *lb, const float *A, const float *B, float scale,
                        float lscale, uint32_t r)
{
    uint64_t in = la->shape[0], out = lb->shape[1];
    double worst = 0;
    for (uint64_t o = 0; o < out; o++) {
        for (uint64_t i = 0; i < in; i++) {
            double src = 0, mine = 0, mag = 0;
            for (uint32_t k = 0; k < r; k++) {
                double a = f32_at(la, i * r + k), b = f32_at(lb, k * out + o);
                src += a * b;
                mag += fabs(a * b);
                mine += (double)B[o * r + k] * (double)A[(uint64_t)k * in + i];
            }
            src *= scale;
            mine *= lscale;
            double diff = fabs(src - mine), bound = 1e-12 * fabs((double)scale) * mag;
            if (diff > bound) fail_msg("delta[%llu][%llu]: %.17g vs %.17g", (unsigned long long)o,
                                       (unsigned long long)i, src, mine);
            if (diff > worst) worst = diff;
        }
    }
    (void)worst;
}

static float *decode(const lora_reader *r, uint32_t blob, uint64_t *numel)
{
    lora_blob b;
    lora_error e;
    assert_int_equal(lora_reader_blob(r, blob, &b), LORA_OK);
    float *v = malloc(b.numel * sizeof *v);
    assert_non_null(v);
    assert_int_equal(lora_reader_blob_decode_f32(r, blob, v, b.numel, &e), LORA_OK);
    *numel = b.numel;
    return v;
}

static void check_mlx_import(const ts_imported *m, const mlx_fixture *fx)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/adapters.safetensors", fx->dir);
    lora_st_file *src = ts_open_st(ts_fixture(rel));
    lora_file_info fi;
    lora_reader_file_info(m->r, &fi);
    assert_int_equal(fi.module_count, fx->modules);
    assert_int_equal(fi.tensor_count, 0);
    uint32_t seen = 0;
    for (uint32_t t = 0; t < src->tensor_count; t++) {
        const char *key = src->tensors[t].name;
        size_t kl = strlen(key);
        if (kl < 8 || strcmp(key + kl - 7, ".lora_a") != 0) continue;
        char name[512], bkey[520];
        snprintf(name, sizeof name, "%.*s", (int)(kl - 7), key);
        snprintf(bkey, sizeof bkey, "%s.lora_b", name);
        const lora_st_tensor *la = &src->tensors[t], *lb = &src->tensors[lora_st_find(src, bkey, strlen(bkey))];
        uint32_t k;
        lora_module mod;
        assert_int_equal(lora_reader_module_find(m->r, name, &k), LORA_OK);
        assert_int_equal(lora_reader_module(m->r, k, &mod), LORA_OK);
        assert_int_equal(mod.kind, LORA_KIND_LINEAR);
        assert_int_equal(mod.scaling, LORA_SCALING_EXPLICIT);
        assert_int_equal(mod.rank, fx->rank);
        assert_true(ts_same_bits(mod.scale, fx->scale));
        assert_true(ts_same_bits(mod.alpha, fx->alpha));
        assert_int_equal(mod.base_shape[0], lb->shape[1]); /* [out, in] */
        assert_int_equal(mod.base_shape[1], la->shape[0]);
        uint64_t na, nb;
        float *A = decode(m->r, mod.blob_a, &na), *B = decode(m->r, mod.blob_b, &nb);
        assert_int_equal(na, la->numel);
        assert_int_equal(nb, lb->numel);
        uint64_t in = la->shape[0], out = lb->shape[1], r = fx->rank;
        /* A = lora_a^T, B = lora_b^T, every value bit for bit */
        for (uint64_t kk = 0; kk < r; kk++) {
            for (uint64_t i = 0; i < in; i++)
                if (!ts_same_bits(A[kk * in + i], f32_at(la, i * r + kk))) fail_msg("%s: A[%llu][%llu]", name,
                                                                                (unsigned long long)kk,
                                                                                (unsigned long long)i);
            for (uint64_t o = 0; o < out; o++)
                if (!ts_same_bits(B[o * r + kk], f32_at(lb, kk * out + o))) fail_msg("%s: B[%llu][%llu]", name,
                                                                                 (unsigned long long)o,
                                                                                 (unsigned long long)kk);
        }
        check_delta(la, lb, A, B, fx->scale, mod.scale, fx->rank);
        free(A);
        free(B);
        seen++;
    }
    assert_int_equal(seen, fx->modules);
    lora_st_free(src);
}

static void test_mlx_fixtures(void **state)
{
    (void)state;
    ts_need_fixtures();
    for (size_t i = 0; i < sizeof mlx_fixtures / sizeof mlx_fixtures[0]; i++) {
        const mlx_fixture *fx = &mlx_fixtures[i];
        char rel[256];
        lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
        ts_imported m;
        lora_error e;
        snprintf(rel, sizeof rel, "%s/adapters.safetensors", fx->dir);
        if (ts_import_with(lora_import_mlx, ts_fixture(rel), &o, &m, &e) != LORA_OK) fail_msg("%s: %s", rel, e.detail);
        ts_imported_free(&m); /* the file spelling works; the directory one is checked in depth */
        if (ts_import_with(lora_import_mlx, ts_fixture(fx->dir), &o, &m, &e) != LORA_OK)
            fail_msg("%s: %s", fx->dir, e.detail);
        check_mlx_import(&m, fx);
        size_t cn;
        snprintf(rel, sizeof rel, "%s/adapter_config.json", fx->dir);
        uint8_t *cfg = ts_read_file(ts_fixture(rel), &cn);
        lora_meta meta;
        assert_int_equal(lora_reader_meta_find(m.r, LORA_META_SOURCE_FORMAT, &meta), LORA_OK);
        assert_string_equal(meta.string, "mlx");
        assert_int_equal(lora_reader_meta_find(m.r, LORA_META_SOURCE_CONFIG, &meta), LORA_OK);
        assert_int_equal(meta.string_length, cn);
        assert_memory_equal(meta.string, cfg, cn);
        free(cfg);

        /* Back to MLX: tensors bit for bit, the config verbatim. */
        char *dir = ts_make_tmpdir("test_mlx");
        char *out = strdup(ts_join(dir, "out"));
        lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
        if (lora_export_mlx(m.r, out, &o, &wo, &e) != LORA_OK) fail_msg("%s: export: %s", fx->dir, e.detail);
        snprintf(rel, sizeof rel, "%s/adapters.safetensors", fx->dir);
        ts_assert_same_tensors(ts_fixture(rel), ts_join(out, "adapters.safetensors"));
        snprintf(rel, sizeof rel, "%s/adapter_config.json", fx->dir);
        ts_assert_same_file(ts_fixture(rel), ts_join(out, "adapter_config.json"));
        free(out);
        ts_rm_tree(dir);
        ts_imported_free(&m);
    }
}

/* PEFT gemma3 (alpha/r = 1 on 18 layers of q/v) -> .lora -> MLX -> .lora. */
static void test_peft_to_mlx(void **state)
{
    (void)state;
    ts_need_fixtures();
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_imported p, x;
    lora_error e;
    assert_int_equal(ts_import_with(lora_import_peft, ts_fixture("peft-gemma3-gqa"), &o, &p, &e), LORA_OK);
    char *dir = ts_make_tmpdir("test_mlx");
    char *out = strdup(ts_join(dir, "mlx"));
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    if (lora_export_mlx(p.r, out, &o, &wo, &e) != LORA_OK) fail_msg("export: %s", e.detail);
    json_error_t je;
    json_t *c = json_load_file(ts_join(out, "adapter_config.json"), JSON_REJECT_DUPLICATES, &je);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "fine_tune_type")), "lora");
    assert_int_equal(json_integer_value(json_object_get(c, "num_layers")), 18);
    json_t *lp = json_object_get(c, "lora_parameters");
    assert_int_equal(json_integer_value(json_object_get(lp, "rank")), 4);
    assert_true(json_number_value(json_object_get(lp, "scale")) == 1.0);
    assert_true(json_number_value(json_object_get(lp, "alpha")) == 4.0);
    json_t *keys = json_object_get(lp, "keys");
    assert_int_equal(json_array_size(keys), 2);
    json_decref(c);
    lora_st_file *st = ts_open_st(ts_join(out, "adapters.safetensors"));
    assert_int_equal(st->tensor_count, 72);
    const char *qa = "model.layers.0.self_attn.q_proj.lora_a";
    uint32_t k = lora_st_find(st, qa, strlen(qa));
    assert_int_not_equal(k, UINT32_MAX);
    assert_int_equal(st->tensors[k].shape[0], 640); /* [in, r] */
    assert_int_equal(st->tensors[k].shape[1], 4);
    lora_st_free(st);

    if (ts_import_with(lora_import_mlx, out, &o, &x, &e) != LORA_OK) fail_msg("reimport: %s", e.detail);
    lora_file_info fp, fx;
    lora_reader_file_info(p.r, &fp);
    lora_reader_file_info(x.r, &fx);
    assert_int_equal(fp.module_count, fx.module_count);
    for (uint32_t i = 0; i < fp.module_count; i++) {
        lora_module a, b;
        uint32_t j;
        assert_int_equal(lora_reader_module(p.r, i, &a), LORA_OK);
        assert_int_equal(lora_reader_module_find(x.r, a.name, &j), LORA_OK);
        assert_int_equal(lora_reader_module(x.r, j, &b), LORA_OK);
        assert_int_equal(b.scaling, LORA_SCALING_EXPLICIT);
        assert_true(ts_same_bits(a.scale, b.scale));
        assert_int_equal(a.base_shape[0], b.base_shape[0]);
        assert_int_equal(a.base_shape[1], b.base_shape[1]);
        uint32_t ba[2] = {a.blob_a, a.blob_b}, bb[2] = {b.blob_a, b.blob_b};
        for (int t = 0; t < 2; t++) {
            const void *va, *vb;
            size_t sa, sb;
            assert_int_equal(lora_reader_blob_view(p.r, ba[t], &va, &sa), LORA_OK);
            assert_int_equal(lora_reader_blob_view(x.r, bb[t], &vb, &sb), LORA_OK);
            assert_int_equal(sa, sb);
            assert_memory_equal(va, vb, sa);
        }
    }
    ts_imported_free(&x);
    ts_imported_free(&p);
    free(out);
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* synthetic adapters                                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    uint32_t ndim;
    uint64_t shape[3];
} syn_tensor;

static void write_mlx(const char *dir, const char *config, const syn_tensor *t, size_t n, uint64_t seed)
{
    lora_st_entry e[16];
    const void *data[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = t[i].name;
        e[i].dtype = LORA_ST_F32;
        e[i].ndim = t[i].ndim;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t[i].ndim; d++) numel *= (e[i].shape[d] = t[i].shape[d]);
        e[i].size = numel * 4;
        float *p = malloc(e[i].size);
        assert_non_null(p);
        for (uint64_t k = 0; k < numel; k++) p[k] = (float)((int64_t)(ts_rng_next(&seed) % 4001) - 2000) / 512.0f;
        data[i] = p;
    }
    lora_error err;
    const char *path = ts_join(dir, "adapters.safetensors");
    lora_status st = lora_st_write_file(NULL, path, NULL, e, (uint32_t)n, NULL, 0, data, &err);
    if (st != LORA_OK) fail_msg("%s", err.detail);
    for (size_t i = 0; i < n; i++) free((void *)(uintptr_t)data[i]);
    ts_write_text(ts_join(dir, "adapter_config.json"), config);
}

static void expect_mlx_import(const char *dir, lora_status want, const char *needle)
{
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_imported m;
    lora_error e;
    memset(&e, 0, sizeof e);
    lora_status st = ts_import_with(lora_import_mlx, dir, &o, &m, &e);
    if (st != want) fail_msg("%s: got %s (%s)", needle ? needle : "", lora_status_name(st), e.detail);
    if (needle && !strstr(e.detail, needle)) fail_msg("detail '%s' lacks '%s'", e.detail, needle);
    if (st == LORA_OK) ts_imported_free(&m);
}

#define L "model.layers."
static const syn_tensor dora_tensors[] = {
    {L "2.self_attn.q_proj.lora_a", 2, {12, 4}}, {L "2.self_attn.q_proj.lora_b", 2, {4, 10}},
    {L "2.self_attn.q_proj.m", 1, {10}},         {L "3.self_attn.q_proj.lora_a", 2, {12, 4}},
    {L "3.self_attn.q_proj.lora_b", 2, {4, 10}}, {L "3.self_attn.q_proj.m", 1, {10}},
};
#define DORA_CFG "{\"fine_tune_type\": \"dora\", \"num_layers\": 2, \"lora_parameters\": {\"rank\": 4, \"scale\": 3.5}}"

static void test_mlx_dora_and_bad_inputs(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_mlx");
    char *out = strdup(ts_join(dir, "out"));
    assert_int_equal(mkdir(ts_join(dir, "in"), 0755), 0);
    char *in = strdup(ts_join(dir, "in"));
    write_mlx(in, DORA_CFG, dora_tensors, 6, 11);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_imported m;
    lora_error e;
    if (ts_import_with(lora_import_mlx, in, &o, &m, &e) != LORA_OK) fail_msg("%s", e.detail);
    lora_module mod;
    uint32_t k;
    assert_int_equal(lora_reader_module_find(m.r, L "3.self_attn.q_proj", &k), LORA_OK);
    assert_int_equal(lora_reader_module(m.r, k, &mod), LORA_OK);
    assert_int_not_equal(mod.blob_magnitude, LORA_NO_BLOB);
    assert_true(ts_same_bits(mod.scale, 3.5f));
    assert_true(ts_same_bits(mod.alpha, 14.0f)); /* no alpha in the config: scale * r */
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    assert_int_equal(lora_export_mlx(m.r, out, &o, &wo, &e), LORA_OK);
    ts_assert_same_tensors(ts_join(in, "adapters.safetensors"), ts_join(out, "adapters.safetensors"));
    ts_assert_same_file(ts_join(in, "adapter_config.json"), ts_join(out, "adapter_config.json"));
    ts_imported_free(&m);

    /* DoRA tensors under a plain LoRA config, and the reverse. */
    write_mlx(in, "{\"fine_tune_type\": \"lora\", \"lora_parameters\": {\"rank\": 4, \"scale\": 3.5}}", dora_tensors, 6,
              11);
    expect_mlx_import(in, LORA_E_UNSUPPORTED_ADAPTER, "not DoRA");
    write_mlx(in, "{\"use_dora\": true, \"lora_parameters\": {\"rank\": 4, \"scale\": 3.5}}", dora_tensors, 2, 11);
    expect_mlx_import(in, LORA_E_UNSUPPORTED_ADAPTER, "no .m");
    /* DoRA on an embedding: mlx-lm's magnitude runs over tokens. */
    static const syn_tensor emb[] = {
        {"model.embed_tokens.lora_a", 2, {50, 4}}, {"model.embed_tokens.lora_b", 2, {4, 10}},
        {"model.embed_tokens.m", 1, {10}}};
    write_mlx(in, DORA_CFG, emb, 3, 12);
    expect_mlx_import(in, LORA_E_UNSUPPORTED_ADAPTER, "embedding");
    /* An embedding without DoRA is fine, with its base [num, dim]. */
    write_mlx(in, "{\"lora_parameters\": {\"rank\": 4, \"scale\": 1.0}}", emb, 2, 12);
    assert_int_equal(ts_import_with(lora_import_mlx, in, &o, &m, &e), LORA_OK);
    assert_int_equal(lora_reader_module(m.r, 0, &mod), LORA_OK);
    assert_int_equal(mod.kind, LORA_KIND_EMBEDDING);
    assert_int_equal(mod.base_shape[0], 50);
    assert_int_equal(mod.base_shape[1], 10);
    ts_imported_free(&m);

    /* Config problems. */
    write_mlx(in, "{\"lora_parameters\": {\"rank\": 4, \"alpha\": 16}}", dora_tensors, 2, 11);
    expect_mlx_import(in, LORA_E_BAD_JSON, "scale");
    ts_write_text(ts_join(in, "adapter_config.json"), "{\"fine_tune_type\": \"full\", \"lora_parameters\": {\"scale\": 1}}");
    expect_mlx_import(in, LORA_E_UNSUPPORTED_ADAPTER, "full");
    ts_write_text(ts_join(in, "adapter_config.json"), "{\"lora_parameters\": {\"scale\": 1}, \"lora_parameters\": {}}");
    expect_mlx_import(in, LORA_E_DUPLICATE_NAME, NULL);
    ts_write_text(ts_join(in, "adapter_config.json"), "{\"lora_parameters\": {\"rank\": 8, \"scale\": 1}}");
    expect_mlx_import(in, LORA_E_BAD_SHAPE, "lora_parameters.rank");
    /* Tensor problems. */
    write_mlx(in, "{\"lora_parameters\": {\"rank\": 4, \"scale\": 1}}", dora_tensors, 1, 11);
    expect_mlx_import(in, LORA_E_NOT_FOUND, "lora_b");
    static const syn_tensor moe[] = {{L "0.mlp.switch.lora_a", 3, {8, 12, 4}},
                                     {L "0.mlp.switch.lora_b", 3, {8, 4, 10}}};
    write_mlx(in, "{\"lora_parameters\": {\"rank\": 4, \"scale\": 1}}", moe, 2, 11);
    expect_mlx_import(in, LORA_E_UNSUPPORTED_ADAPTER, "switch");
    static const char lfs[] = "version https://git-lfs.github.com/spec/v1\noid sha256:973004d4\nsize 362140\n";
    write_mlx(in, DORA_CFG, dora_tensors, 6, 11);
    ts_write_text(ts_join(in, "adapters.safetensors"), lfs);
    expect_mlx_import(in, LORA_E_LFS_POINTER, "Git LFS");
    free(in);
    free(out);
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* .lora -> MLX refusals                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    lora_kind kind;
    uint32_t rank;
    float scale;
    int bias;
} mdesc;

static uint32_t blob(lora_writer *w, uint32_t ndim, const uint64_t *shape, uint64_t *seed)
{
    size_t n = 1;
    for (uint32_t d = 0; d < ndim; d++) n *= (size_t)shape[d];
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = (float)((int64_t)(ts_rng_next(seed) % 2001) - 1000) / 1024.0f;
    uint32_t idx;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, ndim, shape, v, n, LORA_COMPRESSION_NONE, &idx),
                     LORA_OK);
    free(v);
    return idx;
}

static void build_lora(const mdesc *d, size_t n, const char *tensor, ts_imported *out)
{
    lora_writer *w;
    uint64_t seed = 5;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    for (size_t i = 0; i < n; i++) {
        lora_module_desc m;
        memset(&m, 0, sizeof m);
        m.name = d[i].name;
        m.kind = d[i].kind;
        m.scaling = LORA_SCALING_EXPLICIT;
        m.rank = d[i].rank;
        m.alpha = d[i].scale * (float)d[i].rank;
        m.scale = d[i].scale;
        int conv = d[i].kind == LORA_KIND_CONV2D;
        m.base_ndim = conv ? 4 : 2;
        uint64_t base[4] = {10, 6, 3, 3}, a[4] = {d[i].rank, 6, 3, 3}, b[4] = {10, d[i].rank, 1, 1};
        memcpy(m.base_shape, base, sizeof base);
        m.blob_a = blob(w, m.base_ndim, a, &seed);
        m.blob_b = blob(w, m.base_ndim, b, &seed);
        m.blob_magnitude = LORA_NO_BLOB;
        m.blob_bias = d[i].bias ? blob(w, 1, base, &seed) : LORA_NO_BLOB;
        assert_int_equal(lora_writer_add_module(w, &m, NULL), LORA_OK);
    }
    if (tensor) {
        uint64_t s[1] = {10};
        assert_int_equal(lora_writer_add_tensor(w, tensor, blob(w, 1, s, &seed)), LORA_OK);
    }
    uint64_t size;
    lora_error e;
    assert_int_equal(lora_writer_size(w, &size, &e), LORA_OK);
    out->buf = malloc((size_t)size);
    assert_int_equal(lora_writer_write_buffer(w, out->buf, (size_t)size, &out->size, &e), LORA_OK);
    assert_int_equal(lora_reader_open_buffer(out->buf, out->size, NULL, &out->r, &e), LORA_OK);
    lora_writer_free(w);
}

static void expect_export(const mdesc *d, size_t n, const char *tensor, uint32_t flags, lora_status want,
                          const char *needle, int warnings_want)
{
    ts_imported m;
    build_lora(d, n, tensor, &m);
    char *dir = ts_make_tmpdir("test_mlx");
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_warnings wn = {0, ""};
    o.flags = flags;
    o.warn = ts_collect;
    o.warn_opaque = &wn;
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    lora_error e;
    memset(&e, 0, sizeof e);
    char *out = strdup(ts_join(dir, "out"));
    lora_status st = lora_export_mlx(m.r, out, &o, &wo, &e);
    if (st != want) fail_msg("%s: got %s (%s)", needle, lora_status_name(st), e.detail);
    if (st != LORA_OK && !strstr(e.detail, needle)) fail_msg("detail '%s' lacks '%s'", e.detail, needle);
    if (st == LORA_OK && !strstr(wn.last, needle)) fail_msg("warning '%s' lacks '%s'", wn.last, needle);
    assert_int_equal(wn.count, warnings_want);
    if (st == LORA_OK) {
        lora_st_file *f = ts_open_st(ts_join(out, "adapters.safetensors"));
        assert_int_equal(f->tensor_count, 2 * n); /* lora_a and lora_b only */
        lora_st_free(f);
    }
    free(out);
    ts_rm_tree(dir);
    ts_imported_free(&m);
}

static void test_mlx_export_refusals(void **state)
{
    (void)state;
    const mdesc rank[] = {{L "0.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.0f, 0},
                          {L "0.self_attn.v_proj", LORA_KIND_LINEAR, 8, 2.0f, 0}};
    expect_export(rank, 2, NULL, 0, LORA_E_UNSUPPORTED_ADAPTER, L "0.self_attn.v_proj' has rank 8", 0);
    const mdesc scale[] = {{L "0.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.0f, 0},
                           {L "1.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.5f, 0}};
    expect_export(scale, 2, NULL, 0, LORA_E_UNSUPPORTED_ADAPTER, L "1.self_attn.q_proj' has scale 2.5", 0);
    const mdesc conv[] = {{"down.0.conv", LORA_KIND_CONV2D, 4, 2.0f, 0}};
    expect_export(conv, 1, NULL, 0, LORA_E_UNSUPPORTED_ADAPTER, "conv2d", 0);
    const mdesc outside[] = {{"lm_head", LORA_KIND_LINEAR, 4, 2.0f, 0}};
    expect_export(outside, 1, NULL, 0, LORA_E_UNSUPPORTED_ADAPTER, "layers", 0);
    const mdesc bias[] = {{L "0.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.0f, 1},
                          {L "1.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.0f, 0}};
    expect_export(bias, 2, NULL, 0, LORA_E_UNSUPPORTED_ADAPTER, "LoRA bias", 0);
    expect_export(bias, 2, NULL, LORA_CONVERT_DROP_UNSUPPORTED, LORA_OK, "LoRA bias", 1);
    expect_export(bias + 1, 1, "model.norm.weight", 0, LORA_E_UNSUPPORTED_ADAPTER, "model.norm.weight", 0);
    expect_export(bias + 1, 1, "model.norm.weight", LORA_CONVERT_DROP_UNSUPPORTED, LORA_OK, "model.norm.weight", 1);
    /* Layers 0 and 5 only: mlx-lm would not build LoRA on both. */
    const mdesc gap[] = {{L "0.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.0f, 0},
                         {L "5.self_attn.q_proj", LORA_KIND_LINEAR, 4, 2.0f, 0}};
    expect_export(gap, 2, NULL, 0, LORA_OK, "not contiguous", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlx_fixtures),
        cmocka_unit_test(test_peft_to_mlx),
        cmocka_unit_test(test_mlx_dora_and_bad_inputs),
        cmocka_unit_test(test_mlx_export_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
