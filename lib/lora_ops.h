/*
 * lora_ops.h - liblora-ops: conversion between .lora and other adapter
 * formats (and, in later releases, merge, prune and quantize).
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

#ifdef __cplusplus
}
#endif
#endif /* LORA_OPS_H */
