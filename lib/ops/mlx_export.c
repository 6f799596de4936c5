/*
 * mlx_export.c - .lora -> mlx-lm adapter directory.
 *
 * mlx-lm builds every LoRA layer from one lora_parameters (rank, scale), on
 * the last num_layers entries of model.layers, for the module paths in
 * "keys", then loads adapters.safetensors with strict=False: a weight for a
 * layer it did not build is silently ignored. So: one rank and one binary32
 * scale for all modules (else refused, naming the module that differs),
 * every module inside a numbered "layers" list, lora_a = A^T and
 * lora_b = B^T, DoRA only on all-linear adapters with a magnitude on every
 * module. LoRA biases and replacement tensors have no place in mlx-lm's
 * LoRA layers: refused, or dropped one by one with a warning under
 * LORA_CONVERT_DROP_UNSUPPORTED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "adapter_dir.h"
#include "mlx_config.h"
#include "strref.h"

#define FAIL(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

/* jansson's json_string, spelled through json_stringn: a program that
 * links its own function named json_string (tools/common/json.c does)
 * would otherwise be called here. */
static json_t *jstr(const char *s) { return json_stringn(s, strlen(s)); }

typedef struct {
    uint32_t rank;
    float scale, alpha;
    int alpha_uniform, dora;
    uint64_t *layers;     /* layer index per module, then distinct and sorted */
    uint32_t nlayers;
    lora_strref *rel;     /* in-layer path per module, then distinct and sorted */
    size_t nrel;
} mlx_plan;

static int drop(const lora_convert_options *o) { return (o->flags & LORA_CONVERT_DROP_UNSUPPORTED) != 0; }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static lora_status unsupported(const lora_convert_options *o, const char *what, const char *name, lora_error *err)
{
    if (!drop(o))
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: %s '%s' has no mlx-lm equivalent (use --drop-unsupported to "
                                                "leave it out)", what, name);
    lora_ops_warn(o, "mlx: dropped %s '%s' (no mlx-lm equivalent)", what, name);
    return LORA_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static lora_status check_module(const lora_module *m, const lora_module *first, mlx_plan *p, lora_error *err)
{
    if (m->kind != LORA_KIND_LINEAR && m->kind != LORA_KIND_EMBEDDING)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s' is a %s; mlx-lm has linear and embedding LoRA only",
                    m->name, lora_kind_name(m->kind));
    if (m->rank != first->rank)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s' has rank %u but '%s' has %u: mlx-lm uses one rank "
                                                "for all modules", m->name, m->rank, first->name, first->rank);
    if (!same_bits(m->scale, first->scale))
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s' has scale %.9g but '%s' has %.9g: mlx-lm uses one "
                                                "scale for all modules", m->name, (double)m->scale, first->name,
                    (double)first->scale);
    p->alpha_uniform &= same_bits(m->alpha, first->alpha);
    return LORA_OK;
}

static lora_status add_layer(const lora_module *m, mlx_plan *p, lora_error *err)
{
    uint64_t idx;
    const char *rel;
    if (!lora_mlx_layer_of(m->name, &idx, &rel))
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: module '%s' is not inside a numbered 'layers' list, where mlx-lm "
                                                "puts its LoRA layers", m->name);
    p->layers[p->nlayers++] = idx;
    p->rel[p->nrel++] = (lora_strref){rel, strlen(rel)};
    return LORA_OK;
}

static void distinct_layers(mlx_plan *p)
{
    qsort(p->layers, p->nlayers, sizeof *p->layers, cmp_u64);
    uint32_t k = 1;
    for (uint32_t i = 1; i < p->nlayers; i++)
        if (p->layers[i] != p->layers[k - 1]) p->layers[k++] = p->layers[i];
    p->nlayers = k;
    p->nrel = lora_strref_unique(p->rel, p->nrel);
}

/* DoRA: on every module (linear) or none; otherwise refused or dropped. */
static lora_status dora_plan(const lora_reader *r, const lora_convert_options *o, uint32_t n, mlx_plan *p,
                             lora_error *err)
{
    uint32_t mag = 0, lin_mag = 0;
    for (uint32_t i = 0; i < n; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        mag += m.blob_magnitude != LORA_NO_BLOB;
        lin_mag += m.blob_magnitude != LORA_NO_BLOB && m.kind == LORA_KIND_LINEAR;
    }
    p->dora = mag == n && lin_mag == n;
    for (uint32_t i = 0; i < n && !p->dora && mag; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        if (m.blob_magnitude != LORA_NO_BLOB)
            LORA_FORWARD_IF_ERROR(unsupported(o, "DoRA magnitude of module (mlx-lm needs DoRA on every module, linear "
                                                 "only)", m.name, err));
    }
    return LORA_OK;
}

