/*
 * diffusers_import.c - pytorch_lora_weights.safetensors -> .lora.
 *
 * Keys are PEFT's without "base_model.model." (diffusers saves the PEFT
 * state dict of the UNet/transformer, optionally under a component prefix
 * "unet." / "text_encoder."), or the older diffusers layouts
 * (".lora.down.weight", attention processors). The PEFT config, when the
 * saver had one, is the JSON string __metadata__["lora_adapter_metadata"]:
 * either one config, or a pipeline's configs flattened with component
 * prefixes ("unet.r", "text_encoder.r", ...; diffusers _pack_dict_with_prefix).
 * Without it diffusers assumes lora_alpha = rank (get_peft_kwargs).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "adapter_dir.h"
#include "peft_import.h"

#define MAX_COMPONENTS 16

typedef struct {
    char prefix[64];          /* "unet." */
    lora_peft_config cfg;
} component;

typedef struct {
    lora_peft_config single;
    int has_single;
    component comp[MAX_COMPONENTS];
    uint32_t ncomp;
} configs;

static void configs_free(configs *c)
{
    if (c->has_single) lora_peft_config_free(&c->single);
    for (uint32_t i = 0; i < c->ncomp; i++) lora_peft_config_free(&c->comp[i].cfg);
    c->has_single = 0;
    c->ncomp = 0;
}

/* {"unet.r": 4, "unet.peft_type": "LORA", ...} -> per component objects. */
static lora_status split_components(const lora_allocator *a, json_t *root, configs *c, lora_error *err)
{
    json_t *parts = json_object();
    if (!parts) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    const char *k;
    json_t *v;
    lora_status st = LORA_OK;
    json_object_foreach(root, k, v) {
        const char *dot = strchr(k, '.');
        if (!dot || dot == k || (size_t)(dot - k) >= sizeof c->comp[0].prefix - 1) continue;
        char comp[64];
        memcpy(comp, k, (size_t)(dot - k));
        comp[dot - k] = '\0';
        json_t *obj = json_object_get(parts, comp);
        if (!obj) {
            obj = json_object();
            if (!obj || json_object_set_new(parts, comp, obj) != 0) {
                st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
                break;
            }
        }
        if (json_object_set(obj, dot + 1, v) != 0) {
            st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
            break;
        }
    }
    json_object_foreach(parts, k, v) {
        if (st != LORA_OK) break;
        if (c->ncomp == MAX_COMPONENTS) {
            st = lora_error_set(err, LORA_E_LIMIT_EXCEEDED, LORA_NO_OFFSET, "diffusers: more than %d components",
                                MAX_COMPONENTS);
            break;
        }
        component *cp = &c->comp[c->ncomp];
        snprintf(cp->prefix, sizeof cp->prefix, "%s.", k);
        char what[96];
        snprintf(what, sizeof what, "diffusers: lora_adapter_metadata of '%s'", k);
        st = lora_peft_config_from_json(a, v, what, &cp->cfg, err);
        if (st == LORA_OK) c->ncomp++;
    }
    json_decref(parts);
    return st;
}

static lora_status read_configs(const lora_allocator *a, const lora_st_meta *m, configs *c, lora_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(m->value, m->value_length, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return lora_error_set(err, json_error_code(&je) == json_error_duplicate_key ? LORA_E_DUPLICATE_NAME
                                                                                    : LORA_E_BAD_JSON,
                              LORA_NO_OFFSET, "diffusers: lora_adapter_metadata: line %d column %d: %s", je.line,
                              je.column, je.text);
    lora_status st;
    if (!json_is_object(root)) {
        st = lora_error_set(err, LORA_E_BAD_JSON, LORA_NO_OFFSET, "diffusers: lora_adapter_metadata is not an object");
    } else if (json_object_get(root, "peft_type") || json_object_get(root, "r")) {
        st = lora_peft_config_from_json(a, root, "diffusers: lora_adapter_metadata", &c->single, err);
        c->has_single = st == LORA_OK;
    } else {
        st = split_components(a, root, c, err);
    }
    json_decref(root);
    return st;
}

static void pick_config(const configs *c, const char *key, lora_pk_entry *e)
{
    e->cfg = c->has_single ? &c->single : NULL;
    e->cfg_skip = 0;
    for (uint32_t i = 0; i < c->ncomp; i++) {
        size_t l = strlen(c->comp[i].prefix);
        if (strncmp(key, c->comp[i].prefix, l) == 0) {
            e->cfg = &c->comp[i].cfg;
            e->cfg_skip = l;
        }
    }
}

static lora_status fill_entries(const lora_allocator *a, const lora_st_file *st, const configs *c, lora_pk_entry *e,
                                lora_error *err)
{
    for (uint32_t i = 0; i < st->tensor_count; i++) {
        const char *key = st->tensors[i].name;
        if (strncmp(key, "base_model.model.", 17) == 0) key += 17;
        size_t cap = strlen(key) + 8;
        e[i].name = lora_mem_alloc(a, cap);
        if (!e[i].name) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        e[i].role = lora_pk_split(key, 1, e[i].name, cap);
        e[i].tensor = i;
        pick_config(c, e[i].name, &e[i]);
    }
    return LORA_OK;
}

static lora_status set_metadata(lora_writer *w, const configs *c, const lora_st_meta *m, lora_error *err)
{
    LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_SOURCE_FORMAT, "diffusers", 9, err));
    if (m) LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_SOURCE_CONFIG, m->value, m->value_length, err));
    const lora_peft_config *cfg = c->has_single ? &c->single : NULL;
    if (cfg && cfg->base_model)
        LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_BASE_MODEL, cfg->base_model, strlen(cfg->base_model), err));
    if (cfg && cfg->revision)
        LORA_FORWARD_IF_ERROR(
            lora_pk_set_meta(w, LORA_META_BASE_MODEL_REVISION, cfg->revision, strlen(cfg->revision), err));
    return LORA_OK;
}

static lora_status import_file(const char *path, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    lora_st_file *st = NULL;
    configs c;
    memset(&c, 0, sizeof c);
    LORA_FORWARD_IF_ERROR(lora_pk_open_safetensors(path, o, &st, err));
    const lora_st_meta *m = lora_st_meta_find(st, "lora_adapter_metadata");
    lora_status s = m ? read_configs(a, m, &c, err) : LORA_OK;
    lora_pk_entry *e = NULL;
    uint32_t n = st->tensor_count;
    if (s == LORA_OK) {
        e = lora_mem_calloc(a, n ? n : 1, sizeof *e);
        s = e ? fill_entries(a, st, &c, e, err)
              : lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    if (s == LORA_OK) s = lora_pk_import("diffusers", st, e, n, o, w, err);
    if (s == LORA_OK) s = set_metadata(w, &c, m, err);
    lora_pk_entries_free(a, e, n);
    configs_free(&c);
    lora_st_free(st);
    return s;
}

lora_status lora_import_diffusers(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!input || !w)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "diffusers: no input or writer");
    struct stat sb;
    if (stat(input, &sb) != 0 || !S_ISDIR(sb.st_mode)) return import_file(input, o, w, err);
    char *path = lora_adir_join(&o->allocator, input, "pytorch_lora_weights.safetensors");
    if (!path) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    lora_status s = import_file(path, o, w, err);
    lora_mem_free(&o->allocator, path);
    return s;
}
