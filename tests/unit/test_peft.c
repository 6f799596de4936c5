/*
 * test_peft.c - PEFT and diffusers import, PEFT export (lib/ops/peft_*,
 * diffusers_import.c, adapter_dir.c, adapter_st_out.c).
 *
 * Oracles independent of the code under test:
 *   - the real fixtures under $LORA_FIXTURES_DIR (default
 *     /work/shared/fixtures/real): module names, ranks and shapes are read
 *     back from the source safetensors with the lib/io reader and compared
 *     with the .lora; alphas are the values in the fixtures' configs, typed
 *     in here; every blob's bytes are compared with the source tensor's;
 *     the PEFT export is compared tensor by tensor (names, dtypes, shapes,
 *     bytes) with the original file, and the config byte for byte;
 *   - synthetic adapters written here with a seeded generator, whose
 *     expected per-module rank, alpha and scale are computed in the test
 *     from PEFT's rules (first matching pattern key, alpha/r or
 *     alpha/sqrt(r) in binary32), with the Python regex expectations
 *     checked against Python's re when the test was written;
 *   - each refusal asserts its exact status and the field named in the detail.
 * Fixtures missing: the fixture tests fail when $CI is set, else skip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
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
#include "ops/peft_config.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */


static lora_status export_peft(const ts_imported *m, const char *dir, const lora_convert_options *o, lora_error *err)
{
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    return lora_export_peft(m->r, dir, o, &wo, err);
}

/* ------------------------------------------------------------------------ */
/* real PEFT fixtures                                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *dir;
    uint32_t modules;   /* lora_A keys in the file */
    uint32_t rank;
    float alpha;        /* the config's lora_alpha */
    int fifo;           /* fan_in_fan_out */
    lora_dtype dtype;
} peft_fixture;

static const peft_fixture peft_fixtures[] = {
    {"peft-gemma3-gqa", 36, 4, 4.0f, 0, LORA_DTYPE_F32},
    {"peft-gpt2-tigrinya", 36, 8, 32.0f, 1, LORA_DTYPE_F32},
    {"peft-opencalm-f16-r1", 24, 1, 32.0f, 0, LORA_DTYPE_F16},
    {"peft-sd-unet", 96, 4, 16.0f, 0, LORA_DTYPE_F32},
};

/* Every module of the .lora against the source file: names (prefix
 * stripped), shapes, rank, alpha, scale, bytes. */
static void check_against_source(const ts_imported *m, const char *st_path, const char *prefix, const peft_fixture *fx)
{
    lora_st_file *src = ts_open_st(st_path);
    lora_file_info fi;
    lora_reader_file_info(m->r, &fi);
    assert_int_equal(fi.module_count, fx->modules);
    assert_int_equal(fi.tensor_count, 0);
    assert_int_equal(fi.blob_count, 2 * fx->modules);
    uint32_t seen = 0;
    for (uint32_t i = 0; i < src->tensor_count; i++) {
        const char *key = src->tensors[i].name;
        size_t kl = strlen(key), pl = strlen(prefix), sl = strlen(".lora_A.weight");
        if (kl < pl + sl || strcmp(key + kl - sl, ".lora_A.weight") != 0) continue;
        assert_memory_equal(key, prefix, pl);
        char name[1024], bkey[1100];
        snprintf(name, sizeof name, "%.*s", (int)(kl - pl - sl), key + pl);
        snprintf(bkey, sizeof bkey, "%s%s.lora_B.weight", prefix, name);
        const lora_st_tensor *a = &src->tensors[i];
        const lora_st_tensor *b = &src->tensors[lora_st_find(src, bkey, strlen(bkey))];
        uint32_t mi;
        assert_int_equal(lora_reader_module_find(m->r, name, &mi), LORA_OK);
        lora_module mod;
        assert_int_equal(lora_reader_module(m->r, mi, &mod), LORA_OK);
        assert_int_equal(mod.kind, LORA_KIND_LINEAR);
        assert_int_equal(mod.scaling, LORA_SCALING_ALPHA_OVER_RANK);
        assert_int_equal(mod.rank, fx->rank);
        assert_int_equal(a->shape[0], fx->rank);
        assert_true(ts_same_bits(mod.alpha, fx->alpha));
        assert_true(ts_same_bits(mod.scale, fx->alpha / (float)fx->rank));
        assert_int_equal(mod.flags, fx->fifo ? LORA_MODULE_FAN_IN_FAN_OUT : 0u);
        /* base: [out, in], or [in, out] under fan_in_fan_out */
        assert_int_equal(mod.base_shape[fx->fifo ? 1 : 0], b->shape[0]);
        assert_int_equal(mod.base_shape[fx->fifo ? 0 : 1], a->shape[1]);
        assert_int_equal(mod.blob_magnitude, LORA_NO_BLOB);
        assert_int_equal(mod.blob_bias, LORA_NO_BLOB);
        const lora_st_tensor *src_t[2] = {a, b};
        uint32_t blobs[2] = {mod.blob_a, mod.blob_b};
        for (int k = 0; k < 2; k++) {
            lora_blob bl;
            const void *view;
            size_t vs;
            assert_int_equal(lora_reader_blob(m->r, blobs[k], &bl), LORA_OK);
            assert_int_equal(bl.dtype, fx->dtype);
            assert_int_equal(bl.ndim, 2);
            assert_int_equal(bl.shape[0], src_t[k]->shape[0]);
            assert_int_equal(bl.shape[1], src_t[k]->shape[1]);
            assert_int_equal(lora_reader_blob_view(m->r, blobs[k], &view, &vs), LORA_OK);
            assert_int_equal(vs, src_t[k]->size);
            assert_memory_equal(view, src_t[k]->data, vs);
        }
        seen++;
    }
    assert_int_equal(seen, fx->modules);
    lora_st_free(src);
}

static void check_peft_metadata(const ts_imported *m, const char *cfg_path, const char *base_model, const char *task)
{
    size_t n;
    uint8_t *cfg = ts_read_file(cfg_path, &n);
    lora_meta meta;
    assert_int_equal(lora_reader_meta_find(m->r, LORA_META_SOURCE_FORMAT, &meta), LORA_OK);
    assert_string_equal(meta.string, "peft");
    assert_int_equal(lora_reader_meta_find(m->r, LORA_META_SOURCE_CONFIG, &meta), LORA_OK);
    assert_int_equal(meta.string_length, n);
    assert_memory_equal(meta.string, cfg, n);
    if (base_model) {
        assert_int_equal(lora_reader_meta_find(m->r, LORA_META_BASE_MODEL, &meta), LORA_OK);
        assert_string_equal(meta.string, base_model);
    } else {
        assert_int_equal(lora_reader_meta_find(m->r, LORA_META_BASE_MODEL, &meta), LORA_E_NOT_FOUND);
    }
    if (task) {
        assert_int_equal(lora_reader_meta_find(m->r, LORA_META_TASK_TYPE, &meta), LORA_OK);
        assert_string_equal(meta.string, task);
    } else {
        assert_int_equal(lora_reader_meta_find(m->r, LORA_META_TASK_TYPE, &meta), LORA_E_NOT_FOUND);
    }
    free(cfg);
}

static void test_peft_fixtures(void **state)
{
    (void)state;
    ts_need_fixtures();
    static const char *const base[] = {"google/gemma-3-270m-it", "gpt2", "cyberagent/open-calm-1b", NULL};
    static const char *const task[] = {"CAUSAL_LM", "CAUSAL_LM", "CAUSAL_LM", NULL};
    for (size_t i = 0; i < sizeof peft_fixtures / sizeof peft_fixtures[0]; i++) {
        const peft_fixture *fx = &peft_fixtures[i];
        char rel[256];
        lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
        ts_imported m;
        lora_error e;
        /* Both spellings of the input: the directory and the weights file. */
        for (int by_file = 0; by_file < 2; by_file++) {
            snprintf(rel, sizeof rel, "%s%s", fx->dir, by_file ? "/adapter_model.safetensors" : "");
            lora_status st = ts_import_with(lora_import_peft, ts_fixture(rel), &o, &m, &e);
            if (st != LORA_OK) fail_msg("%s: %s", rel, e.detail);
            snprintf(rel, sizeof rel, "%s/adapter_model.safetensors", fx->dir);
            check_against_source(&m, ts_fixture(rel), "base_model.model.", fx);
            snprintf(rel, sizeof rel, "%s/adapter_config.json", fx->dir);
            check_peft_metadata(&m, ts_fixture(rel), base[i], task[i]);
            if (!by_file) ts_imported_free(&m);
        }
        /* Back to PEFT: every tensor bit for bit, the config byte for byte. */
        char *dir = ts_make_tmpdir("test_peft");
        char *out = strdup(ts_join(dir, "out"));
        if (export_peft(&m, out, &o, &e) != LORA_OK) fail_msg("%s: export: %s", fx->dir, e.detail);
        snprintf(rel, sizeof rel, "%s/adapter_model.safetensors", fx->dir);
        ts_assert_same_tensors(ts_fixture(rel), ts_join(out, "adapter_model.safetensors"));
        /* Laid out as the reference writer lays it out, the whole file matches. */
        ts_assert_same_file(ts_fixture(rel), ts_join(out, "adapter_model.safetensors"));
        snprintf(rel, sizeof rel, "%s/adapter_config.json", fx->dir);
        ts_assert_same_file(ts_fixture(rel), ts_join(out, "adapter_config.json"));
        /* Exporting again over the existing directory replaces both files. */
        assert_int_equal(export_peft(&m, out, &o, &e), LORA_OK);
        ts_assert_same_file(ts_fixture(rel), ts_join(out, "adapter_config.json"));
        free(out);
        ts_rm_tree(dir);
        ts_imported_free(&m);
    }
}

