/*
 * gguf_names.h - Hugging Face module names <-> llama.cpp GGUF tensor names,
 * per architecture, and the row orders llama.cpp's converter imposes on
 * some of them. Internal to liblora-ops.
 *
 * The tables hold the facts of gguf-py's tensor_mapping.py and of the
 * modify_tensors of convert_hf_to_gguf.py for each supported architecture;
 * convert_lora_to_gguf.py runs the same code on the LoRA pair, so a LoRA on
 * "model.layers.3.self_attn.q_proj" becomes "blk.3.attn_q.weight.lora_a" and
 * ".lora_b", with B's rows reordered the way the base weight's were.
 */
#ifndef LORA_OPS_GGUF_NAMES_H
#define LORA_OPS_GGUF_NAMES_H

#include <stddef.h>
#include <stdint.h>
#include "../common/internal.h"

/* .lora metadata (INT) a GGUF import leaves so that a later export can redo
 * the llama-family Q/K and GPT-NeoX QKV row orders without a config.json. */
#define LORA_GGUF_META_HEAD_COUNT    "gguf.attention.head_count"
#define LORA_GGUF_META_HEAD_COUNT_KV "gguf.attention.head_count_kv"

/* What the converter does to a module besides renaming it. */
typedef enum {
    LORA_GGUF_ROLE_PLAIN = 0,    /* A and B as they are */
    LORA_GGUF_ROLE_ROPE_Q,       /* llama RoPE row permutation of B, n_head groups */
    LORA_GGUF_ROLE_ROPE_K,       /* the same with n_head_kv groups */
    LORA_GGUF_ROLE_NEOX_QKV,     /* GPT-NeoX per-head [q k v] rows regrouped to [all q | all k | all v] */
    LORA_GGUF_ROLE_EMBED,        /* token_embd: an embedding LoRA, lora_a stored transposed */
    LORA_GGUF_ROLE_CONV1D,       /* GPT-2 Conv1D: HF stores [in, out] (fan_in_fan_out); GGUF [out, in] */
    LORA_GGUF_ROLE_REFUSED       /* no GGUF tensor takes it; `reason` says why */
} lora_gguf_role;

typedef struct {
    const char *hf;     /* module path, '#' = layer number, e.g. "model.layers.#.self_attn.q_proj" */
    const char *gguf;   /* base tensor without ".weight", e.g. "blk.#.attn_q"; NULL when refused */
    lora_gguf_role role;
    const char *reason; /* REFUSED only */
} lora_gguf_map;

typedef struct {
    const char *name;          /* general.architecture, e.g. "llama" */
    const char *bare_prefix;   /* what a headless HF model (LlamaModel, GPT2Model) lacks: "model." */
    const lora_gguf_map *maps;
    size_t map_count;
} lora_gguf_arch;

/* The architecture for a GGUF name ("llama", "gptneox") or a Hugging Face
 * model_type ("mistral", "gemma3_text", "gpt_neox"); NULL if unknown. */
const lora_gguf_arch *lora_gguf_arch_find(const char *name);
/* "llama, qwen2, ..." for messages. */
const char *lora_gguf_arch_list(void);

/* The result of mapping one name. */
typedef struct {
    char name[96];             /* the other side's name: GGUF base tensor with ".weight", or the HF module */
    lora_gguf_role role;
    const char *reason;        /* REFUSED */
} lora_gguf_mapped;

/* HF module -> GGUF base tensor ("blk.3.attn_q.weight"). Wrappers of
 * multimodal checkpoints are removed first as convert_lora_to_gguf.py does
 * ("model.language_model." -> "model.", "language_model." -> ""), and a
 * name without the arch's prefix gets it. LORA_E_NOT_FOUND if no entry
 * matches; a REFUSED entry returns LORA_OK with role REFUSED. */
lora_status lora_gguf_name_to_gguf(const lora_gguf_arch *a, const char *module, lora_gguf_mapped *out);
/* GGUF base tensor (with ".weight") -> the canonical HF module name.
 * LORA_E_NOT_FOUND if no entry matches. */
lora_status lora_gguf_name_to_hf(const lora_gguf_arch *a, const char *tensor, lora_gguf_mapped *out);

/* Row orders. `rows` is B's row count (the base weight's out features).
 * lora_gguf_row_source fills src[g] = the HF row that lands on GGUF row g,
 * for g < rows. ROPE_Q/ROPE_K take `heads` = n_head / n_head_kv, NEOX_QKV
 * takes n_head; other roles give the identity. LORA_E_BAD_SHAPE (detail
 * names the module) when rows do not split into the heads. */
lora_status lora_gguf_row_source(lora_gguf_role role, uint64_t rows, uint64_t heads, const char *module,
                                 uint64_t *src, lora_error *err);
/* 1 for the roles that reorder rows. */
int lora_gguf_role_permutes(lora_gguf_role role);


/* ---- the base model's config.json --------------------------------------- */

/* What the GGUF conversion needs from a Hugging Face config.json; 0 and ""
 * for what it does not say. Multimodal configs (Gemma 3) keep the text
 * model's counts in "text_config", which is preferred when present. */
typedef struct {
    char model_type[64];
    uint64_t n_head;       /* num_attention_heads | n_head | n_heads */
    uint64_t n_head_kv;    /* num_key_value_heads | n_kv_heads; else n_head */
    uint64_t hidden;       /* hidden_size | n_embd */
} lora_gguf_hparams;

/* Read `path` (a Git LFS pointer is LORA_E_LFS_POINTER; malformed JSON or a
 * count that is not a positive integer below 2^31 is LORA_E_BAD_JSON). */
lora_status lora_gguf_read_base_config(const lora_allocator *a, const char *path, lora_gguf_hparams *out,
                                       lora_error *err);

#endif /* LORA_OPS_GGUF_NAMES_H */
