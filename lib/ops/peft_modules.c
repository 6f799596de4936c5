/*
 * peft_modules.c - PEFT-layout tensors grouped into .lora modules: shapes,
 * kind, rank, alpha and scaling rule per module, exactly as PEFT would
 * build the layers (peft:src/peft/tuners/lora/layer.py update_layer,
 * model.py _create_and_replace), and every tensor's bytes kept.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../kernels/kernels.h"
#include "peft_import.h"

typedef struct {
    const char *fmt;
    const lora_st_file *st;
    const lora_convert_options *o;
    lora_writer *w;
    uint32_t default_alpha;   /* without a config: rank of the first lora_B key */
    int warned_alpha;
} pk_ctx;

/* One module's tensors by role (NULL = absent). */
typedef struct {
    const char *name;
    const lora_pk_entry *e;   /* any entry of the group (config, skip) */
    const lora_st_tensor *t[LORA_PK_ROLES_];
} pk_group;

#define FAIL(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

static int by_module_role(const void *pa, const void *pb)
{
    const lora_pk_entry *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c) return c;
    return (int)a->role - (int)b->role;
}

void lora_pk_entries_free(const lora_allocator *a, lora_pk_entry *e, uint32_t n)
{
    if (!e) return;
    for (uint32_t i = 0; i < n; i++) lora_mem_free(a, e[i].name);
    lora_mem_free(a, e);
}

lora_status lora_pk_set_meta(lora_writer *w, const char *key, const char *value, size_t len, lora_error *err)
{
    lora_status st = lora_writer_set_string(w, key, value, len);
    return st == LORA_OK ? st : FAIL(st, "metadata '%s': %s", key, lora_status_message(st));
}

lora_status lora_pk_open_safetensors(const char *path, const lora_convert_options *o, lora_st_file **out,
                                     lora_error *err)
{
    lora_st_options so;
    memset(&so, 0, sizeof so);
    so.allocator = o->allocator;
    return lora_st_open(path, &so, out, err);
}

/* ---- tensors to blobs ---- */

static lora_status add_blob(pk_ctx *c, const lora_st_tensor *t, uint32_t ndim, const uint64_t *shape,
                            uint32_t *index, lora_error *err)
{
    lora_dtype d;
    if (lora_st_dtype_to_lora(t->dtype, &d) != LORA_OK)
        return FAIL(LORA_E_UNSUPPORTED_DTYPE, "%s: tensor '%s': dtype %s is not F32, F16 or BF16", c->fmt, t->name,
                    lora_st_dtype_name(t->dtype));
    if (t->size > SIZE_MAX) return FAIL(LORA_E_LIMIT_EXCEEDED, "%s: tensor '%s' too large", c->fmt, t->name);
    lora_status st = lora_ops_add_blob(c->w, c->o, d, ndim, shape, t->data, (size_t)t->size, 0, index, err);
    if (st != LORA_OK && err) {
        char inner[LORA_ERROR_DETAIL_SIZE];
        memcpy(inner, err->detail, sizeof inner);
        lora_error_set(err, st, t->offset, "%s: tensor '%s': %s", c->fmt, t->name, inner);
    }
    return st;
}

