/* GGUF key/value pairs: bounded walk over every value, general.alignment,
 * and the index that makes string-array elements O(1) to reach. */
#include <string.h>
#include "gguf_private.h"

/* BOOL has two valid encodings; anything else would read as "true" in one
 * consumer and fail in another. */
static lora_status check_bools(gg_parse *p, const char *key, const uint8_t *b, uint64_t n, uint64_t at)
{
    for (uint64_t i = 0; i < n; i++)
        if (b[i] > 1)
            return gg_fail(p->err, LORA_E_BAD_METADATA, at + i, "key '%s': BOOL value %u is neither 0 nor 1", key,
                           b[i]);
    return LORA_OK;
}

static lora_status read_fixed(gg_parse *p, const char *key, uint32_t type, uint64_t count)
{
    uint64_t bytes, at = p->pos, left = p->g->size - p->pos;
    /* count <= max_array_elements, but the limit is the caller's: check. */
    if (lora_fmt_mul_overflow(count, lora_gguf_type_size(type), &bytes) || bytes > left)
        return gg_fail(p->err, LORA_E_TRUNCATED, at,
                       "key '%s': %llu values of type %s do not fit in the %llu bytes left", key,
                       (unsigned long long)count, lora_gguf_type_name(type), (unsigned long long)left);
    if (type == LORA_GGUF_TYPE_BOOL) LORA_FORWARD_IF_ERROR(check_bools(p, key, p->g->data + at, count, at));
    p->pos += bytes;
    return LORA_OK;
}

static lora_status read_strings(gg_parse *p, const char *key, uint64_t count)
{
    uint64_t bytes, left = p->g->size - p->pos;
    /* Each string costs at least its 8-byte length: a count the file cannot
     * hold is refused before the walk starts. */
    if (lora_fmt_mul_overflow(count, 8, &bytes) || bytes > left)
        return gg_fail(p->err, LORA_E_TRUNCATED, p->pos, "key '%s': %llu strings do not fit in the %llu bytes left",
                       key, (unsigned long long)count, (unsigned long long)left);
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *s;
        uint64_t len;
        LORA_FORWARD_IF_ERROR(gg_read_str(p, p->lim.max_string_length, &s, &len, "string value"));
    }
    /* count * 8 <= size, so the running total cannot overflow. */
    p->g->n_strs += count;
    return LORA_OK;
}

static lora_status read_array(gg_parse *p, lora_gguf_kv *kv, const char *key)
{
    uint64_t at = p->pos;
    LORA_FORWARD_IF_ERROR(gg_read_u32(p, &kv->elem_type, "array element type"));
    LORA_FORWARD_IF_ERROR(gg_read_u64(p, &kv->count, "array length"));
    if (kv->elem_type >= LORA_GGUF_TYPE_COUNT)
        return gg_fail(p->err, LORA_E_BAD_ENUM, at, "key '%s': array element type %u is not a GGUF type", key,
                       kv->elem_type);
    if (kv->elem_type == LORA_GGUF_TYPE_ARRAY)
        return gg_fail(p->err, LORA_E_BAD_METADATA, at, "key '%s': arrays of arrays are not supported", key);
    if (kv->count > p->lim.max_array_elements)
        return gg_fail(p->err, LORA_E_LIMIT_EXCEEDED, at + 4, "key '%s': array length %llu exceeds the limit %llu", key,
                       (unsigned long long)kv->count, (unsigned long long)p->lim.max_array_elements);
    if (kv->elem_type == LORA_GGUF_TYPE_STRING) {
        kv->str_index = p->g->n_strs;
        return read_strings(p, key, kv->count);
    }
    return read_fixed(p, key, kv->elem_type, kv->count);
}

static lora_status read_value(gg_parse *p, lora_gguf_kv *kv, const char *key)
{
    const uint8_t *s;
    uint64_t len;
    switch (kv->type) {
    case LORA_GGUF_TYPE_ARRAY: return read_array(p, kv, key);
    case LORA_GGUF_TYPE_STRING:
        return gg_read_str(p, p->lim.max_string_length, &s, &len, "string value");
    default: return read_fixed(p, key, kv->type, 1);
    }
}

static lora_status read_kv(gg_parse *p, lora_gguf_kv *kv)
{
    const uint8_t *s;
    uint64_t len;
    kv->offset = p->pos;
    LORA_FORWARD_IF_ERROR(gg_read_str(p, p->lim.max_string_length, &s, &len, "key"));
    char key[80];
    gg_printable(key, sizeof key, s, len);
    /* Keys are looked up as C strings and printed: no NUL, valid UTF-8. */
    if (!lora_fmt_utf8_valid(s, (size_t)len))
        return gg_fail(p->err, LORA_E_BAD_STRING, kv->offset, "key '%s' is empty, holds a NUL or is not UTF-8", key);
    p->g->names_size += len + 1;
    uint64_t type_at = p->pos;
    LORA_FORWARD_IF_ERROR(gg_read_u32(p, &kv->type, "value type"));
    if (kv->type >= LORA_GGUF_TYPE_COUNT)
        return gg_fail(p->err, LORA_E_BAD_ENUM, type_at, "key '%s': value type %u is not a GGUF type", key, kv->type);
    kv->elem_type = kv->type;
    kv->count = 1;
    kv->value_offset = p->pos;
    LORA_FORWARD_IF_ERROR(read_value(p, kv, key));
    kv->value_size = p->pos - kv->value_offset;
    return LORA_OK;
}

lora_status gg_parse_kvs(gg_parse *p)
{
    for (uint64_t i = 0; i < p->g->n_kv; i++) LORA_FORWARD_IF_ERROR(read_kv(p, &p->g->kv[i]));
    return LORA_OK;
}

/* llama.cpp requires UINT32 and a power of two; the upper bound is ours (a
 * 2^31 alignment made gguf.cpp abort or wrap, robustness.md 1.1). */
lora_status gg_check_alignment(gg_parse *p)
{
    const lora_gguf *g = p->g;
    int64_t at = gg_index_find(g->kv_ix, g->n_kv, LORA_GGUF_KEY_ALIGNMENT);
    if (at < 0) return LORA_OK;
    const lora_gguf_kv *kv = &g->kv[g->kv_ix[at].index];
    if (kv->type != LORA_GGUF_TYPE_UINT32)
        return gg_fail(p->err, LORA_E_BAD_METADATA, kv->offset, "key 'general.alignment' has type %s, not UINT32",
                       lora_gguf_type_name(kv->type));
    uint32_t a = lora_fmt_rd32(g->data + kv->value_offset);
    if (a == 0 || (a & (a - 1)) != 0)
        return gg_fail(p->err, LORA_E_BAD_METADATA, kv->value_offset, "general.alignment %u is not a power of two", a);
    if (a > p->lim.max_alignment)
        return gg_fail(p->err, LORA_E_LIMIT_EXCEEDED, kv->value_offset, "general.alignment %u exceeds the limit %u", a,
                       p->lim.max_alignment);
    p->g->alignment = a;
    return LORA_OK;
}

/* Pass 2 over already validated arrays: remember where each string starts. */
void gg_index_strings(lora_gguf *g)
{
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const lora_gguf_kv *kv = &g->kv[i];
        if (kv->type != LORA_GGUF_TYPE_ARRAY || kv->elem_type != LORA_GGUF_TYPE_STRING) continue;
        uint64_t pos = kv->value_offset + 12;
        for (uint64_t j = 0; j < kv->count; j++) {
            g->str_offsets[kv->str_index + j] = pos;
            pos += 8 + lora_fmt_rd64(g->data + pos);
        }
    }
}
