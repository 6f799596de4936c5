/*
 * test_writer.c - the record encoders, the writer and its crash-safe file
 * write.
 *
 * Oracles are independent of the library: hand-computed bytes for the
 * encoders and the smallest files, float64 round-to-nearest-even for
 * F16/BF16, the reference quantizers re-derived from the design notes for
 * Q8_0/Q4_0/NF4, zlib's compress2 and xxHash called directly for the stored
 * bytes and checksums. Faults are injected through the writer's I/O table
 * and allocator hook at every call index until the operation succeeds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include "lora.h"
#include "lora_format.h"
#include "write/io.h"
#include "support.h"

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */
/* ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [-scale, scale). */
static float rng_float(uint64_t *s, float scale)
{
    return ((float)(rng_next(s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void write_whole(const char *path, const void *data, size_t size, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, size), (ssize_t)size);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int file_equals(const char *path, const void *data, size_t size)
{
    size_t n = 0;
    uint8_t *p = ts_read_file(path, &n);
    int eq = p && n == size && memcmp(p, data, size) == 0;
    free(p);
    return eq;
}

/* Names the writer's temp files could have: ".<anything>.tmp". */
static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' && len > 5 && strcmp(e->d_name + len - 4, ".tmp") == 0) n++;
    }
    closedir(d);
    return n;
}

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int setup_tmpdir(void **state)
{
    char tmpl[] = "/tmp/lora-test-writer-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return -1;
    *state = strdup(dir);
    return *state ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
    int r = nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return r;
}

/* ------------------------------------------------------------------------ */
/* independent numeric references                                           */
/* ------------------------------------------------------------------------ */

/* Round x to a binary format with p significant bits, minimum normal
 * exponent emin and maximum exponent emax, to nearest even, in float64
 * (every step is exact: power-of-two scaling and rint). */
static double round_format(double x, int p, int emin, int emax)
{
    if (isnan(x) || isinf(x) || x == 0) return x;
    int e;
    (void)frexp(fabs(x), &e);
    int exp = e - 1 < emin ? emin : e - 1;
    double q = ldexp(1.0, exp - (p - 1));
    double r = nearbyint(fabs(x) / q) * q;
    if (r >= ldexp(1.0, emax + 1)) r = INFINITY;
    return copysign(r, x);
}

static float ref_f16(float x) { return (float)round_format(x, 11, -14, 15); }
static float ref_bf16(float x) { return (float)round_format(x, 8, -126, 127); }

/* NF4 code book, as printed in the design notes. */
static const float nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

static void ref_q8_0(const float *x, float *out, size_t n)
{
    for (size_t b = 0; b < n; b += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        float dq = ref_f16(d);
        for (int i = 0; i < 32; i++) out[b + i] = (float)(int8_t)roundf(x[b + i] * id) * dq; /* stored as int8: no -0 */
    }
}

static void ref_q4_0(const float *x, float *out, size_t n)
{
    for (size_t b = 0; b < n; b += 32) {
        float amax = 0, m = 0;
        for (int i = 0; i < 32; i++)
            if (fabsf(x[b + i]) > amax) { amax = fabsf(x[b + i]); m = x[b + i]; }
        float d = m / -8.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        float dq = ref_f16(d);
        for (int i = 0; i < 32; i++) {
            int q = (int8_t)(x[b + i] * id + 8.5f);
            if (q > 15) q = 15;
            out[b + i] = (float)(q - 8) * dq;
        }
    }
}

static void ref_nf4(const float *x, float *out, size_t n)
{
    for (size_t b = 0; b < n; b += 64) {
        float absmax = 0;
        for (int i = 0; i < 64; i++) absmax = fmaxf(absmax, fabsf(x[b + i]));
        for (int i = 0; i < 64; i++) {
            float v = absmax != 0 ? x[b + i] / absmax : 0.0f;
            int idx = 0;
            for (int k = 0; k < 15; k++)
                if (v > (nf4_code[k] + nf4_code[k + 1]) / 2.0f) idx++;
            out[b + i] = nf4_code[idx] * absmax;
        }
    }
}

static void ref_decode(lora_dtype dt, const float *x, float *out, size_t n)
{
    switch (dt) {
    case LORA_DTYPE_F32: memcpy(out, x, n * sizeof *x); return;
    case LORA_DTYPE_F16: for (size_t i = 0; i < n; i++) out[i] = ref_f16(x[i]); return;
    case LORA_DTYPE_BF16: for (size_t i = 0; i < n; i++) out[i] = ref_bf16(x[i]); return;
    case LORA_DTYPE_Q8_0: ref_q8_0(x, out, n); return;
    case LORA_DTYPE_Q4_0: ref_q4_0(x, out, n); return;
    case LORA_DTYPE_NF4: ref_nf4(x, out, n); return;
    }
    fail();
}

/* Bit-equal, except that any NaN matches any NaN. */
static void assert_floats_equal(const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]) && isnan(got[i])) continue;
        if (f32_bits(got[i]) != f32_bits(want[i]))
            fail_msg("value %zu: got %.9g (0x%08x), want %.9g (0x%08x)", i, (double)got[i], f32_bits(got[i]),
                     (double)want[i], f32_bits(want[i]));
    }
}

/* ------------------------------------------------------------------------ */
/* encoders: hand-computed bytes                                            */
/* ------------------------------------------------------------------------ */

