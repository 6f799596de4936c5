/*
 * metadata.c - lora_writer_set_string/int/float/bool.
 *
 * Keys are unique in a file (the reader rejects duplicates), so setting a
 * key again replaces its value and type in place: the key keeps the position
 * of its first set, which keeps the output a function of the final state.
 */
#include <string.h>
#include "writer.h"

static const lora_wstr *meta_key_at(const lora_writer *w, uint32_t i) { return &w->meta[i].key; }

/* One value as the caller gave it, before it is copied. */
typedef struct {
    uint32_t type;
    const char *str;
    size_t str_len;
    uint64_t bits;
} meta_value;

static lora_status meta_set(lora_writer *w, const char *key, const meta_value *v)
{
    if (!w || !key) return LORA_E_INVALID_ARGUMENT;
    size_t key_len = strlen(key);
    if (!lora_wname_ok(key, key_len)) return LORA_E_INVALID_ARGUMENT;
    if (v->type != LORA_FMT_META_STRING && lora_meta_key_reserved(key)) return LORA_E_INVALID_ARGUMENT;
    uint32_t at = lora_nidx_find(w, &w->meta_index, meta_key_at, key, key_len);
    lora_status st = LORA_OK;
    if (at == UINT32_MAX) {
        if (w->meta_count == UINT32_MAX) return LORA_E_LIMIT_EXCEEDED;
        w->meta = lora_wgrow(&w->alloc, w->meta, &w->meta_cap, w->meta_count + 1, sizeof *w->meta, &st);
        LORA_FORWARD_IF_ERROR(st);
        LORA_FORWARD_IF_ERROR(lora_nidx_reserve(&w->alloc, &w->meta_index));
    }
    /* Copy the new value before touching the entry, so a failed replace
     * keeps the old value. */
    lora_wstr str = {NULL, 0};
    if (v->type == LORA_FMT_META_STRING)
        LORA_FORWARD_IF_ERROR(lora_wstr_copy(&w->alloc, v->str, v->str_len, &str));
    if (at == UINT32_MAX) {
        lora_wmeta *m = &w->meta[w->meta_count];
        memset(m, 0, sizeof *m);
        st = lora_wstr_copy(&w->alloc, key, key_len, &m->key);
        if (st != LORA_OK) {
            lora_wstr_free(&w->alloc, &str);
            return st;
        }
        lora_nidx_insert(&w->meta_index, m->key.s, key_len, w->meta_count);
        at = w->meta_count++;
    }
    lora_wmeta *m = &w->meta[at];
    lora_wstr_free(&w->alloc, &m->str);
    m->type = v->type;
    m->str = str;
    m->bits = v->bits;
    return LORA_OK;
}

lora_status lora_writer_set_string(lora_writer *w, const char *key, const char *value, size_t value_length)
{
    /* Values may be empty, but what there is must be UTF-8 without NUL, as
     * for every string in the file. */
    if (!value && value_length) return LORA_E_INVALID_ARGUMENT;
    if (value_length > UINT32_MAX) return LORA_E_INVALID_ARGUMENT;
    if (value_length && !lora_fmt_utf8_valid((const uint8_t *)value, value_length)) return LORA_E_INVALID_ARGUMENT;
    meta_value v = {LORA_FMT_META_STRING, value, value_length, 0};
    return meta_set(w, key, &v);
}

lora_status lora_writer_set_int(lora_writer *w, const char *key, int64_t value)
{
    meta_value v = {LORA_FMT_META_INT, NULL, 0, (uint64_t)value};
    return meta_set(w, key, &v);
}

lora_status lora_writer_set_float(lora_writer *w, const char *key, double value)
{
    meta_value v = {LORA_FMT_META_FLOAT, NULL, 0, 0};
    memcpy(&v.bits, &value, sizeof v.bits); /* every double, NaN payloads included */
    return meta_set(w, key, &v);
}

lora_status lora_writer_set_bool(lora_writer *w, const char *key, int value)
{
    meta_value v = {LORA_FMT_META_BOOL, NULL, 0, value ? 1u : 0u};
    return meta_set(w, key, &v);
}
