/*
 * .lora -> kohya sd-scripts LoRA (one .safetensors).
 *
 * Per module: <kohya name>.lora_down.weight = A, .lora_up.weight = B and a
 * 0-dim .alpha with alpha / r == the module's scale in binary32. Names map
 * as kohya_names.h says. Tensors are laid out in the safetensors reference
 * writer's order (dtype descending, then name), so the data section is the
 * one sd-scripts' own save would produce and a restored sshs_model_hash
 * still describes it. What kohya cannot hold (DoRA magnitudes, LoRA biases,
 * replacement tensors, embeddings, conv1d/3d, fan_in_fan_out) is refused,
 * or dropped with a warning under LORA_CONVERT_DROP_UNSUPPORTED.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../io/safetensors.h"
#include "../kernels/kernels.h"
#include "../kernels/ref/fp_scalar.h"
#include "convert.h"
#include "kohya_names.h"

typedef struct {
    char *name;               /* the kohya key */
    lora_dtype dtype;         /* as written */
    uint32_t ndim;
    uint64_t shape[LORA_MAX_DIMS];
    uint64_t size;
    uint32_t blob;            /* LORA_NO_BLOB: an alpha, bytes in `scalar` */
    uint8_t scalar[4];
    const char *module;       /* the .lora module name, for messages */
} kentry;

typedef struct {
    const lora_reader *r;
    const lora_convert_options *o;
    const lora_allocator *a;
    kentry *e;
    uint32_t count;
    json_t *alpha_rec;        /* kohya.alpha, or NULL */
    int drop, two_te;
    uint32_t modules, rank;   /* exported modules; their rank if uniform */
    float alpha;              /* their alpha if uniform */
    int rank_mixed, alpha_mixed;
} xctx;

static lora_status module_error(lora_error *err, lora_status st, const char *module, const char *fmt, ...)
    LORA_PRINTF(4, 5);

static lora_status module_error(lora_error *err, lora_status st, const char *module, const char *fmt, ...)
{
    char msg[LORA_ERROR_DETAIL_SIZE], shown[LORA_KOHYA_SHOW];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lora_kohya_show(shown, module, strlen(module));
    return lora_error_set(err, st, LORA_NO_OFFSET, "kohya export: module '%s': %s", shown, msg);
}

/* What kohya cannot hold; *skip = 1 when the whole module is dropped. */
static lora_status check_module(xctx *c, lora_module *m, int *skip, lora_error *err)
{
    char shown[LORA_KOHYA_SHOW];
    lora_kohya_show(shown, m->name, strlen(m->name));
    const char *why = NULL;
    if (m->kind != LORA_KIND_LINEAR && m->kind != LORA_KIND_CONV2D)
        why = m->kind == LORA_KIND_EMBEDDING ? "an embedding: kohya LoRA holds linear and conv2d modules only"
                                             : "conv1d/conv3d: kohya LoRA holds linear and conv2d modules only";
    else if (m->flags & LORA_MODULE_FAN_IN_FAN_OUT)
        why = "fan_in_fan_out (base stored [in, out], GPT-2 Conv1D): kohya has no such flag";
    *skip = why != NULL;
    if (why) {
        if (!c->drop) return module_error(err, LORA_E_UNSUPPORTED_ADAPTER, m->name, "%s", why);
        lora_ops_warn(c->o, "kohya export: dropped module '%s' (its A and B): %s", shown, why);
        return LORA_OK;
    }
    if (m->blob_magnitude != LORA_NO_BLOB) {
        static const char dora[] = "DoRA magnitude (PEFT, per output row) has no kohya form: LyCORIS dora_scale "
                                   "normalises per input column and gives other weights";
        if (!c->drop) return module_error(err, LORA_E_UNSUPPORTED_ADAPTER, m->name, "%s", dora);
        lora_ops_warn(c->o, "kohya export: dropped the DoRA magnitude of module '%s' (exported as plain LoRA): %s",
                      shown, dora);
        m->blob_magnitude = LORA_NO_BLOB;
    }
    if (m->blob_bias != LORA_NO_BLOB) {
        static const char bias[] = "a LoRA bias (lora_B.bias) has no kohya form";
        if (!c->drop) return module_error(err, LORA_E_UNSUPPORTED_ADAPTER, m->name, "%s", bias);
        lora_ops_warn(c->o, "kohya export: dropped the LoRA bias of module '%s': %s", shown, bias);
        m->blob_bias = LORA_NO_BLOB;
    }
    return LORA_OK;
}

