/*
 * safetensors.h - bounded reader and streaming writer for safetensors files.
 * Internal to liblora-ops (lora-convert, lora-merge); not installed.
 *
 * File layout (huggingface/safetensors README, safetensors/src/tensor.rs):
 *   u64 LE n | n bytes of UTF-8 JSON (an object; may be right-padded with
 *   spaces) | data section. Each tensor entry is
 *   "NAME": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}
 *   with offsets relative to the data section, end exclusive. An optional
 *   "__metadata__" entry maps strings to strings.
 *
 * The reader applies the reference reader's rules (read_metadata and
 * Metadata::validate), made explicit and with every arithmetic step checked:
 *   - size >= 8; n <= limits.max_header_size; 8 + n <= size;
 *   - the header starts with '{', is well-formed UTF-8 JSON (jansson, with
 *     duplicate keys rejected after unescaping, so "a" and "\u0061" collide;
 *     no \u0000; nesting at most LORA_ST_MAX_JSON_DEPTH levels, checked
 *     before jansson runs);
 *   - every entry other than __metadata__ is an object with a known dtype
 *     string, a shape of non-negative integers (rank 0 and zero dims are
 *     allowed), and data_offsets [begin, end] with begin <= end and
 *     end - begin == numel x element size (both products overflow-checked);
 *     other keys inside an entry are ignored, as the reference does;
 *   - sorted by (begin, end), the tensors tile the data section exactly:
 *     the first begins at 0, each begins where the previous ended, and the
 *     last ends at the end of the file (no gap, overlap or trailing byte:
 *     the polyglot defence of the Trail of Bits audit);
 *   - __metadata__ is an object of string values, or null (MLX writes null).
 * Accepted headers need not be 8-byte aligned (MLX's are not), so tensor
 * data pointers may be unaligned: read them with memcpy.
 * Where it is stricter than the reference, on purpose: integers above
 * INT64_MAX (jansson's json_int_t; no real file has them), rank above
 * LORA_ST_MAX_DIMS, JSON nested deeper than LORA_ST_MAX_JSON_DEPTH, and the
 * caps of lora_st_limits. Empty names are accepted, as the reference does.
 *
 * Statuses (lora_errors.h):
 *   LORA_E_LFS_POINTER      the bytes are a Git LFS pointer file
 *   LORA_E_TRUNCATED        size < 8, 8 + n > size, or the tensors end past the file
 *   LORA_E_LIMIT_EXCEEDED   n, tensor count, metadata count, name length or rank above the caps, or
 *                           more JSON than those caps justify (see Memory)
 *   LORA_E_BAD_HEADER       header does not start with '{'; an entry is not an object; dtype missing or not a string
 *   LORA_E_BAD_JSON         not well-formed JSON (UTF-8, syntax, depth, integers beyond int64)
 *   LORA_E_DUPLICATE_NAME   a key occurs twice in one object (after unescaping)
 *   LORA_E_UNSUPPORTED_DTYPE dtype string not in lora_st_dtype
 *   LORA_E_BAD_SHAPE        shape missing, not an array of non-negative integers, or its byte size overflows
 *   LORA_E_BAD_OFFSET       data_offsets missing, not two non-negative integers, or begin > end
 *   LORA_E_BAD_SIZE         end - begin differs from numel x element size
 *   LORA_E_OVERLAP          two tensors overlap, or a gap is left between them
 *   LORA_E_TRAILING_BYTES   bytes after the last tensor
 *   LORA_E_BAD_METADATA     __metadata__ is not an object of strings (or null)
 *   LORA_E_OUT_OF_MEMORY    allocation failed
 * Details read "safetensors: tensor 'x': ... (offset N)" with N, also in
 * err->offset, the file offset of the problem: of the entry's key in the
 * header for header problems (8 + jansson's position for JSON errors), of
 * the tensor's first data byte for layout problems.
 *
 * Memory: jansson builds its tree with malloc (it has only a process-wide
 * allocator hook, which a library must not touch); the tree is freed before
 * parse returns. Before jansson runs, one pass over the text counts
 * containers, object members and array elements against budgets derived
 * from max_tensors and max_metadata (safetensors_scan.c), so the tree stays
 * within ~1.5 KB per allowed tensor whatever the header holds (measured
 * at the default 2^18: 371 MB for that many rank-8 entries, 310 MB for a
 * header spending the member budget on metadata; filling all three budgets
 * at once stays within about twice the first). Lower max_tensors to lower
 * the bound. Everything the result holds comes from opts->allocator and
 * is about 120 bytes per tensor plus the names.
 */
