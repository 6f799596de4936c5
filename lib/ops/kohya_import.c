/*
 * kohya sd-scripts LoRA (.safetensors) -> .lora.
 *
 * Each module "<name>" is <name>.lora_down.weight (A: [r, in] or
 * [r, cin, kh, kw]), <name>.lora_up.weight (B: [out, r] or [out, r, 1, 1])
 * and an optional 0-dim <name>.alpha; scale = alpha / r, and a missing alpha
 * means alpha = r (networks/merge_lora.py: lora_sd.get(alpha_key, dim)).
 * The module name is kept verbatim (kohya_names.h says why). A and B keep
 * their dtype and bytes; __metadata__ becomes lora.source.config, a JSON
 * object in file order, so the exporter can restore it.
 *
 * 4-D factors make a CONV2D module whatever the base layer is: kohya
 * writes 1x1 factors for some Linear targets too (SD 1.x proj_in/out are
 * 1x1 convolutions, SD 2.x ones are Linear), and sd-scripts squeezes them
 * when the base is Linear. A merge must do the same; the file cannot say.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../io/safetensors.h"
#include "../kernels/ref/fp_scalar.h"
#include "convert.h"
#include "kohya_names.h"

/* How a module's alpha was stored, per lora_down tensor index. */
enum { ALPHA_F32 = 0, ALPHA_F16 = 1, ALPHA_BF16 = 2, ALPHA_ABSENT = 3, NOT_A_MODULE = 4 };
static const char *const alpha_code_name[] = {"F32", "F16", "BF16", "absent"};

typedef struct {
    const lora_convert_options *o;
    lora_writer *w;
    const lora_st_file *f;
    const lora_allocator *a;
    char *key;           /* scratch: "<module><suffix>" */
    char *name;          /* scratch: the module name, NUL-terminated */
    uint8_t *alpha_code; /* per tensor */
    uint32_t modules;
    int drop;
} kctx;

static lora_status tensor_error(lora_error *err, lora_status st, const lora_st_tensor *t, const char *fmt, ...)
    LORA_PRINTF(4, 5);

static lora_status tensor_error(lora_error *err, lora_status st, const lora_st_tensor *t, const char *fmt, ...)
{
    char msg[LORA_ERROR_DETAIL_SIZE], shown[LORA_KOHYA_SHOW];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lora_kohya_show(shown, t->name, t->name_length);
    return lora_error_set(err, st, t->offset, "kohya: tensor '%s': %s (offset %llu)", shown, msg,
                          (unsigned long long)t->offset);
}