static lora_status check_dims(pk_ctx *c, const lora_st_tensor *t, lora_error *err)
{
    if (t->ndim < 1 || t->ndim > LORA_MAX_DIMS)
        return FAIL(LORA_E_BAD_SHAPE, "%s: tensor '%s': %u dimensions (a .lora blob has 1 to %d)", c->fmt, t->name,
                    t->ndim, LORA_MAX_DIMS);
    for (uint32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return FAIL(LORA_E_BAD_SHAPE, "%s: tensor '%s': dimension %u is 0", c->fmt, t->name, i);
    return LORA_OK;
}

static lora_status scalar_value(pk_ctx *c, const lora_st_tensor *t, float *out, lora_error *err)
{
    if (t->numel != 1) return FAIL(LORA_E_BAD_SHAPE, "%s: tensor '%s': alpha must hold one value", c->fmt, t->name);
    if (t->dtype == LORA_ST_F32) {
        memcpy(out, t->data, 4);
        return LORA_OK;
    }
    if (t->dtype != LORA_ST_F16 && t->dtype != LORA_ST_BF16)
        return FAIL(LORA_E_UNSUPPORTED_DTYPE, "%s: tensor '%s': alpha dtype %s", c->fmt, t->name,
                    lora_st_dtype_name(t->dtype));
    uint16_t h;
    memcpy(&h, t->data, 2);
    const lora_kernels *k = lora_kernels_get();
    (t->dtype == LORA_ST_F16 ? k->f16_to_f32 : k->bf16_to_f32)(&h, out, 1);
    return LORA_OK;
}

/* ---- one module ---- */

typedef struct {
    lora_module_desc d;
    const lora_st_tensor *a, *b;
} pk_module;

static lora_status shapes(pk_ctx *c, const pk_group *g, pk_module *m, lora_error *err)
{
    const lora_st_tensor *a = m->a, *b = m->b;
    int emb = g->t[LORA_PK_EMB_A] != NULL;
    LORA_FORWARD_IF_ERROR(check_dims(c, a, err));
    LORA_FORWARD_IF_ERROR(check_dims(c, b, err));
    if (a->ndim != b->ndim || a->ndim < 2 || (emb && a->ndim != 2))
        return FAIL(LORA_E_BAD_SHAPE, "%s: module '%s': A has %u dimensions and B %u (a legacy merged-QKV file?)",
                    c->fmt, g->name, a->ndim, b->ndim);
    if (b->shape[1] != a->shape[0])
        return FAIL(LORA_E_BAD_SHAPE, "%s: module '%s': A has rank %llu but B has %llu columns", c->fmt, g->name,
                    (unsigned long long)a->shape[0], (unsigned long long)b->shape[1]);
    for (uint32_t i = 2; i < b->ndim; i++)
        if (b->shape[i] != 1)
            return FAIL(LORA_E_BAD_SHAPE, "%s: module '%s': conv B kernel is not 1x1", c->fmt, g->name);
    if (a->shape[0] > UINT32_MAX) return FAIL(LORA_E_BAD_RANK, "%s: module '%s': rank too large", c->fmt, g->name);
    lora_module_desc *d = &m->d;
    d->rank = (uint32_t)a->shape[0];
    d->base_ndim = a->ndim;
    if (emb) {
        d->kind = LORA_KIND_EMBEDDING;
        d->base_shape[0] = a->shape[1];
        d->base_shape[1] = b->shape[0];
    } else if (a->ndim == 2) {
        const lora_peft_config *cfg = g->e->cfg;
        d->kind = LORA_KIND_LINEAR;
        d->flags = cfg && cfg->fan_in_fan_out ? LORA_MODULE_FAN_IN_FAN_OUT : 0;
        d->base_shape[d->flags ? 1 : 0] = b->shape[0];
        d->base_shape[d->flags ? 0 : 1] = a->shape[1];
    } else {
        d->kind = a->ndim == 3 ? LORA_KIND_CONV1D : a->ndim == 4 ? LORA_KIND_CONV2D : LORA_KIND_CONV3D;
        d->base_shape[0] = b->shape[0];
        for (uint32_t i = 1; i < a->ndim; i++) d->base_shape[i] = a->shape[i];
    }
    return LORA_OK;
}

static lora_status rank_and_alpha(pk_ctx *c, const pk_group *g, pk_module *m, lora_error *err)
{
    const lora_peft_config *cfg = g->e->cfg;
    const char *pname = g->name + g->e->cfg_skip;
    double alpha;
    m->d.scaling = LORA_SCALING_ALPHA_OVER_RANK;
    if (cfg) {
        int from_pattern = 0;
        uint32_t want = lora_peft_config_rank(cfg, pname, &from_pattern);
        if (want != m->d.rank)
            return FAIL(LORA_E_BAD_SHAPE, "%s: module '%s': tensors have rank %u but the config's %s gives %u", c->fmt,
                        g->name, m->d.rank, from_pattern ? "rank_pattern" : "r", want);
        alpha = lora_peft_config_alpha(cfg, pname);
        if (cfg->use_rslora) m->d.scaling = LORA_SCALING_ALPHA_OVER_SQRT_RANK;
    } else if (g->t[LORA_PK_ALPHA]) {
        float f;
        LORA_FORWARD_IF_ERROR(scalar_value(c, g->t[LORA_PK_ALPHA], &f, err));
        alpha = f;
    } else {
        if (!c->warned_alpha)
            lora_ops_warn(c->o, "%s: no PEFT config and no alpha: lora_alpha = %u (the rank of the first lora_B), as "
                                "diffusers assumes", c->fmt, c->default_alpha);
        c->warned_alpha = 1;
        alpha = c->default_alpha;
    }
    float fa = (float)alpha;
    if (!isfinite(fa))
        return FAIL(LORA_E_BAD_ALPHA, "%s: module '%s': alpha %g is not a finite binary32", c->fmt, g->name, alpha);
    m->d.alpha = fa;
    return LORA_OK;
}

/* PEFT ignores a magnitude or bias its config does not ask for, and
 * invents one it asks for but cannot find: either way the file and the
 * config disagree about the math. */
static lora_status variants_agree(pk_ctx *c, const pk_group *g, lora_error *err)
{
    const lora_peft_config *cfg = g->e->cfg;
    if (!cfg) return LORA_OK;
    int mag = g->t[LORA_PK_MAG] != NULL, bias = g->t[LORA_PK_BIAS] != NULL;
    if (mag && !cfg->use_dora)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "%s: module '%s' has lora_magnitude_vector but use_dora is false",
                    c->fmt, g->name);
    if (!mag && cfg->use_dora)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "%s: use_dora is true but module '%s' has no lora_magnitude_vector",
                    c->fmt, g->name);
    if (bias && !cfg->lora_bias)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "%s: module '%s' has lora_B.bias but lora_bias is false", c->fmt,
                    g->name);
    const char *pname = g->name + g->e->cfg_skip;
    if (lora_peft_config_targets(cfg, pname) == 0)
        lora_ops_warn(c->o, "%s: module '%s' is not selected by target_modules/exclude_modules", c->fmt, g->name);
    if (lora_peft_config_layer_ok(cfg, pname) == 0)
        lora_ops_warn(c->o, "%s: module '%s' is outside layers_to_transform", c->fmt, g->name);
    return LORA_OK;
}