/* diffusers' file holds the same weights as peft-sd-unet, without the
 * prefix, with the PEFT config in the safetensors metadata. */
static void test_diffusers_fixture(void **state)
{
    (void)state;
    ts_need_fixtures();
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_warnings wn = {0, ""};
    o.warn = ts_collect;
    o.warn_opaque = &wn;
    ts_imported d, p;
    lora_error e;
    if (ts_import_with(lora_import_diffusers, ts_fixture("diffusers-sd-unet/pytorch_lora_weights.safetensors"), &o, &d, &e) !=
        LORA_OK)
        fail_msg("diffusers: %s", e.detail);
    assert_int_equal(wn.count, 0);
    check_against_source(&d, ts_fixture("diffusers-sd-unet/pytorch_lora_weights.safetensors"), "", &peft_fixtures[3]);
    assert_int_equal(ts_import_with(lora_import_peft, ts_fixture("peft-sd-unet"), &o, &p, &e), LORA_OK);
    lora_file_info fd, fp;
    lora_reader_file_info(d.r, &fd);
    lora_reader_file_info(p.r, &fp);
    assert_int_equal(fd.module_count, fp.module_count);
    for (uint32_t i = 0; i < fd.module_count; i++) {
        lora_module a, b;
        uint32_t k;
        assert_int_equal(lora_reader_module(d.r, i, &a), LORA_OK);
        assert_int_equal(lora_reader_module_find(p.r, a.name, &k), LORA_OK);
        assert_int_equal(lora_reader_module(p.r, k, &b), LORA_OK);
        assert_int_equal(a.rank, b.rank);
        assert_true(ts_same_bits(a.alpha, b.alpha));
        assert_true(ts_same_bits(a.scale, b.scale));
        assert_int_equal(a.scaling, b.scaling);
        uint32_t ba[2] = {a.blob_a, a.blob_b}, bb[2] = {b.blob_a, b.blob_b};
        for (int j = 0; j < 2; j++) {
            const void *va, *vb;
            size_t sa, sb;
            assert_int_equal(lora_reader_blob_view(d.r, ba[j], &va, &sa), LORA_OK);
            assert_int_equal(lora_reader_blob_view(p.r, bb[j], &vb, &sb), LORA_OK);
            assert_int_equal(sa, sb);
            assert_memory_equal(va, vb, sa);
        }
    }
    lora_meta meta;
    assert_int_equal(lora_reader_meta_find(d.r, LORA_META_SOURCE_FORMAT, &meta), LORA_OK);
    assert_string_equal(meta.string, "diffusers");
    assert_int_equal(lora_reader_meta_find(d.r, LORA_META_SOURCE_CONFIG, &meta), LORA_OK);
    assert_non_null(strstr(meta.string, "\"lora_alpha\": 16"));
    ts_imported_free(&d);
    ts_imported_free(&p);
}

/* ------------------------------------------------------------------------ */
/* synthetic adapters                                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    lora_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[5];
} syn_tensor;

static size_t syn_bytes(const syn_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++) n *= t->shape[d];
    return (size_t)n * lora_st_dtype_size(t->dtype);
}

/* Seeded finite values: F32 in [-1, 1), F16/BF16 with exponents kept
 * below Inf/NaN, other dtypes raw bytes. */
static void syn_fill(const syn_tensor *t, uint8_t *p, uint64_t *seed)
{
    size_t n = syn_bytes(t);
    if (t->dtype == LORA_ST_F32) {
        for (size_t i = 0; i < n; i += 4) {
            float f = (float)((double)(ts_rng_next(seed) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
            memcpy(p + i, &f, 4);
        }
    } else if (t->dtype == LORA_ST_F16 || t->dtype == LORA_ST_BF16) {
        for (size_t i = 0; i < n; i += 2) {
            uint16_t h = (uint16_t)ts_rng_next(seed);
            h &= t->dtype == LORA_ST_F16 ? 0xBBFF : 0xBF7F; /* exponent never all ones */
            memcpy(p + i, &h, 2);
        }
    } else {
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)ts_rng_next(seed);
    }
}

static void write_safetensors(const char *path, const syn_tensor *t, size_t n, const lora_st_pair *meta,
                              uint32_t meta_count, uint64_t seed)
{
    lora_st_entry e[32];
    const void *data[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = t[i].name;
        e[i].dtype = t[i].dtype;
        e[i].ndim = t[i].ndim;
        memcpy(e[i].shape, t[i].shape, sizeof t[i].shape);
        e[i].size = syn_bytes(&t[i]);
        uint8_t *p = malloc(e[i].size ? e[i].size : 1);
        assert_non_null(p);
        syn_fill(&t[i], p, &seed);
        data[i] = p;
    }
    lora_error err;
    lora_status st = lora_st_write_file(NULL, path, NULL, e, (uint32_t)n, meta, meta_count, data, &err);
    if (st != LORA_OK) fail_msg("writing %s: %s", path, err.detail);
    for (size_t i = 0; i < n; i++) free((void *)(uintptr_t)data[i]);
}

static void write_adapter(const char *dir, const char *config, const syn_tensor *t, size_t n, uint64_t seed)
{
    static const lora_st_pair pt[] = {{"format", "pt"}};
    write_safetensors(ts_join(dir, "adapter_model.safetensors"), t, n, pt, 1, seed);
    ts_write_text(ts_join(dir, "adapter_config.json"), config);
}

#define PFX "base_model.model.model.layers."
static const syn_tensor two_modules[] = {
    {PFX "0.self_attn.q_proj.lora_A.weight", LORA_ST_F32, 2, {4, 16}},
    {PFX "0.self_attn.q_proj.lora_B.weight", LORA_ST_F32, 2, {16, 4}},
    {PFX "0.self_attn.v_proj.lora_A.weight", LORA_ST_F32, 2, {4, 16}},
    {PFX "0.self_attn.v_proj.lora_B.weight", LORA_ST_F32, 2, {8, 4}},
};

static char *config_with(const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", \"v_proj\"], "
             "\"bias\": \"none\"%s%s}",
             extra[0] ? ", " : "", extra);
    return buf;
}

/* Import `dir` expecting `want`; the detail must contain `needle`. */
static void expect_import(const char *dir, lora_status want, const char *needle)
{
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_imported m;
    lora_error e;
    memset(&e, 0, sizeof e);
    lora_status st = ts_import_with(lora_import_peft, dir, &o, &m, &e);
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", needle, lora_status_name(st), e.detail, lora_status_name(want));
    if (needle && !strstr(e.detail, needle)) fail_msg("detail '%s' lacks '%s'", e.detail, needle);
    if (st == LORA_OK) ts_imported_free(&m);
}

