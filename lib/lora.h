/*
 * lora.h - liblora: read, verify and write .lora LoRA adapter containers.
 *
 * This header is the manual. Every call, its ownership rules, its errors and
 * its limits are described here; spec/lora-format.md describes the bytes.
 *
 * Conventions
 *   - Every fallible call returns a lora_status (lora_errors.h); LORA_OK is 0.
 *     Results go through out-parameters, sizes are explicit.
 *   - Calls that can fail on file content take an optional `lora_error *err`
 *     (may be NULL). On failure it receives the status, the byte offset in
 *     the file where the problem is (or LORA_NO_OFFSET), and a detail string
 *     naming the module, blob or field, e.g.
 *       "module 'model.layers.3.self_attn.q_proj': A blob offset 4096 + 8192
 *        exceeds file size 10000".
 *   - Handles are opaque. `*_free(NULL)` does nothing.
 *   - Strings returned by the reader are NUL-terminated UTF-8 and stay valid
 *     until lora_reader_free(). Views into blob data stay valid for the same
 *     time.
 *   - The library never prints, never aborts on file content, keeps no global
 *     mutable state, and allocates no more than the input justifies (bounded
 *     by the limits in lora_read_options).
 *   - Thread safety: distinct handles may be used from distinct threads. One
 *     reader may be shared by threads for the const queries and for
 *     decode/verify calls; a writer must not be shared.
 *
 * Linking: a runtime that only reads adapters needs liblora, libxxhash and
 * libz; nothing else.
 */
#ifndef LORA_H
#define LORA_H

#include <stddef.h>
#include <stdint.h>
#include "lora_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LORA_BUILDING_LIBRARY) && defined(__GNUC__)
#  define LORA_API __attribute__((visibility("default")))
#else
#  define LORA_API
#endif

/* ---- version ------------------------------------------------------------ */

#define LORA_VERSION_MAJOR 0
#define LORA_VERSION_MINOR 1
#define LORA_VERSION_PATCH 0
#define LORA_VERSION_NUMBER (LORA_VERSION_MAJOR * 10000 + LORA_VERSION_MINOR * 100 + LORA_VERSION_PATCH)
#define LORA_VERSION_STRING "0.1.0"

/* Version of the .lora format this library writes, and the newest it reads
 * (any 1.x: later minor versions only add what a 1.0 reader may ignore). */
#define LORA_FORMAT_VERSION_MAJOR 1
#define LORA_FORMAT_VERSION_MINOR 0

LORA_API unsigned lora_version_number(void);    /* LORA_VERSION_NUMBER of the library */
LORA_API const char *lora_version_string(void); /* "0.1.0" */

/* ---- errors ------------------------------------------------------------- */

#define LORA_NO_OFFSET UINT64_MAX
#define LORA_ERROR_DETAIL_SIZE 256

typedef struct {
    lora_status status;
    uint64_t offset;                      /* byte offset in the file, or LORA_NO_OFFSET */
    char detail[LORA_ERROR_DETAIL_SIZE];  /* NUL-terminated, possibly truncated */
} lora_error;

LORA_API const char *lora_status_name(lora_status s);    /* "LORA_E_TRUNCATED"; "LORA_E_UNKNOWN" if unknown */
LORA_API const char *lora_status_message(lora_status s); /* "file is truncated" */

/* ---- enumerations (values pinned by the spec) ---------------------------- */

typedef enum {
    LORA_DTYPE_F32 = 0,
    LORA_DTYPE_F16 = 1,
    LORA_DTYPE_BF16 = 2,
    LORA_DTYPE_Q8_0 = 3, /* blocks of 32: f16 scale + 32 x int8 (ggml block_q8_0) */
    LORA_DTYPE_Q4_0 = 4, /* blocks of 32: f16 scale + 16 bytes (ggml block_q4_0) */
    LORA_DTYPE_NF4 = 5   /* blocks of 32..4096 (default 64): f32 absmax + block/2 bytes (bitsandbytes NF4) */
} lora_dtype;

/* NF4 block sizes (elements): a power of two in [MIN, MAX], as bitsandbytes
 * allows. Q8_0 and Q4_0 blocks are always 32 (ggml's). */
#define LORA_NF4_BLOCK_DEFAULT 64u
#define LORA_NF4_BLOCK_MIN 32u
#define LORA_NF4_BLOCK_MAX 4096u

