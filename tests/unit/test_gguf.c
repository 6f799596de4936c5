/*
 * test_gguf.c - the GGUF reader and writer (lib/io/gguf*.c).
 *
 * Oracles are independent of the library: GGUF bytes are assembled here by
 * a tiny builder that follows docs/gguf.md field by field, the facts of the
 * two real files were read with a separate struct-based script, and the
 * writer's output is compared byte for byte with the builder's and with
 * the real llama file gguf-py wrote. Every hostile case asserts its exact
 * status, that nothing leaks and that no allocation above 1 MiB was asked
 * for (the allocation bombs of robustness.md 1.1).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lora.h"
#include "io/gguf.h"
#include "support.h"

#define MIB ((size_t)1 << 20)

/* ------------------------------------------------------------------------ */
/* a byte builder that knows the GGUF layout and nothing of the library     */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} tb;

static void tb_bytes(tb *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void tb_u8(tb *b, uint8_t v) { tb_bytes(b, &v, 1); }

static void tb_u32(tb *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    tb_bytes(b, t, 4);
}

static void tb_u64(tb *b, uint64_t v)
{
    tb_u32(b, (uint32_t)v);
    tb_u32(b, (uint32_t)(v >> 32));
}

static void tb_f32(tb *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    tb_u32(b, u);
}

static void tb_strn(tb *b, const char *s, size_t n)
{
    tb_u64(b, n);
    tb_bytes(b, s, n);
}

static void tb_str(tb *b, const char *s) { tb_strn(b, s, strlen(s)); }

static void tb_header(tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    tb_bytes(b, "GGUF", 4);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}

static void tb_key(tb *b, const char *key, uint32_t type)
{
    tb_str(b, key);
    tb_u32(b, type);
}

static void tb_kv_u32(tb *b, const char *key, uint32_t v)
{
    tb_key(b, key, 4);
    tb_u32(b, v);
}

static void tb_kv_str(tb *b, const char *key, const char *s)
{
    tb_key(b, key, 8);
    tb_str(b, s);
}

static void tb_info(tb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset)
{
    tb_str(b, name);
    tb_u32(b, n_dims);
    /* A hostile n_dims above 5 is written without dims: the reader must
     * stop at n_dims. */
    for (uint32_t i = 0; i < n_dims && n_dims <= 5; i++) tb_u64(b, ne[i]);
    tb_u32(b, type);
    tb_u64(b, offset);
}

static void tb_pad(tb *b, size_t align)
{
    while (b->len % align) tb_u8(b, 0);
}

static void tb_zeros(tb *b, size_t n)
{
    for (size_t i = 0; i < n; i++) tb_u8(b, 0);
}

static void tb_free(tb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* allocator hook: counts, fails the Nth call or anything above a size      */
/* ------------------------------------------------------------------------ */

typedef struct {
    long calls;
    long fail_at; /* 0 = never */
    size_t max_ok; /* 0 = no cap */
    long live;
    size_t biggest;
} talloc;

static void *ta_alloc(void *o, size_t n)
{
    talloc *t = o;
    t->calls++;
    if (n > t->biggest) t->biggest = n;
    if (t->fail_at && t->calls == t->fail_at) return NULL;
    if (t->max_ok && n > t->max_ok) return NULL;
    void *p = malloc(n);
    if (p) t->live++;
    return p;
}

static void ta_free(void *o, void *p)
{
    talloc *t = o;
    if (!p) return;
    t->live--;
    free(p);
}

/* Parse under the 1 MiB hook; assert no leak and no big request. */
static lora_status parse_capped(const tb *b, const lora_gguf_limits *lim, lora_error *e)
{
    talloc t;
    memset(&t, 0, sizeof t);
    t.max_ok = MIB;
    lora_allocator a = {ta_alloc, ta_free, &t};
    lora_gguf *g = NULL;
    lora_status st = lora_gguf_parse(b->p, b->len, lim, &a, &g, e);
    if (st != LORA_OK) assert_null(g);
    lora_gguf_free(g);
    assert_int_equal(t.live, 0);
    assert_true(t.biggest <= MIB);
    return st;
}

static void expect_status_(const tb *b, const lora_gguf_limits *lim, lora_status want, const char *what, int line)
{
    lora_error e;
    lora_status st = parse_capped(b, lim, &e);
    if (st != want)
        fail_msg("line %d (%s): got %s \"%s\", want %s", line, what, lora_status_name(st), e.detail,
                 lora_status_name(want));
    assert_int_equal(e.status, want);
    if (want != LORA_OK) assert_memory_equal(e.detail, "gguf: ", 6);
}
#define EXPECT(b, lim, want) expect_status_((b), (lim), (want), #want, __LINE__)

/* ------------------------------------------------------------------------ */
/* the sample file: every writer-supported KV type, four tensors            */
/* ------------------------------------------------------------------------ */

static const char *const sample_tokens[] = {"<unk>", "a", ""};
static const float sample_scores[] = {0.0f, -1.5f, 2.25f};
static const int32_t sample_ttype[] = {2, 1, -3};
static const uint32_t sample_inv[] = {7, 8};
#define SAMPLE_NKV 10u

typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t nbytes;
} sample_tensor;

/* Offsets by hand (alignment 32): 0, 32, 64 (+68 -> 160), 160. */
static const sample_tensor sample_t[4] = {
    {"blk.0.attn_q.weight", 2, {4, 2, 1, 1}, 0, 32},
    {"blk.0.attn_norm.weight", 1, {3, 1, 1, 1}, 1, 6},
    {"blk.0.ffn_up.weight", 2, {32, 2, 1, 1}, 8, 68},
    {"output.weight", 1, {8, 1, 1, 1}, 0, 32},
};
static const uint64_t sample_off[4] = {0, 32, 64, 160};

static void sample_data(uint8_t *dst, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)ts_rng_next(&seed);
}

static void sample_kvs(tb *b)
{
    tb_kv_str(b, "general.architecture", "llama");
    tb_kv_str(b, "general.name", "tiny");
    tb_kv_u32(b, "llama.block_count", 1);
    tb_key(b, "adapter.lora.alpha", 6);
    tb_f32(b, 16.0f);
    tb_key(b, "tokenizer.ggml.add_bos_token", 7);
    tb_u8(b, 1);
    tb_key(b, "general.size", 10);
    tb_u64(b, UINT64_C(123456789012));
    tb_key(b, "tokenizer.ggml.tokens", 9);
    tb_u32(b, 8);
    tb_u64(b, 3);
    for (int i = 0; i < 3; i++) tb_str(b, sample_tokens[i]);
    tb_key(b, "tokenizer.ggml.scores", 9);
    tb_u32(b, 6);
    tb_u64(b, 3);
    for (int i = 0; i < 3; i++) tb_f32(b, sample_scores[i]);
    tb_key(b, "tokenizer.ggml.token_type", 9);
    tb_u32(b, 5);
    tb_u64(b, 3);
    for (int i = 0; i < 3; i++) tb_u32(b, (uint32_t)sample_ttype[i]);
    tb_key(b, "adapter.alora.invocation_tokens", 9);
    tb_u32(b, 4);
    tb_u64(b, 2);
    for (int i = 0; i < 2; i++) tb_u32(b, sample_inv[i]);
}

/* The whole valid sample, as gguf-py would lay it out. */
static void build_sample(tb *b, uint32_t version)
{
    tb_header(b, version, 4, SAMPLE_NKV);
    sample_kvs(b);
    for (int i = 0; i < 4; i++)
        tb_info(b, sample_t[i].name, sample_t[i].n_dims, sample_t[i].ne, sample_t[i].type, sample_off[i]);
    tb_pad(b, 32);
    for (int i = 0; i < 4; i++) {
        uint8_t buf[128];
        sample_data(buf, (size_t)sample_t[i].nbytes, 100 + (uint64_t)i);
        tb_bytes(b, buf, (size_t)sample_t[i].nbytes);
        tb_pad(b, 32);
    }
}

/* Header + one tensor info with a chosen shape/type/offset and `data` bytes
 * of data: the frame of most tensor-level hostile cases. */
static void build_one_tensor(tb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                             size_t data)
{
    tb_header(b, 3, 1, 0);
    tb_info(b, "blk.0.attn_q.weight", n_dims, ne, type, offset);
    tb_pad(b, 32);
    tb_zeros(b, data);
}

/* ------------------------------------------------------------------------ */
/* the sample parses to exactly what was built                              */
/* ------------------------------------------------------------------------ */

