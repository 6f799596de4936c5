/* safetensors reader: framing, the JSON header, the steps of a parse, and
 * the result's lifetime. The framing checks come in the reference reader's
 * order (safetensors/src/tensor.rs read_metadata), so a truncated or
 * foreign file is refused for the same first reason. */
#include <string.h>
#include "lfs_pointer.h"
#include "map_file.h"
#include "safetensors_private.h"

#define PICK_(v, d) ((v) ? (v) : (d))

static lora_status check_options(const lora_st_options *o, lora_st_limits *lim, lora_error *err)
{
    static const lora_st_options none;
    if (!o) o = &none;
    if (o->limits.reserved0)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "reserved option fields must be zero");
    /* Half a hook would free with the wrong allocator. */
    if (!o->allocator.alloc != !o->allocator.free)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET,
                              "allocator needs both alloc and free, or neither");
    lim->max_header_size = PICK_(o->limits.max_header_size, LORA_ST_DEFAULT_MAX_HEADER_SIZE);
    lim->max_tensors = PICK_(o->limits.max_tensors, LORA_ST_DEFAULT_MAX_TENSORS);
    lim->max_metadata = PICK_(o->limits.max_metadata, LORA_ST_DEFAULT_MAX_METADATA);
    lim->max_name_length = PICK_(o->limits.max_name_length, LORA_ST_DEFAULT_MAX_NAME_LENGTH);
    lim->reserved0 = 0;
    return LORA_OK;
}

/* Steps before any JSON: the length prefix and where the header ends. */
static lora_status check_frame(const uint8_t *data, size_t size, const lora_st_limits *lim, uint64_t *n,
                               lora_error *err)
{
    LORA_FORWARD_IF_ERROR(lora_lfs_pointer_check(data, size, "safetensors", err));
    if (size < 8)
        return lora_error_set(err, LORA_E_TRUNCATED, 0,
                              "safetensors: file of %zu bytes is shorter than the 8-byte header length (offset 0)",
                              size);
    *n = lora_fmt_rd64(data);
    if (*n > lim->max_header_size)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, 0,
                              "safetensors: header length %llu exceeds the limit of %llu bytes (offset 0)",
                              (unsigned long long)*n, (unsigned long long)lim->max_header_size);
    /* n <= cap keeps 8 + n from wrapping whatever the caller set the cap
     * to, as long as the comparison is done on the remaining size. */
    if (*n > (uint64_t)size - 8)
        return lora_error_set(err, LORA_E_TRUNCATED, 0,
                              "safetensors: header of %llu bytes does not fit in a file of %zu bytes (offset 0)",
                              (unsigned long long)*n, size);
    if (*n == 0 || data[8] != '{')
        return lora_error_set(err, LORA_E_BAD_HEADER, 8, "safetensors: header does not start with '{' (offset 8)");
    return LORA_OK;
}

static lora_status json_error(const json_error_t *je, lora_error *err)
{
    enum json_error_code code = json_error_code(je);
    lora_status st = code == json_error_duplicate_key ? LORA_E_DUPLICATE_NAME
                   : code == json_error_out_of_memory ? LORA_E_OUT_OF_MEMORY
                   : LORA_E_BAD_JSON;
    /* jansson quotes the offending token ("near '...'"): file bytes. */
    char text[LORA_ST_SHOW_NAME];
    lora_st_show_name(text, je->text, strnlen(je->text, sizeof je->text - 1));
    uint64_t off = 8 + (uint64_t)(je->position > 0 ? je->position : 0);
    return lora_error_set(err, st, off, "safetensors: header JSON: %s (offset %llu)", text, (unsigned long long)off);
}

/* Count entries, check the caps and size the string pool, all before
 * allocating anything for them. */