static void shape_text(char *out, size_t cap, const uint64_t *shape, uint32_t ndim)
{
    size_t n = (size_t)snprintf(out, cap, "[");
    for (uint32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    if (n < cap) (void)snprintf(out + n, cap - n, "]");
}

/* Index of "<module><suffix>" in the file, or UINT32_MAX. */
static uint32_t find_key(kctx *c, const char *module, size_t mlen, const char *suffix)
{
    size_t slen = strlen(suffix);
    memmove(c->key, module, mlen);
    memcpy(c->key + mlen, suffix, slen + 1);
    return lora_st_find(c->f, c->key, mlen + slen);
}

static int has_lycoris(kctx *c, const char *module, size_t mlen)
{
    for (uint32_t i = 0; i < lora_kohya_lycoris_suffix_count(); i++)
        if (find_key(c, module, mlen, lora_kohya_lycoris_suffix(i)) != UINT32_MAX) return 1;
    return 0;
}

static void warn_dropped(kctx *c, const lora_st_tensor *t, const char *why)
{
    char shown[LORA_KOHYA_SHOW];
    lora_kohya_show(shown, t->name, t->name_length);
    lora_ops_warn(c->o, "kohya: dropped tensor '%s': %s", shown, why);
}

/* First pass: everything that is not plain LoRA is refused by name, or
 * dropped with a warning under LORA_CONVERT_DROP_UNSUPPORTED. */
static lora_status screen_keys(kctx *c, lora_error *err)
{
    static const char dora_why[] =
        "LyCORIS DoRA: dora_scale rescales W + dW per input column, while .lora's magnitude is PEFT's, per output "
        "row; the two give different weights";
    for (uint32_t i = 0; i < c->f->tensor_count; i++) {
        const lora_st_tensor *t = &c->f->tensors[i];
        lora_kohya_key k;
        lora_kohya_classify(t->name, t->name_length, &k);
        char why[160] = "";
        lora_status st = LORA_E_UNSUPPORTED_ADAPTER;
        switch (k.kind) {
        case LORA_KOHYA_KEY_DOWN:
        case LORA_KOHYA_KEY_UP:
        case LORA_KOHYA_KEY_ALPHA: continue;
        case LORA_KOHYA_KEY_DORA_SCALE:
            if (!c->drop) return tensor_error(err, st, t, "%s; not convertible exactly", dora_why);
            warn_dropped(c, t, "LyCORIS DoRA dora_scale (per input column) has no exact .lora form; the module "
                               "stays as plain LoRA");
            continue;
        case LORA_KOHYA_KEY_LYCORIS:
            (void)snprintf(why, sizeof why, "LyCORIS %s, not LoRA (only lora_down/lora_up/alpha convert)", k.what);
            break;
        case LORA_KOHYA_KEY_UNKNOWN:
            (void)snprintf(why, sizeof why, "not a kohya LoRA key (<module>.lora_down.weight, .lora_up.weight, "
                                            ".alpha, with no '.' in <module>)");
            break;
        }
        if (!c->drop) return tensor_error(err, st, t, "%s", why);
        warn_dropped(c, t, why);
    }
    return LORA_OK;
}

static lora_status float_dtype(const lora_st_tensor *t, lora_dtype *out, lora_error *err)
{
    if (lora_st_dtype_to_lora(t->dtype, out) == LORA_OK) return LORA_OK;
    return tensor_error(err, LORA_E_UNSUPPORTED_DTYPE, t, "dtype %s is not F32, F16 or BF16",
                        lora_st_dtype_name(t->dtype));
}

/* Kind, rank and base shape from the shapes of A and B. */
static lora_status module_shape(const lora_st_tensor *down, const lora_st_tensor *up, lora_module_desc *d,
                                lora_error *err)
{
    char ds[96], us[96];
    shape_text(ds, sizeof ds, down->shape, down->ndim);
    shape_text(us, sizeof us, up->shape, up->ndim);
    if (down->ndim != 2 && down->ndim != 4)
        return tensor_error(err, LORA_E_BAD_SHAPE, down, "shape %s: lora_down must be [r, in] or [r, in, kh, kw]", ds);
    if (up->ndim != down->ndim)
        return tensor_error(err, LORA_E_BAD_SHAPE, up, "shape %s does not go with lora_down %s (expected %s)", us, ds,
                            down->ndim == 2 ? "[out, r]" : "[out, r, 1, 1]");
    if (down->shape[0] == 0 || down->shape[0] > UINT32_MAX)
        return tensor_error(err, LORA_E_BAD_RANK, down, "shape %s: rank %llu", ds, (unsigned long long)down->shape[0]);
    for (uint32_t i = 0; i < down->ndim; i++)
        if (down->shape[i] == 0 || up->shape[i] == 0)
            return tensor_error(err, LORA_E_BAD_SHAPE, down, "lora_down %s / lora_up %s: a zero dimension", ds, us);
    if (up->shape[1] != down->shape[0])
        return tensor_error(err, LORA_E_BAD_SHAPE, up, "rank mismatch: lora_down %s has rank %llu, lora_up %s has %llu",
                            ds, (unsigned long long)down->shape[0], us, (unsigned long long)up->shape[1]);
    if (down->ndim == 4 && (up->shape[2] != 1 || up->shape[3] != 1))
        return tensor_error(err, LORA_E_BAD_SHAPE, up, "shape %s: lora_up of a convolution must be [out, r, 1, 1]", us);
    d->kind = down->ndim == 2 ? LORA_KIND_LINEAR : LORA_KIND_CONV2D;
    d->rank = (uint32_t)down->shape[0];
    d->base_ndim = down->ndim;
    d->base_shape[0] = up->shape[0];
    for (uint32_t i = 1; i < down->ndim; i++) d->base_shape[i] = down->shape[i];
    return LORA_OK;
}

static float alpha_value(lora_dtype dt, const uint8_t *p)
{
    switch (dt) {
    case LORA_DTYPE_F16: return lora_bits_to_f32(lora_f16_bits_to_f32_bits(lora_fmt_rd16(p)));
    case LORA_DTYPE_BF16: return lora_bits_to_f32(lora_bf16_bits_to_f32_bits(lora_fmt_rd16(p)));
    case LORA_DTYPE_F32:
    case LORA_DTYPE_Q8_0:
    case LORA_DTYPE_Q4_0:
    case LORA_DTYPE_NF4: break;
    }
    return lora_bits_to_f32(lora_fmt_rd32(p));
}

static lora_status read_alpha(kctx *c, uint32_t di, size_t mlen, lora_module_desc *d, lora_error *err)
{
    uint32_t ai = find_key(c, c->f->tensors[di].name, mlen, LORA_KOHYA_SUFFIX_ALPHA);
    if (ai == UINT32_MAX) {
        d->alpha = (float)d->rank;
        c->alpha_code[di] = ALPHA_ABSENT;
        return LORA_OK;
    }
    const lora_st_tensor *t = &c->f->tensors[ai];
    lora_dtype dt;
    LORA_FORWARD_IF_ERROR(float_dtype(t, &dt, err));
    if (t->ndim != 0) {
        char s[96];
        shape_text(s, sizeof s, t->shape, t->ndim);
        return tensor_error(err, LORA_E_BAD_SHAPE, t, "alpha must be a 0-dim scalar, not shape %s", s);
    }
    float v = alpha_value(dt, t->data);
    if ((lora_f32_to_bits(v) & 0x7f800000u) == 0x7f800000u)
        return tensor_error(err, LORA_E_BAD_ALPHA, t, "alpha is not finite (%g)", (double)v);
    if (v == 0.0f) {
        char shown[LORA_KOHYA_SHOW];
        lora_kohya_show(shown, t->name, t->name_length);
        lora_ops_warn(c->o, "kohya: tensor '%s': alpha 0 kept as 0 (scale 0, as merge_lora.py and ComfyUI apply it; "
                            "sd-scripts' network loader would use alpha = rank %u)", shown, d->rank);
    }
    d->alpha = v;
    c->alpha_code[di] = dt == LORA_DTYPE_F16 ? ALPHA_F16 : dt == LORA_DTYPE_BF16 ? ALPHA_BF16 : ALPHA_F32;
    return LORA_OK;
}

static lora_status add_factor(kctx *c, const lora_st_tensor *t, lora_dtype dt, uint32_t *index, lora_error *err)
{
    lora_error e;
    lora_error_clear(&e);
    lora_status st = lora_ops_add_blob(c->w, c->o, dt, t->ndim, t->shape, t->data, (size_t)t->size, 0, index, &e);
    if (st != LORA_OK) return tensor_error(err, st, t, "%s", e.detail);
    return LORA_OK;
}

static lora_status import_module(kctx *c, uint32_t di, size_t mlen, lora_error *err)
{
    const lora_st_tensor *down = &c->f->tensors[di];
    uint32_t ui = find_key(c, down->name, mlen, LORA_KOHYA_SUFFIX_UP);
    if (ui == UINT32_MAX) return tensor_error(err, LORA_E_BAD_HEADER, down, "no matching lora_up.weight");
    const lora_st_tensor *up = &c->f->tensors[ui];
    lora_dtype dd, ud;
    LORA_FORWARD_IF_ERROR(float_dtype(down, &dd, err));
    LORA_FORWARD_IF_ERROR(float_dtype(up, &ud, err));
    lora_module_desc d;
    memset(&d, 0, sizeof d);
    LORA_FORWARD_IF_ERROR(module_shape(down, up, &d, err));
    LORA_FORWARD_IF_ERROR(read_alpha(c, di, mlen, &d, err));
    LORA_FORWARD_IF_ERROR(add_factor(c, down, dd, &d.blob_a, err));
    LORA_FORWARD_IF_ERROR(add_factor(c, up, ud, &d.blob_b, err));
    memcpy(c->name, down->name, mlen);
    c->name[mlen] = '\0';
    d.name = c->name;
    d.scaling = LORA_SCALING_ALPHA_OVER_RANK;
    d.blob_magnitude = LORA_NO_BLOB;
    d.blob_bias = LORA_NO_BLOB;
    lora_status st = lora_writer_add_module(c->w, &d, NULL);
    if (st != LORA_OK)
        return tensor_error(err, st, down, "cannot add module: %s", lora_status_message(st));
    c->modules++;
    return LORA_OK;
}

/* Second pass: one module per lora_down; every lora_up and alpha must
 * belong to one (or to a LyCORIS module being dropped). */
static lora_status import_modules(kctx *c, lora_error *err)
{
    for (uint32_t i = 0; i < c->f->tensor_count; i++) {
        const lora_st_tensor *t = &c->f->tensors[i];
        lora_kohya_key k;
        lora_kohya_classify(t->name, t->name_length, &k);
        if (k.kind != LORA_KOHYA_KEY_DOWN && k.kind != LORA_KOHYA_KEY_UP && k.kind != LORA_KOHYA_KEY_ALPHA) continue;
        if (c->drop && has_lycoris(c, t->name, k.module_length)) {
            warn_dropped(c, t, "part of a LyCORIS module");
            continue;
        }
        if (k.kind == LORA_KOHYA_KEY_DOWN) {
            LORA_FORWARD_IF_ERROR(import_module(c, i, k.module_length, err));
        } else if (find_key(c, t->name, k.module_length, LORA_KOHYA_SUFFIX_DOWN) == UINT32_MAX) {
            return tensor_error(err, LORA_E_BAD_HEADER, t, "no matching lora_down.weight");
        }
    }
    return LORA_OK;
}

static lora_status json_fail(lora_error *err)
{
    return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya: out of memory building JSON");
}

/* Set `key` to the compact JSON text of `v` (which is released). */
static lora_status set_json(kctx *c, const char *key, json_t *v, lora_error *err)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    if (!s) return json_fail(err);
    lora_status st = lora_writer_set_string(c->w, key, s, strlen(s));
    free(s);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "kohya: cannot set metadata '%s'", key);
    return LORA_OK;
}

