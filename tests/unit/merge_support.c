/* Shared by the merge tests: see merge_support.h. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "merge_support.h"

uint64_t ms_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double ms_uniform(uint64_t *s, double scale)
{
    return scale * ((double)(ms_rng(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ---- rounding from binary64, written from the IEEE 754 definitions ---------------------- */

typedef struct {
    int man, exp;               /* stored mantissa bits, exponent bits */
} fmt;

static fmt fmt_of(ms_type t)
{
    static const fmt f[] = {{23, 8}, {10, 5}, {7, 8}};
    return f[t];
}

size_t ms_size(ms_type t) { return t == MS_F32 ? 4 : 2; }

static uint32_t round_bits(double x, fmt f)
{
    int bias = (1 << (f.exp - 1)) - 1;
    uint32_t sign = signbit(x) ? 1u << (f.man + f.exp) : 0, inf = ((1u << f.exp) - 1) << f.man;
    if (isnan(x)) return sign | inf | (1u << (f.man - 1));
    double a = fabs(x);
    /* The largest finite value plus half an ulp rounds up (its mantissa is odd). */
    if (a >= ldexp(2.0 - ldexp(1.0, -f.man - 1), bias)) return sign | inf;
    if (a < ldexp(1.0, 1 - bias)) return sign | (uint32_t)nearbyint(a / ldexp(1.0, 1 - bias - f.man));
    int e;
    (void)frexp(a, &e);
    e -= 1; /* a in [2^e, 2^(e+1)) */
    double q = nearbyint((a / ldexp(1.0, e) - 1.0) * ldexp(1.0, f.man));
    if (q == ldexp(1.0, f.man)) q = 0, e++;
    if (e > bias) return sign | inf;
    return sign | ((uint32_t)(e + bias) << f.man) | (uint32_t)q;
}

static double bits_value(uint32_t b, fmt f)
{
    int bias = (1 << (f.exp - 1)) - 1;
    uint32_t e = (b >> f.man) & ((1u << f.exp) - 1), m = b & ((1u << f.man) - 1);
    double v;
    if (e == (1u << f.exp) - 1) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, 1 - bias - f.man);
    else v = ldexp((double)(m | (1u << f.man)), (int)e - bias - f.man);
    return (b >> (f.man + f.exp)) & 1 ? -v : v;
}

static uint32_t get_bits(ms_type t, const uint8_t *p)
{
    uint32_t v = 0;
    for (size_t i = 0; i < ms_size(t); i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

void ms_store(ms_type t, double x, uint8_t *dst)
{
    uint32_t b = round_bits(x, fmt_of(t));
    for (size_t i = 0; i < ms_size(t); i++) dst[i] = (uint8_t)(b >> (8 * i));
}

double ms_load(ms_type t, const uint8_t *src) { return bits_value(get_bits(t, src), fmt_of(t)); }

int64_t ms_ulps(ms_type t, const uint8_t *a, const uint8_t *b)
{
    fmt f = fmt_of(t);
    uint32_t sign = 1u << (f.man + f.exp), x = get_bits(t, a), y = get_bits(t, b);
    int64_t ox = (x & sign) ? -(int64_t)(x & ~sign) : (int64_t)x, oy = (y & sign) ? -(int64_t)(y & ~sign) : (int64_t)y;
    return ox > oy ? ox - oy : oy - ox;
}

/* ---- tally -------------------------------------------------------------------------------- */

void ms_compare(ms_type t, double want, const uint8_t *got, ms_tally *c)
{
    uint8_t w[4];
    ms_store(t, want, w);
    int64_t d = ms_ulps(t, w, got);
    c->elems++;
    if (d == 0) c->exact++;
    else if (d == 1) c->one_ulp++;
    else c->worse++;
    if (t == MS_F32) {
        double rel = fabs(ms_load(t, got) - want) / fmax(fabs(want), 1e-30);
        if (rel > c->max_rel) c->max_rel = rel;
    }
}

int ms_tally_ok(ms_type t, const ms_tally *c, const char *what)
{
    int ok = c->elems > 0;
    if (t == MS_F32) ok = ok && c->max_rel <= 1e-6;
    else ok = ok && c->worse == 0 && (double)c->exact >= 0.999 * (double)c->elems;
    if (!ok)
        fprintf(stderr, "%s: %llu elements, %llu exact, %llu 1 ulp, %llu worse, max rel %.3g\n", what,
                (unsigned long long)c->elems, (unsigned long long)c->exact, (unsigned long long)c->one_ulp,
                (unsigned long long)c->worse, c->max_rel);
    return ok;
}

/* ---- adapters ------------------------------------------------------------------------------- */

static float *seeded(uint64_t n, uint64_t *s, double scale)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p) abort();
    for (uint64_t i = 0; i < n; i++) p[i] = (float)ms_uniform(s, scale);
    return p;
}

int ms_module_transposed(const ms_module *m)
{
    return (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) || m->kind == LORA_KIND_EMBEDDING;
}

