/* Typed access to KV values. Every getter states the type it expects and
 * refuses any other: the tokenizer-array type confusion of llama.cpp
 * (robustness.md 1.1, "consumers of a validated parse") cannot happen here. */
#include <string.h>
#include "gguf_private.h"

static const char *type_name(uint32_t t)
{
    const char *n = lora_gguf_type_name(t);
    return n ? n : "?";
}

static lora_status find(const lora_gguf *g, const char *key, const lora_gguf_kv **kv, lora_error *err)
{
    if (!g || !key) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: NULL argument");
    *kv = lora_gguf_find_kv(g, key);
    if (!*kv) return lora_error_set(err, LORA_E_NOT_FOUND, LORA_NO_OFFSET, "gguf: no key '%.200s'", key);
    return LORA_OK;
}

static lora_status expect(const lora_gguf_kv *kv, uint32_t type, lora_error *err)
{
    if (kv->type == type) return LORA_OK;
    return gg_fail(err, LORA_E_BAD_METADATA, kv->offset, "key '%.160s' has type %s, expected %s", kv->key,
                   type_name(kv->type), type_name(type));
}

static lora_status scalar(const lora_gguf *g, const lora_gguf_kv *kv, uint32_t type, void *out, lora_error *err)
{
    if (!g || !kv || !out) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: NULL argument");
    LORA_FORWARD_IF_ERROR(expect(kv, type, err));
    const uint8_t *v = g->data + kv->value_offset;
    switch (type) {
    case LORA_GGUF_TYPE_UINT32: *(uint32_t *)out = lora_fmt_rd32(v); break;
    case LORA_GGUF_TYPE_INT32: *(int32_t *)out = (int32_t)lora_fmt_rd32(v); break;
    case LORA_GGUF_TYPE_UINT64: *(uint64_t *)out = lora_fmt_rd64(v); break;
    case LORA_GGUF_TYPE_BOOL: *(int *)out = v[0]; break;
    case LORA_GGUF_TYPE_FLOAT32: {
        uint32_t u = lora_fmt_rd32(v);
        memcpy(out, &u, 4);
        break;
    }
    default: return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: no scalar getter for %s",
                                   type_name(type));
    }
    return LORA_OK;
}

lora_status lora_gguf_kv_str(const lora_gguf *g, const lora_gguf_kv *kv, lora_gguf_str *out, lora_error *err)
{
    if (!g || !kv || !out) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: NULL argument");
    LORA_FORWARD_IF_ERROR(expect(kv, LORA_GGUF_TYPE_STRING, err));
    out->len = lora_fmt_rd64(g->data + kv->value_offset);
    out->ptr = (const char *)g->data + kv->value_offset + 8;
    return LORA_OK;
}

lora_status lora_gguf_kv_u32(const lora_gguf *g, const lora_gguf_kv *kv, uint32_t *out, lora_error *err)
{
    return scalar(g, kv, LORA_GGUF_TYPE_UINT32, out, err);
}

lora_status lora_gguf_kv_f32(const lora_gguf *g, const lora_gguf_kv *kv, float *out, lora_error *err)
{
    return scalar(g, kv, LORA_GGUF_TYPE_FLOAT32, out, err);
}

#define GG_GETTER(fname, ctype, type)                                                       \
    lora_status fname(const lora_gguf *g, const char *key, ctype *out, lora_error *err)     \
    {                                                                                       \
        const lora_gguf_kv *kv;                                                             \
        LORA_FORWARD_IF_ERROR(find(g, key, &kv, err));                                      \
        return scalar(g, kv, type, out, err);                                               \
    }

GG_GETTER(lora_gguf_get_u32, uint32_t, LORA_GGUF_TYPE_UINT32)
GG_GETTER(lora_gguf_get_i32, int32_t, LORA_GGUF_TYPE_INT32)
GG_GETTER(lora_gguf_get_u64, uint64_t, LORA_GGUF_TYPE_UINT64)
GG_GETTER(lora_gguf_get_f32, float, LORA_GGUF_TYPE_FLOAT32)
GG_GETTER(lora_gguf_get_bool, int, LORA_GGUF_TYPE_BOOL)