static void test_refused_flags(void **state)
{
    (void)state;
    static const struct {
        const char *json, *field;
    } refused[] = {
        {"\"use_qalora\": true", "use_qalora"},
        {"\"alora_invocation_tokens\": [1, 2]", "alora_invocation_tokens"},
        {"\"kasa_config\": {}", "kasa_config"},
        {"\"velora_config\": {\"k\": 1}", "velora_config"},
        {"\"monteclora_config\": {}", "monteclora_config"},
        {"\"arrow_config\": {\"top_k\": 2}", "arrow_config"},
        {"\"use_bdlora\": true", "use_bdlora"},
        {"\"use_bdlora\": {\"blocks\": 2}", "use_bdlora"},
        {"\"layer_replication\": [[0, 1]]", "layer_replication"},
        {"\"target_parameters\": [\"mlp.experts.down_proj\"]", "target_parameters"},
        {"\"trainable_token_indices\": [5]", "trainable_token_indices"},
        {"\"megatron_config\": {}", "megatron_config"},
    };
    char *dir = ts_make_tmpdir("test_peft");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        write_adapter(dir, config_with(refused[i].json), two_modules, 4, 1);
        expect_import(dir, LORA_E_UNSUPPORTED_ADAPTER, refused[i].field);
    }
    /* The same fields when unset are fine, as in real configs. */
    static const char *const accepted[] = {
        "\"use_qalora\": false, \"qalora_group_size\": 16", "\"alora_invocation_tokens\": null",
        "\"use_bdlora\": null",  "\"target_parameters\": []",
        "\"target_parameters\": null, \"megatron_config\": null, \"layer_replication\": null",
        "\"init_lora_weights\": \"pissa_niter_4\", \"corda_config\": null, \"loftq_config\": {}",
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        write_adapter(dir, config_with(accepted[i]), two_modules, 4, 1);
        expect_import(dir, LORA_OK, NULL);
    }
    ts_write_text(ts_join(dir, "adapter_config.json"),
               "{\"peft_type\": \"ADALORA\", \"r\": 4, \"lora_alpha\": 8, \"target_r\": 2}");
    expect_import(dir, LORA_E_UNSUPPORTED_ADAPTER, "ADALORA");
    ts_write_text(ts_join(dir, "adapter_config.json"), "{\"r\": 4, \"lora_alpha\": 8}");
    expect_import(dir, LORA_E_BAD_JSON, "peft_type");
    ts_rm_tree(dir);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    static const char lfs[] = "version https://git-lfs.github.com/spec/v1\n"
                              "oid sha256:130792c9a7496b3758e7a1e049ca51698a5776e59e1fc2911ff6c9d8ebd3fa05\n"
                              "size 3253104\n";
    char *dir = ts_make_tmpdir("test_peft");
    /* LFS pointer in place of the weights, then of the config. */
    write_adapter(dir, config_with(""), two_modules, 4, 2);
    ts_write_text(ts_join(dir, "adapter_model.safetensors"), lfs);
    expect_import(dir, LORA_E_LFS_POINTER, "fetch the real file");
    write_adapter(dir, config_with(""), two_modules, 4, 2);
    ts_write_text(ts_join(dir, "adapter_config.json"), lfs);
    expect_import(dir, LORA_E_LFS_POINTER, "adapter_config.json");
    /* Truncated weights: the last tensor ends past the end of the file. */
    write_adapter(dir, config_with(""), two_modules, 4, 2);
    struct stat sb;
    assert_int_equal(stat(ts_join(dir, "adapter_model.safetensors"), &sb), 0);
    assert_int_equal(truncate(ts_join(dir, "adapter_model.safetensors"), sb.st_size - 4), 0);
    expect_import(dir, LORA_E_TRUNCATED, NULL);
    /* Duplicate keys, and plain malformed JSON, in the config. */
    write_adapter(dir, "{\"peft_type\": \"LORA\", \"r\": 4, \"r\": 8, \"lora_alpha\": 8}", two_modules, 4, 2);
    expect_import(dir, LORA_E_DUPLICATE_NAME, "duplicate");
    ts_write_text(ts_join(dir, "adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 4,");
    expect_import(dir, LORA_E_BAD_JSON, "adapter_config.json");
    ts_write_text(ts_join(dir, "adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": \"four\"}");
    expect_import(dir, LORA_E_BAD_JSON, "r is not a rank");
    /* No config at all. */
    assert_int_equal(remove(ts_join(dir, "adapter_config.json")), 0);
    expect_import(dir, LORA_E_IO, "adapter_config.json");
    /* Rank disagreements: rank_pattern, then r. */
    write_adapter(dir, config_with("\"rank_pattern\": {\"v_proj\": 8}"), two_modules, 4, 2);
    expect_import(dir, LORA_E_BAD_SHAPE, "rank_pattern");
    write_adapter(dir, "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8}", two_modules, 4, 2);
    expect_import(dir, LORA_E_BAD_SHAPE, "gives 8");
    /* A pattern with no POSIX equivalent is refused, not approximated. */
    write_adapter(dir, config_with("\"alpha_pattern\": {\"(?<=self_attn\\\\.)q_proj\": 4}"), two_modules, 4, 2);
    expect_import(dir, LORA_E_UNSUPPORTED_ADAPTER, "alpha_pattern");
    /* Too many regular-expression keys: regcomp memory is bounded. */
    {
        size_t cap = 64 * 1100 + 256;
        char *cfg = malloc(cap), *p = cfg;
        p += sprintf(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"alpha_pattern\": {");
        for (int i = 0; i < 1025; i++) p += sprintf(p, "%s\"x[0-9]%d\": 1", i ? ", " : "", i);
        strcpy(p, "}}");
        write_adapter(dir, cfg, two_modules, 4, 2);
        expect_import(dir, LORA_E_LIMIT_EXCEEDED, "regular-expression");
        free(cfg);
    }
    /* A and B disagree on the rank. */
    syn_tensor bad[4];
    memcpy(bad, two_modules, sizeof bad);
    bad[1].shape[1] = 3;
    write_adapter(dir, config_with(""), bad, 4, 2);
    expect_import(dir, LORA_E_BAD_SHAPE, "q_proj");
    /* Legacy merged-QKV lora_B [out, r, 1] against a 2-D lora_A. */
    memcpy(bad, two_modules, sizeof bad);
    bad[1].ndim = 3;
    bad[1].shape[2] = 1;
    write_adapter(dir, config_with(""), bad, 4, 2);
    expect_import(dir, LORA_E_BAD_SHAPE, "legacy");
    /* An integer dtype. */
    memcpy(bad, two_modules, sizeof bad);
    bad[2].dtype = LORA_ST_I32;
    write_adapter(dir, config_with(""), bad, 4, 2);
    expect_import(dir, LORA_E_UNSUPPORTED_DTYPE, "v_proj.lora_A.weight");
    /* lora_A without lora_B. */
    write_adapter(dir, config_with(""), two_modules, 3, 2);
    expect_import(dir, LORA_E_NOT_FOUND, "v_proj");
    /* AdaLoRA's lora_E in a file that claims LORA. */
    memcpy(bad, two_modules, sizeof bad);
    bad[3].name = PFX "0.self_attn.v_proj.lora_E";
    write_adapter(dir, config_with(""), bad, 4, 2);
    expect_import(dir, LORA_E_UNSUPPORTED_ADAPTER, "lora_E");
    /* DoRA magnitude the config does not ask for, and the reverse. */
    syn_tensor dora[5];
    memcpy(dora, two_modules, sizeof two_modules);
    dora[4] = (syn_tensor){PFX "0.self_attn.q_proj.lora_magnitude_vector", LORA_ST_F32, 1, {16}};
    write_adapter(dir, config_with(""), dora, 5, 2);
    expect_import(dir, LORA_E_UNSUPPORTED_ADAPTER, "use_dora is false");
    write_adapter(dir, config_with("\"use_dora\": true"), dora, 5, 2);
    expect_import(dir, LORA_E_UNSUPPORTED_ADAPTER, "v_proj");
    ts_rm_tree(dir);
}

/* target_modules, exclude_modules, layers_to_transform: the tensors decide,
 * a disagreement is only a warning. */
static void test_loose_checks(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_peft");
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_warnings wn = {0, ""};
    o.warn = ts_collect;
    o.warn_opaque = &wn;
    ts_imported m;
    lora_error e;
    static const struct {
        const char *targets, *extra;
        int warnings;
    } cases[] = {
        {"[\"q_proj\", \"v_proj\"]", "", 0},
        {"[\"q_proj\", \"v_proj\"]", ", \"layers_to_transform\": [0], \"layers_pattern\": \"layers\"", 0},
        {"[\"q_proj\", \"v_proj\"]", ", \"layers_to_transform\": 1", 2},
        {"[\"q_proj\", \"v_proj\"]", ", \"layers_to_transform\": [0], \"layers_pattern\": [\"h\"]", 2},
        {"[\"q_proj\", \"v_proj\"]", ", \"exclude_modules\": [\"v_proj\"]", 1},
        {"[\"q_proj\", \"v_proj\"]", ", \"exclude_modules\": \".*\\\\.v_proj\"", 1},
        {"\".*\\\\.(q|v)_proj\"", ", \"layers_to_transform\": [3, 0]", 0},
        {"\".*\\\\.q_proj\"", "", 1},
        {"\"all-linear\"", "", 0},
        {"[\"k_proj\"]", "", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cfg[512];
        snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": %s%s}",
                 cases[i].targets, cases[i].extra);
        write_adapter(dir, cfg, two_modules, 4, 9);
        wn.count = 0;
        if (ts_import_with(lora_import_peft, dir, &o, &m, &e) != LORA_OK) fail_msg("%s: %s", cfg, e.detail);
        if (wn.count != cases[i].warnings) fail_msg("%s: %d warnings (last: %s)", cfg, wn.count, wn.last);
        ts_imported_free(&m);
    }
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* Python regex -> POSIX, against Python's own answers                      */
/* ------------------------------------------------------------------------ */

/* Expectations: re.match(rf"(.*\.)?({py})$", name) in CPython 3, one
 * character per name. */
static const char *const rx_names[] = {
    "model.layers.0.self_attn.q_proj",
    "model.layers.12.self_attn.q_proj",
    "model.layers.1.self_attn.k_proj",
    "model.layers.3.mlp.down_proj",
    "x.ax",
    "]x",
    "-y",
    "a.y",
    "1.2q",
    "xxz",
    "z",
    "foo.z",
    "aa",
    "v_proj",
    "v_pro",
    "^z",
    "az",
    "-w",
    "[w",
    "^w",
    "q-x",
    "a.-x",
    "a{",
    "b}",
    "\\t",
    "x.3z",
    "3z",
};
static const struct { const char *py, *want; } rx_cases[] = {
    {"q_proj", "110000000000000000000000000"},
    {"[qk]_proj", "111000000000000000000000000"},
    {"(?:q|k)_proj", "111000000000000000000000000"},
    {"layers\\.\\d+\\.mlp\\..*", "000100000000000000000000000"},
    {"layers\\.[0-9]{2}\\.self_attn\\.q_proj", "010000000000000000000000000"},
    {"layers\\.[^1]\\.self_attn\\.q_proj", "100000000000000000000000000"},
    {"[]a]x", "000011000000000000000000000"},
    {"[a-]y", "000000100000000000000000000"},
    {"[\\d.]+q", "000000001000000000000000000"},
    {"[\\w]+_proj", "111100000000010000000000000"},
    {"x{,2}z", "000000000111000000000000000"},
    {"q_proj$", "110000000000000000000000000"},
    {"^model\\.layers\\.0\\.self_attn\\.q_proj", "100000000000000000000000000"},
    {"\\-x", "000000000000000000000100000"},
    {"a{2}", "000000000000100000000000000"},
    {"v_pro.*?", "000000000000011000000000000"},
    {"[^^]z", "000000000000000010000000011"},
    {"[-[^]w", "000000000000000001110000000"},
    {"\\w+\\.q_proj", "110000000000000000000000000"},
    {"\\s", "000000000000000000000000000"},
    {"a{", "000000000000000000000010000"},
    {"b}", "000000000000000000000001000"},
    {"[\\\\]t", "000000000000000000000000100"},
    {"\\Dz", "000000000000000110000000000"},
};

static void test_regex_translation(void **state)
{
    (void)state;
    size_t nn = sizeof rx_names / sizeof rx_names[0];
    for (size_t i = 0; i < sizeof rx_cases / sizeof rx_cases[0]; i++) {
        regex_t re;
        lora_error e;
        if (lora_peft_regex_compile(&re, rx_cases[i].py, 1, "test", &e) != LORA_OK)
            fail_msg("%s: %s", rx_cases[i].py, e.detail);
        assert_int_equal(strlen(rx_cases[i].want), nn);
        for (size_t k = 0; k < nn; k++)
            if (lora_peft_regex_match(&re, rx_names[k]) != (rx_cases[i].want[k] == '1'))
                fail_msg("pattern '%s' on '%s': want %c", rx_cases[i].py, rx_names[k], rx_cases[i].want[k]);
        regfree(&re);
        /* The same through the key compiler (fixed-string fast path or regex). */
        lora_peft_key key;
        uint32_t nre = 0;
        assert_int_equal(lora_peft_key_compile(NULL, &key, rx_cases[i].py, &nre, "test", &e), LORA_OK);
        for (size_t k = 0; k < nn; k++)
            if (lora_peft_key_match(&key, rx_names[k]) != (rx_cases[i].want[k] == '1'))
                fail_msg("key '%s' on '%s': want %c", rx_cases[i].py, rx_names[k], rx_cases[i].want[k]);
        lora_peft_key_free(NULL, &key);
    }
    /* Module names, dots escaped or not, take the fixed path. */
    static const char *const fixed[] = {"q_proj", "model.layers.0.self_attn.q_proj", "^model\\.layers\\.0\\.q",
                                        "a\\-b$"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        lora_peft_key key;
        uint32_t nre = 0;
        lora_error e;
        assert_int_equal(lora_peft_key_compile(NULL, &key, fixed[i], &nre, "test", &e), LORA_OK);
        assert_int_equal(nre, 0);
        assert_false(key.is_regex);
        lora_peft_key_free(NULL, &key);
    }
    /* No exact POSIX equivalent: refused, never approximated. */
    static const char *const refused[] = {"(?=q)_proj", "(?<=a)q", "\\bq", "q\\Z", "(q)\\1", "q++",
                                          "(?P<n>q)",   "(?i)q",   "[\\D]q", "\\nq", "[a", "q\\"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        regex_t re;
        lora_error e;
        lora_status st = lora_peft_regex_compile(&re, refused[i], 1, "test", &e);
        if (st == LORA_OK) {
            regfree(&re);
            fail_msg("pattern '%s' accepted", refused[i]);
        }
        assert_int_equal(st, LORA_E_UNSUPPORTED_ADAPTER);
    }
    /* Escaping a module name gives a pattern matching exactly it (and
     * dotted suffixes of longer names, as PEFT's lookup does). */
    char esc[128];
    assert_true(lora_peft_regex_escape("a.b-c[1]", esc, sizeof esc) > 0);
    assert_string_equal(esc, "a\\.b\\-c\\[1\\]");
    regex_t re;
    lora_error e;
    assert_int_equal(lora_peft_regex_compile(&re, esc, 1, "test", &e), LORA_OK);
    assert_true(lora_peft_regex_match(&re, "a.b-c[1]"));
    assert_true(lora_peft_regex_match(&re, "x.a.b-c[1]"));
    assert_false(lora_peft_regex_match(&re, "xa.b-c[1]"));
    assert_false(lora_peft_regex_match(&re, "a.b-c[1]x"));
    assert_false(lora_peft_regex_match(&re, "aXb-c[1]"));
    regfree(&re);
    assert_int_equal(lora_peft_regex_escape("abc", esc, 3), 0);
}

/* ------------------------------------------------------------------------ */
/* per-module rank, alpha and scale                                         */
/* ------------------------------------------------------------------------ */

static const syn_tensor five_modules[] = {
    {PFX "0.self_attn.q_proj.lora_A.weight", LORA_ST_F32, 2, {4, 16}},
    {PFX "0.self_attn.q_proj.lora_B.weight", LORA_ST_F32, 2, {16, 4}},
    {PFX "0.self_attn.v_proj.lora_A.weight", LORA_ST_BF16, 2, {8, 16}},
    {PFX "0.self_attn.v_proj.lora_B.weight", LORA_ST_BF16, 2, {8, 8}},
    {PFX "1.self_attn.q_proj.lora_A.weight", LORA_ST_F16, 2, {4, 16}},
    {PFX "1.self_attn.q_proj.lora_B.weight", LORA_ST_F16, 2, {16, 4}},
    {PFX "1.self_attn.v_proj.lora_A.weight", LORA_ST_F32, 2, {8, 16}},
    {PFX "1.self_attn.v_proj.lora_B.weight", LORA_ST_F32, 2, {8, 8}},
    {PFX "10.self_attn.v_proj.lora_A.weight", LORA_ST_F32, 2, {2, 16}},
    {PFX "10.self_attn.v_proj.lora_B.weight", LORA_ST_F32, 2, {8, 2}},
};

static void expect_module(const ts_imported *m, const char *name, uint32_t rank, float alpha, int rslora)
{
    uint32_t k;
    lora_module mod;
    if (lora_reader_module_find(m->r, name, &k) != LORA_OK) fail_msg("module %s missing", name);
    assert_int_equal(lora_reader_module(m->r, k, &mod), LORA_OK);
    assert_int_equal(mod.rank, rank);
    if (!ts_same_bits(mod.alpha, alpha)) fail_msg("%s: alpha %g, want %g", name, (double)mod.alpha, (double)alpha);
    assert_int_equal(mod.scaling, rslora ? LORA_SCALING_ALPHA_OVER_SQRT_RANK : LORA_SCALING_ALPHA_OVER_RANK);
    float want = rslora ? alpha / sqrtf((float)rank) : alpha / (float)rank;
    if (!ts_same_bits(mod.scale, want)) fail_msg("%s: scale %.9g, want %.9g", name, (double)mod.scale, (double)want);
}

static void test_patterns_and_rslora(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_peft");
    /* Expectations from Python's re, first matching key in JSON order. */
    write_adapter(dir,
                  "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true,\n"
                  " \"rank_pattern\": {\"layers\\\\.10\\\\.self_attn\\\\.v_proj\": 2, \"v_proj\": 8},\n"
                  " \"alpha_pattern\": {\"layers\\\\.1\\\\.self_attn\\\\.q_proj\": 32, \"q_proj\": 2,\n"
                  "                   \"layers\\\\.\\\\d+\\\\.self_attn\\\\.v_proj\": 16.5}}",
                  five_modules, 10, 3);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_imported m;
    lora_error e;
    if (ts_import_with(lora_import_peft, dir, &o, &m, &e) != LORA_OK) fail_msg("%s", e.detail);
    expect_module(&m, "model.layers.0.self_attn.q_proj", 4, 2.0f, 1);
    expect_module(&m, "model.layers.0.self_attn.v_proj", 8, 16.5f, 1);
    expect_module(&m, "model.layers.1.self_attn.q_proj", 4, 32.0f, 1);
    expect_module(&m, "model.layers.1.self_attn.v_proj", 8, 16.5f, 1);
    expect_module(&m, "model.layers.10.self_attn.v_proj", 2, 16.5f, 1);
    ts_imported_free(&m);

    /* The same keys in the other order: "q_proj" now wins for layer 1, and
     * "v_proj" claims layer 10's v_proj, whose tensors have rank 2. */
    write_adapter(dir,
                  "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8,\n"
                  " \"rank_pattern\": {\"v_proj\": 8, \"layers\\\\.10\\\\.self_attn\\\\.v_proj\": 2},\n"
                  " \"alpha_pattern\": {\"q_proj\": 2, \"layers\\\\.1\\\\.self_attn\\\\.q_proj\": 32}}",
                  five_modules, 10, 3);
    expect_import(dir, LORA_E_BAD_SHAPE, "layers.10.self_attn.v_proj");
    write_adapter(dir,
                  "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8,\n"
                  " \"rank_pattern\": {\"v_proj\": 8},\n"
                  " \"alpha_pattern\": {\"q_proj\": 2, \"layers\\\\.1\\\\.self_attn\\\\.q_proj\": 32}}",
                  five_modules, 8, 3);
    assert_int_equal(ts_import_with(lora_import_peft, dir, &o, &m, &e), LORA_OK);
    expect_module(&m, "model.layers.0.self_attn.q_proj", 4, 2.0f, 0);
    expect_module(&m, "model.layers.1.self_attn.q_proj", 4, 2.0f, 0);
    expect_module(&m, "model.layers.1.self_attn.v_proj", 8, 8.0f, 0);
    ts_imported_free(&m);

    /* rsLoRA with a rank whose square root is irrational, a float alpha. */
    static const syn_tensor r3[] = {
        {"base_model.model.encoder.fc.lora_A.weight", LORA_ST_F32, 2, {3, 5}},
        {"base_model.model.encoder.fc.lora_B.weight", LORA_ST_F32, 2, {7, 3}},
    };
    write_adapter(dir, "{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 11.313708498984761, \"use_rslora\": true}",
                  r3, 2, 4);
    assert_int_equal(ts_import_with(lora_import_peft, dir, &o, &m, &e), LORA_OK);
    expect_module(&m, "encoder.fc", 3, (float)11.313708498984761, 1);
    ts_imported_free(&m);
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* DoRA, LoRA bias, embeddings, convs, replacement tensors: round trip     */
/* ------------------------------------------------------------------------ */

static const syn_tensor variety[] = {
    {PFX "0.self_attn.q_proj.lora_A.weight", LORA_ST_F32, 2, {4, 16}},
    {PFX "0.self_attn.q_proj.lora_B.weight", LORA_ST_F32, 2, {16, 4}},
    {PFX "0.self_attn.q_proj.lora_B.bias", LORA_ST_F32, 1, {16}},
    {PFX "0.self_attn.q_proj.lora_magnitude_vector", LORA_ST_F32, 1, {16}},
    {"base_model.model.model.embed_tokens.lora_embedding_A", LORA_ST_BF16, 2, {4, 32}},
    {"base_model.model.model.embed_tokens.lora_embedding_B", LORA_ST_BF16, 2, {16, 4}},
    {"base_model.model.model.embed_tokens.lora_magnitude_vector", LORA_ST_BF16, 1, {16}},
    {"base_model.model.unet.conv.lora_A.weight", LORA_ST_F16, 4, {4, 3, 3, 3}},
    {"base_model.model.unet.conv.lora_B.weight", LORA_ST_F16, 4, {6, 4, 1, 1}},
    {"base_model.model.unet.conv.lora_B.bias", LORA_ST_F16, 1, {6}},
    {"base_model.model.unet.conv.lora_magnitude_vector", LORA_ST_F16, 4, {1, 6, 1, 1}},
    {"base_model.model.lm_head.weight", LORA_ST_F16, 2, {32, 16}},
    {PFX "0.self_attn.o_proj.bias", LORA_ST_F32, 1, {16}},
};

static const char variety_config[] =
    "{\n  \"bias\": \"all\",\n  \"lora_alpha\": 8,\n  \"lora_bias\": true,\n  \"modules_to_save\": [\"lm_head\"],\n"
    "  \"peft_type\": \"LORA\",\n  \"r\": 4,\n  \"target_modules\": [\"q_proj\", \"embed_tokens\", \"conv\"],\n"
    "  \"use_dora\": true\n}\n";

static void check_variety(const ts_imported *m)
{
    lora_file_info fi;
    lora_reader_file_info(m->r, &fi);
    assert_int_equal(fi.module_count, 3);
    assert_int_equal(fi.tensor_count, 2);
    assert_int_equal(fi.blob_count, 13);
    static const struct {
        const char *name;
        lora_kind kind;
        uint32_t ndim;
        uint64_t base[4];
        uint64_t mag;
        int bias;
        lora_dtype dt;
    } want[] = {
        {"model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, 2, {16, 16}, 16, 1, LORA_DTYPE_F32},
        {"model.embed_tokens", LORA_KIND_EMBEDDING, 2, {32, 16}, 16, 0, LORA_DTYPE_BF16},
        {"unet.conv", LORA_KIND_CONV2D, 4, {6, 3, 3, 3}, 6, 1, LORA_DTYPE_F16},
    };
    for (size_t i = 0; i < 3; i++) {
        uint32_t k;
        lora_module mod;
        lora_blob b;
        assert_int_equal(lora_reader_module_find(m->r, want[i].name, &k), LORA_OK);
        assert_int_equal(lora_reader_module(m->r, k, &mod), LORA_OK);
        assert_int_equal(mod.kind, want[i].kind);
        assert_int_equal(mod.base_ndim, want[i].ndim);
        for (uint32_t d = 0; d < want[i].ndim; d++) assert_int_equal(mod.base_shape[d], want[i].base[d]);
        assert_true(ts_same_bits(mod.scale, 2.0f));
        assert_int_not_equal(mod.blob_magnitude, LORA_NO_BLOB);
        assert_int_equal(lora_reader_blob(m->r, mod.blob_magnitude, &b), LORA_OK);
        assert_int_equal(b.ndim, 1); /* conv's [1, 6, 1, 1] kept 1-D */
        assert_int_equal(b.shape[0], want[i].mag);
        assert_int_equal(b.dtype, want[i].dt);
        assert_int_equal(mod.blob_bias != LORA_NO_BLOB, want[i].bias);
    }
    lora_tensor t;
    assert_int_equal(lora_reader_tensor(m->r, 0, &t), LORA_OK);
    assert_true(strcmp(t.name, "lm_head.weight") == 0 || strcmp(t.name, "model.layers.0.self_attn.o_proj.bias") == 0);
}

static void test_variants_round_trip(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_peft");
    char *src = strdup(ts_join(dir, "src")), *out = strdup(ts_join(dir, "out"));
    assert_int_equal(mkdir(src, 0755), 0);
    write_adapter(src, variety_config, variety, sizeof variety / sizeof variety[0], 5);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_warnings wn = {0, ""};
    o.warn = ts_collect;
    o.warn_opaque = &wn;
    ts_imported m;
    lora_error e;
    if (ts_import_with(lora_import_peft, src, &o, &m, &e) != LORA_OK) fail_msg("%s", e.detail);
    if (wn.count) fail_msg("unexpected warning: %s", wn.last);
    check_variety(&m);
    if (export_peft(&m, out, &o, &e) != LORA_OK) fail_msg("export: %s", e.detail);
    ts_assert_same_tensors(ts_join(src, "adapter_model.safetensors"), ts_join(out, "adapter_model.safetensors"));
    ts_assert_same_file(ts_join(src, "adapter_config.json"), ts_join(out, "adapter_config.json"));
    ts_imported_free(&m);

    /* Legacy ".default." keys name the same modules. */
    syn_tensor legacy[sizeof variety / sizeof variety[0]];
    char names[13][160];
    memcpy(legacy, variety, sizeof legacy);
    for (size_t i = 0; i < 11; i++) {
        const char *n = variety[i].name;
        const char *cut = strstr(n, ".lora_");
        const char *rest = strchr(cut + 1, '.');
        if (rest)
            snprintf(names[i], sizeof names[i], "%.*s.default%s", (int)(rest - n), n, rest);
        else
            snprintf(names[i], sizeof names[i], "%s.default", n);
        legacy[i].name = names[i];
    }
    write_adapter(src, variety_config, legacy, sizeof legacy / sizeof legacy[0], 5);
    if (ts_import_with(lora_import_peft, src, &o, &m, &e) != LORA_OK) fail_msg("legacy: %s", e.detail);
    check_variety(&m);
    ts_imported_free(&m);
    free(src);
    free(out);
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* .lora built here -> PEFT (a config written from the modules)            */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    lora_scaling scaling;
    uint32_t flags, rank;
    float alpha, scale;
    int mag;
} mdesc;

static uint32_t blob_f32(lora_writer *w, uint32_t ndim, uint64_t d0, uint64_t d1, uint64_t *seed)
{
    uint64_t shape[2] = {d0, d1};
    size_t n = (size_t)(ndim == 1 ? d0 : d0 * d1);
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = (float)((int64_t)(ts_rng_next(seed) % 2001) - 1000) / 1024.0f;
    uint32_t idx;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, ndim, shape, v, n, LORA_COMPRESSION_ZLIB, &idx),
                     LORA_OK);
    free(v);
    return idx;
}

/* Linear modules [16 out, 12 in] plus the named replacement tensors. */
static void build_lora(const mdesc *d, size_t n, const char *const *tensors, size_t nt, ts_imported *out)
{
    lora_writer *w;
    uint64_t seed = 99;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    for (size_t i = 0; i < n; i++) {
        lora_module_desc m;
        memset(&m, 0, sizeof m);
        m.name = d[i].name;
        m.kind = LORA_KIND_LINEAR;
        m.scaling = d[i].scaling;
        m.flags = d[i].flags;
        m.rank = d[i].rank;
        m.alpha = d[i].alpha;
        m.scale = d[i].scale;
        m.base_ndim = 2;
        m.base_shape[0] = d[i].flags ? 12 : 16;
        m.base_shape[1] = d[i].flags ? 16 : 12;
        m.blob_a = blob_f32(w, 2, d[i].rank, 12, &seed);
        m.blob_b = blob_f32(w, 2, 16, d[i].rank, &seed);
        m.blob_magnitude = d[i].mag ? blob_f32(w, 1, 16, 0, &seed) : LORA_NO_BLOB;
        m.blob_bias = LORA_NO_BLOB;
        assert_int_equal(lora_writer_add_module(w, &m, NULL), LORA_OK);
    }
    for (size_t i = 0; i < nt; i++)
        assert_int_equal(lora_writer_add_tensor(w, tensors[i], blob_f32(w, 1, 16, 0, &seed)), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, LORA_META_TASK_TYPE, "CAUSAL_LM", 9), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, LORA_META_BASE_MODEL, "org/model", 9), LORA_OK);
    uint64_t size;
    lora_error e;
    assert_int_equal(lora_writer_size(w, &size, &e), LORA_OK);
    out->buf = malloc((size_t)size);
    assert_int_equal(lora_writer_write_buffer(w, out->buf, (size_t)size, &out->size, &e), LORA_OK);
    assert_int_equal(lora_reader_open_buffer(out->buf, out->size, NULL, &out->r, &e), LORA_OK);
    lora_writer_free(w);
}

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) fail_msg("%s: %s", path, je.text);
    return j;
}

