/*
 * gguf.h - a bounded GGUF reader and a streaming GGUF writer (internal to
 * liblora-ops; not installed).
 *
 * GGUF is the container of llama.cpp: base models for the merger and LoRA
 * adapters for the converter. Its reference reader (ggml gguf.cpp) needed
 * five rounds of CVE fixes (robustness.md section 1); this one checks every
 * count against the caller's limits and the bytes left before allocating,
 * does all size arithmetic with overflow checks, and never lets a caller read
 * a value as a type it does not have.
 *
 * File layout (little-endian; ggml docs/gguf.md):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x      { str key | u32 type | value }
 *   n_tensors x { str name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   zero pad to the alignment | tensor data, each at data_offset + offset
 * where str = u64 length + bytes (no NUL) and an ARRAY value is
 * u32 element type | u64 count | elements.
 *
 * What the reader accepts (each rule names its status):
 *   - magic "GGUF" (BAD_MAGIC); version 2 or 3. Version 0, 1, > 3 and a
 *     byte-swapped (big-endian) file are UNSUPPORTED_VERSION. v2 and v3 have
 *     the same little-endian layout.
 *   - n_kv <= max_kv and n_tensors <= max_tensors (LIMIT_EXCEEDED), and both
 *     counts times their smallest encoded size fit in the bytes left
 *     (TRUNCATED), before anything is allocated. Every read checks the bytes
 *     left (TRUNCATED).
 *   - Strings: length <= max_string_length (LIMIT_EXCEEDED), then <= bytes
 *     left (TRUNCATED). Keys and tensor names: non-empty, no NUL, valid UTF-8
 *     (BAD_STRING); unique (DUPLICATE_NAME). String values are not validated:
 *     they are handed out as (bytes, length) and may hold any byte.
 *   - KV types 0..12 (BAD_ENUM). BOOL must be 0 or 1 (BAD_METADATA). Arrays:
 *     element type 0..12 (BAD_ENUM) and not ARRAY (BAD_METADATA: the spec
 *     allows nesting, llama.cpp rejects it and no real file uses it); count
 *     <= max_array_elements (LIMIT_EXCEEDED) and count x element size <= bytes
 *     left (TRUNCATED).
 *   - general.alignment, if present: type UINT32 and a power of two
 *     (BAD_METADATA), <= max_alignment (LIMIT_EXCEEDED). Any power of two
 *     from 1 is accepted, as llama.cpp does, although the spec asks for a
 *     multiple of 8. Default 32.
 *   - Tensor names <= max_name_length bytes (LIMIT_EXCEEDED). The default,
 *     256, is looser than llama.cpp (63 bytes); the writer keeps to 63.
 *   - n_dims 1..4 (BAD_SHAPE); every ne <= INT64_MAX and the product of the
 *     non-zero ne fits in int64 (BAD_SHAPE). A zero dim is accepted (spec
 *     and llama.cpp allow it): the tensor then has 0 bytes.
 *   - ggml type: one whose block size this project knows, see
 *     lora_ggml_type_size() (UNSUPPORTED_DTYPE for every other value,
 *     removed and future ones included); ne[0] a whole number of blocks
 *     (BAD_SHAPE); the byte size fits in int64 and size_t (BAD_SHAPE).
 *   - Layout: the data section starts at PAD(end of tensor infos,
 *     alignment). Each offset is a multiple of the alignment (MISALIGNED)
 *     and must equal the running sum of PAD(nbytes, alignment) over the
 *     tensors before it, in info order, as llama.cpp enforces (so tensors
 *     never overlap and leave no gaps): an offset whose range lies outside
 *     the file is BAD_OFFSET, any other wrong offset OVERLAP. The file must
 *     hold every byte of every tensor (TRUNCATED); after the last tensor
 *     only its alignment padding may follow (TRAILING_BYTES, unless
 *     LORA_GGUF_ALLOW_TRAILING_BYTES). Padding bytes are not inspected.
 *     With no tensor bytes at all the file may end anywhere after the tensor
 *     infos (ggml's vocab files end before the pad).
 *   - Allocation failure is OUT_OF_MEMORY; nothing leaks.
 * Error details read "gguf: tensor 'blk.0.attn_q.weight': ... (offset N)"
 * and lora_error.offset holds the same file offset.
 */
#ifndef LORA_IO_GGUF_H
#define LORA_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "lora.h"