/* kohya stores only alpha; the scale a loader computes is alpha / r. For
 * rsLoRA and explicit scales, find an alpha that gives the scale exactly
 * in binary32. The alphas that do form an interval around s * r, so the
 * rounded product is one whenever any is, except when a tie in the division
 * rounds the other way; two neighbours each side cover that. Some scales
 * have no such alpha at all (x -> x / r can step over a float): refused. */
static lora_status module_alpha(const lora_module *m, float *alpha, lora_error *err)
{
    if (m->scaling == LORA_SCALING_ALPHA_OVER_RANK) {
        *alpha = m->alpha;
        return LORA_OK;
    }
    float r = (float)m->rank;
    float a = m->scale * r;
    float cand[5] = {a, nextafterf(a, INFINITY), nextafterf(a, -INFINITY), 0, 0};
    cand[3] = nextafterf(cand[1], INFINITY);
    cand[4] = nextafterf(cand[2], -INFINITY);
    for (int i = 0; i < 5; i++) {
        if (!isfinite(cand[i])) continue;
        float s = cand[i] / r;
        if (lora_f32_to_bits(s) == lora_f32_to_bits(m->scale)) {
            *alpha = cand[i];
            return LORA_OK;
        }
    }
    return module_error(err, LORA_E_UNSUPPORTED_ADAPTER, m->name,
                        "scale %.9g (%s) is not alpha / %u for any binary32 alpha, and kohya stores only alpha",
                        (double)m->scale, lora_scaling_name(m->scaling), m->rank);
}

/* 1 if `v` survives a round trip through `d`. */
static int representable(float v, lora_dtype d)
{
    uint32_t b = lora_f32_to_bits(v);
    if (d == LORA_DTYPE_F16) return lora_f16_bits_to_f32_bits(lora_f32_bits_to_f16_bits(b)) == b;
    if (d == LORA_DTYPE_BF16) return lora_bf16_bits_to_f32_bits(lora_f32_bits_to_bf16_bits(b)) == b;
    return d == LORA_DTYPE_F32;
}

static const char *record_for(const xctx *c, const char *module)
{
    if (!c->alpha_rec) return NULL;
    const char *v = json_string_value(json_object_get(json_object_get(c->alpha_rec, "modules"), module));
    return v ? v : json_string_value(json_object_get(c->alpha_rec, "dtype"));
}

/* The dtype of a module's alpha: as the source file had it (the importer's
 * record), else --dtype, else F32; F32 whenever the value would change.
 * *absent when the source had no alpha and the value is still rank. */
static lora_dtype alpha_dtype(const xctx *c, const lora_module *m, float alpha, int *absent)
{
    const char *rec = record_for(c, m->name);
    *absent = rec && strcmp(rec, "absent") == 0 && m->scaling == LORA_SCALING_ALPHA_OVER_RANK &&
              alpha == (float)m->rank;
    lora_dtype d = LORA_DTYPE_F32;
    if (c->o->dtype >= 0) d = (lora_dtype)c->o->dtype;
    else if (rec && strcmp(rec, "F16") == 0) d = LORA_DTYPE_F16;
    else if (rec && strcmp(rec, "BF16") == 0) d = LORA_DTYPE_BF16;
    return representable(alpha, d) ? d : LORA_DTYPE_F32;
}

static kentry *new_entry(xctx *c, const char *kname, size_t klen, const char *suffix, const char *module)
{
    kentry *e = &c->e[c->count];
    memset(e, 0, sizeof *e);
    size_t slen = strlen(suffix);
    e->name = lora_mem_alloc(c->a, klen + slen + 1);
    if (!e->name) return NULL;
    memcpy(e->name, kname, klen);
    memcpy(e->name + klen, suffix, slen + 1);
    e->module = module;
    c->count++;
    return e;
}