static lora_status set_source(kctx *c, lora_error *err)
{
    lora_status st = lora_writer_set_string(c->w, LORA_META_SOURCE_FORMAT, "kohya", 5);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "kohya: cannot set metadata");
    json_t *cfg = json_object();
    for (uint32_t i = 0; cfg && i < c->f->meta_count; i++) {
        const lora_st_meta *m = &c->f->meta[i];
        json_t *v = json_stringn(m->value, m->value_length);
        if (!v || json_object_set_new(cfg, m->key, v) != 0) {
            json_decref(cfg);
            return json_fail(err);
        }
    }
    return set_json(c, LORA_META_SOURCE_CONFIG, cfg, err);
}

/* The alpha record of kohya_names.h, when some alpha is not an F32 scalar. */
static lora_status set_alpha_record(kctx *c, lora_error *err)
{
    uint32_t count[4] = {0, 0, 0, 0};
    for (uint32_t i = 0; i < c->f->tensor_count; i++)
        if (c->alpha_code[i] < NOT_A_MODULE) count[c->alpha_code[i]]++;
    unsigned def = ALPHA_F32;
    if (count[ALPHA_F16] > count[def]) def = ALPHA_F16;
    if (count[ALPHA_BF16] > count[def]) def = ALPHA_BF16;
    if (def == ALPHA_F32 && count[ALPHA_F32] == c->modules) return LORA_OK;
    json_t *rec = json_object(), *mods = json_object();
    int bad = !rec || !mods || json_object_set_new(rec, "dtype", json_string(alpha_code_name[def])) != 0;
    for (uint32_t i = 0; !bad && i < c->f->tensor_count; i++) {
        unsigned code = c->alpha_code[i];
        if (code >= NOT_A_MODULE || code == def) continue;
        size_t mlen = c->f->tensors[i].name_length - (sizeof LORA_KOHYA_SUFFIX_DOWN - 1);
        memcpy(c->name, c->f->tensors[i].name, mlen);
        c->name[mlen] = '\0';
        bad = json_object_set_new(mods, c->name, json_string(alpha_code_name[code])) != 0;
    }
    if (!bad) {
        bad = json_object_set_new(rec, "modules", mods) != 0;
        mods = NULL;
    }
    json_decref(mods);
    if (bad) {
        json_decref(rec);
        return json_fail(err);
    }
    return set_json(c, LORA_KOHYA_META_ALPHA, rec, err);
}

