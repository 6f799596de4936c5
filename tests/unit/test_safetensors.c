/*
 * test_safetensors.c - the safetensors reader and writer of liblora-ops.
 *
 * Oracles independent of the code under test:
 *   - every real file under $LORA_FIXTURES_DIR (default
 *     /work/shared/fixtures/real) is checked against invariants computed here
 *     from the raw bytes and the spec (element sizes, exact tiling, sum of
 *     sizes == file size - 8 - n); three files against tables read with
 *     python3's json module when this test was written;
 *   - hostile files built byte by byte, each with its exact status;
 *   - writer output compared with headers written out by hand and with the
 *     reference implementation's own serialization test vectors
 *     (safetensors/src/tensor.rs: test_empty, test_serialization);
 *   - seeded random round trips, allocation failure at every call.
 * Fixtures missing: the fixture tests fail when $CI is set, else skip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include "io/safetensors.h"
#include "write/afile.h"
#include "support.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Element sizes straight from the safetensors README, by name. */
static uint64_t spec_elem_size(const char *dtype)
{
    static const struct { const char *n; uint64_t s; } t[] = {
        {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
        {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].n, dtype) == 0) return t[i].s;
    fail_msg("unknown dtype %s", dtype);
    return 0;
}

/* Counting allocator that can fail its Nth call. */
typedef struct {
    long calls, fail_at, live;
} counting;

static void *t_alloc(void *o, size_t n)
{
    counting *c = o;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at) return NULL;
    c->live++;
    return malloc(n);
}

static void t_free(void *o, void *p)
{
    counting *c = o;
    if (p) c->live--;
    free(p);
}

/* Memory sink that fails with `fail` after `ok_calls` calls. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int calls, ok_calls;
    lora_status fail;
} membuf;

static lora_status mem_sink(void *ctx, const void *d, size_t n, lora_error *err)
{
    membuf *m = ctx;
    m->calls++;
    if (m->fail && m->calls > m->ok_calls) return lora_error_set(err, m->fail, LORA_NO_OFFSET, "sink %d", m->calls);
    if (m->len + n > m->cap) {
        size_t cap = (m->len + n) * 2 + 16;
        m->p = realloc(m->p, cap);
        assert_non_null(m->p);
        m->cap = cap;
    }
    memcpy(m->p + m->len, d, n);
    m->len += n;
    return LORA_OK;
}

/* A file of exactly 8 + jlen + data bytes (exact size so ASan sees any
 * over-read); data bytes are a pattern. */
static uint8_t *mkfile(const char *json, size_t jlen, size_t data, size_t *size)
{
    *size = 8 + jlen + data;
    uint8_t *p = malloc(*size);
    assert_non_null(p);
    wr64(p, jlen);
    memcpy(p + 8, json, jlen);
    for (size_t i = 0; i < data; i++) p[8 + jlen + i] = (uint8_t)(0xA5 ^ i);
    return p;
}

static lora_status parse_json_opts(const char *json, size_t jlen, size_t data, const lora_st_options *o,
                                   lora_error *err)
{
    size_t size;
    uint8_t *p = mkfile(json, jlen, data, &size);
    lora_st_file *f = (lora_st_file *)0x1;
    lora_status st = lora_st_parse(p, size, o, &f, err);
    if (st == LORA_OK) assert_non_null(f);
    else assert_null(f);
    lora_st_free(f);
    free(p);
    return st;
}

static lora_status parse_json(const char *json, size_t data, lora_error *err)
{
    return parse_json_opts(json, strlen(json), data, NULL, err);
}

#define ENT(n, dt, sh, b, e) "\"" n "\":{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":[" #b "," #e "]}"

/* ------------------------------------------------------------------------ */
/* real files                                                               */
/* ------------------------------------------------------------------------ */

static char *fixture_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", ts_fixtures_dir(), rel);
    return buf;
}

typedef struct {
    uint64_t begin, size;
} range;

static int range_cmp(const void *a, const void *b)
{
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Invariants of a parsed file, from the raw bytes and the spec only. */
static void check_invariants(const uint8_t *buf, size_t size, const lora_st_file *f)
{
    uint64_t n = rd64(buf);
    assert_int_equal(f->header_size, n);
    assert_int_equal(f->data_offset, 8 + n);
    assert_int_equal(f->file_size, size);
    assert_int_equal(buf[8], '{');
    uint32_t cnt = f->tensor_count;
    range *r = calloc(cnt + 1, sizeof *r);
    char **names = calloc(cnt + 1, sizeof *names);
    assert_non_null(r);
    assert_non_null(names);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        const lora_st_tensor *t = &f->tensors[i];
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) numel *= t->shape[d];
        assert_int_equal(t->numel, numel);
        assert_int_equal(t->size, numel * spec_elem_size(lora_st_dtype_name(t->dtype)));
        assert_int_equal(t->offset, 8 + n + t->begin);
        assert_ptr_equal(t->data, buf + t->offset);
        assert_int_equal(strlen(t->name), t->name_length);
        assert_int_equal(lora_st_find(f, t->name, t->name_length), i);
        r[i].begin = t->begin;
        r[i].size = t->size;
        names[i] = (char *)(uintptr_t)t->name;
        sum += t->size;
    }
    /* Exact tiling from 0 to the end of the file. */
    qsort(r, cnt, sizeof *r, range_cmp);
    uint64_t at = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        assert_int_equal(r[i].begin, at);
        at += r[i].size;
    }
    assert_int_equal(at, size - 8 - n);
    assert_int_equal(sum, size - 8 - n);
    /* by_offset is that same order. */
    for (uint32_t k = 0; k < cnt; k++) assert_int_equal(f->tensors[f->by_offset[k]].begin, r[k].begin);
    qsort(names, cnt, sizeof *names, str_cmp);
    for (uint32_t i = 1; i < cnt; i++) assert_true(strcmp(names[i - 1], names[i]) != 0);
    for (uint32_t i = 0; i < f->meta_count; i++) {
        assert_int_equal(strlen(f->meta[i].key), f->meta[i].key_length);
        assert_int_equal(strlen(f->meta[i].value), f->meta[i].value_length);
    }
    free(r);
    free(names);
}

/* Write f's tensors in header order with its metadata into memory. */
static void rewrite(const lora_st_file *f, membuf *out)
{
    lora_st_entry *e = calloc(f->tensor_count + 1, sizeof *e);
    const void **data = calloc(f->tensor_count + 1, sizeof *data);
    lora_st_pair *m = calloc(f->meta_count + 1, sizeof *m);
    assert_non_null(e);
    assert_non_null(data);
    assert_non_null(m);
    for (uint32_t i = 0; i < f->tensor_count; i++) {
        const lora_st_tensor *t = &f->tensors[i];
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        e[i].size = t->size;
        data[i] = t->data;
    }
    for (uint32_t i = 0; i < f->meta_count; i++) {
        m[i].key = f->meta[i].key;
        m[i].value = f->meta[i].value;
    }
    lora_error err;
    lora_status st = lora_st_write(NULL, e, f->tensor_count, m, f->meta_count, data, mem_sink, out, &err);
    assert_int_equal(st, LORA_OK);
    free(e);
    free(data);
    free(m);
}

/* Same names, dtypes, shapes, bytes and metadata, whatever the order. */
static void assert_same_content(const lora_st_file *a, const lora_st_file *b)
{
    assert_int_equal(a->tensor_count, b->tensor_count);
    for (uint32_t i = 0; i < a->tensor_count; i++) {
        const lora_st_tensor *x = &a->tensors[i];
        uint32_t j = lora_st_find(b, x->name, x->name_length);
        assert_int_not_equal(j, UINT32_MAX);
        const lora_st_tensor *y = &b->tensors[j];
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        assert_memory_equal(x->shape, y->shape, sizeof x->shape);
        assert_int_equal(x->size, y->size);
        if (x->size) assert_memory_equal(x->data, y->data, x->size);
    }
    assert_int_equal(a->meta_count, b->meta_count);
    for (uint32_t i = 0; i < a->meta_count; i++) {
        assert_string_equal(a->meta[i].key, b->meta[i].key);
        assert_string_equal(a->meta[i].value, b->meta[i].value);
    }
}

/* Written by the reference serializer (header in offset order, metadata
 * first, compact serde_json): our writer must reproduce them byte for byte.
 * The MLX files list keys by name with offsets out of order. */
static int is_reference_written(const char *path)
{
    return strstr(path, "/mlx-") == NULL;
}

