/*
 * lora_ops.h - liblora-ops: conversion between .lora and other adapter
 * formats, quantization and rank pruning of .lora files (and, in later
 * releases, merge).
 *
 * Link with -llora-ops -llora (pkg-config liblora-ops). It is a separate
 * library because it needs jansson (JSON configs and safetensors headers):
 * a runtime that only reads .lora files links liblora alone.
 *
 * Conventions are those of lora.h: lora_status returns, an optional
 * lora_error with a detail naming the file, tensor or field and the offset,
 * no printing (warnings go to a callback), no aborts on file content, inputs
 * never modified, outputs written crash-safely (temp file, fsync, rename).
 */
#ifndef LORA_OPS_H
#define LORA_OPS_H

#include "lora.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LORA_FORMAT_AUTO = 0,      /* detect from content (input) or from the name (output) */
    LORA_FORMAT_LORA = 1,      /* .lora (this project) */
    LORA_FORMAT_PEFT = 2,      /* Hugging Face PEFT: adapter_model.safetensors + adapter_config.json */
    LORA_FORMAT_MLX = 3,       /* MLX LM: adapters.safetensors + adapter_config.json */
    LORA_FORMAT_KOHYA = 4,     /* kohya sd-scripts: lora_unet_* / lora_te*_ keys with .alpha */
    LORA_FORMAT_DIFFUSERS = 5, /* diffusers: PEFT keys without base_model.model. (pytorch_lora_weights.safetensors) */
    LORA_FORMAT_GGUF = 6       /* llama.cpp GGUF adapter (general.type = adapter) */
} lora_format;

LORA_API const char *lora_format_name(lora_format f);                   /* "lora", "peft", ...; NULL if invalid */
LORA_API lora_status lora_format_from_name(const char *name, lora_format *out); /* LORA_E_INVALID_ARGUMENT if unknown */

/* Warnings (e.g. a tensor dropped with LORA_CONVERT_DROP_UNSUPPORTED) are
 * passed to this callback, one message per call, without a trailing newline. */
typedef void (*lora_warn_fn)(void *opaque, const char *message);

/* Drop what the output format cannot represent (DoRA magnitudes and
 * replacement tensors in GGUF, ...) with a warning per dropped tensor,
 * instead of refusing with LORA_E_UNSUPPORTED_ADAPTER. */
#define LORA_CONVERT_DROP_UNSUPPORTED 0x1u

typedef struct {
    lora_format from;          /* AUTO: detect from the input's content */
    lora_format to;            /* AUTO: from the output name (.lora, .gguf, .safetensors, a directory = peft) */
    int32_t dtype;             /* -1: keep each tensor's dtype (bit exact); else LORA_DTYPE_F32/F16/BF16 */
    uint32_t flags;            /* LORA_CONVERT_* */
    const char *arch;          /* architecture (llama, qwen2, gemma3, phi3, gpt2, gptneox, ...) when the
                                  adapter does not say; needed for GGUF */
    const char *base_config;   /* path of the base model's config.json: head counts for llama-family
                                  Q/K permutation in GGUF, and the architecture; may be NULL */
    lora_warn_fn warn;         /* may be NULL: warnings are dropped */
    void *warn_opaque;
    lora_allocator allocator;  /* zeroed = malloc/free */
    uint64_t reserved[4];      /* must be zero */
} lora_convert_options;

#define LORA_CONVERT_OPTIONS_INIT {LORA_FORMAT_AUTO, LORA_FORMAT_AUTO, -1, 0, NULL, NULL, NULL, NULL, {0, 0, 0}, {0, 0, 0, 0}}

/* Detect an input's format from its content: a directory with
 * adapter_config.json (PEFT or MLX), a safetensors file by its keys (PEFT,
 * MLX, kohya, diffusers), a GGUF adapter, a .lora file. A Git LFS pointer is
 * LORA_E_LFS_POINTER; anything else LORA_E_UNKNOWN_FORMAT. */
LORA_API lora_status lora_detect_format(const char *path, lora_format *out, lora_error *err);

