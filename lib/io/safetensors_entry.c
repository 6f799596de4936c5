/* One header entry (and __metadata__) from jansson's tree into
 * descriptors. jansson has already checked the JSON and rejected duplicate
 * keys; what is left is the safetensors schema and its arithmetic. */
#include <string.h>
#include "safetensors_private.h"

/* The error of entry `name`, located at its key in the header. */
#define ENTRY_ERROR(c, st, name, len, ...) \
    lora_st_tensor_error(err, (st), lora_st_key_offset((c)->data, (c)->n, (name), (len)), (name), (len), __VA_ARGS__)

static char *pool_copy(lora_st_parse_ctx *c, const char *s, size_t len)
{
    char *dst = c->pool;
    memcpy(dst, s, len);
    dst[len] = '\0';
    c->pool += len + 1;
    return dst;
}

static lora_status read_dtype(lora_st_parse_ctx *c, lora_st_tensor *t, const json_t *v, lora_error *err)
{
    const json_t *d = json_object_get(v, "dtype");
    if (!d) return ENTRY_ERROR(c, LORA_E_BAD_HEADER, t->name, t->name_length, "no \"dtype\"");
    if (!json_is_string(d))
        return ENTRY_ERROR(c, LORA_E_BAD_HEADER, t->name, t->name_length, "\"dtype\" is not a string");
    const char *s = json_string_value(d);
    size_t len = json_string_length(d);
    if (lora_st_dtype_from_name(s, len, &t->dtype) != LORA_OK) {
        char shown[LORA_ST_SHOW_NAME];
        lora_st_show_name(shown, s, len);
        return ENTRY_ERROR(c, LORA_E_UNSUPPORTED_DTYPE, t->name, t->name_length, "unsupported dtype \"%s\"", shown);
    }
    return LORA_OK;
}

/* A JSON integer >= 0 (jansson has already refused anything beyond int64). */
static int read_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0) return 0;
    *out = (uint64_t)x;
    return 1;
}

static lora_status read_shape(lora_st_parse_ctx *c, lora_st_tensor *t, const json_t *v, lora_error *err)
{
    const json_t *s = json_object_get(v, "shape");
    if (!s) return ENTRY_ERROR(c, LORA_E_BAD_SHAPE, t->name, t->name_length, "no \"shape\"");
    if (!json_is_array(s))
        return ENTRY_ERROR(c, LORA_E_BAD_SHAPE, t->name, t->name_length, "\"shape\" is not an array");
    size_t nd = json_array_size(s);
    if (nd > LORA_ST_MAX_DIMS)
        return ENTRY_ERROR(c, LORA_E_LIMIT_EXCEEDED, t->name, t->name_length, "rank %zu exceeds the supported %u", nd,
                           LORA_ST_MAX_DIMS);
    t->ndim = (uint32_t)nd;
    for (size_t d = 0; d < nd; d++)
        if (!read_u64(json_array_get(s, d), &t->shape[d]))
            return ENTRY_ERROR(c, LORA_E_BAD_SHAPE, t->name, t->name_length,
                               "shape[%zu] is not a non-negative integer", d);
    uint32_t es = lora_st_dtype_size(t->dtype);
    if (lora_st_shape_bytes(t->shape, t->ndim, es, &t->numel, &t->size))
        return ENTRY_ERROR(c, LORA_E_BAD_SHAPE, t->name, t->name_length,
                           "byte size of the shape overflows 64 bits");
    return LORA_OK;
}

/* data_offsets; *end receives the second value. */
static lora_status read_offsets(lora_st_parse_ctx *c, lora_st_tensor *t, const json_t *v, uint64_t *end,
                                lora_error *err)
{
    const json_t *o = json_object_get(v, "data_offsets");
    if (!o) return ENTRY_ERROR(c, LORA_E_BAD_OFFSET, t->name, t->name_length, "no \"data_offsets\"");
    if (!json_is_array(o) || json_array_size(o) != 2 || !read_u64(json_array_get(o, 0), &t->begin) ||
        !read_u64(json_array_get(o, 1), end))
        return ENTRY_ERROR(c, LORA_E_BAD_OFFSET, t->name, t->name_length,
                           "\"data_offsets\" is not two non-negative integers");
    if (t->begin > *end)
        return ENTRY_ERROR(c, LORA_E_BAD_OFFSET, t->name, t->name_length,
                           "data_offsets [%llu, %llu] end before they begin", (unsigned long long)t->begin,
                           (unsigned long long)*end);
    return LORA_OK;
}

lora_status lora_st_read_entry(lora_st_parse_ctx *c, uint32_t i, const char *name, size_t name_len, const json_t *v,
                               lora_error *err)
{
    lora_st_tensor *t = &c->f->tensors[i];
    t->name = pool_copy(c, name, name_len);
    t->name_length = name_len;
    if (!json_is_object(v)) return ENTRY_ERROR(c, LORA_E_BAD_HEADER, name, name_len, "entry is not an object");
    LORA_FORWARD_IF_ERROR(read_dtype(c, t, v, err));
    LORA_FORWARD_IF_ERROR(read_shape(c, t, v, err));
    uint64_t end = 0;
    LORA_FORWARD_IF_ERROR(read_offsets(c, t, v, &end, err));
    if (end - t->begin != t->size)
        return ENTRY_ERROR(c, LORA_E_BAD_SIZE, name, name_len,
                           "data_offsets [%llu, %llu] hold %llu bytes, %s x %llu elements need %llu",
                           (unsigned long long)t->begin, (unsigned long long)end,
                           (unsigned long long)(end - t->begin), lora_st_dtype_name(t->dtype),
                           (unsigned long long)t->numel, (unsigned long long)t->size);
    return LORA_OK;
}

static lora_status meta_error(lora_st_parse_ctx *c, lora_error *err, const char *key, size_t key_len, const char *msg)
{
    uint64_t off = lora_st_key_offset(c->data, c->n, LORA_ST_META_KEY, sizeof LORA_ST_META_KEY - 1);
    char shown[LORA_ST_SHOW_NAME];
    lora_st_show_name(shown, key, key_len);
    return lora_error_set(err, LORA_E_BAD_METADATA, off, "safetensors: __metadata__ key '%s': %s (offset %llu)", shown,
                          msg, (unsigned long long)off);
}

lora_status lora_st_read_meta(lora_st_parse_ctx *c, json_t *v, lora_error *err)
{
    lora_st_file *f = c->f;
    const char *key;
    json_t *val;
    uint32_t i = 0;
    json_object_foreach(v, key, val) {
        size_t klen = strlen(key); /* keys hold no NUL: JSON_ALLOW_NUL is not passed */
        if (!json_is_string(val)) return meta_error(c, err, key, klen, "value is not a string");
        lora_st_meta *m = &f->meta[i++];
        m->key = pool_copy(c, key, klen);
        m->key_length = klen;
        m->value_length = json_string_length(val);
        m->value = pool_copy(c, json_string_value(val), m->value_length);
    }
    return LORA_OK;
}