static void check_sample(const lora_gguf *g, const uint8_t *file)
{
    lora_error e;
    assert_int_equal(lora_gguf_kv_count(g), SAMPLE_NKV);
    assert_int_equal(lora_gguf_tensor_count(g), 4);
    assert_int_equal(lora_gguf_alignment(g), 32);
    lora_gguf_str s;
    assert_int_equal(lora_gguf_get_str(g, "general.architecture", &s, &e), LORA_OK);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    uint32_t u;
    assert_int_equal(lora_gguf_get_u32(g, "llama.block_count", &u, &e), LORA_OK);
    assert_int_equal(u, 1);
    float f;
    assert_int_equal(lora_gguf_get_f32(g, "adapter.lora.alpha", &f, &e), LORA_OK);
    assert_true(f == 16.0f);
    int bo;
    assert_int_equal(lora_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bo, &e), LORA_OK);
    assert_int_equal(bo, 1);
    uint64_t u64;
    assert_int_equal(lora_gguf_get_u64(g, "general.size", &u64, &e), LORA_OK);
    assert_true(u64 == UINT64_C(123456789012));
    lora_gguf_array a;
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.tokens", LORA_GGUF_TYPE_STRING, &a, &e), LORA_OK);
    assert_int_equal(a.count, 3);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(lora_gguf_array_str(&a, i, &s), LORA_OK);
        assert_int_equal(s.len, strlen(sample_tokens[i]));
        if (s.len) assert_memory_equal(s.ptr, sample_tokens[i], s.len);
    }
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.scores", LORA_GGUF_TYPE_FLOAT32, &a, &e), LORA_OK);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(lora_gguf_array_f32(&a, i, &f), LORA_OK);
        assert_true(f == sample_scores[i]);
    }
    int32_t i32;
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.token_type", LORA_GGUF_TYPE_INT32, &a, &e), LORA_OK);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(lora_gguf_array_i32(&a, i, &i32), LORA_OK);
        assert_int_equal(i32, sample_ttype[i]);
    }
    assert_int_equal(lora_gguf_get_array(g, "adapter.alora.invocation_tokens", LORA_GGUF_TYPE_UINT32, &a, &e),
                     LORA_OK);
    for (uint64_t i = 0; i < 2; i++) {
        assert_int_equal(lora_gguf_array_u32(&a, i, &u), LORA_OK);
        assert_int_equal(u, sample_inv[i]);
    }
    uint64_t data_off = lora_gguf_data_offset(g);
    assert_int_equal(data_off % 32, 0);
    for (uint64_t i = 0; i < 4; i++) {
        const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
        assert_non_null(t);
        assert_string_equal(t->name, sample_t[i].name);
        assert_ptr_equal(lora_gguf_find_tensor(g, sample_t[i].name), t);
        assert_int_equal(t->n_dims, sample_t[i].n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], sample_t[i].ne[d]);
        assert_int_equal(t->type, sample_t[i].type);
        assert_int_equal(t->offset, sample_off[i]);
        assert_int_equal(t->nbytes, sample_t[i].nbytes);
        assert_ptr_equal(t->data, file + data_off + sample_off[i]);
        uint8_t buf[128];
        sample_data(buf, (size_t)t->nbytes, 100 + i);
        assert_memory_equal(t->data, buf, (size_t)t->nbytes);
    }
    assert_null(lora_gguf_tensor_at(g, 4));
    assert_null(lora_gguf_find_tensor(g, "blk.0.attn_q"));
    assert_null(lora_gguf_find_kv(g, "general"));
}

static void test_sample_parses(void **state)
{
    (void)state;
    for (uint32_t version = 2; version <= 3; version++) {
        tb b = {0};
        build_sample(&b, version);
        lora_gguf *g = NULL;
        lora_error e;
        assert_int_equal(lora_gguf_parse(b.p, b.len, NULL, NULL, &g, &e), LORA_OK);
        assert_int_equal(lora_gguf_version(g), version);
        check_sample(g, b.p);
        lora_gguf_free(g);
        tb_free(&b);
    }
}

/* Every prefix of the sample fails as TRUNCATED: its last tensor fills its
 * padding exactly, so no prefix is a complete file. */
static void test_every_truncation(void **state)
{
    (void)state;
    tb b = {0};
    build_sample(&b, 3);
    for (size_t n = 0; n < b.len; n++) {
        tb pre = {b.p, n, n};
        lora_error e;
        lora_status st = parse_capped(&pre, NULL, &e);
        if (st != LORA_E_TRUNCATED) fail_msg("prefix %zu: %s \"%s\"", n, lora_status_name(st), e.detail);
    }
    EXPECT(&b, NULL, LORA_OK);
    tb_free(&b);
}

/* A last tensor shorter than its padding: the file may end anywhere from the
 * tensor's last byte to the padded end; every shorter prefix is TRUNCATED. */
static void test_truncation_unpadded_tail(void **state)
{
    (void)state;
    tb b = {0};
    const uint64_t ne[1] = {5};
    build_one_tensor(&b, 1, ne, 0, 0, 20);
    size_t data_end = b.len;
    tb_pad(&b, 32);
    for (size_t n = 0; n <= b.len; n++) {
        tb pre = {b.p, n, n};
        lora_error e;
        lora_status st = parse_capped(&pre, NULL, &e);
        lora_status want = n < data_end ? LORA_E_TRUNCATED : LORA_OK;
        if (st != want) fail_msg("prefix %zu: %s \"%s\"", n, lora_status_name(st), e.detail);
    }
    /* One byte more than the padded end is not padding any more. */
    tb_u8(&b, 0);
    EXPECT(&b, NULL, LORA_E_TRAILING_BYTES);
    lora_gguf_limits lim = {0};
    lim.flags = LORA_GGUF_ALLOW_TRAILING_BYTES;
    EXPECT(&b, &lim, LORA_OK);
    tb_free(&b);
}

/* Fail the Nth allocation for N = 1.. until the parse succeeds. */
static void test_parse_alloc_failures(void **state)
{
    (void)state;
    tb b = {0};
    build_sample(&b, 3);
    long n;
    for (n = 1;; n++) {
        talloc t;
        memset(&t, 0, sizeof t);
        t.fail_at = n;
        lora_allocator a = {ta_alloc, ta_free, &t};
        lora_gguf *g = NULL;
        lora_error e;
        lora_status st = lora_gguf_parse(b.p, b.len, NULL, &a, &g, &e);
        if (st == LORA_OK) {
            assert_true(t.calls < n); /* the failure point was never reached */
            check_sample(g, b.p);
            lora_gguf_free(g);
            assert_int_equal(t.live, 0);
            break;
        }
        assert_int_equal(st, LORA_E_OUT_OF_MEMORY);
        assert_null(g);
        assert_int_equal(t.live, 0);
    }
    assert_true(n > 3); /* the parse does allocate several tables */
    tb_free(&b);
}

/* ------------------------------------------------------------------------ */
/* header                                                                   */
/* ------------------------------------------------------------------------ */

static void test_magic_and_version(void **state)
{
    (void)state;
    tb b = {0};
    build_sample(&b, 3);
    tb t = {0};
    tb_bytes(&t, b.p, b.len);
    t.p[3] = 'G';
    EXPECT(&t, NULL, LORA_E_BAD_MAGIC);
    t.len = 2; /* "GG": could still become GGUF */
    EXPECT(&t, NULL, LORA_E_TRUNCATED);
    t.p[1] = 'X';
    EXPECT(&t, NULL, LORA_E_BAD_MAGIC);
    t.len = 0;
    EXPECT(&t, NULL, LORA_E_TRUNCATED);
    /* A .lora file is not a GGUF file. */
    t.len = 0;
    tb_bytes(&t, "\x89LORA\r\n\x1a", 8);
    tb_zeros(&t, 120);
    EXPECT(&t, NULL, LORA_E_BAD_MAGIC);
    tb_free(&t);

    static const uint32_t bad[] = {0, 1, 4, 0x7fffffffu, 0x03000000u, 0x00030000u, 0x02000000u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tb_bytes(&t, b.p, b.len);
        t.p[4] = (uint8_t)bad[i];
        t.p[5] = (uint8_t)(bad[i] >> 8);
        t.p[6] = (uint8_t)(bad[i] >> 16);
        t.p[7] = (uint8_t)(bad[i] >> 24);
        lora_error e;
        assert_int_equal(parse_capped(&t, NULL, &e), LORA_E_UNSUPPORTED_VERSION);
        assert_int_equal(e.offset, 4);
        if (bad[i] == 0x03000000u) assert_non_null(strstr(e.detail, "byte-swapped"));
        tb_free(&t);
    }
    tb_free(&b);
}