static size_t manifest_safetensors_count(void)
{
    size_t size;
    uint8_t *m = ts_read_file(fixture_path("MANIFEST.tsv"), &size);
    assert_non_null(m);
    size_t count = 0;
    char *s = (char *)m;
    s[size] = '\0';
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        if (tab && tab - line > 12 && memcmp(tab - 12, ".safetensors", 12) == 0) count++;
    }
    free(m);
    return count;
}

static void test_fixtures_all(void **state)
{
    (void)state;
    ts_need_fixtures();
    char pattern[4200];
    snprintf(pattern, sizeof pattern, "%s/*/*.safetensors", ts_fixtures_dir());
    glob_t g;
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    assert_int_equal(g.gl_pathc, manifest_safetensors_count());
    assert_true(g.gl_pathc >= 9);
    for (size_t k = 0; k < g.gl_pathc; k++) {
        const char *path = g.gl_pathv[k];
        size_t size;
        uint8_t *buf = ts_read_file(path, &size);
        assert_non_null(buf);
        lora_error err;
        lora_st_file *f = NULL, *fm = NULL, *back = NULL;
        lora_status st = lora_st_parse(buf, size, NULL, &f, &err);
        if (st != LORA_OK) fail_msg("%s: %s", path, err.detail);
        check_invariants(buf, size, f);
        /* The pre-parse budgets admit the file at exactly its own counts. */
        lora_st_options tight = {{0, f->tensor_count ? f->tensor_count : 1, f->meta_count ? f->meta_count : 1, 0, 0},
                                 {0, 0, 0}};
        lora_st_file *ft = NULL;
        st = lora_st_parse(buf, size, &tight, &ft, &err);
        if (st != LORA_OK) fail_msg("%s at its own limits: %s", path, err.detail);
        lora_st_free(ft);
        if (f->tensor_count > 1) {
            tight.limits.max_tensors = f->tensor_count - 1;
            assert_int_equal(lora_st_parse(buf, size, &tight, &ft, &err), LORA_E_LIMIT_EXCEEDED);
        }
        /* The mmap path sees the same file. */
        assert_int_equal(lora_st_open(path, NULL, &fm, &err), LORA_OK);
        check_invariants(fm->file, (size_t)fm->file_size, fm);
        assert_same_content(f, fm);
        /* Round trip through the writer. */
        membuf out = {0};
        rewrite(f, &out);
        assert_int_equal(rd64(out.p) % 8, 0);
        assert_int_equal(lora_st_parse(out.p, out.len, NULL, &back, &err), LORA_OK);
        check_invariants(out.p, out.len, back);
        assert_same_content(f, back);
        for (uint32_t i = 0; i < f->tensor_count; i++)
            assert_string_equal(f->tensors[i].name, back->tensors[i].name); /* header order kept */
        if (is_reference_written(path)) {
            assert_int_equal(out.len, size);
            assert_memory_equal(out.p, buf, size);
        }
        lora_st_free(back);
        lora_st_free(fm);
        lora_st_free(f);
        free(out.p);
        free(buf);
    }
    globfree(&g);
}

typedef struct {
    const char *name;
    const char *dtype;
    uint32_t ndim;
    uint64_t shape[2];
    uint64_t begin, end;
} expect_tensor;

/* Values read with python3 (json.loads of the header). */
static const expect_tensor discollama[] = {
    {"model.layers.30.self_attn.q_proj.lora_a", "F32", 2, {4096, 8}, 294912, 425984},
    {"model.layers.30.self_attn.q_proj.lora_b", "F32", 2, {8, 4096}, 425984, 557056},
    {"model.layers.30.self_attn.v_proj.lora_a", "F32", 2, {4096, 8}, 163840, 294912},
    {"model.layers.30.self_attn.v_proj.lora_b", "F32", 2, {8, 1024}, 131072, 163840},
    {"model.layers.31.self_attn.q_proj.lora_a", "F32", 2, {4096, 8}, 720896, 851968},
    {"model.layers.31.self_attn.q_proj.lora_b", "F32", 2, {8, 4096}, 0, 131072},
    {"model.layers.31.self_attn.v_proj.lora_a", "F32", 2, {4096, 8}, 589824, 720896},
    {"model.layers.31.self_attn.v_proj.lora_b", "F32", 2, {8, 1024}, 557056, 589824},
};

static const expect_tensor qwen[] = {
    {"model.layers.20.self_attn.q_proj.lora_a", "F32", 2, {896, 8}, 331776, 360448},
    {"model.layers.20.self_attn.q_proj.lora_b", "F32", 2, {8, 896}, 94208, 122880},
    {"model.layers.20.self_attn.v_proj.lora_a", "F32", 2, {896, 8}, 241664, 270336},
    {"model.layers.20.self_attn.v_proj.lora_b", "F32", 2, {8, 128}, 270336, 274432},
    {"model.layers.21.self_attn.q_proj.lora_a", "F32", 2, {896, 8}, 36864, 65536},
    {"model.layers.21.self_attn.q_proj.lora_b", "F32", 2, {8, 896}, 155648, 184320},
    {"model.layers.21.self_attn.v_proj.lora_a", "F32", 2, {896, 8}, 126976, 155648},
    {"model.layers.21.self_attn.v_proj.lora_b", "F32", 2, {8, 128}, 122880, 126976},
    {"model.layers.22.self_attn.q_proj.lora_a", "F32", 2, {896, 8}, 65536, 94208},
    {"model.layers.22.self_attn.q_proj.lora_b", "F32", 2, {8, 896}, 303104, 331776},
    {"model.layers.22.self_attn.v_proj.lora_a", "F32", 2, {896, 8}, 184320, 212992},
    {"model.layers.22.self_attn.v_proj.lora_b", "F32", 2, {8, 128}, 32768, 36864},
    {"model.layers.23.self_attn.q_proj.lora_a", "F32", 2, {896, 8}, 212992, 241664},
    {"model.layers.23.self_attn.q_proj.lora_b", "F32", 2, {8, 896}, 4096, 32768},
    {"model.layers.23.self_attn.v_proj.lora_a", "F32", 2, {896, 8}, 274432, 303104},
    {"model.layers.23.self_attn.v_proj.lora_b", "F32", 2, {8, 128}, 0, 4096},
};

static void check_table(const lora_st_file *f, const expect_tensor *e, uint32_t count)
{
    assert_int_equal(f->tensor_count, count);
    for (uint32_t i = 0; i < count; i++) {
        const lora_st_tensor *t = &f->tensors[i];
        assert_string_equal(t->name, e[i].name);
        assert_string_equal(lora_st_dtype_name(t->dtype), e[i].dtype);
        assert_int_equal(t->ndim, e[i].ndim);
        for (uint32_t d = 0; d < e[i].ndim; d++) assert_int_equal(t->shape[d], e[i].shape[d]);
        assert_int_equal(t->begin, e[i].begin);
        assert_int_equal(t->size, e[i].end - e[i].begin);
    }
}

static void assert_bytes_hex(const uint8_t *p, const char *hex)
{
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        assert_int_equal(p[i], v);
    }
}

