/* adapter_config.json of a PEFT LoRA adapter (see peft_config.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "adapter_dir.h"
#include "peft_config.h"

#define BAD(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

/* Fields that select a LoRA variant with different math. Each is refused
 * unless null/absent (or false/empty where noted). */
static const char *const refused_nonnull[] = {
    "alora_invocation_tokens", "kasa_config", "velora_config", "monteclora_config", "arrow_config",
    "layer_replication",       "trainable_token_indices", "megatron_config",
};

static int json_falsy(const json_t *v) { return !v || json_is_null(v) || json_is_false(v); }

static lora_status check_refusals(const json_t *root, const char *what, lora_error *err)
{
    const json_t *t = json_object_get(root, "peft_type");
    if (!t) return BAD(LORA_E_BAD_JSON, "%s: peft_type is missing", what);
    if (!json_is_string(t)) return BAD(LORA_E_BAD_JSON, "%s: peft_type is not a string", what);
    if (strcmp(json_string_value(t), "LORA") != 0)
        return BAD(LORA_E_UNSUPPORTED_ADAPTER, "%s: peft_type '%s' is not supported (only LORA)", what,
                   json_string_value(t));
    for (size_t i = 0; i < sizeof refused_nonnull / sizeof refused_nonnull[0]; i++) {
        const json_t *v = json_object_get(root, refused_nonnull[i]);
        if (v && !json_is_null(v))
            return BAD(LORA_E_UNSUPPORTED_ADAPTER, "%s: %s is set: that LoRA variant changes the math and is not "
                                                   "implemented", what, refused_nonnull[i]);
    }
    if (!json_falsy(json_object_get(root, "use_qalora")))
        return BAD(LORA_E_UNSUPPORTED_ADAPTER, "%s: use_qalora is set: QA-LoRA pools the input and is not implemented",
                   what);
    if (!json_falsy(json_object_get(root, "use_bdlora")))
        return BAD(LORA_E_UNSUPPORTED_ADAPTER, "%s: use_bdlora is set: BD-LoRA is not implemented", what);
    const json_t *tp = json_object_get(root, "target_parameters");
    if (tp && !json_is_null(tp) && !(json_is_array(tp) && json_array_size(tp) == 0))
        return BAD(LORA_E_UNSUPPORTED_ADAPTER, "%s: target_parameters is set: LoRA on raw parameters (MoE experts) is "
                                               "not implemented", what);
    return LORA_OK;
}

static lora_status get_bool(const json_t *root, const char *key, int *out, const char *what, lora_error *err)
{
    const json_t *v = json_object_get(root, key);
    *out = 0;
    if (!v || json_is_null(v)) return LORA_OK;
    if (!json_is_boolean(v)) return BAD(LORA_E_BAD_JSON, "%s: %s is not true or false", what, key);
    *out = json_is_true(v);
    return LORA_OK;
}

/* A copy of a string field, or NULL when absent or not a string. */
static lora_status get_str(const lora_allocator *a, const json_t *root, const char *key, char **out, lora_error *err)
{
    const json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v || !json_is_string(v)) return LORA_OK;
    *out = lora_adir_strndup(a, json_string_value(v), json_string_length(v));
    return *out ? LORA_OK : BAD(LORA_E_OUT_OF_MEMORY, "out of memory");
}

static lora_status get_rank(const json_t *v, uint32_t *out, const char *field, const char *what, lora_error *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 24))
        return BAD(LORA_E_BAD_JSON, "%s: %s is not a rank (an integer from 1 to 2^24)", what, field);
    *out = (uint32_t)json_integer_value(v);
    return LORA_OK;
}

static lora_status get_alpha(const json_t *v, double *out, const char *field, const char *what, lora_error *err)
{
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return BAD(LORA_E_BAD_JSON, "%s: %s is not a finite number", what, field);
    *out = json_number_value(v);
    return LORA_OK;
}

/* A regex key's share of LORA_PEFT_REGEX_MAX_COST (peft_config.h). */
static lora_status charge_regex(const char *key, uint64_t *cost, const char *field, lora_error *err)
{
    uint64_t size = lora_peft_regex_size(key, LORA_PEFT_REGEX_MAX_SIZE);
    *cost += size * size; /* compiled, so size <= MAX_SIZE */
    if (*cost > LORA_PEFT_REGEX_MAX_COST)
        return BAD(LORA_E_LIMIT_EXCEEDED, "%s: the regular-expression keys together are too large to compile", field);
    return LORA_OK;
}