typedef enum { LORA_COMPRESSION_NONE = 0, LORA_COMPRESSION_ZLIB = 1 } lora_compression;

typedef enum {
    LORA_KIND_LINEAR = 0,
    LORA_KIND_EMBEDDING = 1,
    LORA_KIND_CONV1D = 2,
    LORA_KIND_CONV2D = 3,
    LORA_KIND_CONV3D = 4
} lora_kind;

typedef enum {
    LORA_SCALING_ALPHA_OVER_RANK = 0,      /* s = alpha / r            (PEFT default) */
    LORA_SCALING_ALPHA_OVER_SQRT_RANK = 1, /* s = alpha / sqrt(r)      (rsLoRA)       */
    LORA_SCALING_EXPLICIT = 2              /* s stored as is           (MLX "scale")  */
} lora_scaling;

typedef enum {
    LORA_META_STRING = 1,
    LORA_META_INT = 2,
    LORA_META_FLOAT = 3,
    LORA_META_BOOL = 4
} lora_meta_type;

#define LORA_MAX_DIMS 5
#define LORA_NO_BLOB 0xFFFFFFFFu
#define LORA_MODULE_FAN_IN_FAN_OUT 0x1u /* base weight stored [in, out] (GPT-2 Conv1D) */

LORA_API const char *lora_dtype_name(lora_dtype d);             /* "F32", ...; NULL if invalid */
LORA_API const char *lora_kind_name(lora_kind k);               /* "linear", ... */
LORA_API const char *lora_scaling_name(lora_scaling s);         /* "alpha/r", "alpha/sqrt(r)", "explicit" */
/* Parse a dtype name ("f16", "F16", "q8_0"...); LORA_E_INVALID_ARGUMENT if unknown. */
LORA_API lora_status lora_dtype_from_name(const char *name, lora_dtype *out);

/* Reserved metadata keys (all of type STRING; a reader rejects another type). */
#define LORA_META_BASE_MODEL          "lora.base_model"          /* e.g. "meta-llama/Llama-3.2-1B" */
#define LORA_META_BASE_MODEL_REVISION "lora.base_model.revision"
#define LORA_META_ARCHITECTURE        "lora.architecture"        /* e.g. "llama" */
#define LORA_META_SOURCE_FORMAT       "lora.source.format"       /* "peft", "mlx", "kohya", "diffusers", "gguf" */
#define LORA_META_SOURCE_CONFIG       "lora.source.config"       /* source config verbatim (adapter_config.json) */
#define LORA_META_PRODUCER            "lora.producer"            /* tool that wrote the file */
#define LORA_META_PRODUCER_VERSION    "lora.producer.version"
#define LORA_META_ADAPTER_NAME        "lora.adapter.name"
#define LORA_META_TASK_TYPE           "lora.task_type"           /* e.g. "CAUSAL_LM" */

/* ---- allocator hook ----------------------------------------------------- */

/* Zero-initialised = malloc/free. Tests use it to fail the Nth allocation. */
typedef struct {
    void *(*alloc)(void *opaque, size_t size);
    void (*free)(void *opaque, void *ptr);
    void *opaque;
} lora_allocator;

/* ---- reader ------------------------------------------------------------- */

/* Caps a runtime sets before loading files from the internet. A zero field
 * means "use the default" given in brackets. Exceeding one is
 * LORA_E_LIMIT_EXCEEDED, reported before anything is allocated for it. */
typedef struct {
    uint64_t max_file_size;     /* [1 TiB]  */
    uint32_t max_modules;       /* [1<<20]  */
    uint32_t max_tensors;       /* [1<<16]  */
    uint32_t max_blobs;         /* [1<<22]  */
    uint32_t max_metadata;      /* [1<<16]  */
    uint32_t max_name_length;   /* [4096] bytes, module/tensor names and metadata keys */
    uint32_t max_rank;          /* [65536]  */
    uint64_t max_string_bytes;  /* [64 MiB] the whole string table */
    uint64_t max_blob_raw_size; /* [16 GiB] decoded bytes of one blob */
} lora_limits;

#define LORA_READ_VERIFY_CHECKSUMS 0x1u /* verify every blob checksum at open */