static void test_fixtures_tables(void **state)
{
    (void)state;
    ts_need_fixtures();
    lora_error err;
    lora_st_file *f;

    assert_int_equal(lora_st_open(fixture_path("mlx-llama3-discollama/adapters.safetensors"), NULL, &f, &err), LORA_OK);
    assert_int_equal(f->file_size, 852840);
    assert_int_equal(f->header_size, 864);
    assert_int_equal(f->meta_count, 0); /* "__metadata__": null */
    check_table(f, discollama, 8);
    uint32_t i = lora_st_find(f, "model.layers.30.self_attn.v_proj.lora_b", 39);
    assert_int_equal(i, 3);
    assert_bytes_hex(f->tensors[i].data, "e338163c7b2e01bc");
    assert_bytes_hex(f->tensors[i].data + f->tensors[i].size - 8, "adeeb63b3a8c96bc");
    assert_int_equal(f->by_offset[0], 5); /* layers.31 q_proj.lora_b sits at offset 0 */
    lora_st_free(f);

    /* 8 + 1684 is not a multiple of 8: MLX does not pad. */
    assert_int_equal(lora_st_open(fixture_path("mlx-qwen2.5/adapters.safetensors"), NULL, &f, &err), LORA_OK);
    assert_int_equal(f->file_size, 362140);
    assert_int_equal(f->header_size, 1684);
    assert_int_equal(f->meta_count, 0);
    check_table(f, qwen, 16);
    assert_bytes_hex(f->tensors[0].data, "1787843ca6054d3a");
    assert_bytes_hex(f->tensors[0].data + f->tensors[0].size - 8, "b37b2f3b75d2963c");
    lora_st_free(f);

    assert_int_equal(lora_st_open(fixture_path("peft-opencalm-f16-r1/adapter_model.safetensors"), NULL, &f, &err),
                     LORA_OK);
    assert_int_equal(f->file_size, 400024);
    assert_int_equal(f->header_size, 6800);
    assert_int_equal(f->tensor_count, 48);
    assert_int_equal(f->meta_count, 1);
    assert_string_equal(f->meta[0].key, "format");
    assert_string_equal(f->meta[0].value, "pt");
    assert_string_equal(lora_st_meta_find(f, "format")->value, "pt");
    assert_null(lora_st_meta_find(f, "formats"));
    static const expect_tensor calm[] = {
        {"base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight", "F16", 2, {1, 2048}, 0, 4096},
        {"base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_B.weight", "F16", 2, {6144, 1}, 4096, 16384},
        {"base_model.model.gpt_neox.layers.1.attention.query_key_value.lora_A.weight", "F16", 2, {1, 2048}, 16384, 20480},
    };
    for (uint32_t k = 0; k < 3; k++) check_table(&(lora_st_file){.tensors = &f->tensors[k], .tensor_count = 1}, &calm[k], 1);
    const char *last = "base_model.model.gpt_neox.layers.9.attention.query_key_value.lora_B.weight";
    i = lora_st_find(f, last, strlen(last));
    assert_int_equal(i, 47);
    assert_int_equal(f->tensors[i].begin, 380928);
    assert_int_equal(f->tensors[i].size, 393216 - 380928);
    assert_bytes_hex(f->tensors[i].data, "20a68c26d2290d9c");
    assert_bytes_hex(f->tensors[i].data + f->tensors[i].size - 8, "5c25910327259628");
    assert_int_equal(lora_st_find(f, last, strlen(last) - 1), UINT32_MAX);
    lora_st_free(f);

    assert_int_equal(lora_st_open(fixture_path("diffusers-sd-unet/pytorch_lora_weights.safetensors"), NULL, &f, &err),
                     LORA_OK);
    assert_int_equal(f->tensor_count, 192);
    assert_int_equal(f->meta_count, 2);
    const lora_st_meta *m = lora_st_meta_find(f, "lora_adapter_metadata");
    assert_non_null(m);
    assert_true(strncmp(m->value, "{\n  \"alpha_pattern\"", 19) == 0); /* unescaped */
    lora_st_free(f);

    assert_int_equal(lora_st_open(fixture_path("base-minicpm3-synthetic/model.safetensors"), NULL, &f, &err), LORA_OK);
    assert_int_equal(f->tensor_count, 15);
    assert_int_equal(f->meta_count, 0); /* no __metadata__ at all */
    assert_string_equal(f->tensors[0].name, "lm_head.weight");
    assert_int_equal(f->tensors[0].shape[0], 100);
    assert_int_equal(f->tensors[0].shape[1], 100);
    lora_st_free(f);
}

/* A GGUF file is not safetensors: its first 8 bytes read as a huge length. */
static void test_fixture_gguf_rejected(void **state)
{
    (void)state;
    ts_need_fixtures();
    lora_error err;
    lora_st_file *f;
    assert_int_equal(lora_st_open(fixture_path("gguf-llama2-tiny-random/llama-2-tiny-random.gguf"), NULL, &f, &err),
                     LORA_E_LIMIT_EXCEEDED);
    assert_null(f);
}

/* ------------------------------------------------------------------------ */
/* hostile files                                                            */
/* ------------------------------------------------------------------------ */

