/*
 * test_reader.c - the reader against files built byte by byte here.
 *
 * The builder below writes the container from the design notes alone
 * (record layouts, canonical offsets, XXH3 of the concatenated header
 * ranges computed with xxhash directly), so it is an oracle independent of
 * the writer. Malformed files are made by editing a valid one and, where
 * the test is about a later validation step, re-sealing the header
 * checksum so that structure, not the checksum, must catch the fault.
 */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>
#include <zlib.h>
#include "../../lib/common/internal.h"
#include "../../lib/read/reader.h"

/* ---- file description and builder ------------------------------------------ */

#define MAXN 16

typedef struct {
    const char *key;
    uint32_t type;
    const char *sval;
    uint64_t bits;
} t_meta;

typedef struct {
    const char *name;
    uint8_t kind, scaling, ndim;
    uint32_t flags, rank;
    float alpha, scale;
    uint64_t base[5];
    uint32_t a, b, mag, bias;
} t_mod;

typedef struct {
    const char *name;
    uint32_t blob;
} t_ten;

typedef struct {
    uint8_t dtype, comp, ndim;
    uint64_t shape[5];
    uint8_t *stored; /* owned */
    uint64_t stored_size, raw_size;
} t_blob;

typedef struct {
    uint16_t minor;
    uint32_t future_bytes; /* non-canonical gap (0xA5 bytes) before data_offset */
    t_meta meta[MAXN];
    uint32_t nmeta;
    t_mod mod[MAXN];
    uint32_t nmod;
    t_ten ten[MAXN];
    uint32_t nten;
    t_blob blob[MAXN];
    uint32_t nblob;
} t_file;

typedef struct {
    uint8_t *p;
    size_t len;
} t_bytes;

static uint64_t align64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }

static void tf_free(t_file *f)
{
    for (uint32_t i = 0; i < f->nblob; i++) free(f->blob[i].stored);
    memset(f, 0, sizeof *f);
}

static uint32_t tf_meta(t_file *f, const char *key, uint32_t type, const char *sval, uint64_t bits)
{
    f->meta[f->nmeta] = (t_meta){key, type, sval, bits};
    return f->nmeta++;
}

/* A blob with explicit stored bytes and sizes (for malformed streams). */
static uint32_t tf_blob_raw(t_file *f, uint8_t dtype, uint8_t comp, uint32_t ndim, const uint64_t *shape,
                            const void *stored, size_t stored_size, uint64_t raw_size)
{
    t_blob *b = &f->blob[f->nblob];
    memset(b, 0, sizeof *b);
    b->dtype = dtype;
    b->comp = comp;
    b->ndim = (uint8_t)ndim;
    for (uint32_t i = 0; i < ndim; i++) b->shape[i] = shape[i];
    b->stored = malloc(stored_size ? stored_size : 1);
    assert_non_null(b->stored);
    if (stored_size) memcpy(b->stored, stored, stored_size);
    b->stored_size = stored_size;
    b->raw_size = raw_size;
    return f->nblob++;
}

static size_t zlib_pack(const void *raw, size_t n, uint8_t **out)
{
    uLongf cap = compressBound((uLong)n);
    *out = malloc(cap);
    assert_non_null(*out);
    assert_int_equal(compress2(*out, &cap, raw, (uLong)n, 9), Z_OK);
    return cap;
}

static uint32_t tf_blob(t_file *f, uint8_t dtype, uint32_t ndim, const uint64_t *shape, const void *raw,
                        size_t raw_size, int zlib)
{
    if (!zlib) return tf_blob_raw(f, dtype, 0, ndim, shape, raw, raw_size, raw_size);
    uint8_t *z;
    size_t zn = zlib_pack(raw, raw_size, &z);
    uint32_t i = tf_blob_raw(f, dtype, 1, ndim, shape, z, zn, raw_size);
    free(z);
    return i;
}

/* Seeded values: a small LCG, so every run builds the same files. */
static float next_value(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return (float)((int32_t)(*seed >> 8) % 2001 - 1000) / 256.0f;
}

static uint32_t tf_blob_f32(t_file *f, uint32_t ndim, const uint64_t *shape, uint32_t *seed)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (uint64_t i = 0; i < n; i++) v[i] = next_value(seed);
    uint32_t idx = tf_blob(f, 0, ndim, shape, v, n * sizeof *v, 0);
    free(v);
    return idx;
}

static uint32_t tf_module(t_file *f, const char *name, uint8_t kind, uint8_t scaling, uint32_t rank, float alpha,
                          uint32_t ndim, const uint64_t *base, uint32_t a, uint32_t b)
{
    t_mod *m = &f->mod[f->nmod];
    memset(m, 0, sizeof *m);
    m->name = name;
    m->kind = kind;
    m->scaling = scaling;
    m->ndim = (uint8_t)ndim;
    m->rank = rank;
    m->alpha = alpha;
    m->scale = scaling == 0 ? alpha / (float)rank : scaling == 1 ? alpha / sqrtf((float)rank) : alpha;
    for (uint32_t i = 0; i < ndim; i++) m->base[i] = base[i];
    m->a = a;
    m->b = b;
    m->mag = m->bias = 0xFFFFFFFFu;
    return f->nmod++;
}

static void put_str(uint8_t *table, uint32_t *used, const char *s, uint32_t *off, uint32_t *len)
{
    *off = *used;
    *len = (uint32_t)strlen(s);
    memcpy(table + *used, s, *len);
    *used += *len;
}

static uint32_t f32_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

/* XXH3 over [0,120) ++ [128, data_offset), by concatenation. */
static uint64_t ref_header_checksum(const uint8_t *p, uint64_t data_offset)
{
    size_t n = 120 + (size_t)(data_offset - 128);
    uint8_t *tmp = malloc(n);
    assert_non_null(tmp);
    memcpy(tmp, p, 120);
    memcpy(tmp + 120, p + 128, (size_t)(data_offset - 128));
    uint64_t h = XXH3_64bits(tmp, n);
    free(tmp);
    return h;
}

static void write_records(const t_file *f, uint8_t *p, uint64_t strings_off, uint64_t *blob_off)
{
    uint64_t pos = 128;
    uint32_t used = 0, off, len;
    uint8_t *st = p + strings_off;
    for (uint32_t i = 0; i < f->nmeta; i++, pos += 24) {
        const t_meta *m = &f->meta[i];
        put_str(st, &used, m->key, &off, &len);
        lora_fmt_wr32(p + pos, off);
        lora_fmt_wr32(p + pos + 4, len);
        lora_fmt_wr32(p + pos + 8, m->type);
        uint64_t bits = m->bits;
        if (m->type == 1) {
            put_str(st, &used, m->sval, &off, &len);
            bits = off | ((uint64_t)len << 32);
        }
        lora_fmt_wr64(p + pos + 16, bits);
    }
    for (uint32_t i = 0; i < f->nmod; i++, pos += 96) {
        const t_mod *m = &f->mod[i];
        put_str(st, &used, m->name, &off, &len);
        lora_fmt_wr32(p + pos, off);
        lora_fmt_wr32(p + pos + 4, len);
        p[pos + 8] = m->kind;
        p[pos + 9] = m->scaling;
        p[pos + 10] = m->ndim;
        lora_fmt_wr32(p + pos + 12, m->flags);
        lora_fmt_wr32(p + pos + 16, m->rank);
        lora_fmt_wr32(p + pos + 20, f32_bits(m->alpha));
        lora_fmt_wr32(p + pos + 24, f32_bits(m->scale));
        for (int d = 0; d < 5; d++) lora_fmt_wr64(p + pos + 32 + 8 * d, m->base[d]);
        lora_fmt_wr32(p + pos + 72, m->a);
        lora_fmt_wr32(p + pos + 76, m->b);
        lora_fmt_wr32(p + pos + 80, m->mag);
        lora_fmt_wr32(p + pos + 84, m->bias);
    }
    for (uint32_t i = 0; i < f->nten; i++, pos += 16) {
        put_str(st, &used, f->ten[i].name, &off, &len);
        lora_fmt_wr32(p + pos, off);
        lora_fmt_wr32(p + pos + 4, len);
        lora_fmt_wr32(p + pos + 8, f->ten[i].blob);
    }
    for (uint32_t i = 0; i < f->nblob; i++, pos += 80) {
        const t_blob *b = &f->blob[i];
        p[pos] = b->dtype;
        p[pos + 1] = b->comp;
        p[pos + 2] = b->ndim;
        p[pos + 3] = b->dtype == 5 ? 6 : 0; /* block_shift: NF4 blocks of 64 */
        for (int d = 0; d < 5; d++) lora_fmt_wr64(p + pos + 8 + 8 * d, b->shape[d]);
        lora_fmt_wr64(p + pos + 48, blob_off[i]);
        lora_fmt_wr64(p + pos + 56, b->stored_size);
        lora_fmt_wr64(p + pos + 64, b->raw_size);
        lora_fmt_wr64(p + pos + 72, XXH3_64bits(b->stored, (size_t)b->stored_size));
        memcpy(p + blob_off[i], b->stored, (size_t)b->stored_size);
    }
}

static uint64_t strings_bytes(const t_file *f)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < f->nmeta; i++)
        n += strlen(f->meta[i].key) + (f->meta[i].type == 1 ? strlen(f->meta[i].sval) : 0);
    for (uint32_t i = 0; i < f->nmod; i++) n += strlen(f->mod[i].name);
    for (uint32_t i = 0; i < f->nten; i++) n += strlen(f->ten[i].name);
    return n;
}

static t_bytes tf_build(const t_file *f)
{
    uint64_t meta_off = 128, mod_off = meta_off + 24u * f->nmeta, ten_off = mod_off + 96u * f->nmod;
    uint64_t blob_off = ten_off + 16u * f->nten, str_off = blob_off + 80u * f->nblob;
    uint64_t str_size = strings_bytes(f), data_off = align64(str_off + str_size) + f->future_bytes;
    uint64_t offs[MAXN], cur = data_off;
    for (uint32_t i = 0; i < f->nblob; i++) {
        offs[i] = cur;
        cur += f->blob[i].stored_size;
        if (i + 1 < f->nblob) cur = align64(cur);
    }
    t_bytes out = {calloc(1, (size_t)cur), (size_t)cur};
    assert_non_null(out.p);
    uint8_t *p = out.p;
    memcpy(p, "\x89LORA\r\n\x1a", 8);
    lora_fmt_wr16(p + 8, 1);
    lora_fmt_wr16(p + 10, f->minor);
    lora_fmt_wr32(p + 12, 128);
    lora_fmt_wr64(p + 24, cur);
    lora_fmt_wr64(p + 32, data_off);
    lora_fmt_wr64(p + 40, meta_off);
    lora_fmt_wr32(p + 48, f->nmeta);
    lora_fmt_wr32(p + 52, f->nmod);
    lora_fmt_wr64(p + 56, mod_off);
    lora_fmt_wr64(p + 64, ten_off);
    lora_fmt_wr32(p + 72, f->nten);
    lora_fmt_wr32(p + 76, f->nblob);
    lora_fmt_wr64(p + 80, blob_off);
    lora_fmt_wr64(p + 88, str_off);
    lora_fmt_wr64(p + 96, str_size);
    write_records(f, p, str_off, offs);
    memset(p + align64(str_off + str_size), 0xA5, f->future_bytes);
    lora_fmt_wr64(p + 120, ref_header_checksum(p, data_off));
    return out;
}

/* ---- byte-level editing of a built file ------------------------------------- */

static size_t meta_rec(const t_bytes *b, uint32_t i) { return (size_t)lora_fmt_rd64(b->p + 40) + 24 * i; }
static size_t mod_rec(const t_bytes *b, uint32_t i) { return (size_t)lora_fmt_rd64(b->p + 56) + 96 * i; }
static size_t ten_rec(const t_bytes *b, uint32_t i) { return (size_t)lora_fmt_rd64(b->p + 64) + 16 * i; }
static size_t blob_rec(const t_bytes *b, uint32_t i) { return (size_t)lora_fmt_rd64(b->p + 80) + 80 * i; }
static uint64_t strings_off(const t_bytes *b) { return lora_fmt_rd64(b->p + 88); }

static void reseal(t_bytes *b)
{
    lora_fmt_wr64(b->p + 120, ref_header_checksum(b->p, lora_fmt_rd64(b->p + 32)));
}

static t_bytes copy_bytes(const t_bytes *b, size_t len)
{
    t_bytes c = {malloc(len ? len : 1), len};
    assert_non_null(c.p);
    memcpy(c.p, b->p, len < b->len ? len : b->len);
    if (len > b->len) memset(c.p + b->len, 0, len - b->len);
    return c;
}

/* Open, check the status and that a failure names something, free. */
static lora_status open_status(const void *p, size_t len, const lora_read_options *o, lora_error *e)
{
    lora_reader *r = (lora_reader *)0x1;
    lora_status st = lora_reader_open_buffer(p, len, o, &r, e);
    if (st == LORA_OK) {
        assert_non_null(r);
        lora_reader_free(r);
    } else {
        assert_null(r);
    }
    return st;
}