static void test_synthesized_config(void **state)
{
    (void)state;
    float sq = 3.0f / sqrtf(2.0f);
    const mdesc mods[] = {
        {"model.layers.0.self_attn.q_proj", LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 2.0f, 0},
        {"model.layers.0.self_attn.k_proj", LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 2.0f, 0},
        {"model.layers.1.self_attn.q_proj", LORA_SCALING_ALPHA_OVER_RANK, 0, 8, 16.0f, 2.0f, 0},
        {"model.layers.1.self_attn.k_proj", LORA_SCALING_EXPLICIT, 0, 4, 1.2f, 0.3f, 0},
        {"model.layers.1.self_attn.v_proj", LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 2, 3.0f, sq, 0},
        {"self_attn.q_proj", LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 4.0f, 2.0f, 0},
    };
    static const char *const tensors[] = {"lm_head.weight", "model.layers.0.mlp.down_proj.bias"};
    ts_imported m, back;
    build_lora(mods, 6, tensors, 2, &m);
    char *dir = ts_make_tmpdir("test_peft");
    char *out = strdup(ts_join(dir, "out")), *out2 = strdup(ts_join(dir, "out2"));
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    if (export_peft(&m, out, &o, &e) != LORA_OK) fail_msg("export: %s", e.detail);

    /* What PEFT will read. */
    json_t *c = load_json(ts_join(out, "adapter_config.json"));
    assert_string_equal(json_string_value(json_object_get(c, "peft_type")), "LORA");
    assert_int_equal(json_integer_value(json_object_get(c, "r")), 4);
    assert_true(json_number_value(json_object_get(c, "lora_alpha")) == 8.0);
    assert_true(json_is_false(json_object_get(c, "use_rslora")));
    assert_true(json_is_false(json_object_get(c, "use_dora")));
    assert_true(json_is_false(json_object_get(c, "fan_in_fan_out")));
    json_t *rp = json_object_get(c, "rank_pattern"), *ap = json_object_get(c, "alpha_pattern");
    assert_int_equal(json_object_size(rp), 3);
    assert_int_equal(json_integer_value(json_object_get(rp, "model\\.layers\\.1\\.self_attn\\.q_proj")), 8);
    assert_int_equal(json_integer_value(json_object_get(rp, "model\\.layers\\.1\\.self_attn\\.v_proj")), 2);
    /* another module's name ends in ".self_attn.q_proj": anchored */
    assert_int_equal(json_integer_value(json_object_get(rp, "^self_attn\\.q_proj")), 2);
    assert_true(json_number_value(json_object_get(ap, "model\\.layers\\.1\\.self_attn\\.q_proj")) == 16.0);
    assert_true(json_number_value(json_object_get(ap, "^self_attn\\.q_proj")) == 4.0);
    /* explicit 0.3 at r 4: alpha 1.2 (binary32); rsLoRA 3/sqrt(2) at r 2 as alpha/r */
    double a_exp = json_number_value(json_object_get(ap, "model\\.layers\\.1\\.self_attn\\.k_proj"));
    double a_sq = json_number_value(json_object_get(ap, "model\\.layers\\.1\\.self_attn\\.v_proj"));
    assert_true(ts_same_bits((float)a_exp / 4.0f, 0.3f));
    assert_true(ts_same_bits((float)a_sq / 2.0f, sq));
    assert_int_equal(json_object_size(ap), 4);
    json_t *mts = json_object_get(c, "modules_to_save");
    assert_int_equal(json_array_size(mts), 1);
    assert_string_equal(json_string_value(json_array_get(mts, 0)), "lm_head");
    assert_string_equal(json_string_value(json_object_get(c, "bias")), "all");
    json_t *tm = json_object_get(c, "target_modules");
    assert_int_equal(json_array_size(tm), 3);
    assert_string_equal(json_string_value(json_array_get(tm, 0)), "k_proj");
    assert_string_equal(json_string_value(json_array_get(tm, 2)), "v_proj");
    assert_string_equal(json_string_value(json_object_get(c, "task_type")), "CAUSAL_LM");
    assert_string_equal(json_string_value(json_object_get(c, "base_model_name_or_path")), "org/model");
    json_decref(c);

    /* Read back: every module's rank and binary32 scale as before. */
    if (ts_import_with(lora_import_peft, out, &o, &back, &e) != LORA_OK) fail_msg("reimport: %s", e.detail);
    for (size_t i = 0; i < 6; i++) {
        uint32_t k;
        lora_module a, b;
        assert_int_equal(lora_reader_module_find(back.r, mods[i].name, &k), LORA_OK);
        assert_int_equal(lora_reader_module(back.r, k, &b), LORA_OK);
        assert_int_equal(lora_reader_module_find(m.r, mods[i].name, &k), LORA_OK);
        assert_int_equal(lora_reader_module(m.r, k, &a), LORA_OK);
        assert_int_equal(a.rank, b.rank);
        if (!ts_same_bits(a.scale, b.scale)) fail_msg("%s: scale %.9g -> %.9g", a.name, (double)a.scale, (double)b.scale);
        float va[256], vb[256];
        assert_int_equal(lora_reader_blob_decode_f32(m.r, a.blob_b, va, 256, &e), LORA_OK);
        assert_int_equal(lora_reader_blob_decode_f32(back.r, b.blob_b, vb, 256, &e), LORA_OK);
        assert_memory_equal(va, vb, 16 * a.rank * sizeof(float));
    }
    /* Again from the re-import: now the config is carried verbatim. */
    assert_int_equal(export_peft(&back, out2, &o, &e), LORA_OK);
    ts_assert_same_file(ts_join(out, "adapter_config.json"), ts_join(out2, "adapter_config.json"));
    ts_assert_same_tensors(ts_join(out, "adapter_model.safetensors"), ts_join(out2, "adapter_model.safetensors"));
    ts_imported_free(&back);
    ts_imported_free(&m);
    free(out);
    free(out2);
    ts_rm_tree(dir);
}

