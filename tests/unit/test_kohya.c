/*
 * test_kohya.c - kohya sd-scripts LoRA import and export (lib/ops/kohya_*).
 *
 * Oracles independent of the code under test:
 *   - synthetic kohya files are written byte by byte here (header JSON by
 *     hand, in the safetensors reference writer's layout: __metadata__
 *     first, tensors by dtype descending then name, header padded with
 *     spaces to a multiple of 8) from seeded random bit patterns, so the
 *     import is checked against the bytes that went in and the export
 *     against the whole input file;
 *   - ranks, alphas, scales, kinds and base shapes are written out by hand,
 *     scales as alpha / (float)r computed here;
 *   - the PEFT SD-UNet fixture is turned into a .lora here (not by the PEFT
 *     importer) and its kohya names checked against names spelled by hand
 *     from sd-scripts' rule; its lora_alpha is 16.
 * Fixtures missing: the fixture tests fail when $CI is set, else skip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "kernels/ref/fp_scalar.h"
#include "ops/convert.h"
#include "ops/kohya_names.h"
#include "support.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    return ts_tmpdir_create(tmpdir, sizeof tmpdir, "test_kohya");
}

static int teardown_dir(void **state)
{
    (void)state;
    return ts_tmpdir_remove(tmpdir);
}

static const char *tpath(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* The fixture file, or skip (fail under CI). */
static const char *need_fixture(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", ts_fixtures_dir(), rel);
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) return buf;
    if (getenv("CI")) fail_msg("fixture %s is missing and CI is set", buf);
    skip();
    return NULL;
}

typedef struct {
    int count;
    char msg[16][512];
} warnings;

static void on_warn(void *opaque, const char *message)
{
    warnings *w = opaque;
    if (w->count < 16) snprintf(w->msg[w->count], sizeof w->msg[0], "%s", message);
    w->count++;
}

static int warned(const warnings *w, const char *a, const char *b)
{
    for (int i = 0; i < w->count && i < 16; i++)
        if (strstr(w->msg[i], a) && (!b || strstr(w->msg[i], b))) return 1;
    return 0;
}

/* Serialize a writer and open the result. */
static lora_reader *open_written(lora_writer *w, void **buf)
{
    lora_error e;
    uint64_t size = 0;
    lora_status st = lora_writer_size(w, &size, &e);
    if (st != LORA_OK) fail_msg("writer_size: %s", e.detail);
    *buf = malloc((size_t)size);
    assert_non_null(*buf);
    size_t written = 0;
    assert_int_equal(lora_writer_write_buffer(w, *buf, (size_t)size, &written, &e), LORA_OK);
    lora_reader *r = NULL;
    st = lora_reader_open_buffer(*buf, written, NULL, &r, &e);
    if (st != LORA_OK) fail_msg("reader: %s", e.detail);
    return r;
}

/* Import a kohya file; on success *r is the .lora image opened. */
static lora_status import(const char *path, const lora_convert_options *o, lora_reader **r, void **buf, lora_error *e)
{
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    lora_status st = lora_import_kohya(path, o, w, e);
    *r = NULL;
    *buf = NULL;
    if (st == LORA_OK) *r = open_written(w, buf);
    lora_writer_free(w);
    return st;
}

static void close_image(lora_reader *r, void *buf)
{
    lora_reader_free(r);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* a safetensors file written by hand                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16", "I32" */
    uint32_t ndim;
    uint64_t shape[4];
    uint8_t *data;
    size_t size;
} tspec;

static size_t dtype_bytes(const char *d) { return strcmp(d, "F16") == 0 || strcmp(d, "BF16") == 0 ? 2 : 4; }

static size_t numel_of(const tspec *t)
{
    size_t n = 1;
    for (uint32_t i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Finite random bit patterns of each dtype (the importer must not care
 * about values, only keep the bytes). */
static void fill_random(tspec *t, uint64_t *seed)
{
    size_t n = numel_of(t), es = dtype_bytes(t->dtype);
    t->size = n * es;
    t->data = malloc(t->size ? t->size : 1);
    assert_non_null(t->data);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = ts_rng_next(seed);
        if (strcmp(t->dtype, "F16") == 0) {
            uint16_t h = (uint16_t)(((r >> 63) << 15) | ((5 + (r >> 8) % 16) << 10) | (r & 0x3ff));
            lora_fmt_wr16(t->data + 2 * i, h);
        } else if (strcmp(t->dtype, "BF16") == 0) {
            uint16_t b = (uint16_t)(((r >> 63) << 15) | ((110 + (r >> 8) % 20) << 7) | (r & 0x7f));
            lora_fmt_wr16(t->data + 2 * i, b);
        } else {
            float f = (float)((double)(r >> 40) / 16777216.0 * 2.0 - 1.0);
            lora_fmt_wr32(t->data + 4 * i, lora_f32_to_bits(f));
        }
    }
}

static void set_scalar(tspec *t, const char *dtype, uint32_t bits)
{
    t->dtype = dtype;
    t->ndim = 0;
    t->size = dtype_bytes(dtype);
    t->data = malloc(4);
    assert_non_null(t->data);
    if (t->size == 2) lora_fmt_wr16(t->data, (uint16_t)bits);
    else lora_fmt_wr32(t->data, bits);
}

static void free_specs(tspec *t, size_t n)
{
    for (size_t i = 0; i < n; i++) free(t[i].data);
}

/* The file: u64 n, the header exactly as serde_json writes it compactly
 * (meta_json holds the already-escaped pairs of __metadata__, or NULL),
 * spaces up to n % 8 == 0, then the tensors back to back in list order. */
static void write_st(const char *path, const char *meta_json, const tspec *t, size_t count)
{
    size_t cap = 4096 + (meta_json ? strlen(meta_json) : 0);
    for (size_t i = 0; i < count; i++) cap += strlen(t[i].name) + 160;
    char *h = malloc(cap);
    assert_non_null(h);
    size_t n = (size_t)snprintf(h, cap, "{");
    if (meta_json) n += (size_t)snprintf(h + n, cap - n, "\"__metadata__\":{%s}", meta_json);
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        n += (size_t)snprintf(h + n, cap - n, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", (i || meta_json) ? "," : "",
                              t[i].name, t[i].dtype);
        for (uint32_t d = 0; d < t[i].ndim; d++)
            n += (size_t)snprintf(h + n, cap - n, "%s%llu", d ? "," : "", (unsigned long long)t[i].shape[d]);
        n += (size_t)snprintf(h + n, cap - n, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].size);
        off += t[i].size;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    while (n % 8) h[n++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len[8];
    lora_fmt_wr64(len, n);
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(h, 1, n, f), n);
    for (size_t i = 0; i < count; i++)
        if (t[i].size) assert_int_equal(fwrite(t[i].data, 1, t[i].size, f), t[i].size);
    assert_int_equal(fclose(f), 0);
    free(h);
}

/* ------------------------------------------------------------------------ */
/* the synthetic adapter                                                    */
/* ------------------------------------------------------------------------ */

#define M_QPROJ "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
#define M_CONV1 "lora_unet_down_blocks_0_resnets_0_conv1"
#define M_FC1 "lora_te2_text_model_encoder_layers_1_mlp_fc1"
#define M_PROJIN "lora_unet_down_blocks_0_attentions_0_proj_in"
#define M_PROJOUT "lora_unet_mid_block_attentions_0_proj_out"