static void expect_open_ex(const t_bytes *b, const lora_read_options *o, lora_status want, uint64_t want_off)
{
    lora_error e;
    lora_status st = open_status(b->p, b->len, o, &e);
    if (st != want)
        fail_msg("expected %s, got %s (%s)", lora_status_name(want), lora_status_name(st), e.detail);
    assert_int_equal(e.status, want);
    if (want != LORA_OK) assert_true(strlen(e.detail) > 0);
    if (want_off != UINT64_MAX - 1) assert_int_equal(e.offset, want_off);
}

#define ANY_OFF (UINT64_MAX - 1)
static void expect_open(const t_bytes *b, lora_status want) { expect_open_ex(b, NULL, want, ANY_OFF); }

/* ---- the files the tests start from ------------------------------------------ */

/* Independent float decoders (the kernels' own tests compare ISAs to ref;
 * these check the reader hands the right bytes to the right kernel). */
static float ref_f16(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float s = (h & 0x8000) ? -1.0f : 1.0f;
    if (e == 0) return s * ldexpf((float)m, -24);
    if (e == 31) return m ? NAN : s * INFINITY;
    return s * ldexpf((float)(m + 1024), e - 25);
}

static float ref_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const uint16_t k_f16_values[20] = {0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0x7E00, 0x3800,
                                          0x4248, 0x0400, 0x03FF, 0xFBFF, 0x2E66, 0x5640, 0xB3FF, 0x4000, 0x3E00,
                                          0x1234, 0x6543};

static void q8_blocks(uint8_t *out, size_t nblocks)
{
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = out + 34 * b;
        lora_fmt_wr16(blk, b % 2 ? 0xB400 : 0x3800); /* -0.25, 0.5 */
        for (int i = 0; i < 32; i++) blk[2 + i] = (uint8_t)(int8_t)(b % 2 ? 3 * i - 50 : i - 16);
    }
}

static float q8_expected(size_t elem)
{
    size_t b = elem / 32, i = elem % 32;
    int q = b % 2 ? 3 * (int)i - 50 : (int)i - 16;
    return (float)q * (b % 2 ? -0.25f : 0.5f);
}

#define NAME_Q "model.layers.0.self_attn.q_proj"
#define NAME_E "model.embed_tokens"

/* Two modules (linear with bias, embedding with DoRA magnitude), two
 * tensors (Q8_0, zlib F32), five metadata entries; blobs of mixed sizes so
 * that there is padding between them. */
static void base_file(t_file *f)
{
    memset(f, 0, sizeof *f);
    uint32_t seed = 12345;
    tf_meta(f, "lora.base_model", 1, "meta-llama/Llama-3.2-1B", 0);
    tf_meta(f, "train.steps", 2, NULL, (uint64_t)-5);
    double lr = 1e-4;
    uint64_t lr_bits;
    memcpy(&lr_bits, &lr, 8);
    tf_meta(f, "train.lr", 3, NULL, lr_bits);
    tf_meta(f, "train.dora", 4, NULL, 1);
    tf_meta(f, "note", 1, "", 0);
    uint32_t a0 = tf_blob_f32(f, 2, (uint64_t[]){4, 8}, &seed);
    uint32_t b0 = tf_blob_f32(f, 2, (uint64_t[]){6, 4}, &seed);
    uint32_t bias0 = tf_blob_f32(f, 1, (uint64_t[]){6}, &seed);
    uint32_t a1 = tf_blob(f, 1, 2, (uint64_t[]){2, 10}, k_f16_values, sizeof k_f16_values, 0);
    uint32_t b1 = tf_blob_f32(f, 2, (uint64_t[]){6, 2}, &seed);
    uint32_t mag1 = tf_blob_f32(f, 1, (uint64_t[]){6}, &seed);
    uint8_t q8[68];
    q8_blocks(q8, 2);
    uint32_t t0 = tf_blob(f, 3, 2, (uint64_t[]){2, 32}, q8, sizeof q8, 0);
    float z[64];
    for (int i = 0; i < 64; i++) z[i] = (float)(i % 8) * 0.25f;
    uint32_t t1 = tf_blob(f, 0, 1, (uint64_t[]){64}, z, sizeof z, 1);
    uint32_t m0 = tf_module(f, NAME_Q, 0, 0, 4, 8.0f, 2, (uint64_t[]){6, 8}, a0, b0);
    f->mod[m0].bias = bias0;
    uint32_t m1 = tf_module(f, NAME_E, 1, 1, 2, 4.0f, 2, (uint64_t[]){10, 6}, a1, b1);
    f->mod[m1].mag = mag1;
    f->ten[f->nten++] = (t_ten){"lm_head.weight", t0};
    f->ten[f->nten++] = (t_ten){"model.norm.weight", t1};
}

static t_bytes base_bytes(void)
{
    t_file f;
    base_file(&f);
    t_bytes b = tf_build(&f);
    tf_free(&f);
    return b;
}

/* One linear module, rank 1, all F32: the smallest useful adapter. */
static t_bytes one_module_bytes(void)
{
    t_file f;
    memset(&f, 0, sizeof f);
    uint32_t seed = 7;
    uint32_t a = tf_blob_f32(&f, 2, (uint64_t[]){1, 3}, &seed);
    uint32_t b = tf_blob_f32(&f, 2, (uint64_t[]){2, 1}, &seed);
    tf_module(&f, "q", 0, 0, 1, 1.0f, 2, (uint64_t[]){2, 3}, a, b);
    t_bytes out = tf_build(&f);
    tf_free(&f);
    return out;
}

static t_bytes empty_bytes(void)
{
    t_file f;
    memset(&f, 0, sizeof f);
    return tf_build(&f);
}

/* ---- valid files --------------------------------------------------------------- */

static void test_empty_file_opens(void **state)
{
    (void)state;
    t_bytes b = empty_bytes();
    assert_int_equal(b.len, 128); /* header only: data_offset = align64(128) */
    lora_reader *r = NULL;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, &e), LORA_OK);
    assert_int_equal(e.status, LORA_OK);
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    assert_int_equal(fi.format_major, 1);
    assert_int_equal(fi.format_minor, 0);
    assert_int_equal(fi.file_size, 128);
    assert_int_equal(fi.data_offset, 128);
    assert_int_equal(fi.module_count + fi.tensor_count + fi.blob_count + fi.metadata_count, 0);
    assert_int_equal(fi.header_checksum, lora_fmt_rd64(b.p + 120));
    lora_meta m;
    uint32_t idx;
    assert_int_equal(lora_reader_meta_find(r, "x", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_reader_module_find(r, "x", &idx), LORA_E_NOT_FOUND);
    assert_int_equal(lora_reader_meta(r, 0, &m), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_verify(r, &e), LORA_OK);
    lora_reader_free(r);
    lora_reader_free(NULL);
    free(b.p);
}

static void test_one_module_queries(void **state)
{
    (void)state;
    t_bytes b = one_module_bytes();
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, NULL), LORA_OK);
    lora_module m;
    assert_int_equal(lora_reader_module(r, 0, &m), LORA_OK);
    assert_string_equal(m.name, "q");
    assert_int_equal(m.kind, LORA_KIND_LINEAR);
    assert_int_equal(m.scaling, LORA_SCALING_ALPHA_OVER_RANK);
    assert_int_equal(m.rank, 1);
    assert_true(m.alpha == 1.0f && m.scale == 1.0f);
    assert_int_equal(m.base_ndim, 2);
    assert_int_equal(m.base_shape[0], 2);
    assert_int_equal(m.base_shape[1], 3);
    assert_int_equal(m.base_shape[2], 0);
    assert_int_equal(m.blob_a, 0);
    assert_int_equal(m.blob_b, 1);
    assert_int_equal(m.blob_magnitude, LORA_NO_BLOB);
    assert_int_equal(m.blob_bias, LORA_NO_BLOB);
    lora_blob bl;
    assert_int_equal(lora_reader_blob(r, 0, &bl), LORA_OK);
    assert_int_equal(bl.dtype, LORA_DTYPE_F32);
    assert_int_equal(bl.ndim, 2);
    assert_int_equal(bl.numel, 3);
    /* header 128 + module 96 + 2 blobs x 80 + "q" = 385 -> data_offset 448 */
    assert_int_equal(bl.offset, 448);
    assert_int_equal(bl.stored_size, 12);
    assert_int_equal(bl.raw_size, 12);
    assert_int_equal(bl.compression, LORA_COMPRESSION_NONE);
    assert_int_equal(bl.checksum, XXH3_64bits(b.p + 448, 12));
    assert_int_equal(lora_reader_blob(r, 1, &bl), LORA_OK);
    assert_int_equal(bl.offset, 512);
    assert_int_equal(bl.shape[0], 2);
    assert_int_equal(bl.shape[1], 1);
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    assert_int_equal(fi.file_size, 520);
    assert_int_equal(fi.data_offset, 448);
    assert_int_equal(fi.module_count, 1);
    assert_int_equal(fi.blob_count, 2);
    uint32_t idx = 99;
    assert_int_equal(lora_reader_module_find(r, "q", &idx), LORA_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(lora_reader_module_find(r, "q2", &idx), LORA_E_NOT_FOUND);
    assert_int_equal(lora_reader_module_find(r, "", &idx), LORA_E_NOT_FOUND);
    uint32_t seed = 7;
    float want[5], got[5];
    for (int i = 0; i < 5; i++) want[i] = next_value(&seed);
    assert_int_equal(lora_reader_blob_decode_f32(r, 0, got, 3, NULL), LORA_OK);
    assert_int_equal(lora_reader_blob_decode_f32(r, 1, got + 3, 2, NULL), LORA_OK);
    assert_memory_equal(want, got, sizeof want);
    const void *view;
    size_t vsize;
    assert_int_equal(lora_reader_blob_view(r, 1, &view, &vsize), LORA_OK);
    assert_ptr_equal(view, b.p + 512);
    assert_int_equal(vsize, 8);
    assert_int_equal(lora_reader_verify(r, NULL), LORA_OK);
    assert_int_equal(lora_reader_module(r, 1, &m), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_blob(r, 2, &bl), LORA_E_INVALID_ARGUMENT);
    lora_tensor t;
    assert_int_equal(lora_reader_tensor(r, 0, &t), LORA_E_INVALID_ARGUMENT);
    lora_reader_free(r);
    free(b.p);
}