/* Convert `input` to `output`. Everything goes through the .lora model:
 * per-module rank, alpha, scaling rule and scale, DoRA magnitudes, LoRA
 * biases, replacement tensors and the source config (verbatim, in
 * lora.source.config). Where the output format cannot represent something it
 * refuses with LORA_E_UNSUPPORTED_ADAPTER and a detail saying what and why,
 * unless LORA_CONVERT_DROP_UNSUPPORTED. Config flags that change the math
 * and are not implemented (use_qalora, KaSA, aLoRA, ...) are refused the
 * same way. `output` is never one of the input files (LORA_E_SAME_FILE). */
LORA_API lora_status lora_convert(const char *input, const char *output, const lora_convert_options *opts,
                                  lora_error *err);

/* Import any supported input into a .lora image in memory (what
 * lora_convert writes for a .lora output). *data is allocated with the
 * options' allocator; release it with lora_ops_free(opts, *data). */
LORA_API lora_status lora_import(const char *input, const lora_convert_options *opts, void **data, size_t *size,
                                 lora_error *err);
LORA_API void lora_ops_free(const lora_convert_options *opts, void *data);

/* ==== quantize and prune ===================================================
 *
 * Both read a .lora file (any dtype: quantized factors are decoded first),
 * write a new .lora file crash-safely (temp file, verify, fsync, rename;
 * `output` is never the input: LORA_E_SAME_FILE), and fill a report the
 * caller frees. Blobs they do not rewrite (DoRA magnitudes, LoRA biases,
 * replacement tensors, factors not selected) are copied bit for bit, with
 * their dtype, NF4 block and compression; metadata is copied unchanged.
 * Factors with NaN or infinity are refused (LORA_E_NONFINITE) when they
 * would be rewritten. Names in a report point into the report and stay
 * valid until its _free call. Linking needs OpenBLAS and LAPACKE
 * (-llapacke -lopenblas), which only these calls use.
 *
 * Delta W, here and in the reports, is s * B @ A of spec section 14
 * (reshaped per kind; norms do not depend on the reshape or transpose).
 * Every error figure is computed in double from the decoded f32 values.
 */

/* lora_quantize: which factors to convert (0 = both). */
#define LORA_QUANTIZE_A 0x1u
#define LORA_QUANTIZE_B 0x2u

typedef struct {
    lora_dtype dtype;          /* target of the converted factors */
    uint32_t block;            /* NF4 block: a power of two in 32..4096, 0 = 64. Must be 0 for other dtypes */
    uint32_t factors;          /* LORA_QUANTIZE_A | LORA_QUANTIZE_B; 0 = both */
    uint32_t reserved0;        /* must be zero */
    lora_allocator allocator;  /* zeroed = malloc/free */
    uint64_t reserved[4];      /* must be zero */
} lora_quantize_options;
#define LORA_QUANTIZE_OPTIONS_INIT {LORA_DTYPE_F32, 0, 0, 0, {0, 0, 0}, {0, 0, 0, 0}}

/* What happened to one factor blob. */
typedef enum {
    LORA_FACTOR_CONVERTED = 0, /* converted to the target dtype (and block) */
    LORA_FACTOR_UNCHANGED = 1, /* already in the target dtype and block: copied bit for bit */
    LORA_FACTOR_NOT_SELECTED = 2, /* left out by `factors`: copied bit for bit */
    LORA_FACTOR_NOT_BLOCKS = 3 /* its element count is not a whole number of target blocks
                                  (e.g. B [out, r] with out * r % 32 != 0 for Q8_0): copied
                                  bit for bit in its own dtype */
} lora_factor_action;

typedef struct {
    const char *name;
    lora_dtype a_dtype_in, b_dtype_in, a_dtype_out, b_dtype_out;
    uint32_t a_block_out, b_block_out;       /* elements per block of the output blobs */
    lora_factor_action a_action, b_action;
    uint64_t bytes_in, bytes_out;            /* stored bytes of A and B */
    double delta_norm;                       /* ||dW||_F of the input */
    double rel_error;                        /* ||dW_out - dW||_F / ||dW||_F (0 if both are 0) */
    double max_abs_error;                    /* max |dW_out - dW| over the elements */
} lora_quantize_module;

