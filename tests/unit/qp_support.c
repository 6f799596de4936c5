/* Test support for test_quantize.c and test_prune.c (see qp_support.h). */
#include "qp_support.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lora_ops.h"

static uint64_t next(qp_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double qp_gauss(qp_rng *r)
{
    /* Box-Muller; u1 in (0, 1]. */
    double u1 = ((double)(next(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(next(r) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A and B shapes (spec 8.1) and the length of the magnitude/bias vector. */
static void factor_shapes(const qp_module *m, uint32_t *na, uint64_t *sa, uint32_t *nb, uint64_t *sb, uint64_t *out)
{
    const uint64_t *bs = m->base_shape;
    *na = *nb = 0;
    *out = 0;
    memset(sa, 0, LORA_MAX_DIMS * sizeof *sa);
    memset(sb, 0, LORA_MAX_DIMS * sizeof *sb);
    switch (m->kind) {
    case LORA_KIND_LINEAR: {
        int t = (m->flags & LORA_MODULE_FAN_IN_FAN_OUT) != 0;
        *out = bs[t ? 1 : 0];
        *na = 2, sa[0] = m->rank, sa[1] = bs[t ? 0 : 1];
        *nb = 2, sb[0] = *out, sb[1] = m->rank;
        return;
    }
    case LORA_KIND_EMBEDDING:
        *out = bs[1];
        *na = 2, sa[0] = m->rank, sa[1] = bs[0];
        *nb = 2, sb[0] = bs[1], sb[1] = m->rank;
        return;
    case LORA_KIND_CONV1D:
    case LORA_KIND_CONV2D:
    case LORA_KIND_CONV3D:
        *out = bs[0];
        *na = *nb = m->base_ndim;
        sa[0] = m->rank, sb[0] = bs[0], sb[1] = m->rank;
        for (uint32_t i = 1; i < m->base_ndim; i++) sa[i] = bs[i];
        for (uint32_t i = 2; i < m->base_ndim; i++) sb[i] = 1;
        return;
    }
}

static uint64_t numel(uint32_t n, const uint64_t *s)
{
    uint64_t v = 1;
    for (uint32_t i = 0; i < n; i++) v *= s[i];
    return v;
}

static uint32_t add_values(lora_writer *w, lora_dtype dt, uint32_t nd, const uint64_t *shape, const float *v)
{
    uint32_t idx;
    assert_int_equal(lora_writer_add_blob_f32(w, dt, nd, shape, v, (size_t)numel(nd, shape), LORA_COMPRESSION_NONE,
                                              &idx),
                     LORA_OK);
    return idx;
}

static void add_module(lora_writer *w, qp_rng *rng, const qp_module *m)
{
    uint32_t na, nb;
    uint64_t sa[LORA_MAX_DIMS], sb[LORA_MAX_DIMS], out;
    factor_shapes(m, &na, sa, &nb, sb, &out);
    uint64_t nA = numel(na, sa), nB = numel(nb, sb), M = nB / m->rank;
    float *a = malloc(nA * sizeof *a), *b = malloc(nB * sizeof *b);
    assert_true(a && b);
    for (uint64_t i = 0; i < nA; i++) a[i] = (float)(0.05 * qp_gauss(rng));
    if (m->true_rank) { /* B = B1 C: columns are combinations of true_rank vectors */
        uint32_t t = m->true_rank;
        double *b1 = malloc(M * t * sizeof *b1), *c = malloc((size_t)t * m->rank * sizeof *c);
        assert_true(b1 && c);
        for (uint64_t i = 0; i < M * t; i++) b1[i] = qp_gauss(rng);
        for (uint64_t i = 0; i < (uint64_t)t * m->rank; i++) c[i] = 0.05 * qp_gauss(rng);
        for (uint64_t i = 0; i < M; i++)
            for (uint32_t j = 0; j < m->rank; j++) {
                double acc = 0;
                for (uint32_t l = 0; l < t; l++) acc += b1[i * t + l] * c[l * m->rank + j];
                b[i * m->rank + j] = (float)acc;
            }
        free(b1);
        free(c);
    } else {
        for (uint64_t i = 0; i < M; i++)
            for (uint32_t j = 0; j < m->rank; j++)
                b[i * m->rank + j] = (float)(0.05 * qp_gauss(rng) * pow(m->decay > 0 ? m->decay : 1.0, (double)j));
    }
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = m->name;
    d.kind = m->kind;
    d.scaling = m->scaling;
    d.flags = m->flags;
    d.rank = m->rank;
    d.alpha = m->alpha;
    d.scale = m->scale;
    d.base_ndim = m->base_ndim;
    memcpy(d.base_shape, m->base_shape, sizeof d.base_shape);
    d.blob_a = add_values(w, m->dtype_a, na, sa, a);
    d.blob_b = add_values(w, m->dtype_b, nb, sb, b);
    d.blob_magnitude = d.blob_bias = LORA_NO_BLOB;
    float *vec = malloc(out * sizeof *vec);
    assert_non_null(vec);
    for (uint64_t i = 0; i < out; i++) vec[i] = (float)(1.0 + 0.1 * qp_gauss(rng));
    if (m->magnitude) d.blob_magnitude = add_values(w, LORA_DTYPE_F32, 1, &out, vec);
    if (m->bias) d.blob_bias = add_values(w, LORA_DTYPE_F16, 1, &out, vec);
    assert_int_equal(lora_writer_add_module(w, &d, NULL), LORA_OK);
    free(vec);
    free(a);
    free(b);
}

void qp_write_adapter(const char *path, const qp_module *mods, size_t n, uint64_t seed)
{
    lora_writer *w;
    lora_error err;
    qp_rng rng = {seed};
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    assert_int_equal(lora_writer_set_string(w, LORA_META_BASE_MODEL, "example/qp-base", 15), LORA_OK);
    assert_int_equal(lora_writer_set_int(w, "org.example.seed", (int64_t)seed), LORA_OK);
    for (size_t i = 0; i < n; i++) add_module(w, &rng, &mods[i]);
    float t[96];
    for (int i = 0; i < 96; i++) t[i] = (float)qp_gauss(&rng);
    uint64_t ts[1] = {96};
    uint32_t tb = add_values(w, LORA_DTYPE_BF16, 1, ts, t);
    assert_int_equal(lora_writer_add_tensor(w, "model.norm.weight", tb), LORA_OK);
    lora_status st = lora_writer_write_file(w, path, NULL, &err);
    if (st != LORA_OK) fail_msg("writing %s: %s %s", path, lora_status_name(st), err.detail);
    lora_writer_free(w);
}

/* ---- deltas in double -------------------------------------------------------- */

static float *decode(const lora_reader *r, uint32_t blob, uint64_t *n)
{
    lora_blob b;
    lora_error err;
    assert_int_equal(lora_reader_blob(r, blob, &b), LORA_OK);
    float *v = malloc(b.numel * sizeof *v);
    assert_non_null(v);
    assert_int_equal(lora_reader_blob_decode_f32(r, blob, v, b.numel, &err), LORA_OK);
    *n = b.numel;
    return v;
}

double *qp_delta(const lora_reader *r, uint32_t index, uint64_t *M, uint64_t *K)
{
    lora_module m;
    uint64_t na, nb;
    assert_int_equal(lora_reader_module(r, index, &m), LORA_OK);
    float *a = decode(r, m.blob_a, &na), *b = decode(r, m.blob_b, &nb);
    uint64_t rk = m.rank;
    *K = na / rk;
    *M = nb / rk;
    double *d = malloc(*M * *K * sizeof *d);
    assert_non_null(d);
    for (uint64_t i = 0; i < *M; i++)
        for (uint64_t k = 0; k < *K; k++) {
            double acc = 0;
            for (uint64_t j = 0; j < rk; j++) acc += (double)b[i * rk + j] * (double)a[j * *K + k];
            d[i * *K + k] = (double)m.scale * acc;
        }
    free(a);
    free(b);
    return d;
}

double *qp_singular_values(const double *a, uint64_t M, uint64_t K)
{
    size_t p = M < K ? M : K;
    double *c = malloc(M * K * sizeof *c), *s = malloc(p * sizeof *s), *sup = malloc((p + 1) * sizeof *sup);
    assert_true(c && s && sup);
    memcpy(c, a, M * K * sizeof *c);
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', (lapack_int)M, (lapack_int)K, c, (lapack_int)K, s,
                                     NULL, 1, NULL, 1, sup);
    assert_int_equal(info, 0);
    free(c);
    free(sup);
    return s;
}

double qp_norm(const double *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}

double qp_diff_norm(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

double qp_max_abs_diff(const double *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* ---- files ----------------------------------------------------------------------- */

static char g_dir[256];

const char *qp_tmpdir(void)
{
    if (!g_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/qp_test.XXXXXX", t && *t ? t : "/tmp");
        assert_non_null(mkdtemp(g_dir));
    }
    return g_dir;
}

const char *qp_path(const char *name)
{
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", qp_tmpdir(), name);
    return p;
}

void qp_cleanup(void)
{
    if (!g_dir[0]) return;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    g_dir[0] = '\0';
}

int qp_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

uint8_t *qp_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

int qp_import_fixture(const char *path)
{
    const char *dir = "/work/shared/fixtures/real/peft-gemma3-gqa";
    const char *env = getenv("LORA_FIXTURES");
    char buf[512];
    if (env && *env) {
        snprintf(buf, sizeof buf, "%s/real/peft-gemma3-gqa", env);
        dir = buf;
    }
    if (!qp_exists(dir)) {
        if (getenv("CI")) fail_msg("fixture %s is missing (CI is set)", dir);
        return 0;
    }
    lora_convert_options o = LORA_CONVERT_OPTIONS_INIT;
    void *data;
    size_t size;
    lora_error err;
    lora_status st = lora_import(dir, &o, &data, &size, &err);
    if (st != LORA_OK) fail_msg("lora_import %s: %s %s", dir, lora_status_name(st), err.detail);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    lora_ops_free(&o, data);
    return 1;
}
