/*
 * gen_vectors.c - writes the test vectors of spec/lora-format.md (Appendix B).
 *
 *   gen_vectors OUTDIR
 *
 * creates the .lora files of OUTDIR/valid and OUTDIR/invalid, and OUTDIR/MANIFEST
 * (one line per file: path, expected status name or OK, description, by tabs).
 *
 * Valid files come from the public writer. An invalid file is a valid file
 * with one fault put in; afterwards the header checksum (and the checksum of
 * a blob whose bytes were changed) is recomputed, so that a reader gets past
 * the checksums to the check the vector is about. The expected status is the
 * one the validation order of the spec (section 15) gives, not whatever the
 * library happens to say: each vector is also opened with the library here,
 * and any disagreement is printed on stderr for a human to resolve (the exit
 * status stays 0; tests/vectors.sh is the judge).
 *
 * Deterministic: one fixed-seed PRNG defined below, no clock, no addresses,
 * and zlib streams other than the writer's are built by hand (stored blocks),
 * so they do not depend on the zlib version.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "lora.h"
#include "common/internal.h"

/* ---- bytes ---------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n;
} vec;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("gen_vectors: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static vec vec_dup(vec v)
{
    vec c = {xmalloc(v.n), v.n};
    memcpy(c.p, v.p, v.n);
    return c;
}

/* Replace v[at, at+del) with ins[0, ins_n); any of them may be empty. */
static void vec_splice(vec *v, size_t at, size_t del, const void *ins, size_t ins_n)
{
    if (at > v->n || del > v->n - at) die("splice out of range");
    size_t n = v->n - del + ins_n;
    uint8_t *p = xmalloc(n);
    memcpy(p, v->p, at);
    if (ins_n) memcpy(p + at, ins, ins_n);
    memcpy(p + at + ins_n, v->p + at + del, v->n - at - del);
    free(v->p);
    v->p = p;
    v->n = n;
}

static vec vec_of(const void *bytes, size_t n)
{
    vec v = {xmalloc(n), n};
    if (n) memcpy(v.p, bytes, n);
    return v;
}

/* ---- deterministic PRNG (splitmix64) -------------------------------------- */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) with 24 bits, exactly representable in binary32. */
static float rng_f32(rng *r)
{
    return (float)((int32_t)(rng_next(r) >> 40) - (1 << 23)) / (float)(1 << 23);
}

/* ---- building valid files with the public writer -------------------------- */

#define W_CHECK(expr)                                                             \
    do {                                                                          \
        lora_status st_ = (expr);                                                 \
        if (st_ != LORA_OK) die("%s:%d: %s: %s", __FILE__, __LINE__, #expr,       \
                                lora_status_name(st_));                           \
    } while (0)

typedef struct {
    uint32_t ndim;
    uint64_t d[LORA_MAX_DIMS];
} shp;

static shp S1(uint64_t a) { return (shp){1, {a, 0, 0, 0, 0}}; }
static shp S2(uint64_t a, uint64_t b) { return (shp){2, {a, b, 0, 0, 0}}; }
static shp S3(uint64_t a, uint64_t b, uint64_t c) { return (shp){3, {a, b, c, 0, 0}}; }
static shp S4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) { return (shp){4, {a, b, c, d, 0}}; }
static shp S5(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) { return (shp){5, {a, b, c, d, e}}; }

static uint64_t shp_numel(shp s)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < s.ndim; i++) n *= s.d[i];
    return n;
}

/* A blob of pseudo-random values in [-1, 1), converted by the writer. */
static uint32_t blob_rand(lora_writer *w, rng *r, lora_dtype dt, shp s)
{
    size_t n = (size_t)shp_numel(s);
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = rng_f32(r);
    uint32_t idx;
    W_CHECK(lora_writer_add_blob_f32(w, dt, s.ndim, s.d, x, n, LORA_COMPRESSION_NONE, &idx));
    free(x);
    return idx;
}

typedef struct {
    const char *name;
    lora_kind kind;
    lora_scaling scaling;
    uint32_t flags, rank;
    float alpha, scale;
    shp base;
    uint32_t a, b, mag, bias;
} mod;

static void add_mod(lora_writer *w, mod m)
{
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = m.name;
    d.kind = m.kind;
    d.scaling = m.scaling;
    d.flags = m.flags;
    d.rank = m.rank;
    d.alpha = m.alpha;
    d.scale = m.scale;
    d.base_ndim = m.base.ndim;
    memcpy(d.base_shape, m.base.d, sizeof d.base_shape);
    d.blob_a = m.a;
    d.blob_b = m.b;
    d.blob_magnitude = m.mag;
    d.blob_bias = m.bias;
    uint32_t idx;
    W_CHECK(lora_writer_add_module(w, &d, &idx));
}

static vec finish(lora_writer *w)
{
    uint64_t size;
    lora_error err;
    if (lora_writer_size(w, &size, &err) != LORA_OK) die("writer size: %s", err.detail);
    vec v = {xmalloc((size_t)size), (size_t)size};
    size_t written = 0;
    if (lora_writer_write_buffer(w, v.p, v.n, &written, &err) != LORA_OK) die("writer: %s", err.detail);
    v.n = written;
    lora_writer_free(w);
    return v;
}

static lora_writer *new_writer(void)
{
    lora_writer *w = NULL;
    W_CHECK(lora_writer_create(NULL, &w));
    return w;
}

#define NONE LORA_NO_BLOB

/* The smallest valid file: a header and nothing else (Appendix A.1). */
static vec build_minimal(void) { return finish(new_writer()); }

/* One rank-1 linear module on a 1x2 base, with one metadata entry and one
 * tensor: every record kind once, small enough to annotate byte by byte
 * (Appendix A.2). Delta = 0.5 * [[3]] @ [[1, -2]] = [[1.5, -3]]. */
static vec build_one_module(void)
{
    lora_writer *w = new_writer();
    W_CHECK(lora_writer_set_bool(w, "k", 1));
    static const float a[2] = {1.0f, -2.0f}, bv[1] = {3.0f}, t[2] = {0.25f, 0.5f};
    uint32_t ia, ib, it;
    shp sa = S2(1, 2), sb = S2(1, 1), st = S1(2);
    W_CHECK(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, sa.ndim, sa.d, a, 2, LORA_COMPRESSION_NONE, &ia));
    W_CHECK(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, sb.ndim, sb.d, bv, 1, LORA_COMPRESSION_NONE, &ib));
    W_CHECK(lora_writer_add_blob_f32(w, LORA_DTYPE_F16, st.ndim, st.d, t, 2, LORA_COMPRESSION_NONE, &it));
    add_mod(w, (mod){"m", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 1, 0.5f, 0, S2(1, 2), ia, ib, NONE,
                     NONE});
    W_CHECK(lora_writer_add_tensor(w, "t", it));
    return finish(w);
}

/* A source config as PEFT writes it; stored verbatim. */
static const char peft_config[] =
    "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"]}";

/* Two linear F32 modules and metadata of every type, including an empty
 * string value and multi-byte UTF-8. */
static vec build_linear_meta(void)
{
    lora_writer *w = new_writer();
    rng r = {1};
    W_CHECK(lora_writer_set_string(w, LORA_META_BASE_MODEL, "example/tiny-base", 17));
    W_CHECK(lora_writer_set_string(w, LORA_META_ARCHITECTURE, "llama", 5));
    W_CHECK(lora_writer_set_string(w, LORA_META_SOURCE_FORMAT, "peft", 4));
    W_CHECK(lora_writer_set_string(w, LORA_META_SOURCE_CONFIG, peft_config, sizeof peft_config - 1));
    W_CHECK(lora_writer_set_string(w, LORA_META_TASK_TYPE, "CAUSAL_LM", 9));
    W_CHECK(lora_writer_set_string(w, "org.example.text", "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9d\x84\x9e", 15));
    W_CHECK(lora_writer_set_string(w, "org.example.empty", "", 0));
    W_CHECK(lora_writer_set_int(w, "org.example.int", -42));
    W_CHECK(lora_writer_set_int(w, "org.example.int_min", INT64_MIN));
    W_CHECK(lora_writer_set_float(w, "org.example.pi", 3.141592653589793));
    W_CHECK(lora_writer_set_float(w, "org.example.neg_zero", -0.0));
    W_CHECK(lora_writer_set_bool(w, "org.example.yes", 1));
    W_CHECK(lora_writer_set_bool(w, "org.example.no", 0));
    uint32_t a0 = blob_rand(w, &r, LORA_DTYPE_F32, S2(2, 16));
    uint32_t b0 = blob_rand(w, &r, LORA_DTYPE_F32, S2(8, 2));
    uint32_t a1 = blob_rand(w, &r, LORA_DTYPE_F32, S2(2, 16));
    uint32_t b1 = blob_rand(w, &r, LORA_DTYPE_F32, S2(8, 2));
    add_mod(w, (mod){"model.layers.0.self_attn.q_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2,
                     4.0f, 0, S2(8, 16), a0, b0, NONE, NONE});
    add_mod(w, (mod){"model.layers.0.self_attn.v_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2,
                     8.0f, 0, S2(8, 16), a1, b1, NONE, NONE});
    return finish(w);
}

/* F16 and BF16 factors, and two replacement tensors. */
static vec build_f16_bf16(void)
{
    lora_writer *w = new_writer();
    rng r = {2};
    uint32_t a0 = blob_rand(w, &r, LORA_DTYPE_F16, S2(4, 8));
    uint32_t b0 = blob_rand(w, &r, LORA_DTYPE_F16, S2(16, 4));
    uint32_t a1 = blob_rand(w, &r, LORA_DTYPE_BF16, S2(4, 16));
    uint32_t b1 = blob_rand(w, &r, LORA_DTYPE_BF16, S2(8, 4));
    uint32_t t0 = blob_rand(w, &r, LORA_DTYPE_BF16, S1(8));
    uint32_t t1 = blob_rand(w, &r, LORA_DTYPE_F16, S1(8));
    add_mod(w, (mod){"model.layers.0.mlp.up_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 0,
                     S2(16, 8), a0, b0, NONE, NONE});
    add_mod(w, (mod){"model.layers.0.mlp.down_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f, 0,
                     S2(8, 16), a1, b1, NONE, NONE});
    W_CHECK(lora_writer_add_tensor(w, "model.norm.weight", t0));
    W_CHECK(lora_writer_add_tensor(w, "model.layers.0.input_layernorm.weight", t1));
    return finish(w);
}

/* One module per quantized dtype; every blob is shorter than 64 bytes, so
 * there is padding after each. */