static void test_counts(void **state)
{
    (void)state;
    static const uint64_t huge[] = {UINT64_C(1) << 63, UINT64_MAX, UINT64_C(1) << 40, 65537};
    for (size_t i = 0; i < 4; i++) {
        tb b = {0};
        tb_header(&b, 3, 0, huge[i]);
        tb_kv_u32(&b, "a", 1);
        EXPECT(&b, NULL, LORA_E_LIMIT_EXCEEDED);
        tb_free(&b);
        tb_header(&b, 3, huge[i] == 65537 ? (UINT64_C(1) << 20) + 1 : huge[i], 0);
        tb_zeros(&b, 64);
        EXPECT(&b, NULL, LORA_E_LIMIT_EXCEEDED);
        tb_free(&b);
    }
    /* Within the limits but more than the file can hold: refused before the
     * tables are allocated (parse_capped fails anything above 1 MiB). */
    tb b = {0};
    tb_header(&b, 3, 1000, 0);
    tb_zeros(&b, 100);
    EXPECT(&b, NULL, LORA_E_TRUNCATED);
    tb_free(&b);
    tb_header(&b, 3, 0, 60000);
    tb_kv_u32(&b, "a", 1);
    EXPECT(&b, NULL, LORA_E_TRUNCATED);
    tb_free(&b);
    /* With the limits lifted, counts whose products overflow u64. */
    lora_gguf_limits lim = {0};
    lim.max_kv = UINT64_MAX;
    lim.max_tensors = UINT64_MAX;
    tb_header(&b, 3, UINT64_C(1) << 62, UINT64_MAX);
    EXPECT(&b, &lim, LORA_E_TRUNCATED);
    tb_free(&b);
    tb_header(&b, 3, UINT64_MAX / 33 + 1, 0);
    EXPECT(&b, &lim, LORA_E_TRUNCATED);
    tb_free(&b);
    /* Reserved limit fields are refused. */
    lim.reserved = 1;
    tb_header(&b, 3, 0, 0);
    lora_error e;
    assert_int_equal(lora_gguf_parse(b.p, b.len, &lim, NULL, &(lora_gguf *){NULL}, &e), LORA_E_INVALID_ARGUMENT);
    /* The smallest valid file: a header with no KV and no tensor. */
    EXPECT(&b, NULL, LORA_OK);
    tb_free(&b);
}

/* ------------------------------------------------------------------------ */
/* KVs                                                                      */
/* ------------------------------------------------------------------------ */

static void test_string_lengths(void **state)
{
    (void)state;
    lora_gguf_limits open = {0};
    open.max_string_length = UINT64_MAX;
    /* key length 2^64-1 */
    tb b = {0};
    tb_header(&b, 3, 0, 1);
    tb_u64(&b, UINT64_MAX);
    tb_bytes(&b, "abcdefgh", 8);
    EXPECT(&b, NULL, LORA_E_LIMIT_EXCEEDED);
    EXPECT(&b, &open, LORA_E_TRUNCATED);
    tb_free(&b);
    /* a value of 2^64-1 and one of 1 TiB in an 8-byte tail */
    static const uint64_t lens[] = {UINT64_MAX, UINT64_C(1) << 40};
    for (int i = 0; i < 2; i++) {
        tb_header(&b, 3, 0, 1);
        tb_key(&b, "general.name", 8);
        tb_u64(&b, lens[i]);
        tb_bytes(&b, "abcdefgh", 8);
        EXPECT(&b, NULL, LORA_E_LIMIT_EXCEEDED);
        EXPECT(&b, &open, LORA_E_TRUNCATED);
        tb_free(&b);
    }
    /* the limit applies to array elements too */
    lora_gguf_limits small = {0};
    small.max_string_length = 4;
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "tok", 9);
    tb_u32(&b, 8);
    tb_u64(&b, 2);
    tb_str(&b, "abcd");
    tb_str(&b, "abcde");
    EXPECT(&b, &small, LORA_E_LIMIT_EXCEEDED);
    EXPECT(&b, NULL, LORA_OK);
    tb_free(&b);
}

static void test_arrays(void **state)
{
    (void)state;
    tb b = {0};
    /* array of arrays */
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "nested", 9);
    tb_u32(&b, 9);
    tb_u64(&b, 1);
    tb_u32(&b, 4);
    tb_u64(&b, 1);
    tb_u32(&b, 7);
    EXPECT(&b, NULL, LORA_E_BAD_METADATA);
    tb_free(&b);
    /* element types out of range */
    static const uint32_t bad_elem[] = {13, 0xFFFFFFFFu, 0x80000000u};
    for (int i = 0; i < 3; i++) {
        tb_header(&b, 3, 0, 1);
        tb_key(&b, "arr", 9);
        tb_u32(&b, bad_elem[i]);
        tb_u64(&b, 0);
        EXPECT(&b, NULL, LORA_E_BAD_ENUM);
        tb_free(&b);
    }
    /* huge lengths: over the limit, then within a lifted limit but over the bytes */
    lora_gguf_limits open = {0};
    open.max_array_elements = UINT64_MAX;
    static const uint32_t elem[] = {0, 4, 10, 8};
    for (int i = 0; i < 4; i++) {
        static const uint64_t counts[] = {UINT64_C(1) << 62, UINT64_MAX, (UINT64_C(1) << 30) + 1};
        for (int j = 0; j < 3; j++) {
            tb_header(&b, 3, 0, 1);
            tb_key(&b, "arr", 9);
            tb_u32(&b, elem[i]);
            tb_u64(&b, counts[j]);
            tb_zeros(&b, 16);
            EXPECT(&b, NULL, LORA_E_LIMIT_EXCEEDED);
            EXPECT(&b, &open, LORA_E_TRUNCATED);
            tb_free(&b);
        }
        /* 1000 elements in 16 bytes: within every limit, short of bytes */
        tb_header(&b, 3, 0, 1);
        tb_key(&b, "arr", 9);
        tb_u32(&b, elem[i]);
        tb_u64(&b, 1000);
        tb_zeros(&b, 16);
        EXPECT(&b, NULL, LORA_E_TRUNCATED);
        tb_free(&b);
    }
    /* a BOOL array with a 2 in it */
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "flags", 9);
    tb_u32(&b, 7);
    tb_u64(&b, 3);
    tb_u8(&b, 0);
    tb_u8(&b, 1);
    tb_u8(&b, 2);
    EXPECT(&b, NULL, LORA_E_BAD_METADATA);
    tb_free(&b);
}

static void test_kv_types_and_keys(void **state)
{
    (void)state;
    tb b = {0};
    static const uint32_t bad_type[] = {13, 0xFFFFFFFFu, 100};
    for (int i = 0; i < 3; i++) {
        tb_header(&b, 3, 0, 1);
        tb_key(&b, "k", bad_type[i]);
        tb_u32(&b, 0);
        lora_error e;
        assert_int_equal(parse_capped(&b, NULL, &e), LORA_E_BAD_ENUM);
        assert_int_equal(e.offset, 24 + 8 + 1);
        tb_free(&b);
    }
    /* every scalar type parses, BOOL only as 0/1 */
    static const uint8_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    tb_header(&b, 3, 0, 11);
    for (uint32_t t = 0; t <= 12; t++) {
        if (t == 8 || t == 9) continue;
        char key[16];
        snprintf(key, sizeof key, "t%u", t);
        tb_key(&b, key, t);
        tb_zeros(&b, sizes[t]);
    }
    EXPECT(&b, NULL, LORA_OK);
    tb_free(&b);
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "b", 7);
    tb_u8(&b, 2);
    EXPECT(&b, NULL, LORA_E_BAD_METADATA);
    tb_free(&b);
    /* duplicate, empty, NUL-holding and non-UTF-8 keys */
    tb_header(&b, 3, 0, 3);
    tb_kv_u32(&b, "general.a", 1);
    tb_kv_u32(&b, "general.b", 1);
    tb_kv_str(&b, "general.a", "x");
    lora_error e;
    assert_int_equal(parse_capped(&b, NULL, &e), LORA_E_DUPLICATE_NAME);
    assert_non_null(strstr(e.detail, "'general.a'"));
    tb_free(&b);
    static const char *const bad_keys[] = {"", "a\0b", "\xff\xfe", "\xc0\x80"};
    static const size_t bad_len[] = {0, 3, 2, 2};
    for (int i = 0; i < 4; i++) {
        tb_header(&b, 3, 0, 1);
        tb_strn(&b, bad_keys[i], bad_len[i]);
        tb_u32(&b, 0);
        tb_u8(&b, 0);
        tb_u8(&b, 0); /* so that the empty key's KV is not too short to be one */
        EXPECT(&b, NULL, LORA_E_BAD_STRING);
        tb_free(&b);
    }
}