typedef struct {
    lora_quantize_module *modules;
    uint32_t module_count;
    uint32_t not_blocks_count;               /* factors left in their dtype (LORA_FACTOR_NOT_BLOCKS) */
    uint64_t file_size_in, file_size_out;
    uint64_t factor_bytes_in, factor_bytes_out; /* stored bytes of every A and B */
    double max_rel_error;                    /* largest rel_error of the modules */
    lora_allocator allocator_;               /* private */
    char *names_;                            /* private */
} lora_quantize_report;

/* Convert the A and/or B factors of every module of `input` to opts->dtype
 * (f32, f16, bf16 round to nearest even; q8_0, q4_0, nf4 with the reference
 * quantizers of spec 11.5, which the SIMD kernels reproduce byte for byte)
 * and write `output`. Scale, rank and everything else stay as they are.
 * When both factors of a module are converted to a dtype other than f32,
 * they are first balanced by a power of two (B * 2^k, A * 2^-k, k = half
 * the difference of the binary exponents of max|A| and max|B|): B @ A is
 * unchanged, and a B much smaller than A (training starts from B = 0) does
 * not push the f16 block scales of Q8_0/Q4_0 into the subnormal range.
 * Then both files are decoded again and `report` (may be NULL) gets, per
 * module, the error of delta W, and the sizes. Errors: LORA_E_INVALID_ARGUMENT
 * for bad options (a dtype out of range, a block that is not a power of two
 * in 32..4096, a block with a dtype other than NF4, reserved fields), the
 * reader's status for a bad input, the writer's for the output. */
LORA_API lora_status lora_quantize(const char *input, const char *output, const lora_quantize_options *opts,
                                   lora_quantize_report *report, lora_error *err);
LORA_API void lora_quantize_report_free(lora_quantize_report *report);

/* lora_prune: how the kept rank of each module is chosen. */
typedef enum {
    LORA_PRUNE_RANK = 1,   /* keep min(rank, r) per module */
    LORA_PRUNE_ENERGY = 2, /* per module, the smallest rank keeping a fraction >= energy of sum sigma^2 */
    LORA_PRUNE_BUDGET = 3  /* the `budget` largest singular values over all modules (by sigma of delta W,
                              scale included); a module none of whose values is chosen is dropped */
} lora_prune_mode;

#define LORA_PRUNE_DRY_RUN 0x1u    /* plan and report only; nothing is written (output may be NULL) */
#define LORA_PRUNE_REFACTOR 0x2u   /* rewrite the modules whose rank does not change too, in the SVD form */
#define LORA_PRUNE_ALLOW_DORA 0x4u /* prune DoRA modules (magnitude kept as is, one warning each);
                                      without it a DoRA module is LORA_E_UNSUPPORTED_ADAPTER */

typedef struct {
    lora_prune_mode mode;
    uint32_t rank;             /* RANK: >= 1 */
    double energy;             /* ENERGY: in (0, 1] */
    uint64_t budget;           /* BUDGET: >= 1 */
    int32_t dtype;             /* -1: each factor keeps its dtype and NF4 block (a rewritten factor whose
                                  new size is not a whole number of its blocks becomes F32, with a
                                  warning); else the LORA_DTYPE_* of every A and B of the output */
    uint32_t block;            /* NF4 block with dtype NF4 (0 = 64); else 0 */
    uint32_t flags;            /* LORA_PRUNE_* */
    uint32_t reserved0;        /* must be zero */
    lora_warn_fn warn;         /* may be NULL */
    void *warn_opaque;
    lora_allocator allocator;  /* zeroed = malloc/free */
    uint64_t reserved[4];      /* must be zero */
} lora_prune_options;
#define LORA_PRUNE_OPTIONS_INIT {LORA_PRUNE_RANK, 0, 0.0, 0, -1, 0, 0, 0, NULL, NULL, {0, 0, 0}, {0, 0, 0, 0}}