/* DoRA magnitude: [out] (linear), [dim] (embedding), [1, out, 1..] (conv,
 * stored 1-D and restored on export). Bias: [out]. */
static lora_status add_extras(pk_ctx *c, const pk_group *g, pk_module *m, lora_error *err)
{
    uint64_t out = m->b->shape[0];
    const lora_st_tensor *mag = g->t[LORA_PK_MAG], *bias = g->t[LORA_PK_BIAS];
    m->d.blob_magnitude = m->d.blob_bias = LORA_NO_BLOB;
    if (mag) {
        int conv = m->d.kind >= LORA_KIND_CONV1D;
        int ok = mag->ndim == 1 && mag->shape[0] == out;
        if (conv && mag->ndim == m->d.base_ndim && mag->shape[0] == 1 && mag->shape[1] == out) {
            ok = 1;
            for (uint32_t i = 2; i < mag->ndim; i++) ok &= mag->shape[i] == 1;
        }
        if (!ok)
            return FAIL(LORA_E_BAD_SHAPE, "%s: module '%s': lora_magnitude_vector shape does not match %llu outputs",
                        c->fmt, g->name, (unsigned long long)out);
        LORA_FORWARD_IF_ERROR(add_blob(c, mag, 1, &out, &m->d.blob_magnitude, err));
    }
    if (bias) {
        if (m->d.kind == LORA_KIND_EMBEDDING || bias->ndim != 1 || bias->shape[0] != out)
            return FAIL(LORA_E_BAD_SHAPE, "%s: module '%s': lora_B.bias must be [%llu] on a non-embedding module",
                        c->fmt, g->name, (unsigned long long)out);
        LORA_FORWARD_IF_ERROR(add_blob(c, bias, 1, &out, &m->d.blob_bias, err));
    }
    return LORA_OK;
}

