/*
 * mlx_import.c - mlx-lm adapter (adapters.safetensors + adapter_config.json)
 * -> .lora.
 *
 * mlx-lm's LoRALinear computes y = W x + scale * (x @ lora_a) @ lora_b with
 * lora_a [in, r] and lora_b [r, out], so A = lora_a^T and B = lora_b^T:
 * the bytes are reordered, never re-rounded. The scale is explicit
 * (lora_parameters.scale). DoRALinear keeps m = ||W + scale B A||_row [out],
 * PEFT's magnitude exactly; DoRAEmbedding's m runs over the other axis and
 * is refused.
 */
#include <stdio.h>
#include <string.h>
#include "../io/safetensors.h"
#include "adapter_dir.h"
#include "mlx_config.h"

#define FAIL(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

typedef struct {
    const lora_st_file *st;
    const lora_convert_options *o;
    lora_writer *w;
    const lora_mlx_config *cfg;
    uint8_t *used;        /* per tensor: taken by a module */
} mlx_ctx;

static int ends_with(const char *s, const char *suf)
{
    size_t l = strlen(s), k = strlen(suf);
    return l > k && strcmp(s + l - k, suf) == 0;
}

/* mlx-lm has no kind marker in the file; its embedding targets are named so. */
static int embedding_name(const char *module)
{
    const char *dot = strrchr(module, '.');
    const char *last = dot ? dot + 1 : module;
    return strstr(last, "embed") != NULL || strcmp(last, "wte") == 0;
}

static lora_status add_blob(mlx_ctx *c, const lora_st_tensor *t, int transpose, uint32_t *index, lora_error *err)
{
    lora_dtype d;
    if (lora_st_dtype_to_lora(t->dtype, &d) != LORA_OK)
        return FAIL(LORA_E_UNSUPPORTED_DTYPE, "mlx: tensor '%s': dtype %s is not F32, F16 or BF16", t->name,
                    lora_st_dtype_name(t->dtype));
    if (t->ndim < 1 || t->ndim > LORA_MAX_DIMS || (transpose && t->ndim != 2))
        return FAIL(LORA_E_BAD_SHAPE, "mlx: tensor '%s': %u dimensions", t->name, t->ndim);
    for (uint32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return FAIL(LORA_E_BAD_SHAPE, "mlx: tensor '%s': dimension %u is 0", t->name, i);
    lora_status st = lora_ops_add_blob(c->w, c->o, d, t->ndim, t->shape, t->data, (size_t)t->size, transpose, index,
                                       err);
    if (st != LORA_OK && err) {
        char inner[LORA_ERROR_DETAIL_SIZE];
        memcpy(inner, err->detail, sizeof inner);
        lora_error_set(err, st, t->offset, "mlx: tensor '%s': %s", t->name, inner);
    }
    return st;
}

static uint32_t partner(const lora_st_file *st, const char *module, const char *suffix)
{
    char key[4200];
    int n = snprintf(key, sizeof key, "%s%s", module, suffix);
    if (n < 0 || (size_t)n >= sizeof key) return UINT32_MAX;
    return lora_st_find(st, key, (size_t)n);
}

static lora_status check_pair(const char *module, const lora_st_tensor *a, const lora_st_tensor *b, const mlx_ctx *c,
                              lora_error *err)
{
    if (a->ndim != 2 || b->ndim != 2)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s': lora_a has %u dimensions (switch/MoE LoRA is not "
                                                "supported)", module, a->ndim);
    if (a->shape[1] != b->shape[0] || a->shape[1] == 0 || a->shape[1] > UINT32_MAX)
        return FAIL(LORA_E_BAD_SHAPE, "mlx: module '%s': lora_a [%llu, %llu] and lora_b [%llu, %llu] disagree on the "
                                      "rank", module, (unsigned long long)a->shape[0], (unsigned long long)a->shape[1],
                    (unsigned long long)b->shape[0], (unsigned long long)b->shape[1]);
    if (c->cfg->rank && a->shape[1] != c->cfg->rank)
        return FAIL(LORA_E_BAD_SHAPE, "mlx: module '%s': rank %llu but lora_parameters.rank is %u", module,
                    (unsigned long long)a->shape[1], c->cfg->rank);
    return LORA_OK;
}

static lora_status magnitude(mlx_ctx *c, const char *module, lora_module_desc *d, lora_error *err)
{
    uint32_t mi = partner(c->st, module, ".m");
    d->blob_magnitude = LORA_NO_BLOB;
    if (mi == UINT32_MAX) {
        if (c->cfg->dora)
            return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: DoRA adapter but module '%s' has no .m", module);
        return LORA_OK;
    }
    if (!c->cfg->dora)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s' has a DoRA magnitude .m but the config is not DoRA",
                    module);
    if (d->kind != LORA_KIND_LINEAR)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s': DoRA on an embedding (mlx-lm normalises per token, "
                                                "not per feature as PEFT and .lora do)", module);
    const lora_st_tensor *m = &c->st->tensors[mi];
    if (m->ndim != 1 || m->shape[0] != d->base_shape[0])
        return FAIL(LORA_E_BAD_SHAPE, "mlx: module '%s': .m must be [%llu]", module,
                    (unsigned long long)d->base_shape[0]);
    c->used[mi] = 1;
    return add_blob(c, m, 0, &d->blob_magnitude, err);
}