typedef struct {
    lora_limits limits;
    uint32_t flags;             /* LORA_READ_* */
    uint32_t reserved0;         /* must be zero */
    lora_allocator allocator;
    uint64_t reserved[4];       /* must be zero */
} lora_read_options;

#define LORA_READ_OPTIONS_INIT {{0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, 0, {0, 0, 0}, {0, 0, 0, 0}}

typedef struct lora_reader lora_reader;

/* Open a file read-only with mmap (zero copy). `opts` may be NULL for
 * defaults. The structure (header, tables, every range, every reference) and
 * the header checksum are always validated at open; blob checksums are
 * validated at open only with LORA_READ_VERIFY_CHECKSUMS, otherwise by
 * lora_reader_verify*() or on decode. The file must not be modified while
 * open: a file truncated by another process can raise SIGBUS on access. */
LORA_API lora_status lora_reader_open_file(const char *path, const lora_read_options *opts,
                                           lora_reader **out, lora_error *err);
/* Same over the caller's buffer, which is borrowed: it must outlive the reader. */
LORA_API lora_status lora_reader_open_buffer(const void *data, size_t size, const lora_read_options *opts,
                                             lora_reader **out, lora_error *err);
LORA_API void lora_reader_free(lora_reader *r);

typedef struct {
    uint16_t format_major, format_minor;
    uint64_t file_size;
    uint32_t module_count, tensor_count, blob_count, metadata_count;
    uint64_t data_offset;       /* first blob byte */
    uint64_t header_checksum;
} lora_file_info;
LORA_API void lora_reader_file_info(const lora_reader *r, lora_file_info *out);

typedef struct {
    const char *key;
    lora_meta_type type;
    const char *string;         /* STRING: NUL-terminated value (may contain no NUL) */
    size_t string_length;       /* STRING: length in bytes */
    int64_t integer;            /* INT, and BOOL as 0/1 */
    double number;              /* FLOAT */
} lora_meta;
/* The index-based queries (meta, module, tensor, blob, blob_view, verify_blob,
 * blob_read, decode) return LORA_E_INVALID_ARGUMENT for an index >= the count
 * in lora_file_info. */
LORA_API lora_status lora_reader_meta(const lora_reader *r, uint32_t index, lora_meta *out);
/* LORA_E_NOT_FOUND if absent. */
LORA_API lora_status lora_reader_meta_find(const lora_reader *r, const char *key, lora_meta *out);

typedef struct {
    const char *name;           /* base model module path, e.g. "model.layers.0.self_attn.q_proj" */
    lora_kind kind;
    lora_scaling scaling;
    uint32_t flags;             /* LORA_MODULE_* */
    uint32_t rank;
    float alpha;
    float scale;                /* resolved: what multiplies B @ A */
    uint32_t base_ndim;
    uint64_t base_shape[LORA_MAX_DIMS];  /* the base tensor as stored (unused dims 0) */
    uint32_t blob_a, blob_b;             /* blob indices */
    uint32_t blob_magnitude, blob_bias;  /* LORA_NO_BLOB if absent */
} lora_module;
LORA_API lora_status lora_reader_module(const lora_reader *r, uint32_t index, lora_module *out);
LORA_API lora_status lora_reader_module_find(const lora_reader *r, const char *name, uint32_t *index);

/* Full tensors that replace a base tensor (PEFT modules_to_save, trained biases). */
typedef struct {
    const char *name;           /* base tensor name, e.g. "lm_head.weight" */
    uint32_t blob;
} lora_tensor;
LORA_API lora_status lora_reader_tensor(const lora_reader *r, uint32_t index, lora_tensor *out);

typedef struct {
    lora_dtype dtype;
    lora_compression compression;
    uint32_t ndim;
    uint64_t shape[LORA_MAX_DIMS];
    uint64_t numel;
    uint64_t offset;            /* in the file, 64-byte aligned */
    uint64_t stored_size;       /* bytes in the file */
    uint64_t raw_size;          /* bytes after decompression (== stored_size if NONE) */
    uint64_t checksum;          /* XXH3-64 of the stored bytes */
    uint32_t block;             /* elements per block: 1 (F32, F16, BF16), 32 (Q8_0, Q4_0),
                                   32..4096 (NF4: the record's block_shift) */
} lora_blob;
LORA_API lora_status lora_reader_blob(const lora_reader *r, uint32_t index, lora_blob *out);