static vec build_quantized(void)
{
    lora_writer *w = new_writer();
    rng r = {3};
    static const lora_dtype dts[3] = {LORA_DTYPE_Q8_0, LORA_DTYPE_Q4_0, LORA_DTYPE_NF4};
    static const char *const names[3] = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                         "model.layers.0.self_attn.v_proj"};
    for (int i = 0; i < 3; i++) {
        uint32_t a = blob_rand(w, &r, dts[i], S2(2, 32));
        uint32_t b = blob_rand(w, &r, dts[i], S2(32, 2));
        add_mod(w, (mod){names[i], LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 16.0f, 0, S2(32, 32), a,
                         b, NONE, NONE});
    }
    return finish(w);
}

/* NF4 with blocks other than the default 64: 128 (block_shift 7) for one
 * module, 32 (block_shift 5, the smallest) for the other. */
static vec build_nf4_blocks(void)
{
    lora_writer *w = new_writer();
    rng r = {9};
    static const uint32_t blocks[2] = {128, 32};
    static const shp sa[2] = {{2, {2, 64, 0, 0, 0}}, {2, {1, 32, 0, 0, 0}}};
    static const shp sb[2] = {{2, {64, 2, 0, 0, 0}}, {2, {32, 1, 0, 0, 0}}};
    static const char *const names[2] = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"};
    uint32_t ab[2][2];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
            shp s = k ? sb[i] : sa[i];
            size_t n = (size_t)shp_numel(s);
            float x[128];
            for (size_t j = 0; j < n; j++) x[j] = rng_f32(&r);
            W_CHECK(lora_writer_add_blob_f32_block(w, LORA_DTYPE_NF4, blocks[i], s.ndim, s.d, x, n,
                                                   LORA_COMPRESSION_NONE, &ab[i][k]));
        }
    add_mod(w, (mod){names[0], LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 16.0f, 0, S2(64, 64), ab[0][0],
                     ab[0][1], NONE, NONE});
    add_mod(w, (mod){names[1], LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 1, 16.0f, 0, S2(32, 32), ab[1][0],
                     ab[1][1], NONE, NONE});
    return finish(w);
}

/* The raw values of the compressible blob of build_zlib(). */
#define ZLIB_B_NUMEL 256u
static float zlib_b_value(uint32_t i) { return (float)(i % 4) * 0.25f - 0.5f; }

static void zlib_b_raw(uint8_t *raw)
{
    for (uint32_t i = 0; i < ZLIB_B_NUMEL; i++) {
        float f = zlib_b_value(i);
        uint32_t u;
        memcpy(&u, &f, 4);
        lora_fmt_wr32(raw + 4 * i, u);
    }
}

/* Two zlib-compressed blobs: module B, and last a replacement tensor, whose
 * stream invalid variants replace by one of another length (a tensor has no
 * shape rule, so only the stream is wrong). */
static vec build_zlib(void)
{
    lora_writer *w = new_writer();
    rng r = {4};
    uint32_t a = blob_rand(w, &r, LORA_DTYPE_F32, S2(4, 64));
    float x[ZLIB_B_NUMEL];
    for (uint32_t i = 0; i < ZLIB_B_NUMEL; i++) x[i] = zlib_b_value(i);
    uint32_t b;
    shp s = S2(64, 4);
    W_CHECK(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, s.ndim, s.d, x, ZLIB_B_NUMEL, LORA_COMPRESSION_ZLIB, &b));
    add_mod(w, (mod){"model.layers.0.self_attn.k_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 4, 8.0f,
                     0, S2(64, 64), a, b, NONE, NONE});
    uint32_t t;
    s = S1(ZLIB_B_NUMEL);
    W_CHECK(lora_writer_add_blob_f32(w, LORA_DTYPE_F32, s.ndim, s.d, x, ZLIB_B_NUMEL, LORA_COMPRESSION_ZLIB, &t));
    W_CHECK(lora_writer_add_tensor(w, "lm_head.bias", t));
    return finish(w);
}

/* rsLoRA with DoRA magnitude and LoRA bias, explicit scale with
 * fan_in_fan_out, embedding with magnitude, conv2d with bias, and a
 * replacement tensor. */
static vec build_kinds(void)
{
    lora_writer *w = new_writer();
    rng r = {5};
    uint32_t a0 = blob_rand(w, &r, LORA_DTYPE_F32, S2(2, 8));
    uint32_t b0 = blob_rand(w, &r, LORA_DTYPE_F32, S2(4, 2));
    uint32_t m0 = blob_rand(w, &r, LORA_DTYPE_F32, S1(4));
    uint32_t c0 = blob_rand(w, &r, LORA_DTYPE_F32, S1(4));
    add_mod(w, (mod){"model.layers.0.self_attn.o_proj", LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 2,
                     8.0f, 0, S2(4, 8), a0, b0, m0, c0});
    uint32_t a1 = blob_rand(w, &r, LORA_DTYPE_F32, S2(2, 8));
    uint32_t b1 = blob_rand(w, &r, LORA_DTYPE_F32, S2(12, 2));
    add_mod(w, (mod){"transformer.h.0.attn.c_attn", LORA_KIND_LINEAR, LORA_SCALING_EXPLICIT,
                     LORA_MODULE_FAN_IN_FAN_OUT, 2, 16.0f, 0.75f, S2(8, 12), a1, b1, NONE, NONE});
    uint32_t a2 = blob_rand(w, &r, LORA_DTYPE_F32, S2(2, 10));
    uint32_t b2 = blob_rand(w, &r, LORA_DTYPE_F32, S2(4, 2));
    uint32_t m2 = blob_rand(w, &r, LORA_DTYPE_F32, S1(4));
    add_mod(w, (mod){"model.embed_tokens", LORA_KIND_EMBEDDING, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 2.0f, 0,
                     S2(10, 4), a2, b2, m2, NONE});
    uint32_t a3 = blob_rand(w, &r, LORA_DTYPE_F32, S4(2, 3, 3, 3));
    uint32_t b3 = blob_rand(w, &r, LORA_DTYPE_F32, S4(4, 2, 1, 1));
    uint32_t c3 = blob_rand(w, &r, LORA_DTYPE_F32, S1(4));
    add_mod(w, (mod){"unet.conv_in", LORA_KIND_CONV2D, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 1.0f, 0,
                     S4(4, 3, 3, 3), a3, b3, NONE, c3});
    uint32_t t = blob_rand(w, &r, LORA_DTYPE_F32, S1(4));
    W_CHECK(lora_writer_add_tensor(w, "lm_head.bias", t));
    return finish(w);
}

/* conv1d with DoRA magnitude and conv3d, in F16. */
static vec build_conv(void)
{
    lora_writer *w = new_writer();
    rng r = {6};
    uint32_t a0 = blob_rand(w, &r, LORA_DTYPE_F16, S3(2, 4, 3));
    uint32_t b0 = blob_rand(w, &r, LORA_DTYPE_F16, S3(6, 2, 1));
    uint32_t m0 = blob_rand(w, &r, LORA_DTYPE_F16, S1(6));
    add_mod(w, (mod){"encoder.conv1", LORA_KIND_CONV1D, LORA_SCALING_ALPHA_OVER_RANK, 0, 2, 4.0f, 0, S3(6, 4, 3),
                     a0, b0, m0, NONE});
    uint32_t a1 = blob_rand(w, &r, LORA_DTYPE_F16, S5(2, 2, 2, 2, 2));
    uint32_t b1 = blob_rand(w, &r, LORA_DTYPE_F16, S5(4, 2, 1, 1, 1));
    add_mod(w, (mod){"video.conv3d", LORA_KIND_CONV3D, LORA_SCALING_ALPHA_OVER_SQRT_RANK, 0, 2, 3.0f, 0,
                     S5(4, 2, 2, 2, 2), a1, b1, NONE, NONE});
    return finish(w);
}

/* A name of exactly 4096 bytes (the default max_name_length) is valid. The
 * 4097-byte string value gives the invalid twins a too-long name to point at. */
static vec build_long_name(void)
{
    lora_writer *w = new_writer();
    rng r = {7};
    char *name = xmalloc(4098);
    memset(name, 'n', 4097);
    name[4097] = '\0';
    W_CHECK(lora_writer_set_string(w, "org.example.long", name, 4097));
    name[4096] = '\0';
    uint32_t a = blob_rand(w, &r, LORA_DTYPE_F16, S2(1, 4));
    uint32_t b = blob_rand(w, &r, LORA_DTYPE_F16, S2(4, 1));
    name[0] = 'm';
    add_mod(w, (mod){name, LORA_KIND_LINEAR, LORA_SCALING_ALPHA_OVER_RANK, 0, 1, 1.0f, 0, S2(4, 4), a, b, NONE,
                     NONE});
    free(name);
    return finish(w);
}

/* ---- reading and patching fields of a file --------------------------------- */

static void need(const vec *v, uint64_t off, uint64_t n)
{
    if (off > v->n || n > v->n - off) die("field at %llu+%llu outside a %zu-byte file", (unsigned long long)off,
                                          (unsigned long long)n, v->n);
}
static uint32_t g32(const vec *v, uint64_t off) { need(v, off, 4); return lora_fmt_rd32(v->p + off); }
static uint64_t g64(const vec *v, uint64_t off) { need(v, off, 8); return lora_fmt_rd64(v->p + off); }
static void p8(vec *v, uint64_t off, uint8_t x) { need(v, off, 1); v->p[off] = x; }
static void p16(vec *v, uint64_t off, uint16_t x) { need(v, off, 2); lora_fmt_wr16(v->p + off, x); }
static void p32(vec *v, uint64_t off, uint32_t x) { need(v, off, 4); lora_fmt_wr32(v->p + off, x); }
static void p64(vec *v, uint64_t off, uint64_t x) { need(v, off, 8); lora_fmt_wr64(v->p + off, x); }
static void pf32(vec *v, uint64_t off, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    p32(v, off, u);
}
static float gf32(const vec *v, uint64_t off)
{
    uint32_t u = g32(v, off);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Record and field offsets, taken from the (valid) file's own header. */
static uint64_t meta_rec(const vec *v, uint32_t i) { return g64(v, LORA_FMT_OFF_META_OFFSET) + 24ull * i; }
static uint64_t mod_rec(const vec *v, uint32_t i) { return g64(v, LORA_FMT_OFF_MODULES_OFFSET) + 96ull * i; }
static uint64_t ten_rec(const vec *v, uint32_t i) { return g64(v, LORA_FMT_OFF_TENSORS_OFFSET) + 16ull * i; }
static uint64_t blob_rec(const vec *v, uint32_t i) { return g64(v, LORA_FMT_OFF_BLOBS_OFFSET) + 80ull * i; }
static uint64_t str_at(const vec *v, uint32_t rel) { return g64(v, LORA_FMT_OFF_STRINGS_OFFSET) + rel; }
static uint64_t strings_end(const vec *v)
{
    return g64(v, LORA_FMT_OFF_STRINGS_OFFSET) + g64(v, LORA_FMT_OFF_STRINGS_SIZE);
}

/* Module / blob field offsets within their records. */
enum { M_NAME_OFF = 0, M_NAME_LEN = 4, M_KIND = 8, M_SCALING = 9, M_BASE_NDIM = 10, M_RES11 = 11, M_FLAGS = 12,
       M_RANK = 16, M_ALPHA = 20, M_SCALE = 24, M_RES28 = 28, M_BASE = 32, M_A = 72, M_B = 76, M_MAG = 80,
       M_BIAS = 84, M_RES88 = 88 };
enum { B_DTYPE = 0, B_COMP = 1, B_NDIM = 2, B_RES3 = 3, B_BLOCK_SHIFT = 3, B_RES4 = 4, B_SHAPE = 8, B_OFFSET = 48, B_STORED = 56,
       B_RAW = 64, B_SUM = 72 };

static uint64_t mod_field(const vec *v, uint32_t i, int f) { return mod_rec(v, i) + (uint64_t)f; }
static uint64_t blob_field(const vec *v, uint32_t i, int f) { return blob_rec(v, i) + (uint64_t)f; }
static uint32_t mod_blob(const vec *v, uint32_t i, int f) { return g32(v, mod_field(v, i, f)); }

static uint32_t find_meta(const vec *v, const char *key)
{
    uint32_t n = g32(v, LORA_FMT_OFF_META_COUNT), len = (uint32_t)strlen(key);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t r = meta_rec(v, i);
        if (g32(v, r + 4) == len && memcmp(v->p + str_at(v, g32(v, r)), key, len) == 0) return i;
    }
    die("no metadata key %s", key);
    return 0;
}

