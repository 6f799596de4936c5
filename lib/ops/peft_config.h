/*
 * peft_config.h - a PEFT LoRA adapter_config.json, parsed and checked, and
 * PEFT's per-module rank and alpha lookup. Internal to liblora-ops.
 *
 * Fields (peft:src/peft/tuners/lora/config.py; defaults are PEFT's):
 *   peft_type "LORA" (anything else: LORA_E_UNSUPPORTED_ADAPTER), r [8],
 *   lora_alpha [8] (int or float), use_rslora, use_dora, fan_in_fan_out,
 *   lora_bias [false], bias ["none"], rank_pattern / alpha_pattern [{}],
 *   target_modules / exclude_modules (list or regex string), modules_to_save,
 *   base_model_name_or_path, revision, task_type.
 * Refused with LORA_E_UNSUPPORTED_ADAPTER and the field named, because they
 * change the math and nothing here implements them: use_qalora true,
 * alora_invocation_tokens, kasa_config, velora_config, monteclora_config,
 * arrow_config, layer_replication, trainable_token_indices,
 * megatron_config non-null, use_bdlora set, target_parameters non-empty.
 *
 * Patterns follow peft.utils.other.get_pattern_key: the first key, in the
 * JSON object's order (jansson keeps insertion order), for which Python's
 * re.match(rf"(.*\.)?({key})$", module) succeeds. Keys are translated from
 * Python regex to POSIX ERE (\d \w \s and their negations, (?:...), lazy
 * quantifiers, escaped punctuation); anything without an exact equivalent
 * (look-around, backreferences, \b, possessive quantifiers, inline flags)
 * is refused rather than approximated.
 */
#ifndef LORA_OPS_PEFT_CONFIG_H
#define LORA_OPS_PEFT_CONFIG_H

#include <jansson.h>
#include <regex.h>
#include "../common/internal.h"

/* One pattern key, compiled. Most keys are module names (dots escaped or
 * not): those are matched directly, as a fixed-length string with '.'
 * wildcards, which costs no regcomp memory; the rest go through regcomp. */
typedef struct {
    int is_regex;
    int anchored;            /* fixed key written "^name": the whole name only */
    char *fixed;             /* fixed key bytes (NUL-terminated) */
    uint8_t *wild;           /* per byte of `fixed`: 1 where the key has an unescaped '.' */
    size_t len;
    regex_t re;
} lora_peft_key;

typedef struct {
    lora_peft_key key;
    double value;
} lora_peft_pattern;

/* At most this many keys per pattern object, and this many of them
 * regular expressions (each regcomp costs kilobytes): a config is a few
 * KiB, a bigger one is hostile. */
#define LORA_PEFT_MAX_PATTERN_KEYS 65536u
#define LORA_PEFT_MAX_REGEX_KEYS 1024u

typedef struct {
    uint32_t r;
    double alpha;
    int use_rslora, use_dora, fan_in_fan_out, lora_bias;
    int bias_trained;                 /* bias "all" or "lora_only" */
    lora_peft_pattern *rank_pattern, *alpha_pattern;
    uint32_t rank_count, alpha_count;
    uint32_t regex_count;             /* keys compiled with regcomp */
    /* target_modules / exclude_modules: a list of names, or one regex. */
    char **targets, **excludes, **modules_to_save;
    uint32_t target_count, exclude_count, save_count;
    regex_t target_re, exclude_re;
    int target_is_re, exclude_is_re;
    /* layers_to_transform (int or list) and layers_pattern (str or list) */
    int64_t *layers;
    uint32_t layer_count;
    char **layer_patterns;
    uint32_t layer_pattern_count;
    char *base_model, *revision, *task_type; /* NULL unless strings */
    lora_allocator alloc;
} lora_peft_config;

/* Parse `size` bytes of JSON (duplicate keys rejected: LORA_E_DUPLICATE_NAME;
 * malformed: LORA_E_BAD_JSON with line and column). `what` prefixes every
 * detail ("peft: adapter_config.json"). On failure *out holds nothing. */