static void test_export_refusals(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_peft");
    char *out = strdup(ts_join(dir, "out"));
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    lora_error e;
    ts_imported m;
    struct stat sb;

    /* fan_in_fan_out on some linear modules only: PEFT has one flag. */
    const mdesc fifo[] = {
        {"h.0.attn.c_attn", LORA_SCALING_ALPHA_OVER_RANK, LORA_MODULE_FAN_IN_FAN_OUT, 4, 8.0f, 2.0f, 0},
        {"h.0.mlp.fc", LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 2.0f, 0},
    };
    build_lora(fifo, 2, NULL, 0, &m);
    assert_int_equal(export_peft(&m, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "fan_in_fan_out"));
    assert_int_not_equal(stat(ts_join(out, "adapter_config.json"), &sb), 0); /* nothing written */
    ts_imported_free(&m);

    /* DoRA on one module of two. */
    const mdesc dora[] = {
        {"a.q", LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 2.0f, 1},
        {"a.k", LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 2.0f, 0},
    };
    build_lora(dora, 2, NULL, 0, &m);
    assert_int_equal(export_peft(&m, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "DoRA"));
    ts_imported_free(&m);

    /* Most modules rsLoRA; an explicit scale no binary32 alpha reaches as
     * alpha/sqrt(2). The oracle searches every float near s*sqrt(2). */
    float s = 1.5f;
    for (;; s = nextafterf(s, 2.0f)) {
        float c = (float)((double)s * sqrt(2.0));
        int reachable = 0;
        for (int k = 0; k < 64; k++, c = nextafterf(c, 0.0f)) reachable |= ts_same_bits(c / sqrtf(2.0f), s);
        c = (float)((double)s * sqrt(2.0));
        for (int k = 0; k < 64; k++, c = nextafterf(c, 10.0f)) reachable |= ts_same_bits(c / sqrtf(2.0f), s);
        if (!reachable) break;
    }
    const mdesc rs[] = {
        {"b.q", LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 4, 8.0f, 4.0f, 0},
        {"b.k", LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 4, 8.0f, 4.0f, 0},
        {"b.v", LORA_SCALING_EXPLICIT, 0, 2, 1.0f, s, 0},
    };
    build_lora(rs, 3, NULL, 0, &m);
    assert_int_equal(export_peft(&m, out, &o, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "b.v"));
    ts_imported_free(&m);

    /* Output that is a file, not a directory. */
    const mdesc one[] = {{"c.q", LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 2.0f, 0}};
    build_lora(one, 1, NULL, 0, &m);
    ts_write_text(ts_join(dir, "file"), "x");
    assert_int_equal(export_peft(&m, ts_join(dir, "file"), &o, &e), LORA_E_INVALID_ARGUMENT);

    /* Never over an input: the weights file is listed as an input. */
    assert_int_equal(export_peft(&m, out, &o, &e), LORA_OK);
    size_t before_n;
    uint8_t *before = ts_read_file(ts_join(out, "adapter_model.safetensors"), &before_n);
    const char *inputs[] = {ts_join(out, "adapter_model.safetensors")};
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    wo.inputs = inputs;
    wo.input_count = 1;
    ts_imported m2;
    const mdesc other[] = {{"c.q", LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 8.0f, 4.0f, 0}};
    build_lora(other, 1, NULL, 0, &m2);
    assert_int_equal(lora_export_peft(m2.r, out, &o, &wo, &e), LORA_E_SAME_FILE);
    size_t after_n;
    uint8_t *after = ts_read_file(ts_join(out, "adapter_model.safetensors"), &after_n);
    assert_int_equal(before_n, after_n);
    assert_memory_equal(before, after, before_n);
    free(before);
    free(after);
    ts_imported_free(&m2);
    ts_imported_free(&m);
    free(out);
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* older diffusers layouts, component configs                               */
/* ------------------------------------------------------------------------ */

static void test_diffusers_layouts(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_peft");
    char *path = strdup(ts_join(dir, "pytorch_lora_weights.safetensors"));
#define ATT "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1"
#define TE "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    static const syn_tensor legacy[] = {
        {ATT ".processor.to_out_lora.down.weight", LORA_ST_F32, 2, {4, 8}},
        {ATT ".processor.to_out_lora.up.weight", LORA_ST_F32, 2, {8, 4}},
        {ATT ".processor.to_q_lora.down.weight", LORA_ST_F32, 2, {2, 8}},
        {ATT ".processor.to_q_lora.up.weight", LORA_ST_F32, 2, {8, 2}},
        {TE ".lora_linear_layer.down.weight", LORA_ST_F16, 2, {4, 6}},
        {TE ".lora_linear_layer.up.weight", LORA_ST_F16, 2, {6, 4}},
        {"unet.mid.proj.lora.down.weight", LORA_ST_F32, 2, {4, 5}},
        {"unet.mid.proj.lora.up.weight", LORA_ST_F32, 2, {5, 4}},
        {"unet.mid.proj.alpha", LORA_ST_F32, 0, {0}},
    };
    write_safetensors(path, legacy, sizeof legacy / sizeof legacy[0], NULL, 0, 21);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_warnings wn = {0, ""};
    o.warn = ts_collect;
    o.warn_opaque = &wn;
    ts_imported m;
    lora_error e;
    if (ts_import_with(lora_import_diffusers, dir, &o, &m, &e) != LORA_OK) fail_msg("%s", e.detail);
    /* No config: alpha is the rank of the first lora_B key in byte order
     * (text_encoder... < unet...: rank 4), as diffusers' get_peft_kwargs. */
    assert_int_equal(wn.count, 1);
    assert_non_null(strstr(wn.last, "lora_alpha = 4"));
    lora_st_file *f = ts_open_st(path);
    float alpha;
    uint32_t ai = lora_st_find(f, "unet.mid.proj.alpha", strlen("unet.mid.proj.alpha"));
    memcpy(&alpha, f->tensors[ai].data, 4);
    lora_st_free(f);
    expect_module(&m, ATT ".to_out.0", 4, 4.0f, 0);
    expect_module(&m, ATT ".to_q", 2, 4.0f, 0);
    expect_module(&m, TE, 4, 4.0f, 0);
    expect_module(&m, "unet.mid.proj", 4, alpha, 0);
    lora_file_info fi;
    lora_reader_file_info(m.r, &fi);
    assert_int_equal(fi.module_count, 4);
    ts_imported_free(&m);

    /* A pipeline's configs flattened with component prefixes. */
    static const syn_tensor comp[] = {
        {"unet.mid.attn.to_k.lora_A.weight", LORA_ST_F32, 2, {4, 8}},
        {"unet.mid.attn.to_k.lora_B.weight", LORA_ST_F32, 2, {8, 4}},
        {"text_encoder.layers.0.q_proj.lora_A.weight", LORA_ST_F32, 2, {2, 8}},
        {"text_encoder.layers.0.q_proj.lora_B.weight", LORA_ST_F32, 2, {8, 2}},
    };
    static const lora_st_pair meta[] = {
        {"format", "pt"},
        {"lora_adapter_metadata",
         "{\"text_encoder.alpha_pattern\": {\"layers\\\\.0\\\\.q_proj\": 6}, \"text_encoder.lora_alpha\": 3,"
         " \"text_encoder.peft_type\": \"LORA\", \"text_encoder.r\": 2, \"text_encoder.use_rslora\": true,"
         " \"unet.lora_alpha\": 8, \"unet.peft_type\": \"LORA\", \"unet.r\": 4}"},
    };
    write_safetensors(path, comp, 4, meta, 2, 22);
    wn.count = 0;
    if (ts_import_with(lora_import_diffusers, path, &o, &m, &e) != LORA_OK) fail_msg("%s", e.detail);
    assert_int_equal(wn.count, 0);
    expect_module(&m, "unet.mid.attn.to_k", 4, 8.0f, 0);
    expect_module(&m, "text_encoder.layers.0.q_proj", 2, 6.0f, 1);
    ts_imported_free(&m);

    /* A refused flag inside the metadata config is refused too. */
    static const lora_st_pair bad[] = {
        {"lora_adapter_metadata", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_qalora\": true}"}};
    write_safetensors(path, comp, 2, bad, 1, 22);
    assert_int_equal(ts_import_with(lora_import_diffusers, path, &o, &m, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_non_null(strstr(e.detail, "use_qalora"));
    /* Keys of no LoRA layout at all. */
    static const syn_tensor none[] = {{"unet.conv.weight", LORA_ST_F32, 2, {2, 2}}};
    write_safetensors(path, none, 1, NULL, 0, 22);
    assert_int_equal(ts_import_with(lora_import_diffusers, path, &o, &m, &e), LORA_E_UNKNOWN_FORMAT);
    free(path);
    ts_rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* output dtypes and quantized blobs                                        */
/* ------------------------------------------------------------------------ */

static void test_export_dtypes(void **state)
{
    (void)state;
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    float a[64], b[64];
    for (int i = 0; i < 64; i++) a[i] = (float)(i - 30) / 7.0f, b[i] = (float)(i % 9) / 3.0f - 1.0f;
    uint64_t sa[2] = {4, 16}, sb[2] = {16, 4};
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = "x.q";
    d.kind = LORA_KIND_LINEAR;
    d.rank = 4;
    d.alpha = 4.0f;
    d.base_ndim = 2;
    d.base_shape[0] = d.base_shape[1] = 16;
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_Q8_0, 2, sa, a, 64, LORA_COMPRESSION_NONE, &d.blob_a),
                     LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sb, b, 64, LORA_COMPRESSION_ZLIB, &d.blob_b),
                     LORA_OK);
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    ts_imported m;
    uint64_t size;
    lora_error e;
    assert_int_equal(lora_writer_size(w, &size, &e), LORA_OK);
    m.buf = malloc((size_t)size);
    assert_int_equal(lora_writer_write_buffer(w, m.buf, (size_t)size, &m.size, &e), LORA_OK);
    assert_int_equal(lora_reader_open_buffer(m.buf, m.size, NULL, &m.r, &e), LORA_OK);
    lora_writer_free(w);
    float qa[64];
    assert_int_equal(lora_reader_blob_decode_f32(m.r, d.blob_a, qa, 64, &e), LORA_OK);

    char *dir = ts_make_tmpdir("test_peft");
    char *out = strdup(ts_join(dir, "out"));
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    ts_warnings wn = {0, ""};
    o.warn = ts_collect;
    o.warn_opaque = &wn;
    /* Kept dtypes: the Q8_0 factor is dequantized (with a warning), the zlib one inflated. */
    assert_int_equal(export_peft(&m, out, &o, &e), LORA_OK);
    assert_int_equal(wn.count, 1);
    assert_non_null(strstr(wn.last, "Q8_0"));
    lora_st_file *f = ts_open_st(ts_join(out, "adapter_model.safetensors"));
    const lora_st_tensor *ta = &f->tensors[lora_st_find(f, "base_model.model.x.q.lora_A.weight", 34)];
    const lora_st_tensor *tb = &f->tensors[lora_st_find(f, "base_model.model.x.q.lora_B.weight", 34)];
    assert_int_equal(ta->dtype, LORA_ST_F32);
    assert_memory_equal(ta->data, qa, sizeof qa);
    assert_memory_equal(tb->data, b, sizeof b);
    lora_st_free(f);
    /* --dtype bf16: round to nearest even from the f32 values (b holds
     * multiples of 1/3, so the low half matters). */
    o.dtype = LORA_DTYPE_BF16;
    assert_int_equal(export_peft(&m, out, &o, &e), LORA_OK);
    f = ts_open_st(ts_join(out, "adapter_model.safetensors"));
    tb = &f->tensors[lora_st_find(f, "base_model.model.x.q.lora_B.weight", 34)];
    assert_int_equal(tb->dtype, LORA_ST_BF16);
    for (int i = 0; i < 64; i++) {
        uint32_t u;
        memcpy(&u, &b[i], 4);
        uint16_t want = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16), got;
        memcpy(&got, tb->data + 2 * i, 2);
        assert_int_equal(got, want);
    }
    lora_st_free(f);
    free(out);
    ts_rm_tree(dir);
    ts_imported_free(&m);
}