/* Zero-copy view of an uncompressed blob's raw bytes (LORA_E_NOT_VIEWABLE if
 * compressed). Not checksum-verified: call lora_reader_verify_blob first if
 * the file is untrusted. 64-byte aligned when the file is mmapped. */
LORA_API lora_status lora_reader_blob_view(const lora_reader *r, uint32_t index, const void **data,
                                           size_t *size);
/* Verify one blob's checksum (and, if compressed, that it inflates to exactly
 * raw_size). */
LORA_API lora_status lora_reader_verify_blob(const lora_reader *r, uint32_t index, lora_error *err);
/* Verify every blob. Stops at the first failure. */
LORA_API lora_status lora_reader_verify(const lora_reader *r, lora_error *err);
/* Verify, decompress if needed, and copy the raw bytes (dst_capacity >= raw_size). */
LORA_API lora_status lora_reader_blob_read(const lora_reader *r, uint32_t index, void *dst, size_t dst_capacity,
                                           lora_error *err);
/* Verify, decompress and decode any dtype to f32 (dst_count >= numel). */
LORA_API lora_status lora_reader_blob_decode_f32(const lora_reader *r, uint32_t index, float *dst, size_t dst_count,
                                                 lora_error *err);
/* Count NaN and infinite values after decoding (0 for non-float data is impossible:
 * every dtype decodes to float). Verifies the checksum first. */
LORA_API lora_status lora_reader_blob_count_nonfinite(const lora_reader *r, uint32_t index, uint64_t *count,
                                                      lora_error *err);

/* ---- writer ------------------------------------------------------------- */

typedef struct lora_writer lora_writer;

LORA_API lora_status lora_writer_create(const lora_allocator *allocator /* NULL = malloc */, lora_writer **out);
LORA_API void lora_writer_free(lora_writer *w);

/* Metadata. Keys are unique (setting a key twice replaces it, type
 * included); reserved keys must be strings (else LORA_E_INVALID_ARGUMENT).
 * Key and value are copied.
 * The add_* calls check their arguments at once: rank 0, unknown kind,
 * scaling or flags, non-finite alpha or explicit scale, a blob index that does
 * not exist or is already used, an invalid name -> LORA_E_INVALID_ARGUMENT; a
 * duplicate module or tensor name -> LORA_E_DUPLICATE_NAME. A failed call
 * leaves the writer unchanged. */
LORA_API lora_status lora_writer_set_string(lora_writer *w, const char *key, const char *value, size_t value_length);
LORA_API lora_status lora_writer_set_int(lora_writer *w, const char *key, int64_t value);
LORA_API lora_status lora_writer_set_float(lora_writer *w, const char *key, double value);
LORA_API lora_status lora_writer_set_bool(lora_writer *w, const char *key, int value);

/* Add a blob from raw bytes already in `dtype` (size must equal what dtype x
 * shape implies). The bytes are copied. `compression` NONE or ZLIB (zlib is
 * kept only if it makes the blob smaller). Returns its index. */
LORA_API lora_status lora_writer_add_blob(lora_writer *w, lora_dtype dtype, uint32_t ndim, const uint64_t *shape,
                                          const void *data, size_t size, lora_compression compression,
                                          uint32_t *index);
/* Add a blob from f32 values, converted to `dtype` with round-to-nearest-even
 * (F16, BF16) or the reference quantizer (Q8_0, Q4_0, NF4 in blocks of 64). */
LORA_API lora_status lora_writer_add_blob_f32(lora_writer *w, lora_dtype dtype, uint32_t ndim, const uint64_t *shape,
                                              const float *values, size_t count, lora_compression compression,
                                              uint32_t *index);
/* The same two calls with the quantization block chosen: `block` 0 means
 * the dtype's default (NF4 64); NF4 takes a power of two in
 * LORA_NF4_BLOCK_MIN..LORA_NF4_BLOCK_MAX; every other dtype only its own
 * block (1 or 32). The element count must be a whole number of blocks.
 * Anything else is LORA_E_INVALID_ARGUMENT. For raw NF4 bytes `size` is
 * numel / block * (4 + block / 2). */
