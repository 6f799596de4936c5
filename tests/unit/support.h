/*
 * support.h - helpers every unit test may share: the seeded generator, the
 * real-fixture lookup (fails under $CI, else skips), temp directories, whole
 * files, imports into an in-memory .lora, safetensors comparison and float
 * bit views. Names start with ts_. Assertions are cmocka's, so a helper's
 * failure fails the calling test.
 */
#ifndef TESTS_SUPPORT_H
#define TESTS_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "lora_ops.h"
#include "ops/convert.h"

/* ---- numbers --------------------------------------------------------------------- */

uint64_t ts_rng_next(uint64_t *s); /* splitmix64 */
uint32_t ts_fbits(float f);
float ts_bitsf(uint32_t u);
int ts_same_bits(float a, float b);
/* malloc that fails the test instead of returning NULL (n = 0 allowed). */
void *ts_xmalloc(size_t n);

/* ---- real fixtures ----------------------------------------------------------------- */

/* $LORA_FIXTURES_DIR, else the shared fixtures directory. */
const char *ts_fixtures_dir(void);
/* Returns when the directory exists; otherwise fails when $CI is set, else
 * skips the calling test. */
void ts_need_fixtures(void);
/* "<fixtures>/<rel>" (static buffer per call slot: up to 4 live paths). */
char *ts_fixture(const char *rel);

/* ---- files ------------------------------------------------------------------------- */

/* Whole file (malloc'd, one spare byte), or NULL when it cannot be opened. */
uint8_t *ts_read_file(const char *path, size_t *size);
void ts_write_file(const char *path, const void *p, size_t n);
void ts_write_text(const char *path, const char *text);
/* For cmocka group setup/teardown: "/tmp/<prefix>.XXXXXX" made in `dir`
 * (0, or -1 on failure), and the whole tree removed (0 or -1). */
int ts_tmpdir_create(char *dir, size_t cap, const char *prefix);
int ts_tmpdir_remove(const char *dir);
/* A fresh directory "/tmp/<prefix>.XXXXXX" (malloc'd). */
char *ts_make_tmpdir(const char *prefix);
/* Remove the tree and free the name. */
void ts_rm_tree(char *dir);
/* "<a>/<b>" (static buffer per call slot: up to 8 live paths). */
char *ts_join(const char *a, const char *b);
void ts_assert_same_file(const char *a_path, const char *b_path);

/* ---- adapters ---------------------------------------------------------------------- */

/* An imported adapter: the .lora image and a verified reader over it. */
typedef struct {
    void *buf;
    size_t size;
    lora_reader *r;
} ts_imported;

/* Run importer `fn` into a memory writer; on LORA_OK `out` holds the image. */
lora_status ts_import_with(lora_importer_fn fn, const char *path, const lora_convert_options *o, ts_imported *out,
                           lora_error *err);
void ts_imported_free(ts_imported *m);

/* Warnings collected for inspection (ts_collect is the callback). */
typedef struct {
    int count;
    char last[512];
} ts_warnings;

void ts_collect(void *opaque, const char *msg);

/* ---- safetensors ------------------------------------------------------------------- */

lora_st_file *ts_open_st(const char *path);
/* Same tensors (names, dtypes, shapes, bytes), in any order. */
void ts_assert_same_tensors(const char *a_path, const char *b_path);

#endif /* TESTS_SUPPORT_H */