static lora_status get_patterns(lora_peft_config *c, const json_t *root, const char *key, int is_rank,
                                uint64_t *regex_cost, const char *what, lora_error *err)
{
    json_t *obj = json_object_get(root, key);
    if (!obj || json_is_null(obj)) return LORA_OK;
    if (!json_is_object(obj)) return BAD(LORA_E_BAD_JSON, "%s: %s is not an object", what, key);
    size_t n = json_object_size(obj);
    if (n == 0) return LORA_OK;
    if (n > LORA_PEFT_MAX_PATTERN_KEYS)
        return BAD(LORA_E_LIMIT_EXCEEDED, "%s: %s has %zu keys (limit %u)", what, key, n, LORA_PEFT_MAX_PATTERN_KEYS);
    lora_peft_pattern *p = lora_mem_calloc(&c->alloc, n, sizeof *p);
    if (!p) return BAD(LORA_E_OUT_OF_MEMORY, "out of memory");
    if (is_rank) c->rank_pattern = p;
    else c->alpha_pattern = p;
    const char *k;
    json_t *v;
    char field[160];
    json_object_foreach(obj, k, v) {
        snprintf(field, sizeof field, "%s: %s key '%.80s'", what, key, k);
        if (is_rank) {
            uint32_t r = 0;
            LORA_FORWARD_IF_ERROR(get_rank(v, &r, field, what, err));
            p->value = r;
        } else {
            LORA_FORWARD_IF_ERROR(get_alpha(v, &p->value, field, what, err));
        }
        LORA_FORWARD_IF_ERROR(lora_peft_key_compile(&c->alloc, &p->key, k, &c->regex_count, field, err));
        int is_regex = p->key.is_regex;
        p++;
        if (is_rank) c->rank_count++;
        else c->alpha_count++;
        /* counted first: lora_peft_config_free frees the key whatever this says */
        if (is_regex) LORA_FORWARD_IF_ERROR(charge_regex(k, regex_cost, field, err));
    }
    return LORA_OK;
}

/* A list of strings into a fresh array of copies (count in *n). */
static lora_status get_list(const lora_allocator *a, const json_t *v, char ***out, uint32_t *n, const char *key,
                            const char *what, lora_error *err)
{
    size_t len = json_array_size(v);
    *out = NULL;
    *n = 0;
    if (len == 0) return LORA_OK;
    char **l = lora_mem_calloc(a, len, sizeof *l);
    if (!l) return BAD(LORA_E_OUT_OF_MEMORY, "out of memory");
    *out = l;
    for (size_t i = 0; i < len; i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) return BAD(LORA_E_BAD_JSON, "%s: %s holds a non-string", what, key);
        l[i] = lora_adir_strndup(a, json_string_value(s), json_string_length(s));
        if (!l[i]) return BAD(LORA_E_OUT_OF_MEMORY, "out of memory");
        (*n)++;
    }
    return LORA_OK;
}

/* target_modules / exclude_modules: a list, a regex string (re.fullmatch), or null. */
static lora_status get_selector(lora_peft_config *c, const json_t *root, const char *key, char ***list, uint32_t *n,
                                regex_t *re, int *is_re, const char *what, lora_error *err)
{
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return LORA_OK;
    if (json_is_array(v)) return get_list(&c->alloc, v, list, n, key, what, err);
    if (!json_is_string(v)) return BAD(LORA_E_BAD_JSON, "%s: %s is neither a list nor a string", what, key);
    if (strcmp(json_string_value(v), "all-linear") == 0) return LORA_OK; /* needs the base model to resolve */
    char field[96];
    snprintf(field, sizeof field, "%s: %s", what, key);
    /* Informative only: a pattern we cannot translate just skips the check. */
    lora_error ignored;
    *is_re = lora_peft_regex_compile(re, json_string_value(v), 0, field, &ignored) == LORA_OK;
    return LORA_OK;
}

/* layers_to_transform: an int or a list of ints; layers_pattern: a string
 * or a list of strings. Informative, so wrong types are just ignored. */
