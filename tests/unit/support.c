/* Test support shared by every unit test (see support.h). */
#include "support.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

uint64_t ts_rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

uint32_t ts_fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float ts_bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int ts_same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

void *ts_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

const char *ts_fixtures_dir(void)
{
    const char *d = getenv("LORA_FIXTURES_DIR");
    return d && *d ? d : "/work/shared/fixtures/real";
}

void ts_need_fixtures(void)
{
    struct stat st;
    if (stat(ts_fixtures_dir(), &st) == 0 && S_ISDIR(st.st_mode)) return;
    if (getenv("CI")) fail_msg("fixtures directory %s is missing and CI is set", ts_fixtures_dir());
    skip();
}

char *ts_fixture(const char *rel)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", ts_fixtures_dir(), rel);
    return buf[k];
}

uint8_t *ts_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

void ts_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

void ts_write_text(const char *path, const char *text) { ts_write_file(path, text, strlen(text)); }

char *ts_make_tmpdir(const char *prefix)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/%s.XXXXXX", prefix);
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

int ts_tmpdir_create(char *dir, size_t cap, const char *prefix)
{
    snprintf(dir, cap, "/tmp/%s.XXXXXX", prefix);
    return mkdtemp(dir) ? 0 : -1;
}

int ts_tmpdir_remove(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void ts_rm_tree(char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

char *ts_join(const char *a, const char *b)
{
    static char buf[8][4096];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", a, b);
    return buf[k];
}

void ts_assert_same_file(const char *a_path, const char *b_path)
{
    size_t na = 0, nb = 0;
    uint8_t *a = ts_read_file(a_path, &na), *b = ts_read_file(b_path, &nb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
}

lora_status ts_import_with(lora_importer_fn fn, const char *path, const lora_convert_options *o, ts_imported *out,
                           lora_error *err)
{
    lora_writer *w = NULL;
    memset(out, 0, sizeof *out);
    assert_int_equal(lora_writer_create(NULL, &w), LORA_OK);
    lora_status st = fn(path, o, w, err);
    if (st == LORA_OK) {
        uint64_t size = 0;
        assert_int_equal(lora_writer_size(w, &size, err), LORA_OK);
        out->buf = malloc((size_t)size);
        assert_non_null(out->buf);
        assert_int_equal(lora_writer_write_buffer(w, out->buf, (size_t)size, &out->size, err), LORA_OK);
        assert_int_equal(lora_reader_open_buffer(out->buf, out->size, NULL, &out->r, err), LORA_OK);
        assert_int_equal(lora_reader_verify(out->r, err), LORA_OK);
    }
    lora_writer_free(w);
    return st;
}

void ts_imported_free(ts_imported *m)
{
    lora_reader_free(m->r);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

void ts_collect(void *opaque, const char *msg)
{
    ts_warnings *w = opaque;
    w->count++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

lora_st_file *ts_open_st(const char *path)
{
    lora_st_file *f = NULL;
    lora_error e;
    assert_int_equal(lora_st_open(path, NULL, &f, &e), LORA_OK);
    return f;
}

void ts_assert_same_tensors(const char *a_path, const char *b_path)
{
    lora_st_file *a = ts_open_st(a_path), *b = ts_open_st(b_path);
    assert_int_equal(a->tensor_count, b->tensor_count);
    for (uint32_t i = 0; i < a->tensor_count; i++) {
        const lora_st_tensor *x = &a->tensors[i];
        uint32_t k = lora_st_find(b, x->name, x->name_length);
        if (k == UINT32_MAX) fail_msg("tensor %s missing from %s", x->name, b_path);
        const lora_st_tensor *y = &b->tensors[k];
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        for (uint32_t d = 0; d < x->ndim; d++) assert_int_equal(x->shape[d], y->shape[d]);
        assert_int_equal(x->size, y->size);
        assert_memory_equal(x->data, y->data, x->size);
    }
    lora_st_free(a);
    lora_st_free(b);
}