static void test_framing(void **state)
{
    (void)state;
    lora_error err;
    lora_st_file *f;
    uint8_t buf[64] = {0};
    assert_int_equal(lora_st_parse(NULL, 0, NULL, &f, &err), LORA_E_TRUNCATED);
    assert_int_equal(lora_st_parse(buf, 0, NULL, &f, &err), LORA_E_TRUNCATED);
    assert_int_equal(lora_st_parse(buf, 7, NULL, &f, &err), LORA_E_TRUNCATED);
    assert_int_equal(err.offset, 0);

    /* Header length larger than what follows. */
    size_t size;
    uint8_t *p = mkfile("{}", 2, 0, &size);
    wr64(p, 3);
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_E_TRUNCATED);
    wr64(p, UINT64_MAX);
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_E_LIMIT_EXCEEDED);
    wr64(p, UINT64_C(100000001));
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_E_LIMIT_EXCEEDED);
    wr64(p, UINT64_C(100000000)); /* at the cap: passes it, then does not fit */
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_E_TRUNCATED);
    wr64(p, UINT64_C(1) << 63);
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_E_LIMIT_EXCEEDED);
    wr64(p, 0);
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_E_BAD_HEADER);
    wr64(p, 2);
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_OK);
    lora_st_free(f);
    free(p);

    /* A caller's cap below the default, and the cap check before the size. */
    lora_st_options o = {{16, 0, 0, 0, 0}, {0, 0, 0}};
    char j24[24];
    memset(j24, ' ', sizeof j24);
    j24[0] = '{';
    j24[1] = '}';
    assert_int_equal(parse_json_opts(j24, 24, 0, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_int_equal(parse_json_opts(j24, 16, 0, &o, &err), LORA_OK);

    /* Every empty-file path through lora_st_open too. */
    char path[] = "/tmp/test_st_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(lora_st_open(path, NULL, &f, &err), LORA_E_TRUNCATED);
    unlink(path);
    assert_int_equal(lora_st_open(path, NULL, &f, &err), LORA_E_IO);
    assert_int_equal(lora_st_open("/tmp", NULL, &f, &err), LORA_E_NOT_REGULAR_FILE);
}

typedef struct {
    const char *label;
    const char *json;
    size_t jlen; /* 0 = strlen */
    size_t data;
    lora_status want;
} hostile;

static const hostile cases[] = {
    /* the header itself */
    {"leading space", " {}", 0, 0, LORA_E_BAD_HEADER},
    {"JSON array", "[]", 0, 0, LORA_E_BAD_HEADER},
    {"JSON number", "1       ", 0, 0, LORA_E_BAD_HEADER},
    {"garbage after object", "{} x", 0, 0, LORA_E_BAD_JSON},
    {"second object", "{}{}", 0, 0, LORA_E_BAD_JSON},
    {"syntax", "{\"a\":}", 0, 0, LORA_E_BAD_JSON},
    {"unterminated", "{\"a\":{\"dtype\"", 0, 0, LORA_E_BAD_JSON},
    {"NUL padding", "{}\0\0\0\0\0\0", 8, 0, LORA_E_BAD_JSON},
    {"whitespace padding", "{}  \t\n\r ", 0, 0, LORA_OK},
    {"empty object", "{}", 0, 0, LORA_OK},
    {"invalid UTF-8", "{" ENT("\xff", "U8", "[1]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"overlong UTF-8", "{" ENT("\xc0\xaf", "U8", "[1]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"UTF-8 surrogate", "{" ENT("\xed\xa0\x80", "U8", "[1]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"UTF-8 outside a string", "{\xc3\xa9}", 0, 0, LORA_E_BAD_JSON},
    {"lone surrogate escape", "{" ENT("\\ud800", "U8", "[1]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"NUL in name", "{" ENT("a\\u0000b", "U8", "[1]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"UTF-8 name", "{" ENT("\xc3\xa9\xe2\x82\xac", "U8", "[1]", 0, 1) "}", 0, 1, LORA_OK},
    {"escaped name", "{" ENT("a\\/b\\n", "U8", "[1]", 0, 1) "}", 0, 1, LORA_OK},
    {"empty name", "{" ENT("", "U8", "[1]", 0, 1) "}", 0, 1, LORA_OK},
    /* duplicates */
    {"duplicate name", "{" ENT("a", "U8", "[1]", 0, 1) "," ENT("a", "U8", "[1]", 1, 2) "}", 0, 2,
     LORA_E_DUPLICATE_NAME},
    {"duplicate escaped name", "{" ENT("a", "U8", "[1]", 0, 1) "," ENT("\\u0061", "U8", "[1]", 1, 2) "}", 0, 2,
     LORA_E_DUPLICATE_NAME},
    {"duplicate key in entry", "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1]}}", 0,
     1, LORA_E_DUPLICATE_NAME},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, LORA_E_DUPLICATE_NAME},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0, LORA_E_DUPLICATE_NAME},
    /* entries */
    {"entry is a number", "{\"a\":1}", 0, 0, LORA_E_BAD_HEADER},
    {"entry is an array", "{\"a\":[]}", 0, 0, LORA_E_BAD_HEADER},
    {"entry is null", "{\"a\":null}", 0, 0, LORA_E_BAD_HEADER},
    {"no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 0, 1, LORA_E_BAD_HEADER},
    {"dtype not a string", "{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,1]}}", 0, 1, LORA_E_BAD_HEADER},
    {"unknown dtype", "{" ENT("a", "F7", "[1]", 0, 1) "}", 0, 1, LORA_E_UNSUPPORTED_DTYPE},
    {"lower-case dtype", "{" ENT("a", "f32", "[1]", 0, 4) "}", 0, 4, LORA_E_UNSUPPORTED_DTYPE},
    {"sub-byte dtype", "{" ENT("a", "F4", "[2]", 0, 1) "}", 0, 1, LORA_E_UNSUPPORTED_DTYPE},
    {"dtype with NUL", "{" ENT("a", "U8\\u0000", "[1]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"unknown key ignored", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":[{}]}}", 0, 1,
     LORA_OK},
    /* shapes */
    {"no shape", "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 0, 1, LORA_E_BAD_SHAPE},
    {"shape not an array", "{" ENT("a", "U8", "1", 0, 1) "}", 0, 1, LORA_E_BAD_SHAPE},
    {"negative dim", "{" ENT("a", "U8", "[-1]", 0, 1) "}", 0, 1, LORA_E_BAD_SHAPE},
    {"real dim", "{" ENT("a", "U8", "[1.0]", 0, 1) "}", 0, 1, LORA_E_BAD_SHAPE},
    {"string dim", "{" ENT("a", "U8", "[\"1\"]", 0, 1) "}", 0, 1, LORA_E_BAD_SHAPE},
    {"dim beyond int64", "{" ENT("a", "U8", "[9223372036854775808]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"dim 1e999", "{" ENT("a", "U8", "[1e999]", 0, 1) "}", 0, 1, LORA_E_BAD_JSON},
    {"product overflow", "{" ENT("a", "U8", "[4294967296,4294967296]", 0, 1) "}", 0, 1, LORA_E_BAD_SHAPE},
    {"product wraps to 4", "{" ENT("a", "F32", "[4194305,4194305,211106198978564]", 0, 16) "}", 0, 16,
     LORA_E_BAD_SHAPE},
    {"byte size overflow", "{" ENT("a", "F64", "[2305843009213693952]", 0, 0) "}", 0, 0, LORA_E_BAD_SHAPE},
    {"int64 max elements of U8", "{" ENT("a", "U8", "[9223372036854775807]", 0, 9223372036854775807) "}", 0, 0,
     LORA_E_TRUNCATED},
    {"rank 9", "{" ENT("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 0, 1, LORA_E_LIMIT_EXCEEDED},
    {"rank 8", "{" ENT("a", "U8", "[1,1,1,1,1,1,1,2]", 0, 2) "}", 0, 2, LORA_OK},
    {"rank 0", "{" ENT("a", "F32", "[]", 0, 4) "}", 0, 4, LORA_OK},
    {"zero dim", "{" ENT("a", "F32", "[0,5]", 0, 0) "}", 0, 0, LORA_OK},
    {"zero dim, nonzero range", "{" ENT("a", "F32", "[0,5]", 0, 4) "}", 0, 4, LORA_E_BAD_SIZE},
    /* offsets */
    {"no data_offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 0, 1, LORA_E_BAD_OFFSET},
    {"one offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 0, 1, LORA_E_BAD_OFFSET},
    {"three offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 0, 1, LORA_E_BAD_OFFSET},
    {"offsets not array", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}", 0, 1, LORA_E_BAD_OFFSET},
    {"negative offset", "{" ENT("a", "U8", "[1]", -1, 0) "}", 0, 1, LORA_E_BAD_OFFSET},
    {"real offset", "{" ENT("a", "U8", "[1]", 0, 1.0) "}", 0, 1, LORA_E_BAD_OFFSET},
    {"begin > end", "{" ENT("a", "U8", "[0]", 8, 4) "}", 0, 8, LORA_E_BAD_OFFSET},
    {"wrong size", "{" ENT("a", "F32", "[2]", 0, 4) "}", 0, 4, LORA_E_BAD_SIZE},
    {"overlap", "{" ENT("a", "U8", "[8]", 0, 8) "," ENT("b", "U8", "[8]", 4, 12) "}", 0, 12, LORA_E_OVERLAP},
    {"aliased", "{" ENT("a", "U8", "[4]", 0, 4) "," ENT("b", "U8", "[4]", 0, 4) "}", 0, 4, LORA_E_OVERLAP},
    {"gap", "{" ENT("a", "U8", "[4]", 0, 4) "," ENT("b", "U8", "[4]", 8, 12) "}", 0, 12, LORA_E_OVERLAP},
    {"first not at 0", "{" ENT("a", "U8", "[4]", 4, 8) "}", 0, 8, LORA_E_OVERLAP},
    {"out of order", "{" ENT("b", "U8", "[4]", 4, 8) "," ENT("a", "U8", "[4]", 0, 4) "}", 0, 8, LORA_OK},
    {"empty tensor at a boundary", "{" ENT("a", "U8", "[4]", 0, 4) "," ENT("z", "U8", "[0]", 0, 0) "," ENT("y", "U8", "[0]", 4, 4) "}", 0, 4, LORA_OK},
    {"empty tensor inside another", "{" ENT("a", "U8", "[4]", 0, 4) "," ENT("z", "U8", "[0]", 2, 2) "}", 0, 4,
     LORA_E_OVERLAP},
    {"empty tensor past the end", "{" ENT("a", "U8", "[4]", 0, 4) "," ENT("z", "U8", "[0]", 5, 5) "}", 0, 4,
     LORA_E_OVERLAP},
    {"end beyond file", "{" ENT("a", "U8", "[8]", 0, 8) "}", 0, 4, LORA_E_TRUNCATED},
    {"trailing bytes", "{" ENT("a", "U8", "[4]", 0, 4) "}", 0, 6, LORA_E_TRAILING_BYTES},
    {"no tensors, one data byte", "{}", 0, 1, LORA_E_TRAILING_BYTES},
    /* metadata */
    {"metadata", "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"\"}}", 0, 0, LORA_OK},
    {"metadata null", "{\"__metadata__\":null}", 0, 0, LORA_OK},
    {"metadata non-string value", "{\"__metadata__\":{\"a\":1}}", 0, 0, LORA_E_BAD_METADATA},
    {"metadata null value", "{\"__metadata__\":{\"a\":null}}", 0, 0, LORA_E_BAD_METADATA},
    {"metadata array", "{\"__metadata__\":[]}", 0, 0, LORA_E_BAD_METADATA},
    {"metadata string", "{\"__metadata__\":\"pt\"}", 0, 0, LORA_E_BAD_METADATA},
    {"__metadata__ as a tensor", "{" ENT("__metadata__", "F32", "[]", 0, 4) "}", 0, 4, LORA_E_BAD_METADATA},
    {"escaped __metadata__", "{\"\\u005f_metadata__\":{\"a\":1}}", 0, 0, LORA_E_BAD_METADATA},
};

static void test_hostile_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const hostile *h = &cases[i];
        lora_error err;
        size_t jlen = h->jlen ? h->jlen : strlen(h->json);
        lora_status st = parse_json_opts(h->json, jlen, h->data, NULL, &err);
        if (st != h->want)
            fail_msg("case '%s': got %s, want %s (%s)", h->label, lora_status_name(st), lora_status_name(h->want),
                     err.detail);
        if (st != LORA_OK) {
            assert_true(strncmp(err.detail, "safetensors: ", 13) == 0);
            assert_int_equal(err.status, st);
        }
    }
}

static void test_lfs_pointer(void **state)
{
    (void)state;
    const char *ptr = "version https://git-lfs.github.com/spec/v1\n"
                      "oid sha256:130792c9a7496b3758e7a1e049ca51698a5776e59e1fc2911ff6c9d8ebd3fa05\n"
                      "size 3253104\n";
    lora_error err;
    lora_st_file *f;
    assert_int_equal(lora_st_parse((const uint8_t *)ptr, strlen(ptr), NULL, &f, &err), LORA_E_LFS_POINTER);
    assert_null(f);
    assert_int_equal(err.offset, 0);
    assert_string_equal(err.detail, "safetensors: this is a Git LFS pointer (oid "
                                    "sha256:130792c9a7496b3758e7a1e049ca51698a5776e59e1fc2911ff6c9d8ebd3fa05, size "
                                    "3253104); fetch the real file");
    /* Fields missing or hostile: still recognised, nothing unprintable copied. */
    const char *bad = "version https://git-lfs.github.com/spec/v1\noid sha256:\x1b[31m\n";
    assert_int_equal(lora_st_parse((const uint8_t *)bad, strlen(bad), NULL, &f, &err), LORA_E_LFS_POINTER);
    assert_string_equal(err.detail,
                        "safetensors: this is a Git LFS pointer (oid sha256:unknown, size unknown); fetch the real file");
    /* Only a prefix of the version line: not a pointer. */
    assert_int_equal(lora_st_parse((const uint8_t *)ptr, 20, NULL, &f, &err), LORA_E_LIMIT_EXCEEDED);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    lora_error err;
    size_t depth = 100000;
    char *j = malloc(depth + 16);
    assert_non_null(j);
    strcpy(j, "{\"a\":");
    memset(j + 5, '[', depth);
    assert_int_equal(parse_json_opts(j, 5 + depth, 0, NULL, &err), LORA_E_BAD_JSON);
    assert_non_null(strstr(err.detail, "nests deeper than 64 levels"));
    assert_int_equal(err.offset, 8 + 5 + 63); /* '{' is level 1: the 64th '[' is level 65 */
    /* Objects nest the same way. */
    size_t len = 0;
    for (size_t k = 0; k < 3000; k++) len += (size_t)sprintf(j + len, "{\"a\":");
    assert_int_equal(parse_json_opts(j, len, 0, NULL, &err), LORA_E_BAD_JSON);
    assert_int_equal(err.offset, 8 + 64 * 5);
    /* Brackets inside strings, escaped quotes included, do not count. */
    len = (size_t)sprintf(j, "{\"__metadata__\":{\"k\":\"\\\"");
    for (size_t k = 0; k < 100; k++) j[len++] = '[';
    len += (size_t)sprintf(j + len, "\"}}");
    assert_int_equal(parse_json_opts(j, len, 0, NULL, &err), LORA_OK);
    /* 64 levels pass the cap (well-formed JSON, wrong schema); 65 do not. */
    for (size_t levels = 63; levels <= 64; levels++) {
        len = (size_t)sprintf(j, "{\"a\":");
        for (size_t k = 0; k < levels; k++) j[len++] = '[';
        for (size_t k = 0; k < levels; k++) j[len++] = ']';
        j[len++] = '}';
        assert_int_equal(parse_json_opts(j, len, 0, NULL, &err), levels == 63 ? LORA_E_BAD_HEADER : LORA_E_BAD_JSON);
    }
    free(j);
}

/* Offsets and wording of details. */
static void test_details(void **state)
{
    (void)state;
    lora_error err;
    const char *j = "{" ENT("a", "U8", "[1]", 0, 1) "," ENT("b", "F7", "[1]", 1, 2) "}";
    assert_int_equal(parse_json(j, 2, &err), LORA_E_UNSUPPORTED_DTYPE);
    uint64_t key_off = 8 + (uint64_t)(strstr(j, "\"b\"") - j);
    assert_int_equal(err.offset, key_off);
    char want[256];
    snprintf(want, sizeof want, "safetensors: tensor 'b': unsupported dtype \"F7\" (offset %llu)",
             (unsigned long long)key_off);
    assert_string_equal(err.detail, want);

    /* Layout problems point at the data. */
    j = "{" ENT("a", "U8", "[4]", 0, 4) "," ENT("b", "U8", "[4]", 8, 12) "}";
    assert_int_equal(parse_json(j, 12, &err), LORA_E_OVERLAP);
    assert_int_equal(err.offset, 8 + strlen(j) + 8);
    assert_non_null(strstr(err.detail, "tensor 'b': 4-byte gap before it"));
    j = "{" ENT("a", "U8", "[4]", 0, 4) "}";
    assert_int_equal(parse_json(j, 6, &err), LORA_E_TRAILING_BYTES);
    assert_int_equal(err.offset, 8 + strlen(j) + 4);

    /* JSON errors: 8 + jansson's position. */
    j = "{\"a\":1,\"a\":2}";
    assert_int_equal(parse_json(j, 0, &err), LORA_E_DUPLICATE_NAME);
    assert_int_equal(err.offset, 8 + 10);

    /* A name with an escape sequence is shown with '?' for control bytes. */
    j = "{" ENT("\\u001b[31mred", "F7", "[1]", 0, 1) "}";
    assert_int_equal(parse_json(j, 1, &err), LORA_E_UNSUPPORTED_DTYPE);
    assert_null(strchr(err.detail, 0x1b));
    assert_non_null(strstr(err.detail, "tensor '?[31mred'"));
    assert_int_equal(err.offset, 8); /* escaped key: the header's start */

    /* A long name is cut, the message survives. */
    char big[1200];
    int n = snprintf(big, sizeof big, "{\"%0500d\":{\"dtype\":\"F7\",\"shape\":[],\"data_offsets\":[0,1]}}", 0);
    assert_true(n > 0);
    assert_int_equal(parse_json(big, 1, &err), LORA_E_UNSUPPORTED_DTYPE);
    assert_non_null(strstr(err.detail, "...': unsupported dtype \"F7\" (offset 9)"));
}

static void test_limits(void **state)
{
    (void)state;
    lora_error err;
    const char *two = "{\"__metadata__\":{\"k\":\"v\",\"l\":\"w\"}," ENT("a", "U8", "[1]", 0, 1) "," ENT("bcde", "U8", "[1]", 1, 2) "}";
    lora_st_options o = {{0, 0, 0, 0, 0}, {0, 0, 0}};
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_OK);
    o.limits.max_tensors = 1;
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_E_LIMIT_EXCEEDED);
    o.limits.max_tensors = 2;
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_OK);
    o.limits.max_name_length = 3;
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.detail, "tensor 'bcde'"));
    o.limits.max_name_length = 4;
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_OK);
    o.limits.max_metadata = 1;
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_E_LIMIT_EXCEEDED);
    o.limits.max_metadata = 0;
    o.limits.reserved0 = 1;
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_E_INVALID_ARGUMENT);
    o.limits.reserved0 = 0;
    o.allocator.alloc = t_alloc; /* half a hook */
    assert_int_equal(parse_json_opts(two, strlen(two), 2, &o, &err), LORA_E_INVALID_ARGUMENT);
    lora_st_file *f;
    assert_int_equal(lora_st_parse((const uint8_t *)"x", 1, NULL, NULL, &err), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_st_parse(NULL, 1, NULL, &f, &err), LORA_E_INVALID_ARGUMENT);
}

/* Bounds checked on the text before jansson builds anything. */
static void test_prescan_budgets(void **state)
{
    (void)state;
    lora_error err;
    lora_st_options o = {{0, 2, 1, 0, 0}, {0, 0, 0}};
    char j[4096];
    /* Two rank-8 tensors and one metadata entry fit limits of 2 and 1. */
    const char *ok = "{\"__metadata__\":{\"k\":\"v\"}," ENT("a", "U8", "[1,1,1,1,1,1,1,1]", 0, 1) "," ENT(
        "b", "U8", "[1,1,1,1,1,1,1,1]", 1, 2) "}";
    assert_int_equal(parse_json_opts(ok, strlen(ok), 2, &o, &err), LORA_OK);
    /* A third entry: refused by its top-level comma, before jansson. */
    const char *three = "{\"__metadata__\":{}," ENT("a", "U8", "[1]", 0, 1) "," ENT("b", "U8", "[1]", 1, 2) "," ENT(
        "c", "U8", "[1]", 2, 3) "}";
    assert_int_equal(parse_json_opts(three, strlen(three), 3, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.detail, "more than 3 entries"));
    assert_int_equal(err.offset, 8 + (uint64_t)(strstr(three, ",\"c\"") - three));
    /* Array elements: 10T + 8 = 28 commas inside arrays. */
    int len = sprintf(j, "{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1],\"x\":[0");
    for (int k = 0; k < 27; k++) len += sprintf(j + len, ",0");
    len += sprintf(j + len, "]}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 1, &o, &err), LORA_OK); /* 1 + 27 = 28 */
    len -= 3;
    len += sprintf(j + len, ",0]}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 1, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.detail, "more than 28 array elements"));
    /* Object members: 6T + M + 8 = 21 colons. */
    len = sprintf(j, "{\"__metadata__\":{\"k0\":\"\"");
    for (int k = 1; k < 20; k++) len += sprintf(j + len, ",\"k%d\":\"\"", k);
    len += sprintf(j + len, "}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 0, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.detail, "20 __metadata__ entries exceed the limit of 1")); /* jansson ran */
    len -= 2;
    len += sprintf(j + len, ",\"k20\":\"\"}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 0, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.detail, "more than 21 object members"));
    /* Containers: 4T + 8 = 16 braces and brackets. */
    len = sprintf(j, "{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1],\"x\":[[]");
    for (int k = 0; k < 10; k++) len += sprintf(j + len, ",[]");
    len += sprintf(j + len, "]}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 1, &o, &err), LORA_OK); /* 2 objects + 3 arrays + 11 = 16 */
    len -= 3;
    len += sprintf(j + len, ",[]]}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 1, &o, &err), LORA_E_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.detail, "more than 16 objects and arrays"));
    /* Separators inside strings count for nothing. */
    len = sprintf(j, "{\"__metadata__\":{\"k\":\"");
    for (int k = 0; k < 500; k++) len += sprintf(j + len, ",:[{");
    len += sprintf(j + len, "\"}}");
    assert_int_equal(parse_json_opts(j, (size_t)len, 0, &o, &err), LORA_OK);
}

/* A small valid file with every kind of entry. */
static const char small_json[] = "{\"__metadata__\":{\"format\":\"pt\"}," ENT("w", "F16", "[2,3]", 0, 12) "," ENT(
    "s", "F32", "[]", 12, 16) "," ENT("e", "I64", "[0]", 16, 16) "," ENT("b", "BOOL", "[3]", 16, 19) "}";

static void test_prefixes_and_flips(void **state)
{
    (void)state;
    size_t size;
    uint8_t *p = mkfile(small_json, strlen(small_json), 19, &size);
    lora_error err;
    lora_st_file *f;
    assert_int_equal(lora_st_parse(p, size, NULL, &f, &err), LORA_OK);
    assert_int_equal(f->tensor_count, 4);
    lora_st_free(f);
    for (size_t k = 0; k < size; k++) {
        uint8_t *q = malloc(k ? k : 1);
        memcpy(q, p, k);
        lora_status st = lora_st_parse(q, k, NULL, &f, &err);
        if (st == LORA_OK) fail_msg("prefix of %zu bytes accepted", k);
        free(q);
    }
    /* Every bit flip: a clean status, and an accepted file still tiles. */
    uint64_t data_start = 8 + strlen(small_json);
    for (size_t k = 0; k < size * 8; k++) {
        p[k / 8] ^= (uint8_t)(1u << (k % 8));
        lora_status st = lora_st_parse(p, size, NULL, &f, &err);
        if (k / 8 >= data_start) assert_int_equal(st, LORA_OK); /* data bytes are not checked */
        if (st == LORA_OK) {
            check_invariants(p, size, f);
            lora_st_free(f);
        }
        p[k / 8] ^= (uint8_t)(1u << (k % 8));
    }
    free(p);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    size_t size;
    uint8_t *p = mkfile(small_json, strlen(small_json), 19, &size);
    lora_error err;
    long n;
    for (n = 1;; n++) {
        counting c = {0, n, 0};
        lora_st_options o = {{0, 0, 0, 0, 0}, {t_alloc, t_free, &c}};
        lora_st_file *f;
        lora_status st = lora_st_parse(p, size, &o, &f, &err);
        if (st == LORA_OK) {
            assert_true(c.live > 0);
            lora_st_free(f);
            assert_int_equal(c.live, 0);
            break;
        }
        assert_int_equal(st, LORA_E_OUT_OF_MEMORY);
        assert_int_equal(c.live, 0);
    }
    assert_true(n > 2);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* writer                                                                   */
/* ------------------------------------------------------------------------ */

static void expect_file(const lora_st_entry *t, uint32_t count, const lora_st_pair *m, uint32_t mcount,
                        const void *const *data, const uint8_t *want, size_t want_len)
{
    membuf out = {0};
    lora_error err;
    assert_int_equal(lora_st_write(NULL, t, count, m, mcount, data, mem_sink, &out, &err), LORA_OK);
    assert_int_equal(out.len, want_len);
    assert_memory_equal(out.p, want, want_len);
    free(out.p);
}

/* The reference implementation's own vectors (tensor.rs tests). */
static void test_writer_reference_vectors(void **state)
{
    (void)state;
    static const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    expect_file(NULL, 0, NULL, 0, NULL, empty, sizeof empty);

    static const uint8_t framework[] = {40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97,
                                        116, 97, 95, 95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114,
                                        107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32};
    lora_st_pair pt = {"framework", "pt"};
    expect_file(NULL, 0, &pt, 1, NULL, framework, sizeof framework);

    static const uint8_t attn[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34,
        58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97,
        116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0,
        128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    const float vals[6] = {0, 1, 2, 3, 4, 5};
    lora_st_entry t = {"attn.0", LORA_ST_F32, 3, {1, 2, 3}, 24};
    const void *d[1] = {vals};
    expect_file(&t, 1, NULL, 0, d, attn, sizeof attn);
}

/* Two tensors and metadata, the header written out by hand. */
static void test_writer_two_tensors(void **state)
{
    (void)state;
    static const char json[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                               "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                               "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[4,12]}}";
    assert_int_equal(sizeof json - 1, 148); /* counted: 148 bytes, padded to 152 */
    uint8_t want[8 + 152 + 12];
    memset(want, 0, sizeof want);
    want[0] = 152;
    memcpy(want + 8, json, 148);
    memset(want + 8 + 148, ' ', 4);
    const uint8_t b[4] = {0x00, 0x3c, 0x00, 0xc0};              /* f16 1.0, -2.0 */
    const uint8_t a[8] = {0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0xbf}; /* f32 0.5, -1.0 */
    memcpy(want + 160, b, 4);
    memcpy(want + 164, a, 8);
    lora_st_entry t[2] = {{"b", LORA_ST_F16, 1, {2}, 4}, {"a.weight", LORA_ST_F32, 2, {1, 2}, 8}};
    lora_st_pair m = {"format", "pt"};
    const void *d[2] = {b, a};
    expect_file(t, 2, &m, 1, d, want, sizeof want);

    /* header_build alone gives the same prefix and the data size. */
    uint8_t *h;
    size_t hs;
    uint64_t ds;
    lora_error err;
    assert_int_equal(lora_st_header_build(NULL, t, 2, &m, 1, &h, &hs, &ds, &err), LORA_OK);
    assert_int_equal(hs, 160);
    assert_int_equal(ds, 12);
    assert_memory_equal(h, want, 160);
    free(h);

    /* And it parses back to the same descriptors, data 8-aligned. */
    lora_st_file *f;
    assert_int_equal(lora_st_parse(want, sizeof want, NULL, &f, &err), LORA_OK);
    assert_int_equal(f->tensor_count, 2);
    assert_string_equal(f->tensors[1].name, "a.weight");
    assert_int_equal(f->tensors[1].offset, 164);
    assert_int_equal(f->data_offset % 8, 0);
    assert_memory_equal(f->tensors[1].data, a, 8);
    lora_st_free(f);
}

static void test_writer_escaping(void **state)
{
    (void)state;
    const char *name = "q\"\\\n\t\b\f\r\x01\x1f\x7f\xc3\xa9/";
    static const char json[] = "{\"q\\\"\\\\\\n\\t\\b\\f\\r\\u0001\\u001f\x7f\xc3\xa9/\":"
                               "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    size_t n = sizeof json - 1;
    size_t padded = (n + 7) / 8 * 8;
    uint8_t *want = calloc(1, 8 + padded + 1);
    assert_non_null(want);
    want[0] = (uint8_t)padded;
    memcpy(want + 8, json, n);
    memset(want + 8 + n, ' ', padded - n);
    want[8 + padded] = 0x42;
    lora_st_entry t = {name, LORA_ST_U8, 1, {1}, 1};
    const uint8_t byte = 0x42;
    const void *d[1] = {&byte};
    expect_file(&t, 1, NULL, 0, d, want, 8 + padded + 1);
    lora_st_file *f;
    lora_error err;
    assert_int_equal(lora_st_parse(want, 8 + padded + 1, NULL, &f, &err), LORA_OK);
    assert_string_equal(f->tensors[0].name, name);
    lora_st_free(f);
    free(want);
}

static lora_st_dtype random_dtype(uint64_t *s) { return (lora_st_dtype)(rng_next(s) % LORA_ST_DTYPE_COUNT_); }

/* Random tensors and metadata, written in random chunks, parsed back. */
static void test_writer_round_trip_random(void **state)
{
    (void)state;
    uint64_t seed = 20240611;
    for (int iter = 0; iter < 300; iter++) {
        uint32_t count = (uint32_t)(rng_next(&seed) % 13);
        uint32_t mcount = (uint32_t)(rng_next(&seed) % 4);
        lora_st_entry t[12];
        char names[12][32];
        uint8_t *data[12];
        lora_st_pair m[3];
        char keys[3][16], vals[3][24];
        for (uint32_t i = 0; i < count; i++) {
            snprintf(names[i], sizeof names[i], "t.%u.%llu", i, (unsigned long long)(rng_next(&seed) % 1000));
            t[i].name = names[i];
            t[i].dtype = random_dtype(&seed);
            t[i].ndim = (uint32_t)(rng_next(&seed) % 5);
            if (rng_next(&seed) % 16 == 0) t[i].ndim = 8;
            memset(t[i].shape, 0, sizeof t[i].shape);
            uint64_t numel = 1;
            for (uint32_t d = 0; d < t[i].ndim; d++) {
                t[i].shape[d] = t[i].ndim == 8 ? 1 + rng_next(&seed) % 2 : rng_next(&seed) % 6;
                numel *= t[i].shape[d];
            }
            t[i].size = numel * spec_elem_size(lora_st_dtype_name(t[i].dtype));
            data[i] = malloc(t[i].size + 1);
            for (uint64_t b = 0; b < t[i].size; b++) data[i][b] = (uint8_t)rng_next(&seed);
        }
        for (uint32_t i = 0; i < mcount; i++) {
            snprintf(keys[i], sizeof keys[i], "k%u", i);
            snprintf(vals[i], sizeof vals[i], "v\"%llu\n", (unsigned long long)rng_next(&seed) % 100);
            m[i].key = keys[i];
            m[i].value = vals[i];
        }
        membuf out = {0};
        lora_error err;
        lora_st_writer *w;
        assert_int_equal(lora_st_writer_begin(NULL, t, count, m, mcount, mem_sink, &out, &w, &err), LORA_OK);
        /* Concatenate, then feed in chunks that ignore tensor boundaries. */
        uint64_t total = 0;
        for (uint32_t i = 0; i < count; i++) total += t[i].size;
        uint8_t *all = malloc(total + 1);
        uint64_t at = 0;
        for (uint32_t i = 0; i < count; i++) {
            if (t[i].size) memcpy(all + at, data[i], t[i].size);
            at += t[i].size;
        }
        for (at = 0; at < total;) {
            uint64_t chunk = 1 + rng_next(&seed) % 40;
            if (chunk > total - at) chunk = total - at;
            assert_int_equal(lora_st_writer_put(w, all + at, (size_t)chunk, &err), LORA_OK);
            at += chunk;
        }
        assert_int_equal(lora_st_writer_current(w), count);
        assert_int_equal(lora_st_writer_finish(w, &err), LORA_OK);
        lora_st_writer_free(w);

        lora_st_file *f;
        assert_int_equal(lora_st_parse(out.p, out.len, NULL, &f, &err), LORA_OK);
        assert_int_equal((8 + f->header_size) % 8, 0);
        check_invariants(out.p, out.len, f);
        assert_int_equal(f->tensor_count, count);
        assert_int_equal(f->meta_count, mcount);
        uint64_t begin = 0;
        for (uint32_t i = 0; i < count; i++) {
            const lora_st_tensor *x = &f->tensors[i];
            assert_string_equal(x->name, t[i].name);
            assert_int_equal(x->dtype, t[i].dtype);
            assert_int_equal(x->ndim, t[i].ndim);
            assert_memory_equal(x->shape, t[i].shape, sizeof x->shape);
            assert_int_equal(x->size, t[i].size);
            assert_int_equal(x->begin, begin); /* laid out in the given order */
            if (x->size) assert_memory_equal(x->data, data[i], x->size);
            begin += x->size;
            free(data[i]);
        }
        for (uint32_t i = 0; i < mcount; i++) {
            assert_string_equal(f->meta[i].key, m[i].key);
            assert_string_equal(f->meta[i].value, m[i].value);
        }
        lora_st_free(f);
        free(all);
        free(out.p);
    }
}

static void test_writer_errors(void **state)
{
    (void)state;
    lora_error err;
    membuf out = {0};
    lora_st_writer *w;
    lora_st_entry t[3] = {{"a", LORA_ST_U8, 1, {4}, 4}, {"b", LORA_ST_U8, 1, {8}, 8}, {"a", LORA_ST_U8, 0, {0}, 1}};
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_DUPLICATE_NAME);
    assert_null(w);
    assert_int_equal(out.len, 0); /* nothing written before the checks pass */
    t[2].name = "__metadata__";
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_INVALID_ARGUMENT);
    t[2].name = "\xff";
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_BAD_STRING);
    t[2].name = "c";
    t[2].size = 2;
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_BAD_SIZE);
    t[2].size = 1;
    t[2].ndim = 9;
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_BAD_SHAPE);
    t[2].ndim = 1;
    t[2].shape[0] = UINT64_C(1) << 63;
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_BAD_SHAPE);
    t[2].shape[0] = 1;
    t[2].dtype = LORA_ST_DTYPE_COUNT_;
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_E_INVALID_ARGUMENT);
    t[2].dtype = LORA_ST_U8;
    lora_st_pair m[2] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, m, 2, mem_sink, &out, &w, &err), LORA_E_DUPLICATE_NAME);
    m[1].value = "\xc0\x80";
    m[1].key = "l";
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, m, 2, mem_sink, &out, &w, &err), LORA_E_BAD_STRING);
    assert_int_equal(out.len, 0);

    /* Too many bytes, too few, and use after finish. */
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &out, &w, &err), LORA_OK);
    uint8_t bytes[16] = {0};
    assert_int_equal(lora_st_writer_current(w), 0);
    assert_int_equal(lora_st_writer_put(w, bytes, 7, &err), LORA_OK);
    assert_int_equal(lora_st_writer_current(w), 1);
    assert_int_equal(lora_st_writer_put(w, bytes, 7, &err), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_st_writer_finish(w, &err), LORA_E_INVALID_ARGUMENT);
    assert_string_equal(err.detail, "safetensors writer: tensor 1 'b': 3 of 8 bytes written");
    assert_int_equal(lora_st_writer_put(w, bytes, 6, &err), LORA_OK);
    assert_int_equal(lora_st_writer_current(w), 3);
    assert_int_equal(lora_st_writer_finish(w, &err), LORA_OK);
    assert_int_equal(lora_st_writer_put(w, bytes, 0, &err), LORA_E_INVALID_ARGUMENT);
    lora_st_writer_free(w);
    free(out.p);

    /* Sink failures come back with the sink's detail, and stay. */
    membuf bad = {0};
    bad.fail = LORA_E_NO_SPACE;
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &bad, &w, &err), LORA_E_NO_SPACE);
    assert_null(w);
    assert_string_equal(err.detail, "sink 1");
    bad.ok_calls = 1;
    bad.calls = 0;
    bad.fail = LORA_E_IO;
    assert_int_equal(lora_st_writer_begin(NULL, t, 3, NULL, 0, mem_sink, &bad, &w, &err), LORA_OK);
    assert_int_equal(lora_st_writer_put(w, bytes, 13, &err), LORA_OK); /* staged */
    assert_int_equal(lora_st_writer_finish(w, &err), LORA_E_IO);
    assert_string_equal(err.detail, "sink 2");
    assert_int_equal(lora_st_writer_finish(w, &err), LORA_E_IO);
    assert_string_equal(err.detail, "sink 2");
    assert_int_equal(lora_st_writer_put(w, bytes, 0, &err), LORA_E_IO);
    assert_int_equal(bad.calls, 2); /* the sink is not called again */
    lora_st_writer_free(w);
    free(bad.p);

    /* A header the readers would refuse is not written. */
    size_t big = 100000001;
    char *name = malloc(big + 1);
    assert_non_null(name);
    memset(name, 'a', big);
    name[big] = '\0';
    lora_st_entry huge = {name, LORA_ST_U8, 0, {0}, 1};
    uint8_t *h;
    size_t hs;
    uint64_t ds;
    assert_int_equal(lora_st_header_build(NULL, &huge, 1, NULL, 0, &h, &hs, &ds, &err), LORA_E_LIMIT_EXCEEDED);
    free(name);
}

