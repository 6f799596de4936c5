/*
 * merge_match.c - which base tensor a module or a replacement tensor
 * changes. Tried in order: the exact name ("<module>.weight"); in a GGUF
 * base, llama.cpp's name for a Hugging Face module (gguf_names.h); for a
 * kohya module, the base tensor whose dotted name, with '.' -> '_', is the
 * module without its kohya prefix. sd-scripts' mapping from path to module
 * name cannot be undone ('_' and '.' look alike afterwards), so the base
 * names are mapped forward, never the module name backward
 * (kohya_names.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "merge.h"

#define NAME_MAX_BYTES 4200

const char *mmatch_renamed(const lora_merge_options *o, const char *name, char *buf, size_t cap)
{
    for (size_t i = 0; i < o->rename_count; i++) {
        const lora_merge_rename *r = &o->renames[i];
        size_t n = strlen(r->from);
        if (strncmp(name, r->from, n) != 0) continue;
        size_t tl = strlen(r->to), rest = strlen(name + n);
        if (tl + rest + 1 > cap) return NULL;
        memcpy(buf, r->to, tl);
        memcpy(buf + tl, name + n, rest + 1);
        return buf;
    }
    return name;
}

static uint32_t find_with(const mbase *b, const char *stem, const char *suffix)
{
    char buf[NAME_MAX_BYTES];
    size_t n = strlen(stem), s = strlen(suffix);
    if (n + s + 1 > sizeof buf) return UINT32_MAX;
    memcpy(buf, stem, n);
    memcpy(buf + n, suffix, s + 1);
    return mbase_find(b, buf);
}

/* ---- GGUF ------------------------------------------------------------------------ */

static lora_status match_gguf(const mbase *b, const char *name, const char *suffix, mmatch *out, lora_error *err)
{
    lora_gguf_mapped m;
    if (!b->arch || lora_gguf_name_to_gguf(b->arch, name, &m) != LORA_OK) return LORA_E_NOT_FOUND;
    if (m.role == LORA_GGUF_ROLE_REFUSED)
        return lora_error_set(err, LORA_E_UNSUPPORTED_ADAPTER, LORA_NO_OFFSET, "'%s': %s", name, m.reason);
    size_t len = strlen(m.name);
    if (len < 7 || strcmp(m.name + len - 7, ".weight") != 0) return LORA_E_NOT_FOUND;
    m.name[len - 7] = '\0';
    uint32_t i = find_with(b, m.name, suffix);
    if (i == UINT32_MAX) return LORA_E_NOT_FOUND;
    out->tensor = i;
    out->role = m.role;
    return LORA_OK;
}

/* ---- kohya ------------------------------------------------------------------------ */

static const char *const kohya_prefixes[] = {"lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_"};

static int under_cmp(const void *x, const void *y, void *ctx)
{
    char *const *u = ctx;
    return strcmp(u[*(const uint32_t *)x], u[*(const uint32_t *)y]);
}

