/*
 * writer.h - the writer's state, shared by the files of lib/write. Not installed.
 *
 * The builder copies everything it is given and finishes each blob at add
 * time (conversion, optional zlib, checksum of the stored bytes), so that
 * serializing is a pure layout pass: the same state always gives the same
 * bytes, and write_file can stream blobs straight from these copies.
 */
#ifndef LORA_WRITER_H
#define LORA_WRITER_H

#include "../common/internal.h"
#include "io.h"

/* A copied name or string value (not NUL-terminated on disk; the copy is,
 * for the caller's convenience in details). */
typedef struct {
    char *s;
    uint32_t len;
} lora_wstr;

typedef struct {
    lora_wstr key;
    uint32_t type;        /* lora_fmt_meta_type */
    lora_wstr str;        /* STRING value (s may be NULL when len == 0) */
    uint64_t bits;        /* INT / FLOAT / BOOL raw value */
} lora_wmeta;

typedef struct {
    lora_wstr name;
    lora_fmt_module rec;  /* name strref filled at layout time */
} lora_wmodule;

typedef struct {
    lora_wstr name;
    uint32_t blob;
} lora_wtensor;

typedef struct {
    lora_fmt_blob rec;    /* offset filled at layout time */
    uint8_t *stored;      /* owned: the bytes as they go into the file */
    uint8_t used;         /* referenced by a module or tensor already */
} lora_wblob;

/* Open-addressing set of entry indices keyed by name (keys, module names and
 * tensor names must be unique, and the caps allow ~1M entries, so a linear
 * scan per add would be quadratic). Slots hold index + 1; 0 is empty. */
typedef struct {
    uint32_t *slots;
    uint32_t *hashes;
    uint32_t cap;         /* power of two, or 0 */
    uint32_t count;
} lora_name_index;

struct lora_writer {
    lora_allocator alloc;  /* by value: its address is zlib's opaque pointer */
    const lora_io *io;     /* never NULL; libc unless a test injected faults */

    lora_wmeta *meta;
    uint32_t meta_count, meta_cap;
    lora_name_index meta_index;

    lora_wmodule *modules;
    uint32_t module_count, module_cap;
    lora_name_index module_index;

    lora_wtensor *tensors;
    uint32_t tensor_count, tensor_cap;
    lora_name_index tensor_index;

    lora_wblob *blobs;
    uint32_t blob_count, blob_cap;
};

/* Where everything goes in the file; see /work/design.md "Table region". */
typedef struct {
    uint64_t meta_offset, modules_offset, tensors_offset, blobs_offset;
    uint64_t strings_offset, strings_size;
    uint64_t data_offset;  /* = bytes of header + tables + padding */
    uint64_t file_size;
} lora_wlayout;

/* ---- growth and names (storage.c) ---- */
/* Make room for `need` elements of `elem` bytes (doubling); returns the
 * array to keep: the new one, or `arr` unchanged with *st = OUT_OF_MEMORY. */
void *lora_wgrow(const lora_allocator *a, void *arr, uint32_t *cap, uint32_t need, size_t elem, lora_status *st);
/* Copy [s, s+len) into a NUL-terminated allocation. */
lora_status lora_wstr_copy(const lora_allocator *a, const char *s, size_t len, lora_wstr *out);
void lora_wstr_free(const lora_allocator *a, lora_wstr *s);
/* Names and keys: 1..UINT32_MAX bytes of UTF-8 without NUL. */
int lora_wname_ok(const char *s, size_t len);

/* ---- name index (name_index.c) ---- */
typedef const lora_wstr *(*lora_name_at_fn)(const lora_writer *w, uint32_t index);
/* Returns the entry index, or UINT32_MAX when absent. */
uint32_t lora_nidx_find(const lora_writer *w, const lora_name_index *ix, lora_name_at_fn at, const char *s,
                        size_t len);
/* Ensure an insert of one more entry cannot fail. */
lora_status lora_nidx_reserve(const lora_allocator *a, lora_name_index *ix);
/* Insert entry `index` (whose name is s/len); needs a prior reserve. */
void lora_nidx_insert(lora_name_index *ix, const char *s, size_t len, uint32_t index);
void lora_nidx_free(const lora_allocator *a, lora_name_index *ix);

/* ---- blobs (blob_store.c) ---- */
/* Append a blob whose raw bytes are src[0, desc->raw_size): compressed if
 * desc->compression asks and it helps, checksummed, stored in a buffer the
 * writer owns. `owned` is NULL (src is the caller's: copied) or src itself,
 * allocated with w->alloc, and is consumed on success and on failure. */
lora_status lora_wblob_append(lora_writer *w, const uint8_t *src, uint8_t *owned, const lora_fmt_blob *desc,
                              uint32_t *index);

/* ---- layout and tables (layout.c) ---- */
lora_status lora_wlayout_compute(const lora_writer *w, lora_wlayout *lay, lora_error *err);
/* Fill dst[0, lay->data_offset): header, tables, strings, padding and the
 * header checksum. Also sets every blob's offset in w. */
void lora_wlayout_encode(lora_writer *w, const lora_wlayout *lay, uint8_t *dst);

/* ---- validation (serialize.c) ---- */
/* Open `data` with the reader and verify every blob. */
lora_status lora_writer_validate_buffer(const lora_writer *w, const void *data, size_t size, lora_error *err);
lora_status lora_writer_validate_file(const lora_writer *w, const char *path, lora_error *err);

#endif /* LORA_WRITER_H */