lora_status lora_peft_config_parse(const lora_allocator *a, const char *text, size_t size, const char *what,
                                   lora_peft_config *out, lora_error *err);
/* Same from an already parsed object (diffusers metadata). */
lora_status lora_peft_config_from_json(const lora_allocator *a, const json_t *root, const char *what,
                                       lora_peft_config *out, lora_error *err);
void lora_peft_config_free(lora_peft_config *c);

/* The rank PEFT gives `module`: the first matching rank_pattern value, else
 * r. *from_pattern (may be NULL) tells which. */
uint32_t lora_peft_config_rank(const lora_peft_config *c, const char *module, int *from_pattern);
/* The alpha PEFT gives `module` (alpha_pattern, else lora_alpha). */
double lora_peft_config_alpha(const lora_peft_config *c, const char *module);
/* 1 if target_modules selects `module` and exclude_modules does not, 0 if
 * not, -1 if the config does not say (no target_modules). */
int lora_peft_config_targets(const lora_peft_config *c, const char *module);

/* 1 if layers_to_transform selects `module`'s layer, 0 if not (or the
 * name has no layer index), -1 if the config does not restrict layers.
 * The index is PEFT's: the last numeric component preceded by a
 * layers_pattern component (any component when there is none). */
int lora_peft_config_layer_ok(const lora_peft_config *c, const char *module);

/* ---- Python regex -> POSIX ERE (peft_regex.c) ---- */

/* A rank_pattern/alpha_pattern key: fixed when it can be, else a regex
 * (counted in *regex_count, refused past LORA_PEFT_MAX_REGEX_KEYS). */
lora_status lora_peft_key_compile(const lora_allocator *a, lora_peft_key *k, const char *py, uint32_t *regex_count,
                                  const char *what, lora_error *err);
/* re.match(rf"(.*\.)?({key})$", name) is not None */
int lora_peft_key_match(const lora_peft_key *k, const char *name);
void lora_peft_key_free(const lora_allocator *a, lora_peft_key *k);

/* regcomp copies the operand of a bound {m,n} n times ('+' twice), so
 * nested bounds multiply: ((a{999}){999}){999} asked for 24 GB. Worse, with
 * an operand that can match nothing its closure tables explode
 * (((a*)*){256} did not finish in 20 s). So the translation refuses a
 * bound of more than one repetition over an operand that can match
 * nothing (and, as Python does, unbalanced parentheses and a quantifier
 * with nothing to repeat or after another one); a pattern longer than
 * MAX_LEN bytes, or of more than MAX_SIZE atoms once its repetitions are
 * expanded, is refused; and a config's regex keys may cost at most
 * MAX_COST in total, each counted as its size squared. Real keys are
 * module names (not compiled at all) or a few dozen atoms. */
#define LORA_PEFT_REGEX_MAX_LEN 1024u
#define LORA_PEFT_REGEX_MAX_SIZE 512u
#define LORA_PEFT_REGEX_MAX_COST ((uint64_t)1 << 21)

/* The atoms regcomp builds for the Python pattern `py`, repetitions
 * expanded (an estimate from the text, before translation), or
 * UINT64_MAX when past `cap`. */
uint64_t lora_peft_regex_size(const char *py, uint64_t cap);

/* Compile a Python pattern: anchored as PEFT's pattern lookup does
 * (^(.*\.)?(P)$) when `suffix_match`, else as re.fullmatch (^(P)$).
 * LORA_E_UNSUPPORTED_ADAPTER with "<what>: <why>" when it cannot be
 * translated exactly, or is too large (above). */
lora_status lora_peft_regex_compile(regex_t *re, const char *py, int suffix_match, const char *what, lora_error *err);
/* 1 if `s` matches. */
int lora_peft_regex_match(const regex_t *re, const char *s);
/* Escape `name` so that, as a Python regex, it matches exactly that text
 * (re.escape for the characters module names use). Returns the length
 * written, or 0 if `cap` is too small (2 * strlen + 1 always suffices). */
size_t lora_peft_regex_escape(const char *name, char *out, size_t cap);

#endif /* LORA_OPS_PEFT_CONFIG_H */