static void test_base_file_queries(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    lora_reader *r;
    lora_error e;
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.flags = LORA_READ_VERIFY_CHECKSUMS;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, &o, &r, &e), LORA_OK);

    lora_meta m;
    assert_int_equal(lora_reader_meta_find(r, LORA_META_BASE_MODEL, &m), LORA_OK);
    assert_int_equal(m.type, LORA_META_STRING);
    assert_string_equal(m.string, "meta-llama/Llama-3.2-1B");
    assert_int_equal(m.string_length, 23);
    assert_string_equal(m.key, "lora.base_model");
    assert_int_equal(lora_reader_meta(r, 1, &m), LORA_OK);
    assert_string_equal(m.key, "train.steps");
    assert_int_equal(m.type, LORA_META_INT);
    assert_int_equal(m.integer, -5);
    assert_int_equal(lora_reader_meta_find(r, "train.lr", &m), LORA_OK);
    assert_true(m.type == LORA_META_FLOAT && m.number == 1e-4);
    assert_int_equal(lora_reader_meta_find(r, "train.dora", &m), LORA_OK);
    assert_true(m.type == LORA_META_BOOL && m.integer == 1);
    assert_int_equal(lora_reader_meta_find(r, "note", &m), LORA_OK);
    assert_int_equal(m.string_length, 0);
    assert_string_equal(m.string, "");
    assert_int_equal(lora_reader_meta_find(r, "train", &m), LORA_E_NOT_FOUND);
    assert_int_equal(lora_reader_meta_find(r, "train.steps.x", &m), LORA_E_NOT_FOUND);

    uint32_t idx;
    lora_module mod;
    assert_int_equal(lora_reader_module_find(r, NAME_E, &idx), LORA_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(lora_reader_module(r, idx, &mod), LORA_OK);
    assert_int_equal(mod.kind, LORA_KIND_EMBEDDING);
    assert_int_equal(mod.scaling, LORA_SCALING_ALPHA_OVER_SQRT_RANK);
    assert_true(mod.scale == 4.0f / sqrtf(2.0f));
    assert_int_equal(mod.blob_magnitude, 5);
    assert_int_equal(mod.blob_bias, LORA_NO_BLOB);
    assert_int_equal(lora_reader_module_find(r, NAME_Q, &idx), LORA_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(lora_reader_module(r, 0, &mod), LORA_OK);
    assert_true(mod.scale == 2.0f);
    assert_int_equal(mod.blob_bias, 2);

    lora_tensor t;
    assert_int_equal(lora_reader_tensor(r, 1, &t), LORA_OK);
    assert_string_equal(t.name, "model.norm.weight");
    assert_int_equal(t.blob, 7);

    /* F16 through the kernels, against the reference decoder */
    float f[64];
    assert_int_equal(lora_reader_blob_decode_f32(r, 3, f, 20, &e), LORA_OK);
    for (int i = 0; i < 20; i++) {
        float w = ref_f16(k_f16_values[i]);
        if (isnan(w)) assert_true(isnan(f[i]));
        else assert_int_equal(f32_bits(f[i]), f32_bits(w));
    }
    uint64_t nf = 99;
    assert_int_equal(lora_reader_blob_count_nonfinite(r, 3, &nf, &e), LORA_OK);
    assert_int_equal(nf, 2);
    assert_int_equal(lora_reader_blob_decode_f32(r, 3, f, 19, &e), LORA_E_BUFFER_TOO_SMALL);
    /* Q8_0 */
    assert_int_equal(lora_reader_blob_decode_f32(r, 6, f, 64, &e), LORA_OK);
    for (int i = 0; i < 64; i++) assert_true(f[i] == q8_expected((size_t)i));
    /* zlib F32: no view, read and decode inflate */
    const void *v;
    size_t vs;
    assert_int_equal(lora_reader_blob_view(r, 7, &v, &vs), LORA_E_NOT_VIEWABLE);
    lora_blob bl;
    assert_int_equal(lora_reader_blob(r, 7, &bl), LORA_OK);
    assert_int_equal(bl.compression, LORA_COMPRESSION_ZLIB);
    assert_int_equal(bl.raw_size, 256);
    assert_true(bl.stored_size < 256);
    float raw[64];
    assert_int_equal(lora_reader_blob_read(r, 7, raw, 255, &e), LORA_E_BUFFER_TOO_SMALL);
    assert_int_equal(lora_reader_blob_read(r, 7, raw, sizeof raw, &e), LORA_OK);
    assert_int_equal(lora_reader_blob_decode_f32(r, 7, f, 64, &e), LORA_OK);
    for (int i = 0; i < 64; i++) {
        assert_true(raw[i] == (float)(i % 8) * 0.25f);
        assert_true(f[i] == raw[i]);
    }
    assert_int_equal(lora_reader_blob_count_nonfinite(r, 7, &nf, &e), LORA_OK);
    assert_int_equal(nf, 0);
    /* uncompressed read copies the stored bytes */
    uint8_t q8[68];
    assert_int_equal(lora_reader_blob_read(r, 6, q8, sizeof q8, &e), LORA_OK);
    assert_memory_equal(q8, b.p + lora_fmt_rd64(b.p + blob_rec(&b, 6) + 48), 68);
    assert_int_equal(lora_reader_verify_blob(r, 8, &e), LORA_E_INVALID_ARGUMENT);
    lora_reader_free(r);
    free(b.p);
}

/* F32 and F16 decoding from a buffer at an odd address (open_buffer does
 * not require alignment). */
static void test_unaligned_buffer_decode(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    uint8_t *odd = malloc(b.len + 1);
    assert_non_null(odd);
    memcpy(odd + 1, b.p, b.len);
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(odd + 1, b.len, NULL, &r, NULL), LORA_OK);
    float f[32], g[32];
    assert_int_equal(lora_reader_blob_decode_f32(r, 0, f, 32, NULL), LORA_OK);
    memcpy(g, b.p + lora_fmt_rd64(b.p + blob_rec(&b, 0) + 48), sizeof g);
    assert_memory_equal(f, g, sizeof f);
    assert_int_equal(lora_reader_blob_decode_f32(r, 3, f, 20, NULL), LORA_OK);
    for (int i = 0; i < 20; i++)
        if (!isnan(ref_f16(k_f16_values[i]))) assert_true(f[i] == ref_f16(k_f16_values[i]));
    uint64_t nf;
    assert_int_equal(lora_reader_blob_count_nonfinite(r, 3, &nf, NULL), LORA_OK);
    assert_int_equal(nf, 2);
    lora_reader_free(r);
    free(odd);
    free(b.p);
}

/* Blobs larger than the decoder's chunk: BF16, Q8_0 with one infinite
 * scale (32 non-finite values: q*inf and 0*inf), Q4_0 and NF4, plain and
 * zlib. */
static void test_large_blobs_decode(void **state)
{
    (void)state;
    enum { N = 4096 };
    t_file fl;
    memset(&fl, 0, sizeof fl);
    uint8_t *q8 = malloc(N / 32 * 34);
    uint16_t *bf = malloc(N * 2);
    uint8_t *q4 = malloc(N / 32 * 18);
    uint8_t *nf4 = malloc(N / 64 * 36);
    float *out = malloc(N * sizeof(float));
    assert_true(q8 && bf && q4 && nf4 && out);
    q8_blocks(q8, N / 32);
    lora_fmt_wr16(q8 + 70 * 34, 0x7C00);
    for (int i = 0; i < N; i++) bf[i] = (uint16_t)(0x3F80 + (i % 97) - 48);
    for (int b = 0; b < N / 32; b++) {
        lora_fmt_wr16(q4 + 18 * b, 0x3400); /* 0.25 */
        for (int j = 0; j < 16; j++) q4[18 * b + 2 + j] = (uint8_t)((b + j) * 37);
    }
    for (int b = 0; b < N / 64; b++) {
        float am = (float)(b + 1) * 0.5f;
        lora_fmt_wr32(nf4 + 36 * b, f32_bits(am));
        for (int j = 0; j < 32; j++) nf4[36 * b + 4 + j] = (uint8_t)((b * 7 + j) * 29);
    }
    uint64_t shape[1] = {N};
    tf_blob(&fl, 3, 1, shape, q8, N / 32 * 34, 0);
    tf_blob(&fl, 3, 1, shape, q8, N / 32 * 34, 1);
    tf_blob(&fl, 2, 1, shape, bf, N * 2, 1);
    tf_blob(&fl, 4, 1, shape, q4, N / 32 * 18, 0);
    tf_blob(&fl, 5, 1, shape, nf4, N / 64 * 36, 0);
    const char *names[5] = {"t.q8", "t.q8z", "t.bf16z", "t.q4", "t.nf4"};
    for (uint32_t i = 0; i < 5; i++) fl.ten[fl.nten++] = (t_ten){names[i], i};
    t_bytes b = tf_build(&fl);
    lora_reader *r;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, &e), LORA_OK);
    uint64_t nf;
    for (uint32_t k = 0; k < 2; k++) {
        assert_int_equal(lora_reader_blob_count_nonfinite(r, k, &nf, &e), LORA_OK);
        assert_int_equal(nf, 32);
        assert_int_equal(lora_reader_blob_decode_f32(r, k, out, N, &e), LORA_OK);
        for (int i = 0; i < N; i++)
            if (i / 32 != 70) assert_true(out[i] == q8_expected((size_t)i));
    }
    assert_int_equal(lora_reader_blob_decode_f32(r, 2, out, N, &e), LORA_OK);
    for (int i = 0; i < N; i++) assert_true(out[i] == ref_bf16(bf[i]));
    assert_int_equal(lora_reader_blob_decode_f32(r, 3, out, N, &e), LORA_OK);
    for (int i = 0; i < N; i++) {
        int blk = i / 32, j = i % 32;
        uint8_t byte = q4[18 * blk + 2 + (j % 16)];
        int q = j < 16 ? (byte & 15) : (byte >> 4);
        assert_true(out[i] == (float)(q - 8) * 0.25f);
    }
    static const float code[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                   -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                   0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                   0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                   0.7229568362236023f, 1.0f};
    assert_int_equal(lora_reader_blob_decode_f32(r, 4, out, N, &e), LORA_OK);
    for (int i = 0; i < N; i++) {
        int blk = i / 64, j = i % 64;
        uint8_t byte = nf4[36 * blk + 4 + j / 2];
        int q = j % 2 ? (byte & 15) : (byte >> 4);
        assert_true(out[i] == code[q] * ((float)(blk + 1) * 0.5f));
    }
    lora_reader_free(r);
    tf_free(&fl);
    free(b.p);
    free(q8);
    free(bf);
    free(q4);
    free(nf4);
    free(out);
}

/* ---- validation order, step by step ------------------------------------------- */

static void w32(t_bytes *b, size_t off, uint32_t v) { lora_fmt_wr32(b->p + off, v); }
static void w64(t_bytes *b, size_t off, uint64_t v) { lora_fmt_wr64(b->p + off, v); }

/* Apply an edit to a fresh base file, optionally reseal, expect a status
 * and the offset the reader blames. */
typedef void (*t_edit)(t_bytes *b);

static void check_edit(t_edit edit, int seal, lora_status want, uint64_t want_off, const lora_read_options *o)
{
    t_bytes b = base_bytes();
    edit(&b);
    if (seal) reseal(&b);
    expect_open_ex(&b, o, want, want_off);
    free(b.p);
}

static void expect_prefix(const char *bytes, size_t n, lora_status want)
{
    lora_error e;
    assert_int_equal(open_status(bytes, n, NULL, &e), want);
    assert_int_equal(e.status, want);
}

/* Steps 1-3. */
static void test_step1_3_magic_version_header(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    lora_error e;
    assert_int_equal(open_status(NULL, 0, NULL, &e), LORA_E_TRUNCATED);
    expect_prefix("\x89LOR", 4, LORA_E_TRUNCATED);
    expect_prefix("GIF89a", 6, LORA_E_BAD_MAGIC);
    expect_prefix("\x89LORA\r\n", 7, LORA_E_TRUNCATED);
    expect_prefix("\x89LORX\r\n\x1a", 8, LORA_E_BAD_MAGIC);
    expect_prefix("\x89LORA\r\n\x1a\x01", 9, LORA_E_TRUNCATED);
    /* 7-bit channel, CRLF->LF, LF->CRLF */
    t_bytes d = copy_bytes(&b, b.len);
    d.p[0] = 0x09;
    expect_open_ex(&d, NULL, LORA_E_TEXT_MODE_DAMAGE, 0);
    memcpy(d.p, b.p, 5);
    memcpy(d.p + 5, b.p + 6, b.len - 6); /* CR removed */
    expect_open_ex(&(t_bytes){d.p, b.len - 1}, NULL, LORA_E_TEXT_MODE_DAMAGE, 0);
    free(d.p);
    d = copy_bytes(&b, b.len + 1);
    memcpy(d.p + 6, "\r\n", 2); /* CR inserted before the LF */
    memcpy(d.p + 8, b.p + 7, b.len - 7);
    expect_open(&d, LORA_E_TEXT_MODE_DAMAGE);
    free(d.p);
    /* step 2 */
    expect_prefix((const char *)b.p, 11, LORA_E_TRUNCATED);
    d = copy_bytes(&b, b.len);
    lora_fmt_wr16(d.p + 8, 2);
    expect_open_ex(&d, NULL, LORA_E_UNSUPPORTED_VERSION, 8);
    lora_fmt_wr16(d.p + 8, 0);
    expect_open_ex(&d, NULL, LORA_E_UNSUPPORTED_VERSION, 8);
    free(d.p);
    /* step 3 */
    expect_prefix((const char *)b.p, 127, LORA_E_TRUNCATED);
    static const uint32_t bad_sizes[] = {0, 120, 127, 132, 136};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        d = copy_bytes(&b, b.len);
        w32(&d, 12, bad_sizes[i]);
        expect_open_ex(&d, NULL, LORA_E_BAD_HEADER, 12);
        free(d.p);
    }
    d = copy_bytes(&b, b.len);
    lora_fmt_wr16(d.p + 10, 1); /* a later minor may grow the header, but not past the file */
    w32(&d, 12, 1u << 20);
    expect_open_ex(&d, NULL, LORA_E_TRUNCATED, 12);
    free(d.p);
    free(b.p);
}

static void e_data_misaligned(t_bytes *b) { w64(b, 32, lora_fmt_rd64(b->p + 32) + 8); }
static void e_data_past_end(t_bytes *b) { w64(b, 32, align64(b->len) + 64); }
static void e_data_before_header(t_bytes *b) { w64(b, 32, 64); }

/* Steps 4-5. */
static void test_step4_5_file_size_data_offset(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    t_bytes d = copy_bytes(&b, b.len - 1);
    expect_open_ex(&d, NULL, LORA_E_TRUNCATED, 24);
    free(d.p);
    d = copy_bytes(&b, b.len + 1);
    expect_open_ex(&d, NULL, LORA_E_TRAILING_BYTES, 24);
    free(d.p);
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_file_size = b.len - 1;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, 24);
    o.limits.max_file_size = b.len;
    expect_open_ex(&b, &o, LORA_OK, ANY_OFF);
    free(b.p);
    check_edit(e_data_misaligned, 0, LORA_E_MISALIGNED, 32, NULL);
    check_edit(e_data_past_end, 0, LORA_E_BAD_OFFSET, 32, NULL);
    check_edit(e_data_before_header, 0, LORA_E_BAD_OFFSET, 32, NULL);
}

static void e_flip_string(t_bytes *b) { b->p[strings_off(b)] ^= 0x20; }
static void e_flip_checksum(t_bytes *b) { b->p[127] ^= 0x80; }
static void e_required_flag(t_bytes *b) { w32(b, 16, 1); }
static void e_required_flag_high(t_bytes *b) { w32(b, 16, 0x80000000u); }
static void e_optional_flag(t_bytes *b) { w32(b, 20, 4); }
static void e_optional_flag_minor1(t_bytes *b)
{
    lora_fmt_wr16(b->p + 10, 1);
    w32(b, 20, 4);
}
static void e_reserved_header(t_bytes *b) { b->p[110] = 1; }