#ifndef LORA_IO_SAFETENSORS_H
#define LORA_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "../common/internal.h"

/* In the reference's order (ascending element size, which its writer uses
 * to keep tensors aligned). Sub-byte and complex dtypes are unsupported. */
typedef enum {
    LORA_ST_BOOL = 0,
    LORA_ST_U8,
    LORA_ST_I8,
    LORA_ST_F8_E5M2,
    LORA_ST_F8_E4M3,
    LORA_ST_I16,
    LORA_ST_U16,
    LORA_ST_F16,
    LORA_ST_BF16,
    LORA_ST_I32,
    LORA_ST_U32,
    LORA_ST_F32,
    LORA_ST_F64,
    LORA_ST_I64,
    LORA_ST_U64,
    LORA_ST_DTYPE_COUNT_
} lora_st_dtype;

/* "F16", ...; NULL if out of range. */
const char *lora_st_dtype_name(lora_st_dtype d);
/* Bytes per element; 0 if out of range. */
uint32_t lora_st_dtype_size(lora_st_dtype d);
/* Exact, case-sensitive match of `len` bytes (the file's spelling);
 * LORA_E_UNSUPPORTED_DTYPE if unknown. */
lora_status lora_st_dtype_from_name(const char *s, size_t len, lora_st_dtype *out);
/* F32/F16/BF16 map to the .lora dtype; anything else is LORA_E_UNSUPPORTED_DTYPE. */
lora_status lora_st_dtype_to_lora(lora_st_dtype d, lora_dtype *out);

#define LORA_ST_MAX_DIMS 8u
/* Header JSON nesting cap (a valid header needs 3; jansson's own is 2048). */
#define LORA_ST_MAX_JSON_DEPTH 64u

/* ---- reader ------------------------------------------------------------ */

/* Zero fields mean the default in brackets. */
typedef struct {
    uint64_t max_header_size;   /* [100000000] the reference's MAX_HEADER_SIZE */
    uint32_t max_tensors;       /* [1 << 18]   */
    uint32_t max_metadata;      /* [1 << 16]   __metadata__ entries */
    uint32_t max_name_length;   /* [4096]      bytes, tensor names and metadata keys */
    uint32_t reserved0;         /* must be zero */
} lora_st_limits;

#define LORA_ST_DEFAULT_MAX_HEADER_SIZE UINT64_C(100000000)
#define LORA_ST_DEFAULT_MAX_TENSORS (1u << 18)
#define LORA_ST_DEFAULT_MAX_METADATA (1u << 16)
#define LORA_ST_DEFAULT_MAX_NAME_LENGTH 4096u

typedef struct {
    lora_st_limits limits;
    lora_allocator allocator;   /* zeroed = malloc/free */
} lora_st_options;

typedef struct {
    const char *name;           /* NUL-terminated copy (no NUL inside; may be empty) */
    size_t name_length;
    lora_st_dtype dtype;
    uint32_t ndim;              /* 0 = scalar */
    uint64_t shape[LORA_ST_MAX_DIMS]; /* unused dims 0 */
    uint64_t numel;             /* product of shape (1 for a scalar) */
    uint64_t size;              /* bytes = numel x element size */
    uint64_t begin;             /* data_offsets[0], relative to the data section */
    uint64_t offset;            /* file offset of the first byte (data_offset + begin) */
    const uint8_t *data;        /* into the parsed buffer; NOT necessarily aligned */
} lora_st_tensor;

typedef struct {
    const char *key;            /* NUL-terminated copies */
    size_t key_length;
    const char *value;
    size_t value_length;
} lora_st_meta;

