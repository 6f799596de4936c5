/* mlx-lm adapter_config.json (see mlx_config.h). */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include "mlx_config.h"

#define FAIL(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

static lora_status variant(const json_t *root, lora_mlx_config *c, lora_error *err)
{
    const json_t *ft = json_object_get(root, "fine_tune_type");
    const json_t *ud = json_object_get(root, "use_dora");
    if (ft && !json_is_null(ft)) {
        const char *s = json_is_string(ft) ? json_string_value(ft) : "";
        if (strcmp(s, "dora") == 0) c->dora = 1;
        else if (strcmp(s, "lora") != 0)
            return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: adapter_config.json: fine_tune_type '%s' is not lora or dora",
                        s);
    }
    if (ud && !json_is_null(ud)) {
        if (!json_is_boolean(ud)) return FAIL(LORA_E_BAD_JSON, "mlx: adapter_config.json: use_dora is not a boolean");
        c->dora |= json_is_true(ud);
    }
    return LORA_OK;
}

static lora_status parameters(const json_t *root, lora_mlx_config *c, lora_error *err)
{
    const json_t *lp = json_object_get(root, "lora_parameters");
    if (!json_is_object(lp)) return FAIL(LORA_E_BAD_JSON, "mlx: adapter_config.json: lora_parameters is missing");
    const json_t *r = json_object_get(lp, "rank"), *s = json_object_get(lp, "scale"), *a = json_object_get(lp, "alpha");
    if (r && !json_is_null(r)) {
        if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > (1 << 24))
            return FAIL(LORA_E_BAD_JSON, "mlx: adapter_config.json: lora_parameters.rank is not a rank");
        c->rank = (uint32_t)json_integer_value(r);
    }
    if (!s || !json_is_number(s))
        return FAIL(LORA_E_BAD_JSON, "mlx: adapter_config.json: lora_parameters.scale is missing (mlx-lm's default "
                                     "differs between versions, so it cannot be guessed)");
    c->scale = (float)json_number_value(s);
    if (!isfinite(c->scale)) return FAIL(LORA_E_BAD_SCALE, "mlx: lora_parameters.scale is not a finite binary32");
    if (a && json_is_number(a)) {
        c->alpha = json_number_value(a);
        c->has_alpha = isfinite((float)c->alpha);
    }
    return LORA_OK;
}

lora_status lora_mlx_config_parse(const char *text, size_t size, lora_mlx_config *out, lora_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return lora_error_set(err, json_error_code(&je) == json_error_duplicate_key ? LORA_E_DUPLICATE_NAME
                                                                                    : LORA_E_BAD_JSON,
                              je.position >= 0 ? (uint64_t)je.position : LORA_NO_OFFSET,
                              "mlx: adapter_config.json: line %d column %d: %s", je.line, je.column, je.text);
    lora_status st = json_is_object(root) ? variant(root, out, err)
                                          : FAIL(LORA_E_BAD_JSON, "mlx: adapter_config.json is not an object");
    if (st == LORA_OK) st = parameters(root, out, err);
    json_decref(root);
    return st;
}

int lora_mlx_layer_of(const char *module, uint64_t *index, const char **rel)
{
    const char *hit = NULL;
    for (const char *p = module; (p = strstr(p, "layers.")) != NULL; p++) {
        if (p != module && p[-1] != '.') continue;
        const char *d = p + 7;
        if (!isdigit((unsigned char)*d)) continue;
        while (isdigit((unsigned char)*d)) d++;
        if (*d == '.' && d[1]) hit = p;
    }
    if (!hit) return 0;
    uint64_t v = 0;
    const char *d = hit + 7;
    for (; isdigit((unsigned char)*d); d++) {
        if (v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(*d - '0');
    }
    *index = v;
    *rel = d + 1;
    return 1;
}