static uint32_t find_module(const vec *v, const char *name)
{
    uint32_t n = g32(v, LORA_FMT_OFF_MODULE_COUNT), len = (uint32_t)strlen(name);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t r = mod_rec(v, i);
        if (g32(v, r + 4) == len && memcmp(v->p + str_at(v, g32(v, r)), name, len) == 0) return i;
    }
    die("no module %s", name);
    return 0;
}

/* File offset of the first byte of module i's name. */
static uint64_t mod_name_at(const vec *v, uint32_t i) { return str_at(v, g32(v, mod_rec(v, i))); }

/* Recompute the header checksum, so that the reader gets past step 6. */
static void reseal(vec *v)
{
    uint64_t d = g64(v, LORA_FMT_OFF_DATA_OFFSET);
    if (d < LORA_FMT_HEADER_SIZE || d > v->n) die("reseal: data_offset %llu out of range", (unsigned long long)d);
    p64(v, LORA_FMT_OFF_HEADER_CHECKSUM, lora_header_checksum(v->p, d));
}

/* Recompute blob i's checksum over its (changed) stored bytes, then the header's. */
static void reseal_blob(vec *v, uint32_t i)
{
    uint64_t off = g64(v, blob_field(v, i, B_OFFSET)), n = g64(v, blob_field(v, i, B_STORED));
    need(v, off, n);
    p64(v, blob_field(v, i, B_SUM), lora_xxh3(v->p + off, (size_t)n));
    reseal(v);
}

static void set_shape(vec *v, uint32_t blob, shp s)
{
    p8(v, blob_field(v, blob, B_NDIM), (uint8_t)s.ndim);
    for (uint32_t k = 0; k < LORA_MAX_DIMS; k++) p64(v, blob_field(v, blob, B_SHAPE) + 8 * k, s.d[k]);
}

/* Swap the last blob's stored bytes for `bytes`, fixing its size, checksum,
 * the file size and the header checksum. The last blob is the only one whose
 * size can change without moving another. */
static void replace_last_blob(vec *v, const uint8_t *bytes, size_t n)
{
    uint32_t last = g32(v, LORA_FMT_OFF_BLOB_COUNT) - 1;
    uint64_t off = g64(v, blob_field(v, last, B_OFFSET)), old = g64(v, blob_field(v, last, B_STORED));
    vec_splice(v, (size_t)off, (size_t)old, bytes, n);
    p64(v, blob_field(v, last, B_STORED), n);
    p64(v, blob_field(v, last, B_SUM), lora_xxh3(bytes, n));
    p64(v, LORA_FMT_OFF_FILE_SIZE, v->n);
    reseal(v);
}

/* ---- hand-made zlib streams (independent of the zlib version) -------------- */

/* DEFLATE stored blocks (RFC 1951 3.2.4) holding src; returns the length.
 * dst needs n + 5 * (n / 65535 + 1) bytes. */
static size_t deflate_stored(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t pos = 0, done = 0;
    do {
        size_t chunk = n - done < 65535 ? n - done : 65535;
        dst[pos++] = done + chunk == n ? 1 : 0; /* BFINAL, BTYPE 00 */
        lora_fmt_wr16(dst + pos, (uint16_t)chunk);
        lora_fmt_wr16(dst + pos + 2, (uint16_t)~chunk);
        pos += 4;
        memcpy(dst + pos, src, chunk);
        pos += chunk;
        src += chunk;
        done += chunk;
    } while (done < n);
    return pos;
}

static void wr32be(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24); p[1] = (uint8_t)(x >> 16); p[2] = (uint8_t)(x >> 8); p[3] = (uint8_t)x;
}

/* A zlib stream (RFC 1950) of stored blocks with the given CMF/FLG bytes. */
static vec zlib_stored(uint8_t cmf, uint8_t flg, const uint8_t *src, size_t n)
{
    vec v = {xmalloc(n + 5 * (n / 65535 + 1) + 6), 0};
    v.p[0] = cmf;
    v.p[1] = flg;
    v.n = 2 + deflate_stored(v.p + 2, src, n);
    wr32be(v.p + v.n, (uint32_t)adler32(1, src, (uInt)n));
    v.n += 4;
    return v;
}

/* ---- output ---------------------------------------------------------------- */

typedef struct {
    const char *outdir;
    FILE *manifest;
    unsigned valid, invalid, disagree;
} gen;

/* What the library says about the bytes: open, then verify every blob. */
static const char *library_says(const vec *v, char *detail, size_t cap)
{
    lora_reader *r = NULL;
    lora_error err;
    memset(&err, 0, sizeof err);
    const void *data = v->n ? (const void *)v->p : (const void *)"";
    lora_status st = lora_reader_open_buffer(data, v->n, NULL, &r, &err);
    if (st == LORA_OK) {
        st = lora_reader_verify(r, &err);
        lora_reader_free(r);
    }
    snprintf(detail, cap, "%s", st == LORA_OK ? "" : err.detail);
    return st == LORA_OK ? "OK" : lora_status_name(st);
}

static void write_bytes(const char *path, const vec *v)
{
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    if ((v->n && fwrite(v->p, 1, v->n, f) != v->n) || fclose(f) != 0) die("%s: write failed", path);
}

/* Write one vector and its MANIFEST line; takes ownership of v. */
static void emit(gen *g, const char *name, vec v, const char *expected, const char *desc)
{
    char path[1024], detail[LORA_ERROR_DETAIL_SIZE];
    snprintf(path, sizeof path, "%s/%s", g->outdir, name);
    write_bytes(path, &v);
    fprintf(g->manifest, "%s\t%s\t%s\n", name, expected, desc);
    const char *got = library_says(&v, detail, sizeof detail);
    if (strcmp(got, expected) != 0) {
        fprintf(stderr, "gen_vectors: disagreement: %s: spec says %s, library says %s (%s)\n", name, expected, got,
                detail);
        g->disagree++;
    }
    if (strcmp(expected, "OK") == 0) g->valid++;
    else g->invalid++;
    free(v.p);
}

/* The common case: copy `base`, write one field, fix the header checksum. */
static void mut(gen *g, const vec *base, uint64_t off, int width, uint64_t value, const char *name,
                const char *expected, const char *desc)
{
    vec v = vec_dup(*base);
    switch (width) {
    case 1: p8(&v, off, (uint8_t)value); break;
    case 2: p16(&v, off, (uint16_t)value); break;
    case 4: p32(&v, off, (uint32_t)value); break;
    default: p64(&v, off, value); break;
    }
    reseal(&v);
    emit(g, name, v, expected, desc);
}

/* ---- the catalogue --------------------------------------------------------- */

typedef struct {
    vec minimal, linear, f16, quant, zlib, kinds, conv, longname, nf4blocks;
} bases;

#define E(x) "LORA_E_" #x
#define HDR(field) LORA_FMT_OFF_##field

/* Step 1: magic, and files too short to have one. */
static void inv_magic(gen *g, const bases *b)
{
    emit(g, "invalid/empty.lora", vec_of("", 0), E(TRUNCATED), "empty file (a prefix of the magic)");
    emit(g, "invalid/magic_prefix_5.lora", vec_of(b->minimal.p, 5), E(TRUNCATED), "first 5 bytes of the magic");
    emit(g, "invalid/short_not_magic.lora", vec_of("GGUF", 4), E(BAD_MAGIC), "4 bytes that are not a magic prefix");
    emit(g, "invalid/short_text_damaged.lora", vec_of("\x89LORA\n\x1a", 7), E(BAD_MAGIC),
         "7 bytes: CRLF->LF damage is only recognised with 8 bytes");
    vec v = vec_dup(b->minimal);
    p8(&v, 2, 'X');
    emit(g, "invalid/magic_wrong.lora", v, E(BAD_MAGIC), "minimal file with magic byte 2 changed");
    static const uint8_t gguf[24] = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    emit(g, "invalid/magic_gguf.lora", vec_of(gguf, sizeof gguf), E(BAD_MAGIC), "a GGUF v3 header (other format)");
    static const char st_json[] = "{\"__metadata__\":{\"format\":\"pt\"}}      ";
    v = vec_of("\0\0\0\0\0\0\0\0", 8);
    p64(&v, 0, sizeof st_json - 1);
    vec_splice(&v, 8, 0, st_json, sizeof st_json - 1);
    emit(g, "invalid/magic_safetensors.lora", v, E(BAD_MAGIC), "a safetensors file: u64 header length + JSON");
    static const uint8_t png[16] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    emit(g, "invalid/magic_png.lora", vec_of(png, sizeof png), E(BAD_MAGIC), "a PNG signature (same design, not LORA)");
    v = vec_dup(b->minimal);
    vec_splice(&v, 5, 1, NULL, 0);
    emit(g, "invalid/text_crlf_to_lf.lora", v, E(TEXT_MODE_DAMAGE), "minimal file with CR LF of the magic turned into LF");
    v = vec_dup(b->minimal);
    vec_splice(&v, 6, 0, "\r", 1);
    emit(g, "invalid/text_lf_to_crlf.lora", v, E(TEXT_MODE_DAMAGE), "minimal file with LF of the magic turned into CR LF");
    v = vec_dup(b->minimal);
    p8(&v, 0, 0x09);
    emit(g, "invalid/text_7bit.lora", v, E(TEXT_MODE_DAMAGE), "minimal file with the high bit of byte 0 stripped");
}