static lora_status count_entries(lora_st_parse_ctx *c, json_t *root, json_t **meta, uint64_t *pool,
                                 lora_error *err)
{
    const char *key;
    json_t *val;
    uint64_t tensors = 0, bytes = 0;
    *meta = NULL;
    json_object_foreach(root, key, val) {
        size_t len = strlen(key); /* jansson refuses NUL in keys without JSON_ALLOW_NUL */
        if (strcmp(key, LORA_ST_META_KEY) == 0) {
            *meta = val;
            continue;
        }
        if (len > c->lim->max_name_length)
            return lora_st_tensor_error(err, LORA_E_LIMIT_EXCEEDED, lora_st_key_offset(c->data, c->n, key, len), key,
                                        len, "name of %zu bytes exceeds the limit of %u", len,
                                        c->lim->max_name_length);
        tensors++;
        bytes += len + 1; /* each key lies inside the n-byte header: no wrap */
    }
    if (tensors > c->lim->max_tensors)
        return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, 8,
                              "safetensors: %llu tensors exceed the limit of %u (offset 8)",
                              (unsigned long long)tensors, c->lim->max_tensors);
    c->f->tensor_count = (uint32_t)tensors;
    if (*meta && json_is_null(*meta)) *meta = NULL; /* MLX writes "__metadata__": null */
    if (*meta) {
        uint64_t moff = lora_st_key_offset(c->data, c->n, LORA_ST_META_KEY, sizeof LORA_ST_META_KEY - 1);
        if (!json_is_object(*meta))
            return lora_error_set(err, LORA_E_BAD_METADATA, moff,
                                  "safetensors: __metadata__ is not an object (offset %llu)", (unsigned long long)moff);
        size_t mcount = json_object_size(*meta);
        if (mcount > c->lim->max_metadata)
            return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, moff,
                                  "safetensors: %zu __metadata__ entries exceed the limit of %u (offset %llu)", mcount,
                                  c->lim->max_metadata, (unsigned long long)moff);
        json_object_foreach(*meta, key, val) {
            size_t len = strlen(key);
            if (len > c->lim->max_name_length)
                return lora_error_set(err, LORA_E_LIMIT_EXCEEDED, moff,
                                      "safetensors: __metadata__ key of %zu bytes exceeds the limit of %u "
                                      "(offset %llu)",
                                      len, c->lim->max_name_length, (unsigned long long)moff);
            bytes += len + 1 + (json_is_string(val) ? json_string_length(val) + 1 : 0);
        }
        c->f->meta_count = (uint32_t)mcount;
    }
    *pool = bytes;
    return LORA_OK;
}

static lora_status allocate(lora_st_file *f, uint64_t pool, lora_error *err)
{
    const lora_allocator *a = &f->alloc_;
    if (pool > SIZE_MAX)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "safetensors: names too large");
    f->tensors = lora_mem_calloc(a, f->tensor_count, sizeof *f->tensors);
    f->by_offset = lora_mem_calloc(a, f->tensor_count, sizeof *f->by_offset);
    f->by_name_ = lora_mem_calloc(a, f->tensor_count, sizeof *f->by_name_);
    f->meta = lora_mem_calloc(a, f->meta_count, sizeof *f->meta);
    f->strings_ = lora_mem_alloc(a, (size_t)pool);
    if (!f->tensors || !f->by_offset || !f->by_name_ || !f->meta || !f->strings_)
        return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET,
                              "safetensors: cannot allocate descriptors for %u tensors", f->tensor_count);
    return LORA_OK;
}

/* The steps after the frame, over jansson's tree. */
static lora_status read_header(lora_st_parse_ctx *c, json_t *root, lora_error *err)
{
    json_t *meta = NULL;
    uint64_t pool = 0;
    LORA_FORWARD_IF_ERROR(count_entries(c, root, &meta, &pool, err));
    LORA_FORWARD_IF_ERROR(allocate(c->f, pool, err));
    c->pool = c->f->strings_;
    if (meta) LORA_FORWARD_IF_ERROR(lora_st_read_meta(c, meta, err));
    const char *key;
    json_t *val;
    uint32_t i = 0;
    json_object_foreach(root, key, val) {
        if (strcmp(key, LORA_ST_META_KEY) == 0) continue;
        LORA_FORWARD_IF_ERROR(lora_st_read_entry(c, i++, key, strlen(key), val, err));
    }
    LORA_FORWARD_IF_ERROR(lora_st_check_layout(c, err));
    lora_st_index_names(c->f);
    return LORA_OK;
}