static void test_alignment(void **state)
{
    (void)state;
    static const uint32_t bad[] = {0, 3, 48, 0xFFFFFFFFu};
    for (int i = 0; i < 4; i++) {
        tb b = {0};
        tb_header(&b, 3, 0, 1);
        tb_kv_u32(&b, "general.alignment", bad[i]);
        EXPECT(&b, NULL, LORA_E_BAD_METADATA);
        tb_free(&b);
    }
    static const uint32_t big[] = {UINT32_C(1) << 31, UINT32_C(1) << 17};
    for (int i = 0; i < 2; i++) {
        tb b = {0};
        tb_header(&b, 3, 0, 1);
        tb_kv_u32(&b, "general.alignment", big[i]);
        EXPECT(&b, NULL, LORA_E_LIMIT_EXCEEDED);
        tb_free(&b);
    }
    /* stored as a string, a u64, an array of u32 */
    tb b = {0};
    tb_header(&b, 3, 0, 1);
    tb_kv_str(&b, "general.alignment", "32");
    EXPECT(&b, NULL, LORA_E_BAD_METADATA);
    tb_free(&b);
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "general.alignment", 10);
    tb_u64(&b, 32);
    EXPECT(&b, NULL, LORA_E_BAD_METADATA);
    tb_free(&b);
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "general.alignment", 9);
    tb_u32(&b, 4);
    tb_u64(&b, 1);
    tb_u32(&b, 32);
    EXPECT(&b, NULL, LORA_E_BAD_METADATA);
    tb_free(&b);
    /* valid: 1 (llama.cpp accepts it) and 64, with the data where they say */
    static const uint32_t good[] = {1, 64, 65536};
    for (int i = 0; i < 3; i++) {
        tb_header(&b, 3, 2, 1);
        tb_kv_u32(&b, "general.alignment", good[i]);
        const uint64_t ne[1] = {3};
        uint64_t second = good[i] >= 12 ? good[i] : 12;
        tb_info(&b, "a", 1, ne, 0, 0);
        tb_info(&b, "b", 1, ne, 0, second);
        size_t infos_end = b.len;
        tb_pad(&b, good[i]);
        size_t data = b.len;
        tb_zeros(&b, (size_t)second + 12);
        lora_gguf *g = NULL;
        lora_error e;
        assert_int_equal(lora_gguf_parse(b.p, b.len, NULL, NULL, &g, &e), LORA_OK);
        assert_int_equal(lora_gguf_alignment(g), good[i]);
        assert_int_equal(lora_gguf_data_offset(g), data);
        assert_true(data >= infos_end && data < infos_end + good[i] + (good[i] == 1));
        assert_ptr_equal(lora_gguf_tensor_at(g, 1)->data, b.p + data + second);
        lora_gguf_free(g);
        tb_free(&b);
    }
}

/* ------------------------------------------------------------------------ */
/* tensor infos                                                             */
/* ------------------------------------------------------------------------ */

static void test_tensor_shapes(void **state)
{
    (void)state;
    tb b = {0};
    const uint64_t ne4[5] = {1, 1, 1, 1, 1};
    static const uint32_t bad_dims[] = {0, 5, 0xFFFFFFFFu};
    for (int i = 0; i < 3; i++) {
        build_one_tensor(&b, bad_dims[i], ne4, 0, 0, 32);
        EXPECT(&b, NULL, LORA_E_BAD_SHAPE);
        tb_free(&b);
    }
    const uint64_t i64max = (uint64_t)INT64_MAX;
    struct {
        uint32_t n;
        uint64_t ne[4];
        uint32_t type;
    } bad[] = {
        {2, {i64max, 2}, 0},
        {3, {4194305, 4194305, UINT64_C(211106198978564)}, 0}, /* wraps to 4 in u64 */
        {2, {UINT64_C(1) << 32, UINT64_C(1) << 32}, 0},
        {1, {UINT64_C(1) << 63}, 0},                           /* negative as int64 */
        {1, {UINT64_MAX}, 1},
        {1, {UINT64_C(1) << 62}, 0},                           /* 2^64 bytes of F32 */
        {3, {0, i64max, i64max}, 0},                           /* a zero dim hides nothing */
        {2, {33, 1}, 8},                                       /* Q8_0 row of 33 */
        {1, {255}, 12},                                        /* Q4_K row of 255 */
        {2, {32, (UINT64_C(1) << 58) - 1}, 8},                 /* numel < 2^63, bytes > 2^63 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        build_one_tensor(&b, bad[i].n, bad[i].ne, bad[i].type, 0, 64);
        lora_error e;
        lora_status st = parse_capped(&b, NULL, &e);
        if (st != LORA_E_BAD_SHAPE) fail_msg("case %zu: %s \"%s\"", i, lora_status_name(st), e.detail);
        assert_non_null(strstr(e.detail, "tensor 'blk.0.attn_q.weight'"));
        assert_int_equal(e.offset, 24);
        tb_free(&b);
    }
    /* A zero dim is an empty tensor: no bytes, no data pointer. */
    const uint64_t empty[2] = {0, 5};
    build_one_tensor(&b, 2, empty, 0, 0, 0);
    lora_gguf *g = NULL;
    lora_error e;
    assert_int_equal(lora_gguf_parse(b.p, b.len, NULL, NULL, &g, &e), LORA_OK);
    assert_int_equal(lora_gguf_tensor_at(g, 0)->nbytes, 0);
    assert_null(lora_gguf_tensor_at(g, 0)->data);
    lora_gguf_free(g);
    tb_free(&b);
}

static void test_tensor_types(void **state)
{
    (void)state;
    const uint64_t ne[2] = {256, 2};
    static const uint32_t unsupported[] = {4, 5, 15, 16, 24, 28, 29, 31, 33, 34, 36, 39, 40, 1000, 0xFFFFFFFFu};
    tb b = {0};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        build_one_tensor(&b, 2, ne, unsupported[i], 0, 1024);
        EXPECT(&b, NULL, LORA_E_UNSUPPORTED_DTYPE);
        tb_free(&b);
    }
    /* every supported type, its byte size computed here from ggml-common.h */
    struct {
        uint32_t type;
        uint64_t bytes;
    } ok[] = {
        {0, 2048}, {1, 1024}, {30, 1024}, {2, 16 * 18}, {3, 16 * 20}, {6, 16 * 22}, {7, 16 * 24},
        {8, 16 * 34}, {9, 16 * 36}, {10, 2 * 84}, {11, 2 * 110}, {12, 2 * 144}, {13, 2 * 176}, {14, 2 * 210},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        build_one_tensor(&b, 2, ne, ok[i].type, 0, (size_t)ok[i].bytes);
        tb_pad(&b, 32);
        lora_gguf *g = NULL;
        lora_error e;
        assert_int_equal(lora_gguf_parse(b.p, b.len, NULL, NULL, &g, &e), LORA_OK);
        assert_int_equal(lora_gguf_tensor_at(g, 0)->nbytes, ok[i].bytes);
        lora_gguf_free(g);
        tb_free(&b);
    }
    assert_string_equal(lora_ggml_type_name(31), "Q4_0_4_4 (removed)");
    assert_null(lora_ggml_type_name(40));
}