static lora_status add_factor(xctx *c, const char *kname, size_t klen, const char *suffix, const lora_module *m,
                              uint32_t blob, lora_error *err)
{
    lora_blob b;
    lora_status st = lora_reader_blob(c->r, blob, &b);
    if (st != LORA_OK) return module_error(err, st, m->name, "no blob %u", blob);
    kentry *e = new_entry(c, kname, klen, suffix, m->name);
    if (!e) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    /* Quantized blobs are written dequantized: F32 holds their values exactly. */
    e->dtype = c->o->dtype >= 0 ? (lora_dtype)c->o->dtype : b.dtype <= LORA_DTYPE_BF16 ? b.dtype : LORA_DTYPE_F32;
    e->ndim = b.ndim;
    memcpy(e->shape, b.shape, sizeof e->shape);
    e->size = b.numel * (e->dtype == LORA_DTYPE_F32 ? 4u : 2u); /* numel fits: the reader checked raw_size */
    e->blob = blob;
    return LORA_OK;
}

static void note_uniform(xctx *c, const lora_module *m, float alpha)
{
    if (c->modules == 0) {
        c->rank = m->rank;
        c->alpha = alpha;
    }
    c->rank_mixed |= c->rank != m->rank;
    c->alpha_mixed |= lora_f32_to_bits(c->alpha) != lora_f32_to_bits(alpha);
    c->modules++;
}

static lora_status plan_module(xctx *c, uint32_t i, lora_error *err)
{
    lora_module m;
    lora_status st = lora_reader_module(c->r, i, &m);
    if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "kohya export: no module %u", i);
    int skip;
    LORA_FORWARD_IF_ERROR(check_module(c, &m, &skip, err));
    if (skip) return LORA_OK;
    float alpha = 0.0f;
    LORA_FORWARD_IF_ERROR(module_alpha(&m, &alpha, err));
    size_t klen = lora_kohya_export_name(m.name, c->two_te, NULL);
    char *kname = lora_mem_alloc(c->a, strlen(m.name) + LORA_KOHYA_NAME_EXTRA);
    if (!kname) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    (void)lora_kohya_export_name(m.name, c->two_te, kname);
    st = add_factor(c, kname, klen, LORA_KOHYA_SUFFIX_DOWN, &m, m.blob_a, err);
    if (st == LORA_OK) st = add_factor(c, kname, klen, LORA_KOHYA_SUFFIX_UP, &m, m.blob_b, err);
    int absent = 0;
    lora_dtype ad = alpha_dtype(c, &m, alpha, &absent);
    if (st == LORA_OK && !absent) {
        kentry *e = new_entry(c, kname, klen, LORA_KOHYA_SUFFIX_ALPHA, m.name);
        if (!e) st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
        else {
            uint32_t bits = lora_f32_to_bits(alpha);
            e->dtype = ad;
            e->blob = LORA_NO_BLOB;
            e->size = ad == LORA_DTYPE_F32 ? 4 : 2;
            if (ad == LORA_DTYPE_F32) lora_fmt_wr32(e->scalar, bits);
            else lora_fmt_wr16(e->scalar, ad == LORA_DTYPE_F16 ? lora_f32_bits_to_f16_bits(bits)
                                                              : lora_f32_bits_to_bf16_bits(bits));
        }
    }
    lora_mem_free(c->a, kname);
    if (st == LORA_OK && alpha == 0.0f) {
        char shown[LORA_KOHYA_SHOW];
        lora_kohya_show(shown, m.name, strlen(m.name));
        lora_ops_warn(c->o, "kohya export: module '%s': alpha 0 written: ComfyUI and merge_lora.py apply scale 0, "
                            "sd-scripts' network loader would read it as alpha = rank", shown);
    }
    if (st == LORA_OK) note_uniform(c, &m, alpha);
    return st;
}