static void test_encode_records(void **state)
{
    (void)state;
    uint8_t buf[128];

    lora_fmt_meta m = {{0x01020304, 5}, LORA_FMT_META_STRING, {0x11, 0x22}, 0xFFFFFFFFFFFFFFFFu};
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(lora_fmt_encode_meta(&m, buf, 24), LORA_OK);
    const uint8_t meta_want[24] = {4, 3, 2, 1, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0x22, 0, 0, 0};
    assert_memory_equal(buf, meta_want, 24);
    assert_int_equal(buf[24], 0xAA); /* exactly the record */
    m.type = LORA_FMT_META_INT;
    m.bits = UINT64_C(0x8877665544332211);
    assert_int_equal(lora_fmt_encode_meta(&m, buf, 24), LORA_OK);
    const uint8_t int_want[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    assert_memory_equal(buf + 16, int_want, 8);

    lora_fmt_tensor t = {{7, 9}, 0xDEADBEEF};
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(lora_fmt_encode_tensor(&t, buf, 16), LORA_OK);
    const uint8_t tensor_want[16] = {7, 0, 0, 0, 9, 0, 0, 0, 0xEF, 0xBE, 0xAD, 0xDE, 0, 0, 0, 0};
    assert_memory_equal(buf, tensor_want, 16);

    /* Unused dims are written as zero whatever the struct holds. */
    lora_fmt_blob b = {LORA_FMT_DTYPE_Q4_0, LORA_FMT_COMPRESSION_ZLIB, 2, {3, 0x100, 99, 99, 99},
                       0x1122334455667788u, 40, 54, 0xCAFEu, 0};
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(lora_fmt_encode_blob(&b, buf, 80), LORA_OK);
    uint8_t blob_want[80] = {4, 1, 2, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const uint8_t off_want[8] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
    memcpy(blob_want + 48, off_want, 8);
    blob_want[56] = 40;
    blob_want[64] = 54;
    blob_want[72] = 0xFE;
    blob_want[73] = 0xCA;
    assert_memory_equal(buf, blob_want, 80);

    lora_fmt_module mod;
    memset(&mod, 0x5A, sizeof mod); /* padding garbage must not leak */
    mod.name = (lora_fmt_strref){16, 3};
    mod.kind = LORA_FMT_KIND_CONV1D;
    mod.scaling = LORA_FMT_SCALING_EXPLICIT;
    mod.base_ndim = 3;
    mod.flags = 0;
    mod.rank = 260;
    mod.alpha = 1.0f;  /* 0x3F800000 */
    mod.scale = -2.0f; /* 0xC0000000 */
    mod.base_shape[0] = 16; mod.base_shape[1] = 8; mod.base_shape[2] = 3;
    mod.blob_a = 1; mod.blob_b = 2; mod.blob_magnitude = LORA_FMT_NO_BLOB; mod.blob_bias = 3;
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(lora_fmt_encode_module(&mod, buf, 96), LORA_OK);
    uint8_t mod_want[96] = {16, 0, 0, 0, 3, 0, 0, 0, 2, 2, 3, 0, 0, 0, 0, 0, 4, 1, 0, 0,
                            0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0, 0, 0, 0, 0};
    mod_want[32] = 16; mod_want[40] = 8; mod_want[48] = 3;
    mod_want[72] = 1; mod_want[76] = 2;
    memset(mod_want + 80, 0xFF, 4);
    mod_want[84] = 3;
    assert_memory_equal(buf, mod_want, 96);

    /* Too small a destination is refused, not overrun. */
    assert_int_equal(lora_fmt_encode_module(&mod, buf, 95), LORA_E_BUFFER_TOO_SMALL);
    assert_int_equal(lora_fmt_encode_blob(&b, buf, 79), LORA_E_BUFFER_TOO_SMALL);
    assert_int_equal(lora_fmt_encode_tensor(&t, buf, 15), LORA_E_BUFFER_TOO_SMALL);
    assert_int_equal(lora_fmt_encode_meta(&m, buf, 23), LORA_E_BUFFER_TOO_SMALL);
    assert_int_equal(lora_fmt_encode_header(NULL, buf, 128), LORA_E_INVALID_ARGUMENT);
}

static void test_encode_header(void **state)
{
    (void)state;
    lora_fmt_header h;
    memset(&h, 0, sizeof h);
    h.version_major = 1; h.version_minor = 2; h.header_size = 128;
    h.required_flags = 0x01020304; h.optional_flags = 0x0A0B0C0D;
    h.file_size = 0x1000; h.data_offset = 0x0FC0; h.meta_offset = 128; h.meta_count = 3;
    h.module_count = 4; h.modules_offset = 200; h.tensors_offset = 584; h.tensor_count = 5;
    h.blob_count = 6; h.blobs_offset = 664; h.strings_offset = 1144; h.strings_size = 77;
    h.header_checksum = UINT64_C(0x0123456789ABCDEF);
    uint8_t buf[130];
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(lora_fmt_encode_header(&h, buf, 128), LORA_OK);
    uint8_t want[128] = {0x89, 'L', 'O', 'R', 'A', '\r', '\n', 0x1a, 1, 0, 2, 0, 128, 0, 0, 0,
                         4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A, 0x00, 0x10, 0, 0, 0, 0, 0, 0,
                         0xC0, 0x0F, 0, 0, 0, 0, 0, 0, 128, 0, 0, 0, 0, 0, 0, 0,
                         3, 0, 0, 0, 4, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0,
                         0x48, 0x02, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0,
                         0x98, 0x02, 0, 0, 0, 0, 0, 0, 0x78, 0x04, 0, 0, 0, 0, 0, 0,
                         77, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t sum[8] = {0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01};
    memcpy(want + 120, sum, 8);
    assert_memory_equal(buf, want, 128);
    assert_int_equal(buf[128], 0xAA);
    assert_int_equal(lora_fmt_encode_header(&h, buf, 127), LORA_E_BUFFER_TOO_SMALL);
}

/* ------------------------------------------------------------------------ */
/* smallest files, byte for byte                                            */
/* ------------------------------------------------------------------------ */

static uint64_t ref_header_checksum(const uint8_t *f, uint64_t data_offset)
{
    uint8_t *tmp = malloc((size_t)data_offset - 8);
    assert_non_null(tmp);
    memcpy(tmp, f, 120);
    memcpy(tmp + 120, f + 128, (size_t)data_offset - 128);
    uint64_t h = XXH3_64bits(tmp, (size_t)data_offset - 8);
    free(tmp);
    return h;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void test_empty_file_bytes(void **state)
{
    (void)state;
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    uint64_t size = 0;
    assert_int_equal(lora_writer_size(w, &size, NULL), LORA_OK);
    assert_int_equal(size, 128);
    uint8_t buf[128];
    size_t written = 0;
    lora_error err;
    assert_int_equal(lora_writer_write_buffer(w, buf, sizeof buf, &written, &err), LORA_OK);
    assert_int_equal(written, 128);
    uint8_t want[128] = {0x89, 'L', 'O', 'R', 'A', '\r', '\n', 0x1a, 1, 0, 0, 0, 128, 0, 0, 0};
    want[24] = 128; /* file_size */
    want[32] = 128; /* data_offset */
    want[40] = 128; /* meta_offset */
    want[56] = 128; want[64] = 128; want[80] = 128; want[88] = 128; /* all tables empty at 128 */
    uint64_t sum = XXH3_64bits(want, 120);
    for (int i = 0; i < 8; i++) want[120 + i] = (uint8_t)(sum >> (8 * i));
    assert_memory_equal(buf, want, 128);
    /* Too small by one byte. */
    assert_int_equal(lora_writer_write_buffer(w, buf, 127, &written, &err), LORA_E_BUFFER_TOO_SMALL);
    assert_int_equal(err.status, LORA_E_BUFFER_TOO_SMALL);
    lora_writer_free(w);
}

static void test_one_tensor_bytes(void **state)
{
    (void)state;
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    const uint64_t shape[1] = {1};
    const uint8_t one[4] = {0x00, 0x00, 0x80, 0x3F}; /* 1.0f */
    uint32_t bi = 99;
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 1, shape, one, 4, LORA_COMPRESSION_NONE, &bi), LORA_OK);
    assert_int_equal(bi, 0);
    assert_int_equal(lora_writer_add_tensor(w, "t", 0), LORA_OK);
    assert_int_equal(lora_writer_set_bool(w, "k", 7), LORA_OK); /* any nonzero is stored as 1 */
    uint8_t buf[512];
    size_t n = 0;
    lora_error err;
    assert_int_equal(lora_writer_write_buffer(w, buf, sizeof buf, &n, &err), LORA_OK);
    /* meta @128 (24), tensors @152 (16), blobs @168 (80), strings @248 "kt", data @256, blob 4 bytes */
    assert_int_equal(n, 260);
    assert_int_equal(rd64(buf + 24), 260);
    assert_int_equal(rd64(buf + 32), 256);
    assert_int_equal(rd64(buf + 40), 128);
    assert_int_equal(rd64(buf + 56), 152); /* modules_offset, 0 modules */
    assert_int_equal(rd64(buf + 64), 152);
    assert_int_equal(rd64(buf + 80), 168);
    assert_int_equal(rd64(buf + 88), 248);
    assert_int_equal(rd64(buf + 96), 2);
    const uint8_t meta_want[24] = {0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1};
    assert_memory_equal(buf + 128, meta_want, 24);
    const uint8_t tensor_want[16] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(buf + 152, tensor_want, 16);
    uint8_t blob_want[80] = {0, 0, 1, 0, 0, 0, 0, 0, 1};
    blob_want[48] = 0x00; blob_want[49] = 0x01; /* offset 256 */
    blob_want[56] = 4; blob_want[64] = 4;
    uint64_t bsum = XXH3_64bits(one, 4);
    for (int i = 0; i < 8; i++) blob_want[72 + i] = (uint8_t)(bsum >> (8 * i));
    assert_memory_equal(buf + 168, blob_want, 80);
    assert_memory_equal(buf + 248, "kt", 2);
    for (int i = 250; i < 256; i++) assert_int_equal(buf[i], 0);
    assert_memory_equal(buf + 256, one, 4);
    assert_int_equal(rd64(buf + 120), ref_header_checksum(buf, 256));
    lora_writer_free(w);
}

/* ------------------------------------------------------------------------ */
/* round trip: every dtype, compression, kind, scaling, DoRA, bias, tensor  */
/* ------------------------------------------------------------------------ */

enum { GEN_RANDOM, GEN_EXACT_F16, GEN_EXACT_BF16, GEN_REPEAT, GEN_SPECIAL };

typedef struct {
    lora_dtype dtype;
    lora_compression comp;
    uint32_t ndim;
    uint64_t shape[5];
    size_t n;
    float *vals;   /* f32 inputs (add_blob_f32) or the decoded values of raw */
    uint8_t *raw;  /* add_blob input bytes, or NULL */
    size_t raw_size;
} exp_blob;

#define MAX_EXP 32
typedef struct {
    exp_blob blobs[MAX_EXP];
    uint32_t nblobs;
    lora_module_desc mods[8];
    uint32_t nmods;
    const char *tensor_names[4];
    uint32_t tensor_blobs[4];
    uint32_t ntensors;
} expected;

static const float special_vals[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.0f, 65520.0f, 70000.0f, -65520.0f,
    1e-8f, 5.9604645e-8f /* 2^-24 */, 2.9802322e-8f /* 2^-25: tie to 0 */, 8.940697e-8f /* 3*2^-25: tie up */,
    1.00048828125f /* 1 + 2^-11: tie to even 1 */, 1.00146484375f /* 1 + 3*2^-11: tie up */,
    FLT_MAX /* rounds up past the bf16 maximum */, 1.0e-40f /* f32 subnormal */, -1.0f / 3.0f, 0.1f};

static void gen_values(float *v, size_t n, int gen, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        switch (gen) {
        case GEN_RANDOM: v[i] = rng_float(&s, i % 7 == 0 ? 40.0f : 0.75f); break;
        case GEN_EXACT_F16: v[i] = (float)((int)(rng_next(&s) % 4096) - 2048) / 1024.0f; break;
        case GEN_EXACT_BF16: v[i] = (float)((int)(rng_next(&s) % 512) - 256) / 128.0f * 1024.0f; break;
        case GEN_REPEAT: v[i] = (float)(i % 4) * 0.25f; break;
        case GEN_SPECIAL: v[i] = special_vals[i % (sizeof special_vals / sizeof special_vals[0])]; break;
        }
    }
}

static uint32_t add_f32(lora_writer *w, expected *ex, lora_dtype dt, lora_compression comp, int gen, uint64_t seed,
                        uint32_t ndim, uint64_t d0, uint64_t d1, uint64_t d2, uint64_t d3, uint64_t d4)
{
    assert_true(ex->nblobs < MAX_EXP);
    exp_blob *b = &ex->blobs[ex->nblobs];
    memset(b, 0, sizeof *b);
    uint64_t dims[5] = {d0, d1, d2, d3, d4};
    b->dtype = dt; b->comp = comp; b->ndim = ndim;
    b->n = 1;
    for (uint32_t i = 0; i < ndim; i++) { b->shape[i] = dims[i]; b->n *= dims[i]; }
    b->vals = malloc(b->n * sizeof(float));
    assert_non_null(b->vals);
    gen_values(b->vals, b->n, gen, seed);
    uint32_t idx = 1234;
    assert_int_equal(lora_writer_add_blob_f32(w, dt, ndim, b->shape, b->vals, b->n, comp, &idx), LORA_OK);
    assert_int_equal(idx, ex->nblobs);
    return ex->nblobs++;
}

/* A raw F32 blob given as little-endian bytes. */
static uint32_t add_raw_f32(lora_writer *w, expected *ex, lora_compression comp, int gen, uint64_t seed, uint64_t d0,
                            uint64_t d1)
{
    exp_blob *b = &ex->blobs[ex->nblobs];
    memset(b, 0, sizeof *b);
    b->dtype = LORA_DTYPE_F32; b->comp = comp; b->ndim = 2; b->shape[0] = d0; b->shape[1] = d1;
    b->n = (size_t)(d0 * d1);
    b->vals = malloc(b->n * sizeof(float));
    b->raw_size = b->n * 4;
    b->raw = malloc(b->raw_size);
    assert_true(b->vals && b->raw);
    gen_values(b->vals, b->n, gen, seed);
    for (size_t i = 0; i < b->n; i++) {
        uint32_t u = f32_bits(b->vals[i]);
        for (int k = 0; k < 4; k++) b->raw[4 * i + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    uint32_t idx = 0;
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 2, b->shape, b->raw, b->raw_size, comp, &idx), LORA_OK);
    assert_int_equal(idx, ex->nblobs);
    return ex->nblobs++;
}

static void add_mod(lora_writer *w, expected *ex, const char *name, lora_kind kind, lora_scaling sc, uint32_t flags,
                    uint32_t rank, float alpha, float scale, uint32_t ndim, const uint64_t *base, uint32_t a,
                    uint32_t b, uint32_t mag, uint32_t bias)
{
    lora_module_desc *d = &ex->mods[ex->nmods];
    memset(d, 0, sizeof *d);
    d->name = name; d->kind = kind; d->scaling = sc; d->flags = flags; d->rank = rank;
    d->alpha = alpha; d->scale = scale; d->base_ndim = ndim;
    memcpy(d->base_shape, base, ndim * sizeof *base);
    d->blob_a = a; d->blob_b = b; d->blob_magnitude = mag; d->blob_bias = bias;
    uint32_t idx = 77;
    assert_int_equal(lora_writer_add_module(w, d, &idx), LORA_OK);
    assert_int_equal(idx, ex->nmods);
    ex->nmods++;
}

static void add_tensor(lora_writer *w, expected *ex, const char *name, uint32_t blob)
{
    assert_int_equal(lora_writer_add_tensor(w, name, blob), LORA_OK);
    ex->tensor_names[ex->ntensors] = name;
    ex->tensor_blobs[ex->ntensors++] = blob;
}

static void set_metadata(lora_writer *w)
{
    assert_int_equal(lora_writer_set_string(w, LORA_META_BASE_MODEL, "meta-llama/Llama-3.2-1B", 23), LORA_OK);
    assert_int_equal(lora_writer_set_int(w, "train.steps", -12345678901LL), LORA_OK);
    assert_int_equal(lora_writer_set_float(w, "train.lr", 1e-4), LORA_OK);
    assert_int_equal(lora_writer_set_bool(w, "train.dora", 1), LORA_OK);
    assert_int_equal(lora_writer_set_bool(w, "train.packed", 0), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, "note.empty", NULL, 0), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, "名前", "値 ✓", strlen("値 ✓")), LORA_OK);
    assert_int_equal(lora_writer_set_int(w, "mixed", 5), LORA_OK);
    /* Replacing keeps the first position; the type may change. */
    assert_int_equal(lora_writer_set_int(w, "train.steps", INT64_MIN), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, "mixed", "five", 4), LORA_OK);
    assert_int_equal(lora_writer_set_float(w, "train.lr", -0.0), LORA_OK);
}