/* In the reference writer's order: F32 (by name), BF16, F16. */
#define SYN_COUNT 14
static const tspec syn_layout[SYN_COUNT] = {
    {M_QPROJ ".lora_down.weight", "F32", 2, {3, 7}, NULL, 0},     /* no alpha: alpha = r = 3 */
    {M_QPROJ ".lora_up.weight", "F32", 2, {7, 3}, NULL, 0},
    {M_CONV1 ".alpha", "F32", 0, {0}, NULL, 0},                   /* 1.0 */
    {M_CONV1 ".lora_down.weight", "F32", 4, {2, 3, 3, 3}, NULL, 0}, /* 3x3 conv */
    {M_CONV1 ".lora_up.weight", "F32", 4, {5, 2, 1, 1}, NULL, 0},
    {M_FC1 ".alpha", "BF16", 0, {0}, NULL, 0},                    /* 8.0 */
    {M_FC1 ".lora_down.weight", "BF16", 2, {4, 6}, NULL, 0},
    {M_FC1 ".lora_up.weight", "BF16", 2, {9, 4}, NULL, 0},
    {M_PROJIN ".alpha", "F16", 0, {0}, NULL, 0},                  /* 2.0 */
    {M_PROJIN ".lora_down.weight", "F16", 4, {4, 8, 1, 1}, NULL, 0}, /* 1x1 conv */
    {M_PROJIN ".lora_up.weight", "F16", 4, {6, 4, 1, 1}, NULL, 0},
    {M_PROJOUT ".alpha", "F16", 0, {0}, NULL, 0},                 /* 3.0 */
    {M_PROJOUT ".lora_down.weight", "F16", 2, {8, 5}, NULL, 0},
    {M_PROJOUT ".lora_up.weight", "F16", 2, {5, 8}, NULL, 0},
};

/* In file order, not sorted: the config must keep it. */
#define SYN_META                                                                                                   \
    "\"ss_network_module\":\"networks.lora\",\"ss_network_dim\":\"8\",\"ss_network_alpha\":\"Dynamic\","     \
    "\"ss_base_model_version\":\"sd_v1\",\"ss_tag_frequency\":\"{\\\"a b\\\": 1}\\n\",\"zz\":\"\xc3\xa9\""

static void make_synthetic(const char *path, uint64_t seed, tspec *t)
{
    memcpy(t, syn_layout, sizeof syn_layout);
    for (int i = 0; i < SYN_COUNT; i++) {
        if (t[i].ndim) fill_random(&t[i], &seed);
    }
    set_scalar(&t[2], "F32", 0x3f800000u);  /* 1.0 */
    set_scalar(&t[5], "BF16", 0x4100u);     /* 8.0 */
    set_scalar(&t[8], "F16", 0x4000u);      /* 2.0 */
    set_scalar(&t[11], "F16", 0x4200u);     /* 3.0 */
    write_st(path, SYN_META, t, SYN_COUNT);
}

static lora_dtype lora_dtype_of(const char *d)
{
    return strcmp(d, "F16") == 0 ? LORA_DTYPE_F16 : strcmp(d, "BF16") == 0 ? LORA_DTYPE_BF16 : LORA_DTYPE_F32;
}

static void check_blob(const lora_reader *r, uint32_t blob, const tspec *t)
{
    lora_blob b;
    assert_int_equal(lora_reader_blob(r, blob, &b), LORA_OK);
    assert_int_equal(b.dtype, lora_dtype_of(t->dtype));
    assert_int_equal(b.ndim, t->ndim);
    for (uint32_t i = 0; i < t->ndim; i++) assert_int_equal(b.shape[i], t->shape[i]);
    const void *p;
    size_t n;
    assert_int_equal(lora_reader_blob_view(r, blob, &p, &n), LORA_OK);
    assert_int_equal(n, t->size);
    assert_memory_equal(p, t->data, n);
}

static void check_module(const lora_reader *r, const char *name, lora_kind kind, uint32_t rank, float alpha,
                         uint32_t ndim, const uint64_t *base, const tspec *down, const tspec *up)
{
    uint32_t ix;
    assert_int_equal(lora_reader_module_find(r, name, &ix), LORA_OK);
    lora_module m;
    assert_int_equal(lora_reader_module(r, ix, &m), LORA_OK);
    assert_string_equal(m.name, name);
    assert_int_equal(m.kind, kind);
    assert_int_equal(m.scaling, LORA_SCALING_ALPHA_OVER_RANK);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.rank, rank);
    assert_int_equal(lora_f32_to_bits(m.alpha), lora_f32_to_bits(alpha));
    volatile float vr = (float)rank;
    assert_int_equal(lora_f32_to_bits(m.scale), lora_f32_to_bits(alpha / vr));
    assert_int_equal(m.base_ndim, ndim);
    for (uint32_t i = 0; i < LORA_MAX_DIMS; i++) assert_int_equal(m.base_shape[i], i < ndim ? base[i] : 0);
    assert_int_equal(m.blob_magnitude, LORA_NO_BLOB);
    assert_int_equal(m.blob_bias, LORA_NO_BLOB);
    check_blob(r, m.blob_a, down);
    check_blob(r, m.blob_b, up);
}

static void expect_meta(const lora_reader *r, const char *key, const char *value)
{
    lora_meta m;
    if (lora_reader_meta_find(r, key, &m) != LORA_OK) fail_msg("metadata '%s' missing", key);
    assert_int_equal(m.type, LORA_META_STRING);
    assert_string_equal(m.string, value);
}

/* ------------------------------------------------------------------------ */
/* import                                                                   */
/* ------------------------------------------------------------------------ */

static void test_import_synthetic(void **state)
{
    (void)state;
    tspec t[SYN_COUNT];
    const char *in = tpath("syn.safetensors");
    make_synthetic(in, 42, t);
    lora_reader *r;
    void *buf;
    lora_error e;
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    warnings w = {0};
    o.warn = on_warn;
    o.warn_opaque = &w;
    lora_status st = import(in, &o, &r, &buf, &e);
    if (st != LORA_OK) fail_msg("import: %s", e.detail);
    assert_int_equal(w.count, 0);
    lora_file_info info;
    lora_reader_file_info(r, &info);
    assert_int_equal(info.module_count, 5);
    assert_int_equal(info.tensor_count, 0);
    assert_int_equal(info.blob_count, 10);
    static const uint64_t qproj[] = {7, 7}, conv1[] = {5, 3, 3, 3}, fc1[] = {9, 6}, projin[] = {6, 8, 1, 1},
                          projout[] = {5, 5};
    check_module(r, M_QPROJ, LORA_KIND_LINEAR, 3, 3.0f, 2, qproj, &t[0], &t[1]);
    check_module(r, M_CONV1, LORA_KIND_CONV2D, 2, 1.0f, 4, conv1, &t[3], &t[4]);
    check_module(r, M_FC1, LORA_KIND_LINEAR, 4, 8.0f, 2, fc1, &t[6], &t[7]);
    check_module(r, M_PROJIN, LORA_KIND_CONV2D, 4, 2.0f, 4, projin, &t[9], &t[10]);
    check_module(r, M_PROJOUT, LORA_KIND_LINEAR, 8, 3.0f, 2, projout, &t[12], &t[13]);
    /* Spot checks of the scales by hand. */
    uint32_t ix;
    lora_module m;
    assert_int_equal(lora_reader_module_find(r, M_PROJOUT, &ix), LORA_OK);
    assert_int_equal(lora_reader_module(r, ix, &m), LORA_OK);
    assert_true(m.scale == 0.375f);
    assert_int_equal(lora_reader_module_find(r, M_QPROJ, &ix), LORA_OK);
    assert_int_equal(lora_reader_module(r, ix, &m), LORA_OK);
    assert_true(m.scale == 1.0f);

    expect_meta(r, LORA_META_SOURCE_FORMAT, "kohya");
    expect_meta(r, LORA_META_SOURCE_CONFIG, "{" SYN_META "}");
    /* F16 is the commonest alpha dtype; the others are recorded by module, in file order. */
    expect_meta(r, LORA_KOHYA_META_ALPHA,
                "{\"dtype\":\"F16\",\"modules\":{\"" M_QPROJ "\":\"absent\",\"" M_CONV1 "\":\"F32\",\"" M_FC1
                "\":\"BF16\"}}");
    close_image(r, buf);
    free_specs(t, SYN_COUNT);
}