static lora_status check_tensors(xctx *c, uint32_t count, lora_error *err)
{
    for (uint32_t i = 0; i < count; i++) {
        lora_tensor t;
        lora_status st = lora_reader_tensor(c->r, i, &t);
        if (st != LORA_OK) return lora_error_set(err, st, LORA_NO_OFFSET, "kohya export: no tensor %u", i);
        char shown[LORA_KOHYA_SHOW];
        lora_kohya_show(shown, t.name, strlen(t.name));
        static const char why[] = "a replacement tensor (modules_to_save, trained bias) has no kohya LoRA form";
        if (!c->drop)
            return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET, "kohya export: tensor '%s': %s",
                                  shown, why);
        lora_ops_warn(c->o, "kohya export: dropped tensor '%s': %s", shown, why);
    }
    return LORA_OK;
}

/* ---- order ---------------------------------------------------------------- */

typedef int (*cmp_fn)(const xctx *c, uint32_t a, uint32_t b);

static int by_name(const xctx *c, uint32_t a, uint32_t b) { return strcmp(c->e[a].name, c->e[b].name); }

static lora_st_dtype st_dtype(lora_dtype d)
{
    return d == LORA_DTYPE_F16 ? LORA_ST_F16 : d == LORA_DTYPE_BF16 ? LORA_ST_BF16 : LORA_ST_F32;
}

/* The reference writer's order: dtype descending (its enum order, which
 * lora_st_dtype follows), then name. */
static int by_layout(const xctx *c, uint32_t a, uint32_t b)
{
    lora_st_dtype da = st_dtype(c->e[a].dtype), db = st_dtype(c->e[b].dtype);
    if (da != db) return da > db ? -1 : 1;
    return by_name(c, a, b);
}

/* Stable bottom-up merge sort (no qsort: it may allocate behind the
 * caller's allocator). `tmp` holds n entries. */