static void test_tensor_names(void **state)
{
    (void)state;
    tb b = {0};
    const uint64_t ne[1] = {8};
    tb_header(&b, 3, 2, 0);
    tb_info(&b, "blk.0.attn_q.weight", 1, ne, 0, 0);
    tb_info(&b, "blk.0.attn_q.weight", 1, ne, 0, 32);
    tb_pad(&b, 32);
    tb_zeros(&b, 64);
    lora_error e;
    assert_int_equal(parse_capped(&b, NULL, &e), LORA_E_DUPLICATE_NAME);
    assert_non_null(strstr(e.detail, "tensor 'blk.0.attn_q.weight' appears twice"));
    tb_free(&b);
    /* 256 bytes are accepted (looser than llama.cpp's 63), 257 are not */
    char name[258];
    memset(name, 'x', sizeof name);
    for (size_t len = 256; len <= 257; len++) {
        name[len] = '\0';
        tb_header(&b, 3, 1, 0);
        tb_info(&b, name, 1, ne, 0, 0);
        tb_pad(&b, 32);
        tb_zeros(&b, 32);
        EXPECT(&b, NULL, len == 256 ? LORA_OK : LORA_E_LIMIT_EXCEEDED);
        tb_free(&b);
        name[len] = 'x';
    }
    static const char *const bad[] = {"", "a\0b", "\x80"};
    static const size_t bad_len[] = {0, 3, 1};
    for (int i = 0; i < 3; i++) {
        tb_header(&b, 3, 1, 0);
        tb_strn(&b, bad[i], bad_len[i]);
        tb_u32(&b, 1);
        tb_u64(&b, 8);
        tb_u32(&b, 0);
        tb_u64(&b, 0);
        tb_pad(&b, 32);
        tb_zeros(&b, 32);
        EXPECT(&b, NULL, LORA_E_BAD_STRING);
        tb_free(&b);
    }
}

/* ------------------------------------------------------------------------ */
/* layout                                                                   */
/* ------------------------------------------------------------------------ */

/* Two F32 tensors of 8 elements (32 bytes each) with chosen offsets. */
static void build_two(tb *b, uint64_t off0, uint64_t off1, size_t data)
{
    const uint64_t ne[1] = {8};
    tb_header(b, 3, 2, 0);
    tb_info(b, "first", 1, ne, 0, off0);
    tb_info(b, "second", 1, ne, 0, off1);
    tb_pad(b, 32);
    tb_zeros(b, data);
}

static void test_layout(void **state)
{
    (void)state;
    tb b = {0};
    build_two(&b, 0, 32, 64);
    EXPECT(&b, NULL, LORA_OK);
    tb_free(&b);
    struct {
        uint64_t off0, off1;
        size_t data;
        lora_status want;
    } cases[] = {
        {0, 16, 64, LORA_E_MISALIGNED},
        {8, 32, 64, LORA_E_MISALIGNED},
        {0, 0, 64, LORA_E_OVERLAP},          /* both at 0 */
        {32, 0, 64, LORA_E_OVERLAP},         /* out of order */
        {0, 64, 96, LORA_E_OVERLAP},         /* a gap inside the file */
        {0, UINT64_C(1) << 20, 64, LORA_E_BAD_OFFSET},
        {0, UINT64_MAX - 31, 64, LORA_E_BAD_OFFSET}, /* offset + size overflows */
        {0, 32, 63, LORA_E_TRUNCATED},       /* in place, one byte short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        build_two(&b, cases[i].off0, cases[i].off1, cases[i].data);
        lora_error e;
        lora_status st = parse_capped(&b, NULL, &e);
        if (st != cases[i].want)
            fail_msg("case %zu: %s \"%s\"", i, lora_status_name(st), e.detail);
        assert_non_null(strstr(e.detail, "tensor '"));
        tb_free(&b);
    }
    /* a size just under INT64_MAX: its padding cannot wrap, it is simply not there */
    const uint64_t big[1] = {(UINT64_C(1) << 61) - 1};
    build_one_tensor(&b, 1, big, 0, 0, 64);
    EXPECT(&b, NULL, LORA_E_TRUNCATED);
    tb_free(&b);
    /* trailing bytes after the padded end */
    build_two(&b, 0, 32, 64 + 32);
    EXPECT(&b, NULL, LORA_E_TRAILING_BYTES);
    tb_free(&b);
    /* no tensor bytes: the file may end before the pad, not after it */
    tb_header(&b, 3, 0, 1);
    tb_kv_str(&b, "general.architecture", "llama");
    EXPECT(&b, NULL, LORA_OK);
    tb_pad(&b, 32);
    EXPECT(&b, NULL, LORA_OK);
    tb_u8(&b, 0);
    EXPECT(&b, NULL, LORA_E_TRAILING_BYTES);
    tb_free(&b);
    /* empty tensors take no room: the next one shares their offset */
    const uint64_t z[2] = {0, 4}, ne[1] = {8};
    tb_header(&b, 3, 3, 0);
    tb_info(&b, "a", 1, ne, 0, 0);
    tb_info(&b, "empty", 2, z, 0, 32);
    tb_info(&b, "c", 1, ne, 0, 32);
    tb_pad(&b, 32);
    tb_zeros(&b, 64);
    EXPECT(&b, NULL, LORA_OK);
    tb_free(&b);
}

/* ------------------------------------------------------------------------ */
/* typed accessors                                                          */
/* ------------------------------------------------------------------------ */

static void test_accessor_types(void **state)
{
    (void)state;
    tb b = {0};
    build_sample(&b, 3);
    lora_gguf *g = NULL;
    lora_error e;
    assert_int_equal(lora_gguf_parse(b.p, b.len, NULL, NULL, &g, &e), LORA_OK);
    uint32_t u;
    float f;
    int32_t i32;
    lora_gguf_str s;
    lora_gguf_array a;
    assert_int_equal(lora_gguf_get_u32(g, "general.architecture", &u, &e), LORA_E_BAD_METADATA);
    assert_non_null(strstr(e.detail, "has type STRING, expected UINT32"));
    assert_int_equal(lora_gguf_get_str(g, "llama.block_count", &s, &e), LORA_E_BAD_METADATA);
    assert_int_equal(lora_gguf_get_i32(g, "llama.block_count", &i32, &e), LORA_E_BAD_METADATA);
    assert_int_equal(lora_gguf_get_f32(g, "llama.block_count", &f, &e), LORA_E_BAD_METADATA);
    assert_int_equal(lora_gguf_get_u32(g, "tokenizer.ggml.tokens", &u, &e), LORA_E_BAD_METADATA);
    assert_int_equal(lora_gguf_get_u32(g, "no.such.key", &u, &e), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_get_array(g, "no.such.key", LORA_GGUF_TYPE_UINT32, &a, &e), LORA_E_NOT_FOUND);
    assert_int_equal(lora_gguf_get_array(g, "llama.block_count", LORA_GGUF_TYPE_UINT32, &a, &e),
                     LORA_E_BAD_METADATA);
    /* the INT8-read-as-float confusion: element type must match */
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.scores", LORA_GGUF_TYPE_INT32, &a, &e),
                     LORA_E_BAD_METADATA);
    assert_non_null(strstr(e.detail, "array of FLOAT32, expected INT32"));
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.scores", LORA_GGUF_TYPE_FLOAT32, &a, &e), LORA_OK);
    assert_int_equal(lora_gguf_array_i32(&a, 0, &i32), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_array_str(&a, 0, &s), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_array_f32(&a, 3, &f), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_array_f32(&a, 2, &f), LORA_OK);
    a.elem_type = LORA_GGUF_TYPE_INT32; /* a forged view is still checked against the KV */
    assert_int_equal(lora_gguf_array_i32(&a, 0, &i32), LORA_E_INVALID_ARGUMENT);
    lora_gguf_free(g);
    tb_free(&b);
    /* a UINT8 is not read as a UINT32 */
    tb_header(&b, 3, 0, 1);
    tb_key(&b, "small", 0);
    tb_u8(&b, 7);
    assert_int_equal(lora_gguf_parse(b.p, b.len, NULL, NULL, &g, &e), LORA_OK);
    assert_int_equal(lora_gguf_get_u32(g, "small", &u, &e), LORA_E_BAD_METADATA);
    lora_gguf_free(g);
    tb_free(&b);
}

/* ------------------------------------------------------------------------ */
/* writer                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    tb out;
    long calls;
    long fail_at; /* sink call that fails with NO_SPACE; 0 = never */
} msink;

static lora_status mem_sink(void *ctx, const void *buf, size_t n, lora_error *err)
{
    msink *m = ctx;
    m->calls++;
    if (m->fail_at && m->calls == m->fail_at) {
        if (err) {
            err->status = LORA_E_NO_SPACE;
            err->offset = LORA_NO_OFFSET;
            snprintf(err->detail, sizeof err->detail, "test: disk full");
        }
        return LORA_E_NO_SPACE;
    }
    tb_bytes(&m->out, buf, n);
    return LORA_OK;
}