LORA_API lora_status lora_writer_add_blob_block(lora_writer *w, lora_dtype dtype, uint32_t block, uint32_t ndim,
                                                const uint64_t *shape, const void *data, size_t size,
                                                lora_compression compression, uint32_t *index);
LORA_API lora_status lora_writer_add_blob_f32_block(lora_writer *w, lora_dtype dtype, uint32_t block, uint32_t ndim,
                                                    const uint64_t *shape, const float *values, size_t count,
                                                    lora_compression compression, uint32_t *index);

/* A module. For ALPHA_OVER_RANK and ALPHA_OVER_SQRT_RANK `scale` is ignored
 * and computed in binary32 (alpha / (float)r, alpha / sqrtf((float)r));
 * for EXPLICIT it is stored as given. The shapes of the referenced blobs
 * are checked against kind, rank and base shape (see the spec). */
typedef struct {
    const char *name;
    lora_kind kind;
    lora_scaling scaling;
    uint32_t flags;
    uint32_t rank;
    float alpha;
    float scale;
    uint32_t base_ndim;
    uint64_t base_shape[LORA_MAX_DIMS];
    uint32_t blob_a, blob_b;
    uint32_t blob_magnitude, blob_bias; /* LORA_NO_BLOB if absent */
} lora_module_desc;
LORA_API lora_status lora_writer_add_module(lora_writer *w, const lora_module_desc *desc, uint32_t *index);
LORA_API lora_status lora_writer_add_tensor(lora_writer *w, const char *name, uint32_t blob);

/* Serialized size, then serialize into the caller's buffer. The writer
 * validates its output with the reader before returning LORA_OK, so a file
 * it writes always opens; a structural mistake (unreferenced blob, shape that
 * disagrees with the module) fails here with `err` naming it. */
LORA_API lora_status lora_writer_size(lora_writer *w, uint64_t *size, lora_error *err);
LORA_API lora_status lora_writer_write_buffer(lora_writer *w, void *dst, size_t dst_capacity, size_t *written,
                                              lora_error *err);

typedef struct {
    const char *const *inputs;  /* paths the output must not overwrite (may be NULL) */
    size_t input_count;
    uint32_t mode;              /* permission bits of a new file; 0 = 0644 & ~umask. An existing
                                   target keeps its mode. */
    uint32_t reserved0;         /* must be zero */
    uint64_t reserved[4];       /* must be zero */
} lora_write_options;
#define LORA_WRITE_OPTIONS_INIT {0, 0, 0, 0, {0, 0, 0, 0}}

/* Crash-safe write: a temp file ".<name>.XXXXXX.tmp" in the target's
 * directory, full writes (EINTR and short writes handled), a re-open of the
 * temp file with the reader and a full verify, fsync, rename over the target,
 * fsync of the directory. The target is never opened for writing or
 * truncated; on any failure it is left as it was and the temp file is
 * removed (a crash can leave a stale temp file, never a partial target).
 * A symlink target is followed: the file it points to is replaced, the link
 * stays. Mode: an existing target keeps its mode; a new file gets opts->mode
 * if non-zero, else 0644 minus the umask. Owner and hard links are not kept.
 * Errors: LORA_E_SAME_FILE if the target is one of opts->inputs (same device
 * and inode, through any symlink or hard link); LORA_E_NOT_REGULAR_FILE for a
 * directory, device, FIFO or dangling symlink; LORA_E_NO_SPACE on ENOSPC or
 * EDQUOT; LORA_E_IO otherwise (detail has strerror); a structural mistake in
 * what was built (orphan blob, shape that disagrees with its module) gives the
 * reader's status (e.g. LORA_E_BAD_SHAPE) after the temp file was written
 * and removed. A failed fsync is never retried (its data may be lost).
 * `opts` may be NULL. */
LORA_API lora_status lora_writer_write_file(lora_writer *w, const char *path, const lora_write_options *opts,
                                            lora_error *err);

/* ---- kernels ------------------------------------------------------------ */

/* The instruction set the kernels dispatch to: "ref", "avx2", "avx512".
 * Chosen once from CPUID/XGETBV; the environment variable LORA_ISA=ref|avx2|
 * avx512 forces a lower one (a higher one than the CPU has is ignored). */
LORA_API const char *lora_isa_name(void);

#ifdef __cplusplus
}
#endif
#endif /* LORA_H */