/* Steps 6-7. */
static void test_step6_7_checksum_flags(void **state)
{
    (void)state;
    check_edit(e_flip_string, 0, LORA_E_HEADER_CHECKSUM, 120, NULL);
    check_edit(e_flip_checksum, 0, LORA_E_HEADER_CHECKSUM, 120, NULL);
    check_edit(e_reserved_header, 0, LORA_E_HEADER_CHECKSUM, 120, NULL); /* 6 before 7 */
    check_edit(e_required_flag, 1, LORA_E_UNSUPPORTED_FEATURE, 16, NULL);
    check_edit(e_required_flag_high, 1, LORA_E_UNSUPPORTED_FEATURE, 16, NULL);
    check_edit(e_optional_flag, 1, LORA_E_RESERVED_NONZERO, 20, NULL);
    check_edit(e_optional_flag_minor1, 1, LORA_OK, ANY_OFF, NULL);
    check_edit(e_reserved_header, 1, LORA_E_RESERVED_NONZERO, 110, NULL);
}

static void e_meta_offset(t_bytes *b) { w64(b, 40, 136); }
static void e_tensors_offset(t_bytes *b) { w64(b, 64, lora_fmt_rd64(b->p + 64) + 16); }
static void e_strings_offset(t_bytes *b) { w64(b, 88, lora_fmt_rd64(b->p + 88) + 8); }
static void e_strings_size(t_bytes *b) { w64(b, 96, lora_fmt_rd64(b->p + 96) + 1000); }
static void e_strings_size_huge(t_bytes *b) { w64(b, 96, UINT64_MAX - 100); }
static void e_module_count_huge(t_bytes *b) { w32(b, 52, 0xFFFFFFFFu); }
static void e_string_padding(t_bytes *b) { b->p[strings_off(b) + lora_fmt_rd64(b->p + 96)] = 1; }

/* Step 8. */
static void test_step8_tables(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_metadata = 4;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, 48);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.limits.max_modules = 1;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, 52);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.limits.max_tensors = 1;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, 72);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.limits.max_blobs = 7;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, 76);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.limits.max_string_bytes = lora_fmt_rd64(b.p + 96) - 1;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, 96);
    o.limits.max_string_bytes = lora_fmt_rd64(b.p + 96);
    expect_open_ex(&b, &o, LORA_OK, ANY_OFF);
    /* the base file has padding after its strings, which the edit needs */
    assert_true((strings_off(&b) + lora_fmt_rd64(b.p + 96)) % 64 != 0);
    free(b.p);
    check_edit(e_meta_offset, 1, LORA_E_BAD_OFFSET, 40, NULL);
    check_edit(e_tensors_offset, 1, LORA_E_BAD_OFFSET, 64, NULL);
    check_edit(e_strings_offset, 1, LORA_E_BAD_OFFSET, 88, NULL);
    check_edit(e_strings_size, 1, LORA_E_BAD_OFFSET, 96, NULL);
    check_edit(e_strings_size_huge, 1, LORA_E_BAD_OFFSET, 96, NULL);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.limits.max_modules = UINT32_MAX;
    check_edit(e_module_count_huge, 1, LORA_E_BAD_OFFSET, 64, &o);
    check_edit(e_string_padding, 1, LORA_E_NONZERO_PADDING, ANY_OFF, NULL);
    /* data_offset past the aligned end of the strings: BAD_OFFSET in a 1.0
     * file, bytes to ignore in a 1.1 file */
    t_file f;
    base_file(&f);
    f.future_bytes = 128;
    b = tf_build(&f);
    expect_open_ex(&b, NULL, LORA_E_BAD_OFFSET, 32);
    free(b.p);
    f.minor = 1;
    b = tf_build(&f);
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, NULL), LORA_OK);
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    assert_int_equal(fi.format_minor, 1);
    assert_int_equal(lora_reader_verify(r, NULL), LORA_OK);
    lora_reader_free(r);
    free(b.p);
    tf_free(&f);
}

/* Step 9: one edit per field, each re-sealed. The expected offset is the
 * offending field's file offset, computed from the record layout. */
typedef struct {
    const char *what;
    void (*edit)(t_bytes *b);
    lora_status want;
    size_t (*where)(const t_bytes *b); /* expected error offset */
} t_case;

static void run_cases(const t_case *c, size_t n, const lora_read_options *o)
{
    for (size_t i = 0; i < n; i++) {
        t_bytes b = base_bytes();
        c[i].edit(&b);
        reseal(&b);
        lora_error e;
        lora_status st = open_status(b.p, b.len, o, &e);
        if (st != c[i].want)
            fail_msg("%s: expected %s, got %s (%s)", c[i].what, lora_status_name(c[i].want), lora_status_name(st),
                     e.detail);
        if (c[i].where && e.offset != c[i].where(&b))
            fail_msg("%s: offset %llu, expected %zu (%s)", c[i].what, (unsigned long long)e.offset, c[i].where(&b),
                     e.detail);
        free(b.p);
    }
}

#define FIELD_AT(fn, recfn, idx, off) \
    static size_t fn(const t_bytes *b) { return recfn(b, idx) + (off); }
FIELD_AT(at_meta0_key, meta_rec, 0, 0)
FIELD_AT(at_meta1_type, meta_rec, 1, 8)
FIELD_AT(at_meta1_res, meta_rec, 1, 12)
FIELD_AT(at_meta0_val, meta_rec, 0, 16)
FIELD_AT(at_mod0_name, mod_rec, 0, 0)
FIELD_AT(at_mod1_kind, mod_rec, 1, 8)
FIELD_AT(at_mod1_scaling, mod_rec, 1, 9)
FIELD_AT(at_mod0_res11, mod_rec, 0, 11)
FIELD_AT(at_mod0_res28, mod_rec, 0, 28)
FIELD_AT(at_mod0_res88, mod_rec, 0, 88)
FIELD_AT(at_ten1_res, ten_rec, 1, 12)
FIELD_AT(at_blob5_dtype, blob_rec, 5, 0)
FIELD_AT(at_blob5_comp, blob_rec, 5, 1)
FIELD_AT(at_blob5_res3, blob_rec, 5, 3)
FIELD_AT(at_blob5_res4, blob_rec, 5, 4)

static size_t at_mod0_name_bytes(const t_bytes *b)
{
    return (size_t)(strings_off(b) + lora_fmt_rd32(b->p + mod_rec(b, 0)));
}
static size_t at_ten1_name_bytes(const t_bytes *b)
{
    return (size_t)(strings_off(b) + lora_fmt_rd32(b->p + ten_rec(b, 1)));
}
static size_t at_meta0_val_bytes(const t_bytes *b)
{
    return (size_t)(strings_off(b) + lora_fmt_rd32(b->p + meta_rec(b, 0) + 16));
}

static void e_meta_res(t_bytes *b) { w32(b, meta_rec(b, 1) + 12, 1); }
static void e_meta_type0(t_bytes *b) { w32(b, meta_rec(b, 1) + 8, 0); }
static void e_meta_type5(t_bytes *b) { w32(b, meta_rec(b, 1) + 8, 5); }
static void e_mod_res11(t_bytes *b) { b->p[mod_rec(b, 0) + 11] = 1; }
static void e_mod_res28(t_bytes *b) { b->p[mod_rec(b, 0) + 30] = 1; }
static void e_mod_res88(t_bytes *b) { b->p[mod_rec(b, 0) + 95] = 0x80; }
static void e_mod_kind(t_bytes *b) { b->p[mod_rec(b, 1) + 8] = 5; }
static void e_mod_scaling(t_bytes *b) { b->p[mod_rec(b, 1) + 9] = 3; }
static void e_ten_res(t_bytes *b) { w32(b, ten_rec(b, 1) + 12, 0x100); }
static void e_blob_res3(t_bytes *b) { b->p[blob_rec(b, 5) + 3] = 1; }
static void e_blob_res4(t_bytes *b) { w32(b, blob_rec(b, 5) + 4, 1); }
static void e_blob_dtype(t_bytes *b) { b->p[blob_rec(b, 5)] = 6; }
static void e_blob_dtype_ff(t_bytes *b) { b->p[blob_rec(b, 5)] = 0xFF; }
static void e_blob_comp(t_bytes *b) { b->p[blob_rec(b, 5) + 1] = 2; }
static void e_name_range(t_bytes *b) { w32(b, mod_rec(b, 0) + 4, (uint32_t)lora_fmt_rd64(b->p + 96) + 1); }
static void e_name_range_wrap(t_bytes *b)
{
    w32(b, mod_rec(b, 0), 0xFFFFFFFFu);
    w32(b, mod_rec(b, 0) + 4, 0xFFFFFFFFu);
}
static void e_name_empty(t_bytes *b) { w32(b, mod_rec(b, 0) + 4, 0); }
static void e_key_empty(t_bytes *b) { w32(b, meta_rec(b, 0) + 4, 0); }
static void e_name_overlong(t_bytes *b) { b->p[at_mod0_name_bytes(b) + 3] = 0xC0; }
static void e_name_nul(t_bytes *b) { b->p[at_ten1_name_bytes(b) + 2] = 0; }
static void e_value_surrogate(t_bytes *b) { memcpy(b->p + at_meta0_val_bytes(b) + 4, "\xED\xA0\x80", 3); }
static void e_value_range(t_bytes *b)
{
    uint64_t v = lora_fmt_rd64(b->p + meta_rec(b, 0) + 16);
    w64(b, meta_rec(b, 0) + 16, v + ((uint64_t)1000 << 32));
}
static void e_value_truncated_utf8(t_bytes *b)
{
    /* shorten the value so that it ends inside a 2-byte sequence */
    size_t at = at_meta0_val_bytes(b);
    b->p[at + 22] = 0xC3;
}

static void test_step9_records(void **state)
{
    (void)state;
    static const t_case cases[] = {
        {"meta reserved", e_meta_res, LORA_E_RESERVED_NONZERO, at_meta1_res},
        {"meta type 0", e_meta_type0, LORA_E_BAD_ENUM, at_meta1_type},
        {"meta type 5", e_meta_type5, LORA_E_BAD_ENUM, at_meta1_type},
        {"module reserved 11", e_mod_res11, LORA_E_RESERVED_NONZERO, at_mod0_res11},
        {"module reserved 28", e_mod_res28, LORA_E_RESERVED_NONZERO, at_mod0_res28},
        {"module reserved 88", e_mod_res88, LORA_E_RESERVED_NONZERO, at_mod0_res88},
        {"module kind", e_mod_kind, LORA_E_BAD_ENUM, at_mod1_kind},
        {"module scaling", e_mod_scaling, LORA_E_BAD_ENUM, at_mod1_scaling},
        {"tensor reserved", e_ten_res, LORA_E_RESERVED_NONZERO, at_ten1_res},
        {"blob reserved 3", e_blob_res3, LORA_E_RESERVED_NONZERO, at_blob5_res3},
        {"blob reserved 4", e_blob_res4, LORA_E_RESERVED_NONZERO, at_blob5_res4},
        {"blob dtype 6", e_blob_dtype, LORA_E_UNSUPPORTED_DTYPE, at_blob5_dtype},
        {"blob dtype 255", e_blob_dtype_ff, LORA_E_UNSUPPORTED_DTYPE, at_blob5_dtype},
        {"blob compression", e_blob_comp, LORA_E_UNSUPPORTED_COMPRESSION, at_blob5_comp},
        {"name past table", e_name_range, LORA_E_BAD_STRING, at_mod0_name},
        {"name range wraps u32", e_name_range_wrap, LORA_E_BAD_STRING, at_mod0_name},
        {"empty name", e_name_empty, LORA_E_BAD_STRING, at_mod0_name},
        {"empty key", e_key_empty, LORA_E_BAD_STRING, at_meta0_key},
        {"overlong UTF-8", e_name_overlong, LORA_E_BAD_STRING, at_mod0_name_bytes},
        {"NUL in name", e_name_nul, LORA_E_BAD_STRING, at_ten1_name_bytes},
        {"surrogate in value", e_value_surrogate, LORA_E_BAD_STRING, at_meta0_val_bytes},
        {"value past table", e_value_range, LORA_E_BAD_STRING, at_meta0_val},
        {"value ends mid-sequence", e_value_truncated_utf8, LORA_E_BAD_STRING, at_meta0_val_bytes},
    };
    run_cases(cases, sizeof cases / sizeof cases[0], NULL);
    /* names longer than the limit: the first key is 15 bytes */
    t_bytes b = base_bytes();
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_name_length = 14;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, meta_rec(&b, 0));
    o.limits.max_name_length = (uint32_t)strlen(NAME_Q);
    expect_open_ex(&b, &o, LORA_OK, ANY_OFF);
    o.limits.max_name_length = (uint32_t)strlen(NAME_Q) - 1;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, mod_rec(&b, 0));
    free(b.p);
}

