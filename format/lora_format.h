/*
 * lora_format.h - the wire layer of the .lora container, version 1.0.
 *
 * This is the only code that turns untrusted bytes into descriptors. It does
 * no allocation and no I/O and depends on libc alone, so it can be fuzzed on
 * its own. Records are decoded field by field from (pointer, length) through
 * little-endian helpers; no struct is ever cast over file bytes.
 *
 * spec/lora-format.md is normative; the constants below must match it.
 */
#ifndef LORA_FORMAT_H
#define LORA_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/lora_errors.h"

/* ---- file framing ------------------------------------------------------ */

/* 0x89 catches 7-bit channels, CR LF catches newline conversion in either
 * direction, 0x1A stops DOS `type`. */
#define LORA_FMT_MAGIC "\x89LORA\r\n\x1a"
#define LORA_FMT_MAGIC_SIZE 8

#define LORA_FMT_VERSION_MAJOR 1
#define LORA_FMT_VERSION_MINOR 0

#define LORA_FMT_HEADER_SIZE 128u   /* v1.0 header size; header_size field */
#define LORA_FMT_TABLE_ALIGN 8u     /* every table starts 8-byte aligned */
#define LORA_FMT_BLOB_ALIGN 64u     /* every blob and data_offset: 64-byte aligned */
#define LORA_FMT_MAX_DIMS 5u        /* conv3d weights are 5-D */
#define LORA_FMT_NO_BLOB 0xFFFFFFFFu /* "no blob" in optional blob references */

/* Record sizes on disk. */
#define LORA_FMT_META_RECORD_SIZE 24u
#define LORA_FMT_MODULE_RECORD_SIZE 96u
#define LORA_FMT_TENSOR_RECORD_SIZE 16u
#define LORA_FMT_BLOB_RECORD_SIZE 80u

/* Header field offsets (bytes from the start of the file). */
#define LORA_FMT_OFF_MAGIC 0
#define LORA_FMT_OFF_VERSION_MAJOR 8
#define LORA_FMT_OFF_VERSION_MINOR 10
#define LORA_FMT_OFF_HEADER_SIZE 12
#define LORA_FMT_OFF_REQUIRED_FLAGS 16
#define LORA_FMT_OFF_OPTIONAL_FLAGS 20
#define LORA_FMT_OFF_FILE_SIZE 24
#define LORA_FMT_OFF_DATA_OFFSET 32
#define LORA_FMT_OFF_META_OFFSET 40
#define LORA_FMT_OFF_META_COUNT 48
#define LORA_FMT_OFF_MODULE_COUNT 52
#define LORA_FMT_OFF_MODULES_OFFSET 56
#define LORA_FMT_OFF_TENSORS_OFFSET 64
#define LORA_FMT_OFF_TENSOR_COUNT 72
#define LORA_FMT_OFF_BLOB_COUNT 76
#define LORA_FMT_OFF_BLOBS_OFFSET 80
#define LORA_FMT_OFF_STRINGS_OFFSET 88
#define LORA_FMT_OFF_STRINGS_SIZE 96
#define LORA_FMT_OFF_RESERVED 104         /* 16 bytes, must be zero */
#define LORA_FMT_OFF_HEADER_CHECKSUM 120  /* last 8 bytes of the header */

/* Flags. v1.0 defines none: any required bit set is unsupported; optional
 * bits must be zero in a 1.0 file and are ignored in files of a later minor. */
#define LORA_FMT_REQUIRED_FLAGS_KNOWN 0u
#define LORA_FMT_OPTIONAL_FLAGS_KNOWN 0u

/* ---- pinned enumerations ----------------------------------------------- */

typedef enum {
    LORA_FMT_DTYPE_F32 = 0,
    LORA_FMT_DTYPE_F16 = 1,
    LORA_FMT_DTYPE_BF16 = 2,
    LORA_FMT_DTYPE_Q8_0 = 3, /* ggml block_q8_0: f16 d, i8 qs[32] */
    LORA_FMT_DTYPE_Q4_0 = 4, /* ggml block_q4_0: f16 d, u8 qs[16], low nibble first */
    LORA_FMT_DTYPE_NF4 = 5,  /* f32 absmax, u8 qs[block/2], HIGH nibble first (bitsandbytes) */
    LORA_FMT_DTYPE_COUNT_ = 6
} lora_fmt_dtype;

typedef enum {
    LORA_FMT_COMPRESSION_NONE = 0,
    LORA_FMT_COMPRESSION_ZLIB = 1, /* one RFC 1950 stream, nothing after it */
    LORA_FMT_COMPRESSION_COUNT_ = 2
} lora_fmt_compression;