#define LORA_GGUF_MAGIC "GGUF"
#define LORA_GGUF_VERSION 3u            /* what the writer writes */
#define LORA_GGUF_MAX_DIMS 4u           /* GGML_MAX_DIMS */
#define LORA_GGUF_DEFAULT_ALIGNMENT 32u /* GGUF_DEFAULT_ALIGNMENT */
#define LORA_GGUF_WRITER_MAX_NAME 63u   /* llama.cpp: strlen(name) < GGML_MAX_NAME (64) */
#define LORA_GGUF_KEY_ALIGNMENT "general.alignment"

/* KV value types (pinned by the GGUF spec). */
typedef enum {
    LORA_GGUF_TYPE_UINT8 = 0,
    LORA_GGUF_TYPE_INT8 = 1,
    LORA_GGUF_TYPE_UINT16 = 2,
    LORA_GGUF_TYPE_INT16 = 3,
    LORA_GGUF_TYPE_UINT32 = 4,
    LORA_GGUF_TYPE_INT32 = 5,
    LORA_GGUF_TYPE_FLOAT32 = 6,
    LORA_GGUF_TYPE_BOOL = 7,
    LORA_GGUF_TYPE_STRING = 8,
    LORA_GGUF_TYPE_ARRAY = 9,
    LORA_GGUF_TYPE_UINT64 = 10,
    LORA_GGUF_TYPE_INT64 = 11,
    LORA_GGUF_TYPE_FLOAT64 = 12
} lora_gguf_type;
#define LORA_GGUF_TYPE_COUNT 13u

/* The ggml tensor types whose block size this project knows (ids pinned by
 * ggml.h). Every other id is LORA_E_UNSUPPORTED_DTYPE. */
typedef enum {
    LORA_GGML_F32 = 0,
    LORA_GGML_F16 = 1,
    LORA_GGML_Q4_0 = 2,
    LORA_GGML_Q4_1 = 3,
    LORA_GGML_Q5_0 = 6,
    LORA_GGML_Q5_1 = 7,
    LORA_GGML_Q8_0 = 8,
    LORA_GGML_Q8_1 = 9,
    LORA_GGML_Q2_K = 10,
    LORA_GGML_Q3_K = 11,
    LORA_GGML_Q4_K = 12,
    LORA_GGML_Q5_K = 13,
    LORA_GGML_Q6_K = 14,
    LORA_GGML_BF16 = 30
} lora_ggml_type;

/* "UINT32", ...; NULL for an invalid type. */
const char *lora_gguf_type_name(uint32_t type);
/* Bytes of one element of a fixed-size type; 0 for STRING, ARRAY, invalid. */
uint32_t lora_gguf_type_size(uint32_t type);
/* Block facts of a supported ggml type: returns 1 and fills both, else 0. */
int lora_ggml_type_size(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);
/* Name of any ggml id ggml has ever assigned ("Q8_0", "IQ2_XXS", "Q4_0_4_4
 * (removed)"); NULL if never assigned. Supported or not: for messages. */
const char *lora_ggml_type_name(uint32_t type);
/* Bytes of a tensor: checks n_dims 1..4, ne <= INT64_MAX, numel fits int64,
 * type supported, ne[0] a whole number of blocks, bytes fit int64/size_t.
 * Returns BAD_SHAPE / UNSUPPORTED_DTYPE / INVALID_ARGUMENT (NULL pointers). */
lora_status lora_ggml_nbytes(uint32_t type, uint32_t n_dims, const uint64_t *ne, uint64_t *nbytes);

/* ---- reader ------------------------------------------------------------- */

/* Zero field = the default in brackets. */
typedef struct {
    uint64_t max_kv;             /* [65536] */
    uint64_t max_tensors;        /* [1<<20] */
    uint64_t max_string_length;  /* [1 GiB] one string: key, name, value or array element */
    uint64_t max_array_elements; /* [1<<30] one array */
    uint32_t max_alignment;      /* [65536] general.alignment */
    uint32_t max_name_length;    /* [256] tensor names, bytes */
    uint32_t flags;              /* LORA_GGUF_* */
    uint32_t reserved;           /* must be zero */
} lora_gguf_limits;

#define LORA_GGUF_ALLOW_TRAILING_BYTES 0x1u /* bytes after the last tensor's padding are ignored */

/* Bytes of a string value inside the parsed buffer: not NUL-terminated, not
 * validated (may hold NUL or invalid UTF-8). */
typedef struct {
    const char *ptr;
    uint64_t len;
} lora_gguf_str;

typedef struct {
    const char *key;       /* NUL-terminated copy, valid until lora_gguf_free */
    uint32_t type;         /* lora_gguf_type */
    uint32_t elem_type;    /* ARRAY: element type; otherwise == type */
    uint64_t count;        /* ARRAY: element count; otherwise 1 */
    uint64_t offset;       /* file offset of the KV (its key length) */
    uint64_t value_offset; /* file offset of the value: after the u32 type */
    uint64_t value_size;   /* bytes of the value as stored (ARRAY: header included) */
    uint64_t str_index;    /* ARRAY of STRING: first entry in the string index */
} lora_gguf_kv;