/* The whole adapter; `ex` gets what the reader must give back. */
static void build_adapter(lora_writer *w, expected *ex)
{
    memset(ex, 0, sizeof *ex);
    set_metadata(w);
    /* linear, alpha/r, DoRA + bias */
    uint32_t a = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_NONE, GEN_RANDOM, 1, 2, 4, 32, 0, 0, 0);
    uint32_t b = add_f32(w, ex, LORA_DTYPE_F16, LORA_COMPRESSION_NONE, GEN_RANDOM, 2, 2, 64, 4, 0, 0, 0);
    uint32_t m = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_ZLIB, GEN_RANDOM, 3, 1, 64, 0, 0, 0, 0);
    uint32_t bias = add_f32(w, ex, LORA_DTYPE_BF16, LORA_COMPRESSION_NONE, GEN_RANDOM, 4, 1, 64, 0, 0, 0, 0);
    const uint64_t lin[2] = {64, 32};
    add_mod(w, ex, "model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f,
            123.0f /* ignored */, 2, lin, a, b, m, bias);
    /* linear, fan_in_fan_out (base [in, out]), alpha/sqrt(r), zlib on a compressible B */
    a = add_f32(w, ex, LORA_DTYPE_BF16, LORA_COMPRESSION_ZLIB, GEN_EXACT_BF16, 5, 2, 3, 32, 0, 0, 0);
    b = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_ZLIB, GEN_REPEAT, 6, 2, 64, 3, 0, 0, 0);
    const uint64_t fifo[2] = {32, 64};
    add_mod(w, ex, "transformer.h.0.mlp.c_fc", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK,
            LORA_MODULE_FAN_IN_FAN_OUT, 3, 5.0f, 0.0f, 2, fifo, a, b, LORA_NO_BLOB, LORA_NO_BLOB);
    /* embedding, explicit scale, quantized A and B, DoRA magnitude [dim] */
    a = add_f32(w, ex, LORA_DTYPE_Q8_0, LORA_COMPRESSION_NONE, GEN_RANDOM, 7, 2, 8, 128, 0, 0, 0);
    b = add_f32(w, ex, LORA_DTYPE_Q4_0, LORA_COMPRESSION_ZLIB, GEN_RANDOM, 8, 2, 64, 8, 0, 0, 0);
    m = add_f32(w, ex, LORA_DTYPE_F16, LORA_COMPRESSION_NONE, GEN_EXACT_F16, 9, 1, 64, 0, 0, 0, 0);
    const uint64_t emb[2] = {128, 64};
    add_mod(w, ex, "model.embed_tokens", LORA_KIND_EMBEDDING, LORA_SCALING_EXPLICIT, 0, 8, 16.0f, 0.7f, 2, emb, a, b,
            m, LORA_NO_BLOB);
    /* conv1d / conv2d / conv3d */
    a = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_NONE, GEN_RANDOM, 10, 3, 2, 8, 3, 0, 0);
    b = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_NONE, GEN_RANDOM, 11, 3, 16, 2, 1, 0, 0);
    const uint64_t c1[3] = {16, 8, 3};
    add_mod(w, ex, "unet.conv1", LORA_KIND_CONV1D, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 1.0f, 0.0f, 3, c1, a, b,
            LORA_NO_BLOB, LORA_NO_BLOB);
    a = add_f32(w, ex, LORA_DTYPE_NF4, LORA_COMPRESSION_NONE, GEN_RANDOM, 12, 4, 4, 16, 3, 3, 0);
    b = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_ZLIB, GEN_RANDOM, 13, 4, 32, 4, 1, 1, 0);
    bias = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_NONE, GEN_RANDOM, 14, 1, 32, 0, 0, 0, 0);
    const uint64_t c2[4] = {32, 16, 3, 3};
    add_mod(w, ex, "unet.down.0.conv2", LORA_KIND_CONV2D, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 4, 16.0f, 0.0f, 4,
            c2, a, b, LORA_NO_BLOB, bias);
    a = add_f32(w, ex, LORA_DTYPE_F16, LORA_COMPRESSION_ZLIB, GEN_RANDOM, 15, 5, 2, 4, 3, 3, 3);
    b = add_f32(w, ex, LORA_DTYPE_F32, LORA_COMPRESSION_NONE, GEN_RANDOM, 16, 5, 8, 2, 1, 1, 1);
    const uint64_t c3[5] = {8, 4, 3, 3, 3};
    add_mod(w, ex, "video.conv3", LORA_KIND_CONV3D, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 3.0f, 0.0f, 5, c3, a, b,
            LORA_NO_BLOB, LORA_NO_BLOB);
    /* tensors: raw bytes, quantized + zlib, specials in F16 and BF16 */
    add_tensor(w, ex, "lm_head.weight", add_raw_f32(w, ex, LORA_COMPRESSION_ZLIB, GEN_REPEAT, 17, 16, 8));
    add_tensor(w, ex, "model.norm.weight",
               add_f32(w, ex, LORA_DTYPE_Q8_0, LORA_COMPRESSION_ZLIB, GEN_REPEAT, 18, 1, 64, 0, 0, 0, 0));
    add_tensor(w, ex, "special.f16", add_f32(w, ex, LORA_DTYPE_F16, LORA_COMPRESSION_NONE, GEN_SPECIAL, 0, 1, 40, 0, 0, 0, 0));
    add_tensor(w, ex, "special.bf16", add_f32(w, ex, LORA_DTYPE_BF16, LORA_COMPRESSION_NONE, GEN_SPECIAL, 0, 1, 40, 0, 0, 0, 0));
}