static void sort_ix(const xctx *c, uint32_t *v, uint32_t *tmp, uint32_t n, cmp_fn cmp)
{
    uint32_t *src = v, *dst = tmp;
    for (uint32_t width = 1; width < n; width *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = cmp(c, src[j], src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != v) memcpy(v, src, (size_t)n * sizeof *v);
}

/* Dots became underscores: two modules can land on one kohya name. */
static lora_status order_entries(xctx *c, uint32_t *order, uint32_t *tmp, lora_error *err)
{
    for (uint32_t i = 0; i < c->count; i++) order[i] = i;
    sort_ix(c, order, tmp, c->count, by_name);
    for (uint32_t i = 1; i < c->count; i++)
        if (by_name(c, order[i - 1], order[i]) == 0) {
            const kentry *x = &c->e[order[i - 1]], *y = &c->e[order[i]];
            char sx[LORA_KOHYA_SHOW], sy[LORA_KOHYA_SHOW];
            lora_kohya_show(sx, x->module, strlen(x->module));
            lora_kohya_show(sy, y->module, strlen(y->module));
            return lora_error_set(err, LORA_E_DUPLICATE_NAME, LORA_NO_OFFSET,
                                  "kohya export: modules '%s' and '%s' map to the same kohya key '%s'", sx, sy,
                                  x->name);
        }
    sort_ix(c, order, tmp, c->count, by_layout);
    return LORA_OK;
}

/* ---- metadata -------------------------------------------------------------- */

/* Python's repr of the float a user would have typed: the shortest digits
 * that give the same binary32, in repr's layout ("16.0", "0.5", "1e-05"). */
static void py_float(float v, char *out, size_t cap)
{
    char buf[48];
    int p = 1;
    for (; p < 9; p++) {
        (void)snprintf(buf, sizeof buf, "%.*e", p - 1, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    (void)snprintf(buf, sizeof buf, "%.*e", p - 1, (double)v);
    int exp10 = atoi(strchr(buf, 'e') + 1);
    if (exp10 < -4 || exp10 >= 16) (void)snprintf(out, cap, "%s", buf);
    else if (p - 1 - exp10 <= 0) (void)snprintf(out, cap, "%.0f.0", (double)v);
    else (void)snprintf(out, cap, "%.*f", p - 1 - exp10, (double)v);
}

typedef struct {
    lora_st_pair pairs[3];
    char dim[24], alpha[48];
    json_t *source;           /* owns the strings of restored pairs */
    lora_st_pair *restored;
    uint32_t count;
} kmeta;

static lora_status restore_source(xctx *c, const lora_meta *cfg, kmeta *km, lora_error *err)
{
    json_error_t je;
    km->source = json_loadb(cfg->string, cfg->string_length, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(km->source))
        return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET,
                              "kohya export: lora.source.config of a kohya source is not a JSON object");
    size_t n = json_object_size(km->source);
    km->restored = lora_mem_calloc(c->a, n ? n : 1, sizeof *km->restored);
    if (!km->restored) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(km->source, key, v) {
        if (!json_is_string(v))
            return lora_error_set(err, LORA_E_BAD_METADATA, LORA_NO_OFFSET,
                                  "kohya export: lora.source.config: value of '%.64s' is not a string, and "
                                  "__metadata__ holds only strings", key);
        km->restored[km->count].key = key;
        km->restored[km->count++].value = json_string_value(v);
    }
    return LORA_OK;
}

/* The source's __metadata__ when it was kohya; else what sd-scripts
 * writes about the network ("Dynamic" when ranks or alphas differ, as
 * resize_lora.py does). */
static lora_status build_meta(xctx *c, kmeta *km, lora_error *err)
{
    lora_meta fmt, cfg;
    if (lora_reader_meta_find(c->r, LORA_META_SOURCE_FORMAT, &fmt) == LORA_OK && fmt.type == LORA_META_STRING &&
        strcmp(fmt.string, "kohya") == 0 && lora_reader_meta_find(c->r, LORA_META_SOURCE_CONFIG, &cfg) == LORA_OK &&
        cfg.type == LORA_META_STRING)
        return restore_source(c, &cfg, km, err);
    (void)snprintf(km->dim, sizeof km->dim, "%u", c->rank);
    py_float(c->alpha, km->alpha, sizeof km->alpha);
    km->pairs[0].key = "ss_network_module";
    km->pairs[0].value = "networks.lora";
    km->pairs[1].key = "ss_network_dim";
    km->pairs[1].value = c->rank_mixed ? "Dynamic" : km->dim;
    km->pairs[2].key = "ss_network_alpha";
    km->pairs[2].value = c->alpha_mixed ? "Dynamic" : km->alpha;
    km->restored = NULL;
    km->count = 3;
    return LORA_OK;
}

static void load_alpha_record(xctx *c)
{
    lora_meta m;
    if (lora_reader_meta_find(c->r, LORA_KOHYA_META_ALPHA, &m) != LORA_OK || m.type != LORA_META_STRING) return;
    json_error_t je;
    c->alpha_rec = json_loadb(m.string, m.string_length, 0, &je);
    if (!json_is_object(c->alpha_rec)) {
        json_decref(c->alpha_rec);
        c->alpha_rec = NULL;
        lora_ops_warn(c->o, "kohya export: ignoring metadata '%s': not a JSON object; alphas are written as F32",
                      LORA_KOHYA_META_ALPHA);
    }
}

/* ---- writing --------------------------------------------------------------- */

static lora_status put_converted(xctx *c, lora_st_writer *sw, const kentry *e, lora_error *err)
{
    float *f = NULL;
    uint64_t numel = 0;
    LORA_FORWARD_IF_ERROR(lora_ops_blob_f32(c->r, c->a, e->blob, 0, &f, &numel, err));
    lora_status st = LORA_OK;
    if (e->dtype == LORA_DTYPE_F32) {
        st = lora_st_writer_put(sw, f, (size_t)numel * sizeof *f, err);
    } else {
        const lora_kernels *k = lora_kernels_get();
        uint16_t half[2048];
        for (uint64_t i = 0; st == LORA_OK && i < numel; i += 2048) {
            size_t n = numel - i < 2048 ? (size_t)(numel - i) : 2048;
            (e->dtype == LORA_DTYPE_F16 ? k->f32_to_f16 : k->f32_to_bf16)(f + i, half, n);
            st = lora_st_writer_put(sw, half, n * sizeof half[0], err);
        }
    }
    lora_mem_free(c->a, f);
    return st;
}

static lora_status put_entry(xctx *c, lora_st_writer *sw, const kentry *e, lora_error *err)
{
    if (e->blob == LORA_NO_BLOB) return lora_st_writer_put(sw, e->scalar, (size_t)e->size, err);
    lora_blob b;
    LORA_FORWARD_IF_ERROR(lora_reader_blob(c->r, e->blob, &b));
    if (b.dtype != e->dtype) return put_converted(c, sw, e, err);
    if (b.compression == LORA_COMPRESSION_NONE) {
        /* Views are not checksum-verified; the input may be any .lora file. */
        const void *p;
        size_t n;
        LORA_FORWARD_IF_ERROR(lora_reader_verify_blob(c->r, e->blob, err));
        LORA_FORWARD_IF_ERROR(lora_reader_blob_view(c->r, e->blob, &p, &n));
        return lora_st_writer_put(sw, p, n, err);
    }
    void *raw = lora_mem_alloc(c->a, (size_t)b.raw_size);
    if (!raw) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    lora_status st = lora_reader_blob_read(c->r, e->blob, raw, (size_t)b.raw_size, err);
    if (st == LORA_OK) st = lora_st_writer_put(sw, raw, (size_t)b.raw_size, err);
    lora_mem_free(c->a, raw);
    return st;
}

/* The temp file must parse back as exactly the planned tensors. */
static lora_status read_back(xctx *c, const char *tmp, const lora_st_entry *ents, uint32_t mcount, lora_error *err)
{
    lora_st_options so;
    memset(&so, 0, sizeof so);
    so.allocator = *c->a;
    lora_st_file *f = NULL;
    LORA_FORWARD_IF_ERROR(lora_st_open(tmp, &so, &f, err));
    int same = f->tensor_count == c->count && f->meta_count == mcount;
    for (uint32_t i = 0; same && i < c->count; i++) {
        const lora_st_tensor *t = &f->tensors[i];
        same = strcmp(t->name, ents[i].name) == 0 && t->dtype == ents[i].dtype && t->ndim == ents[i].ndim &&
               t->size == ents[i].size;
    }
    lora_st_free(f);
    if (!same)
        return lora_error_set(err, LORA_E_IO, LORA_NO_OFFSET, "kohya export: '%s' does not read back as written", tmp);
    return LORA_OK;
}

static lora_status stream(xctx *c, lora_afile *af, const lora_st_entry *ents, const uint32_t *order,
                          const lora_st_pair *meta, uint32_t mcount, lora_error *err)
{
    lora_st_writer *sw = NULL;
    LORA_FORWARD_IF_ERROR(
        lora_st_writer_begin(c->a, ents, c->count, meta, mcount, lora_st_afile_sink_write, af, &sw, err));
    lora_status st = LORA_OK;
    for (uint32_t i = 0; st == LORA_OK && i < c->count; i++) st = put_entry(c, sw, &c->e[order[i]], err);
    if (st == LORA_OK) st = lora_st_writer_finish(sw, err);
    lora_st_writer_free(sw);
    if (st == LORA_OK) st = lora_afile_flush(af, err);
    if (st == LORA_OK) st = read_back(c, lora_afile_temp_path(af), ents, mcount, err);
    return st;
}

static lora_status write_file(xctx *c, const char *output, const lora_write_options *wopts, const lora_io *io,
                              const uint32_t *order, const kmeta *km, lora_error *err)
{
    lora_st_entry *ents = lora_mem_calloc(c->a, c->count, sizeof *ents);
    if (!ents) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    for (uint32_t i = 0; i < c->count; i++) {
        const kentry *e = &c->e[order[i]];
        ents[i].name = e->name;
        ents[i].dtype = st_dtype(e->dtype);
        ents[i].ndim = e->blob == LORA_NO_BLOB ? 0 : e->ndim;
        for (uint32_t d = 0; d < ents[i].ndim; d++) ents[i].shape[d] = e->shape[d];
        ents[i].size = e->size;
    }
    lora_afile *af = NULL;
    lora_status st = lora_afile_open(c->a, io, output, wopts, &af, err);
    if (st == LORA_OK) {
        const lora_st_pair *meta = km->restored ? km->restored : km->pairs;
        st = stream(c, af, ents, order, meta, km->count, err);
        if (st == LORA_OK) st = lora_afile_commit(af, err);
        else lora_afile_abort(af);
    }
    lora_mem_free(c->a, ents);
    return st;
}

/* ---- entry point ----------------------------------------------------------- */

static lora_status plan(xctx *c, lora_error *err)
{
    lora_file_info info;
    lora_reader_file_info(c->r, &info);
    c->e = lora_mem_calloc(c->a, (size_t)info.module_count * 3 + 1, sizeof *c->e);
    if (!c->e) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    for (uint32_t i = 0; i < info.module_count && !c->two_te; i++) {
        lora_module m;
        if (lora_reader_module(c->r, i, &m) == LORA_OK) c->two_te = lora_kohya_is_text_encoder_2(m.name);
    }
    load_alpha_record(c);
    for (uint32_t i = 0; i < info.module_count; i++) LORA_FORWARD_IF_ERROR(plan_module(c, i, err));
    LORA_FORWARD_IF_ERROR(check_tensors(c, info.tensor_count, err));
    if (c->count == 0)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET,
                              "kohya export: nothing to write (no module kohya can hold)");
    return LORA_OK;
}

static lora_status run(xctx *c, const char *output, const lora_write_options *wopts, const lora_io *io,
                       lora_error *err)
{
    LORA_FORWARD_IF_ERROR(plan(c, err));
    uint32_t *order = lora_mem_calloc(c->a, c->count, sizeof *order);
    uint32_t *tmp = lora_mem_calloc(c->a, c->count, sizeof *tmp);
    kmeta km;
    memset(&km, 0, sizeof km);
    lora_status st = LORA_OK;
    if (!order || !tmp) st = lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "kohya export: out of memory");
    if (st == LORA_OK) st = order_entries(c, order, tmp, err);
    if (st == LORA_OK) st = build_meta(c, &km, err);
    if (st == LORA_OK) st = write_file(c, output, wopts, io, order, &km, err);
    json_decref(km.source);
    lora_mem_free(c->a, km.restored);
    lora_mem_free(c->a, order);
    lora_mem_free(c->a, tmp);
    return st;
}