/* --dtype f32 on import: A and B become F32 with the same values. */
static void test_import_dtype(void **state)
{
    (void)state;
    tspec t[SYN_COUNT];
    const char *in = tpath("syn_dt.safetensors");
    make_synthetic(in, 7, t);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.dtype = LORA_DTYPE_F32;
    lora_reader *r;
    void *buf;
    lora_error e;
    assert_int_equal(import(in, &o, &r, &buf, &e), LORA_OK);
    uint32_t ix;
    lora_module m;
    assert_int_equal(lora_reader_module_find(r, M_PROJIN, &ix), LORA_OK);
    assert_int_equal(lora_reader_module(r, ix, &m), LORA_OK);
    lora_blob b;
    assert_int_equal(lora_reader_blob(r, m.blob_a, &b), LORA_OK);
    assert_int_equal(b.dtype, LORA_DTYPE_F32);
    const void *p;
    size_t n;
    assert_int_equal(lora_reader_blob_view(r, m.blob_a, &p, &n), LORA_OK);
    assert_int_equal(n, t[9].size * 2);
    for (size_t i = 0; i < t[9].size / 2; i++) {
        uint32_t want = lora_f16_bits_to_f32_bits(lora_fmt_rd16(t[9].data + 2 * i));
        assert_int_equal(lora_fmt_rd32((const uint8_t *)p + 4 * i), want);
    }
    close_image(r, buf);
    free_specs(t, SYN_COUNT);
}

/* ------------------------------------------------------------------------ */
/* round trip kohya -> .lora -> kohya                                       */
/* ------------------------------------------------------------------------ */

static lora_status export_image(const lora_reader *r, const char *out, const lora_convert_options *o, const char *input,
                                lora_error *e)
{
    lora_write_options wo = LORA_WRITE_OPTIONS_INIT;
    const char *inputs[1] = {input};
    if (input) {
        wo.inputs = inputs;
        wo.input_count = 1;
    }
    return lora_export_kohya(r, out, o, &wo, e);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        tspec t[SYN_COUNT];
        const char *in = tpath("rt_in.safetensors"), *out = tpath("rt_out.safetensors");
        make_synthetic(in, seed, t);
        lora_reader *r;
        void *buf;
        lora_error e;
        assert_int_equal(import(in, NULL, &r, &buf, &e), LORA_OK);
        lora_status st = export_image(r, out, NULL, in, &e);
        if (st != LORA_OK) fail_msg("export: %s", e.detail);
        close_image(r, buf);
        /* Every tensor, name, dtype, alpha (F16 and BF16 and F32, and the
         * missing one still missing) and the __metadata__: the whole file. */
        ts_assert_same_file(in, out);
        /* And tensor by tensor, through the reader. */
        lora_st_file *f = NULL;
        assert_int_equal(lora_st_open(out, NULL, &f, &e), LORA_OK);
        assert_int_equal(f->tensor_count, SYN_COUNT);
        for (int i = 0; i < SYN_COUNT; i++) {
            uint32_t k = lora_st_find(f, t[i].name, strlen(t[i].name));
            assert_int_not_equal(k, UINT32_MAX);
            assert_string_equal(lora_st_dtype_name(f->tensors[k].dtype), t[i].dtype);
            assert_int_equal(f->tensors[k].size, t[i].size);
            assert_memory_equal(f->tensors[k].data, t[i].data, t[i].size);
        }
        assert_int_equal(f->meta_count, 6);
        assert_string_equal(f->meta[4].key, "ss_tag_frequency");
        assert_string_equal(f->meta[4].value, "{\"a b\": 1}\n");
        lora_st_free(f);
        free_specs(t, SYN_COUNT);
    }
}

/* --dtype on export: alphas follow it when exact; tensors are converted. */
static void test_export_dtype(void **state)
{
    (void)state;
    tspec t[SYN_COUNT];
    const char *in = tpath("xd_in.safetensors"), *out = tpath("xd_out.safetensors");
    make_synthetic(in, 9, t);
    lora_reader *r;
    void *buf;
    lora_error e;
    assert_int_equal(import(in, NULL, &r, &buf, &e), LORA_OK);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.dtype = LORA_DTYPE_F32;
    assert_int_equal(export_image(r, out, &o, in, &e), LORA_OK);
    close_image(r, buf);
    lora_st_file *f = NULL;
    assert_int_equal(lora_st_open(out, NULL, &f, &e), LORA_OK);
    assert_int_equal(f->tensor_count, SYN_COUNT);
    for (uint32_t i = 0; i < f->tensor_count; i++) assert_int_equal(f->tensors[i].dtype, LORA_ST_F32);
    const char *k = M_PROJIN ".alpha";
    uint32_t ix = lora_st_find(f, k, strlen(k));
    assert_int_not_equal(ix, UINT32_MAX);
    assert_int_equal(lora_fmt_rd32(f->tensors[ix].data), 0x40000000u);
    k = M_QPROJ ".alpha";
    assert_int_equal(lora_st_find(f, k, strlen(k)), UINT32_MAX); /* still absent */
    k = M_FC1 ".lora_up.weight";
    ix = lora_st_find(f, k, strlen(k));
    assert_int_not_equal(ix, UINT32_MAX);
    for (size_t i = 0; i < t[7].size / 2; i++)
        assert_int_equal(lora_fmt_rd32(f->tensors[ix].data + 4 * i), (uint32_t)lora_fmt_rd16(t[7].data + 2 * i) << 16);
    lora_st_free(f);
    free_specs(t, SYN_COUNT);
}

/* ------------------------------------------------------------------------ */
/* PEFT fixture -> .lora -> kohya                                           */
/* ------------------------------------------------------------------------ */

/* A .lora built here from PEFT keys: base_model.model.<module>.lora_A/B.weight. */
static lora_reader *peft_image(const lora_st_file *f, float alpha, void **buf)
{
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    static const char pre[] = "base_model.model.", sa[] = ".lora_A.weight";
    char name[512], key[600];
    for (uint32_t i = 0; i < f->tensor_count; i++) {
        const lora_st_tensor *a = &f->tensors[i];
        size_t n = a->name_length;
        if (n < sizeof sa || strcmp(a->name + n - (sizeof sa - 1), sa) != 0) continue;
        assert_memory_equal(a->name, pre, sizeof pre - 1);
        size_t ml = n - (sizeof pre - 1) - (sizeof sa - 1);
        memcpy(name, a->name + sizeof pre - 1, ml);
        name[ml] = '\0';
        snprintf(key, sizeof key, "%s%s.lora_B.weight", pre, name);
        uint32_t bi = lora_st_find(f, key, strlen(key));
        assert_int_not_equal(bi, UINT32_MAX);
        const lora_st_tensor *b = &f->tensors[bi];
        lora_module_desc d;
        memset(&d, 0, sizeof d);
        d.name = name;
        d.kind = LORA_KIND_LINEAR;
        d.scaling = LORA_SCALING_ALPHA_OVER_RANK;
        d.rank = (uint32_t)a->shape[0];
        d.alpha = alpha;
        d.base_ndim = 2;
        d.base_shape[0] = b->shape[0];
        d.base_shape[1] = a->shape[1];
        d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
        assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 2, a->shape, a->data, a->size, 0, &d.blob_a),
                         LORA_OK);
        assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 2, b->shape, b->data, b->size, 0, &d.blob_b),
                         LORA_OK);
        assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    }
    assert_int_equal(lora_writer_set_string(w, LORA_META_SOURCE_FORMAT, "peft", 4), LORA_OK);
    lora_reader *r = open_written(w, buf);
    lora_writer_free(w);
    return r;
}