static void test_writer_fd_sink(void **state)
{
    (void)state;
    char path[] = "/tmp/test_st_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    /* Larger than the stage buffer so both paths of put are used. */
    size_t big = (size_t)200 << 10;
    uint8_t *a = malloc(big);
    for (size_t i = 0; i < big; i++) a[i] = (uint8_t)(i * 7);
    const uint8_t s[2] = {1, 2};
    lora_st_entry t[2] = {{"big", LORA_ST_F32, 2, {256, 200}, big}, {"small", LORA_ST_I16, 1, {1}, 2}};
    const void *d[2] = {a, s};
    lora_st_fd_sink sink = {NULL, fd};
    lora_error err;
    assert_int_equal(lora_st_write(NULL, t, 2, NULL, 0, d, lora_st_fd_sink_write, &sink, &err), LORA_OK);
    close(fd);
    lora_st_file *f;
    assert_int_equal(lora_st_open(path, NULL, &f, &err), LORA_OK);
    assert_int_equal(f->tensor_count, 2);
    assert_memory_equal(f->tensors[0].data, a, big);
    assert_memory_equal(f->tensors[1].data, s, 2);
    lora_st_free(f);
    unlink(path);

    fd = open("/dev/full", O_WRONLY);
    if (fd >= 0) {
        sink.fd = fd;
        assert_int_equal(lora_st_write(NULL, t, 2, NULL, 0, d, lora_st_fd_sink_write, &sink, &err), LORA_E_NO_SPACE);
        close(fd);
    }
    free(a);
}