typedef enum {
    LORA_FMT_KIND_LINEAR = 0,
    LORA_FMT_KIND_EMBEDDING = 1,
    LORA_FMT_KIND_CONV1D = 2,
    LORA_FMT_KIND_CONV2D = 3,
    LORA_FMT_KIND_CONV3D = 4,
    LORA_FMT_KIND_COUNT_ = 5
} lora_fmt_kind;

typedef enum {
    LORA_FMT_SCALING_ALPHA_OVER_RANK = 0,      /* scale = alpha / r            */
    LORA_FMT_SCALING_ALPHA_OVER_SQRT_RANK = 1, /* scale = alpha / sqrtf(r)     */
    LORA_FMT_SCALING_EXPLICIT = 2,             /* scale stored, alpha informative */
    LORA_FMT_SCALING_COUNT_ = 3
} lora_fmt_scaling;

typedef enum {
    LORA_FMT_META_STRING = 1,
    LORA_FMT_META_INT = 2,   /* int64 */
    LORA_FMT_META_FLOAT = 3, /* IEEE binary64 */
    LORA_FMT_META_BOOL = 4,  /* 0 or 1 */
    LORA_FMT_META_TYPE_MAX_ = 4
} lora_fmt_meta_type;

/* Module flags. */
#define LORA_FMT_MODULE_FAN_IN_FAN_OUT 0x1u /* base stored [in, out] (GPT-2 Conv1D) */
#define LORA_FMT_MODULE_FLAGS_KNOWN 0x1u

/* Quantization blocks: elements per block and bytes per block. */
#define LORA_FMT_Q8_0_BLOCK 32u
#define LORA_FMT_Q8_0_BYTES 34u
#define LORA_FMT_Q4_0_BLOCK 32u
#define LORA_FMT_Q4_0_BYTES 18u
/* NF4 blocks are 1 << block_shift elements (blob record byte 3), 4 + block/2
 * bytes: the block sizes bitsandbytes accepts, 32..4096. Every other dtype
 * has block_shift 0. The default (what writers use unless asked) is 64. */
#define LORA_FMT_NF4_BLOCK_SHIFT_MIN 5u
#define LORA_FMT_NF4_BLOCK_SHIFT_MAX 12u
#define LORA_FMT_NF4_BLOCK_SHIFT_DEFAULT 6u
#define LORA_FMT_NF4_BLOCK 64u   /* the default block */
#define LORA_FMT_NF4_BYTES 36u   /* bytes of a default block */

/* ---- decoded records (host structs, never overlaid on file bytes) -------- */

/* A reference into the string table: bytes [offset, offset+length). */
typedef struct {
    uint32_t offset;
    uint32_t length;
} lora_fmt_strref;

typedef struct {
    uint16_t version_major;
    uint16_t version_minor;
    uint32_t header_size;
    uint32_t required_flags;
    uint32_t optional_flags;
    uint64_t file_size;
    uint64_t data_offset;
    uint64_t meta_offset;
    uint32_t meta_count;
    uint32_t module_count;
    uint64_t modules_offset;
    uint64_t tensors_offset;
    uint32_t tensor_count;
    uint32_t blob_count;
    uint64_t blobs_offset;
    uint64_t strings_offset;
    uint64_t strings_size;
    uint64_t header_checksum;
} lora_fmt_header;

typedef struct {
    lora_fmt_strref key;
    uint32_t type;             /* lora_fmt_meta_type */
    /* value: for STRING a strref packed as offset (low 32) | length (high 32) */
    lora_fmt_strref str;       /* valid when type == STRING */
    uint64_t bits;             /* raw 8 value bytes (int64, f64 bits, bool) */
} lora_fmt_meta;

typedef struct {
    lora_fmt_strref name;
    uint8_t kind;              /* lora_fmt_kind */
    uint8_t scaling;           /* lora_fmt_scaling */
    uint8_t base_ndim;
    uint32_t flags;            /* LORA_FMT_MODULE_* */
    uint32_t rank;
    float alpha;
    float scale;
    uint64_t base_shape[LORA_FMT_MAX_DIMS]; /* unused dims are zero */
    uint32_t blob_a;
    uint32_t blob_b;
    uint32_t blob_magnitude;   /* LORA_FMT_NO_BLOB if absent */
    uint32_t blob_bias;        /* LORA_FMT_NO_BLOB if absent */
} lora_fmt_module;

typedef struct {
    lora_fmt_strref name;
    uint32_t blob;
} lora_fmt_tensor;