static void expect_pair(const lora_st_file *src, const char *peft_module, const lora_st_file *out, const char *kohya,
                        uint64_t out_dim, uint64_t in_dim)
{
    char sk[600], ok[600];
    static const char *const suf[2][2] = {{".lora_A.weight", ".lora_down.weight"},
                                          {".lora_B.weight", ".lora_up.weight"}};
    for (int i = 0; i < 2; i++) {
        snprintf(sk, sizeof sk, "base_model.model.%s%s", peft_module, suf[i][0]);
        snprintf(ok, sizeof ok, "%s%s", kohya, suf[i][1]);
        uint32_t s = lora_st_find(src, sk, strlen(sk)), o = lora_st_find(out, ok, strlen(ok));
        if (s == UINT32_MAX) fail_msg("fixture lacks %s", sk);
        if (o == UINT32_MAX) fail_msg("output lacks %s", ok);
        const lora_st_tensor *x = &out->tensors[o];
        assert_int_equal(x->dtype, LORA_ST_F32);
        assert_int_equal(x->ndim, 2);
        assert_int_equal(x->shape[0], i == 0 ? 4 : out_dim);
        assert_int_equal(x->shape[1], i == 0 ? in_dim : 4);
        assert_int_equal(x->size, src->tensors[s].size);
        assert_memory_equal(x->data, src->tensors[s].data, x->size);
    }
    snprintf(ok, sizeof ok, "%s.alpha", kohya);
    uint32_t a = lora_st_find(out, ok, strlen(ok));
    if (a == UINT32_MAX) fail_msg("output lacks %s", ok);
    assert_int_equal(out->tensors[a].ndim, 0);
    assert_int_equal(out->tensors[a].dtype, LORA_ST_F32);
    assert_int_equal(lora_fmt_rd32(out->tensors[a].data), 0x41800000u); /* 16.0f */
}

