/*
 * peft_config_out.c - the adapter_config.json a PEFT export carries.
 *
 * The original config, verbatim, when the .lora came from PEFT and that
 * config still describes every module (rank, alpha, scaling rule,
 * fan_in_fan_out, DoRA, bias): a round trip then gives back the same bytes.
 * Otherwise one is written from the modules: r and lora_alpha are the most
 * common values, rank_pattern/alpha_pattern hold the exceptions under keys
 * that select exactly one module, and a module whose scaling rule differs
 * from the file's gets the alpha that reproduces its binary32 scale under
 * the file's rule - or the export is refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "adapter_dir.h"
#include "peft_config.h"
#include "peft_export.h"
#include "strref.h"

#define FAIL(st, ...) lora_error_set(err, st, LORA_NO_OFFSET, __VA_ARGS__)

/* jansson's json_string, spelled through json_stringn: a program that
 * links its own function named json_string (tools/common/json.c does)
 * would otherwise be called here. */
static json_t *jstr(const char *s) { return json_stringn(s, strlen(s)); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* PEFT's scale for `alpha`, as .lora defines it (binary32). */
static float rule_scale(float alpha, uint32_t r, int rslora)
{
    return rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
}

/* Also as PEFT's Python computes it (double, then a float32 tensor). */
static float python_scale(float alpha, uint32_t r, int rslora)
{
    return (float)(rslora ? (double)alpha / sqrt((double)r) : (double)alpha / (double)r);
}

/* A binary32 alpha whose scale under the rule is exactly `scale`: the
 * nearest candidates around scale*r (or scale*sqrt r), preferring one that
 * Python's double arithmetic agrees on. */
static int alpha_for_scale(float scale, uint32_t r, int rslora, float *alpha)
{
    double d = rslora ? (double)scale * sqrt((double)r) : (double)scale * (double)r;
    float base = (float)d, fallback = 0;
    int have_fallback = 0;
    if (!isfinite(base)) return 0;
    for (int k = 0; k < 9; k++) {
        float c = base;
        for (int s = 0; s < (k + 1) / 2; s++) c = nextafterf(c, k % 2 ? INFINITY : -INFINITY);
        if (!same_bits(rule_scale(c, r, rslora), scale)) continue;
        if (same_bits(python_scale(c, r, rslora), scale)) {
            *alpha = c;
            return 1;
        }
        if (!have_fallback) fallback = c, have_fallback = 1;
    }
    if (have_fallback) *alpha = fallback;
    return have_fallback;
}

/* ---- does the source config still describe the modules? ---- */

static int module_agrees(const lora_peft_config *c, const lora_module *m, char *why, size_t cap)
{
    uint32_t r = lora_peft_config_rank(c, m->name, NULL);
    float alpha = (float)lora_peft_config_alpha(c, m->name);
    lora_scaling rule = c->use_rslora ? LORA_SCALING_ALPHA_OVER_SQRT_RANK : LORA_SCALING_ALPHA_OVER_RANK;
    int fifo = c->fan_in_fan_out && m->kind == LORA_KIND_LINEAR;
    const char *what = NULL;
    if (r != m->rank) what = "rank";
    else if (rule != m->scaling) what = "scaling rule";
    else if (!same_bits(alpha, m->alpha)) what = "alpha";
    else if (fifo != ((m->flags & LORA_MODULE_FAN_IN_FAN_OUT) != 0)) what = "fan_in_fan_out";
    else if (c->use_dora != (m->blob_magnitude != LORA_NO_BLOB)) what = "DoRA magnitude";
    else if (!c->lora_bias && m->blob_bias != LORA_NO_BLOB) what = "LoRA bias";
    if (what) snprintf(why, cap, "module '%s': %s differs", m->name, what);
    return what == NULL;
}

int lora_peft_config_describes(const lora_reader *r, const lora_allocator *a, const char *text, size_t size,
                               char *why, size_t cap)
{
    lora_peft_config c;
    lora_error e;
    if (lora_peft_config_parse(a, text, size, "source config", &c, &e) != LORA_OK) {
        snprintf(why, cap, "%s", e.detail);
        return 0;
    }
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    int ok = 1;
    for (uint32_t i = 0; ok && i < fi.module_count; i++) {
        lora_module m;
        ok = lora_reader_module(r, i, &m) == LORA_OK && module_agrees(&c, &m, why, cap);
    }
    lora_peft_config_free(&c);
    return ok;
}

/* ---- a new config ---- */

typedef struct {
    uint32_t rank;
    float alpha;          /* under the file's rule */
    const char *name;
} mod_row;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_f32(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The most common value of a sorted array (ties: the smallest). */
static size_t mode_index(const void *sorted, size_t n, size_t es)
{
    const unsigned char *p = sorted;
    size_t best = 0, best_n = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && memcmp(p + j * es, p + i * es, es) == 0) j++;
        if (j - i > best_n) best = i, best_n = j - i;
        i = j;
    }
    return best;
}