typedef struct {
    const char *name;
    uint32_t old_rank, new_rank;   /* new_rank 0: the delta was dropped (BUDGET) */
    int rewritten;                 /* 1 if A and B were refactored (the rank changed, or REFACTOR) */
    int dora;                      /* has a DoRA magnitude (kept as is) */
    double energy;                 /* sum of sigma_i^2 of delta W = ||dW||_F^2 */
    double energy_kept;            /* fraction of it kept (1 when energy is 0) */
    double rel_error;              /* sqrt(dropped sigma^2 / energy): the truncation error ||dW' - dW|| /
                                      ||dW||, optimal (Eckart-Young); storing the new factors in their
                                      dtype adds its rounding on top */
    double sigma_max;              /* largest singular value of delta W */
    double sigma_last_kept;        /* smallest kept one (0 if none) */
} lora_prune_module;

typedef struct {
    lora_prune_module *modules;
    uint32_t module_count;
    uint32_t dropped_count;        /* modules removed (BUDGET) */
    uint64_t rank_in, rank_out;    /* sums of the ranks */
    double energy, energy_kept;    /* over all modules: total sigma^2 and the fraction kept */
    uint64_t file_size_in, file_size_out; /* file_size_out 0 with DRY_RUN */
    lora_allocator allocator_;     /* private */
    char *names_;                  /* private */
} lora_prune_report;

/* Reduce the rank of every module by an exact SVD of its delta, computed
 * without forming it: Householder QR of B (out x r) and of A^T (in x r) in
 * double, the SVD of the r x r core R_B R_A^T, then B' = Q_B U_k sqrt(S_k)
 * and A' = sqrt(S_k) V_k^T Q_A^T, so that B'A' is the best rank-k
 * approximation of BA. A module whose rank changes becomes scaling EXPLICIT
 * with its scale unchanged, bit for bit (alpha is kept, now informative): the
 * rule alpha/r would otherwise change the scale with the rank. LoRA biases
 * and DoRA magnitudes are kept; a module dropped by BUDGET that has a bias or
 * magnitude is kept as rank 1 with zero factors, so that those still apply.
 * Errors: LORA_E_INVALID_ARGUMENT for bad options (rank 0, energy outside
 * (0, 1], budget 0, an unknown mode or dtype, a bad NF4 block, reserved
 * fields), LORA_E_UNSUPPORTED_ADAPTER for a DoRA module without
 * LORA_PRUNE_ALLOW_DORA, LORA_E_NONFINITE for NaN/Inf in A or B.
 * Threads: up to 4 modules are worked on at once (one per online CPU), so
 * opts->allocator may be called from several threads at the same time;
 * `warn` is only called from the calling thread, and the output does not
 * depend on how many modules run at once. Meanwhile OpenBLAS is set to one
 * thread (openblas_set_num_threads, a process-wide setting; its threads on
 * top of these would oversubscribe the CPUs) and restored before return. */
LORA_API lora_status lora_prune(const char *input, const char *output, const lora_prune_options *opts,
                                lora_prune_report *report, lora_error *err);
LORA_API void lora_prune_report_free(lora_prune_report *report);