static lora_status make_plan(const lora_reader *r, const lora_convert_options *o, mlx_plan *p, lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    if (fi.module_count == 0) return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "mlx: the adapter has no LoRA modules");
    lora_module first;
    LORA_FORWARD_IF_ERROR(lora_reader_module(r, 0, &first));
    p->rank = first.rank;
    p->scale = first.scale;
    p->alpha = first.alpha;
    p->alpha_uniform = 1;
    p->layers = lora_mem_calloc(&o->allocator, fi.module_count, sizeof *p->layers);
    p->rel = lora_mem_calloc(&o->allocator, fi.module_count, sizeof *p->rel);
    if (!p->layers || !p->rel) return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    for (uint32_t i = 0; i < fi.module_count; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        LORA_FORWARD_IF_ERROR(check_module(&m, &first, p, err));
        LORA_FORWARD_IF_ERROR(add_layer(&m, p, err));
        if (m.blob_bias != LORA_NO_BLOB) LORA_FORWARD_IF_ERROR(unsupported(o, "LoRA bias of module", m.name, err));
    }
    for (uint32_t i = 0; i < fi.tensor_count; i++) {
        lora_tensor t;
        LORA_FORWARD_IF_ERROR(lora_reader_tensor(r, i, &t));
        LORA_FORWARD_IF_ERROR(unsupported(o, "replacement tensor", t.name, err));
    }
    LORA_FORWARD_IF_ERROR(dora_plan(r, o, fi.module_count, p, err));
    distinct_layers(p);
    if (p->layers[p->nlayers - 1] - p->layers[0] + 1 != p->nlayers)
        lora_ops_warn(o, "mlx: the adapted layers (%llu..%llu) are not contiguous; mlx-lm builds LoRA on the last "
                         "num_layers = %u layers and ignores weights for the others",
                      (unsigned long long)p->layers[0], (unsigned long long)p->layers[p->nlayers - 1], p->nlayers);
    return LORA_OK;
}

static lora_status add(const lora_reader *r, const lora_allocator *a, lora_adir_tensor *t, uint32_t *n,
                       const char *module, const char *suffix, uint32_t blob, int transpose, lora_error *err)
{
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(r, blob, &b));
    size_t len = strlen(module) + strlen(suffix) + 1;
    lora_adir_tensor *e = &t[*n];
    e->name = lora_mem_alloc(a, len);
    if (!e->name) return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    snprintf(e->name, len, "%s%s", module, suffix);
    e->blob = blob;
    e->transpose = transpose;
    e->ndim = b.ndim;
    memset(e->shape, 0, sizeof e->shape);
    for (uint32_t i = 0; i < b.ndim; i++) e->shape[i] = b.shape[transpose ? b.ndim - 1 - i : i];
    (*n)++;
    return LORA_OK;
}

static lora_status tensors(const lora_reader *r, const lora_allocator *a, const mlx_plan *p, lora_adir_tensor *t,
                           uint32_t *n, lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    for (uint32_t i = 0; i < fi.module_count; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        LORA_FORWARD_IF_ERROR(add(r, a, t, n, m.name, ".lora_a", m.blob_a, 1, err));
        LORA_FORWARD_IF_ERROR(add(r, a, t, n, m.name, ".lora_b", m.blob_b, 1, err));
        if (p->dora) LORA_FORWARD_IF_ERROR(add(r, a, t, n, m.name, ".m", m.blob_magnitude, 0, err));
    }
    return LORA_OK;
}

/* The source config verbatim when it came from mlx-lm and still says the
 * same rank, scale and variant. */
static int source_fits(const lora_reader *r, const mlx_plan *p, lora_meta *src)
{
    lora_meta fmt;
    lora_mlx_config c;
    lora_error e;
    if (lora_reader_meta_find(r, LORA_META_SOURCE_FORMAT, &fmt) != LORA_OK || strcmp(fmt.string, "mlx") != 0 ||
        lora_reader_meta_find(r, LORA_META_SOURCE_CONFIG, src) != LORA_OK ||
        lora_mlx_config_parse(src->string, src->string_length, &c, &e) != LORA_OK)
        return 0;
    return (c.rank == 0 || c.rank == p->rank) && same_bits(c.scale, p->scale) && c.dora == p->dora;
}

