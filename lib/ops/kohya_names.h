/*
 * kohya_names.h - kohya sd-scripts key and module names. Internal to
 * liblora-ops (kohya_import.c, kohya_export.c).
 *
 * A kohya key is "<module><suffix>", where sd-scripts builds <module> as
 * (prefix + "." + module_path).replace(".", "_") with the prefix lora_unet
 * (UNet, SD3/Flux transformer), lora_te (one text encoder), lora_te1 /
 * lora_te2 (SDXL) or lora_te3 (T5). The mapping is lossy (a '_' in a path
 * and a '.' look the same afterwards), so the importer keeps <module>
 * verbatim as the .lora module name: whoever applies the adapter (a merge)
 * must match base tensors by the same underscore mapping, never by
 * splitting the name back into a path.
 *
 * Suffixes of plain LoRA: .lora_down.weight (A), .lora_up.weight (B),
 * .alpha (0-dim). LyCORIS keys in the same files (.hada_*, .lokr_*,
 * .lora_mid.weight, .dora_scale, ...) are other algorithms and are
 * recognised only to be refused by name.
 */
#ifndef LORA_OPS_KOHYA_NAMES_H
#define LORA_OPS_KOHYA_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define LORA_KOHYA_SUFFIX_DOWN ".lora_down.weight"
#define LORA_KOHYA_SUFFIX_UP ".lora_up.weight"
#define LORA_KOHYA_SUFFIX_ALPHA ".alpha"
#define LORA_KOHYA_SUFFIX_DORA ".dora_scale"

/* Metadata key (outside the reserved lora.* space) where the importer
 * records what a .lora module cannot hold about a kohya .alpha tensor, so
 * the exporter can write the same tensor again: a JSON object
 *   {"dtype": "F16", "modules": {"<module>": "F32" | "BF16" | "absent", ...}}
 * "dtype" is the dtype of most alphas, "modules" the exceptions ("absent":
 * the file had no .alpha for the module, which sd-scripts reads as
 * alpha = rank). Written only when some alpha is not an F32 scalar. */
#define LORA_KOHYA_META_ALPHA "kohya.alpha"

typedef enum {
    LORA_KOHYA_KEY_DOWN,
    LORA_KOHYA_KEY_UP,
    LORA_KOHYA_KEY_ALPHA,
    LORA_KOHYA_KEY_DORA_SCALE,
    LORA_KOHYA_KEY_LYCORIS,   /* another LyCORIS algorithm: `what` names it */
    LORA_KOHYA_KEY_UNKNOWN    /* not a kohya key at all */
} lora_kohya_key_kind;

typedef struct {
    lora_kohya_key_kind kind;
    size_t module_length;     /* bytes of the key before the suffix (0 for UNKNOWN) */
    const char *what;         /* LYCORIS: "LoHa", "LoKr", ... ; else NULL */
} lora_kohya_key;

/* Split `key` (len bytes) into module and suffix. A module name must be
 * non-empty and contain no '.', since sd-scripts replaced every dot. */
void lora_kohya_classify(const char *key, size_t len, lora_kohya_key *out);

/* The LyCORIS suffixes lora_kohya_classify recognises, for looking up
 * "<module><suffix>" in a file: suffix i for i < count. */
uint32_t lora_kohya_lycoris_suffix_count(void);
const char *lora_kohya_lycoris_suffix(uint32_t i);

/* .lora module name -> kohya module name, for export:
 *   - already kohya ("lora_..." or "lycoris_..." without a '.'): as is;
 *   - a leading "base_model.model." is dropped (a PEFT path);
 *   - "text_encoder_2.X" -> lora_te2_X, "text_encoder_3.X" -> lora_te3_X,
 *     "text_encoder.X" -> lora_te1_X if `two_text_encoders` (SDXL) else
 *     lora_te_X, and a bare "text_model.X" -> lora_te_text_model_X
 *     (kohya keeps CLIPTextModel's own "text_model" level);
 *   - "unet.X" -> lora_unet_X;
 *   - "transformer.X" -> lora_transformer_X: diffusers names of an
 *     SD3/Flux transformer are not the original-model names sd-scripts
 *     uses under lora_unet_, and the loaders that accept diffusers names
 *     with underscores (ComfyUI, after OneTrainer) expect this prefix;
 *   - anything else -> lora_unet_X;
 * with every '.' of X replaced by '_'. Returns the length; writes the
 * NUL-terminated name to `out` when it is not NULL, which must then hold
 * strlen(name) + LORA_KOHYA_NAME_EXTRA bytes. */
#define LORA_KOHYA_NAME_EXTRA 24u
size_t lora_kohya_export_name(const char *name, int two_text_encoders, char *out);

/* 1 if the adapter holds SDXL's second text encoder (a module name
 * starting "text_encoder_2."), which makes "text_encoder." lora_te1_. */
int lora_kohya_is_text_encoder_2(const char *name);

/* Printable form of a name for an error detail: control bytes as '?',
 * cut at about 100 bytes on a UTF-8 boundary with "..." appended. */
#define LORA_KOHYA_SHOW 112
void lora_kohya_show(char out[LORA_KOHYA_SHOW], const char *name, size_t len);

#endif /* LORA_OPS_KOHYA_NAMES_H */