/* Read-only for callers. Arrays are in header order. */
typedef struct {
    lora_st_tensor *tensors;
    uint32_t tensor_count;
    lora_st_meta *meta;
    uint32_t meta_count;
    uint32_t *by_offset;        /* tensor indices sorted by (begin, end, index) */
    uint64_t header_size;       /* n */
    uint64_t data_offset;       /* 8 + n */
    const uint8_t *file;        /* the whole file (borrowed, or the mapping) */
    uint64_t file_size;
    /* private */
    lora_allocator alloc_;
    char *strings_;
    uint32_t *by_name_;
    void *map_;
    size_t map_size_;
} lora_st_file;

/* Parse and validate a whole file held in memory. The buffer is borrowed:
 * it must outlive *out, whose tensor data pointers point into it. `opts`
 * may be NULL. On failure *out is NULL and nothing is left allocated. */
lora_status lora_st_parse(const uint8_t *data, size_t size, const lora_st_options *opts, lora_st_file **out,
                          lora_error *err);
/* Same over a read-only private mapping of `path` (a regular file). The
 * file must not be truncated while open (SIGBUS). */
lora_status lora_st_open(const char *path, const lora_st_options *opts, lora_st_file **out, lora_error *err);
/* Frees the result and unmaps what lora_st_open mapped. NULL is a no-op. */
void lora_st_free(lora_st_file *f);

/* Index of the tensor named by `len` bytes at `name`, or UINT32_MAX.
 * O(log n). */
uint32_t lora_st_find(const lora_st_file *f, const char *name, size_t len);
/* The __metadata__ value of `key`, or NULL. O(n). */
const lora_st_meta *lora_st_meta_find(const lora_st_file *f, const char *key);

/* Cheap sniff for format detection: 1 if `data` starts like a safetensors
 * file (8 + n fits and the header starts with '{'), else 0. Validates
 * nothing else. */
int lora_st_sniff(const uint8_t *data, size_t size);

/* ---- writer ------------------------------------------------------------ */

/* One tensor to write. `size` must equal numel x element size. */
typedef struct {
    const char *name;           /* UTF-8, no NUL, not "__metadata__" */
    lora_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[LORA_ST_MAX_DIMS];
    uint64_t size;
} lora_st_entry;

typedef struct {
    const char *key;            /* UTF-8, no NUL */
    const char *value;          /* UTF-8, no NUL */
} lora_st_pair;

/* Where bytes go: write all `size` bytes, or fill `err` and return its
 * status. */
typedef lora_status (*lora_st_sink_fn)(void *ctx, const void *data, size_t size, lora_error *err);

/* A sink over a file descriptor: EINTR and short writes are retried
 * (lib/write's lora_x_write_all); ENOSPC/EDQUOT give LORA_E_NO_SPACE, other
 * errors LORA_E_IO. `io` NULL means libc. */
typedef struct {
    const struct lora_io *io;
    int fd;
} lora_st_fd_sink;
lora_status lora_st_fd_sink_write(void *ctx /* lora_st_fd_sink * */, const void *data, size_t size,
                                  lora_error *err);
/* A sink over lib/write's crash-safe file: ctx is a lora_afile *. */
lora_status lora_st_afile_sink_write(void *ctx, const void *data, size_t size, lora_error *err);

/* The header exactly as the reference writer lays it out, for tensors
 * placed back to back in the given order:
 *   u64 LE n, then {"__metadata__":{"k":"v",...},"name":{"dtype":"F32",
 *   "shape":[2,3],"data_offsets":[0,24]},...} in compact form (serde_json
 *   escaping: \" \\ \b \f \n \r \t, other controls \u00xx, the rest raw),
 *   then spaces up to n % 8 == 0, so the data starts 8-aligned.
 * __metadata__ is written first and omitted when meta_count is 0.
 * Checks: names and keys valid UTF-8 (LORA_E_BAD_STRING), names unique and
 * keys unique (LORA_E_DUPLICATE_NAME), no tensor named __metadata__
 * (LORA_E_INVALID_ARGUMENT), ndim <= LORA_ST_MAX_DIMS and dims <= INT64_MAX
 * (LORA_E_BAD_SHAPE), size matches (LORA_E_BAD_SIZE), n at most the
 * reference reader's 100 MB cap (LORA_E_LIMIT_EXCEEDED; the reference
 * writer does not check it and writes unreadable files).
 * *header (length *header_size) is allocated with `a` (NULL = malloc);
 * *data_size receives the length of the data section. */