typedef struct {
    uint8_t dtype;             /* lora_fmt_dtype */
    uint8_t compression;       /* lora_fmt_compression */
    uint8_t ndim;
    uint64_t shape[LORA_FMT_MAX_DIMS]; /* unused dims are zero */
    uint64_t offset;
    uint64_t stored_size;
    uint64_t raw_size;
    uint64_t checksum;         /* XXH3-64, seed 0, of the stored bytes */
    uint8_t block_shift;       /* record byte 3. NF4: log2 of the block (5..12);
                                  every other dtype: 0 */
} lora_fmt_blob;

/* Where a decode failed: the status, the byte offset (relative to the start
 * of the buffer given to the decoder) and the field name. */
typedef struct {
    lora_status status;
    uint64_t offset;
    const char *field;         /* static string, e.g. "header.file_size" */
} lora_fmt_fault;

/* Fill *fault (if not NULL) and return `status`. */
lora_status lora_fmt_fail(lora_fmt_fault *fault, lora_status status, uint64_t offset, const char *field);

/* ---- little-endian helpers and checked arithmetic ----------------------- */

static inline uint16_t lora_fmt_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t lora_fmt_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t lora_fmt_rd64(const uint8_t *p)
{
    return (uint64_t)lora_fmt_rd32(p) | ((uint64_t)lora_fmt_rd32(p + 4) << 32);
}
static inline void lora_fmt_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void lora_fmt_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void lora_fmt_wr64(uint8_t *p, uint64_t v)
{
    lora_fmt_wr32(p, (uint32_t)v);
    lora_fmt_wr32(p + 4, (uint32_t)(v >> 32));
}

/* Return 1 and leave *out untouched on overflow, else 0. */
static inline int lora_fmt_add_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a > UINT64_MAX - b) return 1;
    *out = a + b;
    return 0;
}
static inline int lora_fmt_mul_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *out = a * b;
    return 0;
}
/* Round up to a power-of-two alignment, failing instead of wrapping. */
static inline int lora_fmt_align_overflow(uint64_t v, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (lora_fmt_add_overflow(v, align - 1, &t)) return 1;
    *out = t & ~(align - 1);
    return 0;
}

/* ---- decode / encode ---------------------------------------------------- */
/* Decoders check every field that can be checked from the record alone:
 * reserved bytes zero, enums in range, dims >= 1 and product without
 * overflow, raw_size == bytes implied by dtype x shape, and so on. Cross-
 * record rules (offsets tiling the file, references, unique names) are the
 * reader's job. Each returns LORA_OK or fills *fault and returns its status.
 * `base` is added to fault offsets so they are file offsets. */

/* Magic, versions, header_size, flags, reserved bytes, alignments and the
 * ordering of the table offsets. `file_len` is the real length of the file. */
lora_status lora_fmt_decode_header(const uint8_t *p, size_t len, lora_fmt_header *h,
                                   lora_fmt_fault *fault);
lora_status lora_fmt_decode_meta(const uint8_t *p, size_t len, uint64_t base, lora_fmt_meta *m,
                                 lora_fmt_fault *fault);
lora_status lora_fmt_decode_module(const uint8_t *p, size_t len, uint64_t base, lora_fmt_module *m,
                                   lora_fmt_fault *fault);
lora_status lora_fmt_decode_tensor(const uint8_t *p, size_t len, uint64_t base, lora_fmt_tensor *t,
                                   lora_fmt_fault *fault);
lora_status lora_fmt_decode_blob(const uint8_t *p, size_t len, uint64_t base, lora_fmt_blob *b,
                                 lora_fmt_fault *fault);

/* Split forms of the decoders above, for a reader that must report the
 * error the spec's validation order assigns when a file has several faults
 * (the combined decoders run the same checks back to back):
 *   decode_header_frame   steps 1-5 (magic ... data_offset); `max_file_size`
 *                         is the caller's limit (UINT64_MAX for none)
 *   check_header_fields   step 7 (flags, reserved bytes); needs the first
 *                         128 bytes, which decode_header_frame guarantees
 *   check_table_layout    step 8, the part that needs no limits: canonical
 *                         table offsets, tables ending within data_offset
 *   read_module/read_blob step 9 (reserved fields, enums; for a blob also
 *                         block_shift == 0 unless the dtype is NF4); fill *m / *b
 *   check_module          step 12, the per-record part: rank (>= 1, <=
 *                         max_rank), alpha, scale rule, flags, base shape
 *   check_blob            step 10, the per-record part: ndim, dims, numel,
 *                         NF4 block_shift in 5..12, blocks, raw_size,
 *                         stored_size, zlib bomb guard
 * The combined lora_fmt_decode_header is frame + fields + layout. */
