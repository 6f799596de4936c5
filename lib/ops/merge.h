/*
 * merge.h - the pieces of lora_merge (lib/lora_ops.h, "merge"). Internal to
 * liblora-ops.
 *
 *   merge.c           options, the run from start to end, the report
 *   merge_adapters.c  adapters: .lora files opened, other formats imported
 *   merge_base.c      the base: safetensors file, sharded directory, GGUF
 *   merge_index.c     model.safetensors.index.json in and out
 *   merge_match.c     module and tensor names -> base tensors, suggestions
 *   merge_plan.c      what happens to every base tensor; every check
 *   merge_prep.c      per target tensor: B*s and A laid out for the kernel,
 *                     DoRA factors, replacement sources
 *   merge_block.c     one block of output bytes (kernel, conversions)
 *   merge_pipe.c      the compute threads
 *   merge_out.c       output files: layout, positional writes, commit
 *
 * Data flow: the plan lists the base tensors in output order (shard by
 * shard, each in data-offset order) and fixes every output byte's place.
 * Tensors copied as they are split into chunks copied file to file;
 * every other tensor splits into blocks on a partition that depends only on
 * its shape. Threads take these tasks in order, compute, and write each at
 * its offset; the bytes do not depend on which thread did what, so the file
 * is the same for any thread count. Each thread releases the base pages of
 * what it finished.
 */
#ifndef LORA_OPS_MERGE_H
#define LORA_OPS_MERGE_H

#include <stddef.h>
#include <stdint.h>
#include "../common/internal.h"
#include "../io/gguf.h"
#include "../io/safetensors.h"
#include "../kernels/kernels.h"
#include "../kernels/merge_kernels.h"
#include "../lora_ops.h"
#include "../write/afile.h"
#include "gguf_names.h"

/* ---- element types -------------------------------------------------------- */

/* F32..BF16 equal lora_mk_dtype (and lora_dtype). */
typedef enum { MT_F32 = 0, MT_F16 = 1, MT_BF16 = 2, MT_Q8_0 = 3, MT_Q4_0 = 4, MT_OTHER = 5 } mt_type;

int mt_is_float(mt_type t);                       /* F32, F16, BF16 */
int mt_is_quant(mt_type t);                       /* Q8_0, Q4_0 */
const char *mt_name(mt_type t);
/* Bytes of `elems` elements (a whole number of 32-blocks for Q8_0/Q4_0);
 * 0 for MT_OTHER. */
uint64_t mt_bytes(mt_type t, uint64_t elems);

/* ---- test hooks -------------------------------------------------------------- */

typedef struct {
    const lora_merge_kernels *kernels; /* NULL: lora_merge_kernels_get() */
    const lora_kernels *conv;          /* conversions and (de)quantization; NULL: lora_kernels_get() */
    const lora_io *io;                 /* the output files' system calls (open, fsync, rename...); NULL: libc */
    uint64_t block_elems;              /* elements per block; 0: the default */
    /* Called before every write of output bytes, from any thread: a
     * non-zero errno fails that write (ENOSPC, EDQUOT: LORA_E_NO_SPACE). */
    int (*fail_write)(void *ctx);
    void *fail_ctx;
} lora_merge_hooks;

#define MERGE_BLOCK_ELEMS_DEFAULT ((uint64_t)1 << 18)

/* lora_merge / lora_merge_check with hooks (tests). */
lora_status lora_merge_run(const lora_merge_options *o, int check_only, const lora_merge_hooks *hooks,
                           lora_merge_report *rep, lora_error *err);

/* ---- adapters ------------------------------------------------------------------ */

typedef struct {
    const char *path;
    float weight;
    lora_reader *r;
    void *image;                /* lora_import's buffer (non-.lora input), else NULL */
    lora_file_info info;
} madapter;

/* Open (or import) and verify every blob of each adapter. On failure
 * *failed is the index of the adapter at fault. */
lora_status madapters_open(const lora_merge_options *o, madapter *ads, size_t *failed, lora_error *err);
void madapters_close(const lora_merge_options *o, madapter *ads, size_t count);

/* ---- base ------------------------------------------------------------------------ */

typedef struct {
    const char *name;           /* valid while the base is open */
    uint32_t shard;
    uint32_t raw_type;          /* lora_st_dtype, or the ggml type for GGUF */
    mt_type type;
    uint32_t ndim;
    uint64_t shape[LORA_ST_MAX_DIMS]; /* outermost first (GGUF's ne reversed) */
    uint64_t numel, nbytes;
    const uint8_t *data;        /* in the mapping */
    uint64_t file_offset;       /* of data in its file */
} mbase_tensor;

typedef enum { MBASE_ST = 0, MBASE_SHARDED = 1, MBASE_GGUF = 2 } mbase_kind;