FIELD_AT(at_blob0_ndim, blob_rec, 0, 2)
FIELD_AT(at_blob0_shape0, blob_rec, 0, 8)
FIELD_AT(at_blob2_shape1, blob_rec, 2, 16)
FIELD_AT(at_blob6_shape, blob_rec, 6, 8)
FIELD_AT(at_blob0_raw, blob_rec, 0, 64)
FIELD_AT(at_blob0_stored, blob_rec, 0, 56)
FIELD_AT(at_blob7_stored, blob_rec, 7, 56)
FIELD_AT(at_blob7_raw, blob_rec, 7, 64)
FIELD_AT(at_blob1_offset, blob_rec, 1, 48)

static void e_ndim0(t_bytes *b) { b->p[blob_rec(b, 0) + 2] = 0; }
static void e_ndim6(t_bytes *b) { b->p[blob_rec(b, 0) + 2] = 6; }
static void e_dim_zero(t_bytes *b) { w64(b, blob_rec(b, 0) + 8, 0); }
static void e_unused_dim(t_bytes *b) { w64(b, blob_rec(b, 2) + 16, 1); }
static void e_numel_overflow(t_bytes *b)
{
    w64(b, blob_rec(b, 0) + 8, (uint64_t)1 << 32);
    w64(b, blob_rec(b, 0) + 16, (uint64_t)1 << 32);
}
static void e_bytes_overflow(t_bytes *b) /* numel fits, x4 bytes does not */
{
    w64(b, blob_rec(b, 0) + 8, (uint64_t)1 << 31);
    w64(b, blob_rec(b, 0) + 16, (uint64_t)1 << 31);
}
static void e_partial_block(t_bytes *b) { w64(b, blob_rec(b, 6) + 16, 31); }
static void e_raw_size(t_bytes *b) { w64(b, blob_rec(b, 0) + 64, 127); }
static void e_stored_ne_raw(t_bytes *b) { w64(b, blob_rec(b, 0) + 56, 127); }
static void e_zlib_stored0(t_bytes *b) { w64(b, blob_rec(b, 7) + 56, 0); }
static void e_zlib_bomb(t_bytes *b)
{
    uint64_t stored = lora_fmt_rd64(b->p + blob_rec(b, 7) + 56);
    uint64_t n = (1032 * stored + 1024) / 4 + 1; /* F32 elements just past the guard */
    w64(b, blob_rec(b, 7) + 8, n);
    w64(b, blob_rec(b, 7) + 64, 4 * n);
}
static void e_zlib_at_guard(t_bytes *b) /* exactly at the guard: allowed structurally */
{
    uint64_t stored = lora_fmt_rd64(b->p + blob_rec(b, 7) + 56);
    uint64_t n = (1032 * stored + 1024) / 4;
    w64(b, blob_rec(b, 7) + 8, n);
    w64(b, blob_rec(b, 7) + 64, 4 * n);
}
static void e_blob_offset(t_bytes *b) { w64(b, blob_rec(b, 1) + 48, lora_fmt_rd64(b->p + blob_rec(b, 1) + 48) + 64); }
static void e_blob_past_end(t_bytes *b) { w64(b, blob_rec(b, 7) + 56, lora_fmt_rd64(b->p + blob_rec(b, 7) + 56) + 1000); }
static void e_blob_end_wraps(t_bytes *b) { w64(b, blob_rec(b, 7) + 56, UINT64_MAX - 10); }
static void e_last_blob_short(t_bytes *b) { w64(b, blob_rec(b, 7) + 56, lora_fmt_rd64(b->p + blob_rec(b, 7) + 56) - 1); }
static size_t at_last_end_minus1(const t_bytes *b) { return b->len - 1; }

static void test_step10_blobs(void **state)
{
    (void)state;
    static const t_case cases[] = {
        {"ndim 0", e_ndim0, LORA_E_BAD_SHAPE, at_blob0_ndim},
        {"ndim 6", e_ndim6, LORA_E_BAD_SHAPE, at_blob0_ndim},
        {"zero dim", e_dim_zero, LORA_E_BAD_SHAPE, at_blob0_shape0},
        {"unused dim", e_unused_dim, LORA_E_BAD_SHAPE, at_blob2_shape1},
        {"numel overflow", e_numel_overflow, LORA_E_BAD_SHAPE, at_blob0_shape0},
        {"bytes overflow", e_bytes_overflow, LORA_E_BAD_SIZE, at_blob0_raw},
        {"partial Q8_0 block", e_partial_block, LORA_E_BAD_SHAPE, at_blob6_shape},
        {"raw size", e_raw_size, LORA_E_BAD_SIZE, at_blob0_raw},
        {"stored != raw", e_stored_ne_raw, LORA_E_BAD_SIZE, at_blob0_stored},
        {"zlib stored 0", e_zlib_stored0, LORA_E_BAD_SIZE, at_blob7_stored},
        {"zlib bomb", e_zlib_bomb, LORA_E_BAD_SIZE, at_blob7_raw},
        {"blob offset", e_blob_offset, LORA_E_BAD_OFFSET, at_blob1_offset},
        {"blob past end", e_blob_past_end, LORA_E_BAD_OFFSET, at_blob7_stored},
        {"blob end wraps", e_blob_end_wraps, LORA_E_BAD_OFFSET, at_blob7_stored},
        {"bytes after last blob", e_last_blob_short, LORA_E_TRAILING_BYTES, at_last_end_minus1},
    };
    run_cases(cases, sizeof cases / sizeof cases[0], NULL);
    /* At the guard the structure passes; the stream then fails to inflate. */
    t_bytes b = base_bytes();
    e_zlib_at_guard(&b);
    reseal(&b);
    lora_reader *r;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, &e), LORA_OK);
    assert_int_equal(lora_reader_verify_blob(r, 7, &e), LORA_E_BAD_COMPRESSED_DATA);
    lora_reader_free(r);
    free(b.p);
    /* the caller's cap on one blob's decoded size (blob 7 is the largest) */
    b = base_bytes();
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_blob_raw_size = 255;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, blob_rec(&b, 7) + 64);
    o.limits.max_blob_raw_size = 256;
    expect_open_ex(&b, &o, LORA_OK, ANY_OFF);
    /* bytes after the last blob, counted in file_size */
    t_bytes d = copy_bytes(&b, b.len + 64);
    w64(&d, 24, d.len);
    reseal(&d);
    expect_open_ex(&d, NULL, LORA_E_TRAILING_BYTES, b.len);
    free(d.p);
    free(b.p);
}

/* Steps 11-15. */
static void copy_strref(t_bytes *b, size_t dst_rec, size_t src_rec)
{
    memcpy(b->p + dst_rec, b->p + src_rec, 8);
}
static void e_dup_key(t_bytes *b) { copy_strref(b, meta_rec(b, 3), meta_rec(b, 1)); }
static void e_bool2(t_bytes *b) { w64(b, meta_rec(b, 3) + 16, 2); }
static void e_reserved_key_int(t_bytes *b) { w32(b, meta_rec(b, 0) + 8, 2); }
static void e_dup_module(t_bytes *b) { copy_strref(b, mod_rec(b, 1), mod_rec(b, 0)); }
static void e_rank0(t_bytes *b) { w32(b, mod_rec(b, 0) + 16, 0); }
static void e_alpha_nan(t_bytes *b) { w32(b, mod_rec(b, 0) + 20, 0x7FC00000u); }
static void e_alpha_inf(t_bytes *b) { w32(b, mod_rec(b, 1) + 20, 0xFF800000u); }
static void e_scale_ulp(t_bytes *b) { w32(b, mod_rec(b, 1) + 24, lora_fmt_rd32(b->p + mod_rec(b, 1) + 24) + 1); }
static void e_scale_rank_rule(t_bytes *b) { w32(b, mod_rec(b, 1) + 24, f32_bits(2.0f)); } /* alpha/r, not alpha/sqrt(r) */
static void e_explicit_scale(t_bytes *b)
{
    b->p[mod_rec(b, 0) + 9] = 2;
    w32(b, mod_rec(b, 0) + 24, f32_bits(-3.5f));
}
static void e_explicit_scale_inf(t_bytes *b)
{
    b->p[mod_rec(b, 0) + 9] = 2;
    w32(b, mod_rec(b, 0) + 24, 0x7F800000u);
}
static void e_flags_unknown(t_bytes *b) { w32(b, mod_rec(b, 0) + 12, 2); }
static void e_fifo_embedding(t_bytes *b) { w32(b, mod_rec(b, 1) + 12, 1); }
static void e_fifo_linear_ok(t_bytes *b) /* base stored [in,out] = [8,6] */
{
    w32(b, mod_rec(b, 0) + 12, 1);
    w64(b, mod_rec(b, 0) + 32, 8);
    w64(b, mod_rec(b, 0) + 40, 6);
}
static void e_fifo_linear_bad(t_bytes *b) { w32(b, mod_rec(b, 0) + 12, 1); }
static void e_base_ndim(t_bytes *b) { b->p[mod_rec(b, 0) + 10] = 3; }
static void e_base_dim0(t_bytes *b) { w64(b, mod_rec(b, 0) + 40, 0); }
static void e_base_unused(t_bytes *b) { w64(b, mod_rec(b, 0) + 64, 1); }
static void e_a_none(t_bytes *b) { w32(b, mod_rec(b, 0) + 72, 0xFFFFFFFFu); }
static void e_b_missing(t_bytes *b) { w32(b, mod_rec(b, 0) + 76, 8); }
static void e_mag_missing(t_bytes *b) { w32(b, mod_rec(b, 1) + 80, 100); }
static void e_a_shape(t_bytes *b) { w64(b, mod_rec(b, 0) + 40, 9); }
static void e_b_shape(t_bytes *b) { w64(b, mod_rec(b, 0) + 32, 7); }
static void e_mag_shape(t_bytes *b) { w32(b, mod_rec(b, 1) + 80, 0); }
static void e_bias_shape(t_bytes *b) { w32(b, mod_rec(b, 0) + 84, 4); }
static void e_bias_embedding(t_bytes *b) { w32(b, mod_rec(b, 1) + 84, 2); }
static void e_dup_tensor(t_bytes *b) { copy_strref(b, ten_rec(b, 1), ten_rec(b, 0)); }
static void e_tensor_ref(t_bytes *b) { w32(b, ten_rec(b, 1) + 8, 8); }
static void e_shared_tensors(t_bytes *b) { w32(b, ten_rec(b, 1) + 8, 6); }
static void e_tensor_takes_a(t_bytes *b) { w32(b, ten_rec(b, 0) + 8, 0); }
static void e_module_twice(t_bytes *b) { w32(b, mod_rec(b, 1) + 80, 2); } /* m1 magnitude = m0 bias ([6]) */
static void e_orphan(t_bytes *b) { w32(b, mod_rec(b, 0) + 84, 0xFFFFFFFFu); }
static void e_blob_padding(t_bytes *b)
{
    size_t r = blob_rec(b, 1);
    b->p[lora_fmt_rd64(b->p + r + 48) + lora_fmt_rd64(b->p + r + 56) + 5] = 0x10;
}

FIELD_AT(at_meta3, meta_rec, 3, 0)
FIELD_AT(at_meta3_val, meta_rec, 3, 16)
FIELD_AT(at_meta0_type, meta_rec, 0, 8)
FIELD_AT(at_mod1, mod_rec, 1, 0)
FIELD_AT(at_mod0_rank, mod_rec, 0, 16)
FIELD_AT(at_mod0_alpha, mod_rec, 0, 20)
FIELD_AT(at_mod1_alpha, mod_rec, 1, 20)
FIELD_AT(at_mod1_scale, mod_rec, 1, 24)
FIELD_AT(at_mod0_scale, mod_rec, 0, 24)
FIELD_AT(at_mod0_flags, mod_rec, 0, 12)
FIELD_AT(at_mod1_flags, mod_rec, 1, 12)
FIELD_AT(at_mod0_ndim, mod_rec, 0, 10)
FIELD_AT(at_mod0_base1, mod_rec, 0, 40)
FIELD_AT(at_mod0_base4, mod_rec, 0, 64)
FIELD_AT(at_mod0_a, mod_rec, 0, 72)
FIELD_AT(at_mod0_b, mod_rec, 0, 76)
FIELD_AT(at_mod0_bias, mod_rec, 0, 84)
FIELD_AT(at_mod1_mag, mod_rec, 1, 80)
FIELD_AT(at_mod1_bias, mod_rec, 1, 84)
FIELD_AT(at_ten1, ten_rec, 1, 0)
FIELD_AT(at_ten1_blob, ten_rec, 1, 8)
FIELD_AT(at_ten0_blob, ten_rec, 0, 8)
FIELD_AT(at_blob2, blob_rec, 2, 0)
static size_t at_blob1_pad(const t_bytes *b)
{
    size_t r = blob_rec(b, 1);
    return (size_t)(lora_fmt_rd64(b->p + r + 48) + lora_fmt_rd64(b->p + r + 56) + 5);
}