lora_status lora_gguf_get_str(const lora_gguf *g, const char *key, lora_gguf_str *out, lora_error *err)
{
    const lora_gguf_kv *kv;
    LORA_FORWARD_IF_ERROR(find(g, key, &kv, err));
    return lora_gguf_kv_str(g, kv, out, err);
}

lora_status lora_gguf_kv_array(const lora_gguf *g, const lora_gguf_kv *kv, uint32_t elem_type,
                               lora_gguf_array *out, lora_error *err)
{
    if (!g || !kv || !out) return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "gguf: NULL argument");
    LORA_FORWARD_IF_ERROR(expect(kv, LORA_GGUF_TYPE_ARRAY, err));
    if (kv->elem_type != elem_type)
        return gg_fail(err, LORA_E_BAD_METADATA, kv->value_offset, "key '%.160s' is an array of %s, expected %s",
                       kv->key, type_name(kv->elem_type), type_name(elem_type));
    out->g = g;
    out->kv = kv;
    out->elem_type = elem_type;
    out->count = kv->count;
    return LORA_OK;
}

lora_status lora_gguf_get_array(const lora_gguf *g, const char *key, uint32_t elem_type, lora_gguf_array *out,
                                lora_error *err)
{
    const lora_gguf_kv *kv;
    LORA_FORWARD_IF_ERROR(find(g, key, &kv, err));
    return lora_gguf_kv_array(g, kv, elem_type, out, err);
}

/* The view's type is re-checked against the KV itself, so a hand-edited
 * view cannot read bytes as the wrong type or past the array. */
static const uint8_t *element(const lora_gguf_array *a, uint64_t i, uint32_t type)
{
    if (!a || !a->g || !a->kv || a->kv->type != LORA_GGUF_TYPE_ARRAY || a->kv->elem_type != type ||
        a->elem_type != type || i >= a->kv->count)
        return NULL;
    return a->g->data + a->kv->value_offset + 12 + i * lora_gguf_type_size(type);
}

lora_status lora_gguf_array_u32(const lora_gguf_array *a, uint64_t i, uint32_t *out)
{
    const uint8_t *p = element(a, i, LORA_GGUF_TYPE_UINT32);
    if (!p || !out) return LORA_E_INVALID_ARGUMENT;
    *out = lora_fmt_rd32(p);
    return LORA_OK;
}

lora_status lora_gguf_array_i32(const lora_gguf_array *a, uint64_t i, int32_t *out)
{
    const uint8_t *p = element(a, i, LORA_GGUF_TYPE_INT32);
    if (!p || !out) return LORA_E_INVALID_ARGUMENT;
    *out = (int32_t)lora_fmt_rd32(p);
    return LORA_OK;
}

lora_status lora_gguf_array_f32(const lora_gguf_array *a, uint64_t i, float *out)
{
    const uint8_t *p = element(a, i, LORA_GGUF_TYPE_FLOAT32);
    if (!p || !out) return LORA_E_INVALID_ARGUMENT;
    uint32_t u = lora_fmt_rd32(p);
    memcpy(out, &u, 4);
    return LORA_OK;
}

lora_status lora_gguf_array_str(const lora_gguf_array *a, uint64_t i, lora_gguf_str *out)
{
    /* Strings have size 0 in the fixed-size table: element() then only
     * validates type and index. */
    if (!element(a, i, LORA_GGUF_TYPE_STRING) || !out) return LORA_E_INVALID_ARGUMENT;
    uint64_t at = a->g->str_offsets[a->kv->str_index + i];
    out->len = lora_fmt_rd64(a->g->data + at);
    out->ptr = (const char *)a->g->data + at + 8;
    return LORA_OK;
}