lora_status lora_st_header_build(const lora_allocator *a, const lora_st_entry *tensors, uint32_t count,
                                 const lora_st_pair *meta, uint32_t meta_count, uint8_t **header,
                                 size_t *header_size, uint64_t *data_size, lora_error *err);

/* Streaming writer: begin writes the header, then put appends data bytes
 * in tensor order, in chunks of any size (a tensor may span several puts and
 * a put may span tensors), and finish checks that every byte arrived and
 * flushes. Small puts are gathered in a 64 KiB buffer; large ones go
 * straight to the sink. Nothing is held but that buffer, so a merger can
 * write a file larger than memory tensor by tensor. For a crash-safe file:
 *   lora_afile_open(a, NULL, path, opts, &af, err);
 *   lora_st_writer_begin(a, ..., lora_st_afile_sink_write, af, &w, err);
 *   lora_st_writer_put(w, ...) ...; lora_st_writer_finish(w, err);
 *   lora_afile_commit(af, err)   (lora_afile_abort(af) on any failure). */
typedef struct lora_st_writer lora_st_writer;

lora_status lora_st_writer_begin(const lora_allocator *a, const lora_st_entry *tensors, uint32_t count,
                                 const lora_st_pair *meta, uint32_t meta_count, lora_st_sink_fn sink,
                                 void *sink_ctx, lora_st_writer **out, lora_error *err);
/* LORA_E_INVALID_ARGUMENT if more bytes arrive than the tensors declared
 * or after finish. After a sink failure, put and finish return that
 * failure again (status and detail). */
lora_status lora_st_writer_put(lora_st_writer *w, const void *data, size_t size, lora_error *err);
/* LORA_E_INVALID_ARGUMENT if bytes are missing ("tensor 1 'b': 3 of 8
 * bytes written"). */
lora_status lora_st_writer_finish(lora_st_writer *w, lora_error *err);
/* Index of the tensor the next put byte belongs to (count when complete). */
uint32_t lora_st_writer_current(const lora_st_writer *w);
/* NULL is a no-op. Does not touch the sink. */
void lora_st_writer_free(lora_st_writer *w);

/* Whole file in one call: data[i] holds tensors[i].size bytes. */
lora_status lora_st_write(const lora_allocator *a, const lora_st_entry *tensors, uint32_t count,
                          const lora_st_pair *meta, uint32_t meta_count, const void *const *data,
                          lora_st_sink_fn sink, void *sink_ctx, lora_error *err);

/* Whole file, crash-safe (lib/write/afile.h: temp file beside `path`, full
 * writes, fsync, rename, directory fsync; the target is untouched on any
 * failure). Before the rename the temp file is parsed back with lora_st_open
 * and must hold exactly the tensors and metadata given, so a file this
 * writes always opens. `opts` as for lora_writer_write_file (inputs the
 * output must not overwrite, mode); may be NULL. */
lora_status lora_st_write_file(const lora_allocator *a, const char *path, const lora_write_options *opts,
                               const lora_st_entry *tensors, uint32_t count, const lora_st_pair *meta,
                               uint32_t meta_count, const void *const *data, lora_error *err);
/* The same with the output file's system calls through `io` (tests; NULL
 * is libc, which is lora_st_write_file). */
lora_status lora_st_write_file_io(const lora_allocator *a, const struct lora_io *io, const char *path,
                                  const lora_write_options *opts, const lora_st_entry *tensors, uint32_t count,
                                  const lora_st_pair *meta, uint32_t meta_count, const void *const *data,
                                  lora_error *err);

#endif /* LORA_IO_SAFETENSORS_H */