static void test_step11_15_semantics(void **state)
{
    (void)state;
    static const t_case cases[] = {
        {"duplicate key", e_dup_key, LORA_E_DUPLICATE_NAME, at_meta3},
        {"BOOL 2", e_bool2, LORA_E_BAD_METADATA, at_meta3_val},
        {"reserved key not STRING", e_reserved_key_int, LORA_E_BAD_METADATA, at_meta0_type},
        {"duplicate module", e_dup_module, LORA_E_DUPLICATE_NAME, at_mod1},
        {"rank 0", e_rank0, LORA_E_BAD_RANK, at_mod0_rank},
        {"alpha NaN", e_alpha_nan, LORA_E_BAD_ALPHA, at_mod0_alpha},
        {"alpha -inf", e_alpha_inf, LORA_E_BAD_ALPHA, at_mod1_alpha},
        {"scale one ulp off", e_scale_ulp, LORA_E_BAD_SCALE, at_mod1_scale},
        {"scale of the other rule", e_scale_rank_rule, LORA_E_BAD_SCALE, at_mod1_scale},
        {"explicit scale", e_explicit_scale, LORA_OK, NULL},
        {"explicit scale inf", e_explicit_scale_inf, LORA_E_BAD_SCALE, at_mod0_scale},
        {"unknown module flag", e_flags_unknown, LORA_E_RESERVED_NONZERO, at_mod0_flags},
        {"fan_in_fan_out on embedding", e_fifo_embedding, LORA_E_BAD_ENUM, at_mod1_flags},
        {"fan_in_fan_out linear", e_fifo_linear_ok, LORA_OK, NULL},
        {"fan_in_fan_out, base not transposed", e_fifo_linear_bad, LORA_E_BAD_SHAPE, at_mod0_a},
        {"base ndim", e_base_ndim, LORA_E_BAD_SHAPE, at_mod0_ndim},
        {"base dim 0", e_base_dim0, LORA_E_BAD_SHAPE, at_mod0_base1},
        {"base unused dim", e_base_unused, LORA_E_BAD_SHAPE, at_mod0_base4},
        {"A missing", e_a_none, LORA_E_BAD_BLOB_REF, at_mod0_a},
        {"B out of range", e_b_missing, LORA_E_BAD_BLOB_REF, at_mod0_b},
        {"magnitude out of range", e_mag_missing, LORA_E_BAD_BLOB_REF, at_mod1_mag},
        {"A shape", e_a_shape, LORA_E_BAD_SHAPE, at_mod0_a},
        {"B shape", e_b_shape, LORA_E_BAD_SHAPE, at_mod0_b},
        {"magnitude shape", e_mag_shape, LORA_E_BAD_SHAPE, at_mod1_mag},
        {"bias shape", e_bias_shape, LORA_E_BAD_SHAPE, at_mod0_bias},
        {"bias on embedding", e_bias_embedding, LORA_E_BAD_SHAPE, at_mod1_bias},
        {"duplicate tensor", e_dup_tensor, LORA_E_DUPLICATE_NAME, at_ten1},
        {"tensor blob out of range", e_tensor_ref, LORA_E_BAD_BLOB_REF, at_ten1_blob},
        {"two tensors, one blob", e_shared_tensors, LORA_E_BAD_BLOB_REF, at_ten1_blob},
        {"tensor takes a module's A", e_tensor_takes_a, LORA_E_BAD_BLOB_REF, at_ten0_blob},
        {"two modules, one blob", e_module_twice, LORA_E_BAD_BLOB_REF, at_mod1_mag},
        {"orphan blob", e_orphan, LORA_E_BAD_BLOB_REF, at_blob2},
        {"padding between blobs", e_blob_padding, LORA_E_NONZERO_PADDING, at_blob1_pad},
    };
    run_cases(cases, sizeof cases / sizeof cases[0], NULL);
    t_bytes b = base_bytes();
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_rank = 3;
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED, mod_rec(&b, 0) + 16);
    o.limits.max_rank = 4;
    expect_open_ex(&b, &o, LORA_OK, ANY_OFF);
    free(b.p);
}

/* The detail names the module, the blob and both shapes. */
static void test_error_details(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    e_a_shape(&b);
    reseal(&b);
    lora_error e;
    assert_int_equal(open_status(b.p, b.len, NULL, &e), LORA_E_BAD_SHAPE);
    assert_string_equal(e.detail, "module '" NAME_Q "': A blob 0 shape [4,8] does not match rank 4 and base [6,9] "
                                  "(expected [4,9])");
    free(b.p);
    b = base_bytes();
    e_blob_past_end(&b);
    reseal(&b);
    assert_int_equal(open_status(b.p, b.len, NULL, &e), LORA_E_BAD_OFFSET);
    char want[160];
    size_t r = blob_rec(&b, 7);
    snprintf(want, sizeof want, "blob 7: offset %llu + stored size %llu exceeds file size %zu",
             (unsigned long long)lora_fmt_rd64(b.p + r + 48), (unsigned long long)lora_fmt_rd64(b.p + r + 56), b.len);
    assert_string_equal(e.detail, want);
    free(b.p);
}

/* Several faults at once: the earliest step in the validation order wins,
 * and each step runs over every record before the next step starts. */
static void e_order_rank_and_dup_key(t_bytes *b)
{
    e_rank0(b);
    e_dup_key(b);
}
static void e_order_shape_then_reserved(t_bytes *b) /* blob 0 step 10, blob 5 step 9 */
{
    e_ndim0(b);
    e_blob_res3(b);
}
static void e_order_rank_and_dtype(t_bytes *b)
{
    e_rank0(b);
    e_blob_dtype(b);
}
static void e_order_bool_and_offset(t_bytes *b)
{
    e_bool2(b);
    e_blob_offset(b);
}
static void e_order_orphan_and_padding(t_bytes *b)
{
    e_orphan(b);
    e_blob_padding(b);
}
static void e_order_tensor_dup_and_module_shape(t_bytes *b)
{
    e_dup_tensor(b);
    e_a_shape(b);
}

static void test_validation_order(void **state)
{
    (void)state;
    static const t_case cases[] = {
        {"11 before 12", e_order_rank_and_dup_key, LORA_E_DUPLICATE_NAME, at_meta3},
        {"9 (all records) before 10", e_order_shape_then_reserved, LORA_E_RESERVED_NONZERO, at_blob5_res3},
        {"9 before 12", e_order_rank_and_dtype, LORA_E_UNSUPPORTED_DTYPE, at_blob5_dtype},
        {"10 before 11", e_order_bool_and_offset, LORA_E_BAD_OFFSET, at_blob1_offset},
        {"14 before 15", e_order_orphan_and_padding, LORA_E_BAD_BLOB_REF, at_blob2},
        {"12 before 13", e_order_tensor_dup_and_module_shape, LORA_E_BAD_SHAPE, at_mod0_a},
    };
    run_cases(cases, sizeof cases / sizeof cases[0], NULL);
    /* 2 before 4: a future major version with trailing bytes */
    t_bytes b = base_bytes();
    t_bytes d = copy_bytes(&b, b.len + 3);
    lora_fmt_wr16(d.p + 8, 3);
    expect_open(&d, LORA_E_UNSUPPORTED_VERSION);
    free(d.p);
    /* 5 before 6: misaligned data_offset is reported, not the checksum */
    e_data_misaligned(&b);
    expect_open(&b, LORA_E_MISALIGNED);
    free(b.p);
}

/* ---- blob data: checksums and zlib streams ---------------------------------------- */

static void test_blob_checksum(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    size_t r0 = blob_rec(&b, 0);
    uint64_t off = lora_fmt_rd64(b.p + r0 + 48);
    b.p[off + 17] ^= 0x04; /* blob bytes are not under the header checksum */
    lora_reader *r;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, &e), LORA_OK);
    assert_int_equal(lora_reader_verify_blob(r, 1, &e), LORA_OK);
    assert_int_equal(lora_reader_verify_blob(r, 0, &e), LORA_E_BLOB_CHECKSUM);
    assert_int_equal(e.offset, off);
    assert_non_null(strstr(e.detail, "blob 0 (module '" NAME_Q "' A)"));
    assert_int_equal(lora_reader_verify(r, &e), LORA_E_BLOB_CHECKSUM);
    float f[32];
    assert_int_equal(lora_reader_blob_decode_f32(r, 0, f, 32, &e), LORA_E_BLOB_CHECKSUM);
    assert_int_equal(lora_reader_blob_read(r, 0, f, sizeof f, &e), LORA_E_BLOB_CHECKSUM);
    uint64_t n;
    assert_int_equal(lora_reader_blob_count_nonfinite(r, 0, &n, &e), LORA_E_BLOB_CHECKSUM);
    /* a view is not verified (documented) */
    const void *v;
    size_t vs;
    assert_int_equal(lora_reader_blob_view(r, 0, &v, &vs), LORA_OK);
    lora_reader_free(r);
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.flags = LORA_READ_VERIFY_CHECKSUMS;
    expect_open_ex(&b, &o, LORA_E_BLOB_CHECKSUM, off);
    free(b.p);
}

/* A file whose only blob is F32 [64] (raw 256 bytes) stored as `z`. */
static t_bytes zlib_file(const uint8_t *z, size_t zn)
{
    t_file f;
    memset(&f, 0, sizeof f);
    tf_blob_raw(&f, 0, 1, 1, (uint64_t[]){64}, z, zn, 256);
    f.ten[f.nten++] = (t_ten){"w", 0};
    t_bytes b = tf_build(&f);
    tf_free(&f);
    return b;
}

static void expect_bad_stream(const uint8_t *z, size_t zn, const char *why)
{
    t_bytes b = zlib_file(z, zn);
    lora_reader *r;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, &e), LORA_OK);
    assert_int_equal(lora_reader_verify_blob(r, 0, &e), LORA_E_BAD_COMPRESSED_DATA);
    if (!strstr(e.detail, why)) fail_msg("detail '%s' lacks '%s'", e.detail, why);
    float out[64];
    assert_int_equal(lora_reader_blob_read(r, 0, out, sizeof out, &e), LORA_E_BAD_COMPRESSED_DATA);
    assert_int_equal(lora_reader_blob_decode_f32(r, 0, out, 64, &e), LORA_E_BAD_COMPRESSED_DATA);
    lora_reader_free(r);
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.flags = LORA_READ_VERIFY_CHECKSUMS;
    expect_open_ex(&b, &o, LORA_E_BAD_COMPRESSED_DATA, ANY_OFF);
    free(b.p);
}

static void test_zlib_streams(void **state)
{
    (void)state;
    uint8_t raw[300];
    for (int i = 0; i < 300; i++) raw[i] = (uint8_t)(i * 7 % 13);
    uint8_t *z;
    size_t zn = zlib_pack(raw, 256, &z);
    uint8_t buf[1024];
    /* good stream */
    t_bytes b = zlib_file(z, zn);
    expect_open(&b, LORA_OK);
    free(b.p);
    /* trailing byte, and a second stream after the first */
    memcpy(buf, z, zn);
    buf[zn] = 0;
    expect_bad_stream(buf, zn + 1, "after the end");
    memcpy(buf + zn, z, zn);
    expect_bad_stream(buf, 2 * zn, "after the end");
    /* truncated: no adler32, and half the stream */
    expect_bad_stream(z, zn - 4, "truncated");
    expect_bad_stream(z, zn / 2, "truncated");
    /* damaged data and damaged adler32 */
    memcpy(buf, z, zn);
    buf[zn - 1] ^= 1;
    expect_bad_stream(buf, zn, "damaged");
    memcpy(buf, z, zn);
    buf[0] = 0x78;
    buf[1] = 0x00; /* header check bits wrong */
    expect_bad_stream(buf, zn, "damaged");
    free(z);
    /* too short and too long for raw_size */
    zn = zlib_pack(raw, 252, &z);
    expect_bad_stream(z, zn, "ends after 252 of 256");
    free(z);
    zn = zlib_pack(raw, 260, &z);
    expect_bad_stream(z, zn, "more than the raw size");
    free(z);
    /* a preset dictionary the reader cannot have */
    z_stream s;
    memset(&s, 0, sizeof s);
    assert_int_equal(deflateInit(&s, 9), Z_OK);
    assert_int_equal(deflateSetDictionary(&s, (const Bytef *)"dictionary", 10), Z_OK);
    s.next_in = raw;
    s.avail_in = 256;
    s.next_out = buf;
    s.avail_out = sizeof buf;
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    zn = sizeof buf - s.avail_out;
    deflateEnd(&s);
    expect_bad_stream(buf, zn, "dictionary");
}

/* ---- allocation: failure injection and limits ---------------------------------------- */

typedef struct {
    long fail_at; /* 1-based index of the allocation to fail; 0 = never */
    long calls;
    long live;
    size_t largest;
} t_alloc;

static void *t_alloc_fn(void *opaque, size_t size)
{
    t_alloc *a = opaque;
    a->calls++;
    if (size > a->largest) a->largest = size;
    if (a->calls == a->fail_at) return NULL;
    void *p = malloc(size);
    if (p) a->live++;
    return p;
}

static void t_free_fn(void *opaque, void *p)
{
    t_alloc *a = opaque;
    if (p) a->live--;
    free(p);
}

static lora_read_options counting_options(t_alloc *a, uint32_t flags)
{
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.flags = flags;
    o.allocator.alloc = t_alloc_fn;
    o.allocator.free = t_free_fn;
    o.allocator.opaque = a;
    return o;
}