/* The sample through the writer's typed calls. */
static lora_status writer_sample(lora_gguf_writer *w)
{
    lora_status st;
#define TRY(x) do { if ((st = (x)) != LORA_OK) return st; } while (0)
    TRY(lora_gguf_writer_add_str(w, "general.architecture", "llama", 5));
    TRY(lora_gguf_writer_add_str(w, "general.name", "tiny", 4));
    TRY(lora_gguf_writer_add_u32(w, "llama.block_count", 1));
    TRY(lora_gguf_writer_add_f32(w, "adapter.lora.alpha", 16.0f));
    TRY(lora_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1));
    TRY(lora_gguf_writer_add_u64(w, "general.size", UINT64_C(123456789012)));
    TRY(lora_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", sample_tokens, NULL, 3));
    TRY(lora_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", sample_scores, 3));
    TRY(lora_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", sample_ttype, 3));
    TRY(lora_gguf_writer_add_arr_u32(w, "adapter.alora.invocation_tokens", sample_inv, 2));
    for (int i = 0; i < 4; i++)
        TRY(lora_gguf_writer_add_tensor(w, sample_t[i].name, sample_t[i].type, sample_t[i].n_dims, sample_t[i].ne));
#undef TRY
    return LORA_OK;
}

/* Stream the sample's tensor bytes in chunks of `chunk`. */
static lora_status writer_stream(lora_gguf_writer *w, msink *m, size_t chunk, lora_error *e)
{
    lora_status st = lora_gguf_writer_begin(w, mem_sink, m, e);
    for (int i = 0; i < 4 && st == LORA_OK; i++) {
        uint8_t buf[128];
        size_t n = (size_t)sample_t[i].nbytes;
        sample_data(buf, n, 100 + (uint64_t)i);
        for (size_t at = 0; at < n && st == LORA_OK; at += chunk)
            st = lora_gguf_writer_write_data(w, buf + at, n - at < chunk ? n - at : chunk, e);
    }
    return st == LORA_OK ? lora_gguf_writer_finish(w, e) : st;
}

/* The writer's bytes equal the builder's, for several chunkings, and parse
 * back to the same KVs, infos and data. */
static void test_writer_matches_builder(void **state)
{
    (void)state;
    tb want = {0};
    build_sample(&want, 3);
    static const size_t chunks[] = {1, 7, 32, 4096};
    for (int c = 0; c < 4; c++) {
        lora_gguf_writer *w = NULL;
        assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
        assert_int_equal(writer_sample(w), LORA_OK);
        uint64_t data_off, size;
        assert_int_equal(lora_gguf_writer_sizes(w, &data_off, &size), LORA_OK);
        assert_int_equal(size, want.len);
        msink m = {{0}, 0, 0};
        lora_error e;
        assert_int_equal(writer_stream(w, &m, chunks[c], &e), LORA_OK);
        assert_int_equal(m.out.len, want.len);
        assert_memory_equal(m.out.p, want.p, want.len);
        lora_gguf *g = NULL;
        assert_int_equal(lora_gguf_parse(m.out.p, m.out.len, NULL, NULL, &g, &e), LORA_OK);
        assert_int_equal(lora_gguf_data_offset(g), data_off);
        check_sample(g, m.out.p);
        lora_gguf_free(g);
        lora_gguf_writer_free(w);
        tb_free(&m.out);
    }
    tb_free(&want);
}

static void test_writer_misuse(void **state)
{
    (void)state;
    lora_gguf_writer *w = NULL;
    assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
    const uint64_t ne[2] = {32, 2};
    assert_int_equal(lora_gguf_writer_add_u32(w, "a", 1), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_str(w, "a", "x", 1), LORA_E_DUPLICATE_NAME);
    assert_int_equal(lora_gguf_writer_add_u32(w, "", 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_add_u32(w, "\xff", 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_add_u32(w, "general.alignment", 3), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_add_u32(w, "general.alignment", 1u << 17), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_add_i32(w, "general.alignment", 32), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_add_str(w, "general.alignment", "32", 2), LORA_E_INVALID_ARGUMENT);
    char name[65];
    memset(name, 'n', 64);
    name[64] = '\0';
    assert_int_equal(lora_gguf_writer_add_tensor(w, name, 0, 2, ne), LORA_E_INVALID_ARGUMENT);
    name[63] = '\0';
    assert_int_equal(lora_gguf_writer_add_tensor(w, name, 0, 2, ne), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_tensor(w, name, 0, 2, ne), LORA_E_DUPLICATE_NAME);
    assert_int_equal(lora_gguf_writer_add_tensor(w, "q", 31, 2, ne), LORA_E_UNSUPPORTED_DTYPE);
    const uint64_t odd[2] = {33, 2};
    assert_int_equal(lora_gguf_writer_add_tensor(w, "q", 8, 2, odd), LORA_E_BAD_SHAPE);
    assert_int_equal(lora_gguf_writer_add_tensor(w, "q", 8, 5, ne), LORA_E_BAD_SHAPE);
    assert_int_equal(lora_gguf_writer_add_tensor(w, "q", 8, 2, ne), LORA_OK); /* 68 bytes */
    lora_error e;
    assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_E_INVALID_ARGUMENT);
    msink m = {{0}, 0, 0};
    assert_int_equal(lora_gguf_writer_begin(w, mem_sink, &m, &e), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_u32(w, "late", 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_add_tensor(w, "late", 0, 2, ne), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_begin(w, mem_sink, &m, &e), LORA_E_INVALID_ARGUMENT);
    uint8_t buf[512] = {0};
    assert_int_equal(lora_gguf_writer_write_data(w, buf, 257, &e), LORA_E_INVALID_ARGUMENT); /* 256 in the first */
    assert_int_equal(lora_gguf_writer_write_data(w, buf, 200, &e), LORA_OK);
    assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_E_INVALID_ARGUMENT);
    assert_non_null(strstr(e.detail, "got 200 of its 256 bytes"));
    assert_int_equal(lora_gguf_writer_write_data(w, buf, 56, &e), LORA_OK);
    assert_int_equal(lora_gguf_writer_write_data(w, buf, 68, &e), LORA_OK);
    assert_int_equal(lora_gguf_writer_write_data(w, buf, 1, &e), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_OK);
    lora_gguf *g = NULL;
    assert_int_equal(lora_gguf_parse(m.out.p, m.out.len, NULL, NULL, &g, &e), LORA_OK);
    assert_int_equal(lora_gguf_tensor_at(g, 1)->offset, 256);
    assert_int_equal(m.out.len, lora_gguf_data_offset(g) + 256 + 96);
    lora_gguf_free(g);
    lora_gguf_writer_free(w);
    tb_free(&m.out);
    lora_gguf_writer_free(NULL);
}

/* A custom alignment and empty tensors, written and read back. */
static void test_writer_alignment(void **state)
{
    (void)state;
    lora_gguf_writer *w = NULL;
    assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
    const uint64_t ne[1] = {3}, z[2] = {4, 0};
    assert_int_equal(lora_gguf_writer_add_tensor(w, "a", 0, 1, ne), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_tensor(w, "empty", 1, 2, z), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_tensor(w, "b", 0, 1, ne), LORA_OK);
    /* set after the tensors: offsets are fixed only at begin */
    assert_int_equal(lora_gguf_writer_add_u32(w, "general.alignment", 64), LORA_OK);
    msink m = {{0}, 0, 0};
    lora_error e;
    assert_int_equal(lora_gguf_writer_begin(w, mem_sink, &m, &e), LORA_OK);
    const uint8_t d[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    assert_int_equal(lora_gguf_writer_write_data(w, d, 12, &e), LORA_OK);
    assert_int_equal(lora_gguf_writer_write_data(w, d, 12, &e), LORA_OK); /* skips "empty" */
    assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_OK);
    lora_gguf *g = NULL;
    assert_int_equal(lora_gguf_parse(m.out.p, m.out.len, NULL, NULL, &g, &e), LORA_OK);
    assert_int_equal(lora_gguf_alignment(g), 64);
    assert_int_equal(lora_gguf_data_offset(g) % 64, 0);
    assert_int_equal(lora_gguf_tensor_at(g, 1)->offset, 64);
    assert_int_equal(lora_gguf_tensor_at(g, 2)->offset, 64);
    assert_memory_equal(lora_gguf_tensor_at(g, 2)->data, d, 12);
    assert_int_equal(m.out.len, lora_gguf_data_offset(g) + 128);
    lora_gguf_free(g);
    lora_gguf_writer_free(w);
    tb_free(&m.out);
    /* no tensors at all: header, KVs, then the pad (as GGUFWriter) */
    assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(lora_gguf_writer_add_str(w, "general.architecture", "llama", 5), LORA_OK);
    m.out.len = 0;
    assert_int_equal(lora_gguf_writer_begin(w, mem_sink, &m, &e), LORA_OK);
    assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_OK);
    tb want = {0};
    tb_header(&want, 3, 0, 1);
    tb_kv_str(&want, "general.architecture", "llama");
    tb_pad(&want, 32);
    assert_int_equal(m.out.len, want.len);
    assert_memory_equal(m.out.p, want.p, want.len);
    lora_gguf_writer_free(w);
    tb_free(&m.out);
    tb_free(&want);
}

/* Fail the Nth allocation, then the Nth sink call, until the write succeeds. */
static void test_writer_faults(void **state)
{
    (void)state;
    tb want = {0};
    build_sample(&want, 3);
    long n;
    for (n = 1;; n++) {
        talloc t;
        memset(&t, 0, sizeof t);
        t.fail_at = n;
        lora_allocator a = {ta_alloc, ta_free, &t};
        lora_gguf_writer *w = NULL;
        lora_status st = lora_gguf_writer_create(&a, &w);
        if (st == LORA_OK) st = writer_sample(w);
        msink m = {{0}, 0, 0};
        lora_error e;
        if (st == LORA_OK) st = writer_stream(w, &m, 16, &e);
        lora_gguf_writer_free(w);
        assert_int_equal(t.live, 0);
        if (st == LORA_OK) {
            assert_true(t.calls < n);
            assert_int_equal(m.out.len, want.len);
            assert_memory_equal(m.out.p, want.p, want.len);
            tb_free(&m.out);
            break;
        }
        assert_int_equal(st, LORA_E_OUT_OF_MEMORY);
        tb_free(&m.out);
    }
    assert_true(n > 3);
    for (n = 1;; n++) {
        lora_gguf_writer *w = NULL;
        assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
        assert_int_equal(writer_sample(w), LORA_OK);
        msink m = {{0}, 0, n};
        lora_error e;
        lora_status st = writer_stream(w, &m, 16, &e);
        if (st == LORA_OK) {
            assert_true(m.calls < n);
            lora_gguf_writer_free(w);
            tb_free(&m.out);
            break;
        }
        assert_int_equal(st, LORA_E_NO_SPACE);
        /* the failed writer refuses to go on */
        uint8_t b = 0;
        assert_int_equal(lora_gguf_writer_write_data(w, &b, 1, &e), LORA_E_INVALID_ARGUMENT);
        assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_E_INVALID_ARGUMENT);
        lora_gguf_writer_free(w);
        tb_free(&m.out);
    }
    assert_true(n > 5);
    tb_free(&want);
}

static void test_writer_fd_sink(void **state)
{
    (void)state;
    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    lora_gguf_writer *w = NULL;
    assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(writer_sample(w), LORA_OK);
    lora_error e;
    assert_int_equal(lora_gguf_writer_begin(w, lora_gguf_sink_fd, &fd, &e), LORA_OK);
    for (int i = 0; i < 4; i++) {
        uint8_t buf[128];
        sample_data(buf, (size_t)sample_t[i].nbytes, 100 + (uint64_t)i);
        assert_int_equal(lora_gguf_writer_write_data(w, buf, (size_t)sample_t[i].nbytes, &e), LORA_OK);
    }
    assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_OK);
    lora_gguf_writer_free(w);
    tb want = {0};
    build_sample(&want, 3);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal((size_t)sb.st_size, want.len);
    uint8_t *got = malloc(want.len);
    assert_int_equal(pread(fd, got, want.len, 0), (ssize_t)want.len);
    assert_memory_equal(got, want.p, want.len);
    free(got);
    close(fd);
    unlink(path);
    tb_free(&want);
    /* /dev/full reports ENOSPC */
    int full = open("/dev/full", O_WRONLY);
    if (full >= 0) {
        assert_int_equal(lora_gguf_sink_fd(&full, "x", 1, &e), LORA_E_NO_SPACE);
        close(full);
    }
    int bad = -1;
    assert_int_equal(lora_gguf_sink_fd(&bad, "x", 1, &e), LORA_E_IO);
}