/* Steps 2-5: version, header size, file size, data offset. */
static void inv_frame(gen *g, const bases *b)
{
    const vec *m = &b->minimal, *l = &b->linear;
    emit(g, "invalid/truncated_10.lora", vec_of(m->p, 10), E(TRUNCATED), "magic and version_major only");
    mut(g, m, HDR(VERSION_MAJOR), 2, 0, "invalid/version_0.lora", E(UNSUPPORTED_VERSION), "version_major 0");
    mut(g, m, HDR(VERSION_MAJOR), 2, 2, "invalid/version_2.lora", E(UNSUPPORTED_VERSION), "version_major 2");
    mut(g, m, HDR(VERSION_MAJOR), 2, 0x0100, "invalid/version_byteswapped.lora", E(UNSUPPORTED_VERSION),
        "version_major 0x0100 (byte-swapped 1)");
    vec v = vec_of(m->p, 64);
    p16(&v, HDR(VERSION_MAJOR), 2);
    emit(g, "invalid/version_2_short.lora", v, E(UNSUPPORTED_VERSION),
         "64 bytes, version_major 2: the version is judged before the header length");
    emit(g, "invalid/truncated_64.lora", vec_of(m->p, 64), E(TRUNCATED), "first 64 bytes of the minimal file");
    emit(g, "invalid/truncated_127.lora", vec_of(m->p, 127), E(TRUNCATED), "minimal file less its last byte");
    mut(g, m, HDR(HEADER_SIZE), 4, 120, "invalid/header_size_120.lora", E(BAD_HEADER), "header_size 120 < 128");
    mut(g, m, HDR(HEADER_SIZE), 4, 132, "invalid/header_size_132.lora", E(BAD_HEADER), "header_size not a multiple of 8");
    mut(g, m, HDR(HEADER_SIZE), 4, 136, "invalid/header_size_136_minor0.lora", E(BAD_HEADER),
        "header_size 136 in a version 1.0 file");
    v = vec_dup(*m);
    p16(&v, HDR(VERSION_MINOR), 1);
    p32(&v, HDR(HEADER_SIZE), 0xFFFFFFF8u);
    reseal(&v);
    emit(g, "invalid/header_size_huge.lora", v, E(TRUNCATED), "version 1.1, header_size 0xFFFFFFF8 > file length");
    emit(g, "invalid/truncated_tables.lora", vec_of(l->p, 300), E(TRUNCATED), "linear file cut in its tables");
    emit(g, "invalid/truncated_blob.lora", vec_of(l->p, l->n - 20), E(TRUNCATED), "linear file cut in its last blob");
    emit(g, "invalid/truncated_last_byte.lora", vec_of(l->p, l->n - 1), E(TRUNCATED), "linear file less its last byte");
    mut(g, l, HDR(FILE_SIZE), 8, l->n + 1, "invalid/file_size_larger.lora", E(TRUNCATED),
        "file_size one more than the length");
    mut(g, l, HDR(FILE_SIZE), 8, l->n - 1, "invalid/file_size_smaller.lora", E(TRAILING_BYTES),
        "file_size one less than the length");
    v = vec_dup(*l);
    vec_splice(&v, v.n, 0, "", 1);
    emit(g, "invalid/trailing_byte.lora", v, E(TRAILING_BYTES), "linear file plus one zero byte");
    v = vec_dup(*l);
    vec_splice(&v, v.n, 0, (const uint8_t[64]){0}, 64);
    p64(&v, HDR(FILE_SIZE), v.n);
    reseal(&v);
    emit(g, "invalid/trailing_after_last_blob.lora", v, E(TRAILING_BYTES),
         "64 zero bytes after the last blob, counted in file_size");
    v = vec_dup(*m);
    vec_splice(&v, v.n, 0, (const uint8_t[64]){0}, 64);
    p64(&v, HDR(FILE_SIZE), v.n);
    reseal(&v);
    emit(g, "invalid/trailing_no_blobs.lora", v, E(TRAILING_BYTES),
         "minimal file plus 64 zero bytes counted in file_size (no blob)");
    vec w = vec_dup(*l);
    p64(&w, HDR(DATA_OFFSET), g64(l, HDR(DATA_OFFSET)) + 8);
    emit(g, "invalid/data_offset_misaligned.lora", w, E(MISALIGNED), "data_offset + 8");
    w = vec_dup(*l);
    p64(&w, HDR(DATA_OFFSET), 0);
    emit(g, "invalid/data_offset_zero.lora", w, E(BAD_OFFSET), "data_offset 0 < header_size");
    w = vec_dup(*m);
    p64(&w, HDR(DATA_OFFSET), 192);
    emit(g, "invalid/data_offset_past_eof.lora", w, E(BAD_OFFSET), "data_offset 192 > file_size 128");
    w = vec_dup(*l);
    p64(&w, HDR(DATA_OFFSET), 0xFFFFFFFFFFFFFFC0ull);
    emit(g, "invalid/data_offset_huge.lora", w, E(BAD_OFFSET), "data_offset 2^64-64");
}

/* Steps 6 and 7: the header checksum and what follows it in the header. */
static void inv_header(gen *g, const bases *b)
{
    const vec *m = &b->minimal, *l = &b->linear;
    vec v = vec_dup(*l);
    v.p[HDR(HEADER_CHECKSUM)] ^= 1;
    emit(g, "invalid/header_checksum_field.lora", v, E(HEADER_CHECKSUM), "one bit of header_checksum flipped");
    v = vec_dup(*l);
    v.p[mod_name_at(&v, 0) + 6] ^= 1;
    emit(g, "invalid/header_checksum_name.lora", v, E(HEADER_CHECKSUM),
         "one bit of a module name flipped, still a valid name");
    v = vec_dup(*l);
    v.p[blob_field(&v, 0, B_SUM)] ^= 1;
    emit(g, "invalid/header_checksum_blob_sum.lora", v, E(HEADER_CHECKSUM),
         "one bit of a blob checksum flipped, header checksum not updated");
    v = vec_dup(*l);
    p32(&v, HDR(MODULE_COUNT), 3);
    emit(g, "invalid/header_checksum_before_layout.lora", v, E(HEADER_CHECKSUM),
         "module_count changed without updating the checksum: checksum (step 6) before layout (step 8)");
    mut(g, l, HDR(REQUIRED_FLAGS), 4, 1, "invalid/required_flag_bit0.lora", E(UNSUPPORTED_FEATURE),
        "required_flags bit 0");
    mut(g, l, HDR(REQUIRED_FLAGS), 4, 0x80000000u, "invalid/required_flag_bit31.lora", E(UNSUPPORTED_FEATURE),
        "required_flags bit 31");
    v = vec_dup(*m);
    p16(&v, HDR(VERSION_MINOR), 1);
    p32(&v, HDR(REQUIRED_FLAGS), 4);
    reseal(&v);
    emit(g, "invalid/required_flag_minor1.lora", v, E(UNSUPPORTED_FEATURE), "version 1.1 with required_flags bit 2");
    mut(g, l, HDR(OPTIONAL_FLAGS), 4, 1, "invalid/optional_flag_minor0.lora", E(RESERVED_NONZERO),
        "optional_flags bit 0 in a version 1.0 file");
    mut(g, l, HDR(RESERVED), 1, 1, "invalid/header_reserved_104.lora", E(RESERVED_NONZERO), "header byte 104");
    mut(g, l, HDR(RESERVED) + 15, 1, 0x80, "invalid/header_reserved_119.lora", E(RESERVED_NONZERO),
        "header byte 119");
}

/* Step 8: counts, canonical table offsets, string table bounds, padding. */
static void inv_layout(gen *g, const bases *b)
{
    const vec *l = &b->linear;
    mut(g, l, HDR(MODULE_COUNT), 4, 0xFFFFFFFFu, "invalid/count_modules_max.lora", E(LIMIT_EXCEEDED),
        "module_count 2^32-1");
    mut(g, l, HDR(META_COUNT), 4, 0xFFFFFFFFu, "invalid/count_meta_max.lora", E(LIMIT_EXCEEDED), "meta_count 2^32-1");
    mut(g, l, HDR(TENSOR_COUNT), 4, 0xFFFFFFFFu, "invalid/count_tensors_max.lora", E(LIMIT_EXCEEDED),
        "tensor_count 2^32-1");
    mut(g, l, HDR(BLOB_COUNT), 4, 0xFFFFFFFFu, "invalid/count_blobs_max.lora", E(LIMIT_EXCEEDED), "blob_count 2^32-1");
    mut(g, l, HDR(MODULE_COUNT), 4, g32(l, HDR(MODULE_COUNT)) + 1, "invalid/count_modules_plus1.lora", E(BAD_OFFSET),
        "module_count + 1, offsets unchanged: tensors_offset no longer canonical");
    vec v = vec_dup(*l);
    uint32_t nb = 1u << 20;
    p32(&v, HDR(BLOB_COUNT), nb);
    p64(&v, HDR(STRINGS_OFFSET), g64(l, HDR(BLOBS_OFFSET)) + 80ull * nb);
    reseal(&v);
    emit(g, "invalid/count_blobs_1m.lora", v, E(BAD_OFFSET),
         "blob_count 2^20 (within the limit) with canonical offsets: tables end past data_offset");
    mut(g, l, HDR(META_OFFSET), 8, g64(l, HDR(META_OFFSET)) + 8, "invalid/meta_offset_noncanonical.lora",
        E(BAD_OFFSET), "meta_offset + 8");
    mut(g, l, HDR(BLOBS_OFFSET), 8, g64(l, HDR(BLOBS_OFFSET)) - 80, "invalid/blobs_offset_noncanonical.lora",
        E(BAD_OFFSET), "blobs_offset one record early");
    mut(g, l, HDR(STRINGS_OFFSET), 8, g64(l, HDR(STRINGS_OFFSET)) + 8, "invalid/strings_offset_noncanonical.lora",
        E(BAD_OFFSET), "strings_offset + 8");
    mut(g, l, HDR(STRINGS_SIZE), 8, UINT64_MAX, "invalid/strings_size_overflow.lora", E(BAD_OFFSET),
        "strings_size 2^64-1: strings_offset + strings_size overflows");
    mut(g, l, HDR(STRINGS_SIZE), 8, g64(l, HDR(DATA_OFFSET)) - g64(l, HDR(STRINGS_OFFSET)) + 1,
        "invalid/strings_size_past_data.lora", E(BAD_OFFSET), "string table ends 1 byte after data_offset");
    mut(g, l, HDR(DATA_OFFSET), 8, g64(l, HDR(DATA_OFFSET)) + 64, "invalid/data_offset_noncanonical.lora",
        E(BAD_OFFSET), "data_offset 64 more than align64(end of string table), version 1.0");
    uint64_t end = strings_end(l);
    if (end % 64 == 0) die("linear base has no padding after its string table");
    mut(g, l, end, 1, 0x01, "invalid/string_padding_nonzero.lora", E(NONZERO_PADDING),
        "nonzero byte between the string table and data_offset");
}