/* Fail allocation N = 1, 2, ... until open (with blob verification, so
 * zlib's own allocations are included) succeeds. */
static void test_alloc_failure_open(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    long n;
    for (n = 1; n < 1000; n++) {
        t_alloc a = {n, 0, 0, 0};
        lora_read_options o = counting_options(&a, LORA_READ_VERIFY_CHECKSUMS);
        lora_reader *r = NULL;
        lora_error e;
        lora_status st = lora_reader_open_buffer(b.p, b.len, &o, &r, &e);
        if (st == LORA_OK) {
            assert_true(a.calls < n); /* every allocation succeeded */
            lora_reader_free(r);
            assert_int_equal(a.live, 0);
            break;
        }
        if (st != LORA_E_OUT_OF_MEMORY) fail_msg("N=%ld: %s (%s)", n, lora_status_name(st), e.detail);
        assert_int_equal(e.status, LORA_E_OUT_OF_MEMORY);
        assert_null(r);
        assert_int_equal(a.live, 0);
    }
    assert_true(n > 8); /* reader, 4 tables, strings, 2 indexes, zlib state at least */
    free(b.p);
}

/* The same for the calls that allocate after open: inflating a zlib blob. */
static void test_alloc_failure_decode(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    t_alloc a = {0, 0, 0, 0};
    lora_read_options o = counting_options(&a, 0);
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, &o, &r, NULL), LORA_OK);
    long base_live = a.live;
    float out[64];
    for (int call = 0; call < 3; call++) {
        long n;
        for (n = 1; n < 100; n++) {
            a.calls = 0;
            a.fail_at = n;
            lora_error e;
            lora_status st;
            uint64_t cnt;
            if (call == 0) st = lora_reader_blob_decode_f32(r, 7, out, 64, &e);
            else if (call == 1) st = lora_reader_verify_blob(r, 7, &e);
            else st = lora_reader_blob_count_nonfinite(r, 7, &cnt, &e);
            assert_int_equal(a.live, base_live);
            if (st == LORA_OK) break;
            if (st != LORA_E_OUT_OF_MEMORY) fail_msg("call %d N=%ld: %s (%s)", call, n, lora_status_name(st), e.detail);
        }
        assert_true(n > 1);
    }
    a.fail_at = 0;
    lora_reader_free(r);
    assert_int_equal(a.live, 0);
    free(b.p);
}

/* Limits and hostile counts are refused before anything is allocated. */
static void test_limits_before_allocation(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    t_alloc a = {0, 0, 0, 0};
    lora_read_options o = counting_options(&a, 0);
    o.limits.max_modules = 1;
    lora_error e;
    assert_int_equal(open_status(b.p, b.len, &o, &e), LORA_E_LIMIT_EXCEEDED);
    assert_int_equal(e.offset, 52);
    assert_int_equal(a.calls, 0);
    /* a tiny file claiming 2^20 modules (within the limit) and 2^22 blobs */
    t_bytes d = copy_bytes(&b, b.len);
    w32(&d, 52, 1u << 20);
    w32(&d, 76, 1u << 22);
    reseal(&d);
    o = counting_options(&a, 0);
    assert_int_equal(open_status(d.p, d.len, &o, &e), LORA_E_BAD_OFFSET);
    assert_int_equal(a.calls, 0);
    /* counts consistent with the offsets but past data_offset */
    w64(&d, 64, lora_fmt_rd64(d.p + 56) + 96ull * (1u << 20));
    w64(&d, 80, lora_fmt_rd64(d.p + 64) + 16ull * lora_fmt_rd32(d.p + 72));
    w64(&d, 88, lora_fmt_rd64(d.p + 80) + 80ull * (1u << 22));
    reseal(&d);
    assert_int_equal(open_status(d.p, d.len, &o, &e), LORA_E_BAD_OFFSET);
    assert_int_equal(e.offset, 96);
    assert_int_equal(a.calls, 0);
    free(d.p);
    /* a valid open allocates little more than the file's size */
    a = (t_alloc){0, 0, 0, 0};
    o = counting_options(&a, 0);
    assert_int_equal(open_status(b.p, b.len, &o, &e), LORA_OK);
    assert_true(a.largest <= b.len);
    assert_int_equal(a.live, 0);
    free(b.p);
}

/* ---- every truncation, every bit flip ---------------------------------------------------- */

static void test_every_truncation(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    for (size_t n = 0; n < b.len; n++) {
        lora_error e;
        lora_status st = open_status(b.p, n, NULL, &e);
        if (st != LORA_E_TRUNCATED) fail_msg("prefix %zu: %s (%s)", n, lora_status_name(st), e.detail);
    }
    free(b.p);
}

static void test_every_bit_flip(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    size_t opened = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.p[i] ^= (uint8_t)(1u << bit);
            lora_reader *r;
            lora_error e;
            if (lora_reader_open_buffer(b.p, b.len, NULL, &r, &e) == LORA_OK) {
                opened++;
                lora_status st = lora_reader_verify(r, &e);
                if (st == LORA_OK) fail_msg("flip of bit %d at byte %zu is not detected", bit, i);
                assert_true(st == LORA_E_BLOB_CHECKSUM);
                lora_reader_free(r);
            }
            b.p[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_true(opened > 0); /* blob bytes are only caught by verify */
    free(b.p);
}

/* ---- files and options ------------------------------------------------------------------------- */

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_open_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/lora-test-reader-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    t_bytes b = base_bytes();
    snprintf(path, sizeof path, "%s/a.lora", dir);
    write_file(path, b.p, b.len);
    lora_reader *r;
    lora_error e;
    assert_int_equal(lora_reader_open_file(path, NULL, &r, &e), LORA_OK);
    const void *v;
    size_t vs;
    assert_int_equal(lora_reader_blob_view(r, 1, &v, &vs), LORA_OK);
    assert_int_equal((uintptr_t)v % 64, 0);
    assert_memory_equal(v, b.p + lora_fmt_rd64(b.p + blob_rec(&b, 1) + 48), vs);
    assert_int_equal(lora_reader_verify(r, &e), LORA_OK);
    lora_module m;
    assert_int_equal(lora_reader_module(r, 0, &m), LORA_OK);
    assert_string_equal(m.name, NAME_Q);
    lora_reader_free(r);
    /* a damaged file: the mapping is released on failure (ASan/valgrind) */
    b.p[200] ^= 1;
    write_file(path, b.p, b.len);
    assert_int_equal(lora_reader_open_file(path, NULL, &r, &e), LORA_E_HEADER_CHECKSUM);
    assert_null(r);
    /* empty file */
    write_file(path, "", 0);
    assert_int_equal(lora_reader_open_file(path, NULL, &r, &e), LORA_E_TRUNCATED);
    /* not regular files */
    assert_int_equal(lora_reader_open_file(dir, NULL, &r, &e), LORA_E_NOT_REGULAR_FILE);
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(lora_reader_open_file(fifo, NULL, &r, &e), LORA_E_NOT_REGULAR_FILE);
    /* missing */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/missing.lora", dir);
    assert_int_equal(lora_reader_open_file(missing, NULL, &r, &e), LORA_E_IO);
    assert_non_null(strstr(e.detail, "No such file"));
    assert_non_null(strstr(e.detail, "missing.lora"));
    unlink(fifo);
    unlink(path);
    rmdir(dir);
    free(b.p);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    lora_reader *r;
    lora_error e;
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.reserved0 = 1;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, &o, &r, &e), LORA_E_INVALID_ARGUMENT);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.reserved[3] = 1;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, &o, &r, &e), LORA_E_INVALID_ARGUMENT);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.flags = 2;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, &o, &r, &e), LORA_E_INVALID_ARGUMENT);
    o = (lora_read_options)LORA_READ_OPTIONS_INIT;
    o.allocator.alloc = t_alloc_fn;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, &o, &r, &e), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_open_buffer(NULL, 10, NULL, &r, &e), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, NULL, &e), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_open_file(NULL, NULL, &r, &e), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, NULL), LORA_OK);
    lora_meta m;
    assert_int_equal(lora_reader_meta_find(r, NULL, &m), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_meta(NULL, 0, &m), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_blob_decode_f32(r, 0, NULL, 32, &e), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_reader_blob_read(r, 99, &m, sizeof m, &e), LORA_E_INVALID_ARGUMENT);
    lora_file_info fi;
    lora_reader_file_info(NULL, &fi); /* no crash */
    lora_reader_free(r);
    free(b.p);
}

/* Conv modules: A [r,cin,k..], B [out,r,1..], for 1-D, 2-D and 3-D. */
static void test_conv_modules(void **state)
{
    (void)state;
    for (uint32_t nd = 3; nd <= 5; nd++) {
        for (int broken = 0; broken < 3; broken++) {
            t_file f;
            memset(&f, 0, sizeof f);
            uint32_t seed = nd;
            uint64_t base[5] = {8, 3, 3, 2, 2}, a[5] = {2, 3, 3, 2, 2}, bshape[5] = {8, 2, 1, 1, 1};
            if (broken == 1) a[nd - 1] = 1;      /* kernel dim differs */
            if (broken == 2) bshape[nd - 1] = 3; /* B's trailing dims must be 1 */
            uint32_t ia = tf_blob_f32(&f, nd, a, &seed), ib = tf_blob_f32(&f, nd, bshape, &seed);
            uint32_t im = tf_module(&f, "conv", (uint8_t)(nd - 1), 0, 2, 3.0f, nd, base, ia, ib);
            f.mod[im].bias = tf_blob_f32(&f, 1, (uint64_t[]){8}, &seed);
            t_bytes b = tf_build(&f);
            size_t want_off = broken == 0 ? ANY_OFF : mod_rec(&b, 0) + (broken == 1 ? 72 : 76);
            expect_open_ex(&b, NULL, broken ? LORA_E_BAD_SHAPE : LORA_OK, want_off);
            if (!broken) {
                /* a conv module's base_ndim is fixed by its kind */
                b.p[mod_rec(&b, 0) + 10] = (uint8_t)(nd == 3 ? 4 : 3);
                reseal(&b);
                expect_open_ex(&b, NULL, LORA_E_BAD_SHAPE, mod_rec(&b, 0) + 10);
            }
            free(b.p);
            tf_free(&f);
        }
    }
}

/* ---- format layer on its own ------------------------------------------------------------------ */

static void test_format_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        int ok;
    } cases[] = {
        {"a", 1, 1},
        {"", 0, 0},                     /* empty is not a valid name */
        {"a\0b", 3, 0},                 /* NUL */
        {"\xC3\xA9", 2, 1},             /* U+00E9 */
        {"\xC3", 1, 0},                 /* truncated */
        {"\xC0\xAF", 2, 0},             /* overlong '/' */
        {"\xC1\xBF", 2, 0},             /* overlong */
        {"\xE0\x80\xAF", 3, 0},         /* overlong 3-byte */
        {"\xE0\xA0\x80", 3, 1},         /* U+0800 */
        {"\xED\x9F\xBF", 3, 1},         /* U+D7FF */
        {"\xED\xA0\x80", 3, 0},         /* U+D800 surrogate */
        {"\xED\xBF\xBF", 3, 0},         /* U+DFFF surrogate */
        {"\xEF\xBF\xBF", 3, 1},         /* U+FFFF */
        {"\xF0\x8F\xBF\xBF", 4, 0},     /* overlong 4-byte */
        {"\xF0\x90\x80\x80", 4, 1},     /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 4, 1},     /* U+10FFFF */
        {"\xF4\x90\x80\x80", 4, 0},     /* U+110000 */
        {"\xF5\x80\x80\x80", 4, 0},
        {"\xF8\x88\x80\x80\x80", 5, 0}, /* 5-byte form */
        {"\x80", 1, 0},                 /* lone continuation */
        {"\xE2\x82", 2, 0},             /* truncated 3-byte */
        {"\xE2\x28\xA1", 3, 0},         /* bad continuation */
        {"\xFF", 1, 0},
        {"model.layers.0.\xE2\x82\xAC", 18, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (lora_fmt_utf8_valid((const uint8_t *)cases[i].s, cases[i].n) != cases[i].ok)
            fail_msg("utf8 case %zu", i);
    assert_int_equal(lora_fmt_utf8_valid(NULL, 3), 0);
}