/* ------------------------------------------------------------------------ */
/* real files                                                               */
/* ------------------------------------------------------------------------ */

static uint8_t *read_fixture(const char *rel, size_t *size)
{
    const char *root = getenv("LORA_REAL_FIXTURES");
    if (!root) root = "/work/shared/fixtures/real";
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    uint8_t *p = ts_read_file(path, size);
    if (!p && getenv("CI")) fail_msg("fixture %s missing (CI is set)", path);
    return p;
}

#define LLAMA_GGUF "gguf-llama2-tiny-random/llama-2-tiny-random.gguf"
#define VOCAB_GGUF "gguf-vocab-llama-spm/ggml-vocab-llama-spm.gguf"

static void expect_tensor(const lora_gguf *g, uint64_t i, const char *name, uint32_t type, uint32_t n_dims,
                          uint64_t ne0, uint64_t ne1, uint64_t offset)
{
    const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, n_dims);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->offset, offset);
}

/* Facts read with an independent struct-based script. */
static void test_real_llama(void **state)
{
    (void)state;
    size_t size;
    uint8_t *d = read_fixture(LLAMA_GGUF, &size);
    if (!d) skip();
    assert_int_equal(size, 1750560);
    lora_gguf *g = NULL;
    lora_error e;
    assert_int_equal(lora_gguf_parse(d, size, NULL, NULL, &g, &e), LORA_OK);
    assert_int_equal(lora_gguf_version(g), 3);
    assert_int_equal(lora_gguf_kv_count(g), 18);
    assert_int_equal(lora_gguf_tensor_count(g), 12);
    assert_int_equal(lora_gguf_alignment(g), 32);
    assert_int_equal(lora_gguf_data_offset(g), 724416);
    lora_gguf_str s;
    assert_int_equal(lora_gguf_get_str(g, "general.architecture", &s, &e), LORA_OK);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(lora_gguf_get_str(g, "general.name", &s, &e), LORA_OK);
    assert_memory_equal(s.ptr, "LLaMA v2", 8);
    uint32_t u;
    assert_int_equal(lora_gguf_get_u32(g, "llama.embedding_length", &u, &e), LORA_OK);
    assert_int_equal(u, 8);
    assert_int_equal(lora_gguf_get_u32(g, "llama.context_length", &u, &e), LORA_OK);
    assert_int_equal(u, 4096);
    assert_int_equal(lora_gguf_get_u32(g, "general.file_type", &u, &e), LORA_OK);
    assert_int_equal(u, 1);
    float f;
    assert_int_equal(lora_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, &e), LORA_OK);
    assert_true(f == 1e-5f);
    lora_gguf_array a;
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.tokens", LORA_GGUF_TYPE_STRING, &a, &e), LORA_OK);
    assert_int_equal(a.count, 32000);
    assert_int_equal(lora_gguf_array_str(&a, 1, &s), LORA_OK);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "<s>", 3);
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.token_type", LORA_GGUF_TYPE_INT32, &a, &e), LORA_OK);
    int32_t tt;
    assert_int_equal(lora_gguf_array_i32(&a, 0, &tt), LORA_OK);
    assert_int_equal(tt, 2);
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.scores", LORA_GGUF_TYPE_FLOAT32, &a, &e), LORA_OK);
    assert_int_equal(a.count, 32000);
    expect_tensor(g, 0, "token_embd.weight", LORA_GGML_F16, 2, 8, 32000, 0);
    expect_tensor(g, 1, "blk.0.attn_q.weight", LORA_GGML_F16, 2, 8, 8, 512000);
    expect_tensor(g, 7, "blk.0.ffn_down.weight", LORA_GGML_F16, 2, 32, 8, 513536);
    expect_tensor(g, 8, "blk.0.attn_norm.weight", LORA_GGML_F32, 1, 8, 1, 514048);
    expect_tensor(g, 11, "output.weight", LORA_GGML_F16, 2, 8, 32000, 514144);
    assert_int_equal(lora_gguf_tensor_at(g, 11)->nbytes, 512000);
    assert_ptr_equal(lora_gguf_find_tensor(g, "output_norm.weight"), lora_gguf_tensor_at(g, 10));
    lora_gguf_free(g);

    /* A sample of truncations (all 1.7 M would take minutes): each TRUNCATED. */
    for (size_t n = 0; n < size; n += n < 4096 ? 1 : 4093) {
        tb pre = {d, n, n};
        lora_status st = parse_capped(&pre, NULL, &e);
        if (st != LORA_E_TRUNCATED) fail_msg("prefix %zu: %s \"%s\"", n, lora_status_name(st), e.detail);
    }
    free(d);
}