static void test_peft_fixture(void **state)
{
    (void)state;
    const char *src = need_fixture("peft-sd-unet/adapter_model.safetensors");
    lora_error e;
    lora_st_file *f = NULL;
    assert_int_equal(lora_st_open(src, NULL, &f, &e), LORA_OK);
    void *buf;
    lora_reader *r = peft_image(f, 16.0f, &buf); /* adapter_config.json: lora_alpha 16, r 4 */
    const char *out = tpath("peft.safetensors");
    lora_status st = export_image(r, out, NULL, src, &e);
    if (st != LORA_OK) fail_msg("export: %s", e.detail);
    close_image(r, buf);
    lora_st_file *k = NULL;
    assert_int_equal(lora_st_open(out, NULL, &k, &e), LORA_OK);
    assert_int_equal(k->tensor_count, 96 * 3);
    /* Names spelled by hand from sd-scripts' (prefix + path).replace(".", "_"). */
    expect_pair(f, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", k,
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k", 320, 320);
    expect_pair(f, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v", k,
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v", 320, 768);
    expect_pair(f, "mid_block.attentions.0.transformer_blocks.0.attn2.to_v", k,
                "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v", 1280, 768);
    expect_pair(f, "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_q", k,
                "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_q", 320, 320);
    /* Every alpha is 16, every key is a kohya key, and the layout is the
     * reference writer's (all F32: names ascending). */
    uint32_t alphas = 0;
    for (uint32_t i = 0; i < k->tensor_count; i++) {
        const lora_st_tensor *x = &k->tensors[i];
        assert_memory_equal(x->name, "lora_unet_", 10);
        const char *suffix = strchr(x->name, '.');
        assert_non_null(suffix);
        assert_true(strcmp(suffix, ".lora_down.weight") == 0 || strcmp(suffix, ".lora_up.weight") == 0 ||
                    strcmp(suffix, ".alpha") == 0);
        if (i) assert_true(strcmp(k->tensors[i - 1].name, x->name) < 0);
        size_t n = x->name_length;
        if (n > 6 && strcmp(x->name + n - 6, ".alpha") == 0) {
            assert_int_equal(lora_fmt_rd32(x->data), 0x41800000u);
            alphas++;
        }
    }
    assert_int_equal(alphas, 96);
    assert_int_equal(k->meta_count, 3);
    assert_string_equal(k->meta[0].key, "ss_network_module");
    assert_string_equal(k->meta[0].value, "networks.lora");
    assert_string_equal(k->meta[1].key, "ss_network_dim");
    assert_string_equal(k->meta[1].value, "4");
    assert_string_equal(k->meta[2].key, "ss_network_alpha");
    assert_string_equal(k->meta[2].value, "16.0");
    lora_st_free(k);

    /* And back: the kohya file imports with the same A, B and scale 4. */
    lora_reader *r2;
    assert_int_equal(import(out, NULL, &r2, &buf, &e), LORA_OK);
    uint32_t ix;
    lora_module m;
    const char *mid = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v";
    assert_int_equal(lora_reader_module_find(r2, mid, &ix), LORA_OK);
    assert_int_equal(lora_reader_module(r2, ix, &m), LORA_OK);
    assert_true(m.alpha == 16.0f && m.scale == 4.0f && m.rank == 4);
    assert_int_equal(m.base_shape[0], 1280);
    assert_int_equal(m.base_shape[1], 768);
    close_image(r2, buf);
    lora_st_free(f);
}

/* ------------------------------------------------------------------------ */
/* name mapping                                                             */
/* ------------------------------------------------------------------------ */

static void expect_name(const char *in, int te2, const char *want)
{
    char out[512];
    size_t n = lora_kohya_export_name(in, te2, NULL);
    assert_true(strlen(in) + LORA_KOHYA_NAME_EXTRA <= sizeof out);
    assert_int_equal(lora_kohya_export_name(in, te2, out), n);
    assert_int_equal(strlen(out), n);
    assert_string_equal(out, want);
}

static void test_names(void **state)
{
    (void)state;
    expect_name("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", 0,
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k");
    expect_name("unet.up_blocks.1.attentions.2.proj_out", 0, "lora_unet_up_blocks_1_attentions_2_proj_out");
    expect_name("base_model.model.mid_block.resnets.0.conv1", 0, "lora_unet_mid_block_resnets_0_conv1");
    expect_name("text_encoder.text_model.encoder.layers.11.mlp.fc2", 0,
                "lora_te_text_model_encoder_layers_11_mlp_fc2");
    expect_name("text_encoder.text_model.encoder.layers.11.mlp.fc2", 1,
                "lora_te1_text_model_encoder_layers_11_mlp_fc2");
    expect_name("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", 1,
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj");
    expect_name("text_model.encoder.layers.3.self_attn.out_proj", 0,
                "lora_te_text_model_encoder_layers_3_self_attn_out_proj");
    expect_name("transformer.transformer_blocks.0.attn.to_q", 0, "lora_transformer_transformer_blocks_0_attn_to_q");
    expect_name(M_PROJIN, 0, M_PROJIN);
    expect_name("lora_te1_text_model_encoder_layers_0_mlp_fc1", 0, "lora_te1_text_model_encoder_layers_0_mlp_fc1");
    expect_name("fc1", 0, "lora_unet_fc1");
    assert_true(lora_kohya_is_text_encoder_2("text_encoder_2.text_model.x"));
    assert_false(lora_kohya_is_text_encoder_2("text_encoder.text_model.x"));

    lora_kohya_key k;
    lora_kohya_classify("a_b.lora_down.weight", 20, &k);
    assert_int_equal(k.kind, LORA_KOHYA_KEY_DOWN);
    assert_int_equal(k.module_length, 3);
    lora_kohya_classify("a_b.alpha", 9, &k);
    assert_int_equal(k.kind, LORA_KOHYA_KEY_ALPHA);
    lora_kohya_classify("a_b.hada_w2_b", 13, &k);
    assert_int_equal(k.kind, LORA_KOHYA_KEY_LYCORIS);
    assert_string_equal(k.what, "LoHa");
    lora_kohya_classify("a.b.lora_up.weight", 18, &k); /* a dot in the module: not kohya */
    assert_int_equal(k.kind, LORA_KOHYA_KEY_UNKNOWN);
    lora_kohya_classify(".alpha", 6, &k);
    assert_int_equal(k.kind, LORA_KOHYA_KEY_UNKNOWN);
}

/* ------------------------------------------------------------------------ */
/* import refusals                                                          */
/* ------------------------------------------------------------------------ */

/* A one-module linear kohya file (r 2, in 3, out 4, F32), plus extras. */
static void write_case(const char *path, const tspec *extra, size_t nextra, int with_module)
{
    tspec t[12];
    memset(t, 0, sizeof t);
    size_t n = 0;
    uint64_t seed = 5;
    if (with_module) {
        t[n++] = (tspec){"lora_unet_x.alpha", "F32", 0, {0}, NULL, 0};
        set_scalar(&t[0], "F32", 0x40000000u);
        t[n] = (tspec){"lora_unet_x.lora_down.weight", "F32", 2, {2, 3}, NULL, 0};
        fill_random(&t[n++], &seed);
        t[n] = (tspec){"lora_unet_x.lora_up.weight", "F32", 2, {4, 2}, NULL, 0};
        fill_random(&t[n++], &seed);
    }
    for (size_t i = 0; i < nextra; i++) {
        t[n] = extra[i];
        if (!t[n].data) fill_random(&t[n], &seed);
        else {
            uint8_t *copy = malloc(t[n].size);
            memcpy(copy, t[n].data, t[n].size);
            t[n].data = copy;
        }
        n++;
    }
    write_st(path, NULL, t, n);
    free_specs(t, n);
}

static void expect_refusal(const char *path, uint32_t flags, lora_status want, const char *detail1,
                           const char *detail2)
{
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.flags = flags;
    lora_reader *r;
    void *buf;
    lora_error e;
    lora_status st = import(path, &o, &r, &buf, &e);
    if (st != want) fail_msg("%s: got %s (%s), want %s", path, lora_status_name(st), e.detail, lora_status_name(want));
    assert_int_equal(e.status, want);
    if (detail1 && !strstr(e.detail, detail1)) fail_msg("detail '%s' lacks '%s'", e.detail, detail1);
    if (detail2 && !strstr(e.detail, detail2)) fail_msg("detail '%s' lacks '%s'", e.detail, detail2);
}

static void test_refuse_lycoris(void **state)
{
    (void)state;
    const char *p = tpath("lyco.safetensors");
    tspec loha[] = {{"lora_unet_y.hada_w1_a", "F32", 2, {4, 2}, NULL, 0},
                    {"lora_unet_y.hada_w1_b", "F32", 2, {2, 3}, NULL, 0}};
    write_case(p, loha, 2, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_ADAPTER, "lora_unet_y.hada_w1_a", "LoHa");
    tspec lokr[] = {{"lora_unet_y.lokr_w1", "F32", 2, {2, 2}, NULL, 0}};
    write_case(p, lokr, 1, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_ADAPTER, "lora_unet_y.lokr_w1", "LoKr");
    tspec locon[] = {{"lora_unet_y.lora_down.weight", "F32", 4, {2, 3, 1, 1}, NULL, 0},
                     {"lora_unet_y.lora_mid.weight", "F32", 4, {2, 2, 3, 3}, NULL, 0},
                     {"lora_unet_y.lora_up.weight", "F32", 4, {4, 2, 1, 1}, NULL, 0}};
    write_case(p, locon, 3, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_ADAPTER, "lora_unet_y.lora_mid.weight", "lora_mid");
    tspec ia3[] = {{"lora_unet_y.on_input", "F32", 1, {3}, NULL, 0}};
    write_case(p, ia3, 1, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_ADAPTER, "lora_unet_y.on_input", "IA");
    tspec other[] = {{"bundle_emb.tok.string_to_param.*", "F32", 2, {1, 4}, NULL, 0}};
    write_case(p, other, 1, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_ADAPTER, "bundle_emb", "not a kohya LoRA key");
}

static void test_refuse_dora_scale(void **state)
{
    (void)state;
    const char *p = tpath("dora.safetensors");
    tspec dora[] = {{"lora_unet_x.dora_scale", "F32", 2, {1, 3}, NULL, 0}};
    write_case(p, dora, 1, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_ADAPTER, "lora_unet_x.dora_scale", "per input column");
}

/* With DROP_UNSUPPORTED: each dropped tensor is named in a warning; the
 * plain module stays, the LyCORIS module goes whole. */
static void test_import_drop(void **state)
{
    (void)state;
    const char *p = tpath("drop.safetensors");
    tspec extra[] = {{"lora_unet_x.dora_scale", "F32", 2, {1, 3}, NULL, 0},
                     {"lora_unet_y.alpha", "F32", 0, {0}, NULL, 0},
                     {"lora_unet_y.lora_down.weight", "F32", 4, {2, 3, 1, 1}, NULL, 0},
                     {"lora_unet_y.lora_mid.weight", "F32", 4, {2, 2, 3, 3}, NULL, 0},
                     {"lora_unet_y.lora_up.weight", "F32", 4, {4, 2, 1, 1}, NULL, 0},
                     {"lora_unet_z.hada_w1_a", "F32", 2, {4, 2}, NULL, 0}};
    uint8_t one[4];
    lora_fmt_wr32(one, 0x3f800000u);
    extra[1].data = one;
    extra[1].size = 4;
    write_case(p, extra, 6, 1);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    warnings w = {0};
    o.flags = LORA_CONVERT_DROP_UNSUPPORTED;
    o.warn = on_warn;
    o.warn_opaque = &w;
    lora_reader *r;
    void *buf;
    lora_error e;
    lora_status st = import(p, &o, &r, &buf, &e);
    if (st != LORA_OK) fail_msg("import: %s", e.detail);
    assert_int_equal(w.count, 6);
    assert_true(warned(&w, "lora_unet_x.dora_scale", "dora_scale"));
    assert_true(warned(&w, "lora_unet_y.alpha", "LyCORIS"));
    assert_true(warned(&w, "lora_unet_y.lora_down.weight", "LyCORIS"));
    assert_true(warned(&w, "lora_unet_y.lora_mid.weight", "lora_mid"));
    assert_true(warned(&w, "lora_unet_y.lora_up.weight", "LyCORIS"));
    assert_true(warned(&w, "lora_unet_z.hada_w1_a", "LoHa"));
    lora_file_info info;
    lora_reader_file_info(r, &info);
    assert_int_equal(info.module_count, 1);
    uint32_t ix;
    assert_int_equal(lora_reader_module_find(r, "lora_unet_x", &ix), LORA_OK);
    close_image(r, buf);
}

static void test_refuse_bad_files(void **state)
{
    (void)state;
    const char *p = tpath("bad.safetensors");
    /* A Git LFS pointer in place of the file. */
    static const char lfs[] = "version https://git-lfs.github.com/spec/v1\n"
                              "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                              "size 12345\n";
    ts_write_file(p, lfs, sizeof lfs - 1);
    expect_refusal(p, 0, LORA_E_LFS_POINTER, "Git LFS pointer", "fetch");
    /* Truncated by one byte, and cut inside the header. */
    tspec t[SYN_COUNT];
    make_synthetic(p, 3, t);
    free_specs(t, SYN_COUNT);
    size_t n;
    uint8_t *all = ts_read_file(p, &n);
    ts_write_file(p, all, n - 1);
    expect_refusal(p, 0, LORA_E_TRUNCATED, NULL, NULL);
    ts_write_file(p, all, 100);
    expect_refusal(p, 0, LORA_E_TRUNCATED, NULL, NULL);
    free(all);
    /* Rank mismatch between A and B. */
    tspec mis[] = {{"lora_unet_y.lora_down.weight", "F32", 2, {4, 3}, NULL, 0},
                   {"lora_unet_y.lora_up.weight", "F32", 2, {5, 3}, NULL, 0}};
    write_case(p, mis, 2, 1);
    expect_refusal(p, 0, LORA_E_BAD_SHAPE, "rank mismatch", "lora_unet_y.lora_up.weight");
    /* Alpha that is not a scalar. */
    uint8_t two[4];
    lora_fmt_wr32(two, 0x40000000u);
    tspec vec[] = {{"lora_unet_y.alpha", "F32", 1, {1}, two, 4},
                   {"lora_unet_y.lora_down.weight", "F32", 2, {2, 3}, NULL, 0},
                   {"lora_unet_y.lora_up.weight", "F32", 2, {3, 2}, NULL, 0}};
    write_case(p, vec, 3, 0);
    expect_refusal(p, 0, LORA_E_BAD_SHAPE, "lora_unet_y.alpha", "0-dim scalar");
    /* Alpha NaN. */
    uint8_t nan[4];
    lora_fmt_wr32(nan, 0x7fc00000u);
    vec[0] = (tspec){"lora_unet_y.alpha", "F32", 0, {0}, nan, 4};
    write_case(p, vec, 3, 0);
    expect_refusal(p, 0, LORA_E_BAD_ALPHA, "lora_unet_y.alpha", "not finite");
    /* B without A. */
    tspec orphan[] = {{"lora_unet_y.lora_up.weight", "F32", 2, {3, 2}, NULL, 0}};
    write_case(p, orphan, 1, 1);
    expect_refusal(p, 0, LORA_E_BAD_HEADER, "lora_unet_y.lora_up.weight", "no matching lora_down");
    /* An integer factor. */
    tspec ints[] = {{"lora_unet_y.lora_down.weight", "I32", 2, {2, 3}, NULL, 0},
                    {"lora_unet_y.lora_up.weight", "F32", 2, {3, 2}, NULL, 0}};
    write_case(p, ints, 2, 1);
    expect_refusal(p, 0, LORA_E_UNSUPPORTED_DTYPE, "lora_unet_y.lora_down.weight", "I32");
    /* A convolution whose B is not 1x1. */
    tspec conv[] = {{"lora_unet_y.lora_down.weight", "F32", 4, {2, 3, 3, 3}, NULL, 0},
                    {"lora_unet_y.lora_up.weight", "F32", 4, {4, 2, 3, 3}, NULL, 0}};
    write_case(p, conv, 2, 1);
    expect_refusal(p, 0, LORA_E_BAD_SHAPE, "lora_unet_y.lora_up.weight", "[out, r, 1, 1]");
    /* 3-D factors are not kohya. */
    tspec c1[] = {{"lora_unet_y.lora_down.weight", "F32", 3, {2, 3, 3}, NULL, 0},
                  {"lora_unet_y.lora_up.weight", "F32", 3, {4, 2, 1}, NULL, 0}};
    write_case(p, c1, 2, 1);
    expect_refusal(p, 0, LORA_E_BAD_SHAPE, "lora_unet_y.lora_down.weight", NULL);
    /* No module at all. */
    write_case(p, NULL, 0, 0);
    expect_refusal(p, 0, LORA_E_UNKNOWN_FORMAT, "no LoRA module", NULL);
}

/* alpha 0: tools disagree (scale 0 in merge_lora.py and ComfyUI, alpha =
 * rank in sd-scripts' loader), so it is kept as written, with a warning
 * both ways. */
static void test_alpha_zero(void **state)
{
    (void)state;
    const char *p = tpath("zero.safetensors"), *out = tpath("zero_out.safetensors");
    uint8_t zero[2] = {0, 0};
    tspec t[] = {{"lora_unet_y.alpha", "F16", 0, {0}, zero, 2},
                 {"lora_unet_y.lora_down.weight", "F16", 2, {2, 3}, NULL, 0},
                 {"lora_unet_y.lora_up.weight", "F16", 2, {3, 2}, NULL, 0}};
    write_case(p, t, 3, 0);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    warnings w = {0};
    o.warn = on_warn;
    o.warn_opaque = &w;
    lora_reader *r;
    void *buf;
    lora_error e;
    assert_int_equal(import(p, &o, &r, &buf, &e), LORA_OK);
    assert_int_equal(w.count, 1);
    assert_true(warned(&w, "lora_unet_y.alpha", "alpha 0 kept"));
    lora_module m;
    assert_int_equal(lora_reader_module(r, 0, &m), LORA_OK);
    assert_int_equal(lora_f32_to_bits(m.alpha), 0);
    assert_int_equal(lora_f32_to_bits(m.scale), 0);
    assert_int_equal(export_image(r, out, &o, p, &e), LORA_OK);
    assert_int_equal(w.count, 2);
    assert_true(warned(&w, "lora_unet_y", "alpha 0 written"));
    close_image(r, buf);
    size_t na, nb;
    uint8_t *a = ts_read_file(p, &na), *b = ts_read_file(out, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* export                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    lora_kind kind;
    lora_scaling scaling;
    uint32_t flags;
    uint32_t rank;
    float alpha, scale;
    int magnitude, bias;
} mspec;

/* A .lora with the given modules (F32 factors, in 3, out 4; conv kinds
 * with kernel 1) and optionally one replacement tensor. */
static lora_reader *build_image(const mspec *ms, size_t n, int with_tensor, void **buf)
{
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    uint64_t seed = 11;
    for (size_t i = 0; i < n; i++) {
        const mspec *s = &ms[i];
        lora_module_desc d;
        memset(&d, 0, sizeof d);
        d.name = s->name;
        d.kind = s->kind;
        d.scaling = s->scaling;
        d.flags = s->flags;
        d.rank = s->rank;
        d.alpha = s->alpha;
        d.scale = s->scale;
        uint32_t nd = s->kind == LORA_KIND_CONV1D   ? 3
                      : s->kind == LORA_KIND_CONV2D ? 4
                      : s->kind == LORA_KIND_CONV3D ? 5
                                                    : 2;
        uint64_t out = 4, in = 3;
        d.base_ndim = nd;
        uint64_t as[5] = {s->rank, in, 1, 1, 1}, bs[5] = {out, s->rank, 1, 1, 1};
        if (s->kind == LORA_KIND_EMBEDDING) {
            d.base_shape[0] = in;
            d.base_shape[1] = out; /* A [r, num], B [dim, r] */
        } else if (s->flags & LORA_MODULE_FAN_IN_FAN_OUT) {
            d.base_shape[0] = in;
            d.base_shape[1] = out;
        } else {
            d.base_shape[0] = out;
            d.base_shape[1] = in;
            for (uint32_t k = 2; k < nd; k++) d.base_shape[k] = 1;
        }
        float va[64], vb[64];
        for (int k = 0; k < 64; k++) {
            va[k] = (float)(ts_rng_next(&seed) % 64) / 8.0f - 4.0f;
            vb[k] = (float)(ts_rng_next(&seed) % 64) / 8.0f - 4.0f;
        }
        uint64_t na = s->rank * in, nb = out * s->rank;
        assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, nd, as, va, (size_t)na, 0, &d.blob_a), LORA_OK);
        assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, nd, bs, vb, (size_t)nb, 0, &d.blob_b), LORA_OK);
        d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
        uint64_t vs[1] = {out};
        if (s->magnitude)
            assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, vs, va, 4, 0, &d.blob_magnitude), LORA_OK);
        if (s->bias)
            assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, vs, vb, 4, 0, &d.blob_bias), LORA_OK);
        lora_status st = lora_writer_add_module(w, &d, NULL);
        if (st != LORA_OK) fail_msg("add_module %s: %s", s->name, lora_status_name(st));
    }
    if (with_tensor) {
        uint32_t b;
        uint64_t sh[2] = {2, 2};
        float v[4] = {1, 2, 3, 4};
        assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sh, v, 4, 0, &b), LORA_OK);
        assert_int_equal(lora_writer_add_tensor(w, "lm_head.weight", b), LORA_OK);
    }
    lora_reader *r = open_written(w, buf);
    lora_writer_free(w);
    return r;
}