static void test_format_dtypes(void **state)
{
    (void)state;
    static const char *names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "NF4"};
    static const uint32_t elems[] = {1, 1, 1, 32, 32, 64}, bytes[] = {4, 2, 2, 34, 18, 36};
    for (uint32_t d = 0; d < 6; d++) {
        assert_true(lora_fmt_dtype_valid(d));
        assert_string_equal(lora_fmt_dtype_name(d), names[d]);
        assert_int_equal(lora_fmt_dtype_block_elems(d), elems[d]);
        assert_int_equal(lora_fmt_dtype_block_bytes(d), bytes[d]);
    }
    assert_false(lora_fmt_dtype_valid(6));
    assert_null(lora_fmt_dtype_name(6));
    assert_int_equal(lora_fmt_dtype_block_elems(99), 0);
    uint64_t n;
    assert_int_equal(lora_fmt_dtype_raw_size(3, 64, &n), LORA_OK);
    assert_int_equal(n, 68);
    assert_int_equal(lora_fmt_dtype_raw_size(5, 128, &n), LORA_OK);
    assert_int_equal(n, 72);
    assert_int_equal(lora_fmt_dtype_raw_size(4, 33, &n), LORA_E_BAD_SHAPE);
    assert_int_equal(lora_fmt_dtype_raw_size(0, UINT64_MAX / 4 + 1, &n), LORA_E_BAD_SIZE);
    assert_int_equal(lora_fmt_dtype_raw_size(7, 1, &n), LORA_E_UNSUPPORTED_DTYPE);
    uint64_t dims[5] = {3, 5, 7, 1, 2};
    assert_int_equal(lora_fmt_shape_numel(5, dims, &n), LORA_OK);
    assert_int_equal(n, 210);
    assert_int_equal(lora_fmt_shape_numel(0, dims, &n), LORA_E_BAD_SHAPE);
    assert_int_equal(lora_fmt_shape_numel(6, dims, &n), LORA_E_BAD_SHAPE);
    uint64_t big[3] = {4194305, 4194305, 211106198978564}; /* wraps to 4 in u64 */
    assert_int_equal(lora_fmt_shape_numel(3, big, &n), LORA_E_BAD_SHAPE);
    uint64_t zero[2] = {5, 0};
    assert_int_equal(lora_fmt_shape_numel(2, zero, &n), LORA_E_BAD_SHAPE);
}

static void test_format_decoders(void **state)
{
    (void)state;
    t_bytes b = base_bytes();
    lora_fmt_header h;
    lora_fmt_fault f;
    assert_int_equal(lora_fmt_decode_header(b.p, b.len, &h, &f), LORA_OK);
    assert_int_equal(h.module_count, 2);
    assert_int_equal(h.blob_count, 8);
    assert_int_equal(h.file_size, b.len);
    /* records shorter than their size */
    lora_fmt_module m;
    lora_fmt_blob bl;
    lora_fmt_meta me;
    lora_fmt_tensor t;
    size_t r = mod_rec(&b, 0);
    assert_int_equal(lora_fmt_decode_module(b.p + r, 95, r, &m, &f), LORA_E_TRUNCATED);
    assert_int_equal(f.offset, r);
    assert_int_equal(lora_fmt_decode_module(b.p + r, 96, r, &m, &f), LORA_OK);
    assert_int_equal(m.rank, 4);
    assert_int_equal(m.blob_bias, 2);
    r = blob_rec(&b, 7);
    assert_int_equal(lora_fmt_decode_blob(b.p + r, 79, r, &bl, &f), LORA_E_TRUNCATED);
    assert_int_equal(lora_fmt_decode_blob(b.p + r, 80, r, &bl, &f), LORA_OK);
    assert_int_equal(bl.compression, 1);
    assert_int_equal(bl.raw_size, 256);
    r = meta_rec(&b, 0);
    assert_int_equal(lora_fmt_decode_meta(b.p + r, 23, r, &me, &f), LORA_E_TRUNCATED);
    assert_int_equal(lora_fmt_decode_meta(b.p + r, 24, r, &me, &f), LORA_OK);
    assert_int_equal(me.str.length, 23);
    r = ten_rec(&b, 1);
    assert_int_equal(lora_fmt_decode_tensor(b.p + r, 15, r, &t, &f), LORA_E_TRUNCATED);
    assert_int_equal(lora_fmt_decode_tensor(b.p + r, 16, r, &t, &f), LORA_OK);
    assert_int_equal(t.blob, 7);
    /* a fault names the field and gives the file offset */
    r = mod_rec(&b, 1);
    b.p[r + 9] = 7;
    assert_int_equal(lora_fmt_decode_module(b.p + r, 96, r, &m, &f), LORA_E_BAD_ENUM);
    assert_int_equal(f.status, LORA_E_BAD_ENUM);
    assert_int_equal(f.offset, r + 9);
    assert_string_equal(f.field, "module.scaling");
    /* the combined header decoder also checks the table layout */
    w64(&b, 56, lora_fmt_rd64(b.p + 56) + 8);
    assert_int_equal(lora_fmt_decode_header(b.p, b.len, &h, &f), LORA_E_BAD_OFFSET);
    assert_string_equal(f.field, "header.modules_offset");
    assert_int_equal(lora_fmt_decode_header(NULL, 0, &h, &f), LORA_E_TRUNCATED);
    free(b.p);
}

/* Records may share string bytes: sixteen values naming the whole string
 * table are legal and each comes back NUL-terminated, but the bytes they
 * reference count against the string limit (plus one per reference). */
static void test_shared_strings(void **state)
{
    (void)state;
    t_file f;
    memset(&f, 0, sizeof f);
    static const char *keys[16] = {"k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07",
                                   "k08", "k09", "k10", "k11", "k12", "k13", "k14", "k15"};
    for (int i = 0; i < 16; i++) tf_meta(&f, keys[i], 1, "value", 0);
    t_bytes b = tf_build(&f);
    uint64_t ss = lora_fmt_rd64(b.p + 96);
    for (uint32_t i = 0; i < 16; i++) w64(&b, meta_rec(&b, i) + 16, ss << 32); /* [0, ss) */
    reseal(&b);
    lora_reader *r;
    lora_error e;
    assert_int_equal(lora_reader_open_buffer(b.p, b.len, NULL, &r, &e), LORA_OK);
    lora_meta m;
    assert_int_equal(lora_reader_meta_find(r, "k15", &m), LORA_OK);
    assert_int_equal(m.string_length, ss);
    assert_memory_equal(m.string, b.p + strings_off(&b), ss);
    assert_int_equal(m.string[ss], '\0');
    lora_reader_free(r);
    /* the budget: max_string_bytes + 32 references; the table itself fits */
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.limits.max_string_bytes = ss;
    uint64_t per = 3 + 1 + ss + 1; /* key + NUL + value + NUL */
    uint32_t failing = (uint32_t)((ss + 32) / per); /* the record that crosses it */
    expect_open_ex(&b, &o, LORA_E_LIMIT_EXCEEDED,
                   (ss + 32) % per >= 4 ? meta_rec(&b, failing) + 16 : meta_rec(&b, failing));
    free(b.p);
    tf_free(&f);
}

/* The name index against brute force: order, first duplicate, lookups. */
static void test_name_index(void **state)
{
    (void)state;
    enum { N = 700 };
    static char names[N][8];
    lora_name_ix v[N], tmp[N];
    uint32_t seed = 4242;
    for (uint32_t trial = 0; trial < 20; trial++) {
        size_t n = 1 + trial * 37 % N;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1664525u + 1013904223u;
            /* short names from a small alphabet: prefixes and repeats happen */
            size_t len = 1 + (seed >> 24) % (trial < 10 ? 3 : 6);
            for (size_t k = 0; k < len; k++) names[i][k] = (char)('a' + (seed >> (k * 3)) % 3);
            names[i][len] = '\0';
            v[i] = (lora_name_ix){names[i], (uint32_t)len, (uint32_t)i};
        }
        lora_read_sort_names(v, tmp, n);
        for (size_t i = 1; i < n; i++) {
            int c = strcmp(v[i - 1].s, v[i].s);
            assert_true(c < 0 || (c == 0 && v[i - 1].index < v[i].index));
        }
        uint32_t want = UINT32_MAX, want_first = UINT32_MAX;
        for (uint32_t j = 0; j < n && want == UINT32_MAX; j++)
            for (uint32_t i = 0; i < j; i++)
                if (strcmp(names[i], names[j]) == 0) {
                    want = j;
                    want_first = i;
                    break;
                }
        uint32_t first, dup = lora_read_find_duplicate(v, n, &first);
        assert_int_equal(dup, want);
        if (want != UINT32_MAX) assert_int_equal(first, want_first);
        uint32_t hit = lora_read_lookup(v, n, names[n / 2], strlen(names[n / 2]));
        assert_true(hit != UINT32_MAX && strcmp(names[hit], names[n / 2]) == 0);
        assert_int_equal(lora_read_lookup(v, n, "abcabca", 7), UINT32_MAX); /* longer than any name */
    }
}

/* ---- with the writer ------------------------------------------------------------------------------- */

/* What lora_writer produces opens, and reads back what went in. */
static void test_writer_round_trip(void **state)
{
    (void)state;
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, LORA_META_ARCHITECTURE, "llama", 5), LORA_OK);
    assert_int_equal(lora_writer_set_int(w, "train.steps", 123456789012345), LORA_OK);
    uint32_t seed = 99;
    float a[4 * 8], bm[6 * 4], t[128];
    for (int i = 0; i < 32; i++) a[i] = next_value(&seed);
    for (int i = 0; i < 24; i++) bm[i] = next_value(&seed);
    for (int i = 0; i < 128; i++) t[i] = (float)(i % 16) * 0.125f - 1.0f;
    uint32_t ia, ib, it;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, (uint64_t[]){4, 8}, a, 32, LORA_COMPRESSION_NONE, &ia),
                     LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, (uint64_t[]){6, 4}, bm, 24, LORA_COMPRESSION_ZLIB, &ib),
                     LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_Q8_0, 1, (uint64_t[]){128}, t, 128, LORA_COMPRESSION_ZLIB, &it),
                     LORA_OK);
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = NAME_Q;
    d.kind = LORA_KIND_LINEAR;
    d.scaling = LORA_SCALING_ALPHA_OVER_SQRT_RANK;
    d.rank = 4;
    d.alpha = 16.0f;
    d.base_ndim = 2;
    d.base_shape[0] = 6;
    d.base_shape[1] = 8;
    d.blob_a = ia;
    d.blob_b = ib;
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    uint32_t im;
    assert_int_equal(lora_writer_add_module(w, &d, &im), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "lm_head.weight", it), LORA_OK);
    uint64_t size;
    lora_error e;
    assert_int_equal(lora_writer_size(w, &size, &e), LORA_OK);
    uint8_t *buf = malloc((size_t)size);
    assert_non_null(buf);
    size_t written;
    assert_int_equal(lora_writer_write_buffer(w, buf, (size_t)size, &written, &e), LORA_OK);
    assert_int_equal(written, size);
    lora_writer_free(w);

    lora_reader *r;
    lora_read_options o = LORA_READ_OPTIONS_INIT;
    o.flags = LORA_READ_VERIFY_CHECKSUMS;
    assert_int_equal(lora_reader_open_buffer(buf, written, &o, &r, &e), LORA_OK);
    lora_meta m;
    assert_int_equal(lora_reader_meta_find(r, LORA_META_ARCHITECTURE, &m), LORA_OK);
    assert_string_equal(m.string, "llama");
    assert_int_equal(lora_reader_meta_find(r, "train.steps", &m), LORA_OK);
    assert_int_equal(m.integer, 123456789012345);
    uint32_t idx;
    assert_int_equal(lora_reader_module_find(r, NAME_Q, &idx), LORA_OK);
    lora_module mod;
    assert_int_equal(lora_reader_module(r, idx, &mod), LORA_OK);
    assert_true(mod.scale == 16.0f / sqrtf(4.0f));
    float out[128];
    assert_int_equal(lora_reader_blob_decode_f32(r, mod.blob_a, out, 32, &e), LORA_OK);
    assert_memory_equal(out, a, sizeof a);
    assert_int_equal(lora_reader_blob_decode_f32(r, mod.blob_b, out, 24, &e), LORA_OK);
    assert_memory_equal(out, bm, sizeof bm);
    lora_tensor ten;
    assert_int_equal(lora_reader_tensor(r, 0, &ten), LORA_OK);
    assert_int_equal(lora_reader_blob_decode_f32(r, ten.blob, out, 128, &e), LORA_OK);
    for (int i = 0; i < 128; i++) assert_true(fabsf(out[i] - t[i]) <= 1.0f / 127.0f);
    lora_reader_free(r);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_file_opens),
        cmocka_unit_test(test_one_module_queries),
        cmocka_unit_test(test_base_file_queries),
        cmocka_unit_test(test_unaligned_buffer_decode),
        cmocka_unit_test(test_large_blobs_decode),
        cmocka_unit_test(test_conv_modules),
        cmocka_unit_test(test_step1_3_magic_version_header),
        cmocka_unit_test(test_step4_5_file_size_data_offset),
        cmocka_unit_test(test_step6_7_checksum_flags),
        cmocka_unit_test(test_step8_tables),
        cmocka_unit_test(test_step9_records),
        cmocka_unit_test(test_step10_blobs),
        cmocka_unit_test(test_step11_15_semantics),
        cmocka_unit_test(test_validation_order),
        cmocka_unit_test(test_error_details),
        cmocka_unit_test(test_blob_checksum),
        cmocka_unit_test(test_zlib_streams),
        cmocka_unit_test(test_alloc_failure_open),
        cmocka_unit_test(test_alloc_failure_decode),
        cmocka_unit_test(test_limits_before_allocation),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_format_utf8),
        cmocka_unit_test(test_format_dtypes),
        cmocka_unit_test(test_format_decoders),
        cmocka_unit_test(test_shared_strings),
        cmocka_unit_test(test_name_index),
        cmocka_unit_test(test_writer_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