static lora_status parse(const uint8_t *data, size_t size, lora_st_file *f, const lora_st_limits *lim, lora_error *err)
{
    lora_st_parse_ctx c = {data, size, 0, lim, f, NULL};
    LORA_FORWARD_IF_ERROR(check_frame(data, size, lim, &c.n, err));
    f->header_size = c.n;
    f->data_offset = 8 + c.n;
    LORA_FORWARD_IF_ERROR(lora_st_prescan(data + 8, c.n, lim, err));
    json_error_t je;
    json_t *root = json_loadb((const char *)data + 8, (size_t)c.n, JSON_REJECT_DUPLICATES, &je);
    if (!root) return json_error(&je, err);
    /* Unreachable after the '{' check, kept so the tree walk never
     * depends on it. */
    lora_status st = json_is_object(root) ? read_header(&c, root, err)
                                          : lora_error_set(err, LORA_E_BAD_HEADER, 8,
                                                           "safetensors: header is not a JSON object (offset 8)");
    json_decref(root);
    return st;
}

static void release(lora_st_file *f)
{
    const lora_allocator *a = &f->alloc_;
    lora_mem_free(a, f->tensors);
    lora_mem_free(a, f->by_offset);
    lora_mem_free(a, f->by_name_);
    lora_mem_free(a, f->meta);
    lora_mem_free(a, f->strings_);
    lora_allocator copy = f->alloc_;
    lora_mem_free(&copy, f);
}

static lora_status parse_new(const uint8_t *data, size_t size, const lora_st_options *opts, lora_st_file **out,
                             lora_error *err)
{
    lora_st_limits lim;
    LORA_FORWARD_IF_ERROR(check_options(opts, &lim, err));
    lora_allocator a = {0, 0, 0};
    if (opts) a = opts->allocator;
    lora_st_file *f = lora_mem_alloc(&a, sizeof *f);
    if (!f) return lora_error_set(err, LORA_E_OUT_OF_MEMORY, LORA_NO_OFFSET, "safetensors: out of memory");
    memset(f, 0, sizeof *f);
    f->alloc_ = a;
    f->file = data;
    f->file_size = size;
    lora_status st = parse(data, size, f, &lim, err);
    if (st != LORA_OK) {
        release(f);
        return st;
    }
    *out = f;
    return LORA_OK;
}

lora_status lora_st_parse(const uint8_t *data, size_t size, const lora_st_options *opts, lora_st_file **out,
                          lora_error *err)
{
    lora_error_clear(err);
    if (!out || (!data && size))
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors: NULL argument");
    *out = NULL;
    return parse_new(data, size, opts, out, err);
}

lora_status lora_st_open(const char *path, const lora_st_options *opts, lora_st_file **out, lora_error *err)
{
    lora_error_clear(err);
    if (!out || !path)
        return lora_error_set(err, LORA_E_INVALID_ARGUMENT, LORA_NO_OFFSET, "safetensors: NULL argument");
    *out = NULL;
    void *map;
    size_t size;
    LORA_FORWARD_IF_ERROR(lora_io_map_file(path, &map, &size, err));
    lora_status st = parse_new(map, size, opts, out, err);
    if (st != LORA_OK) {
        lora_io_unmap_file(map, size);
        return st;
    }
    (*out)->map_ = map;
    (*out)->map_size_ = size;
    return LORA_OK;
}

void lora_st_free(lora_st_file *f)
{
    if (!f) return;
    lora_io_unmap_file(f->map_, f->map_size_);
    release(f);
}

int lora_st_sniff(const uint8_t *data, size_t size)
{
    if (!data || size < 9) return 0;
    uint64_t n = lora_fmt_rd64(data);
    return n >= 2 && n <= (uint64_t)size - 8 && data[8] == '{';
}