static void free_expected(expected *ex)
{
    for (uint32_t i = 0; i < ex->nblobs; i++) {
        free(ex->blobs[i].vals);
        free(ex->blobs[i].raw);
    }
}

static float expected_scale(const lora_module_desc *d)
{
    if (d->scaling == LORA_SCALING_ALPHA_OVER_RANK) return d->alpha / (float)d->rank;
    if (d->scaling == LORA_SCALING_ALPHA_OVER_SQRT_RANK) return d->alpha / sqrtf((float)d->rank);
    return d->scale;
}

static void check_metadata(const lora_reader *r)
{
    lora_meta m;
    assert_int_equal(lora_reader_meta(r, 0, &m), LORA_OK);
    assert_string_equal(m.key, LORA_META_BASE_MODEL);
    assert_int_equal(m.type, LORA_META_STRING);
    assert_string_equal(m.string, "meta-llama/Llama-3.2-1B");
    assert_int_equal(m.string_length, 23);
    assert_int_equal(lora_reader_meta(r, 1, &m), LORA_OK);
    assert_string_equal(m.key, "train.steps");
    assert_int_equal(m.type, LORA_META_INT);
    assert_true(m.integer == INT64_MIN);
    assert_int_equal(lora_reader_meta(r, 2, &m), LORA_OK);
    assert_string_equal(m.key, "train.lr");
    assert_int_equal(m.type, LORA_META_FLOAT);
    assert_true(m.number == 0.0 && signbit(m.number));
    assert_int_equal(lora_reader_meta(r, 3, &m), LORA_OK);
    assert_int_equal(m.type, LORA_META_BOOL);
    assert_int_equal(m.integer, 1);
    assert_int_equal(lora_reader_meta(r, 4, &m), LORA_OK);
    assert_string_equal(m.key, "train.packed");
    assert_int_equal(m.integer, 0);
    assert_int_equal(lora_reader_meta(r, 5, &m), LORA_OK);
    assert_string_equal(m.key, "note.empty");
    assert_int_equal(m.type, LORA_META_STRING);
    assert_int_equal(m.string_length, 0);
    assert_string_equal(m.string, "");
    assert_int_equal(lora_reader_meta(r, 6, &m), LORA_OK);
    assert_string_equal(m.key, "名前");
    assert_string_equal(m.string, "値 ✓");
    assert_int_equal(lora_reader_meta(r, 7, &m), LORA_OK);
    assert_string_equal(m.key, "mixed");
    assert_int_equal(m.type, LORA_META_STRING);
    assert_string_equal(m.string, "five");
    assert_int_not_equal(lora_reader_meta(r, 8, &m), LORA_OK); /* exactly 8 entries */
}

static void check_module(const lora_reader *r, uint32_t i, const lora_module_desc *d)
{
    lora_module m;
    assert_int_equal(lora_reader_module(r, i, &m), LORA_OK);
    assert_string_equal(m.name, d->name);
    assert_int_equal(m.kind, d->kind);
    assert_int_equal(m.scaling, d->scaling);
    assert_int_equal(m.flags, d->flags);
    assert_int_equal(m.rank, d->rank);
    assert_int_equal(f32_bits(m.alpha), f32_bits(d->alpha));
    assert_int_equal(f32_bits(m.scale), f32_bits(expected_scale(d)));
    assert_int_equal(m.base_ndim, d->base_ndim);
    for (uint32_t k = 0; k < LORA_MAX_DIMS; k++)
        assert_int_equal(m.base_shape[k], k < d->base_ndim ? d->base_shape[k] : 0);
    assert_int_equal(m.blob_a, d->blob_a);
    assert_int_equal(m.blob_b, d->blob_b);
    assert_int_equal(m.blob_magnitude, d->blob_magnitude);
    assert_int_equal(m.blob_bias, d->blob_bias);
    uint32_t found = 999;
    assert_int_equal(lora_reader_module_find(r, d->name, &found), LORA_OK);
    assert_int_equal(found, i);
}

/* The raw bytes as the writer must store them, via the blob's own read. */
static void check_stored_form(const lora_reader *r, uint32_t i, const exp_blob *e, const lora_blob *b)
{
    uint8_t *raw = malloc((size_t)b->raw_size);
    assert_non_null(raw);
    assert_int_equal(lora_reader_blob_read(r, i, raw, (size_t)b->raw_size, NULL), LORA_OK);
    if (e->raw) assert_memory_equal(raw, e->raw, e->raw_size);
    /* zlib is kept exactly when compress2(level 6) is smaller, and then the
     * stored bytes are that stream: its checksum proves it. */
    uLongf zn = compressBound((uLong)b->raw_size);
    uint8_t *z = malloc(zn);
    assert_non_null(z);
    assert_int_equal(compress2(z, &zn, raw, (uLong)b->raw_size, 6), Z_OK);
    if (e->comp == LORA_COMPRESSION_ZLIB && zn < b->raw_size) {
        assert_int_equal(b->compression, LORA_COMPRESSION_ZLIB);
        assert_int_equal(b->stored_size, zn);
        assert_int_equal(b->checksum, XXH3_64bits(z, zn));
    } else {
        assert_int_equal(b->compression, LORA_COMPRESSION_NONE);
        assert_int_equal(b->stored_size, b->raw_size);
        assert_int_equal(b->checksum, XXH3_64bits(raw, (size_t)b->raw_size));
        const void *view = NULL;
        size_t vsize = 0;
        assert_int_equal(lora_reader_blob_view(r, i, &view, &vsize), LORA_OK);
        assert_int_equal(vsize, b->raw_size);
        assert_memory_equal(view, raw, vsize);
    }
    free(z);
    free(raw);
}

static void check_blob(const lora_reader *r, uint32_t i, const exp_blob *e, uint64_t *prev_end)
{
    lora_blob b;
    assert_int_equal(lora_reader_blob(r, i, &b), LORA_OK);
    assert_int_equal(b.dtype, e->dtype);
    assert_int_equal(b.ndim, e->ndim);
    for (uint32_t k = 0; k < LORA_MAX_DIMS; k++) assert_int_equal(b.shape[k], k < e->ndim ? e->shape[k] : 0);
    assert_int_equal(b.numel, e->n);
    assert_int_equal(b.offset % 64, 0);
    assert_int_equal(b.offset, (*prev_end + 63) & ~(uint64_t)63);
    *prev_end = b.offset + b.stored_size;
    check_stored_form(r, i, e, &b);
    float *got = malloc(e->n * sizeof *got), *want = malloc(e->n * sizeof *want);
    assert_true(got && want);
    assert_int_equal(lora_reader_blob_decode_f32(r, i, got, e->n, NULL), LORA_OK);
    ref_decode(e->dtype, e->vals, want, e->n);
    assert_floats_equal(got, want, e->n);
    free(got);
    free(want);
}

static void check_adapter(const uint8_t *file, size_t size, const expected *ex)
{
    lora_reader *r = NULL;
    lora_error err;
    assert_int_equal(lora_reader_open_buffer(file, size, NULL, &r, &err), LORA_OK);
    lora_file_info info;
    lora_reader_file_info(r, &info);
    assert_int_equal(info.format_major, 1);
    assert_int_equal(info.format_minor, 0);
    assert_int_equal(info.file_size, size);
    assert_int_equal(info.module_count, ex->nmods);
    assert_int_equal(info.tensor_count, ex->ntensors);
    assert_int_equal(info.blob_count, ex->nblobs);
    assert_int_equal(info.metadata_count, 8);
    assert_int_equal(info.header_checksum, ref_header_checksum(file, info.data_offset));
    assert_int_equal(rd64(file + 120), info.header_checksum);
    check_metadata(r);
    for (uint32_t i = 0; i < ex->nmods; i++) check_module(r, i, &ex->mods[i]);
    for (uint32_t i = 0; i < ex->ntensors; i++) {
        lora_tensor t;
        assert_int_equal(lora_reader_tensor(r, i, &t), LORA_OK);
        assert_string_equal(t.name, ex->tensor_names[i]);
        assert_int_equal(t.blob, ex->tensor_blobs[i]);
    }
    uint64_t end = info.data_offset;
    for (uint32_t i = 0; i < ex->nblobs; i++) check_blob(r, i, &ex->blobs[i], &end);
    assert_int_equal(end, size); /* no trailing bytes */
    assert_int_equal(lora_reader_verify(r, &err), LORA_OK);
    lora_reader_free(r);
}