static lora_status add_module(mlx_ctx *c, uint32_t ai, lora_error *err)
{
    const lora_st_tensor *a = &c->st->tensors[ai];
    char module[4096];
    size_t ml = strlen(a->name) - strlen(".lora_a");
    if (ml == 0 || ml >= sizeof module) return FAIL(LORA_E_BAD_STRING, "mlx: tensor '%s': bad module name", a->name);
    memcpy(module, a->name, ml);
    module[ml] = '\0';
    uint32_t bi = partner(c->st, module, ".lora_b");
    if (bi == UINT32_MAX) return FAIL(LORA_E_NOT_FOUND, "mlx: module '%s': lora_a without lora_b", module);
    const lora_st_tensor *b = &c->st->tensors[bi];
    LORA_FORWARD_IF_ERROR(check_pair(module, a, b, c, err));
    c->used[ai] = c->used[bi] = 1;
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    d.name = module;
    d.kind = embedding_name(module) ? LORA_KIND_EMBEDDING : LORA_KIND_LINEAR;
    d.scaling = LORA_SCALING_EXPLICIT;
    d.rank = (uint32_t)a->shape[1];
    d.scale = c->cfg->scale;
    d.alpha = c->cfg->has_alpha ? (float)c->cfg->alpha : c->cfg->scale * (float)d.rank;
    d.base_ndim = 2;
    /* linear [out, in] = [lora_b cols, lora_a rows]; embedding [num, dim] the other way round */
    d.base_shape[0] = d.kind == LORA_KIND_LINEAR ? b->shape[1] : a->shape[0];
    d.base_shape[1] = d.kind == LORA_KIND_LINEAR ? a->shape[0] : b->shape[1];
    d.blob_bias = LORA_NO_BLOB;
    LORA_FORWARD_IF_ERROR(add_blob(c, a, 1, &d.blob_a, err));
    LORA_FORWARD_IF_ERROR(add_blob(c, b, 1, &d.blob_b, err));
    LORA_FORWARD_IF_ERROR(magnitude(c, module, &d, err));
    lora_status st = lora_writer_add_module(c->w, &d, NULL);
    return st == LORA_OK ? st : FAIL(st, "mlx: module '%s': %s", module, lora_status_message(st));
}

static lora_status add_all(mlx_ctx *c, lora_error *err)
{
    uint32_t modules = 0;
    for (uint32_t i = 0; i < c->st->tensor_count; i++) {
        if (!ends_with(c->st->tensors[i].name, ".lora_a")) continue;
        LORA_FORWARD_IF_ERROR(add_module(c, i, err));
        modules++;
    }
    if (modules == 0) return FAIL(LORA_E_UNKNOWN_FORMAT, "mlx: no lora_a/lora_b tensors found");
    for (uint32_t i = 0; i < c->st->tensor_count; i++) {
        const lora_st_tensor *t = &c->st->tensors[i];
        if (c->used[i]) continue;
        if (ends_with(t->name, ".lora_b"))
            return FAIL(LORA_E_NOT_FOUND, "mlx: tensor '%s': lora_b without lora_a", t->name);
        /* Anything else mlx-lm saved was trainable and loads over the base tensor of that name. */
        uint32_t idx;
        LORA_FORWARD_IF_ERROR(add_blob(c, t, 0, &idx, err));
        lora_status st = lora_writer_add_tensor(c->w, t->name, idx);
        if (st != LORA_OK) return FAIL(st, "mlx: tensor '%s': %s", t->name, lora_status_message(st));
    }
    return LORA_OK;
}

static lora_status set_metadata(lora_writer *w, const uint8_t *text, size_t size, lora_error *err)
{
    lora_status st = lora_writer_set_string(w, LORA_META_SOURCE_FORMAT, "mlx", 3);
    if (st == LORA_OK) st = lora_writer_set_string(w, LORA_META_SOURCE_CONFIG, (const char *)text, size);
    return st == LORA_OK ? st : FAIL(st, "mlx: metadata: %s", lora_status_message(st));
}

static lora_status import_files(const lora_adir_paths *p, const lora_convert_options *o, lora_writer *w,
                                lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    uint8_t *text = NULL;
    size_t size = 0;
    lora_mlx_config cfg;
    LORA_FORWARD_IF_ERROR(lora_adir_read_config(a, p->config, "mlx: adapter_config.json", &text, &size, err));
    lora_status st = lora_mlx_config_parse((const char *)text, size, &cfg, err);
    lora_st_file *sf = NULL;
    lora_st_options so;
    memset(&so, 0, sizeof so);
    so.allocator = o->allocator;
    if (st == LORA_OK) st = lora_st_open(p->weights, &so, &sf, err);
    mlx_ctx c = {sf, o, w, &cfg, NULL};
    if (st == LORA_OK) {
        c.used = lora_mem_calloc(a, sf->tensor_count ? sf->tensor_count : 1, 1);
        st = c.used ? add_all(&c, err) : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    }
    if (st == LORA_OK) st = set_metadata(w, text, size, err);
    lora_mem_free(a, c.used);
    lora_st_free(sf);
    lora_mem_free(a, text);
    return st;
}

lora_status lora_import_mlx(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!input || !w) return FAIL(LORA_E_INVALID_ARGUMENT, "mlx: no input or writer");
    lora_adir_paths p;
    LORA_FORWARD_IF_ERROR(lora_adir_resolve(&o->allocator, input, "adapters.safetensors", &p, err));
    lora_status st = import_files(&p, o, w, err);
    lora_adir_paths_free(&o->allocator, &p);
    return st;
}