#define PLAIN(name) {name, LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 4.0f, 0, 0, 0}

static lora_status export_specs(const mspec *ms, size_t n, int with_tensor, uint32_t flags, warnings *w,
                                lora_error *e)
{
    void *buf;
    lora_reader *r = build_image(ms, n, with_tensor, &buf);
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    o.flags = flags;
    o.warn = on_warn;
    o.warn_opaque = w;
    lora_status st = export_image(r, tpath("x.safetensors"), &o, NULL, e);
    close_image(r, buf);
    return st;
}

static void expect_export_refusal(const mspec *ms, size_t n, int with_tensor, const char *d1, const char *d2)
{
    warnings w = {0};
    lora_error e;
    unlink(tpath("x.safetensors"));
    lora_status st = export_specs(ms, n, with_tensor, 0, &w, &e);
    if (st != LORA_E_UNSUPPORTED_ADAPTER) fail_msg("got %s (%s)", lora_status_name(st), e.detail);
    if (!strstr(e.detail, d1)) fail_msg("detail '%s' lacks '%s'", e.detail, d1);
    if (d2 && !strstr(e.detail, d2)) fail_msg("detail '%s' lacks '%s'", e.detail, d2);
    struct stat sb;
    assert_int_not_equal(stat(tpath("x.safetensors"), &sb), 0); /* nothing written */
}