static uint8_t *build_and_write(expected *ex, size_t *size)
{
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    build_adapter(w, ex);
    uint64_t want = 0;
    lora_error err;
    assert_int_equal(lora_writer_size(w, &want, &err), LORA_OK);
    uint8_t *buf = malloc((size_t)want);
    assert_non_null(buf);
    size_t n = 0;
    lora_status st = lora_writer_write_buffer(w, buf, (size_t)want, &n, &err);
    if (st != LORA_OK) fail_msg("write_buffer: %s: %s", lora_status_name(st), err.detail);
    assert_int_equal(n, want);
    lora_writer_free(w);
    *size = n;
    return buf;
}

static void test_round_trip(void **state)
{
    (void)state;
    expected ex;
    size_t size = 0;
    uint8_t *file = build_and_write(&ex, &size);
    check_adapter(file, size, &ex);
    free(file);
    free_expected(&ex);
}

/* The float64 oracle itself, on hand-picked cases, so the round trip above
 * is compared against something known to be right. */
static void test_reference_rounding(void **state)
{
    (void)state;
    assert_true(ref_f16(65519.0f) == 65504.0f);
    assert_true(isinf(ref_f16(65520.0f)));
    assert_true(ref_f16(1.00048828125f) == 1.0f);      /* tie -> even */
    assert_true(ref_f16(1.00146484375f) == 1.001953125f); /* tie -> even (up) */
    assert_true(ref_f16(2.9802322e-8f) == 0.0f);       /* 2^-25: tie between 0 and 2^-24 */
    assert_true(ref_f16(8.940697e-8f) == 1.1920929e-7f); /* 3*2^-25 -> 2^-23 */
    assert_true(ref_f16(0.1f) == 0.0999755859375f);
    assert_true(ref_bf16(1.00390625f) == 1.0f);        /* 1 + 2^-8: tie -> even */
    assert_true(ref_bf16(1.01171875f) == 1.015625f);   /* 1 + 3*2^-8: tie -> up */
    assert_true(isinf(ref_bf16(FLT_MAX)));
    assert_true(ref_bf16(3.3895313892515355e38f) == 3.3895313892515355e38f); /* bf16 maximum */
    assert_true(ref_bf16(0.1f) == 0.10009765625f);
}

/* F16/BF16 inputs that are exactly representable come back unchanged. */
static void test_exact_halves(void **state)
{
    (void)state;
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    float v16[256], vb[256];
    gen_values(v16, 256, GEN_EXACT_F16, 77);
    gen_values(vb, 256, GEN_EXACT_BF16, 78);
    const uint64_t shape[1] = {256};
    uint32_t i16, ib;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 1, shape, v16, 256, LORA_COMPRESSION_NONE, &i16), LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_BF16, 1, shape, vb, 256, LORA_COMPRESSION_ZLIB, &ib), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "a", i16), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "b", ib), LORA_OK);
    uint8_t buf[4096];
    size_t n;
    assert_int_equal(lora_writer_write_buffer(w, buf, sizeof buf, &n, NULL), LORA_OK);
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(buf, n, NULL, &r, NULL), LORA_OK);
    float got[256];
    assert_int_equal(lora_reader_blob_decode_f32(r, i16, got, 256, NULL), LORA_OK);
    assert_floats_equal(got, v16, 256);
    assert_int_equal(lora_reader_blob_decode_f32(r, ib, got, 256, NULL), LORA_OK);
    assert_floats_equal(got, vb, 256);
    /* And the stored F16 bits are the IEEE encoding, little-endian: 1.0 = 0x3C00. */
    lora_reader_free(r);
    lora_writer_free(w);

    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    const float one_two[2] = {1.0f, -2.0f};
    const uint64_t two[1] = {2};
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 1, two, one_two, 2, LORA_COMPRESSION_NONE, NULL), LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_BF16, 1, two, one_two, 2, LORA_COMPRESSION_NONE, NULL), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "h", 0), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "b", 1), LORA_OK);
    assert_int_equal(lora_writer_write_buffer(w, buf, sizeof buf, &n, NULL), LORA_OK);
    uint64_t data = rd64(buf + 32);
    const uint8_t f16_want[4] = {0x00, 0x3C, 0x00, 0xC0}, bf16_want[4] = {0x80, 0x3F, 0x00, 0xC0};
    assert_memory_equal(buf + data, f16_want, 4);
    assert_memory_equal(buf + data + 64, bf16_want, 4);
    assert_int_equal(n, data + 64 + 4);
    lora_writer_free(w);
}

static void test_deterministic(void **state)
{
    (void)state;
    expected e1, e2;
    size_t n1 = 0, n2 = 0;
    uint8_t *f1 = build_and_write(&e1, &n1);
    uint8_t *f2 = build_and_write(&e2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    free(f1);
    free(f2);
    free_expected(&e1);
    free_expected(&e2);
}

/* ------------------------------------------------------------------------ */
/* bad input                                                                */
/* ------------------------------------------------------------------------ */

/* A writer holding one valid linear module's blobs: A [4,32] (blob 0) and
 * B [64,4] (blob 1), not yet attached. */
static lora_writer *writer_with_ab(lora_module_desc *d)
{
    lora_writer *w = NULL;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    static float zeros[64 * 32];
    const uint64_t sa[2] = {4, 32}, sb[2] = {64, 4};
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sa, zeros, 128, LORA_COMPRESSION_NONE, NULL), LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sb, zeros, 256, LORA_COMPRESSION_NONE, NULL), LORA_OK);
    memset(d, 0, sizeof *d);
    d->name = "layers.0.q";
    d->kind = LORA_KIND_LINEAR;
    d->scaling = LORA_SCALING_ALPHA_OVER_RANK;
    d->rank = 4;
    d->alpha = 4.0f;
    d->base_ndim = 2;
    d->base_shape[0] = 64;
    d->base_shape[1] = 32;
    d->blob_a = 0;
    d->blob_b = 1;
    d->blob_magnitude = LORA_NO_BLOB;
    d->blob_bias = LORA_NO_BLOB;
    return w;
}

static lora_status try_write(lora_writer *w, lora_error *err)
{
    uint8_t *buf = malloc(1 << 16);
    assert_non_null(buf);
    size_t n = 99;
    lora_status st = lora_writer_write_buffer(w, buf, 1 << 16, &n, err);
    if (st != LORA_OK) assert_int_equal(n, 0);
    free(buf);
    return st;
}

static void test_refuse_duplicate_module(void **state)
{
    (void)state;
    lora_module_desc d;
    lora_writer *w = writer_with_ab(&d);
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    float z[128] = {0};
    const uint64_t sa[2] = {4, 32}, sb[2] = {64, 4};
    uint32_t a2, b2;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sa, z, 128, LORA_COMPRESSION_NONE, &a2), LORA_OK);
    float zb[256] = {0};
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, sb, zb, 256, LORA_COMPRESSION_NONE, &b2), LORA_OK);
    d.blob_a = a2;
    d.blob_b = b2;
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_E_DUPLICATE_NAME);
    /* The failed call claimed nothing: the blobs are still free for a module of another name. */
    d.name = "layers.0.k";
    uint32_t idx = 0;
    assert_int_equal(lora_writer_add_module(w, &d, &idx), LORA_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(try_write(w, NULL), LORA_OK);
    /* Tensors too. */
    const uint64_t s1[1] = {1};
    float one = 1.0f;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, s1, &one, 1, LORA_COMPRESSION_NONE, &idx), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "x", idx), LORA_OK);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, s1, &one, 1, LORA_COMPRESSION_NONE, &idx), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "x", idx), LORA_E_DUPLICATE_NAME);
    lora_writer_free(w);
}

static void test_refuse_shape_mismatch(void **state)
{
    (void)state;
    lora_module_desc d;
    lora_writer *w = writer_with_ab(&d);
    d.base_shape[1] = 33; /* A is [4, 32]: in-features disagree */
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    lora_error err;
    assert_int_equal(try_write(w, &err), LORA_E_BAD_SHAPE);
    assert_int_equal(err.status, LORA_E_BAD_SHAPE);
    assert_non_null(strstr(err.detail, "layers.0.q"));
    lora_writer_free(w);

    /* Rank that disagrees with B: module rank 2 with [4,32] / [64,4]. */
    w = writer_with_ab(&d);
    d.rank = 2;
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    assert_int_equal(try_write(w, &err), LORA_E_BAD_SHAPE);
    lora_writer_free(w);
}