typedef struct {
    const char *name;      /* NUL-terminated copy, valid until lora_gguf_free */
    uint32_t n_dims;       /* 1..4 */
    uint32_t type;         /* lora_ggml_type */
    uint64_t ne[LORA_GGUF_MAX_DIMS]; /* ne[0] is the contiguous dim; unused dims are 1 */
    uint64_t offset;       /* as stored: relative to the data section */
    uint64_t nbytes;       /* exact bytes from type and shape (no padding) */
    uint64_t info_offset;  /* file offset of the tensor info */
    const uint8_t *data;   /* first byte, inside the parsed buffer; NULL when nbytes is 0 */
} lora_gguf_tensor;

typedef struct lora_gguf lora_gguf;

/* Parse and validate a whole GGUF file held in `data` (borrowed: it must
 * outlive the result; views point into it). `limits` and `alloc` may be
 * NULL for defaults. On success *out owns its tables; free with
 * lora_gguf_free. On failure *out is NULL and nothing is left allocated. */
lora_status lora_gguf_parse(const uint8_t *data, size_t size, const lora_gguf_limits *limits,
                            const lora_allocator *alloc, lora_gguf **out, lora_error *err);
void lora_gguf_free(lora_gguf *g);

uint32_t lora_gguf_version(const lora_gguf *g);
uint32_t lora_gguf_alignment(const lora_gguf *g);   /* general.alignment or 32 */
uint64_t lora_gguf_data_offset(const lora_gguf *g); /* file offset of the data section */
uint64_t lora_gguf_kv_count(const lora_gguf *g);
uint64_t lora_gguf_tensor_count(const lora_gguf *g);
/* Index in file order; NULL if out of range. */
const lora_gguf_kv *lora_gguf_kv_at(const lora_gguf *g, uint64_t i);
const lora_gguf_tensor *lora_gguf_tensor_at(const lora_gguf *g, uint64_t i);
/* O(log n) lookup; NULL if absent. */
const lora_gguf_kv *lora_gguf_find_kv(const lora_gguf *g, const char *key);
const lora_gguf_tensor *lora_gguf_find_tensor(const lora_gguf *g, const char *name);

/* Typed getters. NOT_FOUND if the key is absent (detail names it),
 * BAD_METADATA if it has another type: a value is never reinterpreted.
 * Integers are not widened either: a UINT8 is not a UINT32. */
lora_status lora_gguf_get_str(const lora_gguf *g, const char *key, lora_gguf_str *out, lora_error *err);
lora_status lora_gguf_get_u32(const lora_gguf *g, const char *key, uint32_t *out, lora_error *err);
lora_status lora_gguf_get_i32(const lora_gguf *g, const char *key, int32_t *out, lora_error *err);
lora_status lora_gguf_get_u64(const lora_gguf *g, const char *key, uint64_t *out, lora_error *err);
lora_status lora_gguf_get_f32(const lora_gguf *g, const char *key, float *out, lora_error *err);
lora_status lora_gguf_get_bool(const lora_gguf *g, const char *key, int *out, lora_error *err);
/* Same on a KV already found. */
lora_status lora_gguf_kv_str(const lora_gguf *g, const lora_gguf_kv *kv, lora_gguf_str *out, lora_error *err);
lora_status lora_gguf_kv_u32(const lora_gguf *g, const lora_gguf_kv *kv, uint32_t *out, lora_error *err);
lora_status lora_gguf_kv_f32(const lora_gguf *g, const lora_gguf_kv *kv, float *out, lora_error *err);

/* An array view. Obtained only through lora_gguf_get_array, which checks the
 * element type the caller expects; the element readers check it again and
 * check the index (INVALID_ARGUMENT: a caller bug, not a file problem). */
typedef struct {
    const lora_gguf *g;
    const lora_gguf_kv *kv;
    uint32_t elem_type;
    uint64_t count;
} lora_gguf_array;

lora_status lora_gguf_get_array(const lora_gguf *g, const char *key, uint32_t elem_type, lora_gguf_array *out,
                                lora_error *err);
lora_status lora_gguf_kv_array(const lora_gguf *g, const lora_gguf_kv *kv, uint32_t elem_type,
                               lora_gguf_array *out, lora_error *err);