/* ------------------------------------------------------------------------ */
/* allocation failures: every one reported, nothing leaked                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    long calls, fail_at, live;
} counting;

static void *t_alloc(void *op, size_t n)
{
    counting *c = op;
    if (++c->calls == c->fail_at) return NULL;
    c->live++;
    return malloc(n);
}

static void t_free(void *op, void *p)
{
    counting *c = op;
    if (p) c->live--;
    free(p);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char *dir = ts_make_tmpdir("test_peft");
    char *src = strdup(ts_join(dir, "src")), *out = strdup(ts_join(dir, "out"));
    assert_int_equal(mkdir(src, 0755), 0);
    write_adapter(src,
                  "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_dora\": true, \"lora_bias\": true, "
                  "\"bias\": \"all\", \"modules_to_save\": [\"lm_head\"], \"rank_pattern\": {\"q_proj\": 4}}",
                  variety, sizeof variety / sizeof variety[0], 7);
    lora_convert_options plain = LORA_CONVERT_OPTIONS_INIT;
    ts_imported good;
    lora_error e;
    assert_int_equal(ts_import_with(lora_import_peft, src, &plain, &good, &e), LORA_OK);
    /* Import, failing the n-th allocation until none fails. */
    long n;
    for (n = 1; n < 100000; n++) {
        counting c = {0, n, 0};
        lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
        o.allocator = (lora_allocator){t_alloc, t_free, &c};
        ts_imported m;
        lora_status st = ts_import_with(lora_import_peft, src, &o, &m, &e);
        assert_int_equal(c.live, 0);
        if (st == LORA_OK) {
            assert_int_equal(m.size, good.size);
            assert_memory_equal(m.buf, good.buf, m.size);
            ts_imported_free(&m);
            break;
        }
        if (st != LORA_E_OUT_OF_MEMORY) fail_msg("import, failing allocation %ld: %s", n, e.detail);
    }
    assert_true(n > 1 && n < 100000);
    /* Export the same way: a failure leaves no file and no leak. */
    struct stat sb;
    for (n = 1; n < 100000; n++) {
        counting c = {0, n, 0};
        lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
        o.allocator = (lora_allocator){t_alloc, t_free, &c};
        lora_status st = export_peft(&good, out, &o, &e);
        assert_int_equal(c.live, 0);
        if (st == LORA_OK) break;
        if (st != LORA_E_OUT_OF_MEMORY) fail_msg("export, failing allocation %ld: %s", n, e.detail);
        assert_int_not_equal(stat(ts_join(out, "adapter_config.json"), &sb), 0);
    }
    assert_true(n > 1 && n < 100000);
    ts_imported_free(&good);
    ts_assert_same_tensors(ts_join(src, "adapter_model.safetensors"), ts_join(out, "adapter_model.safetensors"));
    free(src);
    free(out);
    ts_rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_fixtures),
        cmocka_unit_test(test_diffusers_fixture),
        cmocka_unit_test(test_refused_flags),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_loose_checks),
        cmocka_unit_test(test_regex_translation),
        cmocka_unit_test(test_patterns_and_rslora),
        cmocka_unit_test(test_variants_round_trip),
        cmocka_unit_test(test_synthesized_config),
        cmocka_unit_test(test_export_refusals),
        cmocka_unit_test(test_diffusers_layouts),
        cmocka_unit_test(test_export_dtypes),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