/* A JSON array of the distinct strings of v[0..n) (sorted in place). */
static json_t *distinct_array(lora_strref *v, size_t n)
{
    json_t *arr = json_array();
    n = lora_strref_unique(v, n);
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_stringn(v[i].s, v[i].len)) != 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

/* Every dotted suffix of every module name ("b.c" and "c" of "a.b.c"): a
 * pattern key for module X must be anchored when X is one of them. */
static lora_strref *suffix_set(const lora_reader *r, const lora_allocator *a, size_t *count)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        lora_strref *v = pass ? lora_mem_calloc(a, n ? n : 1, sizeof *v) : NULL;
        if (pass && !v) return NULL;
        size_t k = 0;
        for (uint32_t i = 0; i < fi.module_count; i++) {
            lora_module m;
            if (lora_reader_module(r, i, &m) != LORA_OK) continue;
            for (const char *d = strchr(m.name, '.'); d; d = strchr(d + 1, '.')) {
                if (pass) v[k] = (lora_strref){d + 1, strlen(d + 1)};
                k++;
            }
        }
        if (pass) {
            *count = lora_strref_unique(v, k);
            return v;
        }
        n = k;
    }
    return NULL;
}

/* A pattern key selecting exactly `name`: escaped, and anchored with '^'
 * only when another module's name ends in ".<name>". */
static int pattern_key_set(json_t *obj, const lora_strref *suffixes, size_t ns, const char *name, json_t *value)
{
    size_t nl = strlen(name), cap = 2 * nl + 2;
    int anchor = lora_strref_has(suffixes, ns, name, nl);
    char *key = malloc(cap);
    if (!key) {
        json_decref(value);
        return -1;
    }
    key[0] = '^';
    lora_peft_regex_escape(name, key + anchor, cap - 1);
    int rc = json_object_set_new(obj, key, value);
    free(key);
    return rc;
}

static json_t *jstr_meta(const lora_reader *r, const char *key)
{
    lora_meta m;
    if (lora_reader_meta_find(r, key, &m) != LORA_OK || m.type != LORA_META_STRING) return json_null();
    return json_stringn(m.string, m.string_length);
}

static json_t *number(double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0) return json_integer((json_int_t)v);
    return json_real(v);
}

typedef struct {
    int rslora, fifo, dora, bias;
    uint32_t r;           /* most common rank */
    float alpha;          /* most common alpha under the file's rule */
    mod_row *rows;
    uint32_t n;
} plan;

/* One rule for the file: alpha/sqrt(r) if most modules use it. The flags
 * PEFT sets for all modules at once must hold for all (or none). */
static lora_status choose_rules(const lora_reader *r, uint32_t n, plan *p, lora_error *err)
{
    uint32_t sq = 0, ar = 0, lin = 0, fifo = 0, mag = 0;
    for (uint32_t i = 0; i < n; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        sq += m.scaling == LORA_SCALING_ALPHA_OVER_SQRT_RANK;
        ar += m.scaling == LORA_SCALING_ALPHA_OVER_RANK;
        lin += m.kind == LORA_KIND_LINEAR;
        fifo += m.kind == LORA_KIND_LINEAR && (m.flags & LORA_MODULE_FAN_IN_FAN_OUT);
        mag += m.blob_magnitude != LORA_NO_BLOB;
        p->bias |= m.blob_bias != LORA_NO_BLOB;
    }
    if (fifo && fifo != lin)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "peft: %u of %u linear modules are fan_in_fan_out: PEFT has one "
                                                "fan_in_fan_out flag for all", fifo, lin);
    if (mag && mag != n)
        return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "peft: %u of %u modules have a DoRA magnitude: PEFT's use_dora "
                                                "applies to all (it would initialise the others from the base weights)",
                    mag, n);
    p->rslora = sq > ar;
    p->fifo = fifo > 0;
    p->dora = mag > 0;
    return LORA_OK;
}