static size_t dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Crash-safe writes through lib/write's afile: whole file and streamed. */
static void test_writer_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_st_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    const uint8_t b[4] = {1, 2, 3, 4};
    lora_st_entry t[2] = {{"x", LORA_ST_U8, 1, {4}, 4}, {"y", LORA_ST_I16, 1, {2}, 4}};
    lora_st_pair m = {"format", "pt"};
    const void *d[2] = {b, b};
    lora_error err;
    assert_int_equal(lora_st_write_file(NULL, path, NULL, t, 2, &m, 1, d, &err), LORA_OK);
    lora_st_file *f;
    assert_int_equal(lora_st_open(path, NULL, &f, &err), LORA_OK);
    assert_int_equal(f->tensor_count, 2);
    assert_int_equal(f->file_size, 8 + f->header_size + 8);
    lora_st_free(f);
    size_t before_size;
    uint8_t *before = ts_read_file(path, &before_size);

    /* Failures leave the target as it was and no temp file behind. */
    t[1].name = "x";
    assert_int_equal(lora_st_write_file(NULL, path, NULL, t, 2, &m, 1, d, &err), LORA_E_DUPLICATE_NAME);
    t[1].name = "y";
    const char *inputs[1] = {path};
    lora_write_options o = LORA_WRITE_OPTIONS_INIT;
    o.inputs = inputs;
    o.input_count = 1;
    assert_int_equal(lora_st_write_file(NULL, path, &o, t, 1, NULL, 0, d, &err), LORA_E_SAME_FILE);
    assert_int_equal(lora_st_write_file(NULL, dir, NULL, t, 1, NULL, 0, d, &err), LORA_E_NOT_REGULAR_FILE);
    size_t after_size;
    uint8_t *after = ts_read_file(path, &after_size);
    assert_int_equal(after_size, before_size);
    assert_memory_equal(after, before, before_size);
    free(after);
    free(before);
    assert_int_equal(dir_entries(dir), 1);

    /* Streaming: tensor by tensor into the temp file, then commit. */
    lora_afile *af;
    assert_int_equal(lora_afile_open(NULL, NULL, path, NULL, &af, &err), LORA_OK);
    lora_st_writer *w;
    assert_int_equal(lora_st_writer_begin(NULL, t, 2, NULL, 0, lora_st_afile_sink_write, af, &w, &err), LORA_OK);
    assert_int_equal(dir_entries(dir), 2); /* target and temp */
    assert_int_equal(lora_st_writer_put(w, b, 4, &err), LORA_OK);
    assert_int_equal(lora_st_writer_put(w, b + 2, 2, &err), LORA_OK);
    assert_int_equal(lora_st_writer_put(w, b, 2, &err), LORA_OK);
    assert_int_equal(lora_st_writer_finish(w, &err), LORA_OK);
    lora_st_writer_free(w);
    assert_int_equal(lora_afile_commit(af, &err), LORA_OK);
    assert_int_equal(dir_entries(dir), 1);
    assert_int_equal(lora_st_open(path, NULL, &f, &err), LORA_OK);
    assert_int_equal(f->meta_count, 0);
    const uint8_t y[4] = {3, 4, 1, 2};
    assert_memory_equal(f->tensors[1].data, y, 4);
    lora_st_free(f);
    unlink(path);
    rmdir(dir);
}