/* Keys "<stem with '_'>" + "\x01w" / "\x01b" for every .weight / .bias. */
static lora_status build_under(mbase *b, lora_error *err)
{
    uint32_t n = 0;
    b->under = lora_mem_calloc(&b->alloc, b->tensor_count ? b->tensor_count : 1, sizeof *b->under);
    b->under_tensor = lora_mem_calloc(&b->alloc, b->tensor_count ? b->tensor_count : 1, sizeof *b->under_tensor);
    if (!b->under || !b->under_tensor) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    for (uint32_t i = 0; i < b->tensor_count; i++) {
        const char *name = b->tensors[i].name;
        size_t len = strlen(name), cut;
        char kind;
        if (len > 7 && strcmp(name + len - 7, ".weight") == 0) cut = 7, kind = 'w';
        else if (len > 5 && strcmp(name + len - 5, ".bias") == 0) cut = 5, kind = 'b';
        else continue;
        char *k = lora_mem_alloc(&b->alloc, len - cut + 3);
        if (!k) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
        for (size_t j = 0; j < len - cut; j++) k[j] = name[j] == '.' ? '_' : name[j];
        k[len - cut] = '\x01';
        k[len - cut + 1] = kind;
        k[len - cut + 2] = '\0';
        b->under[n] = k;
        b->under_tensor[n++] = i;
    }
    b->under_count = n;
    /* Sort a permutation, then apply it to both arrays. */
    uint32_t *perm = lora_mem_calloc(&b->alloc, n ? n : 1, sizeof *perm);
    char **keys = lora_mem_calloc(&b->alloc, n ? n : 1, sizeof *keys);
    uint32_t *tens = lora_mem_calloc(&b->alloc, n ? n : 1, sizeof *tens);
    if (!perm || !keys || !tens) {
        lora_mem_free(&b->alloc, perm);
        lora_mem_free(&b->alloc, keys);
        lora_mem_free(&b->alloc, tens);
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    qsort_r(perm, n, sizeof *perm, under_cmp, b->under);
    for (uint32_t i = 0; i < n; i++) keys[i] = b->under[perm[i]], tens[i] = b->under_tensor[perm[i]];
    lora_mem_free(&b->alloc, b->under);
    lora_mem_free(&b->alloc, b->under_tensor);
    lora_mem_free(&b->alloc, perm);
    b->under = keys;
    b->under_tensor = tens;
    return LORA_OK;
}

/* First index of key in the sorted keys, or n. */
static uint32_t under_lower(const mbase *b, const char *key)
{
    uint32_t lo = 0, hi = b->under_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (strcmp(b->under[mid], key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static lora_status match_kohya(mbase *b, const char *name, int bias, mmatch *out, lora_error *err)
{
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof kohya_prefixes / sizeof kohya_prefixes[0] && !rest; i++)
        if (strncmp(name, kohya_prefixes[i], strlen(kohya_prefixes[i])) == 0) rest = name + strlen(kohya_prefixes[i]);
    if (!rest || strchr(name, '.')) return LORA_E_NOT_FOUND;
    if (!b->under) LORA_FORWARD_IF_ERROR(build_under(b, err));
    char key[NAME_MAX_BYTES];
    size_t n = strlen(rest);
    if (n + 3 > sizeof key) return LORA_E_NOT_FOUND;
    memcpy(key, rest, n);
    key[n] = '\x01';
    key[n + 1] = bias ? 'b' : 'w';
    key[n + 2] = '\0';
    uint32_t i = under_lower(b, key);
    if (i >= b->under_count || strcmp(b->under[i], key) != 0) return LORA_E_NOT_FOUND;
    if (i + 1 < b->under_count && strcmp(b->under[i + 1], key) == 0)
        return lora_error_set(err, LORA_E_DUPLICATE_NAME, LORA_NO_OFFSET,
                              "kohya module '%s' matches both base tensors '%s' and '%s'", name,
                              b->tensors[b->under_tensor[i]].name, b->tensors[b->under_tensor[i + 1]].name);
    out->tensor = b->under_tensor[i];
    out->role = LORA_GGUF_ROLE_PLAIN;
    return LORA_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

lora_status mmatch_module(mbase *b, const lora_merge_options *o, const char *module, int bias, mmatch *out,
                          lora_error *err)
{
    char buf[NAME_MAX_BYTES];
    const char *name = mmatch_renamed(o, module, buf, sizeof buf);
    const char *suffix = bias ? ".bias" : ".weight";
    if (!name) return LORA_E_NOT_FOUND;
    out->role = LORA_GGUF_ROLE_PLAIN;
    if (b->kind == MBASE_GGUF) {
        lora_status st = match_gguf(b, name, suffix, out, err);
        if (st != LORA_E_NOT_FOUND) return st;
    }
    out->tensor = find_with(b, name, suffix);
    if (out->tensor != UINT32_MAX) return LORA_OK;
    return match_kohya(b, name, bias, out, err);
}

lora_status mmatch_tensor(mbase *b, const lora_merge_options *o, const char *tensor, mmatch *out, lora_error *err)
{
    char buf[NAME_MAX_BYTES], stem[NAME_MAX_BYTES];
    const char *name = mmatch_renamed(o, tensor, buf, sizeof buf);
    if (!name) return LORA_E_NOT_FOUND;
    out->role = LORA_GGUF_ROLE_PLAIN;
    out->tensor = mbase_find(b, name);
    if (out->tensor != UINT32_MAX || b->kind != MBASE_GGUF) return out->tensor != UINT32_MAX ? LORA_OK : LORA_E_NOT_FOUND;
    size_t len = strlen(name);
    const char *suffix = len > 7 && strcmp(name + len - 7, ".weight") == 0 ? ".weight"
                         : len > 5 && strcmp(name + len - 5, ".bias") == 0 ? ".bias" : NULL;
    if (!suffix) return LORA_E_NOT_FOUND;
    memcpy(stem, name, len - strlen(suffix));
    stem[len - strlen(suffix)] = '\0';
    return match_gguf(b, stem, suffix, out, err);
}

/* ---- suggestion ---------------------------------------------------------------------- */

/* 1 if `t` is "<P><s><suffix>" with P empty or ending in '.'; *plen = |P|. */
static int ends_like(const char *t, const char *s, const char *suffix, size_t *plen)
{
    size_t tl = strlen(t), sl = strlen(s), xl = strlen(suffix);
    if (tl < sl + xl || strcmp(t + tl - xl, suffix) != 0 || strncmp(t + tl - xl - sl, s, sl) != 0) return 0;
    *plen = tl - xl - sl;
    return *plen == 0 || t[*plen - 1] == '.';
}

void mmatch_suggest(const mbase *b, const char *name, const char *suffix, char *out, size_t cap)
{
    out[0] = '\0';
    /* Drop leading components one at a time: the first tail some base
     * tensor ends with gives the two prefixes. */
    for (const char *s = name; s && *s; s = strchr(s, '.') ? strchr(s, '.') + 1 : NULL) {
        for (uint32_t k = 0; k < b->tensor_count; k++) {
            const char *t = b->tensors[b->by_name[k]].name;
            size_t plen;
            if (!ends_like(t, s, suffix, &plen)) continue;
            if (plen == 0 && s == name) return; /* an exact match is no suggestion */
            snprintf(out, cap, "; names differ by a prefix: '%.*s' -> '%.*s' (--map-prefix)", (int)(s - name), name,
                     (int)plen, t);
            return;
        }
    }
}