typedef struct {
    char *path;                 /* the shard file */
    const char *file_name;      /* its name inside the base directory (in path) */
    int fd;                     /* open read-only: plain copies go through copy_file_range */
    void *map;                  /* read-only mapping of the same open file */
    size_t map_size;
    lora_st_file *st;           /* safetensors: parsed from map */
    uint32_t first, count;      /* its tensors in mbase.tensors */
} mbase_shard;

typedef struct {
    mbase_kind kind;
    lora_allocator alloc;
    mbase_shard *shards;
    uint32_t shard_count;
    mbase_tensor *tensors;      /* output order: shard by shard, data-offset order */
    uint32_t tensor_count;
    uint32_t *by_name;          /* tensor indices sorted by name */
    uint64_t data_bytes;        /* sum of nbytes */
    /* GGUF (one shard) */
    lora_gguf *gguf;
    const lora_gguf_arch *arch; /* NULL if general.architecture is unknown to gguf_names */
    uint64_t n_head, n_head_kv; /* 0 if absent */
    /* sharded */
    char *index_path;
    void *index;                /* json_t * of the index */
    /* kohya lookup, built on first use: base ".weight"/".bias" stems with '.' -> '_' */
    char **under;
    uint32_t *under_tensor;
    uint32_t under_count;
} mbase;

/* Open `path`: a safetensors or GGUF file, or a directory (sharded with an
 * index, or holding one model.safetensors). */
lora_status mbase_open(const lora_allocator *a, const char *path, mbase *b, lora_error *err);
void mbase_close(mbase *b);
/* Index of the tensor named `name`, or UINT32_MAX. */
uint32_t mbase_find(const mbase *b, const char *name);
const char *mbase_format_name(const mbase *b);
/* Release the resident pages of [p, p + n) of a tensor's mapping (whole
 * pages inside the range only). */
void mbase_release(const void *p, uint64_t n);

/* Open the safetensors file `path` as the next shard (b->shards has room,
 * and its fd is -1 until opened); its name in the base directory starts at
 * path + name_offset. */
lora_status mbase_add_shard(mbase *b, const char *path, size_t name_offset, lora_error *err);

/* Sharded bases (merge_index.c). */
lora_status mindex_load(mbase *b, const char *index_path, lora_error *err);
/* Every weight_map entry is in the shard it names (after the name index). */
lora_status mindex_check(const mbase *b, lora_error *err);
/* The output index: the input's, with metadata.total_size set. */
lora_status mindex_render(const mbase *b, uint64_t total_size, char **text, size_t *len, lora_error *err);
void mindex_free(mbase *b);

/* ---- matching -------------------------------------------------------------------- */

typedef struct {
    uint32_t tensor;            /* base tensor index */
    lora_gguf_role role;        /* GGUF: how the converter ordered its rows */
} mmatch;

/* `name` after the first rename rule that applies (in buf, or name itself);
 * NULL if it does not fit. */
const char *mmatch_renamed(const lora_merge_options *o, const char *name, char *buf, size_t cap);
/* The base tensor of module `module` (`bias`: its bias). LORA_E_NOT_FOUND
 * when there is none (nothing in err); other statuses fill err. */
lora_status mmatch_module(mbase *b, const lora_merge_options *o, const char *module, int bias, mmatch *out,
                          lora_error *err);
/* The base tensor a replacement tensor replaces. */
lora_status mmatch_tensor(mbase *b, const lora_merge_options *o, const char *name, mmatch *out, lora_error *err);
/* "; names differ by a prefix: 'x.' -> 'y.' ..." or "" when no base tensor
 * name ends like `name` (+ suffix) after a different prefix. */
void mmatch_suggest(const mbase *b, const char *name, const char *suffix, char *out, size_t cap);

/* ---- plan ------------------------------------------------------------------------- */

typedef enum { MP_COPY = 0, MP_CONVERT = 1, MP_MERGE = 2, MP_REPLACE = 3 } mp_action;

typedef struct {
    uint32_t adapter, module;
    uint32_t tensor;            /* base tensor */
    uint32_t seq;               /* order of discovery (adapter, module): the rank order */
    uint8_t bias;               /* adds the LoRA bias to a bias tensor */
} mp_contrib;

typedef struct {
    mp_action action;
    mt_type out_type;
    uint32_t out_raw;           /* st dtype or ggml type of the output */
    uint64_t out_bytes;
    uint64_t rows, cols;        /* MERGE: stored orientation; CONVERT/REPLACE: 1 x numel */
    uint64_t blocks;            /* 0 for COPY */
    uint64_t rows_per_block;    /* MERGE */
    uint64_t chunk;             /* CONVERT/REPLACE: elements per block (a multiple of 32) */
    uint32_t first, count;      /* MERGE: contributions c[first .. first + count) */
    uint32_t rep_adapter, rep_tensor; /* REPLACE: adapter and its tensor record */
    uint8_t transposed;         /* BS = A^T, A = (ws B)^T (fan_in_fan_out, embedding) */
    uint8_t dora;               /* magnitude of c[first]; per column when transposed */
    uint8_t is_bias;
    lora_gguf_role role;        /* row order (GGUF) */
    uint64_t heads;
} mp_tensor;