static lora_status module_rows(const lora_reader *r, plan *p, lora_error *err)
{
    lora_scaling rule = p->rslora ? LORA_SCALING_ALPHA_OVER_SQRT_RANK : LORA_SCALING_ALPHA_OVER_RANK;
    for (uint32_t i = 0; i < p->n; i++) {
        lora_module m;
        LORA_FORWARD_IF_ERROR(lora_reader_module(r, i, &m));
        p->rows[i].rank = m.rank;
        p->rows[i].name = m.name;
        if (m.scaling == rule) {
            p->rows[i].alpha = m.alpha;
        } else if (!alpha_for_scale(m.scale, m.rank, p->rslora, &p->rows[i].alpha)) {
            return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "peft: module '%s': no binary32 lora_alpha gives scale %.9g as "
                                                    "alpha/%s%u", m.name, (double)m.scale,
                        p->rslora ? "sqrt " : "", m.rank);
        }
    }
    return LORA_OK;
}

static lora_status modes(const lora_allocator *a, plan *p, lora_error *err)
{
    uint32_t *ranks = lora_mem_calloc(a, p->n, sizeof *ranks);
    float *alphas = lora_mem_calloc(a, p->n, sizeof *alphas);
    if (!ranks || !alphas) {
        lora_mem_free(a, ranks);
        lora_mem_free(a, alphas);
        return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    }
    for (uint32_t i = 0; i < p->n; i++) ranks[i] = p->rows[i].rank, alphas[i] = p->rows[i].alpha;
    qsort(ranks, p->n, sizeof *ranks, cmp_u32);
    qsort(alphas, p->n, sizeof *alphas, cmp_f32);
    p->r = ranks[mode_index(ranks, p->n, sizeof *ranks)];
    p->alpha = alphas[mode_index(alphas, p->n, sizeof *alphas)];
    lora_mem_free(a, ranks);
    lora_mem_free(a, alphas);
    return LORA_OK;
}

/* modules_to_save from the replacement tensors' modules; biases outside
 * them mean bias "all". */
static int tensor_fields(const lora_reader *r, const lora_allocator *a, json_t *cfg)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    lora_strref *save = lora_mem_calloc(a, fi.tensor_count ? fi.tensor_count : 1, sizeof *save);
    if (!save) return -1;
    size_t ns = 0;
    for (uint32_t i = 0; i < fi.tensor_count; i++) {
        lora_tensor t;
        if (lora_reader_tensor(r, i, &t) != LORA_OK) continue;
        const char *dot = strrchr(t.name, '.');
        if (dot && strcmp(dot, ".bias") == 0) continue;
        save[ns++] = (lora_strref){t.name, dot ? (size_t)(dot - t.name) : strlen(t.name)};
    }
    ns = lora_strref_unique(save, ns);
    int bias_all = 0;
    for (uint32_t i = 0; i < fi.tensor_count && !bias_all; i++) {
        lora_tensor t;
        if (lora_reader_tensor(r, i, &t) != LORA_OK) continue;
        const char *dot = strrchr(t.name, '.');
        bias_all = dot && strcmp(dot, ".bias") == 0 && !lora_strref_has(save, ns, t.name, (size_t)(dot - t.name));
    }
    json_t *list = ns ? distinct_array(save, ns) : json_null(); /* PEFT writes null for none */
    lora_mem_free(a, save);
    if (!list) return -1;
    return json_object_set_new(cfg, "modules_to_save", list) |
           json_object_set_new(cfg, "bias", jstr(bias_all ? "all" : "none"));
}