/* Step 9: reserved fields and enumerations of each record kind. */
static void inv_records(gen *g, const bases *b)
{
    const vec *l = &b->linear, *f = &b->f16;
    mut(g, l, meta_rec(l, 0) + 12, 4, 1, "invalid/meta_reserved.lora", E(RESERVED_NONZERO), "metadata reserved u32");
    mut(g, l, mod_field(l, 0, M_RES11), 1, 1, "invalid/module_reserved_11.lora", E(RESERVED_NONZERO),
        "module byte 11");
    mut(g, l, mod_field(l, 1, M_RES28), 4, 0x100, "invalid/module_reserved_28.lora", E(RESERVED_NONZERO),
        "module u32 at 28");
    mut(g, l, mod_field(l, 0, M_RES88), 8, 1ull << 63, "invalid/module_reserved_88.lora", E(RESERVED_NONZERO),
        "module u64 at 88");
    mut(g, f, ten_rec(f, 0) + 12, 4, 1, "invalid/tensor_reserved.lora", E(RESERVED_NONZERO), "tensor reserved u32");
    mut(g, l, blob_field(l, 0, B_RES3), 1, 1, "invalid/blob_reserved_3.lora", E(RESERVED_NONZERO), "blob byte 3");
    mut(g, &b->quant, blob_field(&b->quant, 0, B_BLOCK_SHIFT), 1, 6, "invalid/q8_block_shift_6.lora",
        E(RESERVED_NONZERO), "Q8_0 blob with block_shift 6 (only NF4 has a block_shift)");
    mut(g, l, blob_field(l, 2, B_RES4), 4, 0x10000, "invalid/blob_reserved_4.lora", E(RESERVED_NONZERO),
        "blob u32 at 4");
    uint32_t mi = find_meta(l, "org.example.int");
    mut(g, l, meta_rec(l, mi) + 8, 4, 0, "invalid/meta_type_0.lora", E(BAD_ENUM), "metadata type 0");
    mut(g, l, meta_rec(l, mi) + 8, 4, 5, "invalid/meta_type_5.lora", E(BAD_ENUM), "metadata type 5");
    mut(g, l, mod_field(l, 0, M_KIND), 1, 5, "invalid/module_kind_5.lora", E(BAD_ENUM), "module kind 5");
    mut(g, l, mod_field(l, 0, M_KIND), 1, 255, "invalid/module_kind_255.lora", E(BAD_ENUM), "module kind 255");
    mut(g, l, mod_field(l, 1, M_SCALING), 1, 3, "invalid/module_scaling_3.lora", E(BAD_ENUM), "module scaling 3");
    mut(g, l, blob_field(l, 0, B_DTYPE), 1, 6, "invalid/blob_dtype_6.lora", E(UNSUPPORTED_DTYPE), "blob dtype 6");
    mut(g, l, blob_field(l, 1, B_DTYPE), 1, 255, "invalid/blob_dtype_255.lora", E(UNSUPPORTED_DTYPE),
        "blob dtype 255");
    mut(g, l, blob_field(l, 0, B_COMP), 1, 2, "invalid/blob_compression_2.lora", E(UNSUPPORTED_COMPRESSION),
        "blob compression 2");
}

/* Write `bytes` over the start of module 0's name. */
static void name_bytes(gen *g, const vec *base, const char *bytes, size_t n, const char *file, const char *desc)
{
    vec v = vec_dup(*base);
    memcpy(v.p + mod_name_at(&v, 0) + 6, bytes, n);
    reseal(&v);
    emit(g, file, v, E(BAD_STRING), desc);
}

/* Step 9, strings: ranges, empty names, NUL, UTF-8, length limit. */
static void inv_strings(gen *g, const bases *b)
{
    const vec *l = &b->linear, *f = &b->f16, *n = &b->longname;
    uint64_t ssize = g64(l, HDR(STRINGS_SIZE));
    vec v = vec_dup(*l);
    p32(&v, mod_field(&v, 0, M_NAME_OFF), (uint32_t)ssize - 2);
    p32(&v, mod_field(&v, 0, M_NAME_LEN), 5);
    reseal(&v);
    emit(g, "invalid/name_past_end.lora", v, E(BAD_STRING), "module name runs 3 bytes past the string table");
    mut(g, l, mod_field(l, 0, M_NAME_LEN), 4, 0xFFFFFFFFu, "invalid/name_len_huge.lora", E(BAD_STRING),
        "module name length 2^32-1");
    mut(g, l, mod_field(l, 1, M_NAME_OFF), 4, 0xFFFFFFFFu, "invalid/name_off_huge.lora", E(BAD_STRING),
        "module name offset 2^32-1 (offset + length overflows u32)");
    mut(g, l, mod_field(l, 0, M_NAME_LEN), 4, 0, "invalid/name_empty.lora", E(BAD_STRING), "module name length 0");
    mut(g, l, meta_rec(l, 0) + 4, 4, 0, "invalid/key_empty.lora", E(BAD_STRING), "metadata key length 0");
    mut(g, f, ten_rec(f, 1) + 4, 4, 0, "invalid/tensor_name_empty.lora", E(BAD_STRING), "tensor name length 0");
    name_bytes(g, l, "\0", 1, "invalid/name_nul.lora", "NUL byte inside a module name");
    name_bytes(g, l, "\xff", 1, "invalid/name_utf8_ff.lora", "byte 0xFF in a module name");
    name_bytes(g, l, "\x80", 1, "invalid/name_utf8_lone_continuation.lora", "lone continuation byte 0x80");
    name_bytes(g, l, "\xc0\xaf", 2, "invalid/name_utf8_overlong.lora", "overlong encoding C0 AF of '/'");
    name_bytes(g, l, "\xe0\x80\xaf", 3, "invalid/name_utf8_overlong3.lora", "overlong 3-byte encoding E0 80 AF");
    name_bytes(g, l, "\xed\xa0\x80", 3, "invalid/name_utf8_surrogate.lora", "UTF-16 surrogate U+D800 (ED A0 80)");
    name_bytes(g, l, "\xf4\x90\x80\x80", 4, "invalid/name_utf8_above_max.lora", "code point U+110000 (F4 90 80 80)");
    v = vec_dup(*l);
    v.p[mod_name_at(&v, 0) + g32(&v, mod_field(&v, 0, M_NAME_LEN)) - 1] = 0xe2;
    reseal(&v);
    emit(g, "invalid/name_utf8_truncated.lora", v, E(BAD_STRING), "module name ends inside a 3-byte sequence");
    uint32_t cfg = find_meta(l, LORA_META_SOURCE_CONFIG);
    v = vec_dup(*l);
    p32(&v, meta_rec(&v, cfg) + 16, (uint32_t)ssize - 4);
    reseal(&v);
    emit(g, "invalid/value_past_end.lora", v, E(BAD_STRING), "STRING value runs past the string table");
    v = vec_dup(*l);
    v.p[str_at(&v, g32(&v, meta_rec(&v, cfg) + 16)) + 10] = 0;
    reseal(&v);
    emit(g, "invalid/value_nul.lora", v, E(BAD_STRING), "NUL byte inside a STRING value");
    v = vec_dup(*l);
    v.p[str_at(&v, g32(&v, meta_rec(&v, cfg) + 16)) + 10] = 0xc3;
    reseal(&v);
    emit(g, "invalid/value_bad_utf8.lora", v, E(BAD_STRING), "invalid UTF-8 inside a STRING value");
    uint64_t lv = meta_rec(n, find_meta(n, "org.example.long")) + 16;
    v = vec_dup(*n);
    p32(&v, mod_field(&v, 0, M_NAME_OFF), g32(n, lv));
    p32(&v, mod_field(&v, 0, M_NAME_LEN), 4097);
    reseal(&v);
    emit(g, "invalid/name_too_long.lora", v, E(LIMIT_EXCEEDED), "module name of 4097 bytes (limit 4096)");
    v = vec_dup(*n);
    p32(&v, meta_rec(&v, 0), g32(n, lv));
    p32(&v, meta_rec(&v, 0) + 4, 4097);
    reseal(&v);
    emit(g, "invalid/key_too_long.lora", v, E(LIMIT_EXCEEDED), "metadata key of 4097 bytes (limit 4096)");
}

static void shape_mut(gen *g, const vec *base, uint32_t blob, shp s, const char *file, const char *expected,
                      const char *desc)
{
    vec v = vec_dup(*base);
    set_shape(&v, blob, s);
    reseal(&v);
    emit(g, file, v, expected, desc);
}