typedef struct {
    mp_tensor *t;               /* one per base tensor */
    mp_contrib *c;
    uint32_t contrib_count;
    uint64_t block_elems;
    uint64_t max_slot_bytes;    /* largest block output */
    uint64_t max_scratch;       /* most elements in a block (the f32 scratch is twice that) */
} mplan;

/* Match, check and plan. On failure *failed_adapter is the adapter at
 * fault, or SIZE_MAX for the base. */
lora_status mplan_build(mbase *b, madapter *ads, size_t nad, const lora_merge_options *o, uint64_t block_elems,
                        mplan *p, size_t *failed_adapter, lora_error *err);
void mplan_free(const lora_allocator *a, mplan *p);
void mplan_count(const mbase *b, const mplan *p, lora_merge_report *rep);

/* Block b of tensor t: MERGE rows [*first, *first + *n); else elements. */
void mp_block_range(const mp_tensor *t, uint64_t b, uint64_t *first, uint64_t *n);
/* Base bytes a block reads (for releasing them), from the tensor start. */
void mp_block_input(const mbase_tensor *bt, const mp_tensor *t, uint64_t b, uint64_t *offset, uint64_t *size);

/* ---- per-tensor preparation -------------------------------------------------------- */

typedef struct {
    float *bs, *a;              /* [rows][r], [r][cols] */
    double *bs64;               /* [rows][r] instead of bs, for float64 accumulation */
    size_t r;
    float *scale;               /* DoRA factors (rows, or cols when transposed) */
    lora_mk_scale mode;
    const uint8_t *src;         /* REPLACE: the blob's bytes in src_type ... */
    mt_type src_type;
    float *src_f32;             /* ... or decoded to f32 (owned) */
} mprep;

typedef struct {
    const mbase *base;
    const madapter *ads;
    const mplan *plan;
    const lora_merge_kernels *mk;
    const lora_kernels *k;
    int subtract;
    int f64;                    /* float64 accumulation (bs64) */
    lora_allocator alloc;
} mctx;

lora_status mprep_build(const mctx *m, uint32_t tensor, mprep *p, lora_error *err);
void mprep_free(const mctx *m, mprep *p);

/* Compute block b of tensor t into out (*len bytes). scratch holds
 * 2 * plan->max_scratch floats (a staging half for misaligned base bytes,
 * an f32 half). */
lora_status mblock_run(const mctx *m, uint32_t tensor, uint64_t b, const mprep *p, float *scratch, uint8_t *out,
                       size_t *len, lora_error *err);
/* Widen n elements of `src` (F32/F16/BF16/Q8_0/Q4_0) to f32. */
void mconv_to_f32(const lora_kernels *k, mt_type t, const uint8_t *src, float *dst, uint64_t n);
/* Narrow n f32 values to `t` (RNE; reference quantizers). */
void mconv_from_f32(const lora_kernels *k, mt_type t, const float *src, uint8_t *dst, uint64_t n);

/* ---- outputs --------------------------------------------------------------------- */

typedef struct mout mout;

/* Open every output file (nothing is written yet): checks the targets
 * (SAME_FILE, NOT_REGULAR_FILE) before any byte of output exists, and
 * fixes every file's layout (headers, tensor offsets). */
lora_status mout_open(const mbase *b, const mplan *p, const lora_merge_options *o, const madapter *ads,
                      size_t nad, const lora_merge_hooks *hooks, mout **out, lora_error *err);
/* Headers (and GGUF's alignment padding). */
lora_status mout_headers(mout *w, lora_error *err);
/* Bytes of tensor `tensor` from byte `at` of its output. Any thread. */
lora_status mout_put_at(mout *w, uint32_t tensor, uint64_t at, const void *data, size_t n, lora_error *err);
/* n bytes of a tensor copied unchanged from the base file, from byte `at`. Any thread. */
lora_status mout_copy_at(mout *w, uint32_t tensor, uint64_t at, uint64_t n, lora_error *err);
/* Ask the kernel to start writing back what is written so far. */
void mout_writeback(mout *w);
/* Read back, fsync, rename every file; the index last. */
lora_status mout_commit(mout *w, lora_error *err);
/* Remove every temp file not committed, and free. NULL is a no-op. */
void mout_free(mout *w);
uint64_t mout_total_bytes(const mout *w);   /* tensor data of every file */
uint64_t mout_bytes_out(const mout *w);     /* every byte of every file, index included */

/* ---- pipeline ----------------------------------------------------------------------- */

typedef struct {
    const mctx *m;
    mout *out;
    uint32_t threads;
    lora_merge_progress_fn progress;
    void *progress_opaque;
} mpipe_args;

/* Write the headers, then every tensor of every file through the threads. */
lora_status mpipe_run(const mpipe_args *a, lora_error *err);

#endif /* LORA_OPS_MERGE_H */