static void test_refuse_orphan_blob(void **state)
{
    (void)state;
    lora_module_desc d;
    lora_writer *w = writer_with_ab(&d);
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    const uint64_t s1[1] = {32};
    float v[32] = {0};
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_Q8_0, 1, s1, v, 32, LORA_COMPRESSION_NONE, NULL), LORA_OK);
    lora_error err;
    assert_int_equal(try_write(w, &err), LORA_E_BAD_BLOB_REF);
    assert_int_equal(err.status, LORA_E_BAD_BLOB_REF);
    assert_true(err.detail[0] != '\0');
    lora_writer_free(w);
}

static void test_refuse_bad_arguments(void **state)
{
    (void)state;
    lora_module_desc d;
    lora_writer *w = writer_with_ab(&d);
    lora_module_desc bad = d;
    bad.rank = 0;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.alpha = NAN;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.scaling = LORA_SCALING_EXPLICIT; bad.scale = INFINITY;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.kind = (lora_kind)5;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.scaling = (lora_scaling)3;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.flags = 2;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.base_ndim = 6;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.blob_b = 2; /* no such blob */
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.blob_b = 0; /* A and B the same blob */
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.blob_magnitude = 7;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.name = "";
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.name = "bad\xff" "utf8";
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    bad = d; bad.name = NULL;
    assert_int_equal(lora_writer_add_module(w, &bad, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_module(w, NULL, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_module(NULL, &d, NULL), LORA_E_INVALID_ARGUMENT);
    /* After all of that the valid module still goes in, and a blob it uses
     * cannot be taken again. */
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "steal", 0), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_tensor(w, "none", 9), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_tensor(w, "", 0), LORA_E_INVALID_ARGUMENT);

    /* Blobs. */
    float v[64] = {0};
    const uint64_t s64[1] = {64}, s33[1] = {33}, s0[2] = {8, 0}, big[2] = {UINT64_C(1) << 40, UINT64_C(1) << 40};
    uint8_t bytes[256] = {0};
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 1, s64, bytes, 255, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, (lora_dtype)6, 1, s64, bytes, 256, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 1, s64, bytes, 256, (lora_compression)2, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 0, s64, bytes, 0, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 6, s64, bytes, 256, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 2, s0, bytes, 0, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 2, big, bytes, 256, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 1, s64, NULL, 256, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_Q8_0, 1, s33, v, 33, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_NF4, 1, s64, v, 63, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 1, NULL, v, 64, LORA_COMPRESSION_NONE, NULL), LORA_E_INVALID_ARGUMENT);

    /* Metadata. */
    assert_int_equal(lora_writer_set_int(w, LORA_META_BASE_MODEL, 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_bool(w, LORA_META_ARCHITECTURE, 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_float(w, LORA_META_TASK_TYPE, 1.0), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_int(w, "lora.custom", 1), LORA_OK); /* only the listed keys are reserved */
    assert_int_equal(lora_writer_set_string(w, "k", "a\0b", 3), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_string(w, "k", "\xc0\x80", 2), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_string(w, "k", NULL, 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_string(w, "", "v", 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_string(w, NULL, "v", 1), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_set_int(NULL, "k", 1), LORA_E_INVALID_ARGUMENT);
    /* A refused replace keeps the old value. */
    assert_int_equal(lora_writer_set_string(w, LORA_META_BASE_MODEL, "m", 1), LORA_OK);
    assert_int_equal(lora_writer_set_int(w, LORA_META_BASE_MODEL, 3), LORA_E_INVALID_ARGUMENT);

    /* write arguments */
    assert_int_equal(lora_writer_write_buffer(NULL, v, 10, NULL, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_size(w, NULL, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_create(NULL, NULL), LORA_E_INVALID_ARGUMENT);
    lora_write_options o = LORA_WRITE_OPTIONS_INIT;
    o.reserved[2] = 1;
    assert_int_equal(lora_writer_write_file(w, "/tmp/never-written.lora", &o, NULL), LORA_E_INVALID_ARGUMENT);
    o.reserved[2] = 0;
    o.mode = 010644;
    assert_int_equal(lora_writer_write_file(w, "/tmp/never-written.lora", &o, NULL), LORA_E_INVALID_ARGUMENT);
    assert_int_equal(lora_writer_write_file(w, "", NULL, NULL), LORA_E_INVALID_ARGUMENT);

    uint8_t out[8192];
    size_t n;
    assert_int_equal(lora_writer_write_buffer(w, out, sizeof out, &n, NULL), LORA_OK);
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(out, n, NULL, &r, NULL), LORA_OK);
    lora_meta m;
    assert_int_equal(lora_reader_meta_find(r, LORA_META_BASE_MODEL, &m), LORA_OK);
    assert_string_equal(m.string, "m");
    assert_int_equal(lora_reader_meta_find(r, "lora.custom", &m), LORA_OK);
    assert_int_equal(m.type, LORA_META_INT);
    lora_reader_free(r);
    lora_writer_free(w);
    lora_writer_free(NULL);
}

/* zlib is dropped when it does not help; random F32 does not compress. */
static void test_zlib_only_if_smaller(void **state)
{
    (void)state;
    lora_writer *w;
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    /* Uniformly random bits (any bit pattern is a valid F32 blob) are incompressible. */
    uint32_t bits[1024];
    uint64_t seed = 5;
    for (int i = 0; i < 1024; i++) bits[i] = (uint32_t)rng_next(&seed);
    const uint64_t s[1] = {1024};
    assert_int_equal(lora_writer_add_blob(w, LORA_DTYPE_F32, 1, s, bits, sizeof bits, LORA_COMPRESSION_ZLIB, NULL), LORA_OK);
    float v[1024];
    gen_values(v, 1024, GEN_REPEAT, 5);
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, s, v, 1024, LORA_COMPRESSION_ZLIB, NULL), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "r", 0), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "z", 1), LORA_OK);
    uint8_t *buf = malloc(16384);
    size_t n;
    assert_int_equal(lora_writer_write_buffer(w, buf, 16384, &n, NULL), LORA_OK);
    lora_reader *r;
    assert_int_equal(lora_reader_open_buffer(buf, n, NULL, &r, NULL), LORA_OK);
    lora_blob b;
    assert_int_equal(lora_reader_blob(r, 0, &b), LORA_OK);
    assert_int_equal(b.compression, LORA_COMPRESSION_NONE);
    assert_int_equal(b.stored_size, 4096);
    assert_int_equal(lora_reader_blob(r, 1, &b), LORA_OK);
    assert_int_equal(b.compression, LORA_COMPRESSION_ZLIB);
    assert_true(b.stored_size < 200);
    lora_reader_free(r);
    free(buf);
    lora_writer_free(w);
}

/* ------------------------------------------------------------------------ */
/* write_file                                                               */
/* ------------------------------------------------------------------------ */

/* A small valid adapter; `variant` changes the content. One blob is larger
 * than the write-combining buffer (64 KiB), so both write paths run. */
static lora_writer *small_adapter(int variant)
{
    lora_module_desc d;
    lora_writer *w = writer_with_ab(&d);
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    float *big = malloc(160 * 160 * sizeof *big);
    assert_non_null(big);
    gen_values(big, 160 * 160, GEN_RANDOM, (uint64_t)variant);
    const uint64_t s[2] = {160, 160};
    uint32_t bi;
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 2, s, big, 160 * 160, LORA_COMPRESSION_NONE, &bi), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "big", bi), LORA_OK);
    const uint64_t s3[1] = {3};
    assert_int_equal(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, s3, big, 3, LORA_COMPRESSION_NONE, &bi), LORA_OK);
    assert_int_equal(lora_writer_add_tensor(w, "small", bi), LORA_OK);
    assert_int_equal(lora_writer_set_int(w, "variant", variant), LORA_OK);
    free(big);
    return w;
}