/* ==== merge (lora-merge) ==================================================
 *
 * lora_merge writes a base model with one or more adapters merged into it,
 * streaming tensor by tensor; lora_merge_check does every check of a merge
 * and writes nothing (lora-verify ADAPTER --base MODEL).
 *
 * Base models (opts->base):
 *   - a .safetensors file (or a directory holding model.safetensors);
 *   - a directory with model.safetensors.index.json and its shards: the
 *     output (a directory) gets the same shards and an index;
 *   - a GGUF model. Tensors F32, F16 and BF16 are merged as they are; Q8_0
 *     and Q4_0 are dequantized, merged and requantized to their own type
 *     with the reference quantizers (report->requantized counts them: the
 *     rounding of requantization changes the weights). Other GGUF types are
 *     copied, and refused as a merge target (LORA_E_UNSUPPORTED_DTYPE).
 * Adapters are .lora files or anything lora_import reads (converted in
 * memory first with opts->convert).
 *
 * Which base tensor a module changes:
 *   - module "m" changes tensor "m.weight" and, with a LoRA bias, "m.bias";
 *     a replacement tensor (modules_to_save) replaces the tensor of its name;
 *   - renames (opts->renames) are applied to module and tensor names first;
 *   - a kohya module (lora_unet_..., lora_te..._, no dots) matches the base
 *     tensor whose name without ".weight", with '.' replaced by '_' and the
 *     kohya prefix put in front, equals it;
 *   - in a GGUF base, Hugging Face names are mapped to llama.cpp's
 *     ("model.layers.0.self_attn.q_proj" -> "blk.0.attn_q.weight"), and the
 *     rows of B (and of a magnitude or bias) are reordered as llama.cpp's
 *     converter reordered the base's (llama Q/K for RoPE, using the base's
 *     <arch>.attention.head_count and head_count_kv; GPT-NeoX QKV).
 * Before anything is written every module must find its tensor with the
 * shape the module records (base_shape), every replacement its tensor with
 * the replacement's shape, and every target tensor must have a mergeable
 * dtype; otherwise the call fails naming the adapter and module
 * (LORA_E_NOT_FOUND, LORA_E_BAD_SHAPE, LORA_E_UNSUPPORTED_DTYPE). When names
 * differ only by a prefix, the detail suggests the rename
 * ("... names differ by a prefix: 'base_model.model.' -> ''").
 *
 * Math (B @ A summed in float64 with weight * s exact, added to the base
 * value widened exactly, and rounded once to the output dtype, to nearest
 * even: the float64 reference rounded once. LORA_MERGE_ACCUMULATE_F32 sums
 * in fp32 from fl(weight * s) * B instead, PEFT's own arithmetic, which is
 * less exact where W and the delta nearly cancel. Kernels: merge_kernels.h,
 * AVX-512, AVX2+F16C or the reference, the same bits on each):
 *   W' = W + weight * s * (B @ A)   transposed for fan_in_fan_out; for an
 *                                   embedding (B @ A)^T, as PEFT does;
 *   DoRA: W' = m / ||W + weight * s * B A||_row * (W + weight * s * B A)
 *         (per column for fan_in_fan_out and embeddings);
 *   bias' = bias + weight * s * lora_bias;  replacement tensors replace.
 * Several adapters on one tensor are summed in one pass (their ranks
 * concatenated), so the base is read once and rounded once; a DoRA module
 * or a replacement cannot share its tensor with another adapter
 * (LORA_E_UNSUPPORTED_ADAPTER). LORA_MERGE_UNMERGE subtracts instead; it is
 * refused for DoRA modules (the norm W + sBA had before the merge is not
 * kept in the merged weights, so W is not recoverable) and for replacements.
 * Every tensor that is not a target is copied bit for bit, unless
 * opts->dtype converts it (safetensors: every F32/F16/BF16 tensor; GGUF:
 * those of 2 or more dimensions). The output is the same, byte for byte,
 * whatever opts->threads is.
 *
 * Memory and I/O: the base is mapped read-only and read once, in order
 * (twice for DoRA targets); the pages already used are released as it
 * goes, so resident memory stays at a few tens of MiB plus the adapters,
 * whatever the base size. Untouched tensors are copied file to file by the
 * kernel (copy_file_range). Outputs are written crash-safely (temp file,
 * fsync, rename; lib/write), never over an input (LORA_E_SAME_FILE): on
 * any failure before the renames, a full disk included (LORA_E_NO_SPACE),
 * no output file is left and an existing output is untouched. A sharded
 * output writes and fsyncs every shard and the index before the first
 * rename, then renames the shards and the index last; only a rename that
 * itself fails part-way can leave some files new and others old (renames
 * cannot be undone), and the index is then still the old one.
 */

/* One adapter: W += weight * s * B @ A. Zero-initialised, weight is 0 (no
 * effect): use LORA_MERGE_ADAPTER_INIT. */
typedef struct {
    const char *path;          /* .lora file or any input lora_import reads */
    float weight;              /* finite; 1 for a plain merge, negative subtracts */
} lora_merge_adapter;
#define LORA_MERGE_ADAPTER_INIT(path) {(path), 1.0f}

/* Names starting with `from` have it replaced by `to` before matching. */
typedef struct {
    const char *from;          /* non-empty */
    const char *to;            /* may be empty */
} lora_merge_rename;