/* Step 10, first half: shapes, sizes and limits of blobs. */
static void inv_blob_sizes(gen *g, const bases *b)
{
    const vec *l = &b->linear, *q = &b->quant, *z = &b->zlib;
    uint32_t zl = g32(z, HDR(BLOB_COUNT)) - 1; /* the zlib tensor blob */
    mut(g, l, blob_field(l, 0, B_NDIM), 1, 0, "invalid/blob_ndim_0.lora", E(BAD_SHAPE), "blob ndim 0");
    mut(g, l, blob_field(l, 0, B_NDIM), 1, 6, "invalid/blob_ndim_6.lora", E(BAD_SHAPE), "blob ndim 6");
    shape_mut(g, l, 1, S2(8, 0), "invalid/blob_dim_zero.lora", E(BAD_SHAPE), "blob shape [8, 0]");
    shape_mut(g, l, 1, (shp){2, {8, 2, 1, 0, 0}}, "invalid/blob_unused_dim_nonzero.lora", E(BAD_SHAPE),
              "blob ndim 2 with shape[2] = 1");
    shape_mut(g, l, 0, S2(1ull << 32, 1ull << 32), "invalid/blob_numel_overflow.lora", E(BAD_SHAPE),
              "blob shape [2^32, 2^32]: element count overflows u64");
    shape_mut(g, l, 0, S3(4194305, 4194305, 211106198978564ull), "invalid/blob_numel_wraps_to_4.lora", E(BAD_SHAPE),
              "blob shape whose product wraps to 4 modulo 2^64");
    vec v = vec_dup(*l);
    set_shape(&v, 0, S1(1ull << 62));
    p64(&v, blob_field(&v, 0, B_RAW), 0);
    p64(&v, blob_field(&v, 0, B_STORED), 0);
    reseal(&v);
    emit(g, "invalid/blob_bytes_overflow.lora", v, E(BAD_SIZE), "F32 blob of 2^62 elements: byte size overflows u64");
    shape_mut(g, q, 0, S2(3, 21), "invalid/blob_q8_partial_block.lora", E(BAD_SHAPE),
              "Q8_0 blob of 63 elements (block 32)");
    shape_mut(g, q, 2, S2(2, 31), "invalid/blob_q4_partial_block.lora", E(BAD_SHAPE),
              "Q4_0 blob of 62 elements (block 32)");
    shape_mut(g, q, 4, S2(1, 32), "invalid/blob_nf4_partial_block.lora", E(BAD_SHAPE),
              "NF4 blob of 32 elements (block 64)");
    mut(g, q, blob_field(q, 4, B_BLOCK_SHIFT), 1, 0, "invalid/nf4_block_shift_0.lora", E(BAD_SHAPE),
        "NF4 blob with block_shift 0 (block 1)");
    mut(g, q, blob_field(q, 4, B_BLOCK_SHIFT), 1, 4, "invalid/nf4_block_shift_4.lora", E(BAD_SHAPE),
        "NF4 blob with block_shift 4 (block 16, below 32)");
    mut(g, q, blob_field(q, 4, B_BLOCK_SHIFT), 1, 13, "invalid/nf4_block_shift_13.lora", E(BAD_SHAPE),
        "NF4 blob with block_shift 13 (block 8192, above 4096)");
    mut(g, q, blob_field(q, 4, B_BLOCK_SHIFT), 1, 7, "invalid/nf4_block128_partial.lora", E(BAD_SHAPE),
        "NF4 blob of 64 elements with block_shift 7 (block 128)");
    const vec *n4 = &b->nf4blocks;
    mut(g, n4, blob_field(n4, 0, B_BLOCK_SHIFT), 1, 6, "invalid/nf4_block128_as_64.lora", E(BAD_SIZE),
        "NF4 blob written in blocks of 128 relabelled block_shift 6: raw_size disagrees");
    mut(g, l, blob_field(l, 1, B_RAW), 8, g64(l, blob_field(l, 1, B_RAW)) + 4, "invalid/blob_raw_size_mismatch.lora",
        E(BAD_SIZE), "raw_size 4 more than dtype x shape");
    mut(g, l, blob_field(l, 1, B_STORED), 8, g64(l, blob_field(l, 1, B_STORED)) - 4,
        "invalid/blob_stored_size_mismatch.lora", E(BAD_SIZE), "uncompressed blob with stored_size != raw_size");
    v = vec_dup(*l);
    set_shape(&v, 3, S1(1ull << 33));
    p64(&v, blob_field(&v, 3, B_RAW), 1ull << 35);
    p64(&v, blob_field(&v, 3, B_STORED), 1ull << 35);
    reseal(&v);
    emit(g, "invalid/blob_raw_over_limit.lora", v, E(LIMIT_EXCEEDED),
         "consistent F32 blob of 32 GiB: raw_size over max_blob_raw_size (16 GiB), checked before placement");
    mut(g, z, blob_field(z, zl, B_STORED), 8, 0, "invalid/zlib_stored_zero.lora", E(BAD_SIZE),
        "zlib blob with stored_size 0");
    uint64_t s = g64(z, blob_field(z, zl, B_STORED));
    v = vec_dup(*z);
    set_shape(&v, zl, S1(258 * s + 257));
    p64(&v, blob_field(&v, zl, B_RAW), 4 * (258 * s + 257));
    reseal(&v);
    emit(g, "invalid/zlib_bomb_over_limit.lora", v, E(BAD_SIZE),
         "zlib raw_size = 1032 * stored_size + 1028: one element over the bomb guard");
    v = vec_dup(*z);
    set_shape(&v, zl, S1(1u << 24));
    p64(&v, blob_field(&v, zl, B_RAW), 1u << 26);
    reseal(&v);
    emit(g, "invalid/zlib_bomb_64m.lora", v, E(BAD_SIZE), "tiny zlib stream declaring 64 MiB of raw data");
    v = vec_dup(*z);
    set_shape(&v, zl, S1(258 * s + 256));
    p64(&v, blob_field(&v, zl, B_RAW), 4 * (258 * s + 256));
    reseal(&v);
    emit(g, "invalid/zlib_bomb_at_limit.lora", v, E(BAD_COMPRESSED_DATA),
         "zlib raw_size exactly at the bomb guard: passes open, inflates to fewer bytes than raw_size");
}

/* Step 10, second half: where blobs sit (canonical offsets, end of file). */
static void inv_blob_placement(gen *g, const bases *b)
{
    const vec *l = &b->linear, *z = &b->zlib;
    uint32_t zl = g32(z, HDR(BLOB_COUNT)) - 1;
    uint64_t s = g64(z, blob_field(z, zl, B_STORED));
    vec v;
    mut(g, l, blob_field(l, 1, B_OFFSET), 8, g64(l, blob_field(l, 1, B_OFFSET)) + 64,
        "invalid/blob_offset_plus64.lora", E(BAD_OFFSET), "blob 1 offset 64 bytes after its canonical place");
    mut(g, l, blob_field(l, 1, B_OFFSET), 8, g64(l, blob_field(l, 1, B_OFFSET)) + 8,
        "invalid/blob_offset_misaligned.lora", E(BAD_OFFSET), "blob 1 offset + 8 (not canonical, not aligned)");
    mut(g, l, blob_field(l, 3, B_OFFSET), 8, 0xFFFFFFFFFFFFFFC0ull, "invalid/blob_offset_huge.lora", E(BAD_OFFSET),
        "last blob offset 2^64-64");
    mut(g, l, blob_field(l, 1, B_OFFSET), 8, g64(l, blob_field(l, 0, B_OFFSET)), "invalid/blob_overlap.lora",
        E(BAD_OFFSET), "blob 1 at the offset of blob 0 (overlap)");
    v = vec_dup(*l);
    p64(&v, blob_field(&v, 0, B_OFFSET), g64(l, blob_field(l, 1, B_OFFSET)));
    p64(&v, blob_field(&v, 1, B_OFFSET), g64(l, blob_field(l, 0, B_OFFSET)));
    reseal(&v);
    emit(g, "invalid/blob_swapped.lora", v, E(BAD_OFFSET), "offsets of blobs 0 and 1 exchanged (out of order)");
    v = vec_dup(*l);
    set_shape(&v, 3, S2(8, 4));
    p64(&v, blob_field(&v, 3, B_RAW), 128);
    p64(&v, blob_field(&v, 3, B_STORED), 128);
    reseal(&v);
    emit(g, "invalid/blob_past_eof.lora", v, E(BAD_OFFSET), "last blob grown to 128 bytes: ends past file_size");
    mut(g, z, blob_field(z, zl, B_STORED), 8, 0xFFFFFFFFFFFFFFC0ull, "invalid/zlib_stored_overflow.lora",
        E(BAD_OFFSET), "zlib stored_size 2^64-64: offset + stored_size overflows");
    mut(g, z, blob_field(z, zl, B_STORED), 8, s + 1, "invalid/zlib_stored_past_eof.lora", E(BAD_OFFSET),
        "zlib stored_size one byte past the end of the file");
}

/* Step 11: metadata semantics. */
static void inv_meta(gen *g, const bases *b)
{
    const vec *l = &b->linear;
    uint32_t i0 = find_meta(l, "org.example.int"), i1 = find_meta(l, "org.example.int_min");
    vec v = vec_dup(*l);
    p32(&v, meta_rec(&v, i1), g32(l, meta_rec(l, i0)));
    p32(&v, meta_rec(&v, i1) + 4, g32(l, meta_rec(l, i0) + 4));
    reseal(&v);
    emit(g, "invalid/meta_duplicate_key.lora", v, E(DUPLICATE_NAME), "two INT entries with the same key");
    uint32_t yes = find_meta(l, "org.example.yes");
    mut(g, l, meta_rec(l, yes) + 16, 8, 2, "invalid/meta_bool_2.lora", E(BAD_METADATA), "BOOL value 2");
    mut(g, l, meta_rec(l, yes) + 16, 8, 1ull << 32, "invalid/meta_bool_high.lora", E(BAD_METADATA),
        "BOOL value 2^32 (low 32 bits zero)");
    uint32_t bm = find_meta(l, LORA_META_BASE_MODEL), cfg = find_meta(l, LORA_META_SOURCE_CONFIG);
    mut(g, l, meta_rec(l, bm) + 8, 4, LORA_META_INT, "invalid/meta_reserved_key_int.lora", E(BAD_METADATA),
        "lora.base_model stored as INT");
    v = vec_dup(*l);
    p32(&v, meta_rec(&v, cfg) + 8, LORA_META_BOOL);
    p64(&v, meta_rec(&v, cfg) + 16, 1);
    reseal(&v);
    emit(g, "invalid/meta_reserved_key_bool.lora", v, E(BAD_METADATA), "lora.source.config stored as BOOL true");
}

/* Step 12, first half: names, rank, alpha, scale, flags. */
static void inv_module_fields(gen *g, const bases *b)
{
    const vec *l = &b->linear, *k = &b->kinds;
    vec v = vec_dup(*l);
    p32(&v, mod_field(&v, 1, M_NAME_OFF), g32(l, mod_field(l, 0, M_NAME_OFF)));
    reseal(&v);
    emit(g, "invalid/module_duplicate_name.lora", v, E(DUPLICATE_NAME), "two modules with the same name");
    mut(g, l, mod_field(l, 0, M_RANK), 4, 0, "invalid/rank_0.lora", E(BAD_RANK), "rank 0");
    mut(g, l, mod_field(l, 0, M_RANK), 4, 65537, "invalid/rank_over_limit.lora", E(LIMIT_EXCEEDED),
        "rank 65537 > max_rank 65536");
    mut(g, l, mod_field(l, 0, M_ALPHA), 4, 0x7FC00000u, "invalid/alpha_nan.lora", E(BAD_ALPHA), "alpha NaN");
    mut(g, l, mod_field(l, 0, M_ALPHA), 4, 0x7F800000u, "invalid/alpha_inf.lora", E(BAD_ALPHA), "alpha +Inf");
    mut(g, l, mod_field(l, 1, M_ALPHA), 4, 0xFF800000u, "invalid/alpha_neg_inf.lora", E(BAD_ALPHA), "alpha -Inf");
    mut(g, l, mod_field(l, 0, M_SCALE), 4, g32(l, mod_field(l, 0, M_SCALE)) ^ 1, "invalid/scale_one_ulp.lora",
        E(BAD_SCALE), "alpha/r scale off by one unit in the last place");
    mut(g, l, mod_field(l, 0, M_SCALE), 4, 0xC0000000u, "invalid/scale_sign.lora", E(BAD_SCALE),
        "alpha/r scale -2 for alpha 4, rank 2");
    uint32_t rs = find_module(k, "model.layers.0.self_attn.o_proj"), ex = find_module(k, "transformer.h.0.attn.c_attn");
    uint32_t em = find_module(k, "model.embed_tokens"), cv = find_module(k, "unet.conv_in");
    v = vec_dup(*k);
    pf32(&v, mod_field(&v, rs, M_SCALE), gf32(k, mod_field(k, rs, M_ALPHA)) / 2.0f);
    reseal(&v);
    emit(g, "invalid/scale_rslora_as_alpha_over_r.lora", v, E(BAD_SCALE), "rsLoRA module whose scale is alpha/r");
    mut(g, k, mod_field(k, ex, M_SCALE), 4, 0x7FC00000u, "invalid/scale_explicit_nan.lora", E(BAD_SCALE),
        "explicit scale NaN");
    mut(g, k, mod_field(k, ex, M_SCALE), 4, 0xFF800000u, "invalid/scale_explicit_inf.lora", E(BAD_SCALE),
        "explicit scale -Inf");
    mut(g, l, mod_field(l, 0, M_FLAGS), 4, 2, "invalid/module_flags_bit1.lora", E(RESERVED_NONZERO),
        "module flags bit 1 (undefined)");
    mut(g, k, mod_field(k, em, M_FLAGS), 4, 1, "invalid/fan_in_fan_out_embedding.lora", E(BAD_ENUM),
        "fan_in_fan_out on an embedding");
    mut(g, k, mod_field(k, cv, M_FLAGS), 4, 1, "invalid/fan_in_fan_out_conv2d.lora", E(BAD_ENUM),
        "fan_in_fan_out on a conv2d");
    mut(g, l, mod_field(l, 0, M_FLAGS), 4, 1, "invalid/fan_in_fan_out_untransposed.lora", E(BAD_SHAPE),
        "fan_in_fan_out set but base [8,16] is [out,in]: A [2,16] should then be [2,8]");
}

