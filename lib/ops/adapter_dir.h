/*
 * adapter_dir.h - the files of a directory-style adapter (PEFT, MLX): where
 * the weights and the JSON config are, reading the config, and writing both
 * crash-safely. Internal to liblora-ops.
 *
 * Output is two-phase: each file is staged (written to a temp file beside
 * its target and read back) and only then are all of them committed, so a
 * failure while producing the second file leaves the directory as it was.
 */
#ifndef LORA_OPS_ADAPTER_DIR_H
#define LORA_OPS_ADAPTER_DIR_H

#include "../io/safetensors.h"
#include "convert.h"

/* A JSON config is a few KiB; anything past this is not one. */
#define LORA_ADIR_MAX_CONFIG ((size_t)16 << 20)

typedef struct {
    char *weights; /* the .safetensors */
    char *config;  /* adapter_config.json */
} lora_adir_paths;

/* `input` is a directory (weights = input/weights_name) or the weights file
 * itself (config beside it). Strings come from `a`. */
lora_status lora_adir_resolve(const lora_allocator *a, const char *input, const char *weights_name,
                              lora_adir_paths *out, lora_error *err);
void lora_adir_paths_free(const lora_allocator *a, lora_adir_paths *p);

/* "<dir>/<name>" from `a`, or NULL when out of memory. */
char *lora_adir_join(const lora_allocator *a, const char *dir, const char *name);
/* A copy of `len` bytes of `s`, NUL-terminated; NULL when out of memory. */
char *lora_adir_strndup(const lora_allocator *a, const char *s, size_t len);

/* The whole config file, at most LORA_ADIR_MAX_CONFIG bytes, into memory
 * from `a` (with a NUL after the last byte). A Git LFS pointer is
 * LORA_E_LFS_POINTER; `what` names the file in details. */
lora_status lora_adir_read_config(const lora_allocator *a, const char *path, const char *what, uint8_t **data,
                                  size_t *size, lora_error *err);

/* The output directory: created (mode 0777 & ~umask) when missing; an
 * existing non-directory is LORA_E_INVALID_ARGUMENT. */
lora_status lora_adir_prepare_output(const char *dir, const char *what, lora_error *err);

/* One tensor of an output safetensors file, taken from a blob of the reader.
 * The written shape is `shape` (its element count must equal the blob's);
 * `transpose` swaps the axes of a 2-D blob first (MLX stores A^T and B^T). */
typedef struct {
    char *name;                       /* owned by the caller */
    uint32_t blob;
    int transpose;
    uint32_t ndim;
    uint64_t shape[LORA_ST_MAX_DIMS];
    lora_st_dtype dtype;              /* set by lora_adir_fill_dtypes */
} lora_adir_tensor;

/* Stage a safetensors file at `path` holding `count` tensors in the order
 * given, each converted to its dtype (bytes unchanged when it is the
 * blob's: zlib blobs are inflated, nothing else touched). The temp file is parsed back before
 * this returns. On success *out is the staged file for lora_adir_commit. */
lora_status lora_adir_stage_safetensors(const lora_reader *r, const lora_convert_options *o, const char *path,
                                        const lora_write_options *wopts, const lora_io *io,
                                        const lora_adir_tensor *t, uint32_t count,
                                        const lora_st_pair *meta, uint32_t meta_count, lora_afile **out,
                                        lora_error *err);
/* Stage `size` bytes at `path`. (`io` of both: see lora_exporter_fn.) */
lora_status lora_adir_stage_bytes(const lora_allocator *a, const char *path, const lora_write_options *wopts,
                                  const lora_io *io, const void *data, size_t size, lora_afile **out,
                                  lora_error *err);
/* Commit files[0..n) as one output: lora_afile_commit_all (every file
 * fsynced before the first rename; every entry consumed). */
lora_status lora_adir_commit(lora_afile **files, size_t n, lora_error *err);
void lora_adir_abort(lora_afile **files, size_t n);

/* Set each tensor's output dtype: the blob's for F32/F16/BF16, F32 for a
 * quantized blob, o->dtype when it is >= 0. Warns once per quantized blob. */
lora_status lora_adir_fill_dtypes(const lora_reader *r, const lora_convert_options *o, lora_adir_tensor *t,
                                  uint32_t count, lora_error *err);
/* Sort tensors as the reference safetensors writer does (dtype descending,
 * then name bytewise), so an export of an unchanged adapter is laid out
 * like the original. Needs the dtypes. */
void lora_adir_sort_like_reference(lora_adir_tensor *t, uint32_t count);
/* Free the names of t[0..count) and the array itself. */
void lora_adir_tensors_free(const lora_allocator *a, lora_adir_tensor *t, uint32_t count);

#endif /* LORA_OPS_ADAPTER_DIR_H */
