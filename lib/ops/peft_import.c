/* PEFT adapter directory (adapter_model.safetensors + adapter_config.json) -> .lora. */
#include <string.h>
#include <sys/stat.h>
#include "adapter_dir.h"
#include "peft_import.h"

#define PEFT_PREFIX "base_model.model."

static lora_status fill_entries(const lora_allocator *a, const lora_st_file *st, const lora_peft_config *cfg,
                                lora_pk_entry *e, lora_error *err)
{
    size_t plen = strlen(PEFT_PREFIX);
    for (uint32_t i = 0; i < st->tensor_count; i++) {
        const char *key = st->tensors[i].name;
        if (strncmp(key, PEFT_PREFIX, plen) == 0) key += plen;
        size_t cap = strlen(key) + 8;
        e[i].name = lora_mem_alloc(a, cap);
        if (!e[i].name) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        e[i].role = lora_pk_split(key, 0, e[i].name, cap);
        e[i].tensor = i;
        e[i].cfg = cfg;
        e[i].cfg_skip = 0;
    }
    return LORA_OK;
}

static lora_status set_metadata(lora_writer *w, const lora_peft_config *cfg, const uint8_t *text, size_t size,
                                lora_error *err)
{
    LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_SOURCE_FORMAT, "peft", 4, err));
    LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_SOURCE_CONFIG, (const char *)text, size, err));
    if (cfg->base_model)
        LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_BASE_MODEL, cfg->base_model, strlen(cfg->base_model), err));
    if (cfg->revision)
        LORA_FORWARD_IF_ERROR(
            lora_pk_set_meta(w, LORA_META_BASE_MODEL_REVISION, cfg->revision, strlen(cfg->revision), err));
    if (cfg->task_type)
        LORA_FORWARD_IF_ERROR(lora_pk_set_meta(w, LORA_META_TASK_TYPE, cfg->task_type, strlen(cfg->task_type), err));
    return LORA_OK;
}

/* A directory with only the pickle weights gets a message that says so. */
static lora_status weights_present(const char *path, lora_error *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0) return LORA_OK;
    size_t l = strlen(path), sl = strlen(".safetensors");
    char bin[4096];
    if (l > sl && l - sl + 5 < sizeof bin) {
        memcpy(bin, path, l - sl);
        strcpy(bin + l - sl, ".bin");
        if (stat(bin, &sb) == 0)
            return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                                  "peft: only '%s' (pickle) is there; convert it to safetensors first", bin);
    }
    return LORA_OK; /* opening it reports the error */
}

static lora_status import_files(const lora_adir_paths *p, const lora_convert_options *o, lora_writer *w,
                                lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    uint8_t *text = NULL;
    size_t size = 0;
    lora_peft_config cfg;
    lora_st_file *st = NULL;
    lora_pk_entry *e = NULL;
    uint32_t n = 0;
    lora_status s = weights_present(p->weights, err);
    if (s == LORA_OK) s = lora_adir_read_config(a, p->config, "peft: adapter_config.json", &text, &size, err);
    if (s != LORA_OK) return s;
    s = lora_peft_config_parse(a, (const char *)text, size, "peft: adapter_config.json", &cfg, err);
    if (s != LORA_OK) {
        lora_mem_free(a, text);
        return s;
    }
    s = lora_pk_open_safetensors(p->weights, o, &st, err);
    if (s == LORA_OK) {
        n = st->tensor_count;
        e = lora_mem_calloc(a, n ? n : 1, sizeof *e);
        s = e ? fill_entries(a, st, &cfg, e, err)
              : lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    if (s == LORA_OK) s = lora_pk_import("peft", st, e, n, o, w, err);
    if (s == LORA_OK) s = set_metadata(w, &cfg, text, size, err);
    lora_pk_entries_free(a, e, n);
    lora_st_free(st);
    lora_peft_config_free(&cfg);
    lora_mem_free(a, text);
    return s;
}

lora_status lora_import_peft(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!input || !w) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "peft: no input or writer");
    lora_adir_paths p;
    LORA_FORWARD_IF_ERROR(lora_adir_resolve(&o->allocator, input, "adapter_model.safetensors", &p, err));
    lora_status s = import_files(&p, o, w, err);
    lora_adir_paths_free(&o->allocator, &p);
    return s;
}