static json_t *build(const mlx_plan *p)
{
    json_t *lp = json_object(), *cfg = json_object(), *keys = json_array();
    for (size_t i = 0; keys && i < p->nrel; i++)
        if (json_array_append_new(keys, json_stringn(p->rel[i].s, p->rel[i].len)) != 0) {
            json_decref(keys);
            keys = NULL;
        }
    json_t *alpha = p->alpha_uniform ? json_real(p->alpha) : json_real((double)p->scale * p->rank);
    int bad = !lp || !cfg || !keys;
    if (!bad) {
        bad |= json_object_set_new(cfg, "fine_tune_type", jstr(p->dora ? "dora" : "lora"));
        bad |= json_object_set_new(cfg, "num_layers", json_integer(p->nlayers));
        bad |= json_object_set_new(lp, "rank", json_integer(p->rank));
        bad |= json_object_set_new(lp, "alpha", alpha);
        alpha = NULL;
        bad |= json_object_set_new(lp, "scale", json_real(p->scale));
        bad |= json_object_set_new(lp, "dropout", json_real(0.0));
        bad |= json_object_set(lp, "keys", keys);
        bad |= json_object_set(cfg, "lora_parameters", lp);
    }
    json_decref(alpha);
    json_decref(lp);
    json_decref(keys);
    if (bad) {
        json_decref(cfg);
        return NULL;
    }
    return cfg;
}

static lora_status config_text(const lora_reader *r, const lora_convert_options *o, const mlx_plan *p, char **out,
                               size_t *size, lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    lora_meta src;
    if (source_fits(r, p, &src)) {
        *out = lora_adir_strndup(a, src.string, src.string_length);
        *size = src.string_length;
        return *out ? LORA_OK : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    }
    json_t *cfg = build(p);
    char *text = cfg ? json_dumps(cfg, JSON_INDENT(4)) : NULL;
    json_decref(cfg);
    *out = text ? lora_adir_strndup(a, text, strlen(text)) : NULL;
    *size = text ? strlen(text) : 0;
    free(text);
    return *out ? LORA_OK : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
}

static lora_status write_dir(const lora_reader *r, const char *output, const lora_convert_options *o,
                             const lora_write_options *wopts, const lora_io *io, lora_adir_tensor *t, uint32_t n,
                             const char *cfg, size_t cfg_size, lora_error *err)
{
    const lora_allocator *a = &o->allocator;
    char *wpath = lora_adir_join(a, output, "adapters.safetensors");
    char *cpath = lora_adir_join(a, output, "adapter_config.json");
    lora_afile *files[2] = {NULL, NULL};
    lora_status st = wpath && cpath ? LORA_OK : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    if (st == LORA_OK) st = lora_adir_prepare_output(output, "mlx", err);
    if (st == LORA_OK) st = lora_adir_stage_safetensors(r, o, wpath, wopts, io, t, n, NULL, 0, &files[0], err);
    if (st == LORA_OK) st = lora_adir_stage_bytes(a, cpath, wopts, io, cfg, cfg_size, &files[1], err);
    if (st == LORA_OK) st = lora_adir_commit(files, 2, err);
    else lora_adir_abort(files, 2);
    lora_mem_free(a, wpath);
    lora_mem_free(a, cpath);
    return st;
}

lora_status lora_export_mlx(const lora_reader *r, const char *output, const lora_convert_options *o,
                            const lora_write_options *wopts, lora_error *err)
{
    return lora_export_mlx_io(r, output, o, wopts, NULL, err);
}

lora_status lora_export_mlx_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                               const lora_write_options *wopts, const lora_io *io, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!r || !output) return FAIL(LORA_E_INVALID_ARGUMENT, "mlx: no reader or output");
    const lora_allocator *a = &o->allocator;
    mlx_plan p;
    memset(&p, 0, sizeof p);
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    lora_adir_tensor *t = NULL;
    uint32_t n = 0;
    char *cfg = NULL;
    size_t cfg_size = 0;
    lora_status st = make_plan(r, o, &p, err);
    if (st == LORA_OK) {
        t = lora_mem_calloc(a, (size_t)fi.module_count * 3, sizeof *t);
        st = t ? tensors(r, a, &p, t, &n, err) : FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    }
    if (st == LORA_OK) st = config_text(r, o, &p, &cfg, &cfg_size, err);
    if (st == LORA_OK) st = lora_adir_fill_dtypes(r, o, t, n, err);
    if (st == LORA_OK) {
        lora_adir_sort_like_reference(t, n);
        st = write_dir(r, output, o, wopts, io, t, n, cfg, cfg_size, err);
    }
    lora_mem_free(a, cfg);
    lora_adir_tensors_free(a, t, n);
    lora_mem_free(a, p.layers);
    lora_mem_free(a, p.rel);
    return st;
}