static void test_export_refusals(void **state)
{
    (void)state;
    mspec dora[] = {PLAIN("down_blocks.0.a"), PLAIN("down_blocks.0.b")};
    dora[1].magnitude = 1;
    expect_export_refusal(dora, 2, 0, "down_blocks.0.b", "DoRA");
    mspec bias[] = {PLAIN("down_blocks.0.a"), PLAIN("down_blocks.0.b")};
    bias[0].bias = 1;
    expect_export_refusal(bias, 2, 0, "down_blocks.0.a", "bias");
    mspec plain[] = {PLAIN("down_blocks.0.a")};
    expect_export_refusal(plain, 1, 1, "lm_head.weight", "replacement");
    mspec emb[] = {PLAIN("down_blocks.0.a"), {"text_encoder.embed", LORA_KIND_EMBEDDING, 0, 0, 2, 4.0f, 0, 0, 0}};
    expect_export_refusal(emb, 2, 0, "text_encoder.embed", "embedding");
    mspec c1[] = {{"conv", LORA_KIND_CONV1D, 0, 0, 2, 4.0f, 0, 0, 0}};
    expect_export_refusal(c1, 1, 0, "conv", "conv1d");
    mspec c3[] = {{"conv", LORA_KIND_CONV3D, 0, 0, 2, 4.0f, 0, 0, 0}};
    expect_export_refusal(c3, 1, 0, "conv", "conv3d");
    mspec fifo[] = {{"h.0.attn.c_attn", LORA_KIND_LINEAR, 0, LORA_MODULE_FAN_IN_FAN_OUT, 2, 4.0f, 0, 0, 0}};
    expect_export_refusal(fifo, 1, 0, "h.0.attn.c_attn", "fan_in_fan_out");
    mspec huge[] = {{"big", LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT, 0, 8, 1.0f, 3e38f, 0, 0}};
    expect_export_refusal(huge, 1, 0, "big", "alpha / 8");
}

/* The first binary32 scale s >= 1.5 for which no alpha gives alpha / r == s
 * (found by brute force over a wide neighbourhood: x -> x / r is monotone). */
static float unreachable_scale(uint32_t r)
{
    volatile float fr = (float)r;
    for (float s = 1.5f; s < 2.0f; s = nextafterf(s, 2.0f)) {
        float a = s * fr;
        for (int k = 0; k < 16; k++) a = nextafterf(a, 0.0f);
        int hit = 0;
        for (int k = 0; k < 33 && !hit; k++, a = nextafterf(a, INFINITY)) {
            volatile float q = a / fr;
            hit = q == s;
        }
        if (!hit) return s;
    }
    fail_msg("no unreachable scale for r = %u", r);
    return 0;
}

/* 1 if some binary32 alpha gives alpha / r == s (brute force over a wide
 * neighbourhood of s * r: x -> x / r is monotone). */
static int reachable(float s, uint32_t r)
{
    volatile float fr = (float)r;
    float a = s * fr;
    for (int k = 0; k < 16; k++) a = nextafterf(a, -INFINITY);
    for (int k = 0; k < 33; k++, a = nextafterf(a, INFINITY)) {
        volatile float q = a / fr;
        if (q == s) return 1;
    }
    return 0;
}

static uint32_t alpha_bits_of(const char *path, const char *key)
{
    lora_st_file *f = NULL;
    lora_error e;
    assert_int_equal(lora_st_open(path, NULL, &f, &e), LORA_OK);
    uint32_t i = lora_st_find(f, key, strlen(key));
    if (i == UINT32_MAX) fail_msg("%s lacks %s", path, key);
    assert_int_equal(f->tensors[i].dtype, LORA_ST_F32);
    assert_int_equal(f->tensors[i].ndim, 0);
    uint32_t bits = lora_fmt_rd32(f->tensors[i].data);
    lora_st_free(f);
    return bits;
}

static void test_export_scaling(void **state)
{
    (void)state;
    warnings w = {0};
    lora_error e;
    /* rsLoRA alpha 16, r 4: s = 8, kohya alpha 32. Explicit (MLX) s = 2, r 8: alpha 16. */
    mspec ms[] = {{"unet.a", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 4, 16.0f, 0, 0, 0},
                  {"unet.b", LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT, 0, 8, 16.0f, 2.0f, 0, 0}};
    lora_status st = export_specs(ms, 2, 0, 0, &w, &e);
    if (st != LORA_OK) fail_msg("export: %s", e.detail);
    assert_int_equal(alpha_bits_of(tpath("x.safetensors"), "lora_unet_a.alpha"), 0x42000000u);
    assert_int_equal(alpha_bits_of(tpath("x.safetensors"), "lora_unet_b.alpha"), 0x41800000u);
    lora_st_file *f = NULL;
    assert_int_equal(lora_st_open(tpath("x.safetensors"), NULL, &f, &e), LORA_OK);
    assert_string_equal(f->meta[1].value, "Dynamic"); /* ranks 4 and 8 */
    assert_string_equal(f->meta[2].value, "Dynamic"); /* alphas 32 and 16 */
    lora_st_free(f);

    /* Seeded explicit scales over ranks 3, 5, 7, 12: each reachable one is
     * written as an alpha that gives it back exactly. */
    uint64_t seed = 99;
    mspec many[64];
    char names[64][16];
    uint32_t nmany = 0, unreachable = 0;
    while (nmany < 64) {
        static const uint32_t ranks[4] = {3, 5, 7, 12};
        uint32_t r = ranks[ts_rng_next(&seed) % 4];
        float s = (float)ldexp((double)(ts_rng_next(&seed) >> 40) / 16777216.0 + 0.5, (int)(ts_rng_next(&seed) % 16) - 8);
        if (!reachable(s, r)) {
            unreachable++;
            continue;
        }
        snprintf(names[nmany], sizeof names[0], "unet.m%u", nmany);
        many[nmany] = (mspec){names[nmany], LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT, 0, r, 1.0f, s, 0, 0};
        nmany++;
    }
    assert_int_equal(export_specs(many, nmany, 0, 0, &w, &e), LORA_OK);
    for (uint32_t i = 0; i < nmany; i++) {
        char key[64];
        snprintf(key, sizeof key, "lora_unet_m%u.alpha", i);
        uint32_t bits = alpha_bits_of(tpath("x.safetensors"), key);
        float a;
        memcpy(&a, &bits, 4);
        volatile float fr = (float)many[i].rank;
        volatile float q = a / fr;
        assert_int_equal(lora_f32_to_bits(q), lora_f32_to_bits(many[i].scale));
    }
    assert_true(unreachable > 0); /* the refusal below is not vacuous */

    /* One that no binary32 alpha reproduces is refused. */
    float bad = unreachable_scale(3);
    mspec none[] = {{"unet.d", LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT, 0, 3, 0.0f, bad, 0, 0}};
    expect_export_refusal(none, 1, 0, "unet.d", "alpha / 3");
}

