/*
 * peft_import.h - what the PEFT and diffusers importers share: splitting a
 * tensor key into module and role, and turning the grouped tensors into
 * .lora modules and replacement tensors. Internal to liblora-ops.
 */
#ifndef LORA_OPS_PEFT_IMPORT_H
#define LORA_OPS_PEFT_IMPORT_H

#include "../io/safetensors.h"
#include "convert.h"
#include "peft_config.h"

typedef enum {
    LORA_PK_A = 0,   /* lora_A.weight [r, in] / conv [r, cin, k..] */
    LORA_PK_B,       /* lora_B.weight [out, r] / conv [out, r, 1..] */
    LORA_PK_EMB_A,   /* lora_embedding_A [r, num] */
    LORA_PK_EMB_B,   /* lora_embedding_B [dim, r] */
    LORA_PK_MAG,     /* lora_magnitude_vector (DoRA) */
    LORA_PK_BIAS,    /* lora_B.bias (lora_bias) */
    LORA_PK_ALPHA,   /* diffusers/kohya-style scalar ".alpha" */
    LORA_PK_OTHER,   /* a full replacement tensor */
    LORA_PK_BAD,     /* LoRA-looking key in no known layout */
    LORA_PK_ROLES_
} lora_pk_role;

/* Split `key` (any base_model.model. prefix already removed). For a LoRA
 * key the module name is written to `module` (cap bytes, NUL-terminated;
 * LORA_PK_BAD if it does not fit); for LORA_PK_OTHER `module` receives the
 * key itself. PEFT layouts, with or without a legacy ".default" adapter
 * name, are always recognised; `legacy` adds the older diffusers ones
 * (".lora.down.weight", ".lora_linear_layer.up.weight",
 * "processor.to_q_lora.down.weight", ".alpha"). */
lora_pk_role lora_pk_split(const char *key, int legacy, char *module, size_t cap);

typedef struct {
    char *name;                   /* module name, or the tensor name for LORA_PK_OTHER (owned) */
    lora_pk_role role;
    uint32_t tensor;              /* index in the safetensors file */
    const lora_peft_config *cfg;  /* NULL: no config (alpha = r, see below) */
    size_t cfg_skip;              /* leading bytes of name the config's patterns do not see */
} lora_pk_entry;

/* Group the entries by module and add everything to `w`: per module the
 * kind, shapes, rank (checked against the config's r / rank_pattern),
 * alpha (alpha_pattern / lora_alpha; without a config the .alpha tensor,
 * else the rank of the first lora_B key in byte order, as diffusers does,
 * with a warning), scaling (alpha/sqrt(r) under use_rslora), fan_in_fan_out,
 * DoRA magnitude and LoRA bias; then the replacement tensors. Bytes and
 * dtypes are kept (lora_ops_add_blob). `fmt` prefixes details. Sorts `e`. */
lora_status lora_pk_import(const char *fmt, const lora_st_file *st, lora_pk_entry *e, uint32_t n,
                           const lora_convert_options *o, lora_writer *w, lora_error *err);
void lora_pk_entries_free(const lora_allocator *a, lora_pk_entry *e, uint32_t n);

/* Open a safetensors file with the options' allocator. */
lora_status lora_pk_open_safetensors(const char *path, const lora_convert_options *o, lora_st_file **out,
                                     lora_error *err);
/* Set a string metadata key, reporting failures with the key named. */
lora_status lora_pk_set_meta(lora_writer *w, const char *key, const char *value, size_t len, lora_error *err);

#endif /* LORA_OPS_PEFT_IMPORT_H */
