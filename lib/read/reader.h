/*
 * reader.h - the reader's private state and the steps of open. Not installed.
 *
 * Open runs the validation order of the spec (steps 1-15) in
 * sequence; the first failing step decides the status:
 *   header.c    steps 1-8   header, checksum, limits, table layout (no allocation)
 *   records.c   step 9      every record's reserved fields, enums and strings
 *   strings.c   (after 9)   one NUL-terminated copy of the strings handed out
 *   blob_layout.c steps 10,15 blob shapes, sizes, canonical offsets, padding
 *   meta.c      step 11     unique keys, BOOL values, reserved keys
 *   modules.c   step 12     unique names, rank/alpha/scale, blob refs, shapes
 *   refs.c      steps 13,14 tensors, every blob owned exactly once
 * validate.c runs them in order; open.c owns options, files and lifetime;
 * query.c answers the const queries; blob.c reads, verifies and decodes.
 */
#ifndef LORA_READ_READER_H
#define LORA_READ_READER_H

#include "../common/internal.h"

/* Who references a blob (step 14), kept for error details. */
typedef enum {
    LORA_OWNER_NONE = 0,
    LORA_OWNER_A,
    LORA_OWNER_B,
    LORA_OWNER_MAGNITUDE,
    LORA_OWNER_BIAS,
    LORA_OWNER_TENSOR
} lora_owner_role;

typedef struct {
    lora_fmt_meta f;
    const char *key;
    const char *value; /* STRING only */
} lora_rmeta;

typedef struct {
    lora_fmt_module f;
    const char *name;
} lora_rmodule;

typedef struct {
    lora_fmt_tensor f;
    const char *name;
} lora_rtensor;

typedef struct {
    lora_fmt_blob f;
    uint64_t numel;
    uint32_t owner;      /* module or tensor index */
    uint32_t owner_role; /* lora_owner_role */
} lora_rblob;

/* A name with its record index; arrays of these are sorted by (bytes,
 * index) to find duplicates and to answer *_find in O(log n). */
typedef struct {
    const char *s;
    uint32_t len;
    uint32_t index;
} lora_name_ix;

struct lora_reader {
    lora_allocator alloc;
    lora_limits limits;
    uint32_t flags;
    const uint8_t *data;
    uint64_t size;
    void *map;           /* mmap base when opened from a file, else NULL */
    size_t map_size;
    lora_fmt_header h;
    lora_rmeta *meta;
    lora_rmodule *modules;
    lora_rtensor *tensors;
    lora_rblob *blobs;
    char *strings;       /* the NUL-terminated copies */
    lora_name_ix *meta_by_key;
    lora_name_ix *module_by_name;
};

/* header.c: steps 1-8 on the whole file; fills *h. */
lora_status lora_read_check_header(const uint8_t *data, size_t size, const lora_limits *lim, lora_fmt_header *h,
                                   lora_error *err);
/* validate.c: allocate the descriptor arrays and run steps 9-15. */
lora_status lora_read_validate(lora_reader *r, lora_error *err);
/* records.c: step 9. */
lora_status lora_read_records(lora_reader *r, lora_error *err);
/* strings.c: copy every string a query hands out, NUL-terminated. */
lora_status lora_read_copy_strings(lora_reader *r, lora_error *err);
/* blob_layout.c: steps 10 and 15. */
lora_status lora_read_blob_layout(lora_reader *r, lora_error *err);
lora_status lora_read_blob_padding(const lora_reader *r, lora_error *err);
/* meta.c, modules.c, refs.c: steps 11-14. */
lora_status lora_read_check_meta(lora_reader *r, lora_error *err);
lora_status lora_read_check_modules(lora_reader *r, lora_error *err);
lora_status lora_read_check_tensors(lora_reader *r, lora_error *err);
lora_status lora_read_check_ownership(lora_reader *r, lora_error *err);

/* sort.c: merge sort by (bytes, length, index), O(n log n) worst case;
 * `tmp` is scratch for n entries. */
void lora_read_sort_names(lora_name_ix *v, lora_name_ix *tmp, size_t n);
/* Allocate an index of `n` names from get(i) and sort it (scratch is
 * allocated and freed here). NULL on allocation failure. */
lora_name_ix *lora_read_build_index(const lora_allocator *a, size_t n,
                                    void (*get)(const lora_reader *r, uint32_t i, lora_name_ix *out),
                                    const lora_reader *r);
/* Smallest record index whose name also occurs at a lower index, with that
 * first index in *first; UINT32_MAX if all names are distinct. `v` sorted. */
uint32_t lora_read_find_duplicate(const lora_name_ix *v, size_t n, uint32_t *first);
/* Record index of `s` in sorted `v`, or UINT32_MAX. */
uint32_t lora_read_lookup(const lora_name_ix *v, size_t n, const char *s, size_t len);

/* describe.c: pieces of error details. */
void lora_read_format_shape(char *buf, size_t cap, uint32_t ndim, const uint64_t *dims);
/* "module 'x' B" / "tensor 'y'" / "unreferenced" for blob `i`. */
void lora_read_describe_owner(const lora_reader *r, uint32_t blob, char *buf, size_t cap);
/* Turn a format-layer fault into a lora_error, prefixing `what`. */
lora_status lora_read_fault(lora_error *err, const lora_fmt_fault *f, const char *what);

/* inflate.c: inflate one zlib stream that must produce exactly `raw_size`
 * bytes and end exactly at src_size. With dst == NULL the output is only
 * counted (verification). zlib allocates through `a`. On failure `why`
 * gets a short explanation. */
lora_status lora_read_inflate(lora_allocator a, const uint8_t *src, uint64_t src_size, uint8_t *dst,
                              uint64_t raw_size, char *why, size_t why_cap);

/* File offset of record `i` of a table (tables were checked to fit). */
static inline uint64_t lora_read_rec_off(uint64_t table, uint32_t i, uint32_t size)
{
    return table + (uint64_t)i * size;
}

#endif /* LORA_READ_READER_H */