/* Step 12, second half: base shape, blob references, blob shapes. */
static void inv_module_shapes(gen *g, const bases *b)
{
    const vec *l = &b->linear, *k = &b->kinds;
    uint32_t rs = find_module(k, "model.layers.0.self_attn.o_proj"), ex = find_module(k, "transformer.h.0.attn.c_attn");
    uint32_t em = find_module(k, "model.embed_tokens"), cv = find_module(k, "unet.conv_in");
    vec v;
    mut(g, l, mod_field(l, 0, M_BASE_NDIM), 1, 3, "invalid/base_ndim_3_linear.lora", E(BAD_SHAPE),
        "linear module with base_ndim 3");
    mut(g, k, mod_field(k, cv, M_BASE_NDIM), 1, 3, "invalid/base_ndim_3_conv2d.lora", E(BAD_SHAPE),
        "conv2d module with base_ndim 3");
    mut(g, l, mod_field(l, 0, M_BASE) + 8, 8, 0, "invalid/base_dim_zero.lora", E(BAD_SHAPE), "base shape [8, 0]");
    mut(g, l, mod_field(l, 0, M_BASE) + 16, 8, 1, "invalid/base_unused_dim_nonzero.lora", E(BAD_SHAPE),
        "linear base_shape[2] = 1");
    mut(g, l, mod_field(l, 0, M_BASE) + 8, 8, 32, "invalid/base_in_mismatch.lora", E(BAD_SHAPE),
        "base [8, 32] but A is [2, 16]");
    mut(g, l, mod_field(l, 0, M_A), 4, g32(l, HDR(BLOB_COUNT)), "invalid/blob_a_out_of_range.lora", E(BAD_BLOB_REF),
        "blob_a == blob_count");
    mut(g, l, mod_field(l, 1, M_B), 4, LORA_NO_BLOB, "invalid/blob_b_none.lora", E(BAD_BLOB_REF),
        "blob_b 0xFFFFFFFF (B is required)");
    mut(g, l, mod_field(l, 0, M_A), 4, LORA_NO_BLOB, "invalid/blob_a_none.lora", E(BAD_BLOB_REF),
        "blob_a 0xFFFFFFFF (A is required)");
    mut(g, k, mod_field(k, rs, M_MAG), 4, 0xFFFFFFFEu, "invalid/magnitude_out_of_range.lora", E(BAD_BLOB_REF),
        "blob_magnitude 0xFFFFFFFE");
    shape_mut(g, l, mod_blob(l, 0, M_B), S2(16, 1), "invalid/rank_mismatch_a_b.lora", E(BAD_SHAPE),
              "B [16, 1] while rank and A say 2");
    shape_mut(g, l, mod_blob(l, 0, M_A), S2(16, 2), "invalid/a_transposed.lora", E(BAD_SHAPE),
              "A stored [in, r] instead of [r, in]");
    v = vec_dup(*l);
    p32(&v, mod_field(&v, 0, M_A), mod_blob(l, 0, M_B));
    p32(&v, mod_field(&v, 0, M_B), mod_blob(l, 0, M_A));
    reseal(&v);
    emit(g, "invalid/a_b_swapped.lora", v, E(BAD_SHAPE), "blob_a and blob_b exchanged");
    mut(g, k, mod_field(k, ex, M_RANK), 4, 1, "invalid/rank_field_mismatch.lora", E(BAD_SHAPE),
        "explicit-scale module with rank 1 while A and B have rank 2");
    shape_mut(g, k, mod_blob(k, rs, M_MAG), S2(2, 2), "invalid/magnitude_2d.lora", E(BAD_SHAPE),
              "DoRA magnitude [2, 2] instead of [4]");
    shape_mut(g, k, mod_blob(k, cv, M_BIAS), S2(1, 4), "invalid/bias_2d.lora", E(BAD_SHAPE),
              "LoRA bias [1, 4] instead of [4]");
    v = vec_dup(*k);
    p32(&v, mod_field(&v, em, M_BIAS), g32(k, ten_rec(k, 0) + 8));
    reseal(&v);
    emit(g, "invalid/bias_on_embedding.lora", v, E(BAD_SHAPE), "embedding module with a LoRA bias");
    shape_mut(g, k, mod_blob(k, cv, M_B), S4(4, 1, 2, 1), "invalid/conv_b_kernel_not_1.lora", E(BAD_SHAPE),
              "conv2d B [4, 1, 2, 1] instead of [4, 2, 1, 1]");
    shape_mut(g, k, mod_blob(k, cv, M_A), S4(2, 3, 1, 9), "invalid/conv_a_kernel_mismatch.lora", E(BAD_SHAPE),
              "conv2d A kernel [1, 9] against base kernel [3, 3]");
    shape_mut(g, k, mod_blob(k, em, M_A), S2(10, 2), "invalid/embedding_a_transposed.lora", E(BAD_SHAPE),
              "embedding A [num, r] instead of [r, num]");
}

/* Steps 13-15: tensors, blob references, padding between blobs. */
static void inv_refs(gen *g, const bases *b)
{
    const vec *l = &b->linear, *k = &b->kinds, *f = &b->f16, *q = &b->quant;
    vec v = vec_dup(*f);
    p32(&v, ten_rec(&v, 1), g32(f, ten_rec(f, 0)));
    p32(&v, ten_rec(&v, 1) + 4, g32(f, ten_rec(f, 0) + 4));
    reseal(&v);
    emit(g, "invalid/tensor_duplicate_name.lora", v, E(DUPLICATE_NAME), "two tensors with the same name");
    mut(g, f, ten_rec(f, 0) + 8, 4, g32(f, HDR(BLOB_COUNT)), "invalid/tensor_blob_out_of_range.lora",
        E(BAD_BLOB_REF), "tensor blob == blob_count");
    mut(g, f, ten_rec(f, 1) + 8, 4, LORA_NO_BLOB, "invalid/tensor_blob_none.lora", E(BAD_BLOB_REF),
        "tensor blob 0xFFFFFFFF");
    uint32_t rs = find_module(k, "model.layers.0.self_attn.o_proj");
    mut(g, k, mod_field(k, rs, M_BIAS), 4, mod_blob(k, rs, M_MAG), "invalid/blob_shared_in_module.lora",
        E(BAD_BLOB_REF), "bias and magnitude of one module are the same blob");
    mut(g, l, mod_field(l, 1, M_A), 4, mod_blob(l, 0, M_A), "invalid/blob_shared_two_modules.lora", E(BAD_BLOB_REF),
        "two modules use the same A blob");
    mut(g, k, ten_rec(k, 0) + 8, 4, mod_blob(k, rs, M_BIAS), "invalid/blob_shared_tensor_module.lora",
        E(BAD_BLOB_REF), "a tensor uses a module's bias blob");
    mut(g, k, mod_field(k, rs, M_BIAS), 4, LORA_NO_BLOB, "invalid/blob_orphan.lora", E(BAD_BLOB_REF),
        "a blob no module or tensor references");
    v = vec_dup(*q);
    uint64_t end0 = g64(q, blob_field(q, 0, B_OFFSET)) + g64(q, blob_field(q, 0, B_STORED));
    if (end0 % 64 == 0) die("quantized base has no padding after blob 0");
    v.p[end0] = 0x01;
    emit(g, "invalid/blob_padding_nonzero.lora", v, E(NONZERO_PADDING), "nonzero byte between blobs 0 and 1");
    v = vec_dup(*q);
    uint32_t last = g32(q, HDR(BLOB_COUNT)) - 1;
    v.p[g64(q, blob_field(q, last, B_OFFSET)) - 1] = 0x80;
    emit(g, "invalid/blob_padding_last.lora", v, E(NONZERO_PADDING), "nonzero byte just before the last blob");
}

/* Step 16: blob checksums, and a damaged stream from the writer's zlib. */
static void inv_content(gen *g, const bases *b)
{
    const vec *l = &b->linear, *q = &b->quant, *z = &b->zlib;
    vec v = vec_dup(*l);
    v.p[g64(l, blob_field(l, 0, B_OFFSET)) + 17] ^= 0x10;
    emit(g, "invalid/blob_data_flip.lora", v, E(BLOB_CHECKSUM), "one bit of blob 0 flipped");
    v = vec_dup(*q);
    uint32_t last = g32(q, HDR(BLOB_COUNT)) - 1;
    v.p[g64(q, blob_field(q, last, B_OFFSET)) + 35] ^= 0x01;
    emit(g, "invalid/blob_last_byte_flip.lora", v, E(BLOB_CHECKSUM), "last byte of the last (NF4) blob changed");
    v = vec_dup(*l);
    p64(&v, blob_field(&v, 2, B_SUM), g64(l, blob_field(l, 2, B_SUM)) ^ (1ull << 40));
    reseal(&v);
    emit(g, "invalid/blob_checksum_field.lora", v, E(BLOB_CHECKSUM),
         "blob 2 checksum field changed, header checksum updated");
    uint32_t zb = g32(z, HDR(BLOB_COUNT)) - 2; /* the writer's own stream, module B */
    if (z->p[blob_field(z, zb, B_COMP)] != LORA_COMPRESSION_ZLIB) die("zlib base: B is not compressed");
    v = vec_dup(*z);
    uint64_t off = g64(z, blob_field(z, zb, B_OFFSET)), n = g64(z, blob_field(z, zb, B_STORED));
    v.p[off + n / 2] ^= 0x55;
    reseal_blob(&v, zb);
    emit(g, "invalid/zlib_damaged.lora", v, E(BAD_COMPRESSED_DATA),
         "byte in the middle of a deflate stream changed, blob checksum updated");

}