static lora_status get_layers(lora_peft_config *c, const json_t *root, const char *what, lora_error *err)
{
    const json_t *v = json_object_get(root, "layers_to_transform");
    size_t n = json_is_integer(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (n) {
        c->layers = lora_mem_calloc(&c->alloc, n, sizeof *c->layers);
        if (!c->layers) return BAD(LORA_E_OUT_OF_MEMORY, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_is_integer(v) ? v : json_array_get(v, i);
            if (json_is_integer(e)) c->layers[c->layer_count++] = json_integer_value(e);
        }
    }
    const json_t *p = json_object_get(root, "layers_pattern");
    if (json_is_array(p)) return get_list(&c->alloc, p, &c->layer_patterns, &c->layer_pattern_count, "layers_pattern",
                                          what, err);
    if (!json_is_string(p)) return LORA_OK;
    c->layer_patterns = lora_mem_calloc(&c->alloc, 1, sizeof *c->layer_patterns);
    if (c->layer_patterns)
        c->layer_patterns[0] = lora_adir_strndup(&c->alloc, json_string_value(p), json_string_length(p));
    if (!c->layer_patterns || !c->layer_patterns[0]) return BAD(LORA_E_OUT_OF_MEMORY, "out of memory");
    c->layer_pattern_count = 1;
    return LORA_OK;
}

static lora_status get_bias(lora_peft_config *c, const json_t *root, const char *what, lora_error *err)
{
    const json_t *v = json_object_get(root, "bias");
    if (!v || json_is_null(v)) return LORA_OK;
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (strcmp(s, "none") == 0) return LORA_OK;
    if (strcmp(s, "all") == 0 || strcmp(s, "lora_only") == 0) {
        c->bias_trained = 1;
        return LORA_OK;
    }
    return BAD(LORA_E_BAD_JSON, "%s: bias is not \"none\", \"all\" or \"lora_only\"", what);
}

static lora_status read_fields(lora_peft_config *c, const json_t *root, const char *what, lora_error *err)
{
    const json_t *v;
    c->r = 8;
    c->alpha = 8;
    if ((v = json_object_get(root, "r")) && !json_is_null(v)) LORA_FORWARD_IF_ERROR(get_rank(v, &c->r, "r", what, err));
    if ((v = json_object_get(root, "lora_alpha")) && !json_is_null(v))
        LORA_FORWARD_IF_ERROR(get_alpha(v, &c->alpha, "lora_alpha", what, err));
    LORA_FORWARD_IF_ERROR(get_bool(root, "use_rslora", &c->use_rslora, what, err));
    LORA_FORWARD_IF_ERROR(get_bool(root, "use_dora", &c->use_dora, what, err));
    LORA_FORWARD_IF_ERROR(get_bool(root, "fan_in_fan_out", &c->fan_in_fan_out, what, err));
    LORA_FORWARD_IF_ERROR(get_bool(root, "lora_bias", &c->lora_bias, what, err));
    LORA_FORWARD_IF_ERROR(get_bias(c, root, what, err));
    LORA_FORWARD_IF_ERROR(get_layers(c, root, what, err));
    uint64_t regex_cost = 0;
    LORA_FORWARD_IF_ERROR(get_patterns(c, root, "rank_pattern", 1, &regex_cost, what, err));
    LORA_FORWARD_IF_ERROR(get_patterns(c, root, "alpha_pattern", 0, &regex_cost, what, err));
    LORA_FORWARD_IF_ERROR(get_selector(c, root, "target_modules", &c->targets, &c->target_count, &c->target_re,
                                       &c->target_is_re, what, err));
    LORA_FORWARD_IF_ERROR(get_selector(c, root, "exclude_modules", &c->excludes, &c->exclude_count, &c->exclude_re,
                                       &c->exclude_is_re, what, err));
    v = json_object_get(root, "modules_to_save");
    if (v && json_is_array(v))
        LORA_FORWARD_IF_ERROR(
            get_list(&c->alloc, v, &c->modules_to_save, &c->save_count, "modules_to_save", what, err));
    LORA_FORWARD_IF_ERROR(get_str(&c->alloc, root, "base_model_name_or_path", &c->base_model, err));
    LORA_FORWARD_IF_ERROR(get_str(&c->alloc, root, "revision", &c->revision, err));
    return get_str(&c->alloc, root, "task_type", &c->task_type, err);
}

lora_status lora_peft_config_from_json(const lora_allocator *a, const json_t *root, const char *what,
                                       lora_peft_config *out, lora_error *err)
{
    memset(out, 0, sizeof *out);
    if (a) out->alloc = *a;
    if (!json_is_object(root)) return BAD(LORA_E_BAD_JSON, "%s: not a JSON object", what);
    lora_status st = check_refusals(root, what, err);
    if (st == LORA_OK) st = read_fields(out, root, what, err);
    if (st != LORA_OK) lora_peft_config_free(out);
    return st;
}

lora_status lora_peft_config_parse(const lora_allocator *a, const char *text, size_t size, const char *what,
                                   lora_peft_config *out, lora_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        lora_status st = json_error_code(&je) == json_error_duplicate_key ? LORA_E_DUPLICATE_NAME : LORA_E_BAD_JSON;
        return lora_error_set(err, st, je.position >= 0 ? (uint64_t)je.position : LORA_NO_OFFSET,
                              "%s: line %d column %d: %s", what, je.line, je.column, je.text);
    }
    lora_status st = lora_peft_config_from_json(a, root, what, out, err);
    json_decref(root);
    return st;
}

static void free_list(const lora_allocator *a, char **l, uint32_t n)
{
    if (!l) return;
    for (uint32_t i = 0; i < n; i++) lora_mem_free(a, l[i]);
    lora_mem_free(a, l);
}

