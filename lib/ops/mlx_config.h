/*
 * mlx_config.h - the adapter_config.json mlx-lm writes next to
 * adapters.safetensors (mlx_lm/tuner: fine_tune_type, num_layers,
 * lora_parameters {rank, scale, alpha, dropout, keys}). Internal.
 */
#ifndef LORA_OPS_MLX_CONFIG_H
#define LORA_OPS_MLX_CONFIG_H

#include "../common/internal.h"

typedef struct {
    uint32_t rank;        /* 0 if absent */
    float scale;          /* required: mlx-lm's default changed between versions */
    double alpha;         /* informative */
    int has_alpha;
    int dora;             /* fine_tune_type "dora" or use_dora true */
} lora_mlx_config;

/* LORA_E_BAD_JSON / LORA_E_DUPLICATE_NAME for malformed JSON or fields,
 * LORA_E_UNSUPPORTED_ADAPTER for fine_tune_type other than lora/dora
 * ("full" is not an adapter). */
lora_status lora_mlx_config_parse(const char *text, size_t size, lora_mlx_config *out, lora_error *err);

/* The layer index and the path inside the layer of an mlx-lm module name
 * ("model.layers.30.self_attn.q_proj" -> 30, "self_attn.q_proj"); 0 if the
 * module is not inside a numbered "layers" list. */
int lora_mlx_layer_of(const char *module, uint64_t *index, const char **rel);

#endif /* LORA_OPS_MLX_CONFIG_H */