static void test_export_drop(void **state)
{
    (void)state;
    mspec ms[] = {PLAIN("down_blocks.0.a"), PLAIN("down_blocks.0.b"), PLAIN("down_blocks.0.c"),
                  {"text_encoder.embed", LORA_KIND_EMBEDDING, 0, 0, 2, 4.0f, 0, 0, 0}};
    ms[1].magnitude = 1;
    ms[2].bias = 1;
    warnings w = {0};
    lora_error e;
    lora_status st = export_specs(ms, 4, 1, LORA_CONVERT_DROP_UNSUPPORTED, &w, &e);
    if (st != LORA_OK) fail_msg("export: %s", e.detail);
    assert_int_equal(w.count, 4);
    assert_true(warned(&w, "down_blocks.0.b", "DoRA"));
    assert_true(warned(&w, "down_blocks.0.c", "bias"));
    assert_true(warned(&w, "text_encoder.embed", "embedding"));
    assert_true(warned(&w, "lm_head.weight", "replacement"));
    lora_st_file *f = NULL;
    assert_int_equal(lora_st_open(tpath("x.safetensors"), NULL, &f, &e), LORA_OK);
    assert_int_equal(f->tensor_count, 9);
    static const char *const keys[] = {"lora_unet_down_blocks_0_a.alpha", "lora_unet_down_blocks_0_b.lora_down.weight",
                                       "lora_unet_down_blocks_0_c.lora_up.weight"};
    for (int i = 0; i < 3; i++) assert_int_not_equal(lora_st_find(f, keys[i], strlen(keys[i])), UINT32_MAX);
    assert_string_equal(f->meta[1].value, "2");
    assert_string_equal(f->meta[2].value, "4.0");
    lora_st_free(f);

    /* Everything dropped: nothing to write. */
    mspec only[] = {{"text_encoder.embed", LORA_KIND_EMBEDDING, 0, 0, 2, 4.0f, 0, 0, 0}};
    w.count = 0;
    assert_int_equal(export_specs(only, 1, 0, LORA_CONVERT_DROP_UNSUPPORTED, &w, &e), LORA_E_UNSUPPORTED_ADAPTER);
    assert_true(warned(&w, "text_encoder.embed", NULL));
}

static void test_export_collision(void **state)
{
    (void)state;
    mspec ms[] = {PLAIN("a.b_c"), PLAIN("a_b.c")};
    warnings w = {0};
    lora_error e;
    assert_int_equal(export_specs(ms, 2, 0, 0, &w, &e), LORA_E_DUPLICATE_NAME);
    assert_non_null(strstr(e.detail, "'a.b_c'"));
    assert_non_null(strstr(e.detail, "'a_b.c'"));
    assert_non_null(strstr(e.detail, "lora_unet_a_b_c"));
}

/* A quantized .lora blob is written dequantized to F32, value for value. */
static void test_export_quantized(void **state)
{
    (void)state;
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    float va[32], vb[32];
    for (int i = 0; i < 32; i++) va[i] = (float)(i - 16) / 4.0f, vb[i] = (i & 1) ? 0.5f : -1.0f;
    uint64_t as[2] = {1, 32}, bs[2] = {32, 1};
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = "unet.q";
    d.kind = LORA_KIND_LINEAR;
    d.rank = 1;
    d.alpha = 1.0f;
    d.base_ndim = 2;
    d.base_shape[0] = d.base_shape[1] = 32;
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_Q8_0, 2, as, va, 32, 0, &d.blob_a), LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 2, bs, vb, 32, LORA_COMPRESSION_ZLIB, &d.blob_b),
                     LORA_OK);
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    void *buf;
    lora_reader *r = open_written(w, &buf);
    lora_writer_free(w);
    float want[32];
    assert_int_equal(lora_reader_blob_decode_f32(r, 0, want, 32, NULL), LORA_OK);
    lora_blob bb;
    assert_int_equal(lora_reader_blob(r, 1, &bb), LORA_OK);
    assert_int_equal(bb.compression, LORA_COMPRESSION_ZLIB); /* the path that reads before writing */
    lora_error e;
    assert_int_equal(export_image(r, tpath("q.safetensors"), NULL, NULL, &e), LORA_OK);
    close_image(r, buf);
    lora_st_file *f = NULL;
    assert_int_equal(lora_st_open(tpath("q.safetensors"), NULL, &f, &e), LORA_OK);
    const char *k = "lora_unet_q.lora_down.weight";
    uint32_t i = lora_st_find(f, k, strlen(k));
    assert_int_not_equal(i, UINT32_MAX);
    assert_int_equal(f->tensors[i].dtype, LORA_ST_F32);
    assert_memory_equal(f->tensors[i].data, want, sizeof want);
    k = "lora_unet_q.lora_up.weight"; /* zlib-compressed F16 stays F16 */
    i = lora_st_find(f, k, strlen(k));
    assert_int_equal(f->tensors[i].dtype, LORA_ST_F16);
    for (int j = 0; j < 32; j++)
        assert_int_equal(lora_fmt_rd16(f->tensors[i].data + 2 * j), lora_f32_bits_to_f16_bits(lora_f32_to_bits(vb[j])));
    lora_st_free(f);
}

/* The output is never one of the inputs, and a failed export leaves the
 * target as it was. */
static void test_export_same_file(void **state)
{
    (void)state;
    tspec t[SYN_COUNT];
    const char *in = tpath("same.safetensors");
    make_synthetic(in, 4, t);
    free_specs(t, SYN_COUNT);
    size_t n0, n1;
    uint8_t *before = ts_read_file(in, &n0);
    lora_reader *r;
    void *buf;
    lora_error e;
    assert_int_equal(import(in, NULL, &r, &buf, &e), LORA_OK);
    assert_int_equal(export_image(r, in, NULL, in, &e), LORA_E_SAME_FILE);
    close_image(r, buf);
    uint8_t *after = ts_read_file(in, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

/* ------------------------------------------------------------------------ */
/* allocation failures                                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    long countdown; /* fail when it reaches 0; < 0: never */
    long live;
} fail_alloc;

static void *fa_alloc(void *opaque, size_t size)
{
    fail_alloc *f = opaque;
    if (f->countdown == 0) return NULL;
    if (f->countdown > 0) f->countdown--;
    void *p = malloc(size ? size : 1);
    if (p) f->live++;
    return p;
}

static void fa_free(void *opaque, void *p)
{
    fail_alloc *f = opaque;
    if (p) f->live--;
    free(p);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    tspec t[SYN_COUNT];
    const char *in = tpath("af.safetensors"), *out = tpath("af_out.safetensors");
    make_synthetic(in, 8, t);
    free_specs(t, SYN_COUNT);
    int ok_import = 0, ok_export = 0;
    for (long n = 0; n < 10000 && !(ok_import && ok_export); n++) {
        fail_alloc fa = {n, 0};
        lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
        o.allocator.alloc = fa_alloc;
        o.allocator.free = fa_free;
        o.allocator.opaque = &fa;
        lora_writer *w = NULL;
        assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
        lora_error e;
        lora_status st = lora_import_kohya(in, &o, w, &e);
        assert_int_equal(fa.live, 0);
        if (st != LORA_OK) {
            assert_int_equal(st, LORA_E_OUT_OF_MEMORY);
            lora_writer_free(w);
            continue;
        }
        ok_import = 1;
        void *buf;
        lora_reader *r = open_written(w, &buf);
        lora_writer_free(w);
        fa.countdown = n;
        unlink(out);
        st = export_image(r, out, &o, in, &e);
        close_image(r, buf);
        assert_int_equal(fa.live, 0);
        if (st == LORA_OK) ok_export = 1;
        else {
            assert_int_equal(st, LORA_E_OUT_OF_MEMORY);
            struct stat sb;
            assert_int_not_equal(stat(out, &sb), 0);
        }
    }
    assert_true(ok_import && ok_export);
    size_t na, nb;
    uint8_t *a = ts_read_file(in, &na), *b = ts_read_file(out, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_import_synthetic),
        cmocka_unit_test(test_import_dtype),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_export_dtype),
        cmocka_unit_test(test_peft_fixture),
        cmocka_unit_test(test_refuse_lycoris),
        cmocka_unit_test(test_refuse_dora_scale),
        cmocka_unit_test(test_import_drop),
        cmocka_unit_test(test_refuse_bad_files),
        cmocka_unit_test(test_alpha_zero),
        cmocka_unit_test(test_export_refusals),
        cmocka_unit_test(test_export_scaling),
        cmocka_unit_test(test_export_drop),
        cmocka_unit_test(test_export_collision),
        cmocka_unit_test(test_export_quantized),
        cmocka_unit_test(test_export_same_file),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