lora_status lora_export_kohya(const lora_reader *r, const char *output, const lora_convert_options *o,
                              const lora_write_options *wopts, lora_error *err)
{
    return lora_export_kohya_io(r, output, o, wopts, NULL, err);
}

lora_status lora_export_kohya_io(const lora_reader *r, const char *output, const lora_convert_options *o,
                                 const lora_write_options *wopts, const lora_io *io, lora_error *err)
{
    lora_convert_options defaults = LORA_CONVERT_OPTIONS_INIT;
    if (!o) o = &defaults;
    if (!r || !output)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "kohya export: NULL argument");
    if (o->dtype != -1 && o->dtype != LORA_DTYPE_F32 && o->dtype != LORA_DTYPE_F16 && o->dtype != LORA_DTYPE_BF16)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "kohya export: dtype must be -1 (keep), F32, F16 or BF16");
    xctx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.o = o;
    c.a = &o->allocator;
    c.drop = (o->flags & LORA_CONVERT_DROP_UNSUPPORTED) != 0;
    lora_status st = run(&c, output, wopts, io, err);
    for (uint32_t i = 0; i < c.count; i++) lora_mem_free(c.a, c.e[i].name);
    lora_mem_free(c.a, c.e);
    json_decref(c.alpha_rec);
    return st;
}