void ms_module_init(ms_module *m, const char *name, lora_kind kind, uint32_t flags, uint32_t rank, float alpha,
                    uint32_t ndim, const uint64_t *shape, int bias, int mag, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->kind = kind;
    m->flags = flags;
    m->rank = rank;
    m->alpha = alpha;
    m->scale = alpha / (float)rank;
    m->ndim = ndim;
    memcpy(m->shape, shape, ndim * sizeof *shape);
    int fan = (flags & LORA_MODULE_FAN_IN_FAN_OUT) != 0;
    if (kind == LORA_KIND_EMBEDDING) m->outer = shape[1], m->inner = shape[0];
    else if (kind == LORA_KIND_LINEAR) m->outer = shape[fan ? 1 : 0], m->inner = shape[fan ? 0 : 1];
    else {
        m->outer = shape[0];
        m->inner = 1;
        for (uint32_t d = 1; d < ndim; d++) m->inner *= shape[d];
    }
    uint64_t s = seed;
    m->a = seeded(rank * m->inner, &s, 0.3);
    m->b = seeded(m->outer * rank, &s, 0.2);
    if (bias) m->bias = seeded(m->outer, &s, 0.5);
    if (mag) {
        m->mag = seeded(m->outer, &s, 0.5);
        for (uint64_t i = 0; i < m->outer; i++) m->mag[i] += 1.0f;
    }
}

void ms_module_free(ms_module *m)
{
    free(m->a);
    free(m->b);
    free(m->bias);
    free(m->mag);
    memset(m, 0, sizeof *m);
}

double ms_delta(const ms_module *m, uint64_t i, uint64_t j, uint64_t cols)
{
    (void)cols;
    double d = 0;
    if (ms_module_transposed(m))
        for (uint32_t k = 0; k < m->rank; k++) d += (double)m->b[j * m->rank + k] * (double)m->a[k * m->inner + i];
    else
        for (uint32_t k = 0; k < m->rank; k++) d += (double)m->b[i * m->rank + k] * (double)m->a[k * m->inner + j];
    return d;
}

static lora_status add_module(lora_writer *w, const ms_module *m)
{
    uint64_t sa[5] = {m->rank, m->inner}, sb[5] = {m->outer, m->rank};
    uint32_t na = 2, nb = 2;
    if (m->kind >= LORA_KIND_CONV1D) {
        na = nb = m->ndim;
        for (uint32_t d = 1; d < m->ndim; d++) sa[d] = m->shape[d], sb[d] = d == 1 ? m->rank : 1;
    }
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = m->name;
    d.kind = m->kind;
    d.scaling = LORA_SCALING_ALPHA_OVER_RANK;
    d.flags = m->flags;
    d.rank = m->rank;
    d.alpha = m->alpha;
    d.base_ndim = m->ndim;
    memcpy(d.base_shape, m->shape, m->ndim * sizeof m->shape[0]);
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    uint64_t so[1] = {m->outer};
    lora_status st = lora_writer_add_blob_f32(w, LORA_DTYPE_F32, na, sa, m->a, m->rank * m->inner,
                                              LORA_COMPRESSION_NONE, &d.blob_a);
    if (st == LORA_OK)
        st = lora_writer_add_blob_f32(w, LORA_DTYPE_F32, nb, sb, m->b, m->outer * m->rank, LORA_COMPRESSION_NONE,
                                      &d.blob_b);
    if (st == LORA_OK && m->bias)
        st = lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, so, m->bias, m->outer, LORA_COMPRESSION_NONE, &d.blob_bias);
    if (st == LORA_OK && m->mag)
        st = lora_writer_add_blob_f32(w, LORA_DTYPE_F32, 1, so, m->mag, m->outer, LORA_COMPRESSION_ZLIB,
                                      &d.blob_magnitude);
    return st == LORA_OK ? lora_writer_add_module(w, &d, NULL) : st;
}

lora_status ms_write_adapter(const char *path, const ms_module *m, size_t n, const ms_replacement *t, size_t nt)
{
    lora_writer *w;
    lora_status st = lora_writer_create(NULL, &w);
    if (st != LORA_OK) return st;
    for (size_t i = 0; i < n && st == LORA_OK; i++) st = add_module(w, &m[i]);
    for (size_t i = 0; i < nt && st == LORA_OK; i++) {
        uint64_t numel = 1, shape[5] = {0};
        for (uint32_t d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d], shape[d] = t[i].shape[d];
        uint32_t blob;
        st = lora_writer_add_blob(w, (lora_dtype)t[i].type, t[i].ndim, shape, t[i].bytes,
                                  (size_t)(numel * ms_size(t[i].type)), LORA_COMPRESSION_NONE, &blob);
        if (st == LORA_OK) st = lora_writer_add_tensor(w, t[i].name, blob);
    }
    lora_error err;
    if (st == LORA_OK) st = lora_writer_write_file(w, path, NULL, &err);
    if (st != LORA_OK) fprintf(stderr, "ms_write_adapter %s: %s\n", path, lora_status_name(st));
    lora_writer_free(w);
    return st;
}

/* ---- files ------------------------------------------------------------------------------------ */

void ms_tmpdir(char *out, size_t cap)
{
    const char *t = getenv("TMPDIR");
    snprintf(out, cap, "%s/merge-test.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(out)) abort();
}

void ms_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) ms_rmtree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int ms_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

const char *ms_path(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
    return out;
}

const char *ms_fixtures(void)
{
    static const char *const candidates[] = {"../shared/fixtures/real", "/work/shared/fixtures/real"};
    const char *env = getenv("LORA_FIXTURES_DIR");
    struct stat st;
    if (env && stat(env, &st) == 0) return env;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode)) return candidates[i];
    return NULL;
}

int ms_file_equal(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int same = x && y;
    while (same) {
        int c = fgetc(x), d = fgetc(y);
        if (c != d) same = 0;
        if (c == EOF || d == EOF) break;
    }
    if (x) fclose(x);
    if (y) fclose(y);
    return same;
}