static uint8_t *to_buffer(lora_writer *w, size_t *n)
{
    uint64_t size;
    assert_int_equal(lora_writer_size(w, &size, NULL), LORA_OK);
    uint8_t *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(lora_writer_write_buffer(w, buf, (size_t)size, n, NULL), LORA_OK);
    return buf;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_write_file_create(void **state)
{
    const char *dir = *state;
    lora_writer *w = small_adapter(1);
    size_t n;
    uint8_t *want = to_buffer(w, &n);
    char *p = path_in(dir, "new.lora");
    mode_t old = umask(022);
    lora_error err;
    assert_int_equal(lora_writer_write_file(w, p, NULL, &err), LORA_OK);
    assert_true(file_equals(p, want, n));
    assert_int_equal(mode_of(p), 0644);
    assert_int_equal(count_temp_files(dir), 0);
    /* umask applies to the default mode... */
    unlink(p);
    umask(077);
    assert_int_equal(lora_writer_write_file(w, p, NULL, &err), LORA_OK);
    assert_int_equal(mode_of(p), 0600);
    /* ...but not to an explicit one (and an existing file keeps its own). */
    unlink(p);
    lora_write_options o = LORA_WRITE_OPTIONS_INIT;
    o.mode = 0640;
    assert_int_equal(lora_writer_write_file(w, p, &o, &err), LORA_OK);
    assert_int_equal(mode_of(p), 0640);
    o.mode = 0604;
    assert_int_equal(lora_writer_write_file(w, p, &o, &err), LORA_OK);
    assert_int_equal(mode_of(p), 0640);
    umask(old);
    /* A relative path (temp in "."). */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(lora_writer_write_file(w, "rel.lora", NULL, &err), LORA_OK);
    assert_int_equal(chdir(cwd), 0);
    char *rel = path_in(dir, "rel.lora");
    assert_true(file_equals(rel, want, n));
    /* A directory that does not exist. */
    char *missing = path_in(dir, "no/such/dir.lora");
    assert_int_equal(lora_writer_write_file(w, missing, NULL, &err), LORA_E_IO);
    assert_true(err.detail[0] != '\0');
    free(missing);
    free(rel);
    free(p);
    free(want);
    lora_writer_free(w);
}

static void test_write_file_overwrite(void **state)
{
    const char *dir = *state;
    char *p = path_in(dir, "adapter.lora");
    write_whole(p, "old contents", 12, 0600);
    struct stat before;
    assert_int_equal(stat(p, &before), 0);
    lora_writer *w = small_adapter(2);
    size_t n;
    uint8_t *want = to_buffer(w, &n);
    assert_int_equal(lora_writer_write_file(w, p, NULL, NULL), LORA_OK);
    assert_true(file_equals(p, want, n));
    assert_int_equal(mode_of(p), 0600);
    struct stat after;
    assert_int_equal(stat(p, &after), 0);
    assert_true(after.st_ino != before.st_ino); /* replaced by rename, never written in place */
    assert_int_equal(count_temp_files(dir), 0);
    /* The file the writer wrote opens and verifies. */
    lora_reader *r;
    assert_int_equal(lora_reader_open_file(p, NULL, &r, NULL), LORA_OK);
    assert_int_equal(lora_reader_verify(r, NULL), LORA_OK);
    lora_reader_free(r);
    /* A structural mistake fails before publishing: target and directory untouched. */
    lora_writer *bad = small_adapter(3);
    const uint64_t s[1] = {4};
    float v[4] = {1, 2, 3, 4};
    assert_int_equal(lora_writer_add_blob_f32(bad, LORA_DTYPE_F32, 1, s, v, 4, LORA_COMPRESSION_NONE, NULL), LORA_OK);
    lora_error err;
    assert_int_equal(lora_writer_write_file(bad, p, NULL, &err), LORA_E_BAD_BLOB_REF);
    assert_true(file_equals(p, want, n));
    assert_int_equal(count_temp_files(dir), 0);
    lora_writer_free(bad);
    free(want);
    free(p);
    lora_writer_free(w);
}

static void test_write_file_not_regular(void **state)
{
    const char *dir = *state;
    lora_writer *w = small_adapter(1);
    char *sub = path_in(dir, "subdir");
    assert_int_equal(mkdir(sub, 0755), 0);
    lora_error err;
    assert_int_equal(lora_writer_write_file(w, sub, NULL, &err), LORA_E_NOT_REGULAR_FILE);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    char *fifo = path_in(dir, "fifo");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(lora_writer_write_file(w, fifo, NULL, &err), LORA_E_NOT_REGULAR_FILE);
    assert_int_equal(lora_writer_write_file(w, "/dev/null", NULL, &err), LORA_E_NOT_REGULAR_FILE);
    /* a trailing slash names a directory */
    char *slash = path_in(dir, "x.lora/");
    assert_int_equal(lora_writer_write_file(w, slash, NULL, &err), LORA_E_NOT_REGULAR_FILE);
    /* a symlink to a directory, and a dangling symlink */
    char *ldir = path_in(dir, "link-to-dir");
    assert_int_equal(symlink(sub, ldir), 0);
    assert_int_equal(lora_writer_write_file(w, ldir, NULL, &err), LORA_E_NOT_REGULAR_FILE);
    char *dangling = path_in(dir, "dangling");
    assert_int_equal(symlink("nowhere.lora", dangling), 0);
    assert_int_equal(lora_writer_write_file(w, dangling, NULL, &err), LORA_E_NOT_REGULAR_FILE);
    assert_int_equal(count_temp_files(dir), 0);
    assert_int_equal(count_temp_files(sub), 0);
    free(dangling);
    free(ldir);
    free(slash);
    free(fifo);
    free(sub);
    lora_writer_free(w);
}

static void test_write_file_same_file(void **state)
{
    const char *dir = *state;
    lora_writer *w = small_adapter(1);
    char *p = path_in(dir, "in.lora");
    char *sym = path_in(dir, "sym.lora");
    char *hard = path_in(dir, "hard.lora");
    char *other = path_in(dir, "other.lora");
    write_whole(p, "input bytes", 11, 0644);
    write_whole(other, "other", 5, 0644);
    assert_int_equal(symlink("in.lora", sym), 0);
    assert_int_equal(link(p, hard), 0);
    const char *cases[3][2] = {{p, p}, {sym, p}, {hard, p}};
    lora_error err;
    for (int i = 0; i < 3; i++) {
        const char *inputs[3] = {other, "/nonexistent/input", cases[i][0]};
        lora_write_options o = LORA_WRITE_OPTIONS_INIT;
        o.inputs = inputs;
        o.input_count = 3;
        assert_int_equal(lora_writer_write_file(w, cases[i][1], &o, &err), LORA_E_SAME_FILE);
        /* and the other way round: the output named through the link */
        const char *in2[1] = {p};
        o.inputs = in2;
        o.input_count = 1;
        assert_int_equal(lora_writer_write_file(w, cases[i][0], &o, &err), LORA_E_SAME_FILE);
        assert_true(file_equals(p, "input bytes", 11));
    }
    assert_int_equal(count_temp_files(dir), 0);
    /* Different files pass. */
    const char *in3[1] = {other};
    lora_write_options o = LORA_WRITE_OPTIONS_INIT;
    o.inputs = in3;
    o.input_count = 1;
    assert_int_equal(lora_writer_write_file(w, p, &o, &err), LORA_OK);
    assert_true(file_equals(other, "other", 5));
    free(p); free(sym); free(hard); free(other);
    lora_writer_free(w);
}

/* Writing through a symlink replaces the file it names; the link stays. */
static void test_write_file_symlink_target(void **state)
{
    const char *dir = *state;
    char *real = path_in(dir, "real.lora");
    char *link_path = path_in(dir, "current.lora");
    write_whole(real, "v1", 2, 0640);
    assert_int_equal(symlink("real.lora", link_path), 0);
    lora_writer *w = small_adapter(4);
    size_t n;
    uint8_t *want = to_buffer(w, &n);
    assert_int_equal(lora_writer_write_file(w, link_path, NULL, NULL), LORA_OK);
    struct stat st;
    assert_int_equal(lstat(link_path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_true(file_equals(real, want, n));
    assert_int_equal(mode_of(real), 0640);
    assert_int_equal(count_temp_files(dir), 0);
    free(want);
    free(real);
    free(link_path);
    lora_writer_free(w);
}

/* ---- fault injection through the I/O table ---- */

enum { K_OPEN, K_WRITE, K_FCHMOD, K_FSYNC, K_CLOSE, K_RENAME, K_UNLINK };
enum { F_NONE, F_EINTR, F_SHORT, F_EIO, F_ENOSPC };

typedef struct {
    int fault;
    int at;       /* 1-based call index to fail */
    int calls;
    int kinds[512];
} fault_ctx;

/* Count the call; return nonzero (with errno set) if it must fail. */
static int inject(fault_ctx *f, int kind)
{
    if (f->calls < 512) f->kinds[f->calls] = kind;
    f->calls++;
    if (f->calls != f->at) return 0;
    switch (f->fault) {
    case F_EINTR: errno = EINTR; return 1;
    case F_EIO: errno = EIO; return 1;
    case F_ENOSPC: errno = ENOSPC; return 1;
    default: return 0;
    }
}

static int f_openat(void *ctx, int dirfd, const char *path, int flags, unsigned mode)
{
    if (inject(ctx, K_OPEN)) return -1;
    return openat(dirfd, path, flags, (mode_t)mode);
}

static ssize_t f_write(void *ctx, int fd, const void *buf, size_t n)
{
    fault_ctx *f = ctx;
    if (inject(f, K_WRITE)) return -1;
    if (f->fault == F_SHORT && f->calls == f->at && n > 1) n /= 2;
    return write(fd, buf, n);
}

static int f_fchmod(void *ctx, int fd, unsigned mode) { return inject(ctx, K_FCHMOD) ? -1 : fchmod(fd, (mode_t)mode); }
static int f_fsync(void *ctx, int fd) { return inject(ctx, K_FSYNC) ? -1 : fsync(fd); }

static int f_close(void *ctx, int fd)
{
    /* Linux semantics: the descriptor is released whatever close reports. */
    int r = close(fd);
    return inject(ctx, K_CLOSE) ? -1 : r;
}

static int f_renameat(void *ctx, int a, const char *from, int b, const char *to)
{
    return inject(ctx, K_RENAME) ? -1 : renameat(a, from, b, to);
}

static int f_unlinkat(void *ctx, int dirfd, const char *path, int flags)
{
    return inject(ctx, K_UNLINK) ? -1 : unlinkat(dirfd, path, flags);
}

static int index_of_kind(const fault_ctx *f, int kind)
{
    for (int i = 0; i < f->calls && i < 512; i++)
        if (f->kinds[i] == kind) return i + 1;
    return 0;
}

static void run_fault_mode(const char *dir, int fault)
{
    static const char old_bytes[] = "previous adapter bytes";
    char *p = path_in(dir, "target.lora");
    lora_writer *w = small_adapter(5);
    size_t n;
    uint8_t *want = to_buffer(w, &n);
    fault_ctx f;
    lora_io io = {f_openat, f_write, f_fchmod, f_fsync, f_close, f_renameat, f_unlinkat, &f, NULL, NULL};
    lora_writer_set_io_for_testing(w, &io);
    int succeeded = 0;
    for (int at = 1; at < 1000 && !succeeded; at++) {
        write_whole(p, old_bytes, sizeof old_bytes, 0640);
        memset(&f, 0, sizeof f);
        f.fault = fault;
        f.at = at;
        lora_error err;
        lora_status st = lora_writer_write_file(w, p, NULL, &err);
        assert_int_equal(count_temp_files(dir), 0);
        if (f.calls < at) { /* the fault was never reached: a clean run */
            assert_int_equal(st, LORA_OK);
            succeeded = 1;
        }
        int kind = f.kinds[at - 1];
        int rename_at = index_of_kind(&f, K_RENAME);
        int last = at == f.calls && kind == K_CLOSE && rename_at && at > rename_at; /* closing the directory */
        if (fault == F_EINTR || fault == F_SHORT || last || succeeded) {
            if (st != LORA_OK) fail_msg("fault %d at call %d (kind %d): %s: %s", fault, at, kind, lora_status_name(st), err.detail);
            assert_true(file_equals(p, want, n));
            assert_int_equal(mode_of(p), 0640);
            continue;
        }
        lora_status expect = fault == F_EIO ? LORA_E_IO : LORA_E_NO_SPACE;
        if (st != expect) fail_msg("fault %d at call %d (kind %d): got %s", fault, at, kind, lora_status_name(st));
        assert_int_equal(err.status, expect);
        if (rename_at && at > rename_at) {
            /* only the directory fsync can fail after the rename: the new file is in place */
            assert_int_equal(kind, K_FSYNC);
            assert_true(file_equals(p, want, n));
        } else {
            assert_true(file_equals(p, old_bytes, sizeof old_bytes));
            assert_int_equal(mode_of(p), 0640);
        }
    }
    assert_true(succeeded);
    free(want);
    free(p);
    lora_writer_free(w);
}

static void test_fault_eintr(void **state) { run_fault_mode(*state, F_EINTR); }
static void test_fault_short_write(void **state) { run_fault_mode(*state, F_SHORT); }
static void test_fault_eio(void **state) { run_fault_mode(*state, F_EIO); }
static void test_fault_enospc(void **state) { run_fault_mode(*state, F_ENOSPC); }

/* The sequence of calls of a clean write, so a change in the recipe is seen. */
static void test_fault_call_sequence(void **state)
{
    const char *dir = *state;
    char *p = path_in(dir, "seq.lora");
    write_whole(p, "x", 1, 0644);
    lora_writer *w = small_adapter(6);
    fault_ctx f;
    memset(&f, 0, sizeof f);
    lora_io io = {f_openat, f_write, f_fchmod, f_fsync, f_close, f_renameat, f_unlinkat, &f, NULL, NULL};
    lora_writer_set_io_for_testing(w, &io);
    assert_int_equal(lora_writer_write_file(w, p, NULL, NULL), LORA_OK);
    /* open dir, create temp, staged tables (flushed by the big blob), big blob (direct), staged rest,
     * fchmod, fsync, close, rename, fsync dir, close dir */
    const int want[] = {K_OPEN, K_OPEN, K_WRITE, K_WRITE, K_WRITE, K_FCHMOD, K_FSYNC, K_CLOSE, K_RENAME, K_FSYNC, K_CLOSE};
    assert_int_equal(f.calls, sizeof want / sizeof want[0]);
    assert_memory_equal(f.kinds, want, sizeof want);
    free(p);
    lora_writer_free(w);
}

/* ---- allocation failure ---- */

typedef struct {
    long at;     /* fail this allocation (1-based), 0 = never */
    long count;
    long live;
} alloc_ctx;

static void *a_alloc(void *opaque, size_t size)
{
    alloc_ctx *a = opaque;
    if (++a->count == a->at) return NULL;
    void *p = malloc(size);
    if (p) a->live++;
    return p;
}

static void a_free(void *opaque, void *ptr)
{
    alloc_ctx *a = opaque;
    if (ptr) a->live--;
    free(ptr);
}

#define TRY(expr)                              \
    do {                                       \
        st = (expr);                           \
        if (st != LORA_OK) goto done;          \
    } while (0)

static lora_status alloc_scenario(alloc_ctx *ac, const char *path, uint8_t *out, size_t cap, size_t *n)
{
    lora_allocator al = {a_alloc, a_free, ac};
    lora_writer *w = NULL;
    lora_status st;
    float v[256];
    gen_values(v, 256, GEN_REPEAT, 3);
    const uint64_t sa[2] = {4, 32}, sb[2] = {64, 4}, s64[1] = {64};
    uint32_t a, b, m;
    TRY(lora_writer_create(&al, &w));
    TRY(lora_writer_set_string(w, LORA_META_PRODUCER, "test", 4));
    TRY(lora_writer_set_int(w, "n", 1));
    TRY(lora_writer_set_string(w, "n", "replaced", 8));
    for (int i = 0; i < 20; i++) { /* enough keys to grow the array and the index */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        TRY(lora_writer_set_float(w, key, i));
    }
    TRY(lora_writer_add_blob_f32(w, LORA_DTYPE_Q4_0, 2, sa, v, 128, LORA_COMPRESSION_ZLIB, &a));
    TRY(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, 2, sb, v, 256, LORA_COMPRESSION_ZLIB, &b));
    TRY(lora_writer_add_blob(w, LORA_DTYPE_F32, 1, s64, v, 256, LORA_COMPRESSION_NONE, &m));
    lora_module_desc d = {"q", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 1.0f, 0.0f, 2, {64, 32, 0, 0, 0},
                          a, b, m, LORA_NO_BLOB};
    TRY(lora_writer_add_module(w, &d, NULL));
    TRY(lora_writer_add_blob_f32(w, LORA_DTYPE_NF4, 1, s64, v, 64, LORA_COMPRESSION_NONE, &m));
    TRY(lora_writer_add_tensor(w, "t", m));
    TRY(lora_writer_write_buffer(w, out, cap, n, NULL));
    TRY(lora_writer_write_file(w, path, NULL, NULL));
done:
    lora_writer_free(w);
    return st;
}

static void test_alloc_failures(void **state)
{
    const char *dir = *state;
    char *p = path_in(dir, "oom.lora");
    uint8_t *out = malloc(1 << 16);
    assert_non_null(out);
    int ok = 0;
    long at;
    for (at = 1; at < 100000 && !ok; at++) {
        alloc_ctx ac = {at, 0, 0};
        size_t n = 0;
        unlink(p);
        lora_status st = alloc_scenario(&ac, p, out, 1 << 16, &n);
        assert_int_equal(ac.live, 0); /* nothing leaked, whatever failed */
        assert_int_equal(count_temp_files(dir), 0);
        if (ac.count < at) { /* no allocation failed */
            assert_int_equal(st, LORA_OK);
            assert_true(file_equals(p, out, n));
            ok = 1;
        } else if (st != LORA_E_OUT_OF_MEMORY) {
            fail_msg("allocation %ld failed: got %s", at, lora_status_name(st));
        } else {
            assert_int_equal(access(p, F_OK), -1); /* no partial output */
        }
    }
    assert_true(ok);
    assert_true(at > 20); /* the scenario does allocate, so the loop really injected */
    free(out);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_records),
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_empty_file_bytes),
        cmocka_unit_test(test_one_tensor_bytes),
        cmocka_unit_test(test_reference_rounding),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_exact_halves),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_refuse_duplicate_module),
        cmocka_unit_test(test_refuse_shape_mismatch),
        cmocka_unit_test(test_refuse_orphan_blob),
        cmocka_unit_test(test_refuse_bad_arguments),
        cmocka_unit_test(test_zlib_only_if_smaller),
        cmocka_unit_test_setup_teardown(test_write_file_create, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_file_overwrite, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_file_not_regular, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_file_same_file, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_file_symlink_target, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_fault_call_sequence, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_fault_eintr, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_fault_short_write, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_fault_eio, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_fault_enospc, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup_tmpdir, teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