lora_status lora_fmt_decode_header_frame(const uint8_t *p, size_t len, uint64_t max_file_size,
                                         lora_fmt_header *h, lora_fmt_fault *fault);
lora_status lora_fmt_check_header_fields(const uint8_t *p, size_t len, const lora_fmt_header *h,
                                         lora_fmt_fault *fault);
lora_status lora_fmt_check_table_layout(const lora_fmt_header *h, lora_fmt_fault *fault);
lora_status lora_fmt_read_module(const uint8_t *p, size_t len, uint64_t base, lora_fmt_module *m,
                                 lora_fmt_fault *fault);
lora_status lora_fmt_check_module(const lora_fmt_module *m, uint32_t max_rank, uint64_t base,
                                  lora_fmt_fault *fault);
lora_status lora_fmt_read_blob(const uint8_t *p, size_t len, uint64_t base, lora_fmt_blob *b,
                               lora_fmt_fault *fault);
lora_status lora_fmt_check_blob(const lora_fmt_blob *b, uint64_t base, lora_fmt_fault *fault);

/* The zlib decompression-bomb guard: raw_size <= 1032 * stored_size + 1024
 * (1032:1 is deflate's maximum expansion; the constant covers tiny blobs). */
#define LORA_FMT_ZLIB_MAX_RATIO 1032u
#define LORA_FMT_ZLIB_SLACK 1024u

/* Encoders write exactly the record size; `cap` must be >= it. They do not
 * validate (the writer validates its whole output by decoding it). */
lora_status lora_fmt_encode_header(const lora_fmt_header *h, uint8_t *p, size_t cap);
lora_status lora_fmt_encode_meta(const lora_fmt_meta *m, uint8_t *p, size_t cap);
lora_status lora_fmt_encode_module(const lora_fmt_module *m, uint8_t *p, size_t cap);
lora_status lora_fmt_encode_tensor(const lora_fmt_tensor *t, uint8_t *p, size_t cap);
lora_status lora_fmt_encode_blob(const lora_fmt_blob *b, uint8_t *p, size_t cap);

/* Dtype facts: elements per block (1 for float types) and bytes per block,
 * for the dtype's default block (NF4: 64). */
int lora_fmt_dtype_valid(uint32_t dtype);
uint32_t lora_fmt_dtype_block_elems(uint32_t dtype);
uint32_t lora_fmt_dtype_block_bytes(uint32_t dtype);
const char *lora_fmt_dtype_name(uint32_t dtype); /* "F32", ..., NULL if invalid */
/* Bytes of a tensor of `numel` elements in the default block: fails
 * (returns the status) when numel is not a whole number of blocks or the
 * size overflows. */
lora_status lora_fmt_dtype_raw_size(uint32_t dtype, uint64_t numel, uint64_t *bytes);

/* The same facts for a blob record's (dtype, block_shift) pair: 1 when the
 * pair is valid (NF4 with block_shift 5..12, any other valid dtype with 0),
 * else 0 and the block functions return 0. */
int lora_fmt_block_shift_valid(uint32_t dtype, uint32_t block_shift);
uint32_t lora_fmt_blob_block_elems(uint32_t dtype, uint32_t block_shift);
uint32_t lora_fmt_blob_block_bytes(uint32_t dtype, uint32_t block_shift);
/* raw size of a blob: UNSUPPORTED_DTYPE, BAD_SHAPE for an invalid pair or a
 * partial block, BAD_SIZE on overflow. */
lora_status lora_fmt_blob_raw_size(uint32_t dtype, uint32_t block_shift, uint64_t numel, uint64_t *bytes);
/* block_shift for a block of `block` elements of `dtype` (0 = the default
 * block); 0 and LORA_OK for the fixed-block dtypes. LORA_E_INVALID_ARGUMENT
 * for a block the dtype cannot have. */
lora_status lora_fmt_block_shift_for(uint32_t dtype, uint32_t block, uint8_t *block_shift);
/* Product of dims[0..ndim): fails on ndim 0 or > MAX_DIMS, a zero dim, or overflow. */
lora_status lora_fmt_shape_numel(uint32_t ndim, const uint64_t *dims, uint64_t *numel);

/* Strings: valid UTF-8 (no overlongs, no surrogates), no NUL, length >= 1. */
int lora_fmt_utf8_valid(const uint8_t *s, size_t len);

#endif /* LORA_FORMAT_H */