static lora_status add_module(pk_ctx *c, const pk_group *g, lora_error *err)
{
    pk_module m;
    memset(&m, 0, sizeof m);
    int lin = g->t[LORA_PK_A] || g->t[LORA_PK_B], emb = g->t[LORA_PK_EMB_A] || g->t[LORA_PK_EMB_B];
    if (lin && emb)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "%s: module '%s' has both lora_A/B and lora_embedding_A/B", c->fmt,
                    g->name);
    m.a = g->t[emb ? LORA_PK_EMB_A : LORA_PK_A];
    m.b = g->t[emb ? LORA_PK_EMB_B : LORA_PK_B];
    if (!m.a && !m.b)
        return FAIL(LORA_E_NOT_FOUND, "%s: module '%s' has a magnitude, bias or alpha but no lora_A/lora_B", c->fmt,
                    g->name);
    if (!m.a || !m.b)
        return FAIL(LORA_E_NOT_FOUND, "%s: module '%s': lora_%s without lora_%s", c->fmt, g->name, m.a ? "A" : "B",
                    m.a ? "B" : "A");
    LORA_FORWARD_IF_ERROR(shapes(c, g, &m, err));
    LORA_FORWARD_IF_ERROR(rank_and_alpha(c, g, &m, err));
    LORA_FORWARD_IF_ERROR(variants_agree(c, g, err));
    m.d.name = g->name;
    LORA_FORWARD_IF_ERROR(add_blob(c, m.a, m.a->ndim, m.a->shape, &m.d.blob_a, err));
    LORA_FORWARD_IF_ERROR(add_blob(c, m.b, m.b->ndim, m.b->shape, &m.d.blob_b, err));
    LORA_FORWARD_IF_ERROR(add_extras(c, g, &m, err));
    lora_status st = lora_writer_add_module(c->w, &m.d, NULL);
    if (st != LORA_OK) return FAIL(st, "%s: module '%s': %s", c->fmt, g->name, lora_status_message(st));
    return LORA_OK;
}

/* ---- replacement tensors ---- */

static int saved_module(const lora_peft_config *cfg, const char *name)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < cfg->save_count; i++) {
        size_t l = strlen(cfg->modules_to_save[i]);
        /* "<...>.lm_head.weight" belongs to modules_to_save entry "lm_head". */
        for (const char *p = strstr(name, cfg->modules_to_save[i]); p; p = strstr(p + 1, cfg->modules_to_save[i]))
            if ((p == name || p[-1] == '.') && (size_t)(p - name) + l < nl && p[l] == '.') return 1;
    }
    return 0;
}