/* Step 16 for zlib: streams that are damaged, wrapped wrongly, or inflate to
 * the wrong size, each replacing the last blob with its checksum updated. */
static void inv_zlib_streams(gen *g, const bases *b)
{
    const vec *z = &b->zlib;
    vec v;
    uint8_t raw[4 * ZLIB_B_NUMEL + 8];
    zlib_b_raw(raw);
    memcpy(raw + 4 * ZLIB_B_NUMEL, raw, 8);
    const size_t rn = 4 * ZLIB_B_NUMEL;
    struct {
        uint8_t cmf, flg;
        size_t len;
        int edit; /* 0 none, 1 bad adler, 2 drop adler, 3 trailing byte, 4 second stream */
        const char *file, *desc;
    } cases[] = {
        {0x78, 0x02, rn, 0, "invalid/zlib_bad_header_check.lora", "zlib header check bits wrong (78 02)"},
        {0x78, 0x20, rn, 0, "invalid/zlib_fdict.lora", "zlib header asks for a preset dictionary (FDICT)"},
        {0x88, 0x1c, rn, 0, "invalid/zlib_bad_window.lora", "zlib window size 64 KiB (CINFO 8)"},
        {0x78, 0x01, rn, 1, "invalid/zlib_bad_adler.lora", "Adler-32 trailer wrong"},
        {0x78, 0x01, rn, 2, "invalid/zlib_truncated.lora", "zlib stream without its Adler-32 trailer"},
        {0x78, 0x01, rn, 3, "invalid/zlib_trailing_garbage.lora", "one byte after the end of the zlib stream"},
        {0x78, 0x01, rn, 4, "invalid/zlib_two_streams.lora", "two concatenated zlib streams"},
        {0x78, 0x01, rn - 4, 0, "invalid/zlib_inflates_short.lora", "zlib stream inflates to raw_size - 4 bytes"},
        {0x78, 0x01, rn + 4, 0, "invalid/zlib_inflates_long.lora", "zlib stream inflates to raw_size + 4 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vec s = cases[i].edit == 4 ? zlib_stored(0x78, 0x01, raw, rn / 2) : zlib_stored(cases[i].cmf, cases[i].flg, raw, cases[i].len);
        if (cases[i].edit == 1) s.p[s.n - 1] ^= 1;
        if (cases[i].edit == 2) s.n -= 4;
        if (cases[i].edit == 3) vec_splice(&s, s.n, 0, "", 1);
        if (cases[i].edit == 4) {
            vec t = zlib_stored(0x78, 0x01, raw + rn / 2, rn / 2);
            vec_splice(&s, s.n, 0, t.p, t.n);
            free(t.p);
        }
        v = vec_dup(*z);
        replace_last_blob(&v, s.p, s.n);
        free(s.p);
        emit(g, cases[i].file, v, E(BAD_COMPRESSED_DATA), cases[i].desc);
    }
    /* raw DEFLATE and gzip: other wrappers of the same data */
    uint8_t buf[4 * ZLIB_B_NUMEL + 64];
    size_t dn = deflate_stored(buf, raw, rn);
    v = vec_dup(*z);
    replace_last_blob(&v, buf, dn);
    emit(g, "invalid/zlib_raw_deflate.lora", v, E(BAD_COMPRESSED_DATA), "raw DEFLATE data without the zlib wrapper");
    static const uint8_t gz_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memmove(buf + 10, buf, dn);
    memcpy(buf, gz_head, 10);
    lora_fmt_wr32(buf + 10 + dn, (uint32_t)crc32(0, raw, (uInt)rn));
    lora_fmt_wr32(buf + 14 + dn, (uint32_t)rn);
    v = vec_dup(*z);
    replace_last_blob(&v, buf, dn + 18);
    emit(g, "invalid/zlib_gzip.lora", v, E(BAD_COMPRESSED_DATA), "gzip (RFC 1952) stream instead of zlib");
}

/* ---- valid files that the writer does not produce -------------------------- */

/* A version 1.1 file as a 1.0 reader must accept it: an unknown optional
 * flag and a future table between the string table and data_offset. */
static vec build_future_minor(const vec *minimal)
{
    vec v = vec_dup(*minimal);
    uint8_t table[64];
    for (int i = 0; i < 64; i++) table[i] = (uint8_t)(0xA0 + i);
    vec_splice(&v, LORA_FMT_HEADER_SIZE, 0, table, sizeof table);
    p16(&v, HDR(VERSION_MINOR), 1);
    p32(&v, HDR(OPTIONAL_FLAGS), 0x80000001u);
    p64(&v, HDR(DATA_OFFSET), v.n);
    p64(&v, HDR(FILE_SIZE), v.n);
    reseal(&v);
    return v;
}

/* Version 1.1 with a 136-byte header: the extra 8 header bytes are ignored
 * and every table offset starts at header_size. */
static vec build_future_header(const vec *minimal)
{
    vec v = vec_dup(*minimal);
    static const uint8_t ext[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    vec_splice(&v, LORA_FMT_HEADER_SIZE, 0, ext, sizeof ext);
    vec_splice(&v, v.n, 0, (const uint8_t[56]){0}, 56);
    p16(&v, HDR(VERSION_MINOR), 1);
    p32(&v, HDR(HEADER_SIZE), 136);
    static const int offs[] = {HDR(META_OFFSET), HDR(MODULES_OFFSET), HDR(TENSORS_OFFSET), HDR(BLOBS_OFFSET),
                               HDR(STRINGS_OFFSET)};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) p64(&v, (uint64_t)offs[i], 136);
    p64(&v, HDR(DATA_OFFSET), v.n);
    p64(&v, HDR(FILE_SIZE), v.n);
    reseal(&v);
    return v;
}

/* The zlib file with its last stream replaced by stored blocks: bigger than
 * the raw data, which a writer would not choose, but valid. */
static vec build_zlib_stored(const vec *z)
{
    uint8_t raw[4 * ZLIB_B_NUMEL];
    zlib_b_raw(raw);
    vec s = zlib_stored(0x78, 0x01, raw, sizeof raw);
    vec v = vec_dup(*z);
    replace_last_blob(&v, s.p, s.n);
    free(s.p);
    return v;
}

static void valid_files(gen *g, const bases *b)
{
    emit(g, "valid/minimal.lora", vec_dup(b->minimal), "OK", "smallest valid file: the 128-byte header alone");
    vec one = build_one_module();
    emit(g, "valid/one_module.lora", one, "OK", "one metadata entry, one rank-1 linear module, one tensor (Appendix A.2)");
    emit(g, "valid/linear_f32_meta.lora", vec_dup(b->linear), "OK",
         "two linear F32 modules; metadata of every type, empty and multi-byte UTF-8 strings");
    emit(g, "valid/f16_bf16.lora", vec_dup(b->f16), "OK", "F16 and BF16 modules, two replacement tensors");
    emit(g, "valid/quantized.lora", vec_dup(b->quant), "OK", "Q8_0, Q4_0 and NF4 modules (padding after every blob)");
    emit(g, "valid/zlib.lora", vec_dup(b->zlib), "OK", "zlib-compressed B blob and replacement tensor");
    emit(g, "valid/kinds.lora", vec_dup(b->kinds), "OK",
         "rsLoRA + DoRA magnitude + bias, explicit scale + fan_in_fan_out, embedding, conv2d, tensor");
    emit(g, "valid/conv.lora", vec_dup(b->conv), "OK", "conv1d with magnitude and conv3d, F16");
    emit(g, "valid/zlib_stored_blocks.lora", build_zlib_stored(&b->zlib), "OK",
         "zlib stream made of stored blocks (larger than raw, still valid)");
    emit(g, "valid/future_minor.lora", build_future_minor(&b->minimal), "OK",
         "version 1.1: unknown optional flags and a 64-byte future table before data_offset");
    emit(g, "valid/future_header.lora", build_future_header(&b->minimal), "OK",
         "version 1.1 with header_size 136");
    emit(g, "valid/long_name.lora", vec_dup(b->longname), "OK", "module name of 4096 bytes (the default limit)");
    emit(g, "valid/nf4_blocks.lora", vec_dup(b->nf4blocks), "OK",
         "NF4 blobs in blocks of 128 (block_shift 7) and of 32 (block_shift 5)");
}

/* ---- main ------------------------------------------------------------------ */

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) die("%s: %s", path, strerror(errno));
}

/* Remove the .lora files left by an earlier run, so renamed vectors do not linger. */
static void clean_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) die("%s: %s", path, strerror(errno));
    struct dirent *e;
    char file[1024];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".lora") != 0) continue;
        int k = snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (k < 0 || (size_t)k >= sizeof file) die("%s: path too long", path);
        if (unlink(file) != 0) die("%s: %s", file, strerror(errno));
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_vectors OUTDIR\n");
        return 2;
    }
    gen g = {argv[1], NULL, 0, 0, 0};
    char path[1024];
    make_dir(g.outdir);
    const char *subs[2] = {"valid", "invalid"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", g.outdir, subs[i]);
        make_dir(path);
        clean_dir(path);
    }
    snprintf(path, sizeof path, "%s/MANIFEST", g.outdir);
    g.manifest = fopen(path, "w");
    if (!g.manifest) die("%s: %s", path, strerror(errno));
    bases b = {build_minimal(), build_linear_meta(), build_f16_bf16(), build_quantized(),
               build_zlib(),    build_kinds(),       build_conv(),     build_long_name(),
               build_nf4_blocks()};
    valid_files(&g, &b);
    inv_magic(&g, &b);
    inv_frame(&g, &b);
    inv_header(&g, &b);
    inv_layout(&g, &b);
    inv_records(&g, &b);
    inv_strings(&g, &b);
    inv_blob_sizes(&g, &b);
    inv_blob_placement(&g, &b);
    inv_meta(&g, &b);
    inv_module_fields(&g, &b);
    inv_module_shapes(&g, &b);
    inv_refs(&g, &b);
    inv_content(&g, &b);
    inv_zlib_streams(&g, &b);
    if (fclose(g.manifest) != 0) die("MANIFEST: write failed");
    vec *all[] = {&b.minimal, &b.linear, &b.f16, &b.quant, &b.zlib, &b.kinds, &b.conv, &b.longname, &b.nf4blocks};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->p);
    printf("gen_vectors: %u valid, %u invalid vectors in %s", g.valid, g.invalid, g.outdir);
    if (g.disagree) printf(" (%u disagree with the library, see above)", g.disagree);
    printf("\n");
    return 0;
}