static int module_fields(const lora_reader *r, const lora_allocator *a, const plan *p, json_t *cfg)
{
    size_t ns = 0;
    lora_strref *suffixes = suffix_set(r, a, &ns);
    lora_strref *last = lora_mem_calloc(a, p->n, sizeof *last);
    json_t *rp = json_object(), *ap = json_object();
    int bad = !suffixes || !last || !rp || !ap;
    for (uint32_t i = 0; i < p->n && !bad; i++) {
        const mod_row *m = &p->rows[i];
        if (m->rank != p->r) bad |= pattern_key_set(rp, suffixes, ns, m->name, json_integer(m->rank)) != 0;
        if (!same_bits(m->alpha, p->alpha)) bad |= pattern_key_set(ap, suffixes, ns, m->name, number(m->alpha)) != 0;
        const char *dot = strrchr(m->name, '.');
        last[i] = (lora_strref){dot ? dot + 1 : m->name, strlen(dot ? dot + 1 : m->name)};
    }
    json_t *targets = bad ? NULL : distinct_array(last, p->n);
    lora_mem_free(a, suffixes);
    lora_mem_free(a, last);
    if (bad || !targets) {
        json_decref(rp);
        json_decref(ap);
        json_decref(targets);
        return -1;
    }
    return json_object_set_new(cfg, "rank_pattern", rp) | json_object_set_new(cfg, "alpha_pattern", ap) |
           json_object_set_new(cfg, "target_modules", targets) | json_object_set_new(cfg, "r", json_integer(p->r)) |
           json_object_set_new(cfg, "lora_alpha", number(p->alpha));
}

static json_t *build(const lora_reader *r, const lora_allocator *a, const plan *p)
{
    json_t *c = json_object();
    if (!c) return NULL;
    int bad = module_fields(r, a, p, c) | tensor_fields(r, a, c);
    bad |= json_object_set_new(c, "peft_type", jstr("LORA"));
    bad |= json_object_set_new(c, "use_rslora", json_boolean(p->rslora));
    bad |= json_object_set_new(c, "use_dora", json_boolean(p->dora));
    bad |= json_object_set_new(c, "lora_bias", json_boolean(p->bias));
    bad |= json_object_set_new(c, "fan_in_fan_out", json_boolean(p->fifo));
    bad |= json_object_set_new(c, "inference_mode", json_true());
    bad |= json_object_set_new(c, "init_lora_weights", json_true());
    bad |= json_object_set_new(c, "lora_dropout", json_real(0.0));
    bad |= json_object_set_new(c, "layers_to_transform", json_null());
    bad |= json_object_set_new(c, "layers_pattern", json_null());
    bad |= json_object_set_new(c, "task_type", jstr_meta(r, LORA_META_TASK_TYPE));
    bad |= json_object_set_new(c, "base_model_name_or_path", jstr_meta(r, LORA_META_BASE_MODEL));
    bad |= json_object_set_new(c, "revision", jstr_meta(r, LORA_META_BASE_MODEL_REVISION));
    if (bad) {
        json_decref(c);
        return NULL;
    }
    return c;
}

lora_status lora_peft_config_synthesize(const lora_reader *r, const lora_allocator *a, char **out, size_t *size,
                                        lora_error *err)
{
    lora_file_info fi;
    lora_reader_file_info(r, &fi);
    plan p;
    memset(&p, 0, sizeof p);
    p.n = fi.module_count;
    if (p.n == 0) return FAIL(LORA_E_UNSUPPORTED_ADAPTER, "peft: the adapter has no LoRA modules");
    LORA_FORWARD_IF_ERROR(choose_rules(r, p.n, &p, err));
    p.rows = lora_mem_calloc(a, p.n, sizeof *p.rows);
    if (!p.rows) return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    lora_status st = module_rows(r, &p, err);
    if (st == LORA_OK) st = modes(a, &p, err);
    json_t *cfg = st == LORA_OK ? build(r, a, &p) : NULL;
    lora_mem_free(a, p.rows);
    if (st != LORA_OK) return st;
    /* PEFT writes json.dumps(indent=2, sort_keys=True) and a newline. */
    char *text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(cfg);
    size_t len = text ? strlen(text) : 0;
    char *copy = text ? lora_mem_alloc(a, len + 2) : NULL;
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\n';
        copy[len + 1] = '\0';
    }
    free(text);
    if (!copy) return FAIL(LORA_E_OUT_OF_MEMORY, "out of memory");
    *out = copy;
    *size = len + 1;
    return LORA_OK;
}