/* Called on the calling thread after each piece of output is written. */
typedef struct {
    uint64_t bytes_done, bytes_total;      /* output bytes (every file) */
    uint32_t tensors_done, tensors_total;
    const char *tensor;                    /* being written; valid during the call */
} lora_merge_progress;
typedef void (*lora_merge_progress_fn)(void *opaque, const lora_merge_progress *p);

#define LORA_MERGE_UNMERGE 0x1u    /* subtract the adapters instead of adding them */
#define LORA_MERGE_ACCUMULATE_F32 0x2u /* accumulate B @ A in fp32 from fl(weight * s) * B, as PEFT computes,
                                          instead of float64 (see "Math" above) */

typedef struct {
    const char *base;                      /* base model: file or directory (see above) */
    const lora_merge_adapter *adapters;    /* at least one */
    size_t adapter_count;
    const char *output;                    /* a file; a directory for a sharded base (created if
                                              missing). For a single-file base, an existing
                                              directory receives a file of the base's name.
                                              Unused by lora_merge_check */
    int32_t dtype;                         /* -1: keep each tensor's dtype; else LORA_DTYPE_F32/F16/BF16 */
    uint32_t threads;                      /* compute threads; 0: the online CPUs (at most 64) */
    uint32_t flags;                        /* LORA_MERGE_* */
    uint32_t reserved0;                    /* must be zero */
    const lora_merge_rename *renames;      /* may be NULL; the first matching rule applies */
    size_t rename_count;
    const lora_convert_options *convert;   /* for non-.lora adapters (arch, base_config); NULL: defaults */
    lora_merge_progress_fn progress;       /* may be NULL */
    void *progress_opaque;
    lora_allocator allocator;              /* zeroed = malloc/free */
    uint64_t reserved[4];                  /* must be zero */
} lora_merge_options;
#define LORA_MERGE_OPTIONS_INIT \
    {NULL, NULL, 0, NULL, -1, 0, 0, 0, NULL, 0, NULL, NULL, NULL, {0, 0, 0}, {0, 0, 0, 0}}

typedef struct {
    const char *base_format;   /* "safetensors", "safetensors-sharded", "gguf" (static strings) */
    const char *isa;           /* kernels used: "ref", "avx2", "avx512" */
    uint32_t threads;          /* compute threads used */
    uint32_t shards;           /* output files of tensors */
    uint32_t modules;          /* adapter modules applied (all adapters) */
    uint32_t tensors;          /* tensors in the base */
    uint32_t merged;           /* tensors changed by modules (weights and biases) */
    uint32_t replaced;         /* tensors replaced by adapter tensors */
    uint32_t requantized;      /* Q8_0/Q4_0 merge targets dequantized, merged and requantized */
    uint32_t requantized_q8_0, requantized_q4_0;
    uint32_t converted;        /* other tensors converted to opts->dtype */
    uint32_t copied;           /* tensors copied bit for bit */
    uint64_t bytes_in;         /* bytes of the base's tensor data */
    uint64_t bytes_out;        /* bytes written, headers included */
    double seconds;            /* wall time of the call */
    const char *error_path;    /* on failure: the caller's string naming the file the error is about
                                  (base, an adapter or output), or NULL */
} lora_merge_report;

/* Merge (see above). `report` may be NULL; it is filled on success, and on
 * failure as far as the merge went (error_path included). Errors besides
 * those above: LORA_E_INVALID_ARGUMENT for bad options (no adapter, a
 * non-finite weight, an unknown dtype or flag, reserved fields), the
 * readers' statuses for a bad base or adapter, LORA_E_NO_SPACE / LORA_E_IO
 * / LORA_E_NOT_REGULAR_FILE / LORA_E_SAME_FILE for the output. */
LORA_API lora_status lora_merge(const lora_merge_options *opts, lora_merge_report *report, lora_error *err);

/* Every check lora_merge makes before writing (base and adapters readable,
 * blob checksums, names, shapes, dtypes, combinations), and nothing else:
 * report->modules, tensors, merged, replaced and requantized say what a
 * merge would do; opts->output is ignored. */
LORA_API lora_status lora_merge_check(const lora_merge_options *opts, lora_merge_report *report, lora_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LORA_OPS_H */