lora_status lora_gguf_array_u32(const lora_gguf_array *a, uint64_t i, uint32_t *out);
lora_status lora_gguf_array_i32(const lora_gguf_array *a, uint64_t i, int32_t *out);
lora_status lora_gguf_array_f32(const lora_gguf_array *a, uint64_t i, float *out);
lora_status lora_gguf_array_str(const lora_gguf_array *a, uint64_t i, lora_gguf_str *out); /* O(1) */

/* ---- writer ------------------------------------------------------------- */
/* Builds the KVs and tensor infos in memory, then streams the file exactly
 * as gguf-py's GGUFWriter does: header, KVs and infos in insertion order,
 * zero pad to the alignment, then each tensor's bytes followed by zeros to
 * the alignment; offsets are the running padded sum. The alignment is 32
 * unless a general.alignment UINT32 KV is added (power of two <= 65536).
 * Only the KVs and infos are held in memory: tensor data is passed through
 * to the sink as the caller produces it. */

/* The sink: write all `n` bytes or return an error status (filling err). */
typedef lora_status (*lora_gguf_sink)(void *ctx, const void *buf, size_t n, lora_error *err);
/* A sink over a file descriptor: ctx points to an int fd. Retries EINTR and
 * short writes; ENOSPC/EDQUOT -> NO_SPACE, other errors -> IO. */
lora_status lora_gguf_sink_fd(void *ctx, const void *buf, size_t n, lora_error *err);

typedef struct lora_gguf_writer lora_gguf_writer;

lora_status lora_gguf_writer_create(const lora_allocator *alloc /* NULL = malloc */, lora_gguf_writer **out);
void lora_gguf_writer_free(lora_gguf_writer *w);

/* KVs, written in the order added. Keys: valid UTF-8, non-empty, <= 65535
 * bytes, unique (DUPLICATE_NAME). general.alignment only through add_u32 or
 * copy_kv of a UINT32, with a power of two <= 65536. INVALID_ARGUMENT for
 * bad arguments or once writing has begun; OUT_OF_MEMORY leaves the writer
 * as it was before the call. */
lora_status lora_gguf_writer_add_str(lora_gguf_writer *w, const char *key, const char *s, size_t len);
lora_status lora_gguf_writer_add_u32(lora_gguf_writer *w, const char *key, uint32_t v);
lora_status lora_gguf_writer_add_i32(lora_gguf_writer *w, const char *key, int32_t v);
lora_status lora_gguf_writer_add_u64(lora_gguf_writer *w, const char *key, uint64_t v);
lora_status lora_gguf_writer_add_f32(lora_gguf_writer *w, const char *key, float v);
lora_status lora_gguf_writer_add_bool(lora_gguf_writer *w, const char *key, int v);
lora_status lora_gguf_writer_add_arr_u32(lora_gguf_writer *w, const char *key, const uint32_t *v, size_t n);
lora_status lora_gguf_writer_add_arr_i32(lora_gguf_writer *w, const char *key, const int32_t *v, size_t n);
lora_status lora_gguf_writer_add_arr_f32(lora_gguf_writer *w, const char *key, const float *v, size_t n);
/* lens may be NULL: then every string is NUL-terminated. */
lora_status lora_gguf_writer_add_arr_str(lora_gguf_writer *w, const char *key, const char *const *s,
                                         const size_t *lens, size_t n);
/* Copy a KV of a parsed file verbatim (any type, arrays included). */
lora_status lora_gguf_writer_copy_kv(lora_gguf_writer *w, const lora_gguf *g, const lora_gguf_kv *kv);

/* Tensor infos, in the order the data will be written. Name: non-empty,
 * no NUL, <= 63 bytes, unique; type supported; shape as lora_ggml_nbytes. */
lora_status lora_gguf_writer_add_tensor(lora_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                        const uint64_t *ne);

/* Bytes of header + KVs + infos + pad (= the data offset), and of the whole
 * file. Fails with LIMIT_EXCEEDED if the sizes overflow. */
lora_status lora_gguf_writer_sizes(const lora_gguf_writer *w, uint64_t *data_offset, uint64_t *file_size);

/* Streaming: begin writes everything up to the data section; then each
 * tensor's bytes in info order, in one or more write_data calls (a call may
 * not cross the end of the current tensor: INVALID_ARGUMENT); the padding is
 * written when a tensor completes; finish checks that every byte was given.
 * After a sink failure the writer refuses further calls. */
lora_status lora_gguf_writer_begin(lora_gguf_writer *w, lora_gguf_sink sink, void *ctx, lora_error *err);
lora_status lora_gguf_writer_write_data(lora_gguf_writer *w, const void *buf, size_t n, lora_error *err);
lora_status lora_gguf_writer_finish(lora_gguf_writer *w, lora_error *err);

#endif /* LORA_IO_GGUF_H */