static lora_status run(kctx *c, const char *input, lora_error *err)
{
    size_t longest = 0;
    for (uint32_t i = 0; i < c->f->tensor_count; i++)
        if (c->f->tensors[i].name_length > longest) longest = c->f->tensors[i].name_length;
    /* Room for the module part of any key plus the longest suffix looked up. */
    c->key = lora_mem_alloc(c->a, longest + 32);
    c->name = lora_mem_alloc(c->a, longest + 1);
    c->alpha_code = lora_mem_alloc(c->a, c->f->tensor_count ? c->f->tensor_count : 1);
    if (!c->key || !c->name || !c->alpha_code)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya: out of memory");
    memset(c->alpha_code, NOT_A_MODULE, c->f->tensor_count);
    LORA_FORWARD_IF_ERROR(screen_keys(c, err));
    LORA_FORWARD_IF_ERROR(import_modules(c, err));
    if (c->modules == 0)
        return lora_error_set(err, LORA_E_UNKNOWN_FORMAT, LORA_NO_OFFSET,
                              "kohya: %s holds no LoRA module (<module>.lora_down.weight + .lora_up.weight)", input);
    LORA_FORWARD_IF_ERROR(set_source(c, err));
    return set_alpha_record(c, err);
}

lora_status lora_import_kohya(const char *input, const lora_convert_options *o, lora_writer *w, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!input || !w) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "kohya: NULL argument");
    lora_st_options so;
    memset(&so, 0, sizeof so);
    so.allocator = o->allocator;
    lora_st_file *f = NULL;
    LORA_FORWARD_IF_ERROR(lora_st_open(input, &so, &f, err));
    kctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.w = w;
    c.f = f;
    c.a = &o->allocator;
    c.drop = (o->flags & LORA_CONVERT_DROP_UNSUPPORTED) != 0;
    lora_status st = run(&c, input, err);
    lora_mem_free(c.a, c.key);
    lora_mem_free(c.a, c.name);
    lora_mem_free(c.a, c.alpha_code);
    lora_st_free(f);
    return st;
}