static void test_real_vocab(void **state)
{
    (void)state;
    size_t size;
    uint8_t *d = read_fixture(VOCAB_GGUF, &size);
    if (!d) skip();
    assert_int_equal(size, 723869);
    lora_gguf *g = NULL;
    lora_error e;
    /* Ends at 723869, before the pad to 723872: accepted. */
    assert_int_equal(lora_gguf_parse(d, size, NULL, NULL, &g, &e), LORA_OK);
    assert_int_equal(lora_gguf_version(g), 3);
    assert_int_equal(lora_gguf_kv_count(g), 22);
    assert_int_equal(lora_gguf_tensor_count(g), 0);
    assert_int_equal(lora_gguf_data_offset(g), 723872);
    assert_int_equal(lora_gguf_alignment(g), 32);
    lora_gguf_str s;
    assert_int_equal(lora_gguf_get_str(g, "general.architecture", &s, &e), LORA_OK);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(lora_gguf_get_str(g, "tokenizer.ggml.pre", &s, &e), LORA_OK);
    assert_int_equal(s.len, 7);
    assert_memory_equal(s.ptr, "default", 7);
    uint32_t u;
    assert_int_equal(lora_gguf_get_u32(g, "llama.vocab_size", &u, &e), LORA_OK);
    assert_int_equal(u, 32000);
    int b;
    assert_int_equal(lora_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &e), LORA_OK);
    assert_int_equal(b, 1);
    assert_int_equal(lora_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &e), LORA_OK);
    assert_int_equal(b, 0);
    lora_gguf_array a;
    assert_int_equal(lora_gguf_get_array(g, "tokenizer.ggml.tokens", LORA_GGUF_TYPE_STRING, &a, &e), LORA_OK);
    assert_int_equal(a.count, 32000);
    assert_int_equal(lora_gguf_array_str(&a, 2, &s), LORA_OK);
    assert_memory_equal(s.ptr, "</s>", 4);
    lora_gguf_free(g);
    for (size_t n = 0; n < size; n += n < 4096 ? 1 : 1021) {
        tb pre = {d, n, n};
        lora_status st = parse_capped(&pre, NULL, &e);
        if (st != LORA_E_TRUNCATED) fail_msg("prefix %zu: %s \"%s\"", n, lora_status_name(st), e.detail);
    }
    /* The pad gguf-py would have written is accepted too, one byte more is not. */
    uint8_t *padded = calloc(1, size + 4);
    memcpy(padded, d, size);
    tb full = {padded, size + 3, size + 4};
    EXPECT(&full, NULL, LORA_OK);
    full.len = size + 4;
    EXPECT(&full, NULL, LORA_E_TRAILING_BYTES);
    free(padded);
    free(d);
}

/* Rewrite the llama file through the writer: once with every KV rebuilt
 * from its typed value, once with every KV copied raw. gguf-py wrote it with
 * the default alignment, so both must reproduce it byte for byte. */
static lora_status rebuild_kv(lora_gguf_writer *w, const lora_gguf *g, const lora_gguf_kv *kv)
{
    lora_error e;
    lora_gguf_str s;
    lora_gguf_array a;
    uint32_t u;
    float f;
    if (kv->type == LORA_GGUF_TYPE_STRING) {
        assert_int_equal(lora_gguf_kv_str(g, kv, &s, &e), LORA_OK);
        return lora_gguf_writer_add_str(w, kv->key, s.ptr, (size_t)s.len);
    }
    if (kv->type == LORA_GGUF_TYPE_UINT32) {
        assert_int_equal(lora_gguf_kv_u32(g, kv, &u, &e), LORA_OK);
        return lora_gguf_writer_add_u32(w, kv->key, u);
    }
    if (kv->type == LORA_GGUF_TYPE_FLOAT32) {
        assert_int_equal(lora_gguf_kv_f32(g, kv, &f, &e), LORA_OK);
        return lora_gguf_writer_add_f32(w, kv->key, f);
    }
    assert_int_equal(kv->type, LORA_GGUF_TYPE_ARRAY);
    assert_int_equal(lora_gguf_kv_array(g, kv, kv->elem_type, &a, &e), LORA_OK);
    size_t n = (size_t)a.count;
    lora_status st;
    if (kv->elem_type == LORA_GGUF_TYPE_STRING) {
        const char **p = calloc(n, sizeof *p);
        size_t *lens = calloc(n, sizeof *lens);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(lora_gguf_array_str(&a, i, &s), LORA_OK);
            p[i] = s.ptr;
            lens[i] = (size_t)s.len;
        }
        st = lora_gguf_writer_add_arr_str(w, kv->key, p, lens, n);
        free(p);
        free(lens);
    } else if (kv->elem_type == LORA_GGUF_TYPE_FLOAT32) {
        float *v = calloc(n, sizeof *v);
        for (size_t i = 0; i < n; i++) assert_int_equal(lora_gguf_array_f32(&a, i, &v[i]), LORA_OK);
        st = lora_gguf_writer_add_arr_f32(w, kv->key, v, n);
        free(v);
    } else {
        assert_int_equal(kv->elem_type, LORA_GGUF_TYPE_INT32);
        int32_t *v = calloc(n, sizeof *v);
        for (size_t i = 0; i < n; i++) assert_int_equal(lora_gguf_array_i32(&a, i, &v[i]), LORA_OK);
        st = lora_gguf_writer_add_arr_i32(w, kv->key, v, n);
        free(v);
    }
    return st;
}

static void test_real_llama_rewrite(void **state)
{
    (void)state;
    size_t size;
    uint8_t *d = read_fixture(LLAMA_GGUF, &size);
    if (!d) skip();
    lora_gguf *g = NULL;
    lora_error e;
    assert_int_equal(lora_gguf_parse(d, size, NULL, NULL, &g, &e), LORA_OK);
    for (int raw = 0; raw <= 1; raw++) {
        lora_gguf_writer *w = NULL;
        assert_int_equal(lora_gguf_writer_create(NULL, &w), LORA_OK);
        for (uint64_t i = 0; i < lora_gguf_kv_count(g); i++) {
            const lora_gguf_kv *kv = lora_gguf_kv_at(g, i);
            lora_status st = raw ? lora_gguf_writer_copy_kv(w, g, kv) : rebuild_kv(w, g, kv);
            assert_int_equal(st, LORA_OK);
        }
        for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
            const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
            assert_int_equal(lora_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne), LORA_OK);
        }
        msink m = {{0}, 0, 0};
        assert_int_equal(lora_gguf_writer_begin(w, mem_sink, &m, &e), LORA_OK);
        for (uint64_t i = 0; i < lora_gguf_tensor_count(g); i++) {
            const lora_gguf_tensor *t = lora_gguf_tensor_at(g, i);
            assert_int_equal(lora_gguf_writer_write_data(w, t->data, (size_t)t->nbytes, &e), LORA_OK);
        }
        assert_int_equal(lora_gguf_writer_finish(w, &e), LORA_OK);
        assert_int_equal(m.out.len, size);
        assert_memory_equal(m.out.p, d, size);
        lora_gguf_writer_free(w);
        tb_free(&m.out);
    }
    lora_gguf_free(g);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_parses),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_truncation_unpadded_tail),
        cmocka_unit_test(test_parse_alloc_failures),
        cmocka_unit_test(test_magic_and_version),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_string_lengths),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_kv_types_and_keys),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_tensor_shapes),
        cmocka_unit_test(test_tensor_types),
        cmocka_unit_test(test_tensor_names),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_accessor_types),
        cmocka_unit_test(test_writer_matches_builder),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_writer_alignment),
        cmocka_unit_test(test_writer_faults),
        cmocka_unit_test(test_writer_fd_sink),
        cmocka_unit_test(test_real_llama),
        cmocka_unit_test(test_real_vocab),
        cmocka_unit_test(test_real_llama_rewrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