static void test_writer_alloc_failures(void **state)
{
    (void)state;
    lora_st_entry t[2] = {{"b", LORA_ST_F16, 1, {2}, 4}, {"a", LORA_ST_F32, 2, {1, 2}, 8}};
    lora_st_pair m = {"format", "pt"};
    const uint8_t bytes[8] = {0};
    const void *d[2] = {bytes, bytes};
    long n;
    for (n = 1;; n++) {
        counting c = {0, n, 0};
        lora_allocator a = {t_alloc, t_free, &c};
        membuf out = {0};
        lora_error err;
        lora_status st = lora_st_write(&a, t, 2, &m, 1, d, mem_sink, &out, &err);
        assert_int_equal(c.live, 0);
        free(out.p);
        if (st == LORA_OK) break;
        assert_int_equal(st, LORA_E_OUT_OF_MEMORY);
    }
    assert_true(n > 3);
}

static void test_dtypes(void **state)
{
    (void)state;
    for (int d = 0; d < LORA_ST_DTYPE_COUNT_; d++) {
        const char *name = lora_st_dtype_name((lora_st_dtype)d);
        assert_non_null(name);
        assert_int_equal(lora_st_dtype_size((lora_st_dtype)d), spec_elem_size(name));
        lora_st_dtype back;
        assert_int_equal(lora_st_dtype_from_name(name, strlen(name), &back), LORA_OK);
        assert_int_equal(back, d);
        /* Alignment order: sizes never decrease. */
        if (d) assert_true(lora_st_dtype_size((lora_st_dtype)d) >= lora_st_dtype_size((lora_st_dtype)(d - 1)));
    }
    assert_null(lora_st_dtype_name(LORA_ST_DTYPE_COUNT_));
    assert_int_equal(lora_st_dtype_size(LORA_ST_DTYPE_COUNT_), 0);
    lora_st_dtype x;
    assert_int_equal(lora_st_dtype_from_name("F3", 2, &x), LORA_E_UNSUPPORTED_DTYPE);
    assert_int_equal(lora_st_dtype_from_name("F32", 2, &x), LORA_E_UNSUPPORTED_DTYPE);
    lora_dtype l;
    assert_int_equal(lora_st_dtype_to_lora(LORA_ST_BF16, &l), LORA_OK);
    assert_int_equal(l, LORA_DTYPE_BF16);
    assert_int_equal(lora_st_dtype_to_lora(LORA_ST_F16, &l), LORA_OK);
    assert_int_equal(l, LORA_DTYPE_F16);
    assert_int_equal(lora_st_dtype_to_lora(LORA_ST_F32, &l), LORA_OK);
    assert_int_equal(l, LORA_DTYPE_F32);
    assert_int_equal(lora_st_dtype_to_lora(LORA_ST_F64, &l), LORA_E_UNSUPPORTED_DTYPE);

    /* Sniffing. */
    size_t size;
    uint8_t *p = mkfile("{}", 2, 0, &size);
    assert_int_equal(lora_st_sniff(p, size), 1);
    assert_int_equal(lora_st_sniff(p, size - 1), 0);
    p[8] = '[';
    assert_int_equal(lora_st_sniff(p, size), 0);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_all),
        cmocka_unit_test(test_fixtures_tables),
        cmocka_unit_test(test_fixture_gguf_rejected),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_hostile_table),
        cmocka_unit_test(test_lfs_pointer),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_details),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_prescan_budgets),
        cmocka_unit_test(test_prefixes_and_flips),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_writer_reference_vectors),
        cmocka_unit_test(test_writer_two_tensors),
        cmocka_unit_test(test_writer_escaping),
        cmocka_unit_test(test_writer_round_trip_random),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_writer_fd_sink),
        cmocka_unit_test(test_writer_file),
        cmocka_unit_test(test_writer_alloc_failures),
        cmocka_unit_test(test_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