static lora_status add_tensor(pk_ctx *c, const lora_pk_entry *e, lora_error *err)
{
    const lora_st_tensor *t = &c->st->tensors[e->tensor];
    LORA_FORWARD_IF_ERROR(check_dims(c, t, err));
    /* Informative; a hostile config with a huge list only loses the check. */
    if (e->cfg && e->cfg->save_count <= 4096) {
        size_t l = strlen(e->name);
        int bias = l >= 5 && strcmp(e->name + l - 5, ".bias") == 0;
        if (!saved_module(e->cfg, e->name + e->cfg_skip) && !(bias && e->cfg->bias_trained))
            lora_ops_warn(c->o, "%s: tensor '%s' is kept as a replacement, though neither modules_to_save nor bias "
                                "names it", c->fmt, e->name);
    }
    uint32_t idx;
    LORA_FORWARD_IF_ERROR(add_blob(c, t, t->ndim, t->shape, &idx, err));
    lora_status st = lora_writer_add_tensor(c->w, e->name, idx);
    if (st != LORA_OK) return FAIL(st, "%s: tensor '%s': %s", c->fmt, e->name, lora_status_message(st));
    return LORA_OK;
}

/* ---- driver ---- */

static void find_default_alpha(pk_ctx *c, const lora_pk_entry *e, uint32_t n)
{
    const char *first = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].cfg || (e[i].role != LORA_PK_B && e[i].role != LORA_PK_EMB_B)) continue;
        const lora_st_tensor *t = &c->st->tensors[e[i].tensor];
        if (t->ndim < 2 || t->shape[1] == 0 || t->shape[1] > UINT32_MAX) continue;
        if (!first || strcmp(t->name, first) < 0) {
            first = t->name;
            c->default_alpha = (uint32_t)t->shape[1];
        }
    }
}

static lora_status one_group(pk_ctx *c, const lora_pk_entry *e, uint32_t from, uint32_t to, lora_error *err)
{
    /* Modules and replacement tensors are separate namespaces in .lora;
     * in the sorted group the tensor (role OTHER) comes last. */
    if (e[to - 1].role == LORA_PK_OTHER) {
        if (to - from > 1 && e[to - 2].role == LORA_PK_OTHER)
            return FAIL(LORA_E_DUPLICATE_NAME, "%s: tensor '%s' twice (with and without the prefix?)", c->fmt,
                        e[to - 1].name);
        LORA_FORWARD_IF_ERROR(add_tensor(c, &e[to - 1], err));
        if (--to == from) return LORA_OK;
    }
    pk_group g;
    memset(&g, 0, sizeof g);
    g.name = e[from].name;
    g.e = &e[from];
    for (uint32_t i = from; i < to; i++) {
        if (g.t[e[i].role])
            return FAIL(LORA_E_DUPLICATE_NAME, "%s: module '%s': tensors '%s' and '%s' play the same role", c->fmt,
                        g.name, g.t[e[i].role]->name, c->st->tensors[e[i].tensor].name);
        if (e[i].cfg != g.e->cfg)
            return FAIL(LORA_E_INVALID_ARGUMENT, "%s: module '%s' under two configs", c->fmt, g.name);
        g.t[e[i].role] = &c->st->tensors[e[i].tensor];
    }
    return add_module(c, &g, err);
}

lora_status lora_pk_import(const char *fmt, const lora_st_file *st, lora_pk_entry *e, uint32_t n,
                           const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    pk_ctx c = {fmt, st, o, w, 0, 0};
    for (uint32_t i = 0; i < n; i++)
        if (e[i].role == LORA_PK_BAD)
            return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "%s: tensor '%s' looks like LoRA but its layout is unknown", fmt,
                        st->tensors[e[i].tensor].name);
    find_default_alpha(&c, e, n);
    if (n > 1) qsort(e, n, sizeof *e, by_module_role);
    uint32_t modules = 0;
    for (uint32_t i = 0; i < n;) {
        uint32_t j = i + 1;
        while (j < n && strcmp(e[j].name, e[i].name) == 0) j++;
        LORA_FORWARD_IF_ERROR(one_group(&c, e, i, j, err));
        modules += e[i].role != LORA_PK_OTHER;
        i = j;
    }
    if (modules == 0) return FAIL(LORA_E_UNKNOWN_FORMAT, "%s: no LoRA tensors (lora_A/lora_B) found", fmt);
    return LORA_OK;
}