void lora_peft_config_free(lora_peft_config *c)
{
    if (!c) return;
    const lora_allocator a = c->alloc;
    for (uint32_t i = 0; i < c->rank_count; i++) lora_peft_key_free(&a, &c->rank_pattern[i].key);
    for (uint32_t i = 0; i < c->alpha_count; i++) lora_peft_key_free(&a, &c->alpha_pattern[i].key);
    lora_mem_free(&a, c->rank_pattern);
    lora_mem_free(&a, c->alpha_pattern);
    if (c->target_is_re) regfree(&c->target_re);
    if (c->exclude_is_re) regfree(&c->exclude_re);
    free_list(&a, c->targets, c->target_count);
    free_list(&a, c->excludes, c->exclude_count);
    free_list(&a, c->modules_to_save, c->save_count);
    free_list(&a, c->layer_patterns, c->layer_pattern_count);
    lora_mem_free(&a, c->layers);
    lora_mem_free(&a, c->base_model);
    lora_mem_free(&a, c->revision);
    lora_mem_free(&a, c->task_type);
    memset(c, 0, sizeof *c);
}

static const lora_peft_pattern *first_match(const lora_peft_pattern *p, uint32_t n, const char *module)
{
    for (uint32_t i = 0; i < n; i++)
        if (lora_peft_key_match(&p[i].key, module)) return &p[i];
    return NULL;
}

uint32_t lora_peft_config_rank(const lora_peft_config *c, const char *module, int *from_pattern)
{
    const lora_peft_pattern *p = first_match(c->rank_pattern, c->rank_count, module);
    if (from_pattern) *from_pattern = p != NULL;
    return p ? (uint32_t)p->value : c->r;
}

double lora_peft_config_alpha(const lora_peft_config *c, const char *module)
{
    const lora_peft_pattern *p = first_match(c->alpha_pattern, c->alpha_count, module);
    return p ? p->value : c->alpha;
}

/* PEFT's list rule: the name itself or a ".name" suffix. */
static int list_selects(char *const *l, uint32_t n, const char *module)
{
    size_t ml = strlen(module);
    for (uint32_t i = 0; i < n; i++) {
        size_t tl = strlen(l[i]);
        if (strcmp(module, l[i]) == 0) return 1;
        if (ml > tl && module[ml - tl - 1] == '.' && strcmp(module + ml - tl, l[i]) == 0) return 1;
    }
    return 0;
}

int lora_peft_config_targets(const lora_peft_config *c, const char *module)
{
    int sel;
    /* Informative only: a list long enough to make this quadratic is skipped. */
    if (c->target_count > 4096 || c->exclude_count > 4096) return -1;
    if (c->target_is_re) sel = lora_peft_regex_match(&c->target_re, module);
    else if (c->target_count) sel = list_selects(c->targets, c->target_count, module);
    else return -1;
    if (c->exclude_is_re && lora_peft_regex_match(&c->exclude_re, module)) return 0;
    if (list_selects(c->excludes, c->exclude_count, module)) return 0;
    return sel;
}

static int all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 18) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

static int pattern_component(const lora_peft_config *c, const char *s, size_t n)
{
    for (uint32_t i = 0; i < c->layer_pattern_count; i++)
        if (strlen(c->layer_patterns[i]) == n && memcmp(c->layer_patterns[i], s, n) == 0) return 1;
    return 0;
}

/* PEFT: re.match(r".*\.[^.]*\.(\d+)\.", key), or with "(?:pattern)" for
 * [^.]*; greedy, so the last such index counts. */
int lora_peft_config_layer_ok(const lora_peft_config *c, const char *module)
{
    if (!c->layer_count || c->layer_count > 65536 || c->layer_pattern_count > 4096) return -1; /* informative */
    const char *comp[256];
    size_t len[256], n = 0;
    for (const char *p = module; n < 256;) {
        const char *d = strchr(p, '.');
        comp[n] = p;
        len[n++] = d ? (size_t)(d - p) : strlen(p);
        if (!d) break;
        p = d + 1;
    }
    /* `.*\.` needs a dot before the layers component, `\.` one after the index */
    for (size_t i = n - 1; i-- > 2;) {
        if (!all_digits(comp[i], len[i])) continue;
        if (c->layer_pattern_count && !pattern_component(c, comp[i - 1], len[i - 1])) continue;
        int64_t idx = 0;
        for (size_t k = 0; k < len[i]; k++) idx = idx * 10 + (comp[i][k] - '0');
        for (uint32_t k = 0; k < c->layer_count; k++)
            if (c->layers[k] == idx) return 1;
        return 0;
    }
    return 0;
}
